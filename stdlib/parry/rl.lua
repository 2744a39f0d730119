--- parry.rl: reinforcement learning with Gymnasium's semantics and CleanRL's PPO.
--
--   local env = parry.rl.make("CartPole-v1", {seed = 1})
--   local obs, info = env:reset()
--   local obs, reward, terminated, truncated, info = env:step(env.action_space:sample())
--   local policy, history = parry.rl.ppo{env = "CartPole-v1", total_steps = 100000, seed = 1}
--   print(parry.rl.evaluate(policy, "CartPole-v1", {episodes = 10}).mean)
--
-- Environments, vector envs, wrappers and PPO run in Swift (Sources/ParryRL);
-- this file builds the Lua objects around them. Discrete actions are 1..n
-- (Gymnasium's 0..n-1 plus one, like every index in parry).
local core = require("parry.core")
local util = require("parry._util")
local raise = util.raise
local C = core._rl

local rl = { wrappers = {} }

local function options(fn, opts, allowed)
  local set = {}
  for _, k in ipairs(allowed) do set[k] = true end
  local o, err = util.check_options(opts, set)
  if not o then raise(fn .. ": " .. err) end
  return o
end

local function is_tensor(v) return core.is_tensor(v) end

-- f(...) for a function of this module named `fn`: an error from the binding
-- behind it, which names itself `from`, is raised again under `fn`'s name
-- at the script's line.
local function call_as(fn, from, f, ...)
  local r = table.pack(pcall(f, ...))
  if not r[1] then raise((tostring(r[2]):gsub("^.-" .. from:gsub("%p", "%%%0") .. ": ", fn .. ": "))) end
  return table.unpack(r, 2, r.n)
end

-- fresh observation statistics for a d-dimensional Box (Gymnasium's start: mean 0, var 1, count 1e-4)
local function fresh_rms(d, clip)
  return { mean = core.zeros(d), var = core.ones(d), count = 1e-4, clip = clip or 10, epsilon = 1e-8 }
end

-- the options parry.rl.ppo passes to Swift (also accepted by attacks.sa_rl)
local PPO_OPTIONS = { "sa_reg", "sa_eps", "sa_steps", "sa_ramp", "sa_detach_stdev", "total_steps", "num_steps", "lr", "anneal_lr", "gamma", "gae_lambda", "num_minibatches",
                      "update_epochs", "norm_adv", "clip_coef", "clip_vloss", "ent_coef", "vf_coef", "max_grad_norm",
                      "target_kl", "adam_eps", "bootstrap_truncated", "seed", "normalize_reward", "clip_action",
                      "reward_clip", "on_update" }

local Attack   -- the class of parry.rl.attacks' objects (defined below)

-- MARK: spaces

-- A class table: methods on itself, `name` for tostring, inheriting `base`.
local function class(name, base)
  local c = setmetatable({}, base and { __index = base } or nil)
  c.__index, c.__name = c, name
  return c
end

local Space = class("parry.rl.Space")
local Box = class("parry.rl.Box", Space)
local Discrete = class("parry.rl.Discrete", Space)

-- the shortest decimal that reads back as the same float32 (bounds are float32)
local function fmt(x)
  if x == math.huge then return "inf" elseif x == -math.huge then return "-inf" end
  for p = 6, 9 do
    local s = string.format("%." .. p .. "g", x)
    if string.unpack("f", string.pack("f", tonumber(s))) == x then return s end
  end
  return util.shortest_float(x)
end

--- Box(low, high [, shape]): real vectors with per-element bounds (float32).
-- low/high are numbers (then `shape` is required, a table of sizes) or
-- tensors of one shape; ±math.huge leaves a side unbounded.
function rl.Box(low, high, shape)
  local function bound(v, what)
    if is_tensor(v) then return v:float() end
    if type(v) ~= "number" then raise("parry.rl.Box: " .. what .. " must be a number or a tensor, got " .. type(v)) end
    if type(shape) ~= "table" or #shape == 0 then
      raise("parry.rl.Box: a number " .. what .. " needs a shape (a table of sizes, e.g. {3})")
    end
    return core.full(shape, v)
  end
  local lo, hi = bound(low, "low"), bound(high, "high")
  if #lo:size() ~= #hi:size() or lo:numel() ~= hi:numel() then
    raise("parry.rl.Box: low and high have different shapes")
  end
  if (lo:gt(hi)):sum():item() > 0 then raise("parry.rl.Box: low must not exceed high") end
  return setmetatable({ kind = "box", low = lo, high = hi, shape = lo:size(), dtype = "float32" }, Box)
end

--- Discrete(n): the integers 1..n.
function rl.Discrete(n)
  if math.type(n) ~= "integer" or n < 1 then
    raise("parry.rl.Discrete: n must be a positive integer, got " .. tostring(n))
  end
  return setmetatable({ kind = "discrete", n = n }, Discrete)
end

--- space:seed(s): the space's own generator for sample().
function Space:seed(s)
  self._gen = core.Generator(s)
  return self
end

--- space:sample() -> a value drawn as Gymnasium draws it (uniform inside
-- bounds, exponential on a half-bounded side, normal when unbounded).
function Space:sample()
  if not self._gen then self._gen = core.Generator(math.random(0, 2 ^ 53)) end
  return C.space_sample(self, self._gen)
end

--- space:contains(x) -> whether x is a value of the space.
function Space:contains(x) return C.space_contains(self, x) end

function Box:__tostring()
  local function b(t)
    local v = t:reshape(-1):totable()
    local same = true
    for i = 2, #v do if v[i] ~= v[1] then same = false end end
    if same and #v > 0 then return fmt(v[1]) end
    local parts = {}
    for i = 1, #v do parts[i] = fmt(v[i]) end
    return "[" .. table.concat(parts, ", ") .. "]"
  end
  return ("Box(%s, %s, (%s,), float32)"):format(b(self.low), b(self.high), table.concat(self.shape, ", "))
end

function Discrete:__tostring() return ("Discrete(%d)"):format(self.n) end

local function space_of(desc)
  if desc.kind == "discrete" then return rl.Discrete(desc.n) end
  return setmetatable({ kind = "box", low = desc.low, high = desc.high, shape = desc.shape, dtype = "float32" }, Box)
end

local function is_space(s) return type(s) == "table" and (getmetatable(s) == Box or getmetatable(s) == Discrete) end

-- MARK: environments

local NativeEnv = class("parry.rl.NativeEnv")
local VectorEnv = class("parry.rl.VectorEnv", NativeEnv)

local function native(h)
  local os, as, n, id = C.spaces(h)
  if n then
    return setmetatable({ _h = h, num_envs = n, single_observation_space = space_of(os),
                          single_action_space = space_of(as) }, VectorEnv)
  end
  return setmetatable({ _h = h, id = id, observation_space = space_of(os), action_space = space_of(as) }, NativeEnv)
end

--- env:reset([{seed=}]) -> observation, info. A seed reseeds the env's own
-- generator (Gymnasium's reset(seed=)); without one the stream continues.
function NativeEnv:reset(opts)
  local o = options("env:reset", opts, { "seed", "options" })
  return C.reset(self._h, o.seed), {}
end

--- env:step(action) -> observation, reward, terminated, truncated, info.
function NativeEnv:step(action) return C.step(self._h, action) end

--- env:stats() -> {mean=, var=, count=} of a NormalizeObservation or NormalizeReward wrapper.
function NativeEnv:stats()
  local mean, var, count = C.stats(self._h)
  return { mean = mean, var = var, count = count }
end

function NativeEnv:close() end

function NativeEnv:__tostring()
  return ("%s(%s, %s)"):format(self.id or "Env", tostring(self.observation_space), tostring(self.action_space))
end

function VectorEnv:__tostring()
  return ("VectorEnv(%d × %s, %s)"):format(self.num_envs, tostring(self.single_observation_space), tostring(self.single_action_space))
end

--- Env: the base class of environments written in Lua.
--   local Corridor = parry.rl.Env:extend("Corridor")
--   function Corridor:init(opts) self.observation_space = parry.rl.Box(0, 10, {1}); self.action_space = parry.rl.Discrete(2) end
--   function Corridor:reset(opts) ... return obs, {} end
--   function Corridor:step(action) ... return obs, reward, terminated, truncated, {} end
local Env = class("parry.rl.Env")
rl.Env = Env

--- Env:extend(name) -> a class; call it (`Class(opts)`) to make an env, which
-- runs `init(self, opts)`.
function Env:extend(name)
  if type(name) ~= "string" then raise("parry.rl.Env:extend: expected a class name (string), got " .. type(name)) end
  local class = setmetatable({}, { __index = self, __call = function(c, ...) return c.new(...) end })
  class.__index = class
  class.__name = name
  class.__tostring = self.__tostring
  class.new = function(...)
    local env = setmetatable({}, class)
    if env.init then env:init(...) end
    return env
  end
  return class
end

function Env:reset() raise((getmetatable(self).__name or "Env") .. ":reset is not defined") end
function Env:step() raise((getmetatable(self).__name or "Env") .. ":step is not defined") end
function Env:close() end
function Env:__tostring()
  return ("%s(%s, %s)"):format(getmetatable(self).__name or "Env", tostring(self.observation_space), tostring(self.action_space))
end

local function env_name(env)
  local mt = getmetatable(env)
  return (mt and mt.__name) or "env"
end

local function check_obs(env, method, obs)
  local space = env.observation_space
  if space.kind == "discrete" then
    if math.type(obs) ~= "integer" or obs < 1 or obs > space.n then
      raise(("%s:%s must return an observation in %s, got %s"):format(env_name(env), method, tostring(space), tostring(obs)))
    end
    return core.tensor({ obs - 1 })
  end
  if type(obs) == "table" and not is_tensor(obs) then obs = core.tensor(obs) end
  if not is_tensor(obs) then
    raise(("%s:%s must return an observation tensor first, got %s"):format(env_name(env), method, type(obs)))
  end
  if obs:numel() ~= space.low:numel() then
    raise(("%s:%s returned an observation of %d values, its observation_space %s has %d"):format(
      env_name(env), method, obs:numel(), tostring(space), space.low:numel()))
  end
  return obs
end

-- What the Swift adapter calls for a Lua env: runs the method and checks the
-- types it returned (a wrong one is an error naming the env and the value).
C._set_env_helper(function(env, method, arg)
  if method == "reset" then
    local obs = env:reset(arg ~= nil and { seed = arg } or nil)
    return check_obs(env, "reset", obs)
  end
  local obs, reward, terminated, truncated, info = env:step(arg)
  obs = check_obs(env, "step", obs)
  local name = env_name(env)
  if type(reward) ~= "number" then raise(("%s:step must return a number as its reward (2nd value), got %s"):format(name, type(reward))) end
  if type(terminated) ~= "boolean" then raise(("%s:step must return a boolean terminated (3rd value), got %s"):format(name, type(terminated))) end
  if type(truncated) ~= "boolean" then raise(("%s:step must return a boolean truncated (4th value), got %s"):format(name, type(truncated))) end
  if info ~= nil and type(info) ~= "table" then raise(("%s:step must return a table (or nil) as info (5th value), got %s"):format(name, type(info))) end
  return obs, reward, terminated, truncated, info
end)

local lua_registry = {}

--- register(id, make [, {max_episode_steps=}]): registers a Lua env under `id`
-- for make/vector/ppo; `make(opts)` returns a new env.
function rl.register(id, make, opts)
  if type(id) ~= "string" then raise("parry.rl.register: id must be a string, got " .. type(id)) end
  if type(make) ~= "function" and not (type(make) == "table" and getmetatable(make) and getmetatable(make).__call) then
    raise("parry.rl.register: make must be a function or an Env class, got " .. type(make))
  end
  local o = options("parry.rl.register", opts, { "max_episode_steps" })
  lua_registry[id] = { make = make, max_episode_steps = o.max_episode_steps }
end

--- registered() -> the ids make() knows, sorted.
function rl.registered()
  local ids = C.registered()
  for id in pairs(lua_registry) do ids[#ids + 1] = id end
  table.sort(ids)
  return ids
end

local function check_lua_env(fn, env)
  if not is_space(env.observation_space) or not is_space(env.action_space) then
    raise(("%s: %s needs observation_space and action_space (parry.rl.Box or parry.rl.Discrete)"):format(fn, env_name(env)))
  end
end

-- A Lua env behind a Swift adapter (time limit and order enforcement included).
local function wrap_lua(fn, env, max_steps, seed)
  check_lua_env(fn, env)
  local w = native(C.wrap_lua(env, env_name(env), env.observation_space, env.action_space, max_steps, seed))
  w.id = env_name(env)
  w.unwrapped = env
  return w
end

-- env, id string, or Lua env -> native single env
local function as_native(fn, env, opts)
  if type(env) == "string" then return rl.make(env, opts) end
  if type(env) ~= "table" then raise(fn .. ": expected an environment or an env id, got " .. type(env)) end
  if env._h then return env end
  return wrap_lua(fn, env, nil)
end

--- make(id [, {seed=, max_episode_steps=}]) -> env. Native ids (see
-- registered()) and ids registered from Lua; a Lua env instance in place of
-- the id gets the same time limit and checks. max_episode_steps overrides the
-- registered limit (0: none).
function rl.make(id, opts)
  local o = options("parry.rl.make", opts, { "seed", "max_episode_steps", "xml", "assets" })
  if type(id) == "table" and not id._h then return wrap_lua("parry.rl.make", id, o.max_episode_steps, o.seed) end
  if type(id) ~= "string" then raise("parry.rl.make: expected an env id (string), got " .. type(id)) end
  local entry = lua_registry[id]
  if entry then
    local env = entry.make(o)
    if type(env) ~= "table" then raise("parry.rl.make: the maker registered for '" .. id .. "' returned " .. type(env) .. ", not an env") end
    local w = wrap_lua("parry.rl.make", env, o.max_episode_steps or entry.max_episode_steps, o.seed)
    w.id = id
    return w
  end
  local native_ids = {}
  for _, n in ipairs(C.registered()) do native_ids[n] = true end
  if not native_ids[id] then
    raise(("parry.rl.make: unknown environment '%s' (registered: %s)"):format(id, table.concat(rl.registered(), ", ")))
  end
  return native(C.make(id, o.max_episode_steps, o.seed, o.xml, o.assets))
end

--- env:set_state(qpos, qvel) -> observation · env:state() -> qpos, qvel: a
-- MuJoCo env's joint positions and velocities (Gymnasium's set_state).
function NativeEnv:set_state(qpos, qvel) return C.set_state(self._h, qpos, qvel) end
function NativeEnv:state() return C.state(self._h) end

-- More sub-envs than this is a mistake, not a workload (each is a Swift object).
local MAX_ENVS = 65536

local function sub_envs(fn, env, n, o)
  local handles = {}
  for i = 1, n do
    local e
    if type(env) == "string" then
      e = rl.make(env, { max_episode_steps = o.max_episode_steps, seed = o.seed and (o.seed + i - 1) or nil })
    elseif type(env) == "function" or (type(env) == "table" and not env._h and getmetatable(env) and rawget(getmetatable(env), "__call") and env.new) then
      e = as_native(fn, env(), nil)
    else
      if n ~= 1 then raise(fn .. ": one env instance cannot make " .. n .. " envs; pass an env id or a function that makes an env") end
      e = as_native(fn, env, nil)
      if e.num_envs then raise(fn .. ": expected a single env or an env id, got a vector env") end
    end
    handles[i] = e._h
  end
  return handles
end

--- vector(id_or_make, n [, {seed=, max_episode_steps=, autoreset="next_step"}]) -> vector env.
-- Sub-envs step in Swift, one after another. `id_or_make` is an env id or a
-- function returning an env. Next-step autoreset (Gymnasium 1.x's default):
-- the step after an episode ends resets that sub-env, ignores its action and
-- returns reward 0 with both flags false; "same_step" resets inside the
-- ending step and puts the last observation in info.final_obs[i].
function rl.vector(env, n, opts)
  if math.type(n) ~= "integer" or n < 1 or n > MAX_ENVS then
    raise(("parry.rl.vector: n must be an integer in 1..%d, got %s"):format(MAX_ENVS, tostring(n)))
  end
  local o = options("parry.rl.vector", opts, { "seed", "max_episode_steps", "autoreset" })
  return native(C.vector(sub_envs("parry.rl.vector", env, n, o), o.autoreset))
end

-- A VectorEnv resets, steps and reports statistics through NativeEnv's
-- methods (it inherits them): reset gives num_envs × ... observations and
-- seeds sub-env i with seed + i - 1.

-- MARK: wrappers (work on single and vector envs)

local function wrapper(name, allowed)
  return function(env, opts)
    local fn = "parry.rl.wrappers." .. name
    local o = options(fn, opts, allowed)
    if type(env) ~= "table" then raise(fn .. ": expected an environment (from parry.rl.make or parry.rl.vector), got " .. type(env)) end
    local inner = as_native(fn, env)
    local w = native(call_as(fn, "parry.rl.wrappers", C.wrap, inner._h, name, o))
    w.id = inner.id
    return w
  end
end

--- wrappers.NormalizeObservation(env [, {clip=10, epsilon=1e-8}]): (o − mean)/√(var + ε), clipped.
rl.wrappers.NormalizeObservation = wrapper("NormalizeObservation", { "clip", "epsilon" })
--- wrappers.NormalizeReward(env [, {gamma=0.99, clip=10, epsilon=1e-8}]): reward / std of the discounted return, clipped.
rl.wrappers.NormalizeReward = wrapper("NormalizeReward", { "gamma", "clip", "epsilon" })
--- wrappers.ClipAction(env): Box actions clipped to the bounds.
rl.wrappers.ClipAction = wrapper("ClipAction", {})
--- wrappers.RecordEpisodeStatistics(env): info.episode = {r=, l=, t=} when an episode ends.
rl.wrappers.RecordEpisodeStatistics = wrapper("RecordEpisodeStatistics", {})

-- MARK: policies

local Policy = class("parry.rl.Policy")

local function spaces_from(fn, o)
  local os, as = o.observation_space, o.action_space
  if o.env ~= nil then
    local env = o.env
    if type(env) == "string" then env = rl.make(env) end
    if type(env) ~= "table" then raise(fn .. ": env must be an environment or an env id, got " .. type(env)) end
    os = env.single_observation_space or env.observation_space
    as = env.single_action_space or env.action_space
  end
  if not is_space(os) or not is_space(as) then
    raise(fn .. ": needs observation_space and action_space (or env=)")
  end
  return os, as
end

--- Policy{env= | observation_space=, action_space=, actor=, critic=, log_std=, hidden={64, 64}, activation="tanh", seed=}
-- An actor-critic. Without actor/critic: CleanRL's separate MLPs with
-- orthogonal init (gain √2; 0.01 on the actor's head, 1 on the critic's).
-- actor maps observations to logits (Discrete) or means (Box); critic to
-- one value; log_std (1×k, state-independent) defaults to zeros.
function rl.Policy(opts)
  local o = options("parry.rl.Policy", opts, { "env", "observation_space", "action_space", "actor", "critic", "log_std",
                                               "hidden", "activation", "seed", "obs_rms" })
  local os, as = spaces_from("parry.rl.Policy", o)
  local p = setmetatable({ observation_space = os, action_space = as, obs_rms = o.obs_rms }, Policy)
  if o.actor or o.critic then
    local nn = require("parry.nn")
    if not nn.is_module(o.actor) or not nn.is_module(o.critic) then
      raise("parry.rl.Policy: actor and critic must both be modules")
    end
    p.actor, p.critic = o.actor, o.critic
    if as.kind == "box" then
      p.log_std = o.log_std or core.zeros(1, as.low:numel()):requires_grad_()
    end
  else
    p.actor, p.critic, p.log_std = C.mlp_policy(os, as, o.hidden, o.activation, o.seed)
    p.hidden, p.activation = o.hidden or { 64, 64 }, o.activation or "tanh"
  end
  return p
end

--- policy:act(obs [, {deterministic=false, generator=}]) -> action(s). obs is
-- one observation or a batch; the policy's observation statistics apply.
function Policy:act(obs, opts)
  local o = options("Policy:act", opts, { "deterministic", "generator" })
  return C.act(self, obs, o.deterministic, o.generator)
end

--- policy:normalize(obs) -> obs as the policy's networks see it (its
-- observation statistics applied, frozen; unchanged without them).
function Policy:normalize(obs) return C.normalize(self, obs) end

--- policy:value(obs) -> V(obs) per row.
function Policy:value(obs) return C.value(self, obs) end

--- policy:parameters() -> the actor's, the critic's and log_std.
function Policy:parameters()
  local ps = {}
  for _, m in ipairs({ self.actor, self.critic }) do
    for _, t in ipairs(m:parameters()) do ps[#ps + 1] = t end
  end
  if self.log_std then ps[#ps + 1] = self.log_std end
  return ps
end

function Policy:__tostring()
  return ("Policy(%s -> %s%s)"):format(tostring(self.observation_space), tostring(self.action_space),
    self.obs_rms and ", normalized observations" or "")
end

--- policy:save(path): networks, log_std and the observation statistics in one
-- safetensors file (replaced atomically); parry.rl.load reads it back.
function Policy:save(path)
  local t, meta = {}, { format = "parry.rl.Policy/1" }
  for k, v in pairs(self.actor:state_dict()) do t["actor." .. k] = v end
  for k, v in pairs(self.critic:state_dict()) do t["critic." .. k] = v end
  if self.log_std then t.log_std = self.log_std end
  local os, as = self.observation_space, self.action_space
  t["observation_space.low"], t["observation_space.high"] = os.low, os.high
  if as.kind == "discrete" then meta.action_n = as.n else t["action_space.low"], t["action_space.high"] = as.low, as.high end
  if os.kind == "discrete" then meta.observation_n = os.n end
  if self.obs_rms then
    t["obs_rms.mean"], t["obs_rms.var"] = self.obs_rms.mean, self.obs_rms.var
    meta.obs_rms_count = util.shortest_float(self.obs_rms.count or 1e-4)
    meta.obs_rms_clip = util.shortest_float(self.obs_rms.clip or 10)
    meta.obs_rms_epsilon = util.shortest_float(self.obs_rms.epsilon or 1e-8)
  end
  if self.hidden then
    meta.hidden = table.concat(self.hidden, ",")
    meta.activation = self.activation
  end
  core.save(t, path, { metadata = meta })
end

--- load(path [, policy]) -> policy. Without `policy`, rebuilds the MLP policy
-- the file describes; with one (e.g. Lua-defined networks), loads into it.
function rl.load(path, into)
  if type(path) ~= "string" then raise("parry.rl.load: expected a path (string), got " .. type(path)) end
  local t, meta = call_as("parry.rl.load", "parry.load", core.load, path)
  if meta.format ~= "parry.rl.Policy/1" then raise("parry.rl.load: " .. tostring(path) .. " is not a saved parry.rl.Policy") end
  local os = meta.observation_n and rl.Discrete(tonumber(meta.observation_n)) or
    setmetatable({ kind = "box", low = t["observation_space.low"], high = t["observation_space.high"],
                   shape = t["observation_space.low"]:size(), dtype = "float32" }, Box)
  local as = meta.action_n and rl.Discrete(math.tointeger(tonumber(meta.action_n))) or
    setmetatable({ kind = "box", low = t["action_space.low"], high = t["action_space.high"],
                   shape = t["action_space.low"]:size(), dtype = "float32" }, Box)
  local p = into
  if not p then
    if not meta.hidden then raise("parry.rl.load: " .. tostring(path) .. " holds custom networks; pass the policy to load into") end
    local hidden = {}
    for h in meta.hidden:gmatch("%d+") do hidden[#hidden + 1] = math.tointeger(tonumber(h)) end
    p = rl.Policy{ observation_space = os, action_space = as, hidden = hidden, activation = meta.activation }
  end
  local actor, critic = {}, {}
  for k, v in pairs(t) do
    local a = k:match("^actor%.(.*)"); if a then actor[a] = v end
    local c = k:match("^critic%.(.*)"); if c then critic[c] = v end
  end
  p.actor:load_state_dict(actor)
  p.critic:load_state_dict(critic)
  if t.log_std and p.log_std then core.no_grad(function() p.log_std:copy_(t.log_std) end) end
  if t["obs_rms.mean"] then
    p.obs_rms = { mean = t["obs_rms.mean"], var = t["obs_rms.var"], count = tonumber(meta.obs_rms_count),
                  clip = tonumber(meta.obs_rms_clip), epsilon = tonumber(meta.obs_rms_epsilon) }
  end
  return p
end

-- MARK: state attacks

Attack = class("parry.rl.Attack")
rl.attacks = {}

--- attack(policy, obs [, generator]) -> the perturbed observation(s), in the
-- units the policy's networks see (normalized when the policy normalizes).
function Attack:__call(policy, obs, generator)
  if getmetatable(policy) ~= Policy then raise("attack: expected a parry.rl.Policy (argument 1), got " .. type(policy)) end
  local o = policy:normalize(obs)
  return C.attack_perturb(self, policy, o, generator)
end

function Attack:__tostring()
  return ("%s attack (eps=%s%s)"):format(self.kind, util.shortest_float(self.eps), self.steps and (", steps=" .. self.steps) or "")
end

local function attack(kind, allowed)
  return function(opts)
    local fn = "parry.rl.attacks." .. kind
    local o = options(fn, opts, allowed)
    if o.eps == nil then raise(fn .. ": missing option eps (the ℓ∞ radius, in the policy's observation units)") end
    local a = setmetatable({ kind = kind }, Attack)
    for k, v in pairs(o) do a[k] = v end
    call_as(fn, "parry.rl.attacks", C.attack_check, a)
    return a
  end
end

--- attacks.random{eps=}: s + U[−ε, ε]^d.
rl.attacks.random = attack("random", { "eps" })
--- attacks.critic{eps=, steps=10, step_eps=eps/steps}: PGD lowering the victim's V(ŝ).
rl.attacks.critic = attack("critic", { "eps", "steps", "step_eps" })
--- attacks.mad{eps=, steps=10, beta=1}: SGLD ascent of the action change (KL for Discrete).
rl.attacks.mad = attack("mad", { "eps", "steps", "beta" })

-- Trains a learned adversary (SA-RL: mode "state"; PA-AD: mode "action") by PPO.
local function learned_attack(kind, mode)
  local fn = "parry.rl.attacks." .. kind
  return function(opts)
    local allowed = { "victim", "env", "eps", "deterministic", "hidden", "steps" }
    for _, k in ipairs(PPO_OPTIONS) do allowed[#allowed + 1] = k end
    local o = options(fn, opts, allowed)
    if getmetatable(o.victim) ~= Policy then raise(fn .. ": victim must be a parry.rl.Policy, got " .. type(o.victim)) end
    if o.env == nil then raise(fn .. ": missing option env (the victim's env or its id)") end
    if type(o.eps) ~= "number" then raise(fn .. ": missing option eps (the ℓ∞ radius, in the victim's observation units)") end
    if o.victim.observation_space.kind ~= "box" then raise(fn .. ": learned attacks perturb Box observations") end
    if mode == "action" and o.victim.action_space.kind ~= "box" then
      raise(fn .. ": PA-AD steers Box actions; the victim has " .. tostring(o.victim.action_space))
    end
    local ppo = { total_steps = 200000 }
    for _, k in ipairs(PPO_OPTIONS) do if o[k] ~= nil then ppo[k] = o[k] end end
    ppo.hidden = o.hidden
    ppo.env = function()
      local base = as_native(fn, o.env)
      return native(call_as(fn, "parry.rl.attacks", C.adversary_env, o.victim, base._h, o.eps, o.deterministic, o.seed, mode, o.steps))
    end
    local adversary, history = rl.ppo(ppo)
    local a = setmetatable({ kind = kind, eps = o.eps, steps = o.steps, adversary = adversary, history = history }, Attack)
    call_as(fn, "parry.rl.attacks", C.attack_check, a)
    return a
  end
end

--- attacks.sa_rl{victim=, env=, eps=, total_steps=200000, deterministic=true, seed=1, ...} -> attack.
-- The learned optimal adversary (SA-RL, Zhang et al. 2021): a Gaussian
-- policy ν trained by PPO (parry.rl.ppo's options pass through) on the
-- negated reward of the frozen victim, which sees ŝ = s + ε·clip(a, −1, 1);
-- the attack then uses ν's mean action. `attack.adversary` is ν,
-- `attack.history` its training records.
rl.attacks.sa_rl = learned_attack("sa_rl", "state")

--- attacks.pa_ad{victim=, env=, eps=, total_steps=200000, steps=10, ...} -> attack.
-- PA-AD (Sun et al. 2022): a director ν trained by PPO on the negated reward
-- proposes a direction in the victim's action space; the actor takes one
-- FGSM step (from a start within ±ε/steps) toward moving the victim's mean
-- action that way. Box actions only.
rl.attacks.pa_ad = learned_attack("pa_ad", "action")

local function rs_attack(kind, ratio)
  local fn = "parry.rl.attacks." .. kind
  return function(opts)
    local o = options(fn, opts, { "victim", "env", "eps", "steps", "action_ratio", "sarsa" })
    if getmetatable(o.victim) ~= Policy then raise(fn .. ": victim must be a parry.rl.Policy, got " .. type(o.victim)) end
    if o.env == nil then raise(fn .. ": missing option env (the victim's env or its id)") end
    if type(o.eps) ~= "number" then raise(fn .. ": missing option eps (the ℓ∞ radius, in the victim's observation units)") end
    if o.victim.action_space.kind ~= "box" then
      raise(fn .. ": robust SARSA learns Q(s, a) for Box actions; the victim has " .. tostring(o.victim.action_space))
    end
    if o.sarsa ~= nil and type(o.sarsa) ~= "table" then raise(fn .. ": sarsa must be a table of Q-learning options") end
    local base = as_native(fn, o.env)
    local q, losses = util.with_status(function(show) return C.rs_train(o.victim, base._h, o.sarsa, show) end)
    local a = setmetatable({ kind = "rs", eps = o.eps, steps = o.steps, action_ratio = o.action_ratio or ratio, q = q,
                             losses = losses }, Attack)
    call_as(fn, "parry.rl.attacks", C.attack_check, a)
    return a
  end
end

--- attacks.rs{victim=, env=, eps=, steps=10, sarsa={iterations=30, num_steps=2048, epochs=10, minibatches=32, lr=3e-4, gamma=0.99, eps=0.02, reg=0.1}} -> attack.
-- Robust SARSA: Q(s, a) of the deterministic victim learned on-policy with
-- a smooth-L1 TD loss and an IBP smoothness regularizer (radius sarsa.eps,
-- ramped), then PGD lowering Q(s, μ(ŝ)). Box actions. `attack.q` is Q.
rl.attacks.rs = rs_attack("rs", 0)
--- attacks.rs_mad{...}: as rs, the PGD objective mixing Q and MAD's action change half and half (`action_ratio` 0.5).
rl.attacks.rs_mad = rs_attack("rs_mad", 0.5)

local SUITE = { "random", "critic", "mad", "rs", "rs_mad", "sa_rl", "pa_ad" }
local LEARNED = { rs = true, rs_mad = true, sa_rl = true, pa_ad = true }

--- attack_suite{victim=, env=, eps=, attacks={...}, grid={...}, steps=200000, episodes=20, seed=1} -> result.
-- Runs a set of attacks on one victim and reports the strongest: each
-- learned attack (rs, rs_mad, sa_rl, pa_ad) is trained once per entry of its
-- hyperparameter grid (default: PPO lr 3e-4 and 1e-3 for the learned
-- adversaries, Q-learning reg 0.1 and 1 for rs) and the one that lowers
-- the victim's return most is kept, as ATLA's evaluation protocol asks.
-- `steps` is the learned adversaries' PPO budget. result.attacks[name] =
-- {mean=, attack=, config=, tried={...}}; result.worst = {name=, mean=};
-- result.natural the unattacked mean.
function rl.attack_suite(opts)
  local fn = "parry.rl.attack_suite"
  local o = options(fn, opts, { "victim", "env", "eps", "attacks", "grid", "steps", "episodes", "seed" })
  if getmetatable(o.victim) ~= Policy then raise(fn .. ": victim must be a parry.rl.Policy, got " .. type(o.victim)) end
  if o.env == nil then raise(fn .. ": missing option env") end
  if type(o.eps) ~= "number" or o.eps < 0 then raise(fn .. ": eps must be a non-negative number, got " .. tostring(o.eps)) end
  local names = o.attacks or SUITE
  local box = o.victim.action_space.kind == "box"
  local grid = o.grid or {}
  local eval = function(a)
    return rl.evaluate(o.victim, o.env, { episodes = o.episodes or 20, seed = o.seed or 1, attack = a }).mean
  end
  local result = { natural = eval(nil), attacks = {} }
  local worst = { name = "natural", mean = result.natural }
  for _, name in ipairs(names) do
    local make = rl.attacks[name]
    if type(make) ~= "function" then raise(("%s: unknown attack '%s'"):format(fn, tostring(name))) end
    local configs = grid[name]
    if configs == nil then
      if name == "rs" or name == "rs_mad" then configs = { { sarsa = { reg = 0.1 } }, { sarsa = { reg = 1 } } }
      elseif LEARNED[name] then configs = { { lr = 3e-4 }, { lr = 1e-3 } }
      else configs = { {} } end
    end
    if (name == "rs" or name == "rs_mad" or name == "pa_ad") and not box then
      result.attacks[name] = { skipped = "needs a Box-action victim" }
    else
      local best
      local tried = {}
      for _, cfg in ipairs(configs) do
        local a_opts = { eps = o.eps }
        for k, v in pairs(cfg) do a_opts[k] = v end
        if LEARNED[name] then
          a_opts.victim, a_opts.env = o.victim, o.env
          if name == "sa_rl" or name == "pa_ad" then a_opts.total_steps = a_opts.total_steps or o.steps or 200000 end
        end
        local a = make(a_opts)
        local m = eval(a)
        tried[#tried + 1] = { config = cfg, mean = m }
        if not best or m < best.mean then best = { mean = m, attack = a, config = cfg } end
      end
      best.tried = tried
      result.attacks[name] = best
      if best.mean < worst.mean then worst = { name = name, mean = best.mean } end
    end
  end
  result.worst = worst
  return result
end

-- MARK: robustness evaluation and test-time adaptation (PROTECTED's protocol)

local function members(fn, v, name)
  if getmetatable(v) == Policy then return { v } end
  if type(v) == "table" and #v > 0 then
    for i, p in ipairs(v) do
      if getmetatable(p) ~= Policy then raise(("%s: %s[%d] is not a parry.rl.Policy"):format(fn, name, i)) end
    end
    return v
  end
  raise(("%s: %s must be a parry.rl.Policy or a list of them (one per training seed)"):format(fn, name))
end

local function median(xs)
  local s = {}
  for i, x in ipairs(xs) do s[i] = x end
  table.sort(s)
  local n = #s
  if n == 0 then return 0 / 0 end
  return n % 2 == 1 and s[(n + 1) // 2] or (s[n // 2] + s[n // 2 + 1]) / 2
end

local function sorted_keys(t)
  local ks = {}
  for k in pairs(t) do ks[#ks + 1] = k end
  table.sort(ks, function(a, b) return tostring(a) < tostring(b) end)
  return ks
end

--- robustness{policies=, env=, attacks=, episodes=50, seed=1} -> result.
-- `policies` maps names to a Policy or a list of Policies (training seeds),
-- `attacks` names to parry.rl.attacks.* or to a function(policy) -> attack
-- for per-victim attacks (SA-RL); natural returns come first. For
-- each policy and condition: `median` over the seeds of each seed's mean
-- return, `mean` and `sd` over all episodes, `per_seed`; `worst` is the
-- attack with the lowest median. `result.summary` is a printable table.
function rl.robustness(opts)
  local fn = "parry.rl.robustness"
  local o = options(fn, opts, { "policies", "env", "attacks", "episodes", "seed", "max_episode_steps" })
  if type(o.policies) ~= "table" or next(o.policies) == nil then raise(fn .. ": policies must be a non-empty table name -> policy") end
  if o.env == nil then raise(fn .. ": missing option env") end
  local attacks = o.attacks or {}
  if type(attacks) ~= "table" then raise(fn .. ": attacks must be a table name -> attack") end
  for name, a in pairs(attacks) do
    if getmetatable(a) ~= Attack and type(a) ~= "function" then
      raise(("%s: attacks.%s is not one of parry.rl.attacks.* (or a function(policy) -> attack)"):format(fn, tostring(name)))
    end
  end
  -- a function(policy) -> attack makes a per-victim attack (SA-RL's adversary), once per policy
  local made = {}
  local function attack_for(cond, p)
    local a = attacks[cond]
    if type(a) ~= "function" then return a end
    made[cond] = made[cond] or {}
    if not made[cond][p] then
      local x = a(p)
      if getmetatable(x) ~= Attack then raise(("%s: attacks.%s returned %s, not an attack"):format(fn, tostring(cond), type(x))) end
      made[cond][p] = x
    end
    return made[cond][p]
  end
  local names, anames = sorted_keys(o.policies), sorted_keys(attacks)
  local result = { policies = {}, order = names, attacks = { "natural" } }
  for _, a in ipairs(anames) do result.attacks[#result.attacks + 1] = a end
  local lines = { ("%-14s %12s"):format("policy", "natural") }
  for _, a in ipairs(anames) do lines[1] = lines[1] .. ("%12s"):format(a) end
  lines[1] = lines[1] .. ("%14s"):format("worst")
  for _, name in ipairs(names) do
    local ps = members(fn, o.policies[name], "policies." .. tostring(name))
    local row = {}
    for _, cond in ipairs(result.attacks) do
      local per_seed, all = {}, {}
      for _, p in ipairs(ps) do
        local ev = rl.evaluate(p, o.env, { episodes = o.episodes or 50, seed = o.seed or 1, attack = attack_for(cond, p),
                                           max_episode_steps = o.max_episode_steps })
        per_seed[#per_seed + 1] = ev.mean
        for _, r in ipairs(ev.returns) do all[#all + 1] = r end
      end
      local m = 0
      for _, r in ipairs(all) do m = m + r end
      m = m / #all
      local v = 0
      for _, r in ipairs(all) do v = v + (r - m) ^ 2 end
      row[cond] = { median = median(per_seed), mean = m, sd = math.sqrt(v / #all), per_seed = per_seed }
    end
    local worst = { name = "natural", median = row.natural.median }
    for _, a in ipairs(anames) do if row[a].median < worst.median then worst = { name = a, median = row[a].median } end end
    row.worst = worst
    result.policies[name] = row
    local line = ("%-14s %12.1f"):format(tostring(name), row.natural.median)
    for _, a in ipairs(anames) do line = line .. ("%12.1f"):format(row[a].median) end
    lines[#lines + 1] = line .. ("%14s"):format(("%.1f"):format(worst.median))
  end
  result.summary = table.concat(lines, "\n")
  return result
end

--- plot_robustness(result, file [, {title=}]): grouped bars of the medians, one group per policy.
function rl.plot_robustness(result, file, opts)
  local fn = "parry.rl.plot_robustness"
  if type(result) ~= "table" or type(result.policies) ~= "table" then raise(fn .. ": expected the result of parry.rl.robustness") end
  if type(file) ~= "string" then raise(fn .. ": file must be a path (string), got " .. type(file)) end
  local o = options(fn, opts, { "title" })
  local series = {}
  for _, cond in ipairs(result.attacks) do
    local values = {}
    for i, name in ipairs(result.order) do values[i] = result.policies[name][cond].median end
    series[#series + 1] = { values = values, label = cond }
  end
  return require("parry.plot").bar{labels = result.order, series = series, title = o.title or "return under attack (median over seeds)",
                                   ylabel = "return", file = file}
end

rl.schedules = {}

--- schedules.halves(attack): the paper's schedule — attacked in the first
-- and third quarters of the rounds, natural otherwise.
function rl.schedules.halves(attack)
  return function(t, T) if t <= T // 4 or (t > T // 2 and t <= 3 * T // 4) then return attack end end
end

--- schedules.periodic(attack, interval): `interval` rounds attacked, `interval` natural, and so on.
function rl.schedules.periodic(attack, interval)
  if math.type(interval) ~= "integer" or interval < 1 then raise("parry.rl.schedules.periodic: interval must be a positive integer") end
  return function(t) if ((t - 1) // interval) % 2 == 0 then return attack end end
end

--- schedules.random(attack, p [, {seed=}]): starts attacked and switches between attacked and natural with probability p each round.
function rl.schedules.random(attack, p, opts)
  if type(p) ~= "number" or p < 0 or p > 1 then raise("parry.rl.schedules.random: p must be a probability, got " .. tostring(p)) end
  local o = options("parry.rl.schedules.random", opts, { "seed" })
  local g, on, states = core.Generator(o.seed or 1), true, {}
  return function(t)
    while #states < t do
      if #states > 0 and core.rand(1, { generator = g }):item() < p then on = not on end
      states[#states + 1] = on
    end
    if states[t] then return attack end
  end
end

--- adapt{policies=, env=, schedule=, rounds=2000, lr=5, normalizer=, offset=, eval_episodes=5, seed=1} -> result.
-- EXP3 over the policy class, one deterministic episode per round against
-- the schedule's attacker (a function(round, rounds) -> attack or nil, an
-- attack for every round, or nil for none). Per round: the arm, its
-- return, the arm probabilities and the cumulative (pseudo-)regret against
-- the best fixed member in hindsight, from each member's expected return per
-- condition (estimated with eval_episodes episodes).
function rl.adapt(opts)
  local fn = "parry.rl.adapt"
  local o = options(fn, opts, { "policies", "env", "schedule", "rounds", "lr", "normalizer", "offset", "eval_episodes", "seed", "max_episode_steps" })
  if type(o.policies) ~= "table" or #o.policies == 0 then raise(fn .. ": policies must be a non-empty list of parry.rl.Policy (the policy class)") end
  for i, p in ipairs(o.policies) do
    if getmetatable(p) ~= Policy then raise(("%s: policies[%d] is not a parry.rl.Policy"):format(fn, i)) end
  end
  local T = o.rounds or 2000
  if math.type(T) ~= "integer" or T < 1 then raise(fn .. ": rounds must be a positive integer, got " .. tostring(T)) end
  local sched = o.schedule
  if getmetatable(sched) == Attack then local a = sched; sched = function() return a end end
  if sched ~= nil and type(sched) ~= "function" then raise(fn .. ": schedule must be a function(round, rounds) -> attack or nil, or an attack") end
  local conditions, index, schedule = { false }, {}, {}
  for t = 1, T do
    local a = sched and sched(t, T)
    if a == nil or a == false then schedule[t] = 1
    elseif getmetatable(a) ~= Attack then
      raise(("%s: the schedule returned %s for round %d (expected one of parry.rl.attacks.* or nil)"):format(fn, type(a), t))
    else
      if not index[a] then conditions[#conditions + 1] = a; index[a] = #conditions end
      schedule[t] = index[a]
    end
  end
  local env = as_native(fn, o.env, { max_episode_steps = o.max_episode_steps })
  local rounds, expected, best = util.with_status(function(show)
    return C.adapt(o.policies, env._h, conditions, schedule,
                   { normalizer = o.normalizer, offset = o.offset, lr = o.lr, eval_episodes = o.eval_episodes, seed = o.seed }, show)
  end)
  local total = 0
  for _, r in ipairs(rounds) do total = total + r.reward end
  return { rounds = rounds, expected = expected, best_fixed = best, conditions = conditions, total_reward = total,
           regret = rounds[#rounds].regret }
end

--- plot_adaptation(result, file [, {window=50, title=}]): the moving average of
-- the per-round return and the cumulative regret against the round.
function rl.plot_adaptation(result, file, opts)
  local fn = "parry.rl.plot_adaptation"
  if type(result) ~= "table" or type(result.rounds) ~= "table" or #result.rounds == 0 then raise(fn .. ": expected the result of parry.rl.adapt") end
  if type(file) ~= "string" then raise(fn .. ": file must be a path (string), got " .. type(file)) end
  local o = options(fn, opts, { "window", "title" })
  local w = o.window or 50
  local xs, avg, regret, acc = {}, {}, {}, {}
  for i, r in ipairs(result.rounds) do
    acc[i] = (acc[i - 1] or 0) + r.reward
    xs[i] = i
    local lo = math.max(0, i - w)
    avg[i] = (acc[i] - (acc[lo] or 0)) / (i - lo)
    regret[i] = r.regret
  end
  return require("parry.plot").line{series = {{x = xs, y = avg, label = ("return (moving average of %d)"):format(w)},
                                             {x = xs, y = regret, label = "cumulative regret"}},
                                   title = o.title or "EXP3 over the policy class", xlabel = "round", file = file}
end

-- MARK: PPO


--- ppo{env=, total_steps=, ...} -> policy, history. CleanRL's PPO
-- (ppo_continuous_action.py's defaults, for Discrete and Box): see
-- docs/rl.md for every option. `history` has one record per update.
local PPO_SETUP = { "env", "num_envs", "policy", "hidden", "activation", "normalize_obs", "obs_clip", "max_episode_steps" }

-- The same-step vector env, the policy (made or checked; observation
-- statistics added when they are to be normalized) and the options for Swift.
local function ppo_setup(fn, o)
  if o.env == nil then raise(fn .. ": missing option env (an env id, an env, or a function that makes one)") end
  local n = o.num_envs or 1
  if math.type(n) ~= "integer" or n < 1 or n > MAX_ENVS then
    raise(("%s: num_envs must be an integer in 1..%d, got %s"):format(fn, MAX_ENVS, tostring(n)))
  end
  local seed = o.seed or 1
  local envs = native(C.vector(sub_envs(fn, o.env, n, { max_episode_steps = o.max_episode_steps }), "same_step"))
  local policy = o.policy
  if policy == nil then
    policy = rl.Policy{ observation_space = envs.single_observation_space, action_space = envs.single_action_space,
                        hidden = o.hidden, activation = o.activation, seed = seed }
  elseif getmetatable(policy) ~= Policy then
    raise(fn .. ": policy must be a parry.rl.Policy, got " .. type(policy))
  end
  local normalize = o.normalize_obs
  if normalize == nil then normalize = policy.action_space.kind == "box" end
  if normalize and not policy.obs_rms then
    local d = policy.observation_space.low:numel()
    policy.obs_rms = fresh_rms(d, o.obs_clip)
  end
  local sw = {}
  for _, k in ipairs(PPO_OPTIONS) do if o[k] ~= nil then sw[k] = o[k] end end
  sw.seed = seed
  return envs, policy, sw
end

local function set_stats(policy, mean, var, count)
  if mean then policy.obs_rms.mean, policy.obs_rms.var, policy.obs_rms.count = mean, var, count end
end

function rl.ppo(opts)
  local allowed = {}
  for _, k in ipairs(PPO_SETUP) do allowed[#allowed + 1] = k end
  for _, k in ipairs(PPO_OPTIONS) do allowed[#allowed + 1] = k end
  local o = options("parry.rl.ppo", opts, allowed)
  local envs, policy, sw = ppo_setup("parry.rl.ppo", o)
  local history, mean, var, count = util.with_status(function(show) return C.ppo(policy, envs._h, sw, show) end)
  set_stats(policy, mean, var, count)
  return policy, history
end

--- atla{env=, eps=, total_steps=, adversary={...}, victim_updates=1, adversary_updates=1, seed=1, ...} ->
-- victim, {victim=, adversary=} histories, the adversary as an sa_rl attack.
-- ATLA-PPO: the victim (PPO, this table's options as for parry.rl.ppo) and
-- an SA-RL adversary (PPO with `adversary`'s options; total_steps defaults to
-- the victim's) trained alternately, the victim acting on — and learning
-- from — observations its current adversary perturbs within ε.
function rl.atla(opts)
  local fn = "parry.rl.atla"
  local allowed = { "eps", "adversary", "victim_updates", "adversary_updates" }
  for _, k in ipairs(PPO_SETUP) do allowed[#allowed + 1] = k end
  for _, k in ipairs(PPO_OPTIONS) do allowed[#allowed + 1] = k end
  local o = options(fn, opts, allowed)
  if type(o.eps) ~= "number" then raise(fn .. ": missing option eps (the ℓ∞ radius, in the victim's observation units)") end
  local envs, victim, vsw = ppo_setup(fn, o)
  if victim.observation_space.kind ~= "box" then raise(fn .. ": ATLA perturbs Box observations") end
  local ao = o.adversary or {}
  if type(ao) ~= "table" then raise(fn .. ": adversary must be a table of PPO options") end
  local aallowed = { "hidden", "activation", "normalize_obs", "obs_clip" }
  for _, k in ipairs(PPO_OPTIONS) do aallowed[#aallowed + 1] = k end
  ao = options(fn .. " adversary", ao, aallowed)
  local d = victim.observation_space.low:numel()
  local make = function()
    return native(C.adversary_env(victim, as_native(fn, type(o.env) == "function" and o.env() or o.env)._h, o.eps, true, o.seed))
  end
  local aenvs = native(C.vector({ make()._h }, "same_step"))
  local adversary = rl.Policy{ observation_space = rl.Box(-math.huge, math.huge, { d }), action_space = rl.Box(-1, 1, { d }),
                               hidden = ao.hidden, activation = ao.activation, seed = (o.seed or 1) + 1 }
  if ao.normalize_obs ~= false then
    adversary.obs_rms = fresh_rms(d, ao.obs_clip)
  end
  local asw = { total_steps = vsw.total_steps or 1000000, seed = (o.seed or 1) + 1 }
  for _, k in ipairs(PPO_OPTIONS) do if ao[k] ~= nil then asw[k] = ao[k] end end
  local vh, ah, vm, vv, vc, am, av, ac = util.with_status(function(show)
    return C.atla(victim, adversary, envs._h, aenvs._h, vsw, asw,
                  { eps = o.eps, victim_updates = o.victim_updates, adversary_updates = o.adversary_updates }, show)
  end)
  set_stats(victim, vm, vv, vc)
  set_stats(adversary, am, av, ac)
  local attack = setmetatable({ kind = "sa_rl", eps = o.eps, adversary = adversary, history = ah }, Attack)
  return victim, { victim = vh, adversary = ah }, attack
end

--- protected{env=, base=, base_steps=1000000, eps=, iterations=3, updates=50, delta=, ppo={...}, adversary={...}, ...}
-- -> the policy class (a list of Policies, the base first), info.
-- PROTECTED's construction of a non-dominated class (see docs/rl.md): from a
-- pretrained `base` (or one trained with parry.rl.ppo and `ppo`'s options for
-- `base_steps`), each iteration trains a new member against a fresh PA-AD
-- adversary for `updates` PPO updates; `ppo` configures the members' PPO (an
-- `sa_reg` adds SA-PPO's regularizer, `num_steps` its rollout), `adversary`
-- the adversary's. info.iterations[j] has the gap Ĵ(π_j, ν_j) − max Ĵ(Π̃, ν_j),
-- whether π_j was added (it is not once the gap is ≤ delta, which stops),
-- and both training histories.
function rl.protected(opts)
  local fn = "parry.rl.protected"
  local o = options(fn, opts, { "env", "base", "base_steps", "eps", "iterations", "updates", "delta", "ppo", "adversary",
                                "reselect_every", "select_episodes", "gap_episodes", "steps", "seed", "max_episode_steps" })
  if o.env == nil then raise(fn .. ": missing option env") end
  if type(o.eps) ~= "number" then raise(fn .. ": missing option eps (the ℓ∞ radius, in the policies' observation units)") end
  local function ppo_options(name, t)
    if t ~= nil and type(t) ~= "table" then raise(("%s: %s must be a table of PPO options"):format(fn, name)) end
    return options(fn .. " " .. name, t, PPO_OPTIONS)
  end
  local po, ao = ppo_options("ppo", o.ppo), ppo_options("adversary", o.adversary)
  local make = function()
    return as_native(fn, type(o.env) == "function" and o.env() or o.env, { max_episode_steps = o.max_episode_steps })
  end
  local base = o.base
  if base == nil then
    local bo = { env = o.env, total_steps = o.base_steps or 1000000, seed = o.seed, max_episode_steps = o.max_episode_steps }
    for k, v in pairs(po) do if k ~= "sa_reg" and k ~= "sa_eps" and k ~= "total_steps" then bo[k] = v end end
    base = rl.ppo(bo)
  elseif getmetatable(base) ~= Policy then
    raise(fn .. ": base must be a parry.rl.Policy, got " .. type(base))
  end
  if base.action_space.kind ~= "box" then raise(fn .. ": PROTECTED trains PA-AD adversaries, which steer Box actions; the policy has " .. tostring(base.action_space)) end
  local members, iterations = util.with_status(function(show)
    return C.protected(base, make, po, ao, { iterations = o.iterations, updates = o.updates, eps = o.eps, delta = o.delta,
                                             reselect_every = o.reselect_every, select_episodes = o.select_episodes,
                                             gap_episodes = o.gap_episodes, steps = o.steps, seed = o.seed }, show)
  end)
  local class = { base }
  for i = 2, #iterations + 1 do
    local m = members[i]
    if m then
      m.observation_space, m.action_space = base.observation_space, base.action_space
      m.hidden, m.activation = base.hidden, base.activation
      class[#class + 1] = setmetatable(m, Policy)
    end
  end
  local gaps = {}
  for i, it in ipairs(iterations) do gaps[i] = it.gap end
  return class, { iterations = iterations, gaps = gaps }
end

--- evaluate(policy, env [, {episodes=10, deterministic=true, seed=}]) ->
-- {mean=, median=, sd=, returns=, lengths=}. `policy` is a Policy or a
-- function(obs) -> action; `env` an env or an env id. sd is the population
-- standard deviation (as SB3's evaluate_policy).
function rl.evaluate(policy, env, opts)
  local o = options("parry.rl.evaluate", opts, { "episodes", "deterministic", "seed", "max_episode_steps", "attack" })
  if type(policy) ~= "function" and getmetatable(policy) ~= Policy then
    raise("parry.rl.evaluate: expected a policy (parry.rl.Policy or a function(obs) -> action), got " .. type(policy))
  end
  local e = as_native("parry.rl.evaluate", env, { max_episode_steps = o.max_episode_steps })
  local deterministic = o.deterministic
  if deterministic == nil then deterministic = true end
  if o.attack ~= nil and getmetatable(o.attack) ~= Attack then
    raise("parry.rl.evaluate: attack must be one of parry.rl.attacks.*, got " .. type(o.attack))
  end
  return C.evaluate(policy, e._h, o.episodes or 10, deterministic, o.seed, o.attack)
end

local function series(fn, history, field)
  if type(history) ~= "table" then raise(fn .. ": expected the history from parry.rl.ppo, got " .. type(history)) end
  if type(field) ~= "string" then raise(fn .. ": field must be a string, got " .. type(field)) end
  local xs, ys = {}, {}
  for _, r in ipairs(history) do
    if type(r) ~= "table" then raise(fn .. ": expected the history from parry.rl.ppo (a list of records)") end
    local v = r[field]
    if v == nil then raise(fn .. ": no field '" .. field .. "' in the records") end
    if v == v then xs[#xs + 1] = r.global_step; ys[#ys + 1] = v end
  end
  return xs, ys
end

--- history_series(history, field) -> xs (global steps), ys: one field of a ppo
-- history as two lists for parry.plot, skipping updates without a value.
function rl.history_series(history, field) return series("parry.rl.history_series", history, field) end

--- plot_history(history, file [, {field="episodic_return", title=}]) -> the figure:
-- one field of a ppo history against environment steps, saved as SVG.
function rl.plot_history(history, file, opts)
  local fn = "parry.rl.plot_history"
  if type(file) ~= "string" then raise(fn .. ": file must be a path (string), got " .. type(file)) end
  local o = options(fn, opts, { "field", "title" })
  local field = o.field or "episodic_return"
  local xs, ys = series(fn, history, field)
  if #xs == 0 then raise(fn .. ": the history has no values of '" .. field .. "' to plot") end
  local name = field:gsub("_", " ")
  return require("parry.plot").line{x = xs, y = ys, label = name, title = o.title or "PPO",
                                    xlabel = "environment steps", ylabel = name, file = file}
end

return rl
