import Foundation
import XCTest
@testable import ParryCore
@testable import ParryNN
@testable import ParryRobust

/// Attack properties on tiny fixed models (CleverHans/Foolbox-style checks).
final class AttackTests: XCTestCase {
    // A fixed linear 3-class model on 2×2 single-channel "images": z = (flatten(x) − 0.5)·W + b,
    // centred so that margins are small and attacks can succeed.
    let W = try! Tensor([1, -2, 0.5, 3, -1, 2, 1, -1, 0, 1, 2, -3] as [Float], shape: [4, 3])
    let b = try! Tensor([0.1, -0.2, 0] as [Float], shape: [3])
    var model: Classifier { { [W, b] x in try x.reshape([x.shape[0], -1]).binary(.sub, .float(0.5)).matmul(W).binary(.add, b) } }

    func data(_ n: Int = 16, seed: UInt64 = 1) throws -> (Tensor, Tensor) {
        let g = Generator(seed: seed)
        let x = try Tensor.rand([n, 1, 2, 2], generator: g).binary(.mul, .float(0.6)).binary(.add, .float(0.2))
        let y = try GradMode.noGrad { try model(x).extremum(largest: true, dim: 1).1 }   // clean-correct labels
        return (x, y)
    }

    func accuracy(_ x: Tensor, _ y: Tensor) throws -> Double {
        try GradMode.noGrad { try model(x).extremum(largest: true, dim: 1).1.binary(.eq, y).mean().item().double }
    }

    func assertInBall(_ adv: Tensor, _ x: Tensor, _ tm: ThreatModel, file: StaticString = #filePath, line: UInt = #line) throws {
        XCTAssertGreaterThanOrEqual(try adv.extremum(largest: false).0.item().double, tm.bounds.0 - 1e-6, file: file, line: line)
        XCTAssertLessThanOrEqual(try adv.extremum(largest: true).0.item().double, tm.bounds.1 + 1e-6, file: file, line: line)
        let d = try AttackMath.sampleNorm(adv.binary(.sub, x), tm.norm).extremum(largest: true).0.item().double
        XCTAssertLessThanOrEqual(d, tm.eps * (1 + 1e-5) + 1e-6, file: file, line: line)
    }

    func allAttacks(_ tm: ThreatModel) -> [(String, (Tensor, Tensor) throws -> Tensor)] {
        var pgd = Attacks.PGDOptions(); pgd.steps = 10
        var apgd = Attacks.APGDOptions(); apgd.steps = 20
        var apgdT = Attacks.APGDOptions(); apgdT.steps = 20; apgdT.targeted = true; apgdT.targetClasses = 2
        let m = model
        var out: [(String, (Tensor, Tensor) throws -> Tensor)] = [
            ("fgsm", { try Attacks.fgsm(m, $0, $1, tm) }),
            ("pgd", { try Attacks.pgd(m, $0, $1, tm, pgd, generator: Generator(seed: 5)) }),
            ("apgd", { try Attacks.apgd(m, $0, $1, tm, apgd, generator: Generator(seed: 5)) }),
            ("apgd-t", { try Attacks.apgd(m, $0, $1, tm, apgdT, generator: Generator(seed: 5)) }),
        ]
        if tm.norm == .linf {
            out.append(("mifgsm", { try Attacks.mifgsm(m, $0, $1, tm) }))
            out.append(("square", { try Attacks.square(m, $0, $1, tm, queries: 200, generator: Generator(seed: 5)) }))
        }
        return out
    }

    func testBallBoundsAndAccuracy() throws {
        let (x, y) = try data()
        for norm in [Norm.linf, .l2] {
            let tm = ThreatModel(eps: norm == .linf ? 0.1 : 0.3, norm: norm)
            for (name, run) in allAttacks(tm) {
                let adv = try run(x, y)
                XCTAssertEqual(adv.shape, x.shape, name)
                try assertInBall(adv, x, tm)
                XCTAssertLessThanOrEqual(try accuracy(adv, y), try accuracy(x, y), "\(name) \(norm)")
            }
        }
    }

    func testZeroEpsilonReturnsTheInput() throws {
        let (x, y) = try data()
        for (name, run) in allAttacks(ThreatModel(eps: 0)) {
            XCTAssertEqual(try run(x, y).floats(), x.floats(), name)
        }
    }

    func testPGDIsAtLeastAsStrongAsFGSMAndSeedsReproduce() throws {
        let (x, y) = try data(64)
        let tm = ThreatModel(eps: 0.08)
        var o = Attacks.PGDOptions(); o.steps = 20; o.alpha = 0.01
        let pgd = try Attacks.pgd(model, x, y, tm, o, generator: Generator(seed: 3))
        XCTAssertLessThanOrEqual(try accuracy(pgd, y), try accuracy(Attacks.fgsm(model, x, y, tm), y))
        XCTAssertLessThan(try accuracy(pgd, y), 1)
        XCTAssertEqual(try Attacks.pgd(model, x, y, tm, o, generator: Generator(seed: 3)).floats(), pgd.floats())
        let sq1 = try Attacks.square(model, x, y, tm, queries: 100, generator: Generator(seed: 9))
        let sq2 = try Attacks.square(model, x, y, tm, queries: 100, generator: Generator(seed: 9))
        XCTAssertEqual(sq1.floats(), sq2.floats())
    }

    func testPGDMatchesTheTorchattacksDefinition() throws {
        // random_start = false: x_{t+1} = clip_[0,1](x + clip_[−ε,ε](x_t + α·sign(∇CE(x_t)) − x)), by hand.
        let (x, y) = try data(8)
        let tm = ThreatModel(eps: 0.05)
        var o = Attacks.PGDOptions(); o.steps = 3; o.alpha = 0.02; o.randomStart = false
        var expected = x
        for _ in 0..<3 {
            let xv = try expected.detach().requiresGrad_()
            let g = try grad([Loss.crossEntropy(model(xv), y)], [xv])[0]!
            let stepped = try xv.detach().binary(.add, g.unary(.sign).binary(.mul, .float(0.02)))
            let delta = try stepped.binary(.sub, x).clamp(.float(-0.05), .float(0.05))
            expected = try x.binary(.add, delta).clamp(.int(0), .int(1))
        }
        XCTAssertEqual(try Attacks.pgd(model, x, y, tm, o).floats(), expected.floats())
        // FGSM is one step of size ε
        let xv = try x.detach().requiresGrad_()
        let g = try grad([Loss.crossEntropy(model(xv), y)], [xv])[0]!
        XCTAssertEqual(try Attacks.fgsm(model, x, y, tm).floats(),
                       try x.binary(.add, g.unary(.sign).binary(.mul, .float(0.05))).clamp(.int(0), .int(1)).floats())
    }

    func testLinearBinaryModelOptimum() throws {
        // z = [0, w·x]: for label 2 the loss grows fastest along −sign(w); the optimal
        // L∞ perturbation is −ε·sign(w), which PGD must find (inputs far from the bounds).
        let w = try Tensor([0.7, -1.3, 2, -0.4] as [Float], shape: [4, 1])
        let lin: Classifier = { x in
            let s = try x.reshape([x.shape[0], -1]).matmul(w)
            return try cat([Tensor.zeros([x.shape[0], 1]), s], dim: 1)
        }
        let x = try Tensor.full([3, 4], .float(0.5)), y = try Tensor([1, 1, 1] as [Int64], shape: [3])
        var o = Attacks.PGDOptions(); o.steps = 5; o.alpha = 0.05; o.randomStart = true
        let adv = try Attacks.pgd(lin, x, y, ThreatModel(eps: 0.1), o, generator: Generator(seed: 2))
        let expected = try x.binary(.sub, w.reshape([1, 4]).unary(.sign).binary(.mul, .float(0.1)))
        assertEqualFloats(adv.floats(), try expected.expand([3, 4]).floats(), tol: 1e-6)
    }

    func testTargetedAttacksReachTheTarget() throws {
        let (x, y) = try data(16)
        let target = try y.binary(.add, .int(1)).binary(.remainder, .int(3))
        var o = Attacks.PGDOptions(); o.steps = 50; o.alpha = 0.05; o.targeted = true
        let adv = try Attacks.pgd(model, x, target, ThreatModel(eps: 1), o, generator: Generator(seed: 1))
        let hit = try GradMode.noGrad { try model(adv).extremum(largest: true, dim: 1).1.binary(.eq, target).mean().item().double }
        XCTAssertEqual(hit, 1)
    }

    func testRestartsNeverLowerTheLoss() throws {
        let (x, y) = try data(32)
        let tm = ThreatModel(eps: 0.03)
        var one = Attacks.PGDOptions(); one.steps = 3; one.restarts = 1
        var many = one; many.restarts = 4
        let a1 = try Attacks.pgd(model, x, y, tm, one, generator: Generator(seed: 4))
        let a4 = try Attacks.pgd(model, x, y, tm, many, generator: Generator(seed: 4))
        let l1 = try Loss.crossEntropy(model(a1), y, reduction: .none).floats()
        let l4 = try Loss.crossEntropy(model(a4), y, reduction: .none).floats()
        let s4 = try AttackMath.success(model(a4), y, targeted: false).floats()
        for i in 0..<32 where s4[i] == 0 { XCTAssertGreaterThanOrEqual(l4[i], l1[i] - 1e-6) }
    }

    func testCWFindsSmallSuccessfulPerturbations() throws {
        let (x, y) = try data(8)
        let adv = try Attacks.cwL2(model, x, y, c: 10, steps: 100, lr: 0.05)
        let fooled = try AttackMath.success(model(adv), y, targeted: false).floats()
        XCTAssertGreaterThan(fooled.reduce(0, +), 4)
        let d = try AttackMath.sampleNorm(adv.binary(.sub, x), .l2).floats()
        for i in 0..<8 where fooled[i] == 0 { XCTAssertEqual(d[i], 0) }     // unchanged where it failed
        try assertInBall(adv, x, ThreatModel(eps: 10, norm: .l2))
    }

    func testAutoAttackAndEvaluation() throws {
        let (x, y) = try data(32)
        let tm = ThreatModel(eps: 0.1)
        let (adv, log) = try Attacks.autoattack(model, x, y, tm, version: .fast, generator: Generator(seed: 1))
        try assertInBall(adv, x, tm)
        XCTAssertEqual(log.map(\.0), ["apgd-ce", "apgd-t", "square"])
        XCTAssertEqual(log.last!.1, try accuracy(adv, y), accuracy: 1e-9)
        XCTAssertTrue(zip(log, log.dropFirst()).allSatisfy { $0.1 >= $1.1 })    // robust accuracy only falls
        let m = model
        var o = Attacks.PGDOptions(); o.steps = 10
        let report = try Evaluation.evaluate(model, x, y, attacks: [
            ("fgsm", { try Attacks.fgsm(m, $0, $1, tm) }, true),
            ("pgd", { try Attacks.pgd(m, $0, $1, tm, o) }, true),
        ], batchSize: 10)
        XCTAssertEqual(report.clean, 1)
        XCTAssertLessThanOrEqual(report.worstCase, report.robust.map(\.1).min()!)
        XCTAssertTrue(report.warnings.isEmpty, "\(report.warnings)")
        // probabilities instead of logits are flagged
        let soft: Classifier = { try m($0).softmax(dim: 1) }
        XCTAssertTrue(try Evaluation.sanity(soft, x, y).contains { $0.contains("probabilities") })
    }

    func assertEqualFloats(_ a: [Float], _ b: [Float], tol: Float, file: StaticString = #filePath, line: UInt = #line) {
        XCTAssertEqual(a.count, b.count, file: file, line: line)
        for (u, v) in zip(a, b) where abs(u - v) > tol { XCTFail("\(u) vs \(v)", file: file, line: line); return }
    }
}
