import CLua
import CLuaShim
import Foundation

extension LuaHost {
    /// A read-eval-print loop that behaves like `lua`'s: a line is first tried
    /// as `return <line>` so expressions print; incomplete chunks continue on
    /// a `>>` prompt; errors print a traceback and the loop goes on; end of
    /// input (Ctrl-D) exits. `readLine` supplies lines (nil at end of input).
    public func repl(prompt: Bool = isatty(0) != 0, readLine: () -> String? = { Swift.readLine(strippingNewline: true) }) {
        func show(_ p: String) {
            if prompt { FileHandle.standardOutput.write(Data(p.utf8)) }
        }
        show("parry \(parryVersion) (Lua 5.4) — expressions print; Ctrl-C interrupts, Ctrl-D exits\n")
        while true {
            show("> ")
            guard var chunk = readLine() else { if prompt { print() }; return }
            if chunk.hasPrefix("=") { chunk = "return " + chunk.dropFirst() }
            let base = lua_gettop(L)
            // Try as an expression first.
            let expression = "return " + chunk
            var loaded = expression.withCString { parry_loadbuffer(L, $0, strlen($0), "=stdin") } == LUA_OK
            if !loaded {
                parry_pop(L, 1)
                // Then as statements, reading more lines while the chunk is incomplete.
                while true {
                    let status = chunk.withCString { parry_loadbuffer(L, $0, strlen($0), "=stdin") }
                    if status == LUA_OK { loaded = true; break }
                    let msg = popMessage()
                    if status == LUA_ERRSYNTAX && msg.hasSuffix("<eof>") {
                        show(">> ")
                        guard let more = readLine() else { print(msg); return }
                        chunk += "\n" + more
                        continue
                    }
                    FileHandle.standardError.write(Data((msg + "\n").utf8))
                    break
                }
            }
            guard loaded else { continue }
            do {
                try call(nargs: 0, nresults: LUA_MULTRET)
                let n = lua_gettop(L) - base
                if n > 0 {
                    lua_getglobal(L, "print")
                    parry_insert(L, base + 1)
                    if parry_pcall(L, n, 0, 0) != LUA_OK {
                        FileHandle.standardError.write(Data(("error calling print: " + popMessage() + "\n").utf8))
                    }
                }
            } catch {
                FileHandle.standardError.write(Data(("\(error)\n").utf8))
            }
            lua_settop(L, base)
        }
    }
}
