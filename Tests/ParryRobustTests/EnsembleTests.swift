import Foundation
import XCTest
@testable import ParryCore
@testable import ParryNN
@testable import ParryRobust

/// Hooks, feature taps, DVERGE, ADP, GAL and the transfer protocol (issue 15).
final class EnsembleTests: XCTestCase {
    // MARK: hooks

    func testTensorHooksRunInRegistrationOrderReplaceTheGradientAndRemove() throws {
        let x = try Tensor([1, 2, 3] as [Float], shape: [3]).requiresGrad_()
        let h = try x * 2                          // non-leaf
        var log = [String]()
        let first = try h.registerHook { g in log.append("h1 \(g.floats())"); return try g * 10 }
        try h.registerHook { g in log.append("h2 \(g.floats())"); return nil }
        try x.registerHook { g in log.append("x \(g.floats())"); return nil }
        try (h * h).sum().backward(retainGraph: true)
        // d(Σh²)/dh = 2h = {4, 8, 12}; hook 1 multiplies by 10, hook 2 sees that; x gets 2·(that)
        XCTAssertEqual(log, ["h1 [4.0, 8.0, 12.0]", "h2 [40.0, 80.0, 120.0]", "x [80.0, 160.0, 240.0]"])
        XCTAssertEqual(x.grad?.floats(), [80, 160, 240])   // a leaf's hook runs before accumulation
        first.remove(); first.remove()                      // idempotent
        x.grad = nil; log = []
        try (h * h).sum().backward()
        XCTAssertEqual(log, ["h2 [4.0, 8.0, 12.0]", "x [8.0, 16.0, 24.0]"])
        XCTAssertEqual(x.grad?.floats(), [8, 16, 24])
        XCTAssertThrowsError(try Tensor.zeros([2]).registerHook { _ in nil })
    }

    func testModuleHooksFireInPyTorchsOrder() throws {
        let lin = try Linear(2, 2)
        var log = [String]()
        let pre = lin.registerForwardPreHook { _, x in log.append("pre"); return try x * 2 }
        lin.registerForwardHook { _, input, out in log.append("forward input \(input.floats())"); return nil }
        lin.registerBackwardHook { _, gi, go in
            log.append("backward \(gi != nil) \(go.shape)")
            return try gi.map { try $0 * 0 }
        }
        let x = try Tensor([1, 1] as [Float], shape: [1, 2]).requiresGrad_()
        let y = try lin(x)
        log.append("after forward")
        try y.sum().backward()
        XCTAssertEqual(log, ["pre", "forward input [2.0, 2.0]", "after forward", "backward true [1, 2]"])
        XCTAssertEqual(x.grad?.floats(), [0, 0])            // the backward hook zeroed the input gradient
        XCTAssertNotNil(lin.parameter("weight")!.grad)      // parameters still get theirs
        pre.remove()
        log = []
        _ = try lin(Tensor([1, 1] as [Float], shape: [1, 2]))
        XCTAssertEqual(log, ["forward input [1.0, 1.0]"])
    }

    // MARK: feature taps

    func testResNet20TapsAreTheOfficialTwentyAndStopEarly() throws {
        let net = try Models.resnet20(inChannels: 1, classes: 10)
        let names = try Models.featureLayers(net)
        XCTAssertEqual(names.count, 20)
        XCTAssertEqual(Array(names.prefix(3)), ["bn1", "layer1.1.bn1", "layer1.1.sum"])
        XCTAssertEqual(names.last, "fc")
        net.eval()
        let x = try Tensor.rand([2, 1, 16, 16], generator: Generator(seed: 1))
        let (_, all) = try net.features(x, at: ["layer2.1.sum"])
        let one = try net.feature(x, at: "layer2.1.sum")
        XCTAssertEqual(one.floats(), all["layer2.1.sum"]!.floats())
        XCTAssertLessThan(try one.min().double(), 0)        // before the ReLU
        // the sum equals bn2's output plus the shortcut
        let block = try net.submodule("layer2.1")
        let (_, parts) = try net.features(x, at: ["layer2.1.bn2", "layer1.3", "layer2.1.shortcut"])
        XCTAssertEqual(try (parts["layer2.1.bn2"]! + parts["layer2.1.shortcut"]!).floats(), one.floats())
        XCTAssertEqual(block.pointNames, ["sum"])
        XCTAssertThrowsError(try net.feature(x, at: "layer9.sum")) { e in
            XCTAssertTrue("\(e)".contains("layer1.1.sum"), "\(e)")
        }
        XCTAssertEqual(try Models.featureLayers(Models.smallCNN()), ["1", "4", "8", "10"])
    }

    // MARK: distillation

    func testDistillationLowersTheFeatureDistanceMonotonicallyAndStaysInTheBall() throws {
        // A fixed linear toy: the feature is Wz; descent on ‖Wz − Wx_s‖² with small sign steps.
        let g = Generator(seed: 3)
        let net = Sequential([try Linear(8, 4), Activation(.ReLU), try Linear(4, 3)])
        let x = try Tensor.rand([4, 8], generator: g) * 0.5 + 0.25, xs = try Tensor.rand([4, 8], generator: g)
        let target = try net.feature(xs, at: "1")
        var o = Diversity.DistillOptions(); o.eps = 0.2; o.alpha = 0.01
        var previous = Double.infinity
        for steps in 0...10 {
            o.steps = steps
            let z = try Diversity.featureDistill(net, layer: "1", x, xs, o)
            let d = try Loss.mse(net.feature(z, at: "1"), target).double()
            XCTAssertLessThan(d, previous + 1e-9, "step \(steps)")
            previous = d
            XCTAssertLessThanOrEqual(try (z - x).abs().max().double(), 0.2 + 1e-6)
            XCTAssertGreaterThanOrEqual(try z.min().double(), 0); XCTAssertLessThanOrEqual(try z.max().double(), 1)
        }
        o.steps = 0
        XCTAssertEqual(try Diversity.featureDistill(net, layer: "1", x, xs, o).floats(), x.floats())
        o.eps = -1
        XCTAssertThrowsError(try Diversity.featureDistill(net, layer: "1", x, xs, o))
    }

    func mlps(_ m: Int, seed: UInt64) throws -> [Module] {
        try (0..<m).map { i in
            try Generator.$current.withValue(Generator(seed: seed + UInt64(i))) { try Models.mlp([6, 8, 3]) }
        }
    }

    func testWithZeroEpsDVERGEsLossIsMMinusOneCrossEntropies() throws {
        let models = try mlps(3, seed: 10)
        let g = Generator(seed: 4)
        let x = try Tensor.rand([5, 6], generator: g), xs = try Tensor.rand([5, 6], generator: g)
        let y = try Tensor([0, 1, 2, 1, 0] as [Int64], shape: [5])
        let ce = try models.map { try Loss.crossEntropy($0(x), y).double() }
        var o = Diversity.DVERGEOptions(); o.distill.eps = 0
        let opts = try models.map { try SGD($0.allParameters(), lr: 0.1) as Optimizer }
        let losses = try Diversity.dvergeStep(models: models, optimizers: opts, x: x, y: y, xs: xs, layers: ["2", "2", "2"], options: o)
        for i in 0..<3 { XCTAssertEqual(losses[i], 2 * ce[i], accuracy: 1e-5) }
    }

    func testRoundRobinDistilsWithThePreBatchModels() throws {
        let g = Generator(seed: 5)
        let x = try Tensor.rand([6, 6], generator: g), xs = try Tensor.rand([6, 6], generator: g)
        let y = try Tensor([0, 1, 2, 0, 1, 2] as [Int64], shape: [6])
        var o = Diversity.DVERGEOptions(); o.distill.eps = 0.3; o.distill.alpha = 0.05
        let layers = ["4", "4"]
        // what dvergeStep does
        let a = try mlps(2, seed: 20)
        let optA = try a.map { try SGD($0.allParameters(), lr: 0.5) as Optimizer }
        _ = try Diversity.dvergeStep(models: a, optimizers: optA, x: x, y: y, xs: xs, layers: layers, options: o)
        // by hand: distil both with the pre-batch models, then update in turn
        let b = try mlps(2, seed: 20)
        let optB = try b.map { try SGD($0.allParameters(), lr: 0.5) as Optimizer }
        let d = try b.map { try Diversity.featureDistill($0, layer: "4", x, xs, o.distill) }
        for i in 0..<2 {
            let l = try Loss.crossEntropy(b[i](d[1 - i]), y)
            optB[i].zeroGrad(); try l.backward(); try optB[i].step()
        }
        // the wrong order: model 2 distilled after model 1 has stepped
        let c = try mlps(2, seed: 20)
        let optC = try c.map { try SGD($0.allParameters(), lr: 0.5) as Optimizer }
        let d2 = try Diversity.featureDistill(c[1], layer: "4", x, xs, o.distill)
        let l1 = try Loss.crossEntropy(c[0](d2), y); optC[0].zeroGrad(); try l1.backward(); try optC[0].step()
        let d1 = try Diversity.featureDistill(c[0], layer: "4", x, xs, o.distill)
        let l2 = try Loss.crossEntropy(c[1](d1), y); optC[1].zeroGrad(); try l2.backward(); try optC[1].step()
        let wa = a[1].allParameters()[0].floats(), wb = b[1].allParameters()[0].floats(), wc = c[1].allParameters()[0].floats()
        XCTAssertEqual(wa, wb)
        XCTAssertNotEqual(wa, wc)   // the toy is sensitive to the order
    }

    // MARK: ADP and GAL

    func testADPTermsOnHandMadePredictions() throws {
        // 2 members, 3 classes, one sample of class 0; logits log p give the softmax p exactly.
        let p1: [Double] = [0.5, 0.3, 0.2], p2: [Double] = [0.6, 0.1, 0.3]
        let z1 = try Tensor(p1.map { Float(log($0)) }, shape: [1, 3]), z2 = try Tensor(p2.map { Float(log($0)) }, shape: [1, 3])
        let y = try Tensor([0] as [Int64], shape: [1])
        let (h, ld) = try Diversity.adpTerms([z1, z2], y)
        let pm = zip(p1, p2).map { ($0 + $1) / 2 }
        let entropy = pm.reduce(0) { $0 - $1 * log($1 + 1e-20) }
        // non-maximal (true class removed) predictions, normalized: u1 ∝ (0.3, 0.2), u2 ∝ (0.1, 0.3)
        let c = (0.3 * 0.1 + 0.2 * 0.3) / ((0.3 * 0.3 + 0.2 * 0.2).squareRoot() * (0.1 * 0.1 + 0.3 * 0.3).squareRoot())
        let logdet = log((1 + 1e-6) * (1 + 1e-6) - c * c)
        XCTAssertEqual(try h.double(), entropy, accuracy: 1e-5)
        XCTAssertEqual(try ld.double(), logdet, accuracy: 1e-4)
        let loss = try Diversity.adpLoss([z1, z2], y)
        XCTAssertEqual(try loss.double(), -log(0.5) - log(0.6) - 2 * entropy - 0.5 * logdet, accuracy: 1e-4)
        XCTAssertThrowsError(try Diversity.adpTerms([z1, try Tensor.zeros([1, 4])], y))
    }

    func testLogdetMatchesClosedFormsAndItsGradient() throws {
        let a = try Tensor([4, 2, 0.6, 2, 5, 1, 0.6, 1, 3] as [Float], shape: [1, 3, 3])
        // det by cofactors: 4(15−1) − 2(6−0.6) + 0.6(2−3) = 56 − 10.8 − 0.6 = 44.6
        XCTAssertEqual(try F.logdetSPD(a).double(), log(44.6), accuracy: 1e-5)
        // d logdet / dA = A⁻ᵀ, checked by finite differences on a symmetric parametrization
        let b = try Tensor([2, 0.3, 0.1, 1.5] as [Float], shape: [2, 2]).requiresGrad_()
        let r = try gradcheck({ t in try F.logdetSPD((t[0] + t[0].transpose(0, 1)).unsqueeze(0)) }, inputs: [b])
        XCTAssertTrue(r.passed, r.worst)
        XCTAssertThrowsError(try F.logdetSPD(Tensor([1, 2, 2, 1] as [Float], shape: [2, 2])))
    }

    func testGALCoherenceOnHandMadeGradientsAndItsParameterGradient() throws {
        let g1 = try Tensor([1, 0] as [Float], shape: [1, 2]), g2 = try Tensor([0, 1] as [Float], shape: [1, 2])
        let g3 = try Tensor([1, 1] as [Float], shape: [1, 2])
        let c = 1 / 2.0.squareRoot()
        XCTAssertEqual(try Diversity.galCoherence([g1, g2, g3]).double(), log(exp(0) + 2 * exp(c)), accuracy: 1e-6)
        // the loss is differentiable in the parameters through the input gradients (double backward)
        let models = try (0..<2).map { i in
            try Generator.$current.withValue(Generator(seed: 40 + UInt64(i))) { Sequential([try Linear(3, 4), Activation(.Tanh), try Linear(4, 2)]) }
        }
        let x = try Tensor.rand([3, 3], generator: Generator(seed: 6)), y = try Tensor([0, 1, 1] as [Int64], shape: [3])
        let w = models[0].allParameters()[0]
        let r = try gradcheck({ _ in try Diversity.galLoss(models, x, y, lambda: 0.5) }, inputs: [w], eps: 1e-2, atol: 2e-3, rtol: 5e-2)
        XCTAssertTrue(r.passed, r.worst)
    }

    // MARK: attacks and the transfer protocol

    func testSGMWithGammaOneIsPlainMomentumPGDBitForBit() throws {
        let net = try Generator.$current.withValue(Generator(seed: 8)) { try Models.resnet(depth: 8, width: 4, inChannels: 1, classes: 3) }
        net.eval()
        let x = try Tensor.rand([3, 1, 8, 8], generator: Generator(seed: 9)), y = try Tensor([0, 1, 2] as [Int64], shape: [3])
        var o = Attacks.MomentumOptions(); o.steps = 5; o.randomStart = true
        let tm = ThreatModel(eps: 0.1)
        let plain = try Attacks.momentum({ try net($0) }, x, y, tm, o, generator: Generator(seed: 1))
        let sgm1 = try Attacks.sgm(net, x, y, tm, gamma: 1, o, generator: Generator(seed: 1))
        XCTAssertEqual(plain.floats(), sgm1.floats())
        let sgm = try Attacks.sgm(net, x, y, tm, gamma: 0.2, o, generator: Generator(seed: 1))
        XCTAssertNotEqual(plain.floats(), sgm.floats())
        XCTAssertFalse(net.namedModules().contains { $0.module.hasHooks })   // hooks removed afterwards
        XCTAssertThrowsError(try Attacks.sgm(try Models.mlp([64, 3]), x, y, tm))
    }

    func testDiverseInputsResizeAndPadOrPassThrough() throws {
        let x = try Tensor.rand([2, 1, 10, 10], generator: Generator(seed: 2)) + 1    // all ≥ 1, so padding (0) shows
        XCTAssertEqual(try Attacks.diverseInput(x, p: 0, rate: 0.9).floats(), x.floats())
        let d = try Attacks.diverseInput(x, p: 1, rate: 0.5, generator: Generator(seed: 3))
        XCTAssertEqual(d.shape, x.shape)
        let zeros = d.floats().filter { $0 == 0 }.count
        XCTAssertGreaterThan(zeros, 0)
        XCTAssertTrue(d.floats().allSatisfy { $0 == 0 || Set(x.floats()).contains($0) })
    }

    func testTransferabilityDiagonalIsWhiteBoxSuccess() throws {
        // two members that mostly agree: the second is the first with its weights perturbed
        let first = try Generator.$current.withValue(Generator(seed: 60)) { try Models.mlp([4, 16, 3]) }
        let second = try first.clone()
        try GradMode.noGrad { for p in second.allParameters() { try p.copy_(p + 0.3 * Tensor.randn(p.shape, generator: Generator(seed: 61))) } }
        let models: [Module] = [first, second]
        let g = Generator(seed: 11)
        let x = try Tensor.rand([40, 4], generator: g)
        // labels every model agrees on, so most samples count
        let y = try GradMode.noGrad { try models[0](x).argmax(dim: 1) }
        let t = try Transfer.transferability(models, x, y, eps: 0.2, steps: 10, restarts: 2, seed: 7)
        let idx = try Transfer.commonlyCorrect(models.map { m in { try m($0) } }, x, y, limit: nil, generator: Generator(seed: 7))
        XCTAssertEqual(t.samples, idx.count)
        let xs = try x.indexSelect(0, idx), ys = try y.indexSelect(0, idx)
        var o = Attacks.PGDOptions(); o.alpha = 0.04; o.steps = 10
        for i in 0..<2 {
            var robust = try Tensor.ones([idx.count])
            for r in 0..<2 {
                let adv = try Attacks.pgd({ try models[i]($0) }, xs, ys, ThreatModel(eps: 0.2), o, generator: Generator(seed: 7 + UInt64(r * 2 + i)))
                robust = try robust * Transfer.correct({ try models[i]($0) }, adv, ys)
            }
            XCTAssertEqual(t.successRate[i][i], 1 - (try robust.mean().double()), accuracy: 1e-12)
            XCTAssertEqual(t.successRate[i].count, 3)
        }
        XCTAssertGreaterThan(t.successRate[0][0], 0)
    }
}

/// Calibration heads (issue 16): the schedule, the attack's ball, where gradients go.
final class CalibrationTests: XCTestCase {
    func testOneCycleMatchesPyTorchsOneCycleLR() {
        // torch.optim.lr_scheduler.OneCycleLR(max_lr=1, total_steps=10): 0.04 at step 0, 1 at step 2 (0.3·10 − 1), 4e-6 at step 9
        let lr = (0..<10).map { Calibration.oneCycle($0, total: 10, maxLR: 1, pctStart: 0.3, divFactor: 25, finalDivFactor: 1e4) }
        XCTAssertEqual(lr[0], 0.04, accuracy: 1e-12)
        XCTAssertEqual(lr[1], 0.04 + (1 - 0.04) / 2, accuracy: 1e-12)     // half-way up the cosine
        XCTAssertEqual(lr[2], 1, accuracy: 1e-12)
        XCTAssertEqual(lr[9], 4e-6, accuracy: 1e-15)
        XCTAssertEqual(lr[3], 4e-6 + (1 - 4e-6) / 2 * (1 + cos(Double.pi / 7)), accuracy: 1e-12)
    }

    func testTheAttackStaysInTheBallAndOnlyTheHeadLearns() throws {
        let encoder = try Generator.$current.withValue(Generator(seed: 3)) {
            Sequential([try Linear(5, 8), try BatchNorm(8, spatial: false), Activation(.ReLU), try Linear(8, 4)])
        }
        let head = try Linear(4, 4)
        let x = try Tensor.rand([12, 5], generator: Generator(seed: 4)), y = try Tensor((0..<12).map { Int64($0 % 3) }, shape: [12])
        let centers = try Tensor.randn([3, 4], generator: Generator(seed: 5))
        encoder.eval()
        let clean = try Calibration.embed(encoder, nil, x)
        for loss in [Calibration.AttackLoss.ce, .embedding] {
            let adv = try Calibration.attack(encoder, head, x, y, clean: clean, centers: centers, loss: loss,
                                             ThreatModel(eps: 0.1, bounds: (0, 1)), alpha: 0.05, steps: 5)
            XCTAssertLessThanOrEqual(try (adv - x).abs().max().double(), 0.1 + 1e-6)
            XCTAssertGreaterThanOrEqual(try adv.min().double(), 0)
        }
        encoder.train()
        let before = encoder.stateDict().map { $0.tensor.floats() }, centers0 = centers.floats(), w0 = head.parameter("weight")!.floats()
        var o = Calibration.Options(); o.eps = 0.1; o.steps = 2; o.epochs = 1; o.batchSize = 6; o.consistency = 1
        _ = try Calibration.calibrate(encoder: encoder, head: head, centers: centers, x: x, y: y, options: o)
        XCTAssertEqual(encoder.stateDict().map { $0.tensor.floats() }, before)
        XCTAssertTrue(encoder.allParameters().allSatisfy { $0.grad == nil && $0.requiresGrad })   // no gradient reached it; flags restored
        XCTAssertTrue(encoder.training)
        XCTAssertEqual(centers.floats(), centers0)
        XCTAssertNotEqual(head.parameter("weight")!.floats(), w0)
    }
}
