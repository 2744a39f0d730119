--- parry.exp: experiment runs with their config, metrics, summary and log on disk.
--
--   local exp = require("parry.exp")        -- or parry.exp
--   local run = exp.run{name = "cnn", config = {lr = 0.05, epochs = 3}, seed = 1, fn = function(run, config)
--     for epoch = 1, config.epochs do run.log(epoch, {loss = 0.5 / epoch, acc = 0.8 + epoch / 100}) end
--     return {acc = 0.83}                     -- the summary
--   end}
--   exp.grid{name = "sweep", config = {epochs = 3}, grid = {lr = {0.1, 0.01}, tau = {0.5, 1}}, fn = ...}
-- Each run writes runs/<name>/<timestamp>/ with config.json, metrics.csv
-- (one row per `log` call), summary.json (with the parry version, git commit,
-- seed, status and seconds) and log.txt (everything printed during fn).
-- `parry runs [DIR]` lists them.
-- parry.exp is also callable: parry.exp(t) is the elementwise exponential
-- (the tensor function that shared the name first).
local core = require("parry.core")
local fs = core._fs
local M = {}
local json = setmetatable({}, { __index = function(_, k) return require("parry.json")[k] end })
local tbl = setmetatable({}, { __index = function(_, k) return require("parry.table")[k] end })

local raise = require("parry._util").raise
local function fail(fn, msg) raise("parry.exp." .. fn .. ": " .. msg) end

local function git_commit()
  local p = io.popen("git rev-parse --short HEAD 2>/dev/null")
  if not p then return nil end
  local c = p:read("l")
  p:close()
  return c ~= "" and c or nil
end

local function timestamp()
  local t = os.date("%Y%m%d-%H%M%S")
  local frac = math.floor((core.clock() % 1) * 1000)
  return string.format("%s-%03d", t, frac)
end

local function copy(t)
  local out = {}
  for k, v in pairs(t or {}) do out[k] = v end
  return out
end

-- One run, recorded on disk whatever happens; returns the record and, when
-- fn failed, its error (the record's summary says "failed" with the message).
local function record_run(spec)
  if type(spec) ~= "table" then fail("run", "expected a table {name=, config=, fn=}") end
  if type(spec.name) ~= "string" or not spec.name:match("^[%w_%-%.]+$") then
    fail("run", "name must be a word (letters, digits, _ - .), got " .. tostring(spec.name))
  end
  if type(spec.fn) ~= "function" then fail("run", "fn must be a function(run, config)") end
  if spec.config ~= nil and type(spec.config) ~= "table" then fail("run", "config must be a table") end
  local config = copy(spec.config)
  local root = spec.dir or "runs"
  local every = spec.checkpoint_every
  if every ~= nil and (math.type(every) ~= "integer" or every < 1) then
    fail("run", "checkpoint_every must be a positive integer (steps between checkpoints), got " .. tostring(every))
  end
  -- resume: the newest run of this name that left a checkpoint and no summary
  local dir
  if spec.resume then
    local base = root .. "/" .. spec.name
    local names = fs.isdir(base) and fs.listdir(base) or {}
    table.sort(names)
    for i = #names, 1, -1 do
      local d = base .. "/" .. names[i]
      if fs.exists(d .. "/checkpoint.safetensors") and not fs.exists(d .. "/summary.json") then dir = d; break end
    end
  end
  local resuming = dir ~= nil
  if not dir then
    dir = root .. "/" .. spec.name .. "/" .. timestamp() .. (spec._suffix or "")
    while fs.exists(dir) do dir = dir .. "x" end
    fs.mkdir(dir)
  end
  json.write(dir .. "/config.json", require("parry.json").object(copy(config)))
  if spec.seed ~= nil then
    if math.type(spec.seed) ~= "integer" then fail("run", "seed must be an integer") end
    core.manual_seed(spec.seed)
  end
  local metrics, keys, seen = {}, { "step" }, { step = true }
  local log = assert(io.open(dir .. "/log.txt", resuming and "a" or "w"))
  local run = { dir = dir, config = config, name = spec.name, resumed = nil }
  local ckpt_path = dir .. "/checkpoint.safetensors"
  local objects, ticks = nil, 0
  --- run.checkpoint{model=, optimizer=, scheduler=, generators=} registers what
  -- the run's checkpoints hold; when resuming, restores them and returns the
  -- state saved with the last checkpoint (nil on a fresh run).
  function run.checkpoint(objs)
    if type(objs) ~= "table" then raise("run.checkpoint: expected a table {model=, optimizer=, ...}, got " .. type(objs)) end
    objects = copy(objs)
    if not (resuming and fs.exists(ckpt_path)) then return nil end
    local st = require("parry.checkpoint").load(ckpt_path, objects)
    metrics, keys, ticks = st._metrics or {}, st._keys or { "step" }, st._ticks or 0
    seen = {}
    for _, k in ipairs(keys) do seen[k] = true end
    st._metrics, st._keys, st._ticks = nil, nil, nil
    run.resumed = st
    return st
  end
  --- run.save_checkpoint(state): writes a checkpoint now (atomically), with
  -- `state` (plain values and tensors at its top level) and the metrics so far.
  function run.save_checkpoint(state)
    if not objects then raise("run.save_checkpoint: call run.checkpoint{model=, ...} first") end
    if state ~= nil and type(state) ~= "table" then raise("run.save_checkpoint: state must be a table") end
    local t = copy(objects)
    t.state = copy(state)
    t.state._metrics, t.state._keys, t.state._ticks = metrics, keys, ticks
    require("parry.checkpoint").save(ckpt_path, t)
  end
  --- run.tick(state): one training step done; every `checkpoint_every` ticks
  -- saves a checkpoint with `state` (e.g. {epoch=, batch=, order=}).
  function run.tick(state)
    ticks = ticks + 1
    if every and objects and ticks % every == 0 then run.save_checkpoint(state) end
  end
  function run.log(step, values)
    if type(values) ~= "table" then raise("run.log: expected (step, {key = value})") end
    local row = copy(values)
    row.step = step
    local new = {}
    for k in pairs(values) do if not seen[k] then new[#new + 1] = k end end
    table.sort(new, function(a, b) return tostring(a) < tostring(b) end)
    for _, k in ipairs(new) do seen[k] = true; keys[#keys + 1] = k end
    metrics[#metrics + 1] = row
  end
  -- tee print/io.write into log.txt while fn runs
  local saved_print, saved_write = print, io.write
  local quiet = spec.quiet
  _G.print = function(...)
    local parts = table.pack(...)
    for i = 1, parts.n do parts[i] = tostring(parts[i]) end
    local line = table.concat(parts, "\t", 1, parts.n)
    log:write(line, "\n")
    if not quiet then saved_print(...) end
  end
  io.write = function(...)
    for _, v in ipairs{ ... } do log:write(tostring(v)) end
    if not quiet then return saved_write(...) end
    return io.stdout
  end
  local t0 = core.clock()
  local ok, result = pcall(spec.fn, run, config)
  _G.print, io.write = saved_print, saved_write
  log:close()
  local summary = {}
  if ok and type(result) == "table" then summary = copy(result) end
  summary._status = ok and "ok" or "failed"
  if not ok then summary._error = tostring(result) end
  summary._seconds = core.clock() - t0
  summary._seed = spec.seed
  summary._parry = core.version
  summary._git = git_commit()
  summary._started = dir:match("([^/]+)$")
  if resuming then summary._resumed = true end
  json.write(dir .. "/summary.json", summary)
  tbl.write_csv(dir .. "/metrics.csv", metrics, { columns = keys })
  return { dir = dir, summary = summary, config = config, metrics = metrics }, (not ok) and result or nil
end

--- run{name=, config={}, seed=, fn=function(run, config) -> summary, dir="runs", quiet=false,
--      checkpoint_every=, resume=}
-- Runs fn with `run.log(step, {key = number ...})`, `run.dir` and `run.config`;
-- seeds parry's shared generator with `seed`; returns {dir=, summary=, config=, metrics=}.
-- An error in fn is recorded (status "failed", the message in summary.json) and re-raised.
-- Resumable runs: fn registers what to save with run.checkpoint{model=,
-- optimizer=, scheduler=, generators=} (which returns the saved state when
-- resuming) and calls run.tick(state) after each step; every
-- checkpoint_every ticks a checkpoint is written atomically into the run's
-- folder. resume=true continues the newest run of this name that has a
-- checkpoint and no summary (a killed run) in its own folder.
function M.run(spec)
  local r, err = record_run(spec)
  if err ~= nil then error(err, 0) end
  return r
end

--- grid{name=, config={}, grid={key = {values...}}, seed=, fn=, dir=, quiet=, distributed=, keep_going=} -> list of runs
-- Runs the Cartesian product of the grid's values (keys in sorted order),
-- each as a `run` with config = base config + that combination, and prints a
-- summary table (one row per run: the grid values and the summary's numbers).
-- distributed=true (under mpirun): the ranks take configurations one at a
-- time as they finish (rank 0 hands them out), each run is recorded once, by
-- the rank that ran it, and every rank returns the whole list in grid order
-- (rank 0 prints the table). keep_going (default: distributed) records a
-- failing configuration (status "failed") and goes on instead of raising.
function M.grid(spec)
  if type(spec) ~= "table" or type(spec.grid) ~= "table" then fail("grid", "expected {name=, grid={key = {values}}, fn=}") end
  local keys = {}
  for k, vs in pairs(spec.grid) do
    if type(vs) ~= "table" or #vs == 0 then fail("grid", "grid." .. tostring(k) .. " must be a non-empty list") end
    keys[#keys + 1] = k
  end
  table.sort(keys)
  local combos = { {} }
  for _, k in ipairs(keys) do
    local next_combos = {}
    for _, c in ipairs(combos) do
      for _, v in ipairs(spec.grid[k]) do
        local n = copy(c); n[k] = v; next_combos[#next_combos + 1] = n
      end
    end
    combos = next_combos
  end
  local distributed = spec.distributed and true or false
  local keep_going = spec.keep_going
  if keep_going == nil then keep_going = distributed end
  local dist = distributed and require("parry.dist") or nil
  local suffix = dist and dist.size() > 1 and ("-r" .. dist.rank()) or nil
  local function config_of(k)
    local config = copy(spec.config)
    for key, v in pairs(combos[k]) do config[key] = v end
    return config
  end
  local function one(k)
    local r, err = record_run{ name = spec.name, config = config_of(k), seed = spec.seed, fn = spec.fn, dir = spec.dir,
      quiet = spec.quiet, _suffix = suffix }
    if err ~= nil and not keep_going then error(err, 0) end
    return r
  end
  local runs = {}
  if dist then
    local C = core._dist
    C._queue_start(#combos)
    local mine = {}
    local ok, err = pcall(function()
      while true do
        local k = C._queue_next()
        if not k then break end
        local r = one(k)
        mine[#mine + 1] = { index = k, dir = r.dir, summary = r.summary, metrics = r.metrics }
      end
    end)
    C._queue_finish()
    if not ok then error(err, 0) end
    for _, list in ipairs(dist.allgather(mine)) do
      for _, r in ipairs(list) do
        runs[r.index] = { dir = r.dir, summary = r.summary, config = config_of(r.index), metrics = r.metrics }
      end
    end
  else
    for k = 1, #combos do runs[k] = one(k) end
  end
  local rows, cols = {}, { table.unpack(keys) }
  local seen = {}
  for _, k in ipairs(keys) do seen[k] = true end
  for k, r in ipairs(runs) do
    local row = copy(combos[k])
    local extra = {}
    for key, v in pairs(r.summary) do
      if type(key) == "string" and not key:match("^_") and type(v) ~= "table" then
        row[key] = v
        if not seen[key] then seen[key] = true; extra[#extra + 1] = key end
      end
    end
    table.sort(extra)
    for _, key in ipairs(extra) do cols[#cols + 1] = key end
    row.status = r.summary._status
    row.seconds = r.summary._seconds
    rows[#rows + 1] = row
  end
  cols[#cols + 1] = "status"
  cols[#cols + 1] = "seconds"
  if not spec.quiet and (not dist or dist.is_main()) then
    print(tbl.format(rows, { columns = cols, title = spec.name .. ": " .. #runs .. " runs" }))
  end
  return runs
end

--- list([dir="runs"]) -> rows {name=, started=, status=, seconds=, summary=} sorted by name and time.
function M.list(dir)
  if dir ~= nil and type(dir) ~= "string" then fail("list", "expected a folder path, got " .. type(dir)) end
  dir = dir or "runs"
  local rows = {}
  if not fs.isdir(dir) then return rows end
  for _, name in ipairs(fs.listdir(dir)) do
    if fs.isdir(dir .. "/" .. name) then
      for _, ts in ipairs(fs.listdir(dir .. "/" .. name)) do
        local path = dir .. "/" .. name .. "/" .. ts .. "/summary.json"
        local ok, s = pcall(json.read, path)
        if ok and type(s) == "table" then
          rows[#rows + 1] = { name = name, started = ts, status = s._status, seconds = s._seconds, summary = s }
        end
      end
    end
  end
  return rows
end

--- main("runs", {dir}) -> exit code: prints the runs under dir with their summaries.
function M.main(_, args)
  if type(args) ~= "table" then fail("main", "expected the command's arguments as a list, got " .. type(args)) end
  if args[1] ~= nil and type(args[1]) ~= "string" then fail("main", "expected a folder path, got " .. type(args[1])) end
  local dir = args[1] or "runs"
  local rows = M.list(dir)
  if #rows == 0 then print("no runs in " .. dir); return 0 end
  local out = {}
  for _, r in ipairs(rows) do
    local parts = {}
    local keys = {}
    for k in pairs(r.summary) do if type(k) == "string" and not k:match("^_") then keys[#keys + 1] = k end end
    table.sort(keys)
    for _, k in ipairs(keys) do
      local v = r.summary[k]
      if type(v) ~= "table" then parts[#parts + 1] = k .. "=" .. (math.type(v) == "float" and string.format("%.4g", v) or tostring(v)) end
    end
    out[#out + 1] = { run = r.name .. "/" .. r.started, status = r.status, seconds = r.seconds, summary = table.concat(parts, " ") }
  end
  print(tbl.format(out, { columns = { "run", "status", "seconds", "summary" }, precision = 1 }))
  return 0
end

return setmetatable(M, { __call = function(_, ...) return core.exp(...) end })
