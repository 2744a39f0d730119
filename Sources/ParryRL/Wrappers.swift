import Foundation
import ParryCore

/// Running mean and variance over batches (Chan et al.'s parallel update, as
/// Gymnasium's and Stable-Baselines3's `RunningMeanStd`): mean 0, var 1 and
/// count 1e-4 before any data, population variance of each batch.
public final class RunningMeanStd {
    public var mean: [Double]
    public var variance: [Double]
    public var count: Double
    public init(size: Int, epsilon: Double = 1e-4) {
        mean = Array(repeating: 0, count: size); variance = Array(repeating: 1, count: size); count = epsilon
    }
    public var size: Int { mean.count }

    /// Adds `rows` rows of `size` values each (row-major).
    public func update(_ batch: [Float], rows: Int) {
        guard rows > 0 else { return }
        let d = size
        var bMean = Array(repeating: 0.0, count: d), bVar = Array(repeating: 0.0, count: d)
        for r in 0..<rows { for j in 0..<d { bMean[j] += Double(batch[r * d + j]) } }
        for j in 0..<d { bMean[j] /= Double(rows) }
        for r in 0..<rows { for j in 0..<d { let e = Double(batch[r * d + j]) - bMean[j]; bVar[j] += e * e } }
        for j in 0..<d { bVar[j] /= Double(rows) }
        update(mean: bMean, variance: bVar, count: Double(rows))
    }

    public func update(mean bMean: [Double], variance bVar: [Double], count bCount: Double) {
        let total = count + bCount
        for j in 0..<size {
            let delta = bMean[j] - mean[j]
            let m2 = variance[j] * count + bVar[j] * bCount + delta * delta * count * bCount / total
            mean[j] += delta * bCount / total
            variance[j] = m2 / total
        }
        count = total
    }

    public func copy() -> RunningMeanStd {
        let c = RunningMeanStd(size: size); c.mean = mean; c.variance = variance; c.count = count
        return c
    }
}

/// Observation normalization: (o − mean) / √(var + ε), clipped to ±clip;
/// the statistics update with every observation batch while `updating`.
public final class ObservationNormalizer {
    public let stats: RunningMeanStd
    public var clip: Double, epsilon: Double
    public var updating = true
    public init(size: Int, clip: Double = 10, epsilon: Double = 1e-8) {
        stats = RunningMeanStd(size: size); self.clip = clip; self.epsilon = epsilon
    }
    public init(stats: RunningMeanStd, clip: Double = 10, epsilon: Double = 1e-8) { self.stats = stats; self.clip = clip; self.epsilon = epsilon }

    /// Normalizes `rows` observations in place, updating first when `update`.
    public func apply(_ obs: inout [Float], rows: Int, update: Bool) {
        if update && updating { stats.update(obs, rows: rows) }
        let d = stats.size
        let scale = stats.variance.map { 1 / ($0 + epsilon).squareRoot() }
        for r in 0..<rows {
            for j in 0..<d {
                let v = (Double(obs[r * d + j]) - stats.mean[j]) * scale[j]
                obs[r * d + j] = Float(Swift.min(Swift.max(v, -clip), clip))
            }
        }
    }
}

/// What a wrapper changes, written once for a batch of `numEnvs` envs; a
/// single env is a batch of one.
public protocol EnvTransform: AnyObject {
    func attach(numEnvs: Int, observationSpace: Space, actionSpace: Space, autoreset: AutoresetMode) throws
    func actions(_ a: inout [Float], space: Space)
    func reset(_ obs: inout [Float], rows: Int)
    func step(_ s: inout VectorStep)
}
extension EnvTransform {
    public func actions(_ a: inout [Float], space: Space) {}
    public func reset(_ obs: inout [Float], rows: Int) {}
}

/// Gymnasium's `NormalizeObservation` followed by CleanRL's clip to ±10.
/// Episode-final observations (same-step autoreset) are normalized with the
/// same statistics, without updating them.
public final class NormalizeObservation: EnvTransform {
    /// The statistics; pass one in to share it (PPO's policy owns its own).
    public private(set) var normalizer: ObservationNormalizer
    private let given: Bool
    public init(clip: Double = 10, epsilon: Double = 1e-8, normalizer: ObservationNormalizer? = nil) {
        given = normalizer != nil
        self.normalizer = normalizer ?? ObservationNormalizer(size: 0, clip: clip, epsilon: epsilon)
    }
    public func attach(numEnvs: Int, observationSpace: Space, actionSpace: Space, autoreset: AutoresetMode) throws {
        if observationSpace.isDiscrete { throw RLError("NormalizeObservation needs a Box observation space, got \(observationSpace)") }
        let n = observationSpace.flatCount
        if given {
            guard normalizer.stats.size == n else { throw RLError("the normalizer has \(normalizer.stats.size) statistics, the observations \(n) values") }
        } else {
            normalizer = ObservationNormalizer(size: n, clip: normalizer.clip, epsilon: normalizer.epsilon)
        }
    }
    public func reset(_ obs: inout [Float], rows: Int) { normalizer.apply(&obs, rows: rows, update: true) }
    public func step(_ s: inout VectorStep) {
        normalizer.apply(&s.observations, rows: s.rewards.count, update: true)
        for (i, var o) in s.finalObservations { normalizer.apply(&o, rows: 1, update: false); s.finalObservations[i] = o }
    }
}

/// Gymnasium's `NormalizeReward` (the reward divided by the running standard
/// deviation of the discounted return, autoreset-aware) followed by CleanRL's
/// clip to ±10.
public final class NormalizeReward: EnvTransform {
    public let gamma: Double, epsilon: Double, clip: Double
    public let returnStats = RunningMeanStd(size: 1)
    public var updating = true
    private var accumulated: [Double] = [], prevDone: [Bool] = []
    private var mode = AutoresetMode.nextStep
    public init(gamma: Double = 0.99, clip: Double = 10, epsilon: Double = 1e-8) throws {
        guard (0...1).contains(gamma) else { throw RLError("gamma must be in [0, 1], got \(gamma)") }
        guard epsilon > 0 else { throw RLError("epsilon must be positive, got \(epsilon)") }
        self.gamma = gamma; self.clip = clip; self.epsilon = epsilon
    }
    public func attach(numEnvs: Int, observationSpace: Space, actionSpace: Space, autoreset: AutoresetMode) throws {
        accumulated = Array(repeating: 0, count: numEnvs); prevDone = Array(repeating: false, count: numEnvs); mode = autoreset
    }
    public func reset(_ obs: inout [Float], rows: Int) {
        for i in accumulated.indices { accumulated[i] = 0; prevDone[i] = false }
    }
    public func step(_ s: inout VectorStep) {
        var batch: [Float] = []
        for i in accumulated.indices where mode == .sameStep || !prevDone[i] {
            accumulated[i] = accumulated[i] * gamma * (s.terminated[i] ? 0 : 1) + s.rewards[i]
            batch.append(Float(accumulated[i]))
        }
        if updating { returnStats.update(batch, rows: batch.count) }
        let scale = 1 / (returnStats.variance[0] + epsilon).squareRoot()
        for i in accumulated.indices {
            prevDone[i] = s.terminated[i] || s.truncated[i]
            if mode == .sameStep && prevDone[i] { accumulated[i] = 0 }
            s.rewards[i] = Swift.min(Swift.max(s.rewards[i] * scale, -clip), clip)
        }
    }
}

/// Clips Box actions to the space's bounds before the env sees them.
public final class ClipAction: EnvTransform {
    public init() {}
    public func attach(numEnvs: Int, observationSpace: Space, actionSpace: Space, autoreset: AutoresetMode) throws {
        if actionSpace.isDiscrete { throw RLError("ClipAction needs a Box action space, got \(actionSpace)") }
    }
    public func actions(_ a: inout [Float], space: Space) {
        guard case .box(let lo, let hi, _) = space else { return }
        let k = lo.count
        for i in a.indices { a[i] = Swift.min(Swift.max(a[i], lo[i % k]), hi[i % k]) }
    }
    public func step(_ s: inout VectorStep) {}
}

/// Gymnasium's `RecordEpisodeStatistics`: when an episode ends, its env's
/// info gets `episode_r` (return), `episode_l` (length) and `episode_t`
/// (seconds since it began).
public final class RecordEpisodeStatistics: EnvTransform {
    private var returns: [Double] = [], lengths: [Int] = [], starts: [Date] = []
    /// Every finished episode's (return, length), in order.
    public private(set) var episodes: [(ret: Double, length: Int)] = []
    public init() {}
    public func attach(numEnvs: Int, observationSpace: Space, actionSpace: Space, autoreset: AutoresetMode) throws {
        returns = Array(repeating: 0, count: numEnvs); lengths = Array(repeating: 0, count: numEnvs)
        starts = Array(repeating: Date(), count: numEnvs)
    }
    public func reset(_ obs: inout [Float], rows: Int) {
        for i in returns.indices { returns[i] = 0; lengths[i] = 0; starts[i] = Date() }
    }
    public func step(_ s: inout VectorStep) {
        for i in returns.indices {
            if s.wasReset[i] { returns[i] = 0; lengths[i] = 0; starts[i] = Date(); continue }
            returns[i] += s.rewards[i]; lengths[i] += 1
            if s.terminated[i] || s.truncated[i] {
                s.infos[i]["episode_r"] = returns[i]
                s.infos[i]["episode_l"] = Double(lengths[i])
                s.infos[i]["episode_t"] = Date().timeIntervalSince(starts[i])
                episodes.append((returns[i], lengths[i]))
                returns[i] = 0; lengths[i] = 0; starts[i] = Date()
            }
        }
    }
}

/// A vector env with one transform applied.
public final class VectorWrapper: VectorEnvironment {
    public let inner: VectorEnvironment
    public let transform: EnvTransform
    public init(_ inner: VectorEnvironment, _ transform: EnvTransform) throws {
        self.inner = inner; self.transform = transform
        try transform.attach(numEnvs: inner.numEnvs, observationSpace: inner.singleObservationSpace,
                             actionSpace: inner.singleActionSpace, autoreset: inner.autoresetMode)
    }
    public var numEnvs: Int { inner.numEnvs }
    public var singleObservationSpace: Space { inner.singleObservationSpace }
    public var singleActionSpace: Space { inner.singleActionSpace }
    public var autoresetMode: AutoresetMode { inner.autoresetMode }
    public func reset(seed: UInt64?) throws -> [Float] {
        var obs = try inner.reset(seed: seed)
        transform.reset(&obs, rows: numEnvs)
        return obs
    }
    public func step(_ actions: [Float]) throws -> VectorStep {
        var a = actions
        transform.actions(&a, space: singleActionSpace)
        var s = try inner.step(a)
        transform.step(&s)
        return s
    }
}

/// A single env with one transform applied (a batch of one that never
/// autoresets: the script calls reset).
public final class TransformedEnv: EnvWrapper {
    public let transform: EnvTransform
    public init(_ inner: Environment, _ transform: EnvTransform) throws {
        self.transform = transform
        super.init(inner)
        try transform.attach(numEnvs: 1, observationSpace: inner.observationSpace, actionSpace: inner.actionSpace, autoreset: .sameStep)
    }
    public override func reset(seed: UInt64?) throws -> [Float] {
        var obs = try inner.reset(seed: seed)
        transform.reset(&obs, rows: 1)
        return obs
    }
    public override func step(_ action: [Float]) throws -> Transition {
        var a = action
        transform.actions(&a, space: actionSpace)
        let t = try inner.step(a)
        var s = VectorStep(observations: t.observation, rewards: [t.reward], terminated: [t.terminated], truncated: [t.truncated],
                           wasReset: [false], finalObservations: [:], infos: [t.info])
        transform.step(&s)
        return Transition(observation: s.observations, reward: s.rewards[0], terminated: t.terminated, truncated: t.truncated, info: s.infos[0])
    }
}
