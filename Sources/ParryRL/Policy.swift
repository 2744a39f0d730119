import Foundation
import ParryCore
import ParryNN

/// The action distribution of a policy for a batch of observations.
public enum PolicyDistribution {
    /// Discrete actions: `logits` is B×n; actions are 0-based int64 indices.
    case categorical(logits: Tensor)
    /// Box actions: a diagonal Gaussian, `mean` B×k, `logStd` broadcastable to it.
    case normal(mean: Tensor, logStd: Tensor)

    static let halfLog2Pi = 0.5 * Foundation.log(2 * Double.pi)

    /// log π(a | s) per row (summed over action dimensions), differentiable.
    public func logProb(_ actions: Tensor) throws -> Tensor {
        switch self {
        case .categorical(let logits):
            return try logits.softmax(dim: 1, log: true).gather(1, actions.reshape([-1, 1])).reshape([-1])
        case .normal(let mean, let logStd):
            let variance = try (2 * logStd).exp()
            return try (-(actions - mean).square() / (2 * variance) - logStd - PolicyDistribution.halfLog2Pi).sum(dim: 1)
        }
    }

    /// Entropy per row.
    public func entropy() throws -> Tensor {
        switch self {
        case .categorical(let logits):
            let logp = try logits.softmax(dim: 1, log: true)
            return try -(logp.exp() * logp).sum(dim: 1)
        case .normal(let mean, let logStd):
            return try (logStd.expand(mean.shape) + 0.5 + PolicyDistribution.halfLog2Pi).sum(dim: 1)
        }
    }

    /// A draw per row (no graph): int64 indices B, or B×k floats.
    public func sample(_ g: Generator) throws -> Tensor {
        try GradMode.noGrad {
            switch self {
            case .categorical(let logits):
                let p = try logits.softmax(dim: 1).contiguous().floats()
                let n = logits.shape[1]
                let idx: [Int64] = (0..<logits.shape[0]).map { r in
                    let u = g.uniform()
                    var acc = 0.0
                    for j in 0..<n {
                        acc += Double(p[r * n + j])
                        if u < acc { return Int64(j) }
                    }
                    return Int64((0..<n).last { p[r * n + $0] > 0 } ?? n - 1)  // rounding left u above the total
                }
                return try Tensor(idx, shape: [idx.count])
            case .normal(let mean, let logStd):
                return try mean + logStd.exp() * Tensor.randn(mean.shape, generator: g)
            }
        }
    }

    /// The most likely action (argmax, or the mean).
    public func mode() throws -> Tensor {
        try GradMode.noGrad {
            switch self {
            case .categorical(let logits): return try logits.argmax(dim: 1)
            case .normal(let mean, _): return mean.detach()
            }
        }
    }
}

/// An actor-critic policy: the actor maps (normalized) observations to logits
/// or Gaussian means, the critic to one value per row, `logStd` (1×k, a
/// parameter) is the state-independent log standard deviation of Box
/// policies. `normalizer` (optional) holds the observation statistics the
/// policy was trained with; `act` applies it, frozen.
public final class ActorCritic {
    public let actor: Module, critic: Module
    public let logStd: Tensor?
    public let observationSpace: Space, actionSpace: Space
    public var normalizer: ObservationNormalizer?

    public init(actor: Module, critic: Module, logStd: Tensor?, observationSpace: Space, actionSpace: Space,
                normalizer: ObservationNormalizer? = nil) throws {
        if case .box(let lo, _, _) = actionSpace {
            guard let logStd, logStd.numel == lo.count else {
                throw RLError("a Box action space of \(lo.count) dimensions needs log_std with \(lo.count) elements, got \(logStd.map { "\($0.numel)" } ?? "none")")
            }
        }
        self.actor = actor; self.critic = critic; self.logStd = logStd
        self.observationSpace = observationSpace; self.actionSpace = actionSpace; self.normalizer = normalizer
    }

    /// CleanRL's networks: separate MLPs (64-64 tanh by default), orthogonal
    /// init with gain √2 in the hidden layers, 0.01 on the actor's output and
    /// 1 on the critic's, zero biases; log-std starts at 0.
    public static func mlp(observationSpace: Space, actionSpace: Space, hidden: [Int] = [64, 64],
                           activation: Activation.Kind = .Tanh, normalizer: ObservationNormalizer? = nil) throws -> ActorCritic {
        if observationSpace.isDiscrete { throw RLError("the MLP policy needs a Box observation space, got \(observationSpace)") }
        let d = observationSpace.flatCount
        let outputs: Int
        switch actionSpace {
        case .discrete(let n, _): outputs = n
        case .box(let lo, _, _): outputs = lo.count
        }
        func net(_ out: Int, gain: Double) throws -> Module {
            var layers: [Module] = []
            var width = d
            for h in hidden {
                layers.append(try orthogonalLinear(width, h, gain: 2.0.squareRoot()))
                layers.append(Activation(activation))
                width = h
            }
            layers.append(try orthogonalLinear(width, out, gain: gain))
            return Sequential(layers)
        }
        let logStd: Tensor? = actionSpace.isDiscrete ? nil : try Tensor.zeros([1, outputs]).requiresGrad_()
        return try ActorCritic(actor: net(outputs, gain: 0.01), critic: net(1, gain: 1), logStd: logStd,
                               observationSpace: observationSpace, actionSpace: actionSpace, normalizer: normalizer)
    }

    static func orthogonalLinear(_ i: Int, _ o: Int, gain: Double) throws -> Linear {
        let l = try Linear(i, o)
        if let w = l.parameter("weight") { try Init.orthogonal_(w, gain: gain) }
        if let b = l.parameter("bias") { try Init.constant_(b, 0) }
        return l
    }

    public var parameters: [Tensor] { actor.allParameters() + critic.allParameters() + (logStd.map { [$0] } ?? []) }

    public func distribution(_ obs: Tensor) throws -> PolicyDistribution {
        let out = try actor(obs)
        guard out.ndim == 2, out.shape[0] == obs.shape[0] else {
            throw RLError("the actor must return a batch×\(actionSpace.isDiscrete ? "actions" : "action-size") tensor, got shape \(out.shape) for \(obs.shape[0]) observations")
        }
        switch actionSpace {
        case .discrete(let n, _):
            guard out.shape[1] == n else { throw RLError("the actor returned \(out.shape[1]) logits, the action space is \(actionSpace)") }
            return .categorical(logits: out)
        case .box(let lo, _, _):
            guard out.shape[1] == lo.count, let logStd else { throw RLError("the actor returned \(out.shape[1]) means, the action space is \(actionSpace)") }
            return .normal(mean: out, logStd: try logStd.reshape([1, lo.count]))
        }
    }

    /// V(s) per row.
    public func value(_ obs: Tensor) throws -> Tensor {
        let v = try critic(obs)
        guard v.numel == obs.shape[0] else { throw RLError("the critic must return one value per observation, got shape \(v.shape) for \(obs.shape[0])") }
        return try v.reshape([-1])
    }

    /// Raw observations (rows × obs size) → the tensor the networks see.
    public func prepare(_ raw: [Float], rows: Int, update: Bool = false) throws -> Tensor {
        var obs = raw
        normalizer?.apply(&obs, rows: rows, update: update)
        return try Tensor(obs, shape: [rows, observationSpace.flatCount])
    }

    /// Actions for raw observations, as flat env actions (0-based indices for
    /// Discrete), without recording a graph. An `attack` perturbs what the
    /// networks see (the normalized observation), not the env's state.
    public func act(_ raw: [Float], rows: Int, deterministic: Bool, generator: Generator,
                    attack: ObservationAttack? = nil) throws -> [Float] {
        var obs = try prepare(raw, rows: rows)
        if let attack { obs = try attack.perturb(obs, policy: self, generator: generator) }
        return try actions(for: obs, deterministic: deterministic, generator: generator)
    }

    /// Actions for observations as the networks see them (already normalized
    /// or perturbed), as flat env actions, without recording a graph.
    public func actions(for obs: Tensor, deterministic: Bool, generator: Generator) throws -> [Float] {
        try GradMode.noGrad {
            let dist = try distribution(obs)
            let a = deterministic ? try dist.mode() : try dist.sample(generator)
            if a.dtype == .int64 { return a.int64s().map { Float($0) } }
            return try a.contiguous().floats()
        }
    }
}

extension ActorCritic {
    /// An independent copy: networks (Swift-defined ones; a Lua-defined
    /// network needs its Lua object, so it is refused), log-std and the
    /// observation statistics.
    public func copy() throws -> ActorCritic {
        for m in [actor, critic] where m.namedModules().contains(where: { $0.module is ClosureModule }) {
            throw RLError("cannot copy a policy whose networks are defined in Lua (use parry.rl.Policy's MLP networks)")
        }
        let n = normalizer.map { ObservationNormalizer(stats: $0.stats.copy(), clip: $0.clip, epsilon: $0.epsilon) }
        let s = try logStd.map { t -> Tensor in
            let c = try t.detach().clone()
            return t.requiresGrad ? try c.requiresGrad_() : c
        }
        return try ActorCritic(actor: try actor.clone(), critic: try critic.clone(), logStd: s,
                               observationSpace: observationSpace, actionSpace: actionSpace, normalizer: n)
    }
}
