// Shape operations. Views share storage; `contiguous`, `clone`, `to` and a
// `reshape` that cannot be a view copy. Dimensions here are 0-based and
// already validated by the caller unless a function says it checks them.

extension Tensor {
    /// A copy of `self` converted to `dtype` (self when the dtype already matches).
    /// (A conversion's copy is outside PARRY_MAX_MEMORY's check: it is made
    /// inside kernels that cannot fail; see MemoryBudget.)
    @inline(__always)
    public func to(_ dtype: DType) -> Tensor {
        dtype == self.dtype ? self : converted(to: dtype)   // the check inlined: every binary op asks twice
    }

    private func converted(to dtype: DType) -> Tensor {
        let out = Tensor(unchecked: shape, dtype: dtype)
        switch (self.dtype, dtype) {
        case (.float32, .int64):
            let src = base(Float.self), dst = out.base(Int64.self)
            var k = 0
            forEachOffset(shape, strides, offset) { dst[k] = Int64(fromDouble: Double(src[$0])); k += 1 }
        case (.int64, .float32):
            let src = base(Int64.self), dst = out.base(Float.self)
            var k = 0
            forEachOffset(shape, strides, offset) { dst[k] = Float(src[$0]); k += 1 }
        default: break
        }
        return out
    }

    /// `self` if contiguous, otherwise a contiguous copy (not recorded).
    func contiguousRaw() throws -> Tensor { isContiguous ? self : try cloneRaw() }

    /// A contiguous copy with its own storage.
    func cloneRaw() throws -> Tensor {
        let out = try Tensor(shape: shape, dtype: dtype, zeroed: false)
        out.copyElements(from: self)
        return out
    }

    /// Copies the elements of `src` (same shape) into `self`, any strides.
    func copyElements(from src: Tensor) {
        switch dtype {
        case .float32: copyTyped(Float.self, from: src.to(.float32))
        case .int64: copyTyped(Int64.self, from: src.to(.int64))
        }
    }

    private func copyTyped<T: TensorElement>(_: T.Type, from src: Tensor) {
        let s = src.base(T.self), d = base(T.self)
        if isContiguous && src.isContiguous {
            (d + offset).update(from: s + src.offset, count: numel)
            return
        }
        forEachRow2(shape, src.strides, src.offset, strides, offset) { a, b, n, sa, sb in
            if sa == 1 && sb == 1 {
                (d + b).update(from: s + a, count: n)
            } else {
                var i = a, j = b
                for _ in 0..<n { d[j] = s[i]; i &+= sa; j &+= sb }
            }
        }
    }

    /// Resolves a requested shape with at most one -1 against `numel`.
    public static func inferShape(_ requested: [Int], numel: Int) throws -> [Int] {
        guard requested.count <= maxDims else {
            throw TensorError("tensors have at most \(maxDims) dimensions, got \(requested.count)")
        }
        var shape = requested
        var inferred: Int? = nil
        var known = 1
        for (i, n) in requested.enumerated() {
            if n == -1 {
                if inferred != nil { throw TensorError("only one dimension can be -1, got \(shapeString(requested))") }
                inferred = i
            } else if n < 0 {
                throw TensorError("invalid size \(n) in shape \(shapeString(requested))")
            } else {
                let (r, o) = known.multipliedReportingOverflow(by: n)
                guard !o else { throw TensorError("shape \(shapeString(requested)) has too many elements") }
                known = r
            }
        }
        if let i = inferred {
            guard known != 0, numel % known == 0 else {
                throw TensorError("shape \(shapeString(requested)) is invalid for \(numel) elements")
            }
            shape[i] = numel / known
        } else if known != numel {
            throw TensorError("shape \(shapeString(requested)) is invalid for \(numel) elements")
        }
        try checkShape(shape)   // sizes whose product overflows, beside a 0
        return shape
    }

    /// Strides for viewing `self` as `newShape` without copying, if possible
    /// (the rule PyTorch's `view` follows: each group of merged/split input
    /// dimensions must be contiguous within itself).
    func viewStrides(_ newShape: [Int]) -> [Int]? {
        if numel == 0 || isContiguous { return Tensor.contiguousStrides(newShape) }
        var newStrides = [Int](repeating: 0, count: newShape.count)
        var viewD = newShape.count - 1
        var chunkBaseStride = strides.last ?? 1
        var tensorNumel = 1
        var viewNumel = 1
        for tensorD in stride(from: shape.count - 1, through: 0, by: -1) {
            tensorNumel *= shape[tensorD]
            if tensorD == 0 || (shape[tensorD - 1] != 1 && strides[tensorD - 1] != tensorNumel * chunkBaseStride) {
                while viewD >= 0 && (viewNumel < tensorNumel || newShape[viewD] == 1) {
                    newStrides[viewD] = viewNumel * chunkBaseStride
                    viewNumel *= newShape[viewD]
                    viewD -= 1
                }
                if viewNumel != tensorNumel { return nil }
                if tensorD > 0 {
                    chunkBaseStride = strides[tensorD - 1]
                    tensorNumel = 1
                    viewNumel = 1
                }
            }
        }
        if viewD != -1 { return nil }
        return newStrides
    }

    /// A view with `shape` (one -1 allowed); fails if the strides do not allow it.
    func viewRaw(_ requested: [Int]) throws -> Tensor {
        let newShape = try Tensor.inferShape(requested, numel: numel)
        guard let st = viewStrides(newShape) else {
            throw TensorError("view of shape \(shapeString(newShape)) is not compatible with the input's strides; use reshape")
        }
        return Tensor(storage: storage, shape: newShape, strides: st, offset: offset, dtype: dtype)
    }

    /// `view` when possible, otherwise a reshaped contiguous copy.
    func reshapeRaw(_ requested: [Int]) throws -> Tensor {
        let newShape = try Tensor.inferShape(requested, numel: numel)
        if let st = viewStrides(newShape) {
            return Tensor(storage: storage, shape: newShape, strides: st, offset: offset, dtype: dtype)
        }
        try Tensor.checkShape(newShape, dtype: dtype)
        let c = try cloneRaw()
        return Tensor(storage: c.storage, shape: newShape, strides: Tensor.contiguousStrides(newShape), offset: 0, dtype: dtype)
    }

    /// Merges dimensions `start...end` (0-based, inclusive) into one.
    public func flatten(_ start: Int = 0, _ end: Int = -1) throws -> Tensor {
        if ndim == 0 { return try reshape([1]) }
        let e = end < 0 ? end + ndim : end
        guard start >= 0, start < ndim, e >= start, e < ndim else {
            throw TensorError("invalid flatten range for a \(ndim)-d tensor")
        }
        let merged = shape[start...e].reduce(1, *)
        return try reshape(Array(shape[..<start]) + [merged] + Array(shape[(e + 1)...]))
    }

    /// Removes dimension `dim` if it has size 1, or every size-1 dimension when nil.
    func squeezeRaw(_ dim: Int? = nil) -> Tensor {
        var sh = [Int](), st = [Int]()
        for d in 0..<ndim where !(shape[d] == 1 && (dim == nil || dim == d)) {
            sh.append(shape[d]); st.append(strides[d])
        }
        return Tensor(storage: storage, shape: sh, strides: st, offset: offset, dtype: dtype)
    }

    /// Inserts a size-1 dimension at position `dim` (0...ndim).
    func unsqueezeRaw(_ dim: Int) -> Tensor {
        var sh = shape, st = strides
        let s = dim < ndim ? strides[dim] * shape[dim] : 1
        sh.insert(1, at: dim); st.insert(s, at: dim)
        return Tensor(storage: storage, shape: sh, strides: st, offset: offset, dtype: dtype)
    }

    /// Swaps dimensions `d0` and `d1`.
    func transposeRaw(_ d0: Int, _ d1: Int) -> Tensor {
        var sh = shape, st = strides
        sh.swapAt(d0, d1); st.swapAt(d0, d1)
        return Tensor(storage: storage, shape: sh, strides: st, offset: offset, dtype: dtype)
    }

    /// Reorders dimensions; `dims` must be a permutation of 0..<ndim.
    func permuteRaw(_ dims: [Int]) throws -> Tensor {
        guard dims.count == ndim, Set(dims) == Set(0..<ndim) else {
            throw TensorError("expected a permutation of the \(ndim) dimensions")
        }
        return Tensor(storage: storage, shape: dims.map { shape[$0] }, strides: dims.map { strides[$0] },
                      offset: offset, dtype: dtype)
    }

    /// A view broadcasting size-1 (or new leading) dimensions to `sizes`; -1 keeps a size.
    /// The view may not have more elements than could be allocated, so every
    /// tensor that exists can be copied (outputs of unary ops, `clone`, `to`).
    func expandRaw(_ sizes: [Int]) throws -> Tensor {
        guard sizes.count >= ndim else {
            throw TensorError("cannot expand shape \(shapeString(shape)) to fewer dimensions \(shapeString(sizes))")
        }
        let lead = sizes.count - ndim
        var sh = [Int](repeating: 0, count: sizes.count), st = sh
        for i in 0..<sizes.count {
            if i < lead {
                guard sizes[i] >= 0 else { throw TensorError("size -1 is not allowed for a new leading dimension") }
                sh[i] = sizes[i]; st[i] = 0
            } else {
                let d = i - lead
                let want = sizes[i] == -1 ? shape[d] : sizes[i]
                if want == shape[d] {
                    sh[i] = want; st[i] = strides[d]
                } else if shape[d] == 1 && want >= 0 {
                    sh[i] = want; st[i] = 0
                } else {
                    throw TensorError("cannot expand shape \(shapeString(shape)) to \(shapeString(sizes))")
                }
            }
        }
        try Tensor.checkShape(sh, dtype: dtype)
        return Tensor(storage: storage, shape: sh, strides: st, offset: offset, dtype: dtype)
    }

    /// Elements `start..<start+length` along `dim` (0-based start).
    func narrowRaw(_ dim: Int, _ start: Int, _ length: Int) throws -> Tensor {
        guard start >= 0, start <= shape[dim], length >= 0, length <= shape[dim] - start else {
            throw TensorError("range \(start + 1)..\(start + length) is out of bounds for size \(shape[dim])")
        }
        var sh = shape
        sh[dim] = length
        return Tensor(storage: storage, shape: sh, strides: strides, offset: offset + start * strides[dim], dtype: dtype)
    }

    /// The slice at 0-based `index` along `dim`, with that dimension removed.
    func selectRaw(_ dim: Int, _ index: Int) throws -> Tensor {
        guard index >= 0, index < shape[dim] else {
            throw TensorError("index \(index + 1) is out of bounds for size \(shape[dim])")
        }
        var sh = shape, st = strides
        sh.remove(at: dim); st.remove(at: dim)
        return Tensor(storage: storage, shape: sh, strides: st, offset: offset + index * strides[dim], dtype: dtype)
    }

    /// Consecutive views of `size` elements along `dim` (the last may be shorter).
    public func split(_ size: Int, dim: Int) throws -> [Tensor] {
        guard size > 0 else { throw TensorError("split size must be positive, got \(size)") }
        var parts = [Tensor]()
        var start = 0
        repeat {
            let len = Swift.min(size, shape[dim] - start)
            parts.append(try narrow(dim, start, len))
            start += size
        } while start < shape[dim]
        return parts
    }

    /// At most `chunks` views of equal size (the last may be shorter) along `dim`.
    public func chunk(_ chunks: Int, dim: Int) throws -> [Tensor] {
        guard chunks > 0 else { throw TensorError("number of chunks must be positive, got \(chunks)") }
        let size = Swift.max(1, shape[dim] / chunks + (shape[dim] % chunks == 0 ? 0 : 1))
        return try split(size, dim: dim)
    }
}
