--- parry: tensors and adversarial robustness for Lua 5.4.
--
--   local parry = require("parry")
--   local x = parry.randn(2, 3)
--   print(x:sum(2))
--
-- The tensor functions come from the native module `parry.core`; this file
-- assembles the public table. Submodules (`parry.nn`, ...) load on first use
-- through `require`, so `parry.nn` and `require("parry.nn")` are the same.

local core = require("parry.core")
-- Errors are positioned at the first frame outside this folder (the host
-- registers it too; a plain lua5.4 loading parry/core.so learns it here).
core._register_stdlib((debug.getinfo(1, "S").source:match("^(@.*/)") or "@parry/"))

local parry = {}

-- Under mpirun, os.exit with a failure status ends the whole job (MPI_Abort)
-- rather than leaving the other ranks waiting for this one in a collective.
do
  local _, size = core._dist._info()
  if size > 1 and not rawget(os, "_parry_exit") then
    local exit = os.exit
    os._parry_exit = exit
    os.exit = function(code, close)
      if code ~= nil and code ~= true and code ~= 0 then
        core._dist._abort("os.exit(" .. tostring(code) .. ")", math.type(code) == "integer" and code or 1)
      end
      return exit(code, close)
    end
  end
end
for name, value in pairs(core) do
  parry[name] = value
end

-- Modules can come from anywhere (the zoo, containers, checkpoints): their
-- Lua-side behaviour (fields, calls, Lua-defined classes) is set up by nn.lua.
parry.nn = require("parry.nn")
-- parry.exp is both the exponential (parry.exp(t)) and the experiment runner
-- (parry.exp.run{...}): a callable table.
parry.exp = require("parry.exp")

--- Submodules loaded lazily as `parry.<name>` when a file `parry/<name>.lua`
-- exists on package.path; unknown names stay nil.
setmetatable(parry, {
  __index = function(t, name)
    if type(name) ~= "string" or not package.searchpath("parry." .. name, package.path) then
      return nil
    end
    local module = require("parry." .. name)
    rawset(t, name, module)
    return module
  end,
})

return parry
