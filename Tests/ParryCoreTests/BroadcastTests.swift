import XCTest
@testable import ParryCore

final class BroadcastTests: XCTestCase {
    func testShapes() throws {
        XCTAssertEqual(try broadcastShapes([2, 1, 3], [4, 1]), [2, 4, 3])
        XCTAssertEqual(try broadcastShapes([], [3]), [3])
        XCTAssertEqual(try broadcastShapes([5, 0], [1]), [5, 0])
        XCTAssertThrowsError(try broadcastShapes([2, 3], [4]))
    }

    func testRowPlusColumn() throws {
        // col {3,1} + row {1,4}: out[i][j] = col[i] + row[j]
        let col = t([0, 10, 20], [3, 1]), row = t([1, 2, 3, 4], [4])
        let out = try col.binary(.add, row)
        XCTAssertEqual(out.shape, [3, 4])
        var expected = [Float]()
        for i in 0..<3 { for j in 0..<4 { expected.append(Float(i * 10 + j + 1)) } }
        assertClose(out.floats(), expected)
    }

    func testPerChannelBlocksBothWays() throws {
        // x {2,3,2,4} with a per-channel {1,3,1,1} operand (constant over 2×4 = 8 trailing
        // elements): the block fast path, checked against elementwise arithmetic by index.
        let x = try Tensor.arange(.int(0), .int(47)).to(.float32).reshape([2, 3, 2, 4])
        let c = t([10, 20, 30], [1, 3, 1, 1])
        let sum = try x.binary(.add, c).floats(), diff = try c.binary(.sub, x).floats()
        for i in 0..<48 {
            let ch = (i / 8) % 3
            XCTAssertEqual(sum[i], Float(i) + Float(10 * (ch + 1)))
            XCTAssertEqual(diff[i], Float(10 * (ch + 1)) - Float(i))
        }
        // a strided (transposed) per-row operand over a contiguous input
        let m = try Tensor.arange(.int(0), .int(15)).to(.float32).reshape([2, 8])
        let col = t([1, 2], [1, 2]).transposeRaw(0, 1)       // {2,1}, stride 1 along dim 0
        assertClose(try m.binary(.mul, col).floats(), (0..<16).map { Float($0) * ($0 < 8 ? 1 : 2) })
    }

    func testTypePromotion() throws {
        let i = try Tensor([1, 2, 3] as [Int64], shape: [3])
        XCTAssertEqual(try i.binary(.add, .int(1)).dtype, .int64)
        XCTAssertEqual(try i.binary(.add, .float(0.5)).dtype, .float32)
        XCTAssertEqual(try i.binary(.div, .int(2)).dtype, .float32)      // true division
        assertClose(try i.binary(.div, .int(2)).floats(), [0.5, 1, 1.5])
        XCTAssertEqual(try i.binary(.pow, .int(3)).int64s(), [1, 8, 27])
        XCTAssertEqual(try i.binary(.lt, .int(2)).floats(), [1, 0, 0])   // float masks
    }

    func testOnStridedViews() throws {
        // a transposed view added to a contiguous tensor uses the strided path
        let a = try t([1, 2, 3, 4, 5, 6], [2, 3]).transpose(0, 1)             // {3,2}: [[1,4],[2,5],[3,6]]
        let b = t([10, 20], [2])
        assertClose(try a.binary(.mul, b).floats(), [10, 80, 20, 100, 30, 120])
    }

    func testInPlaceRequiresTargetShapeAndDType() throws {
        let a = t([1, 2, 3], [3])
        try a.binary_(.add, t([1], [1]))
        assertClose(a.floats(), [2, 3, 4])
        XCTAssertThrowsError(try a.binary_(.add, t([1, 2, 3, 4, 5, 6], [2, 3])))
        let i = try Tensor([1, 2] as [Int64], shape: [2])
        XCTAssertThrowsError(try i.binary_(.div, Tensor.scalar(.int(2))))  // true division gives float32
    }

    func testInPlaceOnAView() throws {
        let a = t([1, 2, 3, 4], [2, 2])
        try a.select(1, 0).binary_(.mul, Tensor.scalar(.int(10)))  // first column
        assertClose(a.floats(), [10, 2, 30, 4])
    }

    func testWhere() throws {
        let m = t([1, 0, 1], [3])
        assertClose(try whereSelect(m, t([1, 2, 3], [3]), Tensor.scalar(.float(-1))).floats(), [1, -1, 3])
    }

    func testSigmoidIsStableForLargeInputs() throws {
        let out = try t([-1000, 0, 1000], [3]).unary(.sigmoid).floats()
        XCTAssertEqual(out, [0, 0.5, 1])
    }
}
