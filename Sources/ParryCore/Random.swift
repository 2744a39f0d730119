import Foundation

/// A seedable pseudo-random generator: xoshiro256** seeded through
/// SplitMix64. Same seed ⇒ same sequence on every run and machine.
public final class Generator: @unchecked Sendable {
    private var s: (UInt64, UInt64, UInt64, UInt64) = (0, 0, 0, 0)
    private var spareNormal: Double? = nil
    private let lock = NSLock()

    /// The generator used when none is passed; `manual_seed` reseeds it.
    public static let shared = Generator(seed: 0x5EED)

    /// The generator that defaulted random draws use on this task or thread
    /// (`shared` unless bound with `Generator.$current.withValue(g) { ... }`).
    /// Federated clients training concurrently each bind their own, so the
    /// draws (dropout masks, shuffles) do not depend on thread scheduling.
    @TaskLocal public static var current: Generator = .shared

    public init(seed: UInt64) { reseed(seed) }

    public func reseed(_ seed: UInt64) {
        lock.lock(); defer { lock.unlock() }
        var z = seed
        func splitmix() -> UInt64 {
            z &+= 0x9E37_79B9_7F4A_7C15
            var x = z
            x = (x ^ (x >> 30)) &* 0xBF58_476D_1CE4_E5B9
            x = (x ^ (x >> 27)) &* 0x94D0_49BB_1331_11EB
            return x ^ (x >> 31)
        }
        s = (splitmix(), splitmix(), splitmix(), splitmix())
        spareNormal = nil
    }

    /// The whole state as 6 words (xoshiro's 4, whether a spare normal is
    /// held, and its bits), for checkpoints: setting it back resumes the
    /// stream exactly where it was.
    public var state: [UInt64] {
        get {
            lock.lock(); defer { lock.unlock() }
            return [s.0, s.1, s.2, s.3, spareNormal == nil ? 0 : 1, spareNormal?.bitPattern ?? 0]
        }
    }

    public func setState(_ w: [UInt64]) throws {
        guard w.count == 6, w[4] <= 1, w[0] | w[1] | w[2] | w[3] != 0 else {
            throw TensorError("a generator state is 6 words (from get_state), the first four not all zero")
        }
        lock.lock(); defer { lock.unlock() }
        s = (w[0], w[1], w[2], w[3])
        spareNormal = w[4] == 1 ? Double(bitPattern: w[5]) : nil
    }

    @inline(__always) private func rotl(_ x: UInt64, _ k: UInt64) -> UInt64 { (x << k) | (x >> (64 - k)) }

    @inline(__always) private func nextUnlocked() -> UInt64 {
        let result = rotl(s.1 &* 5, 7) &* 9
        let t = s.1 << 17
        s.2 ^= s.0; s.3 ^= s.1; s.1 ^= s.2; s.0 ^= s.3
        s.2 ^= t
        s.3 = rotl(s.3, 45)
        return result
    }

    public func next() -> UInt64 {
        lock.lock(); defer { lock.unlock() }
        return nextUnlocked()
    }

    /// Fills `count` values uniform in [lo, hi).
    public func fillUniform(_ p: UnsafeMutablePointer<Float>, count: Int, lo: Float = 0, hi: Float = 1) {
        lock.lock(); defer { lock.unlock() }
        let scale = hi - lo
        for i in 0..<count {
            // 24 random bits: exactly representable, in [0, 1).
            let u = Float(nextUnlocked() >> 40) * (1.0 / 16_777_216.0)
            p[i] = lo + scale * u
        }
    }

    /// Fills `count` values from N(mean, std²) by the Box–Muller transform.
    public func fillNormal(_ p: UnsafeMutablePointer<Float>, count: Int, mean: Float = 0, std: Float = 1) {
        lock.lock(); defer { lock.unlock() }
        var i = 0
        while i < count {
            let u1 = (Double(nextUnlocked() >> 11) + 1) * (1.0 / 9_007_199_254_740_993.0)  // (0, 1]
            let u2 = Double(nextUnlocked() >> 11) * (1.0 / 9_007_199_254_740_992.0)
            let r = (-2 * Foundation.log(u1)).squareRoot()
            p[i] = mean + std * Float(r * cos(2 * .pi * u2))
            if i + 1 < count { p[i + 1] = mean + std * Float(r * sin(2 * .pi * u2)) }
            i += 2
        }
    }

    /// A uniform Double in [0, 1) (53 random bits).
    public func uniform() -> Double {
        lock.lock(); defer { lock.unlock() }
        return Double(nextUnlocked() >> 11) * (1.0 / 9_007_199_254_740_992.0)
    }

    /// A uniform integer in lo...hi (inclusive), without modulo bias.
    public func integer(_ lo: Int64, _ hi: Int64) -> Int64 {
        lock.lock(); defer { lock.unlock() }
        return integerUnlocked(lo, hi)
    }

    private func integerUnlocked(_ lo: Int64, _ hi: Int64) -> Int64 {
        let range = UInt64(bitPattern: hi &- lo) &+ 1
        if range == 0 { return Int64(bitPattern: nextUnlocked()) }
        let limit = UInt64.max - UInt64.max % range
        var x = nextUnlocked()
        while x >= limit { x = nextUnlocked() }
        return lo &+ Int64(bitPattern: x % range)
    }

    /// Fills `count` integers uniform in lo...hi.
    public func fillIntegers(_ p: UnsafeMutablePointer<Int64>, count: Int, lo: Int64, hi: Int64) {
        lock.lock(); defer { lock.unlock() }
        for i in 0..<count { p[i] = integerUnlocked(lo, hi) }
    }

    /// A uniformly random permutation of 0..<n (Fisher–Yates).
    public func permutation(_ n: Int) -> [Int] {
        lock.lock(); defer { lock.unlock() }
        var a = Array(0..<n)
        if n < 2 { return a }
        for i in stride(from: n - 1, to: 0, by: -1) {
            let j = Int(integerUnlocked(0, Int64(i)))
            a.swapAt(i, j)
        }
        return a
    }
}
