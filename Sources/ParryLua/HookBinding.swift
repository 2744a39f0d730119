import CLua
import CLuaShim
import Foundation
import ParryCore
import ParryNN

// Lua gradient and module hooks. The Lua functions live in a table of
// stdlib/parry/hooks.lua keyed by an integer id; Swift keeps the HookHandle
// and calls back through one dispatcher function(id, ...) stored in the
// registry. A hook whose Swift side is freed (its tensor collected before
// `remove()`) queues its id, and the Lua side drops the function the next
// time a hook is registered.

private var hookDispatcherKey: UInt8 = 0

enum LuaHooks {
    nonisolated(unsafe) static var handles = [Int: HookHandle]()
    nonisolated(unsafe) static var next = 0
    private static let lock = NSLock()
    nonisolated(unsafe) private static var dead = [Int]()

    /// Marks `id` as gone when the Swift closure holding it is freed (any thread).
    final class Ref {
        let id: Int
        let owner = pthread_self()
        init(_ id: Int) { self.id = id }
        deinit { LuaHooks.lock.lock(); LuaHooks.dead.append(id); LuaHooks.lock.unlock() }
    }

    static func drainDead() -> [Int] {
        lock.lock(); defer { lock.unlock() }
        let d = dead
        dead = []
        for id in d { handles[id] = nil }
        return d
    }

    /// Calls the Lua hook `ref.id` with what `push` pushes; a tensor result
    /// replaces, nil keeps. Only on the thread that registered it, from Lua.
    static func call(_ ref: Ref, what: String, _ push: (LuaState) -> Int32) throws -> Tensor? {
        guard pthread_equal(pthread_self(), ref.owner) != 0 else {
            throw TensorError("a Lua \(what) hook cannot run on a worker thread (remove it before concurrent training)")
        }
        guard let L = LuaContext.current else { throw TensorError("a Lua \(what) hook can only run while Lua is calling parry") }
        guard lua_checkstack(L, 8) != 0 else { throw TensorError("Lua stack overflow") }
        lua_rawgetp(L, parry_registryindex(), &hookDispatcherKey)
        guard lua_type(L, -1) == LUA_TFUNCTION else { parry_pop(L, 1); throw TensorError("parry's hook dispatcher is not loaded") }
        lua_pushinteger(L, lua_Integer(ref.id))
        let n = push(L)
        if parry_pcall(L, n + 1, 1, 0) != LUA_OK {
            let msg = parry_tostring(L, -1, nil).map { String(cString: $0) } ?? "error in a \(what) hook"
            parry_pop(L, 1)
            throw LuaCallError(message: msg)
        }
        defer { parry_pop(L, 1) }
        if lua_type(L, -1) == LUA_TNIL { return nil }
        let args = LuaArgs(L, "hook")
        guard let t = args.optTensor(-1) else {
            throw TensorError("a \(what) hook must return a tensor or nil, got \(args.typeName(-1))")
        }
        return t
    }

    static func register(_ a: LuaArgs, _ make: (Ref) throws -> HookHandle) throws -> Int32 {
        next += 1
        let id = next
        let ref = Ref(id)
        handles[id] = try make(ref)
        a.push(id)
        return 1
    }
}

let hookFunctions: [(String, parry_SwiftFunction)] = [
    ("set_dispatcher", { L in bind(L, "parry._hooks.set_dispatcher") { a in
        guard a.type(1) == LUA_TFUNCTION else { throw a.fail("expected a function") }
        lua_pushvalue(a.L, 1)
        lua_rawsetp(a.L, parry_registryindex(), &hookDispatcherKey)
        return 0
    } }),
    ("tensor", { L in bind(L, "Tensor:register_hook") { a in
        let t = try a.tensor(1)
        guard t.requiresGrad else { throw a.fail("cannot register a hook on a tensor that does not require grad") }
        return try LuaHooks.register(a) { ref in
            try t.registerHook { g in try LuaHooks.call(ref, what: "gradient") { L in pushTensor(L, g); return 1 } }
        }
    } }),
    ("forward_pre", { L in bind(L, "Module:register_forward_pre_hook") { a in
        let m = try a.module(1)
        return try LuaHooks.register(a) { ref in
            m.registerForwardPreHook { mod, x in
                try LuaHooks.call(ref, what: "forward pre") { L in pushModule(L, mod); pushTensor(L, x); return 2 }
            }
        }
    } }),
    ("forward", { L in bind(L, "Module:register_forward_hook") { a in
        let m = try a.module(1)
        return try LuaHooks.register(a) { ref in
            m.registerForwardHook { mod, x, y in
                try LuaHooks.call(ref, what: "forward") { L in pushModule(L, mod); pushTensor(L, x); pushTensor(L, y); return 3 }
            }
        }
    } }),
    ("backward", { L in bind(L, "Module:register_full_backward_hook") { a in
        let m = try a.module(1)
        return try LuaHooks.register(a) { ref in
            m.registerBackwardHook { mod, gi, go in
                try LuaHooks.call(ref, what: "backward") { L in
                    pushModule(L, mod)
                    if let gi { pushTensor(L, gi) } else { lua_pushnil(L) }
                    pushTensor(L, go)
                    return 3
                }
            }
        }
    } }),
    ("remove", { L in bind(L, "handle:remove") { a in
        let id = try a.integer(1, "id")
        LuaHooks.handles.removeValue(forKey: id)?.remove()
        return 0
    } }),
    ("dead", { L in bind(L, "parry._hooks.dead") { a in
        let d = LuaHooks.drainDead()
        lua_createtable(a.L, Int32(d.count), 0)
        for (k, id) in d.enumerated() { lua_pushinteger(a.L, lua_Integer(id)); lua_rawseti(a.L, -2, lua_Integer(k + 1)) }
        return 1
    } }),
    ("has_hooks", { L in bind(L, "Module:_has_hooks") { a in
        lua_pushboolean(a.L, try a.module(1).hasHooks ? 1 : 0)
        return 1
    } }),
]
