import Foundation
import ParryCore
import ParryNN

// APGD (Croce & Hein 2020), Square (Andriushchenko et al. 2020) and the
// AutoAttack ensemble, following the schedules of the authors' code.

extension Attacks {
    public struct APGDOptions {
        public var steps = 100
        public var loss: AttackLoss = .ce        // .ce or .dlr (targeted runs use targeted DLR)
        public var targeted = false
        public var targetClasses = 9               // targeted: the 2nd…(k+1)-th most likely classes
        public var restarts = 1
        public var rho = 0.75
        public init() {}
    }

    /// Auto-PGD for L∞ and L2: step size 2ε halved at checkpoints
    /// p₀ = 0, p₁ = 0.22, pⱼ₊₁ = pⱼ + max(pⱼ − pⱼ₋₁ − 0.03, 0.06) (as iterations:
    /// first after 0.22·N, then shrinking by 0.03·N down to 0.06·N) when fewer than
    /// ρ of the steps since the last checkpoint raised the loss, or when the step
    /// was not reduced last time and the best loss did not improve; momentum 0.75.
    /// Returns per sample the first misclassified point found, else the highest-loss one.
    public static func apgd(_ model: Classifier, _ x: Tensor, _ y: Tensor, _ tm: ThreatModel,
                            _ o: APGDOptions = APGDOptions(), generator: Generator = .current) throws -> Tensor {
        try tm.validate()
        guard o.steps >= 1, o.restarts >= 1 else { throw TensorError("steps and restarts must be at least 1") }
        let classes = try AttackMath.check(model, x, y)
        if !o.targeted { return try apgdRuns(model, x, y, tm, o, target: nil, generator: generator) }
        // Targets: the k-th most likely classes at the clean point, k = 2…targetClasses+1.
        let z = try GradMode.noGrad { try model(x) }
        var adv = x.detach()
        var fooled = try Tensor.zeros([x.shape[0]])
        for k in 1...max(1, min(o.targetClasses, classes - 1)) {
            let top = try GradMode.noGrad { () -> Tensor in
                var rest = z              // mask the k most likely classes, then take the next
                for _ in 0..<k { rest = try rest.maskedFill(F.oneHot(rest.argmax(dim: 1), classes: classes), -1e30) }
                return try rest.argmax(dim: 1)
            }
            let candidate = try apgdRuns(model, x, y, tm, o, target: top, generator: generator)
            try GradMode.noGrad {
                let s = try AttackMath.success(model(candidate), y, targeted: false)
                let take = try s * (1 - fooled)
                adv = try AttackMath.select(take, candidate, adv)
                fooled = try fooled.maximum(s)
            }
        }
        return adv
    }

    /// Restarts of one APGD run (untargeted, or targeted DLR toward `target`).
    static func apgdRuns(_ model: Classifier, _ x: Tensor, _ y: Tensor, _ tm: ThreatModel, _ o: APGDOptions,
                         target: Tensor?, generator: Generator) throws -> Tensor {
        var best = x.detach(), fooled = try Tensor.zeros([x.shape[0]])
        for _ in 0..<o.restarts {
            let (cand, s) = try apgdOnce(model, x, y, tm, o, target: target, generator: generator)
            try GradMode.noGrad {
                let take = try fooled.eq(0)
                best = try AttackMath.select(take, cand, best)
                fooled = try fooled.maximum(s)
            }
        }
        return best
    }

    static func apgdOnce(_ model: Classifier, _ x: Tensor, _ y: Tensor, _ tm: ThreatModel, _ o: APGDOptions,
                         target: Tensor?, generator: Generator) throws -> (Tensor, Tensor) {
        let n = x.shape[0], steps = o.steps
        let lossKind: AttackLoss = target != nil ? .dlr : o.loss
        // The objective to maximize: CE or DLR, or the targeted DLR toward `target`.
        func evaluate(_ a: Tensor) throws -> (Tensor, Tensor, Tensor) {
            try AttackMath.gradient(model, a, y, lossKind, targeted: target != nil, target: target)
        }
        let shape1 = [n] + [Int](repeating: 1, count: x.ndim - 1)
        // Random start: L∞ x + ε·t/max|t| with t ~ U(−1, 1); L2 x + ε·t/‖t‖ with t ~ N(0, 1).
        var xAdv: Tensor = try GradMode.noGrad {
            let t = tm.norm == .linf ? try Tensor.rand(x.shape, generator: generator) * 2 - 1
                                     : try Tensor.randn(x.shape, generator: generator)
            let scale = try AttackMath.sampleNorm(t, tm.norm) + 1e-12
            return try (x + t / scale * tm.eps).clamp(tm.bounds.0, tm.bounds.1)
        }
        var (grad, loss, z) = try evaluate(xAdv)
        var fooled = try AttackMath.success(z, y, targeted: false)
        var xBestAdv = xAdv, xBest = xAdv, gradBest = grad, lossBest = loss
        var stepSize = try Tensor.full(shape1, 2 * tm.eps)
        var xOld = xAdv
        var checkpoints = try APGDCheckpoints(steps: steps, rho: o.rho, initialLoss: loss)
        for i in 0..<steps {
            try Interrupt.check()
            try GradMode.noGrad {
                let grad2 = try xAdv - xOld
                xOld = xAdv
                let a = i > 0 ? 0.75 : 1.0           // momentum: the first step takes none
                let direction = tm.norm == .linf ? try grad.sign() : try grad / (AttackMath.sampleNorm(grad, .l2) + 1e-12)
                let z1 = try AttackMath.project(xAdv + direction * stepSize, x, tm)
                let mixed = try xAdv + (z1 - xAdv) * a + grad2 * (1 - a)
                xAdv = try AttackMath.project(mixed, x, tm)
            }
            (grad, loss, z) = try evaluate(xAdv)
            try GradMode.noGrad {
                let s = try AttackMath.success(z, y, targeted: false)
                let newly = try s * fooled.eq(0)
                xBestAdv = try AttackMath.select(newly, xAdv, xBestAdv)
                fooled = try fooled.maximum(s)
                let improved = try loss.gt(lossBest)
                xBest = try AttackMath.select(improved, xAdv, xBest)
                gradBest = try AttackMath.select(improved, grad, gradBest)
                lossBest = try whereSelect(improved, loss, lossBest)
                if let reduce = try checkpoints.step(loss: loss, lossBest: lossBest) {
                    stepSize = try AttackMath.select(reduce, stepSize * 0.5, stepSize)
                    xAdv = try AttackMath.select(reduce, xBest, xAdv)
                    grad = try AttackMath.select(reduce, gradBest, grad)
                }
            }
        }
        let result = try GradMode.noGrad { try AttackMath.select(fooled, xBestAdv, xBest) }
        return (result, fooled)
    }

    // MARK: Square

    /// Square attack, L∞ (Andriushchenko et al. 2020): random vertical-stripe
    /// init, then square updates of side √(p·H·W) filled with ±2ε per channel,
    /// accepted when the margin loss z_y − max_{j≠y} z_j decreases; p follows the
    /// paper's schedule from `pInit`, halving at 10, 50, 200, 500, 1000, 2000,
    /// 4000, 6000 and 8000 of 10000 (rescaled to `queries`). Stops per sample once fooled.
    public static func square(_ model: Classifier, _ x: Tensor, _ y: Tensor, _ tm: ThreatModel, queries: Int = 5000,
                              pInit: Double = 0.8, generator: Generator = .current) throws -> Tensor {
        try tm.validate()
        guard tm.norm == .linf else { throw TensorError("square supports the L∞ norm only") }
        guard queries >= 1, pInit > 0, pInit <= 1 else { throw TensorError("queries must be ≥ 1 and p_init in (0, 1]") }
        guard x.ndim == 4 else { throw TensorError("square expects N×C×H×W images, got shape \(shapeString(x.shape))") }
        _ = try AttackMath.check(model, x, y)
        return try GradMode.noGrad {
            let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
            let eps = tm.eps, lo = tm.bounds.0, hi = tm.bounds.1
            func margin(_ a: Tensor) throws -> Tensor {
                let z = try model(a)
                return try AttackMath.picked(z, y) - AttackMath.maxOther(z, y)
            }
            // stripes: ±ε per (channel, column)
            let signs = try Tensor.randint(0, 1, [n, c, 1, w], generator: generator).to(.float32) * 2 - 1
            let best = try (x + eps * signs).clamp(lo, hi).contiguous()
            let m = try margin(best).contiguous()
            let xs = try x.contiguous().detach()
            let yAll = y
            for it in 1..<queries {
                try Interrupt.check()
                // Only samples the model still classifies correctly are queried.
                let active = m.floats().enumerated().filter { $0.element > 0 }.map(\.offset)
                if active.isEmpty { break }
                let p = squareP(pInit, it, queries)
                var side = Int((p * Double(h * w)).squareRoot().rounded())
                side = min(max(side, 1), h - 1 > 0 ? h - 1 : 1)
                let cand = try best.indexSelect(0, active)          // a copy of the active rows
                let pc = cand.pointer(Float.self), px = xs.pointer(Float.self)
                for (r, s) in active.enumerated() {
                    let top = Int(generator.integer(0, Int64(max(h - side, 0))))
                    let left = Int(generator.integer(0, Int64(max(w - side, 0))))
                    for ch in 0..<c {
                        let v = Float(2 * eps) * (generator.integer(0, 1) == 0 ? -1 : 1)
                        for i in top..<min(top + side, h) { for j in left..<min(left + side, w) {
                            let o = ((r * c + ch) * h + i) * w + j, ox = ((s * c + ch) * h + i) * w + j
                            let nv = pc[o] + v
                            pc[o] = min(max(nv, max(px[ox] - Float(eps), Float(lo))), min(px[ox] + Float(eps), Float(hi)))
                        } }
                    }
                }
                let z = try model(cand)
                let ya = try yAll.indexSelect(0, active)
                let mNew = try (AttackMath.picked(z, ya) - AttackMath.maxOther(z, ya)).floats()
                let mOld = m.floats()
                let pm = m.pointer(Float.self)
                for (r, s) in active.enumerated() where mNew[r] < mOld[s] {
                    try best.select(0, s).copy_(cand.select(0, r))
                    pm[s] = mNew[r]
                }
            }
            return best
        }
    }

    /// The paper's p schedule (for 10000 queries, rescaled to `queries`).
    static func squareP(_ pInit: Double, _ it: Int, _ queries: Int) -> Double {
        let t = Int(Double(it) / Double(queries) * 10000)
        let steps = [10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000]
        let halvings = steps.filter { t > $0 }.count
        return pInit / Double(1 << halvings)
    }

    // MARK: AutoAttack

    public enum AutoAttackVersion: String { case standard, fast }

    /// APGD-CE, then targeted APGD-DLR, then Square (L∞), each run only on the
    /// points still robust, as AutoAttack does. "standard": 100 steps, 9 target
    /// classes, 5000 queries; "fast": 100 steps, 3 target classes, 1000 queries.
    /// Returns the adversarial inputs and, per attack, the robust accuracy after it.
    public static func autoattack(_ model: @escaping Classifier, _ x: Tensor, _ y: Tensor, _ tm: ThreatModel,
                                  version: AutoAttackVersion = .standard, generator: Generator = .current) throws -> (Tensor, [(String, Double)]) {
        try tm.validate()
        _ = try AttackMath.check(model, x, y)
        let adv = try x.detach().clone()          // written in place below: never alias x
        let robust = try GradMode.noGrad { try 1 - AttackMath.success(model(x), y, targeted: false) }
        var log = [(String, Double)]()
        var ce = APGDOptions(); ce.loss = .ce
        var dlr = APGDOptions(); dlr.targeted = true; dlr.targetClasses = version == .standard ? 9 : 3
        let squareQueries = version == .standard ? 5000 : 1000
        let stages: [(String, (Tensor, Tensor) throws -> Tensor)] = [
            ("apgd-ce", { try apgd(model, $0, $1, tm, ce, generator: generator) }),
            ("apgd-t", { try apgd(model, $0, $1, tm, dlr, generator: generator) }),
            ("square", { try square(model, $0, $1, tm, queries: squareQueries, generator: generator) }),
        ]
        for (name, run) in stages {
            if name == "square" && tm.norm != .linf { continue }
            let idx = robust.floats().enumerated().filter { $0.element > 0 }.map(\.offset)
            if !idx.isEmpty {
                let xs = try x.indexSelect(0, idx), ys = try y.indexSelect(0, idx)
                let out = try run(xs, ys)
                try GradMode.noGrad {
                    let fooled = try AttackMath.success(model(out), ys, targeted: false).floats()
                    for (k, i) in idx.enumerated() where fooled[k] > 0 {
                        try adv.select(0, i).copy_(out.select(0, k))
                        try robust.select(0, i).fill_(0)
                    }
                }
            }
            log.append((name, try robust.mean().double()))
        }
        return (adv, log)
    }
}

/// APGD's step-size checkpoints, as AutoAttack's `apgd_attack` keeps them:
/// the first after k = 0.22·N steps, then k shrinks by 0.03·N down to 0.06·N.
/// At a checkpoint a sample's step halves when the loss rose in at most ρ·k of
/// the last k steps (oscillation), or when its step was not halved at the
/// previous checkpoint and the best loss has not improved since. The "halved
/// at the previous checkpoint" flag starts true (AutoAttack and torchattacks:
/// `reduced_last_check` of ones), so the first checkpoint halves for
/// oscillation only.
struct APGDCheckpoints {
    private(set) var k: Int
    let kMin: Int, sizeDecr: Int, rho: Double
    private var counter = 0
    private var increases: Tensor
    private var reducedLast: Tensor
    private var lossBestLastCheck: Tensor
    private var previousLoss: Tensor

    init(steps: Int, rho: Double, initialLoss: Tensor) throws {
        k = Swift.max(Int(0.22 * Double(steps)), 1)
        kMin = Swift.max(Int(0.06 * Double(steps)), 1); sizeDecr = Swift.max(Int(0.03 * Double(steps)), 1)
        self.rho = rho
        increases = try Tensor.zeros(initialLoss.shape)
        reducedLast = try Tensor.ones(initialLoss.shape)
        lossBestLastCheck = initialLoss
        previousLoss = initialLoss
    }

    /// After a step's loss and the best loss so far (updated with it): the
    /// 0/1 mask of samples whose step halves now, or nil between checkpoints.
    mutating func step(loss: Tensor, lossBest: Tensor) throws -> Tensor? {
        increases = try increases + loss.gt(previousLoss)
        previousLoss = loss
        counter += 1
        guard counter == k else { return nil }
        let oscillation = try increases.le(Double(k) * rho)
        let noImprovement = try (1 - reducedLast) * lossBestLastCheck.ge(lossBest)
        let reduce = try oscillation.maximum(noImprovement)
        reducedLast = reduce
        lossBestLastCheck = lossBest
        counter = 0
        increases = try Tensor.zeros(loss.shape)
        k = Swift.max(k - sizeDecr, kMin)
        return reduce
    }
}
