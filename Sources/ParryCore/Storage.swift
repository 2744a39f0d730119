import Synchronization

/// Bytes held by all live tensor storages in the process. The Lua host reads
/// it to drive the garbage collector, which cannot see native buffers.
public let nativeBytes = Atomic<Int>(0)

/// A reference-counted, 64-byte aligned buffer shared by a tensor and its views.
public final class Storage: @unchecked Sendable {
    public let raw: UnsafeMutableRawPointer
    public let byteCount: Int

    /// Allocates `byteCount` bytes; zero-filled when `zeroed`.
    public init(byteCount: Int, zeroed: Bool = false) {
        let n = max(byteCount, 1)
        raw = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 64)
        if zeroed { raw.initializeMemory(as: UInt8.self, repeating: 0, count: n) }
        self.byteCount = byteCount
        nativeBytes.add(byteCount, ordering: .relaxed)
    }

    deinit {
        nativeBytes.subtract(byteCount, ordering: .relaxed)
        raw.deallocate()
    }
}
