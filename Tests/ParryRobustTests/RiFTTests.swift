import Foundation
import XCTest
@testable import ParryCore
@testable import ParryNN
@testable import ParryRobust

/// RiFT's pieces on tiny models: MRC's properties, the projection, the
/// ascent, fine-tuning touching one module only, and the choice of α.
final class RiFTTests: XCTestCase {
    func tinyNet(seed: UInt64 = 7) throws -> Sequential {
        Generator.current.reseed(seed)
        return Sequential([try Conv2d(1, 3, 3, padding: 1), try BatchNorm(3, spatial: true), Activation(.ReLU),
                           Flatten(), try Linear(3 * 4 * 4, 8), Activation(.ReLU), try Linear(8, 3)])
    }

    func data(_ n: Int, seed: UInt64) throws -> (Tensor, Tensor) {
        let g = Generator(seed: seed)
        return (try Tensor.rand([n, 1, 4, 4], generator: g), try Tensor.randint(0, 2, [n], generator: g))
    }

    func snapshot(_ m: Module) -> [[Float]] { m.stateDict().map { $0.tensor.to(.float32).floats() } }

    func testCandidatesAreConvAndLinearWeights() throws {
        XCTAssertEqual(RiFT.candidates(try tinyNet()), ["1", "5", "7"])
        let r = try ResNet(inChannels: 1, classes: 10, stem: 4, widths: [4, 8], blocks: [1, 1])
        XCTAssertEqual(RiFT.candidates(r), ["conv1", "layer1.1.conv1", "layer1.1.conv2", "layer2.1.conv1", "layer2.1.conv2",
                                            "layer2.1.shortcut.1", "fc"])
    }

    func testMRCIsNonNegativeZeroForZeroRadiusAndLeavesTheModelBitIdentical() throws {
        let net = try tinyNet()
        let (x, y) = try data(40, seed: 2)
        net.train()
        let before = snapshot(net)
        var o = RiFT.MRCOptions(); o.epochs = 3; o.batchSize = 16
        let table = try RiFT.criticality(net, x, y, options: o, generator: Generator(seed: 1))
        XCTAssertEqual(table.count, 3)
        for r in table { XCTAssertGreaterThanOrEqual(r.mrc, 0, r.module); XCTAssertEqual(r.mrc, r.lossMax - r.loss0, accuracy: 1e-12) }
        XCTAssertEqual(table.map(\.mrc), table.map(\.mrc).sorted())
        XCTAssertGreaterThan(table.last!.mrc, 0)                  // some module is critical
        XCTAssertEqual(snapshot(net), before)                     // bit-identical afterwards
        XCTAssertTrue(net.training)                               // mode restored
        XCTAssertTrue(net.allParameters().allSatisfy(\.requiresGrad))
        o.eps = 0
        for r in try RiFT.criticality(net, x, y, options: o, generator: Generator(seed: 1)) { XCTAssertEqual(r.mrc, 0, r.module) }
        XCTAssertEqual(snapshot(net), before)
    }

    func testTheProjectionKeepsDeltaInsideTheRelativeBall() throws {
        let net = try tinyNet()
        let (x, y) = try data(32, seed: 3)
        var o = RiFT.MRCOptions(); o.epochs = 4; o.batchSize = 8; o.lr = 5; o.eps = 0.05
        let w = try net.submodule("5").parameter("weight")!
        let run = try RiFT.ascent(net, weight: w, x, y, options: o, generator: Generator(seed: 4))
        let norm = try run.delta.norm().double()
        XCTAssertEqual(run.radius, 0.05 * (try w.norm().double()), accuracy: 1e-9)
        XCTAssertLessThanOrEqual(norm, run.radius * (1 + 1e-6))
        XCTAssertGreaterThan(norm, run.radius * 0.99)             // lr 5 overshoots: the projection binds
    }

    func testOnATinyLinearModelTheAscentRaisesTheLossEachPass() throws {
        // With a small step and a radius that never binds, each pass of
        // gradient ascent on the (smooth) cross-entropy increases it.
        Generator.current.reseed(11)
        let net = Sequential([Flatten(), try Linear(4, 3)])
        let g = Generator(seed: 5)
        let x = try Tensor.rand([24, 1, 2, 2], generator: g), y = try Tensor.randint(0, 2, [24], generator: g)
        var o = RiFT.MRCOptions(); o.epochs = 6; o.batchSize = 24; o.lr = 0.05; o.eps = 100
        let w = try net.submodule("2").parameter("weight")!
        let (loss0, _) = try RiFT.lossAndAccuracy(net, x, y)
        let run = try RiFT.ascent(net, weight: w, x, y, options: o, generator: Generator(seed: 6))
        var previous = loss0
        for l in run.losses { XCTAssertGreaterThan(l, previous); previous = l }
        XCTAssertLessThan(try run.delta.norm().double(), run.radius)
    }

    func testFinetuningChangesOnlyTheChosenModule() throws {
        let net = try tinyNet()
        let (x, y) = try data(48, seed: 8), (vx, vy) = try data(16, seed: 9)
        let others = net.namedParameters().filter { !$0.name.hasPrefix("5.") }.map { ($0.name, $0.tensor.floats()) }
        let chosenBefore = try net.submodule("5").parameter("weight")!.floats()
        var o = RiFT.FinetuneOptions(); o.epochs = 2; o.batchSize = 16; o.lr = 0.05
        let curve = try RiFT.finetune(net, module: "5", x, y, valX: vx, valY: vy, options: o, generator: Generator(seed: 10))
        XCTAssertEqual(curve.map(\.epoch), [1, 2])
        for (name, values) in others {
            XCTAssertEqual(net.namedParameters().first { $0.name == name }!.tensor.floats(), values, name)
        }
        XCTAssertNotEqual(try net.submodule("5").parameter("weight")!.floats(), chosenBefore)
        // the best epoch's weights are the ones kept
        let best = curve.max { $0.valAccuracy < $1.valAccuracy }!
        XCTAssertEqual(try RiFT.lossAndAccuracy(net, vx, vy).accuracy, best.valAccuracy, accuracy: 1e-12)
        XCTAssertThrowsError(try RiFT.finetune(net, module: "nope", x, y, valX: vx, valY: vy)) { e in
            XCTAssertTrue("\(e)".contains("no submodule named 'nope' (available: 1, 2, 3, 4, 5, 6, 7)"), "\(e)")
        }
    }

    func testAlphaIsTheBestCleanAmongThoseKeepingRobustness() throws {
        let pts = [RiFT.Point(alpha: 0, clean: 0.80, robust: 0.60), RiFT.Point(alpha: 0.1, clean: 0.81, robust: 0.598),
                   RiFT.Point(alpha: 0.2, clean: 0.83, robust: 0.594), RiFT.Point(alpha: 0.3, clean: 0.85, robust: 0.55)]
        XCTAssertEqual(try RiFT.chooseAlpha(pts, tolerance: 0.005).alpha, 0.1)
        XCTAssertEqual(try RiFT.chooseAlpha(pts, tolerance: 0.01).alpha, 0.2)
        XCTAssertEqual(try RiFT.chooseAlpha(pts, tolerance: 0).alpha, 0)
    }
}

/// ADV-COMP-SUM's regularizer forms (issue 18).
final class AdvCompSumTests: XCTestCase {
    func testTheMarginVectorOnHandMadeLogits() throws {
        // c = 3, y = 2 (0-based 1). h(x) = (1, 2, 4): margins h − h_y = (−1, 0, 2);
        // h(x′) = (2, 3, 1): margins (−1, 0, −2). ‖Δ margins‖ = ‖(0, 0, −4)‖ = 4, while
        // ‖Δ logits‖ = ‖(1, 1, −3)‖ = √11: the two readings differ.
        let z = try Tensor([1, 2, 4] as [Float], shape: [1, 3]), zp = try Tensor([2, 3, 1] as [Float], shape: [1, 3])
        let y = try Tensor([Int64(1)], shape: [1])
        let m = try RobustTraining.regularized(z, y, .margins), mp = try RobustTraining.regularized(zp, y, .margins)
        XCTAssertEqual(m.floats(), [-1, 0, 2])
        XCTAssertEqual(try (mp - m).norm(dim: 1).double(), 4, accuracy: 1e-6)
        let l = try RobustTraining.regularized(z, y, .logits), lp = try RobustTraining.regularized(zp, y, .logits)
        XCTAssertEqual(try (lp - l).norm(dim: 1).double(), 11.0.squareRoot(), accuracy: 1e-6)
    }

    func testRhoScalesTheCompSumTerm() throws {
        Generator.current.reseed(3)
        let lin = try Linear(4, 3)
        let x = try Tensor.rand([5, 4], generator: Generator(seed: 1)), y = try Tensor.randint(0, 2, [5], generator: Generator(seed: 2))
        let tm = ThreatModel(eps: 0.1)
        for tau in [0.5, 1.0, 1.5] {
            let l = try RobustTraining.advCompSumLoss({ try lin($0) }, module: lin, x, y, tau: tau, nu: 0, tm, alpha: 0.01, steps: 2, rho: 2)
            XCTAssertEqual(try l.double(), try Loss.compSum(lin(x) / 2, y, tau: tau).double(), accuracy: 1e-7)
        }
        XCTAssertThrowsError(try RobustTraining.advCompSumLoss({ try lin($0) }, module: lin, x, y, tau: 1, nu: 1, tm, alpha: 0.01, steps: 1, rho: 0))
    }
}
