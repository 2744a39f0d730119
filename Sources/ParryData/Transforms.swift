import ParryCore

// Batch augmentations for N×C×H×W images; randomness per sample from a
// seedable generator, so shuffles and augmentations reproduce.

public enum Transforms {
    static func check(_ x: Tensor) throws {
        guard x.ndim == 4, x.dtype == .float32 else {
            throw TensorError("expected a float32 N×C×H×W batch, got a \(x.dtype.rawValue) tensor of shape \(shapeString(x.shape))")
        }
    }

    /// Pads each image by `padding` zeros and crops a random size×size window.
    public static func randomCrop(_ x: Tensor, size: (Int, Int), padding: Int, generator: Generator = .current) throws -> Tensor {
        try check(x)
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (oh, ow) = size
        guard oh > 0, ow > 0, padding >= 0, oh <= h + 2 * padding, ow <= w + 2 * padding else {
            throw TensorError("crop \(oh)×\(ow) does not fit images \(h)×\(w) with padding \(padding)")
        }
        let src = try x.contiguous().detach()
        let out = try Tensor.zeros([n, c, oh, ow])
        let ps = src.pointer(Float.self), po = out.pointer(Float.self)
        for b in 0..<n {
            let top = Int(generator.integer(0, Int64(h + 2 * padding - oh))) - padding
            let left = Int(generator.integer(0, Int64(w + 2 * padding - ow))) - padding
            for ch in 0..<c {
                let sp = ps + (b * c + ch) * h * w, dp = po + (b * c + ch) * oh * ow
                for i in 0..<oh {
                    let si = top + i
                    if si < 0 || si >= h { continue }
                    for j in 0..<ow {
                        let sj = left + j
                        if sj >= 0 && sj < w { dp[i * ow + j] = sp[si * w + sj] }
                    }
                }
            }
        }
        return out
    }

    /// Mirrors each image left–right with probability p.
    public static func horizontalFlip(_ x: Tensor, p: Double = 0.5, generator: Generator = .current) throws -> Tensor {
        try check(x)
        let out = try x.contiguous().detach().clone()
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let po = out.pointer(Float.self)
        let u = try Tensor.rand([n], generator: generator).floats()
        for b in 0..<n where Double(u[b]) < p {
            for row in 0..<(c * h) {
                let r = po + (b * c * h + row) * w
                for j in 0..<(w / 2) { let t = r[j]; r[j] = r[w - 1 - j]; r[w - 1 - j] = t }
            }
        }
        return out
    }

    /// (x − mean_c) / std_c per channel.
    public static func normalize(_ x: Tensor, mean: [Double], std: [Double]) throws -> Tensor {
        guard x.ndim >= 2, mean.count == x.shape[1], std.count == x.shape[1] else {
            throw TensorError("expected \(x.ndim >= 2 ? x.shape[1] : 0) channel means and stds, got \(mean.count) and \(std.count)")
        }
        for s in std where s == 0 { throw TensorError("std must be non-zero") }
        var shape = [Int](repeating: 1, count: x.ndim)
        shape[1] = mean.count
        let m = try Tensor(mean.map { Float($0) }, shape: shape), s = try Tensor(std.map { Float($0) }, shape: shape)
        return try x.binary(.sub, m).binary(.div, s)
    }
}
