import CLua
import CLuaShim
import ParryCore
import ParryDist
import ParryNN

// Bindings of parry.nn, parry.losses and parry.optim. Modules are userdata
// boxing Swift `Module`s; each has one user value, a "fields" table that
// holds Lua-side state: plain fields and the class of Lua-defined modules,
// and Lua references to children (so a Lua-defined child stays alive while
// its parent is). The same Swift module always maps to the same userdata
// (a weak cache keyed by the object's address). Method lookup order, class
// machinery and __newindex live in stdlib/parry/nn.lua.

/// The Lua state running the current binding; modules defined in Lua call
/// back into it from Swift containers (set around every forward from Lua).
enum LuaContext {
    nonisolated(unsafe) static var current: LuaState?

    static func with<T>(_ L: LuaState, _ body: () throws -> T) rethrows -> T {
        let saved = current
        current = L
        defer { current = saved }
        return try body()
    }
}

private var moduleCacheKey: UInt8 = 0
private var forwardHelperKey: UInt8 = 0

/// A module whose forward is Lua code (`nn.Module:extend`): Swift containers
/// call back into Lua through `nn.lua`'s forward helper.
final class LuaModule: ClosureModule {
    override func emptyCopy() throws -> Module { LuaModule(name: name) }
    override func forward(_ x: Tensor) throws -> Tensor {
        guard let L = LuaContext.current else { throw TensorError("\(name) can only run from Lua") }
        guard lua_checkstack(L, 6) != 0 else { throw TensorError("Lua stack overflow") }
        lua_rawgetp(L, parry_registryindex(), &forwardHelperKey)
        guard lua_type(L, -1) == LUA_TFUNCTION else { parry_pop(L, 1); throw TensorError("parry.nn is not loaded") }
        guard pushModuleIfAlive(L, self) else { parry_pop(L, 1); throw TensorError("\(name) was collected by Lua") }
        pushTensor(L, x)
        if parry_pcall(L, 2, 1, 0) != LUA_OK {
            let msg = parry_tostring(L, -1, nil).map { String(cString: $0) } ?? "error in \(name).forward"
            parry_pop(L, 1)
            throw LuaCallError(message: msg)
        }
        defer { parry_pop(L, 1) }
        guard let p = parry_toobject(L, -1, Int32(PARRY_TENSOR)) else {
            throw TensorError("\(name):forward must return a tensor when used inside a container")
        }
        return Unmanaged<Tensor>.fromOpaque(p).takeUnretainedValue()
    }
}

extension LuaArgs {
    /// Keeps the function at `i` in the registry under `key` (the helpers
    /// stdlib modules hand to their bindings).
    func storeFunction(_ i: Int32, at key: UnsafeMutableRawPointer) throws -> Int32 {
        guard type(i) == LUA_TFUNCTION else { throw fail("expected a function") }
        lua_pushvalue(L, i)
        lua_rawsetp(L, parry_registryindex(), key)
        return 0
    }
}

/// Pushes the cached userdata of `m` if there is one.
@discardableResult
private func pushModuleIfAlive(_ L: LuaState, _ m: Module) -> Bool {
    lua_rawgetp(L, parry_registryindex(), &moduleCacheKey)
    let cache = lua_gettop(L)
    if lua_rawgetp(L, cache, Unmanaged.passUnretained(m).toOpaque()) == LUA_TUSERDATA {
        parry_remove(L, cache)
        return true
    }
    parry_pop(L, 2)
    return false
}

/// Pushes the userdata for `m`, creating it (with a fresh fields table) once.
func pushModule(_ L: LuaState, _ m: Module) {
    if pushModuleIfAlive(L, m) { return }
    parry_pushobject_uv(L, Unmanaged.passRetained(m).toOpaque(), Int32(PARRY_MODULE), 1)
    lua_createtable(L, 0, 2)
    lua_setiuservalue(L, -2, 1)
    lua_rawgetp(L, parry_registryindex(), &moduleCacheKey)
    lua_pushvalue(L, -2)
    lua_rawsetp(L, -2, Unmanaged.passUnretained(m).toOpaque())
    parry_pop(L, 1)
}

/// Stores the Lua value at `value` in the fields table of the module at
/// `owner` under __children[name] (nil removes), keeping it alive.
private func keepChild(_ L: LuaState, owner: Int32, name: String, value: Int32) {
    let owner = lua_absindex(L, owner), value = lua_absindex(L, value)
    lua_getiuservalue(L, owner, 1)
    if lua_getfield(L, -1, "__children") != LUA_TTABLE {
        parry_pop(L, 1)
        lua_createtable(L, 0, 4)
        lua_pushvalue(L, -1)
        lua_setfield(L, -3, "__children")
    }
    pushString(L, name)
    lua_pushvalue(L, value)
    lua_rawset(L, -3)
    parry_pop(L, 2)
}

extension LuaArgs {
    /// A state dict given as a table of name = tensor, in sorted name order.
    func stateDict(_ i: Int32) throws -> [(name: String, tensor: Tensor)] {
        guard type(i) == LUA_TTABLE else { throw fail("expected a table of name = tensor (argument \(i)), got \(typeName(i))") }
        let t = lua_absindex(L, i)
        var entries = [(name: String, tensor: Tensor)]()
        lua_pushnil(L)
        while lua_next(L, t) != 0 {
            defer { pop() }
            guard lua_type(L, -2) == LUA_TSTRING, let k = parry_tostring(L, -2, nil) else {
                pop(); throw fail("state dict keys must be strings")
            }
            guard let v = optTensor(-1) else { let key = String(cString: k); pop(); throw fail("state dict entry '\(key)' is not a tensor") }
            entries.append((String(cString: k), v))
        }
        return entries.sorted { $0.name < $1.name }
    }

    func optModule(_ i: Int32) -> Module? { optObject(i, Int32(PARRY_MODULE)) }

    func module(_ i: Int32, _ what: String = "self") throws -> Module {
        if let m = optModule(i) { return m }
        throw fail("expected a module for \(what) (argument \(i)), got \(typeName(i))")
    }

    /// A list of modules from a table at `i`, each kept alive by the module
    /// that will be pushed next (see `adoptChildren`).
    func moduleList(_ i: Int32, _ what: String) throws -> [Module] {
        try objectList(i, Int32(PARRY_MODULE), what, "modules")
    }

    /// Pushes container `m` built from the module list at `list`, keeping each
    /// listed userdata alive through the container's fields.
    func pushContainer(_ m: Module, children list: Int32) -> Int32 {
        pushModule(L, m)
        for k in 1...max(rawLength(list), 1) where k <= rawLength(list) {
            let j = rawIndex(list, k)
            keepChild(L, owner: -2, name: String(k), value: j)
            pop()
        }
        return 1
    }

    /// Labels 1..C from Lua as a 0-based int64 tensor.
    func labels(_ i: Int32, _ what: String = "y") throws -> Tensor {
        let y = try tensor(i, what)
        guard y.dtype == .int64 else { throw fail("\(what) must be an int64 tensor of labels 1..C, got \(y.dtype.rawValue)") }
        return try y.binary(.sub, .int(1))
    }

    func reduction(_ o: LuaOptions, allowBatchmean: Bool = false) throws -> Reduction {
        guard let s = try o.string("reduction") else { return .mean }
        guard let r = Reduction(rawValue: s), r != .batchmean || allowBatchmean else {
            throw fail("unknown reduction '\(s)' (expected \"mean\", \"sum\" or \"none\"\(allowBatchmean ? " or \"batchmean\"" : ""))")
        }
        return r
    }
}

// MARK: - constructors (parry.nn)

let nnConstructors: [(String, parry_SwiftFunction)] = [
    ("Linear", { L in bind(L, "nn.Linear") { a in
        let o = try a.options(3, allowed: ["bias"])
        return pushModuleResult(a, try Linear(try a.integer(1, "in_features"), try a.integer(2, "out_features"), bias: try o.bool("bias") ?? true))
    } }),
    ("Conv2d", { L in bind(L, "nn.Conv2d") { a in
        let o = try a.options(4, allowed: ["stride", "padding", "bias"])
        return pushModuleResult(a, try Conv2d(try a.integer(1, "in_channels"), try a.integer(2, "out_channels"), try a.integer(3, "kernel_size"),
                                              stride: try o.integer("stride") ?? 1, padding: try o.integer("padding") ?? 0, bias: try o.bool("bias") ?? true))
    } }),
    ("MaxPool2d", { L in bind(L, "nn.MaxPool2d") { a in
        let k = try a.integer(1, "kernel_size"); let o = try a.options(2, allowed: ["stride", "padding"])
        guard k > 0 else { throw a.fail("kernel_size must be positive, got \(k)") }
        return pushModuleResult(a, MaxPool2d(k, stride: try o.integer("stride"), padding: try o.integer("padding") ?? 0))
    } }),
    ("AvgPool2d", { L in bind(L, "nn.AvgPool2d") { a in
        let k = try a.integer(1, "kernel_size"); let o = try a.options(2, allowed: ["stride", "padding"])
        guard k > 0 else { throw a.fail("kernel_size must be positive, got \(k)") }
        return pushModuleResult(a, AvgPool2d(k, stride: try o.integer("stride"), padding: try o.integer("padding") ?? 0))
    } }),
    ("AdaptiveAvgPool2d", { L in bind(L, "nn.AdaptiveAvgPool2d") { a in
        let n = try a.integer(1, "output_size")
        guard n > 0 else { throw a.fail("output_size must be positive, got \(n)") }
        return pushModuleResult(a, AdaptiveAvgPool2d(n))
    } }),
    ("BatchNorm1d", { L in bind(L, "nn.BatchNorm1d") { a in
        let o = try a.options(2, allowed: ["momentum", "eps"])
        return pushModuleResult(a, try BatchNorm(try a.integer(1, "num_features"), spatial: false, momentum: try o.number("momentum") ?? 0.1, eps: try o.number("eps") ?? 1e-5))
    } }),
    ("BatchNorm2d", { L in bind(L, "nn.BatchNorm2d") { a in
        let o = try a.options(2, allowed: ["momentum", "eps"])
        return pushModuleResult(a, try BatchNorm(try a.integer(1, "num_features"), spatial: true, momentum: try o.number("momentum") ?? 0.1, eps: try o.number("eps") ?? 1e-5))
    } }),
    ("Conv1d", { L in bind(L, "nn.Conv1d") { a in
        let o = try a.options(4, allowed: ["stride", "padding", "bias"])
        return pushModuleResult(a, try Conv1d(try a.integer(1, "in_channels"), try a.integer(2, "out_channels"), try a.integer(3, "kernel_size"),
                                              stride: try o.integer("stride") ?? 1, padding: try o.integer("padding") ?? 0, bias: try o.bool("bias") ?? true))
    } }),
    ("MaxPool1d", { L in bind(L, "nn.MaxPool1d") { a in
        let k = try a.integer(1, "kernel_size"); let o = try a.options(2, allowed: ["stride"])
        return pushModuleResult(a, try MaxPool1d(k, stride: try o.integer("stride")))
    } }),
    ("AdaptiveMaxPool1d", { L in bind(L, "nn.AdaptiveMaxPool1d") { a in
        pushModuleResult(a, try AdaptiveMaxPool1d(try a.integer(1, "output_size")))
    } }),
    ("LayerNorm", { L in bind(L, "nn.LayerNorm") { a in
        let shape = a.type(1) == LUA_TTABLE ? try a.integerList(1, "normalized_shape") : [try a.integer(1, "normalized_shape")]
        let o = try a.options(2, allowed: ["eps", "elementwise_affine"])
        return pushModuleResult(a, try LayerNorm(shape, eps: try o.number("eps") ?? 1e-5, elementwiseAffine: try o.bool("elementwise_affine") ?? true))
    } }),
    ("Embedding", { L in bind(L, "nn.Embedding") { a in
        pushModuleResult(a, try Embedding(try a.integer(1, "num_embeddings"), try a.integer(2, "embedding_dim"), indexBase: 1))
    } }),
    ("Dropout", { L in bind(L, "nn.Dropout") { a in pushModuleResult(a, try Dropout(try a.optNumber(1, "p", 0.5))) } }),
    ("ReLU", { L in bind(L, "nn.ReLU") { a in pushModuleResult(a, Activation(.ReLU)) } }),
    ("Tanh", { L in bind(L, "nn.Tanh") { a in pushModuleResult(a, Activation(.Tanh)) } }),
    ("Sigmoid", { L in bind(L, "nn.Sigmoid") { a in pushModuleResult(a, Activation(.Sigmoid)) } }),
    ("GELU", { L in bind(L, "nn.GELU") { a in pushModuleResult(a, Activation(.GELU)) } }),
    ("LeakyReLU", { L in bind(L, "nn.LeakyReLU") { a in pushModuleResult(a, Activation(.LeakyReLU, slope: try a.optNumber(1, "negative_slope", 0.01))) } }),
    ("Flatten", { L in bind(L, "nn.Flatten") { a in pushModuleResult(a, Flatten()) } }),
    ("Identity", { L in bind(L, "nn.Identity") { a in pushModuleResult(a, Identity()) } }),
    ("Sequential", { L in bind(L, "nn.Sequential") { a in
        a.pushContainer(Sequential(try a.moduleList(1, "modules")), children: 1)
    } }),
    ("Ensemble", { L in bind(L, "nn.Ensemble") { a in
        a.pushContainer(try Ensemble(try a.moduleList(1, "members")), children: 1)
    } }),
    ("_new_lua_module", { L in bind(L, "nn.Module") { a in
        let name = try a.string(1, "name")
        pushModule(a.L, LuaModule(name: name))
        return 1
    } }),
    // interval_bounds(model, lo, hi) -> lo_out, hi_out
    ("interval_bounds", { L in bind(L, "nn.interval_bounds") { a in
        let m = try a.module(1, "model")
        let lo = try a.tensor(2, "lo"), hi = try a.tensor(3, "hi")
        let b = try LuaContext.with(a.L) { try IntervalBounds.propagate(m, lo: lo, hi: hi) }
        a.push(b.lo); a.push(b.hi)
        return 2
    } }),
    ("_set_forward_helper", { L in bind(L, "nn._set_forward_helper") { a in try a.storeFunction(1, at: &forwardHelperKey) } }),
    ("_fields", { L in bind(L, "nn._fields") { a in
        _ = try a.module(1)
        lua_getiuservalue(a.L, 1, 1)
        return 1
    } }),
    // interpolate(sd_a, sd_b, alpha) -> (1−α)·a + α·b per float tensor (integers from a)
    ("interpolate", { L in bind(L, "nn.interpolate") { a in
        let sa = try a.stateDict(1), sb = try a.stateDict(2)
        let alpha = try a.number(3, "alpha")
        let out = try StateDict.interpolate(sa, sb, alpha: alpha)
        lua_createtable(a.L, 0, Int32(clamping: out.count))
        for (n, t) in out { pushString(a.L, n); pushTensor(a.L, t); lua_rawset(a.L, -3) }
        return 1
    } }),
    ("is_module", { L in bind(L, "nn.is_module") { a in lua_pushboolean(a.L, a.optModule(1) != nil ? 1 : 0); return 1 } }),
    // Entries by name: child module, parameter or buffer (nil if none).
    ("_get", { L in bind(L, "nn._get") { a in
        let m = try a.module(1)
        let key = a.type(2) == LUA_TNUMBER ? String(try a.integer(2, "key")) : try a.string(2, "key")
        if let c = m.child(key) { pushModule(a.L, c); return 1 }
        if let p = m.parameter(key) ?? m.buffer(key) { return a.push(p) }
        lua_pushnil(a.L); return 1
    } }),
    // Registers a module (as child), a tensor (parameter if it requires grad,
    // else buffer) or nil (removes) under `key`; returns true if registered.
    ("_set", { L in bind(L, "nn._set") { a in
        let m = try a.module(1)
        let key = a.type(2) == LUA_TNUMBER ? String(try a.integer(2, "key")) : try a.string(2, "key")
        m.removeEntry(named: key)
        keepChild(a.L, owner: 1, name: key, value: 3)
        if let c = a.optModule(3) {
            guard !c.contains(m) else { throw a.fail("'\(key)' would make the module its own descendant (a cycle)") }
            m.register(module: c, as: key)
        } else if let t = a.optTensor(3) {
            if t.requiresGrad { m.register(parameter: t, as: key) } else { m.register(buffer: t, as: key) }
        } else {
            lua_pushboolean(a.L, 0); return 1
        }
        lua_pushboolean(a.L, 1); return 1
    } }),
]

private func pushModuleResult(_ a: LuaArgs, _ m: Module) -> Int32 {
    pushModule(a.L, m)
    return 1
}

// MARK: - module methods

let moduleMethods: [(String, parry_SwiftFunction)] = [
    ("forward", { L in bind(L, "Module:forward") { a in
        let m = try a.module(1)
        let x = try a.tensor(2, "input")
        return a.push(try LuaContext.with(a.L) { try m(x) })
    } }),
    ("_hook", { L in bind(L, "Module:_hook") { a in
        let m = try a.module(1)
        if let y = a.optTensor(2) { try m.forwardHook?(y) }
        return 0
    } }),
    ("parameters", { L in bind(L, "Module:parameters") { a in a.push(try a.module(1).allParameters()) } }),
    ("named_parameters", { L in bind(L, "Module:named_parameters") { a in
        pushNamed(a, try a.module(1).namedParameters().map { ($0.name, $0.tensor) }) { pushTensor(a.L, $0) }; return 1
    } }),
    ("named_buffers", { L in bind(L, "Module:named_buffers") { a in
        pushNamed(a, try a.module(1).namedBuffers().map { ($0.name, $0.tensor) }) { pushTensor(a.L, $0) }; return 1
    } }),
    ("modules", { L in bind(L, "Module:modules") { a in
        let ms = try a.module(1).namedModules()
        lua_createtable(a.L, Int32(clamping: ms.count), 0)
        for (k, (_, m)) in ms.enumerated() { pushModule(a.L, m); lua_rawseti(a.L, -2, lua_Integer(k + 1)) }
        return 1
    } }),
    ("named_modules", { L in bind(L, "Module:named_modules") { a in
        pushNamed(a, try a.module(1).namedModules().map { ($0.name, $0.module) }) { pushModule(a.L, $0) }
        return 1
    } }),
    ("train", { L in bind(L, "Module:train") { a in
        try a.module(1).train(try a.optBool(2, "mode", true)); lua_pushvalue(a.L, 1); return 1
    } }),
    ("eval", { L in bind(L, "Module:eval") { a in try a.module(1).eval(); lua_pushvalue(a.L, 1); return 1 } }),
    ("is_training", { L in bind(L, "Module:is_training") { a in lua_pushboolean(a.L, try a.module(1).training ? 1 : 0); return 1 } }),
    ("zero_grad", { L in bind(L, "Module:zero_grad") { a in try a.module(1).zeroGrad(); return 0 } }),
    ("freeze", { L in bind(L, "Module:freeze") { a in try a.module(1).freeze(); lua_pushvalue(a.L, 1); return 1 } }),
    ("unfreeze", { L in bind(L, "Module:unfreeze") { a in try a.module(1).unfreeze(); lua_pushvalue(a.L, 1); return 1 } }),
    ("is_frozen", { L in bind(L, "Module:is_frozen") { a in lua_pushboolean(a.L, try a.module(1).frozen ? 1 : 0); return 1 } }),
    ("requires_grad_", { L in bind(L, "Module:requires_grad_") { a in
        try a.module(1).requiresGrad_(try a.optBool(2, "requires_grad", true)); lua_pushvalue(a.L, 1); return 1
    } }),
    ("state_dict", { L in bind(L, "Module:state_dict") { a in
        let sd = try a.module(1).stateDict()
        lua_createtable(a.L, 0, Int32(clamping: sd.count))
        for (n, t) in sd { pushString(a.L, n); pushTensor(a.L, t); lua_rawset(a.L, -3) }
        return 1
    } }),
    ("load_state_dict", { L in bind(L, "Module:load_state_dict") { a in
        let m = try a.module(1)
        let entries = try a.stateDict(2)
        let o = try a.options(3, allowed: ["strict"])
        try m.loadStateDict(entries, strict: try o.bool("strict") ?? true)
        return 0
    } }),
    // get(name) -> the submodule at a dotted name ("layer2.1.conv2")
    ("get", { L in bind(L, "Module:get") { a in
        pushModule(a.L, try a.module(1).submodule(try a.string(2, "name")))
        return 1
    } }),
    ("_clone", { L in bind(L, "Module:_clone") { a in
        pushModule(a.L, try a.module(1).clone())
        return 1
    } }),
    ("features", { L in bind(L, "Module:features") { a in
        let m = try a.module(1)
        let x = try a.tensor(2, "input")
        let names: [String]
        if a.type(3) == LUA_TSTRING { names = [try a.string(3, "layer")] } else {
            guard a.type(3) == LUA_TTABLE else { throw a.fail("expected a layer name or a table of names (argument 3), got \(a.typeName(3))") }
            names = try (1...max(a.rawLength(3), 1)).filter { $0 <= a.rawLength(3) }.map { k in
                let j = a.rawIndex(3, k); defer { a.pop() }
                return try a.string(j, "layer name")
            }
        }
        let (y, feats) = try LuaContext.with(a.L) { try m.features(x, at: names) }
        if a.type(3) == LUA_TSTRING, let f = feats[names[0]] { a.push(f); a.push(y); return 2 }
        lua_createtable(a.L, 0, Int32(clamping: feats.count))
        for (n, t) in feats { pushString(a.L, n); pushTensor(a.L, t); lua_rawset(a.L, -3) }
        a.push(y)
        return 2
    } }),
    ("feature_names", { L in bind(L, "Module:feature_names") { a in
        let names = try a.module(1).featureNames()
        lua_createtable(a.L, Int32(names.count), 0)
        for (k, n) in names.enumerated() { pushString(a.L, n); lua_rawseti(a.L, -2, lua_Integer(k + 1)) }
        return 1
    } }),
    ("num_parameters", { L in bind(L, "Module:num_parameters") { a in a.push(try a.module(1).allParameters().map(\.numel).reduce(0, +)) } }),
    ("type", { L in bind(L, "Module:type") { a in pushString(a.L, try a.module(1).typeName); return 1 } }),
    ("append", { L in bind(L, "Module:append") { a in
        guard let s = try a.module(1) as? Sequential else { throw a.fail("append is for Sequential containers") }
        let c = try a.module(2, "module")
        guard !c.contains(s) else { throw a.fail("appending the container to itself would make a cycle") }
        let name = String(s.children.count + 1)
        s.register(module: c, as: name)
        keepChild(a.L, owner: 1, name: name, value: 2)
        lua_pushvalue(a.L, 1); return 1
    } }),
]

/// Pushes a list of {name, value} pairs.
private func pushNamed<T>(_ a: LuaArgs, _ entries: [(String, T)], _ push: (T) -> Void) {
    lua_createtable(a.L, Int32(clamping: entries.count), 0)
    for (k, (n, v)) in entries.enumerated() {
        lua_createtable(a.L, 2, 0)
        pushString(a.L, n); lua_rawseti(a.L, -2, 1)
        push(v); lua_rawseti(a.L, -2, 2)
        lua_rawseti(a.L, -2, lua_Integer(k + 1))
    }
}

let moduleMetamethods: [(String, parry_SwiftFunction)] = [
    ("__gc", { L in
        if let L, let p = parry_takeobject(L, 1, Int32(PARRY_MODULE)) { Unmanaged<Module>.fromOpaque(p).release() }
        return 0
    }),
    ("__tostring", { L in bind(L, "tostring") { a in pushString(a.L, try a.module(1).description); return 1 } }),
]

// MARK: - model zoo (parry.models)

let modelFunctions: [(String, parry_SwiftFunction)] = [
    ("mlp", { L in bind(L, "parry.models.mlp") { a in
        let sizes = try a.integerList(1, "sizes")
        guard sizes.count >= 2, sizes.allSatisfy({ $0 > 0 }) else { throw a.fail("expected at least two positive sizes, e.g. {784, 256, 10}") }
        let o = try a.options(2, allowed: ["dropout"])
        return pushModuleResult(a, try Models.mlp(sizes, dropout: try o.number("dropout") ?? 0))
    } }),
    ("small_cnn", { L in bind(L, "parry.models.small_cnn") { a in
        let o = try a.options(1, allowed: ["in_channels", "classes", "size", "hidden"])
        return pushModuleResult(a, try Models.smallCNN(inChannels: try o.integer("in_channels") ?? 1, classes: try o.integer("classes") ?? 10,
                                                       size: try o.integer("size") ?? 28, hidden: try o.integer("hidden") ?? 128))
    } }),
    ("resnet20", { L in bind(L, "parry.models.resnet20") { a in
        let o = try a.options(1, allowed: ["in_channels", "classes", "leaky_relu"])
        return pushModuleResult(a, try Models.resnet20(inChannels: try o.integer("in_channels") ?? 3, classes: try o.integer("classes") ?? 10,
                                                       leakySlope: try leakyOption(a, o)))
    } }),
    ("resnet18", { L in bind(L, "parry.models.resnet18") { a in
        let o = try a.options(1, allowed: ["in_channels", "classes"])
        return pushModuleResult(a, try Models.resnet18(inChannels: try o.integer("in_channels") ?? 3, classes: try o.integer("classes") ?? 10))
    } }),
]

// MARK: - functional (parry.nn.functional)

let functionalFunctions: [(String, parry_SwiftFunction)] = [
    ("relu", { L in bind(L, "nn.functional.relu") { a in a.push(try a.tensor(1, "input").unary(.relu)) } }),
    ("softmax", { L in bind(L, "nn.functional.softmax") { a in
        let t = try a.tensor(1, "input"); return a.push(try t.softmax(dim: try a.dim(2, ndim: t.ndim)))
    } }),
    ("log_softmax", { L in bind(L, "nn.functional.log_softmax") { a in
        let t = try a.tensor(1, "input"); return a.push(try t.softmax(dim: try a.dim(2, ndim: t.ndim), log: true))
    } }),
    ("linear", { L in bind(L, "nn.functional.linear") { a in
        a.push(try F.linear(try a.tensor(1, "input"), try a.tensor(2, "weight"), a.isNil(3) ? nil : try a.tensor(3, "bias")))
    } }),
    ("conv2d", { L in bind(L, "nn.functional.conv2d") { a in
        let o = try a.options(4, allowed: ["stride", "padding"])
        return a.push(try F.conv2d(try a.tensor(1, "input"), try a.tensor(2, "weight"), a.isNil(3) ? nil : try a.tensor(3, "bias"),
                                   stride: try o.integer("stride") ?? 1, padding: try o.integer("padding") ?? 0))
    } }),
    ("dropout", { L in bind(L, "nn.functional.dropout") { a in
        let o = try a.options(3, allowed: ["training"])
        return a.push(try F.dropout(try a.tensor(1, "input"), p: try a.optNumber(2, "p", 0.5), training: try o.bool("training") ?? true))
    } }),
    ("one_hot", { L in bind(L, "nn.functional.one_hot") { a in
        let c = try a.integer(2, "num_classes")
        guard c > 0 else { throw a.fail("num_classes must be positive, got \(c)") }
        return a.push(try F.oneHot(try a.labels(1, "labels"), classes: c))
    } }),
    ("cosine_similarity", { L in bind(L, "nn.functional.cosine_similarity") { a in
        let x = try a.tensor(1, "x1"), y = try a.tensor(2, "x2")
        guard x.shape == y.shape else { throw a.fail("x1 and x2 must have the same shape, got \(shapeString(x.shape)) and \(shapeString(y.shape))") }
        let d = try a.optDim(3, ndim: x.ndim) ?? min(1, max(x.ndim - 1, 0))
        return a.push(try F.cosineSimilarity(x, y, dim: d))
    } }),
    ("normalize", { L in bind(L, "nn.functional.normalize") { a in
        let x = try a.tensor(1, "input")
        let o = try a.options(2, allowed: ["p", "dim", "eps"])
        let d = try o.integer("dim").map { try a.normalizeDim($0, ndim: x.ndim) } ?? min(1, max(x.ndim - 1, 0))
        return a.push(try F.normalize(x, p: try o.number("p") ?? 2, dim: d, eps: try o.number("eps") ?? 1e-12))
    } }),
]

// MARK: - losses (parry.losses)

let lossFunctions: [(String, parry_SwiftFunction)] = [
    ("cross_entropy", { L in bind(L, "parry.losses.cross_entropy") { a in
        let o = try a.options(3, allowed: ["reduction", "label_smoothing", "weight"])
        var weight: Tensor? = nil
        if o.index != 0 { let j = a.rawField(o.index, "weight"); defer { a.pop() }; if !a.isNil(j) { weight = try a.tensor(j, "weight") } }
        return a.push(try Loss.crossEntropy(try a.tensor(1, "logits"), try a.labels(2), weight: weight,
                                            labelSmoothing: try o.number("label_smoothing") ?? 0, reduction: try a.reduction(o)))
    } }),
    ("nll", { L in bind(L, "parry.losses.nll") { a in
        let o = try a.options(3, allowed: ["reduction", "weight"])
        var weight: Tensor? = nil
        if o.index != 0 { let j = a.rawField(o.index, "weight"); defer { a.pop() }; if !a.isNil(j) { weight = try a.tensor(j, "weight") } }
        return a.push(try Loss.nll(try a.tensor(1, "log_probs"), try a.labels(2), weight: weight, reduction: try a.reduction(o)))
    } }),
    ("fixed_center_ce", { L in bind(L, "parry.losses.fixed_center_ce") { a in
        let o = try a.options(4, allowed: ["temperature", "reduction"])
        let t = try o.number("temperature") ?? 0.01
        guard t > 0, t.isFinite else { throw a.fail("temperature must be positive, got \(t)") }
        return a.push(try Loss.fixedCenterCE(try a.tensor(1, "z"), try a.tensor(2, "centers"), try a.labels(3), temperature: t,
                                             reduction: try a.reduction(o)))
    } }),
    ("l2_align", { L in bind(L, "parry.losses.l2_align") { a in
        let o = try a.options(3, allowed: ["reduction"])
        return a.push(try Loss.l2Align(try a.tensor(1, "z"), try a.tensor(2, "target"), reduction: try a.reduction(o)))
    } }),
    ("infonce", { L in bind(L, "parry.losses.infonce") { a in
        let o = try a.options(3, allowed: ["temperature", "symmetric", "reduction"])
        let t = try o.number("temperature") ?? 0.07
        guard t > 0, t.isFinite else { throw a.fail("temperature must be positive, got \(t)") }
        return a.push(try Loss.infoNCE(try a.tensor(1, "z"), try a.tensor(2, "positives"), temperature: t,
                                       symmetric: try o.bool("symmetric") ?? false, reduction: try a.reduction(o)))
    } }),
    ("comp_sum", { L in bind(L, "parry.losses.comp_sum") { a in
        let o = try a.options(3, allowed: ["tau", "reduction"])
        guard let tau = try o.number("tau") else { throw a.fail("missing option tau (a number ≥ 0)") }
        guard tau >= 0 else { throw a.fail("tau must be ≥ 0, got \(tau)") }
        return a.push(try Loss.compSum(try a.tensor(1, "logits"), try a.labels(2), tau: tau, reduction: try a.reduction(o)))
    } }),
    ("sum_exp", { L in bind(L, "parry.losses.sum_exp") { a in
        let o = try a.options(3, allowed: ["reduction"])
        return a.push(try Loss.compSum(try a.tensor(1, "logits"), try a.labels(2), tau: 0, reduction: try a.reduction(o)))
    } }),
    ("gce", { L in bind(L, "parry.losses.gce") { a in
        let o = try a.options(3, allowed: ["q", "reduction"])
        let q = try o.number("q") ?? 0.7
        guard q > 0, q <= 1 else { throw a.fail("q must be in (0, 1], got \(q)") }
        return a.push(try Loss.compSum(try a.tensor(1, "logits"), try a.labels(2), tau: 1 + q, reduction: try a.reduction(o)))
    } }),
    ("mae", { L in bind(L, "parry.losses.mae") { a in
        let o = try a.options(3, allowed: ["reduction"])
        return a.push(try Loss.compSum(try a.tensor(1, "logits"), try a.labels(2), tau: 2, reduction: try a.reduction(o)))
    } }),
    ("mse", { L in bind(L, "parry.losses.mse") { a in
        let o = try a.options(3, allowed: ["reduction"])
        return a.push(try Loss.mse(try a.tensor(1, "input"), try a.tensor(2, "target"), reduction: try a.reduction(o)))
    } }),
    ("kl_div", { L in bind(L, "parry.losses.kl_div") { a in
        let o = try a.options(3, allowed: ["reduction", "log_target"])
        return a.push(try Loss.klDiv(try a.tensor(1, "input"), try a.tensor(2, "target"), reduction: try a.reduction(o, allowBatchmean: true),
                                     logTarget: try o.bool("log_target") ?? false))
    } }),
]

/// Registers the module, optimizer and scheduler metatables and sets
/// `nn`, `models`, `losses`, `optim` subtables on the table at `module`.
func openNN(_ L: LuaState, module: Int32) {
    // module metatable: methods in a table the Lua side (nn.lua) consults
    lua_createtable(L, 0, Int32(moduleMethods.count))
    let methods = lua_gettop(L)
    for (name, fn) in moduleMethods { parry_pushfunction(L, fn); lua_setfield(L, methods, name) }
    lua_createtable(L, 0, 6)
    for (name, fn) in moduleMetamethods { parry_pushfunction(L, fn); lua_setfield(L, -2, name) }
    lua_pushvalue(L, methods); lua_setfield(L, -2, "__index")     // replaced by nn.lua
    lua_pushstring(L, "parry.Module"); lua_setfield(L, -2, "__name")
    lua_pushvalue(L, methods); lua_setfield(L, -2, "methods")
    lua_pushvalue(L, -1)
    parry_setkindmetatable(L, Int32(PARRY_MODULE))
    lua_setfield(L, module, "_module_metatable")
    parry_pop(L, 1)  // methods

    // weak cache Swift module -> userdata
    lua_createtable(L, 0, 0)
    lua_createtable(L, 0, 1)
    lua_pushstring(L, "v"); lua_setfield(L, -2, "__mode")
    lua_setmetatable(L, -2)
    lua_rawsetp(L, parry_registryindex(), &moduleCacheKey)

    func table(_ name: String, _ fns: [(String, parry_SwiftFunction)]) {
        lua_createtable(L, 0, Int32(fns.count))
        for (n, fn) in fns { parry_pushfunction(L, fn); lua_setfield(L, -2, n) }
        lua_setfield(L, module, name)
    }
    table("_nn", nnConstructors)
    table("_functional", functionalFunctions + [cosineLogitsFunction])
    table("_models", modelFunctions + ensembleModelFunctions)
    table("_losses", lossFunctions)
    table("_optim", optimFunctions)
    table("_lr", schedulerFunctions)
    table("_data", dataFunctions + modalityFunctions)
    table("_attacks", attackFunctions + ensembleAttackFunctions)
    table("_robust", robustFunctions + weightSpaceFunctions + ensembleFunctions + calibrationFunctions)
    table("_fl", fedFunctions)
    table("_rl", rlFunctions)
    table("_hooks", hookFunctions)
    table("_dist", distFunctions)
    // Under mpirun every rank joins MPI when parry loads, so that an error
    // anywhere can end the whole job (parry.dist, stdlib/parry/dist.lua).
    _ = Communicator.world
    MemoryPressure.install()

    // env handle metatable (parry.rl's Lua objects hold one in `_h`)
    lua_createtable(L, 0, 2)
    for (n, fn) in envHandleMetamethods { parry_pushfunction(L, fn); lua_setfield(L, -2, n) }
    lua_pushstring(L, "parry.EnvHandle"); lua_setfield(L, -2, "__name")
    parry_setkindmetatable(L, Int32(PARRY_ENV))

    // optimizer metatable
    lua_createtable(L, 0, Int32(optimizerMethods.count))
    let om = lua_gettop(L)
    for (n, fn) in optimizerMethods { parry_pushfunction(L, fn); lua_setfield(L, om, n) }
    lua_createtable(L, 0, 5)
    for (n, fn) in optimizerMetamethods { parry_pushfunction(L, fn); lua_setfield(L, -2, n) }
    parry_pushindexer(L, om, optimizerIndex); lua_setfield(L, -2, "__index")
    lua_pushstring(L, "parry.Optimizer"); lua_setfield(L, -2, "__name")
    parry_setkindmetatable(L, Int32(PARRY_OPTIMIZER))
    parry_pop(L, 1)

    // scheduler metatable
    lua_createtable(L, 0, 4)
    for (n, fn) in schedulerMethods { parry_pushfunction(L, fn); lua_setfield(L, -2, n) }
    lua_pushvalue(L, -1); lua_setfield(L, -2, "__index")
    lua_pushstring(L, "parry.Scheduler"); lua_setfield(L, -2, "__name")
    parry_setkindmetatable(L, Int32(PARRY_SCHEDULER))
}
