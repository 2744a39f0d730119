import CMuJoCo
import Foundation
import ParryCore
import Synchronization

// Gymnasium's MuJoCo locomotion tasks (the v4 versions: Hopper, Walker2d,
// HalfCheetah, Ant, InvertedPendulum) on Debian's libmujoco. Observations,
// rewards, termination, reset noise and frame skips follow
// gymnasium/envs/mujoco/*_v4.py; the model files are Gymnasium's own, read
// from an installed gymnasium package (parry ships none), or any MJCF file
// given as `xml`.

/// Where Gymnasium's MuJoCo models are: `PARRY_MUJOCO_ASSETS`, or
/// gymnasium/envs/mujoco/assets inside a site-packages parry can find (the
/// venv of scripts/rl/venv, an active virtualenv, the user's and the
/// system's Python).
public enum MuJoCoAssets {
    public static func candidates() -> [String] {
        let env = ProcessInfo.processInfo.environment
        if let dir = env["PARRY_MUJOCO_ASSETS"], !dir.isEmpty { return [dir] }
        let home = env["HOME"] ?? ""
        let cache = env["XDG_CACHE_HOME"] ?? home + "/.cache"
        var libs: [String] = []
        if let v = env["PARRY_RL_VENV"] { libs.append(v + "/lib") }
        libs.append(cache + "/parry/rl-venv/lib")
        if let v = env["VIRTUAL_ENV"] { libs.append(v + "/lib") }
        libs += [home + "/.local/lib", "/usr/local/lib", "/usr/lib"]
        var out: [String] = []
        let fm = FileManager.default
        for lib in libs {
            guard let entries = try? fm.contentsOfDirectory(atPath: lib) else { continue }
            for e in entries.sorted().reversed() where e.hasPrefix("python3") {
                for sub in ["site-packages", "dist-packages"] { out.append("\(lib)/\(e)/\(sub)/gymnasium/envs/mujoco/assets") }
            }
        }
        return out
    }

    /// The path of `file` (e.g. "hopper.xml"), or an error saying how to get it.
    public static func path(_ file: String, in dir: String? = nil, for id: String) throws -> String {
        let dirs = dir.map { [$0] } ?? candidates()
        for d in dirs where FileManager.default.fileExists(atPath: d + "/" + file) { return d + "/" + file }
        let looked = dirs.isEmpty ? "no Python site-packages found" : "looked in \(dirs.prefix(4).joined(separator: ", "))\(dirs.count > 4 ? ", …" : "")"
        throw RLError("\(id) needs Gymnasium's MuJoCo model \(file), which parry does not ship and did not find (\(looked)). "
            + "Install Gymnasium where parry looks (`make deps-rl` makes a venv with it, or `pip install gymnasium`), "
            + "or set PARRY_MUJOCO_ASSETS (or the option assets=) to a gymnasium/envs/mujoco/assets folder")
    }
}

/// MuJoCo's default warning handler appends to MUJOCO_LOG.TXT in the working
/// directory (a model's deprecated attribute is enough); parry's handler
/// prints each distinct warning once on stderr instead.
private let warnedMessages = Locked<Set<String>>([])
private let installWarningHandler: Void = {
    mju_user_warning = { message in
        guard let message else { return }
        let text = String(cString: message)
        guard warnedMessages.withLock({ $0.insert(text).inserted }) else { return }
        FileHandle.standardError.write(Data("MuJoCo warning: \(text)\n".utf8))
    }
}()

/// One loaded MJCF model and its simulation state.
final class MuJoCoSim {
    let model: UnsafeMutablePointer<mjModel>
    let data: UnsafeMutablePointer<mjData>

    init(path: String) throws {
        _ = installWarningHandler
        var err = [CChar](repeating: 0, count: 1000)
        guard let m = mj_loadXML(path, nil, &err, Int32(err.count)) else {
            throw RLError("MuJoCo could not load \(path): \(String(cString: err))")
        }
        guard let d = mj_makeData(m) else { mj_deleteModel(m); throw RLError("MuJoCo could not allocate data for \(path)") }
        model = m; data = d
    }
    deinit { mj_deleteData(data); mj_deleteModel(model) }

    var nq: Int { Int(model.pointee.nq) }
    var nv: Int { Int(model.pointee.nv) }
    var nu: Int { Int(model.pointee.nu) }
    var timestep: Double { model.pointee.opt.timestep }
    var qpos: UnsafeMutableBufferPointer<Double> { UnsafeMutableBufferPointer(start: data.pointee.qpos, count: nq) }
    var qvel: UnsafeMutableBufferPointer<Double> { UnsafeMutableBufferPointer(start: data.pointee.qvel, count: nv) }

    func bodyID(_ name: String) -> Int? {
        let i = mj_name2id(model, Int32(mjOBJ_BODY.rawValue), name)
        return i < 0 ? nil : Int(i)
    }
    func bodyPosition(_ id: Int) -> (Double, Double, Double) {
        let p = data.pointee.xpos + 3 * id
        return (p[0], p[1], p[2])
    }
}

/// A Gymnasium v4 MuJoCo task on a model file.
public final class MuJoCoEnv: SeededEnvironment, ConcurrentEnvironment {
    public enum Task: String, CaseIterable {
        case hopper = "Hopper-v4", walker2d = "Walker2d-v4", halfCheetah = "HalfCheetah-v4", ant = "Ant-v4"
        case invertedPendulum = "InvertedPendulum-v4"
        var file: String {
            switch self {
            case .hopper: return "hopper.xml"
            case .walker2d: return "walker2d.xml"
            case .halfCheetah: return "half_cheetah.xml"
            case .ant: return "ant.xml"
            case .invertedPendulum: return "inverted_pendulum.xml"
            }
        }
        var frameSkip: Int {
            switch self {
            case .hopper, .walker2d: return 4
            case .halfCheetah, .ant: return 5
            case .invertedPendulum: return 2
            }
        }
        var maxEpisodeSteps: Int { 1000 }
    }

    public let task: Task
    public let id: String
    let sim: MuJoCoSim
    public let frameSkip: Int
    let initQpos: [Double], initQvel: [Double]
    public let observationSpace: Space, actionSpace: Space
    private let torso: Int?

    /// `xml` replaces Gymnasium's model file (it must have the joints the task reads).
    public init(_ task: Task, xml: String? = nil, assets: String? = nil) throws {
        self.task = task
        id = task.rawValue
        let path = try xml ?? MuJoCoAssets.path(task.file, in: assets, for: task.rawValue)
        sim = try MuJoCoSim(path: path)
        frameSkip = task.frameSkip
        initQpos = Array(sim.qpos); initQvel = Array(sim.qvel)
        let nu = sim.nu
        guard nu > 0 else { throw RLError("\(path) has no actuators") }
        let range = UnsafeBufferPointer(start: sim.model.pointee.actuator_ctrlrange, count: 2 * nu)
        actionSpace = .box(low: (0..<nu).map { Float(range[2 * $0]) }, high: (0..<nu).map { Float(range[2 * $0 + 1]) }, shape: [nu])
        let skip: Int
        switch task {
        case .hopper, .walker2d, .halfCheetah: skip = 1
        case .ant: skip = 2
        case .invertedPendulum: skip = 0
        }
        let enough: Bool
        switch task {
        case .hopper, .walker2d, .ant: enough = sim.nq >= 3       // they read qpos[1...2]
        case .halfCheetah: enough = sim.nq >= 1
        case .invertedPendulum: enough = sim.nq + sim.nv >= 2     // it reads obs[1]
        }
        guard enough else { throw RLError("\(path) has too few joints (\(sim.nq) positions) for \(task.rawValue)") }
        let d = sim.nq - skip + sim.nv
        observationSpace = .box(-.infinity, .infinity, shape: [d])
        torso = task == .ant ? sim.bodyID("torso") : nil
        if task == .ant && torso == nil { throw RLError("\(path) has no body named torso (Ant-v4 measures its progress)") }
        super.init()
    }

    /// Seconds per env step (timestep × frame skip), Gymnasium's `dt`.
    public var dt: Double { sim.timestep * Double(frameSkip) }
    public var qpos: [Double] { Array(sim.qpos) }
    public var qvel: [Double] { Array(sim.qvel) }

    /// Gymnasium's `set_state`: positions and velocities, then mj_forward.
    public func setState(qpos: [Double], qvel: [Double]) throws {
        guard qpos.count == sim.nq, qvel.count == sim.nv else {
            throw RLError("set_state expects \(sim.nq) positions and \(sim.nv) velocities, got \(qpos.count) and \(qvel.count)")
        }
        for i in 0..<sim.nq { sim.qpos[i] = qpos[i] }
        for i in 0..<sim.nv { sim.qvel[i] = qvel[i] }
        mj_forward(sim.model, sim.data)
    }

    public func observe() -> [Float] {
        let p = sim.qpos, v = sim.qvel
        switch task {
        case .hopper, .walker2d:
            return p.dropFirst().map { Float($0) } + v.map { Float(Swift.min(Swift.max($0, -10), 10)) }
        case .halfCheetah: return p.dropFirst().map { Float($0) } + v.map { Float($0) }
        case .ant: return p.dropFirst(2).map { Float($0) } + v.map { Float($0) }
        case .invertedPendulum: return p.map { Float($0) } + v.map { Float($0) }
        }
    }

    public func reset(seed: UInt64?) throws -> [Float] {
        reseed(seed)
        mj_resetData(sim.model, sim.data)
        let scale: Double
        switch task {
        case .hopper, .walker2d: scale = 5e-3
        case .halfCheetah, .ant: scale = 0.1
        case .invertedPendulum: scale = 0.01
        }
        let qpos = initQpos.map { $0 + uniform(-scale, scale) }
        let qvel: [Double]
        switch task {
        case .halfCheetah, .ant: qvel = initQvel.map { $0 + scale * rng.normal() }
        default: qvel = initQvel.map { $0 + uniform(-scale, scale) }
        }
        try setState(qpos: qpos, qvel: qvel)
        return observe()
    }

    var isHealthy: Bool {
        let p = sim.qpos, v = sim.qvel
        switch task {
        case .hopper:
            let z = p[1], angle = p[2]
            let state = Array(p.dropFirst(2)) + Array(v)
            return state.allSatisfy { -100 < $0 && $0 < 100 } && 0.7 < z && -0.2 < angle && angle < 0.2
        case .walker2d:
            let z = p[1], angle = p[2]
            return 0.8 < z && z < 2.0 && -1 < angle && angle < 1
        case .ant:
            return p.allSatisfy { $0.isFinite } && v.allSatisfy { $0.isFinite } && 0.2 <= p[2] && p[2] <= 1.0
        case .halfCheetah, .invertedPendulum: return true
        }
    }

    public func step(_ action: [Float]) throws -> Transition {
        guard action.count == sim.nu else { throw RLError("action has \(action.count) elements, \(id) has \(sim.nu) actuators") }
        let xBefore = sim.qpos[0]
        let xyBefore = torso.map { sim.bodyPosition($0) }
        let ctrl = UnsafeMutableBufferPointer(start: sim.data.pointee.ctrl, count: sim.nu)
        for i in 0..<sim.nu { ctrl[i] = Double(action[i]) }
        for _ in 0..<frameSkip { mj_step(sim.model, sim.data) }
        mj_rnePostConstraint(sim.model, sim.data)
        let squared = action.reduce(0.0) { $0 + Double($1) * Double($1) }
        var info: [String: Double] = [:]
        var reward: Double, terminated = false
        switch task {
        case .hopper, .walker2d, .halfCheetah:
            let xVelocity = (sim.qpos[0] - xBefore) / dt
            info["x_position"] = sim.qpos[0]; info["x_velocity"] = xVelocity
            if task == .halfCheetah {
                let ctrlCost = 0.1 * squared
                reward = xVelocity - ctrlCost
                info["reward_run"] = xVelocity; info["reward_ctrl"] = -ctrlCost
            } else {
                let healthy = isHealthy
                reward = xVelocity + 1.0 - 1e-3 * squared   // healthy reward counts while terminating (v4)
                terminated = !healthy
            }
        case .ant:
            guard let torso, let before = xyBefore else { throw RLError("Ant-v4 lost its torso") }
            let after = sim.bodyPosition(torso)
            let xv = (after.0 - before.0) / dt, yv = (after.1 - before.1) / dt
            let ctrlCost = 0.5 * squared
            terminated = !isHealthy
            reward = xv + 1.0 - ctrlCost
            info["x_velocity"] = xv; info["y_velocity"] = yv; info["x_position"] = after.0; info["y_position"] = after.1
            info["reward_forward"] = xv; info["reward_ctrl"] = -ctrlCost; info["reward_survive"] = 1.0
        case .invertedPendulum:
            reward = 1.0
            let obs = observe()
            terminated = obs.contains { !$0.isFinite } || abs(obs[1]) > 0.2
        }
        return Transition(observation: observe(), reward: reward, terminated: terminated, truncated: false, info: info)
    }
}
