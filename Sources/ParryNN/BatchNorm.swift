import ParryCore

// BatchNorm as one fused op: statistics in two passes per channel, the
// normalization and affine transform in one pass (y = a_c·x + b_c), and the
// closed-form backward, dx = γ·invstd/M · (M·g − Σg − x̂·Σ(g·x̂)). Under
// create_graph the backward differentiates the composite formula instead,
// so higher-order gradients keep working. With `relu`, the ReLU that follows
// (ResNet blocks' bn → relu) is applied in the same pass: one activation
// tensor and one pass fewer, and the backward recomputes the mask from x —
// the same float expression as the forward, so the same mask, and the same
// gradient bits as BatchNorm followed by ReLU.

extension F {
    static func batchNormFused(_ x: Tensor, runningMean: Tensor?, runningVar: Tensor?, weight: Tensor?, bias: Tensor?,
                               training: Bool, momentum: Double, eps: Double, relu: Bool = false) throws -> Tensor {
        let n = x.shape[0], c = x.shape[1]
        let s = x.ndim == 4 ? x.shape[2] * x.shape[3] : 1
        let m = n * s   // > 1 when training, and running stats present in eval: checked by batchNorm
        let xc = try x.detach().contiguous()
        let px = xc.pointer(Float.self)
        var mean = [Float](repeating: 0, count: c), invstd = [Float](repeating: 0, count: c)
        if training {
            var variance = [Double](repeating: 0, count: c)
            mean.withUnsafeMutableBufferPointer { pm in invstd.withUnsafeMutableBufferPointer { pi in
                variance.withUnsafeMutableBufferPointer { pv in
                    Parallel.forEach(c) { ch in         // channels in parallel
                        var sum: Float = 0
                        for b in 0..<n { sum += rowSum(px + (b * c + ch) * s, s) }
                        let mu = sum / Float(m)
                        var sq: Float = 0
                        for b in 0..<n { sq += rowSquaredDeviation(px + (b * c + ch) * s, s, mu) }
                        pm[ch] = mu
                        pv[ch] = Double(sq) / Double(m)
                        pi[ch] = Float(1 / (pv[ch] + eps).squareRoot())
                    }
                }
            } }
            if let rm = runningMean, let rv = runningVar {
                let unbiased = Double(m) / Double(m - 1)
                do {          // raw writes: nothing is recorded
                    let pm = rm.pointer(Float.self), pv = rv.pointer(Float.self)
                    for ch in 0..<c {
                        pm[ch] = Float((1 - momentum) * Double(pm[ch]) + momentum * Double(mean[ch]))
                        pv[ch] = Float((1 - momentum) * Double(pv[ch]) + momentum * variance[ch] * unbiased)
                    }
                    rm.storage.version &+= 1; rv.storage.version &+= 1
                }
            }
        } else if let rm = runningMean, let rv = runningVar {
            let rmc = try rm.contiguous(), rvc = try rv.contiguous()
            for ch in 0..<c {
                mean[ch] = rmc.pointer(Float.self)[ch]
                invstd[ch] = Float(1 / (Double(rvc.pointer(Float.self)[ch]) + eps).squareRoot())
            }
        }
        let gamma = try weight.map { try $0.detach().contiguous() }
        let beta = try bias.map { try $0.detach().contiguous() }
        let out = try Tensor(shape: x.shape, dtype: .float32, zeroed: false)
        let po = out.pointer(Float.self)
        let pgamma = gamma?.pointer(Float.self), pbeta = beta?.pointer(Float.self)
        let (meanC, invstdC) = (mean, invstd)
        // y = a_c·x + b_c (then ReLU's v > 0 ? v : (NaN ? v : 0) when fused)
        var scale = [Float](repeating: 0, count: c), shift = [Float](repeating: 0, count: c)
        for ch in 0..<c {
            scale[ch] = invstdC[ch] * (pgamma?[ch] ?? 1)
            shift[ch] = (pbeta?[ch] ?? 0) - meanC[ch] * scale[ch]
        }
        let (scaleC, shiftC) = (scale, shift)
        Parallel.forEach(c) { ch in
            let a = scaleC[ch], b0 = shiftC[ch]
            for b in 0..<n {
                let src = px + (b * c + ch) * s, dst = po + (b * c + ch) * s
                if relu {
                    var k = 0
                    let av = SIMD8<Float>(repeating: a), bv = SIMD8<Float>(repeating: b0), zero = SIMD8<Float>(repeating: 0)
                    while k &+ 8 <= s {     // selects, so that it vectorizes
                        let v = UnsafeRawPointer(src + k).loadUnaligned(as: SIMD8<Float>.self) * av + bv
                        UnsafeMutableRawPointer(dst + k).storeBytes(of: zero.replacing(with: v, where: (v .> zero) .| (v .!= v)), as: SIMD8<Float>.self)
                        k &+= 8
                    }
                    while k < s { let v = src[k] * a + b0; dst[k] = v > 0 ? v : (v.isNaN ? v : 0); k &+= 1 }
                } else {
                    for k in 0..<s { dst[k] = src[k] * a + b0 }
                }
            }
        }
        var inputs = [x]
        if let weight { inputs.append(weight) }
        if let bias { inputs.append(bias) }
        let hasWeight = weight != nil, hasBias = bias != nil
        // Backward reads x and γ (xc may share x's storage): saved, so in-place changes are caught.
        return record(relu ? "batch_norm_relu" : "batch_norm", out, inputs, saved: [x] + (weight.map { [$0] } ?? [])) { g, needs in
            if GradMode.isEnabled {
                // create_graph: differentiate the composite formula.
                var y = try batchNormComposite(x, runningMean: training ? nil : runningMean, runningVar: training ? nil : runningVar,
                                               weight: weight, bias: bias, training: training, eps: eps)
                if relu { y = try y.relu() }
                let wanted = zip(inputs, needs).filter { $0.1 && $0.0.requiresGrad }.map(\.0)
                let gs = try grad([y], wanted, gradOutputs: [g], createGraph: true, allowUnused: true)
                var k = 0
                return inputs.indices.map { i in
                    guard needs[i] && inputs[i].requiresGrad else { return nil }
                    defer { k += 1 }
                    return gs[k]
                }
            }
            // With the fused ReLU, its backward (g where the forward's v = a·x + b > 0, else 0)
            // is applied on the fly in both passes below, v recomputed: no masked copy of g.
            let gc = try g.to(.float32).contiguous()
            let pg = gc.pointer(Float.self)
            var sumG = [Float](repeating: 0, count: c), sumGX = [Float](repeating: 0, count: c)
            sumG.withUnsafeMutableBufferPointer { psg in sumGX.withUnsafeMutableBufferPointer { psgx in
                Parallel.forEach(c) { ch in
                    var a: Float = 0, bsum: Float = 0
                    for b in 0..<n {
                        let off = (b * c + ch) * s
                        if relu {
                            let (sg, sgx) = rowSumsMasked(pg + off, px + off, s, mean[ch], scaleC[ch], shiftC[ch])
                            a += sg; bsum += sgx
                        } else {
                            a += rowSum(pg + off, s)
                            bsum += rowDotCentered(pg + off, px + off, s, mean[ch])
                        }
                    }
                    psg[ch] = a
                    psgx[ch] = bsum * invstd[ch]      // Σ g·x̂
                }
            } }
            var grads: [Tensor?] = []
            if needs[0] {
                let gx = try Tensor(shape: xc.shape, dtype: .float32, zeroed: false)
                let pgx = gx.pointer(Float.self)
                let (sumG, sumGX) = (sumG, sumGX)
                Parallel.forEach(c) { ch in
                    let gm = gamma.map { $0.pointer(Float.self)[ch] } ?? 1
                    let inv = invstd[ch], mu = mean[ch]
                    if training {
                        let k1 = gm * inv, mg = sumG[ch] / Float(m), mgx = sumGX[ch] / Float(m)
                        for b in 0..<n {
                            let off = (b * c + ch) * s
                            let gp = pg + off, xp = px + off, dp = pgx + off
                            if relu { rowInputGradMasked(gp, xp, dp, s, scaleC[ch], shiftC[ch], k1: k1, mg: mg, mu: mu, inv: inv, mgx: mgx) }
                            else { for k in 0..<s { dp[k] = k1 * (gp[k] - mg - (xp[k] - mu) * inv * mgx) } }
                        }
                    } else {
                        let k1 = gm * inv, a = scaleC[ch], b0 = shiftC[ch]
                        for b in 0..<n {
                            let off = (b * c + ch) * s
                            if relu { for k in 0..<s { pgx[off + k] = k1 * reluMask(px[off + k], pg[off + k], a, b0) } }
                            else { for k in 0..<s { pgx[off + k] = k1 * pg[off + k] } }
                        }
                    }
                }
                grads.append(gx)
            } else { grads.append(nil) }
            if hasWeight {
                grads.append(needs[grads.count] ? try Tensor(sumGX, shape: [c]) : nil)
            }
            if hasBias {
                grads.append(needs[grads.count] ? try Tensor(sumG, shape: [c]) : nil)
            }
            return grads
        }
    }
}

/// ReLU's backward fused into batch norm's: g[k] where a·x[k] + b > 0, else 0
/// (v recomputed as the forward computed it).
@inline(__always)
private func reluMask(_ x: Float, _ g: Float, _ a: Float, _ b: Float) -> Float { x * a + b > 0 ? g : 0 }

@inline(__always)
private func reluMask(_ x: SIMD8<Float>, _ g: SIMD8<Float>, _ a: SIMD8<Float>, _ b: SIMD8<Float>) -> SIMD8<Float> {
    SIMD8<Float>(repeating: 0).replacing(with: g, where: x * a + b .> SIMD8<Float>(repeating: 0))
}

/// (rowSum, rowDotCentered) of ReLU-masked g — the same partial sums, in the
/// same order, as those two functions over a masked copy of g.
@inline(__always)
func rowSumsMasked(_ g: UnsafeMutablePointer<Float>, _ x: UnsafeMutablePointer<Float>, _ n: Int, _ mu: Float,
                   _ a: Float, _ b: Float) -> (Float, Float) {
    var acc = SIMD8<Float>(repeating: 0), accx = SIMD8<Float>(repeating: 0)
    let m = SIMD8<Float>(repeating: mu), av = SIMD8<Float>(repeating: a), bv = SIMD8<Float>(repeating: b)
    var l = 0
    while l &+ 8 <= n {
        let xv = UnsafeRawPointer(x + l).loadUnaligned(as: SIMD8<Float>.self)
        let gv = reluMask(xv, UnsafeRawPointer(g + l).loadUnaligned(as: SIMD8<Float>.self), av, bv)
        acc += gv
        accx += gv * (xv - m)
        l &+= 8
    }
    var tail: Float = 0, tailx: Float = 0
    while l < n {
        let gv = reluMask(x[l], g[l], a, b)
        tail += gv; tailx += gv * (x[l] - mu); l &+= 1
    }
    return (acc.sum() + tail, accx.sum() + tailx)
}

/// dx = k1·(g' − mg − (x − mu)·inv·mgx) with g' = ReLU-masked g, element for element.
@inline(__always)
func rowInputGradMasked(_ g: UnsafeMutablePointer<Float>, _ x: UnsafeMutablePointer<Float>, _ dx: UnsafeMutablePointer<Float>, _ n: Int,
                        _ a: Float, _ b: Float, k1: Float, mg: Float, mu: Float, inv: Float, mgx: Float) {
    let av = SIMD8<Float>(repeating: a), bv = SIMD8<Float>(repeating: b), k1v = SIMD8<Float>(repeating: k1)
    let mgv = SIMD8<Float>(repeating: mg), muv = SIMD8<Float>(repeating: mu), invv = SIMD8<Float>(repeating: inv)
    let mgxv = SIMD8<Float>(repeating: mgx)
    var l = 0
    while l &+ 8 <= n {
        let xv = UnsafeRawPointer(x + l).loadUnaligned(as: SIMD8<Float>.self)
        let gv = reluMask(xv, UnsafeRawPointer(g + l).loadUnaligned(as: SIMD8<Float>.self), av, bv)
        UnsafeMutableRawPointer(dx + l).storeBytes(of: k1v * (gv - mgv - (xv - muv) * invv * mgxv), as: SIMD8<Float>.self)
        l &+= 8
    }
    while l < n {
        let gv = reluMask(x[l], g[l], a, b)
        dx[l] = k1 * (gv - mg - (x[l] - mu) * inv * mgx); l &+= 1
    }
}

/// Σ (row[k] − mu)², with eight partial sums.
@inline(__always)
func rowSquaredDeviation(_ row: UnsafeMutablePointer<Float>, _ n: Int, _ mu: Float) -> Float {
    var acc = SIMD8<Float>(repeating: 0)
    let m = SIMD8<Float>(repeating: mu)
    var l = 0
    while l &+ 8 <= n {
        let d = UnsafeRawPointer(row + l).loadUnaligned(as: SIMD8<Float>.self) - m
        acc += d * d
        l &+= 8
    }
    var tail: Float = 0
    while l < n { let d = row[l] - mu; tail += d * d; l &+= 1 }
    return acc.sum() + tail
}

/// Σ g[k]·(x[k] − mu), with eight partial sums.
@inline(__always)
func rowDotCentered(_ g: UnsafeMutablePointer<Float>, _ x: UnsafeMutablePointer<Float>, _ n: Int, _ mu: Float) -> Float {
    var acc = SIMD8<Float>(repeating: 0)
    let m = SIMD8<Float>(repeating: mu)
    var l = 0
    while l &+ 8 <= n {
        let gv = UnsafeRawPointer(g + l).loadUnaligned(as: SIMD8<Float>.self)
        let xv = UnsafeRawPointer(x + l).loadUnaligned(as: SIMD8<Float>.self)
        acc += gv * (xv - m)
        l &+= 8
    }
    var tail: Float = 0
    while l < n { tail += g[l] * (x[l] - mu); l &+= 1 }
    return acc.sum() + tail
}
