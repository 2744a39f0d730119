import Foundation
import XCTest
@testable import ParryCore
@testable import ParryNN

/// The modules and losses the multi-modal encoders and calibration heads need (issue 16).
final class EncoderModuleTests: XCTestCase {
    func testConv1dMatchesTheDefinitionAndGradchecks() throws {
        let g = Generator(seed: 1)
        let x = try Tensor.randn([2, 3, 7], generator: g).requiresGrad_()
        let w = try Tensor.randn([4, 3, 3], generator: g).requiresGrad_(), b = try Tensor.randn([4], generator: g).requiresGrad_()
        let y = try F.conv1d(x, w, b, stride: 2, padding: 1)
        XCTAssertEqual(y.shape, [2, 4, 4])              // (7 + 2 − 3)/2 + 1
        // y[n, o, t] = b_o + Σ_c Σ_k w[o, c, k] · xpad[n, c, 2t + k]
        let xv = x.floats(), wv = w.floats(), bv = b.floats(), yv = y.floats()
        for n in 0..<2 { for o in 0..<4 { for t in 0..<4 {
            var s = Double(bv[o])
            for c in 0..<3 { for k in 0..<3 {
                let i = 2 * t + k - 1
                if i >= 0 && i < 7 { s += Double(wv[(o * 3 + c) * 3 + k]) * Double(xv[(n * 3 + c) * 7 + i]) }
            } }
            XCTAssertEqual(Double(yv[(n * 4 + o) * 4 + t]), s, accuracy: 1e-4)
        } } }
        let r = try gradcheck({ t in try F.conv1d(t[0], t[1], t[2], stride: 2, padding: 1) }, inputs: [x, w, b])
        XCTAssertTrue(r.passed, r.worst)
        XCTAssertThrowsError(try F.conv1d(Tensor.zeros([2, 3, 7]), Tensor.zeros([4, 2, 3]), nil))
    }

    func testPoolingOverSequencesAndSets() throws {
        let x = try Tensor([1, 5, 2, 4, 3, 0, 7, 6] as [Float], shape: [1, 1, 8]).requiresGrad_()
        XCTAssertEqual(try F.maxPool1d(x, kernel: 2).floats(), [5, 4, 3, 7])
        XCTAssertEqual(try F.maxPool1d(x, kernel: 3, stride: 2).floats(), [5, 4, 7])
        XCTAssertEqual(try F.adaptiveMaxPool1d(x, 3).floats(), [5, 4, 7])   // windows [0,3) [2,6) [5,8)
        XCTAssertEqual(try F.adaptiveMaxPool1d(x, 1).floats(), [7])
        let y = try Tensor.randn([2, 3, 9], generator: Generator(seed: 2)).requiresGrad_()
        for f in [{ try F.maxPool1d($0, kernel: 3, stride: 2) }, { try F.adaptiveMaxPool1d($0, 4) }] as [(Tensor) throws -> Tensor] {
            let r = try gradcheck({ t in try f(t[0]) }, inputs: [y])
            XCTAssertTrue(r.passed, r.worst)
        }
    }

    func testLayerNormMatchesPyTorchsDefinition() throws {
        let x = try Tensor([1, 2, 3, 4, 2, 2, 2, 6] as [Float], shape: [2, 4])
        let ln = try LayerNorm([4])
        let y = try ln(x).floats()
        // row 1: mean 2.5, biased var 1.25
        let inv = 1 / (1.25 + 1e-5).squareRoot()
        for (k, v) in [1.0, 2, 3, 4].enumerated() { XCTAssertEqual(Double(y[k]), (v - 2.5) * inv, accuracy: 1e-5) }
        let z = try Tensor.randn([3, 2, 4], generator: Generator(seed: 3)).requiresGrad_()
        let w = try Tensor.randn([2, 4], generator: Generator(seed: 4)).requiresGrad_(), b = try Tensor.randn([2, 4], generator: Generator(seed: 5)).requiresGrad_()
        let r = try gradcheck({ t in try F.layerNorm(t[0], [2, 4], weight: t[1], bias: t[2]) }, inputs: [z, w, b])
        XCTAssertTrue(r.passed, r.worst)
        XCTAssertThrowsError(try LayerNorm([4])(Tensor.zeros([2, 3])))
    }

    func testEmbeddingLooksUpRowsAndSumsRepeatedGradients() throws {
        let e = try Embedding(5, 3)
        let idx = try Tensor([1, 4, 1] as [Int64], shape: [3])
        let y = try e(idx)
        XCTAssertEqual(y.shape, [3, 3])
        let w = e.parameter("weight")!.floats()
        XCTAssertEqual(Array(y.floats()[3..<6]), Array(w[12..<15]))
        try y.sum().backward()
        let gw = e.parameter("weight")!.grad!.floats()
        XCTAssertEqual(Array(gw[3..<6]), [2, 2, 2])       // row 1 used twice
        XCTAssertEqual(Array(gw[0..<3]), [0, 0, 0])
        XCTAssertThrowsError(try e(Tensor([5] as [Int64], shape: [1])))
        let lua = try Embedding(5, 3, indexBase: 1)        // what parry.nn.Embedding makes: indices 1..5
        XCTAssertEqual(try lua(Tensor([5] as [Int64], shape: [1])).shape, [1, 3])
    }

    func testFreezeKeepsASubtreeInEvalModeWithoutGradients() throws {
        let encoder = Sequential([try Linear(4, 4), try BatchNorm(4, spatial: false)])
        let head = try Linear(4, 2)
        let model = Sequential([encoder, head])
        try encoder.freeze()
        model.train()
        XCTAssertTrue(head.training)
        XCTAssertFalse(encoder.training)
        XCTAssertTrue(encoder.namedModules().allSatisfy { !$0.module.training })
        XCTAssertTrue(encoder.allParameters().allSatisfy { !$0.requiresGrad })
        let before = encoder.stateDict().map { $0.tensor.floats() }
        let x = try Tensor.randn([8, 4], generator: Generator(seed: 6))
        try Loss.crossEntropy(model(x), Tensor([0, 1, 0, 1, 0, 1, 0, 1] as [Int64], shape: [8])).backward()
        XCTAssertNotNil(head.parameter("weight")!.grad)
        XCTAssertEqual(encoder.stateDict().map { $0.tensor.floats() }, before)   // BatchNorm statistics too
        let copy = try model.clone()
        copy.train()
        XCTAssertFalse(try copy.submodule("1").training)
        try encoder.unfreeze()
        model.train()
        XCTAssertTrue(encoder.training)
        XCTAssertTrue(encoder.allParameters().allSatisfy { $0.requiresGrad })
    }

    func testEmbeddingLossesOnHandMadeEmbeddings() throws {
        // InfoNCE with positives orthogonal to every embedding (and so identical
        // negatives): every logit is 0 and the loss is log B.
        let z4 = try Tensor([1, 0, 0, 0, 0, 1, 0, 0] as [Float], shape: [2, 4])
        let p4 = try Tensor([0, 0, 1, 0, 0, 0, 0, 1] as [Float], shape: [2, 4])
        XCTAssertEqual(try Loss.infoNCE(z4, p4).double(), log(2), accuracy: 1e-6)
        XCTAssertEqual(try Loss.infoNCE(z4, p4, symmetric: true).double(), log(2), accuracy: 1e-6)
        // positives equal to the embeddings, orthogonal negatives: log(1 + (B−1)·e^{−1/τ})
        let z = try Tensor([1, 0, 0, 0, 1, 0, 0, 0, 1] as [Float], shape: [3, 3])
        let l = try Loss.infoNCE(z, z).double()
        XCTAssertEqual(l, log(1 + 2 * exp(-1 / 0.07)), accuracy: 1e-6)
        XCTAssertEqual(try Loss.l2Align(z, z).double(), 0)
        XCTAssertEqual(try Loss.l2Align(z, z * 2).double(), 1, accuracy: 1e-6)    // each row ‖e_i‖² = 1
        // fixed-center CE = cross_entropy on cosine/τ logits
        let centers = try Tensor([2, 0, 0, 0, 3, 0] as [Float], shape: [2, 3])
        let e = try Tensor([1, 1, 0, 0.5, -1, 0] as [Float], shape: [2, 3]), y = try Tensor([0, 1] as [Int64], shape: [2])
        let cos: [[Double]] = [[1 / 2.0.squareRoot(), 1 / 2.0.squareRoot()], [0.5 / 1.25.squareRoot(), -1 / 1.25.squareRoot()]]
        var expected = 0.0
        for i in 0..<2 {
            let zs = cos[i].map { $0 / 0.01 }, m = zs.max()!
            expected += -(zs[i] - m - log(zs.map { exp($0 - m) }.reduce(0, +)))
        }
        XCTAssertEqual(try Loss.fixedCenterCE(e, centers, y).double(), expected / 2, accuracy: 1e-3)
        XCTAssertThrowsError(try Loss.fixedCenterCE(e, Tensor.zeros([2, 4]), y))
        XCTAssertThrowsError(try Loss.fixedCenterCE(e, centers, y, temperature: 0))
        let zz = try Tensor.randn([4, 3], generator: Generator(seed: 7)).requiresGrad_()
        let pp = try Tensor.randn([4, 3], generator: Generator(seed: 8)).requiresGrad_()
        let r = try gradcheck({ t in try Loss.infoNCE(t[0], t[1], temperature: 0.5, symmetric: true) }, inputs: [zz, pp])
        XCTAssertTrue(r.passed, r.worst)
    }
}
