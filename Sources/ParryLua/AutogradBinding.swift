import CLua
import CLuaShim
import ParryCore

// Bindings of API.md "Autograd": requires_grad_, .grad, backward, detach,
// no_grad, grad, gradcheck. The engine is ParryCore's; this only translates.

/// Reads a tensor or a table of tensors.
private func tensorsArg(_ a: LuaArgs, _ i: Int32, _ what: String) throws -> [Tensor] {
    if let t = a.optTensor(i) { return [t] }
    guard a.type(i) == LUA_TTABLE else {
        throw a.fail("expected a tensor or a table of tensors for \(what) (argument \(i)), got \(a.typeName(i))")
    }
    return try a.tensorList(i, what)
}

let autogradFunctions: [(String, parry_SwiftFunction)] = [
    ("no_grad", { L in bind(L, "parry.no_grad") { a in
        guard a.type(1) == LUA_TFUNCTION else {
            throw a.fail("expected a function (argument 1), got \(a.typeName(1))")
        }
        let base = a.count - 1                          // results start above fn and its arguments
        let nargs = a.count - 1
        try GradMode.noGrad {
            try a.call(1, nresults: LUA_MULTRET) {
                for k in 0..<nargs { lua_pushvalue(a.L, 2 + k) }
                return nargs
            }
        }
        return lua_gettop(a.L) - base - 1
    } }),
    ("is_grad_enabled", { L in bind(L, "parry.is_grad_enabled") { a in
        lua_pushboolean(a.L, GradMode.isEnabled ? 1 : 0); return 1
    } }),
    ("grad", { L in bind(L, "parry.grad") { a in
        let outputs = try tensorsArg(a, 1, "outputs"), inputs = try tensorsArg(a, 2, "inputs")
        let o = try a.options(3, allowed: ["retain_graph", "create_graph", "grad_outputs", "allow_unused"])
        var seeds: [Tensor]? = nil
        if o.index != 0 {
            let j = a.rawField(o.index, "grad_outputs")
            defer { a.pop() }
            if !a.isNil(j) { seeds = try tensorsArg(a, j, "grad_outputs") }
        }
        let gs = try grad(outputs, inputs, gradOutputs: seeds, retainGraph: try o.bool("retain_graph"),
                          createGraph: try o.bool("create_graph") ?? false, allowUnused: try o.bool("allow_unused") ?? false)
        lua_createtable(a.L, Int32(clamping: gs.count), 0)
        for (k, g) in gs.enumerated() {
            if let g { pushTensor(a.L, g) } else { lua_pushnil(a.L) }
            lua_rawseti(a.L, -2, lua_Integer(k + 1))
        }
        return 1
    } }),
    ("gradcheck", { L in bind(L, "parry.gradcheck") { a in
        guard a.type(1) == LUA_TFUNCTION else {
            throw a.fail("expected a function (argument 1), got \(a.typeName(1))")
        }
        let inputs = try tensorsArg(a, 2, "inputs")
        let o = try a.options(3, allowed: ["eps", "atol", "rtol"])
        let r = try gradcheck({ xs in
            try a.call(1, nresults: 1) {
                for x in xs { pushTensor(a.L, x) }
                return Int32(xs.count)
            }
            defer { a.pop() }
            guard let t = a.optTensor(-1) else { throw a.fail("the function must return a tensor, got \(a.typeName(-1))") }
            return t
        }, inputs: inputs, eps: try o.number("eps") ?? 1e-3, atol: try o.number("atol") ?? 1e-3, rtol: try o.number("rtol") ?? 1e-2)
        lua_pushboolean(a.L, r.passed ? 1 : 0)
        pushString(a.L, String(format: "max error %.3g at %@", r.maxError, r.worst))
        return 2
    } }),
]

let autogradMethods: [(String, parry_SwiftFunction)] = [
    ("requires_grad_", { L in bind(L, "Tensor:requires_grad_") { a in
        try a.tensor(1).requiresGrad_(try a.optBool(2, "requires_grad", true))
        lua_pushvalue(a.L, 1); return 1
    } }),
    ("detach", { L in bind(L, "Tensor:detach") { a in a.push(try a.tensor(1).detach()) } }),
    ("backward", { L in bind(L, "Tensor:backward") { a in
        let t = try a.tensor(1)
        let gradient = a.optTensor(2)
        if gradient == nil && !a.isNil(2) && a.type(2) != LUA_TTABLE {
            throw a.fail("expected a tensor for gradient (argument 2), got \(a.typeName(2))")
        }
        let o = try a.options(gradient == nil && a.type(2) == LUA_TTABLE ? 2 : 3, allowed: ["retain_graph", "create_graph"])
        let create = try o.bool("create_graph") ?? false
        try t.backward(gradient, retainGraph: try o.bool("retain_graph") ?? create, createGraph: create)
        return 0
    } }),
]

/// `t.grad`, `t.requires_grad`, `t.is_leaf`, `t.grad_fn` (the op's name).
func pushTensorField(_ a: LuaArgs, _ t: Tensor, _ key: String) -> Int32 {
    switch key {
    case "requires_grad": lua_pushboolean(a.L, t.requiresGrad ? 1 : 0)
    case "is_leaf": lua_pushboolean(a.L, t.isLeaf ? 1 : 0)
    case "grad": if let g = t.grad { pushTensor(a.L, g) } else { lua_pushnil(a.L) }
    case "grad_fn": if let n = t.gradFn { pushString(a.L, n.name) } else { lua_pushnil(a.L) }
    default: lua_pushnil(a.L)
    }
    return 1
}

/// `t.grad = g | nil`, `t.requires_grad = bool`.
func setTensorField(_ a: LuaArgs, _ t: Tensor, _ key: String) throws {
    switch key {
    case "grad":
        if a.isNil(3) { t.grad = nil; return }
        let g = try a.tensor(3, "grad")
        guard g.shape == t.shape, g.dtype == t.dtype else {
            throw a.fail("grad must have shape \(shapeString(t.shape)) and dtype \(t.dtype.rawValue), got \(shapeString(g.shape)) \(g.dtype.rawValue)")
        }
        t.grad = g
    case "requires_grad":
        try t.requiresGrad_(try a.optBool(3, "requires_grad", false))
    default:
        throw a.fail("cannot assign field '\(key)' of a tensor")
    }
}
