import Foundation
import ParryCore
import ParryNN

// Gradient and score-based attacks. All take 0-based int64 labels, run on
// the whole batch given, draw randomness from the generator passed (so a
// seed reproduces them) and return adversarial inputs inside `bounds` and
// the ε-ball. Semantics follow torchattacks and AutoAttack where they define them.

public enum Attacks {
    // MARK: FGSM

    /// x + ε·sign(∇ₓ loss) (− for targeted, with y the target), clipped to
    /// bounds. For the L2 norm, the fast gradient method x + ε·∇/‖∇‖₂.
    public static func fgsm(_ model: Classifier, _ x: Tensor, _ y: Tensor, _ tm: ThreatModel,
                            targeted: Bool = false, loss: AttackLoss = .ce) throws -> Tensor {
        try tm.validate()
        _ = try AttackMath.check(model, x, y)
        let (g, _, _) = try AttackMath.gradient(model, x, y, loss, targeted: targeted)
        return try GradMode.noGrad {
            let step = tm.norm == .linf ? try g.sign() : try g / (AttackMath.sampleNorm(g, .l2) + 1e-12)
            return try (x + tm.eps * step).clamp(tm.bounds.0, tm.bounds.1)
        }
    }

    // MARK: PGD

    public struct PGDOptions {
        public var alpha: Double? = nil            // default 2.5·ε/steps
        public var steps = 10
        public var randomStart = true
        public var restarts = 1
        public var targeted = false
        public var loss: AttackLoss = .ce
        public var earlyStop = false
        public init() {}
    }

    /// Projected gradient descent (Madry et al.), L∞ or L2, as torchattacks'
    /// PGD / PGDL2: L∞ steps α·sign(g), L2 steps α·g/‖g‖₂; random start
    /// uniform in the L∞ box, or for L2 a uniform direction with radius ε·U(0,1).
    /// With restarts, each sample keeps its first successful example, else its highest-loss one.
    public static func pgd(_ model: Classifier, _ x: Tensor, _ y: Tensor, _ tm: ThreatModel,
                           _ o: PGDOptions = PGDOptions(), generator: Generator = .current) throws -> Tensor {
        try tm.validate()
        guard o.steps >= 0, o.restarts >= 1 else { throw TensorError("steps must be ≥ 0 and restarts ≥ 1") }
        _ = try AttackMath.check(model, x, y)
        let alpha = o.alpha ?? (o.steps > 0 ? 2.5 * tm.eps / Double(o.steps) : 0)
        guard alpha >= 0 else { throw TensorError("alpha must be non-negative, got \(alpha)") }
        let n = x.shape[0]
        var best = x, bestLoss = try Tensor.full([n], -Double.infinity), bestSuccess = try Tensor.zeros([n])
        for r in 0..<o.restarts {
            var adv = x.detach()
            if o.randomStart && tm.eps > 0 { adv = try randomStart(x, tm, generator: generator) }
            var active = try Tensor.ones([n])
            for _ in 0..<o.steps {
                let (g, _, z) = try AttackMath.gradient(model, adv, y, o.loss, targeted: o.targeted)
                adv = try GradMode.noGrad {
                    if o.earlyStop { active = try active * (1 - AttackMath.success(z, y, targeted: o.targeted)) }
                    var step: Tensor
                    if tm.norm == .linf { step = try alpha * g.sign() }
                    else { step = try alpha * (g / (AttackMath.sampleNorm(g, .l2) + 1e-10)) }
                    if o.earlyStop { step = try AttackMath.select(active, step, Tensor(0)) }
                    return try AttackMath.project(adv + step, x, tm)
                }
            }
            let (l, s) = try GradMode.noGrad { () -> (Tensor, Tensor) in
                let z = try model(adv)
                return (try AttackMath.loss(o.loss, z, y, targeted: o.targeted), try AttackMath.success(z, y, targeted: o.targeted))
            }
            if r == 0 { best = adv; bestLoss = l; bestSuccess = s; continue }
            try GradMode.noGrad {
                // replace where no success yet and (this one succeeds, or has a higher loss)
                let better = try (1 - bestSuccess) * s.maximum(l.gt(bestLoss))
                best = try AttackMath.select(better, adv, best)
                bestLoss = try whereSelect(better, l, bestLoss)
                bestSuccess = try bestSuccess.maximum(s)
            }
        }
        return best
    }

    /// Random start as torchattacks: L∞ uniform in [−ε, ε]; L2 a uniform
    /// direction scaled to ε·U(0,1). Clipped to bounds.
    static func randomStart(_ x: Tensor, _ tm: ThreatModel, generator: Generator) throws -> Tensor {
        try GradMode.noGrad {
            var delta: Tensor
            if tm.norm == .linf {
                delta = try Tensor.rand(x.shape, generator: generator) * (2 * tm.eps) - tm.eps
            } else {
                delta = try Tensor.randn(x.shape, generator: generator)
                let r = try Tensor.rand([x.shape[0]] + [Int](repeating: 1, count: x.ndim - 1), generator: generator)
                delta = try delta / AttackMath.sampleNorm(delta, .l2) * (r * tm.eps)
            }
            return try (x + delta).clamp(tm.bounds.0, tm.bounds.1)
        }
    }

    // MARK: MI-FGSM

    /// Momentum iterative FGSM (Dong et al. 2018) as torchattacks: g ← ∇/mean|∇| + μ·g; x ← x + α·sign(g).
    public static func mifgsm(_ model: Classifier, _ x: Tensor, _ y: Tensor, _ tm: ThreatModel, alpha: Double? = nil,
                              steps: Int = 10, decay: Double = 1, targeted: Bool = false) throws -> Tensor {
        try tm.validate()
        guard steps >= 0 else { throw TensorError("steps must be non-negative") }
        _ = try AttackMath.check(model, x, y)
        let a = alpha ?? (steps > 0 ? tm.eps / Double(steps) : 0)
        var adv = x.detach(), momentum = try Tensor.zeros(x.shape)
        for _ in 0..<steps {
            let (g, _, _) = try AttackMath.gradient(model, adv, y, .ce, targeted: targeted)
            try GradMode.noGrad {
                let n = x.shape[0]
                let l1 = try g.abs().reshape([n, -1]).mean(dim: 1).reshape([n] + [Int](repeating: 1, count: x.ndim - 1))
                momentum = try g / (l1 + 1e-12) + decay * momentum
                adv = try AttackMath.project(adv + a * momentum.sign(), x, ThreatModel(eps: tm.eps, norm: .linf, bounds: tm.bounds))
            }
        }
        return adv
    }

    // MARK: Carlini–Wagner L2

    /// Carlini & Wagner (2017) L2 as torchattacks' CW: Adam on w with
    /// x' = lo + (hi−lo)·(tanh(w)+1)/2, minimizing ‖x'−x‖² + c·max(z_y − max_{j≠y} z_j, −κ)
    /// (targeted: max(max_{j≠t} z_j − z_t, −κ)); returns, per sample, the smallest
    /// successful perturbation found (the input itself where none succeeded).
    public static func cwL2(_ model: Classifier, _ x: Tensor, _ y: Tensor, bounds: (Double, Double) = (0, 1),
                            c: Double = 1, kappa: Double = 0, steps: Int = 50, lr: Double = 0.01, targeted: Bool = false) throws -> Tensor {
        guard c >= 0, kappa >= 0, steps >= 0, lr > 0 else { throw TensorError("c and kappa must be ≥ 0, steps ≥ 0, lr > 0") }
        guard bounds.0 < bounds.1 else { throw TensorError("bounds must satisfy lo < hi") }
        _ = try AttackMath.check(model, x, y)
        let (lo, hi) = bounds, n = x.shape[0]
        let scaled = try ((x - lo) / (hi - lo) * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6)
        // atanh(u) = ½·log((1+u)/(1−u))
        let w = try (((scaled + 1) / (1 - scaled)).log() * 0.5).detach().requiresGrad_()
        let opt = try Adam([w], lr: lr)
        var best = x.detach(), bestL2 = try Tensor.full([n], 1e10)
        var previous = Double.infinity
        for step in 0..<steps {
            let adv = try (w.tanh() + 1) * ((hi - lo) / 2) + lo
            let l2 = try (adv - x).reshape([n, -1]).pow(2).sum(dim: 1)
            let z = try model(adv)
            let real = try AttackMath.picked(z, y), other = try AttackMath.maxOther(z, y)
            let f = try (targeted ? other - real : real - other).clamp(min: -kappa)
            let cost = try l2.sum() + c * f.sum()
            opt.zeroGrad()
            try cost.backward()
            try opt.step()
            try GradMode.noGrad {
                let better = try AttackMath.success(z, y, targeted: targeted) * bestL2.gt(l2.detach())
                bestL2 = try whereSelect(better, l2.detach(), bestL2)
                best = try AttackMath.select(better, adv.detach(), best)
            }
            // early abort when the cost stops decreasing (checked every steps/10 iterations)
            if step % max(steps / 10, 1) == 0 {
                let now = try cost.double()
                if now > previous { break }
                previous = now
            }
        }
        return best
    }
}
