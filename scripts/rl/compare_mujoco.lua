-- The parry side of scripts/rl/compare_mujoco.py: replays Gymnasium's
-- recorded episodes from the same state and prints the largest differences.
--   parry scripts/rl/compare_mujoco.lua RECORD.json ASSETS_DIR
local parry = require("parry")
local rl = parry.rl
local f = assert(io.open(arg[1]))
local doc = parry.json.decode(f:read("a"))
f:close()
os.remove(arg[1])
print(("%-15s %6s  %-28s %-28s %s"):format("env", "steps", "max |Δobs| (first 10 / all)", "max |Δreward| (first 10 / all)", "termination"))
for _, ep in ipairs(doc.episodes) do
  local env = rl.make(ep.env, {assets = arg[2]})
  env:reset({seed = 0})
  env:set_state(ep.qpos, ep.qvel)
  local d_obs, d_rew, d_obs10, d_rew10, same_term = 0, 0, 0, 0, true
  for t, a in ipairs(ep.actions) do
    local obs, r, term = env:step(parry.tensor(a))
    local dobs = (obs - parry.tensor(ep.obs[t])):abs():max():item()
    local drew = math.abs(r - ep.reward[t])
    d_obs, d_rew = math.max(d_obs, dobs), math.max(d_rew, drew)
    if t <= 10 then d_obs10, d_rew10 = math.max(d_obs10, dobs), math.max(d_rew10, drew) end
    if term ~= ep.terminated[t] then same_term = false end
    if term then break end
  end
  print(("%-15s %6d  %-28s %-28s %s"):format(ep.env, #ep.actions, ("%.2g / %.2g"):format(d_obs10, d_obs),
    ("%.2g / %.2g"):format(d_rew10, d_rew), same_term and "same at every step" or "differs"))
end
