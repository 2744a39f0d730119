import XCTest
@testable import ParryCore

final class ViewTests: XCTestCase {
    func testViewsShareStorage() throws {
        let a = t([0, 1, 2, 3, 4, 5], [2, 3])
        let v = try a.view([3, 2])
        try v.fill_(.int(7))
        XCTAssertEqual(a.floats(), [Float](repeating: 7, count: 6))
        XCTAssertTrue(v.storage === a.storage)
    }

    func testTransposeStrides() throws {
        let a = try t([0, 1, 2, 3, 4, 5], [2, 3]).transpose(0, 1)
        XCTAssertEqual(a.shape, [3, 2])
        XCTAssertEqual(a.strides, [1, 3])
        XCTAssertFalse(a.isContiguous)
        XCTAssertEqual(a.floats(), [0, 3, 1, 4, 2, 5])
        XCTAssertThrowsError(try a.view([6]))                  // needs a copy
        XCTAssertEqual(try a.reshape([6]).floats(), [0, 3, 1, 4, 2, 5])
    }

    func testViewOfNonContiguousWhenCompatible() throws {
        // Narrowing rows keeps each row contiguous, so splitting the last dim is a view.
        let a = try Tensor.arange(.int(0), .int(11)).to(.float32).reshape([3, 4]).narrow(0, 1, 2)
        let v = try a.view([2, 2, 2])
        XCTAssertTrue(v.storage === a.storage)
        XCTAssertEqual(v.floats(), [4, 5, 6, 7, 8, 9, 10, 11])
    }

    func testInferShape() throws {
        XCTAssertEqual(try Tensor.inferShape([-1, 3], numel: 12), [4, 3])
        XCTAssertThrowsError(try Tensor.inferShape([-1, -1], numel: 12))
        XCTAssertThrowsError(try Tensor.inferShape([5, -1], numel: 12))
        XCTAssertThrowsError(try Tensor.inferShape([2, 2], numel: 12))
    }

    func testNarrowSelectExpand() throws {
        let a = t([0, 1, 2, 3, 4, 5], [2, 3])
        XCTAssertEqual(try a.narrow(1, 1, 2).floats(), [1, 2, 4, 5])
        XCTAssertEqual(try a.select(0, 1).floats(), [3, 4, 5])
        XCTAssertThrowsError(try a.select(0, 2))
        let e = try t([1, 2], [2, 1]).expand([2, 3])
        XCTAssertEqual(e.strides, [1, 0])
        XCTAssertEqual(e.floats(), [1, 1, 1, 2, 2, 2])
        XCTAssertThrowsError(try a.expand([4, 3]))
    }

    func testPermuteSqueezeUnsqueeze() throws {
        let a = try Tensor.zeros([2, 1, 3])
        XCTAssertEqual(try a.permute([2, 0, 1]).shape, [3, 2, 1])
        XCTAssertEqual(try a.squeeze().shape, [2, 3])
        XCTAssertEqual(try a.squeeze(0).shape, [2, 1, 3])
        XCTAssertEqual(try a.unsqueeze(3).shape, [2, 1, 3, 1])
        XCTAssertThrowsError(try a.permute([0, 0, 1]))
    }

    func testSplitChunkCatStack() throws {
        let a = try Tensor.arange(.int(1), .int(7)).to(.float32)
        XCTAssertEqual(try a.split(4, dim: 0).map(\.shape), [[4], [3]])
        XCTAssertEqual(try a.chunk(3, dim: 0).map(\.shape), [[3], [3], [1]])
        let c = try cat(try a.split(2, dim: 0).reversed(), dim: 0)
        XCTAssertEqual(c.floats(), [7, 5, 6, 3, 4, 1, 2])
        let s = try stack([t([1, 2], [2]), t([3, 4], [2])], dim: 1)
        XCTAssertEqual(s.shape, [2, 2])
        XCTAssertEqual(s.floats(), [1, 3, 2, 4])
    }

    func testIndexSelectAndGather() throws {
        let a = t([0, 1, 2, 3, 4, 5], [2, 3])
        XCTAssertEqual(try a.indexSelect(1, [2, 0]).floats(), [2, 0, 5, 3])
        XCTAssertThrowsError(try a.indexSelect(1, [3]))
        let idx = try Tensor([2, 0, 1, 1] as [Int64], shape: [2, 2])
        // gather dim 1: out[i][j] = a[i][idx[i][j]]
        XCTAssertEqual(try a.gather(1, idx).floats(), [2, 0, 4, 4])
        XCTAssertThrowsError(try a.gather(1, try Tensor([3] as [Int64], shape: [1, 1])))
    }

    /// A contiguous input takes the row-copy path; the same values in a
    /// strided layout take the element path: both give the same tensor, for
    /// every dim, repeated indices, int64, and a selection big enough to be
    /// copied on two threads.
    func testIndexSelectOfContiguousAndStridedInputsAgree() throws {
        let g = Generator(seed: 3)
        for (shape, count) in [([3, 5, 4], 7), ([2, 6], 9), ([400, 784], 450)] {
            let a = try Tensor.randn(shape, generator: g)
            let strided = try a.transpose(0, shape.count - 1).contiguous().transpose(0, shape.count - 1)
            XCTAssertTrue(a.isContiguous && !strided.isContiguous)
            for dim in 0..<shape.count {
                let idx = (0..<count).map { ($0 * 7 + 3) % shape[dim] }
                let fast = try a.indexSelect(dim, idx), slow = try strided.indexSelect(dim, idx)
                XCTAssertEqual(fast.shape, slow.shape)
                XCTAssertEqual(fast.floats().map(\.bitPattern), slow.floats().map(\.bitPattern), "\(shape) dim \(dim)")
            }
        }
        let ints = try Tensor((0..<24).map { Int64($0 * $0) }, shape: [4, 6])
        XCTAssertEqual(try ints.indexSelect(1, [5, 0, 5]).int64s(), [25, 0, 25, 121, 36, 121, 289, 144, 289, 529, 324, 529])
        XCTAssertEqual(try ints.indexSelect(0, []).shape, [0, 6])
    }

    func testCopyBetweenOverlappingViews() throws {
        let a = t([1, 2, 3, 4], [4])
        try a.narrow(0, 1, 3).copy_(a.narrow(0, 0, 3))
        XCTAssertEqual(a.floats(), [1, 1, 2, 3])
    }
}
