import XCTest
@testable import ParryNN
import ParryCore

final class IntervalBoundsTests: XCTestCase {
    func testBoundsContainSampledOutputsAndAreExactForOneLinearLayer() throws {
        try Generator.$current.withValue(Generator(seed: 3)) {
            let net = Sequential([try Linear(4, 16), Activation(.ReLU), try Linear(16, 8), Activation(.Tanh), try Linear(8, 3)])
            let center = try Tensor.randn([1, 4]), eps = 0.1
            let (lo, hi) = try IntervalBounds.propagate(net, lo: center - eps, hi: center + eps)
            // 10,000 points of the box: every output inside the bounds
            let x = try center + (Tensor.rand([10_000, 4]) * 2 - 1) * eps
            let y = try net(x)
            XCTAssertEqual(try (y - lo).min().double() >= -1e-5, true)
            XCTAssertEqual(try (hi - y).min().double() >= -1e-5, true)
            // one affine layer: the bounds are attained at the box's corners
            let lin = try Linear(4, 3)
            let (l1, h1) = try IntervalBounds.propagate(lin, lo: center - eps, hi: center + eps)
            let w = try XCTUnwrap(lin.parameter("weight")).floats(), b = try XCTUnwrap(lin.parameter("bias")).floats()
            let c = center.floats()
            for j in 0..<3 {
                var hiCorner = Double(b[j]), loCorner = Double(b[j])
                for i in 0..<4 {
                    let wi = Double(w[j * 4 + i])
                    hiCorner += wi * (Double(c[i]) + (wi >= 0 ? eps : -eps))
                    loCorner += wi * (Double(c[i]) - (wi >= 0 ? eps : -eps))
                }
                XCTAssertEqual(Double(h1.floats()[j]), hiCorner, accuracy: 1e-5)
                XCTAssertEqual(Double(l1.floats()[j]), loCorner, accuracy: 1e-5)
            }
            // zero width in, zero width out
            let (l0, h0) = try IntervalBounds.propagate(net, lo: center, hi: center)
            XCTAssertEqual(try (h0 - l0).abs().max().double(), 0, accuracy: 1e-6)
            XCTAssertEqual(try (h0 - net(center)).abs().max().double(), 0, accuracy: 1e-5)
        }
    }

    func testBadInput() throws {
        let lin = try Linear(2, 2)
        XCTAssertThrowsError(try IntervalBounds.propagate(lin, lo: Tensor.ones([1, 2]), hi: Tensor.zeros([1, 2])))
        XCTAssertThrowsError(try IntervalBounds.propagate(Activation(.GELU), lo: Tensor.zeros([1, 2]), hi: Tensor.ones([1, 2])))
        XCTAssertThrowsError(try IntervalBounds.propagate(MaxPool2d(2), lo: Tensor.zeros([1, 1, 2, 2]), hi: Tensor.ones([1, 1, 2, 2])))
    }
}
