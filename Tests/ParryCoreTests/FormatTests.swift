import XCTest
@testable import ParryCore

final class FormatTests: XCTestCase {
    func testLayoutLikePyTorch() throws {
        XCTAssertEqual(t([1, 2.5, -3, 4], [2, 2]).description,
                       "tensor([[ 1.0000,  2.5000],\n        [-3.0000,  4.0000]], shape={2,2}, dtype=float32)")
        XCTAssertEqual(t([1, 2], [2]).description, "tensor([1., 2.], dtype=float32)")
        XCTAssertEqual(try Tensor([7] as [Int64], shape: []).description, "tensor(7, dtype=int64)")
        XCTAssertEqual(t([0.00001, 100], [2]).description, "tensor([1.0000e-05, 1.0000e+02], dtype=float32)")
    }

    func testLargeTensorsAreElided() throws {
        let s = try Tensor.zeros([100, 100]).description
        XCTAssertTrue(s.contains("..."))
        XCTAssertLessThan(s.count, 500)
        XCTAssertTrue(s.hasSuffix("shape={100,100}, dtype=float32)"))
    }
}
