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

local raise = require("parry._util").raise
local function fail(msg) raise("parry.robust.train: " .. msg) end

-- (x, y) of a dataset or a {x, y} pair.
local function xy(fn, data, what)
  if type(data) == "table" then
    local x, y = rawget(data, "x"), rawget(data, "y")
    if core.is_tensor(x) and core.is_tensor(y) then return x, y end
    if core.is_tensor(data[1]) and core.is_tensor(data[2]) then return data[1], data[2] end
  end
  raise("parry.robust." .. fn .. ": " .. what .. " must be a dataset or {x, y}, got " .. type(data))
end

-- Robust accuracy of `model` on a held-out set, for early stopping.
local function validator(v, attack_opts)
  if type(v) ~= "table" then fail("validate must be a table {data=, attack=, every=, keep_best=, patience=}") end
  local allowed = { data = true, attack = true, every = true, keep_best = true, patience = true }
  for k in pairs(v) do if not allowed[k] then fail("validate: unknown option '" .. tostring(k) .. "' (expected data, attack, every, keep_best, patience)") end end
  local x, y = xy("train", v.data, "validate.data")
  local every = v.every or 1
  if math.type(every) ~= "integer" or every < 1 then fail("validate.every must be a positive integer (epochs)") end
  if v.patience ~= nil and (math.type(v.patience) ~= "integer" or v.patience < 1) then fail("validate.patience must be a positive integer") end
  -- default: PGD-40 on the margin (CW) loss, as Rice et al. (2020) select checkpoints
  local attack = v.attack or { "pgd", steps = 40, loss = "cw" }
  if type(attack) ~= "table" or type(attack[1]) ~= "string" then fail("validate.attack must be a table {\"pgd\", steps=, loss=, ...}") end
  local name, aopts = attack[1], {}
  for k, val in pairs(attack) do if k ~= 1 then aopts[k] = val end end
  if aopts.eps == nil then aopts.eps = attack_opts.eps end
  if aopts.eps == nil then fail("validate.attack needs eps (or give eps to train)") end
  if name == "pgd" and aopts.alpha == nil then aopts.alpha = 2.5 * aopts.eps / (aopts.steps or 10) end
  local evaluate = function(model)
    local r = require("parry.attacks").evaluate(model, x, y, { eps = aopts.eps, seed = 0, attacks = { { name, aopts } } })
    return r.clean, r.worst_case
  end
  return evaluate, every, v.keep_best ~= false, v.patience
end

local function snapshot(model)
  local copy = {}
  for k, t in pairs(model:state_dict()) do copy[k] = t:clone() end
  return copy
end

--- train(model, ds, opt, {loss=, epochs=1, batch_size=128, transform=, generator=, on_epoch=, validate=, <attack options>})
-- `loss` is "pgd" (PGD-AT), "trades", "ce", or a function(model, x, y) -> scalar
-- loss (e.g. the comp-sum adversarial losses). Attack options (eps, alpha,
-- steps, beta, norm, attack_mode) are passed to the named losses. Calls
-- on_epoch(epoch, mean_loss, seconds) after each epoch. Returns the mean loss
-- of the last epoch and, with `validate`, the validation curve.
-- validate = {data=, attack={"pgd", steps=40, loss="cw"}, every=1, keep_best=true, patience=}:
-- robust early stopping (Rice et al. 2020): every `every` epochs the robust
-- accuracy on the held-out `data` under `attack` (eps from train's options);
-- with keep_best the weights of the best evaluation are restored at the end;
-- with patience, training stops after that many evaluations without improvement.
-- The curve: { {epoch=, loss=, clean=, robust=, best=} ... }.
function robust.train(model, ds, opt, opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("expected an options table") end
  local loss = opts.loss or "pgd"
  local attack = {}
  for _, k in ipairs{ "eps", "alpha", "steps", "beta", "norm", "attack_mode", "random_start", "bounds" } do attack[k] = opts[k] end
  local validate, every, keep_best, patience
  if opts.validate ~= nil then validate, every, keep_best, patience = validator(opts.validate, attack) end
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
  local curve, best, best_state, since_best = {}, -1, nil, 0
  local dp = require("parry._util").data_parallel_of(model, opts.distributed, "parry.robust.train")
  for epoch = 1, opts.epochs or 1 do
    local t0, total, n = core.clock(), 0, 0
    model:train()
    for xb, yb in ds:batches(opts.batch_size or 128, { shuffle = true, transform = opts.transform, generator = opts.generator,
                                                      shard = dp and dp:shard() }) do
      opt:zero_grad()
      local count, value = xb:size(1), 0
      if count > 0 or not dp then
        local l = fn(model, xb, yb)
        l:backward()
        value = l:item()
      end
      if dp then _, value = dp:sync(count, value) end
      opt:step()
      total, n = total + value, n + 1
    end
    last = total / math.max(n, 1)
    if opts.on_epoch then opts.on_epoch(epoch, last, core.clock() - t0) end
    if validate and (epoch % every == 0 or epoch == (opts.epochs or 1)) then
      local clean, rob = validate(model)
      local improved = rob > best
      if improved then
        best, since_best = rob, 0
        if keep_best then best_state = snapshot(model) end
      else
        since_best = since_best + 1
      end
      curve[#curve + 1] = { epoch = epoch, loss = last, clean = clean, robust = rob, best = improved }
      if patience and since_best >= patience then break end
    end
  end
  if best_state then model:load_state_dict(best_state) end
  return last, validate and curve or nil
end

-- MARK: RiFT (weight space); the algorithms are Swift (ParryRobust/WeightSpace.swift)

local with_status = require("parry._util").with_status

--- mrc(model, data, {eps=0.1, epochs=10, lr=1, batch_size=512, modules=, attack={eps=, alpha=eps/4, steps=10}, adversarial=false, seed=})
-- Module robust criticality (RiFT): for each Conv2d/Linear weight (or `modules`),
-- the largest rise of the loss on a fixed PGD set under a weight perturbation
-- with ‖Δ‖_F ≤ eps·‖θ‖_F; sorted by MRC, lowest first.
function robust.mrc(model, data, opts)
  if not require("parry.nn").is_module(model) then
    raise("parry.robust.mrc: expected a module for model (argument 1), got " .. type(model))
  end
  local x, y = xy("mrc", data, "data")
  return with_status(function(show) return core._robust._mrc(model, x, y, opts, show) end)
end

--- corruption_accuracy(model, data, {kinds=, severities={1,…,5}, batch_size=500, seed=})
-- Accuracy under parry.data.corrupt's corruptions: {rows = { {kind=, severity=, accuracy=} },
-- by_kind = {kind = mean over severities}, mean = mean over every row}.
function robust.corruption_accuracy(model, data, opts)
  local x, y = xy("corruption_accuracy", data, "data")
  local rows = core._robust._corruption_accuracy(model, x, y, opts)
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
  local r = with_status(function(show) return core._robust._rift(ft, tx, ty, vx, vy, opts, show, transform) end)
  r.model = ft
  return r
end

-- MARK: ensembles (DVERGE, ADP, GAL) and transfer attacks; the algorithms are
-- Swift (ParryRobust/Ensembles.swift, Transfer.swift)

-- The options of a spec table: everything but the named keys.
local function rest_of(spec, skip)
  local opts = {}
  for k, v in pairs(spec) do if not skip[k] then opts[k] = v end end
  return opts
end

local function models_of(fn, spec)
  if type(spec.models) ~= "table" or #spec.models < 2 then
    raise("parry.robust." .. fn .. ": models must be a list of at least 2 modules, got " ..
      (type(spec.models) == "table" and (#spec.models .. " model(s)") or type(spec.models)))
  end
  return spec.models
end

-- The training entry points: check the spec, read its data, hand the rest to Swift.
local function trainer(fn, native, usage)
  return function(spec)
    if type(spec) ~= "table" then raise("parry.robust." .. fn .. ": expected a table " .. usage .. ", got " .. type(spec)) end
    local models = models_of(fn, spec)
    local x, y = xy(fn, spec.train, "train")
    return native(models, x, y, rest_of(spec, { models = true, train = true }))
  end
end

--- dverge{models=, train=, epochs=, layers=, layer=, eps=0.07, alpha=0.007, steps=10, momentum=1, plus_adv=false,
-- adv={eps=, alpha=, steps=}, coeff=1, optimizer={lr=0.1, momentum=0.9, weight_decay=1e-4, milestones=, gamma=0.1},
-- batch_size=128, transform=, distill_mode="train"|"eval", on_epoch=, seed=} -> per-epoch records
-- Trains the models in place (DVERGE's round-robin; see docs/ensembles.md).
robust.dverge = trainer("dverge", core._robust._dverge, "{models=, train=, epochs=}")

--- ensemble_train{models=, train=, loss="ce"|"adp"|"gal", epochs=, batch_size=128, optimizer={...}, alpha=2, beta=0.5,
-- lambda=0.5, noise={std=0.045, p=0.5}|false, plus_adv=false, adv={...}, transform=, on_epoch=, seed=} -> per-epoch records
-- The baselines DVERGE is compared with: independent CE training, ADP, GAL.
robust.ensemble_train = trainer("ensemble_train", core._robust._ensemble_train, "{models=, train=, loss=}")

--- transfer_eval{sources=, targets=, x=, y=, attacks=, eps={...}, batch_size=250, seed=} ->
-- {targets=, clean={name=acc}, rows={ {eps=, attack=, source=, version=, accuracy={name=acc}} }, all={ {eps=, accuracy={name=acc}} }}
-- Black-box transfer accuracy of every target on adversarial examples crafted on every source; `all` counts a
-- sample only if it is correct under every attack, source and version at that ε.
function robust.transfer_eval(spec)
  if type(spec) ~= "table" then raise("parry.robust.transfer_eval: expected a table {sources=, targets=, x=, y=, attacks=, eps=}, got " .. type(spec)) end
  local known = { sources = true, targets = true, x = true, y = true, attacks = true, eps = true, batch_size = true, seed = true, bounds = true }
  for k in pairs(spec) do
    if not known[k] then raise("parry.robust.transfer_eval: unknown option '" .. tostring(k) .. "' (expected sources, targets, x, y, attacks, eps, batch_size, seed, bounds)") end
  end
  if type(spec.sources) ~= "table" then raise("parry.robust.transfer_eval: sources must be a list of models, got " .. type(spec.sources)) end
  if type(spec.targets) ~= "table" then raise("parry.robust.transfer_eval: targets must be a table name = model, got " .. type(spec.targets)) end
  if spec.eps == nil then raise("parry.robust.transfer_eval: missing option eps (a list of budgets)") end
  return with_status(function(show)
    return core._robust._transfer_eval(spec.sources, spec.targets, spec.x, spec.y, spec.attacks, spec.eps,
      { batch_size = spec.batch_size, seed = spec.seed, bounds = spec.bounds }, show)
  end)
end

-- MARK: calibration heads for frozen multi-modal encoders (ParryRobust/Calibration.swift)

--- calibrate{encoder=, head=, centers=, train=, objective="ce"|"l2"|"infonce", consistency=0, eps=4/255, alpha=eps/4,
-- steps=10, attack_loss=, temperature=0.01, nce_temperature=0.07, symmetric=false, optimizer={lr=3e-3, weight_decay=1e-4},
-- epochs=2, batch_size=128, bounds=, on_epoch=, seed=} -> head, per-epoch records
-- Trains `head` in place on adversarial examples of `train`; the encoder and the centers stay frozen.
function robust.calibrate(spec)
  if type(spec) ~= "table" then raise("parry.robust.calibrate: expected a table {encoder=, head=, centers=, train=}, got " .. type(spec)) end
  local nn = require("parry.nn")
  if not nn.is_module(spec.encoder) then raise("parry.robust.calibrate: encoder must be a module, got " .. type(spec.encoder)) end
  if not nn.is_module(spec.head) then raise("parry.robust.calibrate: head must be a module, got " .. type(spec.head)) end
  if not core.is_tensor(spec.centers) then raise("parry.robust.calibrate: centers must be a C×d tensor, got " .. type(spec.centers)) end
  local x, y = xy("calibrate", spec.train, "train")
  return core._robust._calibrate(spec.encoder, spec.head, spec.centers, x, y,
    rest_of(spec, { encoder = true, head = true, centers = true, train = true }))
end

--- zero_shot(model, centers, x, y, {attack=|attacks=, eps=, temperature=0.01, bounds=, batch_size=500, seed=0})
-- -> {clean=, robust=, by_attack={name=acc}}: zero-shot accuracy of the embeddings model(x) against the class
-- centers (cosine logits / temperature), clean and under the attacks (parry.attacks.evaluate's specs, run on those logits).
function robust.zero_shot(model, centers, x, y, opts)
  opts = opts or {}
  if type(opts) ~= "table" then raise("parry.robust.zero_shot: expected an options table (argument 5), got " .. type(opts)) end
  local known = { attack = true, attacks = true, eps = true, temperature = true, bounds = true, batch_size = true, seed = true }
  for k in pairs(opts) do
    if not known[k] then raise("parry.robust.zero_shot: unknown option '" .. tostring(k) .. "' (expected attack, attacks, eps, temperature, bounds, batch_size, seed)") end
  end
  if not require("parry.nn").is_module(model) and type(model) ~= "function" then
    raise("parry.robust.zero_shot: expected a module or function giving embeddings (argument 1), got " .. type(model))
  end
  if not core.is_tensor(centers) then raise("parry.robust.zero_shot: centers must be a C×d tensor (argument 2), got " .. type(centers)) end
  local F = core._functional
  local temperature = opts.temperature or 0.01
  local was_training = type(model) ~= "function" and model:is_training()
  if was_training then model:eval() end
  local classifier = function(xb) return F.cosine_logits(model(xb), centers, { temperature = temperature }) end
  local attacks = opts.attacks or (opts.attack and { opts.attack }) or nil
  local ok, r = pcall(function()
    if attacks == nil then
      local n, bs = x:size(1), opts.batch_size or 500
      if type(bs) ~= "number" or bs < 1 or bs ~= math.floor(bs) then
        raise("parry.robust.zero_shot: batch_size must be a positive integer, got " .. tostring(bs))
      end
      local correct = 0
      core.no_grad(function()
        for s = 1, n, bs do
          local m = math.min(bs, n - s + 1)
          correct = correct + classifier(x:narrow(1, s, m)):argmax(2):eq(y:narrow(1, s, m)):sum():item()
        end
      end)
      return { clean = correct / n, robust = nil, by_attack = {} }
    end
    if opts.eps == nil then raise("parry.robust.zero_shot: missing option eps (the attack budget, in input units)") end
    local e = require("parry.attacks").evaluate(classifier, x, y, { eps = opts.eps, attacks = attacks, bounds = opts.bounds,
      batch_size = opts.batch_size, seed = opts.seed or 0, progress = false })
    return { clean = e.clean, robust = e.worst_case, by_attack = e.robust }
  end)
  if was_training then model:train() end
  if not ok then error(r, 0) end
  return r
end

return robust
