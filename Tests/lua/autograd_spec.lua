-- Autograd as a script sees it (API.md "Autograd"). Expected gradients are
-- closed forms worked out in the comments; gradcheck compares with finite
-- differences.
local parry = require("parry")

describe("autograd", function()
  it("accumulates gradients into leaves", function()
    local x = parry.tensor{1.0, 2.0, 3.0}:requires_grad_()
    assert.is_true(x.requires_grad)
    assert.is_true(x.is_leaf)
    local y = (x * x):sum()            -- dy/dx = 2x
    assert.equals("sum", y.grad_fn)
    assert.is_false(y.is_leaf)
    y:backward()
    assert.same({2, 4, 6}, x.grad:totable())
    local z = (x * 3):sum()
    z:backward()                       -- accumulates: 2x + 3
    assert.same({5, 7, 9}, x.grad:totable())
    x.grad = nil
    assert.is_nil(x.grad)
  end)

  it("backpropagates through broadcasting, matmul and log_softmax", function()
    -- loss = -log_softmax(x W + b)[1] summed over the batch; d loss / d b = sum over rows of (softmax - onehot(1))
    parry.manual_seed(0)
    local x = parry.randn(4, 3)
    local W = parry.randn(3, 5):requires_grad_()
    local b = parry.zeros(5):requires_grad_()
    local logits = x:matmul(W) + b
    local loss = -logits:log_softmax(2):select(2, 1):sum()
    loss:backward()
    local p = logits:detach():softmax(2)
    local expected = p:sum(1)
    expected[1] = expected[1] - 4
    assert.near(expected, b.grad, 1e-5)
    -- dW = x^T (softmax - onehot)
    local onehot = parry.zeros(4, 5)
    for i = 1, 4 do onehot[i][1] = 1 end
    assert.near(x:t():matmul(p - onehot), W.grad, 1e-5)
  end)

  it("returns input gradients with parry.grad without touching .grad", function()
    local x = parry.tensor{0.5, -1.0}:requires_grad_()
    local y = x:sigmoid():sum()
    local g = parry.grad(y, x)
    local s = x:detach():sigmoid()
    assert.near(s * (1 - s), g[1], 1e-6)
    assert.is_nil(x.grad)
    -- several outputs and inputs, grad_outputs for a non-scalar output
    local a = parry.tensor{1.0, 2.0}:requires_grad_()
    local out = a * a
    local gs = parry.grad({out}, {a, x}, {grad_outputs = {parry.tensor{1.0, 10.0}}, allow_unused = true})
    assert.same({2, 40}, gs[1]:totable())
    assert.is_nil(gs[2])
  end)

  it("computes second-order gradients with create_graph", function()
    -- f(x) = sum(x^3): f' = 3x^2, f'' along ones = 6x
    local x = parry.tensor{1.0, -2.0, 0.5}:requires_grad_()
    local g = parry.grad((x ^ 3):sum(), x, {create_graph = true})[1]
    assert.near({3, 12, 0.75}, g, 1e-5)
    local gg = parry.grad(g:sum(), x)[1]
    assert.near({6, -12, 3}, gg, 1e-5)
  end)

  it("stops recording inside no_grad and passes results through", function()
    local w = parry.ones(2):requires_grad_()
    local y, extra = parry.no_grad(function(k)
      assert.is_false(parry.is_grad_enabled())
      return w * k, "ok"
    end, 3)
    assert.is_true(parry.is_grad_enabled())
    assert.is_false(y.requires_grad)
    assert.equals("ok", extra)
    parry.no_grad(function() w:add_(1) end)   -- an optimizer-style update
    assert.same({2, 2}, w:totable())
    local ok, err = pcall(parry.no_grad, function() error("inner") end)
    assert.is_false(ok)
    assert.truthy(tostring(err):find("inner", 1, true))
    assert.is_true(parry.is_grad_enabled())
  end)

  it("detaches", function()
    local x = parry.ones(2):requires_grad_()
    local d = (x * 2):detach()
    assert.is_false(d.requires_grad)
    assert.is_nil(d.grad_fn)
  end)

  it("checks gradients by finite differences", function()
    parry.manual_seed(2)
    local ok, detail = parry.gradcheck(function(a, b) return (a:matmul(b)):tanh():softmax(2) end,
      {parry.randn(3, 4):requires_grad_(), parry.randn(4, 2):requires_grad_()})
    assert(ok, detail)
    -- a wrong gradient is caught: a custom op whose value is x^2 but whose graph says 3x
    local bad, msg = parry.gradcheck(function(x) return x * x:detach() + (x - x:detach()) end,
      {parry.tensor{1.0, 2.0}:requires_grad_()})
    assert.is_false(bad)
    assert.truthy(msg:find("analytic", 1, true))
  end)

  it("reports misuse clearly", function()
    local x = parry.ones(2):requires_grad_()
    assert.error(function() x:add_(1) end, "Tensor:add_: a leaf tensor that requires grad cannot be modified in place")
    assert.error(function() x[1] = 5 end, "Tensor[i]: a leaf tensor that requires grad")
    assert.error(function() (x * 2):backward() end, "grad can be implicitly created only for one-element outputs")
    assert.error(function() parry.ones(2):sum():backward() end, "does not require grad")
    assert.error(function() parry.tensor{1, 2}:requires_grad_() end, "only float32 tensors can require gradients")
    local y = (x * x):sum()
    y:backward()
    assert.error(function() y:backward() end, "backward through the graph a second time")
    local w = parry.ones(2)
    local z = (x * w):sum()
    w:mul_(2)
    assert.error(function() z:backward() end, "modified by an in-place operation")
    -- the fused conv and batch-norm ops read their inputs in backward too
    local conv, img = parry.nn.Conv2d(1, 2, 3), parry.randn(2, 1, 5, 5):requires_grad_()
    local c = conv(img):sum()
    parry.no_grad(function() conv.weight:mul_(2) end)
    assert.error(function() c:backward() end, "modified by an in-place operation")
    local bn, feats = parry.nn.BatchNorm2d(2), parry.randn(3, 2, 2, 2)
    local b = (bn(feats) * parry.randn(3, 2, 2, 2)):sum()
    parry.no_grad(function() bn.weight:mul_(2) end)
    assert.error(function() b:backward() end, "modified by an in-place operation")
    assert.error(function() parry.grad((x * 2):sum(), parry.ones(2)) end, "parry.grad: input 1 does not require grad")
    assert.error(function() parry.grad((x * 2):sum(), {x, parry.ones(1):requires_grad_()}) end, "was not used")
    assert.error(function() x.grad = parry.ones(3) end, "grad must have shape {2}")
    assert.error(function() parry.no_grad(5) end, "parry.no_grad: expected a function")
    assert.error(function() parry.gradcheck(function() return 1 end, {x}) end, "must return a tensor")
  end)
end)
