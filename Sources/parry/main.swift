import Foundation
import ParryDist
import ParryLua

// The `parry` command: run scripts, start the REPL, run Lua specs.
// Usage mirrors `lua`: options first, then the script and its arguments.

let usage = """
usage: parry [options] [script [args...]]
       parry run script [args...]     run a Lua script
       parry repl                     start the interactive prompt
       parry test [paths...]          run *_spec.lua files (default Tests/lua)
       parry bundle DIR [-o FILE]     write a library folder as one self-contained .lua file
       parry install FILE|DIR         install a library into $PARRY_HOME/lib (default ~/.parry/lib)
       parry list                     list installed libraries
       parry remove NAME[@VERSION]    remove an installed library
       parry runs [DIR]               list experiment runs (default runs/) with their summaries
       parry doctor                   check the installation: versions, BLAS, stdlib, docs, data, LuaRocks, MuJoCo
       parry version                  print the version

options:
  -e code      execute the string 'code'
  -l mod       require module 'mod' into global 'mod'
  -i           enter the REPL after running the script
  -v           print the version
  -h, --help   show this help
  --           stop handling options
  -            run stdin as a script

With no script, parry starts the REPL (reading stdin plainly when it is not a terminal).
"""

func fail(_ message: String, code: Int32 = 1) -> Never {
    // Under mpirun an error on one rank ends the whole job (the others may be
    // waiting for this rank in a collective): the message names the rank.
    if Communicator.world.size > 1 { Communicator.world.abort(message, code: code) }
    FileHandle.standardError.write(Data((message + "\n").utf8))
    exit(code)
}

func makeHost() -> LuaHost {
    do { return try LuaHost() } catch { fail("parry: \(error)") }
}

/// `*_spec.lua` files under the given paths (files are taken as they are), sorted.
func specFiles(_ paths: [String]) -> [String] {
    var out = [String]()
    let fm = FileManager.default
    for p in paths {
        var isDir: ObjCBool = false
        guard fm.fileExists(atPath: p, isDirectory: &isDir) else { fail("parry test: no such file or directory: \(p)") }
        if !isDir.boolValue { out.append(p); continue }
        let found = (fm.enumerator(atPath: p)?.compactMap { $0 as? String } ?? [])
            .filter { $0.hasSuffix("_spec.lua") }.sorted()
        out += found.map { (p as NSString).appendingPathComponent($0) }
    }
    return out
}

let argv = CommandLine.arguments
let rest = Array(argv.dropFirst())

switch rest.first {
case "version", "--version":
    print("parry \(parryVersion) (Lua 5.4)")
    exit(0)
case "-h", "--help", "help":
    print(usage)
    exit(0)
case "repl":
    makeHost().repl()
    exit(0)
case "doctor":
    let host = makeHost()
    do { try host.run(code: "os.exit(require('parry.doctor').main())", args: []) } catch { fail("\(error)") }
    exit(0)
case "bundle", "install", "list", "remove", "runs":
    // Implemented in Lua (stdlib/parry/lib.lua, stdlib/parry/exp.lua).
    let host = makeHost()
    let module = rest[0] == "runs" ? "parry.exp" : "parry.lib"
    do {
        // The module, command and arguments arrive as the chunk's `...`.
        try host.run(code: "local module, cmd = ...; os.exit(require(module).main(cmd, {select(3, ...)}))",
                     args: [module] + rest)
    } catch {
        fail("\(error)")
    }
    exit(0)
case "test":
    let paths = rest.count > 1 ? Array(rest.dropFirst()) : ["Tests/lua"]
    let host = makeHost()
    // arg[-1] is the running binary (resolved), so specs can run the CLI.
    let exe = (try? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")) ?? argv[0]
    host.setArg([exe, "test"] + paths, scriptIndex: 1)
    do {
        let failures = try host.runSpecs(specFiles(paths))
        exit(failures == 0 ? 0 : 1)
    } catch {
        fail("\(error)")
    }
default:
    break
}

// lua-style command line: [options] [script [args]]
let host = makeHost()
var interactive = false
var i = 0
var args = rest
if args.first == "run" {
    guard args.count >= 2 else { fail("parry run: missing script\n\n" + usage) }
    args.removeFirst()
}
var actions = [(String, String)]()   // ("e", code) or ("l", module)
var scriptIndex: Int? = nil
while i < args.count {
    let a = args[i]
    if a == "--" { i += 1; if i < args.count { scriptIndex = i }; break }
    if a == "-" { scriptIndex = i; break }
    if !a.hasPrefix("-") { scriptIndex = i; break }
    switch a {
    case "-i": interactive = true
    case "-v": print("parry \(parryVersion) (Lua 5.4)")
    case "-h", "--help": print(usage); exit(0)
    case "-e", "-l":
        guard i + 1 < args.count else { fail("parry: '\(a)' needs an argument\n\n" + usage) }
        actions.append((a, args[i + 1])); i += 1
    default:
        if a.hasPrefix("-e") { actions.append(("-e", String(a.dropFirst(2)))) }
        else if a.hasPrefix("-l") { actions.append(("-l", String(a.dropFirst(2)))) }
        else { fail("parry: unrecognized option '\(a)'\n\n" + usage) }
    }
    i += 1
}

// arg: the script at index 0, the interpreter and options before it.
let all = [argv[0]] + args
host.setArg(all, scriptIndex: (scriptIndex ?? (args.count - 1 + (args.isEmpty ? 1 : 0))) + 1)

do {
    for (kind, value) in actions {
        if kind == "-e" { try host.run(code: value) } else { try host.require(value) }
    }
    if let s = scriptIndex {
        let scriptArgs = Array(args[(s + 1)...])
        if args[s] == "-" {
            let code = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
            try host.run(code: code, chunkName: "=stdin", args: scriptArgs)
        } else {
            try host.run(file: args[s], args: scriptArgs)
        }
    }
} catch {
    // Ctrl-C: exit 130 as a shell's child killed by SIGINT would
    let message = "\(error)"
    if message.split(separator: "\n").first?.hasSuffix("interrupted!") == true { fail(message, code: 130) }
    fail(message)
}

if interactive || (scriptIndex == nil && actions.isEmpty) {
    host.repl()
}
