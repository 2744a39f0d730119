import CBLAS
import ParryCore

// conv2d as one fused op: im2col per sample, the bias written first and the
// GEMM accumulated onto it straight into N×O×H'×W' (no transpose pass), and a
// backward that accumulates dW across samples with beta = 1. Under
// create_graph the backward is built from differentiable ops instead, so
// second-order gradients (gradient penalties, TRADES-style curvature) still work.

extension F {
    static func conv2dFused(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, stride: Int, padding: Int) throws -> Tensor {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (o, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
        let oh = windows(h, kh, stride, padding), ow = windows(w, kw, stride, padding)
        guard oh > 0, ow > 0 else {
            throw TensorError("input \(h)×\(w) is smaller than the kernel \(kh)×\(kw) (with padding \(padding))")
        }
        if let bias, bias.shape != [o] {
            throw TensorError("bias must have shape {\(o)}, got \(shapeString(bias.shape))")
        }
        let L = oh * ow, K = c * kh * kw
        let kernel = (kh, kw), strides = (stride, stride), pads = (padding, padding)
        let cols = try GradMode.noGrad {
            try unfold(x.detach(), kernel: kernel, stride: strides, padding: pads, layout: .batched)
        }
        let wm = try weight.detach().to(.float32).contiguous()
        let out = Tensor(shape: [n, o, oh, ow], dtype: .float32, zeroed: false)
        let po = out.pointer(Float.self), pw = wm.pointer(Float.self), pc = cols.pointer(Float.self)
        if let bias {
            let b = try bias.detach().to(.float32).contiguous()
            let pb = b.pointer(Float.self)
            for s in 0..<n { for ch in 0..<o { (po + (s * o + ch) * L).update(repeating: pb[ch], count: L) } }
        }
        let beta: Float = bias == nil ? 0 : 1
        for s in 0..<n {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(o), Int32(L), Int32(K),
                        1, pw, Int32(K), pc + s * K * L, Int32(L), beta, po + s * o * L, Int32(L))
        }
        let inputs = [x, weight] + (bias.map { [$0] } ?? [])
        let xShape = x.shape, wShape = weight.shape
        return record("conv2d", out, inputs) { g, needs in
            if GradMode.isEnabled {
                // create_graph: the same gradients from differentiable pieces.
                let g3 = try g.reshape([n, o, L])
                var grads: [Tensor?] = [nil, nil]
                if needs[0] {
                    let gc = try weight.reshape([o, K]).transpose(0, 1).matmul(g3)            // N×K×L
                    grads[0] = try fold(gc, outputSize: (h, w), kernel: kernel, stride: strides, padding: pads, layout: .batched)
                }
                if needs[1] {
                    let colsD = try unfold(x, kernel: kernel, stride: strides, padding: pads, layout: .batched)
                    grads[1] = try g3.matmul(colsD.transpose(1, 2)).sum(dim: 0).reshape(wShape)
                }
                if inputs.count == 3 { grads.append(needs[2] ? try g3.sum(dim: 2).sum(dim: 0) : nil) }
                return grads
            }
            // Pointers taken from the captured tensors, which the closure keeps alive.
            let gc = try g.to(.float32).contiguous()
            let pg = gc.pointer(Float.self), pw = wm.pointer(Float.self), pc = cols.pointer(Float.self)
            var grads: [Tensor?] = [nil, nil]
            if needs[0] {
                let gcols = Tensor(shape: [n, K, L], dtype: .float32, zeroed: false)
                let pgc = gcols.pointer(Float.self)
                for s in 0..<n {
                    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(K), Int32(L), Int32(o),
                                1, pw, Int32(K), pg + s * o * L, Int32(L), 0, pgc + s * K * L, Int32(L))
                }
                grads[0] = try fold(gcols, outputSize: (h, w), kernel: kernel, stride: strides, padding: pads, layout: .batched)
                    .reshape(xShape)
            }
            if needs[1] {
                let gw = Tensor(shape: wShape, dtype: .float32, zeroed: true)
                let pgw = gw.pointer(Float.self)
                for s in 0..<n {
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(o), Int32(K), Int32(L),
                                1, pg + s * o * L, Int32(L), pc + s * K * L, Int32(L), 1, pgw, Int32(K))
                }
                grads[1] = gw
            }
            if inputs.count == 3 {
                if needs[2] {
                    let gb = Tensor(shape: [o], dtype: .float32, zeroed: true)
                    let pb = gb.pointer(Float.self)
                    for s in 0..<n { for ch in 0..<o { pb[ch] += rowSum(pg + (s * o + ch) * L, L) } }
                    grads.append(gb)
                } else { grads.append(nil) }
            }
            return grads
        }
    }
}

/// Σ row[0..<n] with eight independent partial sums (vectorizes; a single
/// running sum is a serial dependency chain).
@inline(__always)
func rowSum(_ row: UnsafeMutablePointer<Float>, _ n: Int) -> Float {
    var acc = SIMD8<Float>(repeating: 0)
    var l = 0
    while l &+ 8 <= n {
        acc += UnsafeRawPointer(row + l).loadUnaligned(as: SIMD8<Float>.self)
        l &+= 8
    }
    var tail: Float = 0
    while l < n { tail += row[l]; l &+= 1 }
    return acc.sum() + tail
}
