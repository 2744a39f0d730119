-- DVERGE, ADP/GAL, transfer attacks and hooks from Lua (issue 15). The
-- algorithms' own properties are tested in Swift (EnsembleTests); these specs
-- check the bindings: hooks call back into Lua, options reach Swift, bad
-- input is a clear error at the caller's line.
local parry = require("parry")
local nn = parry.nn

local function tiny(classes, leaky)
  return parry.models.resnet{depth = 8, width = 4, in_channels = 1, classes = classes or 3, leaky_relu = leaky}
end

local function data(n)
  local g = parry.Generator(7)
  return parry.rand(n, 1, 8, 8, {generator = g}), parry.randint(1, 3, {n}, {generator = g})
end

describe("gradient and module hooks", function()
  it("run in registration order, replace gradients and stop after remove()", function()
    local x = parry.tensor({1.0, 2.0, 3.0}):requires_grad_()
    local h = x * 2
    local log = {}
    local first = h:register_hook(function(g) log[#log + 1] = "h1 " .. g:sum():item(); return g * 10 end)
    h:register_hook(function(g) log[#log + 1] = "h2 " .. g:sum():item() end)
    local y = (h * h):sum()
    y:backward({retain_graph = true})
    -- dΣh²/dh = 2h = {4, 8, 12} (sum 24); hook 1 scales by 10; x.grad = 2 · 10 · 2h
    assert.same({"h1 24.0", "h2 240.0"}, log)
    assert.same({80, 160, 240}, x.grad:totable())
    first:remove(); first:remove()
    x.grad = nil; log = {}
    y:backward()
    assert.same({"h2 24.0"}, log)
    assert.same({8, 16, 24}, x.grad:totable())
  end)

  it("fire pre-forward, forward, then backward on built-in and Lua-defined modules", function()
    local log = {}
    local lin = nn.Linear(2, 2)
    lin:register_forward_pre_hook(function(m, x) log[#log + 1] = "pre " .. m:type(); return x * 2 end)
    lin:register_forward_hook(function(m, x, y) log[#log + 1] = "forward " .. x:sum():item() end)
    local bh = lin:register_full_backward_hook(function(m, gi, go)
      log[#log + 1] = "backward " .. tostring(gi ~= nil) .. " " .. go:size(2)
      return gi * 0
    end)
    local x = parry.ones(1, 2):requires_grad_()
    lin(x):sum():backward()
    assert.same({"pre Linear", "forward 4.0", "backward true 2"}, log)
    assert.same({{0, 0}}, x.grad:totable())
    bh:remove()

    local Block = nn.Module:extend("Block")
    function Block:init() self.fc = nn.Linear(2, 2) end
    function Block:forward(z) return self.fc(z) end
    local b = Block()
    local h = b:register_forward_hook(function(m, z, y) return y * 0 end)
    assert.same({{0, 0}}, b(parry.ones(1, 2)):abs():totable())
    h:remove()
    assert.is_true(b(parry.ones(1, 2)):abs():sum():item() > 0)
  end)

  it("report bad hooks at the caller", function()
    local t = parry.ones(2):requires_grad_()
    assert.error_matches(function() t:register_hook(3) end, "Tensor:register_hook: expected a function")
    assert.error_matches(function() parry.ones(2):register_hook(function() end) end, "does not require grad")
    local y = t * 1
    y:register_hook(function() return "no" end)
    assert.error_matches(function() y:sum():backward() end, "must return a tensor or nil, got string")
    local z = t * 1
    z:register_hook(function() error("boom") end)
    assert.error_matches(function() z:sum():backward() end, "ensembles_spec.lua:%d+: boom")
  end)
end)

describe("feature taps", function()
  it("lists ResNet-20's 20 pre-activation taps and reads the residual sum", function()
    local net = parry.models.resnet20{in_channels = 1}
    local taps = parry.models.feature_layers(net)
    assert.equals(20, #taps)
    assert.same({"bn1", "layer1.1.bn1", "layer1.1.sum"}, {taps[1], taps[2], taps[3]})
    assert.equals("fc", taps[20])
    net:eval()
    local x = parry.rand(2, 1, 16, 16)
    local f = net:features(x, "layer1.2.sum")
    local parts = net:features(x, {"layer1.2.bn2", "layer1.1"})
    -- the block's sum is its residual branch plus its input (the previous block's output)
    assert.is_true((f - (parts["layer1.2.bn2"] + parts["layer1.1"])):abs():max():item() < 1e-5)
    assert.same({"1", "4", "8", "10"}, parry.models.feature_layers(parry.models.small_cnn()))
  end)

  it("distils inside the ball and names the valid taps on a wrong layer", function()
    local net = tiny()
    local x, _ = data(6)
    local xs = x:index_select(1, parry.tensor({6, 5, 4, 3, 2, 1}))
    local xd = parry.attacks.feature_distill(net, "layer2.1.sum", x, xs, {eps = 0.05, alpha = 0.01, steps = 5})
    assert.is_true((xd - x):abs():max():item() <= 0.05 + 1e-6)
    assert.error_matches(function() parry.attacks.feature_distill(net, "layer9", x, xs) end,
      "feature_distill: unknown layer 'layer9' %(valid taps: bn1, layer1.1.bn1")
    assert.error_matches(function() parry.attacks.feature_distill(net, "fc", x, xs, {eps = -0.1}) end, "eps must be a non%-negative")
    assert.error_matches(function() parry.attacks.feature_distill(net, "fc", x, xs:narrow(1, 1, 3)) end, "x_s must have x's shape")
  end)
end)

describe("DVERGE and the baselines", function()
  it("train every member and report one record per epoch", function()
    parry.manual_seed(3)
    local x, y = data(32)
    local models = {tiny(), tiny(), tiny()}
    local before = models[2].fc.weight:clone()
    local seen = {}
    local curve = parry.robust.dverge{models = models, train = {x, y}, epochs = 2, batch_size = 16, seed = 1, steps = 2,
      on_epoch = function(r) seen[#seen + 1] = r.layer_name end}
    assert.equals(2, #curve)
    assert.equals(3, #curve[1].losses)
    assert.same({curve[1].layer_name, curve[2].layer_name}, seen)
    assert.is_true((models[2].fc.weight - before):abs():max():item() > 0)
    for _, loss in ipairs{"ce", "adp"} do
      local r = parry.robust.ensemble_train{models = {tiny(), tiny()}, train = {x, y}, loss = loss, epochs = 1, batch_size = 16}
      assert.is_true(r[1].loss == r[1].loss and r[1].loss > 0)
    end
    local g = parry.robust.ensemble_train{models = {tiny(3, true), tiny(3, true)}, train = {x, y}, loss = "gal", epochs = 1, batch_size = 16}
    assert.equals(1, #g[1].losses)
  end)

  it("rejects bad ensembles with clear errors", function()
    local x, y = data(8)
    assert.error_matches(function() parry.robust.dverge{models = {tiny()}, train = {x, y}} end, "at least 2 modules")
    assert.error_matches(function() parry.robust.dverge{models = {tiny(), tiny()}, train = {x, y}, layer = "nope"} end,
      "dverge: unknown layer 'nope' %(valid taps: bn1")
    assert.error_matches(function() parry.robust.dverge{models = {tiny(), tiny(5)}, train = {x, y}} end, "different output sizes")
    assert.error_matches(function() parry.robust.dverge{models = {tiny(), tiny()}, train = {x, y}, eps = -1} end, "eps must be a non%-negative")
    assert.error_matches(function() parry.robust.ensemble_train{models = {tiny(), tiny()}, train = {x, y}, loss = "nope"} end,
      "unknown loss 'nope'")
    local m = tiny()
    assert.error_matches(function() parry.robust.ensemble_train{models = {m, m}, train = {x, y}} end, "distinct modules")
  end)
end)

describe("transfer attacks", function()
  it("sgm with gamma 1 is mifgsm bit for bit", function()
    local net = tiny()
    net:eval()
    local x, y = data(4)
    local a = parry.attacks.mifgsm(net, x, y, {eps = 0.1, steps = 4, random_start = true, seed = 2})
    local b = parry.attacks.sgm(net, x, y, {eps = 0.1, steps = 4, random_start = true, seed = 2, gamma = 1})
    assert.equals(0, (a - b):abs():max():item())
    local c = parry.attacks.sgm(net, x, y, {eps = 0.1, steps = 4, random_start = true, seed = 2, gamma = 0.2})
    assert.is_true((a - c):abs():max():item() > 0)
    assert.error_matches(function() parry.attacks.sgm(function(z) return net(z) end, x, y, {eps = 0.1}) end, "sgm needs a module")
    local d = parry.attacks.mdi2fgsm(net, x, y, {eps = 0.1, steps = 3, p = 1, seed = 1})
    assert.is_true((d - x):abs():max():item() <= 0.1 + 1e-6)
  end)

  it("transfer_eval's all row is at most every row, and transferability's diagonal is white-box", function()
    parry.manual_seed(4)
    local x, y = data(24)
    local source, targets = tiny(), {a = tiny(), b = tiny()}
    local r = parry.robust.transfer_eval{sources = {source}, targets = targets, x = x, y = y, eps = {0.05, 0.1}, seed = 1,
      attacks = {{"mifgsm", {random_start = true, versions = 2, steps = 3}}, {"sgm", {steps = 3}}}}
    assert.same({"a", "b"}, r.targets)
    assert.equals(2 * 3, #r.rows)                 -- 2 ε × (2 versions + 1)
    for k, all in ipairs(r.all) do
      for _, row in ipairs(r.rows) do
        if row.eps == all.eps then
          for name, acc in pairs(all.accuracy) do assert.is_true(acc <= row.accuracy[name] + 1e-12) end
        end
      end
      assert.equals(({0.05, 0.1})[k], all.eps)
    end
    local t = parry.robust.transferability({tiny(), tiny()}, x, y, {eps = 0.1, steps = 3, restarts = 1})
    assert.equals(3, #t.matrix[1])
    assert.error_matches(function() parry.robust.transferability({tiny()}, x, y) end, "at least 2 models")
    assert.error_matches(function() parry.robust.transfer_eval{sources = {source}, targets = targets, x = x, y = y, eps = {0.1},
      attacks = {"nope"}} end, "unknown transfer attack 'nope'")
  end)
end)
