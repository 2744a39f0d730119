import Foundation
import ParryCore

/// ATLA-PPO (Zhang et al. 2021, "Robust reinforcement learning on state
/// observations with learned optimal adversary"): the victim and an SA-RL
/// adversary are trained alternately — `victimUpdates` PPO updates of the
/// victim on observations perturbed by the current adversary (its mean
/// action, ŝ = s + ε·clip(μ_ν(s), −1, 1)), then `adversaryUpdates` updates of
/// the adversary against the current victim (`adversaryEnvs` are
/// `AdversaryEnv`s around the same victim object), until the victim's
/// budget is spent. Each keeps its own optimizer and learning-rate schedule.
public enum ATLA {
    public static func train(victim: ActorCritic, adversary: ActorCritic, victimEnvs: VectorEnvironment, adversaryEnvs: VectorEnvironment,
                             eps: Double, victimConfig: PPO.Config, adversaryConfig: PPO.Config,
                             victimClip: Bool, adversaryClip: Bool,
                             victimRewardNormalizer: NormalizeReward?, adversaryRewardNormalizer: NormalizeReward?,
                             victimUpdates: Int = 1, adversaryUpdates: Int = 1,
                             onUpdate: ((PPO.UpdateRecord) throws -> Void)? = nil) throws -> (victim: [PPO.UpdateRecord], adversary: [PPO.UpdateRecord]) {
        guard victimUpdates > 0, adversaryUpdates > 0 else { throw RLError("victim_updates and adversary_updates must be positive") }
        let v = try PPO.Trainer(policy: victim, envs: victimEnvs, config: victimConfig, clipAction: victimClip, rewardNormalizer: victimRewardNormalizer)
        let a = try PPO.Trainer(policy: adversary, envs: adversaryEnvs, config: adversaryConfig, clipAction: adversaryClip,
                                rewardNormalizer: adversaryRewardNormalizer)
        v.rolloutAttack = try LearnedAttack(eps: eps, adversary: adversary)
        var out: (victim: [PPO.UpdateRecord], adversary: [PPO.UpdateRecord]) = ([], [])
        while !v.finished {
            for _ in 0..<victimUpdates where !v.finished {
                try Interrupt.check()
                let r = try v.iterate()
                out.victim.append(r)
                try onUpdate?(r)
            }
            for _ in 0..<adversaryUpdates where !a.finished { out.adversary.append(try a.iterate()) }
        }
        return out
    }
}
