-- RiFT from Lua: parry.robust.mrc and parry.robust.rift on a tiny model
-- (the algorithms' properties are tested in Swift, RiFTTests.swift).
local parry = require("parry")

local function setup()
  parry.manual_seed(5)
  local ds = parry.data.synthetic_classification{n = 160, dim = 8, classes = 3, seed = 2}
  local train, val = ds:subset(parry.arange(1, 120)), ds:subset(parry.arange(121, 160))
  local net = parry.nn.Sequential{parry.nn.Linear(8, 16), parry.nn.ReLU(), parry.nn.Linear(16, 3)}
  local opt = parry.optim.SGD(net, {lr = 0.1, momentum = 0.9})
  for _ = 1, 5 do require("parry.train").epoch(net, train, opt, {batch_size = 32}) end
  return net, train, val
end

describe("parry.robust.mrc", function()
  it("ranks every Linear weight, lowest first, and leaves the model as it was", function()
    local net, _, val = setup()
    local before = net:state_dict()
    local copies = {}
    for k, t in pairs(before) do copies[k] = t:clone() end
    local t = parry.robust.mrc(net, val, {attack = {eps = 0.2, steps = 3}, epochs = 2, batch_size = 16, seed = 1})
    assert.equals(2, #t)
    assert.truthy(t[1].mrc <= t[2].mrc)
    for _, r in ipairs(t) do
      assert.truthy(r.mrc >= 0)
      assert.near(r.loss_max - r.loss0, r.mrc, 1e-12)
      assert.truthy(r.robust_acc_worst <= r.robust_acc0 + 1e-12)
    end
    for k, t0 in pairs(copies) do assert.equals(t0, net:state_dict()[k], k) end
    local zero = parry.robust.mrc(net, val, {attack = {eps = 0.2, steps = 3}, epochs = 2, eps = 0, modules = {"3"}})
    assert.equals(1, #zero); assert.equals("3", zero[1].module); assert.equals(0, zero[1].mrc)
  end)

  it("rejects bad input with the function's name", function()
    local net, _, val = setup()
    assert.error(function() parry.robust.mrc(net, val, {epochs = 1}) end, "parry.robust.mrc: missing option attack.eps")
    assert.error(function() parry.robust.mrc(net, val, {attack = {eps = 0.1}, modules = {"9"}}) end, "no submodule named '9'")
    assert.error(function() parry.robust.mrc(net, val, {attack = {eps = 0.1}, modules = {"2"}}) end, "module '2' has no weight")
    assert.error(function() parry.robust.mrc(net, 5) end, "parry.robust.mrc: data must be a dataset or {x, y}")
    assert.error(function() parry.robust.mrc(print, val) end, "parry.robust.mrc: expected a module")
    assert.error(function() parry.robust.mrc(net, val, {attack = {eps = 0.1, bogus = 1}}) end, "attack: ")
  end)
end)

describe("parry.robust.rift", function()
  it("fine-tunes a clone and returns the curve, the interpolation table and α", function()
    local net, train, val = setup()
    local w = net:get("3").weight:clone()
    local epochs = {}
    local r = parry.robust.rift{model = net, train = train, val = val, eval_attack = {eps = 0.1, steps = 3},
      mrc = {epochs = 2}, finetune = {epochs = 2, lr = 0.01}, alphas = {0, 0.5, 1}, seed = 3,
      on_epoch = function(e, loss, acc) epochs[#epochs + 1] = {e, loss, acc} end}
    assert.equals(2, #r.mrc)
    assert.equals(r.mrc[1].module, r.module)
    assert.equals(2, #r.finetune_curve); assert.equals(2, #epochs)
    assert.equals(3, #r.interpolation)
    assert.truthy(r.alpha == 0 or r.alpha == 0.5 or r.alpha == 1)
    assert.equals(w, net:get("3").weight)                 -- the model given is not changed
    -- α = 0 is θ_AT: its clean accuracy is the original model's
    net:eval()
    local acc = net(val.x):argmax(2):eq(val.y):float():mean():item()
    assert.near(acc, r.interpolation[1].clean, 1e-12)
    local named = parry.robust.rift{model = net, train = train, val = val, eval_attack = {eps = 0.1, steps = 1},
      module = "1", finetune = {epochs = 1}, alphas = {0, 1}}
    assert.is_nil(named.mrc); assert.equals("1", named.module)
  end)

  it("rejects bad input with the function's name", function()
    local net, train, val = setup()
    local base = {model = net, train = train, val = val, eval_attack = {eps = 0.1, steps = 1}, module = "1", finetune = {epochs = 1}}
    local function with(k, v) local t = {}; for a, b in pairs(base) do t[a] = b end; t[k] = v; return t end
    assert.error(function() parry.robust.rift(with("alphas", {0, 1.5})) end, "parry.robust.rift: alphas must be in [0, 1], got 1.5")
    assert.error(function() parry.robust.rift(with("module", "7")) end, "parry.robust.rift: no submodule named '7'")
    assert.error(function() parry.robust.rift(with("eval_attack", {})) end, "missing option eval_attack.eps")
    assert.error(function() parry.robust.rift(with("finetune", {transform = 5})) end, "finetune.transform must be a function")
    assert.error(function() parry.robust.rift(with("finetune", {epochs = 0})) end, "epochs and batch_size ≥ 1")
    assert.error(function() parry.robust.rift(with("val", 3)) end, "parry.robust.rift: val must be a dataset or {x, y}")
    assert.error(function() parry.robust.rift(5) end, "parry.robust.rift: expected a table")
  end)
end)
