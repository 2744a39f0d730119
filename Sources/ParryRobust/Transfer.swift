import Foundation
import ParryCore
import ParryNN

// The transfer-attack protocol of DVERGE's evaluation (eval/eval_bbox.py,
// eval_transferability.py, eval_diversity.py in zjysteven/DVERGE).

public enum Transfer {
    /// An attack crafted on a source model: (source, x, y, ε, version) -> x_adv.
    /// `versions` independent runs (e.g. random restarts) count as separate
    /// adversarial versions of every sample.
    public struct Attack {
        public let name: String
        public let versions: Int
        public let craft: (@escaping Classifier, Module?, Tensor, Tensor, Double, Int) throws -> Tensor
        public init(name: String, versions: Int = 1, craft: @escaping (@escaping Classifier, Module?, Tensor, Tensor, Double, Int) throws -> Tensor) {
            self.name = name; self.versions = versions; self.craft = craft
        }
    }

    public struct Row {
        public let eps: Double
        public let attack: String
        public let source: String
        public let version: Int
        /// Accuracy of each target on this adversarial version.
        public let accuracy: [Double]
    }

    public struct Report {
        public let targets: [String]
        public let clean: [Double]
        public let rows: [Row]
        /// Per ε: each target's accuracy counting a sample only if it is correct
        /// under every adversarial version at that ε (the paper's "all" row).
        public let all: [(eps: Double, accuracy: [Double])]
    }

    /// 0/1 float mask of correct predictions, in batches, without grad.
    static func correct(_ model: Classifier, _ x: Tensor, _ y: Tensor, batchSize: Int = 500) throws -> Tensor {
        let n = x.shape[0]
        var parts = [Tensor]()
        for start in stride(from: 0, to: n, by: batchSize) {
            let len = Swift.min(batchSize, n - start)
            let z = try GradMode.noGrad { try model(x.narrow(0, start, len)) }
            parts.append(try z.argmax(dim: 1).eq(y.narrow(0, start, len)).to(.float32))
        }
        return parts.count == 1 ? parts[0] : try cat(parts, dim: 0)
    }

    /// Black-box transfer evaluation: for every ε, attack, source and
    /// version, adversarial examples crafted on the source (white-box, in
    /// batches), then each target's accuracy on them; plus the "all" row.
    public static func evaluate(sources: [(name: String, model: Classifier, module: Module?)], targets: [(name: String, model: Classifier)],
                                x: Tensor, y: Tensor, eps: [Double], attacks: [Attack], batchSize: Int = 250,
                                progress: ((String) -> Void)? = nil) throws -> Report {
        guard !sources.isEmpty, !targets.isEmpty, !attacks.isEmpty, !eps.isEmpty else {
            throw TensorError("sources, targets, attacks and eps must all be non-empty")
        }
        for e in eps where !(e >= 0 && e.isFinite) { throw TensorError("eps must be non-negative numbers, got \(e)") }
        guard batchSize >= 1 else { throw TensorError("batch_size must be at least 1") }
        let n = x.shape[0]
        let clean = try targets.map { try correct($0.model, x, y).mean().double() }
        var rows = [Row](), all = [(Double, [Double])]()
        for e in eps {
            var robust = try targets.map { _ in try Tensor.ones([n]) }
            for attack in attacks {
                for source in sources {
                    for v in 0..<attack.versions {
                        progress?("ε \(e) · \(attack.name) from \(source.name)" + (attack.versions > 1 ? " (version \(v + 1))" : ""))
                        var parts = [Tensor]()
                        for start in stride(from: 0, to: n, by: batchSize) {
                            try Interrupt.check()
                            let len = Swift.min(batchSize, n - start)
                            parts.append(try attack.craft(source.model, source.module, x.narrow(0, start, len), y.narrow(0, start, len), e, v))
                        }
                        let adv = parts.count == 1 ? parts[0] : try cat(parts, dim: 0)
                        var acc = [Double]()
                        for (k, t) in targets.enumerated() {
                            let c = try correct(t.model, adv, y)
                            robust[k] = try robust[k] * c
                            acc.append(try c.mean().double())
                        }
                        rows.append(Row(eps: e, attack: attack.name, source: source.name, version: v + 1, accuracy: acc))
                    }
                }
            }
            all.append((e, try robust.map { try $0.mean().double() }))
        }
        return Report(targets: targets.map(\.name), clean: clean, rows: rows, all: all)
    }

    /// Indices of the samples every model classifies correctly, shuffled by
    /// `generator` and cut to `limit` (the evaluation scripts' subset).
    static func commonlyCorrect(_ models: [Classifier], _ x: Tensor, _ y: Tensor, limit: Int?, generator: Generator) throws -> [Int] {
        var mask = try Tensor.ones([x.shape[0]])
        for m in models { mask = try mask * correct(m, x, y) }
        let ok = mask.floats().enumerated().filter { $0.element > 0.5 }.map(\.offset)
        guard let limit, limit < ok.count else { return ok }
        let order = generator.permutation(ok.count)
        return order.prefix(limit).map { ok[$0] }.sorted()
    }

    public struct Transferability {
        /// successRate[i][j]: share of the samples where PGD on member i fools
        /// member j under some restart; column M is the whole ensemble.
        public let successRate: [[Double]]
        /// How many samples (all classified correctly by every member) were attacked.
        public let samples: Int
    }

    /// Transferability within an ensemble (eval_transferability.py): on
    /// samples every member classifies correctly, L∞ PGD (random start,
    /// `steps` steps of α, CE) on member i, `restarts` times; a sample counts
    /// as fooled for target j if j misclassifies it under any restart. The
    /// attack of (restart r, member i) draws from Generator(seed: seed + r·M + i),
    /// so each run can be reproduced alone. Members in their current mode.
    public static func transferability(_ models: [Module], _ x: Tensor, _ y: Tensor, eps: Double, steps: Int = 50, restarts: Int = 5,
                                       alpha: Double? = nil, limit: Int? = nil, seed: UInt64 = 0, batchSize: Int = 250) throws -> Transferability {
        let m = models.count
        guard m >= 2 else { throw TensorError("transferability needs at least 2 models, got \(m)") }
        guard restarts >= 1, steps >= 0, batchSize >= 1 else { throw TensorError("restarts and batch_size must be ≥ 1, steps ≥ 0") }
        _ = try Diversity.checkOutputs(models, x)
        let classifiers: [Classifier] = models.map { model in { try model($0) } }
        let ensemble = try Ensemble(models)
        let idx = try commonlyCorrect(classifiers, x, y, limit: limit, generator: Generator(seed: seed))
        guard !idx.isEmpty else { throw TensorError("no sample is classified correctly by every model") }
        let xs = try x.indexSelect(0, idx), ys = try y.indexSelect(0, idx), n = idx.count
        var robust = try (0..<m).map { _ in try (0...m).map { _ in try Tensor.ones([n]) } }
        var o = Attacks.PGDOptions()
        o.alpha = alpha ?? eps / 5; o.steps = steps; o.randomStart = true; o.restarts = 1
        let tm = ThreatModel(eps: eps)
        for r in 0..<restarts {
            for i in 0..<m {
                let g = Generator(seed: seed &+ UInt64(r * m + i))
                var parts = [Tensor]()
                for start in stride(from: 0, to: n, by: batchSize) {
                    try Interrupt.check()
                    let len = Swift.min(batchSize, n - start)
                    parts.append(try Attacks.pgd(classifiers[i], xs.narrow(0, start, len), ys.narrow(0, start, len), tm, o, generator: g))
                }
                let adv = parts.count == 1 ? parts[0] : try cat(parts, dim: 0)
                for j in 0..<m { robust[i][j] = try robust[i][j] * correct(classifiers[j], adv, ys) }
                robust[i][m] = try robust[i][m] * correct({ try ensemble($0) }, adv, ys)
            }
        }
        let rates = try robust.map { row in try row.map { 1 - (try $0.mean().double()) } }
        return Transferability(successRate: rates, samples: n)
    }

    /// Vulnerability diversity (eval_diversity.py): on samples every member
    /// classifies correctly, paired with a second independent shuffle as
    /// sources, in batches of `batchSize` with a random layer index per batch,
    /// D[i][j] = mean CE(f_j(x′_i), y_s) with x′_i member i's feature
    /// distillation of x toward x_s (ε, α = ε/steps, momentum 1, no random
    /// start). High off-diagonal values: member i's non-robust features do not fool member j.
    public static func vulnerabilityDiversity(_ models: [Module], _ x: Tensor, _ y: Tensor, layers: [[String]]? = nil,
                                              eps: Double = 0.07, steps: Int = 10, batchSize: Int = 10, limit: Int? = nil,
                                              bounds: (Double, Double) = (0, 1), seed: UInt64 = 0) throws -> [[Double]] {
        let m = models.count
        guard m >= 2 else { throw TensorError("vulnerability_diversity needs at least 2 models, got \(m)") }
        guard batchSize >= 1 else { throw TensorError("batch_size must be at least 1") }
        _ = try Diversity.checkOutputs(models, x)
        let names = try layers ?? models.map { try Models.featureLayers($0) }
        guard names.count == m, let count = names.first?.count, count > 0, names.allSatisfy({ $0.count == count }) else {
            throw TensorError("every model needs the same number of layers (got \(names.map(\.count)))")
        }
        let gen = Generator(seed: seed)
        let classifiers: [Classifier] = models.map { model in { try model($0) } }
        let idx = try commonlyCorrect(classifiers, x, y, limit: limit, generator: gen)
        guard !idx.isEmpty else { throw TensorError("no sample is classified correctly by every model") }
        var o = Diversity.DistillOptions()
        o.eps = eps; o.steps = steps; o.alpha = steps > 0 ? eps / Double(steps) : 0; o.bounds = bounds
        var sums = [[Double]](repeating: [Double](repeating: 0, count: m), count: m)
        let first = gen.permutation(idx.count).map { idx[$0] }, second = gen.permutation(idx.count).map { idx[$0] }
        for start in stride(from: 0, to: idx.count, by: batchSize) {
            try Interrupt.check()
            let end = Swift.min(start + batchSize, idx.count)
            let xb = try x.indexSelect(0, Array(first[start..<end]))
            let xsb = try x.indexSelect(0, Array(second[start..<end])), ysb = try y.indexSelect(0, Array(second[start..<end]))
            let l = Int(gen.integer(0, Int64(count - 1)))
            for i in 0..<m {
                let adv = try Diversity.featureDistill(models[i], layer: names[i][l], xb, xsb, o, generator: gen)
                for j in 0..<m {
                    let ce = try GradMode.noGrad { try Loss.crossEntropy(models[j](adv), ysb, reduction: .sum) }
                    sums[i][j] += try ce.double()
                }
            }
        }
        return sums.map { $0.map { $0 / Double(idx.count) } }
    }
}
