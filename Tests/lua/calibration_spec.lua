-- Calibration heads for frozen multi-modal encoders (issue 16): the modules
-- the encoders need, freezing, the embedding losses, calibrate / zero_shot /
-- retrieval and their errors.
local parry = require("parry")
local nn, F = parry.nn, parry.nn.functional

local function pointnet(d)
  return nn.Sequential{nn.Conv1d(2, 16, 1), nn.BatchNorm1d(16), nn.ReLU(), nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(16, d)}
end

local function identity_head(d)
  local h = nn.Linear(d, d)
  parry.no_grad(function() h.weight:copy_(parry.eye(d)); h.bias:zero_() end)
  return h
end

describe("encoder modules", function()
  it("have PyTorch's shapes, 1-based embeddings and an order-free PointNet", function()
    assert.same({2, 4, 5}, nn.Conv1d(3, 4, 3, {padding = 1})(parry.randn(2, 3, 5)):shape())
    assert.same({2, 3, 2}, nn.MaxPool1d(2)(parry.randn(2, 3, 5)):shape())
    local e = nn.Embedding(4, 3)
    assert.same(e.weight:select(1, 4):totable(), e(parry.tensor({4}))[1]:totable())
    assert.error_matches(function() e(parry.tensor({5})) end, "index 5 is outside 1..4")
    local ln = nn.LayerNorm(4)
    local y = ln(parry.tensor({{1.0, 2.0, 3.0, 4.0}}))
    assert.is_true(math.abs(y:mean():item()) < 1e-6)
    local net = pointnet(8)
    net:eval()
    local pts = parry.randn(3, 2, 32)
    local shuffled = pts:index_select(3, parry.randperm(32))
    assert.is_true((net(pts) - net(shuffled)):abs():max():item() < 1e-5)
  end)

  it("freeze keeps a subtree in eval mode through a parent's train()", function()
    local enc, head = pointnet(4), nn.Linear(4, 2)
    local model = nn.Sequential{enc, head}
    enc:freeze()
    model:train()
    assert.is_false(enc:is_training())
    assert.is_true(head:is_training())
    assert.is_true(enc:is_frozen())
    for _, p in ipairs(enc:parameters()) do assert.is_false(p.requires_grad) end
    enc:unfreeze(); model:train()
    assert.is_true(enc:is_training())
  end)
end)

describe("embedding losses", function()
  it("match their closed forms", function()
    local z = parry.tensor({{1.0, 0, 0, 0}, {0, 1.0, 0, 0}})
    local p = parry.tensor({{0, 0, 1.0, 0}, {0, 0, 0, 1.0}})
    assert.is_true(math.abs(parry.losses.infonce(z, p):item() - math.log(2)) < 1e-6)
    assert.equals(0, parry.losses.l2_align(z, z):item())
    local centers, y = parry.randn(3, 4), parry.tensor({1, 3})
    local a = parry.losses.fixed_center_ce(z, centers, y, {temperature = 0.1})
    local b = parry.losses.cross_entropy(F.cosine_logits(z, centers, {temperature = 0.1}), y)
    assert.is_true(math.abs(a:item() - b:item()) < 1e-6)
    assert.error_matches(function() parry.losses.fixed_center_ce(z, parry.randn(3, 5), y) end, "dimension 5 but the embeddings 4")
    assert.error_matches(function() parry.losses.infonce(z, p, {temperature = 0}) end, "temperature must be positive")
  end)
end)

describe("calibrate, zero_shot and retrieval", function()
  local function setup()
    parry.manual_seed(5)
    local enc = pointnet(6)
    local x = parry.randn(40, 2, 16)
    local y = parry.randint(1, 3, {40})
    local centers = parry.randn(3, 6)
    return enc, x, y, centers
  end

  it("trains the head only and leaves the frozen encoder bit-identical", function()
    local enc, x, y, centers = setup()
    enc:train()
    local head = identity_head(6)
    -- an identity head leaves the embeddings unchanged
    enc:eval()
    assert.equals(0, (F.normalize(head(enc(x))) - F.normalize(enc(x))):abs():max():item())
    enc:train()
    local before = {}
    for k, t in pairs(enc:state_dict()) do before[k] = t:clone() end
    local w0 = head.weight:clone()
    local trained, curve = parry.robust.calibrate{encoder = enc, head = head, centers = centers, train = {x, y},
      objective = "ce", consistency = 1, eps = 0.05, steps = 3, epochs = 2, batch_size = 16, seed = 1}
    assert.equals(head, trained)
    assert.equals(2, #curve)
    for k, t in pairs(enc:state_dict()) do assert.equals(0, (t - before[k]):abs():max():item(), k) end   -- BatchNorm statistics too
    assert.is_true(enc:is_training())                               -- its mode is restored
    assert.is_true((head.weight - w0):abs():max():item() > 0)
    for _, objective in ipairs{"l2", "infonce"} do
      parry.robust.calibrate{encoder = enc, head = identity_head(6), centers = centers, train = {x, y}, objective = objective,
        eps = 0.05, steps = 2, epochs = 1, batch_size = 20}
    end
  end)

  it("reports zero-shot accuracy under attack and retrieval recall", function()
    local enc, x, y, centers = setup()
    enc:eval()
    local r = parry.robust.zero_shot(enc, centers, x, y, {eps = 0.5, bounds = {-math.huge, math.huge}, attacks = {{"pgd", {steps = 5}}}})
    assert.is_true(r.robust <= r.clean)
    assert.equals("number", type(r.by_attack.pgd))
    local clean = parry.robust.zero_shot(enc, centers, x, y)
    assert.equals(r.clean, clean.clean)
    -- the clean pass runs in batches of batch_size too (a 2,000-image test set
    -- at once held every activation of all of it), with the same accuracy
    local widest, calls = 0, 0
    local batched = parry.robust.zero_shot(function(xb) widest = math.max(widest, xb:size(1)); calls = calls + 1; return enc(xb) end,
      centers, x, y, {batch_size = 7})
    assert.equals(7, widest); assert.equals(math.ceil(x:size(1) / 7), calls)
    assert.equals(clean.clean, batched.clean)
    local z = F.normalize(parry.randn(10, 4))
    local rec = parry.robust.retrieval(z, z, {k = {1, 5}})
    assert.equals(1, rec.a_to_b[1]); assert.equals(1, rec.b_to_a[5])
    local shifted = z:index_select(1, parry.tensor({2, 3, 4, 5, 6, 7, 8, 9, 10, 1}))
    assert.is_true(parry.robust.retrieval(z, shifted, {k = 1}).a_to_b[1] < 1)
  end)

  it("rejects bad calibrations with clear errors", function()
    local enc, x, y, centers = setup()
    local spec = function(over)
      local s = {encoder = enc, head = identity_head(6), centers = centers, train = {x, y}, steps = 1, epochs = 1}
      for k, v in pairs(over) do s[k] = v end
      return s
    end
    assert.error_matches(function() parry.robust.calibrate(spec{centers = parry.randn(3, 5)}) end, "the head gives 6%-d embeddings but the centers are 5%-d")
    assert.error_matches(function() parry.robust.calibrate(spec{objective = "nope"}) end, "unknown objective 'nope'")
    assert.error_matches(function() parry.robust.calibrate(spec{head = nn.Linear(6, 4)}) end, "the head gives 4%-d embeddings")
    assert.error_matches(function() parry.robust.calibrate(spec{temperature = 0}) end, "temperature must be positive")
    assert.error_matches(function() parry.robust.calibrate(spec{centers = parry.randn(6)}) end, "centers must be a C×d tensor")
  end)
end)
