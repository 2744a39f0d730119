import CBLAS
import Foundation

// Matrix products on cblas_sgemm. Transposed views are passed to BLAS as
// transposes rather than copied; other layouts are made contiguous first.

/// A 2-D float32 operand as BLAS sees it: pointer, transpose flag, leading dimension.
private struct GemmOperand {
    let pointer: UnsafeMutablePointer<Float>
    let transposed: Bool
    let ld: Int
}

/// Describes matrix `m` (rows×cols with the given strides) for BLAS, or nil
/// if its layout needs a copy.
private func gemmOperand(_ base: UnsafeMutablePointer<Float>, rows: Int, cols: Int, rs: Int, cs: Int) -> GemmOperand? {
    if cs == 1 && (rs >= Swift.max(cols, 1) || rows == 1) { return GemmOperand(pointer: base, transposed: false, ld: Swift.max(rs, cols, 1)) }
    if rs == 1 && (cs >= Swift.max(rows, 1) || cols == 1) { return GemmOperand(pointer: base, transposed: true, ld: Swift.max(cs, rows, 1)) }
    return nil
}

/// The operand as BLAS can read it: the matrix itself when its layout allows,
/// else a packed row-major copy (returned so the caller frees it).
private func blasOperand(_ base: UnsafeMutablePointer<Float>, rows: Int, cols: Int, rs: Int, cs: Int)
    -> (GemmOperand, UnsafeMutablePointer<Float>?) {
    if let op = gemmOperand(base, rows: rows, cols: cols, rs: rs, cs: cs) { return (op, nil) }
    let p = UnsafeMutablePointer<Float>.allocate(capacity: rows * cols)
    for i in 0..<rows { for j in 0..<cols { p[i * cols + j] = base[i * rs + j * cs] } }
    return (GemmOperand(pointer: p, transposed: false, ld: max(cols, 1)), p)
}

/// C (m×n, contiguous rows at `c` with leading dim n) = A (m×k) · B (k×n).
func sgemm(m: Int, n: Int, k: Int,
           a: UnsafeMutablePointer<Float>, ars: Int, acs: Int,
           b: UnsafeMutablePointer<Float>, brs: Int, bcs: Int,
           c: UnsafeMutablePointer<Float>) {
    if m == 0 || n == 0 { return }
    if k == 0 { c.update(repeating: 0, count: m * n); return }
    let (A, aBuf) = blasOperand(a, rows: m, cols: k, rs: ars, cs: acs)
    let (B, bBuf) = blasOperand(b, rows: k, cols: n, rs: brs, cs: bcs)
    defer { aBuf?.deallocate(); bBuf?.deallocate() }
    gemm(transA: A.transposed, transB: B.transposed, m: m, n: n, k: k, alpha: 1, a: A.pointer, lda: A.ld,
         b: B.pointer, ldb: B.ld, beta: 0, c: c, ldc: n)
}

/// Most blocks a GEMM is split into: the machine's cores, at most 8.
let gemmBlocks = min(8, max(ProcessInfo.processInfo.activeProcessorCount, 1))

/// Row-major C = alpha·op(A)·op(B) + beta·C on single-threaded OpenBLAS,
/// split along the larger of m and n into blocks of C when the product is big
/// enough to pay for the hand-off; the blocks run on `Parallel`'s threads.
/// The number of blocks depends on the shape and the machine's core count
/// (`gemmBlocks`), never on `set_num_threads`: OpenBLAS's result for an element
/// can depend on the shape of the call it is in (seen with
/// OPENBLAS_CORETYPE=Haswell: the first 350 columns of a 300×700 product differ
/// in the last bits from a 300×350 product of the same columns), so a split by
/// thread count would make 1 and 2 threads disagree. A fixed split of 8 agreed
/// too but cost 4–5% (1024² sgemm, MLP steps) on 2 cores.
public func gemm(transA: Bool, transB: Bool, m: Int, n: Int, k: Int, alpha: Float,
                 a: UnsafePointer<Float>, lda: Int, b: UnsafePointer<Float>, ldb: Int,
                 beta: Float, c: UnsafeMutablePointer<Float>, ldc: Int) {
    Parallel.configure()
    let ta = transA ? CblasTrans : CblasNoTrans, tb = transB ? CblasTrans : CblasNoTrans
    func run(_ m: Int, _ n: Int, _ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, _ c: UnsafeMutablePointer<Float>) {
        cblas_sgemm(CblasRowMajor, ta, tb, Int32(m), Int32(n), Int32(k), alpha, a, Int32(lda), b, Int32(ldb), beta, c, Int32(ldc))
    }
    let minWork = 1 << 21                                    // multiply-adds per part
    let parts = min(gemmBlocks, m * n * k / minWork, max(m, n) / 16)
    if parts <= 1 { run(m, n, a, b, c); return }
    if m >= n {
        Parallel.forEach(parts) { p in
            let i0 = m * p / parts, i1 = m * (p + 1) / parts
            run(i1 - i0, n, a + (transA ? i0 : i0 * lda), b, c + i0 * ldc)
        }
    } else {
        Parallel.forEach(parts) { p in
            let j0 = n * p / parts, j1 = n * (p + 1) / parts
            run(m, j1 - j0, a, b + (transB ? j0 * ldb : j0), c + j0)
        }
    }
}

extension Tensor {
    /// Matrix product with PyTorch's `matmul` semantics: 1-D·1-D is a dot
    /// product, 1-D operands are promoted to a row/column and the added
    /// dimension removed, ≥3-D operands are batched with broadcasting of the
    /// batch dimensions.
    func matmulRaw(_ other: Tensor) throws -> Tensor {
        guard ndim >= 1, other.ndim >= 1 else {
            throw TensorError("both arguments need at least 1 dimension, got shapes \(shapeString(shape)) and \(shapeString(other.shape))")
        }
        let a = ndim == 1 ? unsqueezeRaw(0) : self
        let b = other.ndim == 1 ? other.unsqueezeRaw(1) : other
        let m = a.shape[a.ndim - 2], k = a.shape[a.ndim - 1]
        let k2 = b.shape[b.ndim - 2], n = b.shape[b.ndim - 1]
        guard k == k2 else {
            throw TensorError("shapes \(shapeString(shape)) and \(shapeString(other.shape)) do not match (\(k) ~= \(k2))")
        }
        let batchA = Array(a.shape.dropLast(2)), batchB = Array(b.shape.dropLast(2))
        let batch = try broadcastShapes(batchA, batchB)
        let ae = try a.expandRaw(batch + [m, k]), be = try b.expandRaw(batch + [k, n])
        try Tensor.checkShape(batch + [m, n])
        guard Swift.max(m, n, k) <= Int(Int32.max) else {
            throw TensorError("matrix dimensions above \(Int32.max) are not supported by BLAS")
        }
        var result: Tensor
        if dtype == .float32 && other.dtype == .float32 {
            result = try Tensor(shape: batch + [m, n], dtype: .float32, zeroed: false)
            let pa = ae.base(Float.self), pb = be.base(Float.self), pc = result.base(Float.self)
            let nb = batch.count
            var bi = 0
            forEachOffset2(batch, Array(ae.strides.prefix(nb)), ae.offset, Array(be.strides.prefix(nb)), be.offset) { oa, ob in
                sgemm(m: m, n: n, k: k, a: pa + oa, ars: ae.strides[nb], acs: ae.strides[nb + 1],
                      b: pb + ob, brs: be.strides[nb], bcs: be.strides[nb + 1], c: pc + bi * m * n)
                bi += 1
            }
        } else {
            result = try naiveMatmul(ae.to(dtype.promoted(with: other.dtype)), be.to(dtype.promoted(with: other.dtype)),
                                     batch: batch, m: m, n: n, k: k)
        }
        if ndim == 1 { result = result.squeezeRaw(result.ndim - 2) }
        if other.ndim == 1 { result = result.squeezeRaw(result.ndim - 1) }
        return result
    }

    /// Batched matmul by loops, for int64 operands.
    private func naiveMatmul(_ a: Tensor, _ b: Tensor, batch: [Int], m: Int, n: Int, k: Int) throws -> Tensor {
        let out = try Tensor(shape: batch + [m, n], dtype: a.dtype, zeroed: true)
        let nb = batch.count
        let ars = a.strides[nb], acs = a.strides[nb + 1], brs = b.strides[nb], bcs = b.strides[nb + 1]
        func run<T: TensorElement>(_: T.Type) {
            let pa = a.base(T.self), pb = b.base(T.self), pc = out.base(T.self)
            var bi = 0
            forEachOffset2(batch, Array(a.strides.prefix(nb)), a.offset, Array(b.strides.prefix(nb)), b.offset) { oa, ob in
                for i in 0..<m { for j in 0..<n {
                    var acc: T = 0
                    for l in 0..<k { acc = T.multiplyAdd(acc, pa[oa + i * ars + l * acs], pb[ob + l * brs + j * bcs]) }
                    pc[bi * m * n + i * n + j] = acc
                } }
                bi += 1
            }
        }
        if a.dtype == .float32 { run(Float.self) } else { run(Int64.self) }
        return out
    }
}
