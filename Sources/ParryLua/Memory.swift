import CLua
import Foundation
import CLuaShim
import ParryCore
import Synchronization

// Native memory made visible to Lua's collector. A tensor userdata is a few
// bytes to Lua while its buffer may be megabytes, so the collector would
// otherwise let dead tensors pile up (Torch7's classic complaint). Like
// Torch's heap tracking, we run a full collection whenever the bytes held by
// live storages pass a soft limit, and then set the limit to what survived
// plus a quarter of it (at least the 16 MB floor). A full collection walks
// only the Lua heap, which stays small, so collecting often is cheap; a
// smaller garbage budget means the buffer pool (Storage.swift) gets dead
// buffers back sooner — with a 2× budget an MLP epoch over the in-memory
// Fashion-MNIST kept 200 MB of dead batches in flight (0.77–0.82 s per epoch
// vs 0.72–0.75 s now; with the floor at 16 MB instead of 64 MB, the first
// epoch 0.81–0.86 → 0.77–0.80 s and a 16-float add 0.57–0.61 → 0.50–0.56 µs).

enum MemoryPressure {
    static let floor = 16 << 20
    static let limit = Atomic<Int>(16 << 20)

    /// The thread that runs Lua (the one that made the first state).
    nonisolated(unsafe) static var luaThread: pthread_t?

    /// PARRY_MAX_MEMORY's last resort before an allocation fails: a full
    /// collection frees the buffers of tensors Lua no longer references. Only
    /// on the Lua thread, inside a binding (LuaContext.current is set there);
    /// kernels on worker threads just see the error.
    static func install() {
        guard luaThread == nil else { return }
        luaThread = pthread_self()
        MemoryBudget.onPressure = {
            guard let t = MemoryPressure.luaThread, pthread_equal(t, pthread_self()) != 0, let L = LuaContext.current else { return }
            parry_gc_collect(L)
        }
    }

    /// Called after every tensor handed to Lua.
    @inline(__always)
    static func check(_ L: LuaState) {
        if nativeBytes.load(ordering: .relaxed) > limit.load(ordering: .relaxed) { collect(L) }
    }

    static func collect(_ L: LuaState) {
        parry_gc_collect(L)
        let survived = nativeBytes.load(ordering: .relaxed)
        limit.store(survived + max(floor, survived / 4), ordering: .relaxed)
    }
}

/// Pushes `t` as a parry.Tensor userdata holding one strong reference.
func pushTensor(_ L: LuaState, _ t: Tensor) {
    parry_pushobject(L, Unmanaged.passRetained(t).toOpaque(), Int32(PARRY_TENSOR))
    MemoryPressure.check(L)
}

/// `__gc`: releases the reference the userdata held (once; the box is cleared).
let tensorGC: parry_SwiftFunction = { L in
    if let L, let p = parry_takeobject(L, 1, Int32(PARRY_TENSOR)) {
        Unmanaged<Tensor>.fromOpaque(p).release()
    }
    return 0
}
