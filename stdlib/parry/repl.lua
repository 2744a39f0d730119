--- parry.repl: the REPL's Lua side. The host (Sources/ParryLua/REPL.swift)
-- reads lines (libedit on a terminal, plain reads otherwise) and hands each
-- one to `feed`; completion asks `complete`. Pure Lua, so it is testable and
-- usable from any embedding.
--
--   > x = parry.randn(2, 3)        -- statements print nothing
--   > x:sum()                      -- expressions print their values; `_` keeps the last
--   > x:sum();                     -- a trailing `;` suppresses printing
--   > ?parry.randn                 -- same as help(parry.randn)
--   > :time                        -- toggle wall-time printing
local M = {}

M.show_time = false
M.max_depth = 2        -- table nesting printed before "{...}"
M.max_items = 30       -- entries per table before "..."
local pending = nil    -- an incomplete chunk waiting for more lines
local clock = os.clock
pcall(function() clock = require("parry.core").clock end)

local function is_identifier(s) return type(s) == "string" and s:match("^[%a_][%w_]*$") ~= nil end

local function sorted_keys(t)
  local keys = {}
  for k in pairs(t) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b)
    local ta, tb = type(a), type(b)
    if ta ~= tb then return ta == "number" end
    if ta == "number" or ta == "string" then return a < b end
    return tostring(a) < tostring(b)
  end)
  return keys
end

--- format(v [, depth]): the REPL's rendering of a value: strings quoted,
-- tensors and modules through their __tostring, tables as an indented tree
-- limited to `max_depth` levels and `max_items` entries per level.
function M.format(v, depth, indent, seen)
  depth, indent, seen = depth or M.max_depth, indent or "", seen or {}
  local t = type(v)
  if t == "string" then return string.format("%q", v):gsub("\\\n", "\\n") end
  if t ~= "table" then return tostring(v) end
  local mt = getmetatable(v)
  if mt and mt.__tostring then return tostring(v) end
  if seen[v] then return "<cycle>" end
  if next(v) == nil then return "{}" end
  if depth <= 0 then return "{...}" end
  seen[v] = true
  local keys = sorted_keys(v)
  local n = #v
  local inner = indent .. "  "
  local parts, short = {}, true
  for i, k in ipairs(keys) do
    if i > M.max_items then parts[#parts + 1] = "... (" .. (#keys - M.max_items) .. " more)"; break end
    local val = M.format(v[k], depth - 1, inner, seen)
    local entry
    if math.type(k) == "integer" and k >= 1 and k <= n then
      entry = val
    elseif is_identifier(k) then
      entry = k .. " = " .. val
    else
      entry = "[" .. M.format(k, 0, inner, seen) .. "] = " .. val
    end
    if entry:find("\n") or #entry > 40 then short = false end
    parts[#parts + 1] = entry
  end
  seen[v] = nil
  local one = "{" .. table.concat(parts, ", ") .. "}"
  if short and #one <= 80 then return one end
  return "{\n" .. inner .. table.concat(parts, ",\n" .. inner) .. "\n" .. indent .. "}"
end

local function traceback(msg)
  if type(msg) ~= "string" then msg = M.format(msg) end
  local tb = debug.traceback(msg, 2)
  -- Drop the REPL's own frames: everything from the xpcall that ran the chunk.
  local cut = tb:find("\n%s*%[C%]: in function 'xpcall'")
  if cut then tb = tb:sub(1, cut - 1) end
  return tb
end

--- feed(line [, out [, err]]) -> "ok" | "more" | "error". Runs a line (or
-- completes a pending multi-line chunk); results go to `out` (default print),
-- error messages and tracebacks to `err` (default stderr).
function M.feed(line, out, err_out)
  out = out or print
  err_out = err_out or function(s) io.stderr:write(s, "\n") end
  if pending == nil then
    local cmd = line:match("^%s*:(%a+)%s*$")
    if cmd == "time" then
      M.show_time = not M.show_time
      out("wall-time printing " .. (M.show_time and "on" or "off"))
      return "ok"
    elseif cmd then
      err_out("unknown command :" .. cmd .. " (available: :time)")
      return "error"
    end
    local q = line:match("^%s*%?%s*(.-)%s*$")
    if q then line = q == "" and "help()" or ("help(" .. q .. ")") end
    local e = line:match("^%s*=(.*)$")   -- Lua 5.1's `=expr`
    if e then line = "return " .. e end
  end
  local src = pending and (pending .. "\n" .. line) or line
  local quiet = src:match(";%s*$") ~= nil
  local fn, err = load("return " .. src, "=stdin")
  -- An expression is evaluated as the argument of table.pack rather than
  -- returned (a tail call would drop stdin's frame, and with it the line an
  -- error in the call is positioned at).
  local packed = fn and load("return (...)(" .. src:gsub(";%s*$", "") .. "\n)", "=stdin")
  if packed then fn = packed end
  if not fn then fn, err = load(src, "=stdin") end
  if not fn then
    if err:match("<eof>$") then pending = src; return "more" end
    pending = nil
    err_out(err)
    return "error"
  end
  pending = nil
  local t0 = clock()
  local r = table.pack(xpcall(fn, traceback, table.pack))
  if packed and r[1] then r = table.pack(true, table.unpack(r[2], 1, r[2].n)) end
  local dt = clock() - t0
  if not r[1] then
    err_out(tostring(r[2]))
    if M.show_time then out(string.format("(%.3f s)", dt)) end
    return "error"
  end
  if r.n > 1 then
    _G._ = r[2]
    if not quiet then
      local parts = {}
      for i = 2, r.n do parts[#parts + 1] = M.format(r[i]) end
      out(table.concat(parts, "\t"))
    end
  end
  if M.show_time then out(string.format("(%.3f s)", dt)) end
  return "ok"
end

--- pending(): true while a multi-line chunk is incomplete; reset() drops it.
function M.is_pending() return pending ~= nil end
function M.reset() pending = nil end

-- Keys reachable from a value: table fields, then methods through metatables
-- (tables used as __index, parry's method tables for tensors and modules).
local function members(v, methods_only)
  local out, seen = {}, {}
  local function add(k, val)
    if is_identifier(k) and not seen[k] and not k:match("^__") then
      if not methods_only or type(val) == "function" then seen[k] = true; out[#out + 1] = k end
    end
  end
  local t = v
  for _ = 1, 5 do
    if type(t) == "table" then for k, val in pairs(t) do add(k, val) end end
    local mt = getmetatable(t)
    if type(mt) ~= "table" then break end
    if type(mt.methods) == "table" then for k, val in pairs(mt.methods) do add(k, val) end end
    if mt.__name == "parry.Tensor" then
      local ok, parry = pcall(require, "parry")
      if ok and type(parry.Tensor) == "table" then for k, val in pairs(parry.Tensor) do add(k, val) end end
    end
    if type(mt.__index) ~= "table" then break end
    t = mt.__index
  end
  table.sort(out)
  return out
end

-- Module names `require` can find: loaded and preloaded ones, and files
-- named on package.path (parry's stdlib included).
local function module_names()
  local names, seen = {}, {}
  local function add(n) if not seen[n] then seen[n] = true; names[#names + 1] = n end end
  for n in pairs(package.loaded) do if type(n) == "string" then add(n) end end
  for n in pairs(package.preload) do if type(n) == "string" then add(n) end end
  local ok, core = pcall(require, "parry.core")
  local fs = ok and core._fs
  local function listdir(dir)
    local okl, list = pcall(fs.listdir, dir)
    return okl and list or {}
  end
  for template in package.path:gmatch("[^;]+") do
    local dir = fs and template:match("^(.*)/%?%.lua$")
    if dir then
      for _, f in ipairs(listdir(dir)) do
        local m = f:match("^([%w_]+)%.lua$")
        if m then add(m) end
        if not f:find("%.") and fs.isdir(dir .. "/" .. f) then
          for _, g in ipairs(listdir(dir .. "/" .. f)) do
            local sub = g:match("^([%w_]+)%.lua$")
            if sub and sub ~= "init" then add(f .. "." .. sub) end
          end
        end
      end
    end
  end
  table.sort(names)
  return names
end

--- complete(word [, line]) -> list of candidates replacing `word`, the text
-- before the cursor back to the last space or bracket. `t:su` -> `t:sum`,
-- `parry.nn.Li` -> `parry.nn.Linear`; inside `require("` module names.
function M.complete(word, line)
  local out = {}
  line = line or word
  if line:match("require%s*%(?%s*[\"'][%w_%.]*$") then
    local prefix = word:match("[\"']?([%w_%.]*)$") or word
    for _, n in ipairs(module_names()) do
      if n:sub(1, #prefix) == prefix then out[#out + 1] = n end
    end
    return out
  end
  local path, sep, partial = word:match("^(.-)([%.:])([%w_]*)$")
  local keys, head
  if path and path ~= "" then
    local v = _G
    for part in path:gmatch("[^%.:]+") do
      if type(v) ~= "table" and type(v) ~= "userdata" then return out end
      local ok, nv = pcall(function() return v[part] end)
      if not ok or nv == nil then return out end
      v = nv
    end
    keys = members(v, sep == ":")
    head = path .. sep
  else
    partial = word:match("([%a_][%w_]*)$") or ""
    head = word:sub(1, #word - #partial)
    keys = members(_G)
    for _, kw in ipairs{ "and", "break", "do", "else", "elseif", "end", "false", "for", "function", "goto", "if",
      "in", "local", "nil", "not", "or", "repeat", "return", "then", "true", "until", "while" } do
      keys[#keys + 1] = kw
    end
    table.sort(keys)
  end
  for _, k in ipairs(keys) do
    if k:sub(1, #partial) == partial then out[#out + 1] = head .. k end
  end
  return out
end

return M
