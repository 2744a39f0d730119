import XCTest
@testable import ParryLua
import ParryCore

final class HostTests: XCTestCase {
    func testHistoryIsWrittenAsLinesAreEnteredAndReloaded() throws {
        let path = NSTemporaryDirectory() + "parry_history_\(getpid())"
        try? FileManager.default.removeItem(atPath: path)
        setenv("PARRY_HISTORY", path, 1)
        defer { unsetenv("PARRY_HISTORY"); try? FileManager.default.removeItem(atPath: path) }
        let h = LineHistory()
        h.add("x = 1")
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "x = 1\n")  // written at once
        h.add("x = 1")     // a repeat is not stored twice
        h.add("   ")       // nor blank lines
        h.add("print(x)")
        XCTAssertEqual(try String(contentsOfFile: path, encoding: .utf8), "x = 1\nprint(x)\n")
        let again = LineHistory()   // a new session loads it
        XCTAssertEqual(again.last, "print(x)")
    }

    func testErrorsBecomeLuaErrorsAndTheStateLivesOn() throws {
        let host = try LuaHost()
        XCTAssertThrowsError(try host.run(code: "require('parry').zeros('x')", chunkName: "=spec")) { e in
            let msg = "\(e)"
            XCTAssertTrue(msg.hasPrefix("spec:1: parry.zeros: expected sizes"), msg)
            XCTAssertTrue(msg.contains("stack traceback"), msg)
        }
        // The same state keeps working after the error.
        try host.run(code: "assert(require('parry').ones(3):sum():item() == 3)")
    }

    /// The userdata type check has a fast path for the metatables of the state
    /// that registered last (shim.c's kind cache) and the registry path for
    /// every other state; both must accept their own tensors and refuse other
    /// userdata, while states come and go in any order.
    func testTypeChecksHoldWithSeveralStatesAliveAndClosing() throws {
        let code = """
        local p = require('parry'); local a = p.ones(3)
        assert((a + a):sum():item() == 6)
        for _, other in ipairs{p.nn.Linear(2, 2), io.stdout, p.Generator(1)} do
          local ok, e = pcall(function() return a + other end)
          assert(not ok and e:find('parry.add: expected a tensor or number for other'), e)
        end
        local net = p.nn.Linear(3, 1)
        assert(net(a:view(1, 3)):numel() == 1)
        assert(not pcall(net, p.Generator(1)))
        collectgarbage()
        """
        let a = try LuaHost()
        try a.run(code: code)
        var b: LuaHost? = try LuaHost()
        try b!.run(code: code)     // b registered last: its checks take the fast path
        try a.run(code: code)      // a's take the registry path
        b = nil                    // b closes: the cache is cleared with it
        try a.run(code: code)
        let c = try LuaHost()
        try c.run(code: code)
        try a.run(code: code)
    }

    func testGarbageCollectorSeesNativeMemory() throws {
        let host = try LuaHost()
        let before = nativeBytes.load(ordering: .relaxed)
        // 1000 tensors of 1 MB with no collectgarbage(): live native bytes stay
        // near the soft limit instead of growing to 1 GB.
        try host.run(code: "local parry = require('parry'); for i = 1, 1000 do local t = parry.ones(262144) end")
        let growth = nativeBytes.load(ordering: .relaxed) - before
        XCTAssertLessThan(growth, 3 * MemoryPressure.floor, "live native bytes grew by \(growth)")
    }
}
