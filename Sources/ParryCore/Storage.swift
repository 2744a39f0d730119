import Foundation
import Synchronization

// glibc's mallopt (malloc.h is not part of the Glibc module).
@_silgen_name("mallopt") private func mallopt(_ param: Int32, _ value: Int32) -> Int32

/// Keeps freed tensor buffers in the malloc heap instead of returning them to
/// the kernel, so a training loop's steady state reuses already-mapped pages
/// (fresh mmap'd buffers cost a page fault per 4 KB on first touch). Called
/// once by the host before any tensor is made.
public func configureAllocator() {
    _ = mallopt(-3, 32 << 20)    // M_MMAP_THRESHOLD (glibc malloc.h); 32 MB is its maximum
    _ = mallopt(-1, 1 << 30)     // M_TRIM_THRESHOLD
}

/// Bytes held by all live tensor storages in the process. The Lua host reads
/// it to drive the garbage collector, which cannot see native buffers.
public let nativeBytes = Atomic<Int>(0)

/// A reference-counted buffer (64-byte aligned from 4 KB up) shared by a tensor and its views.
public final class Storage: @unchecked Sendable {
    public let raw: UnsafeMutableRawPointer
    public let byteCount: Int
    /// Bumped by every in-place write, so autograd can tell when a tensor it
    /// saved for backward was modified afterwards.
    public var version = 0

    /// Allocates `byteCount` bytes; zero-filled when `zeroed`.
    public init(byteCount: Int, zeroed: Bool = false) {
        let n = max(byteCount, 1)
        // Large buffers are cache-line aligned for the kernels; small ones take
        // malloc's fast path (an aligned request goes through memalign, which
        // splits and frees chunks on every call).
        raw = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: n >= 4096 ? 64 : 16)
        if zeroed { raw.initializeMemory(as: UInt8.self, repeating: 0, count: n) }
        self.byteCount = byteCount
        nativeBytes.add(byteCount, ordering: .relaxed)
    }

    deinit {
        nativeBytes.subtract(byteCount, ordering: .relaxed)
        raw.deallocate()
    }
}
