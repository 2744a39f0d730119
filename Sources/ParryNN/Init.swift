import Foundation
import ParryCore

/// Parameter initializers (torch.nn.init), in place, without recording.
public enum Init {
    /// `orthogonal_`: the rows×(numel/rows) matrix becomes (semi-)orthogonal
    /// times `gain` — Q of the QR factorization of a standard normal matrix,
    /// with the signs of R's diagonal folded in, as PyTorch does (here by
    /// modified Gram–Schmidt, which gives that same Q).
    public static func orthogonal_(_ t: Tensor, gain: Double = 1, generator: Generator = .current) throws {
        guard t.dtype == .float32, t.ndim >= 2, t.numel > 0, t.isContiguous else {
            throw TensorError("orthogonal_ needs a contiguous float32 tensor with at least 2 dimensions, got \(t.shape)")
        }
        let rows = t.shape[0], cols = t.numel / rows
        // Orthonormalize the columns of an m×n matrix with m ≥ n (transposed when rows < cols).
        let m = Swift.max(rows, cols), n = Swift.min(rows, cols)
        var normal = [Float](repeating: 0, count: rows * cols)
        normal.withUnsafeMutableBufferPointer { p in if let b = p.baseAddress { generator.fillNormal(b, count: rows * cols) } }
        // a[j] = column j (length m)
        var a: [[Double]] = (0..<n).map { j in (0..<m).map { i in Double(rows >= cols ? normal[i * cols + j] : normal[j * cols + i]) } }
        for j in 0..<n {
            for k in 0..<j {
                var dot = 0.0
                for i in 0..<m { dot += a[k][i] * a[j][i] }
                for i in 0..<m { a[j][i] -= dot * a[k][i] }
            }
            var norm = 0.0
            for i in 0..<m { norm += a[j][i] * a[j][i] }
            norm = norm.squareRoot()
            guard norm > 0 else { throw TensorError("orthogonal_: degenerate random matrix") }
            for i in 0..<m { a[j][i] /= norm }
        }
        let p = t.pointer(Float.self)
        for r in 0..<rows {
            for c in 0..<cols {
                p[r * cols + c] = Float(gain * (rows >= cols ? a[c][r] : a[r][c]))
            }
        }
    }

    /// `constant_`: every element set to `value`.
    public static func constant_(_ t: Tensor, _ value: Double) throws {
        _ = try GradMode.noGrad { try t.fill_(value) }
    }
}

/// `clip_grad_norm_`: scales the gradients of `params` so that their joint
/// L2 norm is at most `maxNorm` (coefficient maxNorm / (norm + 1e-6), capped
/// at 1, as PyTorch); returns the norm before clipping.
@discardableResult
public func clipGradNorm(_ params: [Tensor], maxNorm: Double) throws -> Double {
    guard maxNorm.isFinite, maxNorm > 0 else { throw TensorError("max_norm must be a positive number, got \(maxNorm)") }
    var total = 0.0
    for p in params { if let g = p.grad { total += try g.square().sum().item().double } }
    let norm = total.squareRoot()
    let coef = Swift.min(maxNorm / (norm + 1e-6), 1)
    if coef < 1 { try GradMode.noGrad { for p in params { if let g = p.grad { try g.mul_(coef) } } } }
    return norm
}
