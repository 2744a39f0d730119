import CBLAS
import Foundation
import Synchronization

/// parry's own threading: one knob (`Parallel.threads`, set by
/// `parry.set_num_threads` / `PARRY_NUM_THREADS`, default = cores) for the
/// convolution, batch-norm and elementwise loops and for splitting large GEMMs.
///
/// OpenBLAS itself runs single-threaded. Its threaded GEMM wakes its workers
/// for every call and lets them spin in `sched_yield` between calls; with the
/// many mid-sized GEMMs of a training step (one per image and layer in a
/// convolution) that spinning took a third of the CPU and the hand-offs most of
/// the rest. Splitting work ourselves, over chunks that do not depend on the
/// thread count, also keeps results the same for any number of threads.
///
/// Regions do not nest: a `forEach` started inside another one (a client's
/// training inside a federated round, a GEMM inside a convolution chunk) — or
/// from another thread while one runs — runs its chunks in order on the
/// calling thread.
public enum Parallel {
    private static let configured = Atomic<Int>(defaultThreads)
    private static let depth = Atomic<Int>(0)

    private static var defaultThreads: Int {
        if let s = ProcessInfo.processInfo.environment["PARRY_NUM_THREADS"], let n = Int(s), n >= 1, n <= 1024 { return n }
        return max(1, ProcessInfo.processInfo.activeProcessorCount)
    }

    /// OpenBLAS single-threaded, once per process (before the first GEMM).
    private static let blasConfigured: Void = { openblas_set_num_threads(1) }()

    /// Makes sure OpenBLAS is in single-threaded mode; cheap after the first call.
    @inline(__always) public static func configure() { _ = blasConfigured }

    /// The number of threads parallel regions use.
    public static var threads: Int { configured.load(ordering: .relaxed) }

    /// Sets the number of threads (clamped to at least 1).
    public static func setThreads(_ n: Int) { configure(); configured.store(max(1, n), ordering: .relaxed) }

    /// True on any thread while a parallel region runs.
    public static var inRegion: Bool { depth.load(ordering: .relaxed) > 0 }

    /// How many threads a region of `count` chunks would use now.
    public static func width(_ count: Int) -> Int { inRegion ? 1 : min(threads, count) }

    /// Runs body(i) for i in 0..<count, spread over the threads (chunks taken
    /// in order from a shared counter). Serial when nested, with one thread or
    /// one chunk.
    public static func forEach(_ count: Int, _ body: (Int) -> Void) {
        configure()
        let w = min(threads, count)
        // Entering is one atomic step, so two threads that start regions at
        // the same moment cannot both drive the pool: the loser runs serially.
        guard w > 1, depth.compareExchange(expected: 0, desired: 1, ordering: .sequentiallyConsistent).exchanged else {
            for i in 0..<count { body(i) }
            return
        }
        defer { depth.store(0, ordering: .sequentiallyConsistent) }
        WorkerPool.shared.run(count, helpers: w - 1, body)
    }

    /// `forEach` for throwing bodies: every chunk runs; the error of the
    /// lowest-numbered failing chunk is rethrown.
    public static func forEach(_ count: Int, _ body: (Int) throws -> Void) throws {
        let errors = Locked<[Int: Error]>([:])
        forEach(count) { i in
            do { try body(i) } catch { errors.withLock { $0[i] = error } }
        }
        if let first = errors.withLock({ $0.min { $0.key < $1.key }?.value }) { throw first }
    }

    /// Splits 0..<n into contiguous ranges of at least `grain` elements (at
    /// most one per thread) and runs them in parallel; one range when n < 2·grain.
    public static func forRanges(_ n: Int, grain: Int, _ body: (Range<Int>) -> Void) {
        let parts = min(width(n / max(grain, 1)), n)
        if parts <= 1 { if n > 0 { body(0..<n) }; return }
        forEach(parts) { p in body(n * p / parts ..< n * (p + 1) / parts) }
    }
}

/// The threads behind `Parallel`: helpers that, after a job, spin for a few
/// tens of microseconds (the gap between two ops of a training step) and then
/// sleep on a condition variable, so an idle parry uses no CPU. The calling
/// thread takes chunks too. Only one job runs at a time (`Parallel` does not
/// nest), so the job's fields need no lock of their own.
private final class WorkerPool: @unchecked Sendable {
    static let shared = WorkerPool()

    private var helpers: [Thread] = []
    /// Publishes a job: the job's number (high bits) and how many helpers take
    /// part in it (the low 16 bits), in one word, so a helper that is not in a
    /// job never reads a count the next job is writing.
    private let generation = Atomic<Int>(0)
    private let pending = Atomic<Int>(0)        // helpers still inside the job
    private let next = Atomic<Int>(0)           // next chunk to take
    private let sleepers = Atomic<Int>(0)
    private var job: ((Int) -> Void)?
    private var count = 0
    private let lock = NSCondition()

    /// Spins before a helper sleeps: about 500 µs, longer than the gaps
    /// between a training step's parallel ops (an MLP epoch: 0.93× the time
    /// of a 50 µs spin, whose helpers slept and woke between GEMMs) — or about
    /// 50 µs when other ranks of an MPI job share this node's cores, where a
    /// spinning helper takes the CPU another rank needs (2-rank FedAvg on 2
    /// cores: 1.09× the time with the long spin).
    private static let spinLimit: Int = {
        let env = ProcessInfo.processInfo.environment
        let local = ["OMPI_COMM_WORLD_LOCAL_SIZE", "MPI_LOCALNRANKS", "PMI_LOCAL_SIZE"].lazy.compactMap { env[$0].flatMap(Int.init) }.first ?? 1
        return local > 1 ? 20_000 : 200_000
    }()

    func run(_ count: Int, helpers wanted: Int, _ body: (Int) -> Void) {
        while helpers.count < wanted { spawn(helpers.count) }
        withoutActuallyEscaping(body) { body in
            job = body
            self.count = count
            next.store(0, ordering: .relaxed)
            pending.store(wanted, ordering: .relaxed)
            let number = (generation.load(ordering: .relaxed) >> 16) + 1
            generation.store(number << 16 | wanted, ordering: .sequentiallyConsistent)
            if sleepers.load(ordering: .sequentiallyConsistent) > 0 { lock.lock(); lock.broadcast(); lock.unlock() }
            work(body)
            var spins = 0
            while pending.load(ordering: .acquiring) > 0 {
                spins += 1
                if spins > 1000 { sched_yield() }
            }
            job = nil
        }
    }

    private func work(_ body: (Int) -> Void) {
        while true {
            let i = next.add(1, ordering: .relaxed).oldValue
            if i >= count { return }
            body(i)
        }
    }

    private func spawn(_ index: Int) {
        // The generation the helper starts from is read now, before the job
        // that needs it is published: reading it in the thread could miss that job.
        let seen = generation.load(ordering: .acquiring)
        let t = Thread { [unowned self] in self.loop(index, seen: seen) }
        t.stackSize = 8 << 20
        t.start()
        helpers.append(t)
    }

    private func loop(_ index: Int, seen start: Int) {
        var seen = start
        while true {
            var spins = 0
            while generation.load(ordering: .acquiring) == seen {
                spins += 1
                if spins < Self.spinLimit { continue }
                lock.lock()
                sleepers.add(1, ordering: .sequentiallyConsistent)
                while generation.load(ordering: .sequentiallyConsistent) == seen { lock.wait() }
                sleepers.subtract(1, ordering: .sequentiallyConsistent)
                lock.unlock()
            }
            seen = generation.load(ordering: .acquiring)
            guard index < seen & 0xFFFF else { continue }
            participate()
            pending.subtract(1, ordering: .releasing)
        }
    }

    /// Takes chunks of the current job. A function of its own so the helper's
    /// reference to the job is released before it reports done (the caller's
    /// `withoutActuallyEscaping` checks that nothing still holds the body).
    @inline(never) private func participate() {
        if let job { work(job) }
    }
}

/// Ctrl-C inside native work: long-running algorithms call `check()` between
/// their steps (attack iterations, training batches, federated rounds, RL
/// updates); the host installs `probe` (a read of its SIGINT flag). The work
/// stops with `Interrupted`, leaving tensors and modules valid: a step either
/// finished or did not start.
public enum Interrupt {
    nonisolated(unsafe) public static var probe: (() -> Bool)?

    @inline(__always)
    public static func check() throws {
        if let probe, probe() { throw Interrupted() }
    }
}

/// Thrown by `Interrupt.check()`; bindings report it as the Lua error "interrupted".
public struct Interrupted: Error, CustomStringConvertible {
    public init() {}
    public var description: String { "interrupted" }
}

/// A value behind a lock: `Synchronization.Mutex`'s interface on a pthread
/// mutex (NSLock). ThreadSanitizer sees pthread locking, so races it reports
/// around these are real; Mutex's Linux futex path lives in the uninstrumented
/// Swift runtime, where TSan sees neither side of the hand-off.
public final class Locked<Value>: @unchecked Sendable {
    private var value: Value
    private let lock = NSLock()
    public init(_ value: Value) { self.value = value }
    public func withLock<R>(_ body: (inout Value) throws -> R) rethrows -> R {
        lock.lock(); defer { lock.unlock() }
        return try body(&value)
    }
}
