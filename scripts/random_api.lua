-- Random API programs (issue 19, part 3): random sequences of tensor,
-- autograd, nn and attack calls — random shapes (including empty and
-- broadcastable ones), both dtypes, views, in-place ops, requires_grad,
-- backward — each made through pcall. A run fails when the process would
-- (it cannot here: a crash ends the run), when an error message does not
-- start with the called function's name right after its position, or when an
-- error-free elementwise result differs from a slow Lua reference.
--
--   parry scripts/random_api.lua [calls=100000] [seed=1]
--   local r = dofile("scripts/random_api.lua").run{calls = 3000, seed = 1}   -- {calls=, errors=, checked=, failures={...}}
local parry = require("parry")

local M = {}

-- A small deterministic generator, independent of parry's (so a failure reproduces from the seed alone).
local function rng(seed)
  local s = seed * 2654435761 % 4294967296
  local r = {}
  function r.int(lo, hi)
    s = (s * 1103515245 + 12345) % 2147483648
    return lo + s % (hi - lo + 1)
  end
  function r.pick(t) return t[r.int(1, #t)] end
  function r.chance(p) return r.int(1, 1000) <= p * 1000 end
  return r
end

-- flat values and shape of a tensor
local function flat(t)
  local out = {}
  local function walk(v) if type(v) == "table" then for _, x in ipairs(v) do walk(x) end else out[#out + 1] = v end end
  walk(t:totable())
  return out
end

-- broadcast two shapes (nil when they do not broadcast)
local function broadcast(a, b)
  local n = math.max(#a, #b)
  local out = {}
  for i = 1, n do
    local x, y = a[#a - n + i] or 1, b[#b - n + i] or 1
    if x ~= y and x ~= 1 and y ~= 1 then return nil end
    out[i] = (x == 1) and y or x
  end
  return out
end

-- index of a broadcast position in an operand of shape `s`
local function source_index(pos, out_shape, s)
  local idx, stride = 0, 1
  local n = #out_shape
  for d = #s, 1, -1 do
    local od = n - #s + d
    local p = s[d] == 1 and 0 or pos[od]
    idx = idx + p * stride
    stride = stride * s[d]
  end
  return idx + 1
end

local function each_position(shape, f)
  local total = 1
  for _, n in ipairs(shape) do total = total * n end
  local pos = {}
  for d = 1, #shape do pos[d] = 0 end
  for _ = 1, total do
    f(pos)
    for d = #shape, 1, -1 do
      pos[d] = pos[d] + 1
      if pos[d] < shape[d] then break end
      pos[d] = 0
    end
  end
end

local function close(a, b)
  if a ~= a and b ~= b then return true end            -- both NaN
  if a == b then return true end                       -- infinities
  return math.abs(a - b) <= 1e-4 * math.max(1, math.abs(a), math.abs(b))
end

local BINARY = {
  add = function(x, y) return x + y end, sub = function(x, y) return x - y end,
  mul = function(x, y) return x * y end, maximum = math.max, minimum = math.min,
}
local UNARY = {
  neg = function(x) return -x end, abs = math.abs, relu = function(x) return x > 0 and x or 0 end,
  exp = math.exp, tanh = function(x) return (math.exp(2 * x) - 1) / (math.exp(2 * x) + 1) end,
  sign = function(x) return x > 0 and 1 or (x < 0 and -1 or 0) end,
}

function M.run(opts)
  opts = opts or {}
  local calls, seed = opts.calls or 100000, opts.seed or 1
  local r = rng(seed)
  parry.manual_seed(seed)
  local pool = {}
  local failures, errors, checked = {}, 0, 0

  local function fail(what) if #failures < 20 then failures[#failures + 1] = what end end

  local function random_shape()
    local nd = r.int(0, 3)
    local s = {}
    for d = 1, nd do s[d] = r.pick{0, 1, 1, 2, 3, 4} end
    return s
  end

  local function new_tensor()
    local s = random_shape()
    local t
    if r.chance(0.2) then
      t = parry.randint(-3, 3, s)
    else
      t = parry.randn(s)
      if r.chance(0.3) then t:requires_grad_() end
    end
    return t
  end

  local function any_tensor()
    if #pool == 0 or r.chance(0.3) then
      local t = new_tensor()
      if #pool < 32 then pool[#pool + 1] = t else pool[r.int(1, #pool)] = t end
      return t
    end
    return pool[r.int(1, #pool)]
  end

  local function scalar_or_tensor()
    if r.chance(0.25) then return r.pick{0, 1, -2.5, 0.5, 3} end
    return any_tensor()
  end

  -- Calls fn through pcall: an error must name `name` right after its position.
  local function call(name, fn, ...)
    local ok, res = pcall(fn, ...)
    if not ok then
      errors = errors + 1
      local msg = tostring(res)
      local body = msg:gsub("^[^:]*:%d+: ", "", 1)
      -- a method shares its op with the function form: `t:reshape` may report as parry.reshape
      local alias = name:gsub("^Tensor:", "parry.")
      if body:sub(1, #name) ~= name and body:sub(1, #alias) ~= alias then fail(name .. " raised: " .. msg) end
      return nil
    end
    return res
  end

  local function check_binary(op, a, b, res)
    if not parry.is_tensor(res) then return end
    local sa = parry.is_tensor(a) and a:shape() or {}
    local sb = parry.is_tensor(b) and b:shape() or {}
    if (parry.is_tensor(a) and a:dtype() ~= "float32") or (parry.is_tensor(b) and b:dtype() ~= "float32") then return end
    local shape = broadcast(sa, sb)
    if not shape then fail(op .. " accepted shapes that do not broadcast"); return end
    local ra = parry.is_tensor(a) and flat(a:detach()) or nil
    local rb = parry.is_tensor(b) and flat(b:detach()) or nil
    local out = flat(res:detach())
    local k = 0
    each_position(shape, function(pos)
      k = k + 1
      local x = ra and ra[source_index(pos, shape, sa)] or a
      local y = rb and rb[source_index(pos, shape, sb)] or b
      if not close(out[k], BINARY[op](x, y)) then fail(("%s: element %d is %s, expected %s"):format(op, k, out[k], BINARY[op](x, y))) end
    end)
    checked = checked + 1
  end

  local steps = {
    function()   -- binary elementwise, function or method form, with a reference check
      local op = r.pick{"add", "sub", "mul", "maximum", "minimum"}
      local a, b = any_tensor(), scalar_or_tensor()
      if r.chance(0.5) then
        check_binary(op, a, b, call("parry." .. op, parry[op], a, b))
      else
        check_binary(op, a, b, call("Tensor:" .. op, a[op], a, b))
      end
    end,
    function()   -- unary elementwise against Lua
      local op = r.pick{"neg", "abs", "relu", "exp", "tanh", "sign"}
      local a = any_tensor()
      local res = call("Tensor:" .. op, a[op], a)
      if res and a:dtype() == "float32" then
        local x, y = flat(a:detach()), flat(res:detach())
        for i = 1, #x do
          if not close(y[i], UNARY[op](x[i])) then fail(("%s: element %d is %s, expected %s"):format(op, i, y[i], UNARY[op](x[i]))); break end
        end
        checked = checked + 1
      end
    end,
    function()   -- reductions with random (possibly invalid) dims
      local a = any_tensor()
      local op = r.pick{"sum", "mean", "max", "min", "argmax", "norm", "var"}
      local dim = r.int(-4, 4)
      if r.chance(0.3) then call("Tensor:" .. op, a[op], a) else call("Tensor:" .. op, a[op], a, dim) end
    end,
    function()   -- views
      local a = any_tensor()
      local n = a:dim()
      local which = r.int(1, 7)
      if which == 1 then call("Tensor:transpose", a.transpose, a, r.int(-3, 3), r.int(-3, 3))
      elseif which == 2 then call("Tensor:narrow", a.narrow, a, r.int(-2, 3), r.int(-1, 3), r.int(-1, 3))
      elseif which == 3 then call("Tensor:select", a.select, a, r.int(-2, 3), r.int(-2, 4))
      elseif which == 4 then call("Tensor:reshape", a.reshape, a, r.int(-1, 4), r.int(1, 3))
      elseif which == 5 then call("Tensor:expand", a.expand, a, r.int(-1, 4), r.int(1, 4))
      elseif which == 6 then call("Tensor:unsqueeze", a.unsqueeze, a, r.int(-n - 2, n + 2))
      else call("Tensor:flatten", a.flatten, a) end
    end,
    function()   -- in-place ops on leaves, views and graph tensors
      local a = any_tensor()
      local which = r.int(1, 5)
      if which == 1 then call("Tensor:add_", a.add_, a, scalar_or_tensor())
      elseif which == 2 then call("Tensor:mul_", a.mul_, a, r.pick{2, 0.5, -1})
      elseif which == 3 then call("Tensor:zero_", a.zero_, a)
      elseif which == 4 then call("Tensor:clamp_", a.clamp_, a, -1, 1)
      else call("Tensor:fill_", a.fill_, a, r.pick{0, 1.5, -2}) end
    end,
    function()   -- autograd: a short chain, then backward (sum for non-scalars)
      local a = any_tensor()
      local y = call("Tensor:mul", a.mul, a, scalar_or_tensor())
      if y then y = call("Tensor:tanh", y.tanh, y) end
      if y then
        local s = call("Tensor:sum", y.sum, y)
        if s then call("Tensor:backward", s.backward, s) end
      end
      if r.chance(0.2) and parry.is_tensor(a) then call("parry.grad", parry.grad, a:sum(), a) end
    end,
    function()   -- matmul with random shapes
      call("parry.matmul", parry.matmul, any_tensor(), any_tensor())
    end,
    function()   -- indexing and joins
      local a, b = any_tensor(), any_tensor()
      local which = r.int(1, 3)
      if which == 1 then call("parry.cat", parry.cat, {a, b}, r.int(-2, 3))
      elseif which == 2 then call("parry.stack", parry.stack, {a, b}, r.int(-2, 3))
      else call("Tensor:index_select", a.index_select, a, r.int(-2, 3), parry.randint(1, 3, {2})) end
    end,
    function()   -- nn: a Linear on whatever comes
      local lin = parry.nn.Linear(r.int(1, 3), r.int(1, 3))
      call("Module:forward", lin.forward, lin, any_tensor())
    end,
    function()   -- losses with random logits and labels
      call("parry.losses.cross_entropy", parry.losses.cross_entropy, any_tensor(), parry.randint(r.int(0, 2), 3, {r.int(0, 3)}))
    end,
    function()   -- an attack with random budgets on a tiny model
      local net = parry.nn.Linear(4, 3)
      local x, y = parry.rand(2, 4), parry.tensor({1, 3})
      call("parry.attacks.fgsm", parry.attacks.fgsm, net, r.chance(0.8) and x or any_tensor(), y, {eps = r.pick{0, 0.1, -1, 1 / 0}})
    end,
  }

  for i = 1, calls do
    steps[r.int(1, #steps)]()
    if i % 500 == 0 and #pool > 8 then for _ = 1, 4 do table.remove(pool, r.int(1, #pool)) end end
  end
  return { calls = calls, errors = errors, checked = checked, failures = failures }
end

if arg and arg[0] and arg[0]:match("random_api%.lua$") then
  local calls, seed = tonumber(arg[1]) or 100000, tonumber(arg[2]) or 1
  local t0 = parry.clock()
  local res = M.run{calls = calls, seed = seed}
  print(("%d steps (seed %d) in %.1f s: %d errors raised, %d results checked against Lua, %d failures"):format(
    res.calls, seed, parry.clock() - t0, res.errors, res.checked, #res.failures))
  for _, f in ipairs(res.failures) do print("  " .. f) end
  os.exit(#res.failures == 0 and 0 or 1)
end

return M
