-- parry.fl as scripts use it, on synthetic blobs (the aggregators' and RFFL's
-- properties with hand-made vectors are tested in Swift, Tests/ParryFedTests).
local parry = require("parry")
local nn, fl = parry.nn, parry.fl

local ds = parry.data.synthetic_classification{n = 900, dim = 20, classes = 3, seed = 1, spread = 0.6}
local train, test = table.unpack(ds:split({0.8, 0.2}, {generator = parry.Generator(1)}))
local function model() return nn.Sequential{nn.Linear(20, 16), nn.ReLU(), nn.Linear(16, 3)} end

local function base(extra)
  local spec = {model = model, clients = fl.partition(train, 4, {method = "iid", seed = 2}), test = test,
                rounds = 4, lr = 0.1, standalone = false}
  for k, v in pairs(extra or {}) do spec[k] = v end
  return spec
end

describe("parry.fl.partition", function()
  it("splits disjointly, covers the data, reproduces by seed and reports a histogram", function()
    for _, method in ipairs{"iid", "dirichlet", "powerlaw", "shards"} do
      local a = fl.partition(train, 5, {method = method, seed = 4, alpha = 0.3, min_size = 5})
      local b = fl.partition(train, 5, {method = method, seed = 4, alpha = 0.3, min_size = 5})
      local total = 0
      for k = 1, 5 do
        total = total + #a[k]
        assert.equals(0, (a[k].x - b[k].x):abs():sum():item(), method .. ": not reproducible")
        local h = 0
        for _, c in ipairs(a.histogram[k]) do h = h + c end
        assert.equals(#a[k], h)
      end
      assert.equals(#train, total, method .. ": does not cover the data")
      assert.truthy(tostring(a.summary):find("samples per class"))
    end
    -- the same samples are never given twice: sums of all rows equal the pool's
    local p = fl.partition(train, 3, {method = "dirichlet", alpha = 0.5, min_size = 5, seed = 9})
    local s = 0
    for k = 1, 3 do s = s + p[k].x:sum():item() end
    assert.near(train.x:sum():item(), s, 1e-2)
  end)

  it("returns index views that copy nothing until read, and train exactly as copies do", function()
    local parts = fl.partition(train, 4, {method = "dirichlet", alpha = 0.5, min_size = 5, seed = 3})
    local p = parts[2]
    assert.is_nil(rawget(p, "x"))                       -- a view: nothing materialized yet
    assert.equals(parts.sizes[2], #p)
    local copies = {}
    for k = 1, 4 do copies[k] = parry.data.TensorDataset(parts[k].x, parts[k].y) end  -- reading x materializes it
    assert.truthy(rawget(p, "x"))
    -- a view of a view composes indices and reads the same rows
    local vv = train:view(parry.tensor{5, 9, 2, 7}):view(parry.tensor{4, 1})
    assert.same({7, 5}, {rawget(vv, "_idx")[1], rawget(vv, "_idx")[2]})
    assert.equals(0, (vv.x - train.x:index_select(1, parry.tensor{7, 5})):abs():sum():item())
    assert.error(function() train:view(parry.tensor{0}) end, "indices must be in 1..")
    -- the simulation on fresh views equals the one on the copies bit for bit
    local views = fl.partition(train, 4, {method = "dirichlet", alpha = 0.5, min_size = 5, seed = 3})
    local spec = {model = model, test = test, rounds = 2, lr = 0.1, standalone = true, seed = 1,
                  adversaries = {{"sign_flip", count = 1}}, adversary_data = 30}
    spec.clients = views
    local a = fl.simulate(spec)
    spec.clients = copies
    local b = fl.simulate(spec)
    for r = 1, 2 do
      for k = 1, 5 do assert.equals(b.rounds[r].clients[k].update_norm, a.rounds[r].clients[k].update_norm) end
    end
    assert.equals(b.fairness, a.fairness)
    for k = 1, 4 do assert.is_nil(rawget(views[k], "x"), "simulate materialized a view") end
  end)

  it("classes gives client k the classes 1..c_k", function()
    local p = fl.partition(train, 3, {method = "classes", seed = 1})
    -- c_k = round(linspace(1, 3, 3)) = 1, 2, 3
    assert.same({true, false, false}, {p.histogram[1][1] > 0, p.histogram[1][2] > 0, p.histogram[1][3] > 0})
    assert.same({true, true, false}, {p.histogram[2][1] > 0, p.histogram[2][2] > 0, p.histogram[2][3] > 0})
    assert.equals(#p[1], #p[3])
  end)

  it("rejects bad input with the function's name", function()
    assert.error(function() fl.partition(train, 3, {method = "dirichlet", alpha = 0}) end, "alpha must be a positive")
    assert.error(function() fl.partition(train, 3, {method = "dirichlet", alpha = -1}) end, "alpha must be a positive")
    assert.error(function() fl.partition(train:subset{1, 2}, 3) end, "some would be empty")
    assert.error(function() fl.partition(train, 2, {method = "nope"}) end, "unknown method 'nope'")
    assert.error(function() fl.partition(train, 2, {colour = 1}) end, "unknown option 'colour'")
    assert.error(function() fl.partition(42, 2) end, "expected a labelled dataset")
  end)
end)

describe("parry.fl.aggregate", function()
  it("computes the rules on hand-made updates", function()
    local u = {parry.tensor{1, 0}, parry.tensor{2, 1}, parry.tensor{3, 2}, parry.tensor{4, 3}, parry.tensor{100, -50}}
    assert.near(parry.tensor{3, 1}, fl.aggregate("median", u), 1e-6)
    assert.near(parry.tensor{3, 1}, fl.aggregate("trimmed_mean", u, {beta = 0.2}), 1e-6)
    assert.near(parry.tensor{22, -8.8}, fl.aggregate("fedavg", u), 1e-5)
    -- f = 1: u2 and u3 each have two neighbours at squared distance 2 (score 4); ties to the lower index
    local k, sel = fl.aggregate("krum", u, {f = 1})
    assert.near(parry.tensor{2, 1}, k, 1e-6)
    assert.same({2}, sel)
    local _, trust = fl.aggregate("fltrust", {parry.tensor{2, 0}, parry.tensor{-1, 0}}, {root = parry.tensor{1, 0}})
    assert.same({1, 0}, trust)
    assert.error(function() fl.aggregate("krum", u, {f = 3}) end, "parry.fl.aggregate: krum with f = 3")
    assert.error(function() fl.aggregate("median", {parry.tensor{1}, parry.tensor{1, 2}}) end, "update 2 has 2 elements")
    assert.equals(1, fl.pearson({1, 2, 3}, {2, 4, 6}))
  end)
end)

describe("parry.fl.simulate", function()
  it("trains with every aggregator and reports per-round, per-client records", function()
    for _, agg in ipairs{"fedavg", "median", "trimmed_mean", "krum", "multi_krum", "fltrust", "rffl"} do
      local rounds = 0
      local res = fl.simulate(base{aggregator = agg, f = 1, on_round = function(r)
        rounds = rounds + 1
        assert.equals(rounds, r.round)
        assert.equals(4, #r.clients)
      end})
      assert.equals(4, rounds)
      assert.equals(4, #res.rounds)
      assert.truthy(res.honest.best > 0.6, agg .. " did not learn: " .. res.honest.best)
      assert.truthy(res.overhead >= 0 and res.overhead < 1)
      if agg ~= "rffl" then assert.not_nil(res.rounds[4].global_accuracy) else assert.not_nil(res.rounds[4].clients[1].reputation) end
    end
  end)

  it("RFFL removes a free rider after the grace rounds and keeps the honest clients", function()
    local res = fl.simulate(base{aggregator = "rffl", rounds = 14, removal_after = 3, gamma = 0.05,
                                 adversaries = {{"free_rider", count = 1}}, adversary_data = 100, standalone = true})
    assert.equals(1, #res.removed)
    assert.equals(5, res.removed[1].client)
    assert.equals("free_rider", res.removed[1].kind)
    assert.truthy(res.removed[1].round > 3)
    assert.equals(0, res.rounds[14].clients[5].reputation)
    assert.not_nil(res.fairness)
    assert.not_nil(res.clients[1].standalone)
  end)

  it("runs Lua aggregators and adversaries, and writes a CSV", function()
    local seen
    local res = fl.simulate(base{
      aggregator = function(updates, weights, round)
        seen = {#updates, #weights, round}
        local s = updates[1] * 0
        for _, u in ipairs(updates) do s = s + u end
        return s / #updates
      end,
      adversaries = {{function(update, round) return update * -1 end, count = 1, name = "flipper"}},
      csv = os.tmpname(),
    })
    assert.same({5, 5, 4}, seen)
    assert.equals("flipper", res.clients[5].kind)
    assert.truthy(res.honest.best > 0.5)
    local path = os.tmpname()
    fl.simulate(base{rounds = 2, csv = path})
    local f = assert(io.open(path))
    local lines = 0
    for _ in f:lines() do lines = lines + 1 end
    f:close()
    os.remove(path)
    assert.equals(1 + 2 * 4, lines)  -- header + rounds × clients
  end)

  it("rejects bad input clearly and stays usable afterwards", function()
    assert.error(function() fl.simulate(base{adversaries = {{"free_rider", count = 5}}}) end,
                 "parry.fl.simulate: 5 adversaries for 4 honest clients")
    assert.error(function() fl.simulate(base{aggregator = function() return parry.zeros(3) end}) end,
                 "parry.fl.simulate: the aggregator function's result has 3 elements")
    assert.error(function() fl.simulate(base{aggregator = function() error("boom") end}) end, "boom")
    assert.error(function() fl.simulate(base{adversaries = {{"martian"}}}) end, "unknown adversary 'martian'")
    assert.error(function() fl.simulate(base{aggregator = "mean"}) end, "unknown aggregator 'mean'")
    assert.error(function() fl.simulate(base{model = model()}) end, "model must be a function")
    assert.error(function() fl.simulate(base{lr = -1}) end, "lr must be")
    assert.error(function() fl.simulate(base{fraction = 0}) end, "fraction must be in")
    assert.error(function() fl.simulate(base{aggregator = "krum"}) end, "krum needs option f")
    -- nothing was corrupted: the same simulation still runs and gives the same numbers twice
    local a = fl.simulate(base{seed = 5})
    local b = fl.simulate(base{seed = 5})
    assert.equals(a.honest.mean, b.honest.mean)
  end)

  it("gives the same results with concurrent and sequential clients", function()
    local a = fl.simulate(base{aggregator = "rffl", parallel = true, seed = 3})
    local b = fl.simulate(base{aggregator = "rffl", parallel = false, seed = 3})
    for i = 1, 4 do assert.equals(a.clients[i].final_accuracy, b.clients[i].final_accuracy) end
  end)
end)
