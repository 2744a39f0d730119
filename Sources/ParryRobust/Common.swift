import Foundation
import ParryCore
import ParryNN

/// A classifier as attacks see it: inputs N×… to logits N×C.
public typealias Classifier = (Tensor) throws -> Tensor

/// The threat model's norm.
public enum Norm: String, Sendable { case linf = "inf", l2 = "l2" }

/// The per-sample objective an attack maximizes.
public enum AttackLoss {
    case ce, cw, dlr
    /// (logits, 0-based labels) -> per-sample loss
    case custom((Tensor, Tensor) throws -> Tensor)
}

/// Settings shared by all attacks.
public struct ThreatModel {
    public var eps: Double
    public var norm: Norm = .linf
    public var bounds: (Double, Double) = (0, 1)
    public init(eps: Double, norm: Norm = .linf, bounds: (Double, Double) = (0, 1)) {
        self.eps = eps; self.norm = norm; self.bounds = bounds
    }
    func validate() throws {
        guard eps >= 0, eps.isFinite else { throw TensorError("eps must be a non-negative number, got \(eps)") }
        guard bounds.0 < bounds.1 else { throw TensorError("bounds must satisfy lo < hi, got {\(bounds.0), \(bounds.1)}") }
    }
}

enum AttackMath {
    /// Checks inputs and labels (0-based) against the model's output once.
    static func check(_ model: Classifier, _ x: Tensor, _ y: Tensor) throws -> Int {
        guard x.ndim >= 1, x.dtype == .float32 else { throw TensorError("x must be a float32 tensor with a batch dimension") }
        guard y.dtype == .int64, y.ndim == 1, y.shape[0] == x.shape[0] else {
            throw TensorError("expected \(x.shape[0]) int64 labels, got shape \(shapeString(y.shape))")
        }
        let logits = try GradMode.noGrad { try model(x.narrow(0, 0, min(1, x.shape[0]))) }
        guard logits.ndim == 2, logits.shape[0] == min(1, x.shape[0]) else {
            throw TensorError("the model must return N×C logits, got shape \(shapeString(logits.shape)) for a batch of \(min(1, x.shape[0]))")
        }
        let c = logits.shape[1]
        for v in y.int64s() where v < 0 || v >= c { throw TensorError("label \(v + 1) is outside 1..\(c)") }
        return c
    }

    /// Per-sample max over classes other than `y` (0-based), differentiable.
    static func maxOther(_ z: Tensor, _ y: Tensor) throws -> Tensor {
        let mask = try F.oneHot(y, classes: z.shape[1])
        return try z.maskedFill(mask, -1e30).max(dim: 1).values
    }

    static func picked(_ z: Tensor, _ y: Tensor) throws -> Tensor {
        try z.gather(1, y.unsqueeze(1)).squeeze(1)
    }

    /// The k largest logits per sample, descending (k ≤ C), differentiable.
    static func topValues(_ z: Tensor, _ k: Int) throws -> [Tensor] {
        var rest = z
        var out = [Tensor]()
        for _ in 0..<k {
            let (v, i) = try rest.max(dim: 1)
            out.append(v)
            rest = try rest.maskedFill(F.oneHot(i, classes: z.shape[1]), -1e30)
        }
        return out
    }

    /// Per-sample loss to maximize. Untargeted: y is the true label;
    /// targeted: y is the target (the loss rewards reaching it).
    static func loss(_ kind: AttackLoss, _ z: Tensor, _ y: Tensor, targeted: Bool, target: Tensor? = nil) throws -> Tensor {
        switch kind {
        case .ce:
            let l = try Loss.crossEntropy(z, y, reduction: .none)
            return targeted ? try -l : l
        case .cw:
            // margin: max_{j≠y} z_j − z_y (untargeted) or z_t − max_{j≠t} z_j (targeted)
            let m = try maxOther(z, y) - picked(z, y)
            return targeted ? try -m : m
        case .dlr:
            if targeted, let t = target {
                // −(z_y − z_t) / (z_π1 − (z_π3 + z_π4)/2 + 1e-12), Croce & Hein 2020; y = true label here
                let top = try topValues(z, min(4, z.shape[1]))
                let denom = try top[0] - (top[min(2, top.count - 1)] + top[min(3, top.count - 1)]) * 0.5 + 1e-12
                return try -(picked(z, y) - picked(z, t)) / denom
            }
            // −(z_y − max_{j≠y} z_j) / (z_π1 − z_π3 + 1e-12)
            let top = try topValues(z, min(3, z.shape[1]))
            let denom = try top[0] - top[top.count - 1] + 1e-12
            let m = try picked(z, y) - maxOther(z, y)
            let l = try -m / denom
            return targeted ? try -l : l
        case .custom(let f):
            let l = try f(z, y)
            guard l.shape == [z.shape[0]] else {
                throw TensorError("a custom attack loss must return one value per sample ({\(z.shape[0])}), got shape \(shapeString(l.shape))")
            }
            return targeted ? try -l : l
        }
    }

    /// Gradient of Σ loss w.r.t. the input, the per-sample loss and the logits.
    static func gradient(_ model: Classifier, _ x: Tensor, _ y: Tensor, _ kind: AttackLoss, targeted: Bool,
                         target: Tensor? = nil) throws -> (grad: Tensor, loss: Tensor, logits: Tensor) {
        let xv = try x.detach().requiresGrad_()
        let z = try model(xv)
        let l = try loss(kind, z, y, targeted: targeted, target: target)
        let g = try grad([l.sum()], [xv], allowUnused: true)[0] ?? Tensor.zeros(x.shape)
        return (g, l.detach(), z.detach())
    }

    /// Per-sample norms over all non-batch dims, shaped N×1×…×1 for broadcasting.
    static func sampleNorm(_ t: Tensor, _ norm: Norm) throws -> Tensor {
        let n = t.shape[0]
        let flat = try t.reshape([n, -1])
        let v = norm == .l2 ? try flat.norm(p: 2, dim: 1) : try flat.norm(p: .infinity, dim: 1)
        return try v.reshape([n] + [Int](repeating: 1, count: t.ndim - 1))
    }

    /// Projects adv onto the ε-ball around x (in `norm`) and into bounds.
    static func project(_ adv: Tensor, _ x: Tensor, _ tm: ThreatModel) throws -> Tensor {
        var delta = try adv - x
        if tm.norm == .linf {
            delta = try delta.clamp(-tm.eps, tm.eps)
        } else {
            let n = try sampleNorm(delta, .l2)
            delta = try delta * (tm.eps / (n + 1e-12)).clamp(max: 1)
        }
        return try (x + delta).clamp(tm.bounds.0, tm.bounds.1)
    }

    /// 0/1 float mask of samples whose prediction is wrong (untargeted) or equals the target.
    static func success(_ logits: Tensor, _ y: Tensor, targeted: Bool) throws -> Tensor {
        let pred = try logits.argmax(dim: 1)
        return try targeted ? pred.eq(y) : pred.ne(y)
    }

    /// Per-sample select: mask (N, float 0/1) ? a : b, for tensors with a batch dim.
    static func select(_ mask: Tensor, _ a: Tensor, _ b: Tensor) throws -> Tensor {
        let m = try mask.reshape([mask.numel] + [Int](repeating: 1, count: a.ndim - 1))
        return try whereSelect(m, a, b)
    }
}

/// Random restarts' bookkeeping (PGD, the momentum attacks): each sample keeps
/// its first successful example, else its highest-loss one.
struct RestartSelection {
    private(set) var best: Tensor? = nil
    private var loss: Tensor? = nil, success: Tensor? = nil

    /// Scores `adv` (one forward, no grad) and keeps it where it is better.
    mutating func offer(_ adv: Tensor, _ model: Classifier, _ y: Tensor, _ kind: AttackLoss, targeted: Bool) throws {
        let (l, s) = try GradMode.noGrad { () -> (Tensor, Tensor) in
            let z = try model(adv)
            return (try AttackMath.loss(kind, z, y, targeted: targeted), try AttackMath.success(z, y, targeted: targeted))
        }
        guard let best, let bestLoss = loss, let bestSuccess = success else {
            (self.best, loss, success) = (adv, l, s)
            return
        }
        try GradMode.noGrad {
            // replace where no success yet and (this one succeeds, or has a higher loss)
            let better = try (1 - bestSuccess) * s.maximum(l.gt(bestLoss))
            self.best = try AttackMath.select(better, adv, best)
            loss = try whereSelect(better, l, bestLoss)
            success = try bestSuccess.maximum(s)
        }
    }
}
