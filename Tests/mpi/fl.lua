-- parry.fl.simulate{distributed = true} under mpirun equals the single-process
-- simulation bit for bit: every round's per-client accuracies, upload norms,
-- weights and reputations, and the global accuracy. Each rank runs both (the
-- single-process run inside the same job, without the communicator) and
-- compares with ==, so any difference in any upload's bits shows in its norm.
local parry = require("parry")
local nn, fl, d = parry.nn, parry.fl, parry.dist

local function check(cond, msg, ...)
  if not cond then error(string.format(msg, ...), 2) end
end

local ds = parry.data.synthetic_classification{n = 700, dim = 12, classes = 3, seed = 3, spread = 0.7}
local train, test = table.unpack(ds:split({0.8, 0.2}, {generator = parry.Generator(1)}))
local clients = fl.partition(train, 5, {method = "dirichlet", alpha = 0.8, min_size = 8, seed = 4})
local function model() return nn.Sequential{nn.Linear(12, 10), nn.ReLU(), nn.Linear(10, 3)} end

local function run(extra, distributed)
  local spec = {model = model, clients = clients, test = test, rounds = 3, lr = 0.1, batch_size = 16,
                seed = 7, adversary_data = 80, distributed = distributed, standalone = distributed ~= nil and true or false}
  for k, v in pairs(extra) do spec[k] = v end
  return fl.simulate(spec)
end

local function same(a, b, what)
  check(#a.rounds == #b.rounds, "%s: %d rounds vs %d", what, #a.rounds, #b.rounds)
  for k, ra in ipairs(a.rounds) do
    local rb = b.rounds[k]
    check(ra.global_accuracy == rb.global_accuracy, "%s round %d: global accuracy %s vs %s", what, k,
      tostring(ra.global_accuracy), tostring(rb.global_accuracy))
    for i, ca in ipairs(ra.clients) do
      local cb = rb.clients[i]
      for _, key in ipairs({"accuracy", "update_norm", "reputation", "weight", "removed", "selected"}) do
        check(ca[key] == cb[key], "%s round %d client %d: %s %s vs %s", what, k, i, key, tostring(ca[key]), tostring(cb[key]))
      end
    end
  end
  for i, ca in ipairs(a.clients) do
    check(ca.final_accuracy == b.clients[i].final_accuracy, "%s: client %d final accuracy", what, i)
    check(ca.standalone == b.clients[i].standalone, "%s: client %d standalone accuracy %s vs %s", what, i,
      tostring(ca.standalone), tostring(b.clients[i].standalone))
  end
  check(a.fairness == b.fairness or (a.fairness ~= a.fairness and b.fairness ~= b.fairness), "%s: fairness", what)
end

local cases = {
  {aggregator = "fedavg", adversaries = {{"free_rider", count = 1}}},
  {aggregator = "median", adversaries = {{"sign_flip", count = 1}}, fraction = 0.6},
  {aggregator = "krum", f = 1, adversaries = {{"gaussian", count = 1}}},
  {aggregator = "trimmed_mean", beta = 0.2, momentum = 0.9},
  {aggregator = "fltrust", root = 40},
  {aggregator = "rffl", rounds = 4, removal_after = 2, adversaries = {{"free_rider", count = 1}}, momentum = 0.5},
  {aggregator = "fedavg", adversaries = {function(u, round) return u * -2 end}},
  -- FedAvg over ranks folds slices of the parameters (bounds on multiples of
  -- 1024): 3,203 parameters give every rank a slice at -np 2 and 3; 70
  -- clients make two chunks; eval_batch = 32 spreads the test batches over
  -- the ranks.
  {aggregator = "fedavg", model = function() return nn.Sequential{nn.Linear(12, 200), nn.ReLU(), nn.Linear(200, 3)} end,
   clients = fl.partition(train, 70, {method = "iid", seed = 5}), adversaries = {{"sign_flip", count = 2}},
   eval_batch = 32, standalone = false},
}
for _, case in ipairs(cases) do
  local name = case.aggregator
  same(run(case, true), run(case, false), name)
end

-- An error on the rank that holds the failing client reaches every rank (no hang).
local holder = 5 % d.size()    -- the adversary is participant 6, index 5
local ok, err = pcall(run, {adversaries = {function(u, round)
  if round == 2 then error("forging fails on purpose") end
  return u
end}}, true)
check(not ok and tostring(err):find("forging fails on purpose", 1, true), "rank %d: the error did not arrive (%s)", d.rank(), tostring(err))
if d.size() > 1 then
  check(tostring(err):find("rank " .. holder, 1, true), "the error names rank %d: %s", holder, tostring(err))
end
d.barrier()
if d.is_main() then print("ok fl " .. d.size()) end
