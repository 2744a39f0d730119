"""The Python side of make bench's RL rows: Gymnasium's SyncVectorEnv and a
CleanRL-style PPO (ppo.py's network and loop with ppo_continuous_action.py's
hyperparameters, which are parry.rl.ppo's defaults), timed in this process.
Prints "name<TAB>seconds<TAB>note" lines like workloads.lua.

    python=$(scripts/rl/venv) && $python scripts/bench/rl_workloads.py [workload ...]
"""
import sys
import time

import gymnasium as gym
import numpy as np

only = set(sys.argv[1:])


def want(name):
    return not only or name in only


def emit(name, seconds, note=""):
    print(f"{name}\t{seconds:.9g}\t{note}", flush=True)


if want("env_steps"):
    envs = gym.vector.SyncVectorEnv([lambda: gym.make("CartPole-v1") for _ in range(16)])
    envs.reset(seed=0)
    envs.action_space.seed(0)
    n = 20000

    def run():
        for _ in range(n):
            envs.step(envs.action_space.sample())

    run()
    best = float("inf")
    for _ in range(2):
        t = time.perf_counter(); run(); best = min(best, time.perf_counter() - t)
    emit("env_steps", best / (n * 16) * 1e5, f"per 100k env steps, 16 envs; {n * 16 / best:.0f} env steps/s (SyncVectorEnv)")

if want("mujoco_hopper") or want("mujoco_hopper_1env"):
    import mujoco

    n = 20000
    rng = np.random.default_rng(0)

    def best(run):
        run()
        b = float("inf")
        for _ in range(2):
            t = time.perf_counter(); run(); b = min(b, time.perf_counter() - t)
        return b

    if want("mujoco_hopper"):
        envs = gym.make_vec("Hopper-v4", num_envs=8, vectorization_mode="sync")
        envs.reset(seed=0)
        s = best(lambda: [envs.step(rng.uniform(-1, 1, size=(8, 3)).astype(np.float32)) for _ in range(n // 8)])
        emit("mujoco_hopper", s / n * 1e4, f"per 10k env steps, SyncVectorEnv of 8; {n / s:.0f} steps/s (mujoco wheel {mujoco.__version__})")
    if want("mujoco_hopper_1env"):
        env = gym.make("Hopper-v4")
        env.reset(seed=0)

        def run():
            env.reset()
            for _ in range(n):
                _, _, term, trunc, _ = env.step(rng.uniform(-1, 1, size=3).astype(np.float32))
                if term or trunc:
                    env.reset()

        s = best(run)
        emit("mujoco_hopper_1env", s / n * 1e4, f"per 10k env steps, one env; {n / s:.0f} steps/s (mujoco wheel {mujoco.__version__})")

if want("ppo_cartpole_100k"):
    import torch
    import torch.nn as nn
    from torch.distributions.categorical import Categorical

    torch.manual_seed(1)
    np.random.seed(1)
    torch.set_num_threads(2)

    def layer_init(layer, std=np.sqrt(2), bias_const=0.0):
        torch.nn.init.orthogonal_(layer.weight, std)
        torch.nn.init.constant_(layer.bias, bias_const)
        return layer

    class Agent(nn.Module):
        def __init__(self, envs):
            super().__init__()
            d = int(np.prod(envs.single_observation_space.shape))
            self.critic = nn.Sequential(layer_init(nn.Linear(d, 64)), nn.Tanh(), layer_init(nn.Linear(64, 64)), nn.Tanh(),
                                        layer_init(nn.Linear(64, 1), std=1.0))
            self.actor = nn.Sequential(layer_init(nn.Linear(d, 64)), nn.Tanh(), layer_init(nn.Linear(64, 64)), nn.Tanh(),
                                       layer_init(nn.Linear(64, envs.single_action_space.n), std=0.01))

        def get_value(self, x):
            return self.critic(x)

        def get_action_and_value(self, x, action=None):
            probs = Categorical(logits=self.actor(x))
            if action is None:
                action = probs.sample()
            return action, probs.log_prob(action), probs.entropy(), self.critic(x)

    num_envs, num_steps, total = 1, 2048, 100352
    lr, gamma, lam, minibatches, epochs, clip, ent, vf, max_norm = 3e-4, 0.99, 0.95, 32, 10, 0.2, 0.0, 0.5, 0.5
    envs = gym.vector.SyncVectorEnv([lambda: gym.wrappers.RecordEpisodeStatistics(gym.make("CartPole-v1"))],
                                    autoreset_mode=gym.vector.AutoresetMode.SAME_STEP)
    start = time.perf_counter()
    agent = Agent(envs)
    optimizer = torch.optim.Adam(agent.parameters(), lr=lr, eps=1e-5)
    batch = num_envs * num_steps
    mb = batch // minibatches
    obs = torch.zeros((num_steps, num_envs) + envs.single_observation_space.shape)
    actions = torch.zeros((num_steps, num_envs) + envs.single_action_space.shape)
    logprobs = torch.zeros((num_steps, num_envs)); rewards = torch.zeros((num_steps, num_envs))
    dones = torch.zeros((num_steps, num_envs)); values = torch.zeros((num_steps, num_envs))
    next_obs, _ = envs.reset(seed=1)
    next_obs = torch.Tensor(next_obs); next_done = torch.zeros(num_envs)
    updates = total // batch
    returns_seen = []
    for update in range(1, updates + 1):
        optimizer.param_groups[0]["lr"] = (1.0 - (update - 1.0) / updates) * lr
        for step in range(num_steps):
            obs[step] = next_obs; dones[step] = next_done
            with torch.no_grad():
                action, logprob, _, value = agent.get_action_and_value(next_obs)
                values[step] = value.flatten()
            actions[step] = action; logprobs[step] = logprob
            next_obs, reward, term, trunc, info = envs.step(action.cpu().numpy())
            rewards[step] = torch.tensor(reward).view(-1)
            next_obs, next_done = torch.Tensor(next_obs), torch.Tensor(np.logical_or(term, trunc).astype(np.float32))
            final = info.get("final_info", {})   # same-step autoreset: the ended episodes' infos
            if "episode" in final:
                returns_seen += list(final["episode"]["r"][final["_episode"]])
        with torch.no_grad():
            next_value = agent.get_value(next_obs).reshape(1, -1)
            advantages = torch.zeros_like(rewards); lastgaelam = 0
            for t in reversed(range(num_steps)):
                if t == num_steps - 1:
                    nextnonterminal = 1.0 - next_done; nextvalues = next_value
                else:
                    nextnonterminal = 1.0 - dones[t + 1]; nextvalues = values[t + 1]
                delta = rewards[t] + gamma * nextvalues * nextnonterminal - values[t]
                advantages[t] = lastgaelam = delta + gamma * lam * nextnonterminal * lastgaelam
            returns = advantages + values
        b_obs = obs.reshape((-1,) + envs.single_observation_space.shape)
        b_logprobs = logprobs.reshape(-1); b_actions = actions.reshape((-1,) + envs.single_action_space.shape)
        b_adv = advantages.reshape(-1); b_returns = returns.reshape(-1); b_values = values.reshape(-1)
        inds = np.arange(batch)
        for epoch in range(epochs):
            np.random.shuffle(inds)
            for s in range(0, batch, mb):
                i = inds[s:s + mb]
                _, newlogprob, entropy, newvalue = agent.get_action_and_value(b_obs[i], b_actions.long()[i])
                logratio = newlogprob - b_logprobs[i]; ratio = logratio.exp()
                with torch.no_grad():
                    approx_kl = ((ratio - 1) - logratio).mean()
                a = b_adv[i]; a = (a - a.mean()) / (a.std() + 1e-8)
                pg_loss = torch.max(-a * ratio, -a * torch.clamp(ratio, 1 - clip, 1 + clip)).mean()
                newvalue = newvalue.view(-1)
                v_unclipped = (newvalue - b_returns[i]) ** 2
                v_clipped = b_values[i] + torch.clamp(newvalue - b_values[i], -clip, clip)
                v_loss = 0.5 * torch.max(v_unclipped, (v_clipped - b_returns[i]) ** 2).mean()
                loss = pg_loss - ent * entropy.mean() + v_loss * vf
                optimizer.zero_grad(); loss.backward()
                nn.utils.clip_grad_norm_(agent.parameters(), max_norm); optimizer.step()
    seconds = time.perf_counter() - start
    last = np.mean(returns_seen[-10:]) if returns_seen else float("nan")
    emit("ppo_cartpole_100k", seconds, f"last 10 episodes {last:.1f}")
