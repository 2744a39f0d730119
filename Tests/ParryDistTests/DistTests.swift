import XCTest
import ParryCore
@testable import ParryDist

// A process not started by mpirun is rank 0 of 1: every collective is a
// local copy and point-to-point has no partner. (The multi-rank behaviour is
// tested by Tests/mpi under mpirun, see `make test-mpi`.)
final class DistTests: XCTestCase {
    let w = Communicator.world

    func testSingleProcessWorld() {
        XCTAssertEqual(w.rank, 0)
        XCTAssertEqual(w.size, 1)
        XCTAssertTrue(w.isMain)
        XCTAssertFalse(w.isDistributed)
    }

    func testCollectivesAreCopies() throws {
        let t = try Tensor([1, 2, 3, 4] as [Float], shape: [2, 2])
        for op in ReduceOp.allCases {
            let r = try w.allreduce(t, op: op)
            XCTAssertEqual(r.floats(), [1, 2, 3, 4])
            XCTAssertFalse(r.storage === t.storage, "allreduce returns a new tensor")
        }
        guard case let .tensor(b) = try w.broadcast(.tensor(t), root: 0) else { return XCTFail("not a tensor") }
        XCTAssertEqual(b.shape, [2, 2])
        XCTAssertFalse(b.storage === t.storage)
        XCTAssertEqual(try w.reduce(t, op: .max, root: 0)?.floats(), [1, 2, 3, 4])
        let g = try w.allgather(.bytes([7, 8]))
        XCTAssertEqual(g.count, 1)
        guard case let .bytes(bytes) = g[0] else { return XCTFail("not bytes") }
        XCTAssertEqual(bytes, [7, 8])
        XCTAssertEqual(try w.allgatherVectors([[1, 2], [3]]), [[[1, 2], [3]]])
    }

    func testViewsAndGradTensorsAreCopiedNotAliased() throws {
        let t = try Tensor([1, 2, 3, 4, 5, 6] as [Float], shape: [2, 3])
        let v = try t.transpose(0, 1)   // a non-contiguous view
        XCTAssertEqual(try w.allreduce(v).floats(), [1, 4, 2, 5, 3, 6])
    }

    func testErrors() throws {
        let t = try Tensor([1, 2] as [Int64], shape: [2])
        XCTAssertThrowsError(try w.allreduce(t, op: .mean)) { XCTAssertTrue("\($0)".contains("float32")) }
        XCTAssertThrowsError(try w.broadcast(.tensor(t), root: 1)) { XCTAssertTrue("\($0)".contains("root must be a rank in 0..0")) }
        XCTAssertThrowsError(try w.broadcast(nil, root: 0)) { XCTAssertTrue("\($0)".contains("root rank")) }
        XCTAssertThrowsError(try w.send(.tensor(t), to: 0)) { XCTAssertTrue("\($0)".contains("own rank")) }
        XCTAssertThrowsError(try w.receive(from: nil)) { XCTAssertTrue("\($0)".contains("no other rank")) }
        XCTAssertThrowsError(try w.gather(.tensor(t), root: -1)) { XCTAssertTrue("\($0)".contains("got -1")) }
    }
}
