--- parry.table: aligned console tables, Markdown and CSV from a list of rows.
--
--   local T = require("parry.table")      -- or parry.table
--   local rows = {{method = "PGD-AT", clean = 0.808, robust = 0.688}, {method = "TRADES", clean = 0.815, robust = 0.691}}
--   print(T.format(rows, {columns = {"method", "clean", "robust"}}))
--   print(T.format(rows, {format = "markdown"}))
--   T.write_csv("results.csv", rows)
local util = require("parry._util")
local M = {}

local function fail(fn, msg) util.raise("parry.table." .. fn .. ": " .. msg) end

local function check(fn, rows, opts)
  if type(rows) ~= "table" then fail(fn, "expected a list of rows, got " .. type(rows)) end
  local checked, err = util.check_options(opts, { columns = true, headers = true, precision = true, format = true, title = true })
  if not checked then fail(fn, err) end
  opts = checked
  for i, r in ipairs(rows) do
    if type(r) ~= "table" then fail(fn, "row " .. i .. " is a " .. type(r) .. ", expected a table") end
  end
  return opts
end

-- The column keys: given, or the keys of list rows by position, or the
-- record rows' keys in first-seen order (sorted within each row).
local function columns(rows, opts)
  if opts.columns then return opts.columns end
  local cols, seen = {}, {}
  for _, r in ipairs(rows) do
    if #r > 0 then
      for j = 1, #r do if not seen[j] then seen[j] = true; cols[#cols + 1] = j end end
    else
      local keys = {}
      for k in pairs(r) do if not seen[k] then keys[#keys + 1] = k end end
      table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
      for _, k in ipairs(keys) do seen[k] = true; cols[#cols + 1] = k end
    end
  end
  return cols
end

local function cell(v, precision)
  if v == nil then return "" end
  if math.type(v) == "float" then
    if v ~= v then return "nan" end
    if v == math.huge then return "inf" elseif v == -math.huge then return "-inf" end
    return string.format("%." .. precision .. "f", v)
  end
  if type(v) == "table" and getmetatable(v) == nil then return "{...}" end
  return tostring(v)
end

local function grid(fn, rows, opts)
  opts = check(fn, rows, opts)
  local cols = columns(rows, opts)
  local headers = {}
  for j, c in ipairs(cols) do headers[j] = tostring((opts.headers and opts.headers[j]) or c) end
  local body, numeric = {}, {}
  for j in ipairs(cols) do numeric[j] = true end
  for i, r in ipairs(rows) do
    body[i] = {}
    for j, c in ipairs(cols) do
      local v = r[c]
      body[i][j] = cell(v, opts.precision or 4)
      if v ~= nil and type(v) ~= "number" then numeric[j] = false end
    end
  end
  return headers, body, numeric, opts
end

local function width(s) return utf8.len(s) or #s end
local function pad(s, w, right)
  local fill = string.rep(" ", w - width(s))
  return right and (fill .. s) or (s .. fill)
end

--- format(rows [, {columns=, headers=, precision=4, format="text"|"markdown"|"csv", title=}]) -> string.
-- Rows are tables keyed by column (records) or lists; numbers are right-aligned,
-- floats printed with `precision` decimals.
local format_as, csv_as    -- the public functions' bodies, under the caller's name
function M.format(rows, opts) return format_as("format", rows, opts) end

-- format under the name of the public function the script called (format or print).
function format_as(fn, rows, opts)
  local headers, body, numeric, o = grid(fn, rows, opts)
  local fmt = o.format or "text"
  if fmt == "csv" then return csv_as(fn, rows, opts) end
  local w = {}
  for j, h in ipairs(headers) do w[j] = width(h) end
  for _, r in ipairs(body) do for j, s in ipairs(r) do w[j] = math.max(w[j], width(s)) end end
  local out = {}
  if o.title then out[#out + 1] = (fmt == "markdown" and "**" .. o.title .. "**" or o.title) end
  if fmt == "markdown" then
    local function line(cells)
      local parts = {}
      for j, s in ipairs(cells) do parts[j] = pad(s:gsub("|", "\\|"), w[j], numeric[j]) end
      return "| " .. table.concat(parts, " | ") .. " |"
    end
    out[#out + 1] = line(headers)
    local rule = {}
    for j in ipairs(headers) do rule[j] = numeric[j] and (string.rep("-", math.max(w[j] - 1, 2)) .. ":") or string.rep("-", math.max(w[j], 3)) end
    out[#out + 1] = "| " .. table.concat(rule, " | ") .. " |"
    for _, r in ipairs(body) do out[#out + 1] = line(r) end
  elseif fmt == "text" then
    local function line(cells)
      local parts = {}
      for j, s in ipairs(cells) do parts[j] = pad(s, w[j], numeric[j]) end
      return (table.concat(parts, "  "):gsub("%s+$", ""))
    end
    out[#out + 1] = line(headers)
    local rule = {}
    for j in ipairs(headers) do rule[j] = string.rep("-", w[j]) end
    out[#out + 1] = table.concat(rule, "  ")
    for _, r in ipairs(body) do out[#out + 1] = line(r) end
  else
    fail("format", "format must be \"text\", \"markdown\" or \"csv\", got " .. tostring(fmt))
  end
  return table.concat(out, "\n")
end

--- print(rows [, opts]): prints `format(rows, opts)`.
function M.print(rows, opts) print(format_as("print", rows, opts)) end

local function csv_field(s)
  if s:find('[,"\n\r]') then return '"' .. s:gsub('"', '""') .. '"' end
  return s
end

--- csv(rows [, {columns=, headers=, precision=}]) -> CSV text (RFC 4180 quoting; floats at full precision unless `precision`).
function M.csv(rows, opts) return csv_as("csv", rows, opts) end

function csv_as(fn, rows, opts)
  opts = check(fn, rows, opts)
  local o = {}
  for k, v in pairs(opts) do o[k] = v end
  o.format = nil
  local cols = columns(rows, o)
  local out = {}
  local head = {}
  for j, c in ipairs(cols) do head[j] = csv_field(tostring((o.headers and o.headers[j]) or c)) end
  out[1] = table.concat(head, ",")
  for _, r in ipairs(rows) do
    local f = {}
    for j, c in ipairs(cols) do
      local v = r[c]
      local s = (math.type(v) == "float" and not o.precision and v == v and v ~= math.huge and v ~= -math.huge)
        and util.shortest_float(v) or cell(v, o.precision or 4)
      f[j] = csv_field(s)
    end
    out[#out + 1] = table.concat(f, ",")
  end
  return table.concat(out, "\n") .. "\n"
end

--- write_csv(path, rows [, opts]): writes `csv(rows, opts)` to a file.
function M.write_csv(path, rows, opts)
  if type(path) ~= "string" then fail("write_csv", "expected a file path, got " .. type(path)) end
  local ok, err = util.write_file(path, csv_as("write_csv", rows, opts))
  if not ok then fail("write_csv", "cannot write " .. path .. ": " .. tostring(err)) end
end

--- read_csv(path) -> rows (records keyed by the header; numbers converted).
function M.read_csv(path)
  if type(path) ~= "string" then fail("read_csv", "expected a file path, got " .. type(path)) end
  local text, err = util.read_file(path)
  if not text then fail("read_csv", "cannot read " .. tostring(path) .. ": " .. tostring(err)) end
  local records, row, i, quoted = {}, {}, 1, false
  local cur = {}
  while i <= #text do
    local ch = text:sub(i, i)
    if quoted then
      if ch == '"' then
        if text:sub(i + 1, i + 1) == '"' then cur[#cur + 1] = '"'; i = i + 1 else quoted = false end
      else cur[#cur + 1] = ch end
    elseif ch == '"' then quoted = true
    elseif ch == "," then row[#row + 1] = table.concat(cur); cur = {}
    elseif ch == "\n" then row[#row + 1] = table.concat(cur); cur = {}; records[#records + 1] = row; row = {}
    elseif ch ~= "\r" then cur[#cur + 1] = ch end
    i = i + 1
  end
  if #cur > 0 or #row > 0 then row[#row + 1] = table.concat(cur); records[#records + 1] = row end
  local header = table.remove(records, 1) or {}
  local rows = {}
  for k, r in ipairs(records) do
    rows[k] = {}
    for j, name in ipairs(header) do
      local v = r[j]
      rows[k][name] = (v ~= nil and v ~= "" and tonumber(v)) or (v ~= "" and v or nil)
    end
  end
  return rows, header
end

return M
