import XCTest
@testable import ParryCore

final class ReduceTests: XCTestCase {
    let a = t([1, 5, 3, 4, 2, 6], [2, 3])

    func testSumMean() throws {
        XCTAssertEqual(try a.sum().item(), .float(21))
        XCTAssertEqual(try a.sum(dim: 0).floats(), [5, 7, 9])
        XCTAssertEqual(try a.sum(dim: 1, keepdim: true).shape, [2, 1])
        XCTAssertEqual(try a.mean(dim: 1).floats(), [3, 4])
        // a strided (transposed) input reduces the same way
        XCTAssertEqual(try a.transpose(0, 1).sum(dim: 1).floats(), [5, 7, 9])
    }

    func testVarianceStd() throws {
        // rows {1,5,3}: mean 3, squared deviations 4+4+0 = 8 → unbiased 4, biased 8/3
        XCTAssertEqual(try a.variance(dim: 1).floats()[0], 4, accuracy: 1e-6)
        XCTAssertEqual(try a.variance(dim: 1, correction: 0).floats()[0], 8.0 / 3, accuracy: 1e-6)
        XCTAssertEqual(try a.std(dim: 1).floats()[0], 2, accuracy: 1e-6)
    }

    func testExtremaWithIndices() throws {
        let (v, i) = try a.extremum(largest: true, dim: 1)
        XCTAssertEqual(v.floats(), [5, 6])
        XCTAssertEqual(i.int64s(), [1, 2])
        let (mn, mi) = try a.extremum(largest: false)
        XCTAssertEqual(try mn.item(), .float(1))
        XCTAssertEqual(mi, 0)
        XCTAssertThrowsError(try Tensor.zeros([0]).extremum(largest: true))
    }

    func testNaNPropagatesThroughMax() throws {
        let (v, i) = try t([1, .nan, 3], [3]).extremum(largest: true, dim: 0)
        XCTAssertTrue(v.floats()[0].isNaN)
        XCTAssertEqual(i.int64s(), [1])
    }

    func testNorms() throws {
        let x = t([3, -4], [2])
        XCTAssertEqual(try x.norm().item().double, 5, accuracy: 1e-6)
        XCTAssertEqual(try x.norm(p: 1).item().double, 7, accuracy: 1e-6)
        XCTAssertEqual(try x.norm(p: .infinity).item().double, 4, accuracy: 1e-6)
        XCTAssertEqual(try x.norm(p: 3).item().double, pow(91, 1.0 / 3), accuracy: 1e-5)
    }

    func testSoftmaxMatchesDefinitionAndIsStable() throws {
        let x = t([1, 2, 3, 1000, 1001, 1002], [2, 3])
        let p = try x.softmax(dim: 1).floats()
        let e = [exp(-2.0), exp(-1.0), 1.0]
        let z = e.reduce(0, +)
        let expected = (e + e).map { Float($0 / z) }   // shift invariance: both rows equal
        assertClose(p, expected, tol: 1e-6)
        let lp = try x.softmax(dim: 1, log: true).floats()
        assertClose(lp, expected.map { Float(log(Double($0))) }, tol: 1e-5)
        // along dim 0 of the transpose = along dim 1 of the original
        assertClose(try x.transpose(0, 1).softmax(dim: 0).transpose(0, 1).floats(), expected, tol: 1e-6)
    }
}
