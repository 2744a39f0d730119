import CBLAS
import Foundation
import ParryCore

/// Model updates travel as flat `[Float]` vectors: the parameters of a model
/// concatenated in `namedParameters()` order. The layout remembers where each
/// parameter tensor starts, for layer-wise operations (RFFL's reward).
public struct ParameterLayout: Equatable {
    public let shapes: [[Int]]
    public let ranges: [Range<Int>]
    public var total: Int { ranges.last?.upperBound ?? 0 }

    public init(_ params: [Tensor]) {
        shapes = params.map(\.shape)
        var start = 0
        ranges = params.map { p in defer { start += p.numel }; return start..<start + p.numel }
    }

    /// The parameters' values, concatenated.
    public func read(_ params: [Tensor]) -> [Float] {
        var out = [Float](repeating: 0, count: total)
        out.withUnsafeMutableBufferPointer { dst in
            guard let base = dst.baseAddress else { return }   // no parameter values at all
            for (p, r) in zip(params, ranges) {
                if p.isContiguous {
                    base.advanced(by: r.lowerBound).update(from: p.pointer(Float.self), count: r.count)
                } else {
                    for (j, v) in p.floats().enumerated() { dst[r.lowerBound + j] = v }
                }
            }
        }
        return out
    }

    /// Overwrites the parameters (in place, not recorded) with `values`.
    public func write(_ values: [Float], to params: [Tensor]) throws {
        try apply(values, to: params) { dst, src, n in dst.update(from: src, count: n) }
    }

    /// params += scale · values, in place and not recorded.
    public func add(_ values: [Float], scale: Float = 1, to params: [Tensor]) throws {
        try apply(values, to: params) { dst, src, n in for j in 0..<n { dst[j] += scale * src[j] } }
    }

    private func apply(_ values: [Float], to params: [Tensor],
                       _ body: (UnsafeMutablePointer<Float>, UnsafePointer<Float>, Int) -> Void) throws {
        guard values.count == total, params.count == ranges.count else {
            throw TensorError("update has \(values.count) values for a model with \(total) parameters")
        }
        try values.withUnsafeBufferPointer { src in
            guard let base = src.baseAddress else { return }   // no parameter values at all
            for (p, r) in zip(params, ranges) {
                guard p.isContiguous, p.dtype == .float32, p.numel == r.count else {
                    throw TensorError("parameter of shape \(shapeString(p.shape)) does not match the update layout")
                }
                body(p.pointer(Float.self), base.advanced(by: r.lowerBound), r.count)
                p.storage.version &+= 1
            }
        }
    }
}

/// Vector arithmetic on flat updates, on BLAS level 1 (dot products
/// accumulated in double precision).
public enum Vec {
    public static func dot(_ a: [Float], _ b: [Float]) -> Double {
        let n = min(a.count, b.count)
        guard n > 0 else { return 0 }
        return a.withUnsafeBufferPointer { pa in
            b.withUnsafeBufferPointer { pb in cblas_dsdot(Int32(n), pa.baseAddress, 1, pb.baseAddress, 1) }
        }
    }

    public static func norm(_ a: [Float]) -> Double { dot(a, a).squareRoot() }

    /// PyTorch's cosine_similarity(a, b, dim=0, eps): a·b / max(‖a‖‖b‖, eps).
    public static func cosine(_ a: [Float], _ b: [Float], eps: Double = 1e-10) -> Double {
        dot(a, b) / max(norm(a) * norm(b), eps)
    }

    public static func sub(_ a: [Float], _ b: [Float]) -> [Float] { zip(a, b).map { $0 - $1 } }

    public static func scaled(_ a: [Float], _ s: Double) -> [Float] { let f = Float(s); return a.map { $0 * f } }

    public static func squaredDistance(_ a: [Float], _ b: [Float]) -> Double {
        var s = 0.0
        for i in 0..<a.count { let d = Double(a[i]) - Double(b[i]); s += d * d }
        return s
    }

    /// Σ_i w_i·u_i (saxpy per update).
    public static func weightedSum(_ u: [[Float]], _ w: [Double]) -> [Float] {
        guard let n = u.first?.count else { return [] }
        var acc = [Float](repeating: 0, count: n)
        for (v, wi) in zip(u, w) { accumulate(&acc, v, weight: wi) }
        return acc
    }

    /// acc += w·v (saxpy; nothing when w is 0): one term of `weightedSum`.
    public static func accumulate(_ acc: inout [Float], _ v: [Float], weight wi: Double) {
        let n = min(acc.count, v.count)
        guard n > 0 else { return }
        acc.withUnsafeMutableBufferPointer { pa in
            v.withUnsafeBufferPointer { pv in
                if let a = pa.baseAddress, let b = pv.baseAddress { accumulate(a, b, count: n, weight: wi) }
            }
        }
    }

    /// acc[0..<count] += weight · v[0..<count] (one saxpy, OpenBLAS single-threaded as parry runs it).
    public static func accumulate(_ acc: UnsafeMutablePointer<Float>, _ v: UnsafePointer<Float>, count n: Int, weight wi: Double) {
        guard n > 0, wi != 0 else { return }
        Parallel.configure()
        var off = 0
        while off < n {   // saxpy takes an Int32 count
            let m = min(n - off, 1 << 30)
            cblas_saxpy(Int32(m), Float(wi), v + off, 1, acc + off, 1)
            off += m
        }
    }

    /// RFFL's clipping: if ‖u‖ + 1e-7 > Γ, u ← Γ·u/(‖u‖ + 1e-7). Returns whether it clipped.
    public static func clip(_ u: inout [Float], maxNorm gamma: Double) -> Bool {
        let n = norm(u) + 1e-7
        guard n > gamma else { return false }
        let s = Float(gamma / n)
        for j in 0..<u.count { u[j] *= s }
        return true
    }

    /// RFFL's layer-wise reward: per parameter tensor of `layout`, keep the
    /// ⌈q·numel⌉ entries largest in magnitude (ties to the lower index) and
    /// zero the rest. q ≤ 0 gives zeros, q ≥ 1 the whole vector.
    public static func layerTopK(_ u: [Float], layout: ParameterLayout, q: Double) -> [Float] {
        var out = [Float](repeating: 0, count: u.count)
        guard q > 0 else { return out }
        for r in layout.ranges {
            let n = r.count
            let k = min(n, Int((q * Double(n) - 1e-9).rounded(.up)))
            if k <= 0 { continue }
            if k == n { for j in r { out[j] = u[j] }; continue }
            var mags = u[r].map { abs($0) }
            let threshold = kthLargest(&mags, k)
            var above = 0
            for j in r where abs(u[j]) > threshold { above += 1 }
            var ties = k - above
            for j in r {
                let m = abs(u[j])
                if m > threshold { out[j] = u[j] } else if m == threshold && ties > 0 { out[j] = u[j]; ties -= 1 }
            }
        }
        return out
    }

    /// The k-th largest value (1-based k) by quickselect; reorders `a`.
    static func kthLargest(_ a: inout [Float], _ k: Int) -> Float {
        var lo = 0, hi = a.count - 1
        let target = k - 1
        var seed: UInt64 = 0x9E37_79B9_7F4A_7C15
        while lo < hi {
            seed = seed &* 6364136223846793005 &+ 1442695040888963407
            let pivot = a[lo + Int((seed >> 33) % UInt64(hi - lo + 1))]
            var i = lo, j = hi
            while i <= j {
                while a[i] > pivot { i += 1 }
                while a[j] < pivot { j -= 1 }
                if i <= j { a.swapAt(i, j); i += 1; j -= 1 }
            }
            if target <= j { hi = j } else if target >= i { lo = i } else { return a[target] }
        }
        return a[target]
    }
}
