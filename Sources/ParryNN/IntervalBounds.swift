import Foundation
import ParryCore

/// Interval bound propagation (Gowal et al. 2018; the "IBP" of auto_LiRPA):
/// elementwise bounds lo ≤ x ≤ hi on a module's input give bounds on its
/// output. Affine layers map the centre and the radius — c' = W·c + b,
/// r' = |W|·r — which is exact for one affine layer; monotone activations
/// map the two ends. Differentiable, so a loss can penalize the bound's width
/// (robust SARSA's smoothness regularizer). Supported: Linear, Conv2d,
/// BatchNorm (eval mode), ReLU, LeakyReLU, Tanh, Sigmoid, Flatten, Identity,
/// Dropout (eval mode) and Sequential chains of them.
public enum IntervalBounds {
    public static func propagate(_ m: Module, lo: Tensor, hi: Tensor) throws -> (lo: Tensor, hi: Tensor) {
        guard lo.shape == hi.shape else { throw TensorError("lo and hi have different shapes \(lo.shape) and \(hi.shape)") }
        if lo.numel > 0, try (hi - lo).min().double() < 0 { throw TensorError("lo must not exceed hi") }
        return try bounds(m, lo, hi)
    }

    static func bounds(_ m: Module, _ lo: Tensor, _ hi: Tensor) throws -> (lo: Tensor, hi: Tensor) {
        switch m {
        case let s as Sequential:
            var b = (lo: lo, hi: hi)
            for c in s.children { b = try bounds(c.module, b.lo, b.hi) }
            return b
        case let l as Linear:
            guard let w = l.parameter("weight") else { throw TensorError("Linear has no weight") }
            return try affine(lo, hi) { c, r in (try F.linear(c, w, l.parameter("bias")), try F.linear(r, w.abs(), nil)) }
        case let c as Conv2d:
            guard let w = c.parameter("weight") else { throw TensorError("Conv2d has no weight") }
            return try affine(lo, hi) { x, r in
                (try F.conv2d(x, w, c.parameter("bias"), stride: c.stride, padding: c.padding),
                 try F.conv2d(r, w.abs(), nil, stride: c.stride, padding: c.padding))
            }
        case let bn as BatchNorm:
            guard !bn.training else { throw TensorError("interval bounds need BatchNorm in eval mode (call model:eval())") }
            guard let mean = bn.buffer("running_mean"), let variance = bn.buffer("running_var") else { throw TensorError("BatchNorm has no running statistics") }
            let shape = bn.spatial ? [1, bn.features, 1, 1] : [1, bn.features]
            var scale = try (variance + bn.eps).rsqrt()
            if let g = bn.parameter("weight") { scale = try scale * g }
            var shift = try -mean * scale
            if let b = bn.parameter("bias") { shift = try shift + b }
            let s = try scale.reshape(shape), t = try shift.reshape(shape)
            return try affine(lo, hi) { c, r in (try c * s + t, try r * s.abs()) }
        case let a as Activation:
            switch a.kind {
            case .ReLU, .LeakyReLU, .Tanh, .Sigmoid: return (try a(lo), try a(hi))   // monotone: the ends map to the ends
            case .GELU: throw TensorError("interval bounds through GELU are not supported (it is not monotone)")
            }
        case is Flatten, is Identity:
            return (try m(lo), try m(hi))
        case let d as Dropout:
            guard !d.training else { throw TensorError("interval bounds need Dropout in eval mode (call model:eval())") }
            return (lo, hi)
        default:
            throw TensorError("interval bounds through \(m.typeName) are not supported (Linear, Conv2d, BatchNorm, ReLU, LeakyReLU, Tanh, Sigmoid, Flatten, Identity, Dropout, Sequential)")
        }
    }

    private static func affine(_ lo: Tensor, _ hi: Tensor, _ f: (Tensor, Tensor) throws -> (Tensor, Tensor)) throws -> (lo: Tensor, hi: Tensor) {
        let c = try (lo + hi) * 0.5, r = try (hi - lo) * 0.5
        let (c2, r2) = try f(c, r)
        return (try c2 - r2, try c2 + r2)
    }
}
