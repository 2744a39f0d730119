import Foundation

// PyTorch-style printing: `tensor([[1.0000, 2.5000], ...], shape={2,2}, dtype=float32)`.
// Tensors with more than 1000 elements show the first and last 3 entries of
// each long dimension around "...".

extension Tensor: CustomStringConvertible {
    static let summarizeThreshold = 1000
    static let edgeItems = 3

    public var description: String {
        let summarize = numel > Tensor.summarizeThreshold
        let shown = shownValues(summarize: summarize)
        let format = ElementFormat(values: shown, integral: dtype == .int64)
        let prefix = "tensor("
        let body: String
        if ndim == 0 {
            body = format.string(element(at: []))
        } else if numel == 0 {
            body = "[]"
        } else {
            body = render(index: [], summarize: summarize, format: format, indent: prefix.count)
        }
        let shapeNote = ndim >= 2 || summarize || numel == 0 ? ", shape=\(shapeString(shape))" : ""
        return prefix + body + shapeNote + ", dtype=\(dtype.rawValue))"
    }

    /// Indices shown along a dimension of size n ("nil" marks the elision).
    private func shownIndices(_ n: Int, summarize: Bool) -> [Int?] {
        if summarize && n > 2 * Tensor.edgeItems {
            return (0..<Tensor.edgeItems).map { Optional($0) } + [nil] + ((n - Tensor.edgeItems)..<n).map { Optional($0) }
        }
        return (0..<n).map { Optional($0) }
    }

    private func shownValues(summarize: Bool) -> [Double] {
        if !summarize { return doubles() }
        var out = [Double]()
        func walk(_ idx: [Int]) {
            if idx.count == ndim { out.append(element(at: idx)); return }
            for i in shownIndices(shape[idx.count], summarize: true) { if let i { walk(idx + [i]) } }
        }
        walk([])
        return out
    }

    private func render(index: [Int], summarize: Bool, format: ElementFormat, indent: Int) -> String {
        let d = index.count
        let items = shownIndices(shape[d], summarize: summarize)
        if d == ndim - 1 {
            let parts = items.map { i in i.map { format.string(element(at: index + [$0])) } ?? "..." }
            return "[" + parts.joined(separator: ", ") + "]"
        }
        let sep = "," + String(repeating: "\n", count: ndim - d - 1) + String(repeating: " ", count: indent + d + 1)
        let parts = items.map { i in
            i.map { render(index: index + [$0], summarize: summarize, format: format, indent: indent) } ?? "..."
        }
        return "[" + parts.joined(separator: sep) + "]"
    }
}

/// How the elements of one tensor print: fixed 4 decimals, whole numbers
/// with a trailing ".", or scientific when magnitudes span a wide range —
/// all padded to a common width, as PyTorch does.
struct ElementFormat {
    enum Mode { case integral, whole, fixed, scientific }
    let mode: Mode
    let width: Int

    init(values: [Double], integral: Bool) {
        let finite = values.filter { $0.isFinite }
        var mode: Mode
        if integral {
            mode = .integral
        } else if finite.allSatisfy({ $0 == $0.rounded() }) {
            let maxAbs = finite.map { abs($0) }.max() ?? 0
            mode = maxAbs > 1e8 ? .scientific : .whole
        } else {
            let nonzero = finite.map { abs($0) }.filter { $0 != 0 }
            let hi = nonzero.max() ?? 0, lo = nonzero.min() ?? 0
            mode = (lo > 0 && hi / lo > 1000) || hi > 1e8 || (lo > 0 && lo < 1e-4) ? .scientific : .fixed
        }
        let unpadded = ElementFormat(mode: mode, width: 0)
        self.mode = mode
        self.width = values.map { unpadded.string($0).count }.max() ?? 0
    }

    private init(mode: Mode, width: Int) { self.mode = mode; self.width = width }

    func string(_ v: Double) -> String {
        var s: String
        if v.isNaN { s = "nan" } else if v.isInfinite { s = v > 0 ? "inf" : "-inf" } else {
            switch mode {
            case .integral: s = String(Int64(v))
            case .whole: s = String(format: "%.0f.", v)
            case .fixed: s = String(format: "%.4f", v)
            case .scientific: s = String(format: "%.4e", v)
            }
        }
        if s.count < width { s = String(repeating: " ", count: width - s.count) + s }
        return s
    }
}
