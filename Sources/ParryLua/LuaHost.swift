import CLua
import CLuaShim
import Foundation
import ParryCore

/// One Lua 5.4 state with the standard libraries, parry's native module
/// (`parry.core`, loaded through `package.preload`) and parry's Lua stdlib on
/// `package.path` ahead of the system paths, which stay so Debian and
/// LuaRocks modules load too.
///
/// ```swift
/// let host = try LuaHost()
/// try host.run(code: "print(require('parry').zeros(2))")
/// ```
public final class LuaHost {
    public let L: LuaState

    public init() throws {
        LuaHost.configureOnce
        guard let L = luaL_newstate() else { throw LuaHostError("cannot create a Lua state (out of memory)") }
        self.L = L
        parry_use_small_allocator(L)
        // Generational collection (Lua 5.4's other mode): a script makes a
        // tensor userdata per operation, nearly all of them short-lived, and a
        // minor collection frees those without traversing the whole heap —
        // a 16-float add 0.56–0.68 → 0.39–0.40 µs, an MLP epoch 0.92–1.36 →
        // 0.83–1.05 s (alternating runs). collectgarbage("incremental")
        // switches back.
        parry_gc_generational(L)
        luaL_openlibs(L)
        // package.preload["parry.core"] = openParryCore
        lua_getglobal(L, "package")
        lua_getfield(L, -1, "preload")
        parry_pushfunction(L, openParryCore)
        lua_setfield(L, -2, "parry.core")
        parry_pop(L, 2)
        try configurePaths()
    }

    deinit { parry_close_state(L) }   // and its allocator (shim.c)

    /// Process-wide set-up, once: the allocator, and threading (OpenBLAS
    /// single-threaded; PARRY_NUM_THREADS is read by `Parallel`).
    private static let configureOnce: Void = {
        configureAllocator()
        Parallel.configure()
    }()

    /// The process-wide set-up, for the C module too.
    static func configureProcess() { _ = configureOnce }

    /// Directories searched for parry's own Lua modules, in order.
    public static func stdlibDirectories() -> [String] {
        var dirs = [String]()
        if let env = ProcessInfo.processInfo.environment["PARRY_PATH"] {
            dirs += env.split(separator: ":").map(String.init).filter { !$0.isEmpty }
        }
        let fm = FileManager.default
        func hasStdlib(_ d: String) -> Bool { fm.fileExists(atPath: d + "/parry/init.lua") }
        let exe = URL(fileURLWithPath: (try? fm.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? CommandLine.arguments[0])
        var dir = exe.deletingLastPathComponent()
        // Installed layout: PREFIX/bin/parry + PREFIX/share/parry/lua.
        let installed = dir.deletingLastPathComponent().appendingPathComponent("share/parry/lua").path
        if hasStdlib(installed) { return dirs + [installed] }
        // Build tree: .build/<triple>/<config>/parry, stdlib/ at the package root.
        for _ in 0..<6 {
            let candidate = dir.appendingPathComponent("stdlib").path
            if hasStdlib(candidate) { return dirs + [candidate] }
            dir = dir.deletingLastPathComponent()
        }
        // Source tree this binary was built from (test bundles, moved build folders).
        let source = URL(fileURLWithPath: #filePath).deletingLastPathComponent()
            .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("stdlib").path
        return hasStdlib(source) ? dirs + [source] : dirs
    }

    private func configurePaths() throws {
        let dirs = LuaHost.stdlibDirectories()
        for d in dirs { parry_add_stdlib_prefix("@\(d)/parry/") }
        let prefix = dirs.map { "\($0)/?.lua;\($0)/?/init.lua;" }.joined()
        try run(code: "package.path = ... .. package.path", chunkName: "=(parry)", args: [prefix])
        // Installed script libraries (parry install) are found after the
        // standard searchers: parry.lib loads only when one is needed.
        try run(code: """
            table.insert(package.searchers, function(name)
              if name:match("^parry%.") then return nil end
              local ok, lib = pcall(require, "parry.lib")
              if not ok then return "\\n\\tparry.lib: " .. tostring(lib) end
              return lib.searcher(name)
            end)
            """, chunkName: "=(parry)")
    }

    // MARK: running code

    /// Loads and runs `code`; on error throws with the message and traceback.
    public func run(code: String, chunkName: String = "=(command line)", args: [String] = []) throws {
        try load(code, chunkName)
        for a in args { pushString(L, a) }
        try call(nargs: Int32(args.count), nresults: 0)
    }

    /// Runs a script file with `...` set to `args`.
    public func run(file path: String, args: [String] = []) throws {
        let status = luaL_loadfilex(L, path, nil)
        guard status == LUA_OK else { throw LuaHostError(popMessage()) }
        for a in args { pushString(L, a) }
        try call(nargs: Int32(args.count), nresults: 0)
    }

    /// `require(name)`, storing the result in the global `name` as lua.c's -l does.
    public func require(_ name: String, global: String? = nil) throws {
        lua_getglobal(L, "require")
        pushString(L, name)
        try call(nargs: 1, nresults: 1)
        lua_setglobal(L, global ?? name)
    }

    func load(_ code: String, _ chunkName: String) throws {
        let status = code.withCString { parry_loadbuffer(L, $0, strlen($0), chunkName) }
        guard status == LUA_OK else { throw LuaHostError(popMessage()) }
    }

    /// Calls the function below `nargs` arguments with a traceback handler;
    /// Ctrl-C interrupts it.
    func call(nargs: Int32, nresults: Int32) throws {
        parry_sigint(L, 1)
        let status = parry_docall(L, nargs, nresults)
        parry_sigint(L, 0)
        guard status == LUA_OK else { throw LuaHostError(popMessage()) }
    }

    func popMessage() -> String {
        var len = 0
        let msg: String
        if let c = parry_tostring(L, -1, &len) {
            msg = String(decoding: UnsafeRawBufferPointer(start: c, count: len), as: UTF8.self)
        } else {
            msg = "(error object is a \(String(cString: lua_typename(L, lua_type(L, -1)))) value)"
        }
        parry_pop(L, 1)
        return msg
    }

    /// Sets the global `arg` table as lua.c does: arg[0] = script, arg[1..] =
    /// its arguments, negative indices = the interpreter and options before it.
    public func setArg(_ all: [String], scriptIndex: Int) {
        lua_createtable(L, Int32(max(all.count - scriptIndex - 1, 0)), Int32(scriptIndex + 1))
        for (i, s) in all.enumerated() {
            pushString(L, s)
            lua_rawseti(L, -2, lua_Integer(i - scriptIndex))
        }
        lua_setglobal(L, "arg")
    }

    /// Runs the spec files through stdlib's `parry.test`; returns the number of failures.
    public func runSpecs(_ files: [String]) throws -> Int {
        lua_getglobal(L, "require")
        pushString(L, "parry.test")
        try call(nargs: 1, nresults: 1)
        lua_getfield(L, -1, "run")
        lua_createtable(L, Int32(files.count), 0)
        for (i, f) in files.enumerated() {
            pushString(L, f)
            lua_rawseti(L, -2, lua_Integer(i + 1))
        }
        try call(nargs: 1, nresults: 1)
        let failures = Int(parry_tointeger(L, -1, nil))
        parry_pop(L, 2)
        return failures
    }
}

public struct LuaHostError: Error, CustomStringConvertible {
    public let message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

// MARK: - parry as a Lua C module

/// The opener `luaopen_parry_core` (CLuaShim) runs when a plain Lua 5.4 loads
/// parry/core.so: the process-wide set-up the host does, then the same
/// `parry.core` table. The stdlib registers its own folder for error
/// positions (`_register_stdlib`, called by init.lua).
@_cdecl("parry_module_opener")
public func parryModuleOpener() -> parry_SwiftFunction {
    { L in
        LuaHost.configureProcess()
        return openParryCore(L)
    }
}
