import CLua
import CLuaShim
import ParryCore
import ParryData
import ParryNN

// Bindings of the readers and transforms (datasets themselves are Lua
// tables built in stdlib/parry/data.lua) and of parry.save / parry.load.

let dataFunctions: [(String, parry_SwiftFunction)] = [
    ("idx", { L in bind(L, "parry.data.idx") { a in
        let path = try a.string(1, "path")
        let o = try a.options(2, allowed: ["limit", "divisor"])
        if let l = try o.integer("limit"), l < 1 { throw a.fail("limit must be a positive integer, got \(l)") }
        if let d = try o.number("divisor"), !(d != 0 && d.isFinite) { throw a.fail("divisor must be a non-zero number, got \(d)") }
        return a.push(try readIDX(path, limit: try o.integer("limit"), divisor: try o.number("divisor")))
    } }),
    ("npy", { L in bind(L, "parry.data.npy") { a in a.push(try readNPY(try a.string(1, "path"))) } }),
    ("csv", { L in bind(L, "parry.data.csv") { a in
        let o = try a.options(2, allowed: ["header", "delimiter"])
        let d = try o.string("delimiter") ?? ","
        guard d.count == 1, let ch = d.first else { throw a.fail("delimiter must be one character, got '\(d)'") }
        let (t, names) = try readCSV(try a.string(1, "path"), header: try o.bool("header") ?? true, delimiter: ch)
        a.push(t)
        lua_createtable(a.L, Int32(clamping: names.count), 0)
        for (k, n) in names.enumerated() { pushString(a.L, n); lua_rawseti(a.L, -2, lua_Integer(k + 1)) }
        return 2
    } }),
    ("_cifar", { L in bind(L, "parry.data.cifar10") { a in
        var paths = [String]()
        for k in 1...max(a.rawLength(1), 1) where k <= a.rawLength(1) {
            let j = a.rawIndex(1, k); defer { a.pop() }
            paths.append(try a.string(j, "path"))
        }
        let (x, y) = try readCIFARBatches(paths)
        a.push(x); a.push(y)
        return 2
    } }),
    // corrupt(x, kind, severity [, {seed=, generator=}]) — Hendrycks & Dietterich's corruptions
    ("corrupt", { L in bind(L, "parry.data.corrupt") { a in
        let x = try a.tensor(1, "x")
        let name = try a.string(2, "kind")
        guard let kind = Corruptions.Kind(rawValue: name) else {
            throw a.fail("unknown corruption '\(name)' (expected \(Corruptions.Kind.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        let severity = try a.integer(3, "severity")
        let o = try a.options(4, allowed: ["seed", "generator"])
        let g = try o.integer("seed").map { Generator(seed: UInt64(bitPattern: Int64($0))) } ?? o.generator()
        return a.push(try Corruptions.apply(x, kind, severity: severity, generator: g))
    } }),
    ("_random_crop", { L in bind(L, "parry.data.transforms.random_crop") { a in
        let o = try a.options(4, allowed: ["padding", "generator"])
        return a.push(try Transforms.randomCrop(try a.tensor(1, "x"), size: (try a.integer(2, "height"), try a.integer(3, "width")),
                                                padding: try o.integer("padding") ?? 0, generator: try o.generator()))
    } }),
    ("_hflip", { L in bind(L, "parry.data.transforms.hflip") { a in
        let o = try a.options(3, allowed: ["generator"])
        let p = try a.optNumber(2, "p", 0.5)
        guard p >= 0, p <= 1 else { throw a.fail("p must be in [0, 1], got \(p)") }
        return a.push(try Transforms.horizontalFlip(try a.tensor(1, "x"), p: p, generator: try o.generator()))
    } }),
    ("_normalize", { L in bind(L, "parry.data.transforms.normalize") { a in
        let mean = try numberOrList(a, 2, "mean"), std = try numberOrList(a, 3, "std")
        return a.push(try Transforms.normalize(try a.tensor(1, "x"), mean: mean, std: std))
    } }),
]

/// One number (for every channel) or a table of numbers.
private func numberOrList(_ a: LuaArgs, _ i: Int32, _ what: String) throws -> [Double] {
    if let s = a.optScalar(i) { return [s.double] }
    guard a.type(i) == LUA_TTABLE else { throw a.fail("expected a number or a table of numbers for \(what) (argument \(i)), got \(a.typeName(i))") }
    return try a.numberList(i, what)
}

let checkpointFunctions: [(String, parry_SwiftFunction)] = [
    ("save", { L in bind(L, "parry.save") { a in
        let path = try a.string(2, "path")
        var entries = [(name: String, tensor: Tensor)]()
        if let t = a.optTensor(1) {
            entries = [("tensor", t)]
        } else if let m = a.optModule(1) {
            entries = m.stateDict()
        } else if a.type(1) == LUA_TTABLE {
            lua_pushnil(a.L)
            while lua_next(a.L, 1) != 0 {
                defer { a.pop() }
                guard lua_type(a.L, -2) == LUA_TSTRING, let k = parry_tostring(a.L, -2, nil) else {
                    a.pop(); throw a.fail("tables to save must map string names to tensors")
                }
                let name = String(cString: k)
                guard let t = a.optTensor(-1) else { a.pop(); throw a.fail("entry '\(name)' is not a tensor") }
                entries.append((name, t))
            }
            entries.sort { $0.name < $1.name }
        } else {
            throw a.fail("expected a tensor, a module or a table of tensors (argument 1), got \(a.typeName(1))")
        }
        let o = try a.options(3, allowed: ["metadata"])
        var metadata = [String: String]()
        if o.index != 0 {
            let j = a.rawField(o.index, "metadata"); defer { a.pop() }
            if a.type(j) == LUA_TTABLE {
                lua_pushnil(a.L)
                while lua_next(a.L, j) != 0 {
                    defer { a.pop() }
                    guard lua_type(a.L, -2) == LUA_TSTRING, let k = parry_tostring(a.L, -2, nil) else { continue }
                    let key = String(cString: k)
                    var len = 0
                    guard lua_type(a.L, -1) == LUA_TSTRING || lua_type(a.L, -1) == LUA_TNUMBER, let v = parry_tostring(a.L, -1, &len) else {
                        a.pop(); throw a.fail("metadata '\(key)' must be a string or number")
                    }
                    metadata[key] = String(cString: v)
                }
            } else if !a.isNil(j) { throw a.fail("metadata must be a table of strings") }
        }
        try Safetensors.write(entries, to: path, metadata: metadata)
        return 0
    } }),
    ("load", { L in bind(L, "parry.load") { a in
        let (entries, metadata) = try Safetensors.read(try a.string(1, "path"))
        lua_createtable(a.L, 0, Int32(clamping: entries.count))
        for (n, t) in entries { pushString(a.L, n); pushTensor(a.L, t); lua_rawset(a.L, -3) }
        lua_createtable(a.L, 0, Int32(clamping: metadata.count))
        for (k, v) in metadata { pushString(a.L, k); pushString(a.L, v); lua_rawset(a.L, -3) }
        return 2
    } }),
]
