import Foundation
import XCTest
@testable import ParryRL
import ParryCore

final class AdaptationTests: XCTestCase {
    func testEXP3ConcentratesOnTheBestArmOfAStochasticBandit() throws {
        let means = [0.2, 0.5, 0.8]
        var b = try EXP3(arms: 3, rounds: 2000, normalizer: 1, lr: 2)
        let g = Generator(seed: 7)
        var pulls = [0, 0, 0]
        for t in 0..<2000 {
            let i = b.sample(g)
            pulls[i] += 1
            b.update(reward: g.uniform() < means[i] ? 1 : 0, arm: i)
            if t == 1999 { XCTAssertGreaterThan(b.probabilities[2], 0.9, "\(b.probabilities)") }
        }
        XCTAssertGreaterThan(pulls[2], pulls[1] + pulls[0], "\(pulls)")
    }

    func testLogWeightsEqualTheCodesFormula() throws {
        // exp3.py: w_i ← w_i·exp(η·(r/normalizer)/(p_i + γ)), p = w/Σw; η = lr·√(ln K/(K·T)), γ = η/2.
        let k = 4, rounds = 300, lr = 5.0, normalizer = 100.0
        var b = try EXP3(arms: k, rounds: rounds, normalizer: normalizer, lr: lr)
        let eta = lr * (log(Double(k)) / Double(k * rounds)).squareRoot()
        XCTAssertEqual(b.eta, eta, accuracy: 1e-15); XCTAssertEqual(b.gamma, eta / 2, accuracy: 1e-15)
        var w = [Double](repeating: 1, count: k)
        let g = Generator(seed: 3)
        for _ in 0..<60 {
            let i = b.sample(g), r = 100 * g.uniform()
            let p = w[i] / w.reduce(0, +)
            w[i] *= exp(eta * (r / normalizer) / (p + eta / 2))
            b.update(reward: r, arm: i)
            let ref = w.map { $0 / w.reduce(0, +) }
            for j in 0..<k { XCTAssertEqual(b.probabilities[j], ref[j], accuracy: 1e-12) }
        }
        // where the code's weights overflow, the log-space ones do not
        var big = try EXP3(arms: 2, rounds: 10, normalizer: 1, lr: 2)
        for _ in 0..<2000 { big.update(reward: 1000, arm: 0) }
        XCTAssertTrue(big.probabilities.allSatisfy { $0.isFinite })
        XCTAssertEqual(big.probabilities[0], 1, accuracy: 1e-12)
        XCTAssertThrowsError(try EXP3(arms: 0, rounds: 10, normalizer: 1)) { XCTAssertTrue("\($0)".contains("empty")) }
    }
}
