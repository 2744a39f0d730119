import Foundation
import ParryCore
import ParryNN

// RiFT (Zhu et al., ICCV 2023, "Improving Generalization of Adversarial
// Training via Robust Critical Fine-Tuning"), following the official code
// (microsoft/robustlearn, RiFT/main.py and utils.py): module robust
// criticality (MRC), fine-tuning of one non-robust-critical module on clean
// data, and interpolation between the adversarially trained and the
// fine-tuned weights. Our readings where the code is silent are marked.

public enum RiFT {
    // MARK: evaluation helpers

    /// Mean cross-entropy and accuracy of `model` on (x, y) in eval mode,
    /// in batches (no graph). Labels 0-based.
    public static func lossAndAccuracy(_ model: Module, _ x: Tensor, _ y: Tensor, batchSize: Int = 512) throws -> (loss: Double, accuracy: Double) {
        let n = x.shape[0]
        guard n > 0 else { throw TensorError("the evaluation set is empty") }
        return try RobustTraining.withMode(model, eval: true) {
            try GradMode.noGrad {
                var loss = 0.0, correct = 0.0
                var start = 0
                while start < n {
                    let len = Swift.min(batchSize, n - start)
                    let xb = try x.narrow(0, start, len), yb = try y.narrow(0, start, len)
                    let z = try model(xb)
                    loss += try Loss.crossEntropy(z, yb, reduction: .sum).double()
                    correct += try z.argmax(dim: 1).eq(yb).sum().double()
                    start += len
                }
                return (loss / Double(n), correct / Double(n))
            }
        }
    }

    /// Accuracy under L∞ PGD (random start) in eval mode: the robust accuracy
    /// RiFT reports (the code: torchattacks PGD, 10 steps).
    public static func robustAccuracy(_ model: Module, _ x: Tensor, _ y: Tensor, eps: Double, alpha: Double, steps: Int,
                                      batchSize: Int = 256, bounds: (Double, Double) = (0, 1), generator: Generator = .current) throws -> Double {
        let adv = try adversarialSet(model, x, y, eps: eps, alpha: alpha, steps: steps, batchSize: batchSize, bounds: bounds, generator: generator)
        return try lossAndAccuracy(model, adv, y).accuracy
    }

    /// PGD examples of (x, y) made once on the unperturbed model in eval mode
    /// (the code's `generate_adv_dataset`: PGD-10, random start).
    public static func adversarialSet(_ model: Module, _ x: Tensor, _ y: Tensor, eps: Double, alpha: Double, steps: Int,
                                      batchSize: Int = 256, bounds: (Double, Double) = (0, 1), generator: Generator = .current) throws -> Tensor {
        let tm = ThreatModel(eps: eps, norm: .linf, bounds: bounds)
        var o = Attacks.PGDOptions()
        o.alpha = alpha; o.steps = steps; o.randomStart = true
        let n = x.shape[0]
        var parts = [Tensor]()
        try RobustTraining.withMode(model, eval: true) {
            var start = 0
            while start < n {
                let len = Swift.min(batchSize, n - start)
                parts.append(try Attacks.pgd({ try model($0) }, x.narrow(0, start, len), y.narrow(0, start, len), tm, o, generator: generator))
                start += len
            }
        }
        return try cat(parts, dim: 0).detach()
    }

    /// Runs `body` with only `trainable` requiring grad in `model` (no graph
    /// for the rest); every flag is restored afterwards.
    static func withOnly<T>(_ trainable: [Tensor], in model: Module, _ body: () throws -> T) rethrows -> T {
        let params = model.allParameters()
        let flags = params.map(\.requiresGrad)
        defer { for (p, f) in zip(params, flags) { p.requiresGrad = f } }
        for p in params { p.requiresGrad = trainable.contains { $0 === p } }
        return try body()
    }

    /// The indices 0..<n shuffled by `generator`, in batches of `size` (the last may be short).
    static func shuffledBatches(_ n: Int, _ size: Int, _ generator: Generator) -> [[Int]] {
        let order = generator.permutation(n)
        return stride(from: 0, to: n, by: size).map { Array(order[$0..<Swift.min($0 + size, n)]) }
    }

    // MARK: module robust criticality

    /// The candidate modules: every Conv2d and Linear that has a weight
    /// (their `.weight` is what MRC perturbs; biases and BatchNorm excluded).
    public static func candidates(_ model: Module) -> [String] {
        model.namedModules().filter { ($0.module is Conv2d || $0.module is Linear) && $0.module.parameter("weight") != nil }.map(\.name)
    }

    public struct MRCOptions {
        /// The weight perturbation's radius relative to the weight: ‖Δ‖_F ≤ eps·‖θ‖_F.
        public var eps = 0.1
        /// Passes of gradient ascent over the fixed set (the projection follows each pass).
        public var epochs = 10
        /// Plain SGD step size of the ascent (no momentum, no weight decay).
        public var lr = 1.0
        public var batchSize = 512
        public init() {}
    }

    public struct MRC {
        public let module: String
        /// max over passes of the perturbed loss, minus the clean loss (≥ 0).
        public let mrc: Double
        public let loss0: Double, lossMax: Double
        /// Accuracy on the set before, and under the perturbation with the largest loss.
        public let robustAcc0: Double, robustAccWorst: Double
    }

    /// MRC of each module (RiFT Eq. 3–4 as the code computes it): with the
    /// model in eval mode and only `name.weight` free, gradient ascent on the
    /// mean cross-entropy over the fixed set `x` (already adversarial) with
    /// SGD (`lr`), in shuffled batches; after each pass Δ is projected onto
    /// ‖Δ‖_F ≤ eps·‖θ‖_F and the loss R_e evaluated. MRC = max_e R_e − R₀.
    /// Our reading: the maximum includes R₀ itself (so MRC ≥ 0 and is 0 for
    /// eps = 0); the code starts its maximum at 0. The weights and every
    /// requires-grad flag are restored exactly; results sorted by MRC, lowest first.
    public static func criticality(_ model: Module, _ x: Tensor, _ y: Tensor, modules: [String]? = nil,
                                   options o: MRCOptions = MRCOptions(), generator: Generator = .current,
                                   progress: ((String) -> Void)? = nil) throws -> [MRC] {
        guard o.eps >= 0, o.eps.isFinite, o.epochs >= 1, o.lr >= 0, o.lr.isFinite, o.batchSize >= 1 else {
            throw TensorError("eps and lr must be non-negative numbers, epochs and batch_size at least 1")
        }
        guard x.ndim >= 1, y.shape == [x.shape[0]], x.shape[0] > 0 else {
            throw TensorError("expected a non-empty set: N inputs and N labels, got shapes \(shapeString(x.shape)) and \(shapeString(y.shape))")
        }
        let names = modules ?? candidates(model)
        guard !names.isEmpty else { throw TensorError("the model has no Conv2d or Linear weight to measure") }
        let weights = try names.map { name -> Tensor in
            guard let w = try model.submodule(name).parameter("weight") else { throw TensorError("module '\(name)' has no weight") }
            return w
        }
        let (loss0, acc0) = try lossAndAccuracy(model, x, y, batchSize: o.batchSize)
        var out = [MRC]()
        for (k, (name, w)) in zip(names, weights).enumerated() {
            progress?("mrc \(k + 1)/\(names.count): \(name)")
            let run = try ascent(model, weight: w, x, y, options: o, generator: generator)
            var lossMax = loss0, accWorst = acc0
            for (le, ae) in zip(run.losses, run.accuracies) where le > lossMax { lossMax = le; accWorst = ae }
            out.append(MRC(module: name, mrc: lossMax - loss0, loss0: loss0, lossMax: lossMax, robustAcc0: acc0, robustAccWorst: accWorst))
        }
        return out.sorted { $0.mrc < $1.mrc }
    }

    /// One worst-case weight perturbation, as MRC runs it for one module.
    public struct Ascent {
        /// Loss and accuracy on the set after each pass (after the projection).
        public let losses: [Double], accuracies: [Double]
        /// Δ after the last pass, and the bound eps·‖θ‖_F it was projected to.
        public let delta: Tensor
        public let radius: Double
    }

    /// Gradient ascent on the mean cross-entropy over (x, y) in `weight`
    /// alone, the model in eval mode: `epochs` passes in shuffled batches of
    /// plain SGD steps (`lr`), each pass followed by the projection
    /// Δ ← Δ·eps/(‖Δ‖_F/‖θ‖_F) when ‖Δ‖_F > eps·‖θ‖_F and an evaluation. The
    /// weight, every requires-grad flag and the training modes are restored exactly.
    public static func ascent(_ model: Module, weight w: Tensor, _ x: Tensor, _ y: Tensor, options o: MRCOptions = MRCOptions(),
                              generator: Generator = .current) throws -> Ascent {
        guard model.allParameters().contains(where: { $0 === w }) else { throw TensorError("the weight is not a parameter of the model") }
        return try withOnly([w], in: model) { try ascentOnly(model, weight: w, x, y, options: o, generator: generator) }
    }

    private static func ascentOnly(_ model: Module, weight w: Tensor, _ x: Tensor, _ y: Tensor, options o: MRCOptions,
                                   generator: Generator) throws -> Ascent {
        let initial = try w.detach().clone()
        defer { _ = try? GradMode.noGrad { try w.copy_(initial) } }
        let initialNorm = try initial.norm().double()
        var losses = [Double](), accuracies = [Double]()
        try RobustTraining.withMode(model, eval: true) {
            for _ in 0..<o.epochs {
                for idx in shuffledBatches(x.shape[0], o.batchSize, generator) {
                    try Interrupt.check()
                    let loss = try Loss.crossEntropy(model(x.indexSelect(0, idx)), y.indexSelect(0, idx))
                    let g = try grad([loss], [w])[0] ?? Tensor.zeros(w.shape)
                    _ = try GradMode.noGrad { try w.add_(o.lr * g) }   // ascent: SGD on −CE
                }
                try GradMode.noGrad {
                    let delta = try w - initial
                    let times = try delta.norm().double() / initialNorm      // ‖Δ‖_F / ‖θ‖_F
                    if initialNorm == 0 { try w.copy_(initial) }              // a zero weight has radius 0
                    else if times > o.eps { try w.copy_(initial + delta / times * o.eps) }
                }
                let (le, ae) = try lossAndAccuracy(model, x, y, batchSize: o.batchSize)
                losses.append(le); accuracies.append(ae)
            }
        }
        let delta = try GradMode.noGrad { try (w - initial).detach() }
        return Ascent(losses: losses, accuracies: accuracies, delta: delta, radius: o.eps * initialNorm)
    }

    // MARK: fine-tuning

    public struct FinetuneOptions {
        public var lr = 1e-3
        public var momentum = 0.9
        public var weightDecay = 5e-4
        public var epochs = 10
        /// Epochs after which the lr is multiplied by `gamma` (the code: epochs/2).
        public var milestones: [Int]? = nil
        public var gamma = 0.1
        public var batchSize = 128
        public init() {}
    }

    public struct Epoch { public let epoch: Int; public let loss: Double; public let valAccuracy: Double; public let seconds: Double }

    /// Fine-tunes only `module`'s parameters on clean (x, y) with SGD
    /// (momentum, weight decay, a multistep schedule), the whole model in
    /// train mode (so every BatchNorm's running statistics update, as in the
    /// code); after each epoch the clean accuracy on (valX, valY); the model
    /// ends with the state of the best epoch. Every other parameter is
    /// unchanged bit for bit. `transform` augments each training batch.
    public static func finetune(_ model: Module, module name: String, _ x: Tensor, _ y: Tensor, valX: Tensor, valY: Tensor,
                                options o: FinetuneOptions = FinetuneOptions(), transform: ((Tensor) throws -> Tensor)? = nil,
                                generator: Generator = .current, onEpoch: ((Epoch) throws -> Void)? = nil) throws -> [Epoch] {
        guard o.epochs >= 1, o.batchSize >= 1 else { throw TensorError("epochs and batch_size must be at least 1") }
        guard x.shape[0] > 0, y.shape == [x.shape[0]] else { throw TensorError("the training set must have N inputs and N labels") }
        let chosen = try model.submodule(name).allParameters()
        guard !chosen.isEmpty else { throw TensorError("module '\(name)' has no parameters to fine-tune") }
        return try withOnly(chosen, in: model) {
            try finetuneOnly(model, chosen, x, y, valX: valX, valY: valY, options: o, transform: transform, generator: generator, onEpoch: onEpoch)
        }
    }

    private static func finetuneOnly(_ model: Module, _ chosen: [Tensor], _ x: Tensor, _ y: Tensor, valX: Tensor, valY: Tensor,
                                     options o: FinetuneOptions, transform: ((Tensor) throws -> Tensor)?,
                                     generator: Generator, onEpoch: ((Epoch) throws -> Void)?) throws -> [Epoch] {
        let opt = try SGD(chosen, lr: o.lr, momentum: o.momentum, weightDecay: o.weightDecay)
        let sched = try LRScheduler(opt, .multistep(milestones: o.milestones ?? [o.epochs / 2], gamma: o.gamma))
        let saved = model.namedModules().map { ($0.module, $0.module.training) }
        defer { for (m, t) in saved { m.setTrainingFlag(t) } }
        var curve = [Epoch](), best = -1.0, bestState: [(name: String, tensor: Tensor)]? = nil
        for e in 1...o.epochs {
            let t0 = Date()
            model.train()
            var total = 0.0, batches = 0
            for idx in shuffledBatches(x.shape[0], o.batchSize, generator) {
                try Interrupt.check()
                var xb = try x.indexSelect(0, idx)
                if let transform { xb = try transform(xb) }
                let loss = try Loss.crossEntropy(model(xb), y.indexSelect(0, idx))
                opt.zeroGrad()
                try loss.backward()
                try opt.step()
                total += try loss.double(); batches += 1
            }
            sched.step()
            let acc = try lossAndAccuracy(model, valX, valY).accuracy
            let record = Epoch(epoch: e, loss: total / Double(Swift.max(batches, 1)), valAccuracy: acc, seconds: Date().timeIntervalSince(t0))
            curve.append(record)
            if acc > best { best = acc; bestState = try StateDict.copy(model.stateDict()) }
            try onEpoch?(record)
        }
        if let bestState { try model.loadStateDict(bestState) }
        return curve
    }

    // MARK: interpolation

    public struct Point { public let alpha: Double; public let clean: Double; public let robust: Double }

    /// For each α: θ(α) = α·θ_FT + (1−α)·θ_AT (`StateDict.interpolate`) loaded
    /// into `model`, and its clean and PGD robust accuracy on (x, y). The
    /// model is left holding θ_FT.
    public static func interpolation(_ model: Module, at: [(name: String, tensor: Tensor)], ft: [(name: String, tensor: Tensor)],
                                     alphas: [Double], _ x: Tensor, _ y: Tensor, eps: Double, alpha: Double, steps: Int,
                                     bounds: (Double, Double) = (0, 1), generator: Generator = .current,
                                     progress: ((String) -> Void)? = nil) throws -> [Point] {
        guard !alphas.isEmpty else { throw TensorError("alphas must not be empty") }
        for a in alphas where !(a >= 0 && a <= 1) { throw TensorError("alphas must be in [0, 1], got \(a)") }
        var points = [Point]()
        for (k, a) in alphas.enumerated() {
            progress?("interpolation \(k + 1)/\(alphas.count): alpha \(a)")
            try model.loadStateDict(StateDict.interpolate(at, ft, alpha: a))
            let clean = try lossAndAccuracy(model, x, y).accuracy
            let robust = try robustAccuracy(model, x, y, eps: eps, alpha: alpha, steps: steps, bounds: bounds, generator: generator)
            points.append(Point(alpha: a, clean: clean, robust: robust))
        }
        try model.loadStateDict(ft)
        return points
    }

    /// The α with the best clean accuracy among those whose robust accuracy
    /// is at least that of the smallest α (θ_AT at α = 0) minus `tolerance`
    /// (our reading: the paper's README picks α by eye on the test set; parry
    /// picks it on a validation split). Ties go to the smaller α.
    public static func chooseAlpha(_ points: [Point], tolerance: Double = 0.005) throws -> Point {
        guard let base = points.min(by: { $0.alpha < $1.alpha }) else { throw TensorError("no interpolation points") }
        let ok = points.filter { $0.robust >= base.robust - tolerance }
        return ok.sorted { $0.alpha < $1.alpha }.max { $0.clean < $1.clean } ?? base
    }
}

// MARK: - the whole method

extension RiFT {
    public struct Config {
        /// The module to fine-tune; nil picks the lowest MRC ("auto").
        public var module: String? = nil
        /// With "auto": leave out the first and the last candidate (the code's README prefers middle layers).
        public var skipFirstLast = false
        public var mrc = MRCOptions()
        /// The fixed adversarial set for MRC (PGD on the validation inputs): budget, step, steps.
        public var mrcAttack: (eps: Double, alpha: Double, steps: Int) = (8.0 / 255, 2.0 / 255, 10)
        public var finetune = FinetuneOptions()
        public var alphas: [Double] = (0...10).map { Double($0) / 10 }
        /// PGD for the robust accuracy of each interpolated model.
        public var evalAttack: (eps: Double, alpha: Double, steps: Int) = (8.0 / 255, 2.0 / 255, 10)
        public var tolerance = 0.005
        public var bounds: (Double, Double) = (0, 1)
        public init() {}
    }

    public struct Result {
        /// The MRC table (nil when the module was given).
        public let mrc: [MRC]?
        public let module: String
        public let curve: [Epoch]
        public let points: [Point]
        public let chosen: Point
    }

    /// RiFT end to end on `model` (adversarially trained; it is changed: it
    /// ends holding θ(α) of the chosen α): MRC on a fixed PGD set built from
    /// the validation inputs (unless a module is given), fine-tuning of the
    /// chosen module on (x, y), interpolation evaluated on the validation
    /// split, and the choice of α.
    public static func run(_ model: Module, _ x: Tensor, _ y: Tensor, valX: Tensor, valY: Tensor, config c: Config = Config(),
                           transform: ((Tensor) throws -> Tensor)? = nil, generator: Generator = .current,
                           progress: ((String) -> Void)? = nil, onEpoch: ((Epoch) throws -> Void)? = nil) throws -> Result {
        for a in c.alphas where !(a >= 0 && a <= 1) { throw TensorError("alphas must be in [0, 1], got \(a)") }
        guard c.tolerance >= 0 else { throw TensorError("tolerance must be non-negative, got \(c.tolerance)") }
        var table: [MRC]? = nil
        let module: String
        if let given = c.module {
            _ = try model.submodule(given)
            module = given
        } else {
            var names = candidates(model)
            if c.skipFirstLast && names.count > 2 { names = Array(names.dropFirst().dropLast()) }
            progress?("building the adversarial set for MRC")
            let adv = try adversarialSet(model, valX, valY, eps: c.mrcAttack.eps, alpha: c.mrcAttack.alpha, steps: c.mrcAttack.steps,
                                         bounds: c.bounds, generator: generator)
            let ranked = try criticality(model, adv, valY, modules: names, options: c.mrc, generator: generator, progress: progress)
            guard let lowest = ranked.first else { throw TensorError("no module to fine-tune") }   // criticality rejects an empty list
            table = ranked
            module = lowest.module
        }
        let at = try StateDict.copy(model.stateDict())
        let curve = try finetune(model, module: module, x, y, valX: valX, valY: valY, options: c.finetune, transform: transform,
                                 generator: generator, onEpoch: { e in progress?("fine-tuning \(module): epoch \(e.epoch)/\(c.finetune.epochs), val acc \(String(format: "%.4f", e.valAccuracy))"); try onEpoch?(e) })
        let ft = try StateDict.copy(model.stateDict())
        let points = try interpolation(model, at: at, ft: ft, alphas: c.alphas, valX, valY, eps: c.evalAttack.eps, alpha: c.evalAttack.alpha,
                                       steps: c.evalAttack.steps, bounds: c.bounds, generator: generator, progress: progress)
        let chosen = try chooseAlpha(points, tolerance: c.tolerance)
        try model.loadStateDict(StateDict.interpolate(at, ft, alpha: chosen.alpha))
        return Result(mrc: table, module: module, curve: curve, points: points, chosen: chosen)
    }
}
