"""Compares parry's MuJoCo tasks with Gymnasium + the mujoco wheel, step by
step: Gymnasium runs an episode (reset with a seed, seeded random actions)
and records its initial qpos/qvel, the actions and what it returned; parry
(scripts/rl/compare_mujoco.lua) sets the same state, replays the actions and
reports the largest differences.

    python=$(scripts/rl/venv) && $python scripts/rl/compare_mujoco.py [steps=300]

parry runs Debian's MuJoCo 2.2.2, the wheel MuJoCo 3.x: the two integrate
the same model with small numerical differences (contact solver details),
which grow along an episode; the first steps agree to about 1e-9 and the
report shows how the gap develops.
"""
import json
import os
import subprocess
import sys
import tempfile

import gymnasium as gym
import mujoco
import numpy as np

steps = int(sys.argv[1]) if len(sys.argv) > 1 else 300
here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))
# MuJoCo writes its warnings to ./MUJOCO_LOG.TXT: keep that out of the caller's folder
os.chdir(tempfile.mkdtemp(prefix="parry-compare-mujoco-"))
assets = os.path.join(os.path.dirname(gym.__file__), "envs", "mujoco", "assets")
docs = []
for k, env_id in enumerate(["Hopper-v4", "Walker2d-v4", "HalfCheetah-v4", "Ant-v4"]):
    env = gym.make(env_id)
    env.reset(seed=k)
    u = env.unwrapped
    rng = np.random.default_rng(k)
    ep = {"env": env_id, "qpos": u.data.qpos.tolist(), "qvel": u.data.qvel.tolist(), "actions": [], "obs": [],
          "reward": [], "terminated": []}
    for t in range(steps):
        a = rng.uniform(-1, 1, size=env.action_space.shape).astype(np.float32) * 0.5
        obs, r, term, trunc, _ = env.step(a)
        ep["actions"].append([float(x) for x in a]); ep["obs"].append([float(x) for x in obs])
        ep["reward"].append(float(r)); ep["terminated"].append(bool(term))
        if term:
            break
    docs.append(ep)
with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
    json.dump({"mujoco": mujoco.__version__, "gymnasium": gym.__version__, "episodes": docs}, f)
    path = f.name
parry = os.environ.get("PARRY", os.path.join(root, ".build", "release", "parry"))
print(f"Gymnasium {gym.__version__} with the mujoco wheel {mujoco.__version__} vs parry on Debian's libmujoco")
sys.exit(subprocess.call([parry, os.path.join(here, "compare_mujoco.lua"), path, assets]))
