import CBLAS
import CKernels
import Foundation
import ParryCore

// conv2d as one fused op: im2col per sample, the bias written first and the
// GEMM accumulated onto it straight into N×O×H'×W' (no transpose pass), and a
// backward that accumulates dW across samples with beta = 1. Under
// create_graph the backward is built from differentiable ops instead, so
// second-order gradients (gradient penalties, TRADES-style curvature) still work.

/// One image's sliding-window geometry and its im2col / col2im kernels: the
/// building blocks of unfold, fold and the fused convolution. Column row
/// r = (ch·kh + ki)·kw + kj lives at `cols + r·rowStride`, L = H'·W' long.
struct WindowGeometry {
    let c, h, w, kh, kw, sh, sw, ph, pw: Int
    let oh, ow: Int

    init(c: Int, h: Int, w: Int, kh: Int, kw: Int, sh: Int, sw: Int, ph: Int, pw: Int) {
        self.c = c; self.h = h; self.w = w; self.kh = kh; self.kw = kw
        self.sh = sh; self.sw = sw; self.ph = ph; self.pw = pw
        oh = F.windows(h, kh, sh, ph); ow = F.windows(w, kw, sw, pw)
    }

    var rows: Int { c * kh * kw }
    var L: Int { oh * ow }

    /// Output rows in blocks whose columns (rows·W'·K floats) fit in about
    /// `bytes` — kept in cache between im2col and the GEMM that reads them.
    func rowBlocks(bytes: Int = convBlockBytes) -> (ranges: [Range<Int>], maxColumns: Int) {
        let perRow = max(1, rows * ow * MemoryLayout<Float>.stride)
        let step = max(1, min(oh, bytes / perRow))
        let ranges = stride(from: 0, to: oh, by: step).map { $0 ..< min(oh, $0 + step) }
        return (ranges, step * ow)
    }

    /// Output columns j whose input column j·sw − pw + kj lies inside [0, w).
    @inline(__always) func columns(_ kj: Int) -> (Int, Int) {
        (max(0, F.ceilDiv(pw - kj, sw)), min(ow, F.floorDiv(w - 1 + pw - kj, sw) + 1))
    }

    /// Writes the windows of one C×H×W image as columns (zero padding); with
    /// `outputRows`, only the columns of those output rows (column 0 = the
    /// first of them).
    func im2col(_ img: UnsafeMutablePointer<Float>, _ cols: UnsafeMutablePointer<Float>, rowStride: Int,
                outputRows: Range<Int>? = nil) {
        let rowsOut = outputRows ?? 0..<oh
        if sh == 1 && sw == 1 && ow == w {
            im2colSameWidth(img, cols, rowStride: rowStride, rowsOut: rowsOut)
            return
        }
        for ch in 0..<c { for ki in 0..<kh { for kj in 0..<kw {
            let dst = cols + ((ch * kh + ki) * kw + kj) * rowStride
            let plane = img + ch * h * w
            let (jlo, jhi) = columns(kj)
            for i in rowsOut {
                let ih = i * sh - ph + ki
                let d = dst + (i - rowsOut.lowerBound) * ow
                if ih < 0 || ih >= h { d.update(repeating: 0, count: ow); continue }
                let srow = plane + ih * w - pw + kj
                for j in 0..<min(jlo, ow) { d[j] = 0 }       // a pad column or two: no memset call
                if jhi > jlo {
                    if sw == 1 { copyShort(srow + jlo, d + jlo, jhi - jlo) }
                    else { for j in jlo..<jhi { d[j] = srow[j * sw] } }
                }
                for j in max(jhi, jlo)..<max(ow, max(jhi, jlo)) { d[j] = 0 }
            }
        } } }
    }

    /// im2col for stride 1 when the output is as wide as the input ("same"
    /// padding, 3×3 with padding 1): the valid rows of a column row are the
    /// input plane shifted by a constant, so they are one contiguous copy,
    /// after which the wrapped-around pad columns are zeroed.
    private func im2colSameWidth(_ img: UnsafeMutablePointer<Float>, _ cols: UnsafeMutablePointer<Float>, rowStride: Int,
                                 rowsOut: Range<Int>) {
        let plane = h * w, r0 = rowsOut.lowerBound
        for ki in 0..<kh {
            // Output rows whose input row i − ph + ki exists.
            let iLo = max(rowsOut.lowerBound, ph - ki), iHi = min(rowsOut.upperBound, h + ph - ki)
            for kj in 0..<kw {
                let (jlo, jhi) = columns(kj)
                for ch in 0..<c {
                    let d = cols + ((ch * kh + ki) * kw + kj) * rowStride
                    guard iHi > iLo else { d.update(repeating: 0, count: rowsOut.count * ow); continue }
                    if iLo > r0 { d.update(repeating: 0, count: (iLo - r0) * ow) }
                    if iHi < rowsOut.upperBound { (d + (iHi - r0) * ow).update(repeating: 0, count: (rowsOut.upperBound - iHi) * ow) }
                    // Elements start..<end of the plane land at d + (iLo − r0)·ow; the
                    // copy is clamped to the plane (what is cut off is padding).
                    let start = (iLo - ph + ki) * w + kj - pw, end = start + (iHi - iLo) * ow
                    let lo = max(start, 0), hi = min(end, plane)
                    let base = d + (iLo - r0) * ow - start          // base[k] is plane element k
                    if hi > lo { (base + lo).update(from: img + ch * plane + lo, count: hi - lo) }
                    // Pad columns j < jlo and j ≥ jhi (clamped: with a kernel wider
                    // than the image a whole row can be padding).
                    let padLo = min(jlo, ow), padHi = min(max(jhi, padLo), ow)
                    if padLo > 0 || padHi < ow {
                        for i in 0..<(iHi - iLo) {
                            let row = d + (iLo - r0 + i) * ow
                            for j in 0..<padLo { row[j] = 0 }
                            for j in padHi..<ow { row[j] = 0 }
                        }
                    }
                }
            }
        }
    }

    /// Adds columns back into one C×H×W image (the adjoint of im2col); with
    /// `outputRows`, the columns hold only those output rows.
    func col2im(_ cols: UnsafeMutablePointer<Float>, rowStride: Int, into img: UnsafeMutablePointer<Float>,
                outputRows: Range<Int>? = nil) {
        let rowsOut = outputRows ?? 0..<oh
        if sh == 1 && sw == 1 && ow == w {
            col2imSameWidth(cols, rowStride: rowStride, into: img, rowsOut: rowsOut)
            return
        }
        for ch in 0..<c { for ki in 0..<kh { for kj in 0..<kw {
            let col = cols + ((ch * kh + ki) * kw + kj) * rowStride
            let plane = img + ch * h * w
            let (jlo, jhi) = columns(kj)
            if jhi <= jlo { continue }
            for i in rowsOut {
                let ih = i &* sh &- ph &+ ki
                if ih < 0 || ih >= h { continue }
                let dst = plane + (ih &* w &- pw &+ kj), src = col + (i &- rowsOut.lowerBound) &* ow
                if sw == 1 { for j in jlo..<jhi { dst[j] += src[j] } }
                else { for j in jlo..<jhi { dst[j &* sw] += src[j] } }
            }
        } } }
    }
}

extension WindowGeometry {
    /// col2im for stride 1 when the output is as wide as the input, the
    /// adjoint of im2colSameWidth: a column row's valid part is the input
    /// plane shifted by a constant, so it is added as one long contiguous run
    /// (vectorized) instead of W'-float rows, after its pad columns — the
    /// windows hanging over the left and right edges, which would wrap onto
    /// the neighbouring image rows — are zeroed in the (scratch) columns.
    /// Each pixel receives its (ki, kj) terms in the same order as the
    /// row-by-row loop, so the sums are the same.
    fileprivate func col2imSameWidth(_ cols: UnsafeMutablePointer<Float>, rowStride: Int, into img: UnsafeMutablePointer<Float>,
                                     rowsOut: Range<Int>) {
        let plane = h * w, r0 = rowsOut.lowerBound
        for ki in 0..<kh {
            let iLo = max(r0, ph - ki), iHi = min(rowsOut.upperBound, h + ph - ki)
            guard iHi > iLo else { continue }
            for kj in 0..<kw {
                let (jlo, jhi) = columns(kj)
                let padLo = min(jlo, ow), padHi = min(max(jhi, padLo), ow)
                let start = (iLo - ph + ki) * w + kj - pw, end = start + (iHi - iLo) * ow
                let lo = max(start, 0), hi = min(end, plane)
                guard hi > lo else { continue }
                for ch in 0..<c {
                    let d = cols + ((ch * kh + ki) * kw + kj) * rowStride
                    if padLo > 0 || padHi < ow {
                        for i in 0..<(iHi - iLo) {
                            let row = d + (iLo - r0 + i) * ow
                            for j in 0..<padLo { row[j] = 0 }
                            for j in padHi..<ow { row[j] = 0 }
                        }
                    }
                    let src = d + (iLo - r0) * ow - start + lo, dst = img + ch * plane + lo
                    for k in 0..<(hi - lo) { dst[k] += src[k] }
                }
            }
        }
    }
}

extension F {
    static func conv2dFused(_ x: Tensor, _ weight: Tensor, _ bias: Tensor?, stride: (Int, Int), padding: (Int, Int)) throws -> Tensor {
        let (n, c, h, w) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (o, kh, kw) = (weight.shape[0], weight.shape[2], weight.shape[3])
        let oh = windows(h, kh, stride.0, padding.0), ow = windows(w, kw, stride.1, padding.1)
        guard oh > 0, ow > 0 else {
            throw TensorError("input \(h)×\(w) is smaller than the kernel \(kh)×\(kw) (with padding \(padding.0 == padding.1 ? "\(padding.0)" : "\(padding)"))")
        }
        if let bias, bias.shape != [o] {
            throw TensorError("bias must have shape {\(o)}, got \(shapeString(bias.shape))")
        }
        let L = oh * ow, K = c * kh * kw
        let kernel = (kh, kw), strides = stride, pads = padding
        let geo = WindowGeometry(c: c, h: h, w: w, kh: kh, kw: kw, sh: stride.0, sw: stride.1, ph: padding.0, pw: padding.1)
        // Columns one image at a time into a small reused buffer (a whole-batch
        // im2col can be tens of MB: fresh pages and cache misses every step).
        let xc = try x.detach().contiguous()
        let wm = try weight.detach().to(.float32).contiguous()
        let out = try Tensor(shape: [n, o, oh, ow], dtype: .float32, zeroed: false)
        let po = out.pointer(Float.self), pw = wm.pointer(Float.self), px = xc.pointer(Float.self)
        let b = try bias.map { try $0.detach().to(.float32).contiguous() }
        let pb = b?.pointer(Float.self)
        let beta: Float = bias == nil ? 0 : 1
        // Images in parallel (Parallel's threads), each thread with its own
        // column buffer; a GEMM per image, single-threaded.
        // The columns are built a block of output rows at a time (`geo.rowBlocks`),
        // small enough to stay in the core's L2 cache until BLAS packs them.
        let blocks = geo.rowBlocks()
        let direct = directConvUsable(geo), phased = !direct && phasedConvUsable(geo)
        let chunks = direct || phased ? directChunks(n) : convChunks(n)
        let phaseFloats = phased ? Int(pk_conv_phase_floats(Int32(c), Int32(h), Int32(w), Int32(kh), Int32(kw), Int32(stride.0),
                                                            Int32(stride.1), Int32(padding.0), Int32(padding.1))) : 0
        if direct || phased {
            // The direct kernels (CKernels): no columns; packed weights shared by the threads.
            // Strided: each chunk's images are split into phase planes first.
            BufferPool.withScratch(floats: max(1, Int(pk_conv_packed_floats(Int32(o), Int32(K))))) { packed in
                pk_conv_pack(pw, Int32(o), Int32(c), Int32(kh), Int32(kw), 0, packed)
                Parallel.forEach(chunks.count) { ci in
                    let r = chunks[ci]
                    let src = px + r.lowerBound * c * h * w, dst = po + r.lowerBound * o * L
                    if direct {
                        pk_conv_direct(src, c * h * w, Int32(r.count), Int32(c), Int32(h), Int32(w),
                                       Int32(kh), Int32(kw), Int32(padding.0), Int32(padding.1), packed, Int32(o), pb, dst, o * L)
                        return
                    }
                    BufferPool.withScratch(floats: r.count * phaseFloats) { phases in
                        pk_conv_phase_split(src, c * h * w, Int32(r.count), Int32(c), Int32(h), Int32(w),
                                            Int32(kh), Int32(kw), Int32(geo.sh), Int32(geo.sw), Int32(geo.ph), Int32(geo.pw), phases)
                        pk_conv_phase_forward(phases, Int32(r.count), Int32(c), Int32(h), Int32(w), Int32(kh), Int32(kw),
                                              Int32(geo.sh), Int32(geo.sw), Int32(geo.ph), Int32(geo.pw), packed, Int32(o), pb, dst, o * L)
                    }
                }
            }
        } else {
        Parallel.forEach(chunks.count) { ci in BufferPool.withScratch(floats: K * blocks.maxColumns) { scratch in
            for s in chunks[ci] {
                if let pb { for ch in 0..<o { (po + (s * o + ch) * L).update(repeating: pb[ch], count: L) } }
                for rows in blocks.ranges {
                    let nb = rows.count * ow
                    geo.im2col(px + s * c * h * w, scratch, rowStride: nb, outputRows: rows)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Int32(o), Int32(nb), Int32(K),
                                1, pw, Int32(K), scratch, Int32(nb), beta, po + s * o * L + rows.lowerBound * ow, Int32(L))
                }
            }
        } }
        }
        let inputs = [x, weight] + (bias.map { [$0] } ?? [])
        let xShape = x.shape, wShape = weight.shape
        // Backward reads x and the weight (xc/wm may share their storage): saving them
        // makes an in-place change between forward and backward an error, as before fusion.
        return record("conv2d", out, inputs, saved: [x, weight]) { g, needs in
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
            let pg = gc.pointer(Float.self), pw = wm.pointer(Float.self), px = xc.pointer(Float.self)
            let gx = needs[0] ? try Tensor(shape: xShape, dtype: .float32, zeroed: false) : nil   // zeroed per image below
            let gw = needs[1] ? try Tensor(shape: wShape, dtype: .float32, zeroed: n == 0) : nil
            if needs[0] || needs[1] {
                // Whatever the path, the work is cut by sizes only (image chunks,
                // channel blocks), so the result does not depend on the number of threads.
                let chunks = convChunks(n), imageChunks = directChunks(n), blocks = geo.rowBlocks()
                let pgx = gx?.pointer(Float.self)
                // AVX2 by default: the weight gradient from im2col columns (see CKernels/conv.c).
                let dwColumns = (direct || phased) && !convDirectWeightGrad
                if phased {
                    // Strided: the weight gradient from the whole batch's phase planes
                    // (in blocks of output channels, as below), the input gradient
                    // per image chunk as one stride-1 convolution of g per phase.
                    let i32 = { (v: Int) in Int32(v) }
                    if let gw, !dwColumns {
                        BufferPool.withScratch(floats: max(1, n * phaseFloats)) { phases in
                            Parallel.forEach(imageChunks.count) { ci in
                                let r = imageChunks[ci]
                                pk_conv_phase_split(px + r.lowerBound * c * h * w, c * h * w, i32(r.count), i32(c), i32(h), i32(w),
                                                    i32(kh), i32(kw), i32(geo.sh), i32(geo.sw), i32(geo.ph), i32(geo.pw),
                                                    phases + r.lowerBound * phaseFloats)
                            }
                            let dst = gw.pointer(Float.self), parts = channelBlocks(o)
                            Parallel.forEach(parts.count) { bi in
                                let r = parts[bi]
                                pk_conv_phase_dweight(phases, i32(n), pg + r.lowerBound * L, o * L, i32(c), i32(h), i32(w),
                                                      i32(kh), i32(kw), i32(geo.sh), i32(geo.sw), i32(geo.ph), i32(geo.pw),
                                                      i32(r.count), dst + r.lowerBound * K)
                            }
                        }
                    }
                    if let pgx {
                        BufferPool.withScratch(floats: max(1, Int(pk_conv_phase_dinput_floats(i32(o), i32(c), i32(kh), i32(kw))))) { packedT in
                            pk_conv_phase_pack_dinput(pw, i32(o), i32(c), i32(h), i32(w), i32(kh), i32(kw), i32(geo.sh), i32(geo.sw),
                                                      i32(geo.ph), i32(geo.pw), packedT)
                            Parallel.forEach(imageChunks.count) { ci in
                                let r = imageChunks[ci]
                                pk_conv_phase_dinput(pg + r.lowerBound * o * L, o * L, i32(r.count), i32(o), i32(c), i32(h), i32(w),
                                                     i32(kh), i32(kw), i32(geo.sh), i32(geo.sw), i32(geo.ph), i32(geo.pw), packedT,
                                                     pgx + r.lowerBound * c * h * w, c * h * w)
                            }
                        }
                    }
                } else if direct {
                    // The weight gradient in blocks of output channels, each over all
                    // images (no per-chunk partials; a sum does not depend on the
                    // split); the input gradient per image chunk as the direct
                    // convolution of g with the flipped, transposed kernel (padding
                    // k − 1 − p), written straight into dX.
                    if let gw, !dwColumns {
                        let dst = gw.pointer(Float.self), parts = channelBlocks(o)
                        Parallel.forEach(parts.count) { bi in
                            let r = parts[bi]
                            pk_conv_dweight(px, c * h * w, pg + r.lowerBound * L, o * L, Int32(n),
                                            Int32(c), Int32(h), Int32(w), Int32(kh), Int32(kw), Int32(geo.ph), Int32(geo.pw),
                                            Int32(r.count), dst + r.lowerBound * K, 0)
                        }
                    }
                    if let pgx {
                        BufferPool.withScratch(floats: max(1, Int(pk_conv_packed_floats(Int32(c), Int32(o * kh * kw))))) { packedT in
                            pk_conv_pack(pw, Int32(o), Int32(c), Int32(kh), Int32(kw), 1, packedT)
                            Parallel.forEach(imageChunks.count) { ci in
                                let r = imageChunks[ci]
                                pk_conv_direct(pg + r.lowerBound * o * L, o * L, Int32(r.count), Int32(o), Int32(oh), Int32(ow),
                                               Int32(kh), Int32(kw), Int32(kh - 1 - geo.ph), Int32(kw - 1 - geo.pw), packedT, Int32(c), nil,
                                               pgx + r.lowerBound * c * h * w, c * h * w)
                            }
                        }
                    }
                }
                if (!phased && !direct) || dwColumns {
                let pgx = direct || phased ? nil : pgx
                // im2col: images in parallel over fixed chunks, each accumulating its own
                // dW, summed in chunk order afterwards. One dW partial per chunk, from the buffer pool (a ResNet-18 step needs
                // 8 × its 11M weights of them: fresh pages every step from malloc).
                BufferPool.withScratch(gw == nil ? 0 : chunks.count, floats: o * K) { partials in
                Parallel.forEach(chunks.count) { ci in BufferPool.withScratch(floats: K * blocks.maxColumns) { cols in
                    let dw = partials.isEmpty ? nil : partials[ci]
                    for s in chunks[ci] {
                        if let pgx { (pgx + s * c * h * w).update(repeating: 0, count: c * h * w) }
                        for rows in blocks.ranges {
                            let nb = rows.count * ow, gs = pg + s * o * L + rows.lowerBound * ow
                            if let dw {
                                // dW += g_s · cols_sᵀ (columns recomputed: cheaper than keeping them)
                                geo.im2col(px + s * c * h * w, cols, rowStride: nb, outputRows: rows)
                                let first = s == chunks[ci].lowerBound && rows.lowerBound == 0
                                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, Int32(o), Int32(K), Int32(nb),
                                            1, gs, Int32(L), cols, Int32(nb), first ? 0 : 1, dw, Int32(K))
                            }
                            if let pgx {
                                // dcols_s = Wᵀ · g_s, folded back into the image
                                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Int32(K), Int32(nb), Int32(o),
                                            1, pw, Int32(K), gs, Int32(L), 0, cols, Int32(nb))
                                geo.col2im(cols, rowStride: nb, into: pgx + s * c * h * w, outputRows: rows)
                            }
                        }
                    }
                } }
                if let gw, !partials.isEmpty {
                    let dst = gw.pointer(Float.self)
                    dst.update(from: partials[0], count: o * K)
                    for ci in 1..<chunks.count { let src = partials[ci]; for j in 0..<(o * K) { dst[j] += src[j] } }
                }
                }
                }
            }
            var grads: [Tensor?] = [gx, gw]
            if inputs.count == 3 {
                if needs[2] {
                    let gb = try Tensor(shape: [o], dtype: .float32, zeroed: true)
                    let pb = gb.pointer(Float.self)
                    for s in 0..<n { for ch in 0..<o { pb[ch] += rowSum(pg + (s * o + ch) * L, L) } }
                    grads.append(gb)
                } else { grads.append(nil) }
            }
            return grads
        }
    }
}

/// Copies a short row (an image row of a few dozen floats) with 8-wide
/// vector moves; the last vector overlaps the previous one instead of a
/// scalar tail. Faster than a memmove call at these lengths.
@inline(__always)
func copyShort(_ src: UnsafeMutablePointer<Float>, _ dst: UnsafeMutablePointer<Float>, _ count: Int) {
    if count < 8 {
        for j in 0..<count { dst[j] = src[j] }
        return
    }
    var j = 0
    while j &+ 8 <= count {
        UnsafeMutableRawPointer(dst + j).storeBytes(of: UnsafeRawPointer(src + j).loadUnaligned(as: SIMD8<Float>.self), as: SIMD8<Float>.self)
        j &+= 8
    }
    if j < count {
        let k = count &- 8
        UnsafeMutableRawPointer(dst + k).storeBytes(of: UnsafeRawPointer(src + k).loadUnaligned(as: SIMD8<Float>.self), as: SIMD8<Float>.self)
    }
}

/// Column-block size for the convolution's im2col (see `rowBlocks`): 512 KB,
/// half of this machine's 1 MB L2 per core (ResNet-20 forward+backward
/// 0.34 s vs 0.38 s unblocked; 128 KB–1 MB all measured). PARRY_CONV_BLOCK_KB
/// overrides it for tuning; tests set it small to exercise many blocks.
nonisolated(unsafe) var convBlockBytes: Int = {
    if let s = ProcessInfo.processInfo.environment["PARRY_CONV_BLOCK_KB"], let kb = Int(s), kb > 0 { return kb << 10 }
    return 512 << 10
}()

/// Whether conv2d runs on the direct kernels of CKernels (no column matrix):
/// on CPUs with AVX-512 or AVX2, unless PARRY_CONV=im2col. Tests switch it to run
/// both paths in one process; setting it has no effect on other CPUs.
nonisolated(unsafe) public var convDirectEnabled: Bool =
    ProcessInfo.processInfo.environment["PARRY_CONV"] != "im2col"

/// Strided geometries the direct kernels take through phase planes (see
/// CKernels/conv.c): every phase plane with taps as wide as the output.
func phasedConvUsable(_ geo: WindowGeometry) -> Bool {
    convDirectEnabled && (geo.sh > 1 || geo.sw > 1) && geo.c > 0
        && pk_conv_phase_ok(Int32(geo.h), Int32(geo.w), Int32(geo.kh), Int32(geo.kw), Int32(geo.sh), Int32(geo.sw),
                            Int32(geo.ph), Int32(geo.pw)) != 0
}

/// Whether this CPU runs the direct convolution kernels (AVX-512F, or AVX2 with FMA).
public var convDirectAvailable: Bool { pk_conv_direct_available() != 0 }

/// The instruction set of the direct kernels: "AVX-512", "AVX2" or nil.
public var convDirectISA: String? { [nil, "AVX2", "AVX-512"][Int(pk_conv_isa())] }

/// Whether the direct kernels also take the weight gradient (AVX-512; AVX2
/// with PARRY_CONV=direct) or conv2d builds im2col columns for it (AVX2).
public var convDirectWeightGrad: Bool { pk_conv_dweight_direct() != 0 }

/// Sets the direct kernels' mode (pk_conv_set_mode: 0 default, 1 all on AVX2,
/// 2 all on the widest, 3 AVX2 with the weight gradient from columns) and
/// returns convDirectISA. For tests.
@discardableResult func convSetMode(_ mode: Int) -> String? {
    _ = pk_conv_set_mode(Int32(mode))
    return convDirectISA
}

/// The geometry the direct kernels cover: stride 1 and an output as wide as
/// the input (2·pw = kw − 1), on a CPU that runs them.
func directConvUsable(_ geo: WindowGeometry) -> Bool {
    convDirectEnabled && geo.sh == 1 && geo.sw == 1 && geo.ow == geo.w && geo.oh > 0 && geo.c > 0
        && pk_conv_direct_available() != 0
}

/// Output channels 0..<o in at most 8 blocks of whole weight-gradient tiles
/// (the direct weight gradient's unit of parallel work): 4 channels on
/// AVX-512, 3 on AVX2 (pk_conv_dweight_tile). Every weight's sum lies in one
/// block, so the split does not change a bit.
func channelBlocks(_ o: Int) -> [Range<Int>] {
    let t = Int(pk_conv_dweight_tile()), tiles = (o + t - 1) / t, parts = min(8, tiles)
    return (0..<parts).map { p in t * (tiles * p / parts) ..< min(o, t * (tiles * (p + 1) / parts)) }
}

/// The images of a batch of n split into at most 8 contiguous chunks — a
/// function of n only, so per-chunk partial sums add up the same way on any
/// number of threads.
func convChunks(_ n: Int) -> [Range<Int>] {
    let parts = min(n, 8)
    return (0..<parts).map { p in n * p / parts ..< n * (p + 1) / parts }
}

/// The images of a batch of n in chunks of 4 (2 for n ≤ 32; 1 alone) for the
/// direct kernels' forward pass and input gradient, where every image's
/// result is its own (so the split changes no bit): with 32 chunks instead of
/// 8, the thread that finishes first waits for a quarter of the other's last
/// chunk. Even sizes keep the kernels' image pairs (a 4×4 map, a 14×14 map's
/// last positions) inside a chunk.
func directChunks(_ n: Int) -> [Range<Int>] {
    let per = n <= 32 ? 2 : 4
    return stride(from: 0, to: n, by: per).map { $0 ..< min(n, $0 + per) }
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
