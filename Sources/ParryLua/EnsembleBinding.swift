import CLua
import CLuaShim
import Foundation
import ParryCore
import ParryNN
import ParryRobust

// Bindings of the ensemble-diversity methods (DVERGE, ADP, GAL) and the
// transfer-attack protocol: argument translation only; the algorithms are
// ParryRobust/Ensembles.swift and Transfer.swift. stdlib/parry/robust.lua
// wraps the training entry points (datasets, tables).

extension LuaArgs {
    /// A list of classifiers from the table at `i` (modules or callables); each
    /// element is left on the stack for the duration of the binding.
    func classifierList(_ i: Int32, _ what: String) throws -> [(Classifier, Module?)] {
        guard type(i) == LUA_TTABLE, rawLength(i) > 0 else { throw fail("\(what) must be a non-empty list of models, got \(typeName(i))") }
        return try (1...rawLength(i)).map { k in
            let j = rawIndex(i, k)
            do { return try classifier(j) } catch let e as LuaArgumentError { throw fail("\(what)[\(k)]: \(e.message)") }
        }
    }

    /// Named classifiers: a list (named "<prefix> 1", …) or a table name = model (sorted by name).
    func namedClassifiers(_ i: Int32, _ what: String, prefix: String) throws -> [(String, Classifier, Module?)] {
        guard type(i) == LUA_TTABLE else { throw fail("\(what) must be a list of models or a table name = model, got \(typeName(i))") }
        if rawLength(i) > 0 {
            return try classifierList(i, what).enumerated().map { ("\(prefix) \($0.offset + 1)", $0.element.0, $0.element.1) }
        }
        var names = [String]()
        lua_pushnil(L)
        while lua_next(L, lua_absindex(L, i)) != 0 {
            defer { pop() }
            guard lua_type(L, -2) == LUA_TSTRING, let c = parry_tostring(L, -2, nil) else { pop(); throw fail("\(what) keys must be names") }
            names.append(String(cString: c))
        }
        guard !names.isEmpty else { throw fail("\(what) must not be empty") }
        return try names.sorted().map { n in
            let j = rawField(i, n)
            do { let (c, m) = try classifier(j); return (n, c, m) } catch let e as LuaArgumentError { throw fail("\(what).\(n): \(e.message)") }
        }
    }

    /// Layer names for `models`: option `key` as one list shared by all, or a list of lists; nil when absent.
    func layerLists(_ o: LuaOptions, _ key: String, count: Int) throws -> [[String]]? {
        guard o.index != 0 else { return nil }
        let j = rawField(o.index, key); defer { pop() }
        if isNil(j) { return nil }
        guard type(j) == LUA_TTABLE, rawLength(j) > 0 else { throw fail("\(key) must be a list of layer names (or one list per model)") }
        let first = rawIndex(j, 1); defer { pop() }
        if type(first) == LUA_TSTRING { return [[String]](repeating: try stringList(j, key), count: count) }
        guard rawLength(j) == count else { throw fail("\(key) must give one list per model (\(count)), got \(rawLength(j))") }
        return try (1...count).map { k in
            let l = rawIndex(j, k); defer { pop() }
            return try stringList(l, "\(key)[\(k)]")
        }
    }

    /// A function(x) -> x option, called with each batch (kept on the stack).
    func transformOption(_ o: LuaOptions, _ key: String = "transform") throws -> ((Tensor) throws -> Tensor)? {
        guard o.index != 0 else { return nil }
        let j = rawField(o.index, key)
        if isNil(j) { pop(); return nil }
        guard type(j) == LUA_TFUNCTION else { defer { pop() }; throw fail("\(key) must be a function(x) -> x, got \(typeName(j))") }
        let L = self.L
        return { x in
            try self.call(j, nresults: 1) { pushTensor(L, x); return 1 }
            defer { self.pop() }
            guard let t = self.optTensor(-1) else { throw TensorError("\(key) must return a tensor") }
            return t
        }
    }

    func pushMatrix(_ m: [[Double]]) {
        lua_createtable(L, Int32(m.count), 0)
        for (i, row) in m.enumerated() {
            lua_createtable(L, Int32(row.count), 0)
            for (j, v) in row.enumerated() { lua_pushnumber(L, v); lua_rawseti(L, -2, lua_Integer(j + 1)) }
            lua_rawseti(L, -2, lua_Integer(i + 1))
        }
    }

    func pushNamed(_ names: [String], _ values: [Double]) {
        lua_createtable(L, 0, Int32(names.count))
        for (n, v) in zip(names, values) { lua_pushnumber(L, v); lua_setfield(L, -2, n) }
    }
}

private func distillOptions(_ a: LuaArgs, _ o: LuaOptions) throws -> Diversity.DistillOptions {
    var d = Diversity.DistillOptions()
    d.eps = try o.number("eps") ?? d.eps
    d.steps = try o.integer("steps") ?? d.steps
    d.alpha = try o.number("alpha") ?? d.alpha
    if o.index != 0 {
        let j = a.rawField(o.index, "momentum"); defer { a.pop() }
        if a.type(j) == LUA_TBOOLEAN { d.momentum = lua_toboolean(a.L, j) != 0 ? 1 : nil }
        else if !a.isNil(j) { d.momentum = try a.number(j, "momentum") }
    }
    d.randomStart = try o.bool("random_start") ?? false
    d.bounds = try a.threatModel(o, defaultEps: 0).bounds
    do { try d.validate() } catch let e as TensorError { throw a.fail(e.message) }
    return d
}

/// Reads train-loop settings shared by dverge and ensemble_train.
private func trainOptions(_ a: LuaArgs, _ o: LuaOptions, _ t: inout Diversity.TrainOptions) throws {
    t.epochs = try o.integer("epochs") ?? t.epochs
    t.batchSize = try o.integer("batch_size") ?? t.batchSize
    guard t.epochs >= 1, t.batchSize >= 1 else { throw a.fail("epochs and batch_size must be at least 1") }
    try a.nested(o, "optimizer", allowed: ["lr", "momentum", "weight_decay", "eps", "milestones", "gamma"]) { f in
        t.lr = try f.number("lr")
        t.momentum = try f.number("momentum") ?? t.momentum
        t.weightDecay = try f.number("weight_decay") ?? t.weightDecay
        t.adamEps = try f.number("eps") ?? t.adamEps
        t.gamma = try f.number("gamma") ?? t.gamma
        t.milestones = try f.integerList("milestones")
        if let lr = t.lr, lr < 0 { throw a.fail("optimizer.lr must be ≥ 0") }
        guard t.momentum >= 0, t.weightDecay >= 0, t.gamma > 0 else { throw a.fail("optimizer: momentum and weight_decay must be ≥ 0, gamma > 0") }
    }
    try a.nested(o, "adv", allowed: ["eps", "alpha", "steps", "random_start"]) { f in
        t.dverge.adv.eps = try f.number("eps") ?? t.dverge.adv.eps
        t.dverge.adv.alpha = try f.number("alpha") ?? t.dverge.adv.alpha
        t.dverge.adv.steps = try f.integer("steps") ?? t.dverge.adv.steps
        t.dverge.adv.randomStart = try f.bool("random_start") ?? true
        guard t.dverge.adv.eps >= 0, t.dverge.adv.alpha >= 0, t.dverge.adv.steps >= 0 else { throw a.fail("adv: eps, alpha and steps must be ≥ 0") }
    }
}

private func pushCurve(_ a: LuaArgs, _ curve: [Diversity.EpochRecord], layers: [[String]]?) {
    let L = a.L
    lua_createtable(L, Int32(curve.count), 0)
    for (k, r) in curve.enumerated() {
        pushEpoch(a, r, layers: layers)
        lua_rawseti(L, -2, lua_Integer(k + 1))
    }
}

private func pushEpoch(_ a: LuaArgs, _ r: Diversity.EpochRecord, layers: [[String]]?) {
    let L = a.L
    lua_createtable(L, 0, 5)
    a.push(r.epoch); lua_setfield(L, -2, "epoch")
    lua_createtable(L, Int32(r.losses.count), 0)
    for (i, v) in r.losses.enumerated() { lua_pushnumber(L, v); lua_rawseti(L, -2, lua_Integer(i + 1)) }
    lua_setfield(L, -2, "losses")
    lua_pushnumber(L, r.losses.reduce(0, +) / Double(max(r.losses.count, 1))); lua_setfield(L, -2, "loss")
    if let l = r.layer {
        a.push(l); lua_setfield(L, -2, "layer")
        if let layers, let name = layers.first?[l - 1] { pushString(L, name); lua_setfield(L, -2, "layer_name") }
    }
    lua_pushnumber(L, r.seconds); lua_setfield(L, -2, "seconds")
}

/// (models, x, y, {options}) of the ensemble evaluations, with eps checked.
private func ensembleArgs(_ a: LuaArgs, _ what: String, defaultEps: Double, allowed: [String]) throws
    -> (models: [Module], x: Tensor, y: Tensor, o: LuaOptions, eps: Double) {
    let models = try a.moduleList(1, "models")
    guard models.count >= 2 else { throw a.fail("\(what) needs at least 2 models, got \(models.count)") }
    let x = try a.tensor(2, "x"), y = try a.labels(3)
    let o = try a.options(4, allowed: allowed)
    let eps = try o.number("eps") ?? defaultEps
    guard eps >= 0, eps.isFinite else { throw a.fail("eps must be a non-negative number, got \(eps)") }
    return (models, x, y, o, eps)
}

let ensembleFunctions: [(String, parry_SwiftFunction)] = [
    // _dverge(models, x, y, opts) (parry.robust.dverge in robust.lua)
    ("_dverge", { L in bind(L, "parry.robust.dverge") { a in
        let models = try a.moduleList(1, "models")
        guard models.count >= 2 else { throw a.fail("DVERGE needs at least 2 models, got \(models.count)") }
        let x = try a.tensor(2, "train.x"), y = try a.labels(3, "train.y")
        let o = try a.options(4, allowed: ["epochs", "batch_size", "layers", "layer", "eps", "alpha", "steps", "momentum", "random_start",
                                           "plus_adv", "adv", "coeff", "optimizer", "transform", "distill_mode", "on_epoch", "bounds", "seed", "generator"])
        var t = Diversity.TrainOptions()
        try trainOptions(a, o, &t)
        t.dverge.distill = try distillOptions(a, o)
        t.dverge.plusAdv = try o.bool("plus_adv") ?? false
        t.dverge.coeff = try o.number("coeff") ?? 1
        let mode = try o.string("distill_mode") ?? "train"
        guard mode == "train" || mode == "eval" else { throw a.fail("distill_mode must be \"train\" or \"eval\", got '\(mode)'") }
        t.dverge.distillEval = mode == "eval"
        // the names are checked against each model's taps by Diversity.train
        let layers = try a.layerLists(o, "layers", count: models.count) ?? models.map { try Models.featureLayers($0) }
        if o.index != 0 {
            let j = a.rawField(o.index, "layer"); defer { a.pop() }
            if a.type(j) == LUA_TSTRING {
                let name = try a.string(j, "layer")
                guard let k = layers[0].firstIndex(of: name) else {
                    throw a.fail("unknown layer '\(name)' (valid taps: \(layers[0].joined(separator: ", ")))")
                }
                t.fixedLayer = k + 1
            } else if !a.isNil(j) { t.fixedLayer = try a.integer(j, "layer") }
        }
        t.layers = layers
        let transform = try a.transformOption(o)
        let onEpoch = try a.callbackOption(o, "on_epoch") { (r: Diversity.EpochRecord) -> Int32 in
            pushEpoch(a, r, layers: layers); return 1
        }
        let curve = try Diversity.train(.dverge, models: models, x: x, y: y, options: t, transform: transform,
                                        generator: try a.generatorOption(o), onEpoch: onEpoch)
        pushCurve(a, curve, layers: layers)
        return 1
    } }),
    // _ensemble_train(models, x, y, opts) (parry.robust.ensemble_train in robust.lua)
    ("_ensemble_train", { L in bind(L, "parry.robust.ensemble_train") { a in
        let models = try a.moduleList(1, "models")
        guard models.count >= 2 else { throw a.fail("an ensemble needs at least 2 models, got \(models.count)") }
        let x = try a.tensor(2, "train.x"), y = try a.labels(3, "train.y")
        let o = try a.options(4, allowed: ["loss", "epochs", "batch_size", "optimizer", "alpha", "beta", "lambda", "noise", "plus_adv", "adv",
                                           "transform", "on_epoch", "bounds", "seed", "generator"])
        let loss = try o.string("loss") ?? "ce"
        let kind: Diversity.Kind
        switch loss {
        case "ce": kind = .ce
        case "adp": kind = .adp
        case "gal": kind = .gal
        default: throw a.fail("unknown loss '\(loss)' (expected \"ce\", \"adp\" or \"gal\")")
        }
        var t = Diversity.TrainOptions()
        try trainOptions(a, o, &t)
        t.plusAdv = try o.bool("plus_adv") ?? false
        t.dverge.distill.bounds = try a.threatModel(o, defaultEps: 0).bounds
        var adp = Diversity.ADPOptions()
        adp.alpha = try o.number("alpha") ?? adp.alpha
        adp.beta = try o.number("beta") ?? adp.beta
        let lambda = try o.number("lambda") ?? 0.5
        guard adp.alpha >= 0, adp.beta >= 0, lambda >= 0 else { throw a.fail("alpha, beta and lambda must be ≥ 0") }
        if kind == .gal { t.gaussianNoise = (0.045, 0.5) }
        if o.index != 0 {
            let j = a.rawField(o.index, "noise"); defer { a.pop() }
            if a.type(j) == LUA_TBOOLEAN && lua_toboolean(a.L, j) == 0 { t.gaussianNoise = nil }
            else if a.type(j) == LUA_TTABLE {
                let n = try a.options(j, allowed: ["std", "p"])
                let noise = (std: try n.number("std") ?? 0.045, p: try n.number("p") ?? 0.5)
                guard noise.std >= 0, (0...1).contains(noise.p) else { throw a.fail("noise: std must be ≥ 0 and p in [0, 1]") }
                t.gaussianNoise = noise
            } else if !a.isNil(j) { throw a.fail("noise must be a table {std=, p=} or false, got \(a.typeName(j))") }
        }
        let transform = try a.transformOption(o)
        let onEpoch = try a.callbackOption(o, "on_epoch") { (r: Diversity.EpochRecord) -> Int32 in pushEpoch(a, r, layers: nil); return 1 }
        let curve = try Diversity.train(kind, models: models, x: x, y: y, options: t, adp: adp, galLambda: lambda, transform: transform,
                                        generator: try a.generatorOption(o), onEpoch: onEpoch)
        pushCurve(a, curve, layers: nil)
        return 1
    } }),
    ("transferability", { L in bind(L, "parry.robust.transferability") { a in
        let (models, x, y, o, eps) = try ensembleArgs(a, "transferability", defaultEps: 0.03,
                                                      allowed: ["eps", "steps", "restarts", "alpha", "limit", "seed", "batch_size"])
        let steps = try o.integer("steps") ?? 50, restarts = try o.integer("restarts") ?? 5
        guard steps >= 0, restarts >= 1 else { throw a.fail("steps must be ≥ 0 and restarts ≥ 1") }
        let r = try RobustTraining.withMode(models, eval: true) {
            try Transfer.transferability(models, x, y, eps: eps, steps: steps, restarts: restarts, alpha: try o.number("alpha"),
                                         limit: try o.integer("limit"), seed: try o.seed() ?? 0, batchSize: try o.integer("batch_size") ?? 250)
        }
        lua_createtable(a.L, 0, 2)
        a.pushMatrix(r.successRate); lua_setfield(a.L, -2, "matrix")
        a.push(r.samples); lua_setfield(a.L, -2, "samples")
        return 1
    } }),
    ("vulnerability_diversity", { L in bind(L, "parry.robust.vulnerability_diversity") { a in
        let (models, x, y, o, eps) = try ensembleArgs(a, "vulnerability_diversity", defaultEps: 0.07,
                                                      allowed: ["eps", "steps", "batch_size", "limit", "layers", "bounds", "seed"])
        let layers = try a.layerLists(o, "layers", count: models.count)
        let d = try RobustTraining.withMode(models, eval: true) {
            try Transfer.vulnerabilityDiversity(models, x, y, layers: layers, eps: eps, steps: try o.integer("steps") ?? 10,
                                                batchSize: try o.integer("batch_size") ?? 10, limit: try o.integer("limit"),
                                                bounds: try a.threatModel(o, defaultEps: 0).bounds, seed: try o.seed() ?? 0)
        }
        a.pushMatrix(d)
        return 1
    } }),
    // _transfer_eval(sources, targets, x, y, attacks, eps, opts, progress) (parry.robust.transfer_eval in robust.lua)
    ("_transfer_eval", { L in bind(L, "parry.robust.transfer_eval") { a in
        let sources = try a.namedClassifiers(1, "sources", prefix: "source")
        let targets = try a.namedClassifiers(2, "targets", prefix: "target")
        let x = try a.tensor(3, "x"), y = try a.labels(4)
        guard a.type(5) == LUA_TTABLE, a.rawLength(5) > 0 else { throw a.fail("attacks must be a non-empty list, e.g. {\"mifgsm\", {\"sgm\", {gamma = 0.2}}}") }
        let eps = a.type(6) == LUA_TNUMBER ? [try a.number(6, "eps")] : try a.numberList(6, "eps")
        guard !eps.isEmpty else { throw a.fail("eps must be a non-empty list of budgets") }
        if let bad = eps.first(where: { !($0 >= 0 && $0.isFinite) }) { throw a.fail("eps must be non-negative numbers, got \(bad)") }
        let o = try a.options(7, allowed: ["batch_size", "seed", "bounds"])
        let base = try o.seed() ?? 0
        let bounds = try a.threatModel(o, defaultEps: 0).bounds
        var attacks = [Transfer.Attack]()
        let allowed = ["alpha", "steps", "decay", "random_start", "restarts", "loss", "p", "resize_rate", "gamma", "versions", "random_starts"]
        for k in 1...a.rawLength(5) {
            let j = a.rawIndex(5, k)
            var name: String, oi: Int32 = 0
            if a.type(j) == LUA_TSTRING { name = try a.string(j, "attack") } else {
                guard a.type(j) == LUA_TTABLE else { throw a.fail("attack \(k) must be a name or {name, {options}}") }
                let n = a.rawIndex(j, 1)
                name = try a.string(n, "attack name")
                let oj = a.rawIndex(j, 2)
                if !a.isNil(oj) { oi = oj }
            }
            guard ["mifgsm", "mdi2fgsm", "sgm", "pgd", "fgsm"].contains(name) else {
                throw a.fail("unknown transfer attack '\(name)' (expected mifgsm, mdi2fgsm, sgm, pgd or fgsm)")
            }
            let ao = try a.options(oi, allowed: allowed)
            let versions = try ao.integer("versions") ?? 1
            guard versions >= 1 else { throw a.fail("attack \(k): versions must be at least 1") }
            // Each (ε, source, version) attack draws from its own generator, so runs reproduce one by one.
            let label = name + (oi == 0 ? "" : (try ao.string("loss")).map { "-" + $0 } ?? "")
            let index = UInt64(k)
            // Validate the options once now (with a dummy model), so bad options fail before any work.
            _ = try attackRunner(name, a, ao, { $0 }, module: sources.first?.2, ThreatModel(eps: 0), Generator(seed: 0))
            attacks.append(Transfer.Attack(name: label, versions: versions) { model, module, xb, yb, e, v in
                let g = Generator(seed: base &+ index &* 1_000_003 &+ UInt64(v) &* 7919 &+ UInt64(e * 1e6))
                var tm = ThreatModel(eps: e); tm.bounds = bounds
                let run = try attackRunner(name, a, ao, model, module: module, tm, g).run
                return try RobustTraining.withMode(module, eval: true) { try run(xb, yb) }
            })
        }
        let progress = a.statusLine(8)
        let targetModules = targets.compactMap(\.2)
        let r = try RobustTraining.withMode(targetModules, eval: true) {
            try Transfer.evaluate(sources: sources.map { ($0.0, $0.1, $0.2) }, targets: targets.map { ($0.0, $0.1) }, x: x, y: y,
                                  eps: eps, attacks: attacks, batchSize: try o.integer("batch_size") ?? 250, progress: progress)
        }
        let L = a.L
        lua_createtable(L, 0, 4)
        lua_createtable(L, Int32(r.targets.count), 0)
        for (k, n) in r.targets.enumerated() { pushString(L, n); lua_rawseti(L, -2, lua_Integer(k + 1)) }
        lua_setfield(L, -2, "targets")
        a.pushNamed(r.targets, r.clean); lua_setfield(L, -2, "clean")
        lua_createtable(L, Int32(r.rows.count), 0)
        for (k, row) in r.rows.enumerated() {
            lua_createtable(L, 0, 5)
            lua_pushnumber(L, row.eps); lua_setfield(L, -2, "eps")
            pushString(L, row.attack); lua_setfield(L, -2, "attack")
            pushString(L, row.source); lua_setfield(L, -2, "source")
            a.push(row.version); lua_setfield(L, -2, "version")
            a.pushNamed(r.targets, row.accuracy); lua_setfield(L, -2, "accuracy")
            lua_rawseti(L, -2, lua_Integer(k + 1))
        }
        lua_setfield(L, -2, "rows")
        lua_createtable(L, Int32(r.all.count), 0)
        for (k, row) in r.all.enumerated() {
            lua_createtable(L, 0, 2)
            lua_pushnumber(L, row.eps); lua_setfield(L, -2, "eps")
            a.pushNamed(r.targets, row.accuracy); lua_setfield(L, -2, "accuracy")
            lua_rawseti(L, -2, lua_Integer(k + 1))
        }
        lua_setfield(L, -2, "all")
        return 1
    } }),
]

let ensembleAttackFunctions: [(String, parry_SwiftFunction)] = [
    ("feature_distill", { L in bind(L, "parry.attacks.feature_distill") { a in
        let model = try a.module(1, "model")
        let layer = try a.string(2, "layer")
        let x = try a.tensor(3, "x"), xs = try a.tensor(4, "x_s")
        let o = try a.options(5, allowed: ["eps", "alpha", "steps", "momentum", "random_start", "bounds", "seed", "generator"])
        let d = try distillOptions(a, o)
        let valid = model.featureNames()
        guard valid.contains(layer) else {
            let taps = (try? Models.featureLayers(model)) ?? valid
            throw a.fail("unknown layer '\(layer)' (valid taps: \(taps.joined(separator: ", ")))")
        }
        guard xs.shape == x.shape else { throw a.fail("x_s must have x's shape \(shapeString(x.shape)), got \(shapeString(xs.shape))") }
        return a.push(try Diversity.featureDistill(model, layer: layer, x, xs, d, generator: try a.generatorOption(o)))
    } }),
]

let ensembleModelFunctions: [(String, parry_SwiftFunction)] = [
    ("resnet", { L in bind(L, "parry.models.resnet") { a in
        let o = try a.options(1, allowed: ["depth", "width", "in_channels", "classes", "leaky_relu"])
        let slope = try leakyOption(a, o)
        pushModule(a.L, try Models.resnet(depth: try o.integer("depth") ?? 20, width: try o.integer("width") ?? 16,
                                          inChannels: try o.integer("in_channels") ?? 3, classes: try o.integer("classes") ?? 10, leakySlope: slope))
        return 1
    } }),
    ("feature_layers", { L in bind(L, "parry.models.feature_layers") { a in
        let names = try Models.featureLayers(try a.module(1, "model"))
        lua_createtable(a.L, Int32(names.count), 0)
        for (k, n) in names.enumerated() { pushString(a.L, n); lua_rawseti(a.L, -2, lua_Integer(k + 1)) }
        return 1
    } }),
]

/// leaky_relu = true (slope 0.1, GAL's members) or a slope; nil/false for ReLU.
func leakyOption(_ a: LuaArgs, _ o: LuaOptions) throws -> Double? {
    guard o.index != 0 else { return nil }
    let j = a.rawField(o.index, "leaky_relu"); defer { a.pop() }
    if a.isNil(j) { return nil }
    if a.type(j) == LUA_TBOOLEAN { return lua_toboolean(a.L, j) != 0 ? 0.1 : nil }
    let s = try a.number(j, "leaky_relu")
    guard s >= 0, s < 1 else { throw a.fail("leaky_relu must be true or a slope in [0, 1), got \(s)") }
    return s
}
