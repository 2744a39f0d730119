import CLua
import CLuaShim
import ParryCore
import ParryNN
import ParryRobust
import ParryData

// parry.robust's weight-space methods (RiFT): argument translation only;
// the algorithms are RiFT in ParryRobust/WeightSpace.swift. Labels are
// 1-based here and 0-based in Swift. stdlib/parry/robust.lua wraps these
// (datasets, cloning the model, progress).

extension LuaArgs {
    /// A nested options table `key` of `o` read by `read` while it is on the stack.
    func nested<T>(_ o: LuaOptions, _ key: String, allowed: [String], _ read: (LuaOptions) throws -> T) throws -> T {
        guard o.index != 0 else { return try read(LuaOptions(args: self, index: 0)) }
        let j = rawField(o.index, key)
        defer { pop() }
        if isNil(j) { return try read(LuaOptions(args: self, index: 0)) }
        guard type(j) == LUA_TTABLE else { throw fail("option '\(key)' must be a table, got \(typeName(j))") }
        do { return try read(try options(j, allowed: allowed)) } catch let e as LuaArgumentError {
            throw fail("\(key): \(e.message)")
        }
    }

    /// A list of strings from the table at `i`.
    func stringList(_ i: Int32, _ what: String) throws -> [String] {
        guard type(i) == LUA_TTABLE else { throw fail("\(what) must be a list of strings, got \(typeName(i))") }
        return try (0..<rawLength(i)).map { k in
            let j = rawIndex(i, k + 1); defer { pop() }
            guard type(j) == LUA_TSTRING else { throw fail("\(what) must be a list of strings, got \(typeName(j)) at position \(k + 1)") }
            return try string(j, what)
        }
    }

    /// A Lua function option `key` as a Swift closure called with what `push`
    /// pushes (the function value stays on the stack until the binding returns).
    func callbackOption<T>(_ o: LuaOptions, _ key: String, _ push: @escaping (T) -> Int32) throws -> ((T) throws -> Void)? {
        guard o.index != 0 else { return nil }
        let j = rawField(o.index, key)
        if isNil(j) { pop(); return nil }
        guard type(j) == LUA_TFUNCTION else { defer { pop() }; throw fail("option '\(key)' must be a function, got \(typeName(j))") }
        return { v in try self.call(j, nresults: 0) { push(v) } }
    }

    /// The status-line function at argument `i` (robust.lua passes one on a
    /// terminal, nil otherwise) as a closure; its own errors are ignored.
    func statusLine(_ i: Int32) -> ((String) -> Void)? {
        isNil(i) ? nil : { s in _ = try? self.call(i, nresults: 0) { pushString(self.L, s); return 1 } }
    }
}

private func mrcOptions(_ a: LuaArgs, _ o: LuaOptions) throws -> RiFT.MRCOptions {
    var m = RiFT.MRCOptions()
    m.eps = try o.number("eps") ?? m.eps
    m.epochs = try o.integer("epochs") ?? m.epochs
    m.lr = try o.number("lr") ?? m.lr
    m.batchSize = try o.integer("batch_size") ?? m.batchSize
    guard m.eps >= 0, m.epochs >= 1, m.lr >= 0, m.batchSize >= 1 else {
        throw a.fail("eps and lr must be ≥ 0, epochs and batch_size ≥ 1")
    }
    return m
}

private func pgdSettings(_ a: LuaArgs, _ o: LuaOptions, defaultEps: Double?, what: String) throws -> (eps: Double, alpha: Double, steps: Int) {
    guard let eps = try o.number("eps") ?? defaultEps else { throw a.fail("missing option \(what).eps (the L∞ budget of the PGD examples)") }
    let steps = try o.integer("steps") ?? 10
    let alpha = try o.number("alpha") ?? eps / 4
    guard eps >= 0, alpha >= 0, steps >= 0 else { throw a.fail("\(what): eps and alpha must be ≥ 0 and steps ≥ 0") }
    return (eps, alpha, steps)
}

/// Pushes a list of records: one table per item with the given string and number fields.
private func pushRecords<T>(_ a: LuaArgs, _ items: [T], strings: [(String, (T) -> String)] = [], integers: [(String, (T) -> Int)] = [],
                            numbers: [(String, (T) -> Double)]) {
    lua_createtable(a.L, Int32(clamping: items.count), 0)
    for (k, item) in items.enumerated() {
        lua_createtable(a.L, 0, Int32(strings.count + integers.count + numbers.count))
        for (name, f) in strings { pushString(a.L, f(item)); lua_setfield(a.L, -2, name) }
        for (name, f) in integers { a.push(f(item)); lua_setfield(a.L, -2, name) }
        for (name, f) in numbers { a.push(f(item)); lua_setfield(a.L, -2, name) }
        lua_rawseti(a.L, -2, lua_Integer(k + 1))
    }
}

private func pushMRC(_ a: LuaArgs, _ table: [RiFT.MRC]) {
    pushRecords(a, table, strings: [("module", \.module)],
                numbers: [("mrc", \.mrc), ("loss0", \.loss0), ("loss_max", \.lossMax), ("robust_acc0", \.robustAcc0),
                          ("robust_acc_worst", \.robustAccWorst)])
}

let weightSpaceFunctions: [(String, parry_SwiftFunction)] = [
    // _corruption_accuracy(model, x, y, opts) (parry.robust.corruption_accuracy in robust.lua)
    ("_corruption_accuracy", { L in bind(L, "parry.robust.corruption_accuracy") { a in
        let (model, module) = try a.classifier(1)
        let x = try a.tensor(2, "x"), y = try a.labels(3)
        let o = try a.options(4, allowed: ["kinds", "severities", "batch_size", "seed", "generator"])
        var kinds = Corruptions.Kind.allCases, severities = [1, 2, 3, 4, 5]
        if o.index != 0 {
            let k = a.rawField(o.index, "kinds"); defer { a.pop() }
            if !a.isNil(k) {
                kinds = try a.stringList(k, "kinds").map { name in
                    guard let kind = Corruptions.Kind(rawValue: name) else {
                        throw a.fail("unknown corruption '\(name)' (expected \(Corruptions.Kind.allCases.map(\.rawValue).joined(separator: ", ")))")
                    }
                    return kind
                }
            }
            let s = a.rawField(o.index, "severities"); defer { a.pop() }
            if !a.isNil(s) { severities = try a.integerList(s, "severities") }
        }
        let rows = try RobustTraining.withMode(module, eval: true) {
            try Evaluation.corruptionAccuracy(model, x, y, kinds: kinds, severities: severities,
                                              batchSize: try o.integer("batch_size") ?? 500, generator: try a.generatorOption(o))
        }
        pushRecords(a, rows, strings: [("kind", { $0.kind.rawValue })], integers: [("severity", \.severity)], numbers: [("accuracy", \.accuracy)])
        return 1
    } }),
    // _mrc(model, x, y, opts, progress) (parry.robust.mrc in robust.lua)
    ("_mrc", { L in bind(L, "parry.robust.mrc") { a in
        let model = try a.module(1)
        let x = try a.tensor(2, "x"), y = try a.labels(3)
        let o = try a.options(4, allowed: ["eps", "epochs", "lr", "batch_size", "modules", "attack", "adversarial", "bounds", "seed", "generator"])
        let m = try mrcOptions(a, o)
        let gen = try a.generatorOption(o)
        let bounds = try a.threatModel(o, defaultEps: 0).bounds
        var modules: [String]? = nil
        if o.index != 0 {
            let j = a.rawField(o.index, "modules"); defer { a.pop() }
            if !a.isNil(j) { modules = try a.stringList(j, "modules") }
        }
        let adversarial = try o.bool("adversarial") ?? false
        let attack = adversarial ? nil : try a.nested(o, "attack", allowed: ["eps", "alpha", "steps"]) {
            try pgdSettings(a, $0, defaultEps: nil, what: "attack")
        }
        let progress = a.statusLine(5)
        let table = try LuaContext.with(a.L) { () -> [RiFT.MRC] in
            var set = x
            if let attack {
                progress?("building the adversarial set")
                set = try RiFT.adversarialSet(model, x, y, eps: attack.eps, alpha: attack.alpha, steps: attack.steps, bounds: bounds, generator: gen)
            }
            return try RiFT.criticality(model, set, y, modules: modules, options: m, generator: gen, progress: progress)
        }
        pushMRC(a, table)
        return 1
    } }),
    // _rift(model, x, y, val_x, val_y, opts, progress, transform) (parry.robust.rift in robust.lua)
    ("_rift", { L in bind(L, "parry.robust.rift") { a in
        let model = try a.module(1)
        let x = try a.tensor(2, "train.x"), y = try a.labels(3, "train.y")
        let vx = try a.tensor(4, "val.x"), vy = try a.labels(5, "val.y")
        let o = try a.options(6, allowed: ["module", "skip_first_last", "mrc", "finetune", "alphas", "eval_attack", "tolerance",
                                           "on_epoch", "bounds", "seed", "generator"])
        var c = RiFT.Config()
        if let m = try o.string("module"), m != "auto" { c.module = m }
        c.skipFirstLast = try o.bool("skip_first_last") ?? false
        c.tolerance = try o.number("tolerance") ?? c.tolerance
        c.bounds = try a.threatModel(o, defaultEps: 0).bounds
        if o.index != 0 {
            let j = a.rawField(o.index, "alphas"); defer { a.pop() }
            if !a.isNil(j) { c.alphas = try a.numberList(j, "alphas") }
        }
        c.evalAttack = try a.nested(o, "eval_attack", allowed: ["eps", "alpha", "steps"]) { try pgdSettings(a, $0, defaultEps: nil, what: "eval_attack") }
        try a.nested(o, "mrc", allowed: ["eps", "epochs", "lr", "batch_size", "attack"]) { m in
            c.mrc = try mrcOptions(a, m)
            c.mrcAttack = try a.nested(m, "attack", allowed: ["eps", "alpha", "steps"]) {
                try pgdSettings(a, $0, defaultEps: c.evalAttack.eps, what: "mrc.attack")
            }
        }
        try a.nested(o, "finetune", allowed: ["lr", "momentum", "weight_decay", "epochs", "milestones", "gamma", "batch_size"]) { f in
            c.finetune.lr = try f.number("lr") ?? c.finetune.lr
            c.finetune.momentum = try f.number("momentum") ?? c.finetune.momentum
            c.finetune.weightDecay = try f.number("weight_decay") ?? c.finetune.weightDecay
            c.finetune.epochs = try f.integer("epochs") ?? c.finetune.epochs
            c.finetune.gamma = try f.number("gamma") ?? c.finetune.gamma
            c.finetune.batchSize = try f.integer("batch_size") ?? c.finetune.batchSize
            c.finetune.milestones = try f.integerList("milestones") ?? c.finetune.milestones
            guard c.finetune.lr >= 0, c.finetune.momentum >= 0, c.finetune.weightDecay >= 0, c.finetune.epochs >= 1, c.finetune.batchSize >= 1 else {
                throw a.fail("finetune: lr, momentum and weight_decay must be ≥ 0, epochs and batch_size ≥ 1")
            }
        }
        let gen = try a.generatorOption(o)
        let L = a.L
        let onEpoch = try a.callbackOption(o, "on_epoch") { (e: RiFT.Epoch) in
            lua_pushinteger(L, lua_Integer(e.epoch)); lua_pushnumber(L, e.loss); lua_pushnumber(L, e.valAccuracy); lua_pushnumber(L, e.seconds)
            return 4
        }
        let progress = a.statusLine(7)
        var transform: ((Tensor) throws -> Tensor)? = nil
        if !a.isNil(8) {
            guard a.type(8) == LUA_TFUNCTION else { throw a.fail("finetune.transform must be a function(x) -> x, got \(a.typeName(8))") }
            transform = { xb in
                try a.call(8, nresults: 1) { pushTensor(L, xb); return 1 }
                defer { a.pop() }
                guard let t = a.optTensor(-1) else { throw TensorError("finetune.transform must return a tensor") }
                return t
            }
        }
        let r = try LuaContext.with(a.L) {
            try RiFT.run(model, x, y, valX: vx, valY: vy, config: c, transform: transform, generator: gen, progress: progress,
                         onEpoch: onEpoch)
        }
        lua_createtable(a.L, 0, 6)
        if let t = r.mrc { pushMRC(a, t); lua_setfield(a.L, -2, "mrc") }
        pushString(a.L, r.module); lua_setfield(a.L, -2, "module")
        pushRecords(a, r.curve, integers: [("epoch", \.epoch)], numbers: [("loss", \.loss), ("val_acc", \.valAccuracy), ("seconds", \.seconds)])
        lua_setfield(a.L, -2, "finetune_curve")
        pushRecords(a, r.points, numbers: [("alpha", \.alpha), ("clean", \.clean), ("robust", \.robust)])
        lua_setfield(a.L, -2, "interpolation")
        a.push(r.chosen.alpha); lua_setfield(a.L, -2, "alpha")
        return 1
    } }),
]
