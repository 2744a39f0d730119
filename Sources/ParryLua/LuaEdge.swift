import CLua
import CLuaShim
import ParryCore

// The Lua/Swift edge: one way to read arguments, one way to push results,
// one error path. Bindings read their arguments with non-raising Lua calls,
// throw `LuaArgumentError` for bad input, and `bind` turns that into a
// message for the C trampoline, which raises it at the caller's line.

public typealias LuaState = OpaquePointer

/// A failure to report to Lua; `bind` prefixes the function's Lua name.
public struct LuaArgumentError: Error {
    public let message: String
    public init(_ message: String) { self.message = message }
}

/// An error raised by Lua code that a binding called (e.g. a callback).
public struct LuaCallError: Error {
    public let message: String
}

/// Runs a binding body. Any thrown error becomes a Lua error "<name>: <message>"
/// raised by the trampoline (PARRY_ERROR); nothing longjmps through Swift.
@inline(__always)
func bind(_ L: LuaState?, _ name: StaticString, _ body: (LuaArgs) throws -> Int32) -> Int32 {
    guard let L else { return 0 }
    let args = LuaArgs(L, name)
    // Swift code that calls back into Lua (Lua modules, hooks) uses the running state.
    let saved = LuaContext.current
    LuaContext.current = L
    defer { LuaContext.current = saved }
    do {
        return try body(args)
    } catch let e as LuaCallError {
        pushString(L, e.message)      // already positioned by Lua: raise unchanged
        return PARRY_RETHROW
    } catch is Interrupted {
        // Ctrl-C reached native work: the Lua hook would raise at the next instruction anyway
        lua_sethook(L, nil, 0, 0)
        parry_clear_native_interrupt()
        pushString(L, "interrupted!")
        return PARRY_RETHROW
    } catch let e as LuaArgumentError {
        pushString(L, "\(name): \(e.message)")
    } catch let e as TensorError {
        pushString(L, "\(name): \(e.message)")
    } catch {
        pushString(L, "\(name): \(error)")
    }
    return PARRY_ERROR
}

@inline(__always)
func pushString(_ L: LuaState, _ s: String) {
    var s = s
    s.withUTF8 { buf in
        buf.withMemoryRebound(to: CChar.self) { _ = lua_pushlstring(L, $0.baseAddress, $0.count) }
    }
}

/// The arguments of one call from Lua (1-based stack indices).
struct LuaArgs {
    let L: LuaState
    let name: StaticString

    init(_ L: LuaState, _ name: StaticString) { self.L = L; self.name = name }

    var count: Int32 { lua_gettop(L) }

    func type(_ i: Int32) -> Int32 { i == 0 ? LUA_TNONE : lua_type(L, i) }
    /// True for nil and none; index 0 ("no argument") also counts as nil.
    func isNil(_ i: Int32) -> Bool { i == 0 || lua_type(L, i) <= LUA_TNIL }

    /// A readable type name for messages ("tensor" for parry tensors).
    func typeName(_ i: Int32) -> String {
        if parry_toobject(L, i, Int32(PARRY_TENSOR)) != nil { return "tensor" }
        if lua_type(L, i) == LUA_TNUMBER { return lua_isinteger(L, i) != 0 ? "integer" : "number" }
        return String(cString: lua_typename(L, lua_type(L, i)))
    }

    func fail(_ message: String) -> LuaArgumentError { LuaArgumentError(message) }

    // MARK: boxed Swift objects

    /// The Swift object of userdata kind `kind` at `i` (metatables compared), or nil.
    @inline(__always)
    func optObject<T: AnyObject>(_ i: Int32, _ kind: Int32, as _: T.Type = T.self) -> T? {
        guard let p = parry_toobject(L, i, kind) else { return nil }
        return Unmanaged<T>.fromOpaque(p).takeUnretainedValue()
    }

    /// A table of boxed objects of one kind; `noun` names them in messages ("tensors").
    func objectList<T: AnyObject>(_ i: Int32, _ kind: Int32, _ what: String, _ noun: String) throws -> [T] {
        guard type(i) == LUA_TTABLE else {
            throw fail("expected a table of \(noun) for \(what) (argument \(i)), got \(typeName(i))")
        }
        var out = [T]()
        for k in 1...max(rawLength(i), 1) where k <= rawLength(i) {
            let j = rawIndex(i, k)
            defer { pop() }
            guard let o: T = optObject(j, kind) else {
                throw fail("expected \(noun) in \(what), got \(typeName(j)) at position \(k)")
            }
            out.append(o)
        }
        return out
    }

    // MARK: tensors

    /// Non-generic on purpose: this is on every tensor call's path.
    func optTensor(_ i: Int32) -> Tensor? {
        guard let p = parry_toobject(L, i, Int32(PARRY_TENSOR)) else { return nil }
        return Unmanaged<Tensor>.fromOpaque(p).takeUnretainedValue()
    }

    func tensor(_ i: Int32, _ what: String = "self") throws -> Tensor {
        if let t = optTensor(i) { return t }
        throw fail("expected a tensor for \(what) (argument \(i)), got \(typeName(i))")
    }

    /// A tensor, or a number turned into a 0-d tensor.
    func tensorOrScalar(_ i: Int32, _ what: String) throws -> Tensor {
        if let t = optTensor(i) { return t }
        if let s = optScalar(i) { return Tensor.scalar(s) }
        throw fail("expected a tensor or number for \(what) (argument \(i)), got \(typeName(i))")
    }

    // MARK: numbers

    func optScalar(_ i: Int32) -> Scalar? {
        guard lua_type(L, i) == LUA_TNUMBER else { return nil }
        if lua_isinteger(L, i) != 0 { return .int(parry_tointeger(L, i, nil)) }
        return .float(parry_tonumber(L, i, nil))
    }

    func scalar(_ i: Int32, _ what: String) throws -> Scalar {
        if let s = optScalar(i) { return s }
        throw fail("expected a number for \(what) (argument \(i)), got \(typeName(i))")
    }

    func number(_ i: Int32, _ what: String) throws -> Double {
        try scalar(i, what).double
    }

    func optNumber(_ i: Int32, _ what: String, _ def: Double) throws -> Double {
        isNil(i) ? def : try number(i, what)
    }

    /// An integer; floats with an exact integer value are accepted, others are not.
    func integer(_ i: Int32, _ what: String) throws -> Int {
        guard lua_type(L, i) == LUA_TNUMBER else {
            throw fail("expected an integer for \(what) (argument \(i)), got \(typeName(i))")
        }
        var ok: Int32 = 0
        let v = parry_tointeger(L, i, &ok)
        guard ok != 0 else {
            throw fail("expected an integer for \(what) (argument \(i)), got \(parry_tonumber(L, i, nil))")
        }
        return Int(v)
    }

    /// Argument `i` as a generator seed (any Lua integer; negative ones wrap).
    func seed(_ i: Int32) throws -> UInt64 { UInt64(bitPattern: Int64(try integer(i, "seed"))) }
    /// `seed(i)`, or nil when the argument is nil.
    func optSeed(_ i: Int32) throws -> UInt64? { isNil(i) ? nil : try seed(i) }

    func optInteger(_ i: Int32, _ what: String, _ def: Int) throws -> Int {
        isNil(i) ? def : try integer(i, what)
    }

    func optBool(_ i: Int32, _ what: String, _ def: Bool) throws -> Bool {
        if isNil(i) { return def }
        guard lua_type(L, i) == LUA_TBOOLEAN else {
            throw fail("expected a boolean for \(what) (argument \(i)), got \(typeName(i))")
        }
        return lua_toboolean(L, i) != 0
    }

    func string(_ i: Int32, _ what: String) throws -> String {
        guard lua_type(L, i) == LUA_TSTRING, let c = parry_tostring(L, i, nil) else {
            throw fail("expected a string for \(what) (argument \(i)), got \(typeName(i))")
        }
        return String(cString: c)
    }

    // MARK: dimensions (1-based and negative at the edge, 0-based inside)

    /// Converts a Lua dimension (1..n or -n..-1) to 0-based for a tensor of `ndim` dimensions.
    func dim(_ i: Int32, ndim: Int, _ what: String = "dim") throws -> Int {
        let d = try integer(i, what)
        return try normalizeDim(d, ndim: ndim, what)
    }

    func normalizeDim(_ d: Int, ndim: Int, _ what: String = "dim") throws -> Int {
        if d >= 1 && d <= ndim { return d - 1 }
        if d <= -1 && d >= -ndim { return ndim + d }
        if ndim == 0 { throw fail("\(what) \(d) is out of range for a 0-d tensor (it has no dimensions)") }
        throw fail("\(what) \(d) is out of range for a \(ndim)-d tensor (expected 1..\(ndim) or -\(ndim)..-1)")
    }

    func optDim(_ i: Int32, ndim: Int, _ what: String = "dim") throws -> Int? {
        isNil(i) ? nil : try dim(i, ndim: ndim, what)
    }

    /// Converts a Lua index (1..n or -n..-1) into 0..<n.
    func normalizeIndex(_ v: Int, size n: Int, _ what: String = "index") throws -> Int {
        if v >= 1 && v <= n { return v - 1 }
        if v <= -1 && v >= -n { return n + v }
        throw fail("\(what) \(v) is out of range for a dimension of size \(n)")
    }

    // MARK: tables

    /// Reads t[k] (raw, never a metamethod) for the table at `i`, pushes it and
    /// returns its absolute stack index; pop with `pop`.
    func rawField(_ i: Int32, _ key: String) -> Int32 {
        let t = lua_absindex(L, i)
        pushString(L, key)
        lua_rawget(L, t)
        return lua_gettop(L)
    }

    func rawIndex(_ i: Int32, _ k: Int) -> Int32 {
        lua_rawgeti(L, lua_absindex(L, i), lua_Integer(k))
        return lua_gettop(L)
    }

    func pop(_ n: Int32 = 1) { parry_pop(L, n) }

    func rawLength(_ i: Int32) -> Int { Int(lua_rawlen(L, i)) }

    /// A list of integers from a table at `i`.
    func integerList(_ i: Int32, _ what: String) throws -> [Int] {
        guard type(i) == LUA_TTABLE else {
            throw fail("expected a table of integers for \(what) (argument \(i)), got \(typeName(i))")
        }
        let n = rawLength(i)
        var out = [Int]()
        out.reserveCapacity(n)
        for k in 1...max(n, 1) where k <= n {
            let j = rawIndex(i, k)
            defer { pop() }
            var ok: Int32 = 0
            let v = parry_tointeger(L, j, &ok)
            guard lua_type(L, j) == LUA_TNUMBER, ok != 0 else {
                throw fail("expected integers in \(what), got \(typeName(j)) at position \(k)")
            }
            out.append(Int(v))
        }
        return out
    }

    /// A list of numbers from a table at `i`.
    func numberList(_ i: Int32, _ what: String) throws -> [Double] {
        guard type(i) == LUA_TTABLE else {
            throw fail("expected a table of numbers for \(what) (argument \(i)), got \(typeName(i))")
        }
        let n = rawLength(i)
        var out = [Double]()
        out.reserveCapacity(n)
        for k in 1...max(n, 1) where k <= n {
            let j = rawIndex(i, k)
            defer { pop() }
            guard let s = optScalar(j) else { throw fail("expected numbers in \(what), got \(typeName(j)) at position \(k)") }
            out.append(s.double)
        }
        return out
    }

    /// A list of tensors from a table at `i`.
    func tensorList(_ i: Int32, _ what: String) throws -> [Tensor] {
        try objectList(i, Int32(PARRY_TENSOR), what, "tensors")
    }

    /// Sizes given as integers from argument `from` on, or as one table;
    /// returns them and the index of the argument after them.
    func sizes(from i: Int32, _ what: String = "size") throws -> ([Int], Int32) {
        var dims = [Int]()
        var j = i
        if type(i) == LUA_TTABLE && optionsLike(i) == false {
            dims = try integerList(i, what)
            j = i + 1
        } else {
            while type(j) == LUA_TNUMBER {
                dims.append(try integer(j, what))
                j += 1
            }
            if j == i && !isNil(j) && type(j) != LUA_TTABLE {
                throw fail("expected sizes as integers or one table (argument \(i)), got \(typeName(i))")
            }
        }
        return (dims, j)
    }

    /// True when the table at `i` has no array part but has string keys (an options table).
    func optionsLike(_ i: Int32) -> Bool {
        guard type(i) == LUA_TTABLE else { return false }
        if rawLength(i) > 0 { return false }
        lua_pushnil(L)
        let has = lua_next(L, lua_absindex(L, i)) != 0
        if has { pop(2) }
        return has
    }

    /// The options table at `i` (nil allowed). Unknown keys are reported.
    func options(_ i: Int32, allowed: [String]) throws -> LuaOptions {
        if isNil(i) { return LuaOptions(args: self, index: 0) }
        guard type(i) == LUA_TTABLE else {
            throw fail("expected an options table (argument \(i)), got \(typeName(i))")
        }
        let t = lua_absindex(L, i)
        lua_pushnil(L)
        while lua_next(L, t) != 0 {
            defer { pop() }
            guard lua_type(L, -2) == LUA_TSTRING, let c = parry_tostring(L, -2, nil) else {
                pop()
                throw fail("options (argument \(i)) must have string keys")
            }
            let key = String(cString: c)
            if !allowed.contains(key) {
                pop()
                throw fail("unknown option '\(key)' (expected one of: \(allowed.joined(separator: ", ")))")
            }
        }
        return LuaOptions(args: self, index: t)
    }

    // MARK: calling back into Lua

    /// Calls the function at stack index `fn` with `args` (pushed by `pushArgs`,
    /// which returns their count) in protected mode; returns with `nresults`
    /// values on the stack, or throws LuaCallError with Lua's message.
    func call(_ fn: Int32, nresults: Int32, _ pushArgs: () -> Int32) throws {
        guard lua_checkstack(L, 8) != 0 else { throw fail("Lua stack overflow") }
        lua_pushvalue(L, fn)
        let n = pushArgs()
        if parry_pcall(L, n, nresults, 0) != LUA_OK {
            var len = 0
            let msg = parry_tostring(L, -1, &len).map { String(cString: $0) } ?? "(error object is not a string)"
            pop()
            throw LuaCallError(message: msg)
        }
    }

    // MARK: results

    @discardableResult
    func push(_ t: Tensor) -> Int32 {
        pushTensor(L, t)
        return 1
    }

    @discardableResult
    func push(_ v: Double) -> Int32 { lua_pushnumber(L, v); return 1 }

    @discardableResult
    func push(_ v: Int) -> Int32 { lua_pushinteger(L, lua_Integer(v)); return 1 }

    @discardableResult
    func push(_ s: Scalar) -> Int32 {
        switch s {
        case .int(let v): lua_pushinteger(L, v)
        case .float(let v): lua_pushnumber(L, v)
        }
        return 1
    }

    /// Pushes a list of integers (a shape) as a Lua table.
    @discardableResult
    func push(sizes: [Int]) -> Int32 {
        lua_createtable(L, Int32(clamping: sizes.count), 0)
        for (i, n) in sizes.enumerated() { push(n); lua_rawseti(L, -2, lua_Integer(i + 1)) }
        return 1
    }

    @discardableResult
    func push(_ tensors: [Tensor]) -> Int32 {
        lua_createtable(L, Int32(clamping: tensors.count), 0)
        for (k, t) in tensors.enumerated() {
            pushTensor(L, t)
            lua_rawseti(L, -2, lua_Integer(k + 1))
        }
        return 1
    }
}

/// Named settings read from an options table (raw access only).
struct LuaOptions {
    let args: LuaArgs
    let index: Int32

    private func with<T>(_ key: String, _ read: (Int32) throws -> T?) rethrows -> T? {
        guard index != 0 else { return nil }
        let j = args.rawField(index, key)
        defer { args.pop() }
        if args.isNil(j) { return nil }
        return try read(j)
    }

    func string(_ key: String) throws -> String? {
        try with(key) { j in
            guard args.type(j) == LUA_TSTRING, let c = parry_tostring(args.L, j, nil) else {
                throw args.fail("option '\(key)' must be a string, got \(args.typeName(j))")
            }
            return String(cString: c)
        }
    }

    func number(_ key: String) throws -> Double? {
        try with(key) { j in
            guard let s = args.optScalar(j) else { throw args.fail("option '\(key)' must be a number, got \(args.typeName(j))") }
            return s.double
        }
    }

    /// Option `key` as a list of integers, or nil when absent.
    func integerList(_ key: String) throws -> [Int]? { try with(key) { j in try args.integerList(j, key) } }

    /// Option `seed` as a generator seed (any Lua integer; negative ones wrap), or nil.
    func seed() throws -> UInt64? { try integer("seed").map { UInt64(bitPattern: Int64($0)) } }

    func integer(_ key: String) throws -> Int? {
        try with(key) { j in
            var ok: Int32 = 0
            let v = parry_tointeger(args.L, j, &ok)
            guard args.type(j) == LUA_TNUMBER, ok != 0 else {
                throw args.fail("option '\(key)' must be an integer, got \(args.typeName(j))")
            }
            return Int(v)
        }
    }

    func bool(_ key: String) throws -> Bool? {
        try with(key) { j in
            guard args.type(j) == LUA_TBOOLEAN else { throw args.fail("option '\(key)' must be a boolean, got \(args.typeName(j))") }
            return lua_toboolean(args.L, j) != 0
        }
    }

    /// The `generator` option (a parry.Generator), or the current default
    /// (the shared generator unless inside `parry.with_generator`).
    func generator() throws -> Generator {
        try with("generator") { j in
            guard let g: Generator = args.optObject(j, Int32(PARRY_GENERATOR)) else {
                throw args.fail("option 'generator' must be a parry.Generator, got \(args.typeName(j))")
            }
            return g
        } ?? Generator.current
    }

    func dtype() throws -> DType? {
        guard let s = try string("dtype") else { return nil }
        guard let d = DType(rawValue: s) else {
            throw args.fail("unknown dtype '\(s)' (expected \"float32\" or \"int64\")")
        }
        return d
    }
}
