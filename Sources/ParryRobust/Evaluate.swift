import Foundation
import ParryCore
import ParryNN
import ParryData

/// Robustness evaluation: clean accuracy, robust accuracy per attack, the
/// per-sample worst case over all attacks, and AutoAttack-style sanity flags.
public struct RobustnessReport {
    public var clean: Double
    /// (attack name, robust accuracy) in the order run.
    public var robust: [(String, Double)]
    public var worstCase: Double
    /// Per attack, 1 where the attack fooled a correctly classified sample.
    public var success: [(String, Tensor)]
    /// 1 where the sample is correct and no attack fooled it.
    public var robustMask: Tensor
    public var warnings: [String]
}

public enum Evaluation {
    /// An attack as evaluation runs it: (x, y) → x_adv.
    public typealias Attack = (name: String, run: (Tensor, Tensor) throws -> Tensor, whiteBox: Bool)

    public static func evaluate(_ model: Classifier, _ x: Tensor, _ y: Tensor, attacks: [Attack], batchSize: Int = 500,
                                progress: ((String) -> Void)? = nil) throws -> RobustnessReport {
        guard batchSize >= 1 else { throw TensorError("batch_size must be at least 1") }
        _ = try AttackMath.check(model, x, y)
        let n = x.shape[0]
        var correct = [Float](), fooled = attacks.map { _ in [Float]() }
        var warnings = [String]()
        var start = 0
        while start < n {
            let len = min(batchSize, n - start)
            let xb = try x.narrow(0, start, len), yb = try y.narrow(0, start, len)
            let ok = try GradMode.noGrad { try 1 - AttackMath.success(model(xb), yb, targeted: false) }
            correct += ok.floats()
            for (k, a) in attacks.enumerated() {
                try Interrupt.check()
                progress?("\(a.name): \(start + len)/\(n)")
                let adv = try a.run(xb, yb)
                let s = try GradMode.noGrad { try AttackMath.success(model(adv), yb, targeted: false) * ok }
                fooled[k] += s.floats()
            }
            if start == 0 { warnings += try sanity(model, xb, yb) }
            start += len
        }
        let clean = Double(correct.reduce(0, +)) / Double(max(n, 1))
        var robust = [(String, Double)](), success = [(String, Tensor)]()
        var stillRobust = correct
        for (k, a) in attacks.enumerated() {
            let f = fooled[k]
            robust.append((a.name, Double(zip(correct, f).map { $0 - $1 }.reduce(0, +)) / Double(max(n, 1))))
            success.append((a.name, try Tensor(f, shape: [n])))
            for i in 0..<n where f[i] > 0 { stillRobust[i] = 0 }
        }
        let worst = Double(stillRobust.reduce(0, +)) / Double(max(n, 1))
        // A black-box attack beating every white-box one hints at gradient masking.
        let white = zip(attacks, robust).filter { $0.0.whiteBox }.map { $0.1.1 }
        let black = zip(attacks, robust).filter { !$0.0.whiteBox }
        if let bestWhite = white.min() {
            for (a, r) in black where r.1 < bestWhite - 1e-9 {
                warnings.append("\(a.name) (black-box) is stronger than every white-box attack (\(String(format: "%.4f", r.1)) < \(String(format: "%.4f", bestWhite))): a sign of gradient masking")
            }
        }
        return RobustnessReport(clean: clean, robust: robust, worstCase: worst, success: success,
                                robustMask: try Tensor(stillRobust, shape: [n]), warnings: warnings)
    }

    /// AutoAttack's checks on a batch: randomness, softmax outputs, zero gradients.
    public static func sanity(_ model: Classifier, _ x: Tensor, _ y: Tensor) throws -> [String] {
        var warnings = [String]()
        let (z1, z2) = try GradMode.noGrad { (try model(x), try model(x)) }
        if try (z1 - z2).abs().max().double() > 1e-5 {
            warnings.append("the model's outputs differ between two forward passes on the same input (randomness or train mode): results may not be reliable")
        }
        let rowSums = try z1.sum(dim: 1)
        let nonNegative = try z1.min().double() >= 0
        if nonNegative, try (rowSums - 1).abs().max().double() < 1e-4 {
            warnings.append("the model's outputs look like probabilities (rows are non-negative and sum to 1); attacks expect logits")
        }
        let (g, _, _) = try AttackMath.gradient(model, x, y, .ce, targeted: false)
        let zeroRows = try AttackMath.sampleNorm(g, .linf).eq(0).mean().double()
        if zeroRows > 0 {
            warnings.append(String(format: "the gradient is exactly zero for %.1f%% of the samples: gradient-based attacks cannot work there (gradient masking?)", zeroRows * 100))
        }
        return warnings
    }
}

extension Evaluation {
    /// Accuracy under common corruptions (Hendrycks & Dietterich 2019): for
    /// each kind and severity, every batch of x corrupted (`Corruptions`,
    /// seeded by `generator`) and classified. Rows in kind-major order.
    public static func corruptionAccuracy(_ model: Classifier, _ x: Tensor, _ y: Tensor, kinds: [Corruptions.Kind] = Corruptions.Kind.allCases,
                                          severities: [Int] = [1, 2, 3, 4, 5], batchSize: Int = 500,
                                          generator: Generator = .current) throws -> [(kind: Corruptions.Kind, severity: Int, accuracy: Double)] {
        guard batchSize >= 1 else { throw TensorError("batch_size must be at least 1") }
        for s in severities where !(1...5).contains(s) { throw TensorError("severities must be in 1…5, got \(s)") }
        _ = try AttackMath.check(model, x, y)
        let n = x.shape[0]
        var rows = [(kind: Corruptions.Kind, severity: Int, accuracy: Double)]()
        for kind in kinds { for s in severities {
            var correct = 0.0, start = 0
            while start < n {
                let len = Swift.min(batchSize, n - start)
                let xb = try Corruptions.apply(x.narrow(0, start, len), kind, severity: s, generator: generator)
                correct += try GradMode.noGrad { try model(xb).argmax(dim: 1).eq(y.narrow(0, start, len)).sum().double() }
                start += len
            }
            rows.append((kind, s, correct / Double(Swift.max(n, 1))))
        } }
        return rows
    }
}
