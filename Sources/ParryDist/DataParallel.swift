import Foundation
import ParryCore

// Data-parallel training over the ranks: every rank holds a replica of the
// model, computes the gradient of its slice of each global batch, and the
// ranks average the gradients so that every replica takes the same step —
// the step single-process training takes on the whole global batch.

public enum DataParallel {
    /// Default bucket size for the gradient allreduce (PyTorch DDP's 25 MB).
    public static let defaultBucketBytes = 25 << 20

    /// Copies rank `root`'s values into every rank's tensors, in place (the
    /// replicas start identical). The ranks' tensor lists must agree in
    /// shapes; a mismatch is the same error on every rank.
    public static func broadcast(_ tensors: [Tensor], root: Int = 0, communicator comm: Communicator) throws {
        try comm.checkRank(root, "root")
        guard comm.size > 1 else { return }
        try agreeOnShapes(tensors, comm)
        for t in tensors where t.numel > 0 {
            if t.isContiguous {
                try comm.bcastRaw(Communicator.bytes(t), bytes: t.numel * t.dtype.byteSize, root: root)
            } else {
                let c = try Communicator.ownedCopy(t)
                try comm.bcastRaw(Communicator.bytes(c), bytes: c.numel * c.dtype.byteSize, root: root)
                try GradMode.noGrad { _ = try t.copy_(c) }
            }
            t.storage.version &+= 1
        }
    }

    /// One FNV-1a hash of every tensor's shape, compared across ranks.
    static func agreeOnShapes(_ tensors: [Tensor], _ comm: Communicator) throws {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        func mix(_ v: Int) { h = (h ^ UInt64(bitPattern: Int64(v))) &* 0x100_0000_01b3 }
        mix(tensors.count)
        for t in tensors { mix(t.ndim); t.shape.forEach(mix); mix(t.dtype == .float32 ? 1 : 2) }
        let all = try comm.allgather(.bytes(withUnsafeBytes(of: h) { Array($0) }))
        let hashes = all.map { p -> [UInt8] in if case let .bytes(b) = p { return b } else { return [] } }
        guard hashes.allSatisfy({ $0 == hashes[0] }) else {
            throw DistError("the ranks' models differ: their parameter lists do not have the same shapes (build the same model on every rank)")
        }
    }

    /// Averages the parameters' gradients over the ranks, weighting rank r's
    /// (the gradient of its mean loss over `count` samples) by count / N, N
    /// the global batch: the result is the gradient of the global batch's
    /// mean loss. One flattened allreduce (in buckets of `bucketBytes`) also
    /// carries the counts, the losses and which parameters have a gradient.
    /// Returns N and the global batch's mean loss (Σ count·loss / N).
    @discardableResult
    public static func averageGradients(_ params: [Tensor], count: Int, loss: Double, communicator comm: Communicator,
                                        bucketBytes: Int = defaultBucketBytes) throws -> (count: Int, loss: Double) {
        guard count >= 0 else { throw DistError("count must be ≥ 0, got \(count)") }
        guard comm.size > 1 else { return (count, loss) }
        let sizes = params.map(\.numel)
        let total = sizes.reduce(0, +)
        // [n·grad of every parameter..., has-grad flags..., n, n·loss]
        let length = total + params.count + 2
        let buf = UnsafeMutableBufferPointer<Float>.allocate(capacity: length)
        defer { buf.deallocate() }
        buf.initialize(repeating: 0)
        let scale = Float(count)
        var off = 0
        for (k, p) in params.enumerated() {
            if count > 0, let g = p.grad {
                guard g.shape == p.shape, g.dtype == .float32 else { throw DistError("parameter \(k + 1)'s gradient does not match it") }
                let values = g.floats()
                for j in 0..<values.count { buf[off + j] = values[j] * scale }
                buf[total + k] = 1
            }
            off += sizes[k]
        }
        buf[total + params.count] = Float(count)
        buf[total + params.count + 1] = Float(Double(count) * loss)
        let step = max(1, bucketBytes / 4)
        var lo = 0
        while lo < length {
            let hi = min(length, lo + step)
            try comm.allreduce(UnsafeMutableBufferPointer(rebasing: buf[lo..<hi]), op: .sum)
            lo = hi
        }
        let n = Int(buf[total + params.count].rounded())
        guard n > 0 else { throw DistError("every rank's batch was empty") }
        let inv = 1 / Float(n)
        off = 0
        for (k, p) in params.enumerated() {
            if buf[total + k] > 0 {
                let g = try Tensor(shape: p.shape, dtype: .float32, zeroed: false)
                let dst = g.pointer(Float.self)
                for j in 0..<sizes[k] { dst[j] = buf[off + j] * inv }
                p.grad = g
            } else {
                p.grad = nil
            }
            off += sizes[k]
        }
        return (n, Double(buf[total + params.count + 1]) / Double(n))
    }

    /// Throws when the replicas' values differ (a debugging check: one
    /// 64-bit hash of every tensor's bytes per rank).
    public static func checkReplicas(_ tensors: [Tensor], communicator comm: Communicator, step: Int) throws {
        guard comm.size > 1 else { return }
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for t in tensors {
            let c = t.isContiguous ? t : try Communicator.ownedCopy(t)
            let raw = UnsafeRawBufferPointer(start: Communicator.bytes(c), count: c.numel * c.dtype.byteSize)
            for b in raw { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        }
        let all = try comm.allgather(.bytes(withUnsafeBytes(of: h) { Array($0) }))
        let hashes = all.map { p -> UInt64 in
            if case let .bytes(b) = p, b.count == 8 { return b.withUnsafeBytes { $0.loadUnaligned(as: UInt64.self) } }
            return 0
        }
        guard hashes.allSatisfy({ $0 == hashes[0] }) else {
            let list = hashes.enumerated().map { "rank \($0.offset): \(String($0.element, radix: 16))" }
            throw DistError("the model replicas differ after step \(step) (\(list.joined(separator: ", ")))")
        }
    }
}
