import XCTest
import ParryCore
import ParryNN
import ParryDist
@testable import ParryFed

final class AggregatorTests: XCTestCase {
    // Five 3-dim updates; the last is an outlier.
    let u: [[Float]] = [[1, 0, 2], [2, 1, 2], [3, 2, 2], [4, 3, 2], [100, -50, 2]]

    func testFedAvgIsTheSampleWeightedMean() throws {
        // weights 1,1,1,1,0 -> mean of the first four = (2.5, 1.5, 2)
        XCTAssertEqual(try Aggregation.weightedMean(u, weights: [1, 1, 1, 1, 0]), [2.5, 1.5, 2])
        // weights 3:1 on the first two -> (3·1 + 2)/4 = 1.25, (0 + 1)/4 = 0.25
        XCTAssertEqual(try Aggregation.weightedMean(Array(u[0..<2]), weights: [3, 1]), [1.25, 0.25, 2])
    }

    func testMedianIgnoresTheOutlier() throws {
        XCTAssertEqual(try Aggregation.median(u), [3, 1, 2])
        // even count: mean of the two middle values
        XCTAssertEqual(try Aggregation.median(Array(u[0..<4])), [2.5, 1.5, 2])
    }

    func testTrimmedMeanDropsBetaFromEachEnd() throws {
        // β = 0.2, n = 5: drop 1 per end -> mean of sorted[1...3]
        XCTAssertEqual(try Aggregation.trimmedMean(u, beta: 0.2), [3, 1, 2])
        // β = 0.1 -> ⌊0.5⌋ = 0 dropped: plain mean (110/5, -44/5, 2)
        let m = try Aggregation.trimmedMean(u, beta: 0.1)
        XCTAssertEqual(m[0], 22, accuracy: 1e-5); XCTAssertEqual(m[1], -8.8, accuracy: 1e-5)
        XCTAssertThrowsError(try Aggregation.trimmedMean(u, beta: 0.5))
    }

    func testKrumPicksTheMostCentralUpdate() throws {
        // f = 1: score = sum of squared distances to the n − f − 2 = 2 nearest.
        // u2 = (2,1,2) and u3 = (3,2,2) each have two neighbours at distance² 2: score 4;
        // u1 and u4 have 2 + 8 = 10; the outlier is huge. Ties break to the lower index.
        let (k, sel) = try Aggregation.krum(u, f: 1, m: 1)
        XCTAssertEqual(sel, [1]); XCTAssertEqual(k, [2, 1, 2])
        let (mk, msel) = try Aggregation.krum(u, f: 1, m: 2)
        XCTAssertEqual(msel, [1, 2]); XCTAssertEqual(mk, [2.5, 1.5, 2])
        XCTAssertThrowsError(try Aggregation.krum(u, f: 3, m: 1))  // n − f − 2 = 0
    }

    func testFLTrustWeightsByClippedCosineAndRescales() throws {
        let g0: [Float] = [1, 0]
        // cos = 1, 0 (orthogonal), −1 (opposite), 1/√2
        let ups: [[Float]] = [[2, 0], [0, 5], [-3, 0], [1, 1]]
        let (agg, trust) = try Aggregation.fltrust(ups, root: g0)
        XCTAssertEqual(trust[0], 1, accuracy: 1e-12); XCTAssertEqual(trust[1], 0); XCTAssertEqual(trust[2], 0)
        XCTAssertEqual(trust[3], 0.5.squareRoot(), accuracy: 1e-9)
        // Rescaled to ‖g0‖ = 1: (1,0) and (1,1)/√2, weights 1 and 1/√2 over their sum.
        let t = 0.5.squareRoot(), s = 1 + t
        XCTAssertEqual(Double(agg[0]), (1 + t * t) / s, accuracy: 1e-6)
        XCTAssertEqual(Double(agg[1]), (t * t) / s, accuracy: 1e-6)
        // Every update opposed: nothing moves.
        XCTAssertEqual(try Aggregation.fltrust([[-1, 0]], root: g0).aggregate, [0, 0])
    }

    func testLayerTopKKeepsExactlyCeilQTimesNumel() throws {
        let layout = ParameterLayout([try Tensor(shape: [3, 3]), try Tensor(shape: [4])])
        let v: [Float] = [0.5, -9, 3, 3, 1, -2, 0.1, 7, 3,   /* layer 2 */ 4, -1, 0.5, 2]
        for q in [0.0, 0.1, 0.3, 0.5, 0.75, 1.0] {
            let r = Vec.layerTopK(v, layout: layout, q: q)
            let k1 = min(9, Int((q * 9).rounded(.up))), k2 = min(4, Int((q * 4).rounded(.up)))
            XCTAssertEqual(r[0..<9].filter { $0 != 0 }.count, k1, "q=\(q)")
            XCTAssertEqual(r[9...].filter { $0 != 0 }.count, k2, "q=\(q)")
            // kept entries are unchanged and are the largest in magnitude
            for (a, b) in zip(r, v) where a != 0 { XCTAssertEqual(a, b) }
        }
        // q = 0.3 on layer 1: ⌈2.7⌉ = 3 -> −9, 7 and the first 3 (ties to the lower index)
        XCTAssertEqual(Array(Vec.layerTopK(v, layout: layout, q: 0.3)[0..<9]), [0, -9, 3, 0, 0, 0, 0, 7, 0])
    }

    func testClipFollowsRFFL() {
        var a: [Float] = [3, 4]
        XCTAssertTrue(Vec.clip(&a, maxNorm: 1))
        XCTAssertEqual(Double(a[0]), 3 / (5 + 1e-7), accuracy: 1e-6)
        var b: [Float] = [0.3, 0.4]
        XCTAssertFalse(Vec.clip(&b, maxNorm: 1))
        XCTAssertEqual(b, [0.3, 0.4])
    }

    func testPearson() {
        XCTAssertEqual(Federated.pearson([1, 2, 3], [2, 4, 6]), 1, accuracy: 1e-12)
        XCTAssertEqual(Federated.pearson([1, 2, 3], [3, 2, 1]), -1, accuracy: 1e-12)
        XCTAssertTrue(Federated.pearson([1, 1, 1], [1, 2, 3]).isNaN)
    }
}

/// Distributed FedAvg folds slices of the parameter vector on different ranks
/// and must give the bits of one process's whole-vector fold. OpenBLAS's
/// saxpy rounds an element differently in its vector kernel and in its scalar
/// tail (cutting at arbitrary points changes about half the sums), so the
/// slices' bounds sit on multiples of 1024; this checks that they keep every bit.
final class ShardedFoldTests: XCTestCase {
    func testSlicesOfTheFoldKeepEveryBit() {
        let g = Generator(seed: 3)
        for total in [1, 1023, 5000, 269_322] {
            let uploads = (0..<6).map { _ in (0..<total).map { _ in Float(g.uniform() - 0.5) } }
            let weights = (0..<6).map { _ in g.uniform() * 0.3 }
            var whole = [Float](repeating: 0, count: total)
            for (u, w) in zip(uploads, weights) { Vec.accumulate(&whole, u, weight: w) }
            for size in 2...5 {
                let cuts = Communicator.sliceCuts(total, size: size)
                XCTAssertEqual(cuts.first, 0); XCTAssertEqual(cuts.last, total)
                var joined = [Float]()
                for r in 0..<size {
                    let len = cuts[r + 1] - cuts[r]
                    XCTAssertGreaterThanOrEqual(len, 0)
                    if r + 1 < size { XCTAssertEqual(cuts[r + 1] % 1024, 0) }
                    var part = [Float](repeating: 0, count: len)
                    for (u, w) in zip(uploads, weights) where len > 0 {
                        part.withUnsafeMutableBufferPointer { p in
                            u.withUnsafeBufferPointer { Vec.accumulate(p.baseAddress!, $0.baseAddress! + cuts[r], count: len, weight: w) }
                        }
                    }
                    joined += part
                }
                XCTAssertEqual(joined.map(\.bitPattern), whole.map(\.bitPattern), "\(total) parameters over \(size) ranks")
            }
        }
    }
}

final class PartitionTests: XCTestCase {
    let labels = (0..<1000).map { ($0 * 7) % 10 }

    func checkDisjointCover(_ p: Partition, _ n: Int, cover: Bool = true, file: StaticString = #filePath, line: UInt = #line) {
        let all = p.indices.flatMap { $0 }
        XCTAssertEqual(Set(all).count, all.count, "overlap", file: file, line: line)
        if cover { XCTAssertEqual(Set(all), Set(0..<n), "coverage", file: file, line: line) }
        XCTAssertFalse(p.indices.contains { $0.isEmpty }, file: file, line: line)
    }

    func testMethodsAreDisjointCoverAndSeeded() throws {
        for method: PartitionMethod in [.iid, .dirichlet(alpha: 0.5, minSize: 10), .powerlaw(a: 1.659), .shards(perClient: 2)] {
            let a = try Partitioner.split(labels: labels, classes: 10, clients: 7, method: method, generator: Generator(seed: 3))
            let b = try Partitioner.split(labels: labels, classes: 10, clients: 7, method: method, generator: Generator(seed: 3))
            let c = try Partitioner.split(labels: labels, classes: 10, clients: 7, method: method, generator: Generator(seed: 4))
            checkDisjointCover(a, labels.count)
            XCTAssertEqual(a.indices, b.indices)
            XCTAssertNotEqual(a.indices, c.indices)
            XCTAssertEqual(a.histogram.map { $0.reduce(0, +) }, a.sizes)
        }
    }

    func testPowerlawSizesFollowRFFL() throws {
        // b_k = linspace(0.01^(1/a), 0.99^(1/a), n): sizes increase, ratio last/first = (99)^(1/a)
        let p = try Partitioner.split(labels: labels, classes: 10, clients: 5, method: .powerlaw(a: 1.65911332899), generator: Generator(seed: 1))
        XCTAssertEqual(p.sizes, p.sizes.sorted())
        let lo = pow(0.01, 1 / 1.65911332899), hi = pow(0.99, 1 / 1.65911332899)
        let b = (0..<5).map { lo + (hi - lo) * Double($0) / 4 }
        XCTAssertEqual(p.sizes[0], Int((b[0] / b.reduce(0, +) * 1000).rounded(.up)))
    }

    func testClassImbalanceGivesClientKItsFirstCkClasses() throws {
        let p = try Partitioner.split(labels: labels, classes: 10, clients: 4, method: .classes(size: nil), generator: Generator(seed: 1))
        checkDisjointCover(p, labels.count, cover: false)
        // c_k = round(linspace(1, 10, 4)) = 1, 4, 7, 10
        for (k, ck) in [1, 4, 7, 10].enumerated() {
            XCTAssertEqual(p.histogram[k].enumerated().filter { $0.element > 0 }.map(\.offset), Array(0..<ck))
        }
        XCTAssertEqual(Set(p.sizes).count, 1)  // equal sizes
    }

    func testDirichletWithLargeAlphaIsNearlyIID() throws {
        let p = try Partitioner.split(labels: labels, classes: 10, clients: 4, method: .dirichlet(alpha: 1e4, minSize: 1), generator: Generator(seed: 2))
        // each class (100 samples) splits ~25 per client
        for h in p.histogram { for c in h { XCTAssertEqual(Double(c), 25, accuracy: 4) } }
        let small = try Partitioner.split(labels: labels, classes: 10, clients: 4, method: .dirichlet(alpha: 0.05, minSize: 1), generator: Generator(seed: 2))
        XCTAssertGreaterThan(small.histogram.flatMap { $0 }.filter { $0 == 0 }.count, 5)  // very skewed
    }

    func testBadPartitionsAreErrors() {
        XCTAssertThrowsError(try Partitioner.split(labels: labels, classes: 10, clients: 0, method: .iid, generator: Generator(seed: 1)))
        XCTAssertThrowsError(try Partitioner.split(labels: [0, 1], classes: 2, clients: 3, method: .iid, generator: Generator(seed: 1)))
        XCTAssertThrowsError(try Partitioner.split(labels: labels, classes: 10, clients: 3, method: .dirichlet(alpha: 0, minSize: 1), generator: Generator(seed: 1)))
    }
}

final class SimulationTests: XCTestCase {
    /// Three Gaussian blobs in 20 dimensions, labels 0..2.
    func blobs(_ n: Int, seed: UInt64) throws -> ClientData {
        let g = Generator(seed: seed)
        var x = [Float](), y = [Int64]()
        for i in 0..<n {
            let c = i % 3
            for d in 0..<20 { x.append(Float(Sampling.normal(g)) + (d % 3 == c ? 2 : 0)) }
            y.append(Int64(c))
        }
        return try ClientData(x: Tensor(x, shape: [n, 20]), y: Tensor(y, shape: [n]))
    }

    func model(_ seed: UInt64) throws -> Module {
        try Generator.$current.withValue(Generator(seed: seed)) { try Sequential([Linear(20, 16), Activation(.ReLU), Linear(16, 3)]) }
    }

    func simulation(_ aggregator: Aggregator, adversaries: [Adversary?], parallel: Bool, rounds: Int = 3,
                    gamma: Double = 0.5) throws -> (Simulation, FedResult) {
        var config = FedConfig()
        config.rffl.gamma = gamma
        config.rounds = rounds
        config.aggregator = aggregator
        config.local.lr = 0.1
        config.local.batchSize = 16
        config.parallel = parallel
        config.rffl.removalAfter = 3
        config.seed = 7
        let ps = try adversaries.enumerated().map { i, a in try Participant(data: blobs(60, seed: UInt64(i)), adversary: a) }
        // the pool's size (and its models' own weights) must not change the results
        let pool = try ModelPool(parallel ? [model(10), model(11), model(12)] : [model(20)])
        let sim = try Simulation(participants: ps, server: model(1), pool: pool, test: blobs(90, seed: 99), root: blobs(30, seed: 50),
                                 config: config)
        return (sim, try sim.run())
    }

    func testConcurrentRoundsEqualSequentialOnes() throws {
        for agg: Aggregator in [.fedavg, .rffl] {
            let (a, ra) = try simulation(agg, adversaries: [nil, nil, nil, .freeRider(zero: false)], parallel: true)
            let (b, rb) = try simulation(agg, adversaries: [nil, nil, nil, .freeRider(zero: false)], parallel: false)
            for (p, q) in zip(a.participants, b.participants) {
                XCTAssertEqual(p.weights, q.weights, "\(agg.name)")
            }
            XCTAssertEqual(a.layout.read(a.serverParams), b.layout.read(b.serverParams), "\(agg.name)")
            XCTAssertEqual(ra.finalAccuracy.map { $0 ?? -1 }, rb.finalAccuracy.map { $0 ?? -1 })
        }
    }

    func testFedAvgLearnsTheBlobs() throws {
        let (_, r) = try simulation(.fedavg, adversaries: [nil, nil, nil], parallel: true)
        XCTAssertGreaterThan(r.rounds.last!.globalAccuracy!, 0.9)
    }

    func testRFFLRemovesTheFreeRiderAndKeepsHonestClients() throws {
        // Γ small enough that every upload is clipped to the same norm, as in
        // RFFL's MNIST runs: the free rider's noise then carries no more weight
        // than one honest update and is nearly orthogonal to the aggregate.
        let (_, r) = try simulation(.rffl, adversaries: [nil, nil, nil, nil, .freeRider(zero: false)], parallel: true,
                                    rounds: 15, gamma: 0.05)
        let removed = try XCTUnwrap(r.removedRound[4], "free rider not removed; reputations \(r.rounds.last!.reputation!)")
        XCTAssertGreaterThan(removed, 3)  // only after the grace rounds
        XCTAssertEqual(Array(r.removedRound[0..<4]).compactMap { $0 }, [])
        let rep = r.rounds.last!.reputation!
        XCTAssertEqual(rep[4], 0)
        XCTAssertEqual(rep.reduce(0, +), 1, accuracy: 1e-9)
        for i in 0..<4 { XCTAssertGreaterThan(try XCTUnwrap(r.finalAccuracy[i]), 0.9) }
    }

    func testLuaStyleCustomAggregatorWithWrongLengthIsAnError() throws {
        XCTAssertThrowsError(try simulation(.custom({ u, _, _ in Array(u[0].dropLast()) }), adversaries: [nil, nil], parallel: false)) {
            XCTAssertTrue("\($0)".contains("returned"))
        }
    }
}
