import XCTest
@testable import ParryCore
@testable import ParryData

/// Corruptions: identity at severity 0, bounds, seeding, and each family's
/// defining property on images where it is known in closed form.
final class CorruptionTests: XCTestCase {
    func image(_ n: Int = 2, _ c: Int = 1, _ h: Int = 28, _ w: Int = 28, seed: UInt64 = 1) throws -> Tensor {
        try Tensor.rand([n, c, h, w], generator: Generator(seed: seed))
    }
    func constant(_ v: Float, _ c: Int = 1, _ side: Int = 28) throws -> Tensor { try Tensor.full([1, c, side, side], Double(v)) }

    func testSeverityZeroIsTheIdentityAndEverySeverityStaysInBounds() throws {
        for c in [1, 3] {
            let x = try image(2, c)
            for kind in Corruptions.Kind.allCases {
                XCTAssertEqual(try Corruptions.apply(x, kind, severity: 0).floats(), x.floats(), kind.rawValue)
                for s in 1...5 {
                    let y = try Corruptions.apply(x, kind, severity: s, generator: Generator(seed: 3))
                    XCTAssertEqual(y.shape, x.shape)
                    let v = y.floats()
                    XCTAssertTrue(v.allSatisfy { $0 >= 0 && $0 <= 1 }, "\(kind) \(s) left [0, 1]")
                    XCTAssertEqual(try Corruptions.apply(x, kind, severity: s, generator: Generator(seed: 3)).floats(), v, "\(kind) \(s) is not seeded")
                }
            }
        }
        XCTAssertThrowsError(try Corruptions.apply(try image(), .contrast, severity: 6))
        XCTAssertThrowsError(try Corruptions.apply(try Tensor.zeros([4, 4]), .contrast, severity: 1))
    }

    func testTinyAndEmptyImagesWork() throws {
        // images smaller than the recipe's windows and affine points (1×1 has no
        // triangle for the elastic warp), and empty ones
        for (h, w) in [(1, 1), (1, 3), (2, 1), (2, 2), (5, 5), (0, 3)] {
            let x = try Tensor.rand([1, 3, h, w], generator: Generator(seed: 9))
            for kind in Corruptions.Kind.allCases { for s in 1...5 {
                let v = try Corruptions.apply(x, kind, severity: s, generator: Generator(seed: 1)).floats()
                XCTAssertEqual(v.count, x.numel)
                XCTAssertTrue(v.allSatisfy { $0 >= 0 && $0 <= 1 }, "\(kind) \(s) on \(h)×\(w)")
            } }
        }
    }

    func testNonFiniteInputsEndInBoundsWithoutHanging() throws {
        let x = try Tensor([Float.nan, .infinity, -.infinity, 0.5] as [Float], shape: [1, 1, 2, 2])
        for kind in Corruptions.Kind.allCases { for s in 1...5 {
            let v = try Corruptions.apply(x, kind, severity: s, generator: Generator(seed: 2)).floats()
            XCTAssertTrue(v.allSatisfy { $0 >= 0 && $0 <= 1 }, "\(kind) \(s): \(v)")
        } }
    }

    func testNoiseHasThePublishedScale() throws {
        let x = try Tensor.full([1, 1, 200, 200], 0.5)
        let n = Double(x.numel)
        func stats(_ t: Tensor) -> (Double, Double) {
            let v = t.floats().map(Double.init)
            let m = v.reduce(0, +) / n
            return (m, (v.map { ($0 - m) * ($0 - m) }.reduce(0, +) / n).squareRoot())
        }
        let (gm, gs) = stats(try Corruptions.apply(x, .gaussian_noise, severity: 5, generator: Generator(seed: 1)))
        XCTAssertEqual(gm, 0.5, accuracy: 0.003); XCTAssertEqual(gs, 0.10, accuracy: 0.003)        // N(0, 0.10)
        let (sm, ss) = stats(try Corruptions.apply(x, .speckle_noise, severity: 5, generator: Generator(seed: 2)))
        XCTAssertEqual(sm, 0.5, accuracy: 0.003); XCTAssertEqual(ss, 0.5 * 0.2, accuracy: 0.003)    // x·N(0, 0.2)
        // shot noise at severity 5 (c = 50): Poisson(25)/50 has mean 0.5 and sd √25/50 = 0.1;
        // at severity 1 (c = 500): Poisson(250)/500, sd √250/500
        let (pm, ps) = stats(try Corruptions.apply(x, .shot_noise, severity: 5, generator: Generator(seed: 3)))
        XCTAssertEqual(pm, 0.5, accuracy: 0.002); XCTAssertEqual(ps, 0.1, accuracy: 0.002)
        let (qm, qs) = stats(try Corruptions.apply(x, .shot_noise, severity: 1, generator: Generator(seed: 6)))
        XCTAssertEqual(qm, 0.5, accuracy: 0.001); XCTAssertEqual(qs, 250.0.squareRoot() / 500, accuracy: 0.001)
        let (lm, _) = stats(try Corruptions.apply(try Tensor.full([1, 1, 200, 200], 0.01), .shot_noise, severity: 5, generator: Generator(seed: 4)))
        XCTAssertEqual(lm, 0.01, accuracy: 0.001)                                                   // Poisson(0.5)/50 (small λ path)
        // impulse: 7% of the values become 0 or 1, about half each
        let imp = try Corruptions.apply(x, .impulse_noise, severity: 5, generator: Generator(seed: 5)).floats()
        let zeros = Double(imp.filter { $0 == 0 }.count) / n, ones = Double(imp.filter { $0 == 1 }.count) / n
        XCTAssertEqual(zeros + ones, 0.07 * (1 - 0.5 * 0.07) + 0.07 * 0.5 * 0.07, accuracy: 0.004)
        XCTAssertEqual(zeros, ones, accuracy: 0.005)
    }

    func testClosedFormFamilies() throws {
        let x = try image(1, 1, 16, 16)
        // contrast: (x − mean)·0.15 + mean per image and channel
        let v = x.floats(), m = v.reduce(0, +) / Float(v.count)
        let con = try Corruptions.apply(x, .contrast, severity: 5).floats()
        for (a, b) in zip(con, v) { XCTAssertEqual(a, (b - m) * 0.15 + m, accuracy: 1e-6) }
        // brightness on one channel: x + 0.3, clipped
        for (a, b) in zip(try Corruptions.apply(x, .brightness, severity: 5).floats(), v) { XCTAssertEqual(a, min(b + 0.3, 1), accuracy: 1e-6) }
        // brightness on RGB keeps hue and saturation: the channels' ratios stay
        let rgb = try Tensor([0.2, 0.4, 0.1] as [Float], shape: [1, 3, 1, 1])
        let br = try Corruptions.apply(rgb, .brightness, severity: 1).floats()      // V 0.4 → 0.45
        XCTAssertEqual(br[1], 0.45, accuracy: 1e-6); XCTAssertEqual(br[0], 0.2 * 0.45 / 0.4, accuracy: 1e-6); XCTAssertEqual(br[2], 0.1 * 0.45 / 0.4, accuracy: 1e-6)
        // blur, pixelate and JPEG leave a constant image as it is (mid-grey 128/255 is JPEG's zero)
        for kind in [Corruptions.Kind.gaussian_blur, .pixelate] {
            for a in try Corruptions.apply(try constant(0.3), kind, severity: 5).floats() { XCTAssertEqual(a, 0.3, accuracy: 1e-6, kind.rawValue) }
        }
        for c in [1, 3] {
            for a in try Corruptions.apply(try constant(128.0 / 255, c), .jpeg, severity: 5).floats() { XCTAssertEqual(a, 128.0 / 255, accuracy: 1e-5) }
        }
        // pixelate by 0.65 then back (PIL's BOX): a 28-wide image becomes 18 boxes wide
        let ramp = try Tensor((0..<28).map { Float($0) / 27 }, shape: [1, 1, 1, 28]).expand([1, 1, 28, 28]).contiguous()
        let pix = try Corruptions.apply(ramp, .pixelate, severity: 5).floats()
        XCTAssertLessThanOrEqual(Set(pix.prefix(28)).count, 18)
        XCTAssertGreaterThan(Set(pix.prefix(28)).count, 12)
    }

    func testAffineFromThreePointsAndItsInverse() {
        let from = [(23.0, 23.0), (23.0, 5.0), (5.0, 5.0)], to = [(24.0, 22.5), (22.0, 6.0), (5.5, 4.0)]
        let m = Corruptions.solveAffine(from, to), inv = Corruptions.invertAffine(m)
        for ((x, y), (u, v)) in zip(from, to) {
            XCTAssertEqual(m[0] * x + m[1] * y + m[2], u, accuracy: 1e-9); XCTAssertEqual(m[3] * x + m[4] * y + m[5], v, accuracy: 1e-9)
            XCTAssertEqual(inv[0] * u + inv[1] * v + inv[2], x, accuracy: 1e-9); XCTAssertEqual(inv[3] * u + inv[4] * v + inv[5], y, accuracy: 1e-9)
        }
    }
}
