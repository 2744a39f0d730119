--- parry.fl: federated-learning simulation with Byzantine adversaries and
-- RFFL reputations (Xu & Lyu 2020). The algorithms run in Swift (ParryFed);
-- this file builds participants from Lua values and shapes the results.
--
--   local parts = parry.fl.partition(train, 10, {method = "powerlaw", seed = 1})
--   print(parts.summary)
--   local res = parry.fl.simulate{
--     model = function() return parry.models.mlp{784, 256, 10} end,
--     clients = parts, test = test, rounds = 30, lr = 0.15,
--     aggregator = "rffl", adversaries = {{"free_rider", count = 2}},
--   }
--   print(res.fairness, res.clients[11].removed_round)
local core = require("parry.core")
local data = require("parry.data")
local nn = require("parry.nn")
local F = core._fl
local fl = {}

-- Errors are positioned at the script's line (parry._util.raise).
local raise = require("parry._util").raise
local function fail(fn, msg) raise("parry.fl." .. fn .. ": " .. msg) end

local function is_dataset(ds)
  if type(ds) ~= "table" then return false end
  local base = rawget(ds, "_base")
  if base ~= nil and rawget(ds, "x") == nil then return core.is_tensor(rawget(ds, "_idx")) and base.y ~= nil end
  return core.is_tensor(rawget(ds, "x")) and core.is_tensor(rawget(ds, "y"))
end

-- A client's tensors for the native side: a view not yet materialized passes
-- its base's inputs and its rows (no copy); labels are gathered (8 bytes each).
local function client_tensors(d)
  local base, idx = rawget(d, "_base"), rawget(d, "_idx")
  if base ~= nil and rawget(d, "x") == nil then return base.x, base.y:index_select(1, idx), idx end
  return d.x, d.y, false
end

local function check_opts(fn, opts, allowed)
  local checked, err = require("parry._util").check_options(opts, allowed)
  if not checked then fail(fn, err) end
  return checked
end

-- Calls a native function and re-raises its error at the caller of the public function.
local function native(f, ...)
  local r = table.pack(pcall(f, ...))
  if r[1] then return table.unpack(r, 2, r.n) end
  raise((tostring(r[2]):gsub("^[^\n]-:%d+: ", "")))
end

-- A table of rows printed as aligned columns.
local function text_table(header, rows)
  local w = {}
  for j, h in ipairs(header) do w[j] = #h end
  for _, r in ipairs(rows) do for j, v in ipairs(r) do w[j] = math.max(w[j], #tostring(v)) end end
  local function line(r)
    local cells = {}
    for j, v in ipairs(r) do cells[j] = string.format("%" .. w[j] .. "s", tostring(v)) end
    return table.concat(cells, "  ")
  end
  local out = { line(header) }
  for _, r in ipairs(rows) do out[#out + 1] = line(r) end
  return table.concat(out, "\n")
end

--- partition(ds, n, {method="iid"|"dirichlet"|"powerlaw"|"classes"|"shards",
--   alpha=0.5, min_size=10, a=1.659, size=, shards=2, seed=0, generator=})
-- Splits a labelled dataset among n clients. Returns a list of n datasets with
-- fields `sizes`, `histogram` (histogram[k][c]: samples of class c at client
-- k) and `summary` (prints as a table). `classes` gives client k the classes
-- 1..c_k with c_k = round(linspace(1, C, n)) and equal sizes, without reuse
-- (so it need not cover the data); the other methods are disjoint and cover it.
function fl.partition(ds, n, opts)
  if not is_dataset(ds) then fail("partition", "expected a labelled dataset (with x and y), got " .. type(ds)) end
  if math.type(n) ~= "integer" or n < 1 then fail("partition", "n must be a positive integer, got " .. tostring(n)) end
  opts = check_opts("partition", opts, { method = true, alpha = true, min_size = true, a = true, size = true,
    shards = true, seed = true, generator = true, classes = true })
  local idx, hist = native(F.partition, ds.y, n, opts)
  local parts = { sizes = {}, histogram = hist }
  for k, ix in ipairs(idx) do
    parts[k] = ds:view(ix)     -- an index view: no copy until someone reads its x
    parts.sizes[k] = ix:numel()
  end
  local rows = {}
  for k = 1, n do
    local h = {}
    for c, v in ipairs(hist[k]) do h[c] = v end
    rows[k] = { k, parts.sizes[k], table.concat(h, " ") }
  end
  parts.summary = setmetatable({ rows = rows }, {
    __tostring = function() return text_table({ "client", "size", "samples per class" }, rows) end,
  })
  return parts
end

local adversary_kinds = { free_rider = true, label_flip = true, sign_flip = true, rescale = true,
  value_invert = true, sign_random = true, gaussian = true }

-- Expands adversaries = {{"kind", count=|fraction=, ...}, ...} (or one such
-- table, or a function) into one spec per adversary.
local function expand_adversaries(spec, honest)
  if spec == nil then return {} end
  if type(spec) == "function" then spec = { { spec, count = 1 } } end
  if type(spec) ~= "table" then fail("simulate", "adversaries must be a table, got " .. type(spec)) end
  if spec[1] == nil or type(spec[1]) ~= "table" then spec = { spec } end
  local out = {}
  for _, s in ipairs(spec) do
    local kind = s.kind or s[1]
    local count = s.count
    if s.fraction ~= nil then
      if type(s.fraction) ~= "number" or s.fraction < 0 or s.fraction >= 1 then
        fail("simulate", "adversary fraction must be in [0, 1), got " .. tostring(s.fraction))
      end
      -- the adversaries' share of all participants
      count = math.floor(s.fraction * honest / (1 - s.fraction) + 0.5)
    end
    count = count or 1
    if math.type(count) ~= "integer" or count < 0 then fail("simulate", "adversary count must be a non-negative integer") end
    local entry
    if type(kind) == "function" then
      entry = { kind = "custom", fn = kind, name = s.name }
    elseif adversary_kinds[kind] then
      entry = { kind = kind, zero = s.zero, map = s.map, k = s.k, scale = s.scale, sigma = s.sigma }
    else
      fail("simulate", "unknown adversary '" .. tostring(kind) .. "' (expected free_rider, label_flip, sign_flip, rescale, value_invert, sign_random, gaussian or a function(update, round))")
    end
    for _ = 1, count do out[#out + 1] = entry end
  end
  return out
end

-- The clients' samples in client order (adversaries and FLTrust's root draw
-- from it): a view of their common base when they are all views of one.
local function concat_datasets(list)
  local base = rawget(list[1], "_base")
  local all_views = base ~= nil
  for _, d in ipairs(list) do
    if rawget(d, "_base") ~= base or rawget(d, "x") ~= nil then all_views = false end
  end
  if all_views then
    local idx = {}
    for i, d in ipairs(list) do idx[i] = rawget(d, "_idx") end
    return base:view(core.cat(idx, 1))
  end
  local xs, ys = {}, {}
  for i, d in ipairs(list) do xs[i], ys[i] = d.x, d.y end
  return data.TensorDataset(core.cat(xs, 1), core.cat(ys, 1))
end

local function sample(pool_of, n, g, what)
  if is_dataset(n) then return n end
  local pool = pool_of()
  if math.type(n) ~= "integer" or n < 1 then fail("simulate", what .. " must be a dataset or a positive sample count") end
  if n > #pool then fail("simulate", what .. " asks for " .. n .. " samples but the clients hold " .. #pool) end
  return pool:subset(core.randperm(#pool, { generator = g }):narrow(1, 1, n))
end

-- Builds n models with parameter draws from `g`, so a seed fixes the initialization.
local function make_models(factory, n, fn, g)
  local models = {}
  for i = 1, n do
    local m = core.with_generator(g, factory)
    if not nn.is_module(m) then fail(fn, "model() must return a module, got " .. type(m)) end
    for j = 1, i - 1 do
      if rawequal(models[j], m) then fail(fn, "model() returned the same module twice; it must build a fresh one per call") end
    end
    models[i] = m
  end
  return models
end

local sim_options = { model = true, clients = true, test = true, rounds = true, local_epochs = true, batch_size = true,
  lr = true, momentum = true, weight_decay = true, lr_decay = true, fraction = true, server_lr = true, clip = true,
  aggregator = true, beta = true, f = true, m = true, gamma = true, alpha = true, threshold = true,
  removal_after = true, sparsify = true, adversaries = true, adversary_data = true, root = true, standalone = true,
  seed = true, parallel = true, eval_clients = true, eval_batch = true, on_round = true, csv = true, verbose = true,
  progress = true, distributed = true }

-- How many models local training borrows at once: one per thread when the
-- clients train concurrently, never more than there are clients.
local function pool_size(spec, clients)
  local n = spec.parallel == false and 1 or core.get_num_threads()
  return math.max(1, math.min(n, clients))
end

local function check_clients(fn, spec)
  if type(spec.model) ~= "function" then
    fail(fn, "model must be a function returning a fresh module (each client gets its own), got " .. type(spec.model))
  end
  if type(spec.clients) ~= "table" or #spec.clients == 0 then fail(fn, "clients must be a non-empty list of datasets") end
  for i, d in ipairs(spec.clients) do
    if not is_dataset(d) then fail(fn, "clients[" .. i .. "] is not a labelled dataset") end
    if #d == 0 then fail(fn, "clients[" .. i .. "] is empty") end
  end
  if not is_dataset(spec.test) then fail(fn, "test must be a labelled dataset") end
end

--- standalone{model=, clients=, test=, rounds=, local_epochs=, batch_size=, lr=, ...}
-- Each client trained alone with the same budget as in `simulate` (rounds ×
-- local_epochs), from one shared initialization. Returns test accuracies.
function fl.standalone(spec)
  spec = check_opts("standalone", spec, sim_options)
  check_clients("standalone", spec)
  -- the first model's draws are the shared initialization; the others are overwritten
  local pool = make_models(spec.model, pool_size(spec, #spec.clients), "standalone", core.Generator(spec.seed or 0))
  local xs, ys, rows = {}, {}, {}
  for i, d in ipairs(spec.clients) do xs[i], ys[i], rows[i] = client_tensors(d) end
  return native(F.standalone, { pool = pool, xs = xs, ys = ys, rows = rows, test_x = spec.test.x, test_y = spec.test.y,
    rounds = spec.rounds or 10, epochs = spec.local_epochs, batch_size = spec.batch_size, lr = spec.lr,
    momentum = spec.momentum, weight_decay = spec.weight_decay, lr_decay = spec.lr_decay, seed = spec.seed,
    parallel = spec.parallel, eval_batch = spec.eval_batch, distributed = spec.distributed })
end

local function mean(t)
  local s = 0
  for _, v in ipairs(t) do s = s + v end
  return #t > 0 and s / #t or 0 / 0
end

-- One CSV row per round and client, written by parry.table (missing values empty).
local csv_columns = { "round", "client", "kind", "accuracy", "reputation", "removed", "selected", "update_norm",
  "weight", "global_accuracy" }
local function write_csv(path, res)
  local rows = {}
  for _, r in ipairs(res.rounds) do
    for _, c in ipairs(r.clients) do
      local row = { round = r.round, global_accuracy = r.global_accuracy }
      for _, k in ipairs(csv_columns) do if c[k] ~= nil then row[k] = c[k] end end
      rows[#rows + 1] = row
    end
  end
  local ok, err = pcall(require("parry.table").write_csv, path, rows, { columns = csv_columns })
  if not ok then fail("simulate", "cannot write csv: " .. tostring(err):gsub("^.-parry%.table%.write_csv: ", "")) end
end

--- simulate{...}: runs a federated simulation. Options:
--   model        function() -> a fresh module (called once per participant and once for the server)
--   clients      list of datasets (the honest participants), e.g. from `partition`
--   test         dataset for the accuracies
--   rounds=10, local_epochs=1, batch_size=32, lr=0.1, momentum=0, weight_decay=0, lr_decay=1 (per round)
--   aggregator   "fedavg" | "median" | "trimmed_mean" (beta=0.1) | "krum" / "multi_krum" (f=, m=) |
--                "fltrust" (root=) | "rffl" | function(updates, weights, round) -> aggregate
--   fraction=1   share of participants sampled per round (global-model aggregators)
--   server_lr=1, clip=nil (norm bound on uploads, global-model aggregators)
--   gamma=0.5, alpha=0.95, threshold=1/3, removal_after=10, sparsify=true   (RFFL)
--   adversaries  {{"free_rider", count=2}, {"label_flip", fraction=0.2, map={[2]=8}}, ...}; kinds:
--                free_rider (zero=), label_flip (map, default {[2]=8}: RFFL's 1→7 in 0-based labels),
--                sign_flip (k=1), rescale (scale=10), value_invert, sign_random, gaussian (sigma=1),
--                or a function(update, round) -> update (trains honestly, then forges)
--   adversary_data=600  samples each adversary draws from the clients' pool (or a dataset)
--   root=100     FLTrust's server dataset (sample count from the pool, or a dataset)
--   standalone=true   train each honest client alone too (or pass the list from fl.standalone)
--   seed=0, parallel=true, eval_clients=true, on_round=function(record), csv=path, verbose=false,
--   progress (default: on when stderr is a terminal) — a parry.progress bar over the rounds
--   distributed=false   under mpirun: client i lives on rank (i-1) mod size; every rank returns the
--                single-process result (on_round runs on every rank; progress, verbose and csv on rank 0)
-- Returns {rounds = {record...}, clients = {...}, fairness =, honest = {best =, mean =},
-- removed = {{client =, kind =, round =}...}, train_seconds =, total_seconds =, overhead =}.
function fl.simulate(spec)
  spec = check_opts("simulate", spec, sim_options)
  check_clients("simulate", spec)
  local honest = #spec.clients
  local advs = expand_adversaries(spec.adversaries, honest)
  if #advs > honest then
    fail("simulate", string.format("%d adversaries for %d honest clients: adversaries must not outnumber the clients", #advs, honest))
  end
  local seed = spec.seed or 0
  if math.type(seed) ~= "integer" then fail("simulate", "seed must be an integer") end
  local g = core.Generator(seed)
  local pool_data
  local function pool() pool_data = pool_data or concat_datasets(spec.clients); return pool_data end
  local datasets, adv_specs = {}, {}
  for i, d in ipairs(spec.clients) do datasets[i], adv_specs[i] = d, false end
  for _, a in ipairs(advs) do
    datasets[#datasets + 1] = sample(pool, spec.adversary_data or 600, g, "adversary_data")
    adv_specs[#adv_specs + 1] = a
  end
  local aggregator = spec.aggregator or "fedavg"
  local root
  if aggregator == "fltrust" then root = sample(pool, spec.root or 100, g, "root") end
  pool_data = nil
  -- the server is built first (the same draws as standalone's shared init); local training
  -- borrows the pool's models, so participants hold no model of their own
  local models = make_models(spec.model, pool_size(spec, #datasets) + 1, "simulate", core.Generator(seed))
  local server = table.remove(models, 1)
  local xs, ys, rows = {}, {}, {}
  for i, d in ipairs(datasets) do xs[i], ys[i], rows[i] = client_tensors(d) end
  local on_round = spec.on_round
  local show = spec.progress
  -- distributed: the main rank reports, the others keep quiet
  local main = not spec.distributed or require("parry.dist").is_main()
  if show == nil then show = core._fs.isatty(2) and not spec.verbose end
  show = show and main
  if show then
    local bar = require("parry.progress").new(spec.rounds or 10, { desc = "fl " .. tostring(type(aggregator) == "string" and aggregator or "custom") })
    local user = on_round
    on_round = function(r)
      bar:update(r.round)
      if r.round == (spec.rounds or 10) then bar:close() end
      if user then user(r) end
    end
  end
  if spec.verbose and main then
    local user = on_round
    on_round = function(r)
      local acc = {}
      for _, c in ipairs(r.clients) do if c.accuracy then acc[#acc + 1] = c.accuracy end end
      io.stderr:write(string.format("round %3d  mean honest acc %.4f%s  %.2fs\n", r.round, mean(acc),
        r.global_accuracy and string.format("  global %.4f", r.global_accuracy) or "", r.seconds))
      if user then user(r) end
    end
  end
  local res = native(F.simulate, {
    pool = models, server = server, xs = xs, ys = ys, rows = rows, adversaries = adv_specs,
    test_x = spec.test.x, test_y = spec.test.y, root_x = root and root.x, root_y = root and root.y,
    rounds = spec.rounds, epochs = spec.local_epochs, batch_size = spec.batch_size, lr = spec.lr,
    momentum = spec.momentum, weight_decay = spec.weight_decay, lr_decay = spec.lr_decay,
    fraction = spec.fraction, server_lr = spec.server_lr, clip = spec.clip, aggregator = aggregator,
    beta = spec.beta, f = spec.f, m = spec.m, gamma = spec.gamma, alpha = spec.alpha, threshold = spec.threshold,
    removal_after = spec.removal_after, sparsify = spec.sparsify, eval_clients = spec.eval_clients,
    eval_batch = spec.eval_batch, parallel = spec.parallel, seed = seed, on_round = on_round,
    distributed = spec.distributed,
  })
  -- standalone baseline and fairness (Pearson over honest clients)
  local alone = spec.standalone
  if alone == nil or alone == true then
    alone = fl.standalone{ model = spec.model, clients = spec.clients, test = spec.test, rounds = spec.rounds,
      local_epochs = spec.local_epochs, batch_size = spec.batch_size, lr = spec.lr, momentum = spec.momentum,
      weight_decay = spec.weight_decay, lr_decay = spec.lr_decay, seed = seed, parallel = spec.parallel,
      eval_batch = spec.eval_batch, distributed = spec.distributed }
  elseif alone ~= false and (type(alone) ~= "table" or #alone ~= honest) then
    fail("simulate", "standalone must be true, false or a list of " .. honest .. " accuracies")
  end
  local finals, best, sa = {}, {}, {}
  res.removed = {}
  for i, c in ipairs(res.clients) do
    if c.kind == "honest" then
      if alone then c.standalone = alone[i]; sa[#sa + 1] = alone[i] end
      finals[#finals + 1] = c.final_accuracy
      best[#best + 1] = c.best_accuracy or c.final_accuracy
    end
    if c.removed_round then res.removed[#res.removed + 1] = { client = i, kind = c.kind, round = c.removed_round } end
  end
  local top = -math.huge
  for _, v in ipairs(best) do top = math.max(top, v) end
  res.honest = { best = top, mean = mean(finals) }
  res.fairness = alone and F.pearson(sa, finals) or nil
  res.overhead = (res.total_seconds - res.train_seconds) / res.total_seconds
  if spec.csv and main then write_csv(spec.csv, res) end
  return res
end

--- aggregate(rule, updates, {weights=, beta=, f=, m=, root=}) -> tensor [, info]
-- One aggregation rule on a list of same-shaped update tensors: "fedavg",
-- "median", "trimmed_mean", "krum", "multi_krum" (info: selected indices,
-- 1-based) or "fltrust" (root = server update; info: trust scores).
function fl.aggregate(rule, updates, opts)
  return native(F.aggregate, rule, updates, opts)
end

--- pearson(a, b): the correlation of two equal-length lists (nan if either is constant).
function fl.pearson(a, b) return native(F.pearson, a, b) end

return fl
