import Foundation

// The algorithm-facing layer: operators and named methods over the
// differentiable ops of Tensor+Grad.swift, so a line of algorithm code can be
// held next to the paper's equation:
//
//     let loss = try natural + beta * robust                  // TRADES Eq. 5
//     adv = try AttackMath.project(adv + alpha * g.sign(), x, tm)
//
// Nothing here computes: every operator is one call of `binary`/`unary`/…,
// so broadcasting, type promotion (float32 wins; `/` always gives float32),
// kernels and gradients are exactly those of the named ops. Integer numbers
// become int64 scalars and `Double`s float32 scalars, as `.int`/`.float` do.
//
// Operators throw (shape mismatches), so one `try` covers an expression.
// A number on the left of a commutative operator (`beta * t`, `1 + t`) is
// computed as `t op number`: the same kernel call as the tensor-first form,
// bit for bit. `a += b` and friends rebind `a` to the new tensor `a + b`;
// they never write into storage (views and tensors saved for backward stay
// intact). In-place updates are spelled `add_`, `mul_`, … as in PyTorch.

extension Tensor {
    // MARK: arithmetic operators

    public static func + (a: Tensor, b: Tensor) throws -> Tensor { try a.binary(.add, b) }
    public static func + (a: Tensor, b: Double) throws -> Tensor { try a.binary(.add, .float(b)) }
    public static func + (a: Double, b: Tensor) throws -> Tensor { try b.binary(.add, .float(a)) }
    public static func + (a: Tensor, b: Int) throws -> Tensor { try a.binary(.add, .int(Int64(b))) }
    public static func + (a: Int, b: Tensor) throws -> Tensor { try b.binary(.add, .int(Int64(a))) }

    public static func - (a: Tensor, b: Tensor) throws -> Tensor { try a.binary(.sub, b) }
    public static func - (a: Tensor, b: Double) throws -> Tensor { try a.binary(.sub, .float(b)) }
    public static func - (a: Double, b: Tensor) throws -> Tensor { try Tensor.scalar(.float(a)).binary(.sub, b) }
    public static func - (a: Tensor, b: Int) throws -> Tensor { try a.binary(.sub, .int(Int64(b))) }
    public static func - (a: Int, b: Tensor) throws -> Tensor { try Tensor.scalar(.int(Int64(a))).binary(.sub, b) }

    public static func * (a: Tensor, b: Tensor) throws -> Tensor { try a.binary(.mul, b) }
    public static func * (a: Tensor, b: Double) throws -> Tensor { try a.binary(.mul, .float(b)) }
    public static func * (a: Double, b: Tensor) throws -> Tensor { try b.binary(.mul, .float(a)) }
    public static func * (a: Tensor, b: Int) throws -> Tensor { try a.binary(.mul, .int(Int64(b))) }
    public static func * (a: Int, b: Tensor) throws -> Tensor { try b.binary(.mul, .int(Int64(a))) }

    public static func / (a: Tensor, b: Tensor) throws -> Tensor { try a.binary(.div, b) }
    public static func / (a: Tensor, b: Double) throws -> Tensor { try a.binary(.div, .float(b)) }
    public static func / (a: Double, b: Tensor) throws -> Tensor { try Tensor.scalar(.float(a)).binary(.div, b) }
    public static func / (a: Tensor, b: Int) throws -> Tensor { try a.binary(.div, .int(Int64(b))) }
    public static func / (a: Int, b: Tensor) throws -> Tensor { try Tensor.scalar(.int(Int64(a))).binary(.div, b) }

    public static prefix func - (a: Tensor) throws -> Tensor { try a.unary(.neg) }

    // Compound forms rebind the variable (see the note at the top).
    public static func += (a: inout Tensor, b: Tensor) throws { a = try a + b }
    public static func += (a: inout Tensor, b: Double) throws { a = try a + b }
    public static func -= (a: inout Tensor, b: Tensor) throws { a = try a - b }
    public static func -= (a: inout Tensor, b: Double) throws { a = try a - b }
    public static func *= (a: inout Tensor, b: Tensor) throws { a = try a * b }
    public static func *= (a: inout Tensor, b: Double) throws { a = try a * b }
    public static func /= (a: inout Tensor, b: Tensor) throws { a = try a / b }
    public static func /= (a: inout Tensor, b: Double) throws { a = try a / b }

    // MARK: powers, extrema, comparisons

    public func pow(_ e: Tensor) throws -> Tensor { try binary(.pow, e) }
    public func pow(_ e: Double) throws -> Tensor { try binary(.pow, .float(e)) }
    public func pow(_ e: Int) throws -> Tensor { try binary(.pow, .int(Int64(e))) }

    /// Elementwise max / min (NaN propagates); ties split the gradient evenly.
    public func maximum(_ o: Tensor) throws -> Tensor { try binary(.maximum, o) }
    public func maximum(_ v: Double) throws -> Tensor { try binary(.maximum, .float(v)) }
    public func minimum(_ o: Tensor) throws -> Tensor { try binary(.minimum, o) }
    public func minimum(_ v: Double) throws -> Tensor { try binary(.minimum, .float(v)) }

    /// Comparisons give float32 0/1 masks (as parry's Lua API) and no gradient.
    public func eq(_ o: Tensor) throws -> Tensor { try binary(.eq, o) }
    public func eq(_ v: Double) throws -> Tensor { try binary(.eq, .float(v)) }
    public func eq(_ v: Int) throws -> Tensor { try binary(.eq, .int(Int64(v))) }
    public func ne(_ o: Tensor) throws -> Tensor { try binary(.ne, o) }
    public func ne(_ v: Double) throws -> Tensor { try binary(.ne, .float(v)) }
    public func ne(_ v: Int) throws -> Tensor { try binary(.ne, .int(Int64(v))) }
    public func lt(_ o: Tensor) throws -> Tensor { try binary(.lt, o) }
    public func lt(_ v: Double) throws -> Tensor { try binary(.lt, .float(v)) }
    public func lt(_ v: Int) throws -> Tensor { try binary(.lt, .int(Int64(v))) }
    public func le(_ o: Tensor) throws -> Tensor { try binary(.le, o) }
    public func le(_ v: Double) throws -> Tensor { try binary(.le, .float(v)) }
    public func le(_ v: Int) throws -> Tensor { try binary(.le, .int(Int64(v))) }
    public func gt(_ o: Tensor) throws -> Tensor { try binary(.gt, o) }
    public func gt(_ v: Double) throws -> Tensor { try binary(.gt, .float(v)) }
    public func gt(_ v: Int) throws -> Tensor { try binary(.gt, .int(Int64(v))) }
    public func ge(_ o: Tensor) throws -> Tensor { try binary(.ge, o) }
    public func ge(_ v: Double) throws -> Tensor { try binary(.ge, .float(v)) }
    public func ge(_ v: Int) throws -> Tensor { try binary(.ge, .int(Int64(v))) }

    /// 1 − mask for a 0/1 mask: "not".
    public func logicalNot() throws -> Tensor { try 1 - self }

    // MARK: unary math (neg, exp and log are in Tensor+Grad.swift)

    public func abs() throws -> Tensor { try unary(.abs) }
    /// −1, 0 or 1 (NaN stays NaN); zero gradient.
    public func sign() throws -> Tensor { try unary(.sign) }
    public func relu() throws -> Tensor { try unary(.relu) }
    public func sqrt() throws -> Tensor { try unary(.sqrt) }
    public func rsqrt() throws -> Tensor { try unary(.rsqrt) }
    public func sigmoid() throws -> Tensor { try unary(.sigmoid) }
    public func tanh() throws -> Tensor { try unary(.tanh) }
    public func sin() throws -> Tensor { try unary(.sin) }
    public func cos() throws -> Tensor { try unary(.cos) }
    public func log1p() throws -> Tensor { try unary(.log1p) }
    public func expm1() throws -> Tensor { try unary(.expm1) }
    public func erf() throws -> Tensor { try unary(.erf) }
    public func floor() throws -> Tensor { try unary(.floor) }
    public func ceil() throws -> Tensor { try unary(.ceil) }
    public func round() throws -> Tensor { try unary(.round) }
    public func square() throws -> Tensor { try binary(.mul, self) }

    /// Elements limited to [lo, hi] (as `clamp(.float(lo), .float(hi))`).
    public func clamp(_ lo: Double, _ hi: Double) throws -> Tensor { try clamp(.float(lo), .float(hi)) }
    /// Elements limited from below: max(x, lo).
    public func clamp(min lo: Double) throws -> Tensor { try clamp(.float(lo), nil) }
    /// Elements limited from above: min(x, hi).
    public func clamp(max hi: Double) throws -> Tensor { try clamp(nil, .float(hi)) }

    // MARK: reductions

    /// Largest / smallest element (0-d).
    public func max() throws -> Tensor { try extremum(largest: true).0 }
    public func min() throws -> Tensor { try extremum(largest: false).0 }
    /// Largest / smallest along `dim`: values and 0-based int64 indices.
    public func max(dim: Int, keepdim: Bool = false) throws -> (values: Tensor, indices: Tensor) {
        let (v, i) = try extremum(largest: true, dim: dim, keepdim: keepdim)
        return (v, i)
    }
    public func min(dim: Int, keepdim: Bool = false) throws -> (values: Tensor, indices: Tensor) {
        let (v, i) = try extremum(largest: false, dim: dim, keepdim: keepdim)
        return (v, i)
    }
    /// 0-based int64 index of the largest / smallest element along `dim`.
    public func argmax(dim: Int, keepdim: Bool = false) throws -> Tensor { try extremum(largest: true, dim: dim, keepdim: keepdim).1 }
    public func argmin(dim: Int, keepdim: Bool = false) throws -> Tensor { try extremum(largest: false, dim: dim, keepdim: keepdim).1 }

    /// The value of a one-element tensor as a Double.
    public func double() throws -> Double { try item().double }

    // MARK: selection

    /// `value` where mask ≠ 0, self elsewhere (PyTorch's masked_fill).
    public func maskedFill(_ mask: Tensor, _ value: Double) throws -> Tensor {
        try whereSelect(mask, Tensor.scalar(.float(value)), self)
    }

    // MARK: in place (no graph; the target must not be needed for backward)

    @discardableResult public func add_(_ o: Tensor) throws -> Tensor { try binary_(.add, o) }
    @discardableResult public func add_(_ v: Double) throws -> Tensor { try binary_(.add, Tensor.scalar(.float(v))) }
    @discardableResult public func add_(_ v: Int) throws -> Tensor { try binary_(.add, Tensor.scalar(.int(Int64(v)))) }
    @discardableResult public func sub_(_ o: Tensor) throws -> Tensor { try binary_(.sub, o) }
    @discardableResult public func sub_(_ v: Double) throws -> Tensor { try binary_(.sub, Tensor.scalar(.float(v))) }
    @discardableResult public func sub_(_ v: Int) throws -> Tensor { try binary_(.sub, Tensor.scalar(.int(Int64(v)))) }
    @discardableResult public func mul_(_ o: Tensor) throws -> Tensor { try binary_(.mul, o) }
    @discardableResult public func mul_(_ v: Double) throws -> Tensor { try binary_(.mul, Tensor.scalar(.float(v))) }
    @discardableResult public func mul_(_ v: Int) throws -> Tensor { try binary_(.mul, Tensor.scalar(.int(Int64(v)))) }
    @discardableResult public func div_(_ o: Tensor) throws -> Tensor { try binary_(.div, o) }
    @discardableResult public func div_(_ v: Double) throws -> Tensor { try binary_(.div, Tensor.scalar(.float(v))) }
    @discardableResult public func div_(_ v: Int) throws -> Tensor { try binary_(.div, Tensor.scalar(.int(Int64(v)))) }
    @discardableResult public func clamp_(_ lo: Double, _ hi: Double) throws -> Tensor { try clamp_(.float(lo), .float(hi)) }
    @discardableResult public func fill_(_ v: Double) throws -> Tensor { try fill_(.float(v)) }

    // MARK: creation with plain numbers

    /// A tensor of `shape` filled with `value` (float32).
    public static func full(_ shape: [Int], _ value: Double) throws -> Tensor { try full(shape, .float(value)) }
    /// A 0-d float32 tensor.
    public convenience init(_ value: Double) {
        self.init(unchecked: [], dtype: .float32)
        base(Float.self)[0] = Float(value)
    }
}

/// `a` where mask ≠ 0, `b` elsewhere, with numbers on either side.
public func whereSelect(_ mask: Tensor, _ a: Double, _ b: Tensor) throws -> Tensor {
    try whereSelect(mask, Tensor.scalar(.float(a)), b)
}
public func whereSelect(_ mask: Tensor, _ a: Tensor, _ b: Double) throws -> Tensor {
    try whereSelect(mask, a, Tensor.scalar(.float(b)))
}
