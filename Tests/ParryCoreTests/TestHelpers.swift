import XCTest
@testable import ParryCore

/// Asserts two float sequences agree elementwise within `tol` (absolute + relative).
func assertClose(_ a: [Float], _ b: [Float], tol: Float = 1e-5, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, "lengths differ", file: file, line: line)
    for (i, (x, y)) in zip(a, b).enumerated() where abs(x - y) > tol * (1 + abs(y)) {
        XCTFail("element \(i): \(x) vs \(y)", file: file, line: line)
        return
    }
}

func t(_ values: [Float], _ shape: [Int]) -> Tensor { try! Tensor(values, shape: shape) }
