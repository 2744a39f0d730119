-- Script libraries: manifests, `parry bundle`, `parry install | list | remove`
-- and versioned `require`, run through the CLI in a temporary PARRY_HOME.
local lib = require("parry.lib")
local fs = require("parry.core")._fs
local support = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "support.lua")
local PARRY, sh, q = support.PARRY, support.sh, support.q

local function write(path, text)
  fs.mkdir(path:match("^(.*)/[^/]*$"))
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

-- A scratch folder with a PARRY_HOME inside; `run(args)` calls the CLI there.
local function scratch()
  local root = os.tmpname()
  os.remove(root)
  fs.mkdir(root)
  local home = root .. "/home"
  local function run(args, cwd)
    return sh("cd " .. q(cwd or root) .. " && PARRY_HOME=" .. q(home) .. " " .. q(PARRY) .. " " .. args)
  end
  return root, home, run
end

-- A library folder `name` with modules name (init) and name.util; util has a
-- function that errors on line 3 (for the traceback test).
local function make_lib(root, name, version, deps, extra)
  local d = root .. "/" .. name
  local dep_src = {}
  for k, v in pairs(deps or {}) do dep_src[#dep_src + 1] = string.format("[%q] = %q", k, v) end
  write(d .. "/parry.lib.lua", string.format(
    "return {name = %q, version = %q, description = %q, modules = {%q, %q}, dependencies = {%s}}\n",
    name, version, "test library " .. name, name, name .. ".util", table.concat(dep_src, ", ")))
  write(d .. "/" .. name .. "/init.lua", (extra or "") .. "local M = {util = require(" .. string.format("%q", name .. ".util") ..
    ")}\nM.version = " .. string.format("%q", version) .. "\nreturn M\n")
  write(d .. "/" .. name .. "/util.lua", "local M = {}\nfunction M.fail()\n  error('failing on purpose')\nend\nfunction M.double(x) return 2 * x end\nreturn M\n")
  return d
end

describe("version constraints", function()
  it("follow LuaRocks: ==, >=, <, ~> and lists", function()
    local function ok(c, v) return lib.parse_constraint(c)(v) end
    assert.is_true(ok(">= 1.2", "1.10"))
    assert.is_false(ok(">= 1.2", "1.1.9"))
    assert.is_true(ok("~> 1.2", "1.2.7"))
    assert.is_false(ok("~> 1.2", "1.3"))
    assert.is_true(ok("~> 2", "2.9"))
    assert.is_false(ok("~> 2", "3.0"))
    assert.is_true(ok(">= 1.0, < 2", "1.5"))
    assert.is_false(ok(">= 1.0, < 2", "2.0"))
    assert.is_true(ok("1.2", "1.2.0"))
    assert.is_nil(lib.parse_constraint("about 1.2"))
  end)
end)

describe("parry bundle / install / require", function()
  it("refuses a manifest or bundle that loops instead of hanging", function()
    local dir = os.tmpname(); os.remove(dir); require("parry.core")._fs.mkdir(dir)
    local f = assert(io.open(dir .. "/parry.lib.lua", "w")); f:write("while true do end\n"); f:close()
    assert.error(function() lib.load_manifest(dir) end, "runs for more than 10000000 instructions")
    local b = dir .. "/loop_bundle.lua"
    f = assert(io.open(b, "w")); f:write("local n = 0 while true do n = n + 1 end\n"); f:close()
    assert.error(function() lib.install(b) end, "not a parry bundle")
    require("parry.core")._fs.rmtree(dir)
  end)

  it("round-trips a two-module library and points tracebacks at the original files", function()
    local root, home, run = scratch()
    local dir = make_lib(root, "statkit", "1.0.0")
    local out, code = run("bundle statkit -o statkit_bundle.lua")
    assert.equals(0, code, out)
    assert.truthy(out:find("2 modules", 1, true), out)
    -- dofile-ing the bundle makes the modules available
    out, code = run("-e " .. q("local m = dofile('statkit_bundle.lua'); print(m.name, require('statkit.util').double(21))"))
    assert.equals(0, code, out)
    assert.truthy(out:find("statkit\t42", 1, true), out)
    -- install from the bundle, then require from another directory
    out, code = run("install statkit_bundle.lua")
    assert.equals(0, code, out)
    fs.mkdir(root .. "/elsewhere")
    out, code = run("-e " .. q("print(require('statkit').util.double(4))"), root .. "/elsewhere")
    assert.equals(0, code, out)
    assert.equals("8\n", out)
    out = run("-e " .. q("require('statkit.util').fail()"), root .. "/elsewhere")
    assert.truthy(out:find("statkit/statkit/util.lua:3: failing on purpose", 1, true), out)
    out = run("list")
    assert.truthy(out:find("statkit%s+1%.0%.0%s+test library statkit"), out)
    -- a second version side by side; require takes the newest
    make_lib(root .. "/v2", "statkit", "1.1.0")
    out, code = run("install v2/statkit")
    assert.equals(0, code, out)
    out = run("-e " .. q("print(require('statkit').version)"))
    assert.equals("1.1.0\n", out)
    out = run("list")
    assert.truthy(out:find("1.1.0, 1.0.0", 1, true), out)
    -- installing the same version again is refused
    out, code = run("install v2/statkit")
    assert.equals(1, code)
    assert.truthy(out:find("already installed", 1, true), out)
    out, code = run("remove statkit@1.1.0")
    assert.equals(0, code, out)
    out = run("-e " .. q("print(require('statkit').version)"))
    assert.equals("1.0.0\n", out)
    out, code = run("remove statkit")
    assert.equals(0, code, out)
    out = run("list")
    assert.truthy(out:find("no libraries installed", 1, true), out)
    assert.is_false(fs.exists(home .. "/lib/statkit"))
    fs.rmtree(root)
  end)

  it("chooses the newest version that every installed dependent accepts", function()
    local root, _, run = scratch()
    make_lib(root .. "/a", "base", "1.2.0")
    make_lib(root .. "/b", "base", "2.0.0")
    assert.equals(0, select(2, run("install a/base")))
    assert.equals(0, select(2, run("install b/base")))
    make_lib(root, "app", "0.1.0", {base = "~> 1.2"})
    local out, code = run("install app")
    assert.equals(0, code, out)
    out = run("-e " .. q("print(require('base').version)"))
    assert.equals("1.2.0\n", out)
    -- a second dependent wanting >= 2 conflicts with app's ~> 1.2
    make_lib(root, "tool", "0.1.0", {base = ">= 2.0"})
    out, code = run("install tool")
    assert.equals(1, code)
    assert.truthy(out:find("conflicting versions of base", 1, true), out)
    -- removing what app needs is refused
    out, code = run("remove base@1.2.0")
    assert.equals(1, code)
    assert.truthy(out:find("app 0.1.0 needs base ~> 1.2", 1, true), out)
    fs.rmtree(root)
  end)

  it("reports bad manifests, missing files, syntax errors, missing dependencies and cycles", function()
    local root, home, run = scratch()
    write(root .. "/nomanifest/x.lua", "return 1\n")
    local out, code = run("bundle nomanifest")
    assert.equals(1, code)
    assert.truthy(out:find("no manifest", 1, true), out)
    write(root .. "/noversion/parry.lib.lua", "return {name = 'noversion', modules = {'x'}}\n")
    out = run("bundle noversion")
    assert.truthy(out:find("missing or bad field 'version'", 1, true), out)
    write(root .. "/nomodules/parry.lib.lua", "return {name = 'nomodules', version = '1.0'}\n")
    out = run("bundle nomodules")
    assert.truthy(out:find("missing field 'modules'", 1, true), out)
    write(root .. "/ghost/parry.lib.lua", "return {name = 'ghost', version = '1.0', modules = {'ghost.missing'}}\n")
    out = run("bundle ghost")
    assert.truthy(out:find("module ghost.missing: file ghost/missing/init.lua does not exist", 1, true), out)
    local d = make_lib(root, "broken", "1.0")
    write(d .. "/broken/util.lua", "local M = {}\nfunction M.f(\n  return 1\nend\n")
    out, code = run("bundle broken")
    assert.equals(1, code)
    assert.truthy(out:find("syntax error in module broken.util: broken/broken/util.lua:3:", 1, true), out)
    make_lib(root, "needy", "1.0", {absent = ">= 1"})
    out = run("install needy")
    assert.truthy(out:find("needs absent >= 1, which is not installed", 1, true), out)
    write(root .. "/selfish/parry.lib.lua", "return {name = 'selfish', version = '1.0', modules = {'x'}, dependencies = {selfish = '>= 1'}}\n")
    out = run("bundle selfish")
    assert.truthy(out:find("dependency cycle", 1, true), out)
    -- a cycle through an installed library: ping 1.0 (no deps) installed,
    -- pong needs ping, then ping 2.0 needs pong -> ping 2.0 -> pong -> ping
    make_lib(root .. "/p1", "ping", "1.0")
    assert.equals(0, select(2, run("install p1/ping")))
    make_lib(root, "pong", "1.0", {ping = ">= 1"})
    assert.equals(0, select(2, run("install pong")))
    make_lib(root .. "/p2", "ping", "2.0", {pong = ">= 1"})
    out, code = run("install p2/ping")
    assert.equals(1, code)
    assert.truthy(out:find("dependency cycle: ping -> pong -> ping", 1, true), out)
    -- nothing half-installed: no temporary folders, no ping 2.0
    for _, name in ipairs(fs.listdir(home .. "/lib")) do assert.falsy(name:match("^%.tmp"), name) end
    assert.is_false(fs.exists(home .. "/lib/ping/2.0"))
    out = run("install nosuchfile.lua")
    assert.truthy(out:find("no such file or folder", 1, true), out)
    out = run("remove nothing")
    assert.truthy(out:find("nothing is not installed", 1, true), out)
    fs.rmtree(root)
  end)
end)

describe("LuaRocks interplay", function()
  it("loads a rock made with `luarocks --lua-version 5.4` unchanged", function()
    local root = os.tmpname()
    os.remove(root)
    write(root .. "/greet/src/greet.lua", "local M = {}\nfunction M.hi(name) return 'hi ' .. name end\nreturn M\n")
    write(root .. "/greet/greet-1.0-1.rockspec", table.concat({
      'package = "greet"', 'version = "1.0-1"', 'source = { url = "." }',
      'build = { type = "builtin", modules = { greet = "src/greet.lua" } }' }, "\n") .. "\n")
    local tree = root .. "/tree"
    local out, code = sh("cd " .. q(root .. "/greet") .. " && luarocks --lua-version 5.4 --tree " .. q(tree) ..
      " make greet-1.0-1.rockspec")
    assert.equals(0, code, "luarocks make failed (scripts/deps installs luarocks):\n" .. out)
    out, code = sh("eval \"$(luarocks --lua-version 5.4 --tree " .. q(tree) .. " path 2>/dev/null)\" && cd / && " .. q(PARRY) ..
      " -e " .. q("print(require('greet').hi('parry'))"))
    assert.equals(0, code, out)
    assert.truthy(out:find("hi parry\n", 1, true), out)
    fs.rmtree(root)
  end)
end)
