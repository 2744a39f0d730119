--- parry.lib: script libraries — manifests, bundles, installation and
-- versioned `require`. The CLI commands `parry bundle | install | list |
-- remove` call `main`; installed libraries are found by the searcher the
-- host appends to `package.searchers`.
--
-- A library is a folder with `parry.lib.lua`:
--   return {
--     name = "robustutils", version = "1.2.0", description = "...",
--     modules = {"robustutils", "robustutils.metrics"},   -- a.b -> a/b.lua or a/b/init.lua
--     -- or modules = {["robustutils"] = "src/init.lua", ...}
--     dependencies = {plotkit = ">= 0.3", tablekit = "~> 1.2"},
--   }
local core = require("parry.core")
local fs = core._fs
local M = {}

local function fail(msg) error(msg, 0) end

-- MARK: versions

--- parse_version("1.2.3") -> {1, 2, 3}; nil for anything else.
function M.parse_version(s)
  if type(s) ~= "string" or not s:match("^%d+[%.%d]*$") or s:match("%.%.") or s:match("%.$") then return nil end
  local v = {}
  for part in s:gmatch("%d+") do v[#v + 1] = tonumber(part) end
  return v
end

--- compare(a, b): −1, 0 or 1 for parsed versions (missing parts count as 0).
function M.compare(a, b)
  for i = 1, math.max(#a, #b) do
    local x, y = a[i] or 0, b[i] or 0
    if x ~= y then return x < y and -1 or 1 end
  end
  return 0
end

--- parse_constraint(">= 1.2, < 2") -> a function(version string) -> bool.
-- Operators as LuaRocks: == = ~= < <= > >= and ~> ("~> 1.2" is >= 1.2, < 1.3).
function M.parse_constraint(s)
  if type(s) ~= "string" then return nil, "a version constraint must be a string" end
  local tests = {}
  for part in s:gmatch("[^,]+") do
    local op, ver = part:match("^%s*([<>=~]*)%s*([%d%.]+)%s*$")
    local v = ver and M.parse_version(ver)
    if not v then return nil, "bad version constraint '" .. s .. "' (expected e.g. \">= 1.2\" or \"~> 1.2\")" end
    op = op == "" and "==" or op
    local t
    if op == "==" or op == "=" then t = function(x) return M.compare(x, v) == 0 end
    elseif op == "~=" then t = function(x) return M.compare(x, v) ~= 0 end
    elseif op == "<" then t = function(x) return M.compare(x, v) < 0 end
    elseif op == "<=" then t = function(x) return M.compare(x, v) <= 0 end
    elseif op == ">" then t = function(x) return M.compare(x, v) > 0 end
    elseif op == ">=" then t = function(x) return M.compare(x, v) >= 0 end
    elseif op == "~>" then
      local upper = { table.unpack(v) }      -- "~> 1.2" -> below 1.3; "~> 2" -> below 3
      upper[#upper] = upper[#upper] + 1
      t = function(x) return M.compare(x, v) >= 0 and M.compare(x, upper) < 0 end
    else
      return nil, "bad operator '" .. op .. "' in version constraint '" .. s .. "'"
    end
    tests[#tests + 1] = t
  end
  if #tests == 0 then return nil, "empty version constraint" end
  return function(version)
    local x = type(version) == "table" and version or M.parse_version(version)
    if not x then return false end
    for _, t in ipairs(tests) do if not t(x) then return false end end
    return true
  end
end

-- MARK: manifests

local read_file = require("parry._util").read_file

local function write_file(path, s)
  local ok, err = require("parry._util").write_file(path, s)
  if not ok then fail("cannot write " .. path .. ": " .. tostring(err)) end
end

--- check_manifest(m [, where]) -> m, raising a clear error for missing or bad fields.
function M.check_manifest(m, where)
  where = where or "manifest"
  if type(m) ~= "table" then fail(where .. ": must return a table, got " .. type(m)) end
  if type(m.name) ~= "string" or not m.name:match("^[%a_][%w_%-]*$") then
    fail(where .. ": missing or bad field 'name' (a word like \"robustutils\")")
  end
  if not M.parse_version(m.version) then
    fail(where .. ": missing or bad field 'version' (digits and dots, like \"1.2.0\"), got " .. tostring(m.version))
  end
  if m.description ~= nil and type(m.description) ~= "string" then fail(where .. ": field 'description' must be a string") end
  if type(m.modules) ~= "table" or next(m.modules) == nil then
    fail(where .. ": missing field 'modules' (a list of module names, or a table name -> file)")
  end
  for k, v in pairs(m.modules) do
    local name = math.type(k) == "integer" and v or k
    if type(name) ~= "string" or not name:match("^[%a_][%w_]*[%w_%.]*$") then
      fail(where .. ": bad module name " .. tostring(name))
    end
    if math.type(k) ~= "integer" and type(v) ~= "string" then fail(where .. ": module " .. k .. " must map to a file path") end
  end
  if m.dependencies ~= nil then
    if type(m.dependencies) ~= "table" then fail(where .. ": field 'dependencies' must be a table name -> constraint") end
    for dep, c in pairs(m.dependencies) do
      if type(dep) ~= "string" then fail(where .. ": dependency names must be strings") end
      local ok, err = M.parse_constraint(c)
      if not ok then fail(where .. ": dependency " .. dep .. ": " .. err) end
      if dep == m.name then fail(where .. ": " .. m.name .. " depends on itself (a dependency cycle)") end
    end
  end
  return m
end

-- Runs a manifest's or bundle's chunk with a budget: they are data, and a
-- file that loops (or computes for long) must be an error, not a hang.
local BUDGET = 10000000   -- VM instructions; a bundle's top level only registers its modules
local function run_bounded(chunk, where)
  local co = coroutine.create(chunk)
  debug.sethook(co, function() error(where .. ": runs for more than " .. BUDGET .. " instructions", 0) end, "", BUDGET)
  local ok, m = coroutine.resume(co)
  if ok and coroutine.status(co) ~= "dead" then return false, where .. ": yields (a manifest must return a table)" end
  return ok, m
end

--- load_manifest(dir) -> manifest table (validated).
function M.load_manifest(dir)
  local path = dir .. "/parry.lib.lua"
  local code = read_file(path)
  if not code then fail(path .. ": no manifest (a library folder needs parry.lib.lua)") end
  local chunk, err = load(code, "@" .. path, "t", {})
  if not chunk then fail(err) end
  local ok, m = run_bounded(chunk, path)
  if not ok then fail(tostring(m)) end
  return M.check_manifest(m, path)
end

-- The (module name, file relative to dir) pairs of a manifest, sorted by name.
local function module_files(m, dir)
  local out = {}
  for k, v in pairs(m.modules) do
    local name, rel = k, v
    if math.type(k) == "integer" then
      name = v
      local base = v:gsub("%.", "/")
      rel = fs.exists(dir .. "/" .. base .. ".lua") and (base .. ".lua") or (base .. "/init.lua")
    end
    if not fs.exists(dir .. "/" .. rel) then
      fail(dir .. ": module " .. name .. ": file " .. rel .. " does not exist")
    end
    out[#out + 1] = { name = name, file = rel }
  end
  table.sort(out, function(a, b) return a.name < b.name end)
  return out
end

-- Lua source for a value (strings, numbers, booleans and tables of them).
local function serialize(v, indent)
  indent = indent or ""
  local t = type(v)
  if t == "string" then return string.format("%q", v) end
  if t == "number" or t == "boolean" or t == "nil" then return tostring(v) end
  if t ~= "table" then fail("cannot serialize a " .. t) end
  local keys = {}
  for k in pairs(v) do keys[#keys + 1] = k end
  table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
  local parts = {}
  for _, k in ipairs(keys) do
    local key = type(k) == "string" and k:match("^[%a_][%w_]*$") and k or ("[" .. serialize(k) .. "]")
    parts[#parts + 1] = indent .. "  " .. key .. " = " .. serialize(v[k], indent .. "  ")
  end
  return "{\n" .. table.concat(parts, ",\n") .. "\n" .. indent .. "}"
end
M.serialize = serialize

local function long_string(s)
  local eq = ""
  while s:find("]" .. eq .. "]", 1, true) do eq = eq .. "=" end
  return "[" .. eq .. "[\n" .. s .. "]" .. eq .. "]"
end

-- MARK: bundle

--- bundle_source(dir) -> the bundle's Lua source, its manifest.
-- Every module is syntax-checked under its chunk name `<name>/<file>`.
function M.bundle_source(dir)
  dir = dir:gsub("/+$", "")
  local m = M.load_manifest(dir)
  local files = module_files(m, dir)
  local out = {
    "-- parry bundle: " .. m.name .. " " .. m.version .. " (made by `parry bundle`; do not edit)",
    "-- dofile() or require() it: its modules are registered in package.preload.",
    "local manifest = " .. serialize(m),
    "local modules = {",
  }
  for _, f in ipairs(files) do
    local code = assert(read_file(dir .. "/" .. f.file))
    local chunk_name = (dir:match("([^/]+)$") or m.name) .. "/" .. f.file
    local ok, err = load(code, "@" .. chunk_name)
    if not ok then fail("syntax error in module " .. f.name .. ": " .. err) end
    out[#out + 1] = string.format("  {name = %q, chunk = %q, code = %s},", f.name, "@" .. chunk_name, long_string(code))
  end
  out[#out + 1] = "}"
  out[#out + 1] = [[
for _, m in ipairs(modules) do
  package.preload[m.name] = function(...)
    local f = assert(load(m.code, m.chunk))
    return f(...)
  end
end
return manifest]]
  return table.concat(out, "\n") .. "\n", m
end

--- bundle(dir [, output]) -> path written (default <name>-<version>.lua).
function M.bundle(dir, output)
  local src, m = M.bundle_source(dir)
  output = output or (m.name .. "-" .. m.version .. ".lua")
  write_file(output, src)      -- replaced whole (parry._util.write_file)
  return output, m
end

-- Runs a bundle's source in a sandbox to read its manifest and module names.
local function inspect_bundle(src, where)
  local preload = {}
  local env = { package = { preload = preload }, load = load, assert = assert, ipairs = ipairs, pairs = pairs }
  local chunk, err = load(src, "@" .. where, "t", env)
  if not chunk then fail(where .. ": not a parry bundle: " .. err) end
  local ok, m = run_bounded(chunk, where)
  if not ok then fail(where .. ": not a parry bundle: " .. tostring(m)) end
  M.check_manifest(m, where)
  return m, preload
end

-- MARK: installed libraries

--- home(): PARRY_HOME or ~/.parry; libraries live in home()/lib/<name>/<version>.
function M.home()
  return os.getenv("PARRY_HOME") or ((os.getenv("HOME") or ".") .. "/.parry")
end

local function libdir() return M.home() .. "/lib" end

--- installed() -> {name = {{version=, manifest=, bundle=}, ... newest first}}
function M.installed()
  local out = {}
  local root = libdir()
  if not fs.isdir(root) then return out end
  for _, name in ipairs(fs.listdir(root)) do
    if not name:match("^%.") and fs.isdir(root .. "/" .. name) then
      local list = {}
      for _, ver in ipairs(fs.listdir(root .. "/" .. name)) do
        if ver:match("^%.") then goto continue end        -- an install under way (or killed)
        local dir = root .. "/" .. name .. "/" .. ver
        local src = read_file(dir .. "/manifest.lua")
        local chunk = src and load(src, "@" .. dir .. "/manifest.lua", "t", {})
        local ok, m = false, nil
        if chunk then ok, m = pcall(chunk) end
        if ok and type(m) == "table" and M.parse_version(m.version) then
          list[#list + 1] = { version = m.version, manifest = m, bundle = dir .. "/bundle.lua" }
        end
        ::continue::
      end
      table.sort(list, function(a, b) return M.compare(M.parse_version(a.version), M.parse_version(b.version)) > 0 end)
      if #list > 0 then out[name] = list end
    end
  end
  return out
end

-- Constraints that installed libraries (other than `except`) place on `name`.
local function constraints_on(libs, name, except)
  local out = {}
  for lname, versions in pairs(libs) do
    for _, v in ipairs(versions) do
      local c = v.manifest.dependencies and v.manifest.dependencies[name]
      if c and lname ~= except then out[#out + 1] = { by = lname .. " " .. v.version, constraint = c } end
    end
  end
  table.sort(out, function(a, b) return a.by < b.by end)
  return out
end

-- The newest installed version of `name` satisfying every constraint, or nil and why.
local function resolve(libs, name, extra)
  local versions = libs[name]
  if not versions then return nil, name .. " is not installed" end
  local cs = constraints_on(libs, name)
  for _, e in ipairs(extra or {}) do cs[#cs + 1] = e end
  for _, v in ipairs(versions) do
    local ok = true
    for _, c in ipairs(cs) do
      if not M.parse_constraint(c.constraint)(v.version) then ok = false; break end
    end
    if ok then return v end
  end
  local want = {}
  for _, c in ipairs(cs) do want[#want + 1] = c.by .. " needs " .. name .. " " .. c.constraint end
  local have = {}
  for _, v in ipairs(versions) do have[#have + 1] = v.version end
  return nil, "conflicting versions of " .. name .. ": " .. table.concat(want, "; ") ..
    " (installed: " .. table.concat(have, ", ") .. ")"
end

-- A dependency path from `from` back to `target` through installed libraries, if any.
local function find_cycle(libs, deps, target, path, seen)
  for dep in pairs(deps or {}) do
    local p = { table.unpack(path) }
    p[#p + 1] = dep
    if dep == target then return p end
    if not seen[dep] and libs[dep] then
      seen[dep] = true
      for _, v in ipairs(libs[dep]) do
        local c = find_cycle(libs, v.manifest.dependencies, target, p, seen)
        if c then return c end
      end
    end
  end
end

--- install(path) -> name, version. path is a library folder or a bundle file.
-- Written into a temporary folder, then renamed into place: nothing half-installed.
function M.install(path)
  local src, where
  if fs.isdir(path) then
    src = M.bundle_source(path)
    where = path
  else
    src = read_file(path)
    if not src then fail("no such file or folder: " .. path) end
    where = path
  end
  local m = inspect_bundle(src, where)
  local libs = M.installed()
  local final = libdir() .. "/" .. m.name .. "/" .. m.version
  if fs.exists(final) then
    fail(m.name .. " " .. m.version .. " is already installed (parry remove " .. m.name .. "@" .. m.version .. " first)")
  end
  for dep, c in pairs(m.dependencies or {}) do
    local ok, err = resolve(libs, dep, { { by = m.name .. " " .. m.version, constraint = c } })
    if not ok then
      if not libs[dep] then fail(m.name .. " " .. m.version .. " needs " .. dep .. " " .. c .. ", which is not installed (install it first)") end
      fail("cannot install " .. m.name .. " " .. m.version .. ": " .. err)
    end
  end
  local cycle = find_cycle(libs, m.dependencies, m.name, { m.name }, {})
  if cycle then fail("dependency cycle: " .. table.concat(cycle, " -> ")) end
  fs.mkdir(libdir() .. "/" .. m.name)
  -- Built in a temporary folder beside the final one, then renamed into place;
  -- folders left by killed installs of this version are removed first.
  local tmp = fs.temp_name(libdir() .. "/" .. m.name, m.version)
  fs.mkdir(tmp)
  local ok, err = pcall(function()
    write_file(tmp .. "/bundle.lua", src)
    write_file(tmp .. "/manifest.lua", "return " .. serialize(m) .. "\n")
    fs.replace(tmp, final)
  end)
  if not ok then fs.rmtree(tmp); fail(tostring(err)) end
  return m.name, m.version
end

--- remove(spec) where spec is "name" (every version) or "name@version".
function M.remove(spec)
  local name, version = spec:match("^([^@]+)@(.+)$")
  name = name or spec
  local libs = M.installed()
  if not libs[name] then fail(name .. " is not installed") end
  local targets = {}
  for _, v in ipairs(libs[name]) do
    if not version or v.version == version then targets[#targets + 1] = v.version end
  end
  if #targets == 0 then fail(name .. " " .. version .. " is not installed") end
  -- Refuse when a dependent would be left without a satisfying version.
  local remaining = {}
  for _, v in ipairs(libs[name]) do
    local gone = false
    for _, t in ipairs(targets) do if t == v.version then gone = true end end
    if not gone then remaining[#remaining + 1] = v end
  end
  for _, c in ipairs(constraints_on(libs, name, name)) do
    local ok = false
    for _, v in ipairs(remaining) do if M.parse_constraint(c.constraint)(v.version) then ok = true end end
    if not ok then fail("cannot remove " .. spec .. ": " .. c.by .. " needs " .. name .. " " .. c.constraint) end
  end
  for _, t in ipairs(targets) do fs.rmtree(libdir() .. "/" .. name .. "/" .. t) end
  if #remaining == 0 then fs.rmtree(libdir() .. "/" .. name) end
  return targets
end

-- MARK: require

--- searcher(module): package.searchers entry for installed libraries.
function M.searcher(module)
  local libs = M.installed()
  local providers = {}
  for name, versions in pairs(libs) do
    for _, v in ipairs(versions) do
      for k, mv in pairs(v.manifest.modules) do
        local mod = math.type(k) == "integer" and mv or k
        if mod == module then providers[name] = true end
      end
    end
  end
  local name = next(providers)
  if not name then return "\n\tno installed parry library provides '" .. module .. "' (" .. libdir() .. ")" end
  local v, err = resolve(libs, name)
  if not v then error("require '" .. module .. "': " .. err, 0) end
  local src = assert(read_file(v.bundle))
  local chunk = assert(load(src, "@" .. v.bundle))
  chunk()
  local loader = package.preload[module]
  if not loader then return "\n\t" .. name .. " " .. v.version .. " does not define " .. module end
  return loader, v.bundle
end

-- MARK: CLI

local usage = [[
usage: parry bundle DIR [-o FILE]     write DIR's library as one self-contained .lua file
       parry install FILE|DIR         install a bundle or a library folder into $PARRY_HOME/lib
       parry list                     show installed libraries
       parry remove NAME[@VERSION]    remove a library (every version, or one)]]

--- main(cmd, args) -> exit code (errors printed as "parry <cmd>: message").
function M.main(cmd, args)
  local ok, err = pcall(function()
    if cmd == "bundle" then
      local dir, out = nil, nil
      local i = 1
      while i <= #args do
        if args[i] == "-o" then out = args[i + 1]; i = i + 2
        elseif dir == nil then dir = args[i]; i = i + 1
        else fail("unexpected argument " .. args[i] .. "\n" .. usage) end
      end
      if not dir then fail("missing DIR\n" .. usage) end
      if args[#args] == "-o" then fail("-o needs a file name") end
      local path, m = M.bundle(dir, out)
      print(string.format("bundled %s %s (%d modules) into %s", m.name, m.version, #module_files(m, dir:gsub("/+$", "")), path))
    elseif cmd == "install" then
      if #args ~= 1 then fail("expected one FILE or DIR\n" .. usage) end
      local name, version = M.install(args[1])
      print(string.format("installed %s %s into %s", name, version, libdir() .. "/" .. name .. "/" .. version))
    elseif cmd == "list" then
      local libs = M.installed()
      local names = {}
      for n in pairs(libs) do names[#names + 1] = n end
      table.sort(names)
      if #names == 0 then print("no libraries installed in " .. libdir()); return end
      for _, n in ipairs(names) do
        local vs = {}
        for _, v in ipairs(libs[n]) do vs[#vs + 1] = v.version end
        print(string.format("%-20s %-20s %s", n, table.concat(vs, ", "), libs[n][1].manifest.description or ""))
      end
    elseif cmd == "remove" then
      if #args ~= 1 then fail("expected NAME or NAME@VERSION\n" .. usage) end
      local removed = M.remove(args[1])
      print("removed " .. args[1]:gsub("@.*", "") .. " " .. table.concat(removed, ", "))
    else
      fail("unknown command " .. tostring(cmd) .. "\n" .. usage)
    end
  end)
  if not ok then
    io.stderr:write("parry " .. tostring(cmd) .. ": " .. tostring(err), "\n")
    return 1
  end
  return 0
end

return M
