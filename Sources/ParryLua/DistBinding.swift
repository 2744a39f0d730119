import CLua
import CLuaShim
import ParryCore
import ParryDist

// parry.dist: argument translation only; the collectives are
// ParryDist/Dist.swift. stdlib/parry/dist.lua wraps these: it serializes
// plain Lua values to strings (which travel as bytes) and turns rank lists
// into 1-based tables (rank r at index r + 1).

extension LuaArgs {
    /// A tensor or a serialized value (a string) at `i`.
    func payload(_ i: Int32, _ what: String) throws -> Payload {
        if let t = optTensor(i) { return .tensor(t) }
        guard type(i) == LUA_TSTRING else { throw fail("expected a tensor or a value for \(what), got \(typeName(i))") }
        var len = 0
        guard let c = parry_tostring(L, i, &len) else { throw fail("expected a tensor or a value for \(what)") }
        return .bytes(Array(UnsafeRawBufferPointer(start: c, count: len)))
    }

    func push(_ p: Payload) -> Int32 {
        switch p {
        case let .tensor(t): return push(t)
        case let .bytes(b):
            b.withUnsafeBytes { raw in
                _ = lua_pushlstring(L, raw.baseAddress?.assumingMemoryBound(to: CChar.self), raw.count)
            }
            return 1
        case .failure:
            lua_pushnil(L); return 1
        }
    }

    /// The payload at `i`, or the failure message at `failure` when that is a string
    /// (dist.lua could not serialize its value: the other ranks must still hear of it).
    func payload(_ i: Int32, failure: Int32, _ what: String) throws -> Payload {
        if type(failure) == LUA_TSTRING { return .failure(try string(failure, "failure")) }
        return try payload(i, what)
    }

    func push(_ list: [Payload]) -> Int32 {
        lua_createtable(L, Int32(clamping: list.count), 0)
        for (k, p) in list.enumerated() { _ = push(p); lua_rawseti(L, -2, lua_Integer(k + 1)) }
        return 1
    }

    func reduceOp(_ i: Int32) throws -> ReduceOp {
        if isNil(i) { return .sum }
        let s = try string(i, "op")
        guard let op = ReduceOp(rawValue: s) else {
            throw fail("unknown op '\(s)' (expected \(ReduceOp.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        return op
    }

    func rank(_ i: Int32, _ what: String, default d: Int? = nil) throws -> Int {
        if isNil(i), let d { return d }
        guard type(i) == LUA_TNUMBER, lua_isinteger(L, i) != 0 else {
            throw fail("expected an integer rank for \(what) (argument \(i)), got \(typeName(i))")
        }
        return Int(lua_tointegerx(L, i, nil))
    }
}

private var world: Communicator { Communicator.world }
/// The work queue of the running distributed sweep (one at a time).
nonisolated(unsafe) private var queue: WorkQueue?

let distFunctions: [(String, parry_SwiftFunction)] = [
    ("_info", { L in bind(L, "parry.dist.rank") { a in
        _ = a.push(world.rank); _ = a.push(world.size)
        lua_pushboolean(a.L, world.isDistributed ? 1 : 0)
        return 3
    } }),
    ("barrier", { L in bind(L, "parry.dist.barrier") { _ in try world.barrier(); return 0 } }),
    ("_allreduce", { L in bind(L, "parry.dist.allreduce") { a in
        a.push(try world.allreduce(try a.tensor(1, "t"), op: try a.reduceOp(2)))
    } }),
    ("_reduce", { L in bind(L, "parry.dist.reduce") { a in
        let r = try world.reduce(try a.tensor(1, "t"), op: try a.reduceOp(2), root: try a.rank(3, "root", default: 0))
        if let r { return a.push(r) }
        lua_pushnil(a.L); return 1
    } }),
    ("_broadcast", { L in bind(L, "parry.dist.broadcast") { a in
        let root = try a.rank(2, "root", default: 0)
        let p = world.rank == root ? try a.payload(1, failure: 3, "the root's argument") : nil
        return a.push(try world.broadcast(p, root: root))
    } }),
    ("_allgather", { L in bind(L, "parry.dist.allgather") { a in
        a.push(try world.allgather(try a.payload(1, failure: 2, "argument 1")))
    } }),
    ("_gather", { L in bind(L, "parry.dist.gather") { a in
        let root = try a.rank(2, "root", default: 0)
        if let g = try world.gather(try a.payload(1, failure: 3, "argument 1"), root: root) { return a.push(g) }
        lua_pushnil(a.L); return 1
    } }),
    ("_send", { L in bind(L, "parry.dist.send") { a in
        let p = try a.payload(1, "argument 1")
        try world.send(p, to: try a.rank(2, "to"))
        return 0
    } }),
    ("_recv", { L in bind(L, "parry.dist.recv") { a in
        let from = a.isNil(1) ? nil : try a.rank(1, "from")
        let (p, src) = try world.receive(from: from)
        if case let .failure(m) = p { throw DistError("rank \(src): \(m)") }
        _ = a.push(p)
        lua_pushboolean(a.L, { if case .tensor = p { return 1 } else { return 0 } }())
        _ = a.push(src)
        return 3
    } }),
    // _dp_broadcast(tensors, root): rank root's values into every rank's tensors, in place
    ("_dp_broadcast", { L in bind(L, "parry.dist.data_parallel") { a in
        try DataParallel.broadcast(try a.tensorList(1, "tensors"), root: try a.rank(2, "root", default: 0), communicator: world)
        return 0
    } }),
    // _dp_sync(params, count, loss, bucket_bytes) -> global count, global mean loss
    ("_dp_sync", { L in bind(L, "parry.dist.data_parallel") { a in
        let count = try a.integer(2, "count")
        let loss = a.isNil(3) ? 0 : try a.number(3, "loss")
        let bucket = a.isNil(4) ? DataParallel.defaultBucketBytes : try a.integer(4, "bucket_bytes")
        guard bucket >= 4 else { throw a.fail("bucket_bytes must be at least 4, got \(bucket)") }
        let r = try DataParallel.averageGradients(try a.tensorList(1, "params"), count: count, loss: loss,
                                                  communicator: world, bucketBytes: bucket)
        _ = a.push(r.count); _ = a.push(r.loss)
        return 2
    } }),
    ("_dp_check", { L in bind(L, "parry.dist.data_parallel") { a in
        try DataParallel.checkReplicas(try a.tensorList(1, "tensors"), communicator: world, step: try a.integer(2, "step"))
        return 0
    } }),
    ("_queue_start", { L in bind(L, "parry.exp.grid") { a in
        guard queue == nil else { throw a.fail("a distributed sweep is already running (sweeps do not nest)") }
        queue = try WorkQueue(count: try a.integer(1, "count"), communicator: world)
        return 0
    } }),
    ("_queue_next", { L in bind(L, "parry.exp.grid") { a in
        guard let q = queue else { throw a.fail("no distributed sweep is running") }
        if let i = try q.next() { return a.push(i + 1) }
        lua_pushnil(a.L); return 1
    } }),
    ("_queue_finish", { L in bind(L, "parry.exp.grid") { a in
        guard let q = queue else { return 0 }
        queue = nil
        try q.finish()
        return 0
    } }),
    ("_abort", { L in bind(L, "parry.dist.abort") { a in
        let message = a.isNil(1) ? "aborted" : (try? a.string(1, "message")) ?? "aborted"
        let code = a.isNil(2) ? 1 : try a.integer(2, "code")
        world.abort(message, code: Int32(clamping: code))
    } }),
]
