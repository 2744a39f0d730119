// Gathering and joining: index_select, gather, cat, stack. Indices are
// 0-based here (the Lua binding converts from 1-based) and checked.

extension Tensor {
    /// The slices at `indices` along `dim`, in order (a new tensor).
    func indexSelectRaw(_ dim: Int, _ indices: [Int]) throws -> Tensor {
        let n = shape[dim]
        for i in indices where i < 0 || i >= n {
            throw TensorError("index \(i + 1) is out of bounds for dimension \(dim + 1) with size \(n)")
        }
        var sh = shape
        sh[dim] = indices.count
        try Tensor.checkShape(sh, dtype: dtype)
        let out = try Tensor(shape: sh, dtype: dtype, zeroed: false)
        if isContiguous {
            // Row copies: out[o][j] = self[o][indices[j]], each a run of `inner`
            // elements (a batch of images: one image per row), rows over the
            // threads when there are many. No view tensors per index.
            let inner = shape[(dim + 1)...].reduce(1, *), m = indices.count, esz = dtype.byteSize
            let rows = shape[..<dim].reduce(1, *) * m, bytes = inner * esz
            let src = UnsafeRawPointer(storage.raw + offset * esz), dst = out.storage.raw
            indices.withUnsafeBufferPointer { at in
                Parallel.forRanges(rows, grain: Swift.max(1, 131_072 / Swift.max(inner, 1))) { r in
                    for q in r {
                        let (o, j) = q.quotientAndRemainder(dividingBy: m)
                        (dst + q * bytes).copyMemory(from: src + (o * n + at[j]) * bytes, byteCount: bytes)
                    }
                }
            }
            return out
        }
        for (j, i) in indices.enumerated() {
            try out.selectRaw(dim, j).copyElements(from: selectRaw(dim, i))
        }
        return out
    }

    /// out[i][j][k] = self[index[i][j][k]][j][k] for dim 0 (and likewise for
    /// other dims). `index` is int64 with self's number of dimensions and no
    /// larger than self outside `dim`.
    func gatherRaw(_ dim: Int, _ index: Tensor) throws -> Tensor {
        guard index.dtype == .int64 else { throw TensorError("index must be an int64 tensor, got \(index.dtype.rawValue)") }
        guard index.ndim == ndim else {
            throw TensorError("index has \(index.ndim) dimensions but the input has \(ndim)")
        }
        for d in 0..<ndim where d != dim && index.shape[d] > shape[d] {
            throw TensorError("index shape \(shapeString(index.shape)) is larger than input shape \(shapeString(shape)) outside dimension \(dim + 1)")
        }
        let out = try Tensor(shape: index.shape, dtype: dtype, zeroed: false)
        let pi = index.base(Int64.self)
        var st = strides
        st[dim] = 0
        let n = Int64(shape[dim]), sd = strides[dim]
        var bad: Int64? = nil
        func run<T: TensorElement>(_: T.Type) {
            let src = base(T.self), dst = out.base(T.self)
            var k = 0
            forEachOffset2(index.shape, index.strides, index.offset, st, offset) { io, so in
                let i = pi[io]
                if i < 0 || i >= n { bad = i; dst[k] = 0 } else { dst[k] = src[so + Int(i) * sd] }
                k += 1
            }
        }
        if dtype == .float32 { run(Float.self) } else { run(Int64.self) }
        if let b = bad { throw TensorError("index \(b + 1) is out of bounds for dimension \(dim + 1) with size \(n)") }
        return out
    }
}

/// Joins tensors along existing dimension `dim`. Shapes must match elsewhere;
/// dtypes are promoted.
func catRaw(_ tensors: [Tensor], dim: Int) throws -> Tensor {
    guard let first = tensors.first else { throw TensorError("expected a non-empty list of tensors") }
    let nd = first.ndim
    var dt = first.dtype
    var total = 0
    for (i, t) in tensors.enumerated() {
        guard t.ndim == nd else {
            throw TensorError("tensor \(i + 1) has \(t.ndim) dimensions, expected \(nd)")
        }
        for d in 0..<nd where d != dim && t.shape[d] != first.shape[d] {
            throw TensorError("tensor \(i + 1) has shape \(shapeString(t.shape)), expected \(shapeString(first.shape)) outside dimension \(dim + 1)")
        }
        total += t.shape[dim]
        dt = dt.promoted(with: t.dtype)
    }
    var sh = first.shape
    sh[dim] = total
    try Tensor.checkShape(sh, dtype: dt)
    let out = try Tensor(shape: sh, dtype: dt, zeroed: false)
    var start = 0
    for t in tensors {
        try out.narrowRaw(dim, start, t.shape[dim]).copyElements(from: t)
        start += t.shape[dim]
    }
    return out
}

/// Joins equal-shaped tensors along a new dimension `dim` (0...ndim).
public func stack(_ tensors: [Tensor], dim: Int) throws -> Tensor {
    guard let first = tensors.first else { throw TensorError("expected a non-empty list of tensors") }
    for (i, t) in tensors.enumerated() where t.shape != first.shape {
        throw TensorError("tensor \(i + 1) has shape \(shapeString(t.shape)), expected \(shapeString(first.shape))")
    }
    return try cat(tensors.map { try $0.unsqueeze(dim) }, dim: dim)
}
