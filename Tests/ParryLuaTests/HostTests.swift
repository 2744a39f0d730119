import XCTest
@testable import ParryLua
import ParryCore
import CLua
import CLuaShim

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

    /// The userdata type check reads the box's kind tag (shim.c), the same in
    /// every state: each state must accept its own tensors and refuse other
    /// userdata while states, each with its own allocator, come and go in any
    /// order.
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

    /// The state's allocator (shim.c's small-block lists), called as Lua calls it.
    func testSmallBlocksAreReusedAndTheListsKeepAtMostTheirCap() throws {
        let host = try LuaHost()
        var ud: UnsafeMutableRawPointer?
        let alloc = try XCTUnwrap(lua_getallocf(host.L, &ud))
        let cached = { parry_small_allocator_cached(OpaquePointer(ud)) }
        // A freed block is the next one of its size, not of another size (the
        // lists hold the state's own blocks too: counts are relative).
        let p = try XCTUnwrap(alloc(ud, nil, Int(LUA_TUSERDATA), 48))
        let c0 = cached()
        _ = alloc(ud, p, 48, 0)
        XCTAssertEqual(cached(), c0 + 48)
        let c1 = cached()
        let other = try XCTUnwrap(alloc(ud, nil, Int(LUA_TTABLE), 56))
        XCTAssertNotEqual(other, p)
        XCTAssertTrue(cached() == c1 || cached() == c1 - 56, "\(cached()) after \(c1)")
        let c2 = cached()
        let q = try XCTUnwrap(alloc(ud, nil, Int(LUA_TSTRING), 48))
        XCTAssertEqual(q, p)
        XCTAssertEqual(cached(), c2 - 48)
        // Growing a block (a listed one too) keeps its bytes.
        q.storeBytes(of: 0x1234_5678_9abc_def0 as UInt64, as: UInt64.self)
        let grown = try XCTUnwrap(alloc(ud, q, 48, 4096))
        XCTAssertEqual(grown.load(as: UInt64.self), 0x1234_5678_9abc_def0)
        // Large blocks go back to free at once.
        let c3 = cached()
        _ = alloc(ud, grown, 4096, 0)
        _ = alloc(ud, other, 56, 0)
        XCTAssertEqual(cached(), c3 + 56)
        // At most 8 MB is kept, however much is freed at once (a minor collection).
        let blocks = (0..<50_000).map { _ in alloc(ud, nil, 0, 200)! }
        for b in blocks { _ = alloc(ud, b, 200, 0) }
        XCTAssertLessThanOrEqual(cached(), 8 << 20)
        XCTAssertGreaterThan(cached(), (8 << 20) - 200)
        // The state runs on it, and closes with blocks in the lists (deinit frees them).
        try host.run(code: "local p = require('parry'); local s = 0; for i = 1, 2000 do s = s + (p.ones(4) * i):sum():item() end; assert(s == 4 * 2000 * 2001 / 2)")
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
