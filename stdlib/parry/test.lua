--- parry.test: a small busted-style spec runner, used by `parry test`.
--
--   describe("tensors", function()
--     before_each(function() parry.manual_seed(1) end)
--     it("adds", function()
--       assert.equals(3, (parry.tensor{1} + 2):item())
--       assert.near(0.3, 0.1 + 0.2, 1e-12)
--       assert.error(function() parry.zeros("x") end, "parry.zeros")
--     end)
--   end)
--
-- Spec files run in their own environment (globals still visible) that adds
-- describe, it, pending, before_each, after_each and an `assert` table that is
-- also callable like Lua's assert. `run(files)` prints each failure with its
-- file:line and ends with the line "N passed, N failed".

local M = {}

local function is_tensor(x)
  local ok, parry = pcall(require, "parry.core")
  return ok and parry.is_tensor(x)
end

local function show(v)
  if type(v) == "string" then return string.format("%q", v) end
  if type(v) == "table" and not getmetatable(v) then
    local parts = {}
    for i, x in ipairs(v) do parts[i] = show(x) end
    local n = #v
    for k, x in pairs(v) do
      if not (math.type(k) == "integer" and k >= 1 and k <= n) then
        parts[#parts + 1] = "[" .. show(k) .. "]=" .. show(x)
      end
    end
    return "{" .. table.concat(parts, ", ") .. "}"
  end
  return tostring(v)
end

local function fail(msg, level)
  error(msg, (level or 1) + 2)
end

-- Deep equality: tables by content, tensors by shape, dtype and values.
local function same(a, b)
  if a == b then return true end
  if is_tensor(a) and is_tensor(b) then
    if a:dtype() ~= b:dtype() or not same(a:shape(), b:shape()) then return false end
    return same(a:totable(), b:totable())
  end
  if type(a) ~= "table" or type(b) ~= "table" then return false end
  for k, v in pairs(a) do if not same(v, b[k]) then return false end end
  for k in pairs(b) do if a[k] == nil then return false end end
  return true
end

-- Largest absolute difference between numbers, tables of numbers or tensors
-- (nil when shapes differ); NaN only matches NaN.
local function max_diff(a, b)
  if is_tensor(a) then a = a:totable() end
  if is_tensor(b) then b = b:totable() end
  if type(a) == "number" and type(b) == "number" then
    if a ~= a or b ~= b then return (a ~= a and b ~= b) and 0 or math.huge end
    if a == b then return 0 end
    return math.abs(a - b)
  end
  if type(a) ~= "table" or type(b) ~= "table" or #a ~= #b then return nil end
  local worst = 0
  for i = 1, #a do
    local d = max_diff(a[i], b[i])
    if d == nil then return nil end
    if d > worst then worst = d end
  end
  return worst
end

local assert_mt = {
  __call = function(_, v, msg, ...)
    if not v then fail(msg or "assertion failed!") end
    return v, msg, ...
  end,
}
local A = setmetatable({}, assert_mt)
M.assert = A

function A.equals(expected, actual, msg)
  local ok = expected == actual
  if not ok and is_tensor(expected) and is_tensor(actual) then ok = same(expected, actual) end
  if not ok then
    fail((msg and msg .. "\n" or "") .. "expected: " .. show(expected) .. "\nactual:   " .. show(actual))
  end
end
A.equal = A.equals

function A.same(expected, actual, msg)
  if not same(expected, actual) then
    fail((msg and msg .. "\n" or "") .. "expected (deep): " .. show(expected) .. "\nactual:          " .. show(actual))
  end
end

function A.near(expected, actual, tolerance, msg)
  tolerance = tolerance or 1e-5
  local d = max_diff(expected, actual)
  if d == nil then
    fail((msg and msg .. "\n" or "") .. "shapes differ\nexpected: " .. show(expected) .. "\nactual:   " .. show(actual))
  elseif d > tolerance then
    fail((msg and msg .. "\n" or "") .. string.format("max difference %g exceeds tolerance %g", d, tolerance)
      .. "\nexpected: " .. show(expected) .. "\nactual:   " .. show(actual))
  end
end

--- assert.error(fn [, pattern]): fn must raise; the message must contain
-- `pattern` (plain text) when given. Returns the message.
function A.error(fn, pattern, msg)
  local ok, err = pcall(fn)
  if ok then fail((msg and msg .. "\n" or "") .. "expected an error, none was raised") end
  if pattern and not tostring(err):find(pattern, 1, true) then
    fail((msg and msg .. "\n" or "") .. "error message " .. show(tostring(err)) .. " does not contain " .. show(pattern))
  end
  return err
end

--- assert.has_error(fn [, expected]): busted's (luassert's) semantics — fn
-- must raise and, when `expected` is given, the message with its leading
-- "file:line: " removed must equal it. (parry's assert.error above matches a
-- substring instead; specs meant for both runners use has_error.)
function A.has_error(fn, expected, msg)
  local ok, err = pcall(fn)
  if ok then fail((msg and msg .. "\n" or "") .. "expected an error, none was raised") end
  if expected ~= nil then
    local actual = type(err) == "string" and err:gsub("^.-:%d+: ", "", 1) or err
    if tostring(actual) ~= tostring(expected) then
      fail((msg and msg .. "\n" or "") .. "expected error: " .. show(expected) .. "\nactual error:   " .. show(actual))
    end
  end
  return err
end
A.errors = A.has_error

--- assert.error_matches(fn, pattern): fn must raise a message matching the Lua pattern (as busted's).
function A.error_matches(fn, pattern, msg)
  local ok, err = pcall(fn)
  if ok then fail((msg and msg .. "\n" or "") .. "expected an error, none was raised") end
  if not tostring(err):find(pattern) then
    fail((msg and msg .. "\n" or "") .. "error message " .. show(tostring(err)) .. " does not match " .. show(pattern))
  end
  return err
end

function A.no_error(fn, msg)
  local ok, err = pcall(fn)
  if not ok then fail((msg and msg .. "\n" or "") .. "unexpected error: " .. tostring(err)) end
end

function A.is_true(v, msg) if v ~= true then fail(msg or ("expected true, got " .. show(v))) end end
function A.is_false(v, msg) if v ~= false then fail(msg or ("expected false, got " .. show(v))) end end
function A.truthy(v, msg) if not v then fail(msg or ("expected a truthy value, got " .. show(v))) end end
function A.falsy(v, msg) if v then fail(msg or ("expected a falsy value, got " .. show(v))) end end
function A.is_nil(v, msg) if v ~= nil then fail(msg or ("expected nil, got " .. show(v))) end end
function A.not_nil(v, msg) if v == nil then fail(msg or "expected a non-nil value") end end
A.is_not_nil, A.is_truthy, A.is_falsy, A.is_near, A.are_same, A.are_equal = A.not_nil, A.truthy, A.falsy, A.near, A.same, A.equals

-- busted's chained forms: assert.are.same, assert.are.equal, assert.is.truthy, assert.is_true ...
A.are = setmetatable({}, { __index = A })
A.is = setmetatable({ ["true"] = A.is_true, ["false"] = A.is_false, ["nil"] = A.is_nil }, { __index = A })
A.is_not = setmetatable({ ["nil"] = A.not_nil }, { __index = function(_, k)
  if k == "equal" or k == "equals" then
    return function(a, b, msg) if a == b then fail(msg or ("expected values to differ, both " .. show(a))) end end
  end
end })

-- A suite is a tree of blocks; a block has hooks, tests and child blocks.
local function new_block(name, parent)
  return { name = name, parent = parent, before = {}, after = {}, items = {} }
end

local function full_name(block, test_name)
  local parts = { test_name }
  while block and block.name do
    table.insert(parts, 1, block.name)
    block = block.parent
  end
  return table.concat(parts, " ")
end

local function collect_hooks(block, field)
  local chain = {}
  while block do
    table.insert(chain, 1, block)
    block = block.parent
  end
  local hooks = {}
  for _, b in ipairs(chain) do
    for _, h in ipairs(b[field]) do hooks[#hooks + 1] = h end
  end
  return hooks
end

-- The first traceback line that points into `file`, for failures raised
-- deeper than the spec itself.
local function spec_location(trace, file)
  for line in trace:gmatch("[^\n]+") do
    local loc = line:match("^%s*(.-:%d+):")
    if loc and loc:sub(1, #file) == file then return loc end
  end
  return nil
end

--- Runs the spec files; prints failures and the summary line. Returns the
-- number of failed tests (a file that fails to load counts as one).
function M.run(files)
  local passed, failed, pending = 0, 0, 0
  local failures = {}

  for _, file in ipairs(files) do
    local root = new_block(nil, nil)
    local current = root
    local env = setmetatable({}, { __index = _G })
    env.assert = A
    env.describe = function(name, fn)
      local block = new_block(name, current)
      current.items[#current.items + 1] = { block = block }
      local saved = current
      current = block
      fn()
      current = saved
    end
    env.it = function(name, fn) current.items[#current.items + 1] = { name = name, fn = fn } end
    env.pending = function(name) current.items[#current.items + 1] = { name = name } end
    env.before_each = function(fn) current.before[#current.before + 1] = fn end
    env.after_each = function(fn) current.after[#current.after + 1] = fn end

    local chunk, err = loadfile(file, "t", env)
    local ok = chunk ~= nil
    if ok then ok, err = xpcall(chunk, debug.traceback) end
    if not ok then
      failed = failed + 1
      failures[#failures + 1] = { name = file .. " (loading)", message = tostring(err) }
    else
      local function run_block(block)
        for _, item in ipairs(block.items) do
          if item.block then
            run_block(item.block)
          elseif not item.fn then
            pending = pending + 1
          else
            local trace
            local function handler(e)
              trace = debug.traceback(tostring(e), 2)
              return e
            end
            local good, e = xpcall(function()
              for _, h in ipairs(collect_hooks(block, "before")) do h() end
              item.fn()
            end, handler)
            for _, h in ipairs(collect_hooks(block, "after")) do
              local hok, he = pcall(h)
              if good and not hok then good, e, trace = false, he, tostring(he) end
            end
            if good then
              passed = passed + 1
              io.write(".")
            else
              failed = failed + 1
              io.write("F")
              local msg = tostring(e)
              local loc = spec_location(trace or "", file)
              if loc and msg:sub(1, #file) ~= file then msg = loc .. ": " .. msg end
              failures[#failures + 1] = { name = full_name(block, item.name), message = msg, trace = trace }
            end
            io.flush()
          end
        end
      end
      run_block(root)
    end
  end
  io.write("\n")

  for i, f in ipairs(failures) do
    io.write(string.format("\n%d) %s\n%s\n", i, f.name, f.message))
  end
  if #failures > 0 then io.write("\n") end
  local line = string.format("%d passed, %d failed", passed, failed)
  if pending > 0 then line = line .. string.format(", %d skipped", pending) end
  print(line)
  return failed
end

return M
