import Foundation

// Reductions over all elements or along one dimension, and softmax. Sums of
// float32 accumulate in Double. Dimensions are 0-based and already valid.

extension Tensor {
    /// Shape after reducing `dim` (kept as size 1 when `keepdim`).
    func reducedShape(_ dim: Int, keepdim: Bool) -> [Int] {
        var sh = shape
        if keepdim { sh[dim] = 1 } else { sh.remove(at: dim) }
        return sh
    }

    /// Calls body(inputOffset, outputIndex) for every position of the output of
    /// a reduction along `dim`; the reduced run starts at inputOffset with
    /// stride strides[dim] and length shape[dim]; outputs are row-major.
    @inline(__always)
    func forEachLane(_ dim: Int, _ body: (Int, Int) -> Void) {
        var sh = shape, st = strides
        sh.remove(at: dim); st.remove(at: dim)
        var k = 0
        forEachOffset(sh, st, offset) { off in body(off, k); k += 1 }
    }

    /// Sum of all elements (0-d) or along `dim`. int64 stays int64.
    func sumRaw(dim: Int? = nil, keepdim: Bool = false) -> Tensor {
        switch dtype {
        case .float32:
            let p = base(Float.self)
            guard let dim else {
                if isContiguous {
                    // Fixed blocks (a function of the size only), summed in
                    // parallel and then in block order: the same result on any
                    // number of threads.
                    let n = numel, src = p + offset
                    let blocks = Swift.max(1, (n + reduceBlock - 1) / reduceBlock)
                    var partial = [Double](repeating: 0, count: blocks)
                    partial.withUnsafeMutableBufferPointer { part in
                        Parallel.forEach(blocks) { b in
                            let lo = b * reduceBlock
                            part[b] = doubleSum(src + lo, Swift.min(n, lo + reduceBlock) - lo)
                        }
                    }
                    return Tensor.scalar(.float(partial.reduce(0, +)))
                }
                var acc = 0.0
                forEachOffset(shape, strides, offset) { acc += Double(p[$0]) }
                return Tensor.scalar(.float(acc))
            }
            let out = Tensor(unchecked: reducedShape(dim, keepdim: keepdim), dtype: .float32)
            let o = out.base(Float.self), n = shape[dim], s = strides[dim]
            if isContiguous && dim < ndim - 1 {
                // Contiguous input, reducing a non-last dim: add whole rows of the
                // inner block (vectorizes), accumulating in Double per output;
                // the outer index in parallel when there is enough work.
                let inner = shape[(dim + 1)...].reduce(1, *), outer = shape[..<dim].reduce(1, *)
                let src = p + offset
                let parts = outer * n * inner >= 2 * reduceBlock ? Swift.min(outer, 64) : 1
                Parallel.forEach(parts) { part in
                    var acc = [Double](repeating: 0, count: inner)
                    for a in (outer * part / parts)..<(outer * (part + 1) / parts) {
                        for j in 0..<inner { acc[j] = 0 }
                        for i in 0..<n {
                            let row = src + (a * n + i) * inner
                            for j in 0..<inner { acc[j] += Double(row[j]) }
                        }
                        for j in 0..<inner { o[a * inner + j] = Float(acc[j]) }
                    }
                }
                return out
            }
            if isContiguous && dim == ndim - 1 {
                // Rows of a contiguous tensor, in parallel when large.
                let rows = numel / Swift.max(n, 1), src = p + offset
                Parallel.forRanges(rows, grain: Swift.max(1, reduceBlock / Swift.max(n, 1))) { r in
                    for k in r { o[k] = Float(doubleSum(src + k * n, n)) }
                }
                return out
            }
            forEachLane(dim) { off, k in
                var acc = 0.0
                for i in 0..<n { acc += Double(p[off + i * s]) }
                o[k] = Float(acc)
            }
            return out
        case .int64:
            let p = base(Int64.self)
            guard let dim else {
                var acc: Int64 = 0
                forEachOffset(shape, strides, offset) { acc &+= p[$0] }
                return Tensor.scalar(.int(acc))
            }
            let out = Tensor(unchecked: reducedShape(dim, keepdim: keepdim), dtype: .int64)
            let o = out.base(Int64.self), n = shape[dim], s = strides[dim]
            forEachLane(dim) { off, k in
                var acc: Int64 = 0
                for i in 0..<n { acc &+= p[off + i * s] }
                o[k] = acc
            }
            return out
        }
    }

    /// Mean (float32) of all elements or along `dim`.
    public func mean(dim: Int? = nil, keepdim: Bool = false) throws -> Tensor {
        let n = dim.map { shape[$0] } ?? numel
        return try to(.float32).sum(dim: dim, keepdim: keepdim) / Double(n)
    }

    /// Variance with Bessel's `correction` (1 = unbiased, PyTorch's default).
    public func variance(dim: Int? = nil, keepdim: Bool = false, correction: Int = 1) throws -> Tensor {
        let x = try to(.float32)
        let n = dim.map { shape[$0] } ?? numel
        let mu = try x.mean(dim: dim, keepdim: true)
        let d = try x - mu
        let ss = try (d * d).sum(dim: dim, keepdim: keepdim)
        return try ss / Double(Swift.max(n - correction, 0))
    }

    public func std(dim: Int? = nil, keepdim: Bool = false, correction: Int = 1) throws -> Tensor {
        try variance(dim: dim, keepdim: keepdim, correction: correction).sqrt()
    }

    /// Index (0-based, in row-major order) and value of the extreme element;
    /// NaN counts as the extreme, as in PyTorch. `largest` picks max or min.
    private func extreme<T: TensorElement>(_: T.Type, largest: Bool, n: Int, start: Int, stride s: Int,
                                           _ p: UnsafeMutablePointer<T>) -> (Int, T) {
        var best = p[start], bi = 0
        for i in 1..<Swift.max(n, 1) {
            let v = p[start + i * s]
            if best.isNaNElement { break }
            if v.isNaNElement { best = v; bi = i; break }
            if largest ? v > best : v < best { best = v; bi = i }
        }
        return (bi, best)
    }

    /// Max or min along `dim`: values and 0-based int64 indices.
    func extremumRaw(largest: Bool, dim: Int, keepdim: Bool = false) throws -> (Tensor, Tensor) {
        guard shape[dim] > 0 else { throw TensorError("cannot reduce an empty dimension") }
        let rs = reducedShape(dim, keepdim: keepdim)
        let values = try Tensor(shape: rs, dtype: dtype, zeroed: false)
        let indices = try Tensor(shape: rs, dtype: .int64, zeroed: false)
        let pi = indices.base(Int64.self), n = shape[dim], s = strides[dim]
        switch dtype {
        case .float32:
            let p = base(Float.self), pv = values.base(Float.self)
            forEachLane(dim) { off, k in
                let (i, v) = extreme(Float.self, largest: largest, n: n, start: off, stride: s, p)
                pv[k] = v; pi[k] = Int64(i)
            }
        case .int64:
            let p = base(Int64.self), pv = values.base(Int64.self)
            forEachLane(dim) { off, k in
                let (i, v) = extreme(Int64.self, largest: largest, n: n, start: off, stride: s, p)
                pv[k] = v; pi[k] = Int64(i)
            }
        }
        return (values, indices)
    }

    /// Max or min over all elements: the 0-d value and its 0-based flat index.
    func extremumRaw(largest: Bool) throws -> (Tensor, Int) {
        guard numel > 0 else { throw TensorError("cannot reduce an empty tensor") }
        let flat = isContiguous ? self : try cloneRaw()
        let f = Tensor(storage: flat.storage, shape: [numel], strides: [1], offset: flat.offset, dtype: dtype)
        let (v, i) = try f.extremumRaw(largest: largest, dim: 0)
        return (v, Int(i.base(Int64.self)[i.offset]))
    }

    /// p-norm of all elements or along `dim`; p = .infinity gives max |x|.
    func normComposite(p: Double, dim: Int?, keepdim: Bool) throws -> Tensor {
        let a = try to(.float32).abs()
        if p == .infinity {
            if let dim { return try a.max(dim: dim, keepdim: keepdim).values }
            return try a.max()
        }
        if p == 1 { return try a.sum(dim: dim, keepdim: keepdim) }
        if p == 2 { return try (a * a).sum(dim: dim, keepdim: keepdim).sqrt() }
        if p == 0 { return try a.ne(0.0).sum(dim: dim, keepdim: keepdim) }
        return try a.pow(p).sum(dim: dim, keepdim: keepdim).pow(1 / p)
    }

    /// Softmax (or log-softmax) along `dim`, computed stably by subtracting the max.
    func softmaxRaw(dim: Int, log: Bool = false) throws -> Tensor {
        let x = try to(.float32)
        let out = try Tensor(shape: shape, dtype: .float32, zeroed: false)
        if numel == 0 { return out }
        let p = x.base(Float.self), o = out.base(Float.self)
        let n = shape[dim], s = x.strides[dim], os = out.strides[dim]
        var osh = out.strides
        osh.remove(at: dim)
        var sh = shape, st = x.strides
        sh.remove(at: dim); st.remove(at: dim)
        forEachOffset2(sh, st, x.offset, osh, 0) { off, ooff in
            var m = -Float.infinity
            for i in 0..<n { m = Swift.max(m, p[off + i * s]) }
            if !m.isFinite { m = 0 }
            var z = 0.0
            for i in 0..<n {
                let e = expf(p[off + i * s] - m)
                o[ooff + i * os] = e
                z += Double(e)
            }
            if log {
                let lz = Float(Foundation.log(z)) + m
                for i in 0..<n { o[ooff + i * os] = p[off + i * s] - lz }
            } else {
                let inv = Float(1 / z)
                for i in 0..<n { o[ooff + i * os] *= inv }
            }
        }
        return out
    }
}

/// Elements per block of a parallel full reduction.
let reduceBlock = 1 << 16

/// Σ x[0..<n] in Double with four independent partial sums (a single running
/// sum is a serial dependency chain).
@inline(__always)
func doubleSum(_ x: UnsafeMutablePointer<Float>, _ n: Int) -> Double {
    var acc = SIMD4<Double>(repeating: 0)
    var i = 0
    while i &+ 4 <= n {
        acc += SIMD4<Double>(Double(x[i]), Double(x[i &+ 1]), Double(x[i &+ 2]), Double(x[i &+ 3]))
        i &+= 4
    }
    var tail = 0.0
    while i < n { tail += Double(x[i]); i &+= 1 }
    return acc.sum() + tail
}
