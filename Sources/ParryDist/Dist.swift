import CMPI
import Foundation
import ParryCore

// parry.dist's collectives over Open MPI's C API. One binary: a process not
// started by mpirun/srun never initializes MPI and is rank 0 of 1, where
// every collective is a local copy. Ranks are MPI's own 0-based numbers.
//
// Every tensor collective first exchanges a small header (kind, dtype, shape)
// so that ranks passing different shapes or dtypes all get the same error
// instead of one of them blocking or reading garbage. Payloads move in chunks
// of at most 2^30 elements (MPI counts are 32-bit).

public struct DistError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

public enum ReduceOp: String, CaseIterable, Sendable {
    case sum, mean, max, min

    var mpi: MPI_Op? {
        switch self {
        case .sum, .mean: return parry_mpi_sum()
        case .max: return parry_mpi_max()
        case .min: return parry_mpi_min()
        }
    }
}

/// What a header describes: a tensor, or opaque bytes (serialized Lua values),
/// or a rank's failure to produce either (its message travels instead, so
/// every rank of the collective raises the error rather than waiting).
public enum Payload {
    case tensor(Tensor)
    case bytes([UInt8])
    case failure(String)
}

/// The world communicator: rank and size, and the collectives over it.
public final class Communicator: @unchecked Sendable {
    public let rank: Int
    public let size: Int
    /// nil in a process that was not launched by an MPI starter.
    let comm: MPI_Comm?

    public var isMain: Bool { rank == 0 }
    /// Whether MPI allows calls from several threads at once (the work queue needs it).
    public private(set) var threadMultiple = false
    /// Whether MPI is running (size may still be 1 under `mpirun -np 1`).
    public var isDistributed: Bool { comm != nil }

    init(rank: Int, size: Int, comm: MPI_Comm?) {
        self.rank = rank; self.size = size; self.comm = comm
    }

    /// A communicator over the same ranks whose messages never meet this
    /// one's (MPI_Comm_dup), for collectives a second thread issues while the
    /// first goes on with its own (FedAvg's fold in the background). Call it
    /// on every rank in the same order; `free()` it on every rank when done.
    public func duplicate() throws -> Communicator {
        guard let comm else { return Communicator(rank: rank, size: size, comm: nil) }
        var d: MPI_Comm? = nil
        try check(MPI_Comm_dup(comm, &d), "MPI_Comm_dup")
        MPI_Comm_set_errhandler(d, parry_mpi_errors_return())
        let c = Communicator(rank: rank, size: size, comm: d)
        c.threadMultiple = threadMultiple
        c.duplicated = true
        return c
    }
    private var duplicated = false

    /// Releases a communicator made by `duplicate()` (the world stays).
    public func free() {
        guard duplicated, comm != nil else { return }
        var c: MPI_Comm? = comm
        duplicated = false
        var flag: Int32 = 0
        MPI_Finalized(&flag)
        if flag == 0 { MPI_Comm_free(&c) }
    }

    /// The process's communicator; initializes MPI on first use when the
    /// process was started by mpirun/srun (see `launched`).
    public static let world: Communicator = {
        guard launched else { return Communicator(rank: 0, size: 1, comm: nil) }
        // MPI_THREAD_MULTIPLE: the work queue of distributed sweeps serves
        // requests from a thread of rank 0 while its Lua thread runs a job.
        var provided: Int32 = 0
        let rc = MPI_Init_thread(nil, nil, parry_mpi_thread_multiple(), &provided)
        guard rc == parry_mpi_success() else {
            FileHandle.standardError.write(Data("parry: MPI_Init_thread failed (\(errorString(rc))); running as a single process\n".utf8))
            return Communicator(rank: 0, size: 1, comm: nil)
        }
        let w = parry_mpi_comm_world()
        MPI_Comm_set_errhandler(w, parry_mpi_errors_return())
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(w, &r)
        MPI_Comm_size(w, &s)
        atexit { Communicator.finalize() }
        let c = Communicator(rank: Int(r), size: Int(s), comm: w)
        c.threadMultiple = provided >= parry_mpi_thread_multiple()
        return c
    }()

    /// Whether an MPI starter launched this process (Open MPI's mpirun, Slurm
    /// with PMIx, MPICH's hydra). `PARRY_DIST=0` forces a single process.
    public static var launched: Bool {
        let env = ProcessInfo.processInfo.environment
        if env["PARRY_DIST"] == "0" { return false }
        return ["OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK", "PMI_SIZE"].contains { env[$0] != nil }
    }

    private static var finalized = false
    static func finalize() {
        guard !finalized else { return }
        finalized = true
        var flag: Int32 = 0
        MPI_Finalized(&flag)
        if flag == 0 { MPI_Finalize() }
    }

    /// Ends the whole job: prints "parry: rank r of n: message" and calls
    /// MPI_Abort, so the other ranks do not wait forever in a collective. In a
    /// single process it prints the message and exits.
    public func abort(_ message: String, code: Int32 = 1) -> Never {
        let text = size > 1 ? "parry: rank \(rank) of \(size): \(message)\n" : message + "\n"
        FileHandle.standardError.write(Data(text.utf8))
        if let comm, size > 1 { MPI_Abort(comm, code) }
        exit(code)
    }

    // MARK: checks

    static func errorString(_ rc: Int32) -> String {
        var buf = [CChar](repeating: 0, count: 512)
        var len: Int32 = 0
        MPI_Error_string(rc, &buf, &len)
        return String(decoding: buf.prefix(Int(max(0, len))).map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }

    func check(_ rc: Int32, _ what: String) throws {
        guard rc == parry_mpi_success() else { throw DistError("\(what) failed: \(Communicator.errorString(rc))") }
    }

    public func checkRank(_ r: Int, _ what: String) throws {
        guard r >= 0, r < size else {
            throw DistError("\(what) must be a rank in 0..\(size - 1) (MPI's 0-based numbers), got \(r)")
        }
    }

    // MARK: raw transfers (chunked)

    static let chunk = 1 << 30

    func bcastRaw(_ p: UnsafeMutableRawPointer?, bytes: Int, root: Int) throws {
        guard let comm, bytes > 0, let p else { return }
        var off = 0
        while off < bytes {
            let n = Swift.min(Communicator.chunk, bytes - off)
            try check(MPI_Bcast(p + off, Int32(n), parry_mpi_byte(), Int32(root), comm), "MPI_Bcast")
            off += n
        }
    }

    func sendRaw(_ p: UnsafeRawPointer?, bytes: Int, to: Int, tag: Int32) throws {
        guard let comm else { return }
        guard bytes > 0, let p else {
            try check(MPI_Send(nil, 0, parry_mpi_byte(), Int32(to), tag, comm), "MPI_Send")
            return
        }
        var off = 0
        while off < bytes {
            let n = Swift.min(Communicator.chunk, bytes - off)
            try check(MPI_Send(p + off, Int32(n), parry_mpi_byte(), Int32(to), tag, comm), "MPI_Send")
            off += n
        }
    }

    func recvRaw(_ p: UnsafeMutableRawPointer?, bytes: Int, from: Int, tag: Int32) throws {
        guard let comm else { return }
        var status = MPI_Status()
        guard bytes > 0, let p else {
            try check(MPI_Recv(nil, 0, parry_mpi_byte(), Int32(from), tag, comm, &status), "MPI_Recv")
            return
        }
        var off = 0
        while off < bytes {
            let n = Swift.min(Communicator.chunk, bytes - off)
            try check(MPI_Recv(p + off, Int32(n), parry_mpi_byte(), Int32(from), tag, comm, &status), "MPI_Recv")
            off += n
        }
    }

    /// Allreduce of `count` elements of `type` in place.
    func allreduceRaw(_ p: UnsafeMutableRawPointer, count: Int, elementSize: Int, type: MPI_Datatype?, op: MPI_Op?) throws {
        guard let comm, count > 0 else { return }
        var off = 0
        while off < count {
            let n = Swift.min(Communicator.chunk, count - off)
            try check(MPI_Allreduce(parry_mpi_in_place(), p + off * elementSize, Int32(n), type, op, comm), "MPI_Allreduce")
            off += n
        }
    }

    func reduceRaw(_ p: UnsafeMutableRawPointer, count: Int, elementSize: Int, type: MPI_Datatype?, op: MPI_Op?, root: Int) throws {
        guard let comm, count > 0 else { return }
        var off = 0
        while off < count {
            let n = Swift.min(Communicator.chunk, count - off)
            let buf = p + off * elementSize
            if rank == root {
                try check(MPI_Reduce(parry_mpi_in_place(), buf, Int32(n), type, op, Int32(root), comm), "MPI_Reduce")
            } else {
                try check(MPI_Reduce(buf, nil, Int32(n), type, op, Int32(root), comm), "MPI_Reduce")
            }
            off += n
        }
    }

    // MARK: headers

    static let headerLength = 2 + Tensor.maxDims + 1

    static func header(_ p: Payload) -> [Int64] {
        var h = [Int64](repeating: 0, count: headerLength)
        switch p {
        case let .tensor(t):
            h[0] = t.dtype == .float32 ? 1 : 2
            h[1] = Int64(t.ndim)
            for (k, s) in t.shape.enumerated() { h[2 + k] = Int64(s) }
        case let .bytes(b):
            h[0] = 3
            h[headerLength - 1] = Int64(b.count)
        case let .failure(m):
            h[0] = 4
            h[headerLength - 1] = Int64(m.utf8.count)
        }
        return h
    }

    static func describe(_ h: ArraySlice<Int64>) -> String {
        let h = Array(h)
        switch h[0] {
        case 1, 2:
            let dims = h[2..<(2 + Int(h[1]))].map(String.init)
            return "\(h[0] == 1 ? "float32" : "int64") tensor of shape \(dims.isEmpty ? "[]" : dims.joined(separator: "x"))"
        case 3: return "a Lua value"
        default: return "nothing"
        }
    }

    /// Every rank's header, in rank order.
    func allgatherHeaders(_ h: [Int64]) throws -> [[Int64]] {
        guard let comm, size > 1 else { return [h] }
        let n = Communicator.headerLength
        var all = [Int64](repeating: 0, count: n * size)
        try h.withUnsafeBufferPointer { src in
            try all.withUnsafeMutableBufferPointer { dst in
                try check(MPI_Allgather(src.baseAddress, Int32(n), parry_mpi_int64(), dst.baseAddress, Int32(n), parry_mpi_int64(), comm),
                          "MPI_Allgather")
            }
        }
        return (0..<size).map { Array(all[($0 * n)..<(($0 + 1) * n)]) }
    }

    /// Throws the same error on every rank when the ranks' tensors differ.
    func agree(_ t: Tensor, _ what: String) throws {
        let all = try allgatherHeaders(Communicator.header(.tensor(t)))
        guard let first = all.first, all.allSatisfy({ $0 == first }) else {
            let list = all.enumerated().map { "rank \($0.offset): \(Communicator.describe($0.element[...]))" }
            throw DistError("the ranks passed different tensors (\(list.joined(separator: "; "))); every rank must pass the same shape and dtype")
        }
    }

    static func tensor(from h: [Int64]) throws -> Tensor {
        let ndim = Int(h[1])
        let shape = (0..<ndim).map { Int(h[2 + $0]) }
        let dtype: DType = h[0] == 1 ? .float32 : .int64
        try Tensor.checkShape(shape, dtype: dtype)
        return try Tensor(shape: shape, dtype: dtype, zeroed: false)
    }

    /// The address of a contiguous tensor's first element.
    static func bytes(_ t: Tensor) -> UnsafeMutableRawPointer {
        t.dtype == .float32 ? UnsafeMutableRawPointer(t.pointer(Float.self)) : UnsafeMutableRawPointer(t.pointer(Int64.self))
    }

    /// A contiguous copy that owns its storage (the collectives write into it).
    static func ownedCopy(_ t: Tensor) throws -> Tensor {
        let c = try Tensor(shape: t.shape, dtype: t.dtype, zeroed: false)
        guard t.numel > 0 else { return c }
        try c.copy_(t.detach())
        return c
    }

    // MARK: collectives

    public func barrier() throws {
        guard let comm else { return }
        try check(MPI_Barrier(comm), "MPI_Barrier")
    }

    /// The elementwise reduction of every rank's tensor, on every rank (a new tensor).
    public func allreduce(_ t: Tensor, op: ReduceOp = .sum) throws -> Tensor {
        if op == .mean && t.dtype != .float32 { throw DistError("op 'mean' needs a float32 tensor, got \(t.dtype.rawValue)") }
        try agree(t, "allreduce")
        let r = try Communicator.ownedCopy(t)
        try allreduceInPlace(r, op: op)
        return r
    }

    /// Allreduce into `t`'s own storage (contiguous, no view), without the
    /// header check: for callers that know every rank's shape (data parallel).
    public func allreduceInPlace(_ t: Tensor, op: ReduceOp = .sum) throws {
        guard t.isContiguous else { throw DistError("the tensor must be contiguous") }
        if size > 1 {
            let type = t.dtype == .float32 ? parry_mpi_float() : parry_mpi_int64()
            try allreduceRaw(Communicator.bytes(t), count: t.numel, elementSize: t.dtype.byteSize,
                             type: type, op: op.mpi)
        }
        if op == .mean { divideBySize(t.pointer(Float.self), t.numel) }
    }

    /// The sum's last step for op "mean".
    func divideBySize(_ p: UnsafeMutablePointer<Float>, _ count: Int) {
        guard size > 1 else { return }
        let n = Float(size)
        for k in 0..<count { p[k] /= n }
    }

    /// Allreduce of a Float buffer in place (flattened gradients, federated updates).
    public func allreduce(_ buffer: UnsafeMutableBufferPointer<Float>, op: ReduceOp = .sum) throws {
        guard let base = buffer.baseAddress else { return }
        if size > 1 {
            try allreduceRaw(UnsafeMutableRawPointer(base), count: buffer.count, elementSize: 4, type: parry_mpi_float(), op: op.mpi)
        }
        if op == .mean { divideBySize(base, buffer.count) }
    }

    /// One number reduced over the ranks (sum, mean, max or min), on every rank.
    public func allreduce(_ value: Double, op: ReduceOp) throws -> Double {
        guard let comm, size > 1 else { return value }
        var v = value
        try check(MPI_Allreduce(parry_mpi_in_place(), &v, 1, parry_mpi_double(), op.mpi, comm), "MPI_Allreduce")
        return op == .mean ? v / Double(size) : v
    }

    /// The reduction on `root` (a new tensor there, nil on the other ranks).
    public func reduce(_ t: Tensor, op: ReduceOp = .sum, root: Int = 0) throws -> Tensor? {
        try checkRank(root, "root")
        if op == .mean && t.dtype != .float32 { throw DistError("op 'mean' needs a float32 tensor, got \(t.dtype.rawValue)") }
        try agree(t, "reduce")
        let r = try Communicator.ownedCopy(t)
        if size > 1 {
            let type = t.dtype == .float32 ? parry_mpi_float() : parry_mpi_int64()
            try reduceRaw(Communicator.bytes(r), count: r.numel, elementSize: r.dtype.byteSize,
                          type: type, op: op.mpi, root: root)
        }
        guard rank == root else { return nil }
        if op == .mean { divideBySize(r.pointer(Float.self), r.numel) }
        return r
    }

    /// `root`'s payload on every rank (the others' argument is ignored and may
    /// be nil). A failure passed by the root is raised on every rank.
    public func broadcast(_ p: Payload?, root: Int = 0) throws -> Payload {
        let r = try broadcastKeepingFailure(p, root: root)
        if case let .failure(m) = r { throw DistError(size > 1 ? "rank \(root): \(m)" : m) }
        return r
    }

    func broadcastKeepingFailure(_ p: Payload?, root: Int) throws -> Payload {
        try checkRank(root, "root")
        if rank == root {
            guard let p else { throw DistError("the root rank (\(root)) must pass a tensor or a value") }
            guard size > 1 else { return try broadcastLocal(p) }
            var h = Communicator.header(p)
            try bcastRaw(&h, bytes: h.count * 8, root: root)
            switch p {
            case let .tensor(t):
                let c = t.isContiguous && t.gradFn == nil ? t : try Communicator.ownedCopy(t)
                try bcastRaw(Communicator.bytes(c), bytes: c.numel * c.dtype.byteSize, root: root)
                return .tensor(try Communicator.ownedCopy(c))
            case var .bytes(b):
                try b.withUnsafeMutableBytes { try bcastRaw($0.baseAddress, bytes: $0.count, root: root) }
                return .bytes(b)
            case let .failure(m):
                var b = Array(m.utf8)
                try b.withUnsafeMutableBytes { try bcastRaw($0.baseAddress, bytes: $0.count, root: root) }
                return p
            }
        }
        var h = [Int64](repeating: 0, count: Communicator.headerLength)
        try bcastRaw(&h, bytes: h.count * 8, root: root)
        return try receivePayload(h) { ptr, n in try self.bcastRaw(ptr, bytes: n, root: root) }
    }

    func receivePayload(_ h: [Int64], _ fill: (UnsafeMutableRawPointer?, Int) throws -> Void) throws -> Payload {
        if h[0] == 3 || h[0] == 4 {
            let n = Int(h[Communicator.headerLength - 1])
            guard n >= 0, n <= Tensor.allocationLimit else { throw DistError("received a malformed header (\(n) bytes)") }
            var b = [UInt8](repeating: 0, count: n)
            try b.withUnsafeMutableBytes { try fill($0.baseAddress, $0.count) }
            return h[0] == 3 ? .bytes(b) : .failure(String(decoding: b, as: UTF8.self))
        }
        guard h[0] == 1 || h[0] == 2 else { throw DistError("received a malformed header (kind \(h[0]))") }
        let t = try Communicator.tensor(from: h)
        try fill(Communicator.bytes(t), t.numel * t.dtype.byteSize)
        return .tensor(t)
    }

    /// Every rank's payload, in rank order, on every rank (shapes may differ).
    /// A rank's failure is raised on every rank once all have been heard.
    public func allgather(_ p: Payload) throws -> [Payload] {
        var out = [Payload]()
        for r in 0..<size { out.append(try broadcastKeepingFailure(r == rank ? p : nil, root: r)) }
        try Communicator.raiseFailures(out, size: size)
        return out
    }

    static func raiseFailures(_ list: [Payload], size: Int) throws {
        for (r, p) in list.enumerated() {
            if case let .failure(m) = p { throw DistError(size > 1 ? "rank \(r): \(m)" : m) }
        }
    }

    /// Every rank's payload, in rank order, on `root` (nil elsewhere).
    public func gather(_ p: Payload, root: Int = 0) throws -> [Payload]? {
        try checkRank(root, "root")
        guard size > 1 else {
            try Communicator.raiseFailures([p], size: 1)
            return [try broadcastLocal(p)]
        }
        if rank != root {
            try send(p, to: root, tag: Communicator.gatherTag)
            if case let .failure(m) = p { throw DistError(m) }
            return nil
        }
        var out = [Payload]()
        for r in 0..<size {
            out.append(r == root ? try broadcastLocal(p) : try receive(from: r, tag: Communicator.gatherTag).payload)
        }
        try Communicator.raiseFailures(out, size: size)
        return out
    }

    func broadcastLocal(_ p: Payload) throws -> Payload {
        if case let .tensor(t) = p { return .tensor(try Communicator.ownedCopy(t)) }
        return p
    }

    // MARK: point to point

    public static let messageTag: Int32 = 1
    static let gatherTag: Int32 = 2

    /// Sends a payload (a header message, then the data) to rank `to`.
    public func send(_ p: Payload, to: Int, tag: Int32 = messageTag) throws {
        try checkRank(to, "to")
        guard to != rank else { throw DistError("cannot send to this process's own rank (\(rank))") }
        var h = Communicator.header(p)
        try sendRaw(&h, bytes: h.count * 8, to: to, tag: tag)
        switch p {
        case let .tensor(t):
            let c = t.isContiguous && t.gradFn == nil ? t : try Communicator.ownedCopy(t)
            try sendRaw(UnsafeRawPointer(Communicator.bytes(c)), bytes: c.numel * c.dtype.byteSize, to: to, tag: tag)
        case let .bytes(b):
            try b.withUnsafeBytes { try sendRaw($0.baseAddress, bytes: $0.count, to: to, tag: tag) }
        case let .failure(m):
            try Array(m.utf8).withUnsafeBytes { try sendRaw($0.baseAddress, bytes: $0.count, to: to, tag: tag) }
        }
    }

    /// The next payload from rank `from` (nil: any rank) and the sender's rank.
    public func receive(from: Int?, tag: Int32 = messageTag) throws -> (payload: Payload, source: Int) {
        if let from {
            try checkRank(from, "from")
            guard from != rank else { throw DistError("cannot receive from this process's own rank (\(rank))") }
        }
        guard let comm, size > 1 else { throw DistError("there is no other rank (run under mpirun -np 2 or more)") }
        var status = MPI_Status()
        try check(MPI_Probe(Int32(from ?? Int(parry_mpi_any_source())), tag, comm, &status), "MPI_Probe")
        let src = Int(parry_mpi_status_source(&status))
        var h = [Int64](repeating: 0, count: Communicator.headerLength)
        try recvRaw(&h, bytes: h.count * 8, from: src, tag: tag)
        let p = try receivePayload(h) { ptr, n in try self.recvRaw(ptr, bytes: n, from: src, tag: tag) }
        return (p, src)
    }

    // MARK: helpers for the algorithms

    /// Every rank's Float vectors in rank order: rank r contributes `mine`
    /// (any count, any length); the result is the concatenation over ranks.
    public func allgatherVectors(_ mine: [[Float]]) throws -> [[[Float]]] {
        guard size > 1 else { return [mine] }
        var out = [[[Float]]]()
        for r in 0..<size {
            // the root's vector lengths, then each vector straight from its
            // array into the receivers' new arrays (no packing copies)
            var counts = [Int64(r == rank ? mine.count : 0)]
            try bcastRaw(&counts, bytes: 8, root: r)
            var lengths = r == rank ? mine.map { Int64($0.count) } : [Int64](repeating: 0, count: Int(counts[0]))
            try lengths.withUnsafeMutableBytes { try bcastRaw($0.baseAddress, bytes: $0.count, root: r) }
            if r == rank {
                for v in mine {
                    try v.withUnsafeBytes { try bcastRaw(UnsafeMutableRawPointer(mutating: $0.baseAddress), bytes: $0.count, root: r) }
                }
                out.append(mine)
                continue
            }
            var vecs = [[Float]]()
            for l in lengths {
                let n = Int(l)
                guard n >= 0, n <= Tensor.allocationLimit / 4 else { throw DistError("received a malformed vector length \(n)") }
                var failure: Error? = nil
                let v = [Float](unsafeUninitializedCapacity: n) { buf, count in
                    do { try bcastRaw(UnsafeMutableRawPointer(buf.baseAddress), bytes: n * 4, root: r) } catch { failure = error }
                    if failure != nil { buf.initialize(repeating: 0) }
                    count = n
                }
                if let failure { throw failure }
                vecs.append(v)
            }
            out.append(vecs)
        }
        return out
    }


    /// Boundaries that split `count` elements into one slice per rank:
    /// slice r is [cuts[r], cuts[r + 1]). Inner boundaries fall on multiples
    /// of 1024 elements, so a BLAS kernel run over a slice treats each element
    /// as it does over the whole vector (its blocks and its scalar tail line
    /// up; tested in FedTests), and folding slices gives the same bits.
    public static func sliceCuts(_ count: Int, size: Int) -> [Int] {
        (0...size).map { r in r == size ? count : (r * (count / size)) / 1024 * 1024 }
    }

    /// The sharded exchange of a fold: every rank holds some vectors of one
    /// length (rank q holds `counts[q]` of them); rank r gets, from every
    /// rank q, the slice `cuts[r]..<cuts[r + 1]` of each of q's vectors, in
    /// order, as one array per q (vector after vector; q == rank: empty — the
    /// caller reads its own vectors). Each vector's data crosses to each other
    /// rank once, (size − 1)/size of it in all, against size − 1 copies for
    /// an allgather. Pairs of ranks exchange both ways at once (MPI_Sendrecv,
    /// ring order), and the slices go straight from the vectors (an MPI
    /// hindexed type), unpacked.
    public func exchangeSlices(_ mine: [[Float]], cuts: [Int], counts: [Int]) throws -> [[Float]] {
        guard cuts.count == size + 1, counts.count == size, counts[rank] == mine.count else {
            throw DistError("exchangeSlices: \(cuts.count) cuts and \(counts.count) counts for \(size) ranks (this rank holds \(mine.count) vectors, counts say \(counts.count == size ? counts[rank] : -1))")
        }
        var out = [[Float]](repeating: [], count: size)
        guard size > 1, let comm else { return out }
        for v in mine where v.count != cuts[size] {
            throw DistError("exchangeSlices: a vector of \(v.count) elements where \(cuts[size]) were expected")
        }
        let myLen = cuts[rank + 1] - cuts[rank]
        for q in 0..<size where q != rank {
            guard counts[q] >= 0, counts[q] * myLen <= Tensor.allocationLimit / 4 else {
                throw DistError("exchangeSlices: rank \(q) would send \(counts[q]) slices of \(myLen) floats")
            }
        }
        guard cuts.indices.dropLast().allSatisfy({ cuts[$0 + 1] - cuts[$0] <= Int(Int32.max) }) else {
            throw DistError("exchangeSlices: a slice longer than \(Int32.max) elements (use more ranks)")
        }
        try Communicator.withBases(mine) { bases in
            for step in 1..<size {
                let dest = (rank + step) % size, src = (rank - step + size) % size
                let sendLen = cuts[dest + 1] - cuts[dest]
                var sendType: MPI_Datatype? = nil, recvType: MPI_Datatype? = nil
                let sending = !bases.isEmpty && sendLen > 0
                if sending {
                    var lengths = [Int32](repeating: Int32(sendLen), count: bases.count)
                    var displacements = [MPI_Aint](repeating: 0, count: bases.count)
                    for (k, b) in bases.enumerated() {
                        // the vectors all have cuts[size] > 0 elements here (sendLen > 0), so none is empty
                        guard let b else { throw DistError("exchangeSlices: an empty vector") }
                        try check(MPI_Get_address(b + cuts[dest], &displacements[k]), "MPI_Get_address")
                    }
                    try check(MPI_Type_create_hindexed(Int32(bases.count), &lengths, &displacements, parry_mpi_float(), &sendType), "MPI_Type_create_hindexed")
                    try check(MPI_Type_commit(&sendType), "MPI_Type_commit")
                }
                defer { if sendType != nil { MPI_Type_free(&sendType) } }
                let receiving = counts[src] > 0 && myLen > 0
                if receiving {
                    try check(MPI_Type_contiguous(Int32(myLen), parry_mpi_float(), &recvType), "MPI_Type_contiguous")
                    try check(MPI_Type_commit(&recvType), "MPI_Type_commit")
                }
                defer { if recvType != nil { MPI_Type_free(&recvType) } }
                var status = MPI_Status()
                var failure: Error? = nil
                let received = [Float](unsafeUninitializedCapacity: receiving ? counts[src] * myLen : 0) { buf, n in
                    do {
                        try check(MPI_Sendrecv(sending ? parry_mpi_bottom() : nil, sending ? 1 : 0, sending ? sendType : parry_mpi_float(),
                                               Int32(dest), Communicator.sliceTag,
                                               receiving ? UnsafeMutableRawPointer(buf.baseAddress) : nil, receiving ? Int32(counts[src]) : 0,
                                               receiving ? recvType : parry_mpi_float(), Int32(src), Communicator.sliceTag, comm, &status),
                                  "MPI_Sendrecv")
                    } catch { failure = error }
                    if failure != nil { buf.initialize(repeating: 0) }
                    n = buf.count
                }
                if let failure { throw failure }
                out[src] = received
            }
        }
        return out
    }

    static let sliceTag: Int32 = 3

    /// Runs `body` with the base addresses of all the arrays (each held for
    /// the whole call; nil for an empty one).
    static func withBases<R>(_ arrays: [[Float]], _ body: ([UnsafePointer<Float>?]) throws -> R) throws -> R {
        var bases = [UnsafePointer<Float>?]()
        bases.reserveCapacity(arrays.count)
        func go(_ k: Int) throws -> R {
            if k == arrays.count { return try body(bases) }
            return try arrays[k].withUnsafeBufferPointer { p in
                bases.append(p.baseAddress)
                return try go(k + 1)
            }
        }
        return try go(0)
    }

}

/// Dynamic hand-out of job indices 0..<count over the ranks: each rank asks
/// for the next index when it finishes one. Rank 0 holds the counter and a
/// thread that answers the other ranks (polling, so it takes no core while
/// idle); rank 0's own requests take the counter directly. Create and
/// `finish` it on every rank (both are collective).
public final class WorkQueue: @unchecked Sendable {
    let comm: Communicator
    public let count: Int
    private var nextIndex = 0
    private let lock = NSLock()
    private var server: Thread?
    private let served = DispatchSemaphore(value: 0)
    static let requestTag: Int32 = 11, replyTag: Int32 = 12

    public init(count: Int, communicator: Communicator) throws {
        self.comm = communicator
        self.count = count
        try comm.barrier()
        guard comm.size > 1, comm.comm != nil else { return }
        guard comm.threadMultiple else {
            throw DistError("this MPI library does not provide MPI_THREAD_MULTIPLE, which the work queue needs")
        }
        if comm.rank == 0 {
            let t = Thread { [self] in
                guard let mpi = comm.comm else { return }
                var finished = 0
                while finished < comm.size - 1 {
                    var flag: Int32 = 0
                    var status = MPI_Status()
                    MPI_Iprobe(Int32(parry_mpi_any_source()), WorkQueue.requestTag, mpi, &flag, &status)
                    if flag == 0 { usleep(200); continue }
                    let src = parry_mpi_status_source(&status)
                    var dummy: Int64 = 0
                    MPI_Recv(&dummy, 1, parry_mpi_int64(), src, WorkQueue.requestTag, mpi, &status)
                    var reply = Int64(take() ?? -1)
                    if reply < 0 { finished += 1 }
                    MPI_Send(&reply, 1, parry_mpi_int64(), src, WorkQueue.replyTag, mpi)
                }
                served.signal()
            }
            t.start()
            server = t
        }
    }

    private func take() -> Int? {
        lock.lock(); defer { lock.unlock() }
        guard nextIndex < count else { return nil }
        nextIndex += 1
        return nextIndex - 1
    }

    /// The next job index for this rank, or nil when all are handed out.
    public func next() throws -> Int? {
        guard comm.size > 1, comm.rank != 0, let mpi = comm.comm else { return take() }
        var req: Int64 = 0, reply: Int64 = -1
        var status = MPI_Status()
        try comm.check(MPI_Send(&req, 1, parry_mpi_int64(), 0, WorkQueue.requestTag, mpi), "MPI_Send")
        try comm.check(MPI_Recv(&reply, 1, parry_mpi_int64(), 0, WorkQueue.replyTag, mpi, &status), "MPI_Recv")
        return reply >= 0 ? Int(reply) : nil
    }

    /// Waits until every rank has drained the queue (collective).
    public func finish() throws {
        if server != nil { served.wait(); server = nil }
        try comm.barrier()
    }
}
