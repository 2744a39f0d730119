import Foundation
import ParryCore

/// An error of the RL layer (a bad action, a step after the episode ended, an
/// unknown env id). Bindings prefix the Lua function's name.
public struct RLError: Error, CustomStringConvertible {
    public let description: String
    public init(_ message: String) { description = message }
}

/// Gymnasium's two spaces. Values are flat `[Float]`; a `Discrete` value is
/// one element holding the 0-based index (`start` offsets it, as Gymnasium's
/// `Discrete(n, start=)` does).
public enum Space: Equatable, CustomStringConvertible {
    case box(low: [Float], high: [Float], shape: [Int])
    case discrete(n: Int, start: Int = 0)

    /// A Box with the same bound on every element.
    public static func box(_ low: Float, _ high: Float, shape: [Int]) -> Space {
        let n = shape.reduce(1, *)
        return .box(low: Array(repeating: low, count: n), high: Array(repeating: high, count: n), shape: shape)
    }

    /// Elements in one value (1 for Discrete).
    public var flatCount: Int {
        switch self {
        case .box(_, _, let shape): return shape.reduce(1, *)
        case .discrete: return 1
        }
    }
    public var shape: [Int] {
        if case .box(_, _, let shape) = self { return shape }
        return []
    }
    public var isDiscrete: Bool { if case .discrete = self { return true }; return false }

    public var description: String {
        switch self {
        case .discrete(let n, let start): return start == 0 ? "Discrete(\(n))" : "Discrete(\(n), start=\(start))"
        case .box(let lo, let hi, let shape):
            func bound(_ v: [Float]) -> String { Set(v).count == 1 ? "\(v[0])" : "[\(v.map { "\($0)" }.joined(separator: ", "))]" }
            return "Box(\(lo.isEmpty ? "" : bound(lo)), \(hi.isEmpty ? "" : bound(hi)), (\(shape.map(String.init).joined(separator: ", "))), float32)"
        }
    }

    /// A value drawn as Gymnasium's `sample()` draws it: Discrete uniformly;
    /// a Box element bounded on both sides uniformly in [low, high], bounded
    /// below only as low + Exp(1), above only as high − Exp(1), unbounded as
    /// N(0, 1).
    public func sample(_ g: Generator) -> [Float] {
        switch self {
        case .discrete(let n, let start):
            return [Float(Int(g.integer(0, Int64(n - 1))) + start)]
        case .box(let lo, let hi, _):
            return (0..<lo.count).map { i in
                let l = lo[i], h = hi[i]
                switch (l.isFinite, h.isFinite) {
                case (true, true): return l == h ? l : Float(Double(l) + g.uniform() * Double(h - l))
                case (true, false): return Float(Double(l) - log(1 - g.uniform()))
                case (false, true): return Float(Double(h) + log(1 - g.uniform()))
                case (false, false): return Float(g.normal())
                }
            }
        }
    }

    /// Whether `value` lies in the space (right size, inside the bounds, an
    /// integer index for Discrete).
    public func contains(_ value: [Float]) -> Bool {
        switch self {
        case .discrete(let n, let start):
            guard value.count == 1, let v = value.first, v.rounded() == v else { return false }
            return v >= Float(start) && v < Float(start + n)
        case .box(let lo, let hi, _):
            guard value.count == lo.count else { return false }
            for i in value.indices where !(value[i] >= lo[i] && value[i] <= hi[i]) { return false }
            return true
        }
    }

    /// Checks an action before an env steps with it: Discrete must be an index
    /// in range (Gymnasium asserts the same); a Box action must have the right
    /// number of elements and no NaN, but may lie outside the bounds — the env
    /// clips it as Gymnasium's envs do (Pendulum's torque, MountainCar's force),
    /// and `ClipAction` clips it first when wrapped.
    public func validate(action: [Float]) throws {
        switch self {
        case .discrete(let n, let start):
            guard contains(action) else {
                let shown = action.count == 1 ? "\(action[0])" : "\(action.count) values"
                throw RLError("action \(shown) is not in \(self) (expected an integer in \(start)..\(start + n - 1))")
            }
        case .box(let lo, _, let shape):
            guard action.count == lo.count else {
                throw RLError("action has \(action.count) elements, the action space \(self) expects \(lo.count) (shape {\(shape.map(String.init).joined(separator: ", "))})")
            }
            if action.contains(where: { $0.isNaN }) { throw RLError("action contains NaN") }
        }
    }
}

extension Generator {
    /// One standard normal draw (Box-Muller on two uniforms).
    public func normal() -> Double {
        let u1 = Swift.max(uniform(), 1e-300), u2 = uniform()
        return (-2 * log(u1)).squareRoot() * cos(2 * Double.pi * u2)
    }
}
