import Foundation
import ParryCore
import ParryNN

/// Adversarial training losses (per batch, scalar) and the training loop.
public enum RobustTraining {
    /// Runs `body` with `module` in eval mode (when `eval`), restoring every
    /// submodule's previous mode afterwards.
    public static func withMode<T>(_ module: Module?, eval: Bool, _ body: () throws -> T) rethrows -> T {
        try withMode(module.map { [$0] } ?? [], eval: eval, body)
    }

    /// The same for several modules at once (an ensemble's members, a set of targets).
    public static func withMode<T>(_ modules: [Module], eval: Bool, _ body: () throws -> T) rethrows -> T {
        guard eval, !modules.isEmpty else { return try body() }
        let saved = modules.flatMap { $0.namedModules().map { ($0.module, $0.module.training) } }
        for m in modules { m.eval() }
        defer { for (m, t) in saved { m.setTrainingFlag(t) } }
        return try body()
    }

    /// Madry et al.: cross-entropy on PGD examples (L∞ or L2) made with the model
    /// in eval mode (`attackEval`, the default) or in train mode.
    public static func pgdLoss(_ model: Classifier, module: Module?, _ x: Tensor, _ y: Tensor, _ tm: ThreatModel,
                               _ o: Attacks.PGDOptions, attackEval: Bool = true, generator: Generator = .current) throws -> Tensor {
        let adv = try withMode(module, eval: attackEval) { try Attacks.pgd(model, x, y, tm, o, generator: generator) }
        return try Loss.crossEntropy(model(adv.detach()), y)
    }

    /// TRADES (Zhang et al. 2019): CE(f(x), y) + β·KL(f(x) ‖ f(x')) with
    /// x' from L∞ PGD on the KL term, started at x + 0.001·N(0, 1)
    /// (the authors' code: step α, `steps` steps, model in eval mode while attacking).
    public static func tradesLoss(_ model: Classifier, module: Module?, _ x: Tensor, _ y: Tensor, eps: Double, alpha: Double,
                                  steps: Int, beta: Double = 6, bounds: (Double, Double) = (0, 1), generator: Generator = .current) throws -> Tensor {
        guard eps >= 0, alpha >= 0, steps >= 0, beta >= 0 else { throw TensorError("eps, alpha, steps and beta must be non-negative") }
        let tm = ThreatModel(eps: eps, norm: .linf, bounds: bounds)
        let adv = try withMode(module, eval: true) { () -> Tensor in
            let pNat = try GradMode.noGrad { try model(x).softmax(dim: 1) }
            var a = try x + 0.001 * Tensor.randn(x.shape, generator: generator)
            for _ in 0..<steps {
                try Interrupt.check()
                let av = try a.detach().requiresGrad_()
                let kl = try Loss.klDiv(model(av).softmax(dim: 1, log: true), pNat, reduction: .sum)
                let g = try grad([kl], [av])[0] ?? Tensor.zeros(x.shape)
                a = try GradMode.noGrad { try AttackMath.project(av.detach() + alpha * g.sign(), x, tm) }
            }
            return try a.clamp(bounds.0, bounds.1).detach()
        }
        let logits = try model(x)
        let natural = try Loss.crossEntropy(logits, y)
        let robust = try Loss.klDiv(model(adv).softmax(dim: 1, log: true), logits.softmax(dim: 1), reduction: .batchmean)
        return try natural + beta * robust
    }
}

extension RobustTraining {
    /// What the smooth adversarial comp-sum loss regularizes.
    public enum AdvCompSumRegularizer: String, Sendable {
        /// The change of the margin vector h̄_y = (h_{y′} − h_y)_{y′≠y} (the paper's derivation).
        case margins
        /// The change of the raw logit vector h (parry's first reading, kept for comparison).
        case logits
    }

    /// The per-sample vector the regularizer measures: margins h − h_y (the y
    /// entry is 0, so its norm is that of h̄_y over y′ ≠ y) or the logits.
    static func regularized(_ z: Tensor, _ y: Tensor, _ r: AdvCompSumRegularizer) throws -> Tensor {
        r == .logits ? z : try z - AttackMath.picked(z, y).unsqueeze(1)
    }

    /// Smooth adversarial comp-sum loss (Mao, Mohri & Zhong 2023, as derived from
    /// comp-sum ρ-margin losses; see docs/nn.md for what is the paper's and what
    /// is our reading): mean over the batch of
    ///   ℓ_τ(h(x)/ρ, y) + ν·sup_{‖x′−x‖≤γ} ‖v(x′) − v(x)‖₂,
    /// v the margin vector h̄_y (`.margins`, default) or the logits (`.logits`,
    /// parry's earlier form, bit for bit with ρ = 1). The sup is approximated by
    /// PGD on the same distance (TRADES-style: start at x + 0.001·N(0,1), or
    /// uniform in the ball with `randomStart`; L∞ sign steps or L2 normalized
    /// steps of size α; model in eval mode while attacking). Differentiable in
    /// the model's parameters through both h(x) and h(x').
    public static func advCompSumLoss(_ model: Classifier, module: Module?, _ x: Tensor, _ y: Tensor, tau: Double, nu: Double,
                                      _ tm: ThreatModel, alpha: Double, steps: Int, randomStart: Bool = false,
                                      rho: Double = 1, regularizer r: AdvCompSumRegularizer = .margins,
                                      generator: Generator = .current) throws -> Tensor {
        try tm.validate()
        guard nu >= 0, alpha >= 0, steps >= 0 else { throw TensorError("nu, alpha and steps must be non-negative") }
        guard rho > 0, rho.isFinite else { throw TensorError("rho must be a positive number, got \(rho)") }
        let logits = try model(x)
        let base = try Loss.compSum(rho == 1 ? logits : logits / rho, y, tau: tau)
        guard nu > 0 else { return base }
        let xAdv = try withMode(module, eval: true) { () -> Tensor in
            let target = try regularized(logits.detach(), y, r)
            var a = randomStart ? try Attacks.randomStart(x, tm, generator: generator)
                : try AttackMath.project(x + 0.001 * Tensor.randn(x.shape, generator: generator), x, tm)
            for _ in 0..<steps {
                try Interrupt.check()
                let av = try a.detach().requiresGrad_()
                let dist = try (regularized(model(av), y, r) - target).norm(dim: 1).sum()
                let g = try grad([dist], [av])[0] ?? Tensor.zeros(x.shape)
                a = try GradMode.noGrad {
                    let step = tm.norm == .linf ? try g.sign() : try g / (AttackMath.sampleNorm(g, .l2) + 1e-12)
                    return try AttackMath.project(av.detach() + alpha * step, x, tm)
                }
            }
            return a.detach()
        }
        let regularizer = try (regularized(model(xAdv), y, r) - regularized(logits, y, r)).norm(dim: 1).mean()
        return try base + nu * regularizer
    }
}
