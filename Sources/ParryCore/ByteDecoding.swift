// Decoding numbers from file bytes, shared by the data readers and the
// checkpoint reader. Callers check bounds before decoding.

/// The unsigned integer of `size` bytes at `offset` (little- or big-endian).
@inline(__always)
public func decodeUnsigned(_ b: [UInt8], at offset: Int, size: Int, bigEndian: Bool) -> UInt64 {
    var v: UInt64 = 0
    if bigEndian {
        for k in 0..<size { v = v << 8 | UInt64(b[offset + k]) }
    } else {
        for k in stride(from: size - 1, through: 0, by: -1) { v = v << 8 | UInt64(b[offset + k]) }
    }
    return v
}

/// Reads `count` elements of `size` bytes into a new tensor: floats (4 or 8
/// bytes) become float32, integers int64 (sign-extended when `signed`).
public func decodeElements(_ b: [UInt8], at offset: Int, count: Int, size: Int, shape: [Int],
                           float: Bool, signed: Bool, bigEndian: Bool) throws -> Tensor {
    if float {
        let t = try Tensor(shape: shape, dtype: .float32, zeroed: false)
        let p = t.pointer(Float.self)
        for i in 0..<count {
            let v = decodeUnsigned(b, at: offset + i * size, size: size, bigEndian: bigEndian)
            p[i] = size == 4 ? Float(bitPattern: UInt32(truncatingIfNeeded: v)) : Float(Double(bitPattern: v))
        }
        return t
    }
    let t = try Tensor(shape: shape, dtype: .int64, zeroed: false)
    let p = t.pointer(Int64.self)
    if size == 1 && !signed {   // bytes (images, labels): the common case, kept fast
        for i in 0..<count { p[i] = Int64(b[offset + i]) }
        return t
    }
    let shift = UInt64(64 - size * 8)
    for i in 0..<count {
        let v = decodeUnsigned(b, at: offset + i * size, size: size, bigEndian: bigEndian)
        p[i] = signed && shift > 0 ? Int64(bitPattern: v << shift) >> Int64(shift) : Int64(bitPattern: v)
    }
    return t
}
