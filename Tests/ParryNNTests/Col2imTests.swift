import XCTest
@testable import ParryCore
@testable import ParryNN

/// The stride-1 "same width" col2im adds shifted planes; this pins it to the
/// row-by-row definition bit for bit — every pixel's terms in the order
/// blocks → ki → kj — over geometries with blocks of one to all rows and
/// kernels taller or wider than the padded image, so a faster kernel that
/// reorders the sums (and would move every seeded example) fails here.
/// (A gather by input row that skips the zeroing pass was tried: same bits,
/// but col2im's share of a ResNet-20 step went from 6% to 15% — W-float
/// loops instead of plane-long ones.)
final class Col2imTests: XCTestCase {
    /// The definition: Σ over blocks, then (ki, kj), of the column entries that land on each pixel.
    func reference(_ g: WindowGeometry, _ cols: [[Float]], blocks: [Range<Int>], start: [Float]) -> [Float] {
        var img = start
        for (b, rows) in blocks.enumerated() {
            for ch in 0..<g.c { for ki in 0..<g.kh { for kj in 0..<g.kw {
                let r = (ch * g.kh + ki) * g.kw + kj
                for i in rows {
                    let y = i - g.ph + ki
                    guard y >= 0, y < g.h else { continue }
                    for j in 0..<g.ow {
                        let x = j - g.pw + kj
                        guard x >= 0, x < g.w else { continue }
                        img[(ch * g.h + y) * g.w + x] += cols[b][r * rows.count * g.ow + (i - rows.lowerBound) * g.ow + j]
                    }
                }
            } } }
        }
        return img
    }

    func testSameWidthCol2imMatchesTheDefinitionBitForBit() {
        var rng = SplitMix(seed: 7)
        // (c, h, w, kh, kw, ph, pw): 3×3 pad 1 (ResNet), 5×5 pad 2, 1×1, 3×1, kernels taller than the image.
        let shapes = [(2, 7, 5, 3, 3, 1, 1), (3, 8, 8, 5, 5, 2, 2), (2, 4, 4, 1, 1, 0, 0), (1, 6, 3, 3, 1, 0, 0),
                      (2, 2, 3, 5, 3, 2, 1), (1, 3, 1, 7, 1, 3, 0), (2, 5, 2, 3, 3, 0, 1)]
        for (c, h, w, kh, kw, ph, pw) in shapes {
            let g = WindowGeometry(c: c, h: h, w: w, kh: kh, kw: kw, sh: 1, sw: 1, ph: ph, pw: pw)
            XCTAssertEqual(g.ow, w)
            for step in Set([1, 2, 3, g.oh]) where step >= 1 {
                let blocks = stride(from: 0, to: g.oh, by: step).map { $0 ..< min(g.oh, $0 + step) }
                // Values with mixed signs and magnitudes, and exact zeros of both signs.
                let cols: [[Float]] = blocks.map { rows in
                    (0..<(g.rows * rows.count * g.ow)).map { k in
                        k % 11 == 0 ? (k % 2 == 0 ? 0 : -0.0) : Float.random(in: -4...4, using: &rng) * (k % 3 == 0 ? 1e-3 : 1)
                    }
                }
                let start = (0..<(c * h * w)).map { _ in Float.random(in: -1...1, using: &rng) }
                var img = start
                img.withUnsafeMutableBufferPointer { pi in
                    for (b, rows) in blocks.enumerated() {
                        var col = cols[b]     // scratch: the kernel zeroes the pad columns it would wrap onto
                        col.withUnsafeMutableBufferPointer { pc in
                            g.col2im(pc.baseAddress!, rowStride: rows.count * g.ow, into: pi.baseAddress!, outputRows: rows)
                        }
                    }
                }
                let want = reference(g, cols, blocks: blocks, start: start)
                if let k = img.indices.first(where: { img[$0].bitPattern != want[$0].bitPattern }) {
                    XCTFail("pixel \(k): \(img[k]) vs \(want[k]) — c \(c) h \(h) w \(w) k \(kh)×\(kw) pad \(ph),\(pw) block \(step)")
                }
            }
        }
    }
}

/// A seeded generator for the test's values (SplitMix64), so a failure replays.
struct SplitMix: RandomNumberGenerator {
    var state: UInt64
    init(seed: UInt64) { state = seed }
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
