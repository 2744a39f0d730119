import CLua
import CLuaShim
import Foundation
import ParryCore
import ParryNN
import ParryRobust
import ParryData

// Bindings of the calibration heads (ParryRobust/Calibration.swift) and the
// modality transforms of the small Bind model: argument translation only.
// stdlib/parry/robust.lua wraps calibrate and zero_shot.

let calibrationFunctions: [(String, parry_SwiftFunction)] = [
    // _calibrate(encoder, head, centers, x, y, opts) (parry.robust.calibrate in robust.lua)
    ("_calibrate", { L in bind(L, "parry.robust.calibrate") { a in
        let encoder = try a.module(1, "encoder"), head = try a.module(2, "head")
        let centers = try a.tensor(3, "centers")
        let x = try a.tensor(4, "train.x"), y = try a.labels(5, "train.y")
        let o = try a.options(6, allowed: ["objective", "consistency", "eps", "alpha", "steps", "random_start", "attack_loss", "temperature",
                                           "nce_temperature", "symmetric", "optimizer", "epochs", "batch_size", "bounds", "on_epoch", "seed", "generator"])
        var c = Calibration.Options()
        if let s = try o.string("objective") {
            guard let obj = Calibration.Objective(rawValue: s) else { throw a.fail("unknown objective '\(s)' (expected \"ce\", \"l2\" or \"infonce\")") }
            c.objective = obj
        }
        if let s = try o.string("attack_loss") {
            guard let l = Calibration.AttackLoss(rawValue: s) else { throw a.fail("unknown attack_loss '\(s)' (expected \"ce\" or \"embedding\")") }
            c.attackLoss = l
        }
        c.consistency = try o.number("consistency") ?? 0
        c.eps = try o.number("eps") ?? c.eps
        c.alpha = try o.number("alpha")
        c.steps = try o.integer("steps") ?? c.steps
        c.randomStart = try o.bool("random_start") ?? true
        c.temperature = try o.number("temperature") ?? c.temperature
        c.nceTemperature = try o.number("nce_temperature") ?? c.nceTemperature
        c.symmetric = try o.bool("symmetric") ?? false
        c.epochs = try o.integer("epochs") ?? c.epochs
        c.batchSize = try o.integer("batch_size") ?? c.batchSize
        guard c.temperature > 0, c.nceTemperature > 0 else { throw a.fail("temperature must be positive, got \(min(c.temperature, c.nceTemperature))") }
        guard c.eps >= 0, c.eps.isFinite else { throw a.fail("eps must be a non-negative number, got \(c.eps)") }
        guard c.consistency >= 0 else { throw a.fail("consistency must be ≥ 0, got \(c.consistency)") }
        guard c.steps >= 0, c.epochs >= 1, c.batchSize >= 1 else { throw a.fail("steps must be ≥ 0, epochs and batch_size ≥ 1") }
        try a.nested(o, "optimizer", allowed: ["lr", "weight_decay", "pct_start", "div_factor", "final_div_factor"]) { f in
            c.lr = try f.number("lr") ?? c.lr
            c.weightDecay = try f.number("weight_decay") ?? c.weightDecay
            c.pctStart = try f.number("pct_start") ?? c.pctStart
            c.divFactor = try f.number("div_factor") ?? c.divFactor
            c.finalDivFactor = try f.number("final_div_factor") ?? c.finalDivFactor
            guard c.lr >= 0, c.weightDecay >= 0, c.pctStart > 0, c.pctStart < 1, c.divFactor > 0, c.finalDivFactor > 0 else {
                throw a.fail("optimizer: lr and weight_decay must be ≥ 0, pct_start in (0, 1), the div factors positive")
            }
        }
        if o.index != 0 {
            let j = a.rawField(o.index, "bounds"); defer { a.pop() }
            if !a.isNil(j) { c.bounds = try a.threatModel(o, defaultEps: 0).bounds }
        }
        guard centers.ndim == 2 else { throw a.fail("centers must be a C×d tensor, got shape \(shapeString(centers.shape))") }
        let onEpoch = try a.callbackOption(o, "on_epoch") { (r: Calibration.EpochRecord) -> Int32 in
            pushCalibrationEpoch(a, r); return 1
        }
        let curve = try Calibration.calibrate(encoder: encoder, head: head, centers: centers, x: x, y: y, options: c,
                                              generator: try a.generatorOption(o), onEpoch: onEpoch)
        lua_pushvalue(a.L, 2)
        lua_createtable(a.L, Int32(curve.count), 0)
        for (k, r) in curve.enumerated() { pushCalibrationEpoch(a, r); lua_rawseti(a.L, -2, lua_Integer(k + 1)) }
        return 2
    } }),
    ("retrieval", { L in bind(L, "parry.robust.retrieval") { a in
        let za = try a.tensor(1, "za"), zb = try a.tensor(2, "zb")
        let o = try a.options(3, allowed: ["k"])
        var ks = [1, 5]
        if o.index != 0 {
            let j = a.rawField(o.index, "k"); defer { a.pop() }
            if a.type(j) == LUA_TNUMBER { ks = [try a.integer(j, "k")] } else if !a.isNil(j) { ks = try a.integerList(j, "k") }
        }
        if let bad = ks.first(where: { $0 < 1 }) { throw a.fail("k must be at least 1, got \(bad)") }
        let ab = try Calibration.recall(za, zb, ks: ks), ba = try Calibration.recall(zb, za, ks: ks)
        lua_createtable(a.L, 0, 2)
        for (name, values) in [("a_to_b", ab), ("b_to_a", ba)] {
            lua_createtable(a.L, 0, Int32(ks.count))
            for (k, v) in zip(ks, values) { lua_pushnumber(a.L, v); lua_rawseti(a.L, -2, lua_Integer(k)) }
            lua_setfield(a.L, -2, name)
        }
        return 1
    } }),
]

private func pushCalibrationEpoch(_ a: LuaArgs, _ r: Calibration.EpochRecord) {
    lua_createtable(a.L, 0, 4)
    a.push(r.epoch); lua_setfield(a.L, -2, "epoch")
    lua_pushnumber(a.L, r.loss); lua_setfield(a.L, -2, "loss")
    lua_pushnumber(a.L, r.adversarialAccuracy); lua_setfield(a.L, -2, "adversarial_accuracy")
    lua_pushnumber(a.L, r.seconds); lua_setfield(a.L, -2, "seconds")
}

let cosineLogitsFunction: (String, parry_SwiftFunction) =
    ("cosine_logits", { L in bind(L, "nn.functional.cosine_logits") { a in
        let o = try a.options(3, allowed: ["temperature"])
        let t = try o.number("temperature") ?? 1
        guard t > 0, t.isFinite else { throw a.fail("temperature must be positive, got \(t)") }
        return a.push(try Loss.cosineLogits(try a.tensor(1, "z"), try a.tensor(2, "centers"), temperature: t))
    } })

let modalityFunctions: [(String, parry_SwiftFunction)] = [
    ("point_cloud", { L in bind(L, "parry.data.point_cloud") { a in
        let x = try a.tensor(1, "images")
        let o = try a.options(2, allowed: ["points", "jitter", "seed", "generator"])
        return a.push(try Modalities.pointCloud(x, points: try o.integer("points") ?? 128, jitter: try o.number("jitter") ?? 1,
                                                generator: try a.generatorOption(o)))
    } }),
    ("image_signal", { L in bind(L, "parry.data.image_signal") { a in
        let x = try a.tensor(1, "images")
        let o = try a.options(2, allowed: ["curve", "noise", "seed", "generator"])
        let name = try o.string("curve") ?? "hilbert"
        guard let curve = Modalities.Curve(rawValue: name) else { throw a.fail("unknown curve '\(name)' (expected \"hilbert\" or \"snake\")") }
        return a.push(try Modalities.signal(x, curve: curve, noise: try o.number("noise") ?? 0, generator: try a.generatorOption(o)))
    } }),
]
