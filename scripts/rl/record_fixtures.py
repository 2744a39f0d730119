"""Records classic-control trajectories from Gymnasium itself, for parry's
dynamics tests (Tests/ParryRLTests/Fixtures/*.json).

    python=$(scripts/rl/venv) && $python scripts/rl/record_fixtures.py

Each episode stores the exact initial state (env.unwrapped.state, float64), the
action sequence, and what Gymnasium returned at every step: observation,
reward, terminated, truncated. The tests put parry's env into the same state,
replay the actions and compare. Actions are float32 as the Box spaces declare;
some episodes use simple controllers so that termination and the time limit
are both reached, and some actions lie outside the Box so the env's own
clipping is exercised.
"""
import json
import math
import os
import sys

import gymnasium as gym
import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "Tests", "ParryRLTests", "Fixtures")


def run(env_id, seed, policy, rng):
    env = gym.make(env_id)
    obs, _ = env.reset(seed=seed)
    ep = {"seed": seed, "initial_state": [float(v) for v in np.asarray(env.unwrapped.state, dtype=np.float64)],
          "initial_obs": [float(v) for v in obs], "actions": [], "obs": [], "reward": [],
          "terminated": [], "truncated": []}
    done = False
    while not done:
        a = policy(obs, rng, env)
        obs, r, term, trunc, _ = env.step(a)
        ep["actions"].append(int(a) if np.isscalar(a) or np.ndim(a) == 0 else [float(v) for v in a])
        ep["obs"].append([float(v) for v in obs])
        ep["reward"].append(float(r))
        ep["terminated"].append(bool(term))
        ep["truncated"].append(bool(trunc))
        done = term or trunc
    env.close()
    return ep


def random_discrete(n):
    return lambda obs, rng, env: int(rng.integers(n))


def box(lo, hi):
    return lambda obs, rng, env: rng.uniform(lo, hi, size=(1,)).astype(np.float32)


def cartpole_balance(obs, rng, env):
    return int(obs[2] + 0.5 * obs[3] > 0)


def mountain_pump(obs, rng, env):
    # push along the velocity; |action| up to 1.5 exercises the [-1, 1] clip
    return np.array([1.5 if obs[1] >= 0 else -1.2], dtype=np.float32)


def acrobot_pump(obs, rng, env):
    return 2 if obs[5] >= 0 else 0  # torque along the second joint's velocity


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20261201)
    plans = {
        "CartPole-v1": [(1, random_discrete(2)), (2, random_discrete(2)), (3, random_discrete(2)), (4, cartpole_balance)],
        "Pendulum-v1": [(5, box(-2.0, 2.0)), (6, box(-3.0, 3.0))],
        "MountainCarContinuous-v0": [(7, mountain_pump), (8, box(-1.0, 1.0))],
        "Acrobot-v1": [(9, random_discrete(3)), (10, acrobot_pump)],
    }
    for env_id, eps in plans.items():
        spec = gym.spec(env_id)
        doc = {"env": env_id, "gymnasium": gym.__version__, "numpy": np.__version__,
               "max_episode_steps": spec.max_episode_steps,
               "episodes": [run(env_id, seed, pol, rng) for seed, pol in eps]}
        path = os.path.join(OUT, env_id + ".json")
        with open(path, "w") as f:
            json.dump(doc, f, separators=(",", ":"))
        lens = [len(e["reward"]) for e in doc["episodes"]]
        ends = ["term" if e["terminated"][-1] else "trunc" for e in doc["episodes"]]
        print(f"{env_id}: episodes {lens} {ends} -> {os.path.relpath(path)}")


if __name__ == "__main__":
    sys.exit(main())
