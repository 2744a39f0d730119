import Foundation
import ParryCore
import ParryNN

/// The robust SARSA (RS) attack of Zhang et al. 2020 (SA-MDP), as the
/// ATLA_robust_RL code (`sarsa_steps`, `apply_attack` "sarsa") runs it: learn
/// Q(s, a) of the victim on-policy — the victim acting deterministically, a
/// smooth-L1 TD loss plus `reg` × the squared gap between Q and its interval
/// bounds over an ℓ∞ ball of radius ε_Q on the (s, a) input (IBP), ε_Q zero
/// for the first third of the iterations, ramped over the second, full in
/// the last; the learning rate constant for two thirds, then annealed to 0 —
/// and attack with PGD that lowers Q(s, μ(ŝ)). The code forms TD pairs from
/// neighbours inside a shuffled minibatch; parry pairs consecutive steps of
/// the rollout (our reading of the intent).
public enum RobustSarsa {
    public struct Config {
        public var iterations = 30, numSteps = 2048, epochs = 10, minibatches = 32
        public var lr = 3e-4, gamma = 0.99, eps = 0.02, reg = 0.1
        public var hidden = [64, 64]
        public var seed: UInt64 = 1
        public init() {}
    }

    /// Q trained for `victim` on `env`; returns the network and each iteration's last TD loss.
    public static func train(victim: ActorCritic, env: Environment, config c: Config) throws -> (q: Module, losses: [Double]) {
        guard case .box = victim.actionSpace else { throw RLError("robust SARSA learns Q(s, a) for Box actions; the victim has \(victim.actionSpace)") }
        guard c.iterations > 0, c.numSteps > 1, c.epochs > 0, c.minibatches > 0 else { throw RLError("iterations, num_steps (> 1), epochs and minibatches must be positive") }
        guard c.eps >= 0, c.reg >= 0, c.lr > 0 else { throw RLError("eps and reg must be non-negative and lr positive") }
        let d = victim.observationSpace.flatCount, k = victim.actionSpace.flatCount
        let g = Generator(seed: c.seed)
        let q: Module = try Generator.$current.withValue(Generator(seed: c.seed &+ 1)) {
            var layers: [Module] = []
            var width = d + k
            for h in c.hidden { layers += [try ActorCritic.orthogonalLinear(width, h, gain: 2.0.squareRoot()), Activation(.Tanh)]; width = h }
            layers.append(try ActorCritic.orthogonalLinear(width, 1, gain: 1))
            return Sequential(layers)
        }
        let optimizer = try Adam(q.allParameters(), lr: c.lr, eps: 1e-5)
        var losses: [Double] = []
        var raw = try env.reset(seed: c.seed)
        for it in 0..<c.iterations {
            try Interrupt.check()
            // learning rate: constant for 2/3 of the iterations, then linearly to 0
            let decay = Double(c.iterations) * 2 / 3
            let lr = Double(it) < decay ? c.lr : c.lr * (Double(c.iterations) - Double(it)) / (Double(c.iterations) - decay)
            try optimizer.setHyperparameter("lr", lr)
            let third = Double(c.iterations) / 3
            let epsQ = c.eps * Swift.min(1, Swift.max(0, (Double(it) - third) / Swift.max(third, 1)))
            // rollout with the deterministic victim
            var states: [Float] = [], actions: [Float] = [], rewards: [Double] = [], ends: [Bool] = []
            for _ in 0..<c.numSteps {
                let s = try victim.prepare(raw, rows: 1)
                let a = try victim.actions(for: s, deterministic: true, generator: g)
                states += try s.contiguous().floats(); actions += a
                let t = try env.step(a)
                rewards.append(t.reward); ends.append(t.done)
                raw = t.done ? try env.reset(seed: nil) : t.observation
            }
            var rows: [Float] = []
            rows.reserveCapacity(c.numSteps * (d + k))
            for i in 0..<c.numSteps {
                rows += states[i * d..<(i + 1) * d]
                rows += actions[i * k..<(i + 1) * k]
            }
            let x = try Tensor(rows, shape: [c.numSteps, d + k])
            let pairs = c.numSteps - 1
            let mb = Swift.max(1, pairs / c.minibatches)
            var last = 0.0
            for _ in 0..<c.epochs {
                let order = g.permutation(pairs)
                for start in stride(from: 0, to: pairs - mb + 1, by: mb) {
                    let idx = Array(order[start..<start + mb])
                    let xb = try x.indexSelect(0, idx)
                    let qv = try q(xb).reshape([-1])
                    let next = try GradMode.noGrad { try q(try x.indexSelect(0, idx.map { $0 + 1 })).reshape([-1]) }
                    let notDone = try Tensor(idx.map { ends[$0] ? Float(0) : 1 }, shape: [mb])
                    let r = try Tensor(idx.map { Float(rewards[$0]) }, shape: [mb])
                    let discounted: Tensor = try notDone * next * c.gamma
                    let target: Tensor = try r + discounted
                    let diff: Tensor = try (qv - target).abs()
                    let quad = try diff.clamp(max: 1)
                    var loss = try (0.5 * quad.square() + (diff - quad)).mean()   // smooth L1
                    last = try loss.double()
                    if c.reg > 0 && epsQ > 0 {
                        let b = try IntervalBounds.propagate(q, lo: xb - epsQ, hi: xb + epsQ)
                        let gap = try (b.hi.reshape([-1]) - qv).maximum(qv - b.lo.reshape([-1]))
                        loss = try loss + c.reg * gap.square().mean()
                    }
                    optimizer.zeroGrad()
                    try loss.backward()
                    try optimizer.step()
                }
            }
            losses.append(last)
        }
        return (q, losses)
    }
}

/// `rs`: PGD (start within ±ε/steps, `steps` signed steps of ε/steps) lowering
/// Q(s, μ(ŝ)) — and, with `actionRatio` > 0 (`rs+mad`), raising the action
/// change: minimizes ratio·(−mean((μ(ŝ) − μ(s))/σ̄)²) + (1 − ratio)·Q.
public struct RSAttack: ObservationAttack {
    public let eps: Double, steps: Int, q: Module, actionRatio: Double
    public init(eps: Double, q: Module, steps: Int = 10, actionRatio: Double = 0) throws {
        try StateAttackError.check(eps, steps)
        guard (0...1).contains(actionRatio) else { throw RLError("action_ratio must be in [0, 1], got \(actionRatio)") }
        self.eps = eps; self.steps = steps; self.q = q; self.actionRatio = actionRatio
    }
    public func perturb(_ s: Tensor, policy: ActorCritic, generator: Generator) throws -> Tensor {
        guard case .box = policy.actionSpace else { throw RLError("the rs attack needs a Box-action victim") }
        let s0 = s.detach(), step = eps / Double(steps)
        let ref = try ActionChange.at(s0, policy: policy, normalizeStdev: true)
        var x = try GradMode.noGrad { try s0 + (Tensor.rand(s0.shape, generator: generator) * 2 - 1) * step }
        for _ in 0..<steps {
            try Interrupt.check()
            let xv = try x.detach().requiresGrad_()
            let loss = try GradMode.with(enabled: true) { () -> Tensor in
                guard case .normal(let mean, _) = try policy.distribution(xv) else { throw RLError("the rs attack needs a Gaussian victim") }
                let value = try q(try cat([s0, mean], dim: 1)).sum()
                guard actionRatio > 0 else { return value }
                let change = try ref.distance(xv, policy: policy).sum()
                return try actionRatio * (-change) + (1 - actionRatio) * value
            }
            guard let g = try grad([loss], [xv], allowUnused: true).first ?? nil else { return s0 }
            x = try GradMode.noGrad { try project(xv.detach() - step * g.sign(), s0) }
        }
        return x
    }
}
