-- Generates the LuaCATS annotation files (stdlib/types/parry/*.lua) for the
-- Lua language server from docs/reference.md: one stub per documented
-- function and method, with its parameters as the reference lists them and
-- its description as hover text.
--
--   parry scripts/gen_types.lua [outdir=stdlib/types/parry] [reference=docs/reference.md]
--
-- Tests/lua/types_spec.lua regenerates them and fails when the committed
-- files differ, so the annotations and the reference cannot drift apart.
local out = arg[1] or "stdlib/types/parry"
local ref = arg[2] or "docs/reference.md"

-- method prefixes of the reference → annotation classes
local CLASSES = { Tensor = "parry.Tensor", Module = "parry.Module", Optimizer = "parry.Optimizer",
                  env = "parry.rl.Env", Space = "parry.rl.Space", Policy = "parry.rl.Policy",
                  Dataset = "parry.Dataset", Generator = "parry.Generator", Scheduler = "parry.Scheduler" }

-- Return types (---@return): the default of a section, then per-function
-- exceptions; false means "returns nothing", a missing entry in a section
-- without a default emits no @return. Tests/lua/types_spec.lua calls a probe
-- of each kind and checks what it returns against these.
local SECTION_RETURNS = {
  ["parry"] = "parry.Tensor", Tensor = "parry.Tensor", ["parry.nn"] = "parry.Module", ["parry.nn.functional"] = "parry.Tensor",
  ["parry.losses"] = "parry.Tensor", ["parry.models"] = "parry.Module", ["parry.attacks"] = "parry.Tensor",
  ["parry.optim"] = "parry.Optimizer", ["parry.optim.lr"] = "parry.Scheduler",
  ["parry.data.transforms"] = "fun(x: parry.Tensor): parry.Tensor", ["parry.robust"] = "table",
  ["parry.rl.attacks"] = "table", ["parry.rl.schedules"] = "fun(round: integer): table?", ["parry.rl.wrappers"] = "parry.rl.Env",
}
local RETURNS = {
  ["parry.manual_seed"] = false, ["parry.Generator"] = "parry.Generator", ["parry.with_generator"] = "any",
  ["parry.is_tensor"] = "boolean", ["parry.split"] = "parry.Tensor[]", ["Tensor:split"] = "parry.Tensor[]",
  ["parry.chunk"] = "parry.Tensor[]", ["Tensor:chunk"] = "parry.Tensor[]",
  ["parry.max"] = "parry.Tensor, parry.Tensor?", ["Tensor:max"] = "parry.Tensor, parry.Tensor?",
  ["parry.min"] = "parry.Tensor, parry.Tensor?", ["Tensor:min"] = "parry.Tensor, parry.Tensor?",
  ["Tensor:shape"] = "integer[]", ["Tensor:size"] = "integer|integer[]", ["Tensor:dim"] = "integer", ["Tensor:numel"] = "integer",
  ["Tensor:dtype"] = "string", ["Tensor:is_contiguous"] = "boolean", ["Tensor:item"] = "number", ["Tensor:totable"] = "table",
  ["Tensor:backward"] = false, ["Tensor:register_hook"] = "parry.HookHandle",
  ["parry.grad"] = "parry.Tensor[]", ["parry.no_grad"] = "any", ["parry.is_grad_enabled"] = "boolean", ["parry.gradcheck"] = "boolean, string",
  ["parry.save"] = false, ["parry.load"] = "table<string, parry.Tensor>, table", ["parry.set_num_threads"] = false,
  ["parry.get_num_threads"] = "integer", ["parry.memory_stats"] = "table", ["parry.blas_info"] = "table", ["parry.empty_cache"] = false, ["parry.clock"] = "number",
  ["parry.nn.is_module"] = "boolean", ["parry.nn.interpolate"] = "table<string, parry.Tensor>",
  ["parry.nn.from_torch_names"] = "table<string, parry.Tensor>", ["parry.nn.to_torch_names"] = "table<string, parry.Tensor>",
  ["parry.nn.interval_bounds"] = "parry.Tensor, parry.Tensor",
  ["Module:forward"] = "parry.Tensor", ["Module:parameters"] = "parry.Tensor[]", ["Module:named_parameters"] = "table",
  ["Module:named_buffers"] = "table", ["Module:num_parameters"] = "integer", ["Module:modules"] = "parry.Module[]",
  ["Module:named_modules"] = "table", ["Module:append"] = "parry.Module", ["Module:train"] = "parry.Module", ["Module:eval"] = "parry.Module",
  ["Module:is_training"] = "boolean", ["Module:zero_grad"] = false, ["Module:requires_grad_"] = "parry.Module",
  ["Module:freeze"] = "parry.Module", ["Module:unfreeze"] = "parry.Module", ["Module:is_frozen"] = "boolean",
  ["Module:state_dict"] = "table<string, parry.Tensor>", ["Module:load_state_dict"] = false,
  ["Module:features"] = "parry.Tensor|table<string, parry.Tensor>, parry.Tensor", ["Module:feature_names"] = "string[]",
  ["Module:register_forward_pre_hook"] = "parry.HookHandle", ["Module:register_forward_hook"] = "parry.HookHandle",
  ["Module:register_full_backward_hook"] = "parry.HookHandle", ["Module:type"] = "string", ["Module:get"] = "parry.Module",
  ["Module:clone"] = "parry.Module",
  ["parry.models.feature_layers"] = "string[]",
  ["parry.attacks.evaluate"] = "table", ["parry.attacks.report"] = "string", ["parry.attacks.autoattack"] = "parry.Tensor, table",
  ["Optimizer:param_groups"] = "table", ["Optimizer:set"] = false,
  ["parry.data.fashion_mnist"] = "parry.Dataset", ["parry.data.mnist"] = "parry.Dataset", ["parry.data.cifar10"] = "parry.Dataset",
  ["parry.data.cifar10c"] = "parry.Dataset", ["parry.data.synthetic_classification"] = "parry.Dataset",
  ["parry.data.TensorDataset"] = "parry.Dataset", ["parry.data.corrupt"] = "parry.Tensor", ["parry.data.idx"] = "parry.Tensor",
  ["parry.data.npy"] = "parry.Tensor", ["parry.data.point_cloud"] = "parry.Tensor", ["parry.data.image_signal"] = "parry.Tensor",
  ["parry.train.epoch"] = "number", ["parry.train.accuracy"] = "number",
  ["parry.robust.pgd_loss"] = "parry.Tensor", ["parry.robust.trades_loss"] = "parry.Tensor",
  ["parry.robust.adv_comp_sum_loss"] = "parry.Tensor", ["parry.robust.train"] = "number, table?",
  ["parry.robust.calibrate"] = "parry.Module, table",
  ["parry.json.encode"] = "string", ["parry.json.decode"] = "any", ["parry.table.format"] = "string",
  ["parry.table.csv"] = "string", ["parry.json.object"] = "table",
  ["parry.rl.make"] = "parry.rl.Env", ["parry.rl.vector"] = "parry.rl.Env", ["parry.rl.Box"] = "parry.rl.Space",
  ["parry.rl.Discrete"] = "parry.rl.Space", ["parry.rl.Env:extend"] = "table", ["parry.rl.register"] = false,
  ["parry.rl.registered"] = "string[]", ["parry.rl.Policy"] = "parry.rl.Policy", ["parry.rl.load"] = "parry.rl.Policy",
  ["env:reset"] = "parry.Tensor, table", ["env:step"] = "parry.Tensor|number, number, boolean, boolean, table",
  ["Policy:act"] = "parry.Tensor|number", ["Policy:value"] = "parry.Tensor", ["Policy:parameters"] = "parry.Tensor[]",
  ["Policy:normalize"] = "parry.Tensor", ["parry.rl.evaluate"] = "table", ["parry.rl.robustness"] = "table",
  ["parry.rl.attack_suite"] = "table", ["parry.rl.adapt"] = "table", ["parry.rl.ppo"] = "parry.rl.Policy, table",
  ["parry.rl.atla"] = "parry.rl.Policy, table, table", ["parry.rl.protected"] = "parry.rl.Policy[], table",
  ["parry.fl.partition"] = "parry.Dataset[]", ["parry.fl.simulate"] = "table", ["parry.fl.standalone"] = "table",
  ["parry.fl.aggregate"] = "parry.Tensor", ["parry.fl.pearson"] = "number",
  ["parry.lib.home"] = "string", ["parry.lib.installed"] = "table", ["parry.lib.parse_version"] = "table",
  ["parry.lib.compare"] = "integer", ["parry.lib.serialize"] = "string", ["parry.lib.parse_constraint"] = "fun(version: string): boolean",
  ["Space:sample"] = "parry.Tensor|integer", ["Space:contains"] = "boolean", ["env:stats"] = "table",
  ["parry.data.csv"] = "table", ["parry.table.read_csv"] = "table", ["parry.json.read"] = "any",
  ["parry.exp.run"] = "table", ["parry.exp.grid"] = "table", ["parry.exp.list"] = "table",
  ["parry.rl.history_series"] = "number[]",
  ["parry.checkpoint.save"] = false, ["parry.checkpoint.load"] = "table",
  ["parry.get_rng_state"] = "parry.Tensor", ["parry.set_rng_state"] = false,
  ["parry.dist.rank"] = "integer", ["parry.dist.size"] = "integer", ["parry.dist.is_main"] = "boolean",
  ["parry.dist.is_distributed"] = "boolean", ["parry.dist.barrier"] = false, ["parry.dist.allreduce"] = "parry.Tensor",
  ["parry.dist.reduce"] = "parry.Tensor?", ["parry.dist.broadcast"] = "any", ["parry.dist.allgather"] = "table",
  ["parry.dist.gather"] = "table?", ["parry.dist.send"] = false, ["parry.dist.recv"] = "any, integer",
  ["parry.dist.run"] = "any", ["parry.dist.abort"] = false, ["parry.dist.data_parallel"] = "table",
  ["parry.plot.figure"] = "table", ["parry.plot.ticks"] = "number[], number", ["parry.progress.new"] = "table",
}

-- Classes named only in return types, with what a script uses of them.
local RETURN_CLASSES = {
  { "parry.HookHandle", { "remove fun(self: parry.HookHandle) unregisters the hook" } },
  { "parry.Dataset", { "x parry.Tensor", "y parry.Tensor", "batches fun(self: parry.Dataset, size: integer, opts?: table): fun(): parry.Tensor, parry.Tensor" } },
  { "parry.Scheduler", { "step fun(self: parry.Scheduler)", "get_lr fun(self: parry.Scheduler): number" } },
  { "parry.Generator", {} },
}

--- The return annotation of `name` in section `section`: a type string, false (none) or nil (unknown).
local function returns(section, name)
  local r = RETURNS[name]
  if r ~= nil then return r end
  return SECTION_RETURNS[section]
end

-- "a, b [, {x=, y=}]" → { {name=, optional=, vararg=}, ... } (top-level commas only)
local function params(list)
  local parts, depth, cur, optional = {}, 0, {}, false
  local function flush()
    local text = table.concat(cur):gsub("^%s+", ""):gsub("%s+$", "")
    cur = {}
    if text == "" then return end
    local p = { optional = optional }
    if text:find("^%.%.%.") or text:find("%.%.%.$") then p.vararg = true end
    local word = text:match("^{") and "opts" or text:match("^([%a_][%w_]*)")
    if not word and p.vararg then word = "..." end
    if word then p.name = word; parts[#parts + 1] = p end
  end
  local i = 1
  while i <= #list do
    local c = list:sub(i, i)
    if c == "[" and depth == 0 then flush(); optional = true
    elseif c == "]" and depth == 0 then flush()
    elseif c == "{" or c == "(" then depth = depth + 1; cur[#cur + 1] = c
    elseif c == "}" or c == ")" then depth = depth - 1; cur[#cur + 1] = c
    elseif c == "," and depth == 0 then flush()
    else cur[#cur + 1] = c end
    i = i + 1
  end
  flush()
  local seen, uniq = {}, {}
  for _, p in ipairs(parts) do
    if p.vararg then p.name = "..." end
    if not seen[p.name] then seen[p.name] = true; uniq[#uniq + 1] = p end
  end
  return uniq
end

-- the reference's entries: { section=, title=, text=, sigs = {{name=, params=}} }
local sections, current, entry = {}, nil, nil
for line in io.lines(ref) do
  local mod = line:match("^## `([%w_%.:]+)`")
  local head = line:match("^### (.*)$")
  if mod then
    current = { name = mod, entries = {} }
    sections[#sections + 1] = current
    entry = nil
  elseif head and current then
    entry = { title = head, text = {}, sigs = {} }
    for name, args in head:gmatch("`([%w_%.:]+)(%b())") do
      entry.sigs[#entry.sigs + 1] = { name = name, params = params(args:sub(2, -2)) }
    end
    for name, args in head:gmatch("`([%w_%.:]+)(%b{})") do
      entry.sigs[#entry.sigs + 1] = { name = name, params = { { name = "opts" } } }
    end
    current.entries[#current.entries + 1] = entry
  elseif entry and not line:match("^%s*$") and not line:match("^    ") and #entry.text < 3 then
    entry.text[#entry.text + 1] = line
  end
end

local function stub(sig, text, lines, declared, section)
  local owner, method = sig.name:match("^([%w_]+):([%w_]+)$")
  for _, t in ipairs(text) do lines[#lines + 1] = "--- " .. t end
  local names = {}
  for _, p in ipairs(sig.params) do
    if p.vararg then
      lines[#lines + 1] = "---@param ... any"
    else
      lines[#lines + 1] = ("---@param %s%s %s"):format(p.name, p.optional and "?" or "", p.name == "opts" and "table" or "any")
    end
    names[#names + 1] = p.name
  end
  local r = returns(section, sig.name)
  if r then lines[#lines + 1] = "---@return " .. r end
  if owner then
    local class = CLASSES[owner] or ("parry." .. owner)
    if not declared[class] then declared[class] = true; table.insert(lines, #lines - #text - #sig.params - (r and 1 or 0) + 1, "") end
    lines[#lines + 1] = ("function %s:%s(%s) end"):format(owner, method, table.concat(names, ", "))
  else
    lines[#lines + 1] = ("function %s(%s) end"):format(sig.name, table.concat(names, ", "))
  end
  lines[#lines + 1] = ""
end

os.execute("mkdir -p '" .. out .. "'")
local written = {}
for _, sec in ipairs(sections) do
  local lines = { "---@meta", "-- Generated by scripts/gen_types.lua from docs/reference.md; do not edit.", "" }
  -- tables and classes this section uses
  local tables, owners = {}, {}
  for _, e in ipairs(sec.entries) do
    for _, sig in ipairs(e.sigs) do
      local owner = sig.name:match("^([%w_]+):")
      if owner then owners[owner] = true
      else
        local prefix = sig.name:match("^(.*)%.[%w_]+$")
        local acc = nil
        for part in (prefix or ""):gmatch("[^%.]+") do
          acc = acc and (acc .. "." .. part) or part
          tables[acc] = true
        end
      end
    end
  end
  local tnames = {}
  for t in pairs(tables) do tnames[#tnames + 1] = t end
  table.sort(tnames)
  for _, t in ipairs(tnames) do lines[#lines + 1] = (t:find("%.") and "" or "") .. t .. " = " .. t .. " or {}" end
  local onames = {}
  for o in pairs(owners) do onames[#onames + 1] = o end
  table.sort(onames)
  for _, o in ipairs(onames) do
    local class = CLASSES[o] or ("parry." .. o)
    lines[#lines + 1] = ("---@class %s"):format(class)
    if o == "Tensor" then
      for _, op in ipairs{ "add", "sub", "mul", "div", "pow", "mod" } do
        lines[#lines + 1] = ("---@operator %s(parry.Tensor|number): parry.Tensor"):format(op)
      end
      lines[#lines + 1] = "---@operator unm: parry.Tensor"
    end
    lines[#lines + 1] = ("local %s = {}"):format(o)
  end
  if #tnames > 0 or #onames > 0 then lines[#lines + 1] = "" end
  -- classes that only appear as return types, declared once (in parry.lua)
  if sec.name == "parry" then
    for _, c in ipairs(RETURN_CLASSES) do
      lines[#lines + 1] = "---@class " .. c[1]
      for _, f in ipairs(c[2]) do lines[#lines + 1] = "---@field " .. f end
    end
    lines[#lines + 1] = ""
  end
  local declared = {}
  for _, e in ipairs(sec.entries) do
    for _, sig in ipairs(e.sigs) do stub(sig, e.text, lines, declared, sec.name) end
  end
  local file = out .. "/" .. sec.name:gsub("[:%.]", "_") .. ".lua"
  local f = assert(io.open(file, "w"))
  f:write((table.concat(lines, "\n"):gsub("\n\n\n+", "\n\n")))
  f:close()
  written[#written + 1] = file
end
print(("wrote %d files to %s"):format(#written, out))
