import Foundation
import ParryCore

/// PROTECTED (Liu et al., ICLR 2024, "Beyond worst-case attacks: robust RL
/// with adaptive defense via non-dominated policies"), as the official code
/// (umd-huang-lab/PROTECTED, policy_gradients/agent.py) builds the class:
/// it starts from a pretrained policy; each iteration warm-starts a new
/// victim π_j from the class's last member and trains it against a fresh
/// PA-AD adversary ν — victim updates on observations ν perturbs (with
/// SA-PPO's regularizer when its config sets one), adversary updates on a
/// merged rollout of π_j under ν (reward +r) and of the best-responding
/// member π* under ν (reward −r), so ν maximizes J(π_j, ν) − J(π*, ν) — the
/// code's `merge_saps`, which negates the rollout of the new victim (whose
/// adversary rewards are −r) and keeps the past victim's; π* is re-chosen
/// every `reselectEvery` updates as the member with the highest return
/// under ν. What the code lacks and parry adds: the gap
/// Ĵ(π_j, ν_j) − max_{π ∈ Π̃} Ĵ(π, ν_j) over `gapEpisodes` episodes after
/// each iteration, recorded, and a stop when it is ≤ `delta` (then π_j,
/// which no longer beats the class, is not added) or `iterations` members
/// have been added.
public enum Protected {
    public struct Config {
        public var iterations = 3
        public var updates = 50
        public var eps = 0.1
        public var victim = PPO.Config()
        public var adversary = PPO.Config()
        public var victimClip = true, adversaryClip = true
        public var normalizeRewards = true
        public var reselectEvery = 10, selectEpisodes = 3, gapEpisodes = 10
        public var paadSteps = 10
        public var delta: Double? = nil
        public var seed: UInt64 = 1
        public init() {}
    }

    public struct Iteration {
        public var iteration = 0
        public var added = false
        /// Ĵ(π_j, ν_j), max over the class of Ĵ(π, ν_j), and their difference.
        public var newReturn = 0.0, bestClassReturn = 0.0, gap = 0.0
        public var victim: [PPO.UpdateRecord] = [], adversary: [PPO.UpdateRecord] = []
    }

    public static func run(base: ActorCritic, makeEnv: () throws -> Environment, config c: Config,
                           onUpdate: ((Int, Int) throws -> Void)? = nil) throws -> (members: [ActorCritic], iterations: [Iteration]) {
        guard c.iterations > 0, c.updates > 0 else { throw RLError("iterations and updates must be positive") }
        guard case .box = base.actionSpace else { throw RLError("PROTECTED trains PA-AD adversaries, which steer Box actions; the policy has \(base.actionSpace)") }
        guard c.reselectEvery > 0, c.selectEpisodes > 0, c.gapEpisodes > 0 else { throw RLError("reselect_every, select_episodes and gap_episodes must be positive") }
        var members = [base]
        var iterations: [Iteration] = []
        let d = base.observationSpace.flatCount, k = base.actionSpace.flatCount
        let g = Generator(seed: c.seed)
        for j in 1...c.iterations {
            var it = Iteration()
            it.iteration = j
            let victim = try (members.last ?? base).copy()
            let director = try Generator.$current.withValue(Generator(seed: c.seed &+ UInt64(100 * j))) {
                try ActorCritic.mlp(observationSpace: .box(-.infinity, .infinity, shape: [d]), actionSpace: .box(-1, 1, shape: [k]),
                                    normalizer: ObservationNormalizer(size: d))
            }
            let attack = try LearnedAttack(eps: c.eps, adversary: director, mode: .action, steps: c.paadSteps)
            var vc = c.victim, ac = c.adversary
            vc.totalSteps = c.updates * vc.numSteps
            ac.totalSteps = c.updates * ac.numSteps * 2
            vc.seed = c.seed &+ UInt64(10 * j); ac.seed = c.seed &+ UInt64(10 * j + 1)
            let victimEnvs = try SyncVectorEnv([try makeEnv()], autoreset: .sameStep)
            let own = try AdversaryEnv(base: try makeEnv(), victim: victim, eps: c.eps, mode: .action, rewardSign: 1, steps: c.paadSteps, seed: vc.seed)
            let past = try AdversaryEnv(base: try makeEnv(), victim: members[0], eps: c.eps, mode: .action, rewardSign: -1, steps: c.paadSteps, seed: ac.seed)
            let adversaryEnvs = try SyncVectorEnv([own, past], autoreset: .sameStep)
            let vt = try PPO.Trainer(policy: victim, envs: victimEnvs, config: vc, clipAction: c.victimClip,
                                     rewardNormalizer: c.normalizeRewards ? try NormalizeReward(gamma: vc.gamma) : nil)
            vt.rolloutAttack = attack
            let at = try PPO.Trainer(policy: director, envs: adversaryEnvs, config: ac, clipAction: c.adversaryClip,
                                     rewardNormalizer: c.normalizeRewards ? try NormalizeReward(gamma: ac.gamma) : nil)
            let selectEnv = try makeEnv()
            for u in 0..<c.updates {
                try Interrupt.check()
                it.victim.append(try vt.iterate())
                if u % c.reselectEvery == 0 {
                    let returns = try members.map { m in
                        try evaluate(env: selectEnv, episodes: c.selectEpisodes, seed: c.seed &+ UInt64(u)) {
                            try m.act($0, rows: 1, deterministic: true, generator: g, attack: attack)
                        }.mean
                    }
                    past.victim = members[returns.indices.max { returns[$0] < returns[$1] } ?? 0]
                }
                it.adversary.append(try at.iterate())
                try onUpdate?(j, u + 1)
            }
            // the gap of the new member over the class under its own adversary
            let gapEnv = try makeEnv()
            func score(_ p: ActorCritic) throws -> Double {
                try evaluate(env: gapEnv, episodes: c.gapEpisodes, seed: c.seed &+ 999) {
                    try p.act($0, rows: 1, deterministic: true, generator: g, attack: attack)
                }.mean
            }
            it.newReturn = try score(victim)
            it.bestClassReturn = try members.map(score).max() ?? -.infinity
            it.gap = it.newReturn - it.bestClassReturn
            if let delta = c.delta, it.gap <= delta {
                iterations.append(it)
                break
            }
            it.added = true
            members.append(victim)
            iterations.append(it)
        }
        return (members, iterations)
    }
}
