import Dispatch
import Foundation
import ParryCore
import ParryDist
import ParryNN

/// A client's samples: inputs along dim 0 and 0-based int64 labels. With
/// `rows`, the inputs are those rows of `x` (an index view of a shared
/// dataset: no copy per client) and `y` holds one label per row.
public struct ClientData {
    public let x: Tensor
    public let y: Tensor
    public let rows: [Int]?
    public init(x: Tensor, y: Tensor, rows: [Int]? = nil) throws {
        guard x.ndim >= 1, y.ndim == 1, y.dtype == .int64 else {
            throw TensorError("client data needs x with samples along dim 1 and 1-D int64 labels")
        }
        if let rows {
            guard rows.count == y.shape[0] else { throw TensorError("client data has \(rows.count) rows but \(y.shape[0]) labels") }
            let n = x.shape[0]
            guard rows.allSatisfy({ $0 >= 0 && $0 < n }) else { throw TensorError("client data rows must be in 1..\(n)") }
        } else {
            guard x.shape[0] == y.shape[0] else { throw TensorError("client data has \(x.shape[0]) inputs but \(y.shape[0]) labels") }
        }
        self.x = x; self.y = y; self.rows = rows
    }
    public var count: Int { y.shape[0] }

    /// The inputs of samples `idx` (0-based positions in this client's data).
    public func inputs(_ idx: [Int]) throws -> Tensor {
        guard let rows else { return try x.indexSelect(0, idx) }
        return try x.indexSelect(0, idx.map { rows[$0] })
    }
}

/// Local training: SGD on cross-entropy, shuffled mini-batches.
public struct LocalTraining {
    public var epochs = 1
    public var batchSize = 32
    public var lr = 0.1
    public var momentum = 0.0
    public var weightDecay = 0.0
    /// lr in round r (1-based) is lr · lrDecay^(r−1) (RFFL uses 0.977).
    public var lrDecay = 1.0
    public init() {}
    func lr(round: Int) -> Double { lr * pow(lrDecay, Double(round - 1)) }
}

public struct FedConfig {
    public var rounds = 10
    public var local = LocalTraining()
    /// Share of clients sampled per round (global-model aggregators; RFFL uses everyone).
    public var fraction = 1.0
    public var aggregator: Aggregator = .fedavg
    /// Global model w ← w + serverLR · aggregate.
    public var serverLR = 1.0
    /// Optional norm bound on every upload for the global-model aggregators.
    public var clip: Double? = nil
    /// RFFL constants (official defaults for MNIST).
    public var rffl = RFFLConfig()
    /// Evaluate every honest client's model on the test set each round.
    public var evalClients = true
    public var evalBatch = 1000
    /// Train the round's clients concurrently (each with single-threaded BLAS).
    public var parallel = true
    public var seed: UInt64 = 0
    /// Spread the clients over the ranks of an MPI job: client i (0-based)
    /// lives on rank i mod size, which trains it, forges its upload and
    /// evaluates it; the uploads and accuracies are exchanged each round and
    /// the server's work is repeated on every rank, so every rank ends with
    /// the single-process result bit for bit. nil or size 1: one process.
    public var communicator: Communicator? = nil
    public init() {}
}

public struct RFFLConfig {
    /// Γ: uploads are clipped to this L2 norm.
    public var gamma = 0.5
    /// Reputation momentum: r ← α·r + (1 − α)·ψ.
    public var alpha = 0.95
    /// c: participants with r_i < c/|R| are removed.
    public var threshold = 1.0 / 3
    /// Removal starts once this many rounds have completed (official code: `_round >= 10`).
    public var removalAfter = 10
    /// Reward with the layer-wise top-⌈q_i·numel⌉ of the aggregate (false: the whole aggregate).
    public var sparsify = true
    public init() {}
}

/// One participant: its data, whether it is an adversary, and its generator.
/// A participant holds no model: training borrows one from the simulation's
/// pool. Only what an algorithm keeps between rounds is stored, flat: RFFL's
/// personal weights (4 bytes per parameter), its momentum buffers when
/// momentum is on, and its buffers (batch-norm statistics) when the model has any.
public final class Participant {
    public let data: ClientData
    public let adversary: Adversary?
    let trainLabels: Tensor
    let generator: Generator
    /// RFFL: the personal model's parameters (nil until the simulation starts).
    public internal(set) var weights: [Float]?
    /// RFFL with momentum: the optimizer's momentum buffers, flat (nil before the first step).
    var momentum: [Float]?
    /// RFFL with a model that has buffers: their values.
    var buffers: [Tensor]?

    public init(data: ClientData, adversary: Adversary? = nil) throws {
        self.data = data
        self.adversary = adversary
        trainLabels = try adversary.map { try Tensor($0.relabel(data.y.int64s()), shape: [data.count]) } ?? data.y
        generator = Generator(seed: 0)
    }
    public var isHonest: Bool { adversary == nil }
}

/// Models that training and evaluation jobs borrow, as many as run at once
/// (a job waits when all are out). A borrowed model's parameters are
/// overwritten by the job, so which one a job gets does not matter.
public final class ModelPool: @unchecked Sendable {
    public let models: [Module]
    let params: [[Tensor]]
    let buffers: [[Tensor]]
    private var free: [Int]
    private let lock = NSLock()
    private let available: DispatchSemaphore

    public init(_ models: [Module]) throws {
        guard !models.isEmpty else { throw TensorError("the model pool needs at least one model") }
        for (i, m) in models.enumerated() where models[..<i].contains(where: { $0 === m }) {
            throw TensorError("pool model \(i + 1) is another pool model; each needs its own")
        }
        self.models = models
        params = models.map { $0.allParameters() }
        buffers = models.map { $0.namedBuffers().map(\.tensor) }
        free = Array(models.indices)
        available = DispatchSemaphore(value: models.count)
    }

    /// Runs body with a free model and its parameters and buffers; gradients are dropped afterwards.
    public func with<R>(_ body: (Module, [Tensor], [Tensor]) throws -> R) rethrows -> R {
        available.wait()
        lock.lock(); let k = free.removeLast(); lock.unlock()
        defer {
            for p in params[k] { p.grad = nil }
            lock.lock(); free.append(k); lock.unlock()
            available.signal()
        }
        return try body(models[k], params[k], buffers[k])
    }
}

/// Copies buffer values (batch-norm statistics) without recording.
func copyBuffers(_ from: [Tensor], to: [Tensor]) throws {
    guard from.count == to.count else { throw TensorError("the models have different buffers") }
    try GradMode.noGrad { for (s, d) in zip(from, to) { try d.copy_(s) } }
}

/// What happened in one round (rounds are 1-based).
public struct RoundRecord {
    public var round: Int
    /// Test accuracy of each honest participant's model (nil for adversaries or when not evaluated).
    public var accuracy: [Double?]
    /// Test accuracy of the global model (global-model aggregators).
    public var globalAccuracy: Double?
    /// RFFL reputations after the round (0 for removed participants).
    public var reputation: [Double]?
    public var removed: [Bool]
    public var selected: [Bool]
    /// L2 norm of each upload (nil when the participant did not upload).
    public var updateNorm: [Double?]
    /// FLTrust trust scores, or 1/0 for Krum's selection; nil otherwise.
    public var weight: [Double?]?
    public var trainSeconds: Double
    public var seconds: Double
}

public struct FedResult {
    public var rounds: [RoundRecord]
    /// The last and best recorded accuracy per participant (nil for adversaries).
    public var finalAccuracy: [Double?]
    public var bestAccuracy: [Double?]
    /// 1-based round in which each participant was removed (RFFL), nil if never.
    public var removedRound: [Int?]
    public var trainSeconds: Double
    public var totalSeconds: Double
}

/// A federated simulation over participants that hold only their data and
/// what the algorithm keeps between rounds; local training borrows models
/// from `pool`. Global-model aggregators keep a server model (`server`); RFFL
/// keeps personal weights per participant.
public final class Simulation {
    public let participants: [Participant]
    public let test: ClientData
    public let server: Module
    public let pool: ModelPool
    public let root: ClientData?
    public var config: FedConfig
    /// Called after each round (on the calling thread).
    public var onRound: ((RoundRecord) throws -> Void)?

    let layout: ParameterLayout
    let serverParams: [Tensor]
    let serverBuffers: [Tensor]
    let serverGenerator: Generator
    /// The server's initial weights: every personal model starts from them (RFFL deep-copies one model).
    let initial: [Float]

    public init(participants: [Participant], server: Module, pool: ModelPool, test: ClientData, root: ClientData? = nil,
                config: FedConfig) throws {
        guard !participants.isEmpty else { throw TensorError("a simulation needs at least one participant") }
        guard participants.contains(where: \.isHonest) else { throw TensorError("every participant is an adversary; at least one must be honest") }
        self.participants = participants
        self.server = server
        self.test = test
        self.root = root
        self.config = config
        self.pool = pool
        serverParams = server.allParameters()
        serverBuffers = server.namedBuffers().map(\.tensor)
        layout = ParameterLayout(serverParams)
        for (k, ps) in pool.params.enumerated() {
            guard ParameterLayout(ps) == layout, pool.buffers[k].map(\.shape) == serverBuffers.map(\.shape) else {
                throw TensorError("pool model \(k + 1) has different parameters from the server model")
            }
            guard pool.models[k] !== server else { throw TensorError("the server model must not be in the pool") }
        }
        guard config.rounds >= 1 else { throw TensorError("rounds must be at least 1") }
        guard config.local.epochs >= 0, config.local.batchSize >= 1, config.local.lr >= 0 else {
            throw TensorError("local training needs epochs ≥ 0, batch_size ≥ 1 and lr ≥ 0")
        }
        guard config.fraction > 0, config.fraction <= 1 else { throw TensorError("fraction must be in (0, 1], got \(config.fraction)") }
        if case .fltrust = config.aggregator, root == nil { throw TensorError("fltrust needs a root dataset on the server") }
        serverGenerator = Generator(seed: config.seed)
        for (i, p) in participants.enumerated() { p.generator.reseed(config.seed &+ 0x9E37_79B9 &* UInt64(i + 1)) }
        initial = layout.read(serverParams)
        for p in participants { p.weights = nil; p.momentum = nil; p.buffers = nil }
    }

    /// Whether jobs may run on worker threads: no closure-backed (Lua) module inside.
    /// User callbacks (aggregators, adversaries, on_round) always run on the calling thread.
    var concurrent: Bool {
        config.parallel && pool.models.allSatisfy(Simulation.threadSafe) && Simulation.threadSafe(server)
    }

    /// A module tree is safe to run off the main thread when it has no closure-backed module or hook.
    public static func threadSafe(_ m: Module) -> Bool {
        m.namedModules().allSatisfy { !($0.module is ClosureModule) && !$0.module.hasHooks }
    }

    public func run() throws -> FedResult {
        if case .rffl = config.aggregator { return try runRFFL() }
        return try runGlobal()
    }

    // MARK: global-model aggregators

    func runGlobal() throws -> FedResult {
        let n = participants.count
        // Distributed FedAvg folds each chunk on a second thread, over a communicator of its own.
        var pending: Background<[Int: Double]>? = nil
        let foldComm: Communicator? = try {
            guard let comm, comm.threadMultiple, case .fedavg = config.aggregator else { return nil }
            return try comm.duplicate()
        }()
        defer {
            _ = try? pending?.join()
            foldComm?.free()
        }
        var records: [RoundRecord] = []
        var lastAcc = [Double?](repeating: nil, count: n)
        let start = DispatchTime.now()
        var trainTotal = 0.0
        for round in 1...config.rounds {
            try Interrupt.check()
            let roundStart = DispatchTime.now()
            let w = layout.read(serverParams)
            let m = max(1, Int((config.fraction * Double(n)).rounded()))
            let chosen = m >= n ? Array(0..<n) : serverGenerator.permutation(n).prefix(m).sorted()
            let lr = config.local.lr(round: round)
            let rootUpdate = Slots<[Float]>(1)
            let evaluate = config.evalClients
            // FedAvg folds each upload into the running weighted sum as soon as its chunk of clients is
            // done — in client order, the same saxpy sequence as over the whole list — so a round holds
            // one chunk's uploads, not every client's. The other rules need every upload at once.
            let streaming: Bool = { if case .fedavg = config.aggregator { return true }; return false }()
            let chunk = streaming ? max(64, 4 * pool.models.count) : max(1, chosen.count)
            let counts = chosen.map { Double(participants[$0].data.count) }
            let countSum = counts.reduce(0, +)
            if streaming { guard countSum > 0 else { throw TensorError("fedavg weights sum to zero") } }
            // Distributed FedAvg keeps only this rank's slice of the running sum until the round's end.
            let cuts = comm.map { Communicator.sliceCuts(layout.total, size: $0.size) } ?? [0, layout.total]
            let mySlice = comm.map { cuts[$0.rank]..<cuts[$0.rank + 1] } ?? 0..<layout.total
            let running = Shared([Float](repeating: 0, count: streaming ? mySlice.count : 0))
            var sent: [[Float]] = []
            var norms = [Double?](repeating: nil, count: n)
            var trainSeconds = 0.0
            // Chunk bounds. Distributed FedAvg halves the last full chunk's remainder again and again
            // (64, 18, 9, 9 of 100): a chunk's exchange and fold overlap the next chunk's training,
            // so only the last, small one is waited for.
            var bounds: [Range<Int>] = []
            do {
                var lo = 0
                let tail = 4 * (comm?.size ?? 1)
                while lo < chosen.count {
                    let rest = chosen.count - lo
                    let size = rest > chunk ? chunk : (foldComm != nil && rest > 2 * tail ? rest / 2 : rest)
                    bounds.append(lo..<(lo + size))
                    lo += size
                }
            }
            for bound in bounds {
                let lo = bound.lowerBound
                let part = Array(chosen[bound])
                var slot = [Int: Int]()
                for (k, i) in part.enumerated() { slot[i] = k }
                let uploads = Slots<[Float]>(part.count)
                let acc = Slots<Double>(part.count)
                // Phase 1: local training (and the FLTrust server's root update). Each job borrows a pool
                // model: the global weights and the server's buffers in, the upload (and the honest
                // client's test accuracy) out.
                let t0 = DispatchTime.now()
                var jobs: [() throws -> Void] = part.enumerated().filter { owns($0.element) }.map { k, i in {
                    let p = self.participants[i]
                    try self.pool.with { model, params, buffers in
                        try self.layout.write(w, to: params)
                        try copyBuffers(self.serverBuffers, to: buffers)
                        let opt = try SGD(params, lr: lr, momentum: self.config.local.momentum, weightDecay: self.config.local.weightDecay)
                        if p.adversary?.trains ?? true { try self.train(model, opt, p.data, p.trainLabels, p.generator) }
                        uploads[k] = Vec.sub(self.layout.read(params), w)
                        if evaluate && p.isHonest { acc[k] = try self.accuracy(model, self.test) }
                    }
                } }
                if lo == 0, case .fltrust = config.aggregator, let root {
                    jobs.append {
                        let opt = try SGD(self.serverParams, lr: lr, momentum: self.config.local.momentum, weightDecay: self.config.local.weightDecay)
                        try self.train(self.server, opt, root, root.y, self.serverGenerator)
                        rootUpdate[0] = Vec.sub(self.layout.read(self.serverParams), w)
                        try self.layout.write(w, to: self.serverParams)
                    }
                }
                // An error on one rank travels with the exchange below, so that every rank raises it.
                var failure: Error? = nil
                do { try runJobs(jobs) } catch { if comm == nil { throw error }; failure = error }
                trainSeconds += seconds(since: t0)
                // Phase 2: adversaries forge (each client on its own rank) and the uploads are exchanged.
                let upload = { (i: Int) throws -> [Float] in
                    // Every chosen client's job filled its slot (runJobs rethrows a job's error first).
                    guard let k = slot[i], var u = uploads[k] else { throw TensorError("client \(i + 1) produced no update in round \(round)") }
                    uploads[k] = nil
                    if let adv = self.participants[i].adversary {
                        u = try adv.forge(u, round: round, self.participants[i].generator)
                    }
                    if let c = self.config.clip { _ = Vec.clip(&u, maxNorm: c) }
                    return u
                }
                var final = [Int: [Float]]()
                if let comm, streaming {
                    // Distributed FedAvg: each rank folds its slice of the parameters over all the
                    // chunk's uploads, in client order (the saxpy sequence of one process, slice by
                    // slice) — on a thread of its own, while the next chunk trains, when MPI allows.
                    let weights = part.indices.map { counts[lo + $0] / countSum }
                    let prepared = Federated.shardedUploads(part, comm, failure: failure, total: layout.total, compute: upload)
                    if let p = pending { pending = nil; for (i, v) in try p.join() { norms[i] = v } }
                    if let foldComm {
                        pending = Background { try Federated.fold(prepared, foldComm, cuts: cuts, weights: weights, into: &running.values) }
                    } else {
                        for (i, v) in try Federated.fold(prepared, comm, cuts: cuts, weights: weights, into: &running.values) { norms[i] = v }
                    }
                } else {
                    final = try Federated.byClient(part, comm, failure: failure, upload)
                }
                // Phase 3: the honest clients' accuracies (measured in their jobs).
                if config.evalClients {
                    let got = try Federated.byClientDouble(part.filter { participants[$0].isHonest }, comm) { i in slot[i].flatMap { acc[$0] } }
                    for i in part { if let v = got[i] ?? nil { lastAcc[i] = v } }
                }
                if comm != nil && streaming { continue }   // folded above
                for (k, i) in part.enumerated() {
                    guard let u = final[i] else { throw TensorError("client \(i + 1) produced no update in round \(round)") }
                    norms[i] = Vec.norm(u)
                    if streaming {
                        Vec.accumulate(&running.values, u, weight: counts[lo + k] / countSum)
                    } else {
                        sent.append(u)
                    }
                }
            }
            if let p = pending { pending = nil; for (i, v) in try p.join() { norms[i] = v } }
            // Distributed: the round's training lasts as long as the slowest rank's.
            if let comm { trainSeconds = try comm.allreduce(trainSeconds, op: .max) }
            trainTotal += trainSeconds
            // Phase 4: the server aggregates (the same inputs on every rank).
            var weight: [Double?]? = nil
            let aggregate: [Float]
            switch config.aggregator {
            case .fedavg:   // Aggregation.weightedMean, folded in as the chunks finished
                if let comm {
                    aggregate = try comm.allgatherVectors([running.values]).flatMap { $0.flatMap { $0 } }
                    guard aggregate.count == layout.total else { throw TensorError("the ranks' slices of the aggregate have \(aggregate.count) values for \(layout.total) parameters") }
                } else {
                    aggregate = running.values
                }
            case .median: aggregate = try Aggregation.median(sent)
            case let .trimmedMean(beta): aggregate = try Aggregation.trimmedMean(sent, beta: beta)
            case let .krum(f, mm):
                let (a, sel) = try Aggregation.krum(sent, f: f, m: mm)
                aggregate = a
                var wv = [Double?](repeating: nil, count: n)
                for (k, i) in chosen.enumerated() { wv[i] = sel.contains(k) ? 1 : 0 }
                weight = wv
            case .fltrust:
                guard let root = rootUpdate[0] else { throw TensorError("fltrust: the server produced no root update") }
                let (a, trust) = try Aggregation.fltrust(sent, root: root)
                aggregate = a
                var wv = [Double?](repeating: nil, count: n)
                for (k, i) in chosen.enumerated() { wv[i] = trust[k] }
                weight = wv
            case let .custom(fn):
                aggregate = try fn(sent, counts, round)
                guard aggregate.count == layout.total else {
                    throw TensorError("the aggregator function returned \(aggregate.count) values; the model has \(layout.total) parameters")
                }
                guard aggregate.allSatisfy(\.isFinite) else { throw TensorError("the aggregator function returned non-finite values") }
            case .rffl: throw TensorError("rffl runs through runRFFL")
            }
            try layout.add(aggregate, scale: Float(config.serverLR), to: serverParams)
            let global = try Federated.accuracy(server, test, batchSize: config.evalBatch, concurrent: concurrent, comm: comm)
            var selected = [Bool](repeating: false, count: n)
            for i in chosen { selected[i] = true }
            let record = RoundRecord(round: round, accuracy: lastAcc, globalAccuracy: global, reputation: nil,
                                     removed: [Bool](repeating: false, count: n), selected: selected,
                                     updateNorm: norms, weight: weight, trainSeconds: trainSeconds,
                                     seconds: seconds(since: roundStart))
            records.append(record)
            try onRound?(record)
        }
        // Without per-client evaluation every honest client holds the global model.
        if !config.evalClients {
            let g = records.last?.globalAccuracy
            for i in 0..<n where participants[i].isHonest { lastAcc[i] = g }
        }
        return summarize(records, removed: [Int?](repeating: nil, count: n), last: lastAcc,
                         train: trainTotal, total: seconds(since: start))
    }

    // MARK: RFFL (Xu & Lyu 2020, following the official code)

    func runRFFL() throws -> FedResult {
        let n = participants.count
        let rc = config.rffl
        var active = [Bool](repeating: true, count: n)
        var removedRound = [Int?](repeating: nil, count: n)
        var rep = [Double](repeating: 0, count: n)
        let shares: [Double] = {
            let c = participants.map { Double($0.data.count) }
            let s = c.reduce(0, +)
            return c.map { $0 / s }
        }()
        var lastAcc = [Double?](repeating: nil, count: n)
        var records: [RoundRecord] = []
        let start = DispatchTime.now()
        var trainTotal = 0.0
        for round in 1...config.rounds {
            try Interrupt.check()
            let roundStart = DispatchTime.now()
            let lr = config.local.lr(round: round)
            let live = (0..<n).filter { active[$0] }
            let deltas = Slots<[Float]>(n)
            // Phase 1: every remaining participant trains from its own model.
            let t0 = DispatchTime.now()
            var failure: Error? = nil
            do { try runJobs(live.filter { (participants[$0].adversary?.trains ?? true) && owns($0) }.map { i in {
                let p = self.participants[i]
                try self.pool.with { model, params, buffers in
                    let before = p.weights ?? self.initial
                    try self.layout.write(before, to: params)
                    try copyBuffers(p.buffers ?? self.serverBuffers, to: buffers)
                    let opt = try SGD(params, lr: lr, momentum: self.config.local.momentum, weightDecay: self.config.local.weightDecay)
                    if let m = p.momentum {
                        for (k, r) in self.layout.ranges.enumerated() {
                            opt.state[k]["momentum_buffer"] = try Tensor(Array(m[r]), shape: self.layout.shapes[k])
                        }
                    }
                    try self.train(model, opt, p.data, p.trainLabels, p.generator)
                    var after = self.layout.read(params)
                    var d = Vec.sub(after, before)
                    // Honest participants keep w_old + clipped Δ when clipping bites.
                    if p.isHonest && Vec.clip(&d, maxNorm: rc.gamma) {
                        for j in after.indices { after[j] = before[j] + d[j] }
                    }
                    p.weights = after
                    if self.config.local.momentum != 0 {
                        var m = [Float](repeating: 0, count: self.layout.total)
                        for (k, r) in self.layout.ranges.enumerated() {
                            if let b = opt.state[k]["momentum_buffer"] { m.replaceSubrange(r, with: b.floats()) }
                        }
                        p.momentum = m
                    }
                    if !buffers.isEmpty { p.buffers = try buffers.map { try $0.detach().clone() } }
                    deltas[i] = d
                }
            } }) } catch { if comm == nil { throw error }; failure = error }
            var trainSeconds = seconds(since: t0)
            if let comm { trainSeconds = try comm.allreduce(trainSeconds, op: .max) }
            trainTotal += trainSeconds
            let exchanged = try Federated.byClient(live, comm, failure: failure) { i -> [Float] in
                var d = deltas[i] ?? [Float](repeating: 0, count: layout.total)
                if let adv = participants[i].adversary {
                    d = try adv.forge(d, round: round, participants[i].generator)
                    _ = Vec.clip(&d, maxNorm: rc.gamma)
                }
                guard d.allSatisfy(\.isFinite) else { throw TensorError("participant \(i + 1) uploaded non-finite values in round \(round)") }
                return d
            }
            var norms = [Double?](repeating: nil, count: n)
            var uploads: [[Float]] = []   // aligned with `live`
            for i in live {
                guard let d = exchanged[i] else { throw TensorError("participant \(i + 1) produced no update in round \(round)") }
                uploads.append(d)
                norms[i] = Vec.norm(d)
            }
            // Aggregate with shard shares in round 1, reputations afterwards.
            let weights = round == 1 ? shares : rep
            let u = Vec.weightedSum(uploads, live.map { weights[$0] })
            var psi = [Double](repeating: 0, count: n)
            for (i, d) in zip(live, uploads) { psi[i] = Vec.cosine(d, u) }
            for i in 0..<n { rep[i] = active[i] ? rc.alpha * rep[i] + (1 - rc.alpha) * psi[i] : 0 }
            normalize(&rep)
            if round > rc.removalAfter {
                let cut = rc.threshold / Double(live.count)
                for i in live where rep[i] < cut {
                    rep[i] = 0; active[i] = false; removedRound[i] = round
                }
                normalize(&rep)
            }
            let top = rep.max() ?? 0
            // Reward: the layer-wise top ⌈q_i·numel⌉ of u, q_i = r_i / max r.
            var rewardJobs: [() throws -> Void] = []
            for i in 0..<n where active[i] && owns(i) {
                let q = top > 0 ? rep[i] / top : 0
                rewardJobs.append {
                    let reward = rc.sparsify ? Vec.layerTopK(u, layout: self.layout, q: q) : u
                    let p = self.participants[i]
                    var w = p.weights ?? self.initial
                    for j in w.indices { w[j] += reward[j] }
                    p.weights = w
                }
            }
            try runJobs(rewardJobs)
            if config.evalClients {
                let acc = Slots<Double>(n)
                let due = (0..<n).filter { participants[$0].isHonest && (active[$0] || lastAcc[$0] == nil) }
                var evalFailure: Error? = nil
                do {
                    try runJobs(due.filter(owns).map { i in { acc[i] = try self.personalAccuracy(i) } })
                } catch { if comm == nil { throw error }; evalFailure = error }
                let got = try Federated.byClientDouble(due, comm, failure: evalFailure) { acc[$0] }
                for i in due { if let v = got[i] ?? nil { lastAcc[i] = v } }
            }
            let record = RoundRecord(round: round, accuracy: lastAcc, globalAccuracy: nil, reputation: rep,
                                     removed: active.map { !$0 }, selected: (0..<n).map { live.contains($0) },
                                     updateNorm: norms, weight: nil, trainSeconds: trainSeconds,
                                     seconds: seconds(since: roundStart))
            records.append(record)
            try onRound?(record)
            if !active.contains(true) { break }
        }
        if !config.evalClients {
            let honest = (0..<n).filter { participants[$0].isHonest }
            let got = try Federated.byClientDouble(honest, comm) { try self.personalAccuracy($0) }
            for i in honest { lastAcc[i] = got[i] ?? nil }
        }
        // Every rank ends with every participant's personal weights.
        if let comm {
            let w = try Federated.byClient(Array(0..<n), comm) { self.participants[$0].weights ?? self.initial }
            for i in 0..<n where !Federated.owns(i, comm) { participants[i].weights = w[i] }
        }
        return summarize(records, removed: removedRound, last: lastAcc, train: trainTotal, total: seconds(since: start))
    }

    /// Test accuracy of participant i's personal model (RFFL), on a pool model.
    func personalAccuracy(_ i: Int) throws -> Double {
        let p = participants[i]
        return try pool.with { model, params, buffers in
            try layout.write(p.weights ?? initial, to: params)
            try copyBuffers(p.buffers ?? serverBuffers, to: buffers)
            return try accuracy(model, test)
        }
    }

    func normalize(_ r: inout [Double]) {
        let s = r.reduce(0, +)
        if s != 0 && s.isFinite { r = r.map { $0 / s } }
    }

    func summarize(_ records: [RoundRecord], removed: [Int?], last: [Double?], train: Double, total: Double) -> FedResult {
        let n = participants.count
        let best = (0..<n).map { i -> Double? in
            let v = records.compactMap { $0.accuracy[i] }
            return v.isEmpty ? nil : v.max()
        }
        return FedResult(rounds: records, finalAccuracy: last, bestAccuracy: best, removedRound: removed,
                         trainSeconds: train, totalSeconds: total)
    }

    // MARK: shared pieces

    func train(_ model: Module, _ opt: SGD, _ d: ClientData, _ y: Tensor, _ g: Generator) throws {
        try Federated.train(model, opt, d, labels: y, epochs: config.local.epochs, batchSize: config.local.batchSize, generator: g)
    }

    func accuracy(_ model: Module, _ d: ClientData) throws -> Double {
        try Federated.accuracy(model, d, batchSize: config.evalBatch)
    }

    func runJobs(_ jobs: [() throws -> Void]) throws {
        try Federated.runJobs(jobs, concurrent: concurrent)
    }

    // MARK: ranks

    var comm: Communicator? { Federated.active(config.communicator) }
    func owns(_ i: Int) -> Bool { Federated.owns(i, comm) }
}

func seconds(since t: DispatchTime) -> Double { Double(DispatchTime.now().uptimeNanoseconds - t.uptimeNanoseconds) / 1e9 }

/// Local training, evaluation and job scheduling shared by the simulations.
public enum Federated {
    /// `epochs` passes of shuffled mini-batch SGD on cross-entropy over d's
    /// inputs and `labels` (d's own, or an adversary's relabelling); draws from `generator`.
    public static func train(_ model: Module, _ opt: Optimizer, _ d: ClientData, labels y: Tensor, epochs: Int, batchSize: Int,
                             generator g: Generator) throws {
        let n = y.shape[0]
        guard n == d.count else { throw TensorError("\(n) labels for \(d.count) samples") }
        guard n > 0 else { return }
        model.train()
        try Generator.$current.withValue(g) {
            try GradMode.with(enabled: true) {
                for _ in 0..<epochs {
                    let perm = g.permutation(n)
                    var s = 0
                    while s < n {
                        let idx = Array(perm[s..<min(n, s + batchSize)])
                        let loss = try Loss.crossEntropy(model(d.inputs(idx)), y.indexSelect(0, idx))
                        opt.zeroGrad()
                        try loss.backward()
                        try opt.step()
                        s += batchSize
                    }
                }
            }
        }
    }

    /// Top-1 accuracy in eval mode, without recording; the module's modes are
    /// restored. With `concurrent`, the batches are split over the cores (an
    /// eval-mode forward reads the parameters only, so one model can serve
    /// several threads).
    public static func accuracy(_ model: Module, _ d: ClientData, batchSize: Int = 1000,
                                concurrent: Bool = false, comm: Communicator? = nil) throws -> Double {
        let modes = model.namedModules().map { ($0.module, $0.module.training) }
        defer { for (m, t) in modes { m.setTrainingFlag(t) } }
        model.eval()
        let n = d.count
        guard n > 0 else { return .nan }
        let labels = d.y.int64s()
        let starts = Array(stride(from: 0, to: n, by: batchSize))
        let counts = Slots<Int>(starts.count)
        // Distributed: batch k is evaluated on rank k mod size (the same batches as in one process, so
        // the same predictions), and the ranks exchange the counts of correct predictions.
        let comm = active(comm)
        let mine = starts.indices.filter { owns($0, comm) }
        var failure: Error? = nil
        do {
            try runJobs(mine.map { k in {
                let s = starts[k]
                try GradMode.noGrad {
                    let len = min(batchSize, n - s)
                    let batch = d.rows == nil ? try d.x.narrow(0, s, len) : try d.inputs(Array(s..<(s + len)))
                    let (_, idx) = try model(batch).extremum(largest: true, dim: 1)
                    var correct = 0
                    for (j, p) in idx.int64s().enumerated() where p == labels[s + j] { correct += 1 }
                    counts[k] = correct
                }
            } }, concurrent: concurrent && Simulation.threadSafe(model))
        } catch { if comm == nil { throw error }; failure = error }
        guard let comm else { return Double(starts.indices.reduce(0) { $0 + (counts[$1] ?? 0) }) / Double(n) }
        let got = try byClientDouble(Array(starts.indices), comm, failure: failure) { k in counts[k].map(Double.init) }
        return starts.indices.reduce(0.0) { $0 + ((got[$1] ?? nil) ?? 0) } / Double(n)
    }

    /// Runs the jobs, concurrently across parry's threads (`Parallel`; the
    /// jobs' own parallel loops then run in order) or in order. Each job owns
    /// its state, so the results do not depend on which runs where. Rethrows
    /// the first error by job order.
    public static func runJobs(_ jobs: [() throws -> Void], concurrent: Bool) throws {
        guard concurrent, jobs.count > 1 else {
            for j in jobs { try j() }
            return
        }
        try Parallel.forEach(jobs.count) { k in try jobs[k]() }
    }

    // MARK: clients over ranks

    /// The communicator when it spans more than one rank.
    public static func active(_ c: Communicator?) -> Communicator? {
        guard let c, c.size > 1 else { return nil }
        return c
    }

    /// Whether this rank holds client `i` (0-based): rank i mod size.
    public static func owns(_ i: Int, _ comm: Communicator?) -> Bool {
        guard let comm else { return true }
        return i % comm.size == comm.rank
    }

    /// Each listed client's vector, computed by the rank that holds it (all of
    /// them, in order, in a single process), on every rank. An error on any
    /// rank, or `failure` from earlier work, is raised on every rank.
    public static func byClient(_ clients: [Int], _ comm: Communicator?, failure: Error? = nil,
                                _ compute: (Int) throws -> [Float]) throws -> [Int: [Float]] {
        var out = [Int: [Float]]()
        guard let comm else {
            if let failure { throw failure }
            for i in clients { out[i] = try compute(i) }
            return out
        }
        // Each rank computes its clients' vectors; a failure anywhere is heard
        // by every rank first, then the vectors travel without packing.
        var mine = [[Float]]()
        var status: Payload = .bytes([])
        do {
            if let failure { throw failure }
            for i in clients where owns(i, comm) { mine.append(try compute(i)) }
        } catch {
            status = .failure("\(error)")
            mine = []
        }
        _ = try comm.allgather(status)   // raises the first rank's failure on every rank
        for (r, vecs) in try comm.allgatherVectors(mine).enumerated() {
            let theirs = clients.filter { $0 % comm.size == r }
            guard vecs.count == theirs.count else { throw TensorError("rank \(r) sent results for \(vecs.count) of its \(theirs.count) clients") }
            for (i, v) in zip(theirs, vecs) { out[i] = v }
        }
        return out
    }

    /// One rank's part of a sharded FedAvg fold: its clients' uploads and
    /// their norms, or the failure that stopped it (which travels to every rank).
    public struct ShardedUploads {
        let clients: [Int]
        let mine: [[Float]]
        let status: Payload
    }

    /// Computes this rank's uploads for `clients` (on the calling thread: an
    /// adversary may be Lua code). Errors are kept for `fold` to spread.
    public static func shardedUploads(_ clients: [Int], _ comm: Communicator, failure: Error? = nil, total: Int,
                                      compute: (Int) throws -> [Float]) -> ShardedUploads {
        var mine = [[Float]]()
        do {
            if let failure { throw failure }
            var packed = [UInt8]()
            for i in clients where owns(i, comm) {
                let u = try compute(i)
                guard u.count == total else { throw TensorError("client \(i + 1) uploaded \(u.count) values for a model with \(total) parameters") }
                withUnsafeBytes(of: Vec.norm(u)) { packed.append(contentsOf: $0) }
                mine.append(u)
            }
            return ShardedUploads(clients: clients, mine: mine, status: .bytes(packed))
        } catch {
            return ShardedUploads(clients: clients, mine: [], status: .failure("\(error)"))
        }
    }

    /// FedAvg's fold over ranks: `acc` — this rank's slice `cuts[rank]..<cuts[rank + 1]`
    /// of the running sum — gets weights[k] · upload of clients[k] added, in
    /// list order, from the slices the other ranks sent (`exchangeSlices`).
    /// The same saxpy calls as one process makes, on slices whose bounds keep
    /// BLAS's treatment of each element, so the sum has the same bits. Returns
    /// every client's upload norm. A failure on any rank is raised on all.
    public static func fold(_ s: ShardedUploads, _ comm: Communicator, cuts: [Int], weights: [Double],
                            into acc: inout [Float]) throws -> [Int: Double] {
        let size = comm.size, me = comm.rank, clients = s.clients
        let lo = cuts[me], len = cuts[me + 1] - cuts[me]
        guard weights.count == clients.count, acc.count == len else {
            throw TensorError("fold: \(weights.count) weights for \(clients.count) clients, a sum of \(acc.count) values for a slice of \(len)")
        }
        // The norms travel with the status, so a failure anywhere stops every rank before the exchange.
        var norms = [Int: Double]()
        for (r, p) in try comm.allgather(s.status).enumerated() {
            guard case let .bytes(b) = p else { throw TensorError("rank \(r) sent no client results") }
            let theirs = clients.filter { $0 % size == r }
            guard b.count == 8 * theirs.count else { throw TensorError("rank \(r) sent norms for \(b.count / 8) of its \(theirs.count) clients") }
            for (k, i) in theirs.enumerated() { norms[i] = b[(8 * k)..<(8 * k + 8)].withUnsafeBytes { $0.loadUnaligned(as: Double.self) } }
        }
        let counts = (0..<size).map { r in clients.reduce(0) { $0 + ($1 % size == r ? 1 : 0) } }
        let received = try comm.exchangeSlices(s.mine, cuts: cuts, counts: counts)
        var position = [Int](repeating: 0, count: size)
        acc.withUnsafeMutableBufferPointer { pa in
            guard let sum = pa.baseAddress else { return }   // an empty slice
            for (k, i) in clients.enumerated() {
                let q = i % size, j = position[q]
                position[q] += 1
                // this rank's uploads whole (its slice at lo), the others' as received (slice j)
                let (vector, at) = q == me ? (s.mine[j], lo) : (received[q], j * len)
                vector.withUnsafeBufferPointer { v in
                    if let base = v.baseAddress { Vec.accumulate(sum, base + at, count: len, weight: weights[k]) }
                }
            }
        }
        return norms
    }

    /// As `byClient`, for one optional number per client (nil travels as nil).
    public static func byClientDouble(_ clients: [Int], _ comm: Communicator?, failure: Error? = nil,
                                      _ compute: (Int) throws -> Double?) throws -> [Int: Double?] {
        var out = [Int: Double?]()
        guard let comm else {
            if let failure { throw failure }
            for i in clients { out[i] = try compute(i) }
            return out
        }
        let blobs = try exchange(clients, comm, failure: failure) { i in
            try compute(i).map { v in withUnsafeBytes(of: v) { Array($0) } } ?? []
        }
        for (i, b) in blobs {
            out[i] = b.count == 8 ? b.withUnsafeBytes { $0.loadUnaligned(as: Double.self) } : nil
        }
        return out
    }

    /// Rank r packs the blobs of its clients (those with i mod size == r) in
    /// list order; every rank unpacks every rank's.
    static func exchange(_ clients: [Int], _ comm: Communicator, failure: Error?,
                         _ compute: (Int) throws -> [UInt8]) throws -> [Int: [UInt8]] {
        let payload: Payload
        do {
            if let failure { throw failure }
            var packed = [UInt8]()
            for i in clients where owns(i, comm) {
                let b = try compute(i)
                withUnsafeBytes(of: Int64(b.count).littleEndian) { packed.append(contentsOf: $0) }
                packed.append(contentsOf: b)
            }
            payload = .bytes(packed)
        } catch {
            payload = .failure("\(error)")
        }
        var out = [Int: [UInt8]]()
        for (r, p) in try comm.allgather(payload).enumerated() {
            guard case let .bytes(b) = p else { throw TensorError("rank \(r) sent no client results") }
            var k = 0
            for i in clients where i % comm.size == r {
                guard k + 8 <= b.count else { throw TensorError("rank \(r) sent results for fewer clients than it holds") }
                let len = Int(Int64(littleEndian: b[k..<(k + 8)].withUnsafeBytes { $0.loadUnaligned(as: Int64.self) }))
                k += 8
                guard len >= 0, k + len <= b.count else { throw TensorError("rank \(r) sent malformed client results") }
                out[i] = Array(b[k..<(k + len)])
                k += len
            }
        }
        return out
    }

    /// Each honest client trained alone for `rounds` rounds of local training,
    /// from the same initial weights (the first pool model's, as given): the
    /// standalone baseline of CFFL/RFFL's fairness. Jobs borrow pool models.
    public static func standalone(_ participants: [Participant], pool: ModelPool, test: ClientData, rounds: Int,
                                  local: LocalTraining, seed: UInt64, parallel: Bool, evalBatch: Int = 1000,
                                  communicator: Communicator? = nil) throws -> [Double] {
        let acc = Slots<Double>(participants.count)
        let concurrent = parallel && pool.models.allSatisfy(Simulation.threadSafe)
        let layout = ParameterLayout(pool.params[0])
        let initial = layout.read(pool.params[0])
        let initialBuffers = try pool.buffers[0].map { try $0.detach().clone() }
        let comm = active(communicator)
        var failure: Error? = nil
        do { try runJobs(participants.enumerated().filter { owns($0.offset, comm) }.map { i, p in {
            p.generator.reseed(seed &+ 0x9E37_79B9 &* UInt64(i + 1))
            try pool.with { model, params, buffers in
                try layout.write(initial, to: params)
                try copyBuffers(initialBuffers, to: buffers)
                let opt = try SGD(params, lr: local.lr, momentum: local.momentum, weightDecay: local.weightDecay)
                for r in 1...max(rounds, 1) {
                    opt.lr = local.lr(round: r)
                    try train(model, opt, p.data, labels: p.trainLabels, epochs: local.epochs, batchSize: local.batchSize, generator: p.generator)
                }
                acc[i] = try accuracy(model, test, batchSize: evalBatch)
            }
        } }, concurrent: concurrent) } catch { if comm == nil { throw error }; failure = error }
        let got = try byClientDouble(Array(participants.indices), comm, failure: failure) { acc[$0] }
        return participants.indices.map { (got[$0] ?? nil) ?? .nan }
    }

    /// Pearson correlation; nan when either side is constant or fewer than two pairs.
    public static func pearson(_ a: [Double], _ b: [Double]) -> Double {
        let n = Double(min(a.count, b.count))
        guard n >= 2 else { return .nan }
        let ma = a.reduce(0, +) / n, mb = b.reduce(0, +) / n
        var sab = 0.0, saa = 0.0, sbb = 0.0
        for (x, y) in zip(a, b) { sab += (x - ma) * (y - mb); saa += (x - ma) * (x - ma); sbb += (y - mb) * (y - mb) }
        guard saa > 0, sbb > 0 else { return .nan }
        return sab / (saa * sbb).squareRoot()
    }
}

/// Result slots that concurrent jobs fill, one index each (no two jobs share
/// an index, so no locking is needed; reads happen after the jobs finish).
final class Slots<T>: @unchecked Sendable {
    private let buffer: UnsafeMutableBufferPointer<T?>
    init(_ n: Int) {
        buffer = .allocate(capacity: n)
        buffer.initialize(repeating: nil)
    }
    deinit { buffer.deinitialize(); buffer.deallocate() }
    subscript(i: Int) -> T? {
        get { buffer[i] }
        set { buffer[i] = newValue }
    }
}

/// A value a background job mutates in place and the caller reads after `join`.
final class Shared<T>: @unchecked Sendable {
    var values: T
    init(_ v: T) { values = v }
}

/// One job on a thread of its own; `join` waits for it and returns its result
/// or rethrows its error.
final class Background<T>: @unchecked Sendable {
    private var result: Result<T, Error>?
    private let done = NSCondition()

    init(_ body: @escaping () throws -> T) {
        let t = Thread { [self] in
            let r = Result { try body() }
            done.lock(); result = r; done.signal(); done.unlock()
        }
        t.start()
    }

    func join() throws -> T {
        done.lock()
        defer { done.unlock() }
        while true {
            if let r = result { return try r.get() }
            done.wait()
        }
    }
}
