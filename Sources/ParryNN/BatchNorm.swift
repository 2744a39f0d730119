import CKernels
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
        let gamma = try weight.map { try $0.detach().contiguous() }
        let beta = try bias.map { try $0.detach().contiguous() }
        let out = try Tensor(shape: x.shape, dtype: .float32, zeroed: false)
        let po = out.pointer(Float.self)
        let pgamma = gamma?.pointer(Float.self), pbeta = beta?.pointer(Float.self)
        // y = a_c·x + b_c (then ReLU's v > 0 ? v : (NaN ? v : 0) when fused)
        var scale = [Float](repeating: 0, count: c), shift = [Float](repeating: 0, count: c)
        /// Writes channel ch of y from its a_c, b_c (set from mean and invstd first).
        func normalize(_ ch: Int, _ pm: UnsafeMutablePointer<Float>, _ pi: UnsafeMutablePointer<Float>,
                       _ pa: UnsafeMutablePointer<Float>, _ pb: UnsafeMutablePointer<Float>) {
            pa[ch] = pi[ch] * (pgamma?[ch] ?? 1)
            pb[ch] = (pbeta?[ch] ?? 0) - pm[ch] * pa[ch]
            pk_bn_apply(px + ch * s, po + ch * s, n, c * s, s, pa[ch], pb[ch], relu ? 1 : 0)
        }
        if training {
            // One sweep per channel: its sum, its squared deviations and its
            // normalization read the channel's n rows while they are still in
            // cache (three passes over the whole tensor read it from memory three
            // times). Same sums, in the same order, as three separate passes.
            var variance = [Double](repeating: 0, count: c)
            mean.withUnsafeMutableBufferPointer { pm in invstd.withUnsafeMutableBufferPointer { pi in
                variance.withUnsafeMutableBufferPointer { pv in
                    scale.withUnsafeMutableBufferPointer { pa in shift.withUnsafeMutableBufferPointer { pb in
                        Parallel.forEach(c) { ch in         // channels in parallel
                            let mu = pk_bn_sum(px + ch * s, n, c * s, s) / Float(m)
                            let sq = pk_bn_sqdev(px + ch * s, n, c * s, s, mu)
                            pm[ch] = mu
                            pv[ch] = Double(sq) / Double(m)
                            pi[ch] = Float(1 / (pv[ch] + eps).squareRoot())
                            normalize(ch, pm.baseAddress!, pi.baseAddress!, pa.baseAddress!, pb.baseAddress!)
                        }
                    } }
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
        } else {
            if let rm = runningMean, let rv = runningVar {
                let rmc = try rm.contiguous(), rvc = try rv.contiguous()
                for ch in 0..<c {
                    mean[ch] = rmc.pointer(Float.self)[ch]
                    invstd[ch] = Float(1 / (Double(rvc.pointer(Float.self)[ch]) + eps).squareRoot())
                }
            }
            mean.withUnsafeMutableBufferPointer { pm in invstd.withUnsafeMutableBufferPointer { pi in
                scale.withUnsafeMutableBufferPointer { pa in shift.withUnsafeMutableBufferPointer { pb in
                    Parallel.forEach(c) { ch in normalize(ch, pm.baseAddress!, pi.baseAddress!, pa.baseAddress!, pb.baseAddress!) }
                } }
            } }
        }
        let (scaleC, shiftC) = (scale, shift)
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
            let gx = needs[0] ? try Tensor(shape: xc.shape, dtype: .float32, zeroed: false) : nil
            let pgx = gx?.pointer(Float.self)
            // Training: one sweep per channel — its two sums, then its dx while the
            // channel's rows of g and x are still in cache. Same sums, same order.
            sumG.withUnsafeMutableBufferPointer { psg in sumGX.withUnsafeMutableBufferPointer { psgx in
                Parallel.forEach(c) { ch in
                    var a: Float = 0, bsum: Float = 0
                    pk_bn_grad_sums(pg + ch * s, px + ch * s, n, c * s, s, mean[ch], scaleC[ch], shiftC[ch], relu ? 1 : 0, &a, &bsum)
                    psg[ch] = a
                    psgx[ch] = bsum * invstd[ch]      // Σ g·x̂
                    guard let pgx else { return }
                    let gm = gamma.map { $0.pointer(Float.self)[ch] } ?? 1
                    let inv = invstd[ch], mu = mean[ch]
                    let k1 = gm * inv
                    let mg = training ? psg[ch] / Float(m) : 0, mgx = training ? psgx[ch] / Float(m) : 0
                    pk_bn_grad_input(pg + ch * s, px + ch * s, pgx + ch * s, n, c * s, s, scaleC[ch], shiftC[ch],
                                     relu ? 1 : 0, training ? 1 : 0, k1, mg, mu, inv, mgx)
                }
            } }
            var grads: [Tensor?] = [gx]
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
