import Foundation
import XCTest
@testable import ParryRL
import ParryCore

/// parry's classic-control dynamics against trajectories recorded from
/// Gymnasium itself (scripts/rl/record_fixtures.py): the same initial state
/// and actions must give the same observations to 1e-5 and exactly the same
/// rewards and termination/truncation flags.
final class ClassicControlTests: XCTestCase {
    struct Episode: Decodable {
        let initial_state: [Double]
        let initial_obs: [Double]
        let actions: [Action]
        let obs: [[Double]]
        let reward: [Double]
        let terminated: [Bool]
        let truncated: [Bool]
    }
    enum Action: Decodable {
        case index(Int), vector([Double])
        init(from decoder: Decoder) throws {
            let c = try decoder.singleValueContainer()
            if let i = try? c.decode(Int.self) { self = .index(i) } else { self = .vector(try c.decode([Double].self)) }
        }
        var floats: [Float] {
            switch self { case .index(let i): return [Float(i)]; case .vector(let v): return v.map { Float($0) } }
        }
    }
    struct Fixture: Decodable { let env: String; let max_episode_steps: Int; let episodes: [Episode] }

    func fixture(_ id: String) throws -> Fixture {
        let url = try XCTUnwrap(Bundle.module.url(forResource: id, withExtension: "json", subdirectory: "Fixtures"))
        return try JSONDecoder().decode(Fixture.self, from: Data(contentsOf: url))
    }

    func replay(_ id: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let fx = try fixture(id)
        for (e, ep) in fx.episodes.enumerated() {
            let env = try Registry.make(id, seed: 0)
            XCTAssertEqual(env.maxEpisodeSteps, fx.max_episode_steps, file: file, line: line)
            _ = try env.reset(seed: 0)
            let inner = try XCTUnwrap(env.unwrapped as? StatefulEnvironment)
            inner.state = ep.initial_state
            for (j, v) in inner.observe().enumerated() { XCTAssertEqual(Double(v), ep.initial_obs[j], accuracy: 1e-6, file: file, line: line) }
            for (t, a) in ep.actions.enumerated() {
                let tr = try env.step(a.floats)
                for (j, v) in tr.observation.enumerated() {
                    XCTAssertEqual(Double(v), ep.obs[t][j], accuracy: 1e-5, "\(id) episode \(e) step \(t) obs[\(j)]", file: file, line: line)
                }
                XCTAssertEqual(tr.reward, ep.reward[t], "\(id) episode \(e) step \(t) reward", file: file, line: line)
                XCTAssertEqual(tr.terminated, ep.terminated[t], "\(id) episode \(e) step \(t) terminated", file: file, line: line)
                XCTAssertEqual(tr.truncated, ep.truncated[t], "\(id) episode \(e) step \(t) truncated", file: file, line: line)
            }
            XCTAssertTrue(ep.terminated.last == true || ep.truncated.last == true)
        }
    }

    func testCartPoleMatchesGymnasium() throws { try replay("CartPole-v1") }
    func testPendulumMatchesGymnasium() throws { try replay("Pendulum-v1") }
    func testMountainCarContinuousMatchesGymnasium() throws { try replay("MountainCarContinuous-v0") }
    func testAcrobotMatchesGymnasium() throws { try replay("Acrobot-v1") }

    func testFixturesReachBothEnds() throws {
        // The recorded episodes cover termination and the time limit for the
        // envs that can terminate, so both flags are checked for real.
        for id in ["CartPole-v1", "MountainCarContinuous-v0", "Acrobot-v1"] {
            let eps = try fixture(id).episodes
            XCTAssertTrue(eps.contains { $0.terminated.last == true }, id)
            XCTAssertTrue(eps.contains { $0.truncated.last == true }, id)
        }
    }

    func testResetDrawsInsideGymnasiumsRanges() throws {
        let cart = try Registry.make("CartPole-v1", seed: 3)
        for _ in 0..<50 { for v in try cart.reset(seed: nil) { XCTAssertLessThanOrEqual(abs(v), 0.05) } }
        let pend = try Registry.make("Pendulum-v1", seed: 3)
        for _ in 0..<50 {
            _ = try pend.reset(seed: nil)
            let s = try XCTUnwrap(pend.unwrapped as? StatefulEnvironment).state
            XCTAssertLessThanOrEqual(abs(s[0]), Double.pi); XCTAssertLessThanOrEqual(abs(s[1]), 1)
        }
        // the same seed gives the same episode start; another seed another one
        let a = try Registry.make("Acrobot-v1").reset(seed: 7), b = try Registry.make("Acrobot-v1").reset(seed: 7)
        XCTAssertEqual(a, b)
        XCTAssertNotEqual(a, try Registry.make("Acrobot-v1").reset(seed: 8))
    }
}
