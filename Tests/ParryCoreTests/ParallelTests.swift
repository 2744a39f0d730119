import Foundation
import Synchronization
import XCTest
@testable import ParryCore

final class ParallelTests: XCTestCase {
    override func tearDown() { Parallel.setThreads(ProcessInfo.processInfo.activeProcessorCount) }

    func testEveryChunkRunsExactlyOnce() {
        Parallel.setThreads(4)
        for count in [0, 1, 2, 3, 17, 1000] {
            let hits = Locked<[Int]>(Array(repeating: 0, count: count))
            Parallel.forEach(count) { i in hits.withLock { $0[i] += 1 } }
            XCTAssertEqual(hits.withLock { $0 }, Array(repeating: 1, count: count), "count \(count)")
        }
    }

    func testNestedRegionsRunInOrderOnTheCallingThread() {
        Parallel.setThreads(2)
        let inner = Locked<[[Int]]>(Array(repeating: [], count: 4))
        Parallel.forEach(4) { i in
            XCTAssertTrue(Parallel.inRegion)
            XCTAssertEqual(Parallel.width(100), 1)
            Parallel.forEach(5) { j in inner.withLock { $0[i].append(j) } }   // serial: in order
        }
        XCTAssertFalse(Parallel.inRegion)
        XCTAssertEqual(inner.withLock { $0 }, Array(repeating: [0, 1, 2, 3, 4], count: 4))
    }

    /// Regions started from two threads at once: one drives the pool, the
    /// other runs serially — every chunk of every region still runs once.
    func testRegionsFromTwoThreadsAtOnce() {
        Parallel.setThreads(2)
        let total = Atomic<Int>(0)
        let group = DispatchGroup()
        for _ in 0..<2 {
            group.enter()
            Thread {
                for _ in 0..<300 { Parallel.forEach(7) { _ in total.add(1, ordering: .relaxed) } }
                group.leave()
            }.start()
        }
        group.wait()
        XCTAssertEqual(total.load(ordering: .relaxed), 2 * 300 * 7)
        XCTAssertFalse(Parallel.inRegion)
    }

    func testThrowingBodiesRethrowTheLowestFailingChunk() {
        struct Failure: Error { let index: Int }
        Parallel.setThreads(2)
        let ran = Atomic<Int>(0)
        XCTAssertThrowsError(try Parallel.forEach(10) { i in
            ran.add(1, ordering: .relaxed)
            if i == 3 || i == 7 { throw Failure(index: i) }
        }) { XCTAssertEqual(($0 as? Failure)?.index, 3) }
        XCTAssertEqual(ran.load(ordering: .relaxed), 10)   // every chunk still ran
    }

    func testRangesCoverTheSpanWithoutOverlap() {
        Parallel.setThreads(3)
        for (n, grain) in [(0, 4), (7, 4), (8, 4), (1000, 10), (1 << 20, 1 << 16)] {
            let seen = Locked<[Range<Int>]>([])
            Parallel.forRanges(n, grain: grain) { r in seen.withLock { $0.append(r) } }
            let ranges = seen.withLock { $0 }.sorted { $0.lowerBound < $1.lowerBound }
            XCTAssertEqual(ranges.map(\.count).reduce(0, +), n)
            for (a, b) in zip(ranges, ranges.dropFirst()) { XCTAssertEqual(a.upperBound, b.lowerBound) }
            XCTAssertTrue(ranges.allSatisfy { $0.count >= min(grain, n) })
            XCTAssertLessThanOrEqual(ranges.count, 3)
        }
    }

    /// Large elementwise ops are split over threads as flat slices; the result
    /// must equal the one-thread result element for element — including in
    /// place, broadcasting a one-element operand, and int64.
    func testSplitElementwiseMatchesOneThread() throws {
        let g = Generator(seed: 5)
        let n = 300_001                                     // several slices, an odd tail
        let a = try Tensor.randn([n], generator: g), b = try Tensor.randn([n], generator: g)
        let s = try Tensor.randn([1], generator: g)
        func run() throws -> [[Float]] {
            let c = try a.cloneRaw()
            try c.binary_(.mul, b)
            return [try a.binary(.add, b).floats(), try a.binary(.div, s).floats(), try a.unary(.exp).floats(),
                    try a.binary(.maximum, b).floats(), c.floats(), try a.unary(.relu).floats()]
        }
        Parallel.setThreads(1); let one = try run()
        Parallel.setThreads(2); let two = try run()
        XCTAssertEqual(one, two)
        // Spot-check against the definition.
        let av = a.floats(), bv = b.floats()
        for i in [0, 1, 65_536, 150_000, n - 1] { XCTAssertEqual(two[0][i], av[i] + bv[i]); XCTAssertEqual(two[4][i], av[i] * bv[i]) }
    }

    /// Sums split into fixed blocks / rows / outer slices give the same result
    /// on 1 and 2 threads, and agree with a Double reference.
    func testSplitSumsMatchOneThreadAndTheDefinition() throws {
        let g = Generator(seed: 11)
        let big = try Tensor.randn([300_001], generator: g)
        let m = try Tensor.randn([600, 300], generator: g)
        func run() throws -> [[Float]] {
            [big.sumRaw().floats(), m.sumRaw(dim: 0).floats(), m.sumRaw(dim: 1).floats(), m.sumRaw().floats()]
        }
        Parallel.setThreads(1); let one = try run()
        Parallel.setThreads(2); let two = try run()
        XCTAssertEqual(one, two)
        let bv = big.floats(), mv = m.floats()
        XCTAssertEqual(Double(two[0][0]), bv.reduce(0.0) { $0 + Double($1) }, accuracy: 1e-3)
        for j in [0, 17, 299] {
            let ref = (0..<600).reduce(0.0) { $0 + Double(mv[$1 * 300 + j]) }
            XCTAssertEqual(Double(two[1][j]), ref, accuracy: 1e-4)
        }
        for i in [0, 123, 599] {
            let ref = (0..<300).reduce(0.0) { $0 + Double(mv[i * 300 + $1]) }
            XCTAssertEqual(Double(two[2][i]), ref, accuracy: 1e-4)
        }
    }

    /// Matrix products split over threads equal BLAS's single call.
    func testSplitGemmMatchesOneThread() throws {
        let g = Generator(seed: 9)
        for (m, k, n) in [(512, 300, 700), (700, 300, 512), (64, 1024, 1024)] {
            let a = try Tensor.randn([m, k], generator: g), b = try Tensor.randn([k, n], generator: g)
            let bt = try Tensor.randn([n, k], generator: g).transposeRaw(0, 1)
            Parallel.setThreads(1)
            let one = [try a.matmulRaw(b).floats(), try a.matmulRaw(bt).floats(), try a.transposeRaw(0, 1).contiguous().transposeRaw(0, 1).matmulRaw(b).floats()]
            Parallel.setThreads(2)
            let two = [try a.matmulRaw(b).floats(), try a.matmulRaw(bt).floats(), try a.transposeRaw(0, 1).contiguous().transposeRaw(0, 1).matmulRaw(b).floats()]
            XCTAssertEqual(one, two, "\(m)×\(k)×\(n)")
            // One element against the definition.
            let av = a.floats(), bv = b.floats()
            var ref: Double = 0
            for l in 0..<k { ref += Double(av[3 * k + l]) * Double(bv[l * n + 5]) }
            XCTAssertEqual(Double(two[0][3 * n + 5]), ref, accuracy: 1e-3)
        }
    }
}

final class BufferPoolTests: XCTestCase {
    func testSizeClassesBoundTheSlack() {
        for n in [65_536, 65_537, 100_000, 401_408, 1 << 20, (1 << 20) + 1, 3_000_000, 64 << 20] {
            let c = BufferPool.sizeClass(n)
            XCTAssertGreaterThanOrEqual(c, n)
            XCTAssertLessThanOrEqual(Double(c), Double(n) * 1.125 + 4096, "class \(c) for \(n)")
            XCTAssertEqual(c % 4096, 0)
        }
        XCTAssertEqual(BufferPool.sizeClass(401_408), 425_984)   // 416 KB: multiples of 32 KB below 512 KB
    }

    /// A freed large buffer is handed out again for a request of the same
    /// class (dirty: a zeroed request is cleared), and the pool's counters move.
    func testFreedBuffersAreReused() {
        BufferPool.release()
        let before = BufferPool.stats
        var first: UnsafeMutableRawPointer?
        do {
            let s = Storage.make(byteCount: 300_000)
            s.raw.storeBytes(of: 7, as: Int.self)
            first = s.raw
        }
        XCTAssertEqual(BufferPool.stats.cachedBytes, BufferPool.sizeClass(300_000))
        let again = Storage.make(byteCount: 310_000, zeroed: true)        // same 320 KB class
        XCTAssertEqual(again.raw, first)
        XCTAssertEqual(again.raw.load(as: Int.self), 0)
        XCTAssertEqual(BufferPool.stats.hits, before.hits + 1)
        XCTAssertEqual(BufferPool.stats.cachedBytes, 0)
        // Small and huge buffers bypass the pool.
        do { _ = Storage.make(byteCount: 1000); _ = Storage.make(byteCount: (64 << 20) + 1) }
        XCTAssertEqual(BufferPool.stats.cachedBytes, 0)
        BufferPool.release()
    }

    /// Below 4 KB the bytes live inside the Storage object (one allocation),
    /// 16-byte aligned; from 4 KB up they are a buffer of their own, 64-byte
    /// aligned. Either way live bytes are accounted and `zeroed` clears them.
    func testSmallBuffersLiveInsideTheirStorage() {
        let live = nativeBytes.load(ordering: .relaxed)
        do {
            let small = Storage.make(byteCount: 4095, zeroed: true), large = Storage.make(byteCount: 4096, zeroed: true)
            XCTAssertEqual(nativeBytes.load(ordering: .relaxed), live + 4095 + 4096)
            let object = Int(bitPattern: Unmanaged.passUnretained(small).toOpaque())
            let inside = Int(bitPattern: small.raw) - object
            XCTAssertTrue(inside > 0 && inside <= 64, "inline bytes start \(inside) bytes into the object")
            XCTAssertEqual(Int(bitPattern: small.raw) % 16, 0)
            // The element type is aligned to 8 (malloc, not posix_memalign); the bytes must still be 16-aligned.
            for bytes in [1, 4, 17, 64, 100, 255, 1000, 2049] {
                let many = (0..<8).map { _ in Storage.make(byteCount: bytes) }
                for s in many { XCTAssertEqual(Int(bitPattern: s.raw) % 16, 0, "\(bytes) bytes at \(s.raw)") }
            }
            XCTAssertEqual(Int(bitPattern: large.raw) % 64, 0)
            let far = Int(bitPattern: large.raw) - Int(bitPattern: Unmanaged.passUnretained(large).toOpaque())
            XCTAssertFalse(far > 0 && far <= 64, "a 4 KB buffer is separate")
            XCTAssertEqual(UnsafeRawBufferPointer(start: small.raw, count: 4095).allSatisfy { $0 == 0 }, true)
            XCTAssertEqual(small.byteCount, 4095)
            small.version &+= 3
            XCTAssertEqual(small.version, 3)
            // A tensor on inline storage works as any other.
            let t = Tensor(storage: small, shape: [1023], strides: [1], offset: 0, dtype: .float32)
            t.pointer(Float.self).update(repeating: 2, count: 1023)
            XCTAssertEqual(try t.sum().item().double, 2046)
        }
        XCTAssertEqual(nativeBytes.load(ordering: .relaxed), live)
    }

    /// The pool keeps what a step handed back (more than the old 256 MB idle
    /// cap: the next step's takes all hit), and when other sizes are asked for
    /// (a new phase), misses evict the idle buffers of the sizes used longest
    /// ago, so handed-out + idle never passes the high-water mark + 256 MB by
    /// more than one buffer.
    func testPoolKeepsAStepsBuffersAndBoundsItsFootprint() throws {
        try XCTSkipIf(BufferPool.fixedCap != nil, "PARRY_POOL_MB is set")
        BufferPool.release()
        defer { BufferPool.release() }
        let mb = 1 << 20, first = 8 * mb, count = (BufferPool.slackBytes / first) + 8     // 40 × 8 MB = 320 MB
        do {
            var held: [Storage] = []
            for _ in 0..<count { held.append(Storage.make(byteCount: first)) }
        }
        XCTAssertEqual(BufferPool.stats.cachedBytes, count * BufferPool.sizeClass(first))   // all kept, past 256 MB
        let misses = BufferPool.stats.misses
        do {
            var held: [Storage] = []
            for _ in 0..<count { held.append(Storage.make(byteCount: first)) }
            XCTAssertEqual(BufferPool.stats.misses, misses)          // the second "step" only hits
            XCTAssertEqual(BufferPool.stats.cachedBytes, 0)
        }
        // A new phase: 12 MB buffers while 320 MB of 8 MB ones are idle.
        let second = 12 * mb, highWater = count * BufferPool.sizeClass(first)
        var held: [Storage] = []
        for i in 1...count {
            held.append(Storage.make(byteCount: second))
            let out = i * BufferPool.sizeClass(second)
            XCTAssertLessThanOrEqual(out + BufferPool.stats.cachedBytes,
                                     max(highWater, out) + BufferPool.slackBytes + BufferPool.sizeClass(second), "after \(i)")
        }
        // 480 MB out is the new high water: of the 320 MB idle, at most the 256 MB slack is left.
        XCTAssertLessThanOrEqual(BufferPool.stats.cachedBytes, BufferPool.slackBytes, "idle 8 MB buffers went back to malloc")
        held.removeAll()
        BufferPool.release()
        XCTAssertEqual(BufferPool.stats.cachedBytes, 0)
    }
}
