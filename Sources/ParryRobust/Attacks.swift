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
        var restarts = RestartSelection()
        for _ in 0..<o.restarts {
            var adv = x.detach()
            if o.randomStart && tm.eps > 0 { adv = try randomStart(x, tm, generator: generator) }
            var active = try Tensor.ones([n])
            for _ in 0..<o.steps {
                try Interrupt.check()
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
            try restarts.offer(adv, model, y, o.loss, targeted: o.targeted)
        }
        return restarts.best ?? x
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

    // MARK: MI-FGSM and its transfer variants

    /// Momentum iterative attacks (MI-FGSM and the transfer attacks built on it).
    public struct MomentumOptions {
        public var alpha: Double? = nil            // default ε/steps
        public var steps = 10
        public var decay = 1.0
        public var randomStart = false
        public var restarts = 1
        public var targeted = false
        public var loss: AttackLoss = .ce
        /// Diverse inputs (Xie et al. 2019, as torchattacks' DIFGSM): with
        /// probability p per step, the gradient is taken at a copy resized
        /// (nearest) to a random side in [rate·side, side) and zero-padded back at a random offset.
        public var diversity: (p: Double, resizeRate: Double)? = nil
        public init() {}
    }

    /// Momentum iterative FGSM (Dong et al. 2018) as torchattacks: g ← ∇/mean|∇| + μ·g; x ← x + α·sign(g).
    public static func mifgsm(_ model: Classifier, _ x: Tensor, _ y: Tensor, _ tm: ThreatModel, alpha: Double? = nil,
                              steps: Int = 10, decay: Double = 1, targeted: Bool = false) throws -> Tensor {
        var o = MomentumOptions()
        o.alpha = alpha; o.steps = steps; o.decay = decay; o.targeted = targeted
        return try momentum(model, x, y, tm, o)
    }

    /// The momentum iterative family: MI-FGSM (the defaults), momentum PGD
    /// with a random start and restarts (each sample keeps its first
    /// successful restart, else its highest-loss one), and with `diversity`
    /// M-DI²-FGSM. L∞ only.
    public static func momentum(_ model: Classifier, _ x: Tensor, _ y: Tensor, _ tm: ThreatModel, _ o: MomentumOptions,
                                generator: Generator = .current) throws -> Tensor {
        try tm.validate()
        guard tm.norm == .linf else { throw TensorError("momentum attacks support the L∞ norm only") }
        guard o.steps >= 0, o.restarts >= 1 else { throw TensorError("steps must be ≥ 0 and restarts ≥ 1") }
        if let d = o.diversity {
            guard d.p >= 0, d.p <= 1 else { throw TensorError("diversity_prob must be in [0, 1], got \(d.p)") }
            guard d.resizeRate > 0, d.resizeRate <= 1 else { throw TensorError("resize_rate must be in (0, 1], got \(d.resizeRate)") }
            guard x.ndim == 4 else { throw TensorError("diverse inputs need N×C×H×W images, got shape \(shapeString(x.shape))") }
        }
        _ = try AttackMath.check(model, x, y)
        let a = o.alpha ?? (o.steps > 0 ? tm.eps / Double(o.steps) : 0)
        guard a >= 0 else { throw TensorError("alpha must be non-negative, got \(a)") }
        let n = x.shape[0], unit = [n] + [Int](repeating: 1, count: x.ndim - 1)
        func gradModel(_ t: Tensor) throws -> Tensor {
            guard let d = o.diversity else { return try model(t) }
            return try model(diverseInput(t, p: d.p, rate: d.resizeRate, generator: generator))
        }
        var restarts = RestartSelection()
        for _ in 0..<o.restarts {
            var adv = o.randomStart && tm.eps > 0 ? try randomStart(x, tm, generator: generator) : x.detach()
            var g = try Tensor.zeros(x.shape)
            for _ in 0..<o.steps {
                try Interrupt.check()
                let (d, _, _) = try AttackMath.gradient(gradModel, adv, y, o.loss, targeted: o.targeted)
                try GradMode.noGrad {
                    let l1 = try d.abs().reshape([n, -1]).mean(dim: 1).reshape(unit)
                    g = try d / (l1 + 1e-12) + o.decay * g
                    adv = try AttackMath.project(adv + a * g.sign(), x, tm)
                }
            }
            guard o.restarts > 1 else { return adv }
            try restarts.offer(adv, model, y, o.loss, targeted: o.targeted)
        }
        return restarts.best ?? x
    }

    /// torchattacks' DIFGSM input diversity: with probability p (one draw per
    /// call), resize the batch (nearest) to a side drawn in [⌊rate·side⌋, side)
    /// and zero-pad it back to side×side at a random offset; otherwise x. Differentiable in x.
    public static func diverseInput(_ x: Tensor, p: Double, rate: Double, generator: Generator = .current) throws -> Tensor {
        let h = x.shape[2], w = x.shape[3]
        guard generator.uniform() < p else { return x }
        func side(_ full: Int) -> Int {
            let lo = Int(Double(full) * rate)
            return lo >= full ? full : Int(generator.integer(Int64(lo), Int64(full - 1)))
        }
        let rw = side(w), rh = h == w ? rw : side(h)
        let iy = (0..<rh).map { $0 * h / rh }, ix = (0..<rw).map { $0 * w / rw }    // nearest: floor(i·in/out)
        let small = try x.indexSelect(2, iy).indexSelect(3, ix)
        let top = h - rh > 0 ? Int(generator.integer(0, Int64(h - rh - 1))) : 0
        let left = w - rw > 0 ? Int(generator.integer(0, Int64(w - rw - 1))) : 0
        return try zeroPad(small, top: top, bottom: h - rh - top, left: left, right: w - rw - left)
    }

    /// Zero padding of the last two dims, differentiable (concatenation with zeros).
    static func zeroPad(_ t: Tensor, top: Int, bottom: Int, left: Int, right: Int) throws -> Tensor {
        var out = t
        let (n, c) = (t.shape[0], t.shape[1])
        if left + right > 0 {
            let hh = out.shape[2]
            var parts = [Tensor]()
            if left > 0 { parts.append(try Tensor.zeros([n, c, hh, left])) }
            parts.append(out)
            if right > 0 { parts.append(try Tensor.zeros([n, c, hh, right])) }
            out = try cat(parts, dim: 3)
        }
        if top + bottom > 0 {
            let ww = out.shape[3]
            var parts = [Tensor]()
            if top > 0 { parts.append(try Tensor.zeros([n, c, top, ww])) }
            parts.append(out)
            if bottom > 0 { parts.append(try Tensor.zeros([n, c, bottom, ww])) }
            out = try cat(parts, dim: 2)
        }
        return out
    }

    /// Skip gradient method (Wu et al. 2020) on the momentum attack: during
    /// the attack the gradient through every residual branch of `model`'s
    /// BasicBlocks (the branch's last BatchNorm output) is multiplied by γ,
    /// so more of it flows through the skip connections. Our reading of
    /// "decay the residual gradient" for BasicBlock ResNets (one factor per
    /// block; the SGM code decays the branch's ReLU gradient, the same factor
    /// on this architecture). γ = 1 is the plain momentum attack, bit for bit.
    public static func sgm(_ model: Module, _ x: Tensor, _ y: Tensor, _ tm: ThreatModel, gamma: Double = 0.2,
                           _ o: MomentumOptions = MomentumOptions(), generator: Generator = .current) throws -> Tensor {
        guard gamma >= 0, gamma.isFinite else { throw TensorError("gamma must be a non-negative number, got \(gamma)") }
        let branches = model.namedModules().compactMap { ($0.module as? BasicBlock)?.child("bn2") }
        guard !branches.isEmpty else { throw TensorError("sgm needs a model with residual blocks (the zoo's ResNets), got a \(model.typeName)") }
        let handles = branches.map { bn in
            bn.registerForwardHook { _, _, out in
                if out.requiresGrad && GradMode.isEnabled { try out.registerHook { g in try g * gamma } }
                return nil
            }
        }
        defer { for h in handles { h.remove() } }
        return try momentum({ try model($0) }, x, y, tm, o, generator: generator)
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
            try Interrupt.check()
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
