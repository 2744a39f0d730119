-- The LuaCATS annotations (stdlib/types/parry) for the Lua language server
-- are generated from docs/reference.md (scripts/gen_types.lua): they must be
-- up to date, and cover every public function the reference documents.
local support = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "support.lua")
local PARRY, sh, q = support.PARRY, support.sh, support.q
local help = require("parry.help")

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
    assert.truthy(all:find("---@param id any\n---@param opts? table\nfunction parry.rl.make(id, opts) end", 1, true))
    assert.truthy(all:find("---@operator add(parry.Tensor|number): parry.Tensor", 1, true))
  end)
end)
