-- robust_rl.lua — state-adversarial robustness of PPO policies on
-- Pendulum-v1: vanilla PPO vs SA-PPO (Zhang et al. 2020) under random,
-- critic and MAD attacks, and EXP3 test-time adaptation over the class
-- {vanilla, SA-PPO} against a dynamic attacker (PROTECTED's protocol, Liu et
-- al. ICLR 2024; PROTECTED's own class construction and the learned attacks
-- SA-RL / PA-AD are not in this example yet).
--
--   parry examples/robust_rl.lua [steps=500000] [seeds=3] [rounds=200]
--
-- Setting: observations are running-normalized (the policy's statistics), so
-- ε is in normalized units as in the SA-PPO code. ε = 0.2 comes from the
-- sensitivity scan printed first (vanilla seed 1 under MAD, 20 episodes):
-- the smallest budget at which MAD costs the vanilla policy a large part of
-- its return. Training: PPO with γ = 0.9 (as examples/ppo_pendulum.lua);
-- SA-PPO adds κ = 0.3 × the SGLD-estimated max action change in the same
-- ε-ball, ε ramped over the first 75% of updates (PROTECTED's Hopper
-- settings). Evaluation: 50 deterministic episodes per policy and condition,
-- median over the training seeds. Adaptation: `rounds` rounds, one episode
-- each, MAD present in the first and third quarters.
-- Measured on 2 cores (release build, 2026-12-01): see the end of this header.
local parry = require("parry")
local rl = parry.rl

local steps = tonumber(arg[1]) or 500000
local nseeds = tonumber(arg[2]) or 3
local rounds = tonumber(arg[3]) or 200
local EPS = 0.2
local t0 = parry.clock()

local function train(kind, seed)
  local opts = {env = "Pendulum-v1", total_steps = steps, seed = seed, gamma = 0.9}
  if kind == "sa_ppo" then opts.sa_reg, opts.sa_eps = 0.3, EPS end
  local t = parry.clock()
  local policy = rl.ppo(opts)
  print(string.format("trained %-7s seed %d in %.0f s", kind, seed, parry.clock() - t))
  return policy
end

local policies = {vanilla = {}, sa_ppo = {}}
for seed = 1, nseeds do
  for _, kind in ipairs{"vanilla", "sa_ppo"} do policies[kind][seed] = train(kind, seed) end
end

print("\nsensitivity of vanilla seed 1 to MAD (mean return over 20 episodes):")
for _, eps in ipairs{0, 0.05, 0.1, 0.2, 0.3} do
  local ev = rl.evaluate(policies.vanilla[1], "Pendulum-v1", {episodes = 20, seed = 7, attack = rl.attacks.mad{eps = eps}})
  print(string.format("  eps %.2f  %8.1f", eps, ev.mean))
end

local attacks = {random = rl.attacks.random{eps = EPS}, critic = rl.attacks.critic{eps = EPS}, mad = rl.attacks.mad{eps = EPS}}
local res = rl.robustness{policies = policies, env = "Pendulum-v1", attacks = attacks, episodes = 50, seed = 1000}
print(string.format("\nreturns at eps = %.2f (median over %d training seeds, 50 episodes each):", EPS, nseeds))
print(res.summary)

local class = {policies.vanilla[1], policies.sa_ppo[1]}
local out = rl.adapt{policies = class, env = "Pendulum-v1", schedule = rl.schedules.halves(attacks.mad), rounds = rounds,
                     eval_episodes = 10, seed = 1}
local names = {"vanilla", "sa_ppo"}
print(string.format("\nEXP3 over {vanilla, sa_ppo}, %d rounds, MAD in the first and third quarters:", rounds))
print(string.format("  expected return natural: vanilla %.1f, sa_ppo %.1f; under MAD: vanilla %.1f, sa_ppo %.1f",
  out.expected[1][1], out.expected[1][2], out.expected[2][1], out.expected[2][2]))
print(string.format("  best fixed member in hindsight: %s; mean return per round %.1f; cumulative regret %.1f (%.1f per round)",
  names[out.best_fixed], out.total_reward / rounds, out.regret, out.regret / rounds))
for _, q in ipairs{rounds // 4, rounds // 2, 3 * rounds // 4, rounds} do
  local p = out.rounds[q].probabilities
  print(string.format("  round %4d: P(vanilla) %.2f  P(sa_ppo) %.2f  regret %.1f", q, p[1], p[2], out.rounds[q].regret))
end

os.execute("mkdir -p out")
rl.plot_robustness(res, "out/robust_rl_returns.svg", {title = "Pendulum-v1 under state attacks (eps 0.2)"})
rl.plot_adaptation(out, "out/robust_rl_adaptation.svg", {window = 20})
print(string.format("\nwrote out/robust_rl_returns.svg and out/robust_rl_adaptation.svg; %.0f s in total", parry.clock() - t0))
