import Foundation
import XCTest
@testable import ParryRL
import ParryCore
import ParryNN

final class PPOTests: XCTestCase {
    /// 20k steps of PPO with the defaults (10 updates of 2048 steps) take
    /// CartPole's deterministic return far above the random policy's (~22).
    func testPPOLearnsCartPole() throws {
        try Generator.$current.withValue(Generator(seed: 1)) {
            let envs = try SyncVectorEnv([try Registry.make("CartPole-v1")], autoreset: .sameStep)
            let policy = try ActorCritic.mlp(observationSpace: envs.singleObservationSpace, actionSpace: envs.singleActionSpace)
            var config = PPO.Config()
            config.totalSteps = 20_480
            config.seed = 1
            let records = try PPO.train(policy: policy, envs: envs, config: config, clipAction: false, rewardNormalizer: nil)
            XCTAssertEqual(records.count, 10)
            XCTAssertEqual(records.last?.globalStep, 20_480)
            let random = try evaluate(env: try Registry.make("CartPole-v1"), episodes: 20, seed: 5) { _ in
                Space.discrete(n: 2).sample(Generator.current)
            }
            let g = Generator(seed: 2)
            let trained = try evaluate(env: try Registry.make("CartPole-v1"), episodes: 20, seed: 5) {
                try policy.act($0, rows: 1, deterministic: true, generator: g)
            }
            print("PPO 20k CartPole: random \(random.mean), trained \(trained.mean); first update return \(records[0].episodeReturn), last \(records.last?.episodeReturn ?? .nan)")
            XCTAssertLessThan(random.mean, 40)
            XCTAssertGreaterThan(trained.mean, 3 * random.mean)
        }
    }
}
