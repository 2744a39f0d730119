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

/// Merges adjacent dimensions that are laid out back to back in every operand
/// (stride[d] == stride[d+1]·shape[d+1]), so strided loops run longer inner
/// rows: a permuted N×C×H×W view has H·W-long contiguous rows.
@inline(__always)
public func coalesce(_ shape: [Int], _ strides: [[Int]]) -> (shape: [Int], strides: [[Int]]) {
    guard shape.count > 1 else { return (shape, strides) }
    var sh = [shape[shape.count - 1]]
    var st = strides.map { [$0[shape.count - 1]] }
    for d in stride(from: shape.count - 2, through: 0, by: -1) {
        let inner = sh[0]
        if shape[d] == 1 { continue }
        if inner == 1 {
            sh[0] = shape[d]
            for k in 0..<st.count { st[k][0] = strides[k][d] }
            continue
        }
        if (0..<st.count).allSatisfy({ strides[$0][d] == st[$0][0] * inner }) {
            sh[0] = shape[d] * inner
        } else {
            sh.insert(shape[d], at: 0)
            for k in 0..<st.count { st[k].insert(strides[k][d], at: 0) }
        }
    }
    return (sh, st)
}

/// Visits the rows (innermost dimension after coalescing) of two strided
/// layouts: the start offsets of each row, its length and the inner strides.
@inline(__always)
public func forEachRow2(_ shape: [Int], _ s0: [Int], _ o0: Int, _ s1: [Int], _ o1: Int,
                        _ body: (Int, Int, Int, Int, Int) -> Void) {
    if shape.isEmpty { body(o0, o1, 1, 1, 1); return }
    for n in shape where n == 0 { return }
    let (sh, st) = coalesce(shape, [s0, s1])
    let nd = sh.count
    let len = sh[nd - 1], a = st[0][nd - 1], b = st[1][nd - 1]
    if nd == 1 { body(o0, o1, len, a, b); return }
    let outer = Array(sh.prefix(nd - 1))
    forEachOffset2(outer, Array(st[0].prefix(nd - 1)), o0, Array(st[1].prefix(nd - 1)), o1) { p, q in
        body(p, q, len, a, b)
    }
}
