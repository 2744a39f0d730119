import Foundation
import XCTest
@testable import ParryCore
@testable import ParryData
import CZlib

/// Readers on tiny files written here byte by byte.
final class ReaderTests: XCTestCase {
    var dir: URL!

    override func setUpWithError() throws {
        dir = FileManager.default.temporaryDirectory.appendingPathComponent("parry-data-\(UUID().uuidString)")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    }
    override func tearDownWithError() throws { try? FileManager.default.removeItem(at: dir); dir = nil }

    func write(_ name: String, _ bytes: [UInt8]) throws -> String {
        let p = dir.appendingPathComponent(name).path
        try Data(bytes).write(to: URL(fileURLWithPath: p))
        return p
    }

    func gzip(_ path: String) throws -> String {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/gzip")
        p.arguments = ["-kf", path]
        try p.run(); p.waitUntilExit()
        return path + ".gz"
    }

    func testIDXBytesAndLabels() throws {
        // magic 0,0,0x08 (u8), ndim 3; sizes 2×2×3; then 12 bytes
        let bytes: [UInt8] = [0, 0, 8, 3, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 3] + Array(0..<12).map { UInt8($0 * 20) }
        let t = try readIDX(try write("img.idx", bytes))
        XCTAssertEqual(t.shape, [2, 2, 3]); XCTAssertEqual(t.dtype, .int64)
        XCTAssertEqual(t.int64s(), (0..<12).map { Int64($0 * 20) })
        let gz = try readIDX(try gzip(try write("img2.idx", bytes)))
        XCTAssertEqual(gz.int64s(), t.int64s())
        // int32 (0x0C) big-endian with a negative value, float32 (0x0D)
        let i32 = try readIDX(try write("i.idx", [0, 0, 0x0C, 1, 0, 0, 0, 2, 0, 0, 1, 0, 0xFF, 0xFF, 0xFF, 0xFE]))
        XCTAssertEqual(i32.int64s(), [256, -2])
        let f = try readIDX(try write("f.idx", [0, 0, 0x0D, 1, 0, 0, 0, 1, 0x3F, 0xC0, 0, 0]))
        XCTAssertEqual(f.floats(), [1.5])
    }

    func testIDXErrors() throws {
        XCTAssertThrowsError(try readIDX(dir.appendingPathComponent("missing").path)) { XCTAssertTrue("\($0)".contains("no such file")) }
        XCTAssertThrowsError(try readIDX(try write("bad", [1, 2, 3, 4]))) { XCTAssertTrue("\($0)".contains("bad magic")) }
        XCTAssertThrowsError(try readIDX(try write("trunc", [0, 0, 8, 1, 0, 0, 0, 9, 1, 2]))) { XCTAssertTrue("\($0)".contains("truncated IDX data")) }
        XCTAssertThrowsError(try readIDX(try write("hdr", [0, 0, 8, 2, 0, 0]))) { XCTAssertTrue("\($0)".contains("truncated IDX header")) }
    }

    func npy(_ descr: String, _ shape: String, _ data: [UInt8]) -> [UInt8] {
        var header = "{'descr': '\(descr)', 'fortran_order': False, 'shape': \(shape), }"
        while (10 + header.utf8.count + 1) % 64 != 0 { header += " " }
        header += "\n"
        let n = header.utf8.count
        return [0x93] + Array("NUMPY".utf8) + [1, 0, UInt8(n & 0xFF), UInt8(n >> 8)] + Array(header.utf8) + data
    }

    func testNPY() throws {
        var f32 = [UInt8]()
        for v: Float in [1, -2.5, 3, 4] { withUnsafeBytes(of: v.bitPattern.littleEndian) { f32 += $0 } }
        let t = try readNPY(try write("a.npy", npy("<f4", "(2, 2)", f32)))
        XCTAssertEqual(t.shape, [2, 2]); XCTAssertEqual(t.floats(), [1, -2.5, 3, 4])
        var f64 = [UInt8]()
        withUnsafeBytes(of: (0.25 as Double).bitPattern.littleEndian) { f64 += $0 }
        XCTAssertEqual(try readNPY(try write("b.npy", npy("<f8", "(1,)", f64))).floats(), [0.25])
        XCTAssertEqual(try readNPY(try write("c.npy", npy("|u1", "(3,)", [1, 2, 255]))).int64s(), [1, 2, 255])
        var i64 = [UInt8]()
        withUnsafeBytes(of: Int64(-7).littleEndian) { i64 += $0 }
        XCTAssertEqual(try readNPY(try write("d.npy", npy("<i8", "()", i64))).int64s(), [-7])
        XCTAssertThrowsError(try readNPY(try write("t.npy", npy("<f4", "(9,)", f32)))) { XCTAssertTrue("\($0)".contains("truncated .npy data")) }
        XCTAssertThrowsError(try readNPY(try write("g.npy", npy(">f4", "(1,)", f32)))) { XCTAssertTrue("\($0)".contains("big-endian")) }
    }

    func testCIFARAndCSV() throws {
        var rec = [UInt8](repeating: 0, count: 3073 * 2)
        rec[0] = 3; rec[1] = 255; rec[3073] = 9; rec[3073 + 3072] = 51
        let (x, y) = try readCIFARBatches([try write("b.bin", rec)])
        XCTAssertEqual(x.shape, [2, 3, 32, 32]); XCTAssertEqual(y.int64s(), [3, 9])
        XCTAssertEqual(x.floats()[0], 1); XCTAssertEqual(x.floats()[2 * 3072 - 1], 0.2)
        XCTAssertThrowsError(try readCIFARBatches([try write("c.bin", [1, 2, 3])]))
        let csv = try write("a.csv", Array("a,b\n1,2.5\n-3,4\n".utf8))
        let (t, names) = try readCSV(csv)
        XCTAssertEqual(names, ["a", "b"]); XCTAssertEqual(t.shape, [2, 2]); XCTAssertEqual(t.floats(), [1, 2.5, -3, 4])
        XCTAssertThrowsError(try readCSV(try write("b.csv", Array("a,b\n1\n".utf8)))) { XCTAssertTrue("\($0)".contains("row 2 has 1 fields")) }
        XCTAssertThrowsError(try readCSV(try write("c.csv", Array("a\nx\n".utf8)))) { XCTAssertTrue("\($0)".contains("'x' is not a number")) }
    }

    func testTransforms() throws {
        let x = try Tensor((0..<16).map { Float($0) }, shape: [1, 1, 4, 4])
        let c = try Transforms.randomCrop(x, size: (4, 4), padding: 0)
        XCTAssertEqual(c.floats(), x.floats())                    // no padding: the only window is the image
        let p = try Transforms.randomCrop(x, size: (4, 4), padding: 2, generator: Generator(seed: 1))
        XCTAssertEqual(p.shape, [1, 1, 4, 4])
        let f = try Transforms.horizontalFlip(x, p: 1)
        XCTAssertEqual(Array(f.floats()[0..<4]), [3, 2, 1, 0])
        let n = try Transforms.normalize(x, mean: [8], std: [2])
        XCTAssertEqual(n.floats()[0], -4)
    }
}

/// The streamed IDX reader: the first `limit` items, floats divided on the way in, gzip or not.
final class StreamedIDXTests: XCTestCase {
    func testLimitAndDivisorMatchTheFullReadOnPlainAndGzipFiles() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("parry-idx-\(getpid())")
        try FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(at: dir) }
        // 5 images of 2×3 bytes
        var bytes: [UInt8] = [0, 0, 0x08, 3, 0, 0, 0, 5, 0, 0, 0, 2, 0, 0, 0, 3]
        bytes += (0..<30).map { UInt8($0 * 8) }
        let plain = dir.appendingPathComponent("images-idx3-ubyte").path
        FileManager.default.createFile(atPath: plain, contents: Data(bytes))
        let gz = plain + ".gz"
        let f = gzopen(gz, "wb")!
        _ = bytes.withUnsafeBytes { gzwrite(f, $0.baseAddress, UInt32($0.count)) }
        gzclose(f)
        for path in [plain, gz] {
            let all = try readIDX(path)
            XCTAssertEqual(all.shape, [5, 2, 3])
            XCTAssertEqual(all.int64s(), (0..<30).map { Int64($0 * 8) })
            let some = try readIDX(path, limit: 2, divisor: 255)
            XCTAssertEqual(some.shape, [2, 2, 3])
            XCTAssertEqual(some.floats(), (0..<12).map { Float($0 * 8) / 255 })
        }
        // a file cut in the data is an error naming what was found
        FileManager.default.createFile(atPath: plain, contents: Data(bytes.prefix(16 + 20)))
        XCTAssertThrowsError(try readIDX(plain)) { XCTAssertTrue("\($0)".contains("found 20"), "\($0)") }
        XCTAssertEqual(try readIDX(plain, limit: 3).shape, [3, 2, 3])   // the first 3 items are all there
    }
}
