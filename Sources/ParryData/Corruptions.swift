import Foundation
import ParryCore

/// Common corruptions of images (Hendrycks & Dietterich, ICLR 2019: the
/// CIFAR-10-C recipe, `make_cifar_c.py`), for out-of-distribution accuracy.
/// Images are N×C×H×W float32 in [0, 1]; the result stays in [0, 1].
/// Severities 1–5 use the published CIFAR-10-C parameters; severity 0 returns
/// the input. Where the recipe is written for 32×32 RGB, parry adapts it:
/// sizes that scale with the image (elastic) use the image's side instead of
/// 32, brightness on one channel is V = x itself, `jpeg` is a JPEG-like 8×8
/// DCT quantization at the recipe's qualities (luminance table for one
/// channel; YCbCr with the chroma table, no subsampling, for three), and the
/// 8-bit rounding between PIL steps is not done.
public enum Corruptions {
    public enum Kind: String, CaseIterable, Sendable {
        case gaussian_noise, shot_noise, impulse_noise, speckle_noise, gaussian_blur
        case contrast, brightness, pixelate, jpeg, elastic
    }

    public static func apply(_ x: Tensor, _ kind: Kind, severity: Int, generator: Generator = .current) throws -> Tensor {
        guard x.ndim == 4, x.dtype == .float32 else {
            throw TensorError("expected a float32 N×C×H×W batch, got a \(x.dtype.rawValue) tensor of shape \(shapeString(x.shape))")
        }
        guard (0...5).contains(severity) else { throw TensorError("severity must be 0…5, got \(severity)") }
        if severity == 0 || x.numel == 0 { return try x.detach().clone() }
        let s = severity - 1
        let src = try x.detach().contiguous()
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let out = try src.clone()
        let p = out.pointer(Float.self), total = out.numel
        switch kind {
        case .gaussian_noise:
            let sd = [0.04, 0.06, 0.08, 0.09, 0.10][s]
            let z = try Tensor.randn(x.shape, generator: generator).contiguous()
            let pz = z.pointer(Float.self)
            for i in 0..<total { p[i] = clip(p[i] + Float(sd) * pz[i]) }
        case .shot_noise:
            let lam = [500.0, 250, 100, 75, 50][s]
            // the rate from the clipped value: a NaN or infinite input would never leave PTRS's loop
            for i in 0..<total { p[i] = clip(Float(poisson(Double(clip(p[i])) * lam, generator) / lam)) }
        case .impulse_noise:
            // salt and pepper (skimage's random_noise 's&p'): `amount` of the values, half 0, half 1
            let amount = [0.01, 0.02, 0.03, 0.05, 0.07][s]
            for i in 0..<total { p[i] = generator.uniform() < amount ? (generator.uniform() < 0.5 ? 0 : 1) : clip(p[i]) }
        case .speckle_noise:
            let sd = [0.06, 0.1, 0.12, 0.16, 0.2][s]
            let z = try Tensor.randn(x.shape, generator: generator).contiguous()
            let pz = z.pointer(Float.self)
            for i in 0..<total { p[i] = clip(p[i] + p[i] * Float(sd) * pz[i]) }
        case .gaussian_blur:
            let sigma = [0.4, 0.6, 0.7, 0.8, 1.0][s]
            for plane in 0..<(n * c) { blur(p + plane * h * w, h, w, sigma: sigma, truncate: 4, reflect: false) }
            for i in 0..<total { p[i] = clip(p[i]) }
        case .contrast:
            let f = Float([0.75, 0.5, 0.4, 0.3, 0.15][s])
            for plane in 0..<(n * c) {
                let q = p + plane * h * w
                var m: Double = 0
                for i in 0..<(h * w) { m += Double(q[i]) }
                let mean = Float(m / Double(h * w))
                for i in 0..<(h * w) { q[i] = clip((q[i] - mean) * f + mean) }
            }
        case .brightness:
            // HSV: V += c (clipped), hue and saturation kept; the channels scale with V
            let add = Float([0.05, 0.1, 0.15, 0.2, 0.3][s])
            for b in 0..<n {
                let base = p + b * c * h * w
                for i in 0..<(h * w) {
                    var v: Float = 0
                    for ch in 0..<c { v = Swift.max(v, base[ch * h * w + i]) }
                    let nv = Swift.min(v + add, 1)
                    for ch in 0..<c { base[ch * h * w + i] = v > 0 ? clip(base[ch * h * w + i] * nv / v) : nv }
                }
            }
        case .pixelate:
            let f = [0.95, 0.9, 0.85, 0.75, 0.65][s]
            let sh = Swift.max(Int(Double(h) * f), 1), sw = Swift.max(Int(Double(w) * f), 1)
            for plane in 0..<(n * c) {
                var small = boxResize(p + plane * h * w, h, w, sh, sw)
                let back = small.withUnsafeMutableBufferPointer { b in b.baseAddress.map { boxResize($0, sh, sw, h, w) } ?? [] }
                for (i, v) in back.enumerated() { p[plane * h * w + i] = clip(v) }
            }
        case .jpeg:
            try jpegLike(p, n, c, h, w, quality: [80, 65, 58, 50, 40][s])
        case .elastic:
            try elastic(p, n, c, h, w, s, generator)
        }
        return out
    }

    @inline(__always) static func clip(_ v: Float) -> Float { v.isNaN ? 0 : Swift.min(Swift.max(v, 0), 1) }

    // MARK: Poisson (PTRS, Hörmann 1993, for λ ≥ 10; Knuth's product method below)

    static func poisson(_ lam: Double, _ g: Generator) -> Double {
        if lam <= 0 { return 0 }
        if lam < 10 {
            let l = Foundation.exp(-lam)
            var k = 0.0, prod = g.uniform()
            while prod > l { k += 1; prod *= g.uniform() }
            return k
        }
        let slam = lam.squareRoot(), loglam = Foundation.log(lam)
        let b = 0.931 + 2.53 * slam, a = -0.059 + 0.02483 * b
        let invalpha = 1.1239 + 1.1328 / (b - 3.4), vr = 0.9277 - 3.6224 / (b - 2)
        while true {
            let u = g.uniform() - 0.5, v = g.uniform()
            let us = 0.5 - Swift.abs(u)
            let k = ((2 * a / us + b) * u + lam + 0.43).rounded(.down)
            if us >= 0.07 && v <= vr { return k }
            if k < 0 || (us < 0.013 && v > us) { continue }
            if Foundation.log(v) + Foundation.log(invalpha) - Foundation.log(a / (us * us) + b) <= -lam + k * loglam - Foundation.lgamma(k + 1) {
                return k
            }
        }
    }

    // MARK: filters

    /// In-place separable Gaussian blur of an h×w plane: kernel radius
    /// ⌊truncate·σ + 0.5⌋; borders 'nearest' (skimage's default) or 'reflect'
    /// (scipy's half-sample symmetric).
    static func blur(_ q: UnsafeMutablePointer<Float>, _ h: Int, _ w: Int, sigma: Double, truncate: Double, reflect: Bool) {
        guard sigma > 0 else { return }
        let r = Int(truncate * sigma + 0.5)
        var k = (-r...r).map { Foundation.exp(-0.5 * Double($0 * $0) / (sigma * sigma)) }
        let sum = k.reduce(0, +)
        k = k.map { $0 / sum }
        func index(_ i: Int, _ n: Int) -> Int {
            if reflect {
                var j = i
                while j < 0 || j >= n { j = j < 0 ? -j - 1 : 2 * n - j - 1 }
                return j
            }
            return Swift.min(Swift.max(i, 0), n - 1)
        }
        var tmp = [Double](repeating: 0, count: h * w)
        for y in 0..<h { for x in 0..<w {
            var acc = 0.0
            for t in -r...r { acc += k[t + r] * Double(q[y * w + index(x + t, w)]) }
            tmp[y * w + x] = acc
        } }
        for y in 0..<h { for x in 0..<w {
            var acc = 0.0
            for t in -r...r { acc += k[t + r] * tmp[index(y + t, h) * w + x] }
            q[y * w + x] = Float(acc)
        } }
    }

    static func blur(_ plane: inout [Float], _ h: Int, _ w: Int, sigma: Double, truncate: Double, reflect: Bool) {
        plane.withUnsafeMutableBufferPointer { b in
            if let q = b.baseAddress { blur(q, h, w, sigma: sigma, truncate: truncate, reflect: reflect) }
        }
    }

    /// PIL's BOX resampling of an h×w plane to oh×ow: each output pixel is the
    /// mean of the input pixels whose centres fall in its (scaled) box.
    static func boxResize(_ q: UnsafeMutablePointer<Float>, _ h: Int, _ w: Int, _ oh: Int, _ ow: Int) -> [Float] {
        func weights(_ inSize: Int, _ outSize: Int) -> [(Int, [Double])] {
            let scale = Double(inSize) / Double(outSize), fs = Swift.max(scale, 1), support = 0.5 * fs
            return (0..<outSize).map { i in
                let center = (Double(i) + 0.5) * scale
                let lo = Swift.max(Int(center - support + 0.5), 0), hi = Swift.min(Int(center + support + 0.5), inSize)
                var ws = (lo..<hi).map { j -> Double in let t = (Double(j) - center + 0.5) / fs; return (t >= -0.5 && t < 0.5) ? 1 : 0 }
                let sum = ws.reduce(0, +)
                if sum > 0 { ws = ws.map { $0 / sum } }
                return (lo, ws)
            }
        }
        let wx = weights(w, ow), wy = weights(h, oh)
        var rows = [Double](repeating: 0, count: h * ow)
        for y in 0..<h { for (x, (lo, ws)) in wx.enumerated() {
            var acc = 0.0
            for (k, wt) in ws.enumerated() { acc += wt * Double(q[y * w + lo + k]) }
            rows[y * ow + x] = acc
        } }
        var out = [Float](repeating: 0, count: oh * ow)
        for (y, (lo, ws)) in wy.enumerated() { for x in 0..<ow {
            var acc = 0.0
            for (k, wt) in ws.enumerated() { acc += wt * rows[(lo + k) * ow + x] }
            out[y * ow + x] = Float(acc)
        } }
        return out
    }

    // MARK: JPEG-like quantization

    static let lumaTable: [Double] = [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
                                      14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
                                      49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]
    static let chromaTable: [Double] = [17, 18, 24, 47, 99, 99, 99, 99, 18, 21, 26, 66, 99, 99, 99, 99, 24, 26, 56, 99, 99, 99, 99, 99,
                                        47, 66, 99, 99, 99, 99, 99, 99] + [Double](repeating: 99, count: 32)

    /// libjpeg's quality scaling of a base table.
    static func scaled(_ t: [Double], quality q: Int) -> [Double] {
        let s = q < 50 ? 5000.0 / Double(q) : 200 - 2 * Double(q)
        return t.map { Swift.min(Swift.max(((($0 * s) + 50) / 100).rounded(.down), 1), 255) }
    }

    static func jpegLike(_ p: UnsafeMutablePointer<Float>, _ n: Int, _ c: Int, _ h: Int, _ w: Int, quality: Int) throws {
        guard c == 1 || c == 3 else { throw TensorError("jpeg expects 1 or 3 channels, got \(c)") }
        let luma = scaled(lumaTable, quality: quality), chroma = scaled(chromaTable, quality: quality)
        // DCT-II basis: basis[u][x] = a(u)·cos((2x+1)uπ/16)
        var basis = [Double](repeating: 0, count: 64)
        for u in 0..<8 { for x in 0..<8 {
            basis[u * 8 + x] = (u == 0 ? (1.0 / 8).squareRoot() : (2.0 / 8).squareRoot()) * Foundation.cos(Double(2 * x + 1) * Double(u) * .pi / 16)
        } }
        let ph = (h + 7) / 8 * 8, pw = (w + 7) / 8 * 8
        for b in 0..<n {
            // planes in 0…255 (YCbCr for colour), edge-padded to whole blocks
            var planes = [[Double]](repeating: [Double](repeating: 0, count: ph * pw), count: c)
            for y in 0..<ph { for x in 0..<pw {
                let sy = Swift.min(y, h - 1), sx = Swift.min(x, w - 1)
                let v = (0..<c).map { Double(p[((b * c + $0) * h + sy) * w + sx]) * 255 }
                if c == 1 { planes[0][y * pw + x] = v[0] } else {
                    planes[0][y * pw + x] = 0.299 * v[0] + 0.587 * v[1] + 0.114 * v[2]
                    planes[1][y * pw + x] = -0.168736 * v[0] - 0.331264 * v[1] + 0.5 * v[2] + 128
                    planes[2][y * pw + x] = 0.5 * v[0] - 0.418688 * v[1] - 0.081312 * v[2] + 128
                }
            } }
            for (k, table) in zip(0..<c, [luma, chroma, chroma]) {
                for by in stride(from: 0, to: ph, by: 8) { for bx in stride(from: 0, to: pw, by: 8) {
                    var block = [Double](repeating: 0, count: 64), coef = [Double](repeating: 0, count: 64)
                    for y in 0..<8 { for x in 0..<8 { block[y * 8 + x] = planes[k][(by + y) * pw + bx + x] - 128 } }
                    for u in 0..<8 { for v in 0..<8 {
                        var acc = 0.0
                        for y in 0..<8 { for x in 0..<8 { acc += basis[u * 8 + y] * basis[v * 8 + x] * block[y * 8 + x] } }
                        coef[u * 8 + v] = (acc / table[u * 8 + v]).rounded() * table[u * 8 + v]
                    } }
                    for y in 0..<8 { for x in 0..<8 {
                        var acc = 0.0
                        for u in 0..<8 { for v in 0..<8 { acc += basis[u * 8 + y] * basis[v * 8 + x] * coef[u * 8 + v] } }
                        planes[k][(by + y) * pw + bx + x] = acc + 128
                    } }
                } }
            }
            for y in 0..<h { for x in 0..<w {
                let i = y * pw + x
                if c == 1 { p[(b * h + y) * w + x] = clip(Float(planes[0][i] / 255)); continue }
                let (yy, cb, cr) = (planes[0][i], planes[1][i] - 128, planes[2][i] - 128)
                let rgb = [yy + 1.402 * cr, yy - 0.344136 * cb - 0.714136 * cr, yy + 1.772 * cb]
                for ch in 0..<3 { p[((b * 3 + ch) * h + y) * w + x] = clip(Float(rgb[ch] / 255)) }
            } }
        }
    }

    // MARK: elastic

    /// The recipe's elastic transform, its sizes relative to the image side
    /// (32 in CIFAR-10-C): a random affine warp of three points by U(±a)
    /// (reflect-101 borders), then a displacement field of Gaussian-smoothed
    /// U(−1, 1) noise (σ, truncate 3, reflect) scaled by α, sampled bilinearly.
    static func elastic(_ p: UnsafeMutablePointer<Float>, _ n: Int, _ c: Int, _ h: Int, _ w: Int, _ s: Int, _ g: Generator) throws {
        let side = Double(Swift.min(h, w))
        let (alpha, sigma, affine) = [(0.0, 0.0, 0.08), (0.05, 0.2, 0.07), (0.08, 0.06, 0.06), (0.1, 0.04, 0.05), (0.1, 0.03, 0.03)][s]
        let (al, sg, af) = (alpha * side, sigma * side, affine * side)
        for b in 0..<n {
            // affine from pts1 → pts2 (x, y points), applied as dst(q) = src(M⁻¹ q)
            let cy = Double(h / 2), cx = Double(w / 2), sq = Double(Swift.min(h, w) / 3)
            let pts1 = [(cx + sq, cy + sq), (cx + sq, cy - sq), (cx - sq, cy - sq)]
            let pts2 = pts1.map { ($0.0 + (g.uniform() * 2 - 1) * af, $0.1 + (g.uniform() * 2 - 1) * af) }
            // maps dst → src; the identity where the three points coincide (images under
            // 3 pixels a side) or the jittered ones are collinear (no affine map)
            var inv: [Double] = [1, 0, 0, 0, 1, 0]
            if sq > 0 {
                let m = invertAffine(solveAffine(pts1, pts2))
                if m.allSatisfy(\.isFinite) { inv = m }
            }
            func reflect101(_ i: Int, _ n: Int) -> Int {
                if n == 1 { return 0 }
                var j = i
                while j < 0 || j >= n { j = j < 0 ? -j : 2 * n - 2 - j }
                return j
            }
            var warped = [Float](repeating: 0, count: c * h * w)
            for y in 0..<h { for x in 0..<w {
                let sx = inv[0] * Double(x) + inv[1] * Double(y) + inv[2], sy = inv[3] * Double(x) + inv[4] * Double(y) + inv[5]
                let x0 = Int(sx.rounded(.down)), y0 = Int(sy.rounded(.down)), fx = Float(sx - Double(x0)), fy = Float(sy - Double(y0))
                for ch in 0..<c {
                    let q = p + (b * c + ch) * h * w
                    func at(_ yy: Int, _ xx: Int) -> Float { q[reflect101(yy, h) * w + reflect101(xx, w)] }
                    warped[(ch * h + y) * w + x] = (1 - fy) * ((1 - fx) * at(y0, x0) + fx * at(y0, x0 + 1)) + fy * ((1 - fx) * at(y0 + 1, x0) + fx * at(y0 + 1, x0 + 1))
                }
            } }
            var dx = (0..<(h * w)).map { _ in Float(g.uniform() * 2 - 1) }, dy = (0..<(h * w)).map { _ in Float(g.uniform() * 2 - 1) }
            blur(&dx, h, w, sigma: sg, truncate: 3, reflect: true)
            blur(&dy, h, w, sigma: sg, truncate: 3, reflect: true)
            func reflect(_ v: Double, _ n: Int) -> Double {      // scipy's 'reflect' for coordinates
                if n == 1 { return 0 }
                var t = v
                let period = 2 * Double(n)
                t = t.truncatingRemainder(dividingBy: period); if t < 0 { t += period }
                if t >= Double(n) { t = period - t - 1 }
                return Swift.min(Swift.max(t, 0), Double(n - 1))
            }
            for y in 0..<h { for x in 0..<w {
                let sy = reflect(Double(y) + Double(dy[y * w + x]) * al, h), sx = reflect(Double(x) + Double(dx[y * w + x]) * al, w)
                let y0 = Int(sy.rounded(.down)), x0 = Int(sx.rounded(.down))
                let y1 = Swift.min(y0 + 1, h - 1), x1 = Swift.min(x0 + 1, w - 1)
                let fy = Float(sy - Double(y0)), fx = Float(sx - Double(x0))
                for ch in 0..<c {
                    let o = ch * h * w
                    let v = (1 - fy) * ((1 - fx) * warped[o + y0 * w + x0] + fx * warped[o + y0 * w + x1])
                        + fy * ((1 - fx) * warped[o + y1 * w + x0] + fx * warped[o + y1 * w + x1])
                    p[((b * c + ch) * h + y) * w + x] = clip(v)
                }
            } }
        }
    }

    /// The 2×3 affine (row-major: a b c / d e f) taking the three `from` points to `to`.
    static func solveAffine(_ from: [(Double, Double)], _ to: [(Double, Double)]) -> [Double] {
        // [x y 1] rows; solve for (a, b, c) and (d, e, f) by Cramer's rule
        let (x1, y1) = from[0], (x2, y2) = from[1], (x3, y3) = from[2]
        let det = x1 * (y2 - y3) - y1 * (x2 - x3) + (x2 * y3 - x3 * y2)
        func solve(_ r: [Double]) -> (Double, Double, Double) {
            let a = (r[0] * (y2 - y3) - y1 * (r[1] - r[2]) + (r[1] * y3 - r[2] * y2)) / det
            let b = (x1 * (r[1] - r[2]) - r[0] * (x2 - x3) + (x2 * r[2] - x3 * r[1])) / det
            let c = (x1 * (y2 * r[2] - y3 * r[1]) - y1 * (x2 * r[2] - x3 * r[1]) + r[0] * (x2 * y3 - x3 * y2)) / det
            return (a, b, c)
        }
        let (a, b, c) = solve(to.map(\.0)), (d, e, f) = solve(to.map(\.1))
        return [a, b, c, d, e, f]
    }

    static func invertAffine(_ m: [Double]) -> [Double] {
        let det = m[0] * m[4] - m[1] * m[3]
        let ia = m[4] / det, ib = -m[1] / det, id = -m[3] / det, ie = m[0] / det
        return [ia, ib, -(ia * m[2] + ib * m[5]), id, ie, -(id * m[2] + ie * m[5])]
    }
}
