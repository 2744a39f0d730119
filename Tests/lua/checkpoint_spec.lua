-- Resumable experiments (issue 19): parry.checkpoint restores a training
-- run's whole state, and a run killed with kill -9 mid-epoch resumes and ends
-- with weights bit-identical to an uninterrupted run.
local parry = require("parry")
local support = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "support.lua")
local PARRY, sh, q = support.PARRY, support.sh, support.q
local HERE = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local fs = require("parry.core")._fs

local function tmpdir()
  local p = os.tmpname(); os.remove(p); fs.mkdir(p); return p
end

local function same_tensors(a, b)
  local n = 0
  for k, v in pairs(a) do
    assert(b[k], "missing " .. k)
    assert.equals(0, (v - b[k]):abs():max():item(), k .. " differs")
    n = n + 1
  end
  return n
end

describe("parry.checkpoint", function()
  it("generators resume their streams exactly", function()
    local g = parry.Generator(5)
    parry.randn(3, {generator = g})           -- leaves a spare normal inside
    local s = g:get_state()
    local want = parry.randn(7, {generator = g}):totable()
    g:manual_seed(99)
    g:set_state(s)
    assert.same(want, parry.randn(7, {generator = g}):totable())
    local r = parry.get_rng_state()
    local a = parry.rand(4):totable()
    parry.set_rng_state(r)
    assert.same(a, parry.rand(4):totable())
    assert.error(function() g:set_state(parry.zeros(6):long()) end, "not all zero")
    assert.error(function() g:set_state(parry.zeros(3)) end, "6 words")
  end)

  it("saves and restores model, optimizer state, scheduler, generators and state", function()
    local dir = tmpdir()
    local function setup()
      parry.manual_seed(1)
      local net = parry.models.mlp{6, 8, 3}
      local opt = parry.optim.Adam(net, {lr = 0.01})
      return net, opt, parry.optim.lr.cosine(opt, {T_max = 5}), parry.Generator(2)
    end
    local x, y = parry.randn(16, 6), parry.randint(1, 3, {16})
    local function step(net, opt, sched, g)
      local idx = parry.randperm(16, {generator = g}):narrow(1, 1, 8)
      local loss = parry.losses.cross_entropy(net(x:index_select(1, idx)), y:index_select(1, idx))
      opt:zero_grad(); loss:backward(); opt:step(); sched:step()
    end
    local net, opt, sched, g = setup()
    for _ = 1, 3 do step(net, opt, sched, g) end
    local path = dir .. "/c.safetensors"
    parry.checkpoint.save(path, {model = net, optimizer = opt, scheduler = sched, generators = {g = g},
      state = {epoch = 2, note = "x", order = parry.tensor{3, 1, 2}}})
    for _ = 1, 2 do step(net, opt, sched, g) end
    local want = net:state_dict()
    local net2, opt2, sched2, g2 = setup()
    local st = parry.checkpoint.load(path, {model = net2, optimizer = opt2, scheduler = sched2, generators = {g = g2}})
    assert.equals(2, st.epoch); assert.equals("x", st.note); assert.same({3, 1, 2}, st.order:totable())
    assert.near(opt.lr, opt.lr, 0)
    for _ = 1, 2 do step(net2, opt2, sched2, g2) end
    assert.truthy(same_tensors(want, net2:state_dict()) > 0)
    assert.error(function() parry.checkpoint.load(path, {generators = {other = g2}}) end, "no generator named 'other'")
    assert.error(function() parry.checkpoint.save(path, {model = 3}) end, "parry.checkpoint.save: model must be a module")
    assert.error(function() parry.checkpoint.save(path, {state = {f = print}}) end, "parry.checkpoint.save: state must hold plain values")
    assert.error(function() parry.checkpoint.load(dir .. "/none.safetensors", {}) end, "parry.checkpoint.load")
    fs.rmtree(dir)
  end)

  it("resumes a run killed with kill -9 mid-epoch to bit-identical weights", function()
    local dir = tmpdir()
    local script = HERE .. "fixtures/resume_run.lua"
    local whole, resumed = dir .. "/whole.safetensors", dir .. "/resumed.safetensors"
    local out, code = sh(q(PARRY) .. " " .. q(script) .. " " .. q(dir .. "/a") .. " " .. q(whole) .. " 0")
    assert.equals(0, code, out)
    -- killed after step 23 (epoch 3, batch 3); its last checkpoint is step 20 (epoch 2, batch 10)
    out, code = sh(q(PARRY) .. " " .. q(script) .. " " .. q(dir .. "/b") .. " " .. q(resumed) .. " 23")
    assert.truthy(code ~= 0, "the run was not killed")
    assert.is_nil(io.open(resumed), "the killed run must not have finished")
    out, code = sh(q(PARRY) .. " " .. q(script) .. " " .. q(dir .. "/b") .. " " .. q(resumed) .. " 0 resume")
    assert.equals(0, code, out)
    assert.equals(4, same_tensors(parry.load(whole), parry.load(resumed)))
    -- one run folder, its metrics whole: 30 steps, once each
    local runs = parry.exp.list(dir .. "/b")
    assert.equals(1, #runs)
    assert.equals(true, runs[1].summary._resumed)
    assert.equals(30, runs[1].summary.steps)
    local m = parry.table.read_csv(dir .. "/b/resumable/" .. runs[1].started .. "/metrics.csv")
    assert.equals(30, #m)
    for i, row in ipairs(m) do assert.equals(i, row.step) end
    fs.rmtree(dir)
  end)
end)
