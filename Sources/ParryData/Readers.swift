import CZlib
import Foundation
import ParryCore

// Readers for the file formats experiments use: IDX (MNIST family, plain or
// gzip), NumPy .npy, CIFAR-10 binary batches and numeric CSV. Each checks its
// input and names the file in its errors; truncated or corrupt files are
// errors, never crashes.

public enum DataError {
    static func at(_ path: String, _ message: String) -> TensorError { TensorError("\(path): \(message)") }
}

/// The whole file, transparently gunzipped when it starts with the gzip magic.
public func readFile(_ path: String) throws -> [UInt8] {
    try StreamReader(path).readAll()
}

@inline(__always) func bigEndianU32(_ b: [UInt8], _ i: Int) -> Int {
    Int(b[i]) << 24 | Int(b[i + 1]) << 16 | Int(b[i + 2]) << 8 | Int(b[i + 3])
}

/// Reads a file through zlib's gzread, which inflates gzip files and passes
/// plain ones through: the bytes stream in chunks, never all at once.
final class StreamReader {
    let path: String
    private let gz: gzFile
    /// The most bytes the stream can yield: the file's size, or for gzip
    /// 1032× it (deflate's largest ratio) — a bound on what a header may
    /// claim, so a 100-byte file cannot make a reader allocate gigabytes
    /// (found by fuzzing the IDX and gzip readers).
    let maxBytes: Int
    /// Whether the file is plain (maxBytes is then its exact size).
    let direct: Bool
    init(_ path: String) throws {
        var folder: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &folder) else { throw DataError.at(path, "no such file") }
        guard !folder.boolValue, let gz = gzopen(path, "rb") else { throw DataError.at(path, "cannot read the file") }
        self.path = path; self.gz = gz
        gzbuffer(gz, 1 << 17)
        let size = ((try? FileManager.default.attributesOfItem(atPath: path))?[.size] as? NSNumber)?.intValue ?? Int.max
        direct = gzdirect(gz) == 1
        maxBytes = direct ? size : (size > Int.max / 1032 ? Int.max : size * 1032)
    }

    /// nil when `count` more bytes after `consumed` could be in the file;
    /// otherwise how many there can be at most.
    func shortfall(_ count: Int, after consumed: Int) -> Int? {
        let (total, o) = consumed.addingReportingOverflow(count)
        return !o && total <= maxBytes ? nil : max(0, maxBytes - consumed)
    }
    deinit { gzclose(gz) }

    /// Fills `count` bytes at `p`; returns how many were read (fewer at the end of the file).
    func read(into p: UnsafeMutableRawPointer, count: Int) throws -> Int {
        var done = 0
        while done < count {
            let n = gzread(gz, p + done, UInt32(min(count - done, 1 << 30)))
            if n < 0 { throw DataError.at(path, "corrupt gzip data") }
            if n == 0 { break }
            done += Int(n)
        }
        return done
    }

    /// Up to `count` bytes (fewer at the end of the file).
    func bytes(_ count: Int) throws -> [UInt8] {
        guard count > 0 else { return [] }
        var b = [UInt8](repeating: 0, count: count)
        let n = try b.withUnsafeMutableBytes { buf in try buf.baseAddress.map { try read(into: $0, count: count) } ?? 0 }
        return Array(b.prefix(n))
    }

    /// The rest of the file.
    func readAll() throws -> [UInt8] {
        var out = [UInt8]()
        while true {
            let chunk = try bytes(1 << 20)
            if chunk.isEmpty { return out }
            out += chunk
        }
    }
}

/// An IDX file (LeCun's MNIST format): magic 0,0,type,ndim; ndim big-endian
/// u32 sizes; big-endian data. Integer types give int64, floats float32.
/// `limit` keeps the first items along dim 1; `divisor` gives float32 values
/// x / divisor directly (uint8 images to [0, 1] without an int64 copy, the
/// same floats as converting then dividing). The file
/// (plain or gzip) is streamed: the peak is the result plus a small buffer.
public func readIDX(_ path: String, limit: Int? = nil, divisor: Double? = nil) throws -> Tensor {
    let r = try StreamReader(path)
    let head = try r.bytes(4)
    guard head.count == 4, head[0] == 0, head[1] == 0 else { throw DataError.at(path, "not an IDX file (bad magic)") }
    let type = head[2], nd = Int(head[3])
    guard nd >= 1, nd <= 8 else { throw DataError.at(path, "truncated IDX header") }
    let dims = try r.bytes(4 * nd)
    guard dims.count == 4 * nd else { throw DataError.at(path, "truncated IDX header") }
    var shape = (0..<nd).map { bigEndianU32(dims, 4 * $0) }
    let size: Int
    switch type {
    case 0x08, 0x09: size = 1
    case 0x0B: size = 2
    case 0x0C, 0x0D: size = 4
    case 0x0E: size = 8
    default: throw DataError.at(path, "unknown IDX element type 0x\(String(type, radix: 16))")
    }
    try Tensor.checkShape(shape)
    let full = shape
    if let limit { shape[0] = min(max(limit, 0), shape[0]) }
    let n = shape.reduce(1, *)
    let float = type == 0x0D || type == 0x0E
    let truncated = { (found: Int) in
        DataError.at(path, "truncated IDX data: expected \(full.reduce(1, *) * size) bytes for shape \(shapeString(full)), found \(found)")
    }
    if let most = r.shortfall(n * size, after: 4 + 4 * nd) {
        throw r.direct ? truncated(most)
            : DataError.at(path, "truncated IDX data: the header asks for \(n * size) bytes, more than this gzip file can hold")
    }
    if size == 1 {
        // bytes (images, labels), the common case: decoded chunk by chunk into the result
        let out = try Tensor(shape: shape, dtype: divisor != nil ? .float32 : .int64, zeroed: false)
        var chunk = [UInt8](repeating: 0, count: 1 << 16)
        var done = 0
        let signed = type == 0x09
        while done < n {
            let want = min(chunk.count, n - done)
            let got = try chunk.withUnsafeMutableBytes { buf in try buf.baseAddress.map { try r.read(into: $0, count: want) } ?? 0 }
            guard got == want else { throw truncated(done + got) }
            if let divisor {
                let p = out.pointer(Float.self) + done, d = Float(divisor)
                for i in 0..<got { p[i] = (signed ? Float(Int8(bitPattern: chunk[i])) : Float(chunk[i])) / d }
            } else {
                let p = out.pointer(Int64.self) + done
                for i in 0..<got { p[i] = signed ? Int64(Int8(bitPattern: chunk[i])) : Int64(chunk[i]) }
            }
            done += got
        }
        return out
    }
    let b = try r.bytes(n * size)
    guard b.count == n * size else { throw truncated(b.count) }
    let t = try decodeElements(b, at: 0, count: n, size: size, shape: shape, float: float, signed: type != 0x08, bigEndian: true)
    guard let divisor else { return t }
    return try t.to(.float32).binary(.div, .float(divisor))
}

/// A NumPy .npy file (versions 1–3), C order; float32/float64 give float32,
/// uint8/int32/int64 give int64.
public func readNPY(_ path: String) throws -> Tensor {
    let b = try readFile(path)
    guard b.count >= 10, b[0] == 0x93, Array(b[1..<6]) == Array("NUMPY".utf8) else { throw DataError.at(path, "not an .npy file (bad magic)") }
    let major = b[6]
    let headerLen: Int, start: Int
    if major == 1 {
        headerLen = Int(b[8]) | Int(b[9]) << 8; start = 10
    } else {
        guard b.count >= 12 else { throw DataError.at(path, "truncated .npy header") }
        headerLen = Int(b[8]) | Int(b[9]) << 8 | Int(b[10]) << 16 | Int(b[11]) << 24; start = 12
    }
    guard b.count >= start + headerLen, let header = String(bytes: b[start..<(start + headerLen)], encoding: .utf8) else {
        throw DataError.at(path, "truncated .npy header")
    }
    func field(_ key: String) -> String? {
        guard let r = header.range(of: "'\(key)':") else { return nil }
        return String(header[r.upperBound...]).trimmingCharacters(in: .whitespaces)
    }
    guard let descrField = field("descr"), let q1 = descrField.firstIndex(of: "'"),
          let q2 = descrField[descrField.index(after: q1)...].firstIndex(of: "'") else { throw DataError.at(path, "no dtype in .npy header") }
    let descr = String(descrField[descrField.index(after: q1)..<q2])
    if let fo = field("fortran_order"), fo.hasPrefix("True") { throw DataError.at(path, "Fortran-order arrays are not supported; save with C order") }
    // the ")" after the "(" (a header with ")" first trapped on the range; found by fuzzing)
    guard let shapeField = field("shape"), let open = shapeField.firstIndex(of: "("),
          let close = shapeField[open...].firstIndex(of: ")") else {
        throw DataError.at(path, "no shape in .npy header")
    }
    let shape = try shapeField[shapeField.index(after: open)..<close].split(separator: ",").map { s -> Int in
        guard let v = Int(s.trimmingCharacters(in: .whitespaces)) else { throw DataError.at(path, "bad shape in .npy header") }
        return v
    }
    try Tensor.checkShape(shape)
    let n = shape.reduce(1, *), data = start + headerLen
    let little = descr.hasPrefix("<") || descr.hasPrefix("|")
    guard little || descr.hasPrefix("=") else { throw DataError.at(path, "big-endian arrays are not supported (\(descr))") }
    let kind = String(descr.dropFirst())
    let size: Int
    switch kind {
    case "f4", "i4", "u4": size = 4
    case "f8", "i8", "u8": size = 8
    case "u1", "i1", "b1": size = 1
    case "i2", "u2", "f2": size = 2
    default: throw DataError.at(path, "unsupported dtype \(descr)")
    }
    guard b.count >= data + n * size else {
        throw DataError.at(path, "truncated .npy data: expected \(n * size) bytes for shape \(shapeString(shape)), found \(b.count - data)")
    }
    guard kind != "f2" else { throw DataError.at(path, "float16 arrays are not supported") }
    return try decodeElements(b, at: data, count: n, size: size, shape: shape,
                          float: kind.hasPrefix("f"), signed: kind.hasPrefix("i"), bigEndian: false)
}

/// CIFAR-10 binary batches: records of 1 label byte + 3072 pixel bytes
/// (channel-major 3×32×32). Returns images N×3×32×32 in [0, 1] and 0-based labels.
public func readCIFARBatches(_ paths: [String]) throws -> (Tensor, Tensor) {
    var images = [Float](), labels = [Int64]()
    for path in paths {
        let b = try readFile(path)
        guard b.count % 3073 == 0, !b.isEmpty else {
            throw DataError.at(path, "not a CIFAR-10 binary batch (size \(b.count) is not a multiple of 3073)")
        }
        images.reserveCapacity(images.count + b.count / 3073 * 3072)
        for r in 0..<(b.count / 3073) {
            let base = r * 3073
            guard b[base] < 10 else { throw DataError.at(path, "label \(b[base]) in record \(r + 1) is not a CIFAR-10 class") }
            labels.append(Int64(b[base]))
            for k in 1...3072 { images.append(Float(b[base + k]) / 255) }
        }
    }
    return (try Tensor(images, shape: [labels.count, 3, 32, 32]), try Tensor(labels, shape: [labels.count]))
}

/// A numeric CSV file: an optional header row, then rows of numbers.
public func readCSV(_ path: String, header: Bool = true, delimiter: Character = ",") throws -> (Tensor, [String]) {
    let bytes = try readFile(path)
    guard let text = String(bytes: bytes, encoding: .utf8) else { throw DataError.at(path, "not UTF-8 text") }
    var lines = text.split(whereSeparator: \.isNewline).map(String.init).filter { !$0.trimmingCharacters(in: .whitespaces).isEmpty }
    var names = [String]()
    if header, !lines.isEmpty { names = lines.removeFirst().split(separator: delimiter, omittingEmptySubsequences: false).map { $0.trimmingCharacters(in: .whitespaces) } }
    var values = [Float]()
    var width: Int? = header ? names.count : nil
    for (i, line) in lines.enumerated() {
        let cells = line.split(separator: delimiter, omittingEmptySubsequences: false)
        if let w = width, w != cells.count {
            throw DataError.at(path, "row \(i + 1 + (header ? 1 : 0)) has \(cells.count) fields, expected \(w)")
        }
        width = cells.count
        for (j, c) in cells.enumerated() {
            guard let v = Float(c.trimmingCharacters(in: .whitespaces)) else {
                throw DataError.at(path, "row \(i + 1 + (header ? 1 : 0)), column \(j + 1): '\(c)' is not a number")
            }
            values.append(v)
        }
    }
    return (try Tensor(values, shape: [lines.count, width ?? names.count]), names)
}
