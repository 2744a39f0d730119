import CLua
import CLuaShim
import ParryCore

/// The parry version, reported by `parry version` and `parry.version`.
public let parryVersion = "0.1.0"

/// Registers the tensor metatable (once per state) and returns the
/// `parry.core` module table: creation functions, tensor ops as functions,
/// `Tensor` (the method table, extensible from Lua) and `version`.
let openParryCore: parry_SwiftFunction = { L in
    guard let L else { return 0 }
    // native loops poll the host's SIGINT flag (set only while the parry host runs Lua code)
    Interrupt.probe = { parry_native_interrupted() != 0 }
    // methods table
    lua_createtable(L, 0, Int32(tensorOps.count + tensorOnlyMethods.count))
    let methods = lua_gettop(L)
    for (name, fn) in tensorOps + tensorOnlyMethods + autogradMethods {
        parry_pushfunction(L, fn)
        lua_setfield(L, methods, name)
    }
    // where(mask, a, b) as a method takes the mask as self.
    // metatable
    lua_createtable(L, 0, Int32(tensorMetamethods.count + 3))
    let mt = lua_gettop(L)
    for (name, fn) in tensorMetamethods {
        parry_pushfunction(L, fn)
        lua_setfield(L, mt, name)
    }
    parry_pushindexer(L, methods, tensorIndexFallback)
    lua_setfield(L, mt, "__index")
    lua_pushstring(L, "parry.Tensor")
    lua_setfield(L, mt, "__name")
    lua_pushvalue(L, mt)
    parry_setkindmetatable(L, Int32(PARRY_TENSOR))
    parry_pop(L, 1)  // metatable

    // generator metatable: methods on itself
    lua_createtable(L, 0, Int32(generatorMethods.count + 2))
    for (name, fn) in generatorMethods {
        parry_pushfunction(L, fn)
        lua_setfield(L, -2, name)
    }
    lua_pushvalue(L, -1)
    lua_setfield(L, -2, "__index")
    lua_pushstring(L, "parry.Generator")
    lua_setfield(L, -2, "__name")
    parry_setkindmetatable(L, Int32(PARRY_GENERATOR))

    // module table
    lua_createtable(L, 0, Int32(creationFunctions.count + tensorOps.count + 4))
    let module = lua_gettop(L)
    for (name, fn) in creationFunctions + tensorOps + autogradFunctions + checkpointFunctions {
        parry_pushfunction(L, fn)
        lua_setfield(L, module, name)
    }
    lua_pushvalue(L, methods)
    lua_setfield(L, module, "Tensor")
    openNN(L, module: module)
    lua_createtable(L, 0, Int32(fileFunctions.count))
    for (name, fn) in fileFunctions { parry_pushfunction(L, fn); lua_setfield(L, -2, name) }
    lua_setfield(L, module, "_fs")
    lua_pushstring(L, parryVersion)
    lua_setfield(L, module, "version")
    parry_pushfunction(L, { L in bind(L, "parry._register_stdlib") { a in
        parry_add_stdlib_prefix(try a.string(1, "prefix"))
        return 0
    } })
    lua_setfield(L, module, "_register_stdlib")
    return 1
}
