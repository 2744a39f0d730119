import Foundation
import ParryCore
import ParryNN

// State-adversarial attacks on a policy (Zhang et al. 2020, SA-MDP): the
// victim sees ŝ with ‖ŝ − s‖∞ ≤ ε while the env steps on s. As in the SA-PPO
// code (ATLA_robust_RL / PROTECTED's policy_gradients/agent.py,
// `apply_attack`), s is the observation the networks see — the running-
// normalized one when the policy normalizes — so ε is in normalized units.

/// An attack: a batch of observations (rows) → perturbed ones in the ε-ball.
public protocol ObservationAttack {
    var eps: Double { get }
    func perturb(_ s: Tensor, policy: ActorCritic, generator: Generator) throws -> Tensor
}

extension ObservationAttack {
    /// ŝ clipped to [s − ε, s + ε].
    func project(_ x: Tensor, _ s: Tensor) throws -> Tensor { try x.maximum(s - eps).minimum(s + eps) }
}

public enum StateAttackError {
    static func check(_ eps: Double, _ steps: Int = 1) throws {
        guard eps.isFinite, eps >= 0 else { throw RLError("eps must be a non-negative number, got \(eps)") }
        guard steps > 0 else { throw RLError("steps must be positive, got \(steps)") }
    }
}

/// `random`: s + U[−ε, ε]^d.
public struct RandomAttack: ObservationAttack {
    public let eps: Double
    public init(eps: Double) throws { try StateAttackError.check(eps); self.eps = eps }
    public func perturb(_ s: Tensor, policy: ActorCritic, generator: Generator) throws -> Tensor {
        try GradMode.noGrad { try s + (Tensor.rand(s.shape, generator: generator) * 2 - 1) * eps }
    }
}

/// `critic`: PGD that lowers the victim's value V(ŝ) — a start uniform in
/// ±ε/steps, then `steps` signed steps of ε/steps (the code's "auto" step).
public struct CriticAttack: ObservationAttack {
    public let eps: Double, steps: Int, stepEps: Double
    public init(eps: Double, steps: Int = 10, stepEps: Double? = nil) throws {
        try StateAttackError.check(eps, steps)
        self.eps = eps; self.steps = steps; self.stepEps = stepEps ?? eps / Double(steps)
    }
    public func perturb(_ s: Tensor, policy: ActorCritic, generator: Generator) throws -> Tensor {
        let s0 = s.detach()
        var x = try GradMode.noGrad { try s0 + (Tensor.rand(s0.shape, generator: generator) * 2 - 1) * stepEps }
        for _ in 0..<steps {
            let xv = try x.detach().requiresGrad_()
            let v = try GradMode.with(enabled: true) { try policy.value(xv).sum() }
            guard let g = try grad([v], [xv]).first ?? nil else { throw RLError("the critic's value does not depend on the observation") }
            x = try GradMode.noGrad { try project(xv.detach() - stepEps * g.sign(), s0) }
        }
        return x
    }
}

/// How far the policy's action distribution at ŝ is from a fixed one: Box
/// policies Σ((μ(ŝ) − μ₀)/σ)², Discrete ones KL(π₀ ‖ π(ŝ)). Per row.
enum ActionChange {
    case gaussian(mean: Tensor, stdev: Tensor)
    case categorical(logProbs: Tensor)

    /// The reference at s (no graph); `normalizeStdev` divides σ by its mean (MAD's attack).
    static func at(_ s: Tensor, policy: ActorCritic, normalizeStdev: Bool) throws -> ActionChange {
        try GradMode.noGrad {
            switch try policy.distribution(s) {
            case .normal(let mean, let logStd):
                var sd = try logStd.exp()
                if normalizeStdev { sd = try sd / sd.mean() }
                return .gaussian(mean: mean.detach(), stdev: sd.detach())
            case .categorical(let logits):
                return .categorical(logProbs: try logits.softmax(dim: 1, log: true).detach())
            }
        }
    }

    /// `liveStdev`: divide by the policy's current σ (in the graph) instead of the reference's.
    func distance(_ x: Tensor, policy: ActorCritic, liveStdev: Bool = false) throws -> Tensor {
        switch (self, try policy.distribution(x)) {
        case (.gaussian(let m0, let sd), .normal(let m, let logStd)):
            return try ((m - m0) / (liveStdev ? logStd.exp() : sd)).square().sum(dim: 1)
        case (.categorical(let lp0), .categorical(let logits)):
            let lp = try logits.softmax(dim: 1, log: true)
            return try (lp0.exp() * (lp0 - lp)).sum(dim: 1)
        default: throw RLError("the policy's distribution changed kind")
        }
    }
}

/// Stochastic gradient Langevin ascent of the action change inside the
/// ε-ball, as the SA-PPO code runs it (`get_state_kl_bound_sgld` with
/// β = 1e-5 for the regularizer, `apply_attack` "action" with β = 1 for the
/// MAD attack): ŝ₀ = s + sign(N(0, 2·step·β))·step, then `steps` times
/// ŝ ← clip(ŝ + sign(∇ + √(2·step·β)/(i+2)·N(0, 1))·step).
func sgldActionChange(_ s: Tensor, policy: ActorCritic, reference: ActionChange, eps: Double, steps: Int,
                      beta: Double, generator: Generator, trace: ((Double) -> Void)? = nil) throws -> Tensor {
    let s0 = s.detach()
    let step = eps / Double(steps)
    var x = try GradMode.noGrad { try s0 + Tensor.randn(s0.shape, generator: generator).sign() * step }
    for i in 0..<steps {
        let xv = try x.detach().requiresGrad_()
        let d = try GradMode.with(enabled: true) { try reference.distance(xv, policy: policy).sum() }
        trace?(try d.double())
        guard let g = try grad([d], [xv], allowUnused: true).first ?? nil else { return s0 }
        let noise = (2 * step * beta).squareRoot() / Double(i + 2)
        x = try GradMode.noGrad {
            let update = try (g + noise * Tensor.randn(s0.shape, generator: generator)).sign() * step
            return try (xv.detach() + update).maximum(s0 - eps).minimum(s0 + eps)
        }
    }
    if let trace { trace(try GradMode.noGrad { try reference.distance(x, policy: policy).sum().double() }) }
    return x
}

/// `mad`, maximal action difference: SGLD ascent (β = 1) of
/// Σ((μ(ŝ) − μ(s))/σ̄)², σ̄ = σ / mean(σ); KL(π(s) ‖ π(ŝ)) for Discrete policies.
public struct MADAttack: ObservationAttack {
    public let eps: Double, steps: Int, beta: Double
    public init(eps: Double, steps: Int = 10, beta: Double = 1) throws {
        try StateAttackError.check(eps, steps)
        self.eps = eps; self.steps = steps; self.beta = beta
    }
    public func perturb(_ s: Tensor, policy: ActorCritic, generator: Generator) throws -> Tensor {
        let ref = try ActionChange.at(s, policy: policy, normalizeStdev: true)
        return try sgldActionChange(s, policy: policy, reference: ref, eps: eps, steps: steps, beta: beta, generator: generator)
    }
}

/// SA-PPO's regularizer: the mean over the batch of
/// max_{ŝ ∈ B_ε(s)} ‖(μ(ŝ) − μ(s))/σ‖² (KL for Discrete), the inner max by
/// SGLD (β = 1e-5) and the outer value differentiable in the policy's
/// parameters through μ(ŝ) — μ(s) held fixed, σ too when `detachStdev`
/// (the code's ROBUST_PPO_DETACH_STDEV; PROTECTED's configs leave it off, so
/// the regularizer also acts on log σ). Zero when ε = 0.
public func stateAdversarialRegularizer(_ s: Tensor, policy: ActorCritic, eps: Double, steps: Int = 2,
                                        detachStdev: Bool = false, generator: Generator) throws -> Tensor {
    guard eps > 0 else { return try Tensor.zeros([]) }
    let ref = try ActionChange.at(s, policy: policy, normalizeStdev: false)
    let x = try sgldActionChange(s, policy: policy, reference: ref, eps: eps, steps: steps, beta: 1e-5, generator: generator)
    return try ref.distance(x.detach(), policy: policy, liveStdev: !detachStdev).mean()
}
