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

--- write_file(path, text) -> true, or nil and the reason.
function M.write_file(path, text)
  local f, err = io.open(path, "wb")
  if not f then return nil, err end
  f:write(text)
  f:close()
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

--- raise(msg): error(msg) positioned at the first stack frame outside the
-- file that called raise, so a library's messages point at the script's line
-- however deep inside the library the check sits.
function M.raise(msg)
  local here = debug.getinfo(2, "S").source
  local level = 2
  while true do
    local info = debug.getinfo(level, "S")
    if not info or info.source ~= here then break end
    level = level + 1
  end
  error(msg, level)
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
