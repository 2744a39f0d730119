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
