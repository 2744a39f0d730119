import XCTest
@testable import ParryCore

final class RandomTests: XCTestCase {
    func testSameSeedSameNumbers() throws {
        let a = try Tensor.randn([1000], generator: Generator(seed: 42)).floats()
        let b = try Tensor.randn([1000], generator: Generator(seed: 42)).floats()
        XCTAssertEqual(a, b)
        let c = try Tensor.randn([1000], generator: Generator(seed: 43)).floats()
        XCTAssertNotEqual(a, c)
    }

    func testKnownFirstValuesPinTheSequence() {
        // xoshiro256** seeded by SplitMix64(0): these values pin the generator so
        // a change to seeding or output function is noticed (same seed ⇒ same
        // numbers on every run and machine).
        let g = Generator(seed: 0)
        XCTAssertEqual(g.next(), 0x99EC_5F36_CB75_F2B4)
        XCTAssertEqual(g.next(), 0xBF6E_1F78_4956_452A)
    }

    func testUniformAndNormalMoments() throws {
        let g = Generator(seed: 7)
        let u = try Tensor.rand([100_000], generator: g)
        XCTAssertEqual(try u.mean().item().double, 0.5, accuracy: 0.01)
        XCTAssertGreaterThanOrEqual(try u.extremum(largest: false).0.item().double, 0)
        XCTAssertLessThan(try u.extremum(largest: true).0.item().double, 1)
        let n = try Tensor.randn([100_000], generator: g)
        XCTAssertEqual(try n.mean().item().double, 0, accuracy: 0.02)
        XCTAssertEqual(try n.std().item().double, 1, accuracy: 0.02)
    }

    func testRandintRangeAndPermutation() throws {
        let g = Generator(seed: 9)
        let r = try Tensor.randint(1, 6, [10_000], generator: g).int64s()
        XCTAssertEqual(Set(r), Set(1...6))
        let p = try Tensor.randperm(50, generator: g).int64s()
        XCTAssertEqual(p.sorted(), (0..<50).map { Int64($0) })
    }
}
