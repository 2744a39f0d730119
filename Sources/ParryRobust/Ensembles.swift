import Foundation
import ParryCore
import ParryNN

// Ensemble diversity training: DVERGE (Yang et al., NeurIPS 2020) and the
// baselines it is compared with, ADP (Pang et al. 2019) and GAL (Kariyappa &
// Qureshi 2019). Order of operations and constants follow the official code
// (zjysteven/DVERGE: distillation.py, train/train_{dverge,adp,gal,baseline}.py).

public enum Diversity {
    // MARK: feature distillation

    public struct DistillOptions {
        public var eps = 0.07
        public var alpha = 0.007
        public var steps = 10
        /// μ of the momentum g ← μ·g + ∇/‖∇‖₁; nil for plain sign steps on ∇.
        public var momentum: Double? = 1
        public var randomStart = false
        public var bounds: (Double, Double) = (0, 1)
        public init() {}
        public func validate() throws {
            guard eps >= 0, eps.isFinite else { throw TensorError("eps must be a non-negative number, got \(eps)") }
            guard alpha >= 0, alpha.isFinite else { throw TensorError("alpha must be a non-negative number, got \(alpha)") }
            guard steps >= 0 else { throw TensorError("steps must be non-negative, got \(steps)") }
            if let m = momentum { guard m >= 0, m.isFinite else { throw TensorError("momentum must be ≥ 0, got \(m)") } }
            guard bounds.0 < bounds.1 else { throw TensorError("bounds must satisfy lo < hi") }
        }
    }

    /// x′ = argmin_{‖z−x‖∞≤ε} MSE(f^l(z), f^l(x_s)): starts at x (or uniform in
    /// the ball), `steps` sign-descent steps on the momentum of the per-sample
    /// L1-normalized gradient, each projected to the ball and the bounds. The
    /// target features f^l(x_s) are computed once, detached (the official code
    /// recomputes them at every step; in train mode that gives the same values
    /// and only adds BatchNorm running-statistic updates). The model runs in
    /// whatever mode it is in, only as far as layer `layer`.
    public static func featureDistill(_ model: Module, layer: String, _ x: Tensor, _ xs: Tensor, _ o: DistillOptions = DistillOptions(),
                                      generator: Generator = .current) throws -> Tensor {
        try o.validate()
        guard x.dtype == .float32, x.ndim >= 2 else { throw TensorError("x must be a float32 batch, got \(x.dtype.rawValue) \(shapeString(x.shape))") }
        guard xs.shape == x.shape else {
            throw TensorError("x_s must have x's shape \(shapeString(x.shape)), got \(shapeString(xs.shape))")
        }
        let tm = ThreatModel(eps: o.eps, norm: .linf, bounds: o.bounds)
        let target = try GradMode.noGrad { try model.feature(xs, at: layer) }.detach()
        var z = o.randomStart && o.eps > 0 ? try Attacks.randomStart(x, tm, generator: generator) : try x.detach().clamp(o.bounds.0, o.bounds.1)
        var g = try Tensor.zeros(x.shape)
        let n = x.shape[0], unit = [n] + [Int](repeating: 1, count: x.ndim - 1)
        for _ in 0..<o.steps {
            try Interrupt.check()
            let zv = try z.detach().requiresGrad_()
            let loss = try Loss.mse(model.feature(zv, at: layer), target)
            let d = try grad([loss], [zv], allowUnused: true)[0] ?? Tensor.zeros(x.shape)
            z = try GradMode.noGrad {
                var step = d
                if let mu = o.momentum {
                    let l1 = try d.abs().reshape([n, -1]).sum(dim: 1).clamp(min: 1e-12).reshape(unit)
                    g = try mu * g + d / l1
                    step = g
                }
                return try AttackMath.project(zv.detach() - o.alpha * step.sign(), x, tm)
            }
        }
        return z.detach()
    }

    /// L∞ PGD as the DVERGE code's Linf_PGD (used by DVERGE+AT): uniform random
    /// start in the ball, `steps` ascent steps α·sign(∇ CE), projection to the
    /// ball and bounds; the model in its current mode.
    public static func linfPGD(_ model: Classifier, _ x: Tensor, _ y: Tensor, eps: Double, alpha: Double, steps: Int,
                               randomStart: Bool = true, bounds: (Double, Double) = (0, 1), generator: Generator = .current) throws -> Tensor {
        let tm = ThreatModel(eps: eps, norm: .linf, bounds: bounds)
        try tm.validate()
        var adv = randomStart ? try Attacks.randomStart(x, tm, generator: generator) : x.detach()
        for _ in 0..<steps {
            try Interrupt.check()
            let (g, _, _) = try AttackMath.gradient(model, adv, y, .ce, targeted: false)
            adv = try GradMode.noGrad { try AttackMath.project(adv + alpha * g.sign(), x, tm) }
        }
        return adv.detach()
    }

    // MARK: DVERGE

    public struct AdversarialOptions {
        public var eps = 8.0 / 255
        public var alpha = 2.0 / 255
        public var steps = 10
        public var randomStart = true
        public init() {}
    }

    public struct DVERGEOptions {
        public var distill = DistillOptions()
        /// DVERGE+AT: add CE on PGD examples of each sub-model against itself.
        public var plusAdv = false
        public var adv = AdversarialOptions()
        /// Weight of the diversity term in DVERGE+AT.
        public var coeff = 1.0
        /// Distil with the models in eval mode (BatchNorm running statistics)
        /// instead of train mode (batch statistics, the code's behaviour).
        public var distillEval = false
        public init() {}
    }

    /// One DVERGE batch (round-robin): first x′_j = distil(f_j, layer_j, x, x_s)
    /// for every sub-model with the models as they are before this batch (and
    /// PGD_{f_j}(x) for +AT); then for each i in turn
    ///   L_i = Σ_{j≠i} CE(f_i(x′_j), y)   (+AT: coeff·L_i + CE(f_i(PGD_i), y))
    /// and a step of optimizer i. `layers[j]` is model j's tap. Returns the L_i.
    public static func dvergeStep(models: [Module], optimizers: [Optimizer], x: Tensor, y: Tensor, xs: Tensor, layers: [String],
                                  options o: DVERGEOptions = DVERGEOptions(), generator: Generator = .current) throws -> [Double] {
        let m = models.count
        guard m >= 2 else { throw TensorError("DVERGE needs at least 2 models, got \(m)") }
        guard optimizers.count == m, layers.count == m else { throw TensorError("need one optimizer and one layer per model") }
        var distilled = [Tensor](), adversarial = [Tensor]()
        for (j, model) in models.enumerated() {
            distilled.append(try RobustTraining.withMode(model, eval: o.distillEval) {
                try featureDistill(model, layer: layers[j], x, xs, o.distill, generator: generator)
            })
            if o.plusAdv {
                adversarial.append(try linfPGD({ try model($0) }, x, y, eps: o.adv.eps, alpha: o.adv.alpha, steps: o.adv.steps,
                                               randomStart: o.adv.randomStart, bounds: o.distill.bounds, generator: generator))
            }
        }
        var losses = [Double]()
        for (i, model) in models.enumerated() {
            var total = try addAll(distilled.enumerated().filter { $0.offset != i }.map { try Loss.crossEntropy(model($0.element), y) })
            if o.plusAdv { total = try o.coeff * total + Loss.crossEntropy(model(adversarial[i]), y) }
            optimizers[i].zeroGrad()
            try total.backward()
            try optimizers[i].step()
            losses.append(try total.double())
        }
        return losses
    }

    // MARK: ADP and GAL

    public struct ADPOptions {
        public var alpha = 2.0
        public var beta = 0.5
        public var logOffset = 1e-20
        public var detOffset = 1e-6
        public init() {}
    }

    /// ADP's regularizer terms for members' logits (each N×C) and 0-based
    /// labels: the ensemble entropy H(mean softmax) (batch mean) and the
    /// log-determinant of the Gram matrix of the members' L2-normalized
    /// non-maximal predictions (the true class removed), plus detOffset·I (batch mean).
    public static func adpTerms(_ logits: [Tensor], _ y: Tensor, _ o: ADPOptions = ADPOptions()) throws -> (entropy: Tensor, logDet: Tensor) {
        guard let first = logits.first, first.ndim == 2 else { throw TensorError("ADP needs N×C logits from every member") }
        let n = first.shape[0], c = first.shape[1], m = logits.count
        guard c >= 2 else { throw TensorError("ADP needs at least 2 classes") }
        for l in logits where l.shape != first.shape {
            throw TensorError("members' outputs differ in shape: \(shapeString(first.shape)) and \(shapeString(l.shape))")
        }
        let labels = y.int64s()
        var idx = [Int64](); idx.reserveCapacity(n * (c - 1))
        for v in labels { for k in 0..<Int64(c) where k != v { idx.append(k) } }
        let others = try Tensor(idx, shape: [n, c - 1])
        let probs = try logits.map { try $0.softmax(dim: 1) }
        let rest = try probs.map { try $0.gather(1, others) }
        let pm = try addAll(probs) / Double(m)
        let entropy = try (-(pm * (pm + o.logOffset).log())).sum(dim: 1).mean()
        let u = try F.normalize(stack(rest, dim: 1), dim: 2, eps: 0)                    // N×M×(C−1)
        let gram = try u.matmul(u.transpose(1, 2)) + o.detOffset * Tensor.eye(m)        // N×M×M
        return (entropy, try F.logdetSPD(gram).mean())
    }

    /// ADP loss: Σ_i CE(f_i(x), y) − α·H + (−β·logdet).
    public static func adpLoss(_ logits: [Tensor], _ y: Tensor, _ o: ADPOptions = ADPOptions()) throws -> Tensor {
        let (h, ld) = try adpTerms(logits, y, o)
        return try addAll(logits.map { try Loss.crossEntropy($0, y) }) - o.alpha * h - o.beta * ld
    }

    /// GAL's coherence term for members' input gradients (each N×…):
    /// mean over samples of log(Σ_{i<j} exp(cos(∇_i, ∇_j)) + logOffset).
    public static func galCoherence(_ grads: [Tensor], logOffset: Double = 1e-20) throws -> Tensor {
        guard grads.count >= 2 else { throw TensorError("GAL needs at least 2 members") }
        let flat = try grads.map { try $0.flatten(1) }
        var cos = [Tensor]()
        for i in 0..<flat.count { for j in (i + 1)..<flat.count { cos.append(try F.cosineSimilarity(flat[i], flat[j], dim: 1)) } }
        return try (stack(cos, dim: 1).exp().sum(dim: 1) + logOffset).log().mean()
    }

    /// GAL loss as the code: each member's CE input gradient with the graph kept
    /// (create_graph), CE of a second forward on the detached input, then
    /// Σ CE / M + λ·coherence. Differentiable in the members' parameters.
    public static func galLoss(_ models: [Module], _ x: Tensor, _ y: Tensor, lambda: Double = 0.5) throws -> Tensor {
        let xv = try x.detach().requiresGrad_()
        var grads = [Tensor](), ce = [Tensor]()
        for m in models {
            let l = try Loss.crossEntropy(m(xv), y)
            grads += try grad([l], [xv], createGraph: true).compactMap { $0 }   // allow_unused is off: never nil
            ce.append(try Loss.crossEntropy(m(x.detach()), y))
        }
        return try addAll(ce) / Double(models.count) + lambda * galCoherence(grads)
    }

    // MARK: training loops

    public struct TrainOptions {
        public var epochs = 1
        public var batchSize = 128
        /// SGD (DVERGE, baseline) or Adam (ADP, GAL, one optimizer over every member) settings.
        public var lr: Double? = nil
        public var momentum = 0.9
        public var weightDecay = 1e-4
        public var adamEps = 1e-7
        /// Epochs after which the lr is multiplied by `gamma`; nil: 50% and 75% of the epochs.
        public var milestones: [Int]? = nil
        public var gamma = 0.1
        /// DVERGE: candidate layer names per model (same count for every model);
        /// at each epoch one index is drawn, the same for all. `fixedLayer` pins the index.
        public var layers: [[String]] = []
        public var fixedLayer: Int? = nil
        public var dverge = DVERGEOptions()
        /// ADP / GAL: adversarial training term (PGD against the whole ensemble), as the code's --plus-adv.
        public var plusAdv = false
        /// GAL's augmentation: x + N(0, σ²) with probability p per sample (σ = 0.045, p = 0.5).
        public var gaussianNoise: (std: Double, p: Double)? = nil
        public init() {}
    }

    public struct EpochRecord {
        public let epoch: Int
        /// Mean training loss per model (DVERGE, baseline) or of the joint loss (ADP, GAL: one entry).
        public let losses: [Double]
        /// DVERGE: the layer index (1-based) distilled at this epoch.
        public let layer: Int?
        public let seconds: Double
    }

    public enum Kind { case dverge, ce, adp, gal }

    /// Trains `models` in place: DVERGE (per-model SGD), independent CE
    /// baselines (per-model SGD), ADP or GAL (one Adam over all parameters),
    /// each with a multistep schedule. Every epoch draws two independent
    /// shuffles of (x, y): the batches and, for DVERGE, the distillation
    /// sources; `transform` augments every batch (both). Models are left in train mode.
    public static func train(_ kind: Kind, models: [Module], x: Tensor, y: Tensor, options o: TrainOptions = TrainOptions(),
                             adp: ADPOptions = ADPOptions(), galLambda: Double = 0.5,
                             transform: ((Tensor) throws -> Tensor)? = nil, generator: Generator = .current,
                             onEpoch: ((EpochRecord) throws -> Void)? = nil) throws -> [EpochRecord] {
        let m = models.count
        guard m >= 2 else { throw TensorError("an ensemble needs at least 2 models, got \(m)") }
        guard o.epochs >= 1, o.batchSize >= 1 else { throw TensorError("epochs and batch_size must be at least 1") }
        guard x.shape.count >= 2, y.shape == [x.shape[0]], x.shape[0] > 0 else { throw TensorError("the training set must have N inputs and N labels") }
        for (i, a) in models.enumerated() {
            for b in models[(i + 1)...] where a === b || a.contains(b) || b.contains(a) {
                throw TensorError("the models must be distinct modules (member \(i + 1) is shared)")
            }
        }
        let classes = try checkOutputs(models, x)
        for v in y.int64s() where v < 0 || Int(v) >= classes { throw TensorError("label \(v + 1) is outside 1..\(classes)") }
        let milestones = o.milestones ?? [o.epochs / 2, o.epochs * 3 / 4].filter { $0 > 0 }
        var optimizers = [Optimizer]()
        switch kind {
        case .dverge, .ce:
            for model in models {
                optimizers.append(try SGD(model.allParameters(), lr: o.lr ?? 0.1, momentum: o.momentum, weightDecay: o.weightDecay))
            }
        case .adp, .gal:
            optimizers.append(try Adam(models.flatMap { $0.allParameters() }, lr: o.lr ?? 1e-3, eps: o.adamEps, weightDecay: o.weightDecay))
        }
        let schedulers = try optimizers.map { try LRScheduler($0, .multistep(milestones: milestones, gamma: o.gamma)) }
        var layerNames = o.layers
        if kind == .dverge {
            if layerNames.isEmpty { layerNames = try models.map { try Models.featureLayers($0) } }
            guard layerNames.count == m, let count = layerNames.first?.count, count > 0, layerNames.allSatisfy({ $0.count == count }) else {
                throw TensorError("every model needs the same number of distillation layers (got \(layerNames.map(\.count)))")
            }
            if let f = o.fixedLayer, !(1...count).contains(f) { throw TensorError("layer index \(f) is outside 1..\(count)") }
            for (j, names) in layerNames.enumerated() {
                let valid = Set(models[j].featureNames())
                if let bad = names.first(where: { !valid.contains($0) }) {
                    let taps = (try? Models.featureLayers(models[j])) ?? models[j].featureNames()
                    throw TensorError("unknown layer '\(bad)' for model \(j + 1) (valid taps: \(taps.joined(separator: ", ")))")
                }
            }
        }
        let n = x.shape[0]
        var curve = [EpochRecord]()
        for epoch in 1...o.epochs {
            let t0 = Date()
            for model in models { model.train() }
            var layerIndex: Int? = nil
            if kind == .dverge { layerIndex = o.fixedLayer ?? Int(generator.integer(1, Int64(layerNames[0].count))) }
            let distillLayers = layerIndex.map { l in layerNames.map { $0[l - 1] } } ?? []   // one tap per model, for the epoch
            let batches = RiFT.shuffledBatches(n, o.batchSize, generator)
            let sources = kind == .dverge ? RiFT.shuffledBatches(n, o.batchSize, generator) : []
            var sums = [Double](repeating: 0, count: kind == .adp || kind == .gal ? 1 : m), count = 0
            for (k, idx) in batches.enumerated() {
                try Interrupt.check()
                var xb = try x.indexSelect(0, idx)
                if let transform { xb = try transform(xb) }
                if let noise = o.gaussianNoise { xb = try addNoise(xb, std: noise.std, p: noise.p, generator: generator) }
                let yb = try y.indexSelect(0, idx)
                switch kind {
                case .dverge:
                    var xs = try x.indexSelect(0, sources[k])   // same batch sizes: two shuffles of the same set
                    if let transform { xs = try transform(xs) }
                    let l = try dvergeStep(models: models, optimizers: optimizers, x: xb, y: yb, xs: xs, layers: distillLayers, options: o.dverge,
                                           generator: generator)
                    for i in 0..<m { sums[i] += l[i] }
                case .ce:
                    for (i, model) in models.enumerated() {
                        let l = try Loss.crossEntropy(model(xb), yb)
                        optimizers[i].zeroGrad(); try l.backward(); try optimizers[i].step()
                        sums[i] += try l.double()
                    }
                case .adp, .gal:
                    var loss = kind == .adp
                        ? try adpLoss(try models.map { try $0(xb) }, yb, adp)
                        : try galLoss(models, xb, yb, lambda: galLambda)
                    if o.plusAdv {
                        let ens = try Ensemble(models)
                        let adv = try linfPGD({ try ens($0) }, xb, yb, eps: o.dverge.adv.eps, alpha: o.dverge.adv.alpha, steps: o.dverge.adv.steps,
                                              randomStart: o.dverge.adv.randomStart, bounds: o.dverge.distill.bounds, generator: generator)
                        let advLoss = try addAll(models.map { try Loss.crossEntropy($0(adv), yb) })
                        loss = try loss + (kind == .gal ? advLoss / Double(m) : advLoss)
                    }
                    optimizers[0].zeroGrad(); try loss.backward(); try optimizers[0].step()
                    sums[0] += try loss.double()
                }
                count += 1
            }
            for s in schedulers { s.step() }
            let record = EpochRecord(epoch: epoch, losses: sums.map { $0 / Double(Swift.max(count, 1)) }, layer: layerIndex,
                                     seconds: Date().timeIntervalSince(t0))
            curve.append(record)
            try onEpoch?(record)
        }
        return curve
    }

    /// x + N(0, σ²) on a random fraction p of the samples (GAL's AddGaussianNoise, drawn per sample).
    static func addNoise(_ x: Tensor, std: Double, p: Double, generator: Generator) throws -> Tensor {
        let n = x.shape[0]
        let mask = try Tensor.rand([n] + [Int](repeating: 1, count: x.ndim - 1), generator: generator).lt(p)
        return try x + mask * (std * Tensor.randn(x.shape, generator: generator))
    }

    /// Checks that all members give N×C logits with the same C; returns C.
    static func checkOutputs(_ models: [Module], _ x: Tensor) throws -> Int {
        var classes: Int? = nil
        let probe = try x.narrow(0, 0, 1)
        for (i, m) in models.enumerated() {
            let z = try RobustTraining.withMode(m, eval: true) { try GradMode.noGrad { try m(probe) } }
            guard z.ndim == 2 else { throw TensorError("member \(i + 1) must return N×C logits, got shape \(shapeString(z.shape))") }
            if let c = classes, c != z.shape[1] {
                throw TensorError("members have different output sizes: member 1 gives \(c) classes, member \(i + 1) gives \(z.shape[1])")
            }
            classes = z.shape[1]
        }
        return classes ?? 0
    }
}
