import Foundation
import XCTest
@testable import ParryRL
import ParryCore
import ParryNN

final class RLCoreTests: XCTestCase {
    func testSpacesSampleInsideAndContain() {
        let g = Generator(seed: 11)
        let box = Space.box(low: [-1, 0, -Float.infinity, -Float.infinity], high: [1, 5, Float.infinity, 2], shape: [4])
        for _ in 0..<500 {
            let v = box.sample(g)
            XCTAssertTrue(box.contains(v), "\(v)")
            XCTAssertTrue(v[0] >= -1 && v[0] <= 1 && v[1] >= 0 && v[1] <= 5 && v[3] <= 2)
        }
        let d = Space.discrete(n: 3, start: 0)
        var seen = Set<Float>()
        for _ in 0..<300 { let v = d.sample(g); XCTAssertTrue(d.contains(v)); seen.insert(v[0]) }
        XCTAssertEqual(seen, [0, 1, 2])
        XCTAssertFalse(d.contains([3])); XCTAssertFalse(d.contains([0.5])); XCTAssertFalse(d.contains([0, 1]))
        XCTAssertFalse(box.contains([2, 1, 0, 0])); XCTAssertFalse(box.contains([0, 1, 0]))
        XCTAssertFalse(box.contains([Float.nan, 1, 0, 0]))
        // seeded: same draws again
        let g1 = Generator(seed: 5), g2 = Generator(seed: 5)
        XCTAssertEqual((0..<10).map { _ in box.sample(g1) }, (0..<10).map { _ in box.sample(g2) })
    }

    func testActionChecksAndOrderEnforcement() throws {
        let env = try Registry.make("CartPole-v1", seed: 1)
        XCTAssertThrowsError(try env.step([0])) { XCTAssertTrue("\($0)".contains("before reset")) }
        _ = try env.reset(seed: nil)
        XCTAssertThrowsError(try env.step([2])) { XCTAssertTrue("\($0)".contains("Discrete(2)")) }
        XCTAssertThrowsError(try env.step([0, 1]))
        // a rejected action does not count as a step: the episode goes on
        var t = try env.step([1])
        while !t.done { t = try env.step([1]) }
        XCTAssertTrue(t.terminated)
        XCTAssertThrowsError(try env.step([1])) { XCTAssertTrue("\($0)".contains("terminated")) }
        _ = try env.reset(seed: nil)
        XCTAssertNoThrow(try env.step([0]))
        // Box: out-of-range actions reach the env (it clips), NaN does not
        let p = try Registry.make("Pendulum-v1", seed: 1)
        _ = try p.reset(seed: nil)
        XCTAssertNoThrow(try p.step([5]))
        XCTAssertThrowsError(try p.step([Float.nan]))
        XCTAssertThrowsError(try Registry.make("Nope-v0")) { XCTAssertTrue("\($0)".contains("CartPole-v1")) }
    }

    func testTimeLimitTruncates() throws {
        let env = try Registry.make("Pendulum-v1", maxEpisodeSteps: 7, seed: 2)
        _ = try env.reset(seed: nil)
        for i in 1...7 {
            let t = try env.step([0])
            XCTAssertEqual(t.truncated, i == 7); XCTAssertFalse(t.terminated)
        }
    }

    func testNextStepAutoreset() throws {
        let envs = try SyncVectorEnv((0..<2).map { _ in try Registry.make("CartPole-v1") })
        _ = try envs.reset(seed: 42)
        var ended = -1
        var steps = 0
        while ended < 0 {
            let s = try envs.step([1, 0])
            steps += 1
            if let i = (0..<2).first(where: { s.terminated[$0] || s.truncated[$0] }) { ended = i }
        }
        let s = try envs.step([1, 1])
        XCTAssertTrue(s.wasReset[ended])
        XCTAssertEqual(s.rewards[ended], 0); XCTAssertFalse(s.terminated[ended]); XCTAssertFalse(s.truncated[ended])
        for v in s.observations[ended * 4..<ended * 4 + 4] { XCTAssertLessThanOrEqual(abs(v), 0.05) }  // a fresh start
        XCTAssertFalse(s.wasReset[1 - ended])
        // seeds: sub-env i gets seed + i
        let a = try SyncVectorEnv([try Registry.make("CartPole-v1"), try Registry.make("CartPole-v1")]).reset(seed: 9)
        XCTAssertEqual(Array(a[4..<8]), try Registry.make("CartPole-v1").reset(seed: 10))
    }

    func testSameStepAutoresetKeepsTheFinalObservation() throws {
        let envs = try SyncVectorEnv([try Registry.make("CartPole-v1")], autoreset: .sameStep)
        _ = try envs.reset(seed: 3)
        var s = try envs.step([1])
        while !(s.terminated[0] || s.truncated[0]) { s = try envs.step([1]) }
        let final = try XCTUnwrap(s.finalObservations[0])
        XCTAssertGreaterThan(abs(final[2]), 0.2)  // the pole fell
        for v in s.observations { XCTAssertLessThanOrEqual(abs(v), 0.05) }
    }

    func testRunningMeanStdMatchesTwoPass() {
        let g = Generator(seed: 4)
        let rms = RunningMeanStd(size: 2)
        var all: [[Double]] = []
        for b in 0..<20 {
            let rows = 1 + b % 7
            var batch: [Float] = []
            for _ in 0..<rows {
                let x = [Float(3 + 2 * g.normal()), Float(-1 + 0.5 * g.normal())]
                batch += x; all.append(x.map { Double($0) })
            }
            rms.update(batch, rows: rows)
        }
        // The statistics start as a pseudo-batch of count 1e-4, mean 0, var 1.
        let n = Double(all.count), c0 = 1e-4
        for j in 0..<2 {
            let sum = all.reduce(0) { $0 + $1[j] }
            let mean = sum / (n + c0)
            let m2 = c0 * (1 + mean * mean) + all.reduce(0) { $0 + ($1[j] - mean) * ($1[j] - mean) }
            XCTAssertEqual(rms.mean[j], mean, accuracy: 1e-9)
            XCTAssertEqual(rms.variance[j], m2 / (n + c0), accuracy: 1e-9)
        }
        XCTAssertEqual(rms.count, n + c0, accuracy: 1e-12)
    }

    func testRewardNormalizationFollowsGymnasium() throws {
        // One env, next-step autoreset: accumulated return G ← γ·G·(1 − term) + r,
        // skipped on the autoreset step; reward / √(var(G) + ε).
        let r = try NormalizeReward(gamma: 0.5, clip: 100)
        try r.attach(numEnvs: 1, observationSpace: .box(0, 1, shape: [1]), actionSpace: .discrete(n: 2), autoreset: .nextStep)
        var o: [Float] = [0]
        r.reset(&o, rows: 1)
        func step(_ reward: Double, term: Bool = false, reset: Bool = false) -> Double {
            var s = VectorStep(observations: [0], rewards: [reward], terminated: [term], truncated: [false], wasReset: [reset],
                               finalObservations: [:], infos: [[:]])
            r.step(&s)
            return s.rewards[0]
        }
        let ref = RunningMeanStd(size: 1)
        ref.update([1], rows: 1)
        XCTAssertEqual(step(1), 1 / (ref.variance[0] + 1e-8).squareRoot(), accuracy: 1e-9)   // G = 1
        ref.update([2], rows: 1)
        XCTAssertEqual(step(2, term: true), 2 / (ref.variance[0] + 1e-8).squareRoot(), accuracy: 1e-9)   // G = 0.5·1·(1 − 1) + 2
        XCTAssertEqual(step(0, reset: true), 0)   // the autoreset step: G and the statistics untouched
        // G = 0.5·2 + 3 = 4: Gymnasium zeroes G only through (1 − term) at the
        // terminal step, so the last reward carries into the next episode
        ref.update([4], rows: 1)
        XCTAssertEqual(step(3), 3 / (ref.variance[0] + 1e-8).squareRoot(), accuracy: 1e-9)
    }

    func testGAEOnAHandComputedTrajectory() {
        // 5 steps, one env; obs 2 starts a new episode (step 1 was truncated, no
        // bootstrap), γ = 0.9, λ = 0.8, V(next) = 0.6:
        // A4 = 1 + 0.9·0.6 − 0.1 = 1.44; A3 = 0.89 + 0.72·1.44 = 1.9268;
        // A2 = 0.88 + 0.72·1.9268 = 2.267296; A1 = 1 − 0.4 = 0.6 (episode end);
        // A0 = 0.86 + 0.72·0.6 = 1.292.
        let adv = PPO.gae(rewards: [1, 1, 1, 1, 1], values: [0.5, 0.4, 0.3, 0.2, 0.1], dones: [false, false, true, false, false],
                          nextValues: [0.6], nextDones: [false], gamma: 0.9, lambda: 0.8)
        for (a, e) in zip(adv, [1.292, 0.6, 2.267296, 1.9268, 1.44]) { XCTAssertEqual(a, e, accuracy: 1e-12) }
        // the last step ending an episode does not bootstrap from V(next)
        let end = PPO.gae(rewards: [1], values: [0.5], dones: [false], nextValues: [100], nextDones: [true], gamma: 0.9, lambda: 0.8)
        XCTAssertEqual(end[0], 0.5, accuracy: 1e-12)
    }

    func testClippedLossesOnHandValues() throws {
        // ratio (0.5, 1, 1.5), A (1, −1, 2), ε 0.2: max(−A·r, −A·clip(r)) = (−0.5, 1, −2.4), mean −1.9/3.
        let pg = try PPO.policyLoss(ratio: Tensor([0.5, 1.0, 1.5] as [Float], shape: [3]), advantages: Tensor([1, -1, 2] as [Float], shape: [3]), clip: 0.2)
        XCTAssertEqual(try pg.double(), -1.9 / 3, accuracy: 1e-6)
        // V (1, 2), V_old (0.5, 2.5), R (2, 2): unclipped (1, 0); clipped V (0.7, 2.3) → (1.69, 0.09); ½·mean(max) = 0.445.
        let v = try Tensor([1, 2] as [Float], shape: [2]), old = try Tensor([0.5, 2.5] as [Float], shape: [2]), ret = try Tensor([2, 2] as [Float], shape: [2])
        XCTAssertEqual(try PPO.valueLoss(newValues: v, oldValues: old, returns: ret, clip: 0.2).double(), 0.445, accuracy: 1e-6)
        XCTAssertEqual(try PPO.valueLoss(newValues: v, oldValues: old, returns: ret, clip: nil).double(), 0.25, accuracy: 1e-6)
        XCTAssertEqual(PPO.explainedVariance(predicted: [1, 2, 3], target: [1, 2, 3]), 1, accuracy: 1e-12)
    }

    func testDistributions() throws {
        // N(μ, σ²) log-density and entropy in closed form.
        let mean = try Tensor([0.5, -1] as [Float], shape: [1, 2]), logStd = try Tensor([0.2, -0.3] as [Float], shape: [1, 2])
        let a = try Tensor([1.0, 0.0] as [Float], shape: [1, 2])
        let d = PolicyDistribution.normal(mean: mean, logStd: logStd)
        var lp = 0.0, ent = 0.0
        for (m, s, x) in [(0.5, 0.2, 1.0), (-1.0, -0.3, 0.0)] {
            let sd = exp(s)
            lp += -(x - m) * (x - m) / (2 * sd * sd) - s - 0.5 * log(2 * Double.pi)
            ent += 0.5 + 0.5 * log(2 * Double.pi) + s
        }
        XCTAssertEqual(try d.logProb(a).double(), lp, accuracy: 1e-5)
        XCTAssertEqual(try d.entropy().double(), ent, accuracy: 1e-5)
        // Categorical: uniform logits → entropy log n, log π = −log n; samples follow the probabilities.
        let c = PolicyDistribution.categorical(logits: try Tensor([0, 0, 0, 0] as [Float], shape: [1, 4]))
        XCTAssertEqual(try c.entropy().double(), log(4), accuracy: 1e-6)
        XCTAssertEqual(try c.logProb(Tensor([2] as [Int64], shape: [1])).double(), -log(4), accuracy: 1e-6)
        let skew = PolicyDistribution.categorical(logits: try Tensor(Array(repeating: [Float(0), Float(log(3.0))], count: 4000).flatMap { $0 }, shape: [4000, 2]))
        let ones = try skew.sample(Generator(seed: 1)).int64s().filter { $0 == 1 }.count
        XCTAssertEqual(Double(ones) / 4000, 0.75, accuracy: 0.03)
    }

    func testOrthogonalInitAndGradClipping() throws {
        for shape in [[64, 4], [4, 64], [8, 8]] {
            let w = try Tensor.zeros(shape)
            try Init.orthogonal_(w, gain: 2)
            let wwT = shape[0] <= shape[1] ? try w.matmul(w.transpose(0, 1)) : try w.transpose(0, 1).matmul(w)
            let n = Swift.min(shape[0], shape[1])
            let v = wwT.floats()
            for i in 0..<n { for j in 0..<n { XCTAssertEqual(Double(v[i * n + j]), i == j ? 4 : 0, accuracy: 1e-4) } }
        }
        let p = try Tensor.zeros([2]).requiresGrad_(), q = try Tensor.zeros([1]).requiresGrad_()
        p.grad = try Tensor([3, 0] as [Float], shape: [2]); q.grad = try Tensor([4] as [Float], shape: [1])
        XCTAssertEqual(try clipGradNorm([p, q], maxNorm: 1), 5, accuracy: 1e-6)
        XCTAssertEqual(Double(try XCTUnwrap(p.grad).floats()[0]), 3 / (5 + 1e-6), accuracy: 1e-6)
        XCTAssertEqual(Double(try XCTUnwrap(q.grad).floats()[0]), 4 / (5 + 1e-6), accuracy: 1e-6)
    }
}
