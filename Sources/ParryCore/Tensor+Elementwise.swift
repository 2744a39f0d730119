import Foundation

// Broadcasting elementwise arithmetic, comparisons, unary math, `where`,
// and the in-place variants. Every binary operation follows NumPy's
// broadcasting rules and PyTorch's type promotion (float32 wins; true
// division always gives float32).

/// The shape two shapes broadcast to, or an error naming both.
public func broadcastShapes(_ a: [Int], _ b: [Int]) throws -> [Int] {
    if a == b { return a }
    let n = max(a.count, b.count)
    var out = [Int](repeating: 1, count: n)
    for i in 0..<n {
        let x = i < n - a.count ? 1 : a[i - (n - a.count)]
        let y = i < n - b.count ? 1 : b[i - (n - b.count)]
        if x == y || y == 1 { out[i] = x } else if x == 1 { out[i] = y } else {
            throw TensorError("shapes \(shapeString(a)) and \(shapeString(b)) cannot be broadcast (dimension \(i + 1): \(x) ~= \(y))")
        }
    }
    return out
}

extension Tensor {
    /// Strides that read `self` as if expanded to `shape` (0 on broadcast dims).
    func broadcastStrides(to shape: [Int]) -> [Int] {
        let lead = shape.count - ndim
        return (0..<shape.count).map { i in
            i < lead ? 0 : (self.shape[i - lead] == 1 && shape[i] != 1 ? 0 : strides[i - lead])
        }
    }

    /// A 0-d tensor holding a scalar with its natural dtype.
    public static func scalar(_ s: Scalar) -> Tensor {
        switch s {
        case .int(let v):
            let t = Tensor(unchecked: [], dtype: .int64)
            t.base(Int64.self)[0] = v
            return t
        case .float(let v):
            let t = Tensor(unchecked: [], dtype: .float32)
            t.base(Float.self)[0] = Float(v)
            return t
        }
    }
}

/// out[i] = f(a[i], b[i]) with broadcasting of a and b to out's shape.
@inline(__always)
/// Elements per thread below which an elementwise loop stays on one thread
/// (the hand-off costs microseconds; 64k floats take about as long).
let elementwiseGrain = 1 << 16

func binaryKernel<T: TensorElement, U: TensorElement>(_ a: Tensor, _ b: Tensor, into out: Tensor,
                                                       _ f: (T, T) -> U) {
    let pa = a.base(T.self), pb = b.base(T.self), po = out.base(U.self)
    let n = out.numel
    if out.isContiguous && a.isContiguous && b.isContiguous && a.shape == out.shape && b.shape == out.shape {
        let x = pa + a.offset, y = pb + b.offset, z = po + out.offset
        for i in 0..<n { z[i] = f(x[i], y[i]) }
        return
    }
    if out.isContiguous && a.isContiguous && a.shape == out.shape && b.numel == 1 {
        let x = pa + a.offset, s = pb[b.offset], z = po + out.offset
        for i in 0..<n { z[i] = f(x[i], s) }
        return
    }
    if out.isContiguous && b.isContiguous && b.shape == out.shape && a.numel == 1 {
        let s = pa[a.offset], y = pb + b.offset, z = po + out.offset
        for i in 0..<n { z[i] = f(s, y[i]) }
        return
    }
    let sa = a.broadcastStrides(to: out.shape), sb = b.broadcastStrides(to: out.shape)
    // One operand full and contiguous, the other constant over a trailing block
    // (a per-channel bias or statistic): scalar-times-block loops that vectorize.
    // The block offsets are collected first so `f` is called from this scope
    // (inlined), not from inside the odometer's closure.
    if out.isContiguous && n > 0 {
        if a.isContiguous && a.shape == out.shape, let (block, outer) = constantBlock(out.shape, sb), block >= 8 {
            let x = pa + a.offset, z = po + out.offset
            let offs = offsets(outer, Array(sb.prefix(outer.count)), b.offset)
            for (k, j) in offs.enumerated() {
                let s = pb[j], base = k &* block
                for i in 0..<block { z[base &+ i] = f(x[base &+ i], s) }
            }
            return
        }
        if b.isContiguous && b.shape == out.shape, let (block, outer) = constantBlock(out.shape, sa), block >= 8 {
            let y = pb + b.offset, z = po + out.offset
            let offs = offsets(outer, Array(sa.prefix(outer.count)), a.offset)
            for (k, j) in offs.enumerated() {
                let s = pa[j], base = k &* block
                for i in 0..<block { z[base &+ i] = f(s, y[base &+ i]) }
            }
            return
        }
    }
    // General broadcasting: rows of the coalesced layout, each a tight loop.
    let (sh, st) = coalesce(out.shape, [sa, sb, out.strides])
    let nd = sh.count
    let len = sh[nd - 1], ia = st[0][nd - 1], ib = st[1][nd - 1], io = st[2][nd - 1]
    var rows: [(Int, Int, Int)] = []
    rows.reserveCapacity(n / max(len, 1))
    forEachOffset3(Array(sh.prefix(nd - 1)), Array(st[0].prefix(nd - 1)), a.offset, Array(st[1].prefix(nd - 1)), b.offset,
                   Array(st[2].prefix(nd - 1)), out.offset) { i, j, k in rows.append((i, j, k)) }
    for (i0, j0, k0) in rows {
        if ia == 1 && ib == 1 && io == 1 {
            let x = pa + i0, y = pb + j0, z = po + k0
            for t in 0..<len { z[t] = f(x[t], y[t]) }
        } else {
            var i = i0, j = j0, k = k0
            for _ in 0..<len { po[k] = f(pa[i], pb[j]); i &+= ia; j &+= ib; k &+= io }
        }
    }
}

/// The element offsets of a strided layout in row-major order.
@inline(__always)
func offsets(_ shape: [Int], _ st: [Int], _ o: Int) -> [Int] {
    var out: [Int] = []
    out.reserveCapacity(shape.reduce(1, *))
    forEachOffset(shape, st, o) { out.append($0) }
    return out
}

/// For broadcast strides `st` over `shape`: the size of the trailing block over
/// which the operand is constant (stride 0), and the shape before it.
@inline(__always)
func constantBlock(_ shape: [Int], _ st: [Int]) -> (Int, [Int])? {
    var d = shape.count, block = 1
    while d > 0 && (st[d - 1] == 0 || shape[d - 1] == 1) { d -= 1; block *= shape[d] }
    return d < shape.count ? (block, Array(shape[..<d])) : nil
}

/// out[i] = f(a[i]) for a of out's shape.
@inline(__always)
func unaryKernel<T: TensorElement, U: TensorElement>(_ a: Tensor, into out: Tensor, _ f: (T) -> U) {
    let pa = a.base(T.self), po = out.base(U.self)
    if a.isContiguous && out.isContiguous {
        let x = pa + a.offset, z = po + out.offset
        for i in 0..<out.numel { z[i] = f(x[i]) }
        return
    }
    var rows: [(Int, Int, Int, Int, Int)] = []
    forEachRow2(out.shape, a.strides, a.offset, out.strides, out.offset) { rows.append(($0, $1, $2, $3, $4)) }
    for (i0, k0, len, ia, io) in rows {
        var i = i0, k = k0
        for _ in 0..<len { po[k] = f(pa[i]); i &+= ia; k &+= io }
    }
}

/// Binary elementwise operations.
public enum BinaryOp: String, Sendable {
    case add, sub, mul, div, pow, maximum, minimum
    /// Floor division and the remainder with the divisor's sign (Python's `//`, `%`).
    case floorDiv, remainder
    case eq, ne, lt, le, gt, ge

    var isComparison: Bool {
        switch self {
        case .eq, .ne, .lt, .le, .gt, .ge: return true
        default: return false
        }
    }

    /// The dtype of the result for operands of these dtypes.
    func resultDType(_ a: DType, _ b: DType) -> DType {
        if isComparison || self == .div { return .float32 }
        return a.promoted(with: b)
    }
}

/// Integer floor division; division by zero gives 0 rather than trapping.
@inline(__always) func ifloordiv(_ u: Int64, _ v: Int64) -> Int64 {
    if v == 0 { return 0 }
    if v == -1 { return 0 &- u }
    let q = u / v
    return (u % v != 0 && ((u < 0) != (v < 0))) ? q - 1 : q
}

@inline(__always) func ipow(_ base: Int64, _ exp: Int64) -> Int64 {
    if exp < 0 { return base == 1 ? 1 : (base == -1 ? (exp & 1 == 0 ? 1 : -1) : 0) }
    var r: Int64 = 1, b = base, e = exp
    while e > 0 { if e & 1 == 1 { r = r &* b }; b = b &* b; e >>= 1 }
    return r
}

/// A contiguous tensor's elements lo..<hi as a flat view (a scalar-like
/// tensor of one element stays itself: it broadcasts).
private func flatSlice(_ t: Tensor, _ r: Range<Int>) -> Tensor {
    if t.numel == 1 { return t }
    return Tensor(storage: t.storage, shape: [r.count], strides: [1], offset: t.offset + r.lowerBound, dtype: t.dtype)
}

/// Large elementwise ops on contiguous operands (each full-size or a single
/// element) run over `Parallel`'s threads as flat slices, each slice through
/// the same specialized kernel as a small op — so the loops still vectorize.
/// Callers test `out.numel >= 2 * elementwiseGrain` first, before building
/// the operand array (an allocation a small op should not pay).
private func splitElementwise(_ out: Tensor, _ operands: [Tensor], _ run: (Tensor, [Tensor]) -> Void) -> Bool {
    let n = out.numel
    guard !Parallel.inRegion, Parallel.threads > 1, out.isContiguous,
          operands.allSatisfy({ $0.isContiguous && ($0.numel == n || $0.numel == 1) }) else { return false }
    // In place with an operand that is a different view of the same memory: one pass, in order.
    if operands.contains(where: { $0.storage === out.storage && $0.offset != out.offset }) { return false }
    Parallel.forRanges(n, grain: elementwiseGrain) { r in run(flatSlice(out, r), operands.map { flatSlice($0, r) }) }
    return true
}

func applyBinary(_ op: BinaryOp, _ a: Tensor, _ b: Tensor, into out: Tensor) {
    let common = a.dtype.promoted(with: b.dtype)
    let x = a.to(common), y = b.to(common)
    if out.numel >= 2 * elementwiseGrain, splitElementwise(out, [x, y], { o, xy in applyBinarySerial(op, xy[0], xy[1], common, into: o) }) { return }
    applyBinarySerial(op, x, y, common, into: out)
}

private func applyBinarySerial(_ op: BinaryOp, _ x: Tensor, _ y: Tensor, _ common: DType, into out: Tensor) {
    switch common {
    case .float32:
        switch op {
        case .add: binaryKernel(x, y, into: out) { (u: Float, v: Float) in u + v }
        case .sub: binaryKernel(x, y, into: out) { (u: Float, v: Float) in u - v }
        case .mul: binaryKernel(x, y, into: out) { (u: Float, v: Float) in u * v }
        case .div: binaryKernel(x, y, into: out) { (u: Float, v: Float) in u / v }
        case .pow: binaryKernel(x, y, into: out) { (u: Float, v: Float) in v == 2 ? u * u : powf(u, v) }
        case .floorDiv: binaryKernel(x, y, into: out) { (u: Float, v: Float) in (u / v).rounded(.down) }
        case .remainder: binaryKernel(x, y, into: out) { (u: Float, v: Float) -> Float in
            let r = fmodf(u, v)
            return r != 0 && ((r < 0) != (v < 0)) ? r + v : r
        }
        case .maximum: binaryKernel(x, y, into: out) { (u: Float, v: Float) -> Float in u.isNaN || v.isNaN ? .nan : Swift.max(u, v) }
        case .minimum: binaryKernel(x, y, into: out) { (u: Float, v: Float) -> Float in u.isNaN || v.isNaN ? .nan : Swift.min(u, v) }
        case .eq: binaryKernel(x, y, into: out) { (u: Float, v: Float) -> Float in u == v ? 1 : 0 }
        case .ne: binaryKernel(x, y, into: out) { (u: Float, v: Float) -> Float in u != v ? 1 : 0 }
        case .lt: binaryKernel(x, y, into: out) { (u: Float, v: Float) -> Float in u < v ? 1 : 0 }
        case .le: binaryKernel(x, y, into: out) { (u: Float, v: Float) -> Float in u <= v ? 1 : 0 }
        case .gt: binaryKernel(x, y, into: out) { (u: Float, v: Float) -> Float in u > v ? 1 : 0 }
        case .ge: binaryKernel(x, y, into: out) { (u: Float, v: Float) -> Float in u >= v ? 1 : 0 }
        }
    case .int64:
        switch op {
        case .add: binaryKernel(x, y, into: out) { (u: Int64, v: Int64) in u &+ v }
        case .sub: binaryKernel(x, y, into: out) { (u: Int64, v: Int64) in u &- v }
        case .mul: binaryKernel(x, y, into: out) { (u: Int64, v: Int64) in u &* v }
        case .div: binaryKernel(x, y, into: out) { (u: Int64, v: Int64) -> Float in Float(Double(u) / Double(v)) }
        case .pow: binaryKernel(x, y, into: out) { (u: Int64, v: Int64) in ipow(u, v) }
        case .floorDiv: binaryKernel(x, y, into: out) { (u: Int64, v: Int64) in ifloordiv(u, v) }
        case .remainder: binaryKernel(x, y, into: out) { (u: Int64, v: Int64) in u &- ifloordiv(u, v) &* v }
        case .maximum: binaryKernel(x, y, into: out) { (u: Int64, v: Int64) in Swift.max(u, v) }
        case .minimum: binaryKernel(x, y, into: out) { (u: Int64, v: Int64) in Swift.min(u, v) }
        case .eq: binaryKernel(x, y, into: out) { (u: Int64, v: Int64) -> Float in u == v ? 1 : 0 }
        case .ne: binaryKernel(x, y, into: out) { (u: Int64, v: Int64) -> Float in u != v ? 1 : 0 }
        case .lt: binaryKernel(x, y, into: out) { (u: Int64, v: Int64) -> Float in u < v ? 1 : 0 }
        case .le: binaryKernel(x, y, into: out) { (u: Int64, v: Int64) -> Float in u <= v ? 1 : 0 }
        case .gt: binaryKernel(x, y, into: out) { (u: Int64, v: Int64) -> Float in u > v ? 1 : 0 }
        case .ge: binaryKernel(x, y, into: out) { (u: Int64, v: Int64) -> Float in u >= v ? 1 : 0 }
        }
    }
}

/// Unary elementwise operations. Those marked floating compute in float32
/// (int64 inputs are converted first), the rest keep the input's dtype.
public enum UnaryOp: String, Sendable {
    case neg, abs, sign, relu
    case exp, log, sqrt, sigmoid, tanh, sin, cos, floor, ceil, round, log1p, expm1, rsqrt, erf

    var keepsDType: Bool {
        switch self {
        case .neg, .abs, .sign, .relu, .floor, .ceil, .round: return true
        default: return false
        }
    }
}

@inline(__always) func stableSigmoid(_ v: Float) -> Float {
    v >= 0 ? 1 / (1 + expf(-v)) : { let e = expf(v); return e / (1 + e) }()
}

func applyUnary(_ op: UnaryOp, _ a: Tensor, into out: Tensor) {
    if a.dtype == .int64 && op.keepsDType {
        switch op {
        case .neg: unaryKernel(a, into: out) { (v: Int64) in 0 &- v }
        case .abs: unaryKernel(a, into: out) { (v: Int64) in v < 0 ? 0 &- v : v }
        case .sign: unaryKernel(a, into: out) { (v: Int64) -> Int64 in v > 0 ? 1 : (v < 0 ? -1 : 0) }
        case .relu: unaryKernel(a, into: out) { (v: Int64) in Swift.max(v, 0) }
        default: unaryKernel(a, into: out) { (v: Int64) in v }   // floor/ceil/round of integers
        }
        return
    }
    let x = a.to(.float32)
    if out.numel >= 2 * elementwiseGrain, splitElementwise(out, [x], { o, xs in applyUnaryFloat(op, xs[0], into: o) }) { return }
    applyUnaryFloat(op, x, into: out)
}

private func applyUnaryFloat(_ op: UnaryOp, _ x: Tensor, into out: Tensor) {
    switch op {
    case .neg: unaryKernel(x, into: out) { (v: Float) in -v }
    case .abs: unaryKernel(x, into: out) { (v: Float) in Swift.abs(v) }
    case .sign: unaryKernel(x, into: out) { (v: Float) -> Float in v > 0 ? 1 : (v < 0 ? -1 : (v.isNaN ? v : 0)) }
    case .relu: unaryKernel(x, into: out) { (v: Float) -> Float in v > 0 ? v : (v.isNaN ? v : 0) }
    case .exp: unaryKernel(x, into: out) { (v: Float) in expf(v) }
    case .log: unaryKernel(x, into: out) { (v: Float) in logf(v) }
    case .sqrt: unaryKernel(x, into: out) { (v: Float) in sqrtf(v) }
    case .rsqrt: unaryKernel(x, into: out) { (v: Float) in 1 / sqrtf(v) }
    case .sigmoid: unaryKernel(x, into: out) { (v: Float) in stableSigmoid(v) }
    case .tanh: unaryKernel(x, into: out) { (v: Float) in tanhf(v) }
    case .sin: unaryKernel(x, into: out) { (v: Float) in sinf(v) }
    case .cos: unaryKernel(x, into: out) { (v: Float) in cosf(v) }
    case .floor: unaryKernel(x, into: out) { (v: Float) in v.rounded(.down) }
    case .ceil: unaryKernel(x, into: out) { (v: Float) in v.rounded(.up) }
    case .round: unaryKernel(x, into: out) { (v: Float) in v.rounded(.toNearestOrEven) }
    case .log1p: unaryKernel(x, into: out) { (v: Float) in log1pf(v) }
    case .expm1: unaryKernel(x, into: out) { (v: Float) in expm1f(v) }
    case .erf: unaryKernel(x, into: out) { (v: Float) in erff(v) }
    }
}

extension Tensor {
    /// `self op other` with broadcasting and type promotion.
    func binaryRaw(_ op: BinaryOp, _ other: Tensor) throws -> Tensor {
        let dt = op.resultDType(dtype, other.dtype)
        if self.shape == other.shape {
            let out = try Tensor(shapeOf: self, dtype: dt)
            applyBinary(op, self, other, into: out)
            return out
        }
        let shape = try broadcastShapes(self.shape, other.shape)
        try Tensor.checkShape(shape)
        let out = shape == self.shape ? try Tensor(shapeOf: self, dtype: dt) : try Tensor(shape: shape, dtype: dt, zeroed: false)
        applyBinary(op, self, other, into: out)
        return out
    }


    /// In place: `self = self op other`; `other` must broadcast to self's shape
    /// and the result dtype must be self's.
    @discardableResult
    public func binary_(_ op: BinaryOp, _ other: Tensor) throws -> Tensor {
        let shape = try broadcastShapes(self.shape, other.shape)
        guard shape == self.shape else {
            throw TensorError("shape \(shapeString(other.shape)) does not broadcast to the in-place target's shape \(shapeString(self.shape))")
        }
        let rd = op.resultDType(dtype, other.dtype)
        guard rd == dtype else {
            throw TensorError("result of type \(rd.rawValue) cannot be stored in place in a tensor of dtype \(dtype.rawValue)")
        }
        try prepareInPlace()
        applyBinary(op, self, other, into: self)
        return self
    }

    func unaryRaw(_ op: UnaryOp) throws -> Tensor {
        let dt: DType = (dtype == .int64 && op.keepsDType) ? .int64 : .float32
        let out = try Tensor(shapeOf: self, dtype: dt)
        applyUnary(op, self, into: out)
        return out
    }

    @discardableResult
    public func unary_(_ op: UnaryOp) throws -> Tensor {
        guard dtype == .float32 || op.keepsDType else {
            throw TensorError("result of type float32 cannot be stored in place in a tensor of dtype int64")
        }
        try prepareInPlace()
        applyUnary(op, self, into: self)
        return self
    }

    /// Elements limited to [lo, hi]; either bound may be nil.
    func clampRaw(_ lo: Scalar?, _ hi: Scalar?) throws -> Tensor {
        var r = self
        if let lo { r = try r.binaryRaw(.maximum, Tensor.scalar(lo)) }
        if let hi { r = try r.binaryRaw(.minimum, Tensor.scalar(hi)) }
        return r === self ? try cloneRaw() : r
    }

    @discardableResult
    public func clamp_(_ lo: Scalar?, _ hi: Scalar?) throws -> Tensor {
        if let lo { try binary_(.maximum, Tensor.scalar(lo)) }
        if let hi { try binary_(.minimum, Tensor.scalar(hi)) }
        return self
    }

    /// Sets every element to `value`.
    @discardableResult
    public func fill_(_ value: Scalar) throws -> Tensor {
        try prepareInPlace()
        return fillRaw(value)
    }

    @discardableResult
    func fillRaw(_ value: Scalar) -> Tensor {
        switch dtype {
        case .float32:
            let v = Float(value.double), p = base(Float.self)
            if isContiguous { (p + offset).update(repeating: v, count: numel) } else { forEachOffset(shape, strides, offset) { p[$0] = v } }
        case .int64:
            let v = value.int64, p = base(Int64.self)
            if isContiguous { (p + offset).update(repeating: v, count: numel) } else { forEachOffset(shape, strides, offset) { p[$0] = v } }
        }
        return self
    }

    /// Copies `src` (broadcast to self's shape, converted to self's dtype) into self.
    @discardableResult
    public func copy_(_ src: Tensor) throws -> Tensor {
        try prepareInPlace()
        let shape = try broadcastShapes(self.shape, src.shape)
        guard shape == self.shape else {
            throw TensorError("source shape \(shapeString(src.shape)) does not broadcast to \(shapeString(self.shape))")
        }
        let expanded = Tensor(storage: src.storage, shape: self.shape, strides: src.broadcastStrides(to: self.shape),
                              offset: src.offset, dtype: src.dtype)
        // A source overlapping the destination is copied out first.
        copyElements(from: src.storage === storage ? try expanded.cloneRaw() : expanded)
        return self
    }
}

/// Elementwise selection: `mask != 0 ? a : b`, all three broadcast together.
func whereSelectRaw(_ mask: Tensor, _ a: Tensor, _ b: Tensor) throws -> Tensor {
    let shape = try broadcastShapes(try broadcastShapes(mask.shape, a.shape), b.shape)
    let dt = a.dtype.promoted(with: b.dtype)
    try Tensor.checkShape(shape, dtype: dt)
    let out = try Tensor(shape: shape, dtype: dt, zeroed: false)
    let m = try mask.to(.float32)
    let pm = m.base(Float.self)
    let ms = m.broadcastStrides(to: shape)
    switch dt {
    case .float32:
        let x = try a.to(.float32), y = try b.to(.float32)
        let px = x.base(Float.self), py = y.base(Float.self), po = out.base(Float.self)
        var k = 0
        forEachOffset3(shape, ms, m.offset, x.broadcastStrides(to: shape), x.offset, y.broadcastStrides(to: shape), y.offset) { i, j, l in
            po[k] = pm[i] != 0 ? px[j] : py[l]; k += 1
        }
    case .int64:
        let x = try a.to(.int64), y = try b.to(.int64)
        let px = x.base(Int64.self), py = y.base(Int64.self), po = out.base(Int64.self)
        var k = 0
        forEachOffset3(shape, ms, m.offset, x.broadcastStrides(to: shape), x.offset, y.broadcastStrides(to: shape), y.offset) { i, j, l in
            po[k] = pm[i] != 0 ? px[j] : py[l]; k += 1
        }
    }
    return out
}
