import Foundation
import ParryCore

// Other "modalities" of an image, for the small Bind model of the calibration
// example: a 2-D point cloud sampled from the image's foreground, and a 1-D
// signal read along a space-filling curve. Both are deterministic given the
// generator.

public enum Modalities {
    /// N×1×H×W images in [0, 1] to N×2×P point clouds: P pixels drawn with
    /// probability ∝ intensity (with replacement), each at its pixel centre plus
    /// uniform jitter of ±`jitter`/2 pixels, coordinates scaled to [−1, 1]
    /// (x then y). The order of the points carries no information.
    public static func pointCloud(_ images: Tensor, points: Int = 128, jitter: Double = 1, generator: Generator = .current) throws -> Tensor {
        guard images.ndim == 4, images.shape[1] == 1, images.dtype == .float32 else {
            throw TensorError("expected N×1×H×W float32 images, got \(images.dtype.rawValue) \(shapeString(images.shape))")
        }
        guard points >= 1 else { throw TensorError("points must be at least 1, got \(points)") }
        guard jitter >= 0, jitter.isFinite else { throw TensorError("jitter must be ≥ 0, got \(jitter)") }
        let (n, h, w) = (images.shape[0], images.shape[2], images.shape[3])
        let px = try images.contiguous().floats()
        let out = try Tensor(shape: [n, 2, points], dtype: .float32, zeroed: false)
        let po = out.pointer(Float.self)
        var cumulative = [Double](repeating: 0, count: h * w)
        for i in 0..<n {
            var total = 0.0
            for k in 0..<(h * w) { total += Double(max(px[i * h * w + k], 0)); cumulative[k] = total }
            for p in 0..<points {
                var k: Int
                if total > 0 {
                    let u = generator.uniform() * total
                    var lo = 0, hi = h * w - 1
                    while lo < hi { let mid = (lo + hi) / 2; if cumulative[mid] > u { hi = mid } else { lo = mid + 1 } }
                    k = lo
                } else {
                    k = Int(generator.integer(0, Int64(h * w - 1)))    // a blank image: uniform points
                }
                let cx = Double(k % w) + 0.5 + (generator.uniform() - 0.5) * jitter
                let cy = Double(k / w) + 0.5 + (generator.uniform() - 0.5) * jitter
                po[(i * 2) * points + p] = Float(cx / Double(w) * 2 - 1)
                po[(i * 2 + 1) * points + p] = Float(cy / Double(h) * 2 - 1)
            }
        }
        return out
    }

    public enum Curve: String, Sendable { case hilbert, snake }

    /// N×1×H×W images to N×1×L signals: the pixels read along a Hilbert curve
    /// (the image zero-padded to the next power-of-two square, L = side²) or a
    /// boustrophedon scan (rows alternately left to right and right to left, L = H·W),
    /// plus Gaussian noise of standard deviation `noise`.
    public static func signal(_ images: Tensor, curve: Curve = .hilbert, noise: Double = 0, generator: Generator = .current) throws -> Tensor {
        guard images.ndim == 4, images.shape[1] == 1, images.dtype == .float32 else {
            throw TensorError("expected N×1×H×W float32 images, got \(images.dtype.rawValue) \(shapeString(images.shape))")
        }
        guard noise >= 0, noise.isFinite else { throw TensorError("noise must be ≥ 0, got \(noise)") }
        let (n, h, w) = (images.shape[0], images.shape[2], images.shape[3])
        let px = try images.contiguous().floats()
        var order = [Int?]()      // pixel index (nil: padding) at each position of the curve
        switch curve {
        case .snake:
            for r in 0..<h { for c in 0..<w { order.append(r * w + (r % 2 == 0 ? c : w - 1 - c)) } }
        case .hilbert:
            var side = 1
            while side < max(h, w) { side *= 2 }
            for d in 0..<(side * side) {
                let (x, y) = hilbertPoint(d, side: side)
                order.append(x < w && y < h ? y * w + x : nil)
            }
        }
        let l = order.count
        let out = try Tensor(shape: [n, 1, l], dtype: .float32, zeroed: false)
        let po = out.pointer(Float.self)
        for i in 0..<n { for (k, idx) in order.enumerated() { po[i * l + k] = idx.map { px[i * h * w + $0] } ?? 0 } }
        if noise > 0 { return try out + noise * Tensor.randn([n, 1, l], generator: generator) }
        return out
    }

    /// The d-th point of the Hilbert curve filling a side×side grid (side a power of two).
    static func hilbertPoint(_ d: Int, side: Int) -> (Int, Int) {
        var x = 0, y = 0, t = d, s = 1
        while s < side {
            let rx = 1 & (t / 2), ry = 1 & (t ^ rx)
            if ry == 0 {
                if rx == 1 { x = s - 1 - x; y = s - 1 - y }
                swap(&x, &y)
            }
            x += s * rx; y += s * ry
            t /= 4; s *= 2
        }
        return (x, y)
    }
}
