import Foundation
import XCTest
@testable import ParryRL
import ParryCore
import ParryNN

final class StateAttackTests: XCTestCase {
    func policy(_ action: Space) throws -> ActorCritic {
        try Generator.$current.withValue(Generator(seed: 11)) {
            let p = try ActorCritic.mlp(observationSpace: .box(-10, 10, shape: [3]), actionSpace: action)
            // a policy head larger than CleanRL's 0.01 init, so actions depend on the state
            if let w = p.actor.namedParameters().last(where: { $0.name.hasSuffix("weight") })?.tensor { try GradMode.noGrad { try w.mul_(100) } }
            return p
        }
    }

    func testEveryAttackStaysInTheBall() throws {
        let g = Generator(seed: 1)
        for space in [Space.box(-1, 1, shape: [2]), .discrete(n: 3)] {
            let p = try policy(space)
            let s = try Tensor.randn([16, 3], generator: g)
            for attack in [try RandomAttack(eps: 0.1) as ObservationAttack, try CriticAttack(eps: 0.1), try MADAttack(eps: 0.1)] {
                let x = try attack.perturb(s, policy: p, generator: g)
                XCTAssertEqual(x.shape, s.shape)
                XCTAssertLessThanOrEqual(try (x - s).abs().max().double(), 0.1 + 1e-6, "\(type(of: attack)) on \(space)")
                XCTAssertGreaterThan(try (x - s).abs().max().double(), 0.01)
            }
        }
        XCTAssertThrowsError(try CriticAttack(eps: -0.1)) { XCTAssertTrue("\($0)".contains("eps must be a non-negative number")) }
    }

    func testAttacksDoWhatTheyAimFor() throws {
        let g = Generator(seed: 2)
        let p = try policy(.box(-1, 1, shape: [2]))
        let s = try Tensor.randn([64, 3], generator: g)
        // critic: lowers V below what random noise of the same size does
        let vCritic = try GradMode.noGrad { try p.value(try CriticAttack(eps: 0.2).perturb(s, policy: p, generator: g)).mean().double() }
        let vRandom = try GradMode.noGrad { try p.value(try RandomAttack(eps: 0.2).perturb(s, policy: p, generator: g)).mean().double() }
        XCTAssertLessThan(vCritic, vRandom)
        // MAD: the action change grows over its ascent steps
        let ref = try ActionChange.at(s, policy: p, normalizeStdev: true)
        var trace: [Double] = []
        _ = try sgldActionChange(s, policy: p, reference: ref, eps: 0.2, steps: 10, beta: 1, generator: Generator(seed: 5)) { trace.append($0) }
        XCTAssertEqual(trace.count, 11)
        XCTAssertGreaterThan(trace.last ?? 0, 2 * trace[0], "\(trace)")
        XCTAssertGreaterThanOrEqual(zip(trace, trace.dropFirst()).filter { $1 > $0 }.count, 8, "\(trace)")
    }

    func testSARegularizerIsZeroAtZeroEpsAndPositiveOtherwise() throws {
        let g = Generator(seed: 3)
        for space in [Space.box(-1, 1, shape: [2]), .discrete(n: 3)] {
            let p = try policy(space)
            let s = try Tensor.randn([32, 3], generator: g)
            XCTAssertEqual(try stateAdversarialRegularizer(s, policy: p, eps: 0, generator: g).double(), 0)
            let r = try stateAdversarialRegularizer(s, policy: p, eps: 0.1, generator: g)
            XCTAssertGreaterThan(try r.double(), 0)
            // differentiable in the policy's parameters
            try r.backward()
            XCTAssertNotNil(p.actor.allParameters().first?.grad)
        }
    }

    func testAdversaryEnvNegatesTheRewardAndPerturbsWithinTheBall() throws {
        let pendulum = try ActorCritic.mlp(observationSpace: .box(low: [-1, -1, -8], high: [1, 1, 8], shape: [3]), actionSpace: .box(-2, 2, shape: [1]))
        // ε = 0: the adversary cannot change anything, so its reward is −(the victim's natural reward)
        let adv = try AdversaryEnv(base: try Registry.make("Pendulum-v1"), victim: pendulum, eps: 0)
        let plain = try Registry.make("Pendulum-v1")
        var o1 = try adv.reset(seed: 4)
        var o2 = try plain.reset(seed: 4)
        for _ in 0..<30 {
            XCTAssertEqual(o1, try pendulum.prepare(o2, rows: 1).floats())
            let a = try pendulum.act(o2, rows: 1, deterministic: true, generator: Generator(seed: 1))
            let t1 = try adv.step([1, -1, 0.5]), t2 = try plain.step(a)
            XCTAssertEqual(t1.reward, -t2.reward)
            o1 = t1.observation; o2 = t2.observation
        }
        // the learned attack's perturbation stays in the ball
        let attack = try LearnedAttack(eps: 0.1, adversary: try ActorCritic.mlp(observationSpace: .box(-.infinity, .infinity, shape: [3]),
                                                                                   actionSpace: .box(-1, 1, shape: [3])))
        let s = try Tensor.randn([8, 3], generator: Generator(seed: 2))
        XCTAssertLessThanOrEqual(try (attack.perturb(s, policy: pendulum, generator: Generator(seed: 3)) - s).abs().max().double(), 0.1 + 1e-6)
        XCTAssertThrowsError(try AdversaryEnv(base: try Registry.make("Pendulum-v1"), victim: pendulum, eps: -1))
    }

    func testPAADStepsTheVictimsActionAlongTheDirection() throws {
        let p = try policy(.box(-1, 1, shape: [2]))
        let g = Generator(seed: 4)
        let s = try Tensor.randn([64, 2 + 1], generator: g)
        let d = try Tensor.randn([64, 2], generator: g)
        let x = try paadPerturb(s, direction: d, victim: p, eps: 0.1, steps: 10, generator: g)
        XCTAssertEqual(try (x - s).abs().max().double(), 0.1, accuracy: 1e-6)   // a corner of the ball
        func alignment(_ y: Tensor) throws -> Double {
            try GradMode.noGrad {
                guard case .normal(let m0, _) = try p.distribution(s), case .normal(let m, _) = try p.distribution(y) else { return 0 }
                return try F.cosineSimilarity(m - m0, d, dim: 1).mean().double()
            }
        }
        let random = try RandomAttack(eps: 0.1).perturb(s, policy: p, generator: g)
        XCTAssertGreaterThan(try alignment(x), 0.3)
        XCTAssertGreaterThan(try alignment(x), try alignment(random) + 0.3)
        XCTAssertThrowsError(try paadPerturb(s, direction: d, victim: try policy(.discrete(n: 3)), eps: 0.1, steps: 10, generator: g))
    }
}

/// A never-ending env with reward 1: Q(s, a) = 1/(1 − γ) for any policy.
final class ConstantRewardEnv: SeededEnvironment, Environment {
    let id = "ConstantReward"
    let observationSpace = Space.box(-1, 1, shape: [2]), actionSpace = Space.box(-1, 1, shape: [1])
    func reset(seed: UInt64?) throws -> [Float] { reseed(seed); return observationSpace.sample(rng) }
    func step(_ action: [Float]) throws -> Transition {
        Transition(observation: observationSpace.sample(rng), reward: 1, terminated: false, truncated: false)
    }
}

final class RobustSarsaTests: XCTestCase {
    func testQLearnsTheDiscountedValueAndTheAttackStaysInTheBall() throws {
        let victim = try Generator.$current.withValue(Generator(seed: 1)) {
            try ActorCritic.mlp(observationSpace: .box(-1, 1, shape: [2]), actionSpace: .box(-1, 1, shape: [1]))
        }
        var c = RobustSarsa.Config()
        c.iterations = 30; c.numSteps = 256; c.epochs = 10; c.minibatches = 8; c.lr = 0.01; c.gamma = 0.9
        let (q, losses) = try RobustSarsa.train(victim: victim, env: ConstantRewardEnv(), config: c)
        let x = try Tensor.rand([64, 3], generator: Generator(seed: 2)) * 2 - 1
        let v = try GradMode.noGrad { try q(x).mean().double() }
        XCTAssertEqual(v, 10, accuracy: 1.5, "Q ≈ 1/(1 − γ) = 10, got \(v) (losses \(losses))")
        let attack = try RSAttack(eps: 0.1, q: q, actionRatio: 0.5)
        let s = try Tensor.randn([8, 2], generator: Generator(seed: 3))
        XCTAssertLessThanOrEqual(try (attack.perturb(s, policy: victim, generator: Generator(seed: 4)) - s).abs().max().double(), 0.1 + 1e-6)
        let discrete = try ActorCritic.mlp(observationSpace: .box(-1, 1, shape: [2]), actionSpace: .discrete(n: 2))
        XCTAssertThrowsError(try RobustSarsa.train(victim: discrete, env: ConstantRewardEnv(), config: c))
    }
}
