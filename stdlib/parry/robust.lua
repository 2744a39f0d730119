--- parry.robust: adversarial training.
--
--   local loss = parry.robust.pgd_loss(model, x, y, {eps = 0.1, alpha = 0.02, steps = 7})
--   parry.robust.train(model, ds, opt, {loss = "trades", eps = 0.1, epochs = 2})
--   parry.robust.train(model, ds, opt, {loss = function(model, x, y) ... return scalar end})
local core = require("parry.core")
local losses = require("parry.losses")
local robust = {}
for name, fn in pairs(core._robust) do
  if name:sub(1, 1) ~= "_" then robust[name] = fn end
end

local function fail(msg) require("parry._util").raise("parry.robust.train: " .. msg) end

--- train(model, ds, opt, {loss=, epochs=1, batch_size=128, transform=, generator=, on_epoch=, <attack options>})
-- `loss` is "pgd" (PGD-AT), "trades", "ce", or a function(model, x, y) -> scalar
-- loss (e.g. the comp-sum adversarial losses). Attack options (eps, alpha,
-- steps, beta, norm, attack_mode) are passed to the named losses. Calls
-- on_epoch(epoch, mean_loss, seconds) after each epoch; returns the mean loss
-- of the last epoch.
function robust.train(model, ds, opt, opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("expected an options table") end
  local loss = opts.loss or "pgd"
  local attack = {}
  for _, k in ipairs{ "eps", "alpha", "steps", "beta", "norm", "attack_mode", "random_start", "bounds" } do attack[k] = opts[k] end
  local fn
  if loss == "pgd" then
    if not attack.eps then fail("missing option eps") end
    attack.beta = nil
    fn = function(m, x, y) return robust.pgd_loss(m, x, y, attack) end
  elseif loss == "trades" then
    if not attack.eps then fail("missing option eps") end
    attack.norm, attack.attack_mode, attack.random_start = nil, nil, nil
    fn = function(m, x, y) return robust.trades_loss(m, x, y, attack) end
  elseif loss == "ce" then
    fn = function(m, x, y) return losses.cross_entropy(m(x), y) end
  elseif type(loss) == "function" then
    fn = loss
  else
    fail("loss must be \"pgd\", \"trades\", \"ce\" or a function(model, x, y), got " .. tostring(loss))
  end
  local last
  for epoch = 1, opts.epochs or 1 do
    local t0, total, n = core.clock(), 0, 0
    model:train()
    for xb, yb in ds:batches(opts.batch_size or 128, { shuffle = true, transform = opts.transform, generator = opts.generator }) do
      local l = fn(model, xb, yb)
      opt:zero_grad()
      l:backward()
      opt:step()
      total, n = total + l:item(), n + 1
    end
    last = total / math.max(n, 1)
    if opts.on_epoch then opts.on_epoch(epoch, last, core.clock() - t0) end
  end
  return last
end

-- MARK: RiFT (weight space); the algorithms are Swift (ParryRobust/WeightSpace.swift)

local raise = require("parry._util").raise

-- (x, y) of a dataset or a {x, y} pair.
local function xy(fn, data, what)
  if type(data) == "table" then
    local x, y = rawget(data, "x"), rawget(data, "y")
    if core.is_tensor(x) and core.is_tensor(y) then return x, y end
    if core.is_tensor(data[1]) and core.is_tensor(data[2]) then return data[1], data[2] end
  end
  raise("parry.robust." .. fn .. ": " .. what .. " must be a dataset or {x, y}, got " .. type(data))
end

-- One redrawn status line on stderr when it is a terminal.
local function status_line()
  if not core._fs.isatty(2) then return nil, function() end end
  return function(msg) io.stderr:write("\r", msg, "\027[K") end, function() io.stderr:write("\r\027[K") end
end

--- mrc(model, data, {eps=0.1, epochs=10, lr=1, batch_size=512, modules=, attack={eps=, alpha=eps/4, steps=10}, adversarial=false, seed=})
-- Module robust criticality (RiFT): for each Conv2d/Linear weight (or `modules`),
-- the largest rise of the loss on a fixed PGD set under a weight perturbation
-- with ‖Δ‖_F ≤ eps·‖θ‖_F; sorted by MRC, lowest first.
function robust.mrc(model, data, opts)
  if not require("parry.nn").is_module(model) then
    raise("parry.robust.mrc: expected a module for model (argument 1), got " .. type(model))
  end
  local x, y = xy("mrc", data, "data")
  local show, clear = status_line()
  local ok, r = pcall(core._robust._mrc, model, x, y, opts, show)
  clear()
  if not ok then raise((tostring(r):gsub("^[^\n]-:%d+: ", ""))) end
  return r
end

--- corruption_accuracy(model, data, {kinds=, severities={1,…,5}, batch_size=500, seed=})
-- Accuracy under parry.data.corrupt's corruptions: {rows = { {kind=, severity=, accuracy=} },
-- by_kind = {kind = mean over severities}, mean = mean over every row}.
function robust.corruption_accuracy(model, data, opts)
  local x, y = xy("corruption_accuracy", data, "data")
  local ok, rows = pcall(core._robust._corruption_accuracy, model, x, y, opts)
  if not ok then raise((tostring(rows):gsub("^[^\n]-:%d+: ", ""))) end
  local by_kind, counts, total = {}, {}, 0
  for _, r in ipairs(rows) do
    by_kind[r.kind] = (by_kind[r.kind] or 0) + r.accuracy
    counts[r.kind] = (counts[r.kind] or 0) + 1
    total = total + r.accuracy
  end
  for k, v in pairs(by_kind) do by_kind[k] = v / counts[k] end
  return { rows = rows, by_kind = by_kind, mean = total / math.max(#rows, 1) }
end

--- rift{model=, train=, val=, module="auto"|name, skip_first_last=, mrc={...}, finetune={lr=, momentum=,
-- weight_decay=, epochs=, milestones=, gamma=, batch_size=, transform=}, alphas=, eval_attack={eps=, alpha=, steps=},
-- tolerance=, on_epoch=, seed=} -> {mrc=, module=, finetune_curve=, interpolation=, alpha=, model=}
-- The model passed is not changed: RiFT runs on a clone, returned as `model` (holding θ(α) of the chosen α).
function robust.rift(spec)
  if type(spec) ~= "table" then raise("parry.robust.rift: expected a table {model=, train=, val=, eval_attack={eps=}}, got " .. type(spec)) end
  if not require("parry.nn").is_module(spec.model) then
    raise("parry.robust.rift: model must be a module, got " .. type(spec.model))
  end
  local tx, ty = xy("rift", spec.train, "train")
  local vx, vy = xy("rift", spec.val, "val")
  local opts, transform = {}, nil
  for k, v in pairs(spec) do
    if k ~= "model" and k ~= "train" and k ~= "val" then opts[k] = v end
  end
  if type(spec.finetune) == "table" then
    local f = {}
    for k, v in pairs(spec.finetune) do if k ~= "transform" then f[k] = v end end
    transform = spec.finetune.transform
    if transform ~= nil and type(transform) ~= "function" then
      raise("parry.robust.rift: finetune.transform must be a function(x) -> x, got " .. type(transform))
    end
    opts.finetune = f
  end
  local ft = spec.model:clone()
  local show, clear = status_line()
  local ok, r = pcall(core._robust._rift, ft, tx, ty, vx, vy, opts, show, transform)
  clear()
  if not ok then raise((tostring(r):gsub("^[^\n]-:%d+: ", ""))) end
  r.model = ft
  return r
end

return robust
