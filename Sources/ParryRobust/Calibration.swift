import Foundation
import ParryCore
import ParryNN

// Adversarial calibration heads for frozen multi-modal encoders ("Adversarial
// Robustness for Unified Multi-Modal Encoders via Efficient Calibration",
// arXiv 2505.11895). The paper's method sections are not available; this is
// our reading from its abstract and from TeCoA / FARE (docs/calibration.md
// says which part is which). Every encoder and class center stays frozen;
// only a small head on one modality's embeddings is trained, on adversarial
// examples only.

public enum Calibration {
    public enum Objective: String, Sendable {
        /// −log softmax_c(cos(z(x′), t_c)/τ)_y (TeCoA's fixed-center loss).
        case ce
        /// ‖z(x′) − normalize(φ(x))‖² (FARE's clean-embedding alignment).
        case l2
        /// InfoNCE between z(x′) and the clean embeddings of the batch.
        case infonce
    }

    /// What the PGD attack during training maximizes.
    public enum AttackLoss: String, Sendable {
        case ce
        /// ‖z(x′) − normalize(φ(x))‖² (FARE's attack).
        case embedding
    }

    public struct Options {
        public var objective = Objective.ce
        /// λ of the consistency term λ·‖normalize(h(φ(x))) − normalize(φ(x))‖² on clean inputs.
        public var consistency = 0.0
        public var eps = 4.0 / 255
        public var alpha: Double? = nil          // ε/4
        public var steps = 10
        public var randomStart = true
        /// nil: "ce" for the CE objective, "embedding" for the others.
        public var attackLoss: AttackLoss? = nil
        /// τ of the fixed-center CE (and of its attack).
        public var temperature = 0.01
        /// τ of InfoNCE, and whether it is symmetric.
        public var nceTemperature = 0.07
        public var symmetric = false
        public var lr = 3e-3
        public var weightDecay = 1e-4
        public var epochs = 2
        public var batchSize = 128
        /// One-cycle cosine schedule (PyTorch's OneCycleLR): warm-up share, initial lr = lr/div, final = initial/finalDiv.
        public var pctStart = 0.3
        public var divFactor = 25.0
        public var finalDivFactor = 1e4
        /// Input bounds of the attack (unbounded by default: point clouds and signals have none).
        public var bounds: (Double, Double) = (-Double.infinity, Double.infinity)
        public init() {}
    }

    public struct EpochRecord {
        public let epoch: Int
        public let loss: Double
        /// Accuracy of the zero-shot prediction on the training batches' adversarial examples.
        public let adversarialAccuracy: Double
        public let seconds: Double
    }

    /// normalize(head(encoder(x))), or normalize(encoder(x)) without a head.
    public static func embed(_ encoder: Module, _ head: Module?, _ x: Tensor) throws -> Tensor {
        let e = try encoder(x)
        guard e.ndim == 2 else { throw TensorError("the encoder must return N×d embeddings, got shape \(shapeString(e.shape))") }
        return try F.normalize(head.map { try $0(e) } ?? e, dim: 1)
    }

    /// PyTorch's OneCycleLR (cosine annealing) at step `k` of `total`.
    public static func oneCycle(_ k: Int, total: Int, maxLR: Double, pctStart: Double, divFactor: Double, finalDivFactor: Double) -> Double {
        let initial = maxLR / divFactor, final = initial / finalDivFactor
        let up = Swift.max(pctStart * Double(total) - 1, 1)     // PyTorch's phase ends: pct·total − 1, then total − 1
        let down = Double(Swift.max(total - 1, 1)) - up
        func anneal(_ a: Double, _ b: Double, _ pct: Double) -> Double { b + (a - b) / 2 * (1 + cos(Double.pi * Swift.min(pct, 1))) }
        let step = Double(k)
        return step <= up ? anneal(initial, maxLR, step / up) : anneal(maxLR, final, (step - up) / Swift.max(down, 1))
    }

    /// Trains `head` (in place) so that normalize(head(encoder(x′))) of
    /// adversarial x′ stays where the frozen model puts the clean input: PGD
    /// (L∞ in input units, random start, α = ε/4) through the frozen encoder
    /// and the current head on the attack loss, then the objective on x′ only,
    /// plus the consistency term on clean x. AdamW on the head's parameters,
    /// one-cycle cosine schedule. The encoder runs in eval mode with no
    /// parameter requiring grad during the whole run (restored afterwards), so
    /// its parameters and BatchNorm statistics are unchanged bit for bit.
    public static func calibrate(encoder: Module, head: Module, centers: Tensor, x: Tensor, y: Tensor, options o: Options = Options(),
                                 generator: Generator = .current, onEpoch: ((EpochRecord) throws -> Void)? = nil) throws -> [EpochRecord] {
        guard o.eps >= 0, o.eps.isFinite, o.steps >= 0, o.epochs >= 1, o.batchSize >= 1, o.lr >= 0, o.weightDecay >= 0, o.consistency >= 0 else {
            throw TensorError("eps, lr, weight_decay and consistency must be ≥ 0, steps ≥ 0, epochs and batch_size ≥ 1")
        }
        guard o.temperature > 0, o.nceTemperature > 0 else { throw TensorError("temperature must be positive") }
        guard o.bounds.0 < o.bounds.1 else { throw TensorError("bounds must satisfy lo < hi") }
        guard x.shape.first == y.shape.first, y.ndim == 1, x.shape[0] > 0 else { throw TensorError("x and y must hold the same number of samples") }
        guard centers.ndim == 2 else { throw TensorError("centers must be C×d, got shape \(shapeString(centers.shape))") }
        guard !encoder.contains(head), !head.contains(encoder) else { throw TensorError("the head must not be part of the encoder (or the other way round)") }
        let params = head.allParameters().filter { $0.requiresGrad }
        guard !params.isEmpty else { throw TensorError("the head has no trainable parameters") }
        // the encoder frozen for the run, as it was afterwards
        let savedModes = encoder.namedModules().map { ($0.module, $0.module.training) }
        let savedGrad = encoder.allParameters().map { ($0, $0.requiresGrad) }
        for (p, _) in savedGrad { try p.requiresGrad_(false) }
        encoder.eval()
        defer {
            for (m, t) in savedModes { m.setTrainingFlag(t) }
            for (p, r) in savedGrad { try? p.requiresGrad_(r) }
        }
        let probe = try GradMode.noGrad { try embed(encoder, head, x.narrow(0, 0, 1)) }
        guard probe.shape[1] == centers.shape[1] else {
            throw TensorError("the head gives \(probe.shape[1])-d embeddings but the centers are \(centers.shape[1])-d")
        }
        let c = centers.shape[0]
        for v in y.int64s() where v < 0 || Int(v) >= c { throw TensorError("label \(v + 1) is outside 1..\(c)") }
        let t = centers.detach()
        let opt = try Adam(params, lr: o.lr, weightDecay: o.weightDecay, decoupled: true)
        let n = x.shape[0], perEpoch = (n + o.batchSize - 1) / o.batchSize, total = perEpoch * o.epochs
        let attackLoss = o.attackLoss ?? (o.objective == .ce ? .ce : .embedding)
        let tm = ThreatModel(eps: o.eps, norm: .linf, bounds: o.bounds)
        let alpha = o.alpha ?? o.eps / 4
        var step = 0, curve = [EpochRecord]()
        for epoch in 1...o.epochs {
            let t0 = Date()
            head.train()
            var sum = 0.0, correct = 0.0, batches = 0
            for idx in RiFT.shuffledBatches(n, o.batchSize, generator) {
                try Interrupt.check()
                try opt.setHyperparameter("lr", oneCycle(step, total: total, maxLR: o.lr, pctStart: o.pctStart, divFactor: o.divFactor,
                                                          finalDivFactor: o.finalDivFactor), group: 0)
                step += 1
                let xb = try x.indexSelect(0, idx), yb = try y.indexSelect(0, idx)
                let clean = try GradMode.noGrad { try embed(encoder, nil, xb) }
                let adv = try attack(encoder, head, xb, yb, clean: clean, centers: t, loss: attackLoss, tm, alpha: alpha, steps: o.steps,
                                     randomStart: o.randomStart, temperature: o.temperature, generator: generator)
                let z = try embed(encoder, head, adv)
                var loss: Tensor
                switch o.objective {
                case .ce: loss = try Loss.fixedCenterCE(z, t, yb, temperature: o.temperature)
                case .l2: loss = try Loss.l2Align(z, clean)
                case .infonce: loss = try Loss.infoNCE(z, clean, temperature: o.nceTemperature, symmetric: o.symmetric)
                }
                if o.consistency > 0 { loss = try loss + o.consistency * Loss.l2Align(embed(encoder, head, xb), clean) }
                opt.zeroGrad()
                try loss.backward()
                try opt.step()
                sum += try loss.double(); batches += 1
                correct += try GradMode.noGrad { try Loss.cosineLogits(z.detach(), t, temperature: 1).argmax(dim: 1).eq(yb).to(.float32).sum().double() }
            }
            let r = EpochRecord(epoch: epoch, loss: sum / Double(Swift.max(batches, 1)), adversarialAccuracy: correct / Double(n),
                                seconds: Date().timeIntervalSince(t0))
            curve.append(r)
            try onEpoch?(r)
        }
        head.eval()
        return curve
    }

    /// L∞ PGD on normalize(head(encoder(x))): maximizes the fixed-center CE
    /// against y, or the distance to the clean embedding (no head).
    public static func attack(_ encoder: Module, _ head: Module?, _ x: Tensor, _ y: Tensor, clean: Tensor, centers: Tensor, loss: AttackLoss,
                              _ tm: ThreatModel, alpha: Double, steps: Int, randomStart: Bool = true, temperature: Double = 0.01,
                              generator: Generator = .current) throws -> Tensor {
        var adv = randomStart && tm.eps > 0 ? try Attacks.randomStart(x, tm, generator: generator) : x.detach()
        for _ in 0..<steps {
            try Interrupt.check()
            let av = try adv.detach().requiresGrad_()
            let z = try embed(encoder, head, av)
            let l = loss == .ce ? try Loss.fixedCenterCE(z, centers, y, temperature: temperature, reduction: .sum)
                                : try Loss.l2Align(z, clean, reduction: .sum)
            let g = try grad([l], [av], allowUnused: true)[0] ?? Tensor.zeros(x.shape)
            adv = try GradMode.noGrad { try AttackMath.project(av.detach() + alpha * g.sign(), x, tm) }
        }
        return adv.detach()
    }

    /// Cross-modal retrieval: query i's match is gallery item i; recall@k is
    /// the share of queries whose match is among the k most cosine-similar
    /// gallery items (ties counted against the query).
    public static func recall(_ queries: Tensor, _ gallery: Tensor, ks: [Int]) throws -> [Double] {
        guard queries.ndim == 2, queries.shape == gallery.shape else {
            throw TensorError("expected two N×d embedding sets of the same shape, got \(shapeString(queries.shape)) and \(shapeString(gallery.shape))")
        }
        let n = queries.shape[0]
        for k in ks where k < 1 { throw TensorError("k must be at least 1, got \(k)") }
        let sim = try GradMode.noGrad { try F.normalize(queries, dim: 1).matmul(F.normalize(gallery, dim: 1).transpose(0, 1)) }.doubles()
        var rank = [Int](repeating: 0, count: n)
        for i in 0..<n {
            let own = sim[i * n + i]
            var better = 0
            for j in 0..<n where j != i && sim[i * n + j] >= own { better += 1 }
            rank[i] = better + 1
        }
        return ks.map { k in Double(rank.filter { $0 <= k }.count) / Double(Swift.max(n, 1)) }
    }
}
