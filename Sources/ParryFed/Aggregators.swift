import Foundation
import ParryCore

/// How the server combines the round's updates into one.
public enum Aggregator {
    /// Sample-weighted mean (McMahan et al. 2017).
    case fedavg
    /// Coordinate-wise median (Yin et al. 2018); the mean of the two middle values for an even count.
    case median
    /// Coordinate-wise mean after dropping the ⌊β·n⌋ largest and smallest values.
    case trimmedMean(beta: Double)
    /// Multi-Krum (Blanchard et al. 2017): score each update by the summed
    /// squared distances to its n − f − 2 nearest others; average the m lowest
    /// scored (m = 1 is Krum).
    case krum(f: Int, m: Int)
    /// FLTrust (Cao et al. 2021): trust ReLU(cos(g_i, g_0)) against the
    /// server's update g_0 on its root data; updates rescaled to ‖g_0‖.
    case fltrust
    /// RFFL: reputation-weighted, personal models (see `RFFL`).
    case rffl
    /// A user function (updates, weights, round) → aggregate.
    case custom((_ updates: [[Float]], _ weights: [Double], _ round: Int) throws -> [Float])

    public var name: String {
        switch self {
        case .fedavg: return "fedavg"
        case .median: return "median"
        case .trimmedMean: return "trimmed_mean"
        case let .krum(_, m): return m == 1 ? "krum" : "multi_krum"
        case .fltrust: return "fltrust"
        case .rffl: return "rffl"
        case .custom: return "custom"
        }
    }
}

/// The robust aggregation rules on flat updates.
public enum Aggregation {
    /// Σ w_i u_i / Σ w_i.
    public static func weightedMean(_ u: [[Float]], weights w: [Double]) throws -> [Float] {
        try check(u)
        guard w.count == u.count, w.allSatisfy({ $0 >= 0 && $0.isFinite }) else {
            throw TensorError("fedavg needs one non-negative weight per update")
        }
        let s = w.reduce(0, +)
        guard s > 0 else { throw TensorError("fedavg weights sum to zero") }
        return Vec.weightedSum(u, w.map { $0 / s })
    }

    public static func median(_ u: [[Float]]) throws -> [Float] {
        try check(u)
        return coordinatewise(u) { col in
            let n = col.count
            return n % 2 == 1 ? Double(col[n / 2]) : (Double(col[n / 2 - 1]) + Double(col[n / 2])) / 2
        }
    }

    public static func trimmedMean(_ u: [[Float]], beta: Double) throws -> [Float] {
        try check(u)
        guard beta >= 0, beta < 0.5 else { throw TensorError("trimmed_mean beta must be in [0, 0.5), got \(beta)") }
        let k = Int(beta * Double(u.count))
        return coordinatewise(u) { col in
            var s = 0.0
            for v in col[k..<col.count - k] { s += Double(v) }
            return s / Double(col.count - 2 * k)
        }
    }

    /// Returns the aggregate and the 0-based indices selected, best score first.
    public static func krum(_ u: [[Float]], f: Int, m: Int) throws -> (aggregate: [Float], selected: [Int]) {
        try check(u)
        let n = u.count
        guard f >= 0, n - f - 2 >= 1 else {
            throw TensorError("krum with f = \(f) needs more than f + 2 = \(f + 2) updates, got \(n)")
        }
        guard m >= 1, m <= n else { throw TensorError("multi_krum m must be in 1...\(n), got \(m)") }
        var d = [[Double]](repeating: [Double](repeating: 0, count: n), count: n)
        for i in 0..<n { for j in i + 1..<n { let v = Vec.squaredDistance(u[i], u[j]); d[i][j] = v; d[j][i] = v } }
        let closest = n - f - 2
        let scores = (0..<n).map { i in
            (0..<n).filter { $0 != i }.map { d[i][$0] }.sorted().prefix(closest).reduce(0, +)
        }
        let order = (0..<n).sorted { (scores[$0], $0) < (scores[$1], $1) }
        let chosen = Array(order.prefix(m))
        return (Vec.weightedSum(chosen.map { u[$0] }, [Double](repeating: 1 / Double(m), count: m)), chosen)
    }

    /// FLTrust: TS_i = ReLU(cos(g_i, g_0)); ĝ_i = ‖g_0‖/‖g_i‖ · g_i;
    /// aggregate Σ TS_i ĝ_i / Σ TS_i (zero when every trust is zero).
    public static func fltrust(_ u: [[Float]], root g0: [Float]) throws -> (aggregate: [Float], trust: [Double]) {
        try check(u)
        guard g0.count == u[0].count else { throw TensorError("fltrust root update has the wrong length") }
        let n0 = Vec.norm(g0)
        let trust = u.map { max(0, Vec.cosine($0, g0)) }
        let total = trust.reduce(0, +)
        guard total > 0 else { return ([Float](repeating: 0, count: g0.count), trust) }
        let w = zip(u, trust).map { v, t in t / total * n0 / max(Vec.norm(v), 1e-12) }
        return (Vec.weightedSum(u, w), trust)
    }

    static func check(_ u: [[Float]]) throws {
        guard let n = u.first?.count else { throw TensorError("no updates to aggregate") }
        guard u.allSatisfy({ $0.count == n }) else { throw TensorError("updates have different lengths") }
    }

    /// Applies `reduce` to each coordinate's sorted column of values.
    static func coordinatewise(_ u: [[Float]], _ reduce: ([Float]) -> Double) -> [Float] {
        let n = u[0].count
        var col = [Float](repeating: 0, count: u.count)
        var out = [Float](repeating: 0, count: n)
        for j in 0..<n {
            for i in 0..<u.count { col[i] = u[i][j] }
            col.sort()
            out[j] = Float(reduce(col))
        }
        return out
    }
}
