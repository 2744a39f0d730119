import Foundation
import ParryCore

/// How a labelled dataset is split among federated clients.
public enum PartitionMethod {
    /// A random permutation cut into n nearly equal parts.
    case iid
    /// Per class, shares drawn from Dirichlet(α·1); redrawn until every client
    /// holds at least `minSize` samples (as FedML / Flower do).
    case dirichlet(alpha: Double, minSize: Int)
    /// RFFL's power law: sizes ∝ linspace(ppf(0.01), ppf(0.99)) of a power
    /// law with exponent a (scipy's `powerlaw`, ppf(q) = q^(1/a)), over a shuffled order.
    case powerlaw(a: Double)
    /// RFFL's class imbalance (CLA): client k holds classes 1..c_k,
    /// c_k = round(linspace(1, C, n)), every client the same number of samples
    /// (`size`, or the largest size the class counts allow without reuse).
    case classes(size: Int?)
    /// McMahan et al.'s shards: sort by label, cut into n·perClient shards, deal them out at random.
    case shards(perClient: Int)
}

/// Client index lists (0-based into the dataset) and a class histogram.
public struct Partition {
    public let indices: [[Int]]
    /// histogram[k][c]: samples of class c held by client k.
    public let histogram: [[Int]]
    public var sizes: [Int] { indices.map(\.count) }
}

public enum Partitioner {
    /// Splits samples with 0-based `labels` (classes 0..<classes) among `clients` clients.
    public static func split(labels: [Int], classes: Int, clients n: Int, method: PartitionMethod,
                             generator g: Generator) throws -> Partition {
        let total = labels.count
        guard n >= 1 else { throw TensorError("the number of clients must be at least 1, got \(n)") }
        guard total >= n else { throw TensorError("cannot split \(total) samples among \(n) clients: some would be empty") }
        guard classes >= 1 else { throw TensorError("need at least one class") }
        var parts: [[Int]]
        switch method {
        case .iid:
            parts = arraySplit(g.permutation(total), n)
        case let .dirichlet(alpha, minSize):
            guard alpha > 0, alpha.isFinite else { throw TensorError("dirichlet alpha must be a positive number, got \(alpha)") }
            guard minSize >= 1, minSize * n <= total else {
                throw TensorError("min_size must be in 1...\(total / n) for \(total) samples and \(n) clients, got \(minSize)")
            }
            parts = try dirichlet(labels, classes, n, alpha, minSize, g)
        case let .powerlaw(a):
            guard a > 0, a.isFinite else { throw TensorError("powerlaw exponent a must be positive, got \(a)") }
            let lo = pow(0.01, 1 / a), hi = pow(0.99, 1 / a)
            let b = (0..<n).map { n == 1 ? lo : lo + (hi - lo) * Double($0) / Double(n - 1) }
            let sum = b.reduce(0, +)
            let order = g.permutation(total)
            var start = 0
            parts = []
            for k in 0..<n {
                // ceil as RFFL does; the last client takes what the rounding left.
                let want = Int((b[k] / sum * Double(total)).rounded(.up))
                let end = k == n - 1 ? total : min(total - (n - 1 - k), start + want)
                parts.append(Array(order[start..<end]))
                start = end
            }
        case let .classes(size):
            parts = try classImbalance(labels, classes, n, size, g)
        case let .shards(perClient):
            guard perClient >= 1, n * perClient <= total else {
                throw TensorError("shards per client must be in 1...\(total / n), got \(perClient)")
            }
            let order = g.permutation(total)
            let sorted = order.sorted { (labels[$0], $0) < (labels[$1], $1) }
            let shards = arraySplit(sorted, n * perClient)
            let deal = g.permutation(n * perClient)
            parts = (0..<n).map { k in (0..<perClient).flatMap { shards[deal[k * perClient + $0]] } }
        }
        for (k, p) in parts.enumerated() where p.isEmpty {
            throw TensorError("client \(k + 1) received no samples; use fewer clients or another method")
        }
        let hist = parts.map { p -> [Int] in
            var h = [Int](repeating: 0, count: classes)
            for i in p { h[labels[i]] += 1 }
            return h
        }
        return Partition(indices: parts, histogram: hist)
    }

    /// numpy's array_split: the first (count mod n) parts get one extra element.
    static func arraySplit(_ a: [Int], _ n: Int) -> [[Int]] {
        let q = a.count / n, r = a.count % n
        var out: [[Int]] = [], start = 0
        for k in 0..<n {
            let len = q + (k < r ? 1 : 0)
            out.append(Array(a[start..<start + len]))
            start += len
        }
        return out
    }

    static func byClass(_ labels: [Int], _ classes: Int, _ g: Generator) throws -> [[Int]] {
        var pools = [[Int]](repeating: [], count: classes)
        for i in g.permutation(labels.count) {
            let c = labels[i]
            guard c >= 0, c < classes else { throw TensorError("label \(c + 1) is outside 1..\(classes)") }
            pools[c].append(i)
        }
        return pools
    }

    static func dirichlet(_ labels: [Int], _ classes: Int, _ n: Int, _ alpha: Double, _ minSize: Int,
                          _ g: Generator) throws -> [[Int]] {
        let pools = try byClass(labels, classes, g)
        for _ in 0..<1000 {
            var parts = [[Int]](repeating: [], count: n)
            for pool in pools where !pool.isEmpty {
                let shares = Sampling.dirichlet(alpha: alpha, count: n, g)
                var cum = 0.0, start = 0
                for k in 0..<n {
                    cum += shares[k]
                    let end = k == n - 1 ? pool.count : min(pool.count, Int((cum * Double(pool.count)).rounded()))
                    if end > start { parts[k] += pool[start..<end]; start = end }
                }
            }
            if parts.allSatisfy({ $0.count >= minSize }) { return parts.map { $0.sorted() } }
        }
        throw TensorError("dirichlet(alpha=\(alpha)) did not give every client \(minSize) samples in 1000 draws; raise alpha or lower min_size")
    }

    static func classImbalance(_ labels: [Int], _ classes: Int, _ n: Int, _ size: Int?, _ g: Generator) throws -> [[Int]] {
        var pools = try byClass(labels, classes, g)
        let counts = (0..<n).map { k -> Int in
            let v = n == 1 ? Double(classes) : 1 + Double(classes - 1) * Double(k) / Double(n - 1)
            return max(1, min(classes, Int(v.rounded())))
        }
        // Class c is drawn by every client with c_k > c: demand(m) = Σ ⌈m / c_k⌉ at most.
        func fits(_ m: Int) -> Bool {
            (0..<classes).allSatisfy { c in counts.filter { $0 > c }.reduce(0) { $0 + (m + $1 - 1) / $1 } <= pools[c].count }
        }
        var m: Int
        if let size {
            guard size >= 1 else { throw TensorError("size must be positive, got \(size)") }
            guard fits(size) else { throw TensorError("classes: \(size) samples per client need more samples of some class than the data has") }
            m = size
        } else {
            m = labels.count / n
            while m > 0 && !fits(m) { m -= 1 }
            guard m > 0 else { throw TensorError("classes: the data cannot give every client a sample of each of its classes") }
        }
        var parts = [[Int]](repeating: [], count: n)
        for k in 0..<n {
            let ck = counts[k]
            for c in 0..<ck {
                let take = m / ck + (c < m % ck ? 1 : 0)
                parts[k] += pools[c].suffix(take)
                pools[c].removeLast(take)
            }
            parts[k].sort()
        }
        return parts
    }
}

/// Random draws that the partitions and adversaries need beyond `Generator`'s.
public enum Sampling {
    /// Gamma(shape, 1) by Marsaglia & Tsang (2000); shape < 1 boosted by U^(1/shape).
    public static func gamma(shape: Double, _ g: Generator) -> Double {
        if shape < 1 {
            let u = max(uniform(g), 1e-300)
            return gamma(shape: shape + 1, g) * pow(u, 1 / shape)
        }
        let d = shape - 1.0 / 3, c = 1 / (9 * d).squareRoot()
        while true {
            var x = 0.0, v = 0.0
            repeat { x = normal(g); v = 1 + c * x } while v <= 0
            v = v * v * v
            let u = uniform(g)
            if u < 1 - 0.0331 * x * x * x * x { return d * v }
            if Foundation.log(max(u, 1e-300)) < 0.5 * x * x + d * (1 - v + Foundation.log(v)) { return d * v }
        }
    }

    /// A point of the simplex from Dirichlet(α, ..., α).
    public static func dirichlet(alpha: Double, count: Int, _ g: Generator) -> [Double] {
        var v = (0..<count).map { _ in gamma(shape: alpha, g) }
        var s = v.reduce(0, +)
        if !(s > 0) { v = [Double](repeating: 1, count: count); s = Double(count) }
        return v.map { $0 / s }
    }

    /// Uniform in [0, 1) with 53 random bits.
    public static func uniform(_ g: Generator) -> Double { Double(g.next() >> 11) * (1.0 / 9_007_199_254_740_992.0) }

    public static func normal(_ g: Generator) -> Double {
        let u1 = (Double(g.next() >> 11) + 1) * (1.0 / 9_007_199_254_740_993.0)
        let u2 = uniform(g)
        return (-2 * Foundation.log(u1)).squareRoot() * cos(2 * .pi * u2)
    }
}
