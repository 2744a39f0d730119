-- The LuaCATS annotations (stdlib/types/parry) for the Lua language server
-- are generated from docs/reference.md (scripts/gen_types.lua): they must be
-- up to date, and cover every public function the reference documents.
local support = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "support.lua")
local PARRY, sh, q = support.PARRY, support.sh, support.q
local help = require("parry.help")
local parry = require("parry")

local function read(path)
  local f = io.open(path, "rb")
  if not f then return nil end
  local s = f:read("a")
  f:close()
  return s
end

describe("the LuaCATS annotations", function()
  local root = PARRY:match("^(.*)/%.build[^/]*/")
  it("are what scripts/gen_types.lua makes from the reference", function()
    local dir = os.tmpname()
    os.remove(dir)
    local out, code = sh("cd " .. q(root) .. " && " .. q(PARRY) .. " scripts/gen_types.lua " .. q(dir))
    assert.equals(0, code, out)
    local files = sh("ls " .. q(dir))
    local n = 0
    for name in files:gmatch("[^\n]+") do
      n = n + 1
      local fresh, committed = read(dir .. "/" .. name), read(root .. "/stdlib/types/parry/" .. name)
      assert.truthy(committed, name .. " is not committed (run: parry scripts/gen_types.lua)")
      assert.truthy(fresh == committed, name .. " is out of date with docs/reference.md (run: parry scripts/gen_types.lua)")
    end
    os.execute("rm -rf " .. q(dir))
    assert.truthy(n > 20, "expected a file per reference section, got " .. n)
  end)

  it("declare every public function with the reference's parameters", function()
    local all = ""
    for name in sh("ls " .. q(root .. "/stdlib/types/parry")):gmatch("[^\n]+") do
      all = all .. read(root .. "/stdlib/types/parry/" .. name)
    end
    local missing, n = {}, 0
    for _, g in ipairs(help.groups()) do
      for name, fn in pairs(g[2]) do
        if type(fn) == "function" and type(name) == "string" and not name:match("^_") then
          local sep = (g[1] == "Tensor" or g[1] == "Module") and ":" or "."
          local full = g[1] .. sep .. name
          n = n + 1
          local documented = false
          for _, qualified in ipairs(help.name_of(fn)) do
            if all:find("function " .. qualified .. "(", 1, true) then documented = true end
          end
          if not documented and not all:find("function " .. full .. "(", 1, true) then missing[#missing + 1] = full end
        end
      end
    end
    table.sort(missing)
    assert.equals(0, #missing, "not annotated: " .. table.concat(missing, ", "))
    assert.truthy(n > 250)
    -- parameters as the reference gives them
    assert.truthy(all:find("---@param id any\n---@param opts? table\n---@return parry.rl.Env\nfunction parry.rl.make(id, opts) end", 1, true))
    assert.truthy(all:find("---@operator add(parry.Tensor|number): parry.Tensor", 1, true))
  end)

  it("give return types that calls actually return", function()
    -- name -> the first ---@return type above its stub (none: the stub has no @return)
    local declared = {}
    for name in sh("ls " .. q(root .. "/stdlib/types/parry")):gmatch("[^\n]+") do
      local ret
      for line in io.lines(root .. "/stdlib/types/parry/" .. name) do
        local r = line:match("^%-%-%-@return (.*)$")
        if r then ret = r end
        local fn = line:match("^function ([%w_%.:]+)%(")
        if fn then declared[fn] = ret; ret = nil end
      end
    end
    local nn = parry.nn
    local m, x = nn.Linear(2, 2), parry.ones(2):requires_grad_()
    local opt = parry.optim.SGD(m:parameters(), {lr = 0.1})
    local ds = parry.data.TensorDataset(parry.randn(4, 2), parry.tensor({1, 2, 1, 2}))
    local probes = {
      ["parry.zeros"] = function() return parry.zeros(2) end,
      ["parry.manual_seed"] = function() return parry.manual_seed(1) end,
      ["parry.is_tensor"] = function() return parry.is_tensor(x) end,
      ["parry.grad"] = function() return parry.grad((x * 2):sum(), x) end,
      ["parry.load"] = function() local f = os.tmpname(); parry.save(parry.ones(1), f); local t = parry.load(f); os.remove(f); return t end,
      ["parry.clock"] = function() return parry.clock() end,
      ["Tensor:sum"] = function() return x:sum() end,
      ["Tensor:shape"] = function() return x:shape() end,
      ["Tensor:item"] = function() return x:sum():item() end,
      ["Tensor:split"] = function() return parry.randn(4):split(2) end,
      ["Tensor:backward"] = function() return (x * 2):sum():backward() end,
      ["Tensor:register_hook"] = function() local h = (x * 1):register_hook(function() end); return h end,
      ["parry.nn.Linear"] = function() return nn.Linear(2, 2) end,
      ["parry.nn.is_module"] = function() return nn.is_module(m) end,
      ["Module:forward"] = function() return m:forward(parry.ones(1, 2)) end,
      ["Module:train"] = function() return m:train() end,
      ["Module:zero_grad"] = function() return m:zero_grad() end,
      ["Module:state_dict"] = function() return m:state_dict() end,
      ["Module:num_parameters"] = function() return m:num_parameters() end,
      ["Module:type"] = function() return m:type() end,
      ["parry.nn.functional.normalize"] = function() return nn.functional.normalize(parry.ones(1, 2)) end,
      ["parry.losses.mse"] = function() return parry.losses.mse(parry.ones(2), parry.zeros(2)) end,
      ["parry.models.mlp"] = function() return parry.models.mlp{4, 2} end,
      ["parry.models.feature_layers"] = function() return parry.models.feature_layers(parry.models.small_cnn()) end,
      ["parry.attacks.fgsm"] = function() return parry.attacks.fgsm(m, parry.rand(2, 2), parry.tensor({1, 2}), {eps = 0.1}) end,
      ["parry.optim.SGD"] = function() return opt end,
      ["parry.optim.lr.step"] = function() return parry.optim.lr.step(opt, {step_size = 1}) end,
      ["parry.data.TensorDataset"] = function() return ds end,
      ["parry.data.transforms.hflip"] = function() return parry.data.transforms.hflip() end,
      ["parry.train.accuracy"] = function() return require("parry.train").accuracy(m, ds) end,
      ["parry.robust.pgd_loss"] = function() return parry.robust.pgd_loss(m, parry.rand(2, 2), parry.tensor({1, 2}), {eps = 0.1, steps = 1}) end,
      ["parry.robust.retrieval"] = function() return parry.robust.retrieval(parry.randn(3, 2), parry.randn(3, 2)) end,
      ["parry.json.encode"] = function() return parry.json.encode({1}) end,
      ["parry.rl.make"] = function() return parry.rl.make("CartPole-v1") end,
      ["parry.rl.registered"] = function() return parry.rl.registered() end,
      ["parry.rl.attacks.random"] = function() return parry.rl.attacks.random{eps = 0.1} end,
      ["parry.rl.schedules.halves"] = function() return parry.rl.schedules.halves(parry.rl.attacks.random{eps = 0.1}) end,
      ["parry.fl.pearson"] = function() return parry.fl.pearson({1, 2, 3}, {1, 3, 2}) end,
      ["parry.plot.ticks"] = function() return parry.plot.ticks(0, 1) end,
      ["parry.lib.compare"] = function() return parry.lib.compare("1.0", "1.1") end,
      ["parry.lib.parse_constraint"] = function() return parry.lib.parse_constraint(">=1.0") end,
      ["Space:contains"] = function() return parry.rl.Discrete(3):contains(1) end,
    }
    local function kind(v)
      if parry.is_tensor(v) then return "parry.Tensor" end
      if nn.is_module(v) then return "parry.Module" end
      return type(v)
    end
    local accepts = {
      ["parry.Tensor"] = {["parry.Tensor"] = true}, ["parry.Module"] = {["parry.Module"] = true},
      integer = {number = true}, number = {number = true}, boolean = {boolean = true}, string = {string = true},
      ["parry.Optimizer"] = {userdata = true, table = true}, ["parry.Scheduler"] = {userdata = true, table = true},
      ["parry.Dataset"] = {table = true}, ["parry.HookHandle"] = {table = true}, ["parry.rl.Env"] = {table = true},
    }
    for name, probe in pairs(probes) do
      local results = table.pack(probe())
      local first = (declared[name] or ""):match("^([^,]+)") or ""
      first = first:gsub("%s+$", "")
      if declared[name] == nil then
        assert.truthy(results.n == 0 or results[1] == nil, name .. " returns a value but declares none")
      elseif first:match("%[%]$") or first:match("^table") then
        assert.equals("table", kind(results[1]), name .. " declares " .. first)
      elseif first:match("^fun%(") then
        assert.equals("function", kind(results[1]), name .. " declares " .. first)
      else
        local ok = accepts[first] or {}
        assert.truthy(ok[kind(results[1])], name .. " declares " .. first .. " but returned a " .. kind(results[1]))
      end
    end
  end)
end)
