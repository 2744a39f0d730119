import XCTest
@testable import ParryCore

/// The operator layer (Tensor+Operators.swift): values by hand, dtypes as
/// the kernels promote them, bit-identity with the named ops it stands for,
/// gradients, and errors.
final class OperatorTests: XCTestCase {
    let a = t([1, -2, 3, 0.5], [2, 2])
    let b = t([4, 5, -6, 2], [2, 2])

    func testArithmeticValuesByHand() throws {
        XCTAssertEqual(try (a + b).floats(), [5, 3, -3, 2.5])
        XCTAssertEqual(try (a - b).floats(), [-3, -7, 9, -1.5])
        XCTAssertEqual(try (a * b).floats(), [4, -10, -18, 1])
        XCTAssertEqual(try (a / b).floats(), [0.25, -0.4, -0.5, 0.25])
        XCTAssertEqual(try (-a).floats(), [-1, 2, -3, -0.5])
        XCTAssertEqual(try (2.5 * a).floats(), [2.5, -5, 7.5, 1.25])
        XCTAssertEqual(try (a * 2).floats(), [2, -4, 6, 1])
        XCTAssertEqual(try (1 - a).floats(), [0, 3, -2, 0.5])
        XCTAssertEqual(try (1.5 + a).floats(), [2.5, -0.5, 4.5, 2])
        XCTAssertEqual(try (a - 1).floats(), [0, -3, 2, -0.5])
        XCTAssertEqual(try (6 / b).floats(), [1.5, 1.2, -1, 3])
        XCTAssertEqual(try (a / 2).floats(), [0.5, -1, 1.5, 0.25])
        // precedence is Swift's: prefix minus, then * /, then + -
        XCTAssertEqual(try (-a * 2 + b / 2).floats(), [0, 6.5, -9, 0])
    }

    func testBroadcastingAndPromotionAreTheKernels() throws {
        let col = t([10, 20], [2, 1])
        XCTAssertEqual(try (a + col).floats(), [11, 8, 23, 20.5])
        let i = try Tensor([Int64(1), 2, 3], shape: [3])
        XCTAssertEqual(try (i * 2).dtype, .int64)                 // Int scalar keeps int64
        XCTAssertEqual(try (i * 2).int64s(), [2, 4, 6])
        XCTAssertEqual(try (i * 0.5).dtype, .float32)             // Double scalar promotes
        XCTAssertEqual(try (i / 2).dtype, .float32)               // true division
        XCTAssertEqual(try (i / 2).floats(), [0.5, 1, 1.5])
        XCTAssertEqual(try (10 - i).int64s(), [9, 8, 7])
        XCTAssertThrowsError(try a + t([1, 2, 3], [3])) { e in
            XCTAssertTrue("\(e)".contains("cannot be broadcast"), "\(e)")
        }
    }

    func testSameBitsAsTheNamedOps() throws {
        // The migration relies on these being the same computation, not just close.
        let x = try Tensor.randn([7, 5], generator: Generator(seed: 3))
        let y = try Tensor.randn([7, 5], generator: Generator(seed: 4))
        let beta = 0.3717
        XCTAssertEqual(try (beta * x).floats(), try x.binary(.mul, .float(beta)).floats())
        XCTAssertEqual(try (x + beta * y).floats(), try x.binary(.add, y.binary(.mul, .float(beta))).floats())
        XCTAssertEqual(try (1 - x).floats(), try x.neg().binary(.add, .int(1)).floats())
        XCTAssertEqual(try (x.sign() * beta).floats(), try x.unary(.sign).binary(.mul, .float(beta)).floats())
        XCTAssertEqual(try x.clamp(-0.5, 0.5).floats(), try x.clamp(.float(-0.5), .float(0.5)).floats())
        XCTAssertEqual(try x.clamp(min: 0.1).floats(), try x.clamp(.float(0.1), nil).floats())
        XCTAssertEqual(try x.clamp(max: 0.1).floats(), try x.clamp(nil, .float(0.1)).floats())
        XCTAssertEqual(try x.maskedFill(x.gt(0), -1e30).floats(),
                       try whereSelect(x.binary(.gt, .int(0)), Tensor.scalar(.float(-1e30)), x).floats())
    }

    func testNamedMethods() throws {
        let x = t([-4, 0, 9, 0.25], [4])
        XCTAssertEqual(try x.abs().floats(), [4, 0, 9, 0.25])
        XCTAssertEqual(try x.sign().floats(), [-1, 0, 1, 1])
        XCTAssertEqual(try x.relu().floats(), [0, 0, 9, 0.25])
        XCTAssertEqual(try x.abs().sqrt().floats(), [2, 0, 3, 0.5])
        XCTAssertEqual(try x.pow(2).floats(), [16, 0, 81, 0.0625])
        XCTAssertEqual(try x.square().floats(), [16, 0, 81, 0.0625])
        XCTAssertEqual(try x.maximum(0.5).floats(), [0.5, 0.5, 9, 0.5])
        XCTAssertEqual(try x.minimum(t([0, 0, 0, 0], [4])).floats(), [-4, 0, 0, 0])
        XCTAssertEqual(try x.gt(0).floats(), [0, 0, 1, 1])
        XCTAssertEqual(try x.le(0).floats(), [1, 1, 0, 0])
        XCTAssertEqual(try x.eq(0).logicalNot().floats(), [1, 0, 1, 1])
        XCTAssertEqual(try x.max().double(), 9)
        XCTAssertEqual(try x.min().double(), -4)
        XCTAssertEqual(try x.sum().double(), 5.25)
        XCTAssertEqual(try x.mean().double(), 1.3125)
        let m = t([1, 7, 3, 8, 2, 0], [2, 3])
        let (v, i) = try m.max(dim: 1)
        XCTAssertEqual(v.floats(), [7, 8])
        XCTAssertEqual(i.int64s(), [1, 0])
        XCTAssertEqual(try m.argmin(dim: 1).int64s(), [0, 2])
        XCTAssertEqual(try m.min(dim: 0, keepdim: true).values.shape, [1, 3])
        XCTAssertEqual(try Tensor.full([2], -1.5).floats(), [-1.5, -1.5])
        XCTAssertEqual(Tensor(0.25).shape, [])
        XCTAssertEqual(try whereSelect(x.gt(0), 1.0, x).floats(), [-4, 0, 1, 1])
        XCTAssertEqual(try whereSelect(x.gt(0), x, 1.0).floats(), [1, 1, 9, 0.25])
    }

    func testCompoundFormsRebindAndNeverWriteIntoStorage() throws {
        let original = t([1, 2, 3], [3])
        let view = try original.narrow(0, 0, 2)
        var v = view
        try v += 10
        try v *= t([2, 3], [2])
        XCTAssertEqual(v.floats(), [22, 36])
        XCTAssertEqual(original.floats(), [1, 2, 3])        // the view's storage is untouched
        XCTAssertFalse(v.storage === original.storage)
    }

    func testInPlaceNamedForms() throws {
        let p = t([1, 2, 3], [3])
        try p.mul_(2).add_(t([1, 1, 1], [3])).sub_(0.5)
        XCTAssertEqual(p.floats(), [2.5, 4.5, 6.5])
        try p.div_(0.5)
        XCTAssertEqual(p.floats(), [5, 9, 13])
        try p.clamp_(6, 10)
        XCTAssertEqual(p.floats(), [6, 9, 10])
        try p.fill_(0.75)
        XCTAssertEqual(p.floats(), [0.75, 0.75, 0.75])
    }

    func testGradientsThroughOperators() throws {
        // l = Σ (2x − y)² / 4 + Σ (1 − x)·y: ∂l/∂x = (2x − y) − y, ∂l/∂y = −(2x − y)/2 + (1 − x)
        let x = try t([0.5, -1, 2], [3]).requiresGrad_()
        let y = try t([1, 3, -2], [3]).requiresGrad_()
        let l = try ((2 * x - y).pow(2) / 4).sum() + ((1 - x) * y).sum()
        let g = try grad([l], [x, y])
        let xs = x.floats(), ys = y.floats()
        assertClose(g[0]!.floats(), (0..<3).map { (2 * xs[$0] - ys[$0]) - ys[$0] })
        assertClose(g[1]!.floats(), (0..<3).map { -(2 * xs[$0] - ys[$0]) / 2 + (1 - xs[$0]) })
        // and against finite differences for a composite with unary methods
        let z = try t([0.3, -0.7, 1.1, 0.2], [4]).requiresGrad_()
        let r = try gradcheck({ v in try ((v[0].tanh() * 3 + v[0].sigmoid()) / (v[0].square() + 1)).sum() }, inputs: [z])
        XCTAssertTrue(r.passed, r.worst)
    }
}
