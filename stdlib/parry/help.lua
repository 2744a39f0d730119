--- parry.help: `help(x)` shows the documentation of a parry function or
-- module, read from the API reference `docs/reference.md` (the same text the
-- reference shows). `help()` lists the modules. In the REPL `?x` is `help(x)`.
--
--   help(parry.randn)          help("Tensor:sum")        help(parry.attacks)
local M = {}

-- The public tables, by the name the reference uses.
local function groups()
  local parry = require("parry")
  local list = {
    { "parry", parry }, { "Tensor", parry.Tensor }, { "parry.nn", parry.nn },
    { "parry.nn.functional", parry.nn.functional }, { "parry.losses", parry.losses },
    { "parry.optim", parry.optim }, { "parry.optim.lr", parry.optim.lr }, { "parry.models", parry.models },
    { "parry.data", parry.data }, { "parry.data.transforms", parry.data.transforms },
    { "parry.attacks", parry.attacks }, { "parry.robust", parry.robust }, { "parry.fl", parry.fl },
    { "parry.train", parry.train }, { "parry.rl", parry.rl }, { "parry.rl.wrappers", parry.rl.wrappers },
    { "parry.rl.attacks", parry.rl.attacks }, { "parry.rl.schedules", parry.rl.schedules },
  }
  local mt = getmetatable(parry.nn.Linear(1, 1))
  if mt and type(mt.methods) == "table" then list[#list + 1] = { "Module", mt.methods } end
  for _, name in ipairs{ "table", "json", "plot", "progress", "exp", "lib" } do
    local ok, m = pcall(require, "parry." .. name)
    if ok and type(m) == "table" then list[#list + 1] = { "parry." .. name, m } end
  end
  return list
end
M.groups = groups

--- The reference file: PARRY_DOCS, or docs/reference.md next to the stdlib
-- (build tree: <repo>/docs; installed: <prefix>/share/parry/docs).
local function reference_path()
  local env = os.getenv("PARRY_DOCS")
  if env then
    local f = io.open(env .. "/reference.md")
    if f then f:close(); return env .. "/reference.md" end
    return nil    -- help() then says the reference was not found, rather than failing to read it
  end
  local here = package.searchpath("parry.help", package.path)
  if not here then return nil end
  local root = here:gsub("/parry/help%.lua$", "")        -- the stdlib folder
  local base = root:gsub("/[^/]+$", "")                 -- its parent
  for _, p in ipairs{ base .. "/docs/reference.md", base .. "/../docs/reference.md" } do
    local f = io.open(p)
    if f then f:close(); return p end
  end
  return nil
end

local cache
--- sections(): the reference parsed into {names = {...}, title =, text =} entries
-- and module sections keyed by name.
function M.sections()
  if cache then return cache end
  local path = reference_path()
  cache = { entries = {}, modules = {}, path = path, by_name = {} }
  if not path then return cache end
  local current, module
  for line in io.lines(path) do
    local mod = line:match("^## `([%w_%.:]+)`")
    local head = line:match("^### (.*)$")
    if mod then
      module = { name = mod, text = {}, entries = {} }
      cache.modules[mod] = module
      current = module
    elseif head then
      current = { title = head, text = {}, names = {} }
      for name in head:gmatch("`([%w_%.:]+)[%({]") do current.names[#current.names + 1] = name end
      for name in head:gmatch("`([%w_%.:]+)`") do current.names[#current.names + 1] = name end
      for _, n in ipairs(current.names) do cache.by_name[n] = current end
      cache.entries[#cache.entries + 1] = current
      if module then module.entries[#module.entries + 1] = current end
    elseif line:match("^# ") then
      current = nil
    elseif current then
      current.text[#current.text + 1] = line
    end
  end
  return cache
end

--- name_of(value): the qualified names of a public function or table ("parry.randn", "Tensor:sum").
function M.name_of(v)
  local names = {}
  for _, g in ipairs(groups()) do
    if rawequal(g[2], v) then names[#names + 1] = g[1] end
    if type(v) == "function" then
      for k, f in pairs(g[2]) do
        if rawequal(f, v) and type(k) == "string" then
          local sep = (g[1] == "Tensor" or g[1] == "Module") and ":" or "."
          names[#names + 1] = g[1] .. sep .. k
        end
      end
    end
  end
  table.sort(names)
  return names
end

local function trim(lines)
  local a, b = 1, #lines
  while a <= b and lines[a]:match("^%s*$") do a = a + 1 end
  while b >= a and lines[b]:match("^%s*$") do b = b - 1 end
  return table.concat(lines, "\n", a, b)
end

--- text(x): the help text for a value or a name, or nil and a message.
function M.text(x)
  local s = M.sections()
  if not s.path then return nil, "help: docs/reference.md not found (set PARRY_DOCS to the docs folder)" end
  local names = type(x) == "string" and { x } or M.name_of(x)
  for _, n in ipairs(names) do
    if s.modules[n] then
      local m = s.modules[n]
      local out = { "# " .. n, trim(m.text), "" }
      for _, e in ipairs(m.entries) do
        local first = e.text[1] and trim({ e.text[1] }) or ""
        for _, l in ipairs(e.text) do if not l:match("^%s*$") then first = l; break end end
        out[#out + 1] = "  " .. e.title:gsub("`", "") .. "\n      " .. first
      end
      return table.concat(out, "\n")
    end
    local e = s.by_name[n]
    if e then return e.title:gsub("`", "") .. "\n\n" .. trim(e.text) end
  end
  if #names == 0 then
    return nil, "help: no documentation for this " .. type(x) .. " (not a public parry function or module)"
  end
  return nil, "help: " .. names[1] .. " is not in the reference yet"
end

--- help([x]): prints the documentation of x (a function, module or name);
-- with no argument lists the modules.
function M.help(...)
  if select("#", ...) == 0 then
    local s = M.sections()
    local out = { "parry modules (help(parry.nn), help(\"Tensor:sum\"), ?parry.randn in the REPL):" }
    local names = {}
    for n in pairs(s.modules) do names[#names + 1] = n end
    table.sort(names)
    for _, n in ipairs(names) do
      local first = ""
      for _, l in ipairs(s.modules[n].text) do if not l:match("^%s*$") then first = l; break end end
      out[#out + 1] = string.format("  %-22s %s", n, first)
    end
    print(table.concat(out, "\n"))
    return
  end
  local text, err = M.text((...))
  print(text or err)
end

return setmetatable(M, { __call = function(_, ...) return M.help(...) end })
