import CEdit
import CLua
import CLuaShim
import Foundation

/// The REPL's host side: reading lines (libedit with history and completion on
/// a terminal, plain reads otherwise) and handing each to `parry.repl.feed`
/// (stdlib/parry/repl.lua), which evaluates, auto-prints and tracks
/// multi-line chunks.
extension LuaHost {
    /// Runs until end of input (Ctrl-D). With `interactive`, lines come from
    /// libedit with a prompt; otherwise `readLine` supplies them.
    public func repl(interactive: Bool = isatty(0) != 0,
                     readLine: () -> String? = { Swift.readLine(strippingNewline: true) }) {
        do {
            try run(code: """
                parry = require("parry")
                help = require("parry.help")
                """, chunkName: "=repl")
        } catch {
            FileHandle.standardError.write(Data("parry: \(error)\n".utf8))
            return
        }
        lua_getglobal(L, "require")
        pushString(L, "parry.repl")
        guard (try? call(nargs: 1, nresults: 1)) != nil, lua_type(L, -1) == LUA_TTABLE else {
            FileHandle.standardError.write(Data("parry: cannot load parry.repl\n".utf8))
            return
        }
        let repl = lua_gettop(L)
        var history: LineHistory? = nil
        if interactive {
            print("parry \(parryVersion) (Lua 5.4) — expressions print; help() for docs, TAB completes, Ctrl-C interrupts, Ctrl-D exits")
            history = LineHistory()
            Completion.install(L, replIndex: repl)
        }
        var prompt = "> "
        while true {
            let line: String?
            if interactive {
                line = LineEditor.read(prompt)
                if line == nil && parry_prompt_interrupted() != 0 {
                    // Ctrl-C at the prompt drops the line (and any pending chunk).
                    print("")
                    lua_getfield(L, repl, "reset")
                    _ = try? call(nargs: 0, nresults: 0)
                    prompt = "> "
                    continue
                }
            } else {
                line = readLine()
            }
            guard let line else { if interactive { print("") }; break }
            history?.add(line)
            lua_getfield(L, repl, "feed")
            pushString(L, line)
            do {
                try call(nargs: 1, nresults: 1)
                var len = 0
                let status = parry_tostring(L, -1, &len).map { String(cString: $0) } ?? "ok"
                parry_pop(L, 1)
                prompt = status == "more" ? ">> " : "> "
            } catch {
                FileHandle.standardError.write(Data("\(error)\n".utf8))
                prompt = "> "
            }
        }
        Completion.uninstall()
        lua_settop(L, repl - 1)
    }
}

/// libedit's readline with Ctrl-C at the prompt reported instead of killing the session.
enum LineEditor {
    static func read(_ prompt: String) -> String? {
        parry_prompt_sigint(1)
        defer { parry_prompt_sigint(0) }
        guard let p = readline(prompt) else { return nil }
        defer { free(p) }
        return String(cString: p)
    }
}

/// Persistent history: `PARRY_HISTORY` or ~/.parry_history, one entry per
/// line, loaded at start and appended as lines are entered.
final class LineHistory {
    let path: String
    var last: String? = nil

    init() {
        let env = ProcessInfo.processInfo.environment
        path = env["PARRY_HISTORY"] ?? ((env["HOME"] ?? NSHomeDirectory()) + "/.parry_history")
        using_history()
        if let text = try? String(contentsOfFile: path, encoding: .utf8) {
            for l in text.split(separator: "\n", omittingEmptySubsequences: true).suffix(1000) {
                add_history(String(l))
                last = String(l)
            }
        }
    }

    func add(_ line: String) {
        let entry = line.trimmingCharacters(in: .whitespaces)
        guard !entry.isEmpty, entry != last, !entry.contains("\n") else { return }
        last = entry
        add_history(entry)
        guard let f = fopen(path, "a") else { return }
        fputs(entry + "\n", f)
        fclose(f)
    }
}

/// Tab completion through `parry.repl.complete(word, line)`.
enum Completion {
    nonisolated(unsafe) static var state: LuaState? = nil
    nonisolated(unsafe) static var replIndex: Int32 = 0
    nonisolated(unsafe) static var candidates: [String] = []
    nonisolated(unsafe) static var next = 0
    nonisolated(unsafe) static var breaks: UnsafeMutablePointer<CChar>? = nil

    static func install(_ L: LuaState, replIndex: Int32) {
        state = L
        self.replIndex = replIndex
        // '.' and ':' are part of a word, so `t:su` and `parry.nn.Li` complete as a whole.
        breaks = strdup(" \t\n\"'`@$><=;|&{(,+-*/%^#~[]")
        rl_completer_word_break_characters = breaks
        rl_completion_append_character = 0
        rl_attempted_completion_function = attempted
    }

    static func uninstall() {
        rl_attempted_completion_function = nil
        state = nil
    }

    /// Asks Lua for the candidates (in protected mode: no error escapes into libedit).
    static func ask(_ word: String, _ line: String) -> [String] {
        guard let L = state else { return [] }
        let top = lua_gettop(L)
        defer { lua_settop(L, top) }
        lua_getfield(L, replIndex, "complete")
        pushString(L, word)
        pushString(L, line)
        guard parry_pcall(L, 2, 1, 0) == LUA_OK, lua_type(L, -1) == LUA_TTABLE else { return [] }
        var out: [String] = []
        let n = lua_rawlen(L, -1)
        for i in 0..<Int(n) {
            lua_rawgeti(L, -1, lua_Integer(i + 1))
            if let c = parry_tostring(L, -1, nil) { out.append(String(cString: c)) }
            parry_pop(L, 1)
        }
        return out
    }

    static let attempted: @convention(c) (UnsafePointer<CChar>?, Int32, Int32) -> UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>? = { text, _, end in
        guard let text else { return nil }
        let buffer = rl_line_buffer.map { String(cString: $0) } ?? ""
        let line = String(buffer.utf8.prefix(Int(max(0, end)))) ?? buffer
        Completion.candidates = Completion.ask(String(cString: text), line)
        Completion.next = 0
        rl_attempted_completion_over = 1  // no fallback to file names
        return rl_completion_matches(text, generator)
    }

    static let generator: @convention(c) (UnsafePointer<CChar>?, Int32) -> UnsafeMutablePointer<CChar>? = { _, state in
        if state == 0 { Completion.next = 0 }
        guard Completion.next < Completion.candidates.count else { return nil }
        defer { Completion.next += 1 }
        return strdup(Completion.candidates[Completion.next])
    }
}
