import CLua
import CLuaShim
import ParryCore
import ParryNN

// parry.optim: optimizers (with PyTorch's parameter groups) and schedulers.
// The metatables are registered by openNN (NNBinding.swift).

// MARK: - optimizers (parry.optim)

extension LuaArgs {
    /// Parameters given as a module or a table of tensors.
    func parameterList(_ i: Int32) throws -> [Tensor] {
        if let m = optModule(i) { return m.allParameters() }
        return try tensorList(i, "params")
    }

    func optimizer(_ i: Int32) throws -> Optimizer {
        if let o: Optimizer = optObject(i, Int32(PARRY_OPTIMIZER)) { return o }
        throw fail("expected an optimizer (argument \(i)), got \(typeName(i))")
    }

    func scheduler(_ i: Int32) throws -> LRScheduler {
        if let s: LRScheduler = optObject(i, Int32(PARRY_SCHEDULER)) { return s }
        throw fail("expected a scheduler (argument \(i)), got \(typeName(i))")
    }
}

func pushOptimizer(_ a: LuaArgs, _ o: Optimizer) -> Int32 {
    parry_pushobject(a.L, Unmanaged.passRetained(o).toOpaque(), Int32(PARRY_OPTIMIZER))
    return 1
}

func pushScheduler(_ a: LuaArgs, _ s: LRScheduler) -> Int32 {
    parry_pushobject(a.L, Unmanaged.passRetained(s).toOpaque(), Int32(PARRY_SCHEDULER))
    return 1
}

private func betas(_ a: LuaArgs, _ o: LuaOptions) throws -> (Double, Double) {
    guard o.index != 0 else { return (0.9, 0.999) }
    let j = a.rawField(o.index, "betas")
    defer { a.pop() }
    if a.isNil(j) { return (0.9, 0.999) }
    guard a.type(j) == LUA_TTABLE, a.rawLength(j) == 2 else { throw a.fail("betas must be a table of two numbers") }
    let b1 = a.rawIndex(j, 1); defer { a.pop() }
    let b2 = a.rawIndex(j, 2); defer { a.pop() }
    return (try a.number(b1, "betas[1]"), try a.number(b2, "betas[2]"))
}

/// The first argument: a module, a list of tensors, or PyTorch's list of
/// parameter groups `{ {params = ..., lr = ...}, ... }` whose other keys
/// (numbers; booleans as 1/0) override the optimizer's options for that group.
private func parameterGroups(_ a: LuaArgs, allowed: [String]) throws -> [ParamGroup] {
    guard a.type(1) == LUA_TTABLE, a.rawLength(1) > 0 else { return [ParamGroup(try a.parameterList(1))] }
    let first = a.rawIndex(1, 1); defer { a.pop() }
    guard a.type(first) == LUA_TTABLE, a.optModule(first) == nil else { return [ParamGroup(try a.parameterList(1))] }
    var groups = [ParamGroup]()
    for k in 1...a.rawLength(1) {
        let g = a.rawIndex(1, k); defer { a.pop() }
        guard a.type(g) == LUA_TTABLE else { throw a.fail("parameter group \(k) must be a table {params = ..., ...}, got \(a.typeName(g))") }
        let p = a.rawField(g, "params"); defer { a.pop() }
        guard !a.isNil(p) else { throw a.fail("parameter group \(k) has no params") }
        let params: [Tensor]
        if let m = a.optModule(p) { params = m.allParameters() } else {
            do { params = try a.tensorList(p, "params") } catch { throw a.fail("parameter group \(k): params must be a module or a list of tensors") }
        }
        var options = [String: Double]()
        lua_pushnil(a.L)
        while lua_next(a.L, g) != 0 {
            defer { a.pop() }
            guard lua_type(a.L, -2) == LUA_TSTRING, let c = parry_tostring(a.L, -2, nil) else {
                throw a.fail("parameter group \(k): keys must be option names")
            }
            let key = String(cString: c)
            if key == "params" { continue }
            guard allowed.contains(key) else {
                throw a.fail("parameter group \(k): unknown option '\(key)' (expected params, \(allowed.joined(separator: ", ")))")
            }
            if lua_type(a.L, -1) == LUA_TBOOLEAN { options[key] = lua_toboolean(a.L, -1) != 0 ? 1 : 0; continue }
            guard let v = a.optScalar(-1) else { throw a.fail("parameter group \(k): option '\(key)' must be a number, got \(a.typeName(-1))") }
            options[key] = v.double
        }
        groups.append(ParamGroup(params, options))
    }
    return groups
}

/// Pushes a table of name = number settings (a group's hyper-parameters).
private func pushSettings(_ a: LuaArgs, _ h: [String: Double]) {
    lua_createtable(a.L, 0, Int32(h.count + 1))
    for (k, v) in h { pushString(a.L, k); lua_pushnumber(a.L, v); lua_rawset(a.L, -3) }
}

let optimFunctions: [(String, parry_SwiftFunction)] = [
    ("SGD", { L in bind(L, "optim.SGD") { a in
        let o = try a.options(2, allowed: ["lr", "momentum", "dampening", "weight_decay", "nesterov"])
        let groups = try parameterGroups(a, allowed: ["lr", "momentum", "dampening", "weight_decay", "nesterov"])
        return pushOptimizer(a, try SGD(groups: groups, lr: try o.number("lr"), momentum: try o.number("momentum") ?? 0,
                                        dampening: try o.number("dampening") ?? 0, weightDecay: try o.number("weight_decay") ?? 0,
                                        nesterov: try o.bool("nesterov") ?? false))
    } }),
    ("Adam", { L in bind(L, "optim.Adam") { a in
        let o = try a.options(2, allowed: ["lr", "betas", "eps", "weight_decay"])
        let groups = try parameterGroups(a, allowed: ["lr", "beta1", "beta2", "eps", "weight_decay"])
        return pushOptimizer(a, try Adam(groups: groups, lr: try o.number("lr") ?? 1e-3, betas: try betas(a, o),
                                         eps: try o.number("eps") ?? 1e-8, weightDecay: try o.number("weight_decay") ?? 0))
    } }),
    ("AdamW", { L in bind(L, "optim.AdamW") { a in
        let o = try a.options(2, allowed: ["lr", "betas", "eps", "weight_decay"])
        let groups = try parameterGroups(a, allowed: ["lr", "beta1", "beta2", "eps", "weight_decay"])
        return pushOptimizer(a, try Adam(groups: groups, lr: try o.number("lr") ?? 1e-3, betas: try betas(a, o),
                                         eps: try o.number("eps") ?? 1e-8, weightDecay: try o.number("weight_decay") ?? 1e-2, decoupled: true))
    } }),
]

let schedulerFunctions: [(String, parry_SwiftFunction)] = [
    ("step", { L in bind(L, "optim.lr.step") { a in
        let o = try a.options(2, allowed: ["step_size", "gamma"])
        guard let s = try o.integer("step_size") else { throw a.fail("missing option step_size") }
        return pushScheduler(a, try LRScheduler(try a.optimizer(1), .step(stepSize: s, gamma: try o.number("gamma") ?? 0.1)))
    } }),
    ("multistep", { L in bind(L, "optim.lr.multistep") { a in
        let o = try a.options(2, allowed: ["milestones", "gamma"])
        guard o.index != 0 else { throw a.fail("missing option milestones") }
        let j = a.rawField(o.index, "milestones"); defer { a.pop() }
        let ms = try a.integerList(j, "milestones")
        return pushScheduler(a, try LRScheduler(try a.optimizer(1), .multistep(milestones: ms, gamma: try o.number("gamma") ?? 0.1)))
    } }),
    ("cosine", { L in bind(L, "optim.lr.cosine") { a in
        let o = try a.options(2, allowed: ["T_max", "eta_min"])
        guard let t = try o.integer("T_max") else { throw a.fail("missing option T_max") }
        return pushScheduler(a, try LRScheduler(try a.optimizer(1), .cosine(tMax: t, etaMin: try o.number("eta_min") ?? 0)))
    } }),
    ("exponential", { L in bind(L, "optim.lr.exponential") { a in
        let o = try a.options(2, allowed: ["gamma"])
        guard let g = try o.number("gamma") else { throw a.fail("missing option gamma") }
        return pushScheduler(a, try LRScheduler(try a.optimizer(1), .exponential(gamma: g)))
    } }),
]

let optimizerMethods: [(String, parry_SwiftFunction)] = [
    ("step", { L in bind(L, "Optimizer:step") { a in try a.optimizer(1).step(); return 0 } }),
    ("zero_grad", { L in bind(L, "Optimizer:zero_grad") { a in try a.optimizer(1).zeroGrad(); return 0 } }),
    // param_groups() -> list of {lr=, ...} (copies; set with opt:set(name, value [, group]))
    ("param_groups", { L in bind(L, "Optimizer:param_groups") { a in
        let opt = try a.optimizer(1)
        lua_createtable(a.L, Int32(clamping: opt.groups.count), 0)
        for (g, h) in opt.groups.enumerated() {
            pushSettings(a, h)
            a.push(opt.params.indices.filter { opt.groupOf(index: $0) == g }.count); lua_setfield(a.L, -2, "num_params")
            lua_rawseti(a.L, -2, lua_Integer(g + 1))
        }
        return 1
    } }),
    // set(name, value [, group]): a hyper-parameter in every group, or in group `group` (1-based)
    ("set", { L in bind(L, "Optimizer:set") { a in
        let opt = try a.optimizer(1)
        let group = a.isNil(4) ? nil : try a.integer(4, "group")
        if let group, group < 1 || group > opt.groups.count {
            throw a.fail("group \(group) is out of range (the optimizer has \(opt.groups.count))")
        }
        try opt.setHyperparameter(try a.string(2, "name"), try a.number(3, "value"), group: group.map { $0 - 1 })
        return 0
    } }),
    ("state_dict", { L in bind(L, "Optimizer:state_dict") { a in
        let opt = try a.optimizer(1)
        lua_createtable(a.L, 0, 3)
        pushSettings(a, opt.hyperparameters)
        lua_setfield(a.L, -2, "hyperparameters")
        lua_createtable(a.L, Int32(clamping: opt.groups.count), 0)
        for (g, h) in opt.groups.enumerated() {
            pushSettings(a, h)
            lua_rawseti(a.L, -2, lua_Integer(g + 1))
        }
        lua_setfield(a.L, -2, "param_groups")
        lua_createtable(a.L, Int32(clamping: opt.state.count), 0)
        for (i, st) in opt.state.enumerated() {
            lua_createtable(a.L, 0, Int32(st.count))
            for (k, t) in st { pushString(a.L, k); pushTensor(a.L, try t.clone()); lua_rawset(a.L, -3) }
            lua_rawseti(a.L, -2, lua_Integer(i + 1))
        }
        lua_setfield(a.L, -2, "state")
        a.push(opt.steps); lua_setfield(a.L, -2, "steps")
        return 1
    } }),
    ("load_state_dict", { L in bind(L, "Optimizer:load_state_dict") { a in
        let opt = try a.optimizer(1)
        guard a.type(2) == LUA_TTABLE else { throw a.fail("expected a state dict table (argument 2), got \(a.typeName(2))") }
        // name = number entries of the table at `t` (other keys ignored)
        func settings(_ t: Int32) throws -> [String: Double] {
            var out = [String: Double]()
            lua_pushnil(a.L)
            while lua_next(a.L, t) != 0 {
                defer { a.pop() }
                guard lua_type(a.L, -2) == LUA_TSTRING, let k = parry_tostring(a.L, -2, nil) else { continue }
                out[String(cString: k)] = try a.number(-1, "hyperparameter")
            }
            return out
        }
        let h = a.rawField(2, "hyperparameters")
        if a.type(h) == LUA_TTABLE { try opt.setHyperparameters(try settings(h)) }
        a.pop()
        let pg = a.rawField(2, "param_groups")
        if a.type(pg) == LUA_TTABLE {
            guard a.rawLength(pg) == opt.groups.count else {
                throw a.fail("param_groups has \(a.rawLength(pg)) groups but the optimizer has \(opt.groups.count)")
            }
            for g in 0..<opt.groups.count {
                let e = a.rawIndex(pg, g + 1); defer { a.pop() }
                guard a.type(e) == LUA_TTABLE else { continue }
                try opt.setHyperparameters(try settings(e), group: g)
            }
        }
        a.pop()
        let s = a.rawField(2, "state")
        if a.type(s) == LUA_TTABLE {
            guard a.rawLength(s) == opt.params.count else {
                throw a.fail("state has \(a.rawLength(s)) entries but the optimizer has \(opt.params.count) parameters")
            }
            var newState = [[String: Tensor]]()
            for i in 1...max(opt.params.count, 1) where i <= opt.params.count {
                let e = a.rawIndex(s, i); defer { a.pop() }
                var entry = [String: Tensor]()
                if a.type(e) == LUA_TTABLE {
                    lua_pushnil(a.L)
                    while lua_next(a.L, e) != 0 {
                        defer { a.pop() }
                        guard lua_type(a.L, -2) == LUA_TSTRING, let k = parry_tostring(a.L, -2, nil), let t = a.optTensor(-1) else { continue }
                        entry[String(cString: k)] = try t.detach().clone()
                    }
                }
                newState.append(entry)
            }
            opt.state = newState
        }
        a.pop()
        let st = a.rawField(2, "steps"); defer { a.pop() }
        if !a.isNil(st) { opt.steps = try a.integer(st, "steps") }
        return 0
    } }),
]

/// `opt.lr` reads and writes the learning rate; other names read hyper-parameters.
let optimizerIndex: parry_SwiftFunction = { L in
    bind(L, "Optimizer") { a in
        let opt = try a.optimizer(1)
        guard a.type(2) == LUA_TSTRING else { lua_pushnil(a.L); return 1 }
        if let v = opt.hyperparameters[try a.string(2, "key")] { return a.push(v) }
        lua_pushnil(a.L); return 1
    }
}

let optimizerMetamethods: [(String, parry_SwiftFunction)] = [
    ("__newindex", { L in bind(L, "Optimizer") { a in
        try a.optimizer(1).setHyperparameter(try a.string(2, "key"), try a.number(3, "value")); return 0
    } }),
    ("__gc", { L in
        if let L, let p = parry_takeobject(L, 1, Int32(PARRY_OPTIMIZER)) { Unmanaged<Optimizer>.fromOpaque(p).release() }
        return 0
    }),
    ("__tostring", { L in bind(L, "tostring") { a in
        let o = try a.optimizer(1)
        pushString(a.L, "\(String(describing: type(of: o)))(" + o.hyperparameters.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: ", ") + ")")
        return 1
    } }),
]

let schedulerMethods: [(String, parry_SwiftFunction)] = [
    ("step", { L in bind(L, "Scheduler:step") { a in try a.scheduler(1).step(); return 0 } }),
    ("get_lr", { L in bind(L, "Scheduler:get_lr") { a in a.push(try a.scheduler(1).optimizer.lr) } }),
    ("state_dict", { L in bind(L, "Scheduler:state_dict") { a in
        let s = try a.scheduler(1)
        lua_createtable(a.L, 0, 1)
        _ = a.push(s.epoch); lua_setfield(a.L, -2, "epoch")
        return 1
    } }),
    ("load_state_dict", { L in bind(L, "Scheduler:load_state_dict") { a in
        let s = try a.scheduler(1)
        guard a.type(2) == LUA_TTABLE else { throw a.fail("expected a state dict table (argument 2), got \(a.typeName(2))") }
        let e = a.rawField(2, "epoch"); defer { a.pop() }
        try s.setEpoch(try a.integer(e, "epoch"))
        return 0
    } }),
    ("__gc", { L in
        if let L, let p = parry_takeobject(L, 1, Int32(PARRY_SCHEDULER)) { Unmanaged<LRScheduler>.fromOpaque(p).release() }
        return 0
    }),
]
