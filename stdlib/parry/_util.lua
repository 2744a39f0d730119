--- parry._util: small helpers the stdlib modules share (internal; not part of
-- the public API): whole-file reads and writes, and number formatting.
local M = {}

--- read_file(path) -> text, or nil and the reason.
function M.read_file(path)
  local f, err = io.open(path, "rb")
  if not f then return nil, err end
  local text = f:read("a")
  f:close()
  return text
end

--- write_file(path, text) -> true, or nil and the reason. The file is replaced
-- whole (a temporary beside it, fsync, rename): a reader or a killed run sees
-- the old text or the new one, never a part.
function M.write_file(path, text)
  local ok, err = pcall(require("parry.core")._fs.write_atomic, path, text)
  if not ok then return nil, (tostring(err):gsub("^parry%.fs%.write_atomic: ", "")) end
  return true
end

--- check_options(opts, allowed) -> opts (a table; {} for nil), or nil and a
-- message naming the bad value or unknown key and the keys `allowed` (a set).
function M.check_options(opts, allowed)
  if opts == nil then return {} end
  if type(opts) ~= "table" then return nil, "expected an options table, got " .. type(opts) end
  for k in pairs(opts) do
    if not allowed[k] then
      local names = {}
      for n in pairs(allowed) do names[#names + 1] = n end
      table.sort(names)
      return nil, "unknown option '" .. tostring(k) .. "' (expected one of: " .. table.concat(names, ", ") .. ")"
    end
  end
  return opts
end

-- parry's own modules: every chunk whose source starts like this file's
-- ("@DIR/parry/").
local STDLIB = debug.getinfo(1, "S").source:match("^(@.*/)") or "\0"

--- user_level(): the level (for `error`) of the first Lua frame that is not
-- in parry's stdlib, counted from the caller of user_level's caller; nil if none.
function M.user_level()
  local level = 3
  while true do
    local info = debug.getinfo(level, "Sl")
    if not info then return nil end
    if info.currentline > 0 and info.source:sub(1, #STDLIB) ~= STDLIB then return level - 1 end
    level = level + 1
  end
end

--- raise(msg): error(msg) positioned at the first Lua frame outside parry's
-- stdlib (C frames such as pcall skipped), so a library's messages point at
-- the script's line however deep inside the library the check sits. The
-- bindings position their errors by the same rule (CLuaShim's where_user).
function M.raise(msg)
  local level = M.user_level()
  error(msg, level or 0)    -- no script frame (a tail call from the top): no position
end

--- data_parallel_of(model, distributed, fname): the parry.dist.data_parallel
-- object a `distributed` option asks for (true: a new one; an object: itself;
-- nil/false: nil).
function M.data_parallel_of(model, distributed, fname)
  if distributed == nil or distributed == false then return nil end
  if distributed == true then return require("parry.dist").data_parallel(model) end
  if type(distributed) == "table" and type(distributed.sync) == "function" then return distributed end
  M.raise(fname .. ": distributed must be true, false or a parry.dist.data_parallel object, got " .. type(distributed))
end

--- with_status(run): runs run(show) with show a status-line function on
-- stderr when it is a terminal (nil otherwise), clearing the line however run
-- ends. The bindings already position their errors at the script's line, so
-- they pass unchanged.
function M.with_status(run)
  local core = require("parry.core")
  local tty = core._fs.isatty(2)
  local show = tty and function(msg) io.stderr:write("\r", msg, "\027[K") end or nil
  local r = table.pack(pcall(run, show))
  if tty then io.stderr:write("\r\027[K") end
  if not r[1] then error(r[2], 0) end
  return table.unpack(r, 2, r.n)
end

--- shortest_float(x): the shortest decimal (15–17 significant digits) that
-- reads back as the same double.
function M.shortest_float(x)
  for p = 15, 17 do
    local s = string.format("%." .. p .. "g", x)
    if tonumber(s) == x then return s end
  end
  return string.format("%.17g", x)
end

return M
