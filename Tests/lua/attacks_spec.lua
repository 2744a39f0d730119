-- parry.attacks and parry.robust as scripts use them, on tiny models and
-- synthetic data (the algorithms' properties are tested in Swift).
local parry = require("parry")
local nn, A = parry.nn, parry.attacks

local function setup(n)
  parry.manual_seed(3)
  local net = nn.Sequential{nn.Flatten(), nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 3)}
  local x = parry.rand(n or 12, 1, 2, 2)
  local y = parry.no_grad(function() return net(x):argmax(2) end)     -- labels the model gets right
  return net, x, y
end

local function max_dev(a, b) return (a - b):abs():max():item() end

describe("attacks", function()
  it("stay in the ball and bounds, accept modules and functions, restore train mode", function()
    local net, x, y = setup()
    net:train()
    local as_function = function(v) return net(v) end
    local runs = {
      function(m) return A.fgsm(m, x, y, {eps = 0.1}) end,
      function(m) return A.pgd(m, x, y, {eps = 0.1, alpha = 0.02, steps = 5, seed = 1}) end,
      function(m) return A.pgd(m, x, y, {eps = 0.1, norm = "l2", steps = 5, restarts = 2, seed = 1}) end,
      function(m) return A.mifgsm(m, x, y, {eps = 0.1, steps = 5}) end,
      function(m) return A.apgd(m, x, y, {eps = 0.1, steps = 10, seed = 1}) end,
      function(m) return A.apgd(m, x, y, {eps = 0.1, steps = 10, loss = "dlr", targeted = true, n_target_classes = 2}) end,
      function(m) return A.square(m, x, y, {eps = 0.1, queries = 50, seed = 1}) end,
    }
    for i, run in ipairs(runs) do
      for _, m in ipairs{net, as_function} do
        local adv = run(m)
        assert.same(x:shape(), adv:shape())
        assert(max_dev(adv, x) <= 0.1 + 1e-6 or i == 3, "attack " .. i .. " left the L∞ ball")
        assert(adv:min():item() >= 0 and adv:max():item() <= 1, "attack " .. i .. " left the bounds")
      end
    end
    assert.is_true(net:is_training())
    local l2 = A.pgd(net, x, y, {eps = 0.2, norm = "l2", steps = 5})
    assert.truthy(((l2 - x):reshape(12, -1):norm(2, 2)):max():item() <= 0.2 + 1e-5)
    local cw = A.cw_l2(net, x, y, {c = 5, steps = 20, lr = 0.05})
    assert.same(x:shape(), cw:shape())
  end)

  it("return the input for eps = 0 and reproduce with the same seed", function()
    local net, x, y = setup()
    assert.equals(x, A.pgd(net, x, y, {eps = 0, steps = 3}))
    assert.equals(x, A.fgsm(net, x, y, {eps = 0}))
    local a = A.pgd(net, x, y, {eps = 0.1, steps = 3, seed = 7})
    assert.equals(a, A.pgd(net, x, y, {eps = 0.1, steps = 3, seed = 7}))
    parry.manual_seed(5); local b = A.square(net, x, y, {eps = 0.1, queries = 20})
    parry.manual_seed(5); assert.equals(b, A.square(net, x, y, {eps = 0.1, queries = 20}))
  end)

  it("take custom per-sample losses with 1-based labels", function()
    local net, x, y = setup()
    local seen
    local adv = A.pgd(net, x, y, {eps = 0.05, steps = 2, random_start = false, loss = function(logits, labels)
      seen = labels
      return parry.losses.cross_entropy(logits, labels, {reduction = "none"})
    end})
    assert.equals(y, seen)
    assert.equals(adv, A.pgd(net, x, y, {eps = 0.05, steps = 2, random_start = false}))
  end)

  it("evaluate and autoattack report accuracies", function()
    local net, x, y = setup(20)
    local r = A.evaluate(net, x, y, {eps = 0.3, batch_size = 7, progress = false,
      attacks = {"fgsm", {"pgd", {steps = 5, alpha = 0.1}}, function(m, xb, yb) return xb end}})
    assert.equals(1, r.clean)
    assert.same({"fgsm", "pgd", "attack 3"}, r.order)
    assert.equals(1, r.robust["attack 3"])                    -- the identity "attack" fools nobody
    assert.truthy(r.robust.pgd <= r.clean and r.robust.fgsm <= r.clean)
    assert.truthy(r.worst_case <= r.robust.pgd)
    assert.same({20}, r.success.pgd:shape())
    assert.truthy(A.report(r):find("worst case", 1, true))
    local adv, log = A.autoattack(net, x, y, {eps = 0.3, version = "fast", seed = 1})
    assert.same({"apgd-ce", "apgd-t", "square"}, {log[1].attack, log[2].attack, log[3].attack})
    local acc = parry.no_grad(function() return net(adv):argmax(2):eq(y):float():mean():item() end)
    assert.near(acc, log[3].robust_accuracy, 1e-6)
    -- softmax outputs are flagged
    local probs = function(v) return net(v):softmax(2) end
    local w = A.evaluate(probs, x, y, {eps = 0.1, attacks = {"fgsm"}, progress = false}).warnings
    assert.truthy(table.concat(w, " "):find("probabilities", 1, true))
  end)

  it("reject bad input", function()
    local net, x, y = setup()
    assert.error(function() A.pgd(net, x, y, {eps = -1}) end, "parry.attacks.pgd: eps must be a non-negative number")
    assert.error(function() A.pgd(net, x, y, {eps = 0.1, norm = "l3"}) end, "unknown norm 'l3'")
    assert.error(function() A.pgd(net, x, y + 5, {eps = 0.1}) end, "is outside 1..3")
    assert.error(function() A.pgd(net, x, y) end, "missing option eps")
    assert.error(function() A.pgd(net, x, y, {eps = 0.1, loss = "hinge"}) end, "unknown loss 'hinge'")
    assert.error(function() A.pgd(function(v) return v:sum() end, x, y, {eps = 0.1}) end, "the model must return N×C logits")
    assert.error(function() A.pgd(42, x, y, {eps = 0.1}) end, "expected a model")
    assert.error(function() A.pgd(function() error("boom") end, x, y, {eps = 0.1}) end, "boom")
    assert.error(function() A.evaluate(net, x, y, {eps = 0.1, attacks = {"deepfool"}}) end, "unknown attack 'deepfool'")
    assert.error(function() A.square(net, x:reshape(12, 4), y, {eps = 0.1}) end, "square expects N×C×H×W images")
    assert.error(function() A.pgd(net, x, y, {eps = 0.1, stpes = 3}) end, "unknown option 'stpes'")
  end)
end)

describe("robust training", function()
  it("gives differentiable PGD-AT and TRADES losses and trains with any loss", function()
    local net, x, y = setup(16)
    local l = parry.robust.pgd_loss(net, x, y, {eps = 0.1, alpha = 0.05, steps = 3})
    l:backward()
    assert.truthy(net[2].weight.grad)
    net:zero_grad()
    local t = parry.losses.trades(net, x, y, {eps = 0.1, alpha = 0.05, steps = 3, beta = 6})
    t:backward()
    assert.truthy(net[4].weight.grad)
    assert.truthy(t:item() >= parry.losses.cross_entropy(net(x), y):item() - 1e-6)   -- KL term is non-negative
    local ds = parry.data.synthetic_classification{n = 64, dim = 4, classes = 3, seed = 2}
    local mlp = parry.models.mlp{4, 8, 3}
    local opt = parry.optim.SGD(mlp:parameters(), {lr = 0.1})
    local epochs = {}
    for _, loss in ipairs{"pgd", "trades", "ce", function(m, xb, yb) return parry.losses.cross_entropy(m(xb), yb) end} do
      parry.robust.train(mlp, ds, opt, {loss = loss, eps = 0.1, steps = 2, epochs = 1, batch_size = 32,
        on_epoch = function(e, mean) epochs[#epochs + 1] = mean end})
    end
    assert.equals(4, #epochs)
    assert.error(function() parry.robust.train(mlp, ds, opt, {loss = "pgd"}) end, "parry.robust.train: missing option eps")
  end)
end)

describe("smooth adversarial comp-sum loss", function()
  it("reduces to comp-sum for nu = 0 or eps = 0 and is differentiable", function()
    local net, x, y = setup(10)
    local base = parry.losses.comp_sum(net(x), y, {tau = 0.5}):item()
    assert.near(base, parry.losses.adv_comp_sum(net, x, y, {tau = 0.5, nu = 0, eps = 0.1}):item(), 1e-6)
    assert.near(base, parry.losses.adv_comp_sum(net, x, y, {tau = 0.5, nu = 3, eps = 0, steps = 3}):item(), 1e-6)
    local l = parry.losses.adv_comp_sum(net, x, y, {tau = 1.5, nu = 2, eps = 0.2, alpha = 0.05, steps = 5, seed = 1})
    -- the regularizer ν·‖h(x') − h(x)‖₂ is non-negative, and here the inner maximization found a positive one
    assert.truthy(l:item() > parry.losses.comp_sum(net(x), y, {tau = 1.5}):item() + 1e-4)
    l:backward()
    assert.truthy(net[2].weight.grad)
    local mlp = parry.models.mlp{4, 8, 3}
    local trained = parry.robust.train(mlp, parry.data.synthetic_classification{n = 32, dim = 4, classes = 3},
      parry.optim.SGD(mlp:parameters(), {lr = 0.1}), {loss = function(m, xb, yb)
        return parry.losses.adv_comp_sum(m, xb, yb, {tau = 0.5, nu = 1, eps = 0.1, steps = 2})
      end})
    assert.truthy(trained == trained)   -- a number, not NaN
    assert.error(function() parry.losses.adv_comp_sum(net, x, y, {nu = 1, eps = 0.1}) end, "parry.losses.adv_comp_sum: missing option tau")
  end)

  it("the inner maximization does not decrease the logit distance from its start", function()
    local net, x, y = setup(10)
    local function reg(steps)
      local l = parry.losses.adv_comp_sum(net, x, y, {tau = 1, nu = 1, eps = 0.3, alpha = 0.05, steps = steps, seed = 4})
      return l:item() - parry.losses.cross_entropy(net(x), y):item()
    end
    local start, after = reg(0), reg(8)
    assert.truthy(start >= 0)
    assert.truthy(after >= start, string.format("%.5f < %.5f", after, start))
  end)
end)

describe("ADV-COMP-SUM forms", function()
  it("keeps the logits form bit for bit and defaults to the margins form", function()
    -- Values printed by parry before the margins form existed (same seeds, this model and data).
    parry.manual_seed(11)
    local net = parry.nn.Sequential{parry.nn.Flatten(), parry.nn.Linear(16, 8), parry.nn.Tanh(), parry.nn.Linear(8, 3)}
    local x, y = parry.rand(6, 1, 4, 4), parry.randint(1, 3, 6)
    local recorded = {[0.5] = 1.5838741064071655, [1] = 1.2093342542648315, [1.5] = 0.95152443647384644}
    for tau, v in pairs(recorded) do
      local l = parry.losses.adv_comp_sum(net, x, y, {tau = tau, nu = 0.7, eps = 0.1, steps = 3, seed = 5, regularizer = "logits"})
      assert.equals(v, l:item(), "tau " .. tau)
      local m = parry.losses.adv_comp_sum(net, x, y, {tau = tau, nu = 0.7, eps = 0.1, steps = 3, seed = 5})
      assert.truthy(m:item() ~= v, "the default is the margins form")
      assert.equals(m:item(), parry.losses.adv_comp_sum(net, x, y, {tau = tau, nu = 0.7, eps = 0.1, steps = 3, seed = 5, regularizer = "margins"}):item())
    end
    -- rho divides the scores of the comp-sum term
    local l = parry.losses.adv_comp_sum(net, x, y, {tau = 0.5, nu = 0, eps = 0.1, rho = 4})
    assert.near(parry.losses.comp_sum(net(x) / 4, y, {tau = 0.5}):item(), l:item(), 1e-7)
    assert.error(function() parry.losses.adv_comp_sum(net, x, y, {tau = 1, eps = 0.1, regularizer = "norms"}) end,
      "parry.losses.adv_comp_sum: regularizer must be \"margins\" or \"logits\", got 'norms'")
    assert.error(function() parry.losses.adv_comp_sum(net, x, y, {tau = 1, eps = 0.1, rho = -1}) end, "rho must be a positive number")
  end)
end)

describe("robust early stopping", function()
  it("restores the weights of the best validation epoch and returns one curve entry per evaluation", function()
    parry.manual_seed(4)
    local ds = parry.data.synthetic_classification{n = 200, dim = 6, classes = 3, seed = 1}
    local train, val = table.unpack(ds:split({0.8, 0.2}, {seed = 2}))
    local net = parry.nn.Sequential{parry.nn.Linear(6, 12), parry.nn.ReLU(), parry.nn.Linear(12, 3)}
    local opt = parry.optim.SGD(net, {lr = 0.1, momentum = 0.9})
    -- Learn for three epochs, then climb the loss for three: the best epoch is not the last.
    local epoch = 0
    local states = {}
    local function loss(m, x, y)
      local l = parry.losses.cross_entropy(m(x), y)
      return epoch <= 2 and l or -l
    end
    local last, curve = parry.robust.train(net, train, opt, {loss = loss, epochs = 6, batch_size = 32, eps = 0.05,
      validate = {data = val, attack = {"pgd", steps = 3}},
      on_epoch = function(e) epoch = e; states[e] = net:get("3").weight:clone() end})
    -- on_epoch runs after epoch e's training; `epoch` must be the next one's number during it
    assert.equals(6, #curve)
    assert.truthy(type(last) == "number")
    local best, at = -1, nil
    for _, c in ipairs(curve) do
      if c.robust > best then best, at = c.robust, c.epoch end
      assert.truthy(c.clean >= c.robust)
    end
    assert.truthy(at < 6, "the best epoch is not the last")
    assert.truthy(curve[6].robust < best)
    assert.equals(states[at], net:get("3").weight)
    -- every = 2 evaluates at epochs 2, 4, 6
    epoch = 0
    local _, c2 = parry.robust.train(net, train, opt, {loss = loss, epochs = 6, eps = 0.05, validate = {data = val, every = 2, attack = {"pgd", steps = 1}}})
    assert.same({2, 4, 6}, {c2[1].epoch, c2[2].epoch, c2[3].epoch})
    -- patience 1: training stops at the first evaluation without improvement
    parry.manual_seed(4)
    local fresh = parry.nn.Sequential{parry.nn.Linear(6, 12), parry.nn.ReLU(), parry.nn.Linear(12, 3)}
    epoch = 0
    local _, c3 = parry.robust.train(fresh, train, parry.optim.SGD(fresh, {lr = 0.1, momentum = 0.9}), {loss = loss, epochs = 6,
      batch_size = 32, eps = 0.05, validate = {data = val, attack = {"pgd", steps = 3}, patience = 1}, on_epoch = function(e) epoch = e end})
    assert.truthy(#c3 < 6)
    assert.is_false(c3[#c3].best)
    for i = 1, #c3 - 1 do assert.is_true(c3[i].best) end
    assert.error(function() parry.robust.train(net, train, opt, {loss = "ce", validate = {data = val}}) end, "validate.attack needs eps")
    assert.error(function() parry.robust.train(net, train, opt, {loss = "ce", eps = 0.1, validate = {data = val, bogus = 1}}) end, "validate: unknown option 'bogus'")
  end)

  it("splits datasets reproducibly with a seed", function()
    local ds = parry.data.synthetic_classification{n = 50, dim = 2, classes = 2, seed = 1}
    local a1, b1 = table.unpack(ds:split({0.8, 0.2}, {seed = 7}))
    local a2, b2 = table.unpack(ds:split({0.8, 0.2}, {seed = 7}))
    assert.equals(a1.x, a2.x); assert.equals(b1.y, b2.y)
    assert.equals(40, #a1); assert.equals(10, #b1)
    local a3 = ds:split({0.8, 0.2}, {seed = 8})[1]
    assert.truthy((a3.x - a1.x):abs():sum():item() > 0)
  end)
end)
