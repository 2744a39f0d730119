import Foundation
import ParryCore

/// EXP3 as PROTECTED's policy_gradients/exp3.py runs it: η = lr·√(ln K/(K·T)),
/// γ = η/2, arms drawn with p = w/Σw, and after a reward r on arm i
/// w_i ← w_i·exp(η·(r/normalizer)/(p_i + γ)). The weights are kept as
/// logarithms (the code's overflow after a few hundred rounds of large
/// rewards); the probabilities are the same.
public struct EXP3 {
    public let arms: Int, rounds: Int
    public let eta: Double, gamma: Double, normalizer: Double
    public private(set) var logWeights: [Double]

    public init(arms: Int, rounds: Int, normalizer: Double, lr: Double = 2.0) throws {
        guard arms > 0 else { throw RLError("the policy class is empty") }
        guard rounds > 0 else { throw RLError("rounds must be positive, got \(rounds)") }
        guard normalizer > 0, normalizer.isFinite else { throw RLError("normalizer must be a positive number, got \(normalizer)") }
        guard lr > 0, lr.isFinite else { throw RLError("lr must be a positive number, got \(lr)") }
        self.arms = arms; self.rounds = rounds; self.normalizer = normalizer
        eta = lr * (Foundation.log(Double(arms)) / Double(arms * rounds)).squareRoot()
        gamma = eta / 2
        logWeights = Array(repeating: 0, count: arms)
    }

    public var probabilities: [Double] {
        let m = logWeights.max() ?? 0
        let e = logWeights.map { Foundation.exp($0 - m) }
        let s = e.reduce(0, +)
        return e.map { $0 / s }
    }

    public func sample(_ g: Generator) -> Int {
        let p = probabilities, u = g.uniform()
        var acc = 0.0
        for (i, pi) in p.enumerated() { acc += pi; if u < acc { return i } }
        return arms - 1
    }

    public mutating func update(reward r: Double, arm i: Int) {
        let p = probabilities[i]
        logWeights[i] += eta * (r / normalizer) / (p + gamma)
    }
}

/// Test-time adaptation over a policy class (PROTECTED's dynamic_attack.py):
/// each round EXP3 picks a member, which plays one episode (deterministic)
/// against that round's attacker; the bandit learns from the return.
public enum Adaptation {
    public struct Round {
        public var arm = 0, reward = 0.0
        public var probabilities: [Double] = []
        /// Σ over rounds so far of (best fixed member's expected return − the chosen member's), both estimated.
        public var regret = 0.0
        public var condition = 0, round = 0
    }
    public struct Result {
        public var rounds: [Round] = []
        /// expected[c][i]: member i's mean return under condition c (estimated before the rounds).
        public var expected: [[Double]] = []
        public var bestFixed = 0
    }

    /// `conditions[c]` is an attack (nil: none); `schedule[t]` the condition of
    /// round t. `expected` is estimated with `evalEpisodes` episodes per
    /// member and condition; regret is measured against the member whose
    /// total expected return over the schedule is largest.
    /// The bandit learns from (r − offset)/normalizer, as exp3.py from
    /// r/normalizer (there offset 0 and normalizer 6000 for Hopper, whose
    /// returns are positive). With `normalizer` nil, offset and normalizer map
    /// the range of the expected returns onto [0, 1] and each reward is
    /// clipped to [0, 1] — EXP3's reward range; negative returns (Pendulum)
    /// otherwise make the arm just pulled the least likely.
    public static func run(policies: [ActorCritic], env: Environment, conditions: [ObservationAttack?], schedule: [Int],
                           normalizer: Double?, offset: Double? = nil, lr: Double, evalEpisodes: Int, seed: UInt64,
                           onRound: ((Round) throws -> Void)? = nil) throws -> Result {
        guard !policies.isEmpty else { throw RLError("the policy class is empty") }
        guard !schedule.isEmpty else { throw RLError("rounds must be positive") }
        guard evalEpisodes > 0 else { throw RLError("eval_episodes must be positive, got \(evalEpisodes)") }
        for c in schedule where !conditions.indices.contains(c) { throw RLError("schedule names condition \(c + 1) of \(conditions.count)") }
        let g = Generator(seed: seed)
        var result = Result()
        // Expected returns per condition and member (for the regret only).
        for (ci, attack) in conditions.enumerated() {
            result.expected.append(try policies.enumerated().map { (i, p) in
                try evaluate(env: env, episodes: evalEpisodes, seed: seed &+ UInt64(1000 * ci + i)) { obs in
                    try p.act(obs, rows: 1, deterministic: true, generator: g, attack: attack)
                }.mean
            })
        }
        let all = result.expected.flatMap { $0 }
        let lo = all.min() ?? 0, hi = all.max() ?? 1
        let auto = normalizer == nil
        let shift = auto ? lo : (offset ?? 0)
        let scale = normalizer ?? Swift.max(hi - lo, 1e-9)
        var bandit = try EXP3(arms: policies.count, rounds: schedule.count, normalizer: 1, lr: lr)
        let totals = (0..<policies.count).map { i in schedule.reduce(0.0) { $0 + result.expected[$1][i] } }
        result.bestFixed = totals.indices.max { totals[$0] < totals[$1] } ?? 0
        var regret = 0.0
        _ = try env.reset(seed: seed &+ 77)
        for (t, c) in schedule.enumerated() {
            try Interrupt.check()
            var r = Round()
            r.condition = c
            r.probabilities = bandit.probabilities
            r.arm = bandit.sample(g)
            let ev = try evaluate(env: env, episodes: 1, seed: nil) { obs in
                try policies[r.arm].act(obs, rows: 1, deterministic: true, generator: g, attack: conditions[c])
            }
            r.reward = ev.mean
            let scaled = (r.reward - shift) / scale
            bandit.update(reward: auto ? Swift.min(Swift.max(scaled, 0), 1) : scaled, arm: r.arm)
            regret += result.expected[c][result.bestFixed] - result.expected[c][r.arm]
            r.regret = regret
            r.round = t + 1
            result.rounds.append(r)
            try onRound?(r)
        }
        return result
    }
}
