import CLua
import CLuaShim
import Foundation
import ParryCore

// File-system helpers for the Lua stdlib (parry.lib: bundle, install, list,
// remove; parry.exp: run folders; REPL completion). Exposed as parry.core._fs;
// errors are Lua errors naming parry.fs.<fn>.

let fileFunctions: [(String, parry_SwiftFunction)] = [
    ("listdir", { L in bind(L, "parry.fs.listdir") { a in
        let path = try a.string(1, "path")
        let names = try FileManager.default.contentsOfDirectory(atPath: path).sorted()
        lua_createtable(a.L, Int32(clamping: names.count), 0)
        for (i, n) in names.enumerated() { pushString(a.L, n); lua_rawseti(a.L, -2, lua_Integer(i + 1)) }
        return 1
    } }),
    ("mkdir", { L in bind(L, "parry.fs.mkdir") { a in
        try FileManager.default.createDirectory(atPath: try a.string(1, "path"), withIntermediateDirectories: true)
        return 0
    } }),
    ("rmtree", { L in bind(L, "parry.fs.rmtree") { a in
        let path = try a.string(1, "path")
        guard !path.isEmpty, path != "/" else { throw a.fail("refusing to remove '\(path)'") }
        if FileManager.default.fileExists(atPath: path) { try FileManager.default.removeItem(atPath: path) }
        return 0
    } }),
    ("isdir", { L in bind(L, "parry.fs.isdir") { a in
        var dir: ObjCBool = false
        let exists = FileManager.default.fileExists(atPath: try a.string(1, "path"), isDirectory: &dir)
        lua_pushboolean(a.L, exists && dir.boolValue ? 1 : 0)
        return 1
    } }),
    ("exists", { L in bind(L, "parry.fs.exists") { a in
        lua_pushboolean(a.L, FileManager.default.fileExists(atPath: try a.string(1, "path")) ? 1 : 0)
        return 1
    } }),
    ("rename", { L in bind(L, "parry.fs.rename") { a in
        let from = try a.string(1, "from"), to = try a.string(2, "to")
        guard rename(from, to) == 0 else { throw a.fail("cannot rename \(from) to \(to): \(String(cString: strerror(errno)))") }
        return 0
    } }),
    // write_atomic(path, bytes): AtomicFile.write (temp beside it, fsync, rename, fsync dir).
    ("write_atomic", { L in bind(L, "parry.fs.write_atomic") { a in
        let path = try a.string(1, "path")
        guard lua_type(a.L, 2) == LUA_TSTRING else { throw a.fail("expected a string for text (argument 2), got \(a.typeName(2))") }
        var len = 0
        guard let p = parry_tostring(a.L, 2, &len) else { throw a.fail("expected a string for text (argument 2)") }
        let bytes = UnsafeRawBufferPointer(start: UnsafeRawPointer(p), count: len)
        do { try AtomicFile.write(to: path) { try $0.write(bytes) } } catch { throw a.fail("\(error)") }
        return 0
    } }),
    // replace(from, to): rename a finished temporary (file or folder) over `to`, durably.
    ("replace", { L in bind(L, "parry.fs.replace") { a in
        do { try AtomicFile.replace(try a.string(1, "from"), with: try a.string(2, "to")) } catch let e as AtomicFile.WriteError { throw a.fail("\(e)") }
        return 0
    } }),
    // temp_name(dir, target) -> dir/.TARGET.tmp-PID-N, after removing dead writers' temporaries.
    ("temp_name", { L in bind(L, "parry.fs.temp_name") { a in
        let dir = try a.string(1, "dir"), target = try a.string(2, "target")
        AtomicFile.removeStale(in: dir, target: target)
        pushString(a.L, dir + "/" + AtomicFile.temporaryName(for: target))
        return 1
    } }),
    ("isatty", { L in bind(L, "parry.fs.isatty") { a in
        lua_pushboolean(a.L, isatty(Int32(clamping: try a.integer(1, "fd"))) != 0 ? 1 : 0)
        return 1
    } }),
    ("cwd", { L in bind(L, "parry.fs.cwd") { a in
        pushString(a.L, FileManager.default.currentDirectoryPath)
        return 1
    } }),
]
