import Foundation
import ParryCore
import ParryNN

/// Proximal Policy Optimization, as CleanRL's `ppo_continuous_action.py`
/// writes it (the defaults are its defaults, for Discrete and Box actions
/// alike): rollouts of `numSteps` per env, GAE, `updateEpochs` passes of
/// `numMinibatches` shuffled minibatches, clipped surrogate, clipped value
/// loss, per-minibatch advantage normalization, global gradient-norm clip,
/// Adam with eps 1e-5 and a linearly annealed learning rate.
public enum PPO {
    public struct Config {
        public var totalSteps = 1_000_000
        public var numSteps = 2048
        public var learningRate = 3e-4
        public var annealLR = true
        public var gamma = 0.99
        public var gaeLambda = 0.95
        public var numMinibatches = 32
        public var updateEpochs = 10
        public var normalizeAdvantages = true
        public var clipCoef = 0.2
        public var clipValueLoss = true
        public var entCoef = 0.0
        public var vfCoef = 0.5
        public var maxGradNorm = 0.5
        public var targetKL: Double? = nil
        public var adamEps = 1e-5
        /// Treat a time-limit truncation as an end (CleanRL) or bootstrap the
        /// reward with γ·V(last observation) (Stable-Baselines3, Pardo et al.).
        public var bootstrapTruncated = false
        public var seed: UInt64 = 1
        /// SA-PPO (Zhang et al. 2020): κ·max_{ŝ∈B_ε(s)} ‖(μ(ŝ) − μ(s))/σ‖² added
        /// to the loss when κ > 0, the inner max by `saSteps` SGLD steps, ε
        /// ramped linearly from 0 over the first `saRamp` of the updates
        /// (PROTECTED's Hopper config: κ 0.3, 2 steps, ε 0.075, 75%).
        public var saRegularizer = 0.0, saEps = 0.0, saSteps = 2, saRamp = 0.75, saDetachStdev = false
        public init() {}

        public func validate(numEnvs: Int) throws {
            func need(_ ok: Bool, _ msg: String) throws { if !ok { throw RLError(msg) } }
            try need(totalSteps > 0, "total_steps must be positive, got \(totalSteps)")
            try need(numSteps > 0, "num_steps must be positive, got \(numSteps)")
            let (batch, overflow) = numSteps.multipliedReportingOverflow(by: numEnvs)
            try need(!overflow && batch <= 1 << 24, "num_steps × num_envs must be at most 16,777,216 per rollout, got \(numSteps) × \(numEnvs)")
            try need(numMinibatches > 0 && (numSteps * numEnvs) % numMinibatches == 0,
                     "num_minibatches (\(numMinibatches)) must divide num_steps × num_envs (\(numSteps * numEnvs))")
            try need(updateEpochs > 0, "update_epochs must be positive, got \(updateEpochs)")
            try need(learningRate > 0 && learningRate.isFinite, "lr must be a positive number, got \(learningRate)")
            try need((0...1).contains(gamma), "gamma must be in [0, 1], got \(gamma)")
            try need((0...1).contains(gaeLambda), "gae_lambda must be in [0, 1], got \(gaeLambda)")
            try need(clipCoef > 0, "clip_coef must be positive, got \(clipCoef)")
            try need(maxGradNorm > 0, "max_grad_norm must be positive, got \(maxGradNorm)")
            try need(saRegularizer >= 0 && saRegularizer.isFinite, "sa_reg must be a non-negative number, got \(saRegularizer)")
            try need(saEps >= 0 && saEps.isFinite, "sa_eps must be a non-negative number, got \(saEps)")
            try need(saSteps > 0, "sa_steps must be positive, got \(saSteps)")
            try need((0...1).contains(saRamp), "sa_ramp must be in [0, 1], got \(saRamp)")
        }
    }

    /// What one update did (CleanRL's logged scalars; returns are the raw
    /// episode returns finished during its rollout, NaN when none finished).
    public struct UpdateRecord {
        /// This update's number and the run's total (`Trainer.updates`).
        public var update = 0, updates = 0, globalStep = 0
        public var episodes = 0
        public var episodeReturn = Double.nan, episodeLength = Double.nan
        public var policyLoss = 0.0, valueLoss = 0.0, entropy = 0.0
        public var oldApproxKL = 0.0, approxKL = 0.0, clipFraction = 0.0, explainedVariance = 0.0
        public var learningRate = 0.0, stepsPerSecond = 0.0
        /// SA-PPO: the last minibatch's regularizer value and the update's ε.
        public var saRegularizer = 0.0, saEps = 0.0
    }

    /// Generalized advantage estimation over a T×N rollout (row-major, time
    /// first). `dones[t]` says obs t began a new episode (the previous step
    /// ended one); `nextValues`/`nextDones` are for the observation after the
    /// last step. Returns the advantages; the value targets are
    /// advantages + values.
    public static func gae(rewards: [Double], values: [Double], dones: [Bool], nextValues: [Double], nextDones: [Bool],
                           gamma: Double, lambda: Double) -> [Double] {
        let n = nextValues.count, steps = rewards.count / n
        var adv = Array(repeating: 0.0, count: rewards.count)
        var last = Array(repeating: 0.0, count: n)
        for t in stride(from: steps - 1, through: 0, by: -1) {
            for i in 0..<n {
                let notDone = (t == steps - 1 ? nextDones[i] : dones[(t + 1) * n + i]) ? 0.0 : 1.0
                let nextV = t == steps - 1 ? nextValues[i] : values[(t + 1) * n + i]
                let delta = rewards[t * n + i] + gamma * nextV * notDone - values[t * n + i]
                last[i] = delta + gamma * lambda * notDone * last[i]
                adv[t * n + i] = last[i]
            }
        }
        return adv
    }

    /// The clipped surrogate loss: mean of max(−A·r, −A·clip(r, 1−ε, 1+ε)).
    public static func policyLoss(ratio: Tensor, advantages: Tensor, clip: Double) throws -> Tensor {
        try (-advantages * ratio).maximum(-advantages * ratio.clamp(1 - clip, 1 + clip)).mean()
    }

    /// The value loss: ½·mean of (V − R)², or with clipping ½·mean of
    /// max((V − R)², (V_old + clip(V − V_old, −ε, ε) − R)²).
    public static func valueLoss(newValues: Tensor, oldValues: Tensor, returns: Tensor, clip: Double?) throws -> Tensor {
        let unclipped = try (newValues - returns).square()
        guard let clip else { return try 0.5 * unclipped.mean() }
        let clipped = try oldValues + (newValues - oldValues).clamp(-clip, clip)
        return try 0.5 * unclipped.maximum((clipped - returns).square()).mean()
    }

    /// 1 − Var(y − ŷ) / Var(y) (NaN when Var(y) is 0), as CleanRL logs it.
    public static func explainedVariance(predicted: [Double], target: [Double]) -> Double {
        func variance(_ v: [Double]) -> Double {
            let m = v.reduce(0, +) / Double(v.count)
            return v.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(v.count)
        }
        let vy = variance(target)
        return vy == 0 ? .nan : 1 - variance(zip(target, predicted).map { $0 - $1 }) / vy
    }

    /// Trains `policy` on `envs`, which must autoreset in the same step
    /// (`SyncVectorEnv(..., autoreset: .sameStep)`): PPO adds episode
    /// statistics innermost, then `clipAction`/`rewardNormalizer` as given;
    /// observations pass through the policy's normalizer (updated during
    /// rollouts). `onUpdate` sees each update's record; it may throw to stop.
    public static func train(policy: ActorCritic, envs base: VectorEnvironment, config c: Config,
                             clipAction: Bool, rewardNormalizer: NormalizeReward?,
                             onUpdate: ((UpdateRecord) throws -> Void)? = nil) throws -> [UpdateRecord] {
        let trainer = try Trainer(policy: policy, envs: base, config: c, clipAction: clipAction, rewardNormalizer: rewardNormalizer)
        var records: [UpdateRecord] = []
        while !trainer.finished {
            let rec = try trainer.iterate()
            records.append(rec)
            try onUpdate?(rec)
        }
        return records
    }

    /// PPO one update at a time (what alternating schemes such as ATLA need):
    /// `iterate()` runs one rollout and one optimization phase. With a
    /// `rolloutAttack` the policy acts on — and learns from — perturbed
    /// observations (ATLA's "collect perturbed states"); the env steps on the
    /// true ones.
    public final class Trainer {
        public let policy: ActorCritic, config: Config
        public var rolloutAttack: ObservationAttack?
        public let updates: Int
        public private(set) var update = 0
        public var finished: Bool { update >= updates }
        let envs: VectorEnvironment, stats: RecordEpisodeStatistics
        let g: Generator, params: [Tensor], optimizer: Adam
        let n: Int, d: Int, k: Int, discrete: Bool, batch: Int, minibatch: Int
        var obsBuf: [Float], actBuf: [Float], logpBuf: [Double], valBuf: [Double], rewBuf: [Double], doneBuf: [Bool]
        var nextObs: Tensor, nextDone: [Bool]
        var globalStep = 0
        let start = Date()

        public init(policy: ActorCritic, envs base: VectorEnvironment, config c: Config,
                    clipAction: Bool, rewardNormalizer: NormalizeReward?) throws {
            self.policy = policy; config = c
        guard base.autoresetMode == .sameStep else { throw RLError("PPO needs a vector env with same-step autoreset") }
        guard base.singleObservationSpace == policy.observationSpace, base.singleActionSpace == policy.actionSpace else {
            throw RLError("the policy's spaces (\(policy.observationSpace), \(policy.actionSpace)) differ from the env's (\(base.singleObservationSpace), \(base.singleActionSpace))")
        }
        let n = base.numEnvs
        try c.validate(numEnvs: n)
        self.n = n
        stats = RecordEpisodeStatistics()
        var envs: VectorEnvironment = try VectorWrapper(base, stats)
        if clipAction { envs = try VectorWrapper(envs, ClipAction()) }
        if let r = rewardNormalizer { envs = try VectorWrapper(envs, r) }
        self.envs = envs
        g = Generator(seed: c.seed)
        params = policy.parameters
        optimizer = try Adam(params, lr: c.learningRate, eps: c.adamEps)
        d = policy.observationSpace.flatCount; k = policy.actionSpace.flatCount
        discrete = policy.actionSpace.isDiscrete
        batch = c.numSteps * n; minibatch = batch / c.numMinibatches
        updates = Swift.max(1, c.totalSteps / batch)
        obsBuf = [Float](repeating: 0, count: batch * d)
        actBuf = [Float](repeating: 0, count: batch * k)
        logpBuf = [Double](repeating: 0, count: batch); valBuf = [Double](repeating: 0, count: batch)
        rewBuf = [Double](repeating: 0, count: batch)
        doneBuf = [Bool](repeating: false, count: batch)
        nextObs = try policy.prepare(try envs.reset(seed: c.seed), rows: n, update: true)
        nextDone = [Bool](repeating: false, count: n)
        }

        /// One rollout of `numSteps` per env and one optimization phase.
        public func iterate() throws -> UpdateRecord {
            let c = config
            update += 1
            let update = self.update
            var rec = UpdateRecord()
            rec.update = update
            rec.updates = updates
            let lr = c.annealLR ? (1 - Double(update - 1) / Double(updates)) * c.learningRate : c.learningRate
            try optimizer.setHyperparameter("lr", lr)
            rec.learningRate = lr
            let episodesBefore = stats.episodes.count

            // Rollout.
            for step in 0..<c.numSteps {
                try Interrupt.check()
                globalStep += n
                let base = step * n
                let seen = try rolloutAttack.map { try $0.perturb(nextObs, policy: policy, generator: g) } ?? nextObs
                let (action, logp, value): (Tensor, Tensor, Tensor) = try GradMode.noGrad {
                    let dist = try policy.distribution(seen)
                    let a = try dist.sample(g)
                    return (a, try dist.logProb(a), try policy.value(seen))
                }
                obsBuf.replaceSubrange(base * d..<(base + n) * d, with: try seen.contiguous().floats())
                let flatAction = discrete ? action.int64s().map { Float($0) } : try action.contiguous().floats()
                actBuf.replaceSubrange(base * k..<(base + n) * k, with: flatAction)
                let lp = try logp.contiguous().floats(), v = try value.contiguous().floats()
                for i in 0..<n { logpBuf[base + i] = Double(lp[i]); valBuf[base + i] = Double(v[i]); doneBuf[base + i] = nextDone[i] }

                let s = try envs.step(flatAction)
                var rewards = s.rewards
                if c.bootstrapTruncated {
                    for (i, final) in s.finalObservations where s.truncated[i] && !s.terminated[i] {
                        let fv = try GradMode.noGrad { try policy.value(try policy.prepare(final, rows: 1)).double() }
                        rewards[i] += c.gamma * fv
                    }
                }
                for i in 0..<n { rewBuf[base + i] = rewards[i]; nextDone[i] = s.terminated[i] || s.truncated[i] }
                nextObs = try policy.prepare(s.observations, rows: n, update: true)
            }
            let finished = stats.episodes[episodesBefore...]
            rec.episodes = finished.count
            if !finished.isEmpty {
                rec.episodeReturn = finished.map(\.ret).reduce(0, +) / Double(finished.count)
                rec.episodeLength = finished.map { Double($0.length) }.reduce(0, +) / Double(finished.count)
            }

            // Advantages.
            let nextValues = try GradMode.noGrad { try policy.value(nextObs).contiguous().floats().map { Double($0) } }
            let adv = gae(rewards: rewBuf, values: valBuf, dones: doneBuf, nextValues: nextValues, nextDones: nextDone,
                          gamma: c.gamma, lambda: c.gaeLambda)
            let returns = zip(adv, valBuf).map { $0 + $1 }

            let bObs = try Tensor(obsBuf, shape: [batch, d])
            let bActions = discrete ? try Tensor(actBuf.map { Int64($0) }, shape: [batch]) : try Tensor(actBuf, shape: [batch, k])
            let bLogp = try Tensor(logpBuf.map { Float($0) }, shape: [batch])
            let bAdv = try Tensor(adv.map { Float($0) }, shape: [batch])
            let bRet = try Tensor(returns.map { Float($0) }, shape: [batch])
            let bVal = try Tensor(valBuf.map { Float($0) }, shape: [batch])

            // Optimization.
            let rampUpdates = c.saRamp * Double(updates)
            let saEps = c.saEps * (rampUpdates > 0 ? Swift.min(1, Double(update - 1) / rampUpdates) : 1)
            rec.saEps = c.saRegularizer > 0 ? saEps : 0
            var clipFracs: [Double] = []
            var pgLast = 0.0, vLast = 0.0, entLast = 0.0, klLast = 0.0, oldKlLast = 0.0
            epochs: for _ in 0..<c.updateEpochs {
                let order = g.permutation(batch)
                for s in stride(from: 0, to: batch, by: minibatch) {
                    let mb = Array(order[s..<s + minibatch])
                    let obs = try bObs.indexSelect(0, mb)
                    let dist = try policy.distribution(obs)
                    let newLogp = try dist.logProb(try bActions.indexSelect(0, mb))
                    let entropy = try dist.entropy()
                    let newValue = try policy.value(obs)
                    let logRatio = try newLogp - bLogp.indexSelect(0, mb)
                    let ratio = try logRatio.exp()
                    try GradMode.noGrad {
                        oldKlLast = try (-logRatio).mean().double()
                        klLast = try ((ratio - 1) - logRatio).mean().double()
                        clipFracs.append(try (ratio - 1).abs().gt(c.clipCoef).mean().double())
                    }
                    var mbAdv = try bAdv.indexSelect(0, mb)
                    if c.normalizeAdvantages {
                        let centered: Tensor = try mbAdv - mbAdv.mean()
                        mbAdv = try centered / (mbAdv.std() + 1e-8)
                    }
                    let pg = try policyLoss(ratio: ratio, advantages: mbAdv, clip: c.clipCoef)
                    let vl = try valueLoss(newValues: newValue, oldValues: bVal.indexSelect(0, mb), returns: bRet.indexSelect(0, mb),
                                           clip: c.clipValueLoss ? c.clipCoef : nil)
                    let ent = try entropy.mean()
                    var loss = try pg - c.entCoef * ent + c.vfCoef * vl
                    if c.saRegularizer > 0 && saEps > 0 {
                        let reg = try stateAdversarialRegularizer(obs, policy: policy, eps: saEps, steps: c.saSteps,
                                                                  detachStdev: c.saDetachStdev, generator: g)
                        loss = try loss + c.saRegularizer * reg
                        rec.saRegularizer = try reg.double()
                    }
                    optimizer.zeroGrad()
                    try loss.backward()
                    try clipGradNorm(params, maxNorm: c.maxGradNorm)
                    try optimizer.step()
                    pgLast = try pg.double(); vLast = try vl.double(); entLast = try ent.double()
                }
                if let t = c.targetKL, klLast > t { break epochs }
            }
            rec.globalStep = globalStep
            rec.policyLoss = pgLast; rec.valueLoss = vLast; rec.entropy = entLast
            rec.approxKL = klLast; rec.oldApproxKL = oldKlLast
            rec.clipFraction = clipFracs.reduce(0, +) / Double(Swift.max(clipFracs.count, 1))
            rec.explainedVariance = explainedVariance(predicted: valBuf, target: returns)
            rec.stepsPerSecond = Double(globalStep) / Swift.max(Date().timeIntervalSince(start), 1e-9)
            return rec
        }
    }
}

/// The outcome of `evaluate`: per-episode returns and lengths, and their
/// mean, median and (population) standard deviation, as SB3's
/// `evaluate_policy` reports.
public struct Evaluation {
    public var returns: [Double] = [], lengths: [Int] = []
    public var mean: Double { returns.reduce(0, +) / Double(Swift.max(returns.count, 1)) }
    public var median: Double {
        let s = returns.sorted(), n = s.count
        return n == 0 ? .nan : n % 2 == 1 ? s[n / 2] : (s[n / 2 - 1] + s[n / 2]) / 2
    }
    public var sd: Double {
        let m = mean
        return (returns.reduce(0) { $0 + ($1 - m) * ($1 - m) } / Double(Swift.max(returns.count, 1))).squareRoot()
    }
}

/// Runs `episodes` full episodes of `act` on `env` (the first reset with
/// `seed`, the rest continuing its stream). `act` maps one raw observation
/// to one action.
public func evaluate(env: Environment, episodes: Int, seed: UInt64?, act: ([Float]) throws -> [Float]) throws -> Evaluation {
    guard episodes > 0 else { throw RLError("episodes must be positive, got \(episodes)") }
    var out = Evaluation()
    for e in 0..<episodes {
        try Interrupt.check()
        var obs = try env.reset(seed: e == 0 ? seed : nil)
        var ret = 0.0, len = 0
        while true {
            let t = try env.step(try act(obs))
            ret += t.reward; len += 1
            obs = t.observation
            if t.done { break }
        }
        out.returns.append(ret); out.lengths.append(len)
    }
    return out
}
