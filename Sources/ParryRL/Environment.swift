import Foundation
import ParryCore

/// What one `step` returns (Gymnasium's five-tuple without the info dict; an
/// env with extra information puts it in `info`, numbers only).
public struct Transition {
    public var observation: [Float]
    public var reward: Double
    public var terminated: Bool
    public var truncated: Bool
    public var info: [String: Double]
    public init(observation: [Float], reward: Double, terminated: Bool, truncated: Bool, info: [String: Double] = [:]) {
        self.observation = observation; self.reward = reward; self.terminated = terminated; self.truncated = truncated; self.info = info
    }
    public var done: Bool { terminated || truncated }
}

/// A Gymnasium-style environment. `reset(seed:)` reseeds the env's own
/// generator when a seed is given (Gymnasium's `reset(seed=)`), otherwise it
/// continues the generator's stream. Actions are flat `[Float]`; a Discrete
/// action is one element holding the 0-based index.
public protocol Environment: AnyObject {
    var id: String { get }
    var observationSpace: Space { get }
    var actionSpace: Space { get }
    func reset(seed: UInt64?) throws -> [Float]
    func step(_ action: [Float]) throws -> Transition
}

/// An environment whose dynamics have a plain state vector that a test can
/// set (the Gymnasium fixtures give the exact initial state).
public protocol StatefulEnvironment: Environment {
    var state: [Double] { get set }
    /// The observation of the current state.
    func observe() -> [Float]
}

extension Environment {
    /// The environment under any wrappers (itself when it is not one).
    public var innermost: Environment { (self as? EnvWrapper)?.unwrapped ?? self }
}

/// A wrapper forwards everything to `inner`; subclasses override what they change.
open class EnvWrapper: Environment {
    public let inner: Environment
    public init(_ inner: Environment) { self.inner = inner }
    open var id: String { inner.id }
    open var observationSpace: Space { inner.observationSpace }
    open var actionSpace: Space { inner.actionSpace }
    open func reset(seed: UInt64?) throws -> [Float] { try inner.reset(seed: seed) }
    open func step(_ action: [Float]) throws -> Transition { try inner.step(action) }
    /// The innermost environment.
    public var unwrapped: Environment {
        var e: Environment = inner
        while let w = e as? EnvWrapper { e = w.inner }
        return e
    }
}

/// What `make` puts around every registered env: the time limit Gymnasium
/// registers (`truncated` once `maxEpisodeSteps` steps have run), order
/// enforcement (no `step` before `reset`, nor after the episode ended — the
/// next step is undefined in Gymnasium, an error here), and the action check
/// of `Space.validate`. A failed step leaves the env as it was, so a caught
/// error does not end the episode.
public final class TimeLimit: EnvWrapper {
    public let maxEpisodeSteps: Int?
    public private(set) var elapsedSteps = 0
    private enum Phase { case needsReset, running, ended(String) }
    private var phase = Phase.needsReset
    public init(_ inner: Environment, maxEpisodeSteps: Int?) {
        self.maxEpisodeSteps = maxEpisodeSteps
        super.init(inner)
    }
    public override func reset(seed: UInt64?) throws -> [Float] {
        let obs = try inner.reset(seed: seed)
        elapsedSteps = 0
        phase = .running
        return obs
    }
    public override func step(_ action: [Float]) throws -> Transition {
        switch phase {
        case .needsReset: throw RLError("step called before reset(); call env:reset() first")
        case .ended(let why): throw RLError("step called after the episode \(why); call env:reset() first")
        case .running: break
        }
        try inner.actionSpace.validate(action: action)
        var t = try inner.step(action)
        elapsedSteps += 1
        if let m = maxEpisodeSteps, elapsedSteps >= m { t.truncated = true }
        if t.terminated { phase = .ended("terminated") } else if t.truncated { phase = .ended("was truncated") }
        return t
    }
}

/// The registry of native environments: id → (constructor, Gymnasium's
/// `max_episode_steps`).
public enum Registry {
    /// `make` receives string options (MuJoCo's `xml` and `assets`).
    public struct Entry {
        public let make: ([String: String]) throws -> Environment
        public let maxEpisodeSteps: Int?
        public init(maxEpisodeSteps: Int?, make: @escaping ([String: String]) throws -> Environment) { self.make = make; self.maxEpisodeSteps = maxEpisodeSteps }
    }
    nonisolated(unsafe) private static var entries: [String: Entry] = {
        var e: [String: Entry] = [
            "CartPole-v1": Entry(maxEpisodeSteps: 500) { _ in CartPole() },
            "Pendulum-v1": Entry(maxEpisodeSteps: 200) { _ in Pendulum() },
            "MountainCarContinuous-v0": Entry(maxEpisodeSteps: 999) { _ in MountainCarContinuous() },
            "Acrobot-v1": Entry(maxEpisodeSteps: 500) { _ in Acrobot() },
        ]
        for task in MuJoCoEnv.Task.allCases {
            e[task.rawValue] = Entry(maxEpisodeSteps: task.maxEpisodeSteps) { o in try MuJoCoEnv(task, xml: o["xml"], assets: o["assets"]) }
        }
        return e
    }()
    private static let lock = NSLock()

    public static var ids: [String] { lock.lock(); defer { lock.unlock() }; return entries.keys.sorted() }

    public static func register(_ id: String, _ entry: Entry) {
        lock.lock(); defer { lock.unlock() }
        entries[id] = entry
    }

    /// A fresh env wrapped in its time limit (`maxEpisodeSteps` overrides the
    /// registered one; 0 or less means none) and seeded when `seed` is given.
    public static func make(_ id: String, maxEpisodeSteps: Int? = nil, seed: UInt64? = nil, options: [String: String] = [:]) throws -> TimeLimit {
        lock.lock()
        let entry = entries[id]
        lock.unlock()
        guard let entry else {
            throw RLError("unknown environment '\(id)' (registered: \(ids.joined(separator: ", ")))")
        }
        let limit = maxEpisodeSteps.map { $0 > 0 ? $0 : nil } ?? entry.maxEpisodeSteps
        let env = TimeLimit(try entry.make(options), maxEpisodeSteps: limit)
        if let seed, let s = env.unwrapped as? SeededEnvironment { s.rng.reseed(seed) }
        return env
    }
}

/// Base of the native envs: owns the generator that `reset` draws from.
open class SeededEnvironment {
    public let rng: Generator
    /// Unseeded envs draw their seed from parry's current generator, so
    /// `parry.manual_seed` makes them reproducible.
    public init() { rng = Generator(seed: Generator.current.next()) }
    public func reseed(_ seed: UInt64?) { if let seed { rng.reseed(seed) } }
    /// A uniform draw in [lo, hi).
    public func uniform(_ lo: Double, _ hi: Double) -> Double { lo + (hi - lo) * rng.uniform() }
}
