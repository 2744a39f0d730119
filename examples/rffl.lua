-- rffl.lua — federated learning with free riders and label flippers:
-- FedAvg, coordinate-wise median, Krum, FLTrust and RFFL's reputation
-- mechanism (Xu & Lyu 2020, "A Reputation Mechanism Is All You Need").
--
--   parry examples/rffl.lua [rounds=100] [local_epochs=3]
--
-- Setting (RFFL's MNIST protocol scaled to the time budget): Fashion-MNIST,
-- 10 honest clients holding a power-law split (a = 1.659) of 6,000 training
-- images, plus 2 adversaries that each draw 600 images from the same pool;
-- the 784-200-200-10 MLP, SGD lr 0.15 decayed 0.977 per round, batch 32,
-- `rounds` rounds of `local_epochs` local epochs; RFFL with Γ = 0.5, α = 0.95,
-- c = 1/3, removal after 10 rounds; FLTrust with 100 root images; Krum with f = 2.
-- Accuracies are on 2,000 test images. For the global-model rules a client's
-- accuracy is that of its model after the round's local training (so clients
-- differ and a fairness correlation exists); "global" is the server model.
-- Fairness: Pearson correlation between each honest client's standalone
-- accuracy (trained alone with the same budget) and its final accuracy.
-- Seeds are fixed. Measured on 2 cores: 236 s in total (about 20 s per
-- simulation, clients training concurrently; 0.5 GB resident). Results of that run
-- (this build, 2026-12-01; the previous header came from an older build and no longer matched):
--   2 free riders       best/mean honest  fairness  removed
--     fedavg            0.786/0.684       0.541     none
--     median            0.867/0.853      -0.020     none
--     krum              0.829/0.795       0.245     none
--     fltrust           0.864/0.851      -0.285     none
--     rffl              0.842/0.806       0.994     both free riders, round 11
--   2 label flippers
--     fedavg            0.867/0.852       0.256     none
--     median            0.866/0.855       0.027     none
--     krum              0.832/0.795       0.192     none
--     fltrust           0.864/0.851      -0.340     none
--     rffl              0.840/0.805       0.991     none (their updates stay aligned with the honest ones)
local parry = require("parry")
local fl = parry.fl

local rounds = tonumber(arg[1]) or 100
local local_epochs = tonumber(arg[2]) or 3
local t_start = parry.clock()

local pool = parry.data.fashion_mnist{split = "train", limit = 6000}
local test = parry.data.fashion_mnist{split = "test", limit = 2000}
local clients = fl.partition(pool, 10, {method = "powerlaw", seed = 1})
print("Power-law partition of 6,000 Fashion-MNIST images:")
print(clients.summary)

local common = {
  model = function() return parry.models.mlp{784, 200, 200, 10} end,
  clients = clients, test = test, rounds = rounds, local_epochs = local_epochs,
  batch_size = 32, lr = 0.15, lr_decay = 0.977, seed = 1,
  f = 2, root = 100, gamma = 0.5, alpha = 0.95, threshold = 1 / 3, removal_after = 10,
  adversary_data = 600,
}
local function with(t)
  local s = {}
  for k, v in pairs(common) do s[k] = v end
  for k, v in pairs(t) do s[k] = v end
  return s
end

local t0 = parry.clock()
local alone = fl.standalone(with{})
print(string.format("\nStandalone baseline (each client alone, %d rounds × %d epochs): %.1f s", rounds, local_epochs, parry.clock() - t0))

local scenarios = {
  {"2 free riders", {{"free_rider", count = 2}}},
  {"2 label flippers (label 2→8: RFFL's 1→7 in 0-based labels)", {{"label_flip", count = 2, map = {[2] = 8}}}},
}
local rules = {"fedavg", "median", "krum", "fltrust", "rffl"}

local function fmt(v, f) if v == nil or v ~= v then return "-" end return string.format(f or "%.3f", v) end

for _, sc in ipairs(scenarios) do
  local rows = {}
  for _, rule in ipairs(rules) do
    local t1 = parry.clock()
    local res = fl.simulate(with{aggregator = rule, adversaries = sc[2], standalone = alone})
    local removed = {}
    for _, r in ipairs(res.removed) do
      removed[#removed + 1] = string.format("%s#%d@r%d", r.kind == "honest" and "H" or "A", r.client, r.round)
    end
    local g = res.rounds[#res.rounds].global_accuracy
    rows[#rows + 1] = {rule, fmt(res.honest.best), fmt(res.honest.mean), fmt(g), fmt(res.fairness),
                       #removed > 0 and table.concat(removed, " ") or "none", string.format("%.0f s", parry.clock() - t1)}
  end
  print(string.format("\nScenario: %s", sc[1]))
  local header = {"rule", "best honest", "mean honest", "global", "fairness", "removed (client@round)", "time"}
  local w = {}
  for j, h in ipairs(header) do w[j] = #h end
  for _, r in ipairs(rows) do for j, v in ipairs(r) do w[j] = math.max(w[j], utf8.len(v) or #v) end end
  for _, r in ipairs({header, table.unpack(rows)}) do
    local cells = {}
    for j, v in ipairs(r) do cells[j] = v .. string.rep(" ", w[j] - (utf8.len(v) or #v)) end
    print(table.concat(cells, "  "))
  end
end
print(string.format("\nTotal: %.0f s. Clients 11 and 12 are the adversaries; H = honest, A = adversary.", parry.clock() - t_start))
