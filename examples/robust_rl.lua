-- robust_rl.lua — state-adversarial robustness of PPO policies on
-- Pendulum-v1: vanilla PPO vs SA-PPO (Zhang et al. 2020) vs ATLA-PPO (Zhang
-- et al. 2021) under random, critic, MAD and SA-RL (learned) attacks, and
-- EXP3 test-time adaptation over a policy class against a dynamic attacker
-- (PROTECTED's protocol, Liu et al. ICLR 2024). PROTECTED's own construction
-- of the non-dominated class (and the PA-AD attack it trains against) is not
-- in parry yet: the class here is {vanilla, SA-PPO, ATLA}, seed 1 each.
--
--   parry examples/robust_rl.lua [steps=500000] [seeds=3] [rounds=200]
--
-- Setting: observations are running-normalized (the policy's statistics), so
-- ε is in normalized units as in the SA-PPO code. ε = 0.2 comes from the
-- sensitivity scan printed after training (vanilla seed 1 under MAD, 20
-- episodes). Training: PPO with γ = 0.9 (as examples/ppo_pendulum.lua);
-- SA-PPO adds κ = 0.3 × the SGLD-estimated max action change in the ε-ball,
-- ε ramped over the first 75% of updates (PROTECTED's Hopper settings); ATLA
-- alternates one victim and one adversary update, each with its own PPO
-- over the same number of steps. SA-RL: a fresh adversary per victim, PPO
-- for 100k steps on the victim's negated reward. Evaluation: 50
-- deterministic episodes per policy and condition, median over the training
-- seeds. Adaptation: `rounds` rounds of one episode each, MAD present in the
-- first and third quarters.
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
  local t, policy = parry.clock()
  if kind == "sa_ppo" then opts.sa_reg, opts.sa_eps = 0.3, EPS end
  if kind == "atla" then
    opts.eps, opts.adversary = EPS, {gamma = 0.9}
    policy = rl.atla(opts)
  else
    policy = rl.ppo(opts)
  end
  print(string.format("trained %-7s seed %d in %.0f s", kind, seed, parry.clock() - t))
  return policy
end

local kinds = {"vanilla", "sa_ppo", "atla"}
local policies = {}
for _, kind in ipairs(kinds) do policies[kind] = {} end
for seed = 1, nseeds do
  for _, kind in ipairs(kinds) do policies[kind][seed] = train(kind, seed) end
end

print("\nsensitivity of vanilla seed 1 to MAD (mean return over 20 episodes):")
for _, eps in ipairs{0, 0.05, 0.1, 0.2, 0.3} do
  local ev = rl.evaluate(policies.vanilla[1], "Pendulum-v1", {episodes = 20, seed = 7, attack = rl.attacks.mad{eps = eps}})
  print(string.format("  eps %.2f  %8.1f", eps, ev.mean))
end

local attacks = {
  random = rl.attacks.random{eps = EPS}, critic = rl.attacks.critic{eps = EPS}, mad = rl.attacks.mad{eps = EPS},
  sa_rl = function(victim)
    return rl.attacks.sa_rl{victim = victim, env = "Pendulum-v1", eps = EPS, total_steps = 100352, gamma = 0.9, seed = 5}
  end,
}
local t = parry.clock()
local res = rl.robustness{policies = policies, env = "Pendulum-v1", attacks = attacks, episodes = 50, seed = 1000}
print(string.format("\nreturns at eps = %.2f (median over %d training seeds, 50 episodes each; %.0f s):", EPS, nseeds, parry.clock() - t))
print(res.summary)

local class = {policies.vanilla[1], policies.sa_ppo[1], policies.atla[1]}
local out = rl.adapt{policies = class, env = "Pendulum-v1", schedule = rl.schedules.halves(attacks.mad), rounds = rounds,
                     eval_episodes = 10, seed = 1}
print(string.format("\nEXP3 over {vanilla, sa_ppo, atla} (seed 1 each), %d rounds, MAD in the first and third quarters:", rounds))
for i, kind in ipairs(kinds) do
  print(string.format("  %-7s expected return natural %8.1f, under MAD %8.1f", kind, out.expected[1][i], out.expected[2][i]))
end
print(string.format("  best fixed member in hindsight: %s; mean return per round %.1f; cumulative regret %.1f (%.1f per round)",
  kinds[out.best_fixed], out.total_reward / rounds, out.regret, out.regret / rounds))
for _, q in ipairs{rounds // 4, rounds // 2, 3 * rounds // 4, rounds} do
  local p = out.rounds[q].probabilities
  print(string.format("  round %4d: P = (%.2f, %.2f, %.2f)  regret %.1f", q, p[1], p[2], p[3], out.rounds[q].regret))
end

os.execute("mkdir -p out")
rl.plot_robustness(res, "out/robust_rl_returns.svg", {title = "Pendulum-v1 under state attacks (eps 0.2)"})
rl.plot_adaptation(out, "out/robust_rl_adaptation.svg", {window = 20})
print(string.format("\nwrote out/robust_rl_returns.svg and out/robust_rl_adaptation.svg; %.0f s in total", parry.clock() - t0))
