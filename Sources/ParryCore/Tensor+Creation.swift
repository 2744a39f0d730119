import Foundation

// Factories. Shapes are validated here (no negative sizes); random factories
// draw from `Generator.current` (normally `Generator.shared`) unless a generator is given.

extension Tensor {
    /// The most dimensions a tensor may have (as PyTorch).
    public static let maxDims = 64

    /// The most bytes one tensor may take: the machine's physical memory.
    /// Larger requests are errors rather than allocation traps.
    public static let allocationLimit: Int = {
        let pages = sysconf(Int32(_SC_PHYS_PAGES)), size = sysconf(Int32(_SC_PAGESIZE))
        return pages > 0 && size > 0 ? pages * size : 1 << 40
    }()

    /// Checks that `shape` is non-negative and that a `dtype` tensor of that
    /// shape can be allocated (no overflow, within `allocationLimit`).
    public static func checkShape(_ shape: [Int], dtype: DType = .float32) throws {
        guard shape.count <= maxDims else {
            throw TensorError("tensors have at most \(maxDims) dimensions, got \(shape.count)")
        }
        var n = 1, strideSpan = 1
        for s in shape {
            guard s >= 0 else { throw TensorError("sizes must be non-negative, got \(shapeString(shape))") }
            let (r, o) = n.multipliedReportingOverflow(by: s)
            // the strides multiply the non-zero sizes even when another size is 0
            // (a {0, 2^31, 2^33} shape overflowed them; found by fuzzing the IDX reader)
            let (q, o2) = strideSpan.multipliedReportingOverflow(by: Swift.max(s, 1))
            guard !o, !o2 else { throw TensorError("shape \(shapeString(shape)) has too many elements") }
            n = r; strideSpan = q
        }
        let (bytes, o) = n.multipliedReportingOverflow(by: dtype.byteSize)
        guard !o, bytes <= allocationLimit else {
            throw TensorError("cannot allocate a tensor of shape \(shapeString(shape)) and dtype \(dtype.rawValue): it needs more memory than the machine has")
        }
    }

    public static func zeros(_ shape: [Int], dtype: DType = .float32) throws -> Tensor {
        try checkShape(shape, dtype: dtype)
        return try Tensor(shape: shape, dtype: dtype, zeroed: true)
    }

    public static func full(_ shape: [Int], _ value: Scalar, dtype: DType? = nil) throws -> Tensor {
        try checkShape(shape, dtype: dtype ?? .float32)
        return try Tensor(shape: shape, dtype: dtype ?? .float32, zeroed: false).fillRaw(value)
    }

    public static func ones(_ shape: [Int], dtype: DType = .float32) throws -> Tensor {
        try full(shape, .int(1), dtype: dtype)
    }

    /// `a, a+step, ...` up to and including `b` (like a Lua numeric for).
    /// int64 when all of a, b, step are integers, else float32.
    public static func arange(_ a: Scalar, _ b: Scalar, step: Scalar = .int(1)) throws -> Tensor {
        let s = step.double
        guard s != 0, s.isFinite, a.double.isFinite, b.double.isFinite else {
            throw TensorError("step must be a non-zero finite number and bounds finite")
        }
        let steps = ((b.double - a.double) / s + 1e-9).rounded(.down)
        guard steps < Double(1 << 52) else { throw TensorError("range has too many elements") }
        let count = Swift.max(0, Int(steps) + 1)
        try checkShape([count], dtype: .int64)
        let allInt = a.dtype == .int64 && b.dtype == .int64 && step.dtype == .int64
        if allInt {
            let t = try Tensor(shape: [count], dtype: .int64, zeroed: false)
            let p = t.base(Int64.self), a0 = a.int64, st = step.int64
            for i in 0..<count { p[i] = a0 + Int64(i) * st }
            return t
        }
        let t = try Tensor(shape: [count], dtype: .float32, zeroed: false)
        let p = t.base(Float.self)
        for i in 0..<count { p[i] = Float(a.double + Double(i) * s) }
        return t
    }

    /// `n` evenly spaced float32 values from a to b inclusive.
    public static func linspace(_ a: Double, _ b: Double, _ n: Int) throws -> Tensor {
        try checkShape([n])
        let t = try Tensor(shape: [n], dtype: .float32, zeroed: false)
        let p = t.base(Float.self)
        let step = n > 1 ? (b - a) / Double(n - 1) : 0
        for i in 0..<n { p[i] = Float(i == n - 1 && n > 1 ? b : a + Double(i) * step) }
        return t
    }

    public static func eye(_ n: Int, _ m: Int? = nil, dtype: DType = .float32) throws -> Tensor {
        let cols = m ?? n
        try checkShape([n, cols], dtype: dtype)
        let t = try zeros([n, cols], dtype: dtype)
        for i in 0..<Swift.min(n, cols) {
            switch dtype {
            case .float32: t.base(Float.self)[i * cols + i] = 1
            case .int64: t.base(Int64.self)[i * cols + i] = 1
            }
        }
        return t
    }

    /// Uniform in [0, 1).
    public static func rand(_ shape: [Int], generator: Generator = .current) throws -> Tensor {
        try checkShape(shape)
        let t = try Tensor(shape: shape, dtype: .float32, zeroed: false)
        generator.fillUniform(t.base(Float.self), count: t.numel)
        return t
    }

    /// Standard normal.
    public static func randn(_ shape: [Int], generator: Generator = .current) throws -> Tensor {
        try checkShape(shape)
        let t = try Tensor(shape: shape, dtype: .float32, zeroed: false)
        generator.fillNormal(t.base(Float.self), count: t.numel)
        return t
    }

    /// int64 uniform in lo...hi (inclusive).
    public static func randint(_ lo: Int64, _ hi: Int64, _ shape: [Int], generator: Generator = .current) throws -> Tensor {
        try checkShape(shape, dtype: .int64)
        guard lo <= hi else { throw TensorError("empty range \(lo)..\(hi)") }
        let t = try Tensor(shape: shape, dtype: .int64, zeroed: false)
        generator.fillIntegers(t.base(Int64.self), count: t.numel, lo: lo, hi: hi)
        return t
    }

    /// A random permutation of 0..<n as int64 (the binding adds 1 for Lua).
    public static func randperm(_ n: Int, generator: Generator = .current) throws -> Tensor {
        try checkShape([n], dtype: .int64)
        return try Tensor(generator.permutation(n).map { Int64($0) }, shape: [n])
    }

    /// Fills self with values uniform in [lo, hi).
    @discardableResult
    public func uniform_(_ lo: Double = 0, _ hi: Double = 1, generator: Generator = .current) throws -> Tensor {
        try fillRandom { generator.fillUniform($0, count: $1, lo: Float(lo), hi: Float(hi)) }
    }

    /// Fills self with values from N(mean, std²).
    @discardableResult
    public func normal_(_ mean: Double = 0, _ std: Double = 1, generator: Generator = .current) throws -> Tensor {
        try fillRandom { generator.fillNormal($0, count: $1, mean: Float(mean), std: Float(std)) }
    }

    /// Draws numel values in row-major order with `fill` and writes them into
    /// self (any strides), so a view gets the same numbers a fresh tensor would.
    private func fillRandom(_ fill: (UnsafeMutablePointer<Float>, Int) -> Void) throws -> Tensor {
        guard dtype == .float32 else { throw TensorError("expected a float32 tensor, got \(dtype.rawValue)") }
        let t = try Tensor(shape: shape, dtype: .float32, zeroed: false)
        fill(t.base(Float.self), t.numel)
        return try copy_(t)
    }
}
