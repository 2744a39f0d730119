import CLua
import CLuaShim
import ParryCore
import ParryNN
import Foundation

// Bindings of the tensor API ("Tensors" in API.md). Each entry only reads
// arguments, converts 1-based indices and dims to 0-based, calls ParryCore and
// pushes results. Errors name the function as a script sees it.

// MARK: - shared binding shapes

private func binaryBinding(_ L: LuaState?, _ name: StaticString, _ op: BinaryOp) -> Int32 {
    bind(L, name) { a in
        let x = try a.tensorOrScalar(1, "self"), y = try a.tensorOrScalar(2, "other")
        return a.push(try x.binary(op, y))
    }
}

private func inplaceBinaryBinding(_ L: LuaState?, _ name: StaticString, _ op: BinaryOp) -> Int32 {
    bind(L, name) { a in
        try a.tensor(1).binary_(op, try a.tensorOrScalar(2, "other"))
        lua_pushvalue(a.L, 1)
        return 1
    }
}

private func unaryBinding(_ L: LuaState?, _ name: StaticString, _ op: UnaryOp) -> Int32 {
    bind(L, name) { a in a.push(try a.tensor(1).unary(op)) }
}

private func inplaceUnaryBinding(_ L: LuaState?, _ name: StaticString, _ op: UnaryOp) -> Int32 {
    bind(L, name) { a in
        try a.tensor(1).unary_(op)
        lua_pushvalue(a.L, 1)
        return 1
    }
}

/// Reads `[dim] [, keepdim] [, options]` from argument `i` on.
private func reductionArgs(_ a: LuaArgs, from i: Int32, ndim: Int) throws -> (dim: Int?, keepdim: Bool, options: Int32) {
    var dim: Int? = nil, keepdim = false, opts: Int32 = 0
    var j = i
    if a.type(j) == LUA_TNUMBER { dim = try a.dim(j, ndim: ndim); j += 1 } else if a.isNil(j) && a.count > j { j += 1 }
    if a.type(j) == LUA_TBOOLEAN { keepdim = try a.optBool(j, "keepdim", false); j += 1 } else if a.isNil(j) && a.count > j { j += 1 }
    if a.type(j) == LUA_TTABLE { opts = j; j += 1 }
    if j <= a.count && !a.isNil(j) {
        throw a.fail("unexpected argument \(j) (\(a.typeName(j))); expected [dim] [, keepdim]")
    }
    return (dim, keepdim, opts)
}

/// Pushes an index tensor (0-based inside) as 1-based for Lua.
private func pushIndices(_ a: LuaArgs, _ t: Tensor) throws -> Int32 {
    try t.binary_(.add, Tensor.scalar(.int(1)))
    return a.push(t)
}

/// Reads an index list (int64 tensor or table of integers, 1-based or negative)
/// as 0-based positions for a dimension of size n.
private func indexList(_ a: LuaArgs, _ i: Int32, size n: Int) throws -> [Int] {
    let raw: [Int]
    if let t = a.optTensor(i) {
        guard t.dtype == .int64, t.ndim <= 1 else {
            throw a.fail("expected a 1-d int64 tensor or a table of indices (argument \(i)), got a \(t.ndim)-d \(t.dtype.rawValue) tensor")
        }
        raw = t.int64s().map { Int($0) }
    } else {
        raw = try a.integerList(i, "index")
    }
    return try raw.map { try a.normalizeIndex($0, size: n) }
}

private func extremumBinding(_ L: LuaState?, _ name: StaticString, largest: Bool) -> Int32 {
    bind(L, name) { a in
        let t = try a.tensor(1)
        if let other = a.optTensor(2) {
            return a.push(try t.binary(largest ? .maximum : .minimum, other))
        }
        let r = try reductionArgs(a, from: 2, ndim: t.ndim)
        guard let d = r.dim else { return a.push(try t.extremum(largest: largest).0) }
        let (v, i) = try t.extremum(largest: largest, dim: d, keepdim: r.keepdim)
        a.push(v)
        _ = try pushIndices(a, i)
        return 2
    }
}

private func argExtremumBinding(_ L: LuaState?, _ name: StaticString, largest: Bool) -> Int32 {
    bind(L, name) { a in
        let t = try a.tensor(1)
        let r = try reductionArgs(a, from: 2, ndim: t.ndim)
        guard let d = r.dim else {
            let (_, i) = try t.extremum(largest: largest)
            return a.push(Tensor.scalar(.int(Int64(i + 1))))
        }
        return try pushIndices(a, try t.extremum(largest: largest, dim: d, keepdim: r.keepdim).1)
    }
}

private func varianceBinding(_ L: LuaState?, _ name: StaticString, std: Bool) -> Int32 {
    bind(L, name) { a in
        let t = try a.tensor(1)
        let r = try reductionArgs(a, from: 2, ndim: t.ndim)
        let o = try a.options(r.options, allowed: ["unbiased", "correction"])
        var correction = try o.integer("correction") ?? 1
        if let u = try o.bool("unbiased") { correction = u ? 1 : 0 }
        return a.push(std ? try t.std(dim: r.dim, keepdim: r.keepdim, correction: correction)
                          : try t.variance(dim: r.dim, keepdim: r.keepdim, correction: correction))
    }
}

private func softmaxBinding(_ L: LuaState?, _ name: StaticString, log: Bool) -> Int32 {
    bind(L, name) { a in
        let t = try a.tensor(1)
        guard !a.isNil(2) else { throw a.fail("missing dim (argument 2)") }
        return a.push(try t.softmax(dim: try a.dim(2, ndim: t.ndim), log: log))
    }
}

/// Reads sizes from `from` on; for `*_like`, creation functions and views.
private func creationShape(_ a: LuaArgs, from i: Int32, allowed: [String] = ["dtype"]) throws -> ([Int], LuaOptions) {
    let (shape, next) = try a.sizes(from: i)
    for n in shape where n < 0 { throw a.fail("sizes must be non-negative, got \(shapeString(shape))") }
    let opts = try a.options(next, allowed: allowed)
    if next < a.count { throw a.fail("unexpected argument \(next + 1) (\(a.typeName(next + 1)))") }
    return (shape, opts)
}

private func likeBinding(_ L: LuaState?, _ name: StaticString, _ make: ([Int], DType) throws -> Tensor) -> Int32 {
    bind(L, name) { a in
        let t = try a.tensor(1, "input")
        let opts = try a.options(2, allowed: ["dtype"])
        return a.push(try make(t.shape, try opts.dtype() ?? t.dtype))
    }
}

// MARK: - nested tables

/// Reads a (possibly nested) table of numbers into shape and values.
private struct NestedReader {
    let a: LuaArgs
    var shape = [Int]()
    var values = [Scalar]()
    var leafSeen = false
    var allIntegers = true

    mutating func visit(_ i: Int32, depth: Int) throws {
        if let s = a.optScalar(i) {
            if !leafSeen { leafSeen = true }
            guard depth == shape.count else { throw a.fail("nested tables have uneven lengths (a number at depth \(depth + 1))") }
            if case .float = s { allIntegers = false }
            values.append(s)
            return
        }
        guard a.type(i) == LUA_TTABLE else {
            throw a.fail("expected numbers or nested tables of numbers, got \(a.typeName(i))")
        }
        guard depth < 32, lua_checkstack(a.L, 4) != 0 else { throw a.fail("tables nested too deeply") }
        let n = a.rawLength(i)
        if depth == shape.count && !leafSeen {
            shape.append(n)
        } else if depth >= shape.count || shape[depth] != n {
            throw a.fail("nested tables have uneven lengths (\(n) at depth \(depth + 1))")
        }
        for k in 1...max(n, 1) where k <= n {
            let j = a.rawIndex(i, k)
            defer { a.pop() }
            try visit(j, depth: depth + 1)
        }
    }
}

private func pushNested(_ a: LuaArgs, _ t: Tensor) {
    let values = t.dtype == .int64 ? t.int64s().map { Scalar.int($0) } : t.floats().map { Scalar.float(Double($0)) }
    if t.ndim == 0 { a.push(values[0]); return }
    var k = 0
    func walk(_ d: Int) {
        _ = lua_checkstack(a.L, 4)
        lua_createtable(a.L, Int32(clamping: t.shape[d]), 0)
        for i in 0..<t.shape[d] {
            if d == t.ndim - 1 { a.push(values[k]); k += 1 } else { walk(d + 1) }
            lua_rawseti(a.L, -2, lua_Integer(i + 1))
        }
    }
    walk(0)
}

// MARK: - functions of the parry table

let creationFunctions: [(String, parry_SwiftFunction)] = [
    ("tensor", { L in bind(L, "parry.tensor") { a in
        let opts = try a.options(2, allowed: ["dtype"])
        if let t = a.optTensor(1) { return a.push(try t.detach().clone().to(try opts.dtype() ?? t.dtype)) }
        var r = NestedReader(a: a)
        try r.visit(1, depth: 0)
        let dtype = try opts.dtype() ?? (r.allIntegers && !r.values.isEmpty ? .int64 : .float32)
        let t: Tensor
        switch dtype {
        case .float32: t = try Tensor(r.values.map { Float($0.double) }, shape: r.shape)
        case .int64: t = try Tensor(r.values.map { $0.int64 }, shape: r.shape)
        }
        return a.push(t)
    } }),
    ("zeros", { L in bind(L, "parry.zeros") { a in
        let (s, o) = try creationShape(a, from: 1); return a.push(try Tensor.zeros(s, dtype: try o.dtype() ?? .float32))
    } }),
    ("ones", { L in bind(L, "parry.ones") { a in
        let (s, o) = try creationShape(a, from: 1); return a.push(try Tensor.ones(s, dtype: try o.dtype() ?? .float32))
    } }),
    ("full", { L in bind(L, "parry.full") { a in
        let shape = a.type(1) == LUA_TTABLE ? try a.integerList(1, "size") : [try a.integer(1, "size")]
        let v = try a.scalar(2, "value")
        let o = try a.options(3, allowed: ["dtype"])
        return a.push(try Tensor.full(shape, v, dtype: try o.dtype() ?? .float32))
    } }),
    ("rand", { L in bind(L, "parry.rand") { a in
        let (s, o) = try creationShape(a, from: 1, allowed: ["generator"])
        return a.push(try Tensor.rand(s, generator: try o.generator()))
    } }),
    ("randn", { L in bind(L, "parry.randn") { a in
        let (s, o) = try creationShape(a, from: 1, allowed: ["generator"])
        return a.push(try Tensor.randn(s, generator: try o.generator()))
    } }),
    ("randint", { L in bind(L, "parry.randint") { a in
        let lo = try a.integer(1, "low"), hi = try a.integer(2, "high")
        guard lo <= hi else { throw a.fail("empty range: low \(lo) > high \(hi)") }
        let (s, o) = try creationShape(a, from: 3, allowed: ["generator"])
        return a.push(try Tensor.randint(Int64(lo), Int64(hi), s, generator: try o.generator()))
    } }),
    ("arange", { L in bind(L, "parry.arange") { a in
        if a.isNil(2) { return a.push(try Tensor.arange(.int(1), try a.scalar(1, "stop"))) }
        let start = try a.scalar(1, "start"), stop = try a.scalar(2, "stop")
        let step = a.isNil(3) ? Scalar.int(1) : try a.scalar(3, "step")
        guard step.double != 0 else { throw a.fail("step must be non-zero") }
        return a.push(try Tensor.arange(start, stop, step: step))
    } }),
    ("linspace", { L in bind(L, "parry.linspace") { a in
        let n = try a.integer(3, "steps")
        guard n >= 0 else { throw a.fail("steps must be non-negative, got \(n)") }
        return a.push(try Tensor.linspace(try a.number(1, "start"), try a.number(2, "stop"), n))
    } }),
    ("eye", { L in bind(L, "parry.eye") { a in
        let n = try a.integer(1, "n")
        let m = a.type(2) == LUA_TNUMBER ? try a.integer(2, "m") : n
        guard n >= 0, m >= 0 else { throw a.fail("sizes must be non-negative, got \(n), \(m)") }
        let o = try a.options(a.type(2) == LUA_TNUMBER ? 3 : 2, allowed: ["dtype"])
        return a.push(try Tensor.eye(n, m, dtype: try o.dtype() ?? .float32))
    } }),
    ("randperm", { L in bind(L, "parry.randperm") { a in
        let n = try a.integer(1, "n")
        guard n >= 0 else { throw a.fail("n must be non-negative, got \(n)") }
        let o = try a.options(2, allowed: ["generator"])
        return try pushIndices(a, try Tensor.randperm(n, generator: try o.generator()))
    } }),
    ("zeros_like", { L in likeBinding(L, "parry.zeros_like") { try Tensor.zeros($0, dtype: $1) } }),
    ("ones_like", { L in likeBinding(L, "parry.ones_like") { try Tensor.ones($0, dtype: $1) } }),
    ("rand_like", { L in likeBinding(L, "parry.rand_like") { s, _ in try Tensor.rand(s) } }),
    ("randn_like", { L in likeBinding(L, "parry.randn_like") { s, _ in try Tensor.randn(s) } }),
    ("full_like", { L in bind(L, "parry.full_like") { a in
        let t = try a.tensor(1, "input")
        return a.push(try Tensor.full(t.shape, try a.scalar(2, "value"), dtype: t.dtype))
    } }),
    ("Generator", { L in bind(L, "parry.Generator") { a in
        let seed = try a.optSeed(1) ?? Generator.shared.next()
        parry_pushobject(a.L, Unmanaged.passRetained(Generator(seed: seed)).toOpaque(), Int32(PARRY_GENERATOR))
        return 1
    } }),
    ("with_generator", { L in bind(L, "parry.with_generator") { a in
        guard let g: Generator = a.optObject(1, Int32(PARRY_GENERATOR)) else {
            throw a.fail("expected a parry.Generator (argument 1), got \(a.typeName(1))")
        }
        guard a.type(2) == LUA_TFUNCTION else { throw a.fail("expected a function (argument 2), got \(a.typeName(2))") }
        let top = lua_gettop(a.L)
        try Generator.$current.withValue(g) {
            try a.call(2, nresults: LUA_MULTRET) {
                for i in stride(from: 3, through: top, by: 1) { lua_pushvalue(a.L, i) }
                return max(0, top - 2)
            }
        }
        return lua_gettop(a.L) - top
    } }),
    ("get_rng_state", { L in bind(L, "parry.get_rng_state") { a in
        a.push(try Tensor(Generator.shared.state.map { Int64(bitPattern: $0) }, shape: [6]))
    } }),
    ("set_rng_state", { L in bind(L, "parry.set_rng_state") { a in
        let t = try a.tensor(1, "state")
        guard t.dtype == .int64, t.numel == 6 else { throw a.fail("state must be the int64 tensor of 6 words get_rng_state returns") }
        try Generator.shared.setState(t.int64s().map { UInt64(bitPattern: $0) })
        return 0
    } }),
    ("manual_seed", { L in bind(L, "parry.manual_seed") { a in
        Generator.shared.reseed(try a.seed(1))
        return 0
    } }),
    ("cat", { L in bind(L, "parry.cat") { a in
        let ts = try a.tensorList(1, "tensors")
        guard let first = ts.first else { throw a.fail("expected a non-empty table of tensors") }
        let d = a.isNil(2) ? 0 : try a.dim(2, ndim: first.ndim)
        return a.push(try cat(ts, dim: d))
    } }),
    ("stack", { L in bind(L, "parry.stack") { a in
        let ts = try a.tensorList(1, "tensors")
        guard let first = ts.first else { throw a.fail("expected a non-empty table of tensors") }
        let d = a.isNil(2) ? 0 : try a.dim(2, ndim: first.ndim + 1)
        return a.push(try stack(ts, dim: d))
    } }),
    ("is_tensor", { L in bind(L, "parry.is_tensor") { a in
        lua_pushboolean(a.L, a.optTensor(1) != nil ? 1 : 0); return 1
    } }),
    ("set_num_threads", { L in bind(L, "parry.set_num_threads") { a in
        let n = try a.integer(1, "n")
        guard n >= 1, n <= 1024 else { throw a.fail("n must be at least 1 and at most 1024, got \(n)") }
        Parallel.setThreads(n)
        return 0
    } }),
    ("clock", { L in bind(L, "parry.clock") { a in
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return a.push(Double(ts.tv_sec) + Double(ts.tv_nsec) * 1e-9)
    } }),
    ("get_num_threads", { L in bind(L, "parry.get_num_threads") { a in a.push(Parallel.threads) } }),
    ("blas_info", { L in bind(L, "parry.blas_info") { a in
        lua_createtable(a.L, 0, 6)
        var fields: [(String, String)] = [("library", "OpenBLAS"), ("core", BLASInfo.core), ("config", BLASInfo.config),
                                          ("core_vector", BLASInfo.vector(ofCore: BLASInfo.core).name), ("cpu_vector", BLASInfo.cpu.name)]
        if let s = BLASInfo.suggestedCore { fields.append(("suggested_core", s)) }
        for (key, v) in fields { lua_pushstring(a.L, v); lua_setfield(a.L, -2, key) }
        lua_pushboolean(a.L, BLASInfo.isFallback ? 1 : 0); lua_setfield(a.L, -2, "fallback")
        lua_pushboolean(a.L, convDirectAvailable && convDirectEnabled ? 1 : 0); lua_setfield(a.L, -2, "conv_direct")
        if convDirectEnabled, let isa = convDirectISA {
            lua_pushstring(a.L, isa); lua_setfield(a.L, -2, "conv_isa")
            lua_pushstring(a.L, convDirectWeightGrad ? "direct" : "im2col"); lua_setfield(a.L, -2, "conv_dweight")
        }
        return 1
    } }),
    ("memory_stats", { L in bind(L, "parry.memory_stats") { a in
        let pool = BufferPool.stats
        lua_createtable(a.L, 0, 4)
        for (key, v) in [("live_bytes", nativeBytes.load(ordering: .relaxed)), ("cached_bytes", pool.cachedBytes),
                         ("pool_hits", pool.hits), ("pool_misses", pool.misses)] {
            lua_pushinteger(a.L, lua_Integer(v)); lua_setfield(a.L, -2, key)
        }
        return 1
    } }),
    ("empty_cache", { L in bind(L, "parry.empty_cache") { a in
        BufferPool.release()
        return 0
    } }),
]

// MARK: - methods (also available as parry.<name>(t, ...))

let tensorOps: [(String, parry_SwiftFunction)] = [
    ("add", { binaryBinding($0, "parry.add", .add) }),
    ("sub", { binaryBinding($0, "parry.sub", .sub) }),
    ("mul", { binaryBinding($0, "parry.mul", .mul) }),
    ("div", { binaryBinding($0, "parry.div", .div) }),
    ("pow", { binaryBinding($0, "parry.pow", .pow) }),
    ("floor_divide", { binaryBinding($0, "parry.floor_divide", .floorDiv) }),
    ("remainder", { binaryBinding($0, "parry.remainder", .remainder) }),
    ("maximum", { binaryBinding($0, "parry.maximum", .maximum) }),
    ("minimum", { binaryBinding($0, "parry.minimum", .minimum) }),
    ("eq", { binaryBinding($0, "parry.eq", .eq) }),
    ("ne", { binaryBinding($0, "parry.ne", .ne) }),
    ("lt", { binaryBinding($0, "parry.lt", .lt) }),
    ("le", { binaryBinding($0, "parry.le", .le) }),
    ("gt", { binaryBinding($0, "parry.gt", .gt) }),
    ("ge", { binaryBinding($0, "parry.ge", .ge) }),
    ("neg", { unaryBinding($0, "parry.neg", .neg) }),
    ("abs", { unaryBinding($0, "parry.abs", .abs) }),
    ("sign", { unaryBinding($0, "parry.sign", .sign) }),
    ("relu", { unaryBinding($0, "parry.relu", .relu) }),
    ("exp", { unaryBinding($0, "parry.exp", .exp) }),
    ("log", { unaryBinding($0, "parry.log", .log) }),
    ("sqrt", { unaryBinding($0, "parry.sqrt", .sqrt) }),
    ("rsqrt", { unaryBinding($0, "parry.rsqrt", .rsqrt) }),
    ("sigmoid", { unaryBinding($0, "parry.sigmoid", .sigmoid) }),
    ("tanh", { unaryBinding($0, "parry.tanh", .tanh) }),
    ("sin", { unaryBinding($0, "parry.sin", .sin) }),
    ("cos", { unaryBinding($0, "parry.cos", .cos) }),
    ("floor", { unaryBinding($0, "parry.floor", .floor) }),
    ("ceil", { unaryBinding($0, "parry.ceil", .ceil) }),
    ("round", { unaryBinding($0, "parry.round", .round) }),
    ("log1p", { unaryBinding($0, "parry.log1p", .log1p) }),
    ("expm1", { unaryBinding($0, "parry.expm1", .expm1) }),
    ("erf", { unaryBinding($0, "parry.erf", .erf) }),
    ("clamp", { L in bind(L, "parry.clamp") { a in
        let t = try a.tensor(1)
        let lo = a.isNil(2) ? nil : try a.scalar(2, "min"), hi = a.isNil(3) ? nil : try a.scalar(3, "max")
        return a.push(try t.clamp(lo, hi))
    } }),
    ("softmax", { softmaxBinding($0, "parry.softmax", log: false) }),
    ("log_softmax", { softmaxBinding($0, "parry.log_softmax", log: true) }),
    ("matmul", { L in bind(L, "parry.matmul") { a in
        a.push(try a.tensor(1, "input").matmul(try a.tensor(2, "other")))
    } }),
    ("sum", { L in bind(L, "parry.sum") { a in
        let t = try a.tensor(1); let r = try reductionArgs(a, from: 2, ndim: t.ndim)
        return a.push(try t.sum(dim: r.dim, keepdim: r.keepdim))
    } }),
    ("mean", { L in bind(L, "parry.mean") { a in
        let t = try a.tensor(1); let r = try reductionArgs(a, from: 2, ndim: t.ndim)
        return a.push(try t.mean(dim: r.dim, keepdim: r.keepdim))
    } }),
    ("var", { varianceBinding($0, "parry.var", std: false) }),
    ("std", { varianceBinding($0, "parry.std", std: true) }),
    ("max", { extremumBinding($0, "parry.max", largest: true) }),
    ("min", { extremumBinding($0, "parry.min", largest: false) }),
    ("argmax", { argExtremumBinding($0, "parry.argmax", largest: true) }),
    ("argmin", { argExtremumBinding($0, "parry.argmin", largest: false) }),
    ("norm", { L in bind(L, "parry.norm") { a in
        let t = try a.tensor(1)
        var p = 2.0
        if a.type(2) == LUA_TSTRING {
            let s = try a.string(2, "p")
            switch s {
            case "inf": p = .infinity
            case "fro": p = 2
            default: throw a.fail("unknown norm '\(s)' (expected a number, \"inf\" or \"fro\")")
            }
        } else if !a.isNil(2) {
            p = try a.number(2, "p")
            guard p >= 0 else { throw a.fail("p must be non-negative, got \(p)") }
        }
        let r = try reductionArgs(a, from: 3, ndim: t.ndim)
        return a.push(try t.norm(p: p, dim: r.dim, keepdim: r.keepdim))
    } }),
    ("where", { L in bind(L, "parry.where") { a in
        a.push(try whereSelect(try a.tensor(1, "mask"), try a.tensorOrScalar(2, "input"), try a.tensorOrScalar(3, "other")))
    } }),

    // Shape and views.
    ("reshape", { L in bind(L, "parry.reshape") { a in
        let t = try a.tensor(1); let (s, _) = try a.sizes(from: 2); return a.push(try t.reshape(s))
    } }),
    ("view", { L in bind(L, "parry.view") { a in
        let t = try a.tensor(1); let (s, _) = try a.sizes(from: 2); return a.push(try t.view(s))
    } }),
    ("flatten", { L in bind(L, "parry.flatten") { a in
        let t = try a.tensor(1)
        if t.ndim == 0 { return a.push(try t.reshape([1])) }
        let s = try a.optDim(2, ndim: t.ndim, "start_dim") ?? 0, e = try a.optDim(3, ndim: t.ndim, "end_dim") ?? t.ndim - 1
        guard s <= e else { throw a.fail("start_dim \(s + 1) comes after end_dim \(e + 1)") }
        return a.push(try t.flatten(s, e))
    } }),
    ("squeeze", { L in bind(L, "parry.squeeze") { a in
        let t = try a.tensor(1); return a.push(try t.squeeze(try a.optDim(2, ndim: t.ndim)))
    } }),
    ("unsqueeze", { L in bind(L, "parry.unsqueeze") { a in
        let t = try a.tensor(1)
        guard t.ndim < Tensor.maxDims else { throw a.fail("tensors have at most \(Tensor.maxDims) dimensions") }
        return a.push(try t.unsqueeze(try a.dim(2, ndim: t.ndim + 1)))
    } }),
    ("transpose", { L in bind(L, "parry.transpose") { a in
        let t = try a.tensor(1)
        return a.push(try t.transpose(try a.dim(2, ndim: t.ndim, "dim0"), try a.dim(3, ndim: t.ndim, "dim1")))
    } }),
    ("t", { L in bind(L, "parry.t") { a in
        let t = try a.tensor(1)
        guard t.ndim <= 2 else { throw a.fail("expected a tensor with at most 2 dimensions, got \(t.ndim)") }
        return a.push(t.ndim == 2 ? try t.transpose(0, 1) : t)
    } }),
    ("permute", { L in bind(L, "parry.permute") { a in
        let t = try a.tensor(1); let (s, _) = try a.sizes(from: 2, "dims")
        guard s.count == t.ndim else { throw a.fail("expected \(t.ndim) dims, got \(s.count)") }
        return a.push(try t.permute(try s.map { try a.normalizeDim($0, ndim: t.ndim) }))
    } }),
    ("expand", { L in bind(L, "parry.expand") { a in
        let t = try a.tensor(1); let (s, _) = try a.sizes(from: 2); return a.push(try t.expand(s))
    } }),
    ("narrow", { L in bind(L, "parry.narrow") { a in
        let t = try a.tensor(1)
        let d = try a.dim(2, ndim: t.ndim)
        let start = try a.normalizeIndex(try a.integer(3, "start"), size: t.shape[d] + 1, "start")
        let len = try a.integer(4, "length")
        return a.push(try t.narrow(d, start, len))
    } }),
    ("select", { L in bind(L, "parry.select") { a in
        let t = try a.tensor(1)
        let d = try a.dim(2, ndim: t.ndim)
        return a.push(try t.select(d, try a.normalizeIndex(try a.integer(3, "index"), size: t.shape[d])))
    } }),
    ("index_select", { L in bind(L, "parry.index_select") { a in
        let t = try a.tensor(1)
        let d = try a.dim(2, ndim: t.ndim)
        return a.push(try t.indexSelect(d, try indexList(a, 3, size: t.shape[d])))
    } }),
    ("gather", { L in bind(L, "parry.gather") { a in
        let t = try a.tensor(1)
        let d = try a.dim(2, ndim: t.ndim)
        let idx = try a.tensor(3, "index")
        guard idx.dtype == .int64 else { throw a.fail("index must be an int64 tensor, got \(idx.dtype.rawValue)") }
        let n = Int64(t.shape[d])
        // 1-based (or negative from the end) to 0-based; out-of-range stays invalid.
        let zeroBased = try whereSelect(idx.binary(.lt, .int(0)), idx.binary(.add, .int(n)), idx.binary(.sub, .int(1)))
        return a.push(try t.gather(d, zeroBased))
    } }),
    ("split", { L in bind(L, "parry.split") { a in
        let t = try a.tensor(1)
        guard t.ndim > 0 else { throw a.fail("cannot split a 0-d tensor") }
        let n = try a.integer(2, "split_size")
        guard n > 0 else { throw a.fail("split_size must be positive, got \(n)") }
        return a.push(try t.split(n, dim: try a.optDim(3, ndim: t.ndim) ?? 0))
    } }),
    ("chunk", { L in bind(L, "parry.chunk") { a in
        let t = try a.tensor(1)
        guard t.ndim > 0 else { throw a.fail("cannot chunk a 0-d tensor") }
        let n = try a.integer(2, "chunks")
        guard n > 0 else { throw a.fail("chunks must be positive, got \(n)") }
        return a.push(try t.chunk(n, dim: try a.optDim(3, ndim: t.ndim) ?? 0))
    } }),
    ("contiguous", { L in bind(L, "parry.contiguous") { a in a.push(try a.tensor(1).contiguous()) } }),
    ("clone", { L in bind(L, "parry.clone") { a in a.push(try a.tensor(1).clone()) } }),
]

/// Inspection, conversion and in-place methods: only as `t:name(...)`.
let tensorOnlyMethods: [(String, parry_SwiftFunction)] = [
    ("shape", { L in bind(L, "Tensor:shape") { a in a.push(sizes: try a.tensor(1).shape) } }),
    ("size", { L in bind(L, "Tensor:size") { a in
        let t = try a.tensor(1)
        return a.isNil(2) ? a.push(sizes: t.shape) : a.push(t.shape[try a.dim(2, ndim: t.ndim)])
    } }),
    ("dim", { L in bind(L, "Tensor:dim") { a in a.push(try a.tensor(1).ndim) } }),
    ("numel", { L in bind(L, "Tensor:numel") { a in a.push(try a.tensor(1).numel) } }),
    ("dtype", { L in bind(L, "Tensor:dtype") { a in pushString(a.L, try a.tensor(1).dtype.rawValue); return 1 } }),
    ("is_contiguous", { L in bind(L, "Tensor:is_contiguous") { a in
        lua_pushboolean(a.L, try a.tensor(1).isContiguous ? 1 : 0); return 1
    } }),
    ("item", { L in bind(L, "Tensor:item") { a in a.push(try a.tensor(1).item()) } }),
    ("totable", { L in bind(L, "Tensor:totable") { a in pushNested(a, try a.tensor(1)); return 1 } }),
    ("float", { L in bind(L, "Tensor:float") { a in a.push(try a.tensor(1).to(.float32)) } }),
    ("long", { L in bind(L, "Tensor:long") { a in a.push(try a.tensor(1).to(.int64)) } }),
    ("to", { L in bind(L, "Tensor:to") { a in
        let t = try a.tensor(1), s = try a.string(2, "dtype")
        guard let d = DType(rawValue: s) else { throw a.fail("unknown dtype '\(s)' (expected \"float32\" or \"int64\")") }
        return a.push(t.to(d))
    } }),
    ("add_", { inplaceBinaryBinding($0, "Tensor:add_", .add) }),
    ("sub_", { inplaceBinaryBinding($0, "Tensor:sub_", .sub) }),
    ("mul_", { inplaceBinaryBinding($0, "Tensor:mul_", .mul) }),
    ("div_", { inplaceBinaryBinding($0, "Tensor:div_", .div) }),
    ("pow_", { inplaceBinaryBinding($0, "Tensor:pow_", .pow) }),
    ("neg_", { inplaceUnaryBinding($0, "Tensor:neg_", .neg) }),
    ("abs_", { inplaceUnaryBinding($0, "Tensor:abs_", .abs) }),
    ("relu_", { inplaceUnaryBinding($0, "Tensor:relu_", .relu) }),
    ("exp_", { inplaceUnaryBinding($0, "Tensor:exp_", .exp) }),
    ("log_", { inplaceUnaryBinding($0, "Tensor:log_", .log) }),
    ("sqrt_", { inplaceUnaryBinding($0, "Tensor:sqrt_", .sqrt) }),
    ("sigmoid_", { inplaceUnaryBinding($0, "Tensor:sigmoid_", .sigmoid) }),
    ("tanh_", { inplaceUnaryBinding($0, "Tensor:tanh_", .tanh) }),
    ("clamp_", { L in bind(L, "Tensor:clamp_") { a in
        let t = try a.tensor(1)
        let lo = a.isNil(2) ? nil : try a.scalar(2, "min"), hi = a.isNil(3) ? nil : try a.scalar(3, "max")
        try t.clamp_(lo, hi)
        lua_pushvalue(a.L, 1); return 1
    } }),
    ("zero_", { L in bind(L, "Tensor:zero_") { a in
        try a.tensor(1).fill_(.int(0)); lua_pushvalue(a.L, 1); return 1
    } }),
    ("fill_", { L in bind(L, "Tensor:fill_") { a in
        try a.tensor(1).fill_(try a.scalar(2, "value")); lua_pushvalue(a.L, 1); return 1
    } }),
    ("copy_", { L in bind(L, "Tensor:copy_") { a in
        try a.tensor(1).copy_(try a.tensor(2, "src")); lua_pushvalue(a.L, 1); return 1
    } }),
    ("uniform_", { L in bind(L, "Tensor:uniform_") { a in
        let lo = try a.optNumber(2, "from", 0), hi = try a.optNumber(3, "to", 1)
        guard lo <= hi else { throw a.fail("expected from <= to, got \(lo) > \(hi)") }
        let o = try a.options(4, allowed: ["generator"])
        try a.tensor(1).uniform_(lo, hi, generator: try o.generator()); lua_pushvalue(a.L, 1); return 1
    } }),
    ("normal_", { L in bind(L, "Tensor:normal_") { a in
        let mean = try a.optNumber(2, "mean", 0), std = try a.optNumber(3, "std", 1)
        guard std >= 0 else { throw a.fail("std must be non-negative, got \(std)") }
        let o = try a.options(4, allowed: ["generator"])
        try a.tensor(1).normal_(mean, std, generator: try o.generator()); lua_pushvalue(a.L, 1); return 1
    } }),
]

// MARK: - metamethods

let tensorMetamethods: [(String, parry_SwiftFunction)] = [
    ("__add", { binaryBinding($0, "parry.add", .add) }),
    ("__sub", { binaryBinding($0, "parry.sub", .sub) }),
    ("__mul", { binaryBinding($0, "parry.mul", .mul) }),
    ("__div", { binaryBinding($0, "parry.div", .div) }),
    ("__pow", { binaryBinding($0, "parry.pow", .pow) }),
    ("__idiv", { binaryBinding($0, "parry.floor_divide", .floorDiv) }),
    ("__mod", { binaryBinding($0, "parry.remainder", .remainder) }),
    ("__unm", { unaryBinding($0, "parry.neg", .neg) }),
    ("__gc", tensorGC),
    ("__tostring", { L in bind(L, "tostring") { a in pushString(a.L, try a.tensor(1).description); return 1 } }),
    ("__len", { L in bind(L, "#tensor") { a in
        let t = try a.tensor(1)
        guard t.ndim > 0 else { throw a.fail("a 0-d tensor has no length") }
        return a.push(t.shape[0])
    } }),
    ("__newindex", { L in bind(L, "Tensor[i]") { a in
        let t = try a.tensor(1)
        if a.type(2) == LUA_TSTRING { try setTensorField(a, t, try a.string(2, "key")); return 0 }
        guard a.type(2) == LUA_TNUMBER else { throw a.fail("cannot assign field '\(a.typeName(2))' of a tensor") }
        guard t.ndim > 0 else { throw a.fail("cannot index a 0-d tensor") }
        if t.requiresGrad && GradMode.isEnabled {
            throw a.fail(t.isLeaf ? "a leaf tensor that requires grad cannot be modified in place (use no_grad, or detach())"
                                  : "in-place operation on a tensor that is part of the graph (use clone() first)")
        }
        let target = try t.select(0, try a.normalizeIndex(try a.integer(2, "index"), size: t.shape[0]))
        if let v = a.optTensor(3) { try target.copy_(v) } else { try target.fill_(try a.scalar(3, "value")) }
        return 0
    } }),
]

/// `__index` for names that are not methods: `t[i]` and fields.
let tensorIndexFallback: parry_SwiftFunction = { L in
    bind(L, "Tensor[i]") { a in
        let t = try a.tensor(1)
        guard a.type(2) == LUA_TNUMBER else {
            if a.type(2) == LUA_TSTRING { return pushTensorField(a, t, try a.string(2, "key")) }
            lua_pushnil(a.L); return 1
        }
        guard t.ndim > 0 else { throw a.fail("cannot index a 0-d tensor") }
        let s = try t.select(0, try a.normalizeIndex(try a.integer(2, "index"), size: t.shape[0]))
        return t.ndim == 1 ? a.push(try s.item()) : a.push(s)
    }
}

// MARK: - generators

/// Methods of parry.Generator userdata: `g:manual_seed(n)` reseeds it.
let generatorMethods: [(String, parry_SwiftFunction)] = [
    ("manual_seed", { L in bind(L, "Generator:manual_seed") { a in
        guard let g: Generator = a.optObject(1, Int32(PARRY_GENERATOR)) else {
            throw a.fail("expected a generator for self (argument 1), got \(a.typeName(1))")
        }
        g.reseed(try a.seed(2))
        lua_pushvalue(a.L, 1)
        return 1
    } }),
    ("__gc", { L in
        if let L, let p = parry_takeobject(L, 1, Int32(PARRY_GENERATOR)) { Unmanaged<Generator>.fromOpaque(p).release() }
        return 0
    }),
    // g:get_state() -> int64 tensor of 6 words; g:set_state(t)
    ("get_state", { L in bind(L, "Generator:get_state") { a in
        guard let g: Generator = a.optObject(1, Int32(PARRY_GENERATOR)) else {
            throw a.fail("expected a generator for self (argument 1), got \(a.typeName(1))")
        }
        return a.push(try Tensor(g.state.map { Int64(bitPattern: $0) }, shape: [6]))
    } }),
    ("set_state", { L in bind(L, "Generator:set_state") { a in
        guard let g: Generator = a.optObject(1, Int32(PARRY_GENERATOR)) else {
            throw a.fail("expected a generator for self (argument 1), got \(a.typeName(1))")
        }
        let t = try a.tensor(2, "state")
        guard t.dtype == .int64, t.numel == 6 else { throw a.fail("state must be the int64 tensor of 6 words get_state returns") }
        try g.setState(t.int64s().map { UInt64(bitPattern: $0) })
        lua_pushvalue(a.L, 1)
        return 1
    } }),
    ("__tostring", { L in bind(L, "tostring") { a in pushString(a.L, "parry.Generator"); return 1 } }),
]
