import CFuzzCoverage
import Foundation
import ParryLua

// Coverage-guided fuzzing of parry's readers of files it did not make (issue
// 19): each target feeds the input, as a file, to a public entry point
// through Lua, inside pcall. A Lua error is the expected answer to bad input;
// a crash, a sanitizer report, a hang or a leak is a bug.
//
// Two builds of one target:
//   - normal builds (`swift build`): `parry-fuzz TARGET PATH...` replays
//     inputs (files, or folders of them) and fails if any crashes; `make
//     test` replays the committed corpora in Tests/fuzz/<target>/.
//   - fuzz builds (`make fuzz TARGET= SECONDS=`, -DPARRY_FUZZ with
//     -sanitize=fuzzer,address): a libFuzzer binary driven by
//     LLVMFuzzerRunDriver; PARRY_FUZZ_TARGET names the target.

/// A target: the input's file name (the reader may look at its extension)
/// and the Lua code run with the path as `...`.
struct Target {
    let file: String
    let code: String
}

let targets: [String: Target] = [
    "safetensors": Target(file: "input.safetensors", code: "local p = ...; local parry = require('parry'); return parry.load(p)"),
    "idx": Target(file: "input-idx3-ubyte", code: "local p = ...; return require('parry').data.idx(p)"),
    "gzip": Target(file: "input-idx3-ubyte.gz", code: "local p = ...; return require('parry').data.idx(p)"),
    "npy": Target(file: "input.npy", code: "local p = ...; return require('parry').data.npy(p)"),
    "csv": Target(file: "input.csv", code: "local p = ...; return require('parry').data.csv(p)"),
    "cifar": Target(file: "cifar/test_batch.bin", code: """
        local p = ...; return require('parry').data.cifar10{split = 'test', root = p:match('^(.*)/')}
        """),
    "json": Target(file: "input.json", code: """
        local p = ...; local f = assert(io.open(p, 'rb')); local s = f:read('a'); f:close()
        return require('parry').json.decode(s)
        """),
    "manifest": Target(file: "lib/parry.lib.lua", code: "local p = ...; return require('parry').lib.load_manifest(p:match('^(.*)/'))"),
    "bundle": Target(file: "input_bundle.lua", code: """
        local p = ...; local lib = require('parry').lib
        local ok, m = pcall(lib.install, p)
        -- keep the scratch home empty: remove what an accepted bundle installed
        for name in pairs(lib.installed()) do lib.remove(name) end
        if not ok then error(m, 0) end
        """),
]

/// One Lua host and one scratch folder per process.
final class Harness {
    let host: LuaHost
    let dir: String
    let target: Target
    let path: String
    /// PARRY_FUZZ_VERBOSE=1: print each input's outcome (ok, or the Lua error).
    let verbose = ProcessInfo.processInfo.environment["PARRY_FUZZ_VERBOSE"] == "1"

    init(name: String) throws {
        guard let t = targets[name] else {
            throw HarnessError("unknown fuzz target '\(name)' (expected \(targets.keys.sorted().joined(separator: ", ")))")
        }
        target = t
        let base = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        dir = "\(base)/parry-fuzz-\(getpid())-\(name)"
        try? FileManager.default.removeItem(atPath: dir)
        path = "\(dir)/\(t.file)"
        try FileManager.default.createDirectory(atPath: (path as NSString).deletingLastPathComponent,
                                                withIntermediateDirectories: true)
        setenv("PARRY_HOME", "\(dir)/home", 1)
        host = try LuaHost()
        // Lua line coverage joins libFuzzer's (the JSON decoder and the library
        // readers are Lua code); in replay builds the counters are just bytes.
        parry_fuzz_cover_lua(host.L)
        // The code is compiled once; each input runs it inside pcall.
        try host.run(code: """
            local code = ...
            _G.__parry_fuzz = assert(load(code, '=fuzz target'))
            """, chunkName: "=(fuzz)", args: [t.code])
    }

    /// Runs the target on one input; Lua errors are the expected answer to bad input.
    func run(_ bytes: UnsafeRawBufferPointer) {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { return }
        var off = 0
        while off < bytes.count, let base = bytes.baseAddress {
            let n = write(fd, base + off, bytes.count - off)
            if n <= 0 { break }
            off += n
        }
        close(fd)
        try? host.run(code: verbose
            ? "local ok, e = pcall(__parry_fuzz, ...); print(ok and 'ok' or ('error: ' .. tostring(e))); collectgarbage()"
            : "pcall(__parry_fuzz, ...); collectgarbage()", chunkName: "=(fuzz)", args: [path])
    }

    deinit { try? FileManager.default.removeItem(atPath: dir) }
}

struct HarnessError: Error, CustomStringConvertible {
    let description: String
    init(_ d: String) { description = d }
}

#if PARRY_FUZZ

@_silgen_name("LLVMFuzzerRunDriver")
func LLVMFuzzerRunDriver(_ argc: UnsafeMutablePointer<Int32>,
                         _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>,
                         _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32) -> Int32

nonisolated(unsafe) var harness: Harness?

// SwiftPM names an executable's entry point <Module>_main; libFuzzer's driver takes over from here.
@_cdecl("ParryFuzz_main")
public func fuzzMain(_ argc: Int32, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> Int32 {
    let name = ProcessInfo.processInfo.environment["PARRY_FUZZ_TARGET"] ?? ""
    do { harness = try Harness(name: name) } catch {
        FileHandle.standardError.write(Data("parry-fuzz: \(error) (set PARRY_FUZZ_TARGET)\n".utf8))
        return 2
    }
    var c = argc
    var v = argv
    return LLVMFuzzerRunDriver(&c, &v) { data, size in
        harness?.run(UnsafeRawBufferPointer(start: data, count: size))
        return 0
    }
}

#else

/// Replays inputs: `parry-fuzz TARGET PATH...` (files or folders of files).
@main
struct Replay {
    static func main() {
        let args = Array(CommandLine.arguments.dropFirst())
        guard let name = args.first, args.count >= 2 else {
            print("usage: parry-fuzz TARGET PATH...  (targets: \(targets.keys.sorted().joined(separator: ", ")))")
            exit(2)
        }
        let harness: Harness
        do { harness = try Harness(name: name) } catch { print("parry-fuzz: \(error)"); exit(2) }
        var files = [String]()
        let fm = FileManager.default
        for p in args.dropFirst() {
            var isDir: ObjCBool = false
            guard fm.fileExists(atPath: p, isDirectory: &isDir) else { print("parry-fuzz: no such file: \(p)"); exit(2) }
            if isDir.boolValue {
                files += ((try? fm.contentsOfDirectory(atPath: p)) ?? []).sorted().map { "\(p)/\($0)" }
            } else {
                files.append(p)
            }
        }
        for f in files {
            guard let d = fm.contents(atPath: f) else { continue }
            d.withUnsafeBytes { harness.run($0) }
        }
        print("parry-fuzz \(name): \(files.count) inputs replayed, no crash")
    }
}

#endif
