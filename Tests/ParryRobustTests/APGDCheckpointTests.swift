import XCTest
@testable import ParryCore
@testable import ParryRobust

/// APGD's checkpoint decisions on constructed loss sequences (100 steps:
/// checkpoints after 22, then 19, 16, … steps), as AutoAttack makes them.
final class APGDCheckpointTests: XCTestCase {
    func testTheFirstCheckpointHalvesForOscillationOnlyThenNoImprovementCounts() throws {
        // Sample 1 climbs on 21 of its 22 steps (no oscillation: 21 > 0.75·22) but stays
        // below its starting loss 10, so its best never improves. Sample 2 alternates
        // (11 rises of 22 ≤ 16.5: oscillation). Sample 3 climbs past its start (improves).
        let start = try Tensor([10, 10, 1] as [Float], shape: [3])
        var cp = try APGDCheckpoints(steps: 100, rho: 0.75, initialLoss: start)
        var best = start
        var decisions = [[Float]]()
        for i in 1...41 {
            let l1 = Float(1 + 0.01 * Double(i)), l2: Float = i % 2 == 0 ? 2 : 1, l3 = Float(1 + 0.1 * Double(i))
            let loss = try Tensor([l1, l2, l3], shape: [3])
            best = try loss.maximum(best)
            if let reduce = try cp.step(loss: loss, lossBest: best) { decisions.append(reduce.floats()) ; XCTAssertTrue(i == 22 || i == 41, "checkpoint at step \(i)") }
        }
        XCTAssertEqual(decisions.count, 2)
        // first checkpoint (step 22): sample 1 is not halved — the "halved last time" flag starts
        // true (AutoAttack's reduced_last_check of ones); sample 2 oscillates; sample 3 improves
        XCTAssertEqual(decisions[0], [0, 1, 0])
        // second checkpoint (step 22 + 19): sample 1 was not halved and its best did not improve
        XCTAssertEqual(decisions[1], [1, 1, 0])
    }
}
