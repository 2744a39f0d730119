import Foundation
import ParryCore

// Gymnasium's classic-control environments, dynamics and constants exactly as
// gymnasium/envs/classic_control (Gymnasium 1.x, NumPy 2 arithmetic: where
// NumPy computes in float32 — an action times a Python float, MountainCar's
// float32 state — these do too). The initial-state draws use parry's
// generator, not NumPy's PCG64, so the same seed gives a different episode
// than Gymnasium; the tests set Gymnasium's initial state and compare.

/// CartPole-v1: push the cart left (action 0) or right (1); +1 per step,
/// including the step that ends it; terminates when |x| > 2.4 or
/// |θ| > 12°. Euler integration, τ = 0.02.
public final class CartPole: SeededEnvironment, StatefulEnvironment {
    public let id = "CartPole-v1"
    let gravity = 9.8, massCart = 1.0, massPole = 0.1, length = 0.5, forceMag = 10.0, tau = 0.02
    var totalMass: Double { massPole + massCart }
    var poleMassLength: Double { massPole * length }
    let thetaThreshold = 12 * 2 * Double.pi / 360, xThreshold = 2.4
    public var state = [0.0, 0.0, 0.0, 0.0]
    public let observationSpace: Space
    public let actionSpace = Space.discrete(n: 2)

    public override init() {
        let high: [Float] = [Float(2.4 * 2), .greatestFiniteMagnitude, Float(12 * 2 * Double.pi / 360 * 2), .greatestFiniteMagnitude]
        observationSpace = .box(low: high.map { -$0 }, high: high, shape: [4])
        super.init()
    }

    public func observe() -> [Float] { state.map { Float($0) } }

    public func reset(seed: UInt64?) throws -> [Float] {
        reseed(seed)
        state = (0..<4).map { _ in uniform(-0.05, 0.05) }
        return observe()
    }

    public func step(_ action: [Float]) throws -> Transition {
        var x = state[0], xDot = state[1], theta = state[2], thetaDot = state[3]
        let force = action[0] == 1 ? forceMag : -forceMag
        let cosTheta = cos(theta), sinTheta = sin(theta)
        let temp = (force + poleMassLength * (thetaDot * thetaDot) * sinTheta) / totalMass
        let thetaAcc = (gravity * sinTheta - cosTheta * temp) / (length * (4.0 / 3.0 - massPole * (cosTheta * cosTheta) / totalMass))
        let xAcc = temp - poleMassLength * thetaAcc * cosTheta / totalMass
        x = x + tau * xDot
        xDot = xDot + tau * xAcc
        theta = theta + tau * thetaDot
        thetaDot = thetaDot + tau * thetaAcc
        state = [x, xDot, theta, thetaDot]
        let terminated = x < -xThreshold || x > xThreshold || theta < -thetaThreshold || theta > thetaThreshold
        return Transition(observation: observe(), reward: 1.0, terminated: terminated, truncated: false)
    }
}

/// Pendulum-v1: swing up and hold; torque in [−2, 2] (clipped); reward
/// −(θ̂² + 0.1·θ̇² + 0.001·u²) with θ̂ the angle normalized to [−π, π).
public final class Pendulum: SeededEnvironment, StatefulEnvironment {
    public let id = "Pendulum-v1"
    let maxSpeed = 8.0, maxTorque: Float = 2.0, dt = 0.05, g: Double, m = 1.0, l = 1.0
    public var state = [0.0, 0.0]
    public let observationSpace = Space.box(low: [-1, -1, -8], high: [1, 1, 8], shape: [3])
    public let actionSpace = Space.box(-2, 2, shape: [1])

    public init(g: Double = 10.0) { self.g = g; super.init() }

    public func observe() -> [Float] { [Float(cos(state[0])), Float(sin(state[0])), Float(state[1])] }

    public func reset(seed: UInt64?) throws -> [Float] {
        reseed(seed)
        state = [uniform(-Double.pi, Double.pi), uniform(-1, 1)]
        return observe()
    }

    static func angleNormalize(_ x: Double) -> Double {
        let y = (x + Double.pi).truncatingRemainder(dividingBy: 2 * Double.pi)
        return (y < 0 ? y + 2 * Double.pi : y) - Double.pi  // Python's floor modulo
    }

    public func step(_ action: [Float]) throws -> Transition {
        let th = state[0], thdot = state[1]
        let u = Swift.min(Swift.max(action[0], -maxTorque), maxTorque)  // float32, as the Box's dtype
        let costs = Pendulum.angleNormalize(th) * Pendulum.angleNormalize(th) + 0.1 * (thdot * thdot) + Double(Float(0.001) * (u * u))
        let torque = Double(Float(3.0 / (m * l * l)) * u)  // NumPy 2: Python float × float32 stays float32
        var newThdot = thdot + (3 * g / (2 * l) * sin(th) + torque) * dt
        newThdot = Swift.min(Swift.max(newThdot, -maxSpeed), maxSpeed)
        let newTh = th + newThdot * dt
        state = [newTh, newThdot]
        return Transition(observation: observe(), reward: -costs, terminated: false, truncated: false)
    }
}

/// MountainCarContinuous-v0: force in [−1, 1] (clipped); reward +100 on
/// reaching the flag (x ≥ 0.45) minus 0.1·a² per step; the state is stored
/// as float32 after each step, and from then on the update runs in float32,
/// as NumPy does with Gymnasium's code.
public final class MountainCarContinuous: SeededEnvironment, StatefulEnvironment {
    public let id = "MountainCarContinuous-v0"
    let minPosition = -1.2, maxPosition = 0.6, maxSpeed = 0.07, goalPosition = 0.45, goalVelocity = 0.0, power = 0.0015
    public var state = [0.0, 0.0] { didSet { float32State = false } }
    /// Whether `state` holds float32 values (true after the first step).
    private var float32State = false
    public let observationSpace = Space.box(low: [-1.2, -0.07], high: [0.6, 0.07], shape: [2])
    public let actionSpace = Space.box(-1, 1, shape: [1])

    public func observe() -> [Float] { state.map { Float($0) } }

    public func reset(seed: UInt64?) throws -> [Float] {
        reseed(seed)
        state = [uniform(-0.6, -0.4), 0]
        return observe()
    }

    public func step(_ action: [Float]) throws -> Transition {
        let a = action[0]
        // min(max(a, -1.0), 1.0) gives a Python float when it clips, the float32 action otherwise.
        let clipped: Double? = a < -1 ? -1 : a > 1 ? 1 : nil
        var terminated: Bool
        var position: Double, velocity: Double
        if !float32State {
            position = state[0]; velocity = state[1]
            let gravity = 0.0025 * cos(3 * position)
            let inner = clipped.map { $0 * power - gravity } ?? Double(a * Float(power) - Float(gravity))
            velocity += inner
            velocity = Swift.min(Swift.max(velocity, -maxSpeed), maxSpeed)
            position += velocity
            position = Swift.min(Swift.max(position, minPosition), maxPosition)
            if position == minPosition && velocity < 0 { velocity = 0 }
            terminated = position >= goalPosition && velocity >= goalVelocity
        } else {
            var p = Float(state[0]), v = Float(state[1])
            let gravity = 0.0025 * cos(Double(Float(3) * p))
            v += clipped.map { Float($0 * power - gravity) } ?? (a * Float(power) - Float(gravity))
            if v > Float(maxSpeed) { v = Float(maxSpeed) }
            if v < -Float(maxSpeed) { v = -Float(maxSpeed) }
            p += v
            if p > Float(maxPosition) { p = Float(maxPosition) }
            if p < Float(minPosition) { p = Float(minPosition) }
            if p == Float(minPosition) && v < 0 { v = 0 }
            terminated = p >= Float(goalPosition) && v >= Float(goalVelocity)
            position = Double(p); velocity = Double(v)
        }
        let reward = (terminated ? 100.0 : 0) - pow(Double(a), 2) * 0.1
        state = [Double(Float(position)), Double(Float(velocity))]
        float32State = true
        return Transition(observation: observe(), reward: reward, terminated: terminated, truncated: false)
    }
}

/// Acrobot-v1: torque −1, 0, +1 (actions 0, 1, 2) on the joint between the
/// links; −1 per step until the tip rises one link length above the pivot.
/// RK4 over one 0.2 s step of the "book" dynamics.
public final class Acrobot: SeededEnvironment, StatefulEnvironment {
    public let id = "Acrobot-v1"
    let dt = 0.2, l1 = 1.0, m1 = 1.0, m2 = 1.0, lc1 = 0.5, lc2 = 0.5, i1 = 1.0, i2 = 1.0
    let maxVel1 = 4 * Double.pi, maxVel2 = 9 * Double.pi
    let torques = [-1.0, 0.0, 1.0]
    public var state = [0.0, 0.0, 0.0, 0.0]
    public let observationSpace = Space.box(low: [-1, -1, -1, -1, Float(-4 * Double.pi), Float(-9 * Double.pi)],
                                            high: [1, 1, 1, 1, Float(4 * Double.pi), Float(9 * Double.pi)], shape: [6])
    public let actionSpace = Space.discrete(n: 3)

    public func observe() -> [Float] {
        [cos(state[0]), sin(state[0]), cos(state[1]), sin(state[1]), state[2], state[3]].map { Float($0) }
    }

    public func reset(seed: UInt64?) throws -> [Float] {
        reseed(seed)
        state = (0..<4).map { _ in Double(Float(uniform(-0.1, 0.1))) }  // .astype(np.float32)
        return observe()
    }

    func derivatives(_ s: [Double], torque a: Double) -> [Double] {
        let g = 9.8
        let theta1 = s[0], theta2 = s[1], dtheta1 = s[2], dtheta2 = s[3]
        let d1 = m1 * lc1 * lc1 + m2 * (l1 * l1 + lc2 * lc2 + 2 * l1 * lc2 * cos(theta2)) + i1 + i2
        let d2 = m2 * (lc2 * lc2 + l1 * lc2 * cos(theta2)) + i2
        let phi2 = m2 * lc2 * g * cos(theta1 + theta2 - Double.pi / 2.0)
        let phi1 = -m2 * l1 * lc2 * (dtheta2 * dtheta2) * sin(theta2)
            - 2 * m2 * l1 * lc2 * dtheta2 * dtheta1 * sin(theta2)
            + (m1 * lc1 + m2 * l1) * g * cos(theta1 - Double.pi / 2) + phi2
        let ddtheta2 = (a + d2 / d1 * phi1 - m2 * l1 * lc2 * (dtheta1 * dtheta1) * sin(theta2) - phi2)
            / (m2 * lc2 * lc2 + i2 - d2 * d2 / d1)
        let ddtheta1 = -(d2 * ddtheta2 + phi1) / d1
        return [dtheta1, dtheta2, ddtheta1, ddtheta2]
    }

    public func step(_ action: [Float]) throws -> Transition {
        guard let i = Int(exactly: action[0]), torques.indices.contains(i) else { throw RLError("action \(action[0]) is not in Discrete(3)") }
        let torque = torques[i]
        let y0 = state, h = dt, h2 = dt / 2.0
        func add(_ y: [Double], _ c: Double, _ k: [Double]) -> [Double] { (0..<4).map { y[$0] + c * k[$0] } }
        let k1 = derivatives(y0, torque: torque)
        let k2 = derivatives(add(y0, h2, k1), torque: torque)
        let k3 = derivatives(add(y0, h2, k2), torque: torque)
        let k4 = derivatives(add(y0, h, k3), torque: torque)
        var ns = (0..<4).map { y0[$0] + h / 6.0 * (k1[$0] + 2 * k2[$0] + 2 * k3[$0] + k4[$0]) }
        func wrap(_ x: Double) -> Double {
            var x = x
            while x > Double.pi { x -= 2 * Double.pi }
            while x < -Double.pi { x += 2 * Double.pi }
            return x
        }
        ns[0] = wrap(ns[0]); ns[1] = wrap(ns[1])
        ns[2] = Swift.min(Swift.max(ns[2], -maxVel1), maxVel1)
        ns[3] = Swift.min(Swift.max(ns[3], -maxVel2), maxVel2)
        state = ns
        let terminated = -cos(ns[0]) - cos(ns[1] + ns[0]) > 1.0
        return Transition(observation: observe(), reward: terminated ? 0.0 : -1.0, terminated: terminated, truncated: false)
    }
}
