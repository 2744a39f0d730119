-- Bad input is a Lua error naming the function, raised at the caller's line
-- and catchable by pcall; the process lives on (API.md "Errors").
local parry = require("parry")
local THIS = "Tests/lua/errors_spec.lua"

-- Runs fn and returns the error message (fails the spec if fn succeeds).
local function err_of(fn)
  local ok, e = pcall(fn)
  assert(not ok, "expected an error")
  return tostring(e)
end

describe("every exposed function survives bad arguments", function()
  local function T() return parry.zeros(2, 3) end
  -- The string argument "x" is a path in the temporary directory: functions that
  -- write files (parry.save(T, "x") succeeds) must not litter the working tree.
  local XPATH = os.tmpname()
  after_each(function() os.remove(XPATH) end)
  local bad_calls = {
    {}, {nil}, {"x"}, {{}}, {{1, "a"}}, {print}, {true}, {math.huge}, {-1}, {0 / 0}, {2.5},
    {1 << 62}, {{1 << 40, 1 << 40}},
    {"T", "x"}, {"T", {}}, {"T", 99}, {"T", -99}, {"T", 1.5}, {"T", 0}, {"T", true},
    {"T", "T", "T", "T"}, {"T", "big"}, {"T", 1, 99}, {"T", 1, -1, "x"}, {"T", nil, "x"},
    {"T", {dtype = "float64"}}, {"T", {bogus = 1}}, {"T", "long_idx"}, {"T", 1, "float_idx"},
    {"T", 2, 1, 1 << 62}, {"T", {{1}, {2, 3}}},
  }
  local function materialize(args)
    local out = {}
    for i = 1, #args do
      local a = args[i]
      if a == "T" then a = T()
      elseif a == "x" then a = XPATH
      elseif a == "big" then a = parry.zeros(5, 7)
      elseif a == "long_idx" then a = parry.tensor{{7, 1}, {1, 1}}
      elseif a == "float_idx" then a = parry.tensor{{1.0}} end
      out[i] = a
    end
    return out, #args
  end

  -- Every problem found, reported together at the end of each `it`.
  local problems = {}
  local function report()
    local list = problems
    problems = {}
    assert(#list == 0, #list .. " problems:\n" .. table.concat(list, "\n"))
  end

  local function check(name, fn, accepted)
    local threads = parry.get_num_threads()
    for _, args in ipairs(bad_calls) do
      local a, n = materialize(args)
      local ok, e = pcall(fn, table.unpack(a, 1, n))
      if not ok then
        local msg = tostring(e)
        local named = false
        for _, prefix in ipairs(accepted) do
          if msg:find(prefix, 1, true) then named = true end
        end
        if not named then
          problems[#problems + 1] = name .. " raised an error not naming it: " .. msg
        elseif msg:sub(1, #THIS + 1) ~= THIS .. ":" then
          -- positioned at this file's line (the pcall is skipped as a C frame),
          -- not inside parry's stdlib and not without a position
          problems[#problems + 1] = name .. " raised an error not positioned at the caller's line: " .. msg
        end
      end
    end
    parry.set_num_threads(threads)
  end

  it("for every function in the parry table", function()
    local n = 0
    for name, fn in pairs(parry) do
      if type(fn) == "function" then
        check("parry." .. name, fn, {"parry." .. name})
        n = n + 1
      end
    end
    report()
    assert(n > 60, "expected many functions, found " .. n)
  end)

  it("for every tensor method", function()
    local n = 0
    for name, fn in pairs(parry.Tensor) do
      check("Tensor:" .. name, fn, {"parry." .. name, "Tensor:" .. name})
      n = n + 1
    end
    report()
    assert(n > 80, "expected many methods, found " .. n)
  end)

  it("for nn, functional, losses, optim, data and module methods", function()
    local groups = {
      {parry.nn, "nn."}, {parry.nn.functional, "nn.functional."}, {parry.losses, "parry.losses."},
      {parry.optim, "optim."}, {parry.optim.lr, "optim.lr."}, {parry.models, "parry.models."},
      {parry.attacks, "parry.attacks."}, {parry.robust, "parry.robust."}, {parry.fl, "parry.fl."},
      {require("parry.core")._fl, "parry.fl."}, {require("parry.train"), "parry.train."},
      {parry.exp, "parry.exp."}, {parry.json, "parry.json."}, {parry.table, "parry.table."},
      {parry.rl, "parry.rl."}, {parry.rl.wrappers, "parry.rl.wrappers."},
      {parry.rl.attacks, "parry.rl.attacks."}, {parry.rl.schedules, "parry.rl.schedules."},
      {parry.dist, "parry.dist."},
    }
    -- parry.dist.abort ends the process by design
    local slow = {fashion_mnist = true, mnist = true, cifar10 = true, abort = true}
    local n = 0
    for _, g in ipairs(groups) do
      for name, fn in pairs(g[1]) do
        if type(fn) == "function" and not name:find("torch_names") and not (g[2] == "parry.dist." and slow[name]) then
          check(g[2] .. name, fn, {g[2] .. name, "nn.Module", "parry.robust." .. name .. "_loss",
            "parry.losses." .. name:gsub("_loss$", "")})
          n = n + 1
        end
      end
    end
    for name, fn in pairs(parry.data) do
      if type(fn) == "function" and not slow[name] then check("parry.data." .. name, fn, {"parry.data." .. name}); n = n + 1 end
    end
    for name, fn in pairs(parry.data.transforms) do
      check("parry.data.transforms." .. name, fn, {"parry.data.transforms." .. name}); n = n + 1
    end
    local module_methods = getmetatable(parry.nn.Linear(1, 1)).methods
    for name, fn in pairs(module_methods) do
      check("Module:" .. name, fn, {"Module:" .. name})
      check("Module:" .. name .. " on a module", function(...) return fn(parry.nn.Linear(3, 2), ...) end, {"Module:" .. name})
      n = n + 1
    end
    -- parry.rl's objects: env, vector env, space and policy methods
    local rl = parry.rl
    local env, venv = rl.make("CartPole-v1", {seed = 1}), rl.vector("Pendulum-v1", 2)
    env:reset(); venv:reset()
    local policy = rl.Policy{env = "Pendulum-v1"}
    local objects = {{env, "env:", {"reset", "step", "stats"}}, {venv, "env:", {"reset", "step", "stats"}},
                     {env.action_space, "Space:", {"sample", "contains", "seed"}},
                     {venv.single_action_space, "Space:", {"sample", "contains", "seed"}},
                     {policy, "Policy:", {"act", "value", "save"}}}
    for _, o in ipairs(objects) do
      for _, m in ipairs(o[3]) do
        check(o[2] .. m, function(...) return o[1][m](o[1], ...) end,
          {o[2] .. m, "parry.rl.wrappers", "parry.Generator", "parry.save"})
        n = n + 1
      end
    end
    local ds = parry.data.synthetic_classification{n = 10, dim = 3, classes = 2}
    for _, name in ipairs{"get", "subset", "split", "batches"} do
      check("Dataset:" .. name, function(...) return ds[name](ds, ...) end, {"parry.data." .. name})
      check("Dataset:" .. name .. " without self", ds[name], {"parry.data." .. name})
    end
    report()
    assert(n > 50, "expected many functions, found " .. n)
  end)

  it("for wrong shapes into layers", function()
    local cases = {
      {function() parry.nn.Linear(4, 2)(parry.zeros(3, 5)) end, "Module:forward: input of shape {3,5} does not match weight {2,4}"},
      {function() parry.nn.Conv2d(3, 8, 3)(parry.zeros(1, 1, 8, 8)) end, "input has 1 channels but the weight {8,3,3,3} expects 3"},
      {function() parry.nn.Conv2d(1, 8, 3)(parry.zeros(8, 8)) end, "expected a 4-d input N×C×H×W, got shape {8,8}"},
      {function() parry.nn.Conv2d(1, 8, 5)(parry.zeros(1, 1, 3, 3)) end, "smaller than the kernel"},
      {function() parry.nn.MaxPool2d(2)(parry.zeros(4)) end, "expected a 4-d input"},
      {function() parry.nn.BatchNorm2d(3)(parry.zeros(2, 3)) end, "BatchNorm2d expects a 4-d N×C×H×W input"},
      {function() parry.nn.BatchNorm1d(3)(parry.zeros(2, 4)) end, "running_mean has shape {3}, expected {4}"},
      {function() parry.nn.BatchNorm1d(3)(parry.zeros(1, 3)) end, "expected more than 1 value per channel when training"},
      {function() parry.models.resnet20()(parry.zeros(1, 1, 8, 8)) end, "input has 1 channels"},
      {function() parry.nn.Sequential{parry.nn.Linear(2, 2), 5} end, "nn.Sequential: expected modules in modules, got integer at position 2"},
      {function() parry.nn.Linear(0, 2) end, "nn.Linear: Linear sizes must be positive"},
      {function() parry.nn.Dropout(1.5) end, "dropout probability must be in [0, 1]"},
    }
    for _, c in ipairs(cases) do assert.error(c[1], c[2]) end
  end)

  -- Each case is a one-line function: the error must carry that line of this
  -- file, however deep in parry's stdlib (Lua or Swift) it was raised.
  it("at the line of the call, for errors raised deep inside the stdlib", function()
    local Bare = parry.nn.Module:extend("Bare")
    local cases = {
      {function() parry.nn.Conv2d(3, 8, 3)(parry.zeros(1, 4, 8, 8)) end, "Module:forward: input has 4 channels"},
      {function() parry.models.small_cnn{in_channels = 1, classes = 10}(parry.zeros(2, 3, 28, 28)) end, "input has 3 channels"},
      {function() parry.data.fashion_mnist{split = "bogus"} end, "parry.data.fashion_mnist: split must be"},
      {function() parry.data.TensorDataset(parry.zeros(3, 2), parry.zeros(2)) end, "parry.data.TensorDataset"},
      {function() parry.exp.run{name = "a b", fn = print} end, "parry.exp.run: name must be a word"},
      {function() parry.json.decode("{bad") end, "parry.json.decode"},
      {function() parry.fl.partition(parry.data.synthetic_classification{n = 10, dim = 2, classes = 2}, 0) end, "parry.fl.partition"},
      {function() parry.attacks.report(5) end, "parry.attacks.report: expected the table"},
      {function() Bare()(parry.zeros(1)) end, "Bare:forward is not implemented"},
      {function() parry.nn.Linear(2, 2):load_state_dict(5) end, "Module:load_state_dict"},
      {function() require("parry.train").accuracy(parry.nn.Linear(2, 2), 5) end, "parry.train.accuracy: expected a dataset for ds (argument 2), got number"},
      {function() require("parry.train").epoch(parry.nn.Linear(2, 2), parry.data.synthetic_classification{n = 4, dim = 2, classes = 2}, 1) end, "parry.train.epoch: expected an optimizer"},
    }
    for _, c in ipairs(cases) do
      local where = THIS .. ":" .. debug.getinfo(c[1], "S").linedefined .. ":"
      local ok, e = pcall(c[1])
      assert.falsy(ok, "expected an error containing " .. c[2])
      e = tostring(e)
      assert.truthy(e:find(c[2], 1, true), e)
      assert.equals(where, e:sub(1, #where), e)
    end
  end)

  it("for operators and indexing", function()
    local x = T()
    for _, other in ipairs{"x", {}, print, parry.zeros(4), true} do
      assert.error(function() return x + other end, "parry.add")
      assert.error(function() return other - x end, "parry.sub")
      assert.error(function() return x * other end, "parry.mul")
      assert.error(function() return x / other end, "parry.div")
      assert.error(function() return x ^ other end, "parry.pow")
    end
    assert.error(function() return x[3] end, "Tensor[i]")
    assert.error(function() return x[0] end, "Tensor[i]")
    assert.error(function() return x[1.5] end, "Tensor[i]")
    assert.error(function() x[1] = "a" end, "Tensor[i]")
    assert.error(function() x[1] = parry.zeros(4) end, "Tensor[i]")
    assert.error(function() x.foo = 1 end, "cannot assign field 'foo'")
    assert.error(function() return #parry.tensor(3) end, "0-d tensor has no length")
    assert.is_nil(x.nonexistent)
  end)

  -- debug.setmetatable moves any metatable onto any userdata: a file handle
  -- wearing the tensor metatable, a module wearing it, a tensor wearing a
  -- module's. The type check must look at the box, not the metatable (it
  -- read the FILE* of a file handle as a tensor: a segfault in binaryRaw).
  it("for userdata wearing another kind's metatable", function()
    local tmt = debug.getmetatable(parry.zeros(2))
    local mmt = debug.getmetatable(parry.nn.Linear(2, 2))
    local f = io.tmpfile()
    local fmt = debug.getmetatable(f)
    debug.setmetatable(f, tmt)
    assert.error(function() return f + f end, "parry.add")
    assert.error(function() return parry.zeros(2) * f end, "parry.mul")
    assert.error(function() return f:sum() end, "expected a tensor")
    assert.error(function() return parry.relu(f) end, "parry.relu")
    local m = parry.nn.Linear(2, 2)
    debug.setmetatable(m, tmt)
    assert.error(function() return m + 1 end, "parry.add")
    local t = parry.zeros(2)
    debug.setmetatable(t, mmt)
    assert.error(function() return t:parameters() end, "expected a module")
    collectgarbage(); collectgarbage()               -- the finalizers see boxes not theirs
    debug.setmetatable(f, fmt)
    f:close()
    debug.setmetatable(m, mmt)                       -- its own finalizer again (no leak under ASAN)
    debug.setmetatable(t, tmt)                       -- back to a working tensor
    assert.equals(2, (t + 1):sum():item())
  end)

  -- The registry holds the metatables new userdata get; a script can rewrite
  -- it. A non-table there is not set as a metatable (lua_setmetatable would
  -- take a number's bits for a table): the tensor comes without one.
  it("when the registry's metatables are rewritten", function()
    local tmt = debug.getmetatable(parry.zeros(2))
    local reg, keys = debug.getregistry(), {}
    for k, v in pairs(reg) do if v == tmt then keys[#keys + 1] = k end end
    assert.is_true(#keys >= 1)
    for _, k in ipairs(keys) do reg[k] = 42 end
    local ok, t = pcall(parry.ones, 3)
    for _, k in ipairs(keys) do reg[k] = tmt end
    assert.is_true(ok)
    assert.is_nil(debug.getmetatable(t))
    assert.error(function() return t + t end, "arithmetic")
    debug.setmetatable(t, tmt)                       -- its finalizer releases it (no leak under ASAN)
    assert.equals(6, (parry.ones(3) + parry.ones(3)):sum():item())
  end)
end)

describe("messages say what was expected", function()
  local x = parry.tensor{{1.0, 2.0, 3.0}, {4.0, 5.0, 6.0}}
  local cases = {
    {function() parry.zeros(-1) end, "parry.zeros: sizes must be non-negative, got {-1}"},
    {function() parry.zeros(2.5) end, "parry.zeros: expected an integer for size (argument 1), got 2.5"},
    {function() parry.zeros("x") end, "parry.zeros: expected sizes as integers or one table (argument 1), got string"},
    {function() parry.zeros(2, {dtype = "float64"}) end, "parry.zeros: unknown dtype 'float64'"},
    {function() parry.zeros(2, {dytpe = "int64"}) end, "parry.zeros: unknown option 'dytpe'"},
    {function() parry.zeros(1 << 40) end, "parry.zeros: cannot allocate a tensor of shape {1099511627776}"},
    {function() parry.tensor{{1, 2}, {3}} end, "parry.tensor: nested tables have uneven lengths"},
    {function() parry.tensor{"a"} end, "parry.tensor: expected numbers or nested tables of numbers, got string"},
    {function() x:reshape(4) end, "parry.reshape: shape {4} is invalid for 6 elements"},
    {function() x:reshape(-1, -1) end, "parry.reshape: only one dimension can be -1"},
    {function() x:t():view(6) end, "use reshape"},
    {function() x:sum(3) end, "parry.sum: dim 3 is out of range for a 2-d tensor (expected 1..2 or -2..-1)"},
    {function() x:softmax() end, "parry.softmax: missing dim"},
    {function() x:size(0) end, "Tensor:size: dim 0 is out of range"},
    {function() return x[3] end, "index 3 is out of range for a dimension of size 2"},
    {function() x:select(1, -3) end, "parry.select: index -3 is out of range"},
    {function() x:narrow(2, 2, 5) end, "parry.narrow: range 2..6 is out of bounds for size 3"},
    {function() x:index_select(2, {4}) end, "parry.index_select: index 4 is out of range"},
    {function() x:gather(2, parry.tensor{{1.0}}) end, "parry.gather: index must be an int64 tensor"},
    {function() x:gather(2, parry.tensor{{4}, {1}}) end, "parry.gather: index 4 is out of bounds"},
    {function() parry.matmul(parry.zeros(2, 3), parry.zeros(4, 5)) end, "parry.matmul: shapes {2,3} and {4,5} do not match (3 ~= 4)"},
    {function() return x + parry.zeros(4) end, "parry.add: shapes {2,3} and {4} cannot be broadcast"},
    {function() parry.cat{} end, "parry.cat: expected a non-empty table of tensors"},
    {function() parry.cat{x, parry.zeros(3, 4)} end, "parry.cat: tensor 2 has shape {3,4}, expected {2,3} outside dimension 1"},
    {function() parry.stack{x, parry.zeros(3)} end, "parry.stack: tensor 2 has shape {3}"},
    {function() parry.cat{x, "a"} end, "parry.cat: expected tensors in tensors, got string at position 2"},
    {function() x:expand(3, 3) end, "parry.expand: cannot expand shape {2,3} to {3,3}"},
    {function() x:permute(1, 1) end, "parry.permute: expected a permutation"},
    {function() x:add_(parry.zeros(4, 2, 3)) end, "Tensor:add_: shape {4,2,3} does not broadcast"},
    {function() parry.ones(2, {dtype = "int64"}):div_(2) end, "Tensor:div_: result of type float32 cannot be stored in place"},
    {function() x:item() end, "Tensor:item: expected a tensor with one element, got shape {2,3}"},
    {function() x:norm("l7") end, "parry.norm: unknown norm 'l7'"},
    {function() parry.randint(5, 1, 3) end, "parry.randint: empty range: low 5 > high 1"},
    {function() parry.arange(1, 5, 0) end, "parry.arange: step must be non-zero"},
    {function() parry.randperm(-2) end, "parry.randperm: n must be non-negative"},
    {function() parry.manual_seed("x") end, "parry.manual_seed: expected an integer for seed (argument 1), got string"},
    {function() parry.Tensor.add("x", 1) end, "parry.add: expected a tensor or number for self (argument 1), got string"},
    {function() x:to("complex") end, "Tensor:to: unknown dtype 'complex'"},
    {function() x:var(1, {ddof = 1}) end, "parry.var: unknown option 'ddof'"},
    {function() x:split(0) end, "parry.split: split_size must be positive"},
    {function() parry.set_num_threads(0) end, "parry.set_num_threads: n must be at least 1"},
    {function() local s = {} for i = 1, 65 do s[i] = 1 end parry.zeros(s) end, "parry.zeros: tensors have at most 64 dimensions, got 65"},
    {function() local t = parry.zeros(1) for _ = 1, 100 do t = t:unsqueeze(1) end end, "parry.unsqueeze: tensors have at most 64 dimensions"},
  }
  for i, case in ipairs(cases) do
    it("case " .. i .. ": " .. case[2], function()
      assert.error(case[1], case[2])
    end)
  end

  it("are raised at the caller's line", function()
    local line = debug.getinfo(1, "l").currentline + 1
    local msg = err_of(function() parry.zeros(-1) end)
    assert.equals(THIS .. ":" .. line .. ": parry.zeros: sizes must be non-negative, got {-1}", msg)
    line = debug.getinfo(1, "l").currentline + 1
    msg = err_of(function() return parry.ones(2) + parry.ones(3) end)
    assert.truthy(msg:find(THIS .. ":" .. line .. ": parry.add:", 1, true), msg)
  end)

  it("leave the state usable", function()
    for _ = 1, 100 do pcall(parry.matmul, parry.zeros(2, 3), parry.zeros(4, 5)) end
    assert.equals(6, parry.ones(2, 3):sum():item())
  end)
end)
