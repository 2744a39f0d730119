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
            try Interrupt.check()
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

/// PA-AD's actor step (Sun et al. 2022; PROTECTED's `perturb_obs_fgsm`):
/// given a direction d in the victim's action space, one FGSM step from a
/// uniform start within ±ε/steps toward moving the victim's mean action
/// along d — ascending cos(μ(x) − μ(s), d) + ‖μ(x) − μ(s)‖ — to the corner
/// s + ε·sign(∇) of the ball. (The code steps along the gradient of the
/// negated objective; a learned director absorbs that sign, so parry takes
/// the ascent the paper describes.)
func paadPerturb(_ s: Tensor, direction: Tensor, victim: ActorCritic, eps: Double, steps: Int, generator: Generator) throws -> Tensor {
    guard case .box = victim.actionSpace else { throw RLError("PA-AD steers Box actions; the victim has \(victim.actionSpace)") }
    let s0 = s.detach()
    let mu0 = try GradMode.noGrad { () -> Tensor in
        guard case .normal(let m, _) = try victim.distribution(s0) else { throw RLError("PA-AD needs a Gaussian victim") }
        return m.detach()
    }
    let noise = try (Tensor.rand(s0.shape, generator: generator) * 2 - 1) * (eps / Double(steps))
    let x = try (s0 + noise).detach().requiresGrad_()
    let objective = try GradMode.with(enabled: true) { () -> Tensor in
        guard case .normal(let m, _) = try victim.distribution(x) else { throw RLError("PA-AD needs a Gaussian victim") }
        let diff = try m - mu0
        // ‖diff‖ with a floor under the root: its gradient at diff = 0 would be NaN
        return try (F.cosineSimilarity(diff, direction, dim: 1) + (diff.square().sum(dim: 1) + 1e-12).sqrt()).sum()
    }
    guard let g = try grad([objective], [x], allowUnused: true).first ?? nil else { return s0 }
    return try GradMode.noGrad { try s0 + eps * g.sign() }
}

/// The environment a learned adversary trains in: it observes what the
/// victim would see (the victim's normalized observation) and acts with
/// a ∈ [−1, 1]^m — SA-RL (`.state`, m = observation size): the victim sees
/// ŝ = s + ε·clip(a, −1, 1); PA-AD (`.action`, m = action size): a is a
/// direction in the victim's action space and ŝ comes from `paadPerturb`.
/// The victim acts deterministically by default; the adversary's reward is
/// `rewardSign`·r (−1: the usual adversary; PROTECTED's merged rollouts use
/// +1 for the new victim and −1 for the best member). `victim` can be
/// swapped between episodes.
public final class AdversaryEnv: Environment {
    public enum Mode { case state, action }
    public let base: Environment, eps: Double, deterministic: Bool, mode: Mode, steps: Int
    public var victim: ActorCritic
    public var rewardSign: Double
    public var id: String { "\(mode == .state ? "SA-RL" : "PA-AD") adversary on \(base.id)" }
    public let observationSpace: Space, actionSpace: Space
    private var last: [Float] = []
    private let generator: Generator

    public init(base: Environment, victim: ActorCritic, eps: Double, mode: Mode = .state, deterministic: Bool = true,
                rewardSign: Double = -1, steps: Int = 10, seed: UInt64 = 1) throws {
        try StateAttackError.check(eps, steps)
        guard base.observationSpace == victim.observationSpace, base.actionSpace == victim.actionSpace else {
            throw RLError("the victim's spaces differ from the env's")
        }
        guard !base.observationSpace.isDiscrete else { throw RLError("learned attacks perturb Box observations, got \(base.observationSpace)") }
        if mode == .action, base.actionSpace.isDiscrete { throw RLError("PA-AD steers Box actions; the env has \(base.actionSpace)") }
        self.base = base; self.victim = victim; self.eps = eps; self.deterministic = deterministic
        self.mode = mode; self.rewardSign = rewardSign; self.steps = steps
        let d = base.observationSpace.flatCount
        observationSpace = .box(-.infinity, .infinity, shape: [d])
        actionSpace = .box(-1, 1, shape: [mode == .state ? d : base.actionSpace.flatCount])
        generator = Generator(seed: seed)
    }

    private func seen(_ raw: [Float]) throws -> [Float] { try victim.prepare(raw, rows: 1).contiguous().floats() }

    public func reset(seed: UInt64?) throws -> [Float] {
        last = try base.reset(seed: seed)
        return try seen(last)
    }

    public func step(_ action: [Float]) throws -> Transition {
        let s = try victim.prepare(last, rows: 1)
        let a = try Tensor(action.map { Swift.min(Swift.max($0, -1), 1) }, shape: [1, action.count])
        let perturbed = mode == .state ? try s + a * eps
            : try paadPerturb(s, direction: a, victim: victim, eps: eps, steps: steps, generator: generator)
        var t = try base.step(try victim.actions(for: perturbed, deterministic: deterministic, generator: generator))
        last = t.observation
        t.observation = try seen(last)
        t.reward = rewardSign * t.reward
        return t
    }
}

/// A learned attack with the adversary's mean action (its own observation
/// statistics applied): SA-RL ŝ = s + ε·clip(μ_ν(s), −1, 1); PA-AD the
/// actor's FGSM step toward the director's direction μ_ν(s).
public struct LearnedAttack: ObservationAttack {
    public let eps: Double, adversary: ActorCritic, mode: AdversaryEnv.Mode, steps: Int
    public init(eps: Double, adversary: ActorCritic, mode: AdversaryEnv.Mode = .state, steps: Int = 10) throws {
        try StateAttackError.check(eps, steps)
        guard case .box = adversary.actionSpace else { throw RLError("the adversary must have a Box action space") }
        self.eps = eps; self.adversary = adversary; self.mode = mode; self.steps = steps
    }
    public func perturb(_ s: Tensor, policy: ActorCritic, generator: Generator) throws -> Tensor {
        let want = mode == .state ? s.shape.last : policy.actionSpace.flatCount
        guard s.ndim == 2, adversary.observationSpace.flatCount == s.shape[1], adversary.actionSpace.flatCount == want else {
            throw RLError("the adversary was trained for another victim (\(adversary.observationSpace.flatCount) observations, \(adversary.actionSpace.flatCount) actions), got observations of shape \(s.shape)")
        }
        let a = try GradMode.noGrad { try adversary.act(try s.contiguous().floats(), rows: s.shape[0], deterministic: true, generator: generator) }
        let dir = try Tensor(a, shape: [s.shape[0], adversary.actionSpace.flatCount]).clamp(-1, 1)
        if mode == .action { return try paadPerturb(s, direction: dir, victim: policy, eps: eps, steps: steps, generator: generator) }
        return try GradMode.noGrad { try project(s + dir * eps, s) }
    }
}
