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

/// PARRY_MAX_MEMORY (bytes, with an optional K/M/G suffix, or a percentage of
/// physical memory such as "80%"): a tensor allocation that would take the
/// bytes held by tensors plus the buffer pool's cache past it is an error
/// naming the tensor's shape, instead of a visit from the kernel's OOM killer.
/// Before giving up the pool's cache is emptied and `onPressure` (the Lua
/// host's full garbage collection, on its own thread) runs.
public enum MemoryBudget {
    public static let limit: Int? = parse(ProcessInfo.processInfo.environment["PARRY_MAX_MEMORY"])

    /// Frees memory that is held but not used (the Lua host installs a collection).
    nonisolated(unsafe) public static var onPressure: (() -> Void)?

    public static func parse(_ s: String?) -> Int? {
        guard var s = s?.trimmingCharacters(in: .whitespaces), !s.isEmpty else { return nil }
        if s.hasSuffix("%"), let p = Double(s.dropLast()), p > 0, p <= 100 {
            return Int(Double(Tensor.allocationLimit) * p / 100)
        }
        var scale = 1
        switch s.last?.uppercased() {
        case "K": scale = 1 << 10
        case "M": scale = 1 << 20
        case "G": scale = 1 << 30
        default: break
        }
        if scale > 1 { s.removeLast() }
        guard let v = Double(s), v > 0 else { return nil }
        return Int(v * Double(scale))
    }

    static var inUse: Int { nativeBytes.load(ordering: .relaxed) + BufferPool.stats.cachedBytes }

    /// Throws when `bytes` more would pass the limit (after freeing what can be freed).
    @inline(__always)
    public static func reserve(_ bytes: Int, shape: [Int], dtype: DType) throws {
        guard let limit, inUse + bytes > limit else { return }
        try slowReserve(bytes, shape: shape, dtype: dtype, limit: limit)
    }

    @inline(never)
    static func slowReserve(_ bytes: Int, shape: [Int], dtype: DType, limit: Int) throws {
        BufferPool.release()
        if inUse + bytes <= limit { return }
        onPressure?()
        BufferPool.release()
        let used = inUse
        if used + bytes <= limit { return }
        func mb(_ b: Int) -> String { String(format: "%.1f MB", Double(b) / 1048576) }
        throw TensorError("cannot allocate a \(dtype.rawValue) tensor of shape \(shapeString(shape)) (\(mb(bytes))): "
            + "PARRY_MAX_MEMORY is \(mb(limit)) and \(mb(used)) are in use")
    }
}

/// The unit of a Storage's inline bytes: 16 bytes aligned to 8. An element
/// type aligned to 16 (SIMD4<Float>) made the Swift runtime allocate every
/// Storage with posix_memalign instead of malloc (~150 more instructions of
/// a 16-float add's ~3,600); glibc's malloc aligns to 16 anyway, and the
/// elements start 48 bytes into the object, so the bytes stay 16-aligned.
public struct InlineBytes16 { var low: UInt64, high: UInt64 }

/// What a `Storage` knows about its bytes (kept in its header).
public struct StorageHeader {
    public let raw: UnsafeMutableRawPointer
    public let byteCount: Int
    /// Where the bytes live: > 0 the pool size class they came from, 0 malloc, −1 inside the object.
    let home: Int
    /// Bumped by every in-place write, so autograd can tell when a tensor it
    /// saved for backward was modified afterwards.
    public var version: Int
}

/// A reference-counted buffer shared by a tensor and its views: 16-byte
/// aligned below 4 KB — where the bytes live inside the object itself (one
/// allocation instead of two: a 16-float result of `a + a` is an object, a
/// Tensor and a Lua userdata), 64-byte aligned from 4 KB up.
public final class Storage: ManagedBuffer<StorageHeader, InlineBytes16>, @unchecked Sendable {
    /// Buffers smaller than this are allocated with the object.
    static let inlineBytes = 4096

    // Read through the header's address: `header` is a class property, and
    // every access to it would pay a dynamic exclusivity check (~170
    // instructions, a third of the saving of the inline bytes).
    @inline(__always) private var fields: UnsafeMutablePointer<StorageHeader> { withUnsafeMutablePointerToHeader { $0 } }
    public var raw: UnsafeMutableRawPointer { fields.pointee.raw }
    public var byteCount: Int { fields.pointee.byteCount }
    public var version: Int {
        get { fields.pointee.version }
        set { fields.pointee.version = newValue }
    }

    /// Allocates `byteCount` bytes; zero-filled when `zeroed`.
    public static func make(byteCount: Int, zeroed: Bool = false) -> Storage {
        let n = max(byteCount, 1)
        let object: ManagedBuffer<StorageHeader, InlineBytes16>
        if n < inlineBytes {
            object = Storage.create(minimumCapacity: (n + 15) / 16) { buffer in
                StorageHeader(raw: buffer.withUnsafeMutablePointerToElements { UnsafeMutableRawPointer($0) },
                              byteCount: byteCount, home: -1, version: 0)
            }
        } else {
            let raw: UnsafeMutableRawPointer, home: Int
            if n >= BufferPool.minBytes && n <= BufferPool.maxBytes {
                (raw, home) = BufferPool.take(n)
            } else {
                raw = UnsafeMutableRawPointer.allocate(byteCount: n, alignment: 64)
                home = 0
            }
            object = Storage.create(minimumCapacity: 0) { _ in StorageHeader(raw: raw, byteCount: byteCount, home: home, version: 0) }
        }
        let storage = unsafeDowncast(object, to: Storage.self)
        if zeroed { storage.raw.initializeMemory(as: UInt8.self, repeating: 0, count: n) }
        nativeBytes.add(byteCount, ordering: .relaxed)
        return storage
    }

    deinit {
        let h = fields.pointee
        nativeBytes.subtract(h.byteCount, ordering: .relaxed)
        if h.home > 0 { BufferPool.give(h.raw, h.home) } else if h.home == 0 { h.raw.deallocate() }
    }
}

/// Recycles large tensor buffers (64 KB to 64 MB) by size class, like a
/// framework's caching allocator. Tensors held by Lua die only when the
/// collector runs, so a training loop frees hundreds of megabytes in bursts;
/// handed back to malloc, those chunks fragmented the heap around small live
/// objects and every step's buffers came from freshly grown heap — a page
/// fault per 4 KB (an MLP epoch: 115k faults, 1.7 GB resident). Cached here,
/// the next step's buffers are the last step's (that epoch: 0.8 s instead of
/// 0.8–1.1 s, 1.0 GB resident).
///
/// How much stays idle: every returned buffer is kept, and a miss (a size with
/// no idle buffer) that would take the pool's footprint — bytes handed out +
/// idle — past the most ever handed out at once plus 256 MB first gives back
/// idle buffers of the sizes used longest ago. So a training step that needs
/// 1.1 GB at its peak (ResNet-18 at batch 128) finds all of it cached at the
/// next step (with an idle cap of 256 MB: 200 MB of fresh pages a step), and
/// the process never holds more than its high-water mark plus 256 MB — the
/// bound the idle cap gave — when a phase with other sizes begins (evaluation
/// after training). PARRY_POOL_MB=N instead caps the idle bytes at N MB
/// (0 disables caching). `parry.memory_stats()` reports the pool,
/// `parry.empty_cache()` empties it and resets the high-water mark.
public enum BufferPool {
    static let minBytes = 64 << 10
    /// Larger buffers (a whole dataset, its decoding temporaries) are rarely
    /// allocated twice at one size; they go to malloc, which maps them directly.
    static let maxBytes = 64 << 20
    /// PARRY_POOL_MB: a fixed cap on idle bytes instead of the high-water rule.
    static let fixedCap: Int? = {
        if let s = ProcessInfo.processInfo.environment["PARRY_POOL_MB"], let mb = Int(s), mb >= 0 { return mb << 20 }
        return nil
    }()
    /// Footprint allowed above the high-water mark of handed-out bytes.
    static let slackBytes = 256 << 20

    private struct State {
        var free: [Int: [UInt]] = [:]      // size class → buffer addresses
        var lastUse: [Int: Int] = [:]      // size class → tick of its last take
        var cached = 0, hits = 0, misses = 0
        var out = 0, highWater = 0, tick = 0
    }
    private static let state = Locked(State())

    /// Sizes rounded up to a multiple of a sixteenth of the next power of two
    /// (at least 4 KB): less than 12.5% slack, 8–16 classes per octave.
    static func sizeClass(_ n: Int) -> Int {
        let pow2 = 1 << (Int.bitWidth - (max(n, 2) - 1).leadingZeroBitCount)
        let step = max(4096, pow2 / 16)
        return (n + step - 1) / step * step
    }

    static func take(_ n: Int) -> (UnsafeMutableRawPointer, Int) {
        let size = sizeClass(n)
        var evicted: [UInt] = []
        let reused: UInt? = state.withLock { st in
            st.tick &+= 1
            st.lastUse[size] = st.tick
            st.out += size
            if let p = st.free[size]?.popLast() {
                st.cached -= size
                st.hits += 1
                return p
            }
            st.misses += 1
            st.highWater = max(st.highWater, st.out)
            if fixedCap == nil {
                // The new buffer grows the footprint: past high water + slack, give
                // back idle buffers of the sizes used longest ago.
                while st.out + st.cached > st.highWater + slackBytes {
                    guard let victim = st.free.lazy.filter({ !$0.value.isEmpty }).map(\.key)
                            .min(by: { st.lastUse[$0, default: 0] < st.lastUse[$1, default: 0] }),
                          let a = st.free[victim]?.popLast() else { break }
                    st.cached -= victim
                    evicted.append(a)
                }
            }
            return nil
        }
        for a in evicted { UnsafeMutableRawPointer(bitPattern: a)?.deallocate() }
        if let reused, let p = UnsafeMutableRawPointer(bitPattern: reused) { return (p, size) }
        return (UnsafeMutableRawPointer.allocate(byteCount: size, alignment: 64), size)
    }

    static func give(_ p: UnsafeMutableRawPointer, _ size: Int) {
        let kept = state.withLock { st in
            st.out -= size
            if let cap = fixedCap, st.cached + size > cap { return false }
            st.free[size, default: []].append(UInt(bitPattern: p))
            st.cached += size
            return true
        }
        if !kept { p.deallocate() }
    }

    /// Runs `body` with a scratch buffer of `count` floats, from the pool when
    /// it is in the pooled size range (a kernel's per-call workspace).
    public static func withScratch<R>(floats count: Int, _ body: (UnsafeMutablePointer<Float>) throws -> R) rethrows -> R {
        let bytes = max(count, 1) * MemoryLayout<Float>.stride
        guard bytes >= minBytes && bytes <= maxBytes else {
            let p = UnsafeMutablePointer<Float>.allocate(capacity: max(count, 1))
            defer { p.deallocate() }
            return try body(p)
        }
        let (raw, size) = take(bytes)
        defer { give(raw, size) }
        return try body(raw.bindMemory(to: Float.self, capacity: max(count, 1)))
    }

    /// Runs `body` with `count` scratch buffers of `floats` floats each (per-chunk
    /// partial sums), from the pool when they are in its size range.
    public static func withScratch<R>(_ count: Int, floats: Int, _ body: ([UnsafeMutablePointer<Float>]) throws -> R) rethrows -> R {
        let bytes = max(floats, 1) * MemoryLayout<Float>.stride
        let pooled = bytes >= minBytes && bytes <= maxBytes
        var buffers: [(UnsafeMutableRawPointer, Int)] = []
        buffers.reserveCapacity(count)
        for _ in 0..<count {
            buffers.append(pooled ? take(bytes) : (UnsafeMutableRawPointer.allocate(byteCount: bytes, alignment: 64), 0))
        }
        defer { for (p, size) in buffers { if size > 0 { give(p, size) } else { p.deallocate() } } }
        return try body(buffers.map { $0.0.bindMemory(to: Float.self, capacity: max(floats, 1)) })
    }

    /// Bytes cached for reuse, and how many large allocations were served
    /// from the cache (hits) or from malloc (misses).
    public static var stats: (cachedBytes: Int, hits: Int, misses: Int) {
        state.withLock { ($0.cached, $0.hits, $0.misses) }
    }

    /// Returns every cached buffer to malloc.
    public static func release() {
        let all = state.withLock { st -> [UInt] in
            defer { st.free = [:]; st.cached = 0; st.highWater = st.out }
            return st.free.values.flatMap { $0 }
        }
        for a in all { UnsafeMutableRawPointer(bitPattern: a)?.deallocate() }
    }
}
