import XCTest
@testable import ParryCore

final class AtomicFileTests: XCTestCase {
    var dir = ""

    override func setUpWithError() throws {
        dir = NSTemporaryDirectory() + "parry-atomic-\(getpid())-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(atPath: dir); dir = "" }

    func entries() throws -> [String] { try FileManager.default.contentsOfDirectory(atPath: dir).sorted() }

    func testReplacesWholeAndLeavesOnlyTheTarget() throws {
        let path = dir + "/ck.bin"
        try AtomicFile.write(Data("old".utf8), to: path)
        try AtomicFile.write(to: path) { w in try w.write("new "); try w.write(Data([0x61, 0x00, 0x62])) }
        XCTAssertEqual(FileManager.default.contents(atPath: path), Data("new ".utf8) + Data([0x61, 0x00, 0x62]))
        XCTAssertEqual(try entries(), ["ck.bin"])
    }

    func testAFailingWriterKeepsTheOldFileAndRemovesItsTemporary() throws {
        let path = dir + "/ck.bin"
        try AtomicFile.write(Data("old".utf8), to: path)
        struct Boom: Error {}
        XCTAssertThrowsError(try AtomicFile.write(to: path) { w in try w.write("half"); throw Boom() })
        XCTAssertEqual(FileManager.default.contents(atPath: path), Data("old".utf8))
        XCTAssertEqual(try entries(), ["ck.bin"])
    }

    func testAMissingDirectoryIsAnErrorNamingThePath() throws {
        XCTAssertThrowsError(try AtomicFile.write(Data(), to: dir + "/no/such/x")) { e in
            XCTAssertTrue("\(e)".hasPrefix(dir + "/no/such/x: cannot write (No such file or directory)"), "\(e)")
        }
    }

    func testStaleTemporariesOfDeadWritersGoAtTheNextWrite() throws {
        let path = dir + "/ck.bin"
        // PIDs above the kernel's pid_max (at most 2^22) never run; PID 1 always does.
        let dead = dir + "/.ck.bin.tmp-4194305-1", alive = dir + "/.ck.bin.tmp-1-1"
        let otherTarget = dir + "/.other.bin.tmp-4194305-1", deadFolder = dir + "/.ck.bin.tmp-4194306-2"
        for p in [dead, alive, otherTarget] { XCTAssertTrue(FileManager.default.createFile(atPath: p, contents: Data("x".utf8))) }
        try FileManager.default.createDirectory(atPath: deadFolder + "/inner", withIntermediateDirectories: true)
        try AtomicFile.write(Data("v".utf8), to: path)
        XCTAssertEqual(try entries(), [".ck.bin.tmp-1-1", ".other.bin.tmp-4194305-1", "ck.bin"])
    }

    func testTemporaryNamesAreUniqueInAProcess() {
        let a = AtomicFile.temporaryName(for: "t"), b = AtomicFile.temporaryName(for: "t")
        XCTAssertNotEqual(a, b)
        XCTAssertTrue(a.hasPrefix(".t.tmp-\(getpid())-"), a)
    }
}
