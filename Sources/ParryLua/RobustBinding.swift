import CLua
import CLuaShim
import Foundation
import ParryCore
import ParryNN
import ParryRobust

// Bindings of parry.attacks and parry.robust: read the model (a module, or
// any Lua callable returning logits), labels (1-based) and options, run the
// Swift algorithm with the module in eval mode, push the result.

extension LuaArgs {
    /// A classifier from argument `i`: a module (run in Swift), or a Lua
    /// function / callable value called back with the input batch.
    func classifier(_ i: Int32) throws -> (Classifier, Module?) {
        let L = self.L
        if let m = optModule(i) {
            return ({ x in try LuaContext.with(L) { try m(x) } }, m)
        }
        let t = type(i)
        let callable = t == LUA_TFUNCTION || ((t == LUA_TTABLE || t == LUA_TUSERDATA) && luaL_getmetafield(L, i, "__call") != LUA_TNIL && { parry_pop(L, 1); return true }())
        guard callable else {
            throw fail("expected a model: a module or a function returning logits (argument \(i)), got \(typeName(i))")
        }
        let fn = lua_absindex(L, i)
        return ({ x in
            try self.call(fn, nresults: 1) { pushTensor(L, x); return 1 }
            defer { self.pop() }
            guard let z = self.optTensor(-1) else { throw TensorError("the model function must return a tensor of logits, got \(self.typeName(-1))") }
            return z
        }, nil)
    }

    func threatModel(_ o: LuaOptions, defaultEps: Double? = nil) throws -> ThreatModel {
        guard let eps = try o.number("eps") ?? defaultEps else { throw fail("missing option eps") }
        guard eps >= 0, eps.isFinite else { throw fail("eps must be a non-negative number, got \(eps)") }
        var tm = ThreatModel(eps: eps)
        if let n = try o.string("norm") {
            guard let norm = Norm(rawValue: n == "linf" || n == "Linf" ? "inf" : n == "L2" ? "l2" : n) else {
                throw fail("unknown norm '\(n)' (expected \"inf\" or \"l2\")")
            }
            tm.norm = norm
        }
        if o.index != 0 {
            let j = rawField(o.index, "bounds"); defer { pop() }
            if !isNil(j) {
                guard type(j) == LUA_TTABLE, rawLength(j) == 2 else { throw fail("bounds must be a table {lo, hi}") }
                let lo = rawIndex(j, 1); defer { pop() }
                let hi = rawIndex(j, 2); defer { pop() }
                tm.bounds = (try number(lo, "bounds[1]"), try number(hi, "bounds[2]"))
                guard tm.bounds.0 < tm.bounds.1 else { throw fail("bounds must satisfy lo < hi") }
            }
        }
        return tm
    }

    func generatorOption(_ o: LuaOptions) throws -> Generator {
        if let s = try o.seed() { return Generator(seed: s) }
        return try o.generator()
    }

    func attackLoss(_ o: LuaOptions) throws -> AttackLoss {
        guard o.index != 0 else { return .ce }
        let j = rawField(o.index, "loss")
        if isNil(j) { pop(); return .ce }
        if type(j) == LUA_TFUNCTION {
            // The function stays at stack slot j (in this binding's frame) while the attack runs.
            let L = self.L
            let slot = j
            return .custom({ z, y in
                try self.call(slot, nresults: 1) { pushTensor(L, z); pushTensor(L, (try? y.binary(.add, .int(1))) ?? y); return 2 }
                defer { self.pop() }
                guard let l = self.optTensor(-1) else { throw TensorError("the loss function must return a tensor of per-sample losses") }
                return l
            })
        }
        defer { pop() }
        let s = try string(j, "loss")
        switch s {
        case "ce": return .ce
        case "cw": return .cw
        case "dlr": return .dlr
        default: throw fail("unknown loss '\(s)' (expected \"ce\", \"cw\", \"dlr\" or a function(logits, y))")
        }
    }
}

private let attackOptions = ["eps", "norm", "bounds", "seed", "generator"]
private let momentumKeys = ["alpha", "steps", "decay", "random_start", "restarts", "targeted", "loss"]

/// Runs the attack `name` on (model, x, y, options at 4) with the module in
/// eval mode and pushes x_adv; `allowed` lists the options it accepts.
private func attackBinding(_ L: LuaState?, _ name: StaticString, attack: String, allowed: [String], defaultEps: Double? = nil) -> Int32 {
    bind(L, name) { a in
        let (model, module) = try a.classifier(1)
        let x = try a.tensor(2, "x"), y = try a.labels(3)
        let o = try a.options(4, allowed: allowed)
        let run = try attackRunner(attack, a, o, model, module: module, try a.threatModel(o, defaultEps: defaultEps), try a.generatorOption(o)).run
        return a.push(try RobustTraining.withMode(module, eval: true) { try run(x, y) })
    }
}

/// The attack named `name` with its settings read from `o` now (so bad options
/// fail before anything runs): the one place both the attack functions and
/// `evaluate` build attacks. Returns the attack and whether it uses gradients.
func attackRunner(_ name: String, _ a: LuaArgs, _ o: LuaOptions, _ model: @escaping Classifier, module: Module?,
                  _ tm: ThreatModel, _ gen: Generator) throws -> (run: (Tensor, Tensor) throws -> Tensor, whiteBox: Bool) {
    switch name {
    case "fgsm":
        let targeted = try o.bool("targeted") ?? false, loss = try a.attackLoss(o)
        return ({ x, y in try Attacks.fgsm(model, x, y, tm, targeted: targeted, loss: loss) }, true)
    case "pgd":
        let p = try pgdOptions(a, o)
        return ({ x, y in try Attacks.pgd(model, x, y, tm, p, generator: gen) }, true)
    case "mifgsm", "mdi2fgsm":
        let m = try momentumOptions(a, o, diversity: name == "mdi2fgsm")
        return ({ x, y in try Attacks.momentum(model, x, y, tm, m, generator: gen) }, true)
    case "sgm":
        guard let module else { throw a.fail("sgm needs a module (the zoo's ResNets or an ensemble of them), not a function") }
        let m = try momentumOptions(a, o, diversity: false), gamma = try o.number("gamma") ?? 0.2
        return ({ x, y in try Attacks.sgm(module, x, y, tm, gamma: gamma, m, generator: gen) }, true)
    case "cw_l2":
        let c = try o.number("c") ?? 1, kappa = try o.number("kappa") ?? 0, steps = try o.integer("steps") ?? 50
        let lr = try o.number("lr") ?? 0.01, targeted = try o.bool("targeted") ?? false
        return ({ x, y in try Attacks.cwL2(model, x, y, bounds: tm.bounds, c: c, kappa: kappa, steps: steps, lr: lr, targeted: targeted) }, true)
    case "apgd", "apgd-ce", "apgd-dlr", "apgd-t":
        var p = try apgdOptions(a, o)
        if name == "apgd-dlr" { p.loss = .dlr }
        if name == "apgd-t" { p.targeted = true }
        return ({ x, y in try Attacks.apgd(model, x, y, tm, p, generator: gen) }, true)
    case "square":
        let q = try o.integer("queries") ?? 5000, pInit = try o.number("p_init") ?? 0.8
        return ({ x, y in try Attacks.square(model, x, y, tm, queries: q, pInit: pInit, generator: gen) }, false)
    case "autoattack":
        let v = try o.string("version") ?? "standard"
        guard let version = Attacks.AutoAttackVersion(rawValue: v) else { throw a.fail("unknown version '\(v)' (expected \"standard\" or \"fast\")") }
        return ({ x, y in try Attacks.autoattack(model, x, y, tm, version: version, generator: gen).0 }, true)
    default:
        throw a.fail("unknown attack '\(name)' (expected fgsm, pgd, mifgsm, mdi2fgsm, sgm, cw_l2, apgd, apgd-ce, apgd-dlr, apgd-t, square, autoattack or a function)")
    }
}

/// mifgsm / mdi2fgsm / sgm settings.
private func momentumOptions(_ a: LuaArgs, _ o: LuaOptions, diversity: Bool) throws -> Attacks.MomentumOptions {
    var m = Attacks.MomentumOptions()
    m.alpha = try o.number("alpha")
    m.steps = try o.integer("steps") ?? 10
    m.decay = try o.number("decay") ?? 1
    m.randomStart = try o.bool("random_start") ?? false
    m.restarts = try o.integer("restarts") ?? 1
    m.targeted = try o.bool("targeted") ?? false
    m.loss = try a.attackLoss(o)
    if diversity { m.diversity = (try o.number("p") ?? 0.5, try o.number("resize_rate") ?? 0.9) }
    guard m.steps >= 0, m.restarts >= 1 else { throw a.fail("steps must be ≥ 0 and restarts ≥ 1") }
    if let al = m.alpha, al < 0 { throw a.fail("alpha must be non-negative, got \(al)") }
    return m
}

private func pgdOptions(_ a: LuaArgs, _ o: LuaOptions) throws -> Attacks.PGDOptions {
    var p = Attacks.PGDOptions()
    p.alpha = try o.number("alpha")
    p.steps = try o.integer("steps") ?? 10
    p.randomStart = try o.bool("random_start") ?? true
    p.restarts = try o.integer("restarts") ?? 1
    p.targeted = try o.bool("targeted") ?? false
    p.earlyStop = try o.bool("early_stop") ?? false
    p.loss = try a.attackLoss(o)
    guard p.steps >= 0, p.restarts >= 1 else { throw a.fail("steps must be ≥ 0 and restarts ≥ 1") }
    if let al = p.alpha, al < 0 { throw a.fail("alpha must be non-negative, got \(al)") }
    return p
}

private func apgdOptions(_ a: LuaArgs, _ o: LuaOptions) throws -> Attacks.APGDOptions {
    var p = Attacks.APGDOptions()
    p.steps = try o.integer("steps") ?? 100
    p.targeted = try o.bool("targeted") ?? false
    p.targetClasses = try o.integer("n_target_classes") ?? 9
    p.restarts = try o.integer("restarts") ?? 1
    p.rho = try o.number("rho") ?? 0.75
    let l = try a.attackLoss(o)
    switch l {
    case .ce: p.loss = .ce
    case .dlr: p.loss = .dlr
    default: throw a.fail("apgd supports loss \"ce\" or \"dlr\"")
    }
    guard p.steps >= 1, p.restarts >= 1, p.targetClasses >= 1 else { throw a.fail("steps, restarts and n_target_classes must be at least 1") }
    return p
}

let attackFunctions: [(String, parry_SwiftFunction)] = [
    ("fgsm", { attackBinding($0, "parry.attacks.fgsm", attack: "fgsm", allowed: attackOptions + ["targeted", "loss"]) }),
    ("pgd", { attackBinding($0, "parry.attacks.pgd", attack: "pgd",
                            allowed: attackOptions + ["alpha", "steps", "random_start", "restarts", "targeted", "loss", "early_stop"]) }),
    ("mifgsm", { attackBinding($0, "parry.attacks.mifgsm", attack: "mifgsm", allowed: attackOptions + momentumKeys) }),
    ("mdi2fgsm", { attackBinding($0, "parry.attacks.mdi2fgsm", attack: "mdi2fgsm", allowed: attackOptions + momentumKeys + ["p", "resize_rate"]) }),
    ("sgm", { attackBinding($0, "parry.attacks.sgm", attack: "sgm", allowed: attackOptions + momentumKeys + ["gamma"]) }),
    ("cw_l2", { attackBinding($0, "parry.attacks.cw_l2", attack: "cw_l2", allowed: ["c", "kappa", "steps", "lr", "targeted", "bounds"], defaultEps: 0) }),
    ("apgd", { attackBinding($0, "parry.attacks.apgd", attack: "apgd",
                             allowed: attackOptions + ["steps", "loss", "targeted", "n_target_classes", "restarts", "rho"]) }),
    ("square", { attackBinding($0, "parry.attacks.square", attack: "square", allowed: attackOptions + ["queries", "p_init"]) }),
    ("autoattack", { L in bind(L, "parry.attacks.autoattack") { a in
        let (model, module) = try a.classifier(1)
        let x = try a.tensor(2, "x"), y = try a.labels(3)
        let o = try a.options(4, allowed: attackOptions + ["version"])
        let v = try o.string("version") ?? "standard"
        guard let version = Attacks.AutoAttackVersion(rawValue: v) else { throw a.fail("unknown version '\(v)' (expected \"standard\" or \"fast\")") }
        let tm = try a.threatModel(o), g = try a.generatorOption(o)
        let (adv, log) = try RobustTraining.withMode(module, eval: true) {
            try withoutActuallyEscaping(model) { m in try Attacks.autoattack(m, x, y, tm, version: version, generator: g) }
        }
        a.push(adv)
        lua_createtable(a.L, Int32(log.count), 0)
        for (k, (name, acc)) in log.enumerated() {
            lua_createtable(a.L, 0, 2)
            pushString(a.L, name); lua_setfield(a.L, -2, "attack")
            lua_pushnumber(a.L, acc); lua_setfield(a.L, -2, "robust_accuracy")
            lua_rawseti(a.L, -2, lua_Integer(k + 1))
        }
        return 2
    } }),
    ("evaluate", { L in bind(L, "parry.attacks.evaluate") { a in
        let (model, module) = try a.classifier(1)
        let x = try a.tensor(2, "x"), y = try a.labels(3)
        let o = try a.options(4, allowed: ["attacks", "batch_size", "eps", "norm", "bounds", "seed", "progress"])
        let tm = try a.threatModel(o, defaultEps: nil)
        let g = try a.generatorOption(o)
        guard o.index != 0 else { throw a.fail("missing options: attacks and eps") }
        let list = a.rawField(o.index, "attacks")
        guard a.type(list) == LUA_TTABLE, a.rawLength(list) > 0 else { throw a.fail("attacks must be a non-empty list, e.g. {\"fgsm\", \"pgd\"}") }
        var attacks = [Evaluation.Attack]()
        for k in 1...a.rawLength(list) {
            let j = a.rawIndex(list, k)
            attacks.append(try evaluationAttack(a, j, model: model, module: module, tm: tm, generator: g, position: k))
            // keep the spec (and any function in it) on the stack during the run
        }
        let showProgress = (try o.bool("progress")) ?? (isatty(2) != 0)
        let report = try RobustTraining.withMode(module, eval: true) {
            try Evaluation.evaluate(model, x, y, attacks: attacks, batchSize: try o.integer("batch_size") ?? 500,
                                    progress: showProgress ? { FileHandle.standardError.write(Data(("\r\u{1B}[K" + $0).utf8)) } : nil)
        }
        if showProgress { FileHandle.standardError.write(Data("\r\u{1B}[K".utf8)) }
        pushReport(a, report)
        return 1
    } }),
]

/// One entry of evaluate's `attacks`: a name, {name, {options}}, or a Lua function(model, x, y) -> x_adv.
private func evaluationAttack(_ a: LuaArgs, _ j: Int32, model: @escaping Classifier, module: Module?, tm: ThreatModel, generator: Generator,
                              position: Int) throws -> Evaluation.Attack {
    let L = a.L
    if a.type(j) == LUA_TFUNCTION {
        let fn = lua_absindex(L, j)
        return ("attack \(position)", { x, y in
            try a.call(fn, nresults: 1) { lua_pushvalue(L, 1); pushTensor(L, x); pushTensor(L, (try? y.binary(.add, .int(1))) ?? y); return 3 }
            defer { a.pop() }
            guard let t = a.optTensor(-1) else { throw TensorError("attack \(position) must return a tensor") }
            return t
        }, true)
    }
    var name: String, opts: Int32 = 0
    if a.type(j) == LUA_TSTRING { name = try a.string(j, "attack") } else {
        guard a.type(j) == LUA_TTABLE else { throw a.fail("attack \(position) must be a name, {name, {options}} or a function") }
        let n = a.rawIndex(j, 1)
        name = try a.string(n, "attack name")
        let oi = a.rawIndex(j, 2)
        if !a.isNil(oi) { opts = oi }
    }
    let allowed = ["eps", "norm", "alpha", "steps", "random_start", "restarts", "targeted", "loss", "early_stop", "decay", "c", "kappa", "lr",
                   "n_target_classes", "rho", "queries", "p_init", "version", "seed", "p", "resize_rate", "gamma"]
    let o = try a.options(opts, allowed: allowed)
    var t = tm
    if let e = try o.number("eps") { t.eps = e }
    if let n = try o.string("norm") { t.norm = n == "l2" || n == "L2" ? .l2 : .linf }
    let gen = try o.integer("seed").map { Generator(seed: UInt64(bitPattern: Int64($0))) } ?? generator
    let attack = try attackRunner(name, a, o, model, module: module, t, gen)
    return (name, attack.run, attack.whiteBox)
}

private func pushReport(_ a: LuaArgs, _ r: RobustnessReport) {
    let L = a.L
    lua_createtable(L, 0, 7)
    lua_pushnumber(L, r.clean); lua_setfield(L, -2, "clean")
    lua_pushnumber(L, r.worstCase); lua_setfield(L, -2, "worst_case")
    lua_createtable(L, 0, Int32(r.robust.count))
    for (n, v) in r.robust { lua_pushnumber(L, v); lua_setfield(L, -2, n) }
    lua_setfield(L, -2, "robust")
    lua_createtable(L, Int32(r.robust.count), 0)
    for (k, (n, _)) in r.robust.enumerated() { pushString(L, n); lua_rawseti(L, -2, lua_Integer(k + 1)) }
    lua_setfield(L, -2, "order")
    lua_createtable(L, 0, Int32(r.success.count))
    for (n, t) in r.success { pushTensor(L, t); lua_setfield(L, -2, n) }
    lua_setfield(L, -2, "success")
    pushTensor(L, r.robustMask); lua_setfield(L, -2, "robust_mask")
    lua_createtable(L, Int32(r.warnings.count), 0)
    for (k, w) in r.warnings.enumerated() { pushString(L, w); lua_rawseti(L, -2, lua_Integer(k + 1)) }
    lua_setfield(L, -2, "warnings")
}

// MARK: - parry.robust

private func regularizerOption(_ a: LuaArgs, _ o: LuaOptions) throws -> RobustTraining.AdvCompSumRegularizer {
    guard let name = try o.string("regularizer") else { return .margins }
    guard let r = RobustTraining.AdvCompSumRegularizer(rawValue: name) else {
        throw a.fail("regularizer must be \"margins\" or \"logits\", got '\(name)'")
    }
    return r
}

let robustFunctions: [(String, parry_SwiftFunction)] = [
    ("adv_comp_sum_loss", { L in bind(L, "parry.losses.adv_comp_sum") { a in
        let (model, module) = try a.classifier(1)
        let x = try a.tensor(2, "x"), y = try a.labels(3)
        let o = try a.options(4, allowed: ["tau", "nu", "eps", "alpha", "steps", "norm", "random_start", "bounds", "seed", "generator",
                                           "rho", "regularizer"])
        guard let tau = try o.number("tau") else { throw a.fail("missing option tau (a number ≥ 0)") }
        guard tau >= 0 else { throw a.fail("tau must be ≥ 0, got \(tau)") }
        let tm = try a.threatModel(o)
        let steps = try o.integer("steps") ?? 10
        return a.push(try RobustTraining.advCompSumLoss(model, module: module, x, y, tau: tau, nu: try o.number("nu") ?? 1, tm,
                                                        alpha: try o.number("alpha") ?? (steps > 0 ? 2.5 * tm.eps / Double(steps) : 0), steps: steps,
                                                        randomStart: try o.bool("random_start") ?? false, rho: try o.number("rho") ?? 1,
                                                        regularizer: try regularizerOption(a, o), generator: try a.generatorOption(o)))
    } }),
    ("pgd_loss", { L in bind(L, "parry.robust.pgd_loss") { a in
        let (model, module) = try a.classifier(1)
        let x = try a.tensor(2, "x"), y = try a.labels(3)
        let o = try a.options(4, allowed: attackOptions + ["alpha", "steps", "random_start", "restarts", "loss", "attack_mode"])
        let mode = try o.string("attack_mode") ?? "eval"
        guard mode == "eval" || mode == "train" else { throw a.fail("attack_mode must be \"eval\" or \"train\", got '\(mode)'") }
        return a.push(try RobustTraining.pgdLoss(model, module: module, x, y, try a.threatModel(o), try pgdOptions(a, o),
                                                 attackEval: mode == "eval", generator: try a.generatorOption(o)))
    } }),
    ("trades_loss", { L in bind(L, "parry.robust.trades_loss") { a in
        let (model, module) = try a.classifier(1)
        let x = try a.tensor(2, "x"), y = try a.labels(3)
        let o = try a.options(4, allowed: ["eps", "alpha", "steps", "beta", "bounds", "seed", "generator"])
        let tm = try a.threatModel(o)
        let steps = try o.integer("steps") ?? 10
        return a.push(try RobustTraining.tradesLoss(model, module: module, x, y, eps: tm.eps, alpha: try o.number("alpha") ?? tm.eps / 4,
                                                    steps: steps, beta: try o.number("beta") ?? 6, bounds: tm.bounds, generator: try a.generatorOption(o)))
    } }),
]
