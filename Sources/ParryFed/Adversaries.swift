import Foundation
import ParryCore

/// What a Byzantine participant does to the update it uploads. The kinds and
/// their constants follow RFFL's code (`fr`, `lf`, `re`, `vi`, `sr`).
public enum Adversary {
    /// Uploads U(−1, 1) noise without training (RFFL `fr`); `zero` uploads zeros.
    case freeRider(zero: Bool)
    /// Trains on labels mapped by `map` (0-based class → class), uploads honestly.
    case labelFlip(map: [Int: Int])
    /// Trains honestly, uploads −k·Δ.
    case signFlip(k: Double)
    /// Trains, then multiplies each entry by U(−s, s)·s (RFFL `re`, s = 10).
    case rescale(scale: Double)
    /// Trains, then replaces a random half of the entries by 1/(x + 1e−10) (RFFL `vi`).
    case valueInvert
    /// Trains, then flips the sign of each entry with probability ½ (RFFL `sr`).
    case signRandom
    /// Uploads N(0, σ²) noise without training.
    case gaussian(sigma: Double)
    /// Trains honestly, then `transform(update, round)` (1-based round) changes the upload;
    /// called on the simulation's calling thread.
    case custom(name: String, transform: (_ update: [Float], _ round: Int) throws -> [Float])

    public var name: String {
        switch self {
        case let .freeRider(zero): return zero ? "free_rider_zero" : "free_rider"
        case .labelFlip: return "label_flip"
        case .signFlip: return "sign_flip"
        case .rescale: return "rescale"
        case .valueInvert: return "value_invert"
        case .signRandom: return "sign_random"
        case .gaussian: return "gaussian"
        case let .custom(name, _): return name
        }
    }

    /// Whether the adversary runs local training before forging its upload.
    public var trains: Bool {
        switch self {
        case .freeRider, .gaussian: return false
        default: return true
        }
    }

    /// Labels as this participant trains on them.
    public func relabel(_ y: [Int64]) -> [Int64] {
        guard case let .labelFlip(map) = self else { return y }
        return y.map { Int64(map[Int($0)] ?? Int($0)) }
    }

    /// The upload, given the honest update Δ (zeros for non-training kinds).
    public func forge(_ delta: [Float], round: Int, _ g: Generator) throws -> [Float] {
        switch self {
        case let .freeRider(zero):
            return zero ? [Float](repeating: 0, count: delta.count) : delta.map { _ in Float(2 * Sampling.uniform(g) - 1) }
        case .labelFlip:
            return delta
        case let .signFlip(k):
            return Vec.scaled(delta, -k)
        case let .rescale(s):
            return delta.map { $0 * Float((2 * s * Sampling.uniform(g) - s) * s) }
        case .valueInvert:
            return delta.map { Sampling.uniform(g) < 0.5 ? 1 / ($0 + 1e-10) : $0 }
        case .signRandom:
            return delta.map { g.next() >> 63 == 1 ? -$0 : $0 }
        case let .gaussian(sigma):
            return delta.map { _ in Float(sigma * Sampling.normal(g)) }
        case let .custom(_, transform):
            let out = try transform(delta, round)
            guard out.count == delta.count else {
                throw TensorError("the adversary function returned \(out.count) values for an update of \(delta.count)")
            }
            return out
        }
    }
}
