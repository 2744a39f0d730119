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
