import Foundation
import ParryCore

/// Checkpoints in the safetensors format: an 8-byte little-endian header
/// length, a JSON header mapping names to {dtype, shape, data_offsets} (plus
/// "__metadata__": string → string), then raw little-endian data. Files move
/// between parry, PyTorch and NumPy (`safetensors` Python package).
public enum Safetensors {
    static let sizes: [String: Int] = ["F32": 4, "F64": 8, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1]

    /// Writes `entries` (float32 as F32, int64 as I64) atomically
    /// (`AtomicFile`: a kill mid-write leaves the old file loadable).
    public static func write(_ entries: [(name: String, tensor: Tensor)], to path: String, metadata: [String: String] = [:]) throws {
        var header = [String: Any]()
        if !metadata.isEmpty { header["__metadata__"] = metadata }
        var offset = 0
        var blobs = [Tensor]()
        var seen = Set<String>()
        for (name, t) in entries {
            guard !name.isEmpty, name != "__metadata__", seen.insert(name).inserted else {
                throw TensorError("invalid or duplicate tensor name '\(name)'")
            }
            let c = try t.contiguous().detach()
            let n = c.numel * c.dtype.byteSize
            header[name] = ["dtype": c.dtype == .float32 ? "F32" : "I64", "shape": c.shape, "data_offsets": [offset, offset + n]]
            offset += n
            blobs.append(c)
        }
        var json = try JSONSerialization.data(withJSONObject: header, options: [.sortedKeys])
        while json.count % 8 != 0 { json.append(0x20) }
        // Streamed from the tensors' storage (no copy of the whole file in memory).
        do {
            try AtomicFile.write(to: path) { w in
                var length = UInt64(json.count).littleEndian
                try withUnsafeBytes(of: &length) { try w.write($0) }
                try w.write(json)
                for c in blobs {   // x86-64 and arm64 are little-endian, as the format
                    try w.write(UnsafeRawBufferPointer(start: c.storage.raw + c.offset * c.dtype.byteSize, count: c.numel * c.dtype.byteSize))
                }
            }
        } catch let e as AtomicFile.WriteError {
            throw TensorError(e.description)
        }
    }

    /// Reads every tensor (F32/F64 → float32; I64/I32/I16/I8/U8/BOOL → int64) and the metadata.
    public static func read(_ path: String) throws -> (entries: [(name: String, tensor: Tensor)], metadata: [String: String]) {
        func bad(_ why: String) -> TensorError { TensorError("\(path): \(why)") }
        guard FileManager.default.fileExists(atPath: path) else { throw bad("no such file") }
        guard let b = readWholeFile(path) else { throw bad("cannot read the file") }
        guard b.count >= 8 else { throw bad("too short for a safetensors file") }
        var n: UInt64 = 0
        for k in 0..<8 { n |= UInt64(b[k]) << (8 * UInt64(k)) }
        guard n <= UInt64(b.count - 8), n < 100_000_000 else { throw bad("corrupt header length \(n)") }
        let start = 8 + Int(n)
        guard let obj = try? JSONSerialization.jsonObject(with: Data(b[8..<start])), let header = obj as? [String: Any] else {
            throw bad("corrupt header (not a JSON object)")
        }
        var metadata = [String: String]()
        if let m = header["__metadata__"] {
            guard let md = m as? [String: String] else { throw bad("__metadata__ must map strings to strings") }
            metadata = md
        }
        var entries = [(name: String, tensor: Tensor)]()
        for name in header.keys.sorted() where name != "__metadata__" {
            guard let info = header[name] as? [String: Any], let dtype = info["dtype"] as? String,
                  let shape = info["shape"] as? [Int], let offsets = info["data_offsets"] as? [Int], offsets.count == 2 else {
                throw bad("entry '\(name)' needs dtype, shape and data_offsets")
            }
            guard let size = sizes[dtype] else { throw bad("entry '\(name)' has unsupported dtype \(dtype)") }
            try Tensor.checkShape(shape)
            let count = shape.reduce(1, *)
            let (lo, hi) = (offsets[0], offsets[1])
            guard lo >= 0, hi >= lo, hi - lo == count * size, start + hi <= b.count else {
                throw bad("entry '\(name)' has data_offsets [\(lo), \(hi)] that do not match its shape \(shapeString(shape)) or the file size")
            }
            let t = try decodeElements(b, at: start + lo, count: count, size: size, shape: shape,
                                   float: dtype.hasPrefix("F"), signed: dtype.hasPrefix("I"), bigEndian: false)
            entries.append((name, t))
        }
        return (entries, metadata)
    }
}
