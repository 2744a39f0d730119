import CKernels
import Foundation
import ParryCore

// Functional forms of the layers (PyTorch's torch.nn.functional). All are
// differentiable; most are compositions of ParryCore ops, so their
// higher-order gradients come for free. unfold/fold are the primitives
// under convolution and average pooling.

public enum F {
    /// x·Wᵀ + b for x: …×in, W: out×in, b: out.
    public static func linear(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?) throws -> Tensor {
        guard weight.ndim == 2, x.ndim >= 1, x.shape[x.ndim - 1] == weight.shape[1] else {
            throw TensorError("input of shape \(shapeString(x.shape)) does not match weight \(shapeString(weight.shape)) (expected last dimension \(weight.ndim == 2 ? weight.shape[1] : 0))")
        }
        let y = try x.matmul(weight.transpose(0, 1))
        return try bias.map { try y + $0 } ?? y
    }

    @inline(__always) static func floorDiv(_ a: Int, _ b: Int) -> Int { a >= 0 ? a / b : -((-a + b - 1) / b) }
    @inline(__always) static func ceilDiv(_ a: Int, _ b: Int) -> Int { -floorDiv(-a, b) }

    /// Output size of a sliding window.
    static func windows(_ n: Int, _ k: Int, _ s: Int, _ p: Int) -> Int { (n + 2 * p - k) / s + 1 }

    /// How unfold lays out its columns: `batched` is N×(C·kh·kw)×L (PyTorch's
    /// unfold); `matrix` is (C·kh·kw)×(N·L), one matrix for the whole batch,
    /// so a convolution is a single GEMM.
    public enum ColumnLayout: Sendable { case batched, matrix }

    /// im2col: x N×C×H×W → windows as columns (L = H'·W' per image, zero padding).
    public static func unfold(_ x: Tensor, kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int),
                              layout: ColumnLayout = .batched) throws -> Tensor {
        guard x.ndim == 4 else { throw TensorError("expected a 4-d input N×C×H×W, got shape \(shapeString(x.shape))") }
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (kh, kw) = kernel, (sh, sw) = stride, (ph, pw) = padding
        guard kh > 0, kw > 0, sh > 0, sw > 0, ph >= 0, pw >= 0 else { throw TensorError("kernel and stride must be positive and padding non-negative") }
        let oh = windows(h, kh, sh, ph), ow = windows(w, kw, sw, pw)
        guard oh > 0, ow > 0 else {
            throw TensorError("input \(h)×\(w) is smaller than the kernel \(kh)×\(kw) (with padding \(ph), \(pw))")
        }
        let L = oh * ow, rows = c * kh * kw
        let outShape = layout == .batched ? [n, rows, L] : [rows, n * L]
        try Tensor.checkShape(outShape)
        let src = try x.to(.float32).contiguous().detach()
        let out = try Tensor(shape: outShape, dtype: .float32, zeroed: false)
        let ps = src.pointer(Float.self), po = out.pointer(Float.self)
        let g = WindowGeometry(c: c, h: h, w: w, kh: kh, kw: kw, sh: sh, sw: sw, ph: ph, pw: pw)
        for b in 0..<n {
            if layout == .batched { g.im2col(ps + b * c * h * w, po + b * rows * L, rowStride: L) }
            else { g.im2col(ps + b * c * h * w, po + b * L, rowStride: n * L) }
        }
        let size = (h, w), batch = n
        return record("unfold", out, [x]) { g, _ in
            [try fold(g, outputSize: size, kernel: kernel, stride: stride, padding: padding, layout: layout, batch: batch)]
        }
    }

    /// col2im, the adjoint of unfold: sums window columns back into N×C×H×W
    /// (`batch` is N, needed for the `matrix` layout).
    public static func fold(_ cols: Tensor, outputSize: (Int, Int), kernel: (Int, Int), stride: (Int, Int), padding: (Int, Int),
                            layout: ColumnLayout = .batched, batch: Int? = nil) throws -> Tensor {
        let (h, w) = outputSize, (kh, kw) = kernel, (sh, sw) = stride, (ph, pw) = padding
        let oh = windows(h, kh, sh, ph), ow = windows(w, kw, sw, pw)
        let L = oh * ow
        let n = layout == .batched ? (cols.ndim == 3 ? cols.shape[0] : 0) : (batch ?? 1)
        let valid = layout == .batched
            ? cols.ndim == 3 && cols.shape[1] % (kh * kw) == 0 && cols.shape[2] == L
            : cols.ndim == 2 && cols.shape[0] % (kh * kw) == 0 && cols.shape[1] == n * L
        guard valid else {
            throw TensorError("fold: columns of shape \(shapeString(cols.shape)) do not match the output size and kernel")
        }
        let rows = layout == .batched ? cols.shape[1] : cols.shape[0], c = rows / (kh * kw)
        let src = try cols.contiguous().detach()
        let out = try Tensor.zeros([n, c, h, w])
        let ps = src.pointer(Float.self), po = out.pointer(Float.self)
        let g = WindowGeometry(c: c, h: h, w: w, kh: kh, kw: kw, sh: sh, sw: sw, ph: ph, pw: pw)
        for b in 0..<n {
            if layout == .batched { g.col2im(ps + b * rows * L, rowStride: L, into: po + b * c * h * w) }
            else { g.col2im(ps + b * L, rowStride: n * L, into: po + b * c * h * w) }
        }
        return record("fold", out, [cols]) { g, _ in
            [try unfold(g, kernel: kernel, stride: stride, padding: padding, layout: layout)]
        }
    }

    /// 2-D convolution (cross-correlation, as PyTorch): x N×C×H×W, weight O×C×kh×kw.
    public static func conv2d(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, stride: Int = 1, padding: Int = 0) throws -> Tensor {
        try conv2d(x, weight, bias, stride: (stride, stride), padding: (padding, padding))
    }

    /// 2-D convolution with per-dimension stride and padding (height, width).
    public static func conv2d(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, stride: (Int, Int), padding: (Int, Int)) throws -> Tensor {
        guard x.ndim == 4 else { throw TensorError("expected a 4-d input N×C×H×W, got shape \(shapeString(x.shape))") }
        guard weight.ndim == 4, weight.shape[1] == x.shape[1] else {
            throw TensorError("input has \(x.shape[1]) channels but the weight \(shapeString(weight.shape)) expects \(weight.ndim == 4 ? weight.shape[1] : 0)")
        }
        if x.dtype == .float32 && weight.dtype == .float32 && (bias?.dtype ?? .float32) == .float32 {
            return try conv2dFused(x, weight, bias, stride: stride, padding: padding)
        }
        let (o, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
        // One GEMM for the whole batch: (O × C·kh·kw) · (C·kh·kw × N·L) → O × N·L.
        let cols = try unfold(x, kernel: (kh, kw), stride: stride, padding: padding, layout: .matrix)
        let oh = windows(x.shape[2], kh, stride.0, padding.0), ow = windows(x.shape[3], kw, stride.1, padding.1)
        var y = try weight.reshape([o, -1]).matmul(cols)
        // The bias goes on while the result is O × N·L (contiguous rows), then one
        // row-wise copy lays it out as N × O × H' × W'.
        if let bias { y = try y + bias.reshape([o, 1]) }
        return try y.reshape([o, x.shape[0], oh * ow]).permute([1, 0, 2]).contiguous().reshape([x.shape[0], o, oh, ow])
    }

    /// Max pooling; the gradient goes to each window's maximum.
    public static func maxPool2d(_ x: Tensor, kernel: Int, stride: Int? = nil, padding: Int = 0) throws -> Tensor {
        try maxPool2d(x, kernel: kernel, stride: stride, padding: padding, relu: false)
    }

    /// `maxPool2d(relu(x))` in one pass, with the bits of the two ops one after
    /// the other, forward and backward (Sequential runs ReLU → MaxPool2d so):
    /// ReLU is monotone, so it commutes with the max — relu(max) is the max of
    /// the relus, NaN included — and where the window's maximum is positive its
    /// first position is the same in x and in relu(x), while a window whose
    /// maximum is ≤ 0 or NaN passes no gradient through relu's (x > 0) mask.
    /// Neither the N×C×H×W relu output nor its gradient is ever written.
    public static func reluMaxPool2d(_ x: Tensor, kernel: Int, stride: Int? = nil, padding: Int = 0) throws -> Tensor {
        try maxPool2d(x, kernel: kernel, stride: stride, padding: padding, relu: true)
    }

    /// v replaces best when larger, or when v is NaN (NaN wins and stays, as in PyTorch).
    @inline(__always) private static func poolBetter(_ v: Float, _ best: Float) -> Bool { !(v <= best) && !best.isNaN }

    private static func maxPool2d(_ x: Tensor, kernel: Int, stride: Int?, padding: Int, relu: Bool) throws -> Tensor {
        guard x.ndim == 4 else { throw TensorError("expected a 4-d input N×C×H×W, got shape \(shapeString(x.shape))") }
        let s = stride ?? kernel
        guard kernel > 0, s > 0, padding >= 0, padding * 2 <= kernel else {
            throw TensorError("kernel and stride must be positive, padding at most half the kernel")
        }
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let oh = windows(h, kernel, s, padding), ow = windows(w, kernel, s, padding)
        guard oh > 0, ow > 0 else { throw TensorError("input \(h)×\(w) is smaller than the kernel \(kernel)") }
        let src = try x.to(.float32).contiguous().detach()
        let out = try Tensor(shape: [n, c, oh, ow], dtype: .float32, zeroed: false)
        let ps = src.pointer(Float.self), po = out.pointer(Float.self)
        // Planes in parallel (ranges of whole planes, at least ~64k input elements each).
        let planeGrain = max(1, 65_536 / max(h * w, 1))
        let name = relu ? "relu_max_pool2d" : "max_pool2d", inShape = x.shape
        if kernel == 2 && s == 2 && padding == 0 {
            return try maxPool2x2(ps, out, n: n, c: c, h: h, w: w, relu: relu, grain: planeGrain, name: name, input: x)
        }
        // Each window's maximum's position in its plane; with relu, −1 − position
        // where the output is not positive (relu's mask lets no gradient through).
        let idx = try Tensor(shape: [n, c, oh * ow], dtype: .int64, zeroed: false)
        let pi = idx.pointer(Int64.self)
        Parallel.forRanges(n &* c, grain: planeGrain) { planes in for plane in planes {
            let p = ps + plane &* h &* w, q = pi + plane &* oh &* ow, o = po + plane &* oh &* ow
            for i in 0..<oh {
                let h0 = i &* s &- padding
                let ha = max(h0, 0), hb = min(h0 &+ kernel, h)
                for j in 0..<ow {
                    let w0 = j &* s &- padding
                    let wa = max(w0, 0), wb = min(w0 &+ kernel, w)
                    var bi = ha &* w &+ wa
                    var best = p[bi]
                    var a = ha
                    while a < hb {
                        let row = a &* w
                        var b = wa
                        while b < wb {
                            let v = p[row &+ b]
                            if poolBetter(v, best) { best = v; bi = row &+ b }
                            b &+= 1
                        }
                        a &+= 1
                    }
                    let pass = !relu || best > 0
                    o[i &* ow &+ j] = pass || best.isNaN ? best : 0    // relu: NaN stays NaN
                    q[i &* ow &+ j] = pass ? Int64(bi) : -1 &- Int64(bi)
                }
            }
        } }
        // The gradient goes to each window's maximum (not through relu's mask):
        // a scatter-add by the recorded indices — directly, planes in parallel,
        // or under create_graph as the differentiable scatterAdd (second order works).
        return record(name, out, [x]) { g, _ in
            if !GradMode.isEnabled {
                let gc = try g.to(.float32).contiguous()
                let gx = try Tensor(shape: inShape, dtype: .float32, zeroed: false)
                let pg = gc.pointer(Float.self), pgx = gx.pointer(Float.self), pidx = idx.pointer(Int64.self)
                Parallel.forRanges(n &* c, grain: planeGrain) { planes in for plane in planes {
                    let dst = pgx + plane &* h &* w, src = pg + plane &* oh &* ow, q = pidx + plane &* oh &* ow
                    dst.update(repeating: 0, count: h &* w)
                    for k in 0..<(oh &* ow) where q[k] >= 0 { dst[Int(q[k])] += src[k] }
                } }
                return [gx]
            }
            guard relu else {
                return [try g.reshape([n, c, oh * ow]).scatterAdd(into: [n, c, h * w], dim: 2, index: idx).reshape(inShape)]
            }
            // relu's mask as a constant factor, the positions decoded.
            let count = n * c * oh * ow
            let mask = try Tensor(shape: [n, c, oh * ow], dtype: .float32, zeroed: false)
            let at = try Tensor(shape: [n, c, oh * ow], dtype: .int64, zeroed: false)
            let pm = mask.pointer(Float.self), pa = at.pointer(Int64.self), pidx = idx.pointer(Int64.self)
            for k in 0..<count { let v = pidx[k]; pm[k] = v >= 0 ? 1 : 0; pa[k] = v >= 0 ? v : -1 - v }
            return [try (g.reshape([n, c, oh * ow]) * mask).scatterAdd(into: [n, c, h * w], dim: 2, index: at).reshape(inShape)]
        }
    }

    /// The common 2×2 / stride 2 case on CKernels' pool.c: eight windows per
    /// vector step, and one byte per window (its maximum's place, see
    /// pk_maxpool2x2) kept for the backward instead of an 8-byte position —
    /// in a small CNN's step the index was a third of the bytes pooling moved.
    private static func maxPool2x2(_ ps: UnsafeMutablePointer<Float>, _ out: Tensor, n: Int, c: Int, h: Int, w: Int, relu: Bool,
                                   grain: Int, name: String, input x: Tensor) throws -> Tensor {
        let oh = h / 2, ow = w / 2, inShape = x.shape
        let codes = Storage.make(byteCount: n * c * oh * ow)
        let pc = codes.raw.assumingMemoryBound(to: UInt8.self), po = out.pointer(Float.self)
        Parallel.forRanges(n &* c, grain: grain) { r in
            pk_maxpool2x2(ps + r.lowerBound &* h &* w, r.count, h, w, relu ? 1 : 0, po + r.lowerBound &* oh &* ow,
                          pc + r.lowerBound &* oh &* ow)
        }
        return record(name, out, [x]) { g, _ in
            let pc = codes.raw.assumingMemoryBound(to: UInt8.self)
            if !GradMode.isEnabled {
                let gc = try g.to(.float32).contiguous()
                let gx = try Tensor(shape: inShape, dtype: .float32, zeroed: false)
                let pg = gc.pointer(Float.self), pgx = gx.pointer(Float.self)
                Parallel.forRanges(n &* c, grain: grain) { r in
                    pk_maxpool2x2_backward(pg + r.lowerBound &* oh &* ow, pc + r.lowerBound &* oh &* ow, r.count, h, w,
                                           pgx + r.lowerBound &* h &* w)
                }
                return [gx]
            }
            // create_graph: the differentiable scatterAdd by the decoded positions
            // (times relu's mask as a constant factor).
            let at = try Tensor(shape: [n, c, oh * ow], dtype: .int64, zeroed: false)
            let mask = relu ? try Tensor(shape: [n, c, oh * ow], dtype: .float32, zeroed: false) : nil
            let pa = at.pointer(Int64.self), pm = mask?.pointer(Float.self)
            for plane in 0..<(n * c) { for i in 0..<oh { for j in 0..<ow {
                let k = (plane * oh + i) * ow + j, code = Int(pc[k])
                pa[k] = Int64((2 * i + (code >> 1 & 1)) * w + 2 * j + (code & 1))
                pm?[k] = code < 4 ? 1 : 0
            } } }
            var gk = try g.reshape([n, c, oh * ow])
            if let mask { gk = try gk * mask }
            return [try gk.scatterAdd(into: [n, c, h * w], dim: 2, index: at).reshape(inShape)]
        }
    }

    /// Average pooling (zero padding counted, as PyTorch's default).
    public static func avgPool2d(_ x: Tensor, kernel: Int, stride: Int? = nil, padding: Int = 0) throws -> Tensor {
        guard x.ndim == 4 else { throw TensorError("expected a 4-d input N×C×H×W, got shape \(shapeString(x.shape))") }
        let s = stride ?? kernel
        let (n, c) = (x.shape[0], x.shape[1])
        let cols = try unfold(x, kernel: (kernel, kernel), stride: (s, s), padding: (padding, padding))
        let oh = windows(x.shape[2], kernel, s, padding), ow = windows(x.shape[3], kernel, s, padding)
        return try cols.reshape([n, c, kernel * kernel, oh * ow]).mean(dim: 2).reshape([n, c, oh, ow])
    }

    /// Adaptive average pooling to out×out, with PyTorch's bins
    /// [floor(i·H/out), ceil((i+1)·H/out)).
    public static func adaptiveAvgPool2d(_ x: Tensor, _ out: (Int, Int)) throws -> Tensor {
        guard x.ndim == 4 else { throw TensorError("expected a 4-d input N×C×H×W, got shape \(shapeString(x.shape))") }
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (oh, ow) = out
        guard oh > 0, ow > 0 else { throw TensorError("output size must be positive") }
        // Pooling as a linear map: P is (oh·ow)×(h·w).
        var p = [Float](repeating: 0, count: oh * ow * h * w)
        for i in 0..<oh {
            let h0 = (i * h) / oh, h1 = ((i + 1) * h + oh - 1) / oh
            for j in 0..<ow {
                let w0 = (j * w) / ow, w1 = ((j + 1) * w + ow - 1) / ow
                let inv = 1 / Float((h1 - h0) * (w1 - w0))
                for a in h0..<h1 { for b in w0..<w1 { p[(i * ow + j) * h * w + a * w + b] = inv } }
            }
        }
        let P = try Tensor(p, shape: [oh * ow, h * w])
        return try x.reshape([n * c, h * w]).matmul(P.transpose(0, 1)).reshape([n, c, oh, ow])
    }

    /// Batch normalization over all dimensions but 1 (N×C or N×C×H×W). In
    /// training, uses batch statistics and updates the running ones in place
    /// (momentum as PyTorch: new = (1−m)·old + m·batch, variance unbiased).
    /// `relu`: relu(batch_norm(x)), in the same pass when the fused kernel runs.
    public static func batchNorm(_ x: Tensor, runningMean: Tensor?, runningVar: Tensor?, weight: Tensor?, bias: Tensor?,
                                 training: Bool, momentum: Double = 0.1, eps: Double = 1e-5, relu: Bool = false) throws -> Tensor {
        guard x.ndim == 2 || x.ndim == 4 else {
            throw TensorError("expected a 2-d (N×C) or 4-d (N×C×H×W) input, got shape \(shapeString(x.shape))")
        }
        let c = x.shape[1]
        for (name, t) in [("running_mean", runningMean), ("running_var", runningVar), ("weight", weight), ("bias", bias)] {
            if let t, t.shape != [c] { throw TensorError("\(name) has shape \(shapeString(t.shape)), expected {\(c)}") }
        }
        // Checked once here for both implementations below.
        if training && x.numel / max(c, 1) <= 1 {
            throw TensorError("expected more than 1 value per channel when training, got input shape \(shapeString(x.shape))")
        }
        if !training && (runningMean == nil || runningVar == nil) { throw TensorError("running statistics are needed in eval mode") }
        let fusable = [x, runningMean, runningVar, weight, bias].allSatisfy { ($0?.dtype ?? .float32) == .float32 }
            && [runningMean, runningVar].allSatisfy { $0?.isContiguous ?? true }
        if fusable {
            return try batchNormFused(x, runningMean: runningMean, runningVar: runningVar, weight: weight, bias: bias,
                                      training: training, momentum: momentum, eps: eps, relu: relu)
        }
        let y = try batchNormComposite(x, runningMean: runningMean, runningVar: runningVar, weight: weight, bias: bias,
                                       training: training, momentum: momentum, eps: eps, updateRunning: true)
        return relu ? try y.relu() : y
    }

    /// BatchNorm from differentiable tensor ops (any dtype; the create_graph
    /// backward of the fused op differentiates this).
    static func batchNormComposite(_ x: Tensor, runningMean: Tensor?, runningVar: Tensor?, weight: Tensor?, bias: Tensor?,
                                   training: Bool, momentum: Double = 0.1, eps: Double, updateRunning: Bool = false) throws -> Tensor {
        let c = x.shape[1]
        let shape = x.ndim == 4 ? [1, c, 1, 1] : [1, c]
        let reduceDims = x.ndim == 4 ? [0, 2, 3] : [0]
        let count = x.numel / max(c, 1)
        var mean: Tensor, variance: Tensor
        if training {
            mean = x
            for d in reduceDims { mean = try mean.sum(dim: d, keepdim: true) }
            mean = try mean / Double(count)
            let centered = try x - mean
            variance = try centered * centered
            for d in reduceDims { variance = try variance.sum(dim: d, keepdim: true) }
            variance = try variance / Double(count)
            if updateRunning, let rm = runningMean, let rv = runningVar {
                try GradMode.noGrad {
                    // running = (1 − m)·running + m·batch, the variance unbiased
                    let unbiased = try variance.detach().reshape([c]) * (Double(count) / Double(count - 1))
                    try rm.mul_(1 - momentum).add_(momentum * mean.detach().reshape([c]))
                    try rv.mul_(1 - momentum).add_(momentum * unbiased)
                }
            }
        } else {
            guard let rm = runningMean, let rv = runningVar else { throw TensorError("running statistics are needed in eval mode") }
            mean = try rm.reshape(shape)
            variance = try rv.reshape(shape)
        }
        var y = try (x - mean) * (variance + eps).rsqrt()
        if let weight { y = try y * weight.reshape(shape) }
        if let bias { y = try y + bias.reshape(shape) }
        return y
    }

    /// Zeroes elements with probability p and scales the rest by 1/(1−p) when training.
    public static func dropout(_ x: Tensor, p: Double, training: Bool, generator: Generator = .current) throws -> Tensor {
        guard p >= 0, p <= 1 else { throw TensorError("dropout probability must be in [0, 1], got \(p)") }
        guard training, p > 0 else { return x }
        if p == 1 { return try x * 0.0 }
        let keep = try Tensor.rand(x.shape, generator: generator).ge(p)
        return try x * (keep * (1 / (1 - p)))
    }

    public static func leakyRelu(_ x: Tensor, slope: Double = 0.01) throws -> Tensor {
        try whereSelect(x.gt(0), x, slope * x)
    }

    /// GELU, exact form x·Φ(x) = x/2·(1 + erf(x/√2)) (PyTorch's default).
    public static func gelu(_ x: Tensor) throws -> Tensor {
        try x * ((x * (1 / 2.0.squareRoot())).erf() + 1) * 0.5
    }

    /// One-hot float32 rows for 0-based int64 labels.
    public static func oneHot(_ labels: Tensor, classes: Int) throws -> Tensor {
        guard labels.dtype == .int64 else { throw TensorError("labels must be int64, got \(labels.dtype.rawValue)") }
        let values = labels.int64s()
        for v in values where v < 0 || v >= classes {
            throw TensorError("label \(v + 1) is outside 1..\(classes)")
        }
        let out = try Tensor.zeros(labels.shape + [classes])
        let p = out.pointer(Float.self)
        for (i, v) in values.enumerated() { p[i * classes + Int(v)] = 1 }
        return out
    }

    /// x / max(‖x‖_p, eps) along `dim`.
    public static func normalize(_ x: Tensor, p: Double = 2, dim: Int = 1, eps: Double = 1e-12) throws -> Tensor {
        try x / x.norm(p: p, dim: dim, keepdim: true).clamp(min: eps)
    }

    /// Cosine similarity along `dim`: a·b / max(‖a‖·‖b‖, eps).
    public static func cosineSimilarity(_ a: Tensor, _ b: Tensor, dim: Int = 1, eps: Double = 1e-8) throws -> Tensor {
        let dot = try (a * b).sum(dim: dim)
        let na = try a.norm(dim: dim), nb = try b.norm(dim: dim)
        return try dot / (na * nb).clamp(min: eps)
    }

    /// log det A for symmetric positive-definite matrices A (…×M×M), by a
    /// Cholesky factorization written with differentiable tensor ops (so
    /// gradients of any order flow; meant for small M, e.g. ADP's M×M Gram
    /// matrices of ensemble members): log det A = 2·Σ_j log L_jj.
    public static func logdetSPD(_ a: Tensor) throws -> Tensor {
        guard a.ndim >= 2, a.shape[a.ndim - 1] == a.shape[a.ndim - 2], a.shape[a.ndim - 1] >= 1 else {
            throw TensorError("logdet needs square matrices (…×M×M), got shape \(shapeString(a.shape))")
        }
        let m = a.shape[a.ndim - 1], r = a.ndim - 2
        func entry(_ i: Int, _ j: Int) throws -> Tensor { try a.select(r, i).select(r, j) }
        // Cholesky–Banachiewicz, row by row: L_ij = (A_ij − Σ_{k<j} L_ik·L_jk) / L_jj, L_ii = √(A_ii − Σ_{k<i} L_ik²)
        var l = [[Tensor]]()
        var logDiagonal = [Tensor]()
        for i in 0..<m {
            var row = [Tensor]()
            for j in 0...i {
                var v = try entry(i, j)
                for k in 0..<j { v = try v - row[k] * (i == j ? row[k] : l[j][k]) }
                if i == j {
                    if try v.min().double() <= 0 { throw TensorError("logdet: the matrix is not positive definite") }
                    let lii = try v.sqrt()
                    row.append(lii)
                    logDiagonal.append(try lii.log())
                } else {
                    row.append(try v / l[j][j])
                }
            }
            l.append(row)
        }
        return try addAll(logDiagonal) * 2
    }

    // MARK: 1-D and set operations, layer norm, embedding

    /// 1-D convolution: x N×C×L, weight O×C×k; the 2-D kernels on N×C×1×L.
    public static func conv1d(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, stride: Int = 1, padding: Int = 0) throws -> Tensor {
        guard x.ndim == 3 else { throw TensorError("expected a 3-d input N×C×L, got shape \(shapeString(x.shape))") }
        guard weight.ndim == 3, weight.shape[1] == x.shape[1] else {
            throw TensorError("input has \(x.shape[1]) channels but the weight \(shapeString(weight.shape)) expects \(weight.ndim == 3 ? weight.shape[1] : 0)")
        }
        guard stride > 0, padding >= 0 else { throw TensorError("stride must be positive and padding non-negative") }
        let y = try conv2d(x.unsqueeze(2), weight.unsqueeze(2), bias, stride: (1, stride), padding: (0, padding))
        return try y.squeeze(2)
    }

    /// Max over windows of the last dim of N×C×L (no padding).
    public static func maxPool1d(_ x: Tensor, kernel: Int, stride: Int? = nil) throws -> Tensor {
        guard x.ndim == 3 else { throw TensorError("expected a 3-d input N×C×L, got shape \(shapeString(x.shape))") }
        let s = stride ?? kernel, (n, c, l) = (x.shape[0], x.shape[1], x.shape[2])
        guard kernel > 0, s > 0 else { throw TensorError("kernel and stride must be positive") }
        guard l >= kernel else { throw TensorError("input length \(l) is smaller than the kernel \(kernel)") }
        let out = (l - kernel) / s + 1
        if s == kernel {   // non-overlapping windows: a reshape
            return try x.narrow(2, 0, out * kernel).reshape([n, c, out, kernel]).max(dim: 3).values
        }
        let cols = try unfold(x.unsqueeze(2), kernel: (1, kernel), stride: (1, s), padding: (0, 0), layout: .batched)   // N×(C·k)×out
        return try cols.reshape([n, c, kernel, out]).max(dim: 2).values
    }

    /// Adaptive max pooling over the last dim: window i covers
    /// [⌊i·L/size⌋, ⌈(i+1)·L/size⌉) as PyTorch's.
    public static func adaptiveMaxPool1d(_ x: Tensor, _ size: Int) throws -> Tensor {
        guard x.ndim == 3 else { throw TensorError("expected a 3-d input N×C×L, got shape \(shapeString(x.shape))") }
        let l = x.shape[2]
        guard size > 0, l > 0 else { throw TensorError("output size and input length must be positive") }
        if size == 1 { return try x.max(dim: 2, keepdim: true).values }
        let parts = try (0..<size).map { i -> Tensor in
            let a = i * l / size, b = ((i + 1) * l + size - 1) / size
            return try x.narrow(2, a, b - a).max(dim: 2, keepdim: true).values
        }
        return try cat(parts, dim: 2)
    }

    /// (x − mean) / √(var + eps) over the last `shape.count` dims (which must equal `shape`), then γ·x̂ + β.
    public static func layerNorm(_ x: Tensor, _ shape: [Int], weight: Tensor? = nil, bias: Tensor? = nil, eps: Double = 1e-5) throws -> Tensor {
        let k = shape.count
        guard x.ndim >= k, Array(x.shape.suffix(k)) == shape else {
            throw TensorError("LayerNorm over \(shapeString(shape)) needs an input ending in those dims, got shape \(shapeString(x.shape))")
        }
        let lead = Array(x.shape.prefix(x.ndim - k))
        let flat = try x.reshape(lead + [-1])
        let d = flat.ndim - 1
        let mean = try flat.mean(dim: d, keepdim: true)
        let centered = try flat - mean
        let variance = try (centered * centered).mean(dim: d, keepdim: true)
        var y = try (centered / (variance + eps).sqrt()).reshape(x.shape)
        if let weight { y = try y * weight }
        if let bias { y = try y + bias }
        return y
    }

    /// Rows of `weight` (count×dim) at 0-based int64 `indices` of any shape.
    public static func embedding(_ indices: Tensor, _ weight: Tensor) throws -> Tensor {
        guard indices.dtype == .int64 else { throw TensorError("Embedding expects int64 indices, got \(indices.dtype.rawValue)") }
        let count = weight.shape[0]
        let idx = indices.int64s().map(Int.init)
        if let bad = idx.first(where: { $0 < 0 || $0 >= count }) { throw TensorError("index \(bad + 1) is outside 1..\(count)") }
        return try weight.indexSelect(0, idx).reshape(indices.shape + [weight.shape[1]])
    }
}
