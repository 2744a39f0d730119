import Foundation
import ParryCore

/// Parameters that share hyper-parameters (PyTorch's `param_groups`): any
/// option not given here takes the optimizer's default.
///
/// ```swift
/// let opt = try SGD(groups: [ParamGroup(head.allParameters(), ["lr": 0.1]),
///                            ParamGroup(body.allParameters())], lr: 0.01, momentum: 0.9)
/// ```
public struct ParamGroup {
    public var params: [Tensor]
    public var options: [String: Double]
    public init(_ params: [Tensor], _ options: [String: Double] = [:]) { self.params = params; self.options = options }
}

/// An optimizer over groups of parameters; `step()` applies one update from
/// their `.grad` (parameters without a gradient are skipped), in place and
/// without recording, each parameter with its group's hyper-parameters.
public class Optimizer {
    /// Every parameter, group by group.
    public let params: [Tensor]
    /// Each group's hyper-parameters ("lr", "momentum", "weight_decay", ...).
    public private(set) var groups: [[String: Double]]
    /// The group of each parameter (index into `groups`).
    let groupOf: [Int]
    /// The 0-based group of parameter `index`.
    public func groupOf(index: Int) -> Int { groupOf[index] }
    /// Per-parameter state, e.g. "momentum_buffer", "exp_avg", "exp_avg_sq".
    public var state: [[String: Tensor]]
    public var steps: Int = 0

    /// The first group's learning rate; setting it sets every group's.
    public var lr: Double {
        get { groups[0]["lr"] ?? 0 }
        set { for g in groups.indices { groups[g]["lr"] = newValue } }
    }

    init(_ given: [ParamGroup], defaults: [String: Double]) throws {
        guard !given.isEmpty else { throw TensorError("expected at least one parameter group") }
        var all = [Tensor](), of = [Int](), hyper = [[String: Double]]()
        var seen = Set<ObjectIdentifier>()
        for (g, group) in given.enumerated() {
            for key in group.options.keys where defaults[key] == nil {
                throw TensorError("parameter group \(g + 1): unknown option '\(key)' (expected \(defaults.keys.sorted().joined(separator: ", ")))")
            }
            var h = defaults
            for (k, v) in group.options { h[k] = v }
            let at = given.count > 1 ? " (group \(g + 1))" : ""
            guard let lr = h["lr"], !lr.isNaN else { throw TensorError("missing option lr\(at)") }
            guard lr >= 0, lr.isFinite else { throw TensorError("learning rate must be non-negative, got \(lr)\(at)") }
            for p in group.params {
                guard p.dtype == .float32 else {
                    throw TensorError("parameter \(all.count + 1) is \(p.dtype.rawValue); only float32 tensors can be optimized")
                }
                guard seen.insert(ObjectIdentifier(p)).inserted else {
                    throw TensorError("a parameter appears in more than one group (or twice in one)")
                }
                all.append(p); of.append(g)
            }
            hyper.append(h)
        }
        params = all; groupOf = of; groups = hyper
        state = all.map { _ in [:] }
        try validate()
    }

    /// Checks every group's hyper-parameters (subclasses add their rules).
    func validate() throws {}

    public func zeroGrad() { for p in params { p.grad = nil } }

    public func step() throws {
        try GradMode.noGrad {
            steps += 1
            for (i, p) in params.enumerated() { if let g = p.grad { try update(i, p, g, groups[groupOf[i]]) } }
        }
    }

    func update(_ i: Int, _ p: Tensor, _ g: Tensor, _ h: [String: Double]) throws {}

    /// The first group's hyper-parameters (for state dicts and printing).
    public var hyperparameters: [String: Double] { groups[0] }

    /// Sets a hyper-parameter in every group (`group` given: in that one only, 0-based).
    public func setHyperparameter(_ name: String, _ value: Double, group: Int? = nil) throws {
        try setHyperparameters([name: value], group: group)
    }

    /// Sets several hyper-parameters at once, then checks them together (so a
    /// state dict's nesterov and momentum load in any order); on an error
    /// nothing is changed.
    public func setHyperparameters(_ values: [String: Double], group: Int? = nil) throws {
        for name in values.keys.sorted() where groups[0][name] == nil {
            throw TensorError("\(String(describing: type(of: self))) has no hyper-parameter '\(name)' (expected \(groups[0].keys.sorted().joined(separator: ", ")))")
        }
        if let group, !groups.indices.contains(group) {
            throw TensorError("no parameter group \(group + 1) (the optimizer has \(groups.count))")
        }
        let before = groups
        for g in group.map({ [$0] }) ?? Array(groups.indices) { groups[g].merge(values) { $1 } }
        do { try validate() } catch { groups = before; throw error }
    }
}

/// A group's hyper-parameter. Every name is present: the defaults are merged
/// into each group at construction and setHyperparameters refuses unknown names.
@inline(__always) private func option(_ h: [String: Double], _ name: String) -> Double { h[name] ?? .nan }

/// SGD with PyTorch's update rule:
/// d = g + wd·p; b = μ·b + (1−τ)·d (b = d at the first step); d = nesterov ? d + μ·b : b; p −= lr·d.
public final class SGD: Optimizer {
    public convenience init(_ params: [Tensor], lr: Double, momentum: Double = 0, dampening: Double = 0,
                            weightDecay: Double = 0, nesterov: Bool = false) throws {
        try self.init(groups: [ParamGroup(params)], lr: lr, momentum: momentum, dampening: dampening,
                      weightDecay: weightDecay, nesterov: nesterov)
    }

    /// Groups with their own options ("lr", "momentum", "dampening", "weight_decay", "nesterov" as 0/1).
    public init(groups: [ParamGroup], lr: Double?, momentum: Double = 0, dampening: Double = 0,
                weightDecay: Double = 0, nesterov: Bool = false) throws {
        var defaults = ["momentum": momentum, "dampening": dampening, "weight_decay": weightDecay, "nesterov": nesterov ? 1 : 0]
        defaults["lr"] = lr ?? .nan            // a group without its own lr is an error when none is given
        try super.init(groups, defaults: defaults)
    }

    override func validate() throws {
        for (g, h) in groups.enumerated() {
            let at = groups.count > 1 ? " (group \(g + 1))" : ""
            guard option(h, "momentum") >= 0, option(h, "weight_decay") >= 0 else { throw TensorError("momentum and weight_decay must be non-negative\(at)") }
            guard option(h, "nesterov") == 0 || (option(h, "momentum") > 0 && option(h, "dampening") == 0) else {
                throw TensorError("nesterov momentum requires a momentum and zero dampening\(at)")
            }
        }
    }

    override func update(_ i: Int, _ p: Tensor, _ g: Tensor, _ h: [String: Double]) throws {
        let lr = option(h, "lr"), momentum = option(h, "momentum"), dampening = option(h, "dampening"), weightDecay = option(h, "weight_decay")
        if try fusedUpdate(i, p, g, lr: lr, momentum: momentum, dampening: dampening, weightDecay: weightDecay,
                           nesterov: option(h, "nesterov") != 0) { return }
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
            d = option(h, "nesterov") != 0 ? try d + momentum * buf : buf
        }
        try p.sub_(lr * d)
    }
}

extension SGD {
    /// The update below in one pass over contiguous float32 parameters,
    /// gradients and momentum buffers (the common case): each element goes
    /// through the same float operations in the same order as the tensor-op
    /// path — so the same bits — without its four temporaries and five passes.
    /// Returns false (nothing done) for other layouts.
    func fusedUpdate(_ i: Int, _ p: Tensor, _ g: Tensor, lr: Double, momentum: Double, dampening: Double,
                     weightDecay: Double, nesterov: Bool) throws -> Bool {
        let n = p.numel
        guard p.dtype == .float32, g.dtype == .float32, p.isContiguous, g.isContiguous, g.numel == n, g.shape == p.shape else { return false }
        var buf: Tensor? = nil, first = false
        if momentum != 0 {
            if let b = state[i]["momentum_buffer"] {
                guard b.dtype == .float32, b.isContiguous, b.shape == p.shape, b.storage !== p.storage, b.storage !== g.storage else { return false }
                buf = b
            } else {
                buf = try Tensor(shape: p.shape, dtype: .float32, zeroed: false)
                first = true
            }
        }
        guard p.storage !== g.storage else { return false }
        try p.prepareInPlace()
        if let buf, !first { try buf.prepareInPlace() }
        let pp = p.pointer(Float.self), pg = g.pointer(Float.self), pb = buf?.pointer(Float.self)
        let lrF = Float(lr), mF = Float(momentum), dampF = Float(1 - dampening), wdF = Float(weightDecay)
        let decay = weightDecay != 0, useMomentum = momentum != 0
        // One branch-free loop per case, so that each vectorizes.
        let kernel = { (r: Range<Int>) in
            let lo = r.lowerBound, m = r.count
            let p = pp + lo, g = pg + lo
            guard useMomentum, let pb else {
                if decay { for k in 0..<m { p[k] = p[k] - lrF * (g[k] + wdF * p[k]) } }
                else { for k in 0..<m { p[k] = p[k] - lrF * g[k] } }
                return
            }
            let b = pb + lo
            switch (decay, first, nesterov) {
            case (false, false, false):
                for k in 0..<m { let v = b[k] * mF + dampF * g[k]; b[k] = v; p[k] = p[k] - lrF * v }
            case (false, true, false):
                for k in 0..<m { let v = g[k]; b[k] = v; p[k] = p[k] - lrF * v }
            default:
                for k in 0..<m {
                    var d = g[k]
                    if decay { d = d + wdF * p[k] }                           // d + weight_decay·p
                    let v = first ? d : b[k] * mF + dampF * d                 // buf.mul_(m).add_((1 − dampening)·d), or clone(d)
                    b[k] = v
                    d = nesterov ? d + mF * v : v
                    p[k] = p[k] - lrF * d                                     // p.sub_(lr·d)
                }
            }
        }
        if n >= 1 << 17 { Parallel.forRanges(n, grain: 1 << 16, kernel) } else { kernel(0..<n) }
        if first, let buf { state[i]["momentum_buffer"] = buf }
        return true
    }
}

/// Adam / AdamW with PyTorch's update:
/// m = β1·m + (1−β1)·g; v = β2·v + (1−β2)·g²;
/// p −= lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε).
/// Adam adds wd·p to g (L2); AdamW multiplies p by (1 − lr·wd) first (decoupled).
public final class Adam: Optimizer {
    public let decoupled: Bool

    public convenience init(_ params: [Tensor], lr: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999), eps: Double = 1e-8,
                            weightDecay: Double = 0, decoupled: Bool = false) throws {
        try self.init(groups: [ParamGroup(params)], lr: lr, betas: betas, eps: eps, weightDecay: weightDecay, decoupled: decoupled)
    }

    /// Groups with their own options ("lr", "beta1", "beta2", "eps", "weight_decay").
    public init(groups: [ParamGroup], lr: Double = 1e-3, betas: (Double, Double) = (0.9, 0.999), eps: Double = 1e-8,
                weightDecay: Double = 0, decoupled: Bool = false) throws {
        self.decoupled = decoupled
        try super.init(groups, defaults: ["lr": lr, "beta1": betas.0, "beta2": betas.1, "eps": eps, "weight_decay": weightDecay])
    }

    override func validate() throws {
        for (g, h) in groups.enumerated() {
            let at = groups.count > 1 ? " (group \(g + 1))" : ""
            guard (0..<1).contains(option(h, "beta1")), (0..<1).contains(option(h, "beta2")) else {
                throw TensorError("betas must be in [0, 1), got (\(option(h, "beta1")), \(option(h, "beta2")))\(at)")
            }
            guard option(h, "eps") >= 0, option(h, "weight_decay") >= 0 else { throw TensorError("eps and weight_decay must be non-negative\(at)") }
        }
    }

    override func update(_ i: Int, _ p: Tensor, _ g0: Tensor, _ h: [String: Double]) throws {
        let lr = option(h, "lr"), beta1 = option(h, "beta1"), beta2 = option(h, "beta2"), eps = option(h, "eps"), weightDecay = option(h, "weight_decay")
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
    /// Each group's learning rate when the scheduler was made.
    public let baseLRs: [Double]
    public var baseLR: Double { baseLRs[0] }
    public private(set) var epoch = 0

    public init(_ optimizer: Optimizer, _ kind: Kind) throws {
        switch kind {
        case .step(let s, _): guard s > 0 else { throw TensorError("step_size must be positive, got \(s)") }
        case .cosine(let t, _): guard t > 0 else { throw TensorError("T_max must be positive, got \(t)") }
        case .multistep(let ms, _): guard ms == ms.sorted() else { throw TensorError("milestones must be increasing") }
        case .exponential: break
        }
        self.optimizer = optimizer; self.kind = kind; self.baseLRs = optimizer.groups.map { $0["lr"] ?? 0 }
    }

    /// The first group's learning rate at epoch `e`.
    public func lr(at e: Int) -> Double { lr(at: e, base: baseLR) }

    func lr(at e: Int, base: Double) -> Double {
        switch kind {
        case .step(let s, let g): return base * Foundation.pow(g, Double(e / s))
        case .multistep(let ms, let g): return base * Foundation.pow(g, Double(ms.filter { $0 <= e }.count))
        case .cosine(let t, let etaMin): return etaMin + (base - etaMin) * (1 + cos(Double.pi * Double(e) / Double(t))) / 2
        case .exponential(let g): return base * Foundation.pow(g, Double(e))
        }
    }

    /// Sets the number of steps taken (a checkpoint's); the optimizer's
    /// learning rates are the optimizer's own state and are not touched.
    public func setEpoch(_ e: Int) throws {
        guard e >= 0 else { throw TensorError("epoch must be ≥ 0, got \(e)") }
        epoch = e
    }

    /// Every group's learning rate follows the schedule from its own base.
    public func step() {
        epoch += 1
        for (g, base) in baseLRs.enumerated() { try? optimizer.setHyperparameter("lr", lr(at: epoch, base: base), group: g) }
    }
}
