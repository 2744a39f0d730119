import Foundation
import ParryCore

/// How a per-sample loss is reduced.
public enum Reduction: String, Sendable {
    case mean, sum, none
    /// kl_div only: sum divided by the batch size.
    case batchmean
}

func reduce(_ l: Tensor, _ r: Reduction, batch: Int) throws -> Tensor {
    switch r {
    case .none: return l
    case .sum: return try l.sum()
    case .mean: return try l.mean()
    case .batchmean: return try l.sum() / max(batch, 1)
    }
}

public enum Loss {
    /// Checks N×C logits against N labels (0-based int64 in 0..<C).
    static func checkLabels(_ logits: Tensor, _ y: Tensor) throws {
        guard logits.ndim == 2 else { throw TensorError("expected N×C scores, got shape \(shapeString(logits.shape))") }
        guard y.dtype == .int64, y.ndim == 1, y.shape[0] == logits.shape[0] else {
            throw TensorError("expected \(logits.shape[0]) int64 labels, got a \(y.dtype.rawValue) tensor of shape \(shapeString(y.shape))")
        }
        let c = Int64(logits.shape[1])
        for v in y.int64s() where v < 0 || v >= c {
            throw TensorError("label \(v + 1) is outside 1..\(c)")
        }
    }

    /// Negative log-likelihood of 0-based labels under log-probabilities
    /// (N×C), with optional class weights (weighted mean as PyTorch).
    public static func nll(_ logp: Tensor, _ y: Tensor, weight: Tensor? = nil, reduction: Reduction = .mean) throws -> Tensor {
        try checkLabels(logp, y)
        let picked = try -logp.gather(1, y.unsqueeze(1)).squeeze(1)   // N
        guard let weight else { return try reduce(picked, reduction, batch: y.numel) }
        guard weight.shape == [logp.shape[1]] else {
            throw TensorError("class weights have shape \(shapeString(weight.shape)), expected {\(logp.shape[1])}")
        }
        let w = try weight.indexSelect(0, y.int64s().map { Int($0) })
        let l = try picked * w
        if reduction == .mean { return try l.sum() / w.sum() }
        return try reduce(l, reduction, batch: y.numel)
    }

    /// Cross-entropy from logits, computed as nll(log_softmax) (log-sum-exp
    /// stable). Label smoothing ε mixes in the uniform target: (1−ε)·nll + ε·mean_c(−w_c·log p_c).
    public static func crossEntropy(_ logits: Tensor, _ y: Tensor, weight: Tensor? = nil,
                                    labelSmoothing: Double = 0, reduction: Reduction = .mean) throws -> Tensor {
        try checkLabels(logits, y)
        guard labelSmoothing >= 0, labelSmoothing <= 1 else {
            throw TensorError("label_smoothing must be in [0, 1], got \(labelSmoothing)")
        }
        let logp = try logits.softmax(dim: 1, log: true)
        if labelSmoothing == 0 { return try nll(logp, y, weight: weight, reduction: reduction) }
        let c = logits.shape[1]
        let hard = try nll(logp, y, weight: weight, reduction: .none)
        let wlogp = try weight.map { try logp * $0 } ?? logp
        let smooth = try (-wlogp).sum(dim: 1) / c
        let l = try (1 - labelSmoothing) * hard + labelSmoothing * smooth
        if reduction == .mean, let weight {
            let w = try weight.indexSelect(0, y.int64s().map { Int($0) })
            return try l.sum() / w.sum()
        }
        return try reduce(l, reduction, batch: y.numel)
    }

    /// The comp-sum family (Mao, Mohri & Zhong 2023):
    /// ℓ_τ(h, y) = Φ^τ(Σ_{y'≠y} exp(h_{y'} − h_y)) with Φ^τ(u) = ((1+u)^{1−τ} − 1)/(1−τ)
    /// and Φ¹ = log(1+u). Since 1+u = 1/p_y: ℓ_τ = (1 − p_y^{τ−1})/(τ − 1), computed from
    /// log p_y (log-softmax) as −expm1((τ−1)·log p_y)/(τ−1), and −log p_y near τ = 1.
    /// τ = 0 sum-exponential, τ = 1 cross-entropy, τ ∈ (1, 2) generalized CE with
    /// q = τ − 1, τ = 2 mean absolute error. Gradient: p_y^{τ−1}·(p − e_y).
    public static func compSum(_ logits: Tensor, _ y: Tensor, tau: Double, reduction: Reduction = .mean) throws -> Tensor {
        try checkLabels(logits, y)
        guard tau >= 0, tau.isFinite else { throw TensorError("tau must be a non-negative number, got \(tau)") }
        let lp = try logits.softmax(dim: 1, log: true).gather(1, y.unsqueeze(1)).squeeze(1)   // log p_y
        let k = tau - 1
        let l = abs(k) < 1e-6 ? try -lp : try (k * lp).expm1() / -k
        return try reduce(l, reduction, batch: y.numel)
    }

    /// Mean squared error between same-shaped tensors.
    public static func mse(_ a: Tensor, _ b: Tensor, reduction: Reduction = .mean) throws -> Tensor {
        guard a.shape == b.shape else {
            throw TensorError("input shape \(shapeString(a.shape)) and target shape \(shapeString(b.shape)) differ")
        }
        let d = try a - b
        return try reduce(d * d, reduction, batch: a.shape.first ?? 1)
    }

    /// KL(target ‖ input) with `input` log-probabilities: target·(log target − input),
    /// 0 where target = 0 (or exp(t)·(t − input) with `logTarget`).
    public static func klDiv(_ input: Tensor, _ target: Tensor, reduction: Reduction = .mean, logTarget: Bool = false) throws -> Tensor {
        guard input.shape == target.shape else {
            throw TensorError("input shape \(shapeString(input.shape)) and target shape \(shapeString(target.shape)) differ")
        }
        let l: Tensor
        if logTarget {
            l = try target.exp() * (target - input)
        } else {
            let positive = try target.gt(0)
            let safeLog = try whereSelect(positive, target, 1).log()
            l = try whereSelect(positive, target * (safeLog - input), 0)
        }
        return try reduce(l, reduction, batch: input.shape.first ?? 1)
    }

    // MARK: embedding losses (calibration heads for frozen multi-modal encoders)

    /// Cosine logits cos(z_i, t_c)/τ of N×d embeddings against C×d class centers.
    public static func cosineLogits(_ z: Tensor, _ centers: Tensor, temperature: Double) throws -> Tensor {
        guard z.ndim == 2, centers.ndim == 2 else {
            throw TensorError("expected N×d embeddings and C×d centers, got shapes \(shapeString(z.shape)) and \(shapeString(centers.shape))")
        }
        guard z.shape[1] == centers.shape[1] else {
            throw TensorError("the centers have dimension \(centers.shape[1]) but the embeddings \(z.shape[1])")
        }
        guard temperature > 0, temperature.isFinite else { throw TensorError("temperature must be positive, got \(temperature)") }
        return try F.normalize(z, dim: 1).matmul(F.normalize(centers, dim: 1).transpose(0, 1)) / temperature
    }

    /// Fixed-center cross-entropy: −log softmax_c(cos(z, t_c)/τ)_y (TeCoA-style zero-shot loss).
    public static func fixedCenterCE(_ z: Tensor, _ centers: Tensor, _ y: Tensor, temperature: Double = 0.01,
                                     reduction: Reduction = .mean) throws -> Tensor {
        try crossEntropy(cosineLogits(z, centers, temperature: temperature), y, reduction: reduction)
    }

    /// ‖z_i − target_i‖² per sample (FARE-style alignment), reduced over the batch.
    public static func l2Align(_ z: Tensor, _ target: Tensor, reduction: Reduction = .mean) throws -> Tensor {
        guard z.ndim == 2, z.shape == target.shape else {
            throw TensorError("expected two N×d tensors of the same shape, got \(shapeString(z.shape)) and \(shapeString(target.shape))")
        }
        let d = try z - target
        return try reduce((d * d).sum(dim: 1), reduction, batch: z.shape[0])
    }

    /// InfoNCE: sample i's positive is row i of `positives`, its negatives the
    /// other rows; −log softmax_j(cos(z_i, p_j)/τ)_i. `symmetric` averages it
    /// with the loss of the positives against the embeddings (CLIP's form).
    public static func infoNCE(_ z: Tensor, _ positives: Tensor, temperature: Double = 0.07, symmetric: Bool = false,
                               reduction: Reduction = .mean) throws -> Tensor {
        guard z.ndim == 2, z.shape == positives.shape else {
            throw TensorError("expected two N×d tensors of the same shape, got \(shapeString(z.shape)) and \(shapeString(positives.shape))")
        }
        let logits = try cosineLogits(z, positives, temperature: temperature)
        let labels = try Tensor((0..<Int64(z.shape[0])).map { $0 }, shape: [z.shape[0]])
        let forward = try crossEntropy(logits, labels, reduction: .none)
        let l = symmetric ? try (forward + crossEntropy(logits.transpose(0, 1), labels, reduction: .none)) * 0.5 : forward
        return try reduce(l, reduction, batch: z.shape[0])
    }
}
