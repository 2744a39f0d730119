-- parry.rl as scripts use it. The dynamics against Gymnasium's recorded
-- trajectories, GAE, the PPO losses and a 20k-step CartPole run are tested in
-- Swift (Tests/ParryRLTests); here: the Lua API, Lua-defined envs, wrappers'
-- statistics, save/load, and bad input.
local parry = require("parry")
local rl = parry.rl

local function tmp(name) return os.tmpname() .. "-" .. name end

describe("parry.rl spaces", function()
  it("sample inside the bounds, reproducibly when seeded, and contain what they should", function()
    local box = rl.Box(-1, 2, {3})
    box:seed(4)
    local first = box:sample()
    for _ = 1, 200 do
      local v = box:sample()
      assert.equals(3, v:numel())
      assert.truthy(v:min():item() >= -1 and v:max():item() <= 2)
      assert.truthy(box:contains(v))
    end
    box:seed(4)
    assert.equals(0, (box:sample() - first):abs():sum():item())
    assert.falsy(box:contains(parry.tensor({0, 0, 3})))
    assert.falsy(box:contains(parry.tensor({0, 0})))
    local d = rl.Discrete(3):seed(1)
    local seen = {}
    for _ = 1, 100 do local a = d:sample(); assert.truthy(d:contains(a)); seen[a] = true end
    assert.same({true, true, true}, seen)   -- 1..3, 1-based
    assert.falsy(d:contains(0)); assert.falsy(d:contains(4)); assert.falsy(d:contains(1.5))
    assert.equals("Discrete(3)", tostring(d))
    assert.equals("Box(-1, 2, (3,), float32)", tostring(box))
    assert.equals("Box([-1, 0], [1, inf], (2,), float32)", tostring(rl.Box(parry.tensor({-1, 0}), parry.tensor({1, math.huge}))))
  end)
end)

describe("parry.rl.make", function()
  it("steps with Gymnasium's five results and 1-based Discrete actions", function()
    local env = rl.make("CartPole-v1", {seed = 3})
    assert.equals("Discrete(2)", tostring(env.action_space))
    local obs, info = env:reset()
    assert.equals(4, obs:numel()); assert.equals("table", type(info))
    local o2, r, term, trunc, info2 = env:step(2)
    assert.equals(1.0, r); assert.equals(false, term); assert.equals(false, trunc); assert.equals("table", type(info2))
    -- pushing right (action 2) speeds the cart up to the right: ẋ rises
    assert.truthy(o2[2] > obs[2])
    -- the same seed, the same start; another seed, another
    local a = rl.make("CartPole-v1"):reset({seed = 9})
    assert.equals(0, (a - rl.make("CartPole-v1"):reset({seed = 9})):abs():sum():item())
    assert.truthy((a - rl.make("CartPole-v1"):reset({seed = 10})):abs():sum():item() > 0)
  end)

  it("truncates at the registered time limit or the one given", function()
    local env = rl.make("Pendulum-v1", {seed = 1, max_episode_steps = 5})
    env:reset()
    for i = 1, 5 do
      local _, _, term, trunc = env:step(parry.tensor({0}))
      assert.equals(false, term); assert.equals(i == 5, trunc)
    end
  end)

  it("passes Box actions outside the bounds to the env, which clips them as Gymnasium's does", function()
    local a, b = rl.make("Pendulum-v1"), rl.make("Pendulum-v1")
    a:reset({seed = 2}); b:reset({seed = 2})
    local oa, ra = a:step(parry.tensor({5}))
    local ob, rb = b:step(2)   -- a number works for a one-dimensional Box
    assert.equals(ra, rb)
    assert.equals(0, (oa - ob):abs():sum():item())
  end)

  it("rejects bad actions and out-of-order steps with errors, and the env lives on", function()
    local env = rl.make("CartPole-v1", {seed = 5})
    assert.error(function() env:step(1) end, "env:step: step called before reset()")
    env:reset()
    assert.error(function() env:step(3) end, "env:step: action 3 is not in Discrete(2) (expected an integer 1..2)")
    assert.error(function() env:step(0) end, "not in Discrete(2)")
    assert.error(function() env:step(1.5) end, "not in Discrete(2)")
    assert.error(function() env:step("left") end, "env:step: expected an action")
    local steps, term = 0, false
    while not term do _, _, term = env:step(2); steps = steps + 1 end
    assert.truthy(steps > 3)
    assert.error(function() env:step(1) end, "env:step: step called after the episode terminated; call env:reset() first")
    env:reset()
    env:step(1)
    local p = rl.make("Pendulum-v1"); p:reset()
    assert.error(function() p:step(parry.tensor({0 / 0})) end, "action contains NaN")
    assert.error(function() p:step(parry.tensor({1, 2})) end, "expected 1 action value")
    assert.error(function() rl.make("CartPole-v0") end,
      "parry.rl.make: unknown environment 'CartPole-v0' (registered: Acrobot-v1, Ant-v4, CartPole-v1")
    assert.error(function() rl.make("CartPole-v1", {sed = 1}) end, "parry.rl.make: unknown option 'sed'")
  end)
end)

describe("parry.rl.vector", function()
  it("returns batched tensors and autoresets on the next step", function()
    local v = rl.vector("CartPole-v1", 3, {seed = 1})
    local obs = v:reset({seed = 7})
    assert.same({3, 4}, obs:size())
    -- sub-env i is seeded seed + i - 1, as Gymnasium seeds seed + i
    assert.equals(0, (obs[2] - rl.make("CartPole-v1"):reset({seed = 8})):abs():sum():item())
    local ended
    for _ = 1, 600 do
      local o, r, term, trunc = v:step(parry.tensor({2, 2, 1}))
      assert.same({3}, r:size())
      for i = 1, 3 do if term[i] == 1 or trunc[i] == 1 then ended = i end end
      if ended then break end
    end
    assert.truthy(ended)
    local o, r, term, trunc = v:step(parry.tensor({1, 1, 1}))
    assert.equals(0, r[ended]); assert.equals(0, term[ended]); assert.equals(0, trunc[ended])
    assert.truthy(o[ended]:abs():max():item() <= 0.05)   -- a fresh episode
    assert.error(function() v:step(parry.tensor({1, 2})) end, "env:step: expected 3 actions, got 2")
    assert.error(function() v:step(parry.tensor({1, 2, 3})) end, "action 3 is not in Discrete(2)")
  end)

  it("same-step autoreset puts the last observation in info.final_obs", function()
    local v = rl.vector("CartPole-v1", 1, {autoreset = "same_step"})
    v:reset({seed = 1})
    for _ = 1, 600 do
      local o, _, term, _, info = v:step(parry.tensor({2}))
      if term[1] == 1 then
        assert.truthy(math.abs(info.final_obs[1][3]) > 0.2)   -- the pole fell
        assert.truthy(o[1]:abs():max():item() <= 0.05)
        return
      end
    end
    error("the episode never ended")
  end)
end)

-- A corridor of length 5: action 2 moves right, 1 left; reaching 5 ends the
-- episode with reward 1, every other step costs 0.1.
local Corridor = rl.Env:extend("Corridor")
function Corridor:init(opts)
  self.observation_space = rl.Box(0, 5, {1})
  self.action_space = rl.Discrete(2)
  self.bad = opts and opts.bad
end
function Corridor:reset(opts)
  self.pos = 0
  return parry.tensor({self.pos}), {}
end
function Corridor:step(a)
  if self.bad == "raise" then error("corridor is broken") end
  self.pos = math.max(0, self.pos + (a == 2 and 1 or -1))
  local done = self.pos >= 5
  if self.bad == "reward" then return parry.tensor({self.pos}), "lots", done, false, {} end
  if self.bad == "obs" then return parry.tensor({self.pos, 0}), 0, done, false, {} end
  return parry.tensor({self.pos}), done and 1 or -0.1, done, false, {pos = self.pos}
end

describe("Lua-defined environments", function()
  it("work in make (time limit and checks included), vector and evaluate", function()
    local env = rl.make(Corridor(), {max_episode_steps = 3})
    env:reset()
    local o, r, term, trunc, info = env:step(2)
    assert.equals(1, o:item()); assert.equals(-0.1, r); assert.equals(1, info.pos)
    env:step(1)
    local _, _, _, trunc3 = env:step(2)
    assert.equals(true, trunc3)
    assert.error(function() env:step(2) end, "step called after the episode was truncated")

    local v = rl.vector(function() return Corridor() end, 2)
    v:reset()
    for _ = 1, 4 do v:step(parry.tensor({2, 1})) end
    local obs, rew, t = v:step(parry.tensor({2, 2}))
    assert.equals(1, t[1]); assert.equals(1, rew[1]); assert.equals(1, obs[2][1])

    local right = rl.evaluate(function(obs) return 2 end, Corridor(), {episodes = 3})
    assert.near(0.6, right.mean, 1e-9)   -- four steps at −0.1, then +1
    assert.same({5, 5, 5}, right.lengths)
    rl.register("Corridor-v0", Corridor, {max_episode_steps = 50})
    local listed = table.concat(rl.registered(), " ")
    assert.truthy(listed:find("Corridor-v0", 1, true) and listed:find("CartPole-v1", 1, true))
    -- always left never arrives: the registered limit truncates at 50
    assert.same({50}, rl.evaluate(function() return 1 end, "Corridor-v0", {episodes = 1}).lengths)
  end)

  it("get make's seed on their first reset without one, as native envs do", function()
    local Seeds = rl.Env:extend("Seeds")
    function Seeds:init() self.observation_space = rl.Box(0, 1, {1}); self.action_space = rl.Discrete(2); self.seen = {} end
    function Seeds:reset(opts) self.seen[#self.seen + 1] = opts and opts.seed or "none"; return parry.tensor({0}), {} end
    function Seeds:step() return parry.tensor({0}), 0, true, false, {} end
    local e = Seeds()
    local env = rl.make(e, {seed = 5})
    env:reset(); env:reset(); env:reset({seed = 9})
    assert.same({5, "none", 9}, e.seen)
    rl.register("Seeds-v0", Seeds)
    local reg = rl.make("Seeds-v0", {seed = 3})
    reg:reset()
    assert.same({3}, reg.unwrapped.seen)
  end)

  it("report wrong return types naming the env, and stay usable after a caught error", function()
    local bad = rl.make(Corridor({bad = "reward"}))
    bad:reset()
    assert.error(function() bad:step(2) end, "Corridor:step must return a number as its reward (2nd value), got string")
    local wrong = rl.make(Corridor({bad = "obs"}))
    wrong:reset()
    assert.error(function() wrong:step(2) end, "Corridor:step returned an observation of 2 values, its observation_space Box(0, 5, (1,), float32) has 1")
    local c = Corridor({bad = "raise"})
    local env = rl.make(c)
    env:reset()
    assert.error(function() env:step(2) end, "corridor is broken")
    c.bad = nil
    local o = env:step(2)   -- the failed step did not count: the episode goes on
    assert.equals(1, o:item())
    assert.error(function() rl.make({}) end, "parry.rl.make: env needs observation_space and action_space")
  end)
end)

describe("parry.rl.wrappers", function()
  it("NormalizeObservation keeps the running statistics of what the env returned", function()
    local raw = rl.make("Pendulum-v1")
    local env = rl.wrappers.NormalizeObservation(rl.make("Pendulum-v1"))
    local seen = {(raw:reset({seed = 3}))}
    env:reset({seed = 3})
    local last
    for i = 1, 30 do
      local a = parry.tensor({math.sin(i)})
      seen[#seen + 1] = (raw:step(a))
      last = env:step(a)
    end
    local x = parry.stack(seen, 1)
    local n = #seen
    -- the statistics start as a pseudo-batch of count 1e-4, mean 0, var 1
    local mean = x:sum(1) / (n + 1e-4)
    local m2 = ((x - mean) ^ 2):sum(1) + (mean ^ 2 + 1) * 1e-4
    local s = env:stats()
    assert.near(n + 1e-4, s.count, 1e-9)
    assert.truthy((s.mean - mean):abs():max():item() < 1e-5)
    assert.truthy((s.var - m2 / (n + 1e-4)):abs():max():item() < 1e-4)
    local expect = ((seen[n] - s.mean) / (s.var + 1e-8):sqrt()):clamp(-10, 10)
    assert.truthy((last - expect):abs():max():item() < 1e-4)
  end)

  it("RecordEpisodeStatistics reports the episode's return and length; ClipAction clips", function()
    local env = rl.wrappers.RecordEpisodeStatistics(rl.make("CartPole-v1"))
    env:reset({seed = 2})
    local total, n, info, term = 0, 0, nil, false
    while not term do
      local _, r, t, tr, i = env:step(2)
      total, n, info, term = total + r, n + 1, i, t or tr
    end
    assert.equals(total, info.episode.r); assert.equals(n, info.episode.l)
    local clipped = rl.wrappers.ClipAction(rl.make("MountainCarContinuous-v0"))
    clipped:reset({seed = 1})
    local _, r = clipped:step(parry.tensor({3}))
    assert.near(-0.1, r, 1e-6)   -- −0.1·a² with a clipped to 1 (3 would cost 0.9)
    assert.error(function() rl.wrappers.ClipAction(rl.make("CartPole-v1")) end, "parry.rl.wrappers.ClipAction: ClipAction needs a Box action space")
    assert.error(function() rl.wrappers.NormalizeReward(rl.make("CartPole-v1"), {gamma = 2}) end, "parry.rl.wrappers.NormalizeReward: gamma must be in [0, 1]")
  end)
end)

describe("parry.rl.ppo", function()
  it("trains, records every update, saves and loads with the observation statistics", function()
    local policy, history = rl.ppo{env = "Pendulum-v1", total_steps = 512, num_steps = 256, num_minibatches = 4,
                                   update_epochs = 2, seed = 3}
    assert.equals(2, #history)
    local h = history[2]
    assert.equals(512, h.global_step)
    for _, k in ipairs{"policy_loss", "value_loss", "entropy", "approx_kl", "clip_fraction", "explained_variance", "learning_rate"} do
      assert.equals("number", type(h[k]), k)
    end
    assert.equals(2, history[1].episodes + h.episodes)   -- 200-step episodes in 512 steps
    assert.truthy(h.episodic_return < 0)
    assert.near(3e-4 * 0.5, h.learning_rate, 1e-12)   -- annealed linearly: (1 − 1/2)·lr at update 2
    assert.truthy(policy.obs_rms and policy.obs_rms.count > 500)   -- Box actions: observations normalized by default
    local path = tmp("policy.safetensors")
    policy:save(path)
    local back = rl.load(path)
    os.remove(path)
    local obs = parry.tensor({0.5, -0.5, 1.0})
    assert.equals(policy:act(obs, {deterministic = true}):item(), back:act(obs, {deterministic = true}):item())
    assert.equals(policy.obs_rms.count, back.obs_rms.count)
    assert.equals(0, (policy.obs_rms.var - back.obs_rms.var):abs():sum():item())
    local ev = rl.evaluate(back, "Pendulum-v1", {episodes = 3, seed = 1})
    assert.equals(3, #ev.returns)
    assert.near((ev.returns[1] + ev.returns[2] + ev.returns[3]) / 3, ev.mean, 1e-9)
    assert.equals(ev.returns[1], rl.evaluate(back, "Pendulum-v1", {episodes = 1, seed = 1}).returns[1])
    local xs, ys = rl.history_series(history, "value_loss")
    assert.same({256, 512}, xs); assert.equals(2, #ys)
    local svg = tmp("curve.svg")
    rl.plot_history(history, svg, {field = "value_loss", title = "value loss"})
    local f = assert(io.open(svg)); local text = f:read("a"); f:close(); os.remove(svg)
    assert.truthy(text:find("<svg", 1, true) and text:find("value loss", 1, true))
  end)

  it("takes Lua-defined networks and Lua-defined envs", function()
    local nn = parry.nn
    local Actor = nn.Module:extend("Actor")
    function Actor:init() self.l = nn.Linear(1, 2) end
    function Actor:forward(x) return self.l(x / 5) end
    local policy = rl.Policy{observation_space = rl.Box(0, 5, {1}), action_space = rl.Discrete(2),
                             actor = Actor(), critic = nn.Sequential{nn.Linear(1, 8), nn.Tanh(), nn.Linear(8, 1)}}
    local before = rl.evaluate(policy, rl.make(Corridor(), {max_episode_steps = 30}), {episodes = 1}).mean
    local trained, history = rl.ppo{env = function() return Corridor() end, num_envs = 2, policy = policy,
                                    total_steps = 8192, num_steps = 256, num_minibatches = 4, update_epochs = 4,
                                    max_episode_steps = 30, seed = 1, lr = 0.01}   -- 128 Adam steps: a large lr
    assert.equals(policy, trained)
    assert.equals(16, #history)
    local after = rl.evaluate(trained, rl.make(Corridor(), {max_episode_steps = 30}), {episodes = 1}).mean
    assert.near(0.6, after, 1e-9)          -- walks straight to the end
    assert.truthy(after > before or before == 0.6)
  end)

  it("rejects bad options with the function's name", function()
    assert.error(function() rl.ppo{} end, "parry.rl.ppo: missing option env")
    assert.error(function() rl.ppo{env = "CartPole-v1", lerning_rate = 1} end, "parry.rl.ppo: unknown option 'lerning_rate'")
    assert.error(function() rl.ppo{env = "CartPole-v1", num_minibatches = 3, total_steps = 10} end,
      "parry.rl.ppo: num_minibatches (3) must divide num_steps × num_envs (2048)")
    assert.error(function() rl.ppo{env = "CartPole-v1", clip_action = true} end, "clip_action needs a Box action space")
    assert.error(function() rl.ppo{env = Corridor(), num_envs = 2} end, "one env instance cannot make 2 envs")
    assert.error(function() rl.evaluate(rl.Policy{env = "CartPole-v1"}, "Pendulum-v1") end, "parry.rl.evaluate: the policy's spaces")
    assert.error(function() rl.evaluate(rl.Policy{env = "CartPole-v1"}, rl.vector("CartPole-v1", 2)) end, "vector env")
    assert.error(function() rl.load(tmp("missing.safetensors")) end, "parry.rl.load")
  end)
end)

describe("MuJoCo environments", function()
  local CARTPOLE = "Tests/ParryRLTests/Fixtures/cart_pole.xml"   -- parry's own model (Gymnasium's files are not shipped)
  it("run a Gymnasium task on any MJCF model, with set_state and state", function()
    local env = rl.make("InvertedPendulum-v4", {xml = CARTPOLE, seed = 1})
    assert.equals("Box(-1, 1, (1,), float32)", tostring(env.action_space))
    local obs = env:reset()
    assert.equals(4, obs:numel())
    local o = env:set_state({0, 0.1}, {0, 0})
    assert.near(0.1, o[2], 1e-6)
    local q, v = env:state()
    assert.near(0.1, q[2], 1e-6); assert.equals(0, v:abs():sum():item())
    local _, r, term = env:step(parry.tensor({0}))
    assert.equals(1, r); assert.equals(false, term)
    assert.error(function() env:set_state({0}, {0, 0}) end, "env:set_state: set_state expects 2 positions and 2 velocities")
    assert.error(function() rl.make("CartPole-v1"):set_state({0}, {0}) end, "env:set_state: set_state needs a MuJoCo env")
    local policy, history = rl.ppo{env = function() return rl.make("InvertedPendulum-v4", {xml = CARTPOLE}) end,
                                   total_steps = 256, num_steps = 128, num_minibatches = 2, update_epochs = 1}
    assert.equals(2, #history)
    assert.equals(4, policy.obs_rms.mean:numel())
  end)

  it("say where to get Gymnasium's model files when they are missing", function()
    local empty = os.tmpname()
    os.remove(empty)
    assert.error(function() rl.make("Hopper-v4", {assets = empty}) end,
      "parry.rl.make: Hopper-v4 needs Gymnasium's MuJoCo model hopper.xml")
    assert.error(function() rl.make("Hopper-v4", {assets = empty}) end, "make deps-rl")
    assert.error(function() rl.make("InvertedPendulum-v4", {xml = empty}) end, "MuJoCo could not load")
  end)
end)

describe("robust RL: attacks, SA-PPO, robustness and adaptation", function()
  local policy = rl.Policy{env = "Pendulum-v1", seed = 2}
  -- a head larger than CleanRL's 0.01 init, so that actions depend on the state
  parry.no_grad(function() policy.actor["3"].weight:mul_(100) end)

  it("attacks stay in the ε-ball of what the networks see, and bad ones are named", function()
    local obs = parry.tensor({0.3, -0.2, 1.5})
    for _, a in ipairs{rl.attacks.random{eps = 0.1}, rl.attacks.critic{eps = 0.1}, rl.attacks.mad{eps = 0.1, steps = 5}} do
      local s = a(policy, obs)
      assert.truthy((s - policy:normalize(obs)):abs():max():item() <= 0.1 + 1e-6, tostring(a))
    end
    assert.error(function() rl.attacks.mad{eps = -0.1} end, "parry.rl.attacks.mad: eps must be a non-negative number")
    assert.error(function() rl.attacks.critic{} end, "parry.rl.attacks.critic: missing option eps")
    assert.error(function() rl.attacks.random{eps = 0.1, steps = 3} end, "parry.rl.attacks.random: unknown option 'steps'")
    assert.error(function() rl.evaluate(function() return 0 end, "Pendulum-v1", {attack = rl.attacks.random{eps = 0.1}}) end,
      "an attack needs a parry.rl.Policy")
    -- a zero-radius attack changes nothing
    local nat = rl.evaluate(policy, "Pendulum-v1", {episodes = 2, seed = 4})
    local zero = rl.evaluate(policy, "Pendulum-v1", {episodes = 2, seed = 4, attack = rl.attacks.critic{eps = 0}})
    assert.same(nat.returns, zero.returns)
  end)

  it("SA-RL learns an adversary by PPO on the negated reward and attacks within the ball", function()
    local atk = rl.attacks.sa_rl{victim = policy, env = "Pendulum-v1", eps = 0.1, total_steps = 512, num_steps = 256,
                                 num_minibatches = 4, update_epochs = 1}
    assert.equals(2, #atk.history)
    assert.truthy(atk.history[2].episodic_return > 0)   -- the adversary's reward is the victim's negated (negative) one
    local obs = parry.tensor({0.3, -0.2, 1.5})
    assert.truthy((atk(policy, obs) - policy:normalize(obs)):abs():max():item() <= 0.1 + 1e-6)
    local ev = rl.evaluate(policy, "Pendulum-v1", {episodes = 1, attack = atk})
    assert.equals(1, #ev.returns)
    assert.error(function() rl.attacks.sa_rl{victim = 3, env = "Pendulum-v1", eps = 0.1} end, "parry.rl.attacks.sa_rl: victim must be a parry.rl.Policy")
    assert.error(function() rl.attacks.sa_rl{victim = rl.Policy{env = "CartPole-v1"}, env = "Pendulum-v1", eps = 0.1, total_steps = 64, num_steps = 64, num_minibatches = 1} end,
      "the victim's spaces differ from the env's")
  end)

  it("robust SARSA learns Q for the victim and attacks through it", function()
    local small = {iterations = 3, num_steps = 128, epochs = 1, minibatches = 4}
    local rs = rl.attacks.rs{victim = policy, env = "Pendulum-v1", eps = 0.1, sarsa = small}
    assert.equals(3, #rs.losses)
    assert.truthy(parry.nn.is_module(rs.q))
    local mix = rl.attacks.rs_mad{victim = policy, env = "Pendulum-v1", eps = 0.1, sarsa = small}
    assert.equals(0.5, mix.action_ratio)
    local obs = parry.tensor({0.3, -0.2, 1.5})
    for _, a in ipairs{rs, mix} do assert.truthy((a(policy, obs) - policy:normalize(obs)):abs():max():item() <= 0.1 + 1e-6) end
    assert.error(function() rl.attacks.rs{victim = rl.Policy{env = "CartPole-v1"}, env = "CartPole-v1", eps = 0.1} end,
      "parry.rl.attacks.rs: robust SARSA learns Q(s, a) for Box actions; the victim has Discrete(2)")
    assert.error(function() rl.attacks.rs{victim = policy, env = "Pendulum-v1", eps = 0.1, sarsa = {bogus = 1}} end, "unknown option 'bogus'")
  end)

  it("the attack suite keeps the strongest configuration of each attack and the worst case", function()
    local suite = rl.attack_suite{victim = policy, env = rl.make("Pendulum-v1", {max_episode_steps = 30}), eps = 0.2, episodes = 2,
                                  attacks = {"random", "mad", "sa_rl"}, steps = 128,
                                  grid = {sa_rl = {{lr = 3e-4, num_steps = 64, num_minibatches = 2, update_epochs = 1},
                                                   {lr = 1e-3, num_steps = 64, num_minibatches = 2, update_epochs = 1}}}}
    local s = suite.attacks.sa_rl
    assert.equals(2, #s.tried)
    assert.equals(math.min(s.tried[1].mean, s.tried[2].mean), s.mean)
    local lowest = suite.natural
    for _, name in ipairs{"random", "mad", "sa_rl"} do lowest = math.min(lowest, suite.attacks[name].mean) end
    assert.equals(lowest, suite.worst.mean)
    assert.error(function() rl.attack_suite{victim = policy, env = "Pendulum-v1", eps = 0.1, attacks = {"nope"}} end,
      "parry.rl.attack_suite: unknown attack 'nope'")
  end)

  it("PA-AD trains a director in the victim's action space", function()
    local atk = rl.attacks.pa_ad{victim = policy, env = "Pendulum-v1", eps = 0.1, total_steps = 256, num_steps = 256,
                                 num_minibatches = 4, update_epochs = 1}
    assert.equals(1, atk.adversary.action_space.low:numel())   -- Pendulum's one torque
    local obs = parry.tensor({0.3, -0.2, 1.5})
    assert.near(0.1, (atk(policy, obs) - policy:normalize(obs)):abs():max():item(), 1e-6)
    assert.error(function() rl.attacks.pa_ad{victim = rl.Policy{env = "CartPole-v1"}, env = "CartPole-v1", eps = 0.1} end,
      "parry.rl.attacks.pa_ad: PA-AD steers Box actions; the victim has Discrete(2)")
  end)

  it("ATLA alternates victim and adversary updates, the victim learning under its adversary's attack", function()
    local victim, hist, atk = rl.atla{env = "Pendulum-v1", eps = 0.1, total_steps = 1024, num_steps = 256, num_minibatches = 4,
                                      update_epochs = 1, adversary = {num_steps = 256, num_minibatches = 4, update_epochs = 1}}
    assert.equals(4, #hist.victim); assert.equals(4, #hist.adversary)
    assert.truthy(hist.adversary[4].episodic_return > 0)        -- the adversary earns the victim's negated reward
    assert.truthy(victim.obs_rms.count > 1000 and atk.adversary.obs_rms.count > 1000)
    assert.equals("sa_rl", atk.kind)
    local obs = parry.tensor({0.3, -0.2, 1.5})
    assert.truthy((atk(victim, obs) - victim:normalize(obs)):abs():max():item() <= 0.1 + 1e-6)
    assert.error(function() rl.atla{env = "Pendulum-v1"} end, "parry.rl.atla: missing option eps")
    assert.error(function() rl.atla{env = "CartPole-v1", eps = 0.1, adversary = {bogus = 1}} end, "unknown option 'bogus'")
  end)

  it("PROTECTED grows the class by one member per iteration and records the gap; delta stops it", function()
    local small = {num_steps = 128, num_minibatches = 2, update_epochs = 1}
    local class, info = rl.protected{env = "Pendulum-v1", base = policy, eps = 0.1, iterations = 1, updates = 2,
                                     ppo = small, adversary = small, gap_episodes = 1, select_episodes = 1}
    assert.equals(2, #class)
    assert.equals(policy, class[1])
    assert.truthy(class[2] ~= policy and getmetatable(class[2]) == getmetatable(policy))
    local it = info.iterations[1]
    assert.near(it.new_return - it.best_class_return, it.gap, 1e-9)
    assert.equals(it.gap, info.gaps[1])
    assert.equals(2, #it.victim); assert.equals(2, #it.adversary)
    assert.equals(1, #class[2]:act(parry.tensor({1, 0, 0})):size())   -- a working member
    -- an unreachable delta: the first new member does not join and the run stops
    local same, info2 = rl.protected{env = "Pendulum-v1", base = policy, eps = 0.1, iterations = 3, updates = 1, delta = math.huge,
                                     ppo = small, adversary = small, gap_episodes = 1, select_episodes = 1}
    assert.equals(1, #same); assert.equals(1, #info2.iterations); assert.equals(false, info2.iterations[1].added)
    assert.error(function() rl.protected{env = "CartPole-v1", base = rl.Policy{env = "CartPole-v1"}, eps = 0.1} end,
      "parry.rl.protected: PROTECTED trains PA-AD adversaries, which steer Box actions")
    assert.error(function() rl.protected{env = "Pendulum-v1", base = policy} end, "parry.rl.protected: missing option eps")
  end)

  it("SA-PPO trains with its regularizer ramped in", function()
    local _, history = rl.ppo{env = "Pendulum-v1", total_steps = 1024, num_steps = 256, num_minibatches = 4, update_epochs = 1,
                              sa_reg = 0.3, sa_eps = 0.1, seed = 2}
    assert.equals(0, history[1].sa_eps)                       -- ε ramps from 0 over the first 75% of updates
    assert.near(0.1 / 3, history[2].sa_eps, 1e-12)
    assert.truthy(history[4].sa_reg > 0)
    assert.error(function() rl.ppo{env = "Pendulum-v1", sa_reg = -1} end, "parry.rl.ppo: sa_reg must be a non-negative number")
  end)

  it("schedules switch at the stated rounds", function()
    local a = rl.attacks.random{eps = 0.1}
    local halves, on = rl.schedules.halves(a), {}
    for t = 1, 8 do on[t] = halves(t, 8) == a end
    assert.same({true, true, false, false, true, true, false, false}, on)
    local periodic = rl.schedules.periodic(a, 3)
    for t = 1, 12 do assert.equals(((t - 1) // 3) % 2 == 0, periodic(t) == a, "round " .. t) end
    local r1, r2 = rl.schedules.random(a, 0.3, {seed = 5}), rl.schedules.random(a, 0.3, {seed = 5})
    local switches, last = 0, true
    for t = 1, 400 do
      local x = r1(t) == a
      assert.equals(x, r2(t) == a)
      if x ~= last then switches = switches + 1 end
      last = x
    end
    assert.truthy(r1(1) == a and switches > 80 and switches < 160, switches)   -- about 0.3 × 399
  end)

  it("robustness reports natural and attacked returns; adapt runs EXP3 over the class", function()
    local other = rl.Policy{env = "Pendulum-v1", seed = 9}
    local res = rl.robustness{policies = {a = policy, b = {policy, other}}, env = "Pendulum-v1",
                              attacks = {mad = rl.attacks.mad{eps = 0.2, steps = 3},
                                         per_victim = function(p) return rl.attacks.random{eps = 0.1} end}, episodes = 2}
    assert.same({"natural", "mad", "per_victim"}, res.attacks)
    assert.equals(2, #res.policies.b.natural.per_seed)
    assert.truthy(res.policies.a.worst.median <= res.policies.a.natural.median)
    assert.truthy(res.summary:find("worst", 1, true))
    local out = rl.adapt{policies = {policy, other}, env = rl.make("Pendulum-v1", {max_episode_steps = 20}),
                         schedule = rl.schedules.halves(rl.attacks.random{eps = 0.2}), rounds = 12, eval_episodes = 1}
    assert.equals(12, #out.rounds)
    assert.equals(2, #out.conditions)
    assert.same({1, 1, 1, 2, 2, 2, 1, 1, 1, 2, 2, 2}, (function() local c = {} for i, r in ipairs(out.rounds) do c[i] = 3 - r.condition end return c end)())
    local p = out.rounds[12].probabilities
    assert.near(1, p[1] + p[2], 1e-12)
    assert.truthy(out.regret >= 0)
    local svg = tmp("adapt.svg")
    rl.plot_adaptation(out, svg, {window = 3}); os.remove(svg)
    assert.error(function() rl.adapt{policies = {}, env = "Pendulum-v1"} end, "parry.rl.adapt: policies must be a non-empty list")
    assert.error(function() rl.adapt{policies = {policy}, env = "Pendulum-v1", rounds = 3, schedule = function() return 5 end} end,
      "parry.rl.adapt: the schedule returned number for round 1 (expected one of parry.rl.attacks.* or nil)")
  end)
end)
