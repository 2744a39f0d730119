import ParryCore

/// Operations on state dicts (name → tensor), as weight-space methods use them.
public enum StateDict {
    /// θ(α) = (1−α)·a + α·b for every float tensor (so α = 0 is `a` and α = 1
    /// is `b`, exactly); integer tensors (`num_batches_tracked`) are taken
    /// from `a`. Both must have the same names and shapes. RiFT interpolates
    /// θ_AT (a) and θ_FT (b) this way.
    public static func interpolate(_ a: [(name: String, tensor: Tensor)], _ b: [(name: String, tensor: Tensor)],
                                   alpha: Double) throws -> [(name: String, tensor: Tensor)] {
        guard alpha >= 0, alpha <= 1 else { throw TensorError("alpha must be in [0, 1], got \(alpha)") }
        var other = [String: Tensor]()
        for (n, t) in b { other[n] = t }
        let names = Set(a.map(\.name))
        let missing = names.subtracting(other.keys).sorted(), extra = Set(other.keys).subtracting(names).sorted()
        guard missing.isEmpty, extra.isEmpty else {
            throw TensorError("the state dicts have different keys: only in the first [\(missing.joined(separator: ", "))], only in the second [\(extra.joined(separator: ", "))]")
        }
        return try GradMode.noGrad {
            try a.map { (name, ta) in
                guard let tb = other[name] else { throw TensorError("'\(name)' is missing from the second state dict") }
                guard ta.shape == tb.shape else {
                    throw TensorError("'\(name)' has shape \(shapeString(ta.shape)) in the first state dict and \(shapeString(tb.shape)) in the second")
                }
                guard ta.dtype == .float32, tb.dtype == .float32 else { return (name, try ta.detach().clone()) }
                return (name, try (1 - alpha) * ta.detach() + alpha * tb.detach())
            }
        }
    }

    /// Copies of every tensor (detached), e.g. to keep θ_AT while a model trains.
    public static func copy(_ sd: [(name: String, tensor: Tensor)]) throws -> [(name: String, tensor: Tensor)] {
        try sd.map { ($0.name, try $0.tensor.detach().clone()) }
    }
}
