// Reverse-mode automatic differentiation: a define-by-run tape.
//
// Every differentiable op that sees an input requiring grad (while grad mode
// is on) attaches a `GradNode` to its output: the inputs, and a closure that
// maps the output's gradient to the inputs' gradients. The closures are
// written with the same public tensor ops, so running them with grad mode on
// (`createGraph`) records a graph of the backward pass: higher-order
// gradients come for free. `backward` walks the graph once in reverse
// topological order; gradients accumulate into `.grad` of leaves, or are
// returned without touching `.grad` (`grad(outputs, inputs)`, what attacks use).

/// Whether ops record the graph. Task-local, so `noGrad` scopes nest and
/// concurrent work on other threads is unaffected.
public enum GradMode {
    @TaskLocal public static var isEnabled = true

    /// Runs `body` without recording (PyTorch's `torch.no_grad()`).
    public static func noGrad<T>(_ body: () throws -> T) rethrows -> T {
        try $isEnabled.withValue(false) { try body() }
    }

    public static func with<T>(enabled: Bool, _ body: () throws -> T) rethrows -> T {
        try $isEnabled.withValue(enabled) { try body() }
    }
}

/// The backward function of one recorded op.
public final class GradNode {
    public let name: String
    /// The op's tensor inputs, in the order the closure returns gradients.
    var inputs: [Tensor]
    /// (gradient of the output, which inputs need a gradient) -> input gradients.
    var backward: ((Tensor, [Bool]) throws -> [Tensor?])?
    /// Storages read by `backward` and their versions when recorded.
    let saved: [(Storage, Int)]

    init(name: String, inputs: [Tensor], saved: [Tensor], backward: @escaping (Tensor, [Bool]) throws -> [Tensor?]) {
        self.name = name
        self.inputs = inputs
        self.saved = saved.map { ($0.storage, $0.storage.version) }
        self.backward = backward
    }
}

/// Attaches a backward node to `out` if grad mode is on and any input requires
/// grad; returns `out`. `saved` lists tensors whose values `backward` reads.
@discardableResult
public func record(_ name: String, _ out: Tensor, _ inputs: [Tensor], saved: [Tensor] = [],
            _ backward: @escaping (Tensor, [Bool]) throws -> [Tensor?]) -> Tensor {
    // The cheap test first: reading the task-local grad mode costs more than scanning inputs.
    guard inputs.contains(where: { $0.requiresGrad }), GradMode.isEnabled else { return out }
    out.gradFn = GradNode(name: name, inputs: inputs, saved: saved, backward: backward)
    out.requiresGrad = true
    return out
}

/// Sums `g` down to `shape`, undoing broadcasting (the gradient of an expand).
public func sumTo(_ g: Tensor, _ shape: [Int]) throws -> Tensor {
    if g.shape == shape { return g }
    var r = g
    for _ in 0..<(g.ndim - shape.count) { r = try r.sum(dim: 0) }
    for (d, n) in shape.enumerated() where n == 1 && r.shape[d] != 1 {
        r = try r.sum(dim: d, keepdim: true)
    }
    return r
}

/// Runs reverse-mode differentiation from `roots` seeded with `seeds`.
/// With `inputs` nil, accumulates into `.grad` of every leaf reached;
/// otherwise returns the gradients of `inputs` (nil for unused ones) and
/// leaves `.grad` alone.
public func runBackward(roots: [Tensor], seeds: [Tensor], inputs: [Tensor]? = nil,
                        retainGraph: Bool = false, createGraph: Bool = false) throws -> [Tensor?] {
    // Topological order by iterative depth-first search (graphs can be deep).
    var order = [Tensor]()
    var visited = Set<ObjectIdentifier>()
    var stack: [(Tensor, Int)] = []
    for r in roots where r.requiresGrad && visited.insert(ObjectIdentifier(r)).inserted {
        stack.append((r, 0))
        while let (t, i) = stack.popLast() {
            let ins = t.gradFn?.inputs ?? []
            if i < ins.count {
                stack.append((t, i + 1))
                let child = ins[i]
                if child.requiresGrad && visited.insert(ObjectIdentifier(child)).inserted {
                    stack.append((child, 0))
                }
            } else {
                order.append(t)
            }
        }
    }

    var grads = [ObjectIdentifier: Tensor]()
    let wanted = Set((inputs ?? []).map(ObjectIdentifier.init))
    // With explicit inputs, only tensors that lead to one of them need a
    // gradient: an attack's ∂loss/∂x then skips every weight gradient.
    var relevant: Set<ObjectIdentifier>? = nil
    if inputs != nil {
        var r = Set<ObjectIdentifier>()
        for t in order {   // post-order: a tensor's inputs come before it
            let id = ObjectIdentifier(t)
            if wanted.contains(id) || (t.gradFn?.inputs.contains { r.contains(ObjectIdentifier($0)) } ?? false) { r.insert(id) }
        }
        relevant = r
    }
    try GradMode.with(enabled: createGraph) {
        for (r, s) in zip(roots, seeds) where r.requiresGrad {
            let id = ObjectIdentifier(r)
            grads[id] = try grads[id].map { try $0 + s } ?? s
        }
        for t in order.reversed() {
            let id = ObjectIdentifier(t)
            guard let g0 = grads[id] else { continue }
            if let relevant, !relevant.contains(id) { grads[id] = nil; continue }
            var g = g0
            if let hooks = t.gradHooks {
                for h in hooks {
                    guard let r = try h.body(g) else { continue }
                    guard r.shape == t.shape, r.dtype == .float32 else {
                        throw TensorError("a gradient hook returned a tensor of shape \(shapeString(r.shape)) (\(r.dtype.rawValue)), expected \(shapeString(t.shape)) float32")
                    }
                    g = r
                }
                grads[id] = g
            }
            if let node = t.gradFn {
                guard let backward = node.backward else {
                    throw TensorError("trying to backward through the graph a second time (or after it was freed); pass retain_graph=true the first time")
                }
                for (storage, version) in node.saved where storage.version != version {
                    throw TensorError("a tensor needed to compute the gradient of \(node.name) was modified by an in-place operation")
                }
                let needs = node.inputs.map { $0.requiresGrad && (relevant?.contains(ObjectIdentifier($0)) ?? true) }
                let gs = try backward(g, needs)
                for (k, input) in node.inputs.enumerated() where needs[k] {
                    guard k < gs.count, let gi = gs[k] else { continue }
                    guard gi.shape == input.shape else {
                        throw TensorError("internal error: gradient of shape \(shapeString(gi.shape)) for an input of shape \(shapeString(input.shape)) in \(node.name)")
                    }
                    let iid = ObjectIdentifier(input)
                    grads[iid] = try grads[iid].map { try $0 + gi } ?? gi
                }
                if !wanted.contains(id) { grads[id] = nil }   // free intermediate gradients early
            } else if inputs == nil {
                // A leaf: accumulate into .grad (an owned copy, never an alias of another gradient).
                let owned = createGraph ? g : try g.cloneRaw()
                t.grad = try t.grad.map { try $0 + owned } ?? owned
            }
        }
    }
    if !retainGraph {
        for t in order {
            t.gradFn?.backward = nil
            t.gradFn?.inputs = []
        }
    }
    return (inputs ?? []).map { grads[ObjectIdentifier($0)] }
}

/// One gradient hook of a tensor: called with the tensor's gradient when it
/// has been computed; a returned tensor replaces the gradient.
final class GradHook {
    let body: (Tensor) throws -> Tensor?
    init(_ body: @escaping (Tensor) throws -> Tensor?) { self.body = body }
}

/// What `registerHook` returns: `remove()` unregisters the hook (idempotent).
public final class HookHandle {
    private var undo: (() -> Void)?
    public init(_ undo: @escaping () -> Void) { self.undo = undo }
    public func remove() { undo?(); undo = nil }
}

extension Tensor {
    /// Registers `body`, called during backward with this tensor's gradient
    /// (the total over all its uses, once per backward pass), before the
    /// gradient flows on to the tensor's inputs or accumulates into `.grad` of
    /// a leaf; a returned tensor (same shape) replaces the gradient. Hooks run
    /// in registration order, each seeing the previous one's result
    /// (PyTorch's `Tensor.register_hook`).
    @discardableResult
    public func registerHook(_ body: @escaping (Tensor) throws -> Tensor?) throws -> HookHandle {
        guard requiresGrad else { throw TensorError("cannot register a hook on a tensor that does not require grad") }
        let hook = GradHook(body)
        gradHooks = (gradHooks ?? []) + [hook]
        return HookHandle { [weak self, weak hook] in
            guard let self, let hook else { return }
            self.gradHooks?.removeAll { $0 === hook }
            if self.gradHooks?.isEmpty == true { self.gradHooks = nil }
        }
    }

    /// Accumulates d(self)/d(leaves) into `.grad`, seeded with `gradient`
    /// (which may be omitted for a one-element tensor).
    public func backward(_ gradient: Tensor? = nil, retainGraph: Bool = false, createGraph: Bool = false) throws {
        guard requiresGrad else {
            throw TensorError("the tensor does not require grad and has no grad_fn")
        }
        let seed: Tensor
        if let gradient {
            guard gradient.shape == shape else {
                throw TensorError("gradient has shape \(shapeString(gradient.shape)), expected \(shapeString(shape))")
            }
            seed = try gradient.to(.float32)
        } else {
            guard numel == 1 else {
                throw TensorError("grad can be implicitly created only for one-element outputs, got shape \(shapeString(shape))")
            }
            seed = try Tensor.ones(shape)
        }
        _ = try runBackward(roots: [self], seeds: [seed], retainGraph: retainGraph, createGraph: createGraph)
    }

    /// Marks a float32 tensor as a leaf whose gradient is wanted.
    @discardableResult
    public func requiresGrad_(_ flag: Bool = true) throws -> Tensor {
        guard !flag || dtype == .float32 else {
            throw TensorError("only float32 tensors can require gradients, got \(dtype.rawValue)")
        }
        guard isLeaf || flag else {
            throw TensorError("requires_grad can only be turned off on leaf tensors; use detach()")
        }
        requiresGrad = flag
        return self
    }

    /// A tensor sharing storage with self, outside the graph.
    public func detach() -> Tensor {
        Tensor(storage: storage, shape: shape, strides: strides, offset: offset, dtype: dtype)
    }

    /// Raises for in-place writes that would corrupt the graph; bumps the version.
    public func prepareInPlace() throws {
        if GradMode.isEnabled && requiresGrad {
            throw TensorError(isLeaf
                ? "a leaf tensor that requires grad cannot be modified in place (use no_grad, or detach())"
                : "in-place operation on a tensor that is part of the graph (use clone() first)")
        }
        storage.version &+= 1
    }
}

/// Gradients of `outputs` (seeded with `gradOutputs`, ones for one-element
/// outputs when nil) with respect to `inputs`, leaving `.grad` untouched.
public func grad(_ outputs: [Tensor], _ inputs: [Tensor], gradOutputs: [Tensor]? = nil,
                 retainGraph: Bool? = nil, createGraph: Bool = false, allowUnused: Bool = false) throws -> [Tensor?] {
    for (i, t) in inputs.enumerated() where !t.requiresGrad {
        throw TensorError("input \(i + 1) does not require grad")
    }
    var seeds = [Tensor]()
    for (i, o) in outputs.enumerated() {
        guard o.requiresGrad else { throw TensorError("output \(i + 1) does not require grad and has no grad_fn") }
        if let gs = gradOutputs, i < gs.count {
            guard gs[i].shape == o.shape else {
                throw TensorError("grad_outputs \(i + 1) has shape \(shapeString(gs[i].shape)), expected \(shapeString(o.shape))")
            }
            seeds.append(gs[i])
        } else {
            guard o.numel == 1 else {
                throw TensorError("grad can be implicitly created only for one-element outputs; pass grad_outputs for output \(i + 1)")
            }
            seeds.append(try Tensor.ones(o.shape))
        }
    }
    let result = try runBackward(roots: outputs, seeds: seeds, inputs: inputs,
                                 retainGraph: retainGraph ?? createGraph, createGraph: createGraph)
    if !allowUnused {
        for (i, g) in result.enumerated() where g == nil {
            throw TensorError("input \(i + 1) was not used to compute the outputs (pass allow_unused=true)")
        }
    }
    return result
}
