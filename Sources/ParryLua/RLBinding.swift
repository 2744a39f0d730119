import CLua
import CLuaShim
import Foundation
import ParryCore
import ParryNN
import ParryRL

// Bindings of parry.rl (stdlib/parry/rl.lua builds the Lua objects): env
// handles (native envs, Lua-defined envs behind an adapter, vector envs and
// wrappers, all one userdata kind), spaces, the MLP policy, PPO, evaluate.
// Discrete actions are 1-based here and 0-based in ParryRL.

/// A native env, vector env or wrapper as Lua holds it.
final class EnvHandle {
    let single: Environment?
    let vector: VectorEnvironment?
    /// The transform of a wrapper handle (for its statistics).
    let transform: EnvTransform?
    init(single: Environment? = nil, vector: VectorEnvironment? = nil, transform: EnvTransform? = nil) {
        self.single = single; self.vector = vector; self.transform = transform
    }
    var observationSpace: Space { single?.observationSpace ?? vector?.singleObservationSpace ?? .discrete(n: 1) }
    var actionSpace: Space { single?.actionSpace ?? vector?.singleActionSpace ?? .discrete(n: 1) }
}

private var handleCacheKey: UInt8 = 0
private var envHelperKey: UInt8 = 0

/// Pushes a new handle userdata whose user value keeps `keep` (a stack index,
/// or 0 for an empty table) alive: the Lua envs, or the inner handle.
private func pushHandle(_ L: LuaState, _ h: EnvHandle, keep: Int32) {
    let keepAbs = keep == 0 ? 0 : lua_absindex(L, keep)
    parry_pushobject_uv(L, Unmanaged.passRetained(h).toOpaque(), Int32(PARRY_ENV), 1)
    if keepAbs == 0 { lua_createtable(L, 0, 0) } else { lua_pushvalue(L, keepAbs) }
    lua_setiuservalue(L, -2, 1)
    lua_rawgetp(L, parry_registryindex(), &handleCacheKey)
    if lua_type(L, -1) != LUA_TTABLE {
        parry_pop(L, 1)
        lua_createtable(L, 0, 0)
        lua_createtable(L, 0, 1)
        lua_pushstring(L, "v"); lua_setfield(L, -2, "__mode")
        lua_setmetatable(L, -2)
        lua_pushvalue(L, -1)
        lua_rawsetp(L, parry_registryindex(), &handleCacheKey)
    }
    lua_pushvalue(L, -2)
    lua_rawsetp(L, -2, Unmanaged.passUnretained(h).toOpaque())
    parry_pop(L, 1)
}

/// A Lua-defined env (a table with reset/step and spaces) as a ParryRL env.
/// It reaches its Lua table through its owner handle's user value, and calls
/// it through rl.lua's helper (which checks the returned types), protected.
final class LuaEnvironment: Environment {
    let id: String
    let observationSpace: Space, actionSpace: Space
    weak var owner: EnvHandle?
    init(id: String, observationSpace: Space, actionSpace: Space) {
        self.id = id; self.observationSpace = observationSpace; self.actionSpace = actionSpace
    }

    /// Calls helper(env, method, arg) with `pushArg` pushing arg; leaves `nresults` values.
    private func call(_ method: String, nresults: Int32, _ pushArg: (LuaState) throws -> Void) throws -> LuaState {
        guard let L = LuaContext.current else { throw RLError("\(id) can only run from Lua") }
        guard lua_checkstack(L, 10) != 0 else { throw RLError("Lua stack overflow") }
        let top = lua_gettop(L)
        lua_rawgetp(L, parry_registryindex(), &envHelperKey)
        guard lua_type(L, -1) == LUA_TFUNCTION, let owner else { lua_settop(L, top); throw RLError("\(id): parry.rl is not loaded") }
        lua_rawgetp(L, parry_registryindex(), &handleCacheKey)
        guard lua_type(L, -1) == LUA_TTABLE, lua_rawgetp(L, -1, Unmanaged.passUnretained(owner).toOpaque()) == LUA_TUSERDATA else {
            lua_settop(L, top); throw RLError("\(id) was collected by Lua")
        }
        lua_getiuservalue(L, -1, 1)
        lua_rawgeti(L, -1, 1)  // the env table
        parry_replace(L, top + 2)
        lua_settop(L, top + 2)
        pushString(L, method)
        do { try pushArg(L) } catch { lua_settop(L, top); throw error }
        if parry_pcall(L, 3, nresults, 0) != LUA_OK {
            let msg = parry_tostring(L, -1, nil).map { String(cString: $0) } ?? "error in \(id):\(method)"
            lua_settop(L, top)
            throw LuaCallError(message: msg)
        }
        return L
    }

    /// The seed `make{seed=}` gave: passed to the first reset that brings none,
    /// as a native env's generator starts from it.
    var pendingSeed: UInt64?

    func reset(seed: UInt64?) throws -> [Float] {
        let seed = seed ?? pendingSeed
        pendingSeed = nil
        let L = try call("reset", nresults: 1) { L in
            if let seed { lua_pushinteger(L, lua_Integer(bitPattern: seed)) } else { lua_pushnil(L) }
        }
        defer { parry_pop(L, 1) }
        return try observation(L, -1, "reset")
    }

    func step(_ action: [Float]) throws -> Transition {
        let L = try call("step", nresults: 5) { L in try pushAction(L, action, actionSpace) }
        defer { parry_pop(L, 5) }
        let obs = try observation(L, -5, "step")
        var t = Transition(observation: obs, reward: parry_tonumber(L, -4, nil), terminated: lua_toboolean(L, -3) != 0,
                           truncated: lua_toboolean(L, -2) != 0)
        if lua_type(L, -1) == LUA_TTABLE {  // numeric info fields pass through Swift wrappers
            lua_pushnil(L)
            while lua_next(L, -2) != 0 {
                if lua_type(L, -2) == LUA_TSTRING, lua_type(L, -1) == LUA_TNUMBER, let k = parry_tostring(L, -2, nil) {
                    t.info[String(cString: k)] = parry_tonumber(L, -1, nil)
                }
                parry_pop(L, 1)
            }
        }
        return t
    }

    private func observation(_ L: LuaState, _ i: Int32, _ method: String) throws -> [Float] {
        // rl.lua's helper already made it a tensor of the space's size
        guard let p = parry_toobject(L, i, Int32(PARRY_TENSOR)) else { throw RLError("\(id):\(method) must return an observation tensor") }
        return try Unmanaged<Tensor>.fromOpaque(p).takeUnretainedValue().to(.float32).contiguous().floats()
    }
}

/// Pushes an env action as Lua sees it: a 1-based integer, or a float tensor of the space's shape.
private func pushAction(_ L: LuaState, _ a: [Float], _ space: Space) throws {
    switch space {
    case .discrete(_, let start): lua_pushinteger(L, lua_Integer(Int(a[0]) + 1 - start))
    case .box(_, _, let shape): pushTensor(L, try Tensor(a, shape: shape))
    }
}

/// Pushes an observation batch: `rows` × the space's shape (no leading dim when rows is nil).
private func pushObservations(_ L: LuaState, _ obs: [Float], _ space: Space, rows: Int?) throws {
    switch space {
    case .discrete(_, let start):
        if let rows { pushTensor(L, try Tensor(obs.prefix(rows).map { Int64($0) + 1 - Int64(start) }, shape: [rows])) }
        else { lua_pushinteger(L, lua_Integer(Int(obs[0]) + 1 - start)) }
    case .box(_, _, let shape):
        pushTensor(L, try Tensor(obs, shape: (rows.map { [$0] } ?? []) + shape))
    }
}

private func pushSpace(_ L: LuaState, _ s: Space) throws {
    lua_createtable(L, 0, 5)
    switch s {
    case .discrete(let n, _):
        pushString(L, "discrete"); lua_setfield(L, -2, "kind")
        lua_pushinteger(L, lua_Integer(n)); lua_setfield(L, -2, "n")
    case .box(let lo, let hi, let shape):
        pushString(L, "box"); lua_setfield(L, -2, "kind")
        pushTensor(L, try Tensor(lo, shape: shape)); lua_setfield(L, -2, "low")
        pushTensor(L, try Tensor(hi, shape: shape)); lua_setfield(L, -2, "high")
        lua_createtable(L, Int32(shape.count), 0)
        for (i, d) in shape.enumerated() { lua_pushinteger(L, lua_Integer(d)); lua_rawseti(L, -2, lua_Integer(i + 1)) }
        lua_setfield(L, -2, "shape")
    }
}

extension LuaArgs {
    func handle(_ i: Int32, _ what: String = "env") throws -> EnvHandle {
        if let h: EnvHandle = optObject(i, Int32(PARRY_ENV)) { return h }
        if type(i) == LUA_TTABLE {
            let j = rawField(i, "_h"); defer { pop() }
            if let h: EnvHandle = optObject(j, Int32(PARRY_ENV)) { return h }
        }
        throw fail("expected an environment for \(what) (argument \(i)), got \(typeName(i))")
    }

    /// A space from a Lua space table ({kind="box", low=, high=, shape=} or {kind="discrete", n=}).
    func space(_ i: Int32, _ what: String) throws -> Space {
        guard type(i) == LUA_TTABLE else { throw fail("\(what) must be a space (parry.rl.Box or parry.rl.Discrete), got \(typeName(i))") }
        let n = rawField(i, "n"); defer { pop() }
        if !isNil(n) {
            let count = try integer(n, "\(what).n")
            guard count > 0 else { throw fail("\(what).n must be positive, got \(count)") }
            return .discrete(n: count)
        }
        let lo = rawField(i, "low"); defer { pop() }
        let hi = rawField(i, "high"); defer { pop() }
        guard let l = optTensor(lo), let h = optTensor(hi), l.shape == h.shape else {
            throw fail("\(what) must be a Discrete (with n) or a Box (with low and high tensors of one shape)")
        }
        return .box(low: try l.to(.float32).contiguous().floats(), high: try h.to(.float32).contiguous().floats(), shape: l.shape)
    }

    /// One env action from Lua: an integer (1-based) or a one-element tensor
    /// for Discrete; a tensor, a number (one-dimensional Box) or a table of
    /// numbers for Box.
    func action(_ i: Int32, _ space: Space, rows: Int? = nil) throws -> [Float] {
        let count = space.flatCount * (rows ?? 1)
        switch space {
        case .discrete(let n, _):
            var values: [Double]
            if let t = optTensor(i) {
                values = t.doubles()
            } else if type(i) == LUA_TNUMBER, rows == nil {
                values = [try number(i, "action")]
            } else if type(i) == LUA_TTABLE {
                values = try numberList(i, "actions")
            } else {
                throw fail("expected \(rows == nil ? "an action" : "actions") in \(luaName(space)) (an integer 1..\(n)\(rows == nil ? "" : " per env, as a tensor or table")), got \(typeName(i))")
            }
            guard values.count == count else { throw fail("expected \(count) action\(count == 1 ? "" : "s"), got \(values.count)") }
            return try values.map { v in
                guard v.isFinite, v.rounded() == v, v >= 1, v <= Double(n) else {
                    throw fail("action \(v.isFinite && v.rounded() == v && abs(v) < 1e15 ? String(Int(v)) : String(v)) is not in \(luaName(space)) (expected an integer 1..\(n))")
                }
                return Float(v - 1)
            }
        case .box:
            var values: [Float]
            if let t = optTensor(i) { values = try t.to(.float32).contiguous().floats() }
            else if type(i) == LUA_TNUMBER { values = [Float(try number(i, "action"))] }
            else if type(i) == LUA_TTABLE { values = try numberList(i, "action").map { Float($0) } }
            else { throw fail("expected an action tensor for \(luaName(space)), got \(typeName(i))") }
            guard values.count == count else {
                throw fail("expected \(count) action value\(count == 1 ? "" : "s") for \(luaName(space))\(rows.map { " × \($0) envs" } ?? ""), got \(values.count)")
            }
            if values.contains(where: { $0.isNaN }) { throw fail("action contains NaN") }
            return values
        }
    }

    func luaName(_ s: Space) -> String {
        if case .discrete(let n, _) = s { return "Discrete(\(n))" }
        return s.description
    }
}

private func pushInfo(_ L: LuaState, _ info: [String: Double]) {
    lua_createtable(L, 0, 2)
    if let r = info["episode_r"], let l = info["episode_l"], let t = info["episode_t"] {
        lua_createtable(L, 0, 3)
        lua_pushnumber(L, r); lua_setfield(L, -2, "r")
        lua_pushinteger(L, lua_Integer(l)); lua_setfield(L, -2, "l")
        lua_pushnumber(L, t); lua_setfield(L, -2, "t")
        lua_setfield(L, -2, "episode")
    }
    for (k, v) in info where !k.hasPrefix("episode_") { lua_pushnumber(L, v); lua_setfield(L, -2, k) }
}

let rlFunctions: [(String, parry_SwiftFunction)] = [
    ("_set_env_helper", { L in bind(L, "rl._set_env_helper") { a in try a.storeFunction(1, at: &envHelperKey) } }),
    // mujoco_assets() -> the folder with Gymnasium's MuJoCo models, or nil and where parry looked
    ("mujoco_assets", { L in bind(L, "parry.rl.mujoco_assets") { a in
        do {
            let path = try MuJoCoAssets.path("hopper.xml", for: "MuJoCo")
            pushString(a.L, (path as NSString).deletingLastPathComponent)
            return 1
        } catch {
            lua_pushnil(a.L)
            pushString(a.L, "\(error)")
            return 2
        }
    } }),
    ("registered", { L in bind(L, "parry.rl.registered") { a in
        let ids = Registry.ids
        lua_createtable(a.L, Int32(ids.count), 0)
        for (i, id) in ids.enumerated() { pushString(a.L, id); lua_rawseti(a.L, -2, lua_Integer(i + 1)) }
        return 1
    } }),
    // make(id, max_episode_steps, seed, xml, assets) -> handle
    ("make", { L in bind(L, "parry.rl.make") { a in
        let id = try a.string(1, "id")
        let steps = a.isNil(2) ? nil : try a.integer(2, "max_episode_steps")
        var options: [String: String] = [:]
        if !a.isNil(4) { options["xml"] = try a.string(4, "xml") }
        if !a.isNil(5) { options["assets"] = try a.string(5, "assets") }
        let env = try Registry.make(id, maxEpisodeSteps: steps, seed: try a.optSeed(3), options: options)
        pushHandle(a.L, EnvHandle(single: env), keep: 0)
        return 1
    } }),
    // wrap_lua(env_table, name, observation_space, action_space, max_episode_steps, seed) -> handle
    ("wrap_lua", { L in bind(L, "parry.rl.make") { a in
        guard a.type(1) == LUA_TTABLE else { throw a.fail("expected a Lua env (a table), got \(a.typeName(1))") }
        let name = try a.string(2, "name")
        let adapter = LuaEnvironment(id: name, observationSpace: try a.space(3, "\(name).observation_space"),
                                     actionSpace: try a.space(4, "\(name).action_space"))
        let steps = a.isNil(5) ? nil : try a.integer(5, "max_episode_steps")
        adapter.pendingSeed = try a.optSeed(6)
        let h = EnvHandle(single: TimeLimit(adapter, maxEpisodeSteps: steps.flatMap { $0 > 0 ? $0 : nil }))
        adapter.owner = h
        lua_createtable(a.L, 1, 0)
        lua_pushvalue(a.L, 1); lua_rawseti(a.L, -2, 1)
        pushHandle(a.L, h, keep: -1)
        return 1
    } }),
    // vector(handles, autoreset) -> handle; the table of sub-env handles stays alive with it
    ("vector", { L in bind(L, "parry.rl.vector") { a in
        guard a.type(1) == LUA_TTABLE, a.rawLength(1) > 0 else { throw a.fail("expected a non-empty list of envs") }
        var envs: [Environment] = []
        for k in 1...a.rawLength(1) {
            let j = a.rawIndex(1, k); defer { a.pop() }
            guard let e = try a.handle(j, "env \(k)").single else { throw a.fail("env \(k) is a vector env; vector envs hold single envs") }
            envs.append(e)
        }
        let mode = try AutoresetMode(rawValue: a.isNil(2) ? "next_step" : a.string(2, "autoreset"))
        guard let mode else { throw a.fail("autoreset must be \"next_step\" or \"same_step\"") }
        pushHandle(a.L, EnvHandle(vector: try SyncVectorEnv(envs, autoreset: mode)), keep: 1)
        return 1
    } }),
    // spaces(h) -> observation space, action space (single-env), num_envs or nil, id
    ("spaces", { L in bind(L, "parry.rl.spaces") { a in
        let h = try a.handle(1)
        try pushSpace(a.L, h.observationSpace)
        try pushSpace(a.L, h.actionSpace)
        if let v = h.vector { lua_pushinteger(a.L, lua_Integer(v.numEnvs)); lua_pushnil(a.L) }
        else { lua_pushnil(a.L); pushString(a.L, h.single?.id ?? "?") }
        return 4
    } }),
    ("reset", { L in bind(L, "env:reset") { a in
        let h = try a.handle(1)
        let seed = try a.optSeed(2)
        return try LuaContext.with(a.L) {
            if let v = h.vector { try pushObservations(a.L, try v.reset(seed: seed), h.observationSpace, rows: v.numEnvs) }
            else if let e = h.single { try pushObservations(a.L, try e.reset(seed: seed), h.observationSpace, rows: nil) }
            return 1
        }
    } }),
    // step(h, action) -> obs, reward, terminated, truncated, info
    ("step", { L in bind(L, "env:step") { a in
        let h = try a.handle(1)
        return try LuaContext.with(a.L) {
            if let v = h.vector {
                let s = try v.step(try a.action(2, h.actionSpace, rows: v.numEnvs))
                let n = v.numEnvs
                try pushObservations(a.L, s.observations, h.observationSpace, rows: n)
                pushTensor(a.L, try Tensor(s.rewards.map { Float($0) }, shape: [n]))
                pushTensor(a.L, try Tensor(s.terminated.map { $0 ? Float(1) : 0 }, shape: [n]))
                pushTensor(a.L, try Tensor(s.truncated.map { $0 ? Float(1) : 0 }, shape: [n]))
                lua_createtable(a.L, 0, 2)
                let ended = (0..<n).filter { s.infos[$0]["episode_r"] != nil }
                if !ended.isEmpty {
                    lua_createtable(a.L, 0, 3)
                    for (key, field) in [("r", "episode_r"), ("l", "episode_l"), ("t", "episode_t")] {
                        pushTensor(a.L, try Tensor((0..<n).map { Float(s.infos[$0][field] ?? 0) }, shape: [n])); lua_setfield(a.L, -2, key)
                    }
                    lua_setfield(a.L, -2, "episode")
                    lua_createtable(a.L, Int32(n), 0)
                    for i in 0..<n { lua_pushboolean(a.L, s.infos[i]["episode_r"] != nil ? 1 : 0); lua_rawseti(a.L, -2, lua_Integer(i + 1)) }
                    lua_setfield(a.L, -2, "_episode")
                }
                if !s.finalObservations.isEmpty {
                    lua_createtable(a.L, 0, Int32(s.finalObservations.count))
                    for (i, o) in s.finalObservations { try pushObservations(a.L, o, h.observationSpace, rows: nil); lua_rawseti(a.L, -2, lua_Integer(i + 1)) }
                    lua_setfield(a.L, -2, "final_obs")
                }
                return 5
            }
            guard let e = h.single else { return 0 }
            let t = try e.step(try a.action(2, h.actionSpace))
            try pushObservations(a.L, t.observation, h.observationSpace, rows: nil)
            lua_pushnumber(a.L, t.reward)
            lua_pushboolean(a.L, t.terminated ? 1 : 0)
            lua_pushboolean(a.L, t.truncated ? 1 : 0)
            pushInfo(a.L, t.info)
            return 5
        }
    } }),
    // set_state(h, qpos, qvel) / state(h) -> qpos, qvel: MuJoCo envs (Gymnasium's set_state)
    ("set_state", { L in bind(L, "env:set_state") { a in
        guard let m = try a.handle(1).single?.innermost as? MuJoCoEnv else { throw a.fail("set_state needs a MuJoCo env") }
        func values(_ i: Int32, _ what: String) throws -> [Double] {
            if let t = a.optTensor(i) { return t.doubles() }
            return try a.numberList(i, what)
        }
        let q = try values(2, "qpos"), v = try values(3, "qvel")
        guard (q + v).allSatisfy({ $0.isFinite }) else { throw a.fail("qpos and qvel must be finite") }
        try m.setState(qpos: q, qvel: v)
        try pushObservations(a.L, m.observe(), m.observationSpace, rows: nil)
        return 1
    } }),
    ("state", { L in bind(L, "env:state") { a in
        guard let m = try a.handle(1).single?.innermost as? MuJoCoEnv else { throw a.fail("state needs a MuJoCo env") }
        pushTensor(a.L, try Tensor(m.qpos.map { Float($0) }, shape: [m.qpos.count]))
        pushTensor(a.L, try Tensor(m.qvel.map { Float($0) }, shape: [m.qvel.count]))
        return 2
    } }),
    // wrap(h, kind, opts) -> handle
    ("wrap", { L in bind(L, "parry.rl.wrappers") { a in
        let h = try a.handle(1)
        let kind = try a.string(2, "wrapper")
        let o = try a.options(3, allowed: ["clip", "epsilon", "gamma"])
        let t: EnvTransform
        switch kind {
        case "NormalizeObservation": t = NormalizeObservation(clip: try o.number("clip") ?? 10, epsilon: try o.number("epsilon") ?? 1e-8)
        case "NormalizeReward": t = try NormalizeReward(gamma: try o.number("gamma") ?? 0.99, clip: try o.number("clip") ?? 10, epsilon: try o.number("epsilon") ?? 1e-8)
        case "ClipAction": t = ClipAction()
        case "RecordEpisodeStatistics": t = RecordEpisodeStatistics()
        default: throw a.fail("unknown wrapper '\(kind)'")
        }
        let w: EnvHandle
        if let v = h.vector { w = EnvHandle(vector: try VectorWrapper(v, t), transform: t) }
        else if let e = h.single { w = EnvHandle(single: try TransformedEnv(e, t), transform: t) }
        else { throw a.fail("not an environment") }
        pushHandle(a.L, w, keep: 1)
        return 1
    } }),
    // stats(h) -> mean tensor, var tensor, count (NormalizeObservation / NormalizeReward wrappers)
    ("stats", { L in bind(L, "parry.rl.wrappers") { a in
        let h = try a.handle(1)
        let rms: RunningMeanStd
        if let n = h.transform as? NormalizeObservation { rms = n.normalizer.stats }
        else if let r = h.transform as? NormalizeReward { rms = r.returnStats }
        else { throw a.fail("this env keeps no running statistics") }
        pushTensor(a.L, try Tensor(rms.mean.map { Float($0) }, shape: [rms.size]))
        pushTensor(a.L, try Tensor(rms.variance.map { Float($0) }, shape: [rms.size]))
        lua_pushnumber(a.L, rms.count)
        return 3
    } }),
    ("space_sample", { L in bind(L, "Space:sample") { a in
        let s = try a.space(1, "self")
        guard let g: Generator = a.optObject(2, Int32(PARRY_GENERATOR)) else { throw a.fail("expected a generator (argument 2)") }
        try pushObservations(a.L, s.sample(g), s, rows: nil)
        return 1
    } }),
    ("space_contains", { L in bind(L, "Space:contains") { a in
        let s = try a.space(1, "self")
        var v: [Float]? = nil
        switch s {
        case .discrete: if a.type(2) == LUA_TNUMBER, let x = try? a.number(2, "x") { v = [Float(x - 1)] }
        case .box(_, _, let shape):
            if let t = a.optTensor(2), t.shape == shape { v = try t.to(.float32).contiguous().floats() }
        }
        lua_pushboolean(a.L, v.map { s.contains($0) } == true ? 1 : 0)
        return 1
    } }),
    // attack_check(spec) validates an attack; attack_perturb(spec, policy, obs, generator) -> ŝ
    ("attack_check", { L in bind(L, "parry.rl.attacks") { a in _ = try a.stateAttack(1); return 0 } }),
    ("attack_perturb", { L in bind(L, "attack") { a in
        let attack = try a.stateAttack(1)
        let p = try a.policy(2)
        let (obs, rows) = try a.observations(3, for: p, argument: 2)
        let g = try a.generatorArg(4)
        let x = try obs.to(.float32).contiguous().reshape([rows, p.observationSpace.flatCount])
        let out = try LuaContext.with(a.L) { try attack.perturb(x, policy: p, generator: g) }
        return a.push(try out.reshape(obs.shape))
    } }),
    // adversary_env(victim, env, eps, deterministic, seed, mode, steps) -> handle: the env a learned adversary trains in
    ("adversary_env", { L in bind(L, "parry.rl.attacks") { a in
        let victim = try a.policy(1)
        guard let env = try a.handle(2).single else { throw a.fail("expected a single env") }
        let eps = try a.number(3, "eps")
        let det = a.isNil(4) ? true : lua_toboolean(a.L, 4) != 0
        let seed = try a.optSeed(5) ?? 1
        let mode: AdversaryEnv.Mode = (a.isNil(6) ? "state" : try a.string(6, "mode")) == "action" ? .action : .state
        let adv = try AdversaryEnv(base: env, victim: victim, eps: eps, mode: mode, deterministic: det,
                                   steps: a.isNil(7) ? 10 : try a.integer(7, "steps"), seed: seed)
        pushHandle(a.L, EnvHandle(single: TimeLimit(adv, maxEpisodeSteps: nil)), keep: 2)
        return 1
    } }),
    // protected(base, make_env, victim options, adversary options, options, status) -> members (tables), iterations
    ("protected", { L in bind(L, "parry.rl.protected") { a in
        let base = try a.policy(1)
        guard a.type(2) == LUA_TFUNCTION else { throw a.fail("internal: expected an env maker") }
        let (vc, _, vclip) = try a.ppoConfig(try a.options(3, allowed: ppoOptionNames), box: true)
        let (ac, _, aclip) = try a.ppoConfig(try a.options(4, allowed: ppoOptionNames), box: true)
        let o = try a.options(5, allowed: ["iterations", "updates", "eps", "reselect_every", "select_episodes", "gap_episodes",
                                           "delta", "seed", "steps", "normalize_reward"])
        var c = Protected.Config()
        c.victim = vc; c.adversary = ac; c.victimClip = vclip; c.adversaryClip = aclip
        c.iterations = try o.integer("iterations") ?? c.iterations
        c.updates = try o.integer("updates") ?? c.updates
        guard let eps = try o.number("eps") else { throw a.fail("missing option eps") }
        c.eps = eps
        c.reselectEvery = try o.integer("reselect_every") ?? c.reselectEvery
        c.selectEpisodes = try o.integer("select_episodes") ?? c.selectEpisodes
        c.gapEpisodes = try o.integer("gap_episodes") ?? c.gapEpisodes
        c.delta = try o.number("delta")
        c.paadSteps = try o.integer("steps") ?? c.paadSteps
        c.normalizeRewards = try o.bool("normalize_reward") ?? true
        c.seed = try o.seed() ?? c.seed
        let status = a.statusLine(6)
        lua_createtable(a.L, 8, 0)   // keeps the envs made for the run alive
        let keep = lua_gettop(a.L)
        var made = 0
        let r = try LuaContext.with(a.L) {
            try Protected.run(base: base, makeEnv: {
                try a.call(2, nresults: 1) { 0 }
                made += 1
                lua_pushvalue(a.L, -1); lua_rawseti(a.L, keep, lua_Integer(made))
                defer { a.pop() }
                guard let e = try a.handle(-1, "the env maker's result").single else { throw a.fail("the env maker returned a vector env") }
                return e
            }, config: c) { j, u in status?("PROTECTED iteration \(j)/\(c.iterations)  update \(u)/\(c.updates)") }
        }
        status?("")
        lua_createtable(a.L, Int32(r.members.count), 0)
        for (i, m) in r.members.enumerated().dropFirst() {
            lua_createtable(a.L, 0, 4)
            pushModule(a.L, m.actor); lua_setfield(a.L, -2, "actor")
            pushModule(a.L, m.critic); lua_setfield(a.L, -2, "critic")
            if let s = m.logStd { pushTensor(a.L, s); lua_setfield(a.L, -2, "log_std") }
            if let n = m.normalizer {
                lua_createtable(a.L, 0, 5)
                pushTensor(a.L, try Tensor(n.stats.mean.map { Float($0) }, shape: [n.stats.size])); lua_setfield(a.L, -2, "mean")
                pushTensor(a.L, try Tensor(n.stats.variance.map { Float($0) }, shape: [n.stats.size])); lua_setfield(a.L, -2, "var")
                lua_pushnumber(a.L, n.stats.count); lua_setfield(a.L, -2, "count")
                lua_pushnumber(a.L, n.clip); lua_setfield(a.L, -2, "clip")
                lua_pushnumber(a.L, n.epsilon); lua_setfield(a.L, -2, "epsilon")
                lua_setfield(a.L, -2, "obs_rms")
            }
            lua_rawseti(a.L, -2, lua_Integer(i + 1))   // members[1] is the base, which Lua already has
        }
        lua_createtable(a.L, Int32(r.iterations.count), 0)
        for (i, it) in r.iterations.enumerated() {
            lua_createtable(a.L, 0, 7)
            lua_pushinteger(a.L, lua_Integer(it.iteration)); lua_setfield(a.L, -2, "iteration")
            lua_pushboolean(a.L, it.added ? 1 : 0); lua_setfield(a.L, -2, "added")
            lua_pushnumber(a.L, it.newReturn); lua_setfield(a.L, -2, "new_return")
            lua_pushnumber(a.L, it.bestClassReturn); lua_setfield(a.L, -2, "best_class_return")
            lua_pushnumber(a.L, it.gap); lua_setfield(a.L, -2, "gap")
            a.pushRecords(it.victim); lua_setfield(a.L, -2, "victim")
            a.pushRecords(it.adversary); lua_setfield(a.L, -2, "adversary")
            lua_rawseti(a.L, -2, lua_Integer(i + 1))
        }
        return 2
    } }),
    // rs_train(victim, env, options, status) -> q module, losses
    ("rs_train", { L in bind(L, "parry.rl.attacks.rs") { a in
        let victim = try a.policy(1)
        guard let env = try a.handle(2).single else { throw a.fail("expected a single env") }
        let o = try a.options(3, allowed: ["iterations", "num_steps", "epochs", "minibatches", "lr", "gamma", "eps", "reg", "hidden", "seed"])
        var c = RobustSarsa.Config()
        c.iterations = try o.integer("iterations") ?? c.iterations
        c.numSteps = try o.integer("num_steps") ?? c.numSteps
        c.epochs = try o.integer("epochs") ?? c.epochs
        c.minibatches = try o.integer("minibatches") ?? c.minibatches
        c.lr = try o.number("lr") ?? c.lr
        c.gamma = try o.number("gamma") ?? c.gamma
        c.eps = try o.number("eps") ?? c.eps
        c.reg = try o.number("reg") ?? c.reg
        c.hidden = try o.integerList("hidden") ?? c.hidden
        c.seed = try o.seed() ?? c.seed
        let status = a.statusLine(4)
        let r = try LuaContext.with(a.L) { try RobustSarsa.train(victim: victim, env: env, config: c) }
        status?("")
        pushModule(a.L, r.q)
        lua_createtable(a.L, Int32(r.losses.count), 0)
        for (i, v) in r.losses.enumerated() { lua_pushnumber(a.L, v); lua_rawseti(a.L, -2, lua_Integer(i + 1)) }
        return 2
    } }),
    // adapt(policies, env, conditions, schedule, options, status) -> rounds, expected, best
    ("adapt", { L in bind(L, "parry.rl.adapt") { a in
        guard a.type(1) == LUA_TTABLE, a.rawLength(1) > 0 else { throw a.fail("policies must be a non-empty list of parry.rl.Policy (the policy class)") }
        var policies: [ActorCritic] = []
        for k in 1...a.rawLength(1) { let j = a.rawIndex(1, k); defer { a.pop() }; policies.append(try a.policy(j)) }
        guard let env = try a.handle(2).single else { throw a.fail("adapt runs a single env, got a vector env") }
        for (k, p) in policies.enumerated() where p.observationSpace != env.observationSpace || p.actionSpace != env.actionSpace {
            throw a.fail("policy \(k + 1)'s spaces differ from the env's")
        }
        var conditions: [ObservationAttack?] = []
        for k in 0..<a.rawLength(3) {
            let j = a.rawIndex(3, k + 1); defer { a.pop() }
            conditions.append(lua_type(a.L, j) == LUA_TBOOLEAN ? nil : try a.stateAttack(j))
        }
        let schedule = try a.integerList(4, "schedule").map { $0 - 1 }
        let o = try a.options(5, allowed: ["normalizer", "offset", "lr", "eval_episodes", "seed"])
        let status = a.statusLine(6)
        let r = try LuaContext.with(a.L) {
            try Adaptation.run(policies: policies, env: env, conditions: conditions, schedule: schedule,
                               normalizer: try o.number("normalizer"), offset: try o.number("offset"), lr: try o.number("lr") ?? 5,
                               evalEpisodes: try o.integer("eval_episodes") ?? 5,
                               seed: try o.seed() ?? 1) { round in
                status?(String(format: "EXP3 round %d/%d  arm %d  reward %.1f  regret %.1f", round.round, schedule.count, round.arm + 1, round.reward, round.regret))
            }
        }
        status?("")
        lua_createtable(a.L, Int32(r.rounds.count), 0)
        for (i, round) in r.rounds.enumerated() {
            lua_createtable(a.L, 0, 6)
            lua_pushinteger(a.L, lua_Integer(round.round)); lua_setfield(a.L, -2, "round")
            lua_pushinteger(a.L, lua_Integer(round.arm + 1)); lua_setfield(a.L, -2, "arm")
            lua_pushinteger(a.L, lua_Integer(round.condition + 1)); lua_setfield(a.L, -2, "condition")
            lua_pushnumber(a.L, round.reward); lua_setfield(a.L, -2, "reward")
            lua_pushnumber(a.L, round.regret); lua_setfield(a.L, -2, "regret")
            lua_createtable(a.L, Int32(round.probabilities.count), 0)
            for (j, p) in round.probabilities.enumerated() { lua_pushnumber(a.L, p); lua_rawseti(a.L, -2, lua_Integer(j + 1)) }
            lua_setfield(a.L, -2, "probabilities")
            lua_rawseti(a.L, -2, lua_Integer(i + 1))
        }
        lua_createtable(a.L, Int32(r.expected.count), 0)
        for (c, row) in r.expected.enumerated() {
            lua_createtable(a.L, Int32(row.count), 0)
            for (j, v) in row.enumerated() { lua_pushnumber(a.L, v); lua_rawseti(a.L, -2, lua_Integer(j + 1)) }
            lua_rawseti(a.L, -2, lua_Integer(c + 1))
        }
        lua_pushinteger(a.L, lua_Integer(r.bestFixed + 1))
        return 3
    } }),
    // mlp_policy(observation_space, action_space, hidden, activation) -> actor, critic, log_std|nil
    ("mlp_policy", { L in bind(L, "parry.rl.Policy") { a in
        let obs = try a.space(1, "observation_space"), act = try a.space(2, "action_space")
        let hidden = a.isNil(3) ? [64, 64] : try a.integerList(3, "hidden")
        guard hidden.allSatisfy({ $0 > 0 }) else { throw a.fail("hidden sizes must be positive, got \(hidden)") }
        let kindName = a.isNil(4) ? "tanh" : try a.string(4, "activation")
        let kinds: [String: Activation.Kind] = ["tanh": .Tanh, "relu": .ReLU, "gelu": .GELU, "sigmoid": .Sigmoid]
        guard let kind = kinds[kindName.lowercased()] else { throw a.fail("activation must be one of tanh, relu, gelu, sigmoid; got '\(kindName)'") }
        let gen = Generator(seed: try a.optSeed(5) ?? Generator.current.next())
        let p = try Generator.$current.withValue(gen) { try ActorCritic.mlp(observationSpace: obs, actionSpace: act, hidden: hidden, activation: kind) }
        pushModule(a.L, p.actor); pushModule(a.L, p.critic)
        if let s = p.logStd { pushTensor(a.L, s) } else { lua_pushnil(a.L) }
        return 3
    } }),
    ("act", { L in bind(L, "Policy:act") { a in
        let p = try a.policy(1)
        let batched = a.optTensor(2).map { $0.ndim == p.observationSpace.shape.count + 1 } ?? false
        let (obs, rows) = try a.observations(2, for: p, argument: 2, single: !batched)
        let deterministic = a.isNil(3) ? false : lua_toboolean(a.L, 3) != 0
        let g = try a.generatorArg(4)
        let acts = try LuaContext.with(a.L) { try p.act(try obs.to(.float32).contiguous().floats(), rows: rows, deterministic: deterministic, generator: g) }
        try pushObservations(a.L, acts, p.actionSpace, rows: batched ? rows : nil)
        return 1
    } }),
    ("normalize", { L in bind(L, "Policy:normalize") { a in
        let p = try a.policy(1)
        let (obs, rows) = try a.observations(2, for: p, argument: 2)
        return a.push(try p.prepare(try obs.to(.float32).contiguous().floats(), rows: rows).reshape(obs.shape))
    } }),
    ("value", { L in bind(L, "Policy:value") { a in
        let p = try a.policy(1)
        let (obs, rows) = try a.observations(2, for: p, argument: 2)
        return a.push(try LuaContext.with(a.L) { try GradMode.noGrad { try p.value(try p.prepare(try obs.to(.float32).contiguous().floats(), rows: rows)) } })
    } }),
    // ppo(policy, envs, options, status) -> records, rms mean, rms var, rms count
    ("ppo", { L in bind(L, "parry.rl.ppo") { a in
        let p = try a.policy(1)
        let h = try a.handle(2)
        guard let v = h.vector, v.autoresetMode == .sameStep else { throw a.fail("internal: expected a same-step vector env") }
        let o = try a.options(3, allowed: ppoOptionNames)
        let (c, rewardNorm, clipAction) = try a.ppoConfig(o, box: !p.actionSpace.isDiscrete)
        let onUpdate = try a.callbackOption(o, "on_update") { (r: PPO.UpdateRecord) in pushRecord(L!, r); return 1 }
        let status = a.statusLine(4)
        let records = try LuaContext.with(a.L) {
            try PPO.train(policy: p, envs: v, config: c, clipAction: clipAction, rewardNormalizer: rewardNorm) { r in
                let ret = r.episodeReturn.isNaN ? "-" : String(format: "%.1f", r.episodeReturn)
                status?("PPO update \(r.update)/\(r.updates)  step \(r.globalStep)  return \(ret)" + String(format: "  kl %.4f  clip %.3f", r.approxKL, r.clipFraction))
                try onUpdate?(r)
            }
        }
        status?("")
        a.pushRecords(records)
        return 1 + (try a.pushStats(p))
    } }),
    // atla(victim, adversary, victim envs, adversary envs, victim options, adversary options, {eps=, victim_updates=, adversary_updates=}, status)
    //   -> victim records, adversary records, victim stats (3), adversary stats (3)
    ("atla", { L in bind(L, "parry.rl.atla") { a in
        let victim = try a.policy(1), adversary = try a.policy(2)
        guard let ve = try a.handle(3).vector, let ae = try a.handle(4).vector else { throw a.fail("internal: expected vector envs") }
        let (vc, vr, vclip) = try a.ppoConfig(try a.options(5, allowed: ppoOptionNames), box: !victim.actionSpace.isDiscrete)
        let (ac, ar, aclip) = try a.ppoConfig(try a.options(6, allowed: ppoOptionNames), box: true)
        let o = try a.options(7, allowed: ["eps", "victim_updates", "adversary_updates"])
        guard let eps = try o.number("eps") else { throw a.fail("missing option eps") }
        let status = a.statusLine(8)
        let r = try LuaContext.with(a.L) {
            try ATLA.train(victim: victim, adversary: adversary, victimEnvs: ve, adversaryEnvs: ae, eps: eps,
                           victimConfig: vc, adversaryConfig: ac, victimClip: vclip, adversaryClip: aclip,
                           victimRewardNormalizer: vr, adversaryRewardNormalizer: ar,
                           victimUpdates: try o.integer("victim_updates") ?? 1, adversaryUpdates: try o.integer("adversary_updates") ?? 1) { v in
                let ret = v.episodeReturn.isNaN ? "-" : String(format: "%.1f", v.episodeReturn)
                status?("ATLA update \(v.update)/\(v.updates)  victim return under attack \(ret)")
            }
        }
        status?("")
        a.pushRecords(r.victim)
        a.pushRecords(r.adversary)
        let n = try a.pushStats(victim)
        if n == 0 { lua_pushnil(a.L); lua_pushnil(a.L); lua_pushnil(a.L) }
        let m = try a.pushStats(adversary)
        if m == 0 { lua_pushnil(a.L); lua_pushnil(a.L); lua_pushnil(a.L) }
        return 8
    } }),
    // evaluate(policy | fn, env, episodes, deterministic, seed) -> returns, lengths, mean, median, sd
    ("evaluate", { L in bind(L, "parry.rl.evaluate") { a in
        let h = try a.handle(2)
        guard let env = h.single else { throw a.fail("evaluate runs a single env (use parry.rl.make), got a vector env") }
        let episodes = try a.integer(3, "episodes")
        let deterministic = lua_toboolean(a.L, 4) != 0
        let seed = try a.optSeed(5)
        let act: ([Float]) throws -> [Float]
        if a.type(1) == LUA_TFUNCTION {
            if !a.isNil(6) { throw a.fail("an attack needs a parry.rl.Policy (it uses the policy's networks), not a function") }
            act = { obs in
                try a.call(1, nresults: 1) { (try? pushObservations(a.L, obs, env.observationSpace, rows: nil)) == nil ? 0 : 1 }
                defer { a.pop() }
                return try a.action(-1, env.actionSpace)
            }
        } else {
            let p = try a.policy(1)
            guard p.observationSpace == env.observationSpace, p.actionSpace == env.actionSpace else {
                throw a.fail("the policy's spaces (\(a.luaName(p.observationSpace)), \(a.luaName(p.actionSpace))) differ from the env's (\(a.luaName(env.observationSpace)), \(a.luaName(env.actionSpace)))")
            }
            let g = Generator(seed: seed.map { $0 &+ 0x9E37 } ?? Generator.current.next())
            let attack = a.isNil(6) ? nil : try a.stateAttack(6)
            act = { obs in try p.act(obs, rows: 1, deterministic: deterministic, generator: g, attack: attack) }
        }
        let r = try LuaContext.with(a.L) { try evaluate(env: env, episodes: episodes, seed: seed, act: act) }
        lua_createtable(a.L, 0, 5)
        lua_createtable(a.L, Int32(r.returns.count), 0)
        for (i, v) in r.returns.enumerated() { lua_pushnumber(a.L, v); lua_rawseti(a.L, -2, lua_Integer(i + 1)) }
        lua_setfield(a.L, -2, "returns")
        lua_createtable(a.L, Int32(r.lengths.count), 0)
        for (i, v) in r.lengths.enumerated() { lua_pushinteger(a.L, lua_Integer(v)); lua_rawseti(a.L, -2, lua_Integer(i + 1)) }
        lua_setfield(a.L, -2, "lengths")
        lua_pushnumber(a.L, r.mean); lua_setfield(a.L, -2, "mean")
        lua_pushnumber(a.L, r.median); lua_setfield(a.L, -2, "median")
        lua_pushnumber(a.L, r.sd); lua_setfield(a.L, -2, "sd")
        return 1
    } }),
]

/// The option names of parry.rl.ppo that reach Swift.
let ppoOptionNames = ["total_steps", "num_steps", "lr", "anneal_lr", "gamma", "gae_lambda", "num_minibatches",
                      "update_epochs", "norm_adv", "clip_coef", "clip_vloss", "ent_coef", "vf_coef", "max_grad_norm",
                      "target_kl", "adam_eps", "bootstrap_truncated", "seed", "normalize_reward", "clip_action",
                      "reward_clip", "on_update", "sa_reg", "sa_eps", "sa_steps", "sa_ramp", "sa_detach_stdev"]

extension LuaArgs {
    /// PPO's configuration, reward normalizer and action clipping from an options table.
    func ppoConfig(_ o: LuaOptions, box: Bool) throws -> (PPO.Config, NormalizeReward?, Bool) {
        var c = PPO.Config()
        c.totalSteps = try o.integer("total_steps") ?? c.totalSteps
        c.numSteps = try o.integer("num_steps") ?? c.numSteps
        c.learningRate = try o.number("lr") ?? c.learningRate
        c.annealLR = try o.bool("anneal_lr") ?? c.annealLR
        c.gamma = try o.number("gamma") ?? c.gamma
        c.gaeLambda = try o.number("gae_lambda") ?? c.gaeLambda
        c.numMinibatches = try o.integer("num_minibatches") ?? c.numMinibatches
        c.updateEpochs = try o.integer("update_epochs") ?? c.updateEpochs
        c.normalizeAdvantages = try o.bool("norm_adv") ?? c.normalizeAdvantages
        c.clipCoef = try o.number("clip_coef") ?? c.clipCoef
        c.clipValueLoss = try o.bool("clip_vloss") ?? c.clipValueLoss
        c.entCoef = try o.number("ent_coef") ?? c.entCoef
        c.vfCoef = try o.number("vf_coef") ?? c.vfCoef
        c.maxGradNorm = try o.number("max_grad_norm") ?? c.maxGradNorm
        c.targetKL = try o.number("target_kl")
        c.adamEps = try o.number("adam_eps") ?? c.adamEps
        c.bootstrapTruncated = try o.bool("bootstrap_truncated") ?? c.bootstrapTruncated
        c.seed = try o.seed() ?? c.seed
        c.saRegularizer = try o.number("sa_reg") ?? c.saRegularizer
        c.saEps = try o.number("sa_eps") ?? c.saEps
        c.saSteps = try o.integer("sa_steps") ?? c.saSteps
        c.saRamp = try o.number("sa_ramp") ?? c.saRamp
        c.saDetachStdev = try o.bool("sa_detach_stdev") ?? c.saDetachStdev
        let rewardNorm = (try o.bool("normalize_reward") ?? box)
            ? try NormalizeReward(gamma: c.gamma, clip: try o.number("reward_clip") ?? 10) : nil
        let clipAction = try o.bool("clip_action") ?? box
        if clipAction && !box { throw fail("clip_action needs a Box action space") }
        return (c, rewardNorm, clipAction)
    }

    /// The observation statistics of `p` as three results (mean, var, count), or none.
    func pushStats(_ p: ActorCritic) throws -> Int32 {
        guard let n = p.normalizer else { return 0 }
        pushTensor(L, try Tensor(n.stats.mean.map { Float($0) }, shape: [n.stats.size]))
        pushTensor(L, try Tensor(n.stats.variance.map { Float($0) }, shape: [n.stats.size]))
        lua_pushnumber(L, n.stats.count)
        return 3
    }

    func pushRecords(_ records: [PPO.UpdateRecord]) {
        lua_createtable(L, Int32(records.count), 0)
        for (i, r) in records.enumerated() { pushRecord(L, r); lua_rawseti(L, -2, lua_Integer(i + 1)) }
    }
}

private func pushRecord(_ L: LuaState, _ r: PPO.UpdateRecord) {
    lua_createtable(L, 0, 15)
    func set(_ k: String, _ v: Double) { lua_pushnumber(L, v); lua_setfield(L, -2, k) }
    lua_pushinteger(L, lua_Integer(r.update)); lua_setfield(L, -2, "update")
    lua_pushinteger(L, lua_Integer(r.globalStep)); lua_setfield(L, -2, "global_step")
    lua_pushinteger(L, lua_Integer(r.episodes)); lua_setfield(L, -2, "episodes")
    set("episodic_return", r.episodeReturn); set("episodic_length", r.episodeLength)
    set("policy_loss", r.policyLoss); set("value_loss", r.valueLoss); set("entropy", r.entropy)
    set("old_approx_kl", r.oldApproxKL); set("approx_kl", r.approxKL); set("clip_fraction", r.clipFraction)
    set("explained_variance", r.explainedVariance); set("learning_rate", r.learningRate); set("sps", r.stepsPerSecond)
    set("sa_reg", r.saRegularizer); set("sa_eps", r.saEps)
}

extension LuaArgs {
    /// The observation tensor at `i` for policy `p` and its number of rows
    /// (one observation, or a batch; `single` demands exactly one).
    /// `argument` is the position the script sees (methods count self).
    func observations(_ i: Int32, for p: ActorCritic, argument: Int, single: Bool = false) throws -> (Tensor, Int) {
        guard let obs = optTensor(i) else { throw fail("expected an observation tensor (argument \(argument)), got \(typeName(i))") }
        let d = Swift.max(p.observationSpace.flatCount, 1)
        guard obs.numel > 0, obs.numel % d == 0, !single || obs.numel == d else {
            throw fail("observation of shape \(obs.shape) does not match \(luaName(p.observationSpace))")
        }
        return (obs, obs.numel / d)
    }

    /// The generator at `i`, or parry's current one when it is nil.
    func generatorArg(_ i: Int32) throws -> Generator {
        if isNil(i) { return Generator.current }
        guard let g: Generator = optObject(i, Int32(PARRY_GENERATOR)) else { throw fail("generator must be a parry.Generator") }
        return g
    }

    /// An actor-critic from a Lua policy table {actor=, critic=, log_std=,
    /// observation_space=, action_space=, obs_rms={mean=, var=, count=, clip=, epsilon=}}.
    func policy(_ i: Int32) throws -> ActorCritic {
        guard type(i) == LUA_TTABLE else { throw fail("expected a policy (parry.rl.Policy) for argument \(i), got \(typeName(i))") }
        let actor = rawField(i, "actor"); defer { pop() }
        let critic = rawField(i, "critic"); defer { pop() }
        let logStd = rawField(i, "log_std"); defer { pop() }
        let os = rawField(i, "observation_space"); defer { pop() }
        let asp = rawField(i, "action_space"); defer { pop() }
        let rms = rawField(i, "obs_rms"); defer { pop() }
        let obsSpace = try space(os, "policy.observation_space"), actSpace = try space(asp, "policy.action_space")
        var normalizer: ObservationNormalizer? = nil
        if type(rms) == LUA_TTABLE {
            let m = rawField(rms, "mean"); defer { pop() }
            let v = rawField(rms, "var"); defer { pop() }
            let c = rawField(rms, "count"); defer { pop() }
            let cl = rawField(rms, "clip"); defer { pop() }
            let ep = rawField(rms, "epsilon"); defer { pop() }
            guard let mean = optTensor(m), let variance = optTensor(v), mean.numel == obsSpace.flatCount, variance.numel == mean.numel else {
                throw fail("policy.obs_rms needs mean and var tensors of \(obsSpace.flatCount) values")
            }
            let stats = RunningMeanStd(size: mean.numel)
            stats.mean = mean.doubles(); stats.variance = variance.doubles()
            stats.count = isNil(c) ? 1e-4 : try number(c, "obs_rms.count")
            normalizer = ObservationNormalizer(stats: stats, clip: isNil(cl) ? 10 : try number(cl, "obs_rms.clip"),
                                               epsilon: isNil(ep) ? 1e-8 : try number(ep, "obs_rms.epsilon"))
        }
        return try ActorCritic(actor: try module(actor, "policy.actor"), critic: try module(critic, "policy.critic"),
                               logStd: optTensor(logStd), observationSpace: obsSpace, actionSpace: actSpace, normalizer: normalizer)
    }
}

extension LuaArgs {
    /// A state attack from a Lua spec {kind=, eps=, steps=, step_eps=, beta=} (parry.rl.attacks.*).
    func stateAttack(_ i: Int32) throws -> ObservationAttack {
        guard type(i) == LUA_TTABLE else { throw fail("expected an attack (parry.rl.attacks.*) for argument \(i), got \(typeName(i))") }
        func field<T>(_ k: String, _ read: (Int32) throws -> T) throws -> T? {
            let j = rawField(i, k); defer { pop() }
            return isNil(j) ? nil : try read(j)
        }
        guard let kind = try field("kind", { try string($0, "attack kind") }) else { throw fail("the attack has no kind") }
        guard let eps = try field("eps", { try number($0, "eps") }) else { throw fail("the attack has no eps") }
        let steps = try field("steps", { try integer($0, "steps") })
        switch kind {
        case "random": return try RandomAttack(eps: eps)
        case "critic": return try CriticAttack(eps: eps, steps: steps ?? 10, stepEps: try field("step_eps", { try number($0, "step_eps") }))
        case "mad": return try MADAttack(eps: eps, steps: steps ?? 10, beta: try field("beta", { try number($0, "beta") }) ?? 1)
        case "sa_rl", "pa_ad":
            let j = rawField(i, "adversary"); defer { pop() }
            return try LearnedAttack(eps: eps, adversary: try policy(j), mode: kind == "sa_rl" ? .state : .action, steps: steps ?? 10)
        case "rs":
            let j = rawField(i, "q"); defer { pop() }
            return try RSAttack(eps: eps, q: try module(j, "the attack's q"), steps: steps ?? 10,
                                actionRatio: try field("action_ratio", { try number($0, "action_ratio") }) ?? 0)
        default: throw fail("unknown attack kind '\(kind)' (expected random, critic, mad, rs, sa_rl or pa_ad)")
        }
    }
}

let envHandleMetamethods: [(String, parry_SwiftFunction)] = [
    ("__gc", { L in
        if let L, let p = parry_takeobject(L, 1, Int32(PARRY_ENV)) { Unmanaged<EnvHandle>.fromOpaque(p).release() }
        return 0
    }),
]
