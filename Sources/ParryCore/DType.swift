/// Element types a tensor can hold.
public enum DType: String, Sendable, CaseIterable {
    case float32
    case int64

    public var byteSize: Int {
        switch self {
        case .float32: return 4
        case .int64: return 8
        }
    }

    /// The dtype of a result combining `self` with `other` (PyTorch promotion:
    /// floating wins over integral).
    public func promoted(with other: DType) -> DType {
        (self == .float32 || other == .float32) ? .float32 : .int64
    }
}

/// A scalar from outside the tensor world (a Lua number). Integers keep their
/// integral category for type promotion, as Python ints do in PyTorch.
public enum Scalar: Sendable, Equatable {
    case int(Int64)
    case float(Double)

    public var dtype: DType {
        if case .int = self { return .int64 }
        return .float32
    }
    public var double: Double {
        switch self {
        case .int(let v): return Double(v)
        case .float(let v): return v
        }
    }
    public var int64: Int64 {
        switch self {
        case .int(let v): return v
        case .float(let v): return v.isFinite ? Int64(clamping: Int64(exactly: v.rounded(.towardZero)) ?? 0) : 0
        }
    }
}

/// An error from a tensor operation: bad shapes, dtypes, indices or values.
/// The message says what was expected; callers add their own name.
public struct TensorError: Error, CustomStringConvertible, Sendable {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

/// Formats a shape the way messages and Lua show it: `{2,3}`.
public func shapeString(_ shape: [Int]) -> String {
    "{" + shape.map(String.init).joined(separator: ",") + "}"
}
