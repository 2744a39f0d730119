// Finite-difference check of gradients: the analytic vector-Jacobian product
// of f against a fixed random projection v, compared with central
// differences (f(x+ε)·v − f(x−ε)·v) / 2ε for every element of every input
// that requires grad. Values are float32, so the defaults suit O(1) inputs
// of a few dozen elements: ε = 1e-3, |analytic − numeric| ≤ atol + rtol·|numeric|.

public struct GradcheckResult: Sendable {
    public let passed: Bool
    public let maxError: Double
    /// The worst element: "input k, element i: analytic a, numeric n".
    public let worst: String
}

public func gradcheck(_ f: ([Tensor]) throws -> Tensor, inputs: [Tensor],
                      eps: Double = 1e-3, atol: Double = 1e-3, rtol: Double = 1e-2) throws -> GradcheckResult {
    for (k, x) in inputs.enumerated() where x.requiresGrad && x.dtype != .float32 {
        throw TensorError("input \(k + 1) must be float32")
    }
    let out0 = try f(inputs)
    guard out0.dtype == .float32 else { throw TensorError("the function must return a float32 tensor") }
    let v = try Tensor.randn(out0.shape, generator: Generator(seed: 1234))
    let checked = inputs.filter { $0.requiresGrad }
    guard !checked.isEmpty else { throw TensorError("no input requires grad") }
    let analytic: [Tensor?] = out0.requiresGrad
        ? try grad([(out0 * v).sum()], checked, allowUnused: true)
        : checked.map { _ in nil }

    func projected() throws -> Double {
        let out = try f(inputs)   // with grad mode on: f may itself take gradients
        guard out.shape == v.shape else { throw TensorError("the function's output shape changed between calls") }
        return zip(out.doubles(), v.doubles()).reduce(0) { $0 + $1.0 * $1.1 }
    }

    var worstError = 0.0, worst = "", passed = true
    for (k, x) in checked.enumerated() {
        let a = analytic[k].map { $0.doubles() } ?? [Double](repeating: 0, count: x.numel)
        var offsets = [Int]()
        forEachOffset(x.shape, x.strides, x.offset) { offsets.append($0) }
        let p = x.base(Float.self)
        for (i, off) in offsets.enumerated() {
            let original = p[off]
            p[off] = Float(Double(original) + eps)
            let plus = try projected()
            p[off] = Float(Double(original) - eps)
            let minus = try projected()
            p[off] = original
            let numeric = (plus - minus) / (2 * eps)
            let err = abs(a[i] - numeric)
            if err > atol + rtol * abs(numeric) { passed = false }
            if err > worstError || worst.isEmpty {
                worstError = max(worstError, err)
                worst = "input \(k + 1), element \(i + 1): analytic \(a[i]), numeric \(numeric)"
            }
        }
    }
    return GradcheckResult(passed: passed, maxError: worstError, worst: worst)
}
