import ParryCore

/// A neural-network module: parameters, buffers and child modules in
/// registration order, with PyTorch's dotted names (`layer2.1.conv2.weight`).
///
/// ```swift
/// let net = Sequential([Linear(784, 256), ReLU(), Linear(256, 10)])
/// let logits = try net(x)
/// for (name, p) in net.namedParameters() { print(name, p.shape) }
/// ```
open class Module {
    /// The class name shown by `description` ("Linear", "Sequential", ...).
    open var typeName: String { String(describing: type(of: self)) }
    /// Settings shown in `description`, e.g. "in_features=784, out_features=10".
    open var extraDescription: String { "" }

    public private(set) var training = true
    public private(set) var children: [(name: String, module: Module)] = []
    public private(set) var parameters: [(name: String, tensor: Tensor)] = []
    public private(set) var buffers: [(name: String, tensor: Tensor)] = []
    /// Called with the output after every forward (feature extraction).
    public var forwardHook: ((Tensor) throws -> Void)?

    public init() {}

    /// The computation; subclasses override.
    open func forward(_ x: Tensor) throws -> Tensor {
        throw TensorError("\(typeName) does not implement forward")
    }

    public func callAsFunction(_ x: Tensor) throws -> Tensor {
        guard let h = hooks else {
            let y = try forward(x)
            try forwardHook?(y)
            return y
        }
        return try callWithHooks(x, h)
    }

    // MARK: hooks (PyTorch's register_forward_pre_hook / register_forward_hook / register_full_backward_hook)

    /// (module, input) -> replacement input or nil.
    public typealias ForwardPreHook = (Module, Tensor) throws -> Tensor?
    /// (module, input, output) -> replacement output or nil.
    public typealias ForwardHook = (Module, Tensor, Tensor) throws -> Tensor?
    /// (module, gradient w.r.t. the input or nil when the input needs none,
    /// gradient w.r.t. the output) -> replacement input gradient or nil.
    public typealias BackwardHook = (Module, Tensor?, Tensor) throws -> Tensor?

    final class Hooks {
        var pre: [(id: Int, body: ForwardPreHook)] = []
        var forward: [(id: Int, body: ForwardHook)] = []
        var backward: [(id: Int, body: BackwardHook)] = []
        var next = 0
        var isEmpty: Bool { pre.isEmpty && forward.isEmpty && backward.isEmpty }
    }
    var hooks: Hooks?

    private func addHook(_ add: (Hooks, Int) -> Void, _ remove: @escaping (Hooks, Int) -> Void) -> HookHandle {
        let h = hooks ?? Hooks()
        hooks = h
        h.next += 1
        let id = h.next
        add(h, id)
        return HookHandle { [weak self] in
            guard let self, let h = self.hooks else { return }
            remove(h, id)
            if h.isEmpty { self.hooks = nil }
        }
    }

    /// Called before every forward with the input; a returned tensor replaces it.
    @discardableResult
    public func registerForwardPreHook(_ body: @escaping ForwardPreHook) -> HookHandle {
        addHook({ $0.pre.append(($1, body)) }, { h, id in h.pre.removeAll { $0.id == id } })
    }

    /// Called after every forward with the input and output; a returned tensor replaces the output.
    @discardableResult
    public func registerForwardHook(_ body: @escaping ForwardHook) -> HookHandle {
        addHook({ $0.forward.append(($1, body)) }, { h, id in h.forward.removeAll { $0.id == id } })
    }

    /// Called during backward with the gradients of the module's input and
    /// output (PyTorch's full backward hook: the whole module is one node);
    /// a returned tensor replaces the input's gradient. When the input needs no
    /// gradient the hook is called with nil when the output's gradient is known.
    @discardableResult
    public func registerBackwardHook(_ body: @escaping BackwardHook) -> HookHandle {
        addHook({ $0.backward.append(($1, body)) }, { h, id in h.backward.removeAll { $0.id == id } })
    }

    private func callWithHooks(_ x: Tensor, _ h: Hooks) throws -> Tensor {
        var input = x
        for (_, hook) in h.pre { if let r = try hook(self, input) { input = r } }
        let backward = h.backward.map(\.body)
        let tracked = !backward.isEmpty && GradMode.isEnabled
        // Identity nodes around the module so the backward hooks see its input and output gradients.
        if tracked && input.requiresGrad { input = try input.view(input.shape) }
        var y = try forward(input)
        try forwardHook?(y)
        for (_, hook) in h.forward { if let r = try hook(self, input, y) { y = r } }
        guard tracked, y.requiresGrad else { return y }
        y = try y.view(y.shape)
        final class Box { var gradOutput: Tensor? }
        let box = Box()
        if input.requiresGrad {
            try y.registerHook { g in box.gradOutput = g; return nil }
            try input.registerHook { g in
                guard let go = box.gradOutput else { return nil }
                var gi = g
                for hook in backward { if let r = try hook(self, gi, go) { gi = r } }
                return gi
            }
        } else {
            try y.registerHook { g in
                for hook in backward { _ = try hook(self, nil, g) }
                return nil
            }
        }
        return y
    }

    // MARK: registration (a name registered again is replaced in place)

    /// True when `other` is this module or one of its descendants.
    public func contains(_ other: Module) -> Bool {
        other === self || children.contains { $0.module.contains(other) }
    }

    public func register(module: Module, as name: String) {
        if let i = children.firstIndex(where: { $0.name == name }) { children[i].module = module } else { children.append((name, module)) }
    }

    public func register(parameter: Tensor, as name: String) {
        if let i = parameters.firstIndex(where: { $0.name == name }) { parameters[i].tensor = parameter } else { parameters.append((name, parameter)) }
    }

    public func register(buffer: Tensor, as name: String) {
        if let i = buffers.firstIndex(where: { $0.name == name }) { buffers[i].tensor = buffer } else { buffers.append((name, buffer)) }
    }

    public func removeEntry(named name: String) {
        children.removeAll { $0.name == name }
        parameters.removeAll { $0.name == name }
        buffers.removeAll { $0.name == name }
    }

    public func parameter(_ name: String) -> Tensor? { parameters.first { $0.name == name }?.tensor }
    public func buffer(_ name: String) -> Tensor? { buffers.first { $0.name == name }?.tensor }
    public func child(_ name: String) -> Module? { children.first { $0.name == name }?.module }

    // MARK: traversal

    /// Every module in the tree, depth first, with dotted names ("" for self).
    public func namedModules(prefix: String = "") -> [(name: String, module: Module)] {
        var out: [(String, Module)] = [(prefix, self)]
        for (n, m) in children { out += m.namedModules(prefix: prefix.isEmpty ? n : prefix + "." + n) }
        return out
    }

    /// Parameters with dotted names; a tensor shared by several modules is
    /// listed once, under its first name (as PyTorch does).
    public func namedParameters() -> [(name: String, tensor: Tensor)] {
        var seen = Set<ObjectIdentifier>()
        return namedModules().flatMap { (prefix, m) in m.parameters.map { (prefix.isEmpty ? $0.name : prefix + "." + $0.name, $0.tensor) } }
            .filter { seen.insert(ObjectIdentifier($0.1)).inserted }
    }

    public func namedBuffers() -> [(name: String, tensor: Tensor)] {
        namedModules().flatMap { (prefix, m) in m.buffers.map { (prefix.isEmpty ? $0.name : prefix + "." + $0.name, $0.tensor) } }
    }

    public func allParameters() -> [Tensor] { namedParameters().map(\.tensor) }

    // MARK: state

    /// Sets training mode on the whole tree; frozen subtrees stay in eval mode.
    public func train(_ on: Bool = true) {
        training = on && !frozen
        for (_, c) in children { c.train(on && !frozen) }
    }

    public func eval() { train(false) }

    /// Sets this module's flag alone (restoring saved per-module modes); a frozen module stays in eval mode.
    public func setTrainingFlag(_ on: Bool) { training = on && !frozen }

    /// True after `freeze()`: no parameter of the subtree requires grad and
    /// the subtree stays in eval mode whatever a parent's `train()` says.
    public private(set) var frozen = false

    /// Freezes the subtree: every parameter stops requiring grad, every
    /// module goes to eval mode (BatchNorm uses and keeps its running
    /// statistics, dropout is off) and stays there until `unfreeze()`.
    public func freeze() throws {
        for p in allParameters() { try p.requiresGrad_(false) }
        frozen = true
        train(false)
    }

    /// Undoes `freeze()`: parameters require grad again; the modules stay in
    /// eval mode until the next `train()`.
    public func unfreeze() throws {
        for (_, m) in namedModules() { m.frozen = false }
        for p in allParameters() { try p.requiresGrad_(true) }
    }

    public func zeroGrad() {
        for p in allParameters() { p.grad = nil }
    }

    public func requiresGrad_(_ flag: Bool) throws {
        for p in allParameters() { try p.requiresGrad_(flag) }
    }

    /// Parameters then buffers, by dotted name (detached views of the live tensors).
    public func stateDict() -> [(name: String, tensor: Tensor)] {
        (namedParameters() + namedBuffers()).map { ($0.name, $0.tensor.detach()) }
    }

    /// Copies values from `state` into parameters and buffers with the same
    /// names. With `strict`, missing or unexpected keys are errors; shapes must always match.
    public func loadStateDict(_ state: [(name: String, tensor: Tensor)], strict: Bool = true) throws {
        var own = [String: Tensor]()
        for (n, t) in namedParameters() + namedBuffers() { own[n] = t }
        let given = Set(state.map(\.name))
        if strict {
            let missing = own.keys.filter { !given.contains($0) }.sorted()
            let unexpected = state.map(\.name).filter { own[$0] == nil }
            if !missing.isEmpty || !unexpected.isEmpty {
                throw TensorError("state dict does not match: missing keys [\(missing.joined(separator: ", "))], unexpected keys [\(unexpected.joined(separator: ", "))]")
            }
        }
        try GradMode.noGrad {
            for (n, t) in state {
                guard let target = own[n] else { continue }
                guard target.shape == t.shape else {
                    throw TensorError("size mismatch for \(n): expected \(shapeString(target.shape)), got \(shapeString(t.shape))")
                }
                try target.copy_(t)
            }
        }
    }

    // MARK: copies and lookup

    /// A module of the same kind and settings, to be filled by `clone` (its
    /// own entries are cleared there). Every built-in module overrides it.
    open func emptyCopy() throws -> Module {
        throw TensorError("\(typeName) cannot be cloned (it does not implement emptyCopy)")
    }

    /// A deep copy: same structure, settings and training modes; parameters
    /// and buffers copied (parameters keep requires-grad); a tensor or module
    /// shared inside the tree stays shared in the copy. Hooks are not copied.
    public func clone() throws -> Module {
        var memo = [ObjectIdentifier: AnyObject]()
        return try clone(memo: &memo)
    }

    func clone(memo: inout [ObjectIdentifier: AnyObject]) throws -> Module {
        if let m = memo[ObjectIdentifier(self)] as? Module { return m }
        let copy = try emptyCopy()
        memo[ObjectIdentifier(self)] = copy
        copy.children = []; copy.parameters = []; copy.buffers = []
        copy.training = training
        copy.frozen = frozen
        func copyTensor(_ t: Tensor, _ memo: inout [ObjectIdentifier: AnyObject]) throws -> Tensor {
            if let c = memo[ObjectIdentifier(t)] as? Tensor { return c }
            let c = try t.detach().clone()
            if t.requiresGrad { _ = try c.requiresGrad_() }
            memo[ObjectIdentifier(t)] = c
            return c
        }
        for (n, p) in parameters { copy.parameters.append((n, try copyTensor(p, &memo))) }
        for (n, b) in buffers { copy.buffers.append((n, try copyTensor(b, &memo))) }
        for (n, c) in children { copy.children.append((n, try c.clone(memo: &memo))) }
        return copy
    }

    /// The submodule at a dotted name ("layer2.1.conv2"; "" is self).
    public func submodule(_ name: String) throws -> Module {
        if let m = namedModules().first(where: { $0.name == name })?.module { return m }
        let names = namedModules().map(\.name).filter { !$0.isEmpty }
        let shown = names.count > 40 ? names.prefix(40).joined(separator: ", ") + ", … (\(names.count) in all)" : names.joined(separator: ", ")
        throw TensorError("no submodule named '\(name)' (available: \(shown))")
    }

    /// A tree like PyTorch's `print(model)`.
    public var description: String {
        let head = typeName + "(" + extraDescription
        if children.isEmpty { return head + ")" }
        var lines = [head]
        for (n, m) in children {
            let sub = m.description.split(separator: "\n", omittingEmptySubsequences: false)
                .enumerated().map { $0.offset == 0 ? String($0.element) : "  " + $0.element }.joined(separator: "\n")
            lines.append("  (\(n)): " + sub)
        }
        return lines.joined(separator: "\n") + "\n)"
    }

    // MARK: features

    /// Named points inside this module's forward that are not a submodule's
    /// output (e.g. a residual block's sum before its ReLU, "sum"), readable
    /// by `features` as "<module path>.<point>".
    open var pointNames: [String] { [] }
    var pointHooks: [String: (Tensor) throws -> Void]?

    /// Marks the value `t` as the point `name` of this module's forward (see
    /// `pointNames`); returns `t` unchanged.
    public func tap(_ name: String, _ t: Tensor) throws -> Tensor {
        if let h = pointHooks?[name] { try h(t) }
        return t
    }

    /// True when any hook is registered on this module (its forward may call back into a script).
    public var hasHooks: Bool { hooks != nil || forwardHook != nil || pointHooks != nil }

    /// Every name `features` accepts: submodule paths and their points, in forward-definition order.
    public func featureNames() -> [String] { featureNames(prefix: "") }

    private func featureNames(prefix: String) -> [String] {
        // a module, its descendants, then its own points (they come at the end of its forward)
        (prefix.isEmpty ? [] : [prefix])
            + children.flatMap { $0.module.featureNames(prefix: prefix.isEmpty ? $0.name : prefix + "." + $0.name) }
            + pointNames.map { prefix.isEmpty ? $0 : prefix + "." + $0 }
    }

    private struct FeaturesCaptured: Error {}

    /// Runs forward and returns the outputs of the named submodules or points
    /// (and the final output).
    public func features(_ x: Tensor, at names: [String]) throws -> (output: Tensor, features: [String: Tensor]) {
        var captured = [String: Tensor]()
        let undo = try hookFeatures(names) { n, y in captured[n] = y }
        defer { undo() }
        let y = try self(x)
        return (y, captured)
    }

    /// The value at one feature name, running forward only as far as needed
    /// (the rest of the network is not evaluated: no BatchNorm statistics
    /// update after it, no graph recorded past it).
    public func feature(_ x: Tensor, at name: String) throws -> Tensor {
        var found: Tensor? = nil
        let undo = try hookFeatures([name]) { _, y in found = y; throw FeaturesCaptured() }
        defer { undo() }
        do { _ = try self(x) } catch is FeaturesCaptured {}
        guard let found else { throw TensorError("feature '\(name)' was not computed by the forward pass") }
        return found
    }

    /// Installs capture hooks at `names`; returns the function that removes them.
    private func hookFeatures(_ names: [String], _ capture: @escaping (String, Tensor) throws -> Void) throws -> () -> Void {
        let all = Dictionary(namedModules().map { ($0.name, $0.module) }, uniquingKeysWith: { a, _ in a })
        var undo = [() -> Void]()
        func rollback() { for u in undo.reversed() { u() } }
        for n in names {
            if let m = all[n] {
                let previous = m.forwardHook
                m.forwardHook = { y in try capture(n, y); try previous?(y) }
                undo.append { m.forwardHook = previous }
                continue
            }
            // "<module path>.<point>"
            let parts = n.split(separator: ".", omittingEmptySubsequences: false)
            let owner = parts.dropLast().joined(separator: "."), point = parts.last.map(String.init) ?? ""
            guard let m = all[owner], m.pointNames.contains(point) else {
                rollback()
                let valid = featureNames()
                let shown = valid.count > 60 ? valid.prefix(60).joined(separator: ", ") + ", … (\(valid.count) in all)" : valid.joined(separator: ", ")
                throw TensorError("no submodule named '\(n)' (available layers and points: \(shown))")
            }
            let previous = m.pointHooks?[point]
            m.pointHooks = (m.pointHooks ?? [:]).merging([point: { y in try capture(n, y); try previous?(y) }]) { _, b in b }
            undo.append {
                m.pointHooks?[point] = previous
                if m.pointHooks?.isEmpty == true { m.pointHooks = nil }
            }
        }
        return rollback
    }
}
