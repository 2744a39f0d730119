import XCTest
@testable import ParryCore

/// Every differentiable op against central finite differences, then
/// second-order gradients (create_graph) against differences of first-order ones.
final class GradTests: XCTestCase {
    let g = Generator(seed: 11)

    /// A leaf with values drawn from N(0, 1) shifted/scaled, requiring grad.
    func leaf(_ shape: [Int], shift: Float = 0, scale: Float = 1) throws -> Tensor {
        let t = try Tensor.randn(shape, generator: g).binary(.mul, .float(Double(scale))).binary(.add, .float(Double(shift)))
        return try t.requiresGrad_()
    }

    func check(_ name: String, _ inputs: [Tensor], file: StaticString = #filePath, line: UInt = #line,
               _ f: @escaping ([Tensor]) throws -> Tensor) throws {
        let r = try gradcheck(f, inputs: inputs)
        XCTAssertTrue(r.passed, "\(name): \(r.worst)", file: file, line: line)
    }

    func testElementwiseBinaryWithBroadcasting() throws {
        let a = try leaf([2, 3]), b = try leaf([3]), pos = try leaf([2, 3], shift: 2, scale: 0.3)
        try check("add", [a, b]) { try $0[0].binary(.add, $0[1]) }
        try check("sub", [a, b]) { try $0[0].binary(.sub, $0[1]) }
        try check("mul", [a, b]) { try $0[0].binary(.mul, $0[1]) }
        try check("div", [a, pos]) { try $0[0].binary(.div, $0[1]) }
        try check("pow", [pos, b]) { try $0[0].binary(.pow, $0[1]) }
        try check("pow scalar", [a]) { try $0[0].binary(.pow, .int(3)) }
        try check("maximum", [a, b]) { try $0[0].binary(.maximum, $0[1]) }
        try check("minimum", [a, b]) { try $0[0].binary(.minimum, $0[1]) }
        try check("remainder", [pos]) { try $0[0].binary(.remainder, .float(0.7)) }
        try check("scalar first", [a]) { try Tensor.scalar(.float(2)).binary(.sub, $0[0]) }
    }

    func testUnary() throws {
        let a = try leaf([7]), pos = try leaf([7], shift: 2, scale: 0.4)
        for op: UnaryOp in [.neg, .exp, .sigmoid, .tanh, .sin, .cos, .expm1, .erf] {
            try check(op.rawValue, [a]) { try $0[0].unary(op) }
        }
        for op: UnaryOp in [.log, .sqrt, .rsqrt, .log1p, .abs, .relu] {
            try check(op.rawValue, [pos]) { try $0[0].unary(op) }
        }
        let mixed = try Tensor([-1.5, -0.5, 0.5, 1.5] as [Float], shape: [4]).requiresGrad_()
        try check("abs", [mixed]) { try $0[0].unary(.abs) }
        try check("relu", [mixed]) { try $0[0].unary(.relu) }
        try check("clamp", [mixed]) { try $0[0].clamp(.float(-1), .float(1)) }
        try check("sign has zero gradient", [mixed]) { try $0[0].unary(.sign) }
    }

    func testReductions() throws {
        let a = try leaf([3, 4])
        try check("sum", [a]) { try $0[0].sum() }
        try check("sum dim", [a]) { try $0[0].sum(dim: 1) }
        try check("sum keepdim", [a]) { try $0[0].sum(dim: 0, keepdim: true) }
        try check("mean", [a]) { try $0[0].mean(dim: 1) }
        try check("var", [a]) { try $0[0].variance(dim: 1) }
        try check("std", [a]) { try $0[0].std() }
        try check("max dim", [a]) { try $0[0].extremum(largest: true, dim: 1).0 }
        try check("min dim keepdim", [a]) { try $0[0].extremum(largest: false, dim: 0, keepdim: true).0 }
        try check("max all", [a]) { try $0[0].extremum(largest: true).0 }
        try check("norm", [a]) { try $0[0].norm() }
        try check("norm dim", [a]) { try $0[0].norm(dim: 1) }
        try check("norm 1", [a]) { try $0[0].norm(p: 1, dim: 0) }
        try check("norm 3", [a]) { try $0[0].norm(p: 3) }
        try check("norm inf", [a]) { try $0[0].norm(p: .infinity, dim: 1) }
        try check("softmax", [a]) { try $0[0].softmax(dim: 1) }
        try check("softmax dim 0", [a]) { try $0[0].softmax(dim: 0) }
        try check("log_softmax", [a]) { try $0[0].softmax(dim: 1, log: true) }
    }

    func testNormOfZeroHasZeroGradient() throws {
        let z = try Tensor.zeros([3]).requiresGrad_()
        let gz = try grad([z.norm()], [z])[0]
        XCTAssertEqual(gz?.floats(), [0, 0, 0])
    }

    func testMatmulShapes() throws {
        let m = try leaf([3, 4]), n = try leaf([4, 2]), v = try leaf([4]), w = try leaf([3])
        let b = try leaf([2, 3, 4]), c = try leaf([2, 4, 2])
        try check("2d", [m, n]) { try $0[0].matmul($0[1]) }
        try check("matrix-vector", [m, v]) { try $0[0].matmul($0[1]) }
        try check("vector-matrix", [w, m]) { try $0[0].matmul($0[1]) }
        try check("dot", [v, v]) { try $0[0].matmul($0[1]) }
        try check("batched", [b, c]) { try $0[0].matmul($0[1]) }
        try check("batched broadcast", [b, n]) { try $0[0].matmul($0[1]) }
        try check("transposed operand", [n, m]) { try $0[1].matmul($0[0]).transpose(0, 1) }
    }

    func testViewsAndIndexing() throws {
        let a = try leaf([2, 3, 4])
        try check("view", [a]) { try $0[0].view([6, 4]) }
        try check("reshape of transpose", [a]) { try $0[0].transpose(0, 2).reshape([-1]) }
        try check("squeeze/unsqueeze", [a]) { try $0[0].unsqueeze(1).squeeze(1) }
        try check("permute", [a]) { try $0[0].permute([2, 0, 1]).binary(.mul, .float(3)) }
        try check("expand", [try leaf([3, 1])]) { try $0[0].expand([2, 3, 5]) }
        try check("narrow", [a]) { try $0[0].narrow(2, 1, 2) }
        try check("select", [a]) { try $0[0].select(1, 2) }
        try check("index_select with repeats", [a]) { try $0[0].indexSelect(2, [3, 0, 3]) }
        let idx = try Tensor([2, 0, 1, 1, 0, 2] as [Int64], shape: [2, 3])
        try check("gather", [try leaf([2, 3])]) { try $0[0].gather(1, idx) }
        try check("clone", [a]) { try $0[0].clone() }
        let mask = try Tensor([1, 0, 1] as [Float], shape: [3])
        try check("where", [try leaf([2, 3]), try leaf([3])]) { try whereSelect(mask, $0[0], $0[1]) }
        try check("cat", [try leaf([2, 3]), try leaf([1, 3])]) { try cat([$0[0], $0[1]], dim: 0) }
        try check("stack", [try leaf([2]), try leaf([2])]) { try stack([$0[0], $0[1]], dim: 1) }
        try check("split", [try leaf([5])]) { try $0[0].split(2, dim: 0)[2] }
    }

    func testAccumulationAndRetain() throws {
        let x = try Tensor([1, 2, 3] as [Float], shape: [3]).requiresGrad_()
        let y = try x.binary(.mul, x).sum()            // dy/dx = 2x
        try y.backward(retainGraph: true)
        XCTAssertEqual(x.grad?.floats(), [2, 4, 6])
        try y.backward()                                // accumulates
        XCTAssertEqual(x.grad?.floats(), [4, 8, 12])
        XCTAssertThrowsError(try y.backward())          // graph freed
        // grad() leaves .grad alone
        let z = try x.exp().sum()
        let gz = try grad([z], [x])[0]
        assertClose(gz!.floats(), [1, 2, 3].map { Float(Foundation.exp(Double($0))) })
        XCTAssertEqual(x.grad?.floats(), [4, 8, 12])
    }

    func testNoGradAndInPlaceGuards() throws {
        let x = try Tensor([1, 2] as [Float], shape: [2]).requiresGrad_()
        let y = try GradMode.noGrad { try x.binary(.mul, .int(2)) }
        XCTAssertFalse(y.requiresGrad)
        XCTAssertThrowsError(try x.binary_(.add, Tensor.scalar(.int(1))))   // leaf requiring grad
        _ = try GradMode.noGrad { try x.binary_(.add, Tensor.scalar(.int(1))) }  // optimizer-style update
        XCTAssertEqual(x.floats(), [2, 3])
        // modifying a saved tensor after recording is caught at backward
        let w = try Tensor([1, 1] as [Float], shape: [2])
        let z = try x.binary(.mul, w).sum()
        try w.fill_(.int(5))
        XCTAssertThrowsError(try z.backward())
    }

    func testSecondOrder() throws {
        // f(x) = Σ tanh(x)·x²;  check d/dx of (df/dx · v) numerically via gradcheck on the first gradient.
        let x = try leaf([5])
        try check("grad of grad: elementwise", [x]) { xs in
            let f = try xs[0].unary(.tanh).binary(.mul, xs[0].binary(.mul, xs[0])).sum()
            return try grad([f], [xs[0]], createGraph: true)[0]!
        }
        let m = try leaf([3, 4]), w = try leaf([4, 2])
        try check("grad of grad: matmul + softmax", [m, w]) { xs in
            let y = try xs[0].matmul(xs[1]).softmax(dim: 1, log: true).select(1, 0).sum()
            let gx = try grad([y], [xs[0]], createGraph: true)[0]!
            return try gx.binary(.mul, gx).sum()          // a gradient-norm penalty, as regularizers use
        }
        try check("grad of grad: sigmoid, exp, div", [x]) { xs in
            let f = try xs[0].unary(.sigmoid).binary(.div, xs[0].exp().binary(.add, .int(1))).sum()
            return try grad([f], [xs[0]], createGraph: true)[0]!
        }
    }
}
