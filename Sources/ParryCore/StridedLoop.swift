// Strided iteration: every kernel that cannot take a contiguous fast path walks
// its operands with these odometers. Offsets are in elements and include the
// starting offsets given; the innermost dimension is a tight loop.

/// Visits the element offsets of one strided layout in row-major order.
@inline(__always)
public func forEachOffset(_ shape: [Int], _ s0: [Int], _ o0: Int, _ body: (Int) -> Void) {
    let zero = [Int](repeating: 0, count: shape.count)
    forEachOffset3(shape, s0, o0, zero, 0, zero, 0) { a, _, _ in body(a) }
}

/// Visits the element offsets of two strided layouts over the same shape.
@inline(__always)
public func forEachOffset2(_ shape: [Int], _ s0: [Int], _ o0: Int, _ s1: [Int], _ o1: Int,
                           _ body: (Int, Int) -> Void) {
    let zero = [Int](repeating: 0, count: shape.count)
    forEachOffset3(shape, s0, o0, s1, o1, zero, 0) { a, b, _ in body(a, b) }
}

/// Visits the element offsets of three strided layouts over the same shape.
@inline(__always)
public func forEachOffset3(_ shape: [Int], _ s0: [Int], _ o0: Int, _ s1: [Int], _ o1: Int,
                           _ s2: [Int], _ o2: Int, _ body: (Int, Int, Int) -> Void) {
    let nd = shape.count
    if nd == 0 { body(o0, o1, o2); return }
    for n in shape where n == 0 { return }
    let n = shape[nd - 1], a = s0[nd - 1], b = s1[nd - 1], c = s2[nd - 1]
    var idx = [Int](repeating: 0, count: nd)
    var p0 = o0, p1 = o1, p2 = o2
    while true {
        var q0 = p0, q1 = p1, q2 = p2
        for _ in 0..<n {
            body(q0, q1, q2)
            q0 &+= a; q1 &+= b; q2 &+= c
        }
        var d = nd - 2
        while d >= 0 {
            idx[d] += 1
            p0 += s0[d]; p1 += s1[d]; p2 += s2[d]
            if idx[d] < shape[d] { break }
            p0 -= s0[d] * shape[d]; p1 -= s1[d] * shape[d]; p2 -= s2[d] * shape[d]
            idx[d] = 0
            d -= 1
        }
        if d < 0 { return }
    }
}
