import Foundation
import ParryCore

/// An optimizer over a list of parameters; `step()` applies one update from
/// their `.grad` (parameters without a gradient are skipped), in place and
/// without recording.
public class Optimizer {
    public let params: [Tensor]
    public var lr: Double
    /// Per-parameter state, e.g. "momentum_buffer", "exp_avg", "exp_avg_sq".
    public var state: [[String: Tensor]]
    public var steps: Int = 0

    init(_ params: [Tensor], lr: Double) throws {
        guard lr >= 0 else { throw TensorError("learning rate must be non-negative, got \(lr)") }
        for (i, p) in params.enumerated() where p.dtype != .float32 {
            throw TensorError("parameter \(i + 1) is \(p.dtype.rawValue); only float32 tensors can be optimized")
        }
        self.params = params
        self.lr = lr
        self.state = params.map { _ in [:] }
    }

    public func zeroGrad() { for p in params { p.grad = nil } }

    public func step() throws {
        try GradMode.noGrad {
            steps += 1
            for (i, p) in params.enumerated() { if let g = p.grad { try update(i, p, g) } }
        }
    }

    func update(_ i: Int, _ p: Tensor, _ g: Tensor) throws {}

    /// Hyper-parameters for state dicts.
    public var hyperparameters: [String: Double] { ["lr": lr] }
    public func setHyperparameter(_ name: String, _ value: Double) throws {
        if name == "lr" { lr = value } else { try setOther(name, value) }
    }
    func setOther(_ name: String, _ value: Double) throws {}
}

/// SGD with PyTorch's update rule:
/// d = g + wd·p; b = μ·b + (1−τ)·d (b = d at the first step); d = nesterov ? d + μ·b : b; p −= lr·d.
public final class SGD: Optimizer {
    public var momentum: Double, dampening: Double, weightDecay: Double, nesterov: Bool

    public init(_ params: [Tensor], lr: Double, momentum: Double = 0, dampening: Double = 0,
                weightDecay: Double = 0, nesterov: Bool = false) throws {
        guard momentum >= 0, weightDecay >= 0 else { throw TensorError("momentum and weight_decay must be non-negative") }
        guard !nesterov || (momentum > 0 && dampening == 0) else {
            throw TensorError("nesterov momentum requires a momentum and zero dampening")
        }
        self.momentum = momentum; self.dampening = dampening; self.weightDecay = weightDecay; self.nesterov = nesterov
        try super.init(params, lr: lr)
    }

    override func update(_ i: Int, _ p: Tensor, _ g: Tensor) throws {
        var d = g
        if weightDecay != 0 { d = try d + weightDecay * p }
        if momentum != 0 {
            let buf: Tensor
            if let b = state[i]["momentum_buffer"] {
                try b.mul_(momentum).add_((1 - dampening) * d)
                buf = b
            } else {
                buf = try d.clone()
                state[i]["momentum_buffer"] = buf
            }
            d = nesterov ? try d + momentum * buf : buf
        }
        try p.sub_(lr * d)
    }

    public override var hyperparameters: [String: Double] {
        ["lr": lr, "momentum": momentum, "dampening": dampening, "weight_decay": weightDecay, "nesterov": nesterov ? 1 : 0]
    }
    override func setOther(_ name: String, _ value: Double) throws {
        switch name {
        case "momentum": momentum = value
        case "dampening": dampening = value
        case "weight_decay": weightDecay = value
        case "nesterov": nesterov = value != 0
        default: throw TensorError("SGD has no hyper-parameter '\(name)'")
        }
    }
}

/// Adam / AdamW with PyTorch's update:
/// m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
/// p −= lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε).
/// Adam adds wd·p to g (L2); AdamW multiplies p by (1 − lr·wd) first (decoupled).
public final class Adam: Optimizer {
    public var beta1: Double, beta2: Double, eps: Double, weightDecay: Double
    public let decoupled: Bool

    public init(_ params: [Tensor], lr: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999), eps: Double = 1e-8,
                weightDecay: Double = 0, decoupled: Bool = false) throws {
        guard (0..<1).contains(betas.0), (0..<1).contains(betas.1) else {
            throw TensorError("betas must be in [0, 1), got (\(betas.0), \(betas.1))")
        }
        guard eps >= 0, weightDecay >= 0 else { throw TensorError("eps and weight_decay must be non-negative") }
        beta1 = betas.0; beta2 = betas.1; self.eps = eps; self.weightDecay = weightDecay; self.decoupled = decoupled
        try super.init(params, lr: lr)
    }

    override func update(_ i: Int, _ p: Tensor, _ g0: Tensor) throws {
        var g = g0
        if weightDecay != 0 {
            if decoupled { try p.mul_(1 - lr * weightDecay) }
            else { g = try g + weightDecay * p }
        }
        let t = (try state[i]["step"]?.double() ?? 0) + 1
        state[i]["step"] = Tensor(t)
        let m = try state[i]["exp_avg"] ?? Tensor.zeros(p.shape)
        let v = try state[i]["exp_avg_sq"] ?? Tensor.zeros(p.shape)
        state[i]["exp_avg"] = m; state[i]["exp_avg_sq"] = v
        try m.mul_(beta1).add_((1 - beta1) * g)                 // m = β1·m + (1−β1)·g
        try v.mul_(beta2).add_(g * g * (1 - beta2))             // v = β2·v + (1−β2)·g²
        let bc1 = 1 - Foundation.pow(beta1, t), bc2 = 1 - Foundation.pow(beta2, t)
        let denom = try v.sqrt() / bc2.squareRoot() + eps
        try p.sub_(m / denom * (lr / bc1))
    }

    public override var hyperparameters: [String: Double] {
        ["lr": lr, "beta1": beta1, "beta2": beta2, "eps": eps, "weight_decay": weightDecay]
    }
    override func setOther(_ name: String, _ value: Double) throws {
        switch name {
        case "beta1": beta1 = value
        case "beta2": beta2 = value
        case "eps": eps = value
        case "weight_decay": weightDecay = value
        default: throw TensorError("Adam has no hyper-parameter '\(name)'")
        }
    }
}

/// Learning-rate schedules, closed forms as PyTorch's (epoch = number of step() calls).
public final class LRScheduler {
    public enum Kind {
        case step(stepSize: Int, gamma: Double)
        case multistep(milestones: [Int], gamma: Double)
        case cosine(tMax: Int, etaMin: Double)
        case exponential(gamma: Double)
    }
    public let optimizer: Optimizer
    public let kind: Kind
    public let baseLR: Double
    public private(set) var epoch = 0

    public init(_ optimizer: Optimizer, _ kind: Kind) throws {
        switch kind {
        case .step(let s, _): guard s > 0 else { throw TensorError("step_size must be positive, got \(s)") }
        case .cosine(let t, _): guard t > 0 else { throw TensorError("T_max must be positive, got \(t)") }
        case .multistep(let ms, _): guard ms == ms.sorted() else { throw TensorError("milestones must be increasing") }
        case .exponential: break
        }
        self.optimizer = optimizer; self.kind = kind; self.baseLR = optimizer.lr
    }

    public func lr(at e: Int) -> Double {
        switch kind {
        case .step(let s, let g): return baseLR * Foundation.pow(g, Double(e / s))
        case .multistep(let ms, let g): return baseLR * Foundation.pow(g, Double(ms.filter { $0 <= e }.count))
        case .cosine(let t, let etaMin): return etaMin + (baseLR - etaMin) * (1 + cos(Double.pi * Double(e) / Double(t))) / 2
        case .exponential(let g): return baseLR * Foundation.pow(g, Double(e))
        }
    }

    public func step() {
        epoch += 1
        optimizer.lr = lr(at: epoch)
    }
}
