import XCTest
@testable import ParryCore

final class MatmulTests: XCTestCase {
    /// Reference product by triple loop in Double.
    func naive(_ a: [Float], _ b: [Float], m: Int, k: Int, n: Int) -> [Float] {
        var c = [Float](repeating: 0, count: m * n)
        for i in 0..<m { for j in 0..<n {
            var s = 0.0
            for l in 0..<k { s += Double(a[i * k + l]) * Double(b[l * n + j]) }
            c[i * n + j] = Float(s)
        } }
        return c
    }

    func testAgainstNaiveLoop() throws {
        let g = Generator(seed: 3)
        for (m, k, n) in [(1, 1, 1), (3, 5, 2), (17, 33, 9), (64, 1, 64)] {
            let a = try Tensor.randn([m, k], generator: g), b = try Tensor.randn([k, n], generator: g)
            assertClose(try a.matmul(b).floats(), naive(a.floats(), b.floats(), m: m, k: k, n: n), tol: 1e-4)
        }
    }

    func testTransposedAndStridedOperands() throws {
        let g = Generator(seed: 4)
        let at = try Tensor.randn([5, 3], generator: g), b = try Tensor.randn([5, 4], generator: g)
        let a = try at.transpose(0, 1)                                   // BLAS transpose, no copy
        let expected = naive(a.floats(), b.floats(), m: 3, k: 5, n: 4)
        assertClose(try a.matmul(b).floats(), expected, tol: 1e-4)
        let big = try Tensor.randn([6, 10], generator: g)
        let sliced = try big.narrow(1, 2, 5).transpose(0, 1)          // {5,6} with row stride 1, col stride 10
        let stepped = Tensor(storage: big.storage, shape: [3, 5], strides: [20, 2], offset: 0, dtype: .float32)
        assertClose(try stepped.matmul(sliced).floats(),
                    naive(stepped.floats(), sliced.floats(), m: 3, k: 5, n: 6), tol: 1e-4)
    }

    func testVectorAndBatchedShapes() throws {
        let v = t([1, 2, 3], [3])
        XCTAssertEqual(try v.matmul(v).shape, [])
        XCTAssertEqual(try v.matmul(v).item(), .float(14))
        let m = t([1, 0, 0, 0, 1, 0], [2, 3])
        XCTAssertEqual(try m.matmul(v).floats(), [1, 2])
        XCTAssertEqual(try v.matmul(m.transpose(0, 1)).floats(), [1, 2])
        let g = Generator(seed: 5)
        let a = try Tensor.randn([4, 2, 3], generator: g), b = try Tensor.randn([3, 5], generator: g)
        let c = try a.matmul(b)
        XCTAssertEqual(c.shape, [4, 2, 5])
        for i in 0..<4 {
            assertClose(try c.select(0, i).floats(), naive(try a.select(0, i).floats(), b.floats(), m: 2, k: 3, n: 5), tol: 1e-4)
        }
        XCTAssertThrowsError(try m.matmul(m))
    }

    func testInt64Matmul() throws {
        let a = try Tensor([1, 2, 3, 4] as [Int64], shape: [2, 2])
        let c = try a.matmul(a)
        XCTAssertEqual(c.dtype, .int64)
        XCTAssertEqual(c.int64s(), [7, 10, 15, 22])
    }
}
