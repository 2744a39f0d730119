import XCTest
@testable import ParryCore

final class BLASInfoTests: XCTestCase {
    func testCoreIsTheOneOpenBLASDescribes() {
        // openblas_get_config() ends with the chosen core's name ("... DYNAMIC_ARCH NO_AFFINITY Prescott MAX_THREADS=64").
        XCTAssertNotEqual(BLASInfo.core, "unknown")
        XCTAssertTrue(BLASInfo.config.contains(BLASInfo.core), "\(BLASInfo.config) vs \(BLASInfo.core)")
    }

    func testCoreVectorUnits() {
        XCTAssertEqual(BLASInfo.vector(ofCore: "SkylakeX"), .avx512)
        XCTAssertEqual(BLASInfo.vector(ofCore: "COOPERLAKE"), .avx512)
        XCTAssertEqual(BLASInfo.vector(ofCore: "Haswell"), .avx2)
        XCTAssertEqual(BLASInfo.vector(ofCore: "Zen"), .avx2)
        XCTAssertEqual(BLASInfo.vector(ofCore: "Sandybridge"), .avx)
        XCTAssertEqual(BLASInfo.vector(ofCore: "Prescott"), .sse)
        XCTAssertEqual(BLASInfo.vector(ofCore: "Nehalem"), .sse)
    }

    func testFallbackAndSuggestionAgree() {
        let kernels = BLASInfo.vector(ofCore: BLASInfo.core)
        XCTAssertEqual(BLASInfo.isFallback, kernels < BLASInfo.cpu)
        if let s = BLASInfo.suggestedCore {
            // The suggestion uses exactly the CPU's widest unit: never one the CPU lacks.
            XCTAssertEqual(BLASInfo.vector(ofCore: s), BLASInfo.cpu)
            XCTAssertTrue(BLASInfo.isFallback)
        } else {
            XCTAssertTrue(!BLASInfo.isFallback || BLASInfo.cpu == .sse)
        }
    }
}
