/// An n-dimensional array of float32 or int64 elements: a view (shape,
/// strides and offset, all in elements) over a shared `Storage`.
///
/// Tensors are reference types because identity matters (views share
/// storage; autograd attaches gradients to a particular tensor). The shape of
/// a tensor never changes; in-place operations change its elements only.
///
/// ```swift
/// let x = try Tensor.arange(1, 6).reshape([2, 3])
/// let y = try x.sum(dim: 1)          // {6, 15}
/// ```
public final class Tensor: @unchecked Sendable {
    public let storage: Storage
    public let shape: [Int]
    public let strides: [Int]
    public let offset: Int
    public let dtype: DType
    /// The number of elements (the product of the shape).
    public let numel: Int
    /// True when elements are laid out row-major without gaps from `offset`.
    /// Stored (shape and strides never change): ops ask several times per
    /// call, and the loop was ~145 of a 16-float add's ~4,700 instructions.
    public let isContiguous: Bool

    // Autograd (see Autograd.swift). A leaf has no gradFn; `grad` accumulates
    // on leaves that require grad. Every op reads requiresGrad and gradFn of
    // its inputs: without dynamic exclusivity checks (swift_beginAccess, ~150
    // instructions per read, 5% of a 16-float add). No code path holds an
    // inout access to these across a call that could touch them again.
    @exclusivity(unchecked) public var requiresGrad = false
    @exclusivity(unchecked) public var grad: Tensor?
    @exclusivity(unchecked) public var gradFn: GradNode?
    public var isLeaf: Bool { gradFn == nil }
    /// Gradient hooks (`registerHook`), in registration order; nil when none.
    var gradHooks: [GradHook]?

    /// A view over existing storage. The caller guarantees the view lies in bounds.
    public convenience init(storage: Storage, shape: [Int], strides: [Int], offset: Int, dtype: DType) {
        self.init(storage: storage, shape: shape, strides: strides, offset: offset, dtype: dtype,
                  numel: shape.reduce(1, &*),   // wrapping: checkShape refuses shapes whose product overflows
                  isContiguous: Tensor.rowMajor(shape, strides))
    }

    /// The same with numel and contiguity the caller knows (shapeOf:).
    private init(storage: Storage, shape: [Int], strides: [Int], offset: Int, dtype: DType, numel: Int, isContiguous: Bool) {
        self.storage = storage
        self.shape = shape
        self.strides = strides
        self.offset = offset
        self.dtype = dtype
        self.numel = numel
        self.isContiguous = isContiguous
    }

    /// A new contiguous tensor; zero-filled when `zeroed`, otherwise uninitialized.
    public convenience init(shape: [Int], dtype: DType = .float32, zeroed: Bool = true) throws {
        let n = shape.reduce(1, *)
        try MemoryBudget.reserve(n * dtype.byteSize, shape: shape, dtype: dtype)
        self.init(storage: Storage.make(byteCount: n * dtype.byteSize, zeroed: zeroed),
                  shape: shape, strides: Tensor.contiguousStrides(shape), offset: 0, dtype: dtype)
    }

    /// A new uninitialized tensor outside PARRY_MAX_MEMORY's check: 0-d
    /// scalars, reduction outputs (smaller than their input) and dtype
    /// conversions inside kernels that cannot fail.
    convenience init(unchecked shape: [Int], dtype: DType) {
        self.init(storage: Storage.make(byteCount: shape.reduce(1, *) * dtype.byteSize, zeroed: false),
                  shape: shape, strides: Tensor.contiguousStrides(shape), offset: 0, dtype: dtype)
    }

    /// A new uninitialized contiguous tensor with `t`'s shape, sharing t's
    /// shape (and, when t is contiguous, strides) arrays: two fewer heap
    /// allocations per elementwise op, which matters for tiny tensors.
    public convenience init(shapeOf t: Tensor, dtype: DType) throws {
        try MemoryBudget.reserve(t.numel * dtype.byteSize, shape: t.shape, dtype: dtype)
        self.init(storage: Storage.make(byteCount: t.numel * dtype.byteSize, zeroed: false), shape: t.shape,
                  strides: t.isContiguous ? t.strides : Tensor.contiguousStrides(t.shape), offset: 0, dtype: dtype,
                  numel: t.numel, isContiguous: true)
    }

    /// A contiguous tensor holding `values` (row-major) in `shape`; the dtype
    /// follows the element type (Float → float32, Int64 → int64).
    public convenience init<T: TensorElement>(_ values: [T], shape: [Int]) throws {
        guard values.count == shape.reduce(1, *) else {
            throw TensorError("\(values.count) values do not fill shape \(shapeString(shape))")
        }
        try self.init(shape: shape, dtype: T.dtype, zeroed: false)
        values.withUnsafeBufferPointer { src in
            if let b = src.baseAddress { base(T.self).update(from: b, count: src.count) }
        }
    }

    public static func contiguousStrides(_ shape: [Int]) -> [Int] {
        var strides = [Int](repeating: 1, count: shape.count)
        var acc = 1
        for d in stride(from: shape.count - 1, through: 0, by: -1) {
            strides[d] = acc
            // wrapping: only a tensor with no elements can have sizes whose product
            // overflows (checkShape refuses the others), and its strides are never used
            acc = acc &* Swift.max(shape[d], 1)
        }
        return strides
    }

    public var ndim: Int { shape.count }

    /// Whether `strides` lay out `shape` row-major without gaps (size-1
    /// dimensions may have any stride).
    static func rowMajor(_ shape: [Int], _ strides: [Int]) -> Bool {
        var expected = 1
        for d in stride(from: shape.count - 1, through: 0, by: -1) where shape[d] != 1 {
            if strides[d] != expected { return false }
            expected = expected &* shape[d]   // wrapping: see contiguousStrides
        }
        return true
    }

    /// The storage as typed elements (index with `offset` and strides).
    @inline(__always)
    public func base<T: TensorElement>(_: T.Type) -> UnsafeMutablePointer<T> {
        storage.raw.assumingMemoryBound(to: T.self)
    }

    /// Pointer to the first element; valid for `numel` elements when contiguous.
    @inline(__always)
    public func pointer<T: TensorElement>(_: T.Type) -> UnsafeMutablePointer<T> {
        storage.raw.assumingMemoryBound(to: T.self) + offset
    }

    /// The element at a 0-based multi-index, as a Double (no bounds check beyond the caller's).
    public func element(at index: [Int]) -> Double {
        var off = offset
        for (i, s) in zip(index, strides) { off += i * s }
        switch dtype {
        case .float32: return Double(base(Float.self)[off])
        case .int64: return Double(base(Int64.self)[off])
        }
    }

    /// The single value of a one-element tensor.
    public func item() throws -> Scalar {
        guard numel == 1 else {
            throw TensorError("expected a tensor with one element, got shape \(shapeString(shape))")
        }
        let off = offset
        switch dtype {
        case .float32: return .float(Double(base(Float.self)[off]))
        case .int64: return .int(base(Int64.self)[off])
        }
    }

    /// All elements converted to `T`, in row-major order.
    public func elements<T: TensorElement>(_: T.Type) -> [T] {
        let t = to(T.dtype)
        var out = [T]()
        out.reserveCapacity(numel)
        let p = t.base(T.self)
        forEachOffset(t.shape, t.strides, t.offset) { out.append(p[$0]) }
        return out
    }

    public func floats() -> [Float] { elements(Float.self) }
    public func int64s() -> [Int64] { elements(Int64.self) }

    /// All elements as Doubles (exact for both dtypes up to 2^53).
    public func doubles() -> [Double] {
        dtype == .float32 ? floats().map(Double.init) : int64s().map(Double.init)
    }
}

/// Element types with a kernel implementation.
public protocol TensorElement: Numeric, Comparable, Sendable {
    static var dtype: DType { get }
    init(fromDouble v: Double)
    var asDouble: Double { get }
    var isNaNElement: Bool { get }
    /// acc + a·b (wrapping for integers, as PyTorch's integer kernels do).
    static func multiplyAdd(_ acc: Self, _ a: Self, _ b: Self) -> Self
}

extension Float: TensorElement {
    public static var dtype: DType { .float32 }
    @inline(__always) public init(fromDouble v: Double) { self = Float(v) }
    @inline(__always) public var asDouble: Double { Double(self) }
    @inline(__always) public var isNaNElement: Bool { isNaN }
    @inline(__always) public static func multiplyAdd(_ acc: Float, _ a: Float, _ b: Float) -> Float { acc + a * b }
}

extension Int64: TensorElement {
    public static var dtype: DType { .int64 }
    @inline(__always) public init(fromDouble v: Double) {
        self = v.isNaN ? 0 : Int64(Swift.max(Swift.min(v.rounded(.towardZero), 9.2e18), -9.2e18))
    }
    @inline(__always) public var asDouble: Double { Double(self) }
    @inline(__always) public var isNaNElement: Bool { false }
    @inline(__always) public static func multiplyAdd(_ acc: Int64, _ a: Int64, _ b: Int64) -> Int64 { acc &+ a &* b }
}
