import Foundation
import XCTest
@testable import ParryRL
import ParryCore

/// The MuJoCo path on models written for these tests (Gymnasium's model
/// files are not part of parry; scripts/rl/compare_mujoco.py checks the
/// locomotion tasks against Gymnasium where they are installed).
final class MuJoCoTests: XCTestCase {
    func model(_ name: String) throws -> String {
        try XCTUnwrap(Bundle.module.url(forResource: name, withExtension: "xml", subdirectory: "Fixtures")).path
    }

    func testSliderFollowsTheClosedForm() throws {
        // InvertedPendulum-v4's task on a one-joint model: obs = (x, v), frame
        // skip 2, terminated once |obs[2]| = |v| > 0.2. u = 0.3 → a = 4·0.3/2 =
        // 0.6 m/s²; after k env steps n = 2k MuJoCo steps.
        let env = try MuJoCoEnv(.invertedPendulum, xml: try model("slider"))
        XCTAssertEqual(env.actionSpace, .box(low: [-1], high: [1], shape: [1]))
        XCTAssertEqual(env.dt, 0.02, accuracy: 1e-15)
        _ = try env.reset(seed: 1)
        try env.setState(qpos: [0], qvel: [0])
        let a = 0.6, dt = 0.01
        for k in 1...30 {
            let t = try env.step([0.3])
            let n = Double(2 * k)
            XCTAssertEqual(Double(t.observation[0]), a * dt * dt * n * (n + 1) / 2, accuracy: 1e-6, "x at step \(k)")
            XCTAssertEqual(Double(t.observation[1]), n * a * dt, accuracy: 1e-6, "v at step \(k)")
            XCTAssertEqual(t.reward, 1)
            // v = 0.012·k exceeds 0.2 first at k = 17
            XCTAssertEqual(t.terminated, k >= 17, "step \(k)")
            if t.terminated { break }
        }
        // controls beyond the range are clamped by MuJoCo (ctrllimited)
        try env.setState(qpos: [0], qvel: [0])
        let t = try env.step([5])
        XCTAssertEqual(Double(t.observation[1]), 2 * 2 * dt, accuracy: 1e-6)
    }

    func testCartPoleUprightIsAnEquilibriumAndATiltFalls() throws {
        let env = try Registry.make("InvertedPendulum-v4", seed: 3, options: ["xml": try model("cart_pole")])
        XCTAssertEqual(env.observationSpace.flatCount, 4)
        let inner = try XCTUnwrap(env.unwrapped as? MuJoCoEnv)
        let obs = try env.reset(seed: nil)
        XCTAssertTrue(obs.allSatisfy { abs($0) <= 0.01 }, "reset noise is U(±0.01): \(obs)")
        try inner.setState(qpos: [0, 0], qvel: [0, 0])
        for _ in 0..<50 { let t = try env.step([0]); XCTAssertFalse(t.terminated); XCTAssertTrue(t.observation.allSatisfy { abs($0) < 1e-9 }) }
        try inner.setState(qpos: [0, 0.05], qvel: [0, 0])
        var last = 0.05, steps = 0
        while true {
            let t = try env.step([0])
            steps += 1
            XCTAssertGreaterThan(Double(t.observation[1]), last, "the pole keeps falling the way it leans")
            last = Double(t.observation[1])
            if t.terminated { XCTAssertGreaterThan(last, 0.2); break }
            XCTAssertLessThanOrEqual(last, 0.2)
        }
        XCTAssertGreaterThan(steps, 3)
        // the same seed, the same reset
        let a = try Registry.make("InvertedPendulum-v4", options: ["xml": try model("cart_pole")]).reset(seed: 5)
        XCTAssertEqual(a, try Registry.make("InvertedPendulum-v4", options: ["xml": try model("cart_pole")]).reset(seed: 5))
    }

    func testWarningsGoToStderrNotALogFileInTheWorkingDirectory() throws {
        // MuJoCo's own handler appends to ./MUJOCO_LOG.TXT; an unstable state makes it warn.
        let fm = FileManager.default
        let dir = fm.temporaryDirectory.appendingPathComponent("parry-mujoco-warn-\(getpid())").path
        try fm.createDirectory(atPath: dir, withIntermediateDirectories: true)
        let saved = fm.currentDirectoryPath
        defer { _ = fm.changeCurrentDirectoryPath(saved); try? fm.removeItem(atPath: dir) }
        XCTAssertTrue(fm.changeCurrentDirectoryPath(dir))
        let env = try MuJoCoEnv(.invertedPendulum, xml: try model("cart_pole"))
        _ = try env.reset(seed: 1)
        try env.setState(qpos: [0, 0.1], qvel: [1e300, 1e300])
        for _ in 0..<3 { _ = try env.step([1]) }
        XCTAssertFalse(fm.fileExists(atPath: dir + "/MUJOCO_LOG.TXT"))
    }

    func testMissingAssetsSayHowToGetThem() throws {
        let empty = FileManager.default.temporaryDirectory.appendingPathComponent("parry-no-assets-\(getpid())").path
        XCTAssertThrowsError(try MuJoCoEnv(.hopper, assets: empty)) { e in
            let msg = "\(e)"
            XCTAssertTrue(msg.contains("hopper.xml") && msg.contains("PARRY_MUJOCO_ASSETS") && msg.contains("pip install gymnasium"), msg)
        }
        XCTAssertThrowsError(try MuJoCoEnv(.hopper, xml: empty + "/nope.xml")) { e in
            XCTAssertTrue("\(e)".contains("MuJoCo could not load"), "\(e)")
        }
    }

    func testVectorEnvStepsMuJoCoOnAllCoresWithTheSameResults() throws {
        // A vector of cart-poles (stepped concurrently) against the same envs
        // stepped one by one: identical observations and flags.
        let xml = try model("cart_pole")
        func make() throws -> Environment { try Registry.make("InvertedPendulum-v4", options: ["xml": xml]) }
        let vec = try SyncVectorEnv((0..<4).map { _ in try make() })
        XCTAssertTrue(vec.concurrent)
        let singles = try (0..<4).map { _ in try make() }
        var obs = try vec.reset(seed: 10)
        var ref = try singles.enumerated().flatMap { try $0.element.reset(seed: 10 + UInt64($0.offset)) }
        XCTAssertEqual(obs, ref)
        let g = Generator(seed: 1)
        var pending = [false, false, false, false]
        for _ in 0..<60 {
            let actions = (0..<4).map { _ in Float(g.uniform() * 2 - 1) }
            let s = try vec.step(actions)
            obs = s.observations
            ref = []
            for (i, e) in singles.enumerated() {
                if pending[i] { ref += try e.reset(seed: nil); pending[i] = false; XCTAssertTrue(s.wasReset[i]); continue }
                let t = try e.step([actions[i]])
                ref += t.observation
                XCTAssertEqual(t.terminated, s.terminated[i])
                pending[i] = t.done
            }
            XCTAssertEqual(obs, ref)
        }
        XCTAssertFalse(try SyncVectorEnv([try Registry.make("CartPole-v1"), try Registry.make("CartPole-v1")]).concurrent)
    }
}
