import Foundation
import XCTest
@testable import ParryCore
@testable import ParryNN

func close(_ a: [Float], _ b: [Float], tol: Float = 1e-5, file: StaticString = #filePath, line: UInt = #line) {
    XCTAssertEqual(a.count, b.count, file: file, line: line)
    for (i, (x, y)) in zip(a, b).enumerated() where abs(x - y) > tol * (1 + abs(y)) {
        XCTFail("element \(i): \(x) vs \(y)", file: file, line: line); return
    }
}

final class FunctionalTests: XCTestCase {
    let g = Generator(seed: 21)
    func leaf(_ shape: [Int]) throws -> Tensor { try Tensor.randn(shape, generator: g).requiresGrad_() }
    func check(_ name: String, _ inputs: [Tensor], file: StaticString = #filePath, line: UInt = #line,
               _ f: @escaping ([Tensor]) throws -> Tensor) throws {
        let r = try gradcheck(f, inputs: inputs)
        XCTAssertTrue(r.passed, "\(name): \(r.worst)", file: file, line: line)
    }

    /// Direct (six nested loops) cross-correlation, the definition conv2d must match.
    func naiveConv(_ x: Tensor, _ w: Tensor, _ b: Tensor?, stride: Int, padding: Int) -> [Float] {
        let (n, c, h, wd) = (x.shape[0], x.shape[1], x.shape[2], x.shape[3])
        let (o, k) = (w.shape[0], w.shape[2])
        let oh = (h + 2 * padding - k) / stride + 1, ow = (wd + 2 * padding - k) / stride + 1
        let xv = x.floats(), wv = w.floats(), bv = b?.floats()
        var out = [Float]()
        for bi in 0..<n { for oc in 0..<o { for i in 0..<oh { for j in 0..<ow {
            var s = Double(bv?[oc] ?? 0)
            for ic in 0..<c { for a in 0..<k { for bb in 0..<k {
                let ih = i * stride - padding + a, iw = j * stride - padding + bb
                if ih >= 0 && ih < h && iw >= 0 && iw < wd {
                    s += Double(xv[((bi * c + ic) * h + ih) * wd + iw]) * Double(wv[((oc * c + ic) * k + a) * k + bb])
                }
            } } }
            out.append(Float(s))
        } } } }
        return out
    }

    func testConvMatchesDefinition() throws {
        for (stride, padding) in [(1, 0), (1, 1), (2, 1), (3, 2), (2, 3)] {
            let x = try Tensor.randn([2, 3, 7, 6], generator: g), w = try Tensor.randn([4, 3, 3, 3], generator: g)
            // a kernel wider than the image (padding makes room) exercises the clipped column ranges
            let wide = try Tensor.randn([2, 3, 7, 7], generator: g)
            close(try F.conv2d(x, wide, nil, stride: stride, padding: 3).floats(), naiveConv(x, wide, nil, stride: stride, padding: 3), tol: 1e-4)
            let b = try Tensor.randn([4], generator: g)
            let y = try F.conv2d(x, w, b, stride: stride, padding: padding)
            close(y.floats(), naiveConv(x, w, b, stride: stride, padding: padding), tol: 1e-4)
        }
        // "Same"-width stride-1 geometries take the shifted-plane im2col; include
        // images narrower than the kernel (whole rows of padding) and 1-wide ones.
        for (h, wd, k) in [(5, 5, 3), (4, 1, 3), (3, 1, 5), (1, 2, 5), (6, 3, 7)] {
            let x = try Tensor.randn([2, 2, h, wd], generator: g), w = try Tensor.randn([3, 2, k, k], generator: g)
            let y = try F.conv2d(x, w, nil, stride: 1, padding: (k - 1) / 2)
            XCTAssertEqual(y.shape, [2, 3, h, wd])
            close(y.floats(), naiveConv(x, w, nil, stride: 1, padding: (k - 1) / 2), tol: 1e-4)
        }
    }

    /// Convolution and batch norm split images / channels over threads: with
    /// 1 and 3 threads forward and all gradients must be identical (fixed chunks,
    /// per-chunk dW summed in order), and a 13-image batch (uneven chunks)
    /// still matches the definition, with dW = Σ over images checked through
    /// the gradient of a linear functional against finite differences.
    func testConvAndBatchNormDoNotDependOnThreads() throws {
        defer { Parallel.setThreads(ProcessInfo.processInfo.activeProcessorCount) }
        let x0 = try Tensor.randn([13, 3, 9, 8], generator: g), w0 = try Tensor.randn([5, 3, 3, 3], generator: g)
        let b0 = try Tensor.randn([5], generator: g), gamma0 = try Tensor.randn([5], generator: g)
        let probe = try Tensor.randn([13, 5, 5, 4], generator: g)
        func run(_ threads: Int) throws -> [[Float]] {
            Parallel.setThreads(threads)
            let x = try x0.cloneRaw().requiresGrad_(), w = try w0.cloneRaw().requiresGrad_(), b = try b0.cloneRaw().requiresGrad_()
            let gamma = try gamma0.cloneRaw().requiresGrad_()
            let y = try F.conv2d(x, w, b, stride: 2, padding: 1)
            let z = try F.batchNorm(y, runningMean: nil, runningVar: nil, weight: gamma, bias: nil, training: true)
            try z.binary(.mul, probe).sum().backward()
            return [y.floats(), z.floats(), x.grad!.floats(), w.grad!.floats(), b.grad!.floats(), gamma.grad!.floats()]
        }
        let one = try run(1), three = try run(3)
        XCTAssertEqual(one, three)
        close(one[0], naiveConv(x0, w0, b0, stride: 2, padding: 1), tol: 1e-4)
        XCTAssertTrue(try gradcheck({ try F.conv2d($0[0], $0[1], nil, stride: 2, padding: 1) },
                                    inputs: [try Tensor.randn([11, 2, 5, 5], generator: g).requiresGrad_(),
                                             try leaf([2, 2, 3, 3])]).passed)
    }

    /// conv2d of copies of x0, w0, b0 and the gradients of Σ y·probe: [y, dx, dw, db].
    func convOutputAndGrads(_ x0: Tensor, _ w0: Tensor, _ b0: Tensor, _ probe: Tensor,
                            stride: (Int, Int), padding: (Int, Int)) throws -> [[Float]] {
        let x = try x0.cloneRaw().requiresGrad_(), w = try w0.cloneRaw().requiresGrad_(), b = try b0.cloneRaw().requiresGrad_()
        let y = try F.conv2d(x, w, b, stride: stride, padding: padding)
        try y.binary(.mul, probe).sum().backward()
        return [y.floats(), x.grad!.floats(), w.grad!.floats(), b.grad!.floats()]
    }

    /// One geometry on both paths (forward, dX, dW, db): direct (CKernels)
    /// against im2col + BLAS to float rounding, the direct path the same bits on
    /// 1 and 3 threads, and against the definition where naiveConv applies.
    func compareConvPaths(n: Int, c: Int, o: Int, h: Int, w: Int, kh: Int, kw: Int, stride: (Int, Int), padding: (Int, Int),
                          file: StaticString = #filePath, line: UInt = #line) throws {
        let label = "n \(n) c \(c) o \(o) \(h)×\(w) k \(kh)×\(kw) stride \(stride) padding \(padding)"
        let geo = WindowGeometry(c: c, h: h, w: w, kh: kh, kw: kw, sh: stride.0, sw: stride.1, ph: padding.0, pw: padding.1)
        convDirectEnabled = true
        XCTAssertEqual(directConvUsable(geo) || phasedConvUsable(geo), convDirectAvailable, "\(label): path", file: file, line: line)
        let x0 = try Tensor.randn([n, c, h, w], generator: g), w0 = try Tensor.randn([o, c, kh, kw], generator: g)
        let b0 = try Tensor.randn([o], generator: g)
        let probe = try Tensor.randn([n, o, geo.oh, geo.ow], generator: g)
        func run(_ direct: Bool) throws -> [[Float]] {
            convDirectEnabled = direct
            return try convOutputAndGrads(x0, w0, b0, probe, stride: stride, padding: padding)
        }
        let viaDirect = try run(true), viaColumns = try run(false)
        // Thread count must not change a bit (dW by fixed channel blocks, dX by fixed image chunks).
        Parallel.setThreads(1)
        let oneThread = try run(true)
        Parallel.setThreads(3)
        XCTAssertEqual(try run(true), oneThread, "\(label): 1 vs 3 threads", file: file, line: line)
        Parallel.setThreads(ProcessInfo.processInfo.activeProcessorCount)
        for (i, name) in ["y", "dx", "dw", "db"].enumerated() {
            XCTAssertEqual(viaDirect[i].count, viaColumns[i].count, file: file, line: line)
            for (j, (a, e)) in zip(viaDirect[i], viaColumns[i]).enumerated() where abs(a - e) > 1e-4 * (1 + abs(e)) {
                XCTFail("\(label) \(name)[\(j)]: direct \(a), im2col \(e)", file: file, line: line); break
            }
        }
        if kh == kw && padding.0 == padding.1 && stride.0 == stride.1 {      // naiveConv: square, symmetric
            close(viaDirect[0], naiveConv(x0, w0, b0, stride: stride.0, padding: padding.0), tol: 1e-4, file: file, line: line)
        }
    }

    /// The direct kernels (CKernels, AVX-512) against the im2col + BLAS path on
    /// the geometries they take (stride 1, output as wide as the input):
    /// channel counts on both sides of the 12-row and 4×6 register tiles, one
    /// input channel (the first layer, whose input gradient attacks need),
    /// positions that are not a multiple of 16 or 32, maps of at most 16
    /// positions (two images share a tile) with an odd batch, 1×1, 5×5,
    /// non-square and row-unpadded kernels, an uneven 13-image batch, images
    /// large enough that the weight gradient is summed over several groups. Forward, dX, dW and db
    /// must agree to float rounding (the sums run in another order), be the
    /// same bits on 1 and 3 threads, and a finite-difference check runs on
    /// the direct path. On a CPU without
    /// AVX2 or AVX-512 both runs take im2col. Every mode this CPU has runs:
    /// the default, everything on the AVX2 kernels, and AVX2 with the weight
    /// gradient from im2col columns (the AVX2 default).
    func testDirectConvolutionMatchesIm2col() throws {
        defer { convSetMode(0) }
        for mode in [0, 1, 3] where convSetMode(mode) != nil || mode == 0 {
            try directConvolutionMatchesIm2col()
        }
    }

    func directConvolutionMatchesIm2col() throws {
        let saved = convDirectEnabled
        defer { convDirectEnabled = saved; Parallel.setThreads(ProcessInfo.processInfo.activeProcessorCount) }
        let cases: [(n: Int, c: Int, o: Int, h: Int, w: Int, kh: Int, kw: Int, ph: Int)] = [
            (2, 3, 4, 5, 7, 3, 3, 1), (3, 1, 32, 9, 9, 3, 3, 1), (13, 17, 13, 6, 5, 3, 3, 1),
            (2, 16, 25, 8, 8, 3, 3, 1), (2, 5, 12, 3, 40, 1, 1, 0), (2, 4, 7, 11, 6, 5, 5, 2),
            (2, 3, 5, 7, 9, 3, 1, 0), (2, 2, 3, 6, 6, 1, 3, 0), (1, 24, 1, 4, 4, 3, 3, 1),
            (2, 3, 6, 1, 1, 3, 3, 1), (2, 2, 4, 4, 1, 3, 3, 2),
            (17, 8, 13, 4, 4, 3, 3, 1), (21, 20, 14, 3, 5, 3, 3, 1),   // ≤ 16 positions: two images per tile, odd chunks
            (16, 66, 5, 32, 32, 3, 3, 1),      // 270 KB of input per image: dW reduced per image group, 2 groups per chunk
        ]
        for t in cases {
            try compareConvPaths(n: t.n, c: t.c, o: t.o, h: t.h, w: t.w, kh: t.kh, kw: t.kw, stride: (1, 1), padding: (t.ph, (t.kw - 1) / 2))
        }
        // Strided convolutions through phase planes (each phase plane with taps as
        // wide as the output): ResNet's 3×3/2 and 1×1/2 (phases without taps: dX 0
        // there), odd heights, stride 3, a (2, 1) stride, 4×4 outputs in pairs.
        let strided: [(n: Int, c: Int, o: Int, h: Int, w: Int, kh: Int, kw: Int, sh: Int, sw: Int, ph: Int, pw: Int)] = [
            (3, 3, 5, 8, 8, 3, 3, 2, 2, 1, 1), (2, 4, 13, 7, 10, 3, 3, 2, 2, 1, 1), (3, 5, 6, 8, 6, 1, 1, 2, 2, 0, 0),
            (2, 2, 3, 9, 9, 3, 3, 3, 3, 0, 0), (2, 3, 4, 9, 12, 3, 3, 3, 3, 1, 1), (2, 3, 7, 6, 5, 3, 3, 2, 1, 1, 1),
            (17, 9, 14, 8, 8, 3, 3, 2, 2, 1, 1), (2, 2, 3, 8, 8, 5, 5, 2, 2, 2, 2),
        ]
        for t in strided {
            try compareConvPaths(n: t.n, c: t.c, o: t.o, h: t.h, w: t.w, kh: t.kh, kw: t.kw, stride: (t.sh, t.sw), padding: (t.ph, t.pw))
        }
        convDirectEnabled = true
        // conv2d is linear in each input, so a central difference is exact for
        // any step but for float32 rounding; eps 0.05 keeps that rounding (about
        // 1e-3 at the default 1e-3 step: the outputs are ~5, summed over ~90
        // positions) well under atol, whatever order the kernel sums in.
        XCTAssertTrue(try gradcheck({ try F.conv2d($0[0], $0[1], $0[2], stride: 1, padding: 1) },
                                    inputs: [try Tensor.randn([3, 2, 5, 6], generator: g).requiresGrad_(), try leaf([5, 2, 3, 3]),
                                             try leaf([5])], eps: 0.05).passed)
        XCTAssertTrue(try gradcheck({ try F.conv2d($0[0], $0[1], $0[2], stride: 2, padding: 1) },
                                    inputs: [try Tensor.randn([3, 2, 6, 6], generator: g).requiresGrad_(), try leaf([4, 2, 3, 3]),
                                             try leaf([4])], eps: 0.05).passed)
    }

    /// The AVX2 kernels give the AVX-512 kernels' bits: forward, dX, dW and db
    /// of the geometries above (3×3, 1×1, 5×5, non-square, ≤ 16 positions in
    /// pairs, several weight-gradient groups, strided through phase planes),
    /// compared bit for bit. Runs only on an AVX-512 CPU (elsewhere there is
    /// nothing to compare with; the examples' headers, recorded on AVX-512,
    /// are reproduced with PARRY_CONV=direct on AVX2: examples/bind_pretrain.lua
    /// and examples/dverge.lua checked on a Zen 3 VM).
    func testAVX2KernelsGiveTheAVX512Bits() throws {
        guard convSetMode(0) == "AVX-512" else { throw XCTSkip("no AVX-512 on this CPU") }
        let saved = convDirectEnabled
        defer { convDirectEnabled = saved; convSetMode(0) }
        convDirectEnabled = true
        let cases: [(n: Int, c: Int, o: Int, h: Int, w: Int, kh: Int, kw: Int, sh: Int, ph: Int, pw: Int)] = [
            (2, 3, 4, 5, 7, 3, 3, 1, 1, 1), (3, 1, 32, 9, 9, 3, 3, 1, 1, 1), (13, 17, 13, 6, 5, 3, 3, 1, 1, 1),
            (2, 5, 12, 3, 40, 1, 1, 1, 0, 0), (2, 4, 7, 11, 6, 5, 5, 1, 2, 2), (2, 3, 5, 7, 9, 3, 1, 1, 0, 0),
            (17, 8, 13, 4, 4, 3, 3, 1, 1, 1), (21, 20, 14, 3, 5, 3, 3, 1, 1, 1), (16, 66, 5, 32, 32, 3, 3, 1, 1, 1),
            (17, 9, 14, 8, 8, 3, 3, 2, 1, 1), (3, 5, 6, 8, 6, 1, 1, 2, 0, 0), (2, 2, 3, 8, 8, 5, 5, 2, 2, 2),
        ]
        for t in cases {
            let x0 = try Tensor.randn([t.n, t.c, t.h, t.w], generator: g), w0 = try Tensor.randn([t.o, t.c, t.kh, t.kw], generator: g)
            let b0 = try Tensor.randn([t.o], generator: g)
            let oh = (t.h + 2 * t.ph - t.kh) / t.sh + 1, ow = (t.w + 2 * t.pw - t.kw) / t.sh + 1
            let probe = try Tensor.randn([t.n, t.o, oh, ow], generator: g)
            func run(_ mode: Int) throws -> [[Float]] {
                convSetMode(mode)
                return try convOutputAndGrads(x0, w0, b0, probe, stride: (t.sh, t.sh), padding: (t.ph, t.pw))
            }
            let wide = try run(0), narrow = try run(1)
            for (i, name) in ["y", "dx", "dw", "db"].enumerated() {
                XCTAssertEqual(wide[i].map(\.bitPattern), narrow[i].map(\.bitPattern), "\(t) \(name): AVX2 vs AVX-512 bits")
            }
        }
    }

    /// The fused convolution builds its columns a block of output rows at a
    /// time; with tiny blocks (one or two rows) forward, gradients and the
    /// definition must agree with the one-block result.
    func testConvColumnBlocksMatchOneBlock() throws {
        let saved = convBlockBytes
        defer { convBlockBytes = saved }
        let x0 = try Tensor.randn([3, 2, 9, 7], generator: g), w0 = try Tensor.randn([4, 2, 3, 3], generator: g)
        let b0 = try Tensor.randn([4], generator: g), probe = try Tensor.randn([3, 4, 5, 4], generator: g)
        func run() throws -> [[Float]] {
            let x = try x0.cloneRaw().requiresGrad_(), w = try w0.cloneRaw().requiresGrad_(), b = try b0.cloneRaw().requiresGrad_()
            let y = try F.conv2d(x, w, b, stride: 2, padding: 1)
            try y.binary(.mul, probe).sum().backward()
            return [y.floats(), x.grad!.floats(), w.grad!.floats(), b.grad!.floats()]
        }
        convBlockBytes = 1 << 30
        let one = try run()
        for bytes in [1, 2 * 18 * 4 * 4, 3 * 18 * 4 * 4] {     // 1 row, 2 rows, 3 rows (uneven last block)
            convBlockBytes = bytes
            XCTAssertEqual(WindowGeometry(c: 2, h: 9, w: 7, kh: 3, kw: 3, sh: 2, sw: 2, ph: 1, pw: 1).rowBlocks().ranges.count,
                           bytes == 1 ? 5 : (bytes == 2 * 18 * 4 * 4 ? 3 : 2))
            let many = try run()
            close(many[0], one[0], tol: 1e-5); close(many[1], one[1], tol: 1e-5)
            close(many[2], one[2], tol: 1e-5); close(many[3], one[3], tol: 1e-5)
        }
        close(one[0], naiveConv(x0, w0, b0, stride: 2, padding: 1), tol: 1e-4)
        convBlockBytes = 1
        XCTAssertTrue(try gradcheck({ try F.conv2d($0[0], $0[1], nil, stride: 1, padding: 1) },
                                    inputs: [try Tensor.randn([2, 2, 5, 4], generator: g).requiresGrad_(), try leaf([3, 2, 3, 3])]).passed)
    }

    func testConvAndPoolGradients() throws {
        let x = try leaf([2, 2, 5, 5]), w = try leaf([3, 2, 3, 3]), b = try leaf([3])
        try check("conv s1 p0", [x, w, b]) { try F.conv2d($0[0], $0[1], $0[2]) }
        try check("conv s2 p1", [x, w, b]) { try F.conv2d($0[0], $0[1], $0[2], stride: 2, padding: 1) }
        try check("unfold", [x]) { try F.unfold($0[0], kernel: (2, 3), stride: (2, 1), padding: (1, 0)) }
        try check("unfold as one matrix", [x]) { try F.unfold($0[0], kernel: (3, 2), stride: (1, 2), padding: (1, 1), layout: .matrix) }
        try check("max pool", [x]) { try F.maxPool2d($0[0], kernel: 2) }
        try check("max pool s1 p1", [x]) { try F.maxPool2d($0[0], kernel: 3, stride: 1, padding: 1) }
        try check("avg pool", [x]) { try F.avgPool2d($0[0], kernel: 2, stride: 1) }
        try check("adaptive avg pool 5→3", [x]) { try F.adaptiveAvgPool2d($0[0], (3, 2)) }
        // Second order through conv: a gradient-norm penalty ‖∂/∂x Σ tanh(conv(x))‖², on a small
        // well-scaled problem (float32 central differences of a second derivative are noisy).
        let xs2 = try Tensor.randn([1, 2, 4, 4], generator: g).binary(.mul, .float(0.5)).requiresGrad_()
        let ws2 = try Tensor.randn([2, 2, 3, 3], generator: g).binary(.mul, .float(0.3)).requiresGrad_()
        try check("conv double backward", [xs2, ws2]) { xs in
            let y = try F.conv2d(xs[0], xs[1], nil, padding: 1).unary(.tanh).sum()
            let gx = try grad([y], [xs[0]], createGraph: true)[0]!
            return try gx.binary(.mul, gx).sum()
        }
    }

    func testPoolValues() throws {
        let x = try Tensor((1...16).map { Float($0) }, shape: [1, 1, 4, 4])
        XCTAssertEqual(try F.maxPool2d(x, kernel: 2).floats(), [6, 8, 14, 16])
        XCTAssertEqual(try F.avgPool2d(x, kernel: 2).floats(), [3.5, 5.5, 11.5, 13.5])
        // adaptive 4→3 bins: [0,2), [1,3), [2,4) in both directions
        let a = try F.adaptiveAvgPool2d(x, (3, 3)).floats()
        close(a, [3.5, 4.5, 5.5, 7.5, 8.5, 9.5, 11.5, 12.5, 13.5])
        XCTAssertEqual(try F.adaptiveAvgPool2d(x, (1, 1)).floats(), [8.5])
    }

    /// The 2×2 / stride 2 max pool (its own unrolled loop) against a plain
    /// scalar reading of PyTorch's rule — each window's first maximum in
    /// row-major order wins, a NaN wins and stays — compared bit for bit, on
    /// ties, NaNs, ±0, ±inf and odd sizes whose last row and column no window
    /// covers; and its gradient: g at each winner, +0 elsewhere (the scatter-add
    /// onto zeros turns a -0 gradient into +0).
    func testMaxPool2x2MatchesTheScalarRuleBitForBit() throws {
        let specials: [Float] = [0, -0.0, 1, 1, -1, .nan, .infinity, -.infinity, 2, 2]
        // The last case has planes enough for two threads (each a range of whole
        // planes, its last stores cut to the range: a store running past them
        // would land on the other thread's first outputs).
        for (h, w, n, c) in [(4, 4, 2, 3), (5, 7, 2, 3), (6, 18, 2, 3), (3, 9, 2, 3), (28, 28, 2, 3), (2, 2, 2, 3), (14, 14, 4, 100)] {
            let oh = h / 2, ow = w / 2
            var vals = try Tensor.randn([n * c * h * w], generator: g).floats().map { ($0 * 2).rounded() }  // many ties
            for k in stride(from: 0, to: vals.count, by: 5) { vals[k] = specials[(k / 5) % specials.count] }
            let x = try Tensor(vals, shape: [n, c, h, w]).requiresGrad_()
            var gvals = try Tensor.randn([n * c * oh * ow], generator: g).floats()
            for k in stride(from: 0, to: gvals.count, by: 7) { gvals[k] = -0.0 }
            let y = try F.maxPool2d(x, kernel: 2)
            try y.backward(try Tensor(gvals, shape: [n, c, oh, ow]))
            var want = [Float](repeating: 0, count: n * c * oh * ow), wantGrad = [Float](repeating: 0, count: vals.count)
            for p in 0..<(n * c) { for i in 0..<oh { for j in 0..<ow {
                var best = Float(0), at = -1
                for (di, dj) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                    let k = p * h * w + (2 * i + di) * w + 2 * j + dj, v = vals[k]
                    if at < 0 || (!(v <= best) && !best.isNaN) { best = v; at = k }
                }
                let o = (p * oh + i) * ow + j
                want[o] = best
                wantGrad[at] += gvals[o]
            } } }
            let got = try y.floats(), gotGrad = try x.grad!.floats()
            XCTAssertEqual(got.map(\.bitPattern), want.map(\.bitPattern), "values \(h)×\(w)")
            XCTAssertEqual(gotGrad.map(\.bitPattern), wantGrad.map(\.bitPattern), "gradient \(h)×\(w)")
        }
    }

    func testBatchNormTrainAndEval() throws {
        let x = try leaf([4, 3, 2, 2]), w = try leaf([3]), b = try leaf([3])
        try check("batch norm train", [x, w, b]) { xs in
            try F.batchNorm(xs[0], runningMean: nil, runningVar: nil, weight: xs[1], bias: xs[2], training: true)
        }
        try check("batch norm 1d train, no affine", [try leaf([5, 3])]) { xs in
            try F.batchNorm(xs[0], runningMean: nil, runningVar: nil, weight: nil, bias: nil, training: true)
        }
        let rm = try Tensor.randn([3], generator: g), rv = try Tensor.rand([3], generator: g).binary(.add, .float(0.5))
        try check("batch norm eval", [x, w, b]) { xs in
            try F.batchNorm(xs[0], runningMean: rm, runningVar: rv, weight: xs[1], bias: xs[2], training: false)
        }
        // Second order through the fused op's create_graph path: a gradient-norm penalty.
        let xs2 = try Tensor.randn([3, 2, 2, 2], generator: g).requiresGrad_()
        let ws2 = try Tensor.rand([2], generator: g).binary(.add, .float(0.5)).requiresGrad_()
        try check("batch norm double backward", [xs2, ws2]) { xs in
            let y = try F.batchNorm(xs[0], runningMean: nil, runningVar: nil, weight: xs[1], bias: nil, training: true)
                .unary(.tanh).binary(.mul, try Tensor.randn([3, 2, 2, 2], generator: Generator(seed: 5))).sum()
            let gx = try grad([y], [xs[0]], createGraph: true)[0]!
            return try gx.binary(.mul, gx).sum()
        }
        let bn = try BatchNorm(3, spatial: true)
        let y = try bn(x.detach())
        // Per channel the output has mean 0 and biased variance 1 (weight 1, bias 0).
        let m = try y.transpose(0, 1).reshape([3, -1])
        close(try m.mean(dim: 1).floats(), [0, 0, 0], tol: 1e-5)
        close(try m.variance(dim: 1, correction: 0).floats(), [1, 1, 1], tol: 1e-3)
        // running stats: 0.9·init + 0.1·batch (unbiased variance)
        let xc = try x.detach().transpose(0, 1).reshape([3, -1])
        close(bn.buffer("running_mean")!.floats(), try xc.mean(dim: 1).binary(.mul, .float(0.1)).floats(), tol: 1e-5)
        close(bn.buffer("running_var")!.floats(),
              try xc.variance(dim: 1).binary(.mul, .float(0.1)).binary(.add, .float(0.9)).floats(), tol: 1e-5)
        XCTAssertEqual(try bn.buffer("num_batches_tracked")!.item(), .int(1))
        bn.eval()
        let e = try bn(x.detach())
        let expected = try x.detach().binary(.sub, bn.buffer("running_mean")!.reshape([1, 3, 1, 1]))
            .binary(.div, bn.buffer("running_var")!.reshape([1, 3, 1, 1]).binary(.add, .float(1e-5)).unary(.sqrt))
        close(e.floats(), expected.floats(), tol: 1e-4)
    }

    func testActivationsAndLinear() throws {
        let x = try leaf([3, 4]), w = try leaf([2, 4]), b = try leaf([2])
        try check("linear", [x, w, b]) { try F.linear($0[0], $0[1], $0[2]) }
        try check("gelu", [x]) { try F.gelu($0[0]) }
        try check("leaky relu", [x]) { try F.leakyRelu($0[0], slope: 0.2) }
        try check("dropout with a fixed mask", [x]) { try F.dropout($0[0], p: 0.3, training: true, generator: Generator(seed: 5)) }
        try check("normalize", [x]) { try F.normalize($0[0]) }
        try check("cosine similarity", [x, try leaf([3, 4])]) { try F.cosineSimilarity($0[0], $0[1]) }
        // GELU(1) = Φ(1) = 0.841344746...
        XCTAssertEqual(try F.gelu(Tensor([1] as [Float], shape: [1])).floats()[0], 0.8413447, accuracy: 1e-6)
    }
}

final class LossTests: XCTestCase {
    let logits = try! Tensor([2, 1, 0.1, 0.5, 2.5, -1] as [Float], shape: [2, 3])
    let y = try! Tensor([0, 1] as [Int64], shape: [2])

    func lse(_ r: [Double]) -> Double { log(r.map { exp($0) }.reduce(0, +)) }

    func testCrossEntropyClosedForm() throws {
        let rows = [[2, 1, 0.1], [0.5, 2.5, -1]]
        let l0 = lse(rows[0]) - 2, l1 = lse(rows[1]) - 2.5
        XCTAssertEqual(try Loss.crossEntropy(logits, y).item().double, (l0 + l1) / 2, accuracy: 1e-6)
        XCTAssertEqual(try Loss.crossEntropy(logits, y, reduction: .sum).item().double, l0 + l1, accuracy: 1e-6)
        // weights: Σ w_y·l / Σ w_y
        let w = try Tensor([2, 0.5, 1] as [Float], shape: [3])
        XCTAssertEqual(try Loss.crossEntropy(logits, y, weight: w).item().double, (2 * l0 + 0.5 * l1) / 2.5, accuracy: 1e-6)
        // label smoothing ε: (1−ε)·l + ε·mean_c(−log p_c)
        let s0 = rows[0].map { lse(rows[0]) - $0 }.reduce(0, +) / 3, s1 = rows[1].map { lse(rows[1]) - $0 }.reduce(0, +) / 3
        let eps = 0.1
        XCTAssertEqual(try Loss.crossEntropy(logits, y, labelSmoothing: eps).item().double,
                       ((1 - eps) * l0 + eps * s0 + (1 - eps) * l1 + eps * s1) / 2, accuracy: 1e-6)
        XCTAssertThrowsError(try Loss.crossEntropy(logits, try Tensor([0, 3] as [Int64], shape: [2])))
        let lg = try logits.detach().requiresGrad_()
        let r = try gradcheck({ try Loss.crossEntropy($0[0], self.y, labelSmoothing: 0.2) }, inputs: [lg])
        XCTAssertTrue(r.passed, r.worst)
    }

    func testMseAndKL() throws {
        let a = try Tensor([1, 2, 3] as [Float], shape: [3]), b = try Tensor([1, 0, 1] as [Float], shape: [3])
        XCTAssertEqual(try Loss.mse(a, b).item().double, 8.0 / 3, accuracy: 1e-6)
        let p = try Tensor([0.5, 0.5, 0] as [Float], shape: [1, 3]), q = try Tensor([0.25, 0.25, 0.5] as [Float], shape: [1, 3])
        // KL(p‖q) = Σ p log(p/q) = log 2 (the p = 0 term is 0)
        XCTAssertEqual(try Loss.klDiv(q.unary(.log), p, reduction: .sum).item().double, log(2.0), accuracy: 1e-6)
        XCTAssertEqual(try Loss.klDiv(q.unary(.log), p, reduction: .batchmean).item().double, log(2.0), accuracy: 1e-6)
    }
}

final class OptimTests: XCTestCase {
    func param(_ v: [Float], grad: [Float]) throws -> Tensor {
        let p = try Tensor(v, shape: [v.count]).requiresGrad_()
        p.grad = try Tensor(grad, shape: [grad.count])
        return p
    }

    func testSGDMomentumNesterovWeightDecay() throws {
        let p = try param([1, -2], grad: [0.5, 0.25])
        let opt = try SGD([p], lr: 0.1, momentum: 0.9, weightDecay: 0.01, nesterov: true)
        // step 1: d = g + 0.01p = [0.51, 0.23]; b = d; d = d + 0.9b = 1.9d; p -= 0.1·d
        try opt.step()
        close(p.floats(), [1 - 0.1 * 1.9 * 0.51, -2 - 0.1 * 1.9 * 0.23])
        // step 2 (same grad): d = g + 0.01p; b = 0.9b + d; p -= 0.1(d + 0.9b)
        let p1 = p.floats()
        let d2 = [0.5 + 0.01 * p1[0], 0.25 + 0.01 * p1[1]]
        let b2 = [0.9 * 0.51 + d2[0], 0.9 * 0.23 + d2[1]]
        try opt.step()
        close(p.floats(), [p1[0] - 0.1 * (d2[0] + 0.9 * b2[0]), p1[1] - 0.1 * (d2[1] + 0.9 * b2[1])])
    }

    /// The fused one-pass update (contiguous float32) gives the bits of the
    /// tensor-op sequence it replaces, here written out with tensor ops, for
    /// every combination of momentum, dampening, weight decay and nesterov; a
    /// parameter that is a transposed view takes the tensor-op path and
    /// agrees too.
    func testFusedSGDKeepsTheBitsOfTheOpSequence() throws {
        let g0 = Generator(seed: 5)
        for momentum in [0.0, 0.9] { for dampening in [0.0, 0.1] { for wd in [0.0, 0.01] { for nesterov in [false, true] {
            if nesterov && (momentum == 0 || dampening != 0) { continue }
            let n = 140_000      // above the size (2^17) the fused loop splits over threads
            let start = try Tensor.randn([n], generator: g0), grads = try (0..<3).map { _ in try Tensor.randn([n], generator: g0) }
            let p = try start.cloneRaw().requiresGrad_()
            let opt = try SGD([p], lr: 0.05, momentum: momentum, dampening: dampening, weightDecay: wd, nesterov: nesterov)
            var ref = try start.cloneRaw(), buf: Tensor? = nil
            for g in grads {
                p.grad = g
                try opt.step()
                var d = g
                if wd != 0 { d = try d + wd * ref }
                if momentum != 0 {
                    if let b = buf { try b.mul_(momentum).add_((1 - dampening) * d) } else { buf = try d.clone() }
                    d = nesterov ? try d + momentum * buf! : buf!
                }
                ref = try ref - 0.05 * d
            }
            XCTAssertEqual(p.floats().map(\.bitPattern), ref.floats().map(\.bitPattern),
                           "momentum \(momentum) dampening \(dampening) wd \(wd) nesterov \(nesterov)")
            // the same steps on a non-contiguous parameter (the tensor-op path)
            let q = try start.cloneRaw().reshape([350, 400]).transpose(0, 1).requiresGrad_()
            let optQ = try SGD([q], lr: 0.05, momentum: momentum, dampening: dampening, weightDecay: wd, nesterov: nesterov)
            var refQ = try start.cloneRaw().reshape([350, 400]).transpose(0, 1).contiguous()
            for g in grads { q.grad = try g.reshape([350, 400]).transpose(0, 1); try optQ.step() }
            let optR = try SGD([refQ.requiresGrad_()], lr: 0.05, momentum: momentum, dampening: dampening, weightDecay: wd, nesterov: nesterov)
            for g in grads { refQ.grad = try g.reshape([350, 400]).transpose(0, 1).contiguous(); try optR.step() }
            XCTAssertEqual(try q.contiguous().floats().map(\.bitPattern), refQ.floats().map(\.bitPattern))
            refQ = refQ.detach()
        } } } }
    }

    func testSGDDampening() throws {
        let p = try param([0], grad: [1])
        let opt = try SGD([p], lr: 1, momentum: 0.5, dampening: 0.5)
        try opt.step()          // b = g = 1 (no dampening at the first step); p = -1
        try opt.step()          // b = 0.5·1 + 0.5·1 = 1; p = -2
        try opt.step()          // b = 0.5 + 0.5 = 1; p = -3
        close(p.floats(), [-3])
    }

    func testAdamAndAdamW() throws {
        let g: Float = 0.3, lr = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8, wd = 0.1
        for decoupled in [false, true] {
            let p = try param([1], grad: [g])
            let opt = try Adam([p], lr: lr, weightDecay: wd, decoupled: decoupled)
            var x = 1.0, m = 0.0, v = 0.0
            for t in 1...3 {
                try opt.step()
                var gg = Double(g)
                if decoupled { x *= 1 - lr * wd } else { gg += wd * x }
                m = b1 * m + (1 - b1) * gg
                v = b2 * v + (1 - b2) * gg * gg
                let bc1 = 1 - pow(b1, Double(t)), bc2 = 1 - pow(b2, Double(t))
                x -= lr / bc1 * m / (v.squareRoot() / bc2.squareRoot() + eps)
                XCTAssertEqual(Double(p.floats()[0]), x, accuracy: 1e-6, "decoupled=\(decoupled) step \(t)")
            }
        }
    }

    func testSchedulers() throws {
        let opt = try SGD([try param([0], grad: [0])], lr: 1)
        let s = try LRScheduler(opt, .multistep(milestones: [2, 4], gamma: 0.1))
        var lrs = [Double]()
        for _ in 0..<5 { s.step(); lrs.append(opt.lr) }
        XCTAssertEqual(lrs.map { ($0 * 1000).rounded() / 1000 }, [1, 0.1, 0.1, 0.01, 0.01])
        let c = try LRScheduler(try SGD([try param([0], grad: [0])], lr: 1), .cosine(tMax: 4, etaMin: 0))
        XCTAssertEqual(c.lr(at: 2), 0.5, accuracy: 1e-12)
        XCTAssertEqual(c.lr(at: 4), 0, accuracy: 1e-12)
        let st = try LRScheduler(try SGD([try param([0], grad: [0])], lr: 2), .step(stepSize: 3, gamma: 0.5))
        XCTAssertEqual([0, 2, 3, 6].map { st.lr(at: $0) }, [2, 2, 1, 0.5])
        let ex = try LRScheduler(try SGD([try param([0], grad: [0])], lr: 1), .exponential(gamma: 0.5))
        XCTAssertEqual(ex.lr(at: 3), 0.125)
    }
}

final class ModuleTests: XCTestCase {
    func testNamesStateAndModes() throws {
        let net = try Models.resnet20(inChannels: 3, classes: 10)
        let names = net.namedParameters().map(\.name)
        XCTAssertEqual(names.first, "conv1.weight")
        XCTAssertTrue(names.contains("layer2.1.conv1.weight"))
        XCTAssertTrue(names.contains("layer2.1.shortcut.1.weight"))
        XCTAssertEqual(names.last, "fc.bias")
        XCTAssertTrue(net.stateDict().map(\.name).contains("layer3.3.bn2.running_var"))
        // 0.27M parameters, as the ResNet-20 of He et al. (with 1×1 projection shortcuts)
        let count = net.allParameters().map(\.numel).reduce(0, +)
        XCTAssertGreaterThan(count, 260_000); XCTAssertLessThan(count, 290_000)
        net.eval()
        XCTAssertFalse(net.namedModules().contains { $0.module.training })
        let y = try net(try Tensor.randn([2, 3, 32, 32]))
        XCTAssertEqual(y.shape, [2, 10])
        let (_, feats) = try net.features(try Tensor.randn([2, 3, 32, 32]), at: ["layer2", "avgpool"])
        XCTAssertEqual(feats["layer2"]?.shape, [2, 32, 16, 16])
        XCTAssertEqual(feats["avgpool"]?.shape, [2, 64, 1, 1])
        XCTAssertThrowsError(try net.features(try Tensor.randn([1, 3, 32, 32]), at: ["layer9"]))
    }

    func testLoadStateDict() throws {
        let a = try Models.mlp([4, 3, 2]), b = try Models.mlp([4, 3, 2])
        try b.loadStateDict(a.stateDict())
        let x = try Tensor.randn([5, 4])
        XCTAssertEqual(try a(x).floats(), try b(x).floats())
        XCTAssertThrowsError(try b.loadStateDict(Array(a.stateDict().dropLast())))
        XCTAssertThrowsError(try b.loadStateDict(try Models.mlp([4, 5, 2]).stateDict()))
        XCTAssertNoThrow(try b.loadStateDict(Array(a.stateDict().dropLast()), strict: false))
    }

    func testDefaultInitBounds() throws {
        let l = try Linear(100, 50)
        let w = l.parameter("weight")!.floats()
        XCTAssertLessThanOrEqual(w.map(abs).max()!, 0.1)          // 1/√100
        XCTAssertGreaterThan(w.map(abs).max()!, 0.09)
        let c = try Conv2d(4, 8, 3)
        XCTAssertLessThanOrEqual(c.parameter("weight")!.floats().map(abs).max()!, Float(1 / 6.0))   // 1/√36
    }

    func testTrainingReducesLoss() throws {
        // A 2-class problem a linear model separates: loss must fall well below log 2.
        let g = Generator(seed: 3)
        let x = try Tensor.randn([64, 2], generator: g)
        let y = try x.select(1, 0).binary(.gt, .int(0)).to(.int64)
        let net = try Models.mlp([2, 8, 2])
        let opt = try SGD(net.allParameters(), lr: 0.5, momentum: 0.9)
        var last = 0.0
        for _ in 0..<60 {
            opt.zeroGrad()
            let loss = try Loss.crossEntropy(net(x), y)
            try loss.backward()
            try opt.step()
            last = try loss.item().double
        }
        XCTAssertLessThan(last, 0.15)
    }
}

/// ResNet blocks run bn → relu as one fused op unless something watches the
/// batch norm's output; the fused op must give the bits of the two steps.
/// Sequential{…, ReLU, MaxPool2d, …} (the small CNN) runs relu → max pool as
/// one op; it must give the bits of relu followed by max pooling, forward and
/// backward, on the inputs where the two could part: ties inside a window,
/// windows with no positive value, NaN, −0, ragged planes, overlapping and
/// padded windows.
final class FusedReLUMaxPoolTests: XCTestCase {
    /// x in halves from −2 to 2 (ties everywhere), some −0, some NaN, one
    /// all-negative plane.
    func awkward(_ shape: [Int], seed: UInt64) throws -> Tensor {
        let g = Generator(seed: seed)
        let t = try Tensor.randn(shape, generator: g)
        var v = t.floats().map { ($0 * 2).rounded() / 2 }
        for k in stride(from: 3, to: v.count, by: 11) { v[k] = -0.0 }
        for k in stride(from: 7, to: v.count, by: 29) { v[k] = .nan }
        let plane = shape[2] * shape[3]
        for k in 0..<plane { v[k] = -abs(v[k]) - 0.5 }
        return try Tensor(v, shape: shape)
    }

    func testFusedOpHasTheBitsOfReLUThenMaxPool() throws {
        let cases: [([Int], Int, Int, Int)] = [([2, 3, 6, 8], 2, 2, 0), ([2, 3, 5, 7], 2, 2, 0), ([1, 2, 7, 7], 3, 2, 1),
                                               ([1, 2, 5, 6], 2, 1, 0), ([2, 1, 7, 5], 3, 3, 1)]
        for (shape, k, s, p) in cases {
            var runs: [[[UInt32]]] = []
            for fused in [true, false] {
                let x = try awkward(shape, seed: 5).requiresGrad_()
                let y = fused ? try F.reluMaxPool2d(x, kernel: k, stride: s, padding: p)
                              : try F.maxPool2d(try x.relu(), kernel: k, stride: s, padding: p)
                XCTAssertEqual(y.gradFn?.name, fused ? "relu_max_pool2d" : "max_pool2d")
                // the output gradient with some −0 (the scatter from zeros turns them into +0)
                var wv = try Tensor.randn(y.shape, generator: Generator(seed: 6)).floats()
                for k in stride(from: 0, to: wv.count, by: 5) { wv[k] = -0.0 }
                let w = try Tensor(wv, shape: y.shape)
                try y.binary(.mul, w).sum().backward()
                runs.append([y, x.grad!].map { $0.floats().map(\.bitPattern) })
                // the direct backward against the differentiable one (scatterAdd into zeros)
                func pool(_ x: Tensor) throws -> Tensor {
                    fused ? try F.reluMaxPool2d(x, kernel: k, stride: s, padding: p) : try F.maxPool2d(x, kernel: k, stride: s, padding: p)
                }
                let x1 = try awkward(shape, seed: 5).requiresGrad_(), x2 = try awkward(shape, seed: 5).requiresGrad_()
                let direct = try grad([try pool(x1)], [x1], gradOutputs: [w])[0]!
                let composite = try grad([try pool(x2)], [x2], gradOutputs: [w], createGraph: true)[0]!
                XCTAssertEqual(direct.floats().map(\.bitPattern), composite.floats().map(\.bitPattern),
                               "direct and create_graph backward, fused \(fused), \(shape) k\(k) s\(s) p\(p)")
            }
            XCTAssertEqual(runs[0][0], runs[1][0], "output, \(shape) k\(k) s\(s) p\(p)")
            XCTAssertEqual(runs[0][1], runs[1][1], "input gradient, \(shape) k\(k) s\(s) p\(p)")
            XCTAssertTrue(runs[0][1].contains { Float(bitPattern: $0) != 0 }, "some gradient flows")
        }
    }

    /// Under create_graph the gradient stays differentiable (in the outer
    /// weights here): same values as the composite (zeros may differ in sign).
    func testCreateGraphPathMatchesTheComposite() throws {
        for (shape, k, s, p) in [([2, 3, 6, 8], 2, 2, 0), ([1, 2, 7, 7], 3, 2, 1)] {
            var runs: [[[Float]]] = []
            for fused in [true, false] {
                let x = try awkward(shape, seed: 8).requiresGrad_()
                let outShape = [shape[0], shape[1], F.windows(shape[2], k, s, p), F.windows(shape[3], k, s, p)]
                let w = try Tensor.randn(outShape, generator: Generator(seed: 9)).requiresGrad_()
                let y = fused ? try F.reluMaxPool2d(x, kernel: k, stride: s, padding: p)
                              : try F.maxPool2d(try x.relu(), kernel: k, stride: s, padding: p)
                let gx = try grad([try y.binary(.mul, w).sum()], [x], createGraph: true)[0]!
                let v = try Tensor.randn(shape, generator: Generator(seed: 10))
                try gx.binary(.mul, v).sum().backward()
                runs.append([gx.floats(), w.grad!.floats()])
            }
            XCTAssertEqual(runs[0], runs[1], "\(shape) k\(k) s\(s) p\(p)")
        }
    }

    func testSequentialFusesReLUAndMaxPoolUnlessWatched() throws {
        var runs: [[[UInt32]]] = []
        for split in [false, true] {
            Generator.shared.reseed(8)
            let net = try Models.smallCNN(inChannels: 1, classes: 3, size: 12, hidden: 8)
            XCTAssertTrue(net.child("2") is Activation && net.child("3") is MaxPool2d)
            let handle = split ? net.child("2")!.registerForwardHook { _, _, _ in nil } : nil
            let x = try awkward([3, 1, 12, 12], seed: 11).requiresGrad_()
            let y = try net(x)
            // logits ← linear ← relu ← linear ← flatten ← (relu →) max pool ← conv
            var node = y.gradFn
            var names: [String] = []
            while let n = node { names.append(n.name); node = n.inputs.first(where: { $0.gradFn != nil })?.gradFn }
            XCTAssertEqual(names.filter { $0 == "relu_max_pool2d" }.count, split ? 1 : 2, "\(names)")
            try y.binary(.mul, try Tensor.randn(y.shape, generator: Generator(seed: 12))).sum().backward()
            runs.append([y, x.grad!].map { $0.floats().map(\.bitPattern) } + net.namedParameters().map { $0.tensor.grad!.floats().map(\.bitPattern) })
            handle?.remove()
        }
        XCTAssertEqual(runs[0], runs[1])
    }
}

final class FusedBatchNormReLUTests: XCTestCase {
    func testResNetStepIsBitIdenticalWithAndWithoutFusion() throws {
        for training in [true, false] {
            var results: [[[UInt32]]] = []
            for fused in [true, false] {
                Generator.shared.reseed(3)
                let net = try Models.resnet(depth: 8, width: 4, inChannels: 3, classes: 5)
                if !training { net.eval() }
                var handles: [HookHandle] = []
                if !fused {   // a hook that changes nothing makes the block call bn and relu separately
                    for (name, m) in net.namedModules() where m is BatchNorm && name.hasSuffix("bn1") {
                        handles.append(m.registerForwardHook { _, _, _ in nil })
                    }
                }
                let g = Generator(seed: 9)
                let x = try Tensor.randn([6, 3, 8, 8], generator: g), y = try Tensor([0, 1, 2, 3, 4, 0] as [Int64], shape: [6])
                let out = try net(x)
                try Loss.crossEntropy(out, y).backward()
                results.append([out.floats().map(\.bitPattern)] + net.namedParameters().map { $0.tensor.grad!.floats().map(\.bitPattern) })
                if training {   // running statistics too
                    results[results.count - 1] += net.namedBuffers().filter { $0.tensor.dtype == .float32 }.map { $0.tensor.floats().map(\.bitPattern) }
                }
                for h in handles { h.remove() }
            }
            XCTAssertEqual(results[0].count, results[1].count)
            for (k, (a, b)) in zip(results[0], results[1]).enumerated() { XCTAssertEqual(a, b, "training \(training), tensor \(k)") }
        }
    }

    /// Planes of 25 and 3 pixels: the fused backward's 8-wide loops and their
    /// scalar tails against relu's backward followed by batch norm's, bit for bit.
    func testFusedBackwardMatchesTheTwoStepsOnRaggedPlanes() throws {
        for (shape, training) in [([5, 3, 5, 5], true), ([7, 2, 3, 1], true), ([5, 3, 5, 5], false)] {
            var runs: [[[UInt32]]] = []
            for fused in [true, false] {
                let g = Generator(seed: 12)
                let bn = try BatchNorm(shape[1], spatial: true)
                let gamma = bn.parameter("weight")!, beta = bn.parameter("bias")!
                try GradMode.noGrad { _ = try gamma.copy_(try Tensor.randn([shape[1]], generator: g)); _ = try beta.copy_(try Tensor.randn([shape[1]], generator: g)) }
                if !training { bn.eval() }
                let x = try Tensor.randn(shape, generator: g).requiresGrad_()
                let w = try Tensor.randn(shape, generator: g)
                let y = fused ? try bn.forwardReLU(x) : try bn(x).relu()
                try y.binary(.mul, w).sum().backward()
                runs.append([y, x.grad!, gamma.grad!, beta.grad!].map { $0.floats().map(\.bitPattern) })
            }
            XCTAssertEqual(runs[0], runs[1], "shape \(shape), training \(training)")
        }
    }

    /// Sequential{…, BatchNorm, ReLU, …} (the CNNs and PointNets scripts build)
    /// takes the fused op too, with the bits of the two modules one after the
    /// other; a hook on either module keeps them apart.
    func testSequentialFusesBatchNormAndReLU() throws {
        for training in [true, false] {
            var runs: [[[UInt32]]] = []
            for split in [false, true] {
                Generator.shared.reseed(8)
                let relu = Activation(.ReLU)
                let net = Sequential([try Conv2d(2, 4, 3, padding: 1), try BatchNorm(4, spatial: true), relu,
                                      try BatchNorm(4, spatial: true), Activation(.Tanh)])
                if !training { net.eval() }
                let handle = split ? relu.registerForwardHook { _, _, _ in nil } : nil
                let g = Generator(seed: 2)
                let x = try Tensor.randn([3, 2, 5, 6], generator: g).requiresGrad_()
                let y = try net(x)
                let bn2 = y.gradFn?.inputs.first?.gradFn     // tanh ← batch norm (not followed by a ReLU: unfused)
                XCTAssertEqual(bn2?.name, "batch_norm")
                XCTAssertEqual(bn2?.inputs.first?.gradFn?.name, split ? "relu" : "batch_norm_relu")
                let inner = try net.child("3")!(try net.child("2")!(try net.child("1")!(x)))
                XCTAssertEqual(inner.gradFn?.name, "relu", "modules called one by one stay unfused")
                try y.binary(.mul, try Tensor.randn(y.shape, generator: g)).sum().backward()
                runs.append([y, x.grad!].map { $0.floats().map(\.bitPattern) } + net.namedParameters().map { $0.tensor.grad!.floats().map(\.bitPattern) })
                handle?.remove()
            }
            XCTAssertEqual(runs[0], runs[1], "training \(training)")
        }
        // the fused node is in the graph
        let net = Sequential([try BatchNorm(3, spatial: false), Activation(.ReLU)])
        let y = try net(try Tensor.randn([4, 3]).requiresGrad_())
        XCTAssertEqual(y.gradFn?.name, "batch_norm_relu")
    }

    func testSecondOrderGradientsThroughTheFusedOp() throws {
        let g = Generator(seed: 4)
        let bn = try BatchNorm(3, spatial: true)
        let x = try Tensor.randn([4, 3, 5, 5], generator: g).requiresGrad_()
        // d/dx of ‖∂L/∂x‖², L = Σ w·relu(bn(x)): fused and composite must agree
        let w = try Tensor.randn([4, 3, 5, 5], generator: g)
        func penalty(_ f: (Tensor) throws -> Tensor) throws -> [Float] {
            let l = try f(x).binary(.mul, w).sum()
            let gx = try grad([l], [x], createGraph: true)[0]!
            let p = try gx.binary(.mul, gx).sum()
            return try grad([p], [x])[0]!.floats()
        }
        let fused = try penalty { try bn.forwardReLU($0) }
        let twoSteps = try penalty { try bn($0).relu() }
        for (a, b) in zip(fused, twoSteps) { XCTAssertEqual(a, b, accuracy: 1e-4 * (1 + abs(b))) }
    }
}

final class CompSumTests: XCTestCase {
    let logits = try! Tensor([2, 0.5, -1, 0, 3, 1] as [Float], shape: [2, 3])
    let y = try! Tensor([0, 2] as [Int64], shape: [2])

    /// p_y from the definition, in Double.
    func py() -> [Double] {
        let rows: [[Double]] = [[2, 0.5, -1], [0, 3, 1]]
        return zip(rows, [0, 2]).map { r, k in exp(r[k]) / r.map(exp).reduce(0, +) }
    }

    func testClosedFormsOfTheNamedMembers() throws {
        let p = py()
        func mean(_ f: (Double) -> Double) -> Double { p.map(f).reduce(0, +) / 2 }
        let cases: [(Double, (Double) -> Double)] = [
            (0, { 1 / $0 - 1 }),                               // sum-exponential
            (0.5, { (1 - pow($0, -0.5)) / -0.5 }),             // ((1/p)^{1/2} − 1)/(1/2)
            (1, { -log($0) }),                                 // cross-entropy
            (1.5, { (1 - pow($0, 0.5)) / 0.5 }),               // GCE with q = 0.5
            (2, { 1 - $0 }),                                   // MAE
        ]
        for (tau, f) in cases {
            XCTAssertEqual(try Loss.compSum(logits, y, tau: tau).item().double, mean(f), accuracy: 1e-5, "tau \(tau)")
        }
        XCTAssertEqual(try Loss.compSum(logits, y, tau: 1).item().double, try Loss.crossEntropy(logits, y).item().double, accuracy: 1e-6)
        XCTAssertEqual(try Loss.compSum(logits, y, tau: 2, reduction: .none).floats().count, 2)
        XCTAssertThrowsError(try Loss.compSum(logits, y, tau: -1))
    }

    func testGradientIdentityAndGradcheck() throws {
        // ∂ℓ_τ/∂h = p_y^{τ−1}·(p − e_y), per sample (reduction "sum").
        for tau in [0.0, 0.5, 1, 1.5, 2] {
            let h = try logits.detach().requiresGrad_()
            let g = try grad([Loss.compSum(h, y, tau: tau, reduction: .sum)], [h])[0]!.floats()
            let p = try logits.softmax(dim: 1).floats(), pyv = py()
            for i in 0..<2 { for j in 0..<3 {
                let onehot: Float = (i == 0 && j == 0) || (i == 1 && j == 2) ? 1 : 0
                let expected = Float(pow(pyv[i], tau - 1)) * (p[i * 3 + j] - onehot)
                XCTAssertEqual(g[i * 3 + j], expected, accuracy: 1e-5, "tau \(tau) [\(i)][\(j)]")
            } }
            let r = try gradcheck({ try Loss.compSum($0[0], self.y, tau: tau) }, inputs: [h])
            XCTAssertTrue(r.passed, "tau \(tau): \(r.worst)")
        }
    }

    func testExtremeLogitsStayFiniteWhereTheLossIs() throws {
        let big = try Tensor([1e4, -1e4, 0, -1e4, 1e4, 0] as [Float], shape: [2, 3])
        let yy = try Tensor([0, 0] as [Int64], shape: [2])     // row 1 confidently right, row 2 confidently wrong
        for tau in [0.5, 1, 1.5, 2] {
            let h = try big.detach().requiresGrad_()
            let l = try Loss.compSum(h, yy, tau: tau, reduction: .none)
            let g = try grad([l.sum()], [h])[0]!.floats()
            if tau >= 1 {   // bounded or logarithmic: finite everywhere
                XCTAssertTrue(l.floats().allSatisfy { $0.isFinite }, "tau \(tau)")
                XCTAssertTrue(g.allSatisfy { $0.isFinite }, "tau \(tau)")
            } else {        // τ < 1: the confident-wrong row is e^{5000}, not a float; the right one is finite
                XCTAssertTrue(l.floats()[0].isFinite)
                XCTAssertTrue(g[0..<3].allSatisfy { $0.isFinite })
            }
        }
    }
}
