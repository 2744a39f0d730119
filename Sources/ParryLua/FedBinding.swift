import CLua
import CLuaShim
import Foundation
import ParryCore
import ParryDist
import ParryFed
import ParryNN

// Bindings of parry.fl (ParryFed). stdlib/parry/fl.lua builds the models,
// datasets and adversary specs and calls these; labels are 1-based here and
// 0-based in Swift, rounds and clients 1-based in every result.

extension LuaArgs {
    /// A flat update from a tensor of any shape with `count` elements.
    func flatUpdate(_ j: Int32, count: Int?, _ what: String) throws -> [Float] {
        guard let t = optTensor(j) else { throw fail("\(what) must be a tensor, got \(typeName(j))") }
        if let count, t.numel != count {
            throw fail("\(what) has \(t.numel) elements; the model has \(count) parameters")
        }
        return t.dtype == .float32 ? t.floats() : t.doubles().map { Float($0) }
    }

    func setField(_ key: String, _ v: Double?) {
        guard let v else { return }
        lua_pushnumber(L, v); lua_setfield(L, -2, key)
    }

    func setField(_ key: String, _ v: Int?) {
        guard let v else { return }
        lua_pushinteger(L, lua_Integer(v)); lua_setfield(L, -2, key)
    }

    func setField(_ key: String, _ v: Bool) {
        lua_pushboolean(L, v ? 1 : 0); lua_setfield(L, -2, key)
    }

    func pushDoubles(_ v: [Double]) {
        lua_createtable(L, Int32(clamping: v.count), 0)
        for (k, x) in v.enumerated() { lua_pushnumber(L, x); lua_rawseti(L, -2, lua_Integer(k + 1)) }
    }

    /// One client's data: a float tensor x and 1-based labels y.
    /// Client data from tensors x and y at the given stack slots; `rows` (a slot
    /// holding a 1-based int64 index tensor, or 0) makes it an index view of x.
    func clientData(_ x: Int32, _ y: Int32, _ what: String, rows r: Int32 = 0) throws -> ClientData {
        guard let xt = optTensor(x), let yt = optTensor(y) else { throw fail("\(what) needs tensors x and y") }
        guard yt.dtype == .int64, yt.ndim == 1 else { throw fail("\(what) labels must be a 1-D int64 tensor of classes 1..C") }
        if r != 0, let rt = optTensor(r) {
            guard rt.dtype == .int64, rt.ndim == 1, rt.shape[0] == yt.shape[0] else {
                throw fail("\(what) rows must be a 1-D int64 tensor with one index per label")
            }
            guard xt.ndim >= 1 else { throw fail("\(what) inputs need a sample dimension") }
            do {
                return try ClientData(x: xt, y: yt.binary(.sub, .int(1)), rows: rt.int64s().map { Int($0) - 1 })
            } catch let e as TensorError { throw fail("\(what): \(e.message)") }
        }
        guard xt.ndim >= 1, xt.shape[0] == yt.shape[0] else {
            throw fail("\(what) has \(xt.ndim >= 1 ? xt.shape[0] : 0) inputs but \(yt.shape[0]) labels")
        }
        return try ClientData(x: xt, y: yt.binary(.sub, .int(1)))
    }

    /// The adversary spec table at `j` ({kind=, zero=, map=, k=, scale=, sigma=, fn=}).
    func adversary(_ j: Int32, _ who: Int, spec: Int32) throws -> Adversary {
        let o = try options(j, allowed: ["kind", "zero", "map", "k", "scale", "sigma", "fn", "name"])
        guard let kind = try o.string("kind") else { throw fail("adversary of client \(who) has no kind") }
        switch kind {
        case "free_rider": return .freeRider(zero: try o.bool("zero") ?? false)
        case "label_flip":
            var map: [Int: Int] = [1: 7]  // RFFL's 1 -> 7 in 0-based classes (2 -> 8 in parry's 1-based labels)
            let m = rawField(j, "map"); defer { pop() }
            if !isNil(m) {
                guard type(m) == LUA_TTABLE else { throw fail("label_flip map must be a table {[from] = to}, got \(typeName(m))") }
                map = [:]
                lua_pushnil(L)
                while lua_next(L, m) != 0 {
                    defer { pop() }
                    var ok1: Int32 = 0, ok2: Int32 = 0
                    let from = parry_tointeger(L, -2, &ok1), to = parry_tointeger(L, -1, &ok2)
                    guard ok1 != 0, ok2 != 0, from >= 1, to >= 1 else {
                        pop()
                        throw fail("label_flip map must map labels to labels (integers ≥ 1)")
                    }
                    map[Int(from) - 1] = Int(to) - 1
                }
            }
            return .labelFlip(map: map)
        case "sign_flip": return .signFlip(k: try o.number("k") ?? 1)
        case "rescale": return .rescale(scale: try o.number("scale") ?? 10)
        case "value_invert": return .valueInvert
        case "sign_random": return .signRandom
        case "gaussian":
            let s = try o.number("sigma") ?? 1
            guard s >= 0 else { throw fail("gaussian sigma must be ≥ 0, got \(s)") }
            return .gaussian(sigma: s)
        case "custom":
            let f = rawField(j, "fn"); let isFunction = type(f) == LUA_TFUNCTION; pop()
            guard isFunction else { throw fail("a custom adversary needs fn = function(update, round)") }
            let name = try o.string("name") ?? "custom"
            return .custom(name: name) { update, round in
                // Look the function up again at each call: spec.adversaries[who].fn.
                let top = lua_gettop(self.L)
                defer { self.pop(lua_gettop(self.L) - top) }
                let list = self.rawField(spec, "adversaries")
                guard self.type(list) == LUA_TTABLE else { throw TensorError("the adversary list changed during the simulation") }
                let entry = self.rawIndex(list, who)
                guard self.type(entry) == LUA_TTABLE else { throw TensorError("the adversary list changed during the simulation") }
                let fn = self.rawField(entry, "fn")
                let t = try Tensor(update, shape: [update.count])
                try self.call(fn, nresults: 1) {
                    pushTensor(self.L, t)
                    lua_pushinteger(self.L, lua_Integer(round))
                    return 2
                }
                return try self.flatUpdate(-1, count: update.count, "the adversary function's result")
            }
        default:
            throw fail("unknown adversary '\(kind)' (expected free_rider, label_flip, sign_flip, rescale, value_invert, sign_random, gaussian or a function)")
        }
    }

    func aggregator(_ o: LuaOptions, slot: Int32, count: Int) throws -> Aggregator {
        if type(slot) == LUA_TFUNCTION {
            return .custom { updates, weights, round in
                let tensors = try updates.map { try Tensor($0, shape: [$0.count]) }
                try self.call(slot, nresults: 1) {
                    lua_createtable(self.L, Int32(clamping: updates.count), 0)
                    for (k, t) in tensors.enumerated() {
                        pushTensor(self.L, t)
                        lua_rawseti(self.L, -2, lua_Integer(k + 1))
                    }
                    self.pushDoubles(weights)
                    lua_pushinteger(self.L, lua_Integer(round))
                    return 3
                }
                defer { self.pop() }
                return try self.flatUpdate(-1, count: count, "the aggregator function's result")
            }
        }
        let name = try o.string("aggregator") ?? "fedavg"
        switch name {
        case "fedavg": return .fedavg
        case "median": return .median
        case "trimmed_mean": return .trimmedMean(beta: try o.number("beta") ?? 0.1)
        case "krum", "multi_krum":
            guard let f = try o.integer("f") else { throw fail("\(name) needs option f (the number of Byzantine clients tolerated)") }
            return .krum(f: f, m: try o.integer("m") ?? (name == "krum" ? 1 : 0))
        case "fltrust": return .fltrust
        case "rffl": return .rffl
        default: throw fail("unknown aggregator '\(name)' (expected fedavg, median, trimmed_mean, krum, multi_krum, fltrust, rffl or a function)")
        }
    }

    func localTraining(_ o: LuaOptions) throws -> LocalTraining {
        var t = LocalTraining()
        t.epochs = try o.integer("epochs") ?? t.epochs
        t.batchSize = try o.integer("batch_size") ?? t.batchSize
        t.lr = try o.number("lr") ?? t.lr
        t.momentum = try o.number("momentum") ?? t.momentum
        t.weightDecay = try o.number("weight_decay") ?? t.weightDecay
        t.lrDecay = try o.number("lr_decay") ?? t.lrDecay
        guard t.epochs >= 0 else { throw fail("local_epochs must be ≥ 0, got \(t.epochs)") }
        guard t.batchSize >= 1 else { throw fail("batch_size must be ≥ 1, got \(t.batchSize)") }
        guard t.lr >= 0, t.lrDecay > 0 else { throw fail("lr must be ≥ 0 and lr_decay > 0") }
        return t
    }

    /// The model pool (the `pool` list of modules).
    func modelPool(_ spec: Int32) throws -> ModelPool {
        let mi = rawField(spec, "pool"); defer { pop() }
        return try ModelPool(try objectList(mi, Int32(PARRY_MODULE), "pool", "modules"))
    }

    /// Participants from the parallel lists xs[i], ys[i], adversaries[i] (false = honest).
    func participants(_ o: LuaOptions, _ spec: Int32) throws -> [Participant] {
        let xi = rawField(spec, "xs"); defer { pop() }
        let yi = rawField(spec, "ys"); defer { pop() }
        let ai = rawField(spec, "adversaries"); defer { pop() }
        let ri = rawField(spec, "rows"); defer { pop() }
        guard type(xi) == LUA_TTABLE, type(yi) == LUA_TTABLE, rawLength(xi) == rawLength(yi) else {
            throw fail("expected as many label tensors as input tensors")
        }
        var out: [Participant] = []
        for k in 0..<rawLength(xi) {
            let x = rawIndex(xi, k + 1); defer { pop() }
            let y = rawIndex(yi, k + 1); defer { pop() }
            let r = type(ri) == LUA_TTABLE ? rawIndex(ri, k + 1) : 0
            defer { if r != 0 { pop() } }
            let data = try clientData(x, y, "client \(k + 1)'s data", rows: r)
            var adv: Adversary? = nil
            if type(ai) == LUA_TTABLE {
                let j = rawIndex(ai, k + 1); defer { pop() }
                if type(j) == LUA_TTABLE { adv = try adversary(j, k + 1, spec: lua_absindex(L, spec)) }
            }
            out.append(try Participant(data: data, adversary: adv))
        }
        return out
    }

    func push(record r: RoundRecord, kinds: [String]) {
        lua_createtable(L, 0, 6)
        setField("round", r.round)
        setField("global_accuracy", r.globalAccuracy)
        setField("train_seconds", r.trainSeconds)
        setField("seconds", r.seconds)
        lua_createtable(L, Int32(clamping: r.accuracy.count), 0)
        for i in 0..<r.accuracy.count {
            lua_createtable(L, 0, 6)
            setField("client", i + 1)
            pushString(L, kinds[i]); lua_setfield(L, -2, "kind")
            setField("accuracy", r.accuracy[i])
            setField("reputation", r.reputation?[i])
            setField("removed", r.removed[i])
            setField("selected", r.selected[i])
            setField("update_norm", r.updateNorm[i])
            if let w = r.weight?[i] { setField("weight", w) }
            lua_rawseti(L, -2, lua_Integer(i + 1))
        }
        lua_setfield(L, -2, "clients")
    }
}

let fedOptions = ["pool", "server", "xs", "ys", "rows", "adversaries", "test_x", "test_y", "root_x", "root_y", "rounds",
                  "epochs", "batch_size", "lr", "momentum", "weight_decay", "lr_decay", "fraction", "server_lr", "clip",
                  "aggregator", "beta", "f", "m", "gamma", "alpha", "threshold", "removal_after", "sparsify",
                  "eval_clients", "eval_batch", "parallel", "seed", "on_round", "distributed"]

let fedFunctions: [(String, parry_SwiftFunction)] = [
    ("partition", { L in bind(L, "parry.fl.partition") { a in
        let y = try a.labels(1, "labels")
        let n = try a.integer(2, "n")
        let o = try a.options(3, allowed: ["method", "alpha", "min_size", "a", "size", "shards", "classes", "seed", "generator"])
        let labels = y.int64s().map { Int($0) }
        guard let lowest = labels.min(), let highest = labels.max(), lowest >= 0 else { throw a.fail("labels must be integers ≥ 1") }
        let classes = try o.integer("classes") ?? (highest + 1)
        guard classes > highest else { throw a.fail("labels go up to \(highest + 1) but classes = \(classes)") }
        let method: PartitionMethod
        switch try o.string("method") ?? "iid" {
        case "iid": method = .iid
        case "dirichlet":
            method = .dirichlet(alpha: try o.number("alpha") ?? 0.5, minSize: try o.integer("min_size") ?? 10)
        case "powerlaw": method = .powerlaw(a: try o.number("a") ?? 1.65911332899)
        case "classes": method = .classes(size: try o.integer("size"))
        case "shards": method = .shards(perClient: try o.integer("shards") ?? 2)
        case let m: throw a.fail("unknown method '\(m)' (expected iid, dirichlet, powerlaw, classes or shards)")
        }
        let p = try Partitioner.split(labels: labels, classes: classes, clients: n, method: method, generator: try a.generatorOption(o))
        a.push(try p.indices.map { try Tensor($0.map { Int64($0 + 1) }, shape: [$0.count]) })
        lua_createtable(a.L, Int32(n), 0)
        for (k, h) in p.histogram.enumerated() { _ = a.push(sizes: h); lua_rawseti(a.L, -2, lua_Integer(k + 1)) }
        return 2
    } }),
    ("simulate", { L in bind(L, "parry.fl.simulate") { a in
        guard a.type(1) == LUA_TTABLE else { throw a.fail("expected a table of settings, got \(a.typeName(1))") }
        let o = try a.options(1, allowed: fedOptions)
        let ps = try a.participants(o, 1)
        let si = a.rawField(1, "server")  // stack slots stay until return (Lua drops them)
        guard let server = a.optModule(si) else { throw a.fail("missing server model") }
        let tx = a.rawField(1, "test_x"), ty = a.rawField(1, "test_y")
        let test = try a.clientData(tx, ty, "test data")
        let rx = a.rawField(1, "root_x"), ry = a.rawField(1, "root_y")
        let root = a.isNil(rx) ? nil : try a.clientData(rx, ry, "root data")
        var c = FedConfig()
        c.rounds = try o.integer("rounds") ?? c.rounds
        c.local = try a.localTraining(o)
        c.fraction = try o.number("fraction") ?? c.fraction
        c.serverLR = try o.number("server_lr") ?? c.serverLR
        c.clip = try o.number("clip")
        let ag = a.rawField(1, "aggregator")
        c.aggregator = try a.aggregator(o, slot: ag, count: ParameterLayout(server.allParameters()).total)
        if case let .krum(f, m) = c.aggregator, m == 0 {
            // multi_krum's default m: every update Krum would not count as Byzantine
            c.aggregator = .krum(f: f, m: max(1, ps.count - f))
        }
        c.rffl.gamma = try o.number("gamma") ?? c.rffl.gamma
        c.rffl.alpha = try o.number("alpha") ?? c.rffl.alpha
        c.rffl.threshold = try o.number("threshold") ?? c.rffl.threshold
        c.rffl.removalAfter = try o.integer("removal_after") ?? c.rffl.removalAfter
        c.rffl.sparsify = try o.bool("sparsify") ?? c.rffl.sparsify
        guard c.rffl.gamma > 0, c.rffl.alpha >= 0, c.rffl.alpha <= 1, c.rffl.threshold >= 0 else {
            throw a.fail("rffl needs gamma > 0, alpha in [0, 1] and threshold ≥ 0")
        }
        c.evalClients = try o.bool("eval_clients") ?? c.evalClients
        c.evalBatch = try o.integer("eval_batch") ?? c.evalBatch
        c.parallel = try o.bool("parallel") ?? c.parallel
        c.seed = try o.seed() ?? 0
        if try o.bool("distributed") ?? false { c.communicator = Communicator.world }
        let sim = try Simulation(participants: ps, server: server, pool: try a.modelPool(1), test: test, root: root, config: c)
        let kinds = ps.map { $0.adversary?.name ?? "honest" }
        let cb = a.rawField(1, "on_round")
        if a.type(cb) == LUA_TFUNCTION {
            sim.onRound = { r in try a.call(cb, nresults: 0) { a.push(record: r, kinds: kinds); return 1 } }
        } else if !a.isNil(cb) {
            throw a.fail("on_round must be a function(record), got \(a.typeName(cb))")
        }
        let r = try LuaContext.with(a.L) { try sim.run() }
        lua_createtable(a.L, 0, 6)
        lua_createtable(a.L, Int32(r.rounds.count), 0)
        for (k, rec) in r.rounds.enumerated() { a.push(record: rec, kinds: kinds); lua_rawseti(a.L, -2, lua_Integer(k + 1)) }
        lua_setfield(a.L, -2, "rounds")
        lua_createtable(a.L, Int32(ps.count), 0)
        for i in 0..<ps.count {
            lua_createtable(a.L, 0, 6)
            a.setField("client", i + 1)
            pushString(a.L, kinds[i]); lua_setfield(a.L, -2, "kind")
            a.setField("size", ps[i].data.count)
            a.setField("final_accuracy", r.finalAccuracy[i])
            a.setField("best_accuracy", r.bestAccuracy[i])
            a.setField("removed_round", r.removedRound[i])
            lua_rawseti(a.L, -2, lua_Integer(i + 1))
        }
        lua_setfield(a.L, -2, "clients")
        a.setField("train_seconds", r.trainSeconds)
        a.setField("total_seconds", r.totalSeconds)
        return 1
    } }),
    ("standalone", { L in bind(L, "parry.fl.standalone") { a in
        guard a.type(1) == LUA_TTABLE else { throw a.fail("expected a table of settings, got \(a.typeName(1))") }
        let o = try a.options(1, allowed: ["pool", "xs", "ys", "rows", "test_x", "test_y", "rounds", "epochs", "batch_size", "lr",
                                           "momentum", "weight_decay", "lr_decay", "seed", "parallel", "eval_batch",
                                           "distributed"])
        let ps = try a.participants(o, 1)
        let tx = a.rawField(1, "test_x"), ty = a.rawField(1, "test_y")
        let test = try a.clientData(tx, ty, "test data")
        let acc = try LuaContext.with(a.L) {
            try Federated.standalone(ps, pool: try a.modelPool(1), test: test, rounds: try o.integer("rounds") ?? 1, local: try a.localTraining(o),
                                     seed: try o.seed() ?? 0,
                                     parallel: try o.bool("parallel") ?? true, evalBatch: try o.integer("eval_batch") ?? 1000,
                                     communicator: try o.bool("distributed") ?? false ? Communicator.world : nil)
        }
        a.pushDoubles(acc)
        return 1
    } }),
    ("aggregate", { L in bind(L, "parry.fl.aggregate") { a in
        let name = try a.string(1, "rule")
        guard a.type(2) == LUA_TTABLE, a.rawLength(2) > 0 else { throw a.fail("expected a non-empty table of update tensors (argument 2)") }
        var ups: [[Float]] = []
        for k in 1...a.rawLength(2) {
            let j = a.rawIndex(2, k); defer { a.pop() }
            ups.append(try a.flatUpdate(j, count: ups.first?.count, "update \(k)"))
        }
        let o = try a.options(3, allowed: ["weights", "beta", "f", "m", "root"])
        let shape = try a.tensor(a.rawIndex(2, 1), "update 1").shape; a.pop()
        var info: [Double]? = nil
        let out: [Float]
        switch name {
        case "fedavg":
            var w = [Double](repeating: 1, count: ups.count)
            if o.index != 0 {
                let wi = a.rawField(o.index, "weights")
                if !a.isNil(wi) { w = try a.numberList(wi, "weights") }
                a.pop()
            }
            guard w.count == ups.count else { throw a.fail("weights has \(w.count) entries for \(ups.count) updates") }
            out = try Aggregation.weightedMean(ups, weights: w)
        case "median": out = try Aggregation.median(ups)
        case "trimmed_mean": out = try Aggregation.trimmedMean(ups, beta: try o.number("beta") ?? 0.1)
        case "krum", "multi_krum":
            guard let f = try o.integer("f") else { throw a.fail("\(name) needs option f") }
            let (agg, sel) = try Aggregation.krum(ups, f: f, m: try o.integer("m") ?? (name == "krum" ? 1 : max(1, ups.count - f)))
            out = agg; info = sel.map { Double($0 + 1) }
        case "fltrust":
            guard o.index != 0 else { throw a.fail("fltrust needs option root (the server's update)") }
            let ri = a.rawField(o.index, "root")
            let g0 = try a.flatUpdate(ri, count: ups[0].count, "option root")
            a.pop()
            let (agg, trust) = try Aggregation.fltrust(ups, root: g0)
            out = agg; info = trust
        default: throw a.fail("unknown rule '\(name)' (expected fedavg, median, trimmed_mean, krum, multi_krum or fltrust)")
        }
        a.push(try Tensor(out, shape: shape))
        if let info { a.pushDoubles(info); return 2 }
        return 1
    } }),
    ("pearson", { L in bind(L, "parry.fl.pearson") { a in
        let x = try a.numberList(1, "a"), y = try a.numberList(2, "b")
        guard x.count == y.count else { throw a.fail("the lists have different lengths (\(x.count) and \(y.count))") }
        return a.push(Federated.pearson(x, y))
    } }),
]

