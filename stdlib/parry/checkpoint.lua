--- parry.checkpoint: everything a training run needs to continue exactly
-- where it stopped — the model's parameters and buffers, the optimizer's
-- settings and state (momentum buffers, Adam's moments, its step count), the
-- scheduler's position, the random generators' states (parry's shared one
-- and any named ones) and the loop's own position (epoch, batch, the epoch's
-- data order, anything else in `state`). One safetensors file, written whole
-- (a temporary beside it, fsync, rename), so a run killed while saving
-- leaves the previous checkpoint loadable.
--
--   parry.checkpoint.save("ckpt.safetensors", {model = net, optimizer = opt, scheduler = sched,
--     generators = {shuffle = g}, state = {epoch = 3, batch = 120, order = perm}})
--   local state = parry.checkpoint.load("ckpt.safetensors", {model = net, optimizer = opt,
--     scheduler = sched, generators = {shuffle = g}})
local core = require("parry.core")
local util = require("parry._util")
local json = require("parry.json")

local M = {}
local FORMAT = "parry.checkpoint/1"
local FIELDS = { model = true, optimizer = true, scheduler = true, generators = true, rng = true, state = true }

local function fail(fn, msg) util.raise("parry.checkpoint." .. fn .. ": " .. msg) end

local function check(fn, path, t)
  if type(path) ~= "string" then fail(fn, "expected a path (string) for argument 1, got " .. type(path)) end
  if type(t) ~= "table" then fail(fn, "expected a table {model=, optimizer=, ...} for argument 2, got " .. type(t)) end
  local _, msg = util.check_options(t, FIELDS)
  if msg then fail(fn, msg) end
  if t.model ~= nil and not require("parry.nn").is_module(t.model) then fail(fn, "model must be a module") end
  if t.optimizer ~= nil and (type(t.optimizer) ~= "userdata" or type(t.optimizer.state_dict) ~= "function") then
    fail(fn, "optimizer must be a parry optimizer")
  end
  if t.scheduler ~= nil and (type(t.scheduler) ~= "userdata" or type(t.scheduler.state_dict) ~= "function") then
    fail(fn, "scheduler must be a parry.optim.lr scheduler")
  end
  if t.generators ~= nil then
    if type(t.generators) ~= "table" then fail(fn, "generators must be a table {name = parry.Generator}") end
    for name, g in pairs(t.generators) do
      if type(name) ~= "string" or type(g) ~= "userdata" or type(g.get_state) ~= "function" then
        fail(fn, "generators must map names to parry.Generator objects (bad entry " .. tostring(name) .. ")")
      end
    end
  end
  if t.state ~= nil and type(t.state) ~= "table" then fail(fn, "state must be a table") end
end

--- save(path, {model=, optimizer=, scheduler=, generators={name = g}, rng=true, state={...}})
-- `rng` (default true) includes parry's shared generator. `state` holds plain
-- values (numbers, strings, booleans, tables of them) and tensors at its top level.
function M.save(path, t)
  check("save", path, t)
  local tensors, meta = {}, { format = FORMAT }
  if t.model then
    for k, v in pairs(t.model:state_dict()) do tensors["model." .. k] = v end
  end
  if t.optimizer then
    local sd = t.optimizer:state_dict()
    meta.optimizer = { hyperparameters = sd.hyperparameters, param_groups = sd.param_groups, steps = sd.steps,
                       n = #sd.state }
    for i, st in ipairs(sd.state) do
      for k, v in pairs(st) do tensors["optimizer." .. i .. "." .. k] = v end
    end
  end
  if t.scheduler then meta.scheduler = t.scheduler:state_dict() end
  if t.generators then
    meta.generators = {}
    for name, g in pairs(t.generators) do
      tensors["generator." .. name] = g:get_state()
      meta.generators[#meta.generators + 1] = name
    end
    table.sort(meta.generators)
  end
  if t.rng ~= false then tensors["rng"] = core.get_rng_state() end
  local plain = {}
  for k, v in pairs(t.state or {}) do
    if core.is_tensor(v) then tensors["state." .. tostring(k)] = v else plain[k] = v end
  end
  meta.state = plain
  local ok, text = pcall(json.encode, meta)
  if not ok then fail("save", "state must hold plain values and tensors: " .. tostring(text):gsub("^.-: ", "")) end
  core.save(tensors, path, { metadata = { checkpoint = text } })
end

--- load(path, {model=, optimizer=, scheduler=, generators=, rng=true}) -> state
-- Restores each object given (in place) from the checkpoint and returns the
-- saved `state` (tensors included).
function M.load(path, t)
  check("load", path, t)
  local ok, tensors, meta = pcall(core.load, path)
  if not ok then fail("load", tostring(tensors):gsub("^.-parry%.load: ", "")) end
  local info = meta and meta.checkpoint and json.decode(meta.checkpoint)
  if type(info) ~= "table" or info.format ~= FORMAT then fail("load", path .. " is not a parry checkpoint") end
  if t.model then
    local sd = {}
    for k, v in pairs(tensors) do
      local name = k:match("^model%.(.+)$")
      if name then sd[name] = v end
    end
    t.model:load_state_dict(sd)
  end
  if t.optimizer then
    if not info.optimizer then fail("load", path .. " holds no optimizer state") end
    local st = {}
    for i = 1, info.optimizer.n do st[i] = {} end
    for k, v in pairs(tensors) do
      local i, name = k:match("^optimizer%.(%d+)%.(.+)$")
      if i then st[tonumber(i)][name] = v end
    end
    t.optimizer:load_state_dict({ hyperparameters = info.optimizer.hyperparameters,
      param_groups = info.optimizer.param_groups, state = st, steps = info.optimizer.steps })
  end
  if t.scheduler then
    if not info.scheduler then fail("load", path .. " holds no scheduler state") end
    t.scheduler:load_state_dict(info.scheduler)
  end
  for name, g in pairs(t.generators or {}) do
    local s = tensors["generator." .. name]
    if not s then fail("load", path .. " holds no generator named '" .. name .. "'") end
    g:set_state(s)
  end
  if t.rng ~= false and tensors.rng then core.set_rng_state(tensors.rng) end
  local state = info.state or {}
  for k, v in pairs(tensors) do
    local name = k:match("^state%.(.+)$")
    if name then state[math.tointeger(tonumber(name)) or name] = v end
  end
  return state
end

return M
