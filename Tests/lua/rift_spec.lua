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

describe("out-of-distribution evaluation", function()
  it("corrupts images by kind and severity, seeded and in bounds", function()
    local x = parry.rand(2, 1, 28, 28)
    local a = parry.data.corrupt(x, "gaussian_noise", 3, {seed = 7})
    assert.equals(a, parry.data.corrupt(x, "gaussian_noise", 3, {seed = 7}))
    assert.truthy((a - parry.data.corrupt(x, "gaussian_noise", 3, {seed = 8})):abs():max():item() > 0)
    assert.equals(x, parry.data.corrupt(x, "elastic", 0))
    assert.truthy(a:min():item() >= 0 and a:max():item() <= 1)
    assert.error(function() parry.data.corrupt(x, "fog", 1) end, "parry.data.corrupt: unknown corruption 'fog' (expected gaussian_noise, shot_noise")
    assert.error(function() parry.data.corrupt(x, "contrast", 7) end, "parry.data.corrupt: severity must be 0…5, got 7")
    assert.error(function() parry.data.corrupt(parry.rand(3, 3), "contrast", 1) end, "expected a float32 N×C×H×W batch")
  end)

  it("reports accuracy per kind and severity, their means, and the same numbers as corrupting by hand", function()
    local net = parry.nn.Sequential{parry.nn.Flatten(), parry.nn.Linear(16, 3)}
    parry.manual_seed(1)
    local ds = parry.data.TensorDataset(parry.rand(12, 1, 4, 4), parry.randint(1, 3, 12))
    local r = parry.robust.corruption_accuracy(net, ds, {kinds = {"contrast", "brightness"}, severities = {1, 5}})
    assert.equals(4, #r.rows)
    assert.equals("contrast", r.rows[1].kind); assert.equals(5, r.rows[2].severity)
    local by_hand = net(parry.data.corrupt(ds.x, "contrast", 5)):argmax(2):eq(ds.y):float():mean():item()
    assert.near(by_hand, r.rows[2].accuracy, 1e-12)
    assert.near((r.rows[1].accuracy + r.rows[2].accuracy) / 2, r.by_kind.contrast, 1e-12)
    assert.near((r.rows[1].accuracy + r.rows[2].accuracy + r.rows[3].accuracy + r.rows[4].accuracy) / 4, r.mean, 1e-12)
    assert.error(function() parry.robust.corruption_accuracy(net, ds, {kinds = {"snow"}}) end, "unknown corruption 'snow'")
    assert.error(function() parry.robust.corruption_accuracy(net, ds, {severities = {0}}) end, "severities must be in 1…5")
  end)

  it("reads CIFAR-10-C's .npy files", function()
    local dir = os.tmpname(); os.remove(dir); assert(os.execute("mkdir " .. dir))
    local function npy(path, shape, bytes)
      local dims = {}
      for i, d in ipairs(shape) do dims[i] = tostring(d) end
      local h = "{'descr': '|u1', 'fortran_order': False, 'shape': (" .. table.concat(dims, ", ") .. (#shape == 1 and "," or "") .. "), }"
      h = h .. string.rep(" ", (64 - (10 + #h + 1) % 64) % 64) .. "\n"
      local f = assert(io.open(path, "wb"))
      f:write("\147NUMPY\1\0", string.pack("<I2", #h), h, bytes)
      f:close()
    end
    -- 10 images (2 per severity), pixel value = image index; labels 0..9
    local px = {}
    for i = 0, 9 do px[#px + 1] = string.rep(string.char(i * 20), 32 * 32 * 3) end
    npy(dir .. "/contrast.npy", {10, 32, 32, 3}, table.concat(px))
    local lab = {}
    for i = 0, 9 do lab[#lab + 1] = string.char(i) end
    npy(dir .. "/labels.npy", {10}, table.concat(lab))
    local ds = parry.data.cifar10c{root = dir, kind = "contrast", severity = 3}
    assert.same({2, 3, 32, 32}, ds.x:shape())
    assert.near(80 / 255, ds.x[1][1][1][1], 1e-6)          -- image 4 of 10 (severity 3's first)
    assert.same({5, 6}, ds.y:totable())
    assert.error(function() parry.data.cifar10c{root = dir, kind = "contrast", severity = 6} end, "parry.data.cifar10c: severity must be an integer 1..5")
    os.execute("rm -rf " .. dir)
  end)
end)
