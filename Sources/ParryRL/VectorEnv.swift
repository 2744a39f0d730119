import Foundation
import ParryCore

/// One step of a vector env. Observations are row-major `numEnvs × obsSize`.
public struct VectorStep {
    public var observations: [Float]
    public var rewards: [Double]
    public var terminated: [Bool]
    public var truncated: [Bool]
    /// Next-step autoreset: the sub-envs that were reset by this step (their
    /// action was ignored, reward 0, flags false).
    public var wasReset: [Bool]
    /// Same-step autoreset: the last observation of each episode that ended
    /// in this step (`observations` already holds the reset one).
    public var finalObservations: [Int: [Float]]
    /// Per-env numeric info (episode statistics put `episode_r`, `episode_l`,
    /// `episode_t` here for the envs whose episode ended).
    public var infos: [[String: Double]]
}

/// Gymnasium's two autoreset modes. `.nextStep` is Gymnasium 1.x's default:
/// the step that ends an episode returns its last observation; the next call
/// resets that sub-env, ignores its action and returns the reset observation
/// with reward 0 and both flags false. `.sameStep` resets inside the ending
/// step and returns the last observation in `finalObservations` (what PPO
/// uses, so that no transition is wasted and truncation can bootstrap).
public enum AutoresetMode: String { case nextStep = "next_step", sameStep = "same_step" }

/// A batch of environments stepped together (Gymnasium's `VectorEnv`).
public protocol VectorEnvironment: AnyObject {
    var numEnvs: Int { get }
    var singleObservationSpace: Space { get }
    var singleActionSpace: Space { get }
    var autoresetMode: AutoresetMode { get }
    func reset(seed: UInt64?) throws -> [Float]
    /// `actions` is row-major `numEnvs × actionSize` (a Discrete action: one
    /// 0-based index per env).
    func step(_ actions: [Float]) throws -> VectorStep
}

/// An env that is expensive enough to step on its own thread and touches no
/// shared state (MuJoCo's; not Lua-defined ones, which run on the Lua state).
public protocol ConcurrentEnvironment: Environment {}

/// Sub-envs stepped one after another in Swift (Gymnasium's `SyncVectorEnv`).
/// `reset(seed: s)` seeds sub-env i with s + i, as Gymnasium does.
public final class SyncVectorEnv: VectorEnvironment {
    public let envs: [Environment]
    public let autoresetMode: AutoresetMode
    private var pendingReset: [Bool]
    private var started = false
    /// Whether the sub-envs step on all cores (every one a ConcurrentEnvironment).
    public let concurrent: Bool

    public init(_ envs: [Environment], autoreset: AutoresetMode = .nextStep) throws {
        guard let first = envs.first else { throw RLError("a vector env needs at least one env") }
        for e in envs.dropFirst() where e.observationSpace != first.observationSpace || e.actionSpace != first.actionSpace {
            throw RLError("all sub-envs must have the same spaces (\(e.id): \(e.observationSpace), \(e.actionSpace) vs \(first.observationSpace), \(first.actionSpace))")
        }
        self.envs = envs
        self.autoresetMode = autoreset
        concurrent = envs.count > 1 && envs.allSatisfy { $0.innermost is ConcurrentEnvironment }
        pendingReset = Array(repeating: false, count: envs.count)
    }

    public var numEnvs: Int { envs.count }
    public var singleObservationSpace: Space { envs[0].observationSpace }
    public var singleActionSpace: Space { envs[0].actionSpace }

    public func reset(seed: UInt64?) throws -> [Float] {
        var obs: [Float] = []
        obs.reserveCapacity(numEnvs * singleObservationSpace.flatCount)
        for (i, e) in envs.enumerated() { obs += try checked(e.reset(seed: seed.map { $0 &+ UInt64(i) }), e) }
        pendingReset = Array(repeating: false, count: numEnvs)
        started = true
        return obs
    }

    public func step(_ actions: [Float]) throws -> VectorStep {
        guard started else { throw RLError("step called before reset(); call reset() first") }
        let k = singleActionSpace.flatCount
        guard actions.count == numEnvs * k else {
            throw RLError("expected \(numEnvs) actions of \(k) element\(k == 1 ? "" : "s") (\(numEnvs * k) values), got \(actions.count)")
        }
        // Check every action first, so a bad one leaves no sub-env stepped.
        for i in 0..<numEnvs where !pendingReset[i] {
            do { try singleActionSpace.validate(action: Array(actions[i * k..<(i + 1) * k])) }
            catch let e as RLError { throw RLError("env \(i + 1): \(e.description)") }
        }
        let d = singleObservationSpace.flatCount
        // Each sub-env's step (or pending reset) into its own slot; MuJoCo envs
        // step on all cores, the rest (cheap, or Lua) one after another.
        enum Outcome { case reset([Float]), step(Transition, reset: [Float]?) }
        let slots = UnsafeMutableBufferPointer<Outcome?>.allocate(capacity: numEnvs)
        slots.initialize(repeating: nil)
        defer { slots.deinitialize(); slots.deallocate() }
        let mode = autoresetMode, pending = pendingReset
        let one: (Int) throws -> Void = { i in
            let e = self.envs[i]
            if pending[i] { slots[i] = .reset(try e.reset(seed: nil)); return }
            let t = try e.step(Array(actions[i * k..<(i + 1) * k]))
            slots[i] = .step(t, reset: t.done && mode == .sameStep ? try e.reset(seed: nil) : nil)
        }
        if concurrent { try Parallel.forEach(numEnvs, one) } else { for i in 0..<numEnvs { try one(i) } }

        var out = VectorStep(observations: [], rewards: Array(repeating: 0, count: numEnvs),
                             terminated: Array(repeating: false, count: numEnvs), truncated: Array(repeating: false, count: numEnvs),
                             wasReset: Array(repeating: false, count: numEnvs), finalObservations: [:],
                             infos: Array(repeating: [:], count: numEnvs))
        out.observations.reserveCapacity(numEnvs * d)
        for (i, e) in envs.enumerated() {
            switch slots[i] {
            case .reset(let obs)?:
                out.observations += try checked(obs, e)
                out.wasReset[i] = true
                pendingReset[i] = false
            case .step(let t, let resetObs)?:
                _ = try checked(t.observation, e)
                out.rewards[i] = t.reward; out.terminated[i] = t.terminated; out.truncated[i] = t.truncated; out.infos[i] = t.info
                if let r = resetObs {
                    out.finalObservations[i] = t.observation
                    out.observations += try checked(r, e)
                } else {
                    out.observations += t.observation
                    pendingReset[i] = t.done
                }
            case nil: throw RLError("env \(i + 1) did not step")
            }
        }
        return out
    }

    private func checked(_ obs: [Float], _ e: Environment) throws -> [Float] {
        guard obs.count == singleObservationSpace.flatCount else {
            throw RLError("\(e.id) returned an observation of \(obs.count) values, its space \(singleObservationSpace) has \(singleObservationSpace.flatCount)")
        }
        return obs
    }
}
