import Foundation

// The differentiable public ops: each computes with its `…Raw` kernel and
// records its backward, written with public ops so it is differentiable too.
// (g is the gradient of the output; `needs[k]` says whether input k wants one.)

extension Tensor {
    // MARK: elementwise

    public func binary(_ op: BinaryOp, _ other: Tensor) throws -> Tensor {
        let out = try binaryRaw(op, other)
        // Before building the graph node's input list and closure (two heap
        // allocations): most calls on small tensors need neither.
        if op.isComparison || op == .floorDiv || !(requiresGrad || other.requiresGrad) { return out }
        let a = self, b = other
        switch op {
        case .add:
            return record("add", out, [a, b]) { g, n in
                [n[0] ? try sumTo(g, a.shape) : nil, n[1] ? try sumTo(g, b.shape) : nil]
            }
        case .sub:
            return record("sub", out, [a, b]) { g, n in
                [n[0] ? try sumTo(g, a.shape) : nil, n[1] ? try sumTo(-g, b.shape) : nil]
            }
        case .mul:
            return record("mul", out, [a, b], saved: [a, b]) { g, n in
                [n[0] ? try sumTo(g * b, a.shape) : nil,
                 n[1] ? try sumTo(g * a, b.shape) : nil]
            }
        case .div:
            return record("div", out, [a, b], saved: [a, b]) { g, n in
                [n[0] ? try sumTo(g / b, a.shape) : nil,
                 n[1] ? try sumTo(-g * a / (b * b), b.shape) : nil]
            }
        case .pow:
            return record("pow", out, [a, b], saved: [a, b]) { g, n in
                var ga: Tensor? = nil, gb: Tensor? = nil
                if n[0] {
                    // b · a^(b-1), with 0 where b == 0 (so 0^0 contributes nothing)
                    let d = try b * a.pow(b - 1)
                    ga = try sumTo(g * whereSelect(b.eq(0), 0, d), a.shape)
                }
                if n[1] {
                    // a^b · log a, with 0 where a == 0 and b >= 0 (PyTorch's convention)
                    let d = try a.pow(b) * a.log()
                    let zero = try a.eq(0) * b.ge(0)
                    gb = try sumTo(g * whereSelect(zero, 0, d), b.shape)
                }
                return [ga, gb]
            }
        case .maximum, .minimum:
            // The larger (smaller) input takes the gradient; ties split it evenly.
            return record(op.rawValue, out, [a, b], saved: [a, b]) { g, n in
                let win = try (op == .maximum ? a.gt(b) : a.lt(b)) + a.eq(b) * 0.5
                return [n[0] ? try sumTo(g * win, a.shape) : nil,
                        n[1] ? try sumTo(g * (1 - win), b.shape) : nil]
            }
        case .remainder:
            return record("remainder", out, [a, b], saved: [a, b]) { g, n in
                [n[0] ? try sumTo(g, a.shape) : nil,
                 n[1] ? try sumTo(-g * a.binary(.floorDiv, b), b.shape) : nil]
            }
        default:
            return out
        }
    }

    public func binary(_ op: BinaryOp, _ s: Scalar) throws -> Tensor {
        try binary(op, Tensor.scalar(s))
    }

    public func neg() throws -> Tensor { try unary(.neg) }
    public func exp() throws -> Tensor { try unary(.exp) }
    public func log() throws -> Tensor { try unary(.log) }

    public func unary(_ op: UnaryOp) throws -> Tensor {
        let out = try unaryRaw(op)
        if !requiresGrad { return out }
        let a = self
        switch op {
        case .neg: return record("neg", out, [a]) { g, _ in [try -g] }
        case .abs: return record("abs", out, [a], saved: [a]) { g, _ in [try g * a.sign()] }
        case .relu: return record("relu", out, [a], saved: [a]) { g, _ in
            if !GradMode.isEnabled && g.shape == a.shape && g.dtype == .float32 && a.dtype == .float32 {
                // One pass, no mask tensor (the create_graph path below stays differentiable).
                let gc = try g.contiguous(), ac = try a.contiguous()
                let r = try Tensor(shapeOf: gc, dtype: .float32)
                let pg = gc.pointer(Float.self), pa = ac.pointer(Float.self), pr = r.pointer(Float.self)
                Parallel.forRanges(r.numel, grain: elementwiseGrain) { range in
                    var i = range.lowerBound
                    let zero = SIMD8<Float>(repeating: 0)
                    while i &+ 8 <= range.upperBound {     // a select, so it vectorizes
                        let x = UnsafeRawPointer(pa + i).loadUnaligned(as: SIMD8<Float>.self)
                        let gv = UnsafeRawPointer(pg + i).loadUnaligned(as: SIMD8<Float>.self)
                        UnsafeMutableRawPointer(pr + i).storeBytes(of: zero.replacing(with: gv, where: x .> zero), as: SIMD8<Float>.self)
                        i &+= 8
                    }
                    while i < range.upperBound { pr[i] = pa[i] > 0 ? pg[i] : 0; i &+= 1 }
                }
                return [r]
            }
            return [try g * a.gt(0)]
        }
        case .exp: return record("exp", out, [a], saved: [out]) { [weak out] g, _ in
            guard let out else { return [nil] }
            return [try g * out]
        }
        case .log: return record("log", out, [a], saved: [a]) { g, _ in [try g / a] }
        case .sqrt: return record("sqrt", out, [a], saved: [out]) { [weak out] g, _ in
            guard let out else { return [nil] }
            return [try g / (out * 2)]
        }
        case .rsqrt: return record("rsqrt", out, [a], saved: [out]) { [weak out] g, _ in
            guard let out else { return [nil] }
            return [try g * out.pow(3) * -0.5]
        }
        case .sigmoid: return record("sigmoid", out, [a], saved: [out]) { [weak out] g, _ in
            guard let out else { return [nil] }
            return [try g * (out * (1 - out))]
        }
        case .tanh: return record("tanh", out, [a], saved: [out]) { [weak out] g, _ in
            guard let out else { return [nil] }
            return [try g * (1 - out * out)]
        }
        case .sin: return record("sin", out, [a], saved: [a]) { g, _ in [try g * a.cos()] }
        case .cos: return record("cos", out, [a], saved: [a]) { g, _ in [try -(g * a.sin())] }
        case .log1p: return record("log1p", out, [a], saved: [a]) { g, _ in [try g / (a + 1)] }
        case .expm1: return record("expm1", out, [a], saved: [out]) { [weak out] g, _ in
            guard let out else { return [nil] }
            return [try g * (out + 1)]
        }
        case .erf: return record("erf", out, [a], saved: [a]) { g, _ in
            // d erf(x)/dx = 2/√π · exp(−x²)
            [try g * ((-(a * a)).exp() * (2 / Double.pi.squareRoot()))]
        }
        case .sign, .floor, .ceil, .round:
            // Piecewise constant: zero gradient, as PyTorch.
            return record(op.rawValue, out, [a]) { g, _ in [try Tensor.zeros(g.shape)] }
        }
    }

    /// Elements limited to [lo, hi]; the gradient passes where lo ≤ x ≤ hi.
    public func clamp(_ lo: Scalar?, _ hi: Scalar?) throws -> Tensor {
        let out = try clampRaw(lo, hi)
        let a = self
        return record("clamp", out, [a], saved: [a]) { g, _ in
            var mask = try Tensor.ones(a.shape)
            if let lo { mask = try mask * a.ge(Tensor.scalar(lo)) }
            if let hi { mask = try mask * a.le(Tensor.scalar(hi)) }
            return [try g * mask]
        }
    }

    // MARK: reductions

    public func sum(dim: Int? = nil, keepdim: Bool = false) throws -> Tensor {
        let out = sumRaw(dim: dim, keepdim: keepdim)
        let shape = self.shape
        return record("sum", out, [self]) { g, _ in
            guard let dim else { return [try g.expand(shape)] }
            return [try (keepdim ? g : g.unsqueeze(dim)).expand(shape)]
        }
    }

    /// Max or min along `dim`: values and 0-based int64 indices. The gradient
    /// goes to the selected element of each lane.
    public func extremum(largest: Bool, dim: Int, keepdim: Bool = false) throws -> (Tensor, Tensor) {
        let (values, indices) = try extremumRaw(largest: largest, dim: dim, keepdim: keepdim)
        let shape = self.shape
        record(largest ? "max" : "min", values, [self]) { g, _ in
            let idx = keepdim ? indices : indices.unsqueezeRaw(dim)
            return [try (keepdim ? g : g.unsqueeze(dim)).scatterAdd(into: shape, dim: dim, index: idx)]
        }
        return (values, indices)
    }

    /// Max or min over all elements: the 0-d value and its 0-based flat index.
    public func extremum(largest: Bool) throws -> (Tensor, Int) {
        let (value, index) = try extremumRaw(largest: largest)
        let shape = self.shape, n = numel
        record(largest ? "max" : "min", value, [self]) { g, _ in
            let idx = try Tensor([Int64(index)], shape: [1])
            return [try g.reshape([1]).scatterAdd(into: [n], dim: 0, index: idx).reshape(shape)]
        }
        return (value, index)
    }

    /// p-norm of all elements or along `dim`; p = .infinity gives max |x|.
    /// The 2-norm's gradient is x/‖x‖, and 0 where the norm is 0.
    public func norm(p: Double = 2, dim: Int? = nil, keepdim: Bool = false) throws -> Tensor {
        guard p == 2 else { return try normComposite(p: p, dim: dim, keepdim: keepdim) }
        let x = try to(.float32)
        let out = GradMode.noGrad { () -> Tensor in
            (try? x.normComposite(p: 2, dim: dim, keepdim: keepdim)) ?? x
        }
        return record("norm", out, [x], saved: [x, out]) { [weak out] g, _ in
            guard let out else { return [nil] }
            var o = out, gg = g
            if let d = dim, !keepdim { o = try out.unsqueeze(d); gg = try g.unsqueeze(d) }
            let safe = try whereSelect(o.eq(0), 1, o)
            let scale = try whereSelect(o.eq(0), 0, gg / safe)
            return [try x * scale]
        }
    }

    /// Softmax (or log-softmax) along `dim`.
    public func softmax(dim: Int, log: Bool = false) throws -> Tensor {
        let out = try softmaxRaw(dim: dim, log: log)
        return record(log ? "log_softmax" : "softmax", out, [self], saved: [out]) { [weak out] g, _ in
            guard let out else { return [nil] }
            if log {
                // g - softmax · Σg
                return [try g - out.exp() * g.sum(dim: dim, keepdim: true)]
            }
            // p · (g - Σ g·p)
            return [try out * (g - (g * out).sum(dim: dim, keepdim: true))]
        }
    }

    // MARK: matmul

    public func matmul(_ other: Tensor) throws -> Tensor {
        let out = try matmulRaw(other)
        let a = self, b = other
        return record("matmul", out, [a, b], saved: [a, b]) { g, n in
            // Work with ≥2-D forms: a as a row, b as a column when 1-D.
            let A = a.ndim == 1 ? try a.unsqueeze(0) : a
            let B = b.ndim == 1 ? try b.unsqueeze(1) : b
            var G = g
            if a.ndim == 1 { G = try G.unsqueeze(G.ndim - (b.ndim == 1 ? 0 : 1)) }
            if b.ndim == 1 { G = try G.unsqueeze(G.ndim) }
            var ga: Tensor? = nil, gb: Tensor? = nil
            if n[0] { ga = try sumTo(G.matmul(B.transpose(B.ndim - 2, B.ndim - 1)), A.shape).reshape(a.shape) }
            if n[1] {
                if A.ndim == 2 && B.ndim == 2 && B.shape[0] > 1 && B.strides == [1, B.shape[0]] {
                    // b is a transposed matrix (a linear layer's wᵀ): (Gᵀ·A)ᵀ is laid
                    // out like w itself, so its gradient reaches w without a copy.
                    gb = try G.transpose(0, 1).matmul(A).transpose(0, 1).reshape(b.shape)
                } else {
                    gb = try sumTo(A.transpose(A.ndim - 2, A.ndim - 1).matmul(G), B.shape).reshape(b.shape)
                }
            }
            return [ga, gb]
        }
    }

    // MARK: views and copies

    public func clone() throws -> Tensor {
        record("clone", try cloneRaw(), [self]) { g, _ in [g] }
    }

    /// `self` if contiguous, otherwise a contiguous copy.
    public func contiguous() throws -> Tensor {
        isContiguous ? self : try clone()
    }

    public func view(_ requested: [Int]) throws -> Tensor {
        let shape = self.shape
        return record("view", try viewRaw(requested), [self]) { g, _ in [try g.reshape(shape)] }
    }

    public func reshape(_ requested: [Int]) throws -> Tensor {
        let shape = self.shape
        return record("reshape", try reshapeRaw(requested), [self]) { g, _ in [try g.reshape(shape)] }
    }

    public func squeeze(_ dim: Int? = nil) throws -> Tensor {
        let shape = self.shape
        return record("squeeze", squeezeRaw(dim), [self]) { g, _ in [try g.reshape(shape)] }
    }

    public func unsqueeze(_ dim: Int) throws -> Tensor {
        record("unsqueeze", unsqueezeRaw(dim), [self]) { g, _ in [try g.squeeze(dim)] }
    }

    public func transpose(_ d0: Int, _ d1: Int) throws -> Tensor {
        record("transpose", transposeRaw(d0, d1), [self]) { g, _ in [try g.transpose(d0, d1)] }
    }

    public func permute(_ dims: [Int]) throws -> Tensor {
        let out = try permuteRaw(dims)
        var inverse = [Int](repeating: 0, count: dims.count)
        for (i, d) in dims.enumerated() { inverse[d] = i }
        return record("permute", out, [self]) { g, _ in [try g.permute(inverse)] }
    }

    public func expand(_ sizes: [Int]) throws -> Tensor {
        let shape = self.shape
        return record("expand", try expandRaw(sizes), [self]) { g, _ in [try sumTo(g, shape)] }
    }

    public func narrow(_ dim: Int, _ start: Int, _ length: Int) throws -> Tensor {
        let shape = self.shape
        return record("narrow", try narrowRaw(dim, start, length), [self]) { g, _ in
            [try g.padNarrow(into: shape, dim: dim, start: start)]
        }
    }

    public func select(_ dim: Int, _ index: Int) throws -> Tensor {
        let shape = self.shape
        return record("select", try selectRaw(dim, index), [self]) { g, _ in
            [try g.unsqueeze(dim).padNarrow(into: shape, dim: dim, start: index)]
        }
    }

    /// Zeros of `shape` with self written at `start` along `dim` (the gradient of narrow).
    func padNarrow(into shape: [Int], dim: Int, start: Int) throws -> Tensor {
        let out = try Tensor.zeros(shape)
        try out.narrowRaw(dim, start, self.shape[dim]).copyElements(from: self)
        let len = self.shape[dim]
        return record("pad", out, [self]) { g, _ in [try g.narrow(dim, start, len)] }
    }

    public func indexSelect(_ dim: Int, _ indices: [Int]) throws -> Tensor {
        let shape = self.shape
        return record("index_select", try indexSelectRaw(dim, indices), [self]) { g, _ in
            [try g.scatterAdd(into: shape, dim: dim, index: Tensor(indices.map { Int64($0) }, shape: [indices.count]), alongOnly: true)]
        }
    }

    public func gather(_ dim: Int, _ index: Tensor) throws -> Tensor {
        let shape = self.shape
        return record("gather", try gatherRaw(dim, index), [self]) { g, _ in
            [try g.scatterAdd(into: shape, dim: dim, index: index)]
        }
    }

    /// Zeros of `shape` with self's entries added at `index` along `dim`: the
    /// adjoint of gather (or, with `alongOnly`, of index_select with a 1-D index).
    public func scatterAdd(into shape: [Int], dim: Int, index: Tensor, alongOnly: Bool = false) throws -> Tensor {
        let out = try Tensor.zeros(shape)
        let src = try to(.float32).contiguousRaw()
        let po = out.base(Float.self), ps = src.base(Float.self) + src.offset
        let pi = index.base(Int64.self)
        if alongOnly {
            // self has shape[dim] replaced by index.count; slice j goes to slice index[j].
            for j in 0..<index.numel {
                let i = Int(pi[index.offset + j * (index.strides.first ?? 1)])
                let dstSlice = try out.selectRaw(dim, i), srcSlice = try src.selectRaw(dim, j)
                try dstSlice.binary_(.add, srcSlice)
            }
        } else {
            var st = out.strides
            st[dim] = 0
            let sd = out.strides[dim]
            var k = 0
            forEachOffset2(index.shape, index.strides, index.offset, st, 0) { io, oo in
                po[oo + Int(pi[io]) * sd] += ps[k]
                k += 1
            }
        }
        let idx = index
        return record("scatter_add", out, [self]) { g, _ in
            [alongOnly ? try g.indexSelect(dim, idx.int64s().map { Int($0) }) : try g.gather(dim, idx)]
        }
    }
}

/// `mask != 0 ? a : b`; gradients flow to the selected side.
public func whereSelect(_ mask: Tensor, _ a: Tensor, _ b: Tensor) throws -> Tensor {
    let out = try whereSelectRaw(mask, a, b)
    return record("where", out, [a, b], saved: [mask]) { g, n in
        return [n[0] ? try sumTo(whereSelect(mask, g, 0), a.shape) : nil,
                n[1] ? try sumTo(whereSelect(mask, 0, g), b.shape) : nil]
    }
}

/// t₁ + t₂ + … + tₙ (broadcasting, left to right, differentiable): the sum
/// of a list of losses or predictions. Empty lists are an error.
public func addAll(_ tensors: [Tensor]) throws -> Tensor {
    guard var total = tensors.first else { throw TensorError("nothing to add: the list of tensors is empty") }
    for t in tensors.dropFirst() { total = try total + t }
    return total
}

/// Joins tensors along `dim`; each input gets its slice of the gradient.
public func cat(_ tensors: [Tensor], dim: Int) throws -> Tensor {
    let out = try catRaw(tensors, dim: dim)
    let sizes = tensors.map { $0.shape[dim] }
    return record("cat", out, tensors) { g, n in
        var start = 0
        return try sizes.enumerated().map { k, len in
            defer { start += len }
            return n[k] ? try g.narrow(dim, start, len) : nil
        }
    }
}
