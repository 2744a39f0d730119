--- parry.json: JSON encode/decode in pure Lua.
--
--   local json = require("parry.json")     -- or parry.json
--   local s = json.encode({name = "run", acc = {0.81, 0.83}, ok = true})
--   local t = json.decode(s)
-- Objects become tables with string keys, arrays 1-based lists; `json.null`
-- stands for null inside arrays and objects. Tables with keys 1..n encode as
-- arrays, other tables as objects (keys sorted, so output is stable); an
-- empty table encodes as `[]` unless marked with `json.object({})`.
local M = {}

local function fail(fn, msg) require("parry._util").raise("parry.json." .. fn .. ": " .. msg) end
M.null = setmetatable({}, { __tostring = function() return "json.null" end })
local object_mt = { __name = "json.object" }

--- object(t): marks t to encode as a JSON object even when empty.
function M.object(t)
  if t ~= nil and (type(t) ~= "table" or getmetatable(t) ~= nil) then
    fail("object", "expected a plain table or nothing, got " .. type(t))
  end
  return setmetatable(t or {}, object_mt)
end


local escapes = { ['"'] = '\\"', ["\\"] = "\\\\", ["\b"] = "\\b", ["\f"] = "\\f", ["\n"] = "\\n", ["\r"] = "\\r", ["\t"] = "\\t" }

local function encode_string(s)
  return '"' .. s:gsub('[%c"\\]', function(c) return escapes[c] or string.format("\\u%04x", c:byte()) end) .. '"'
end

local function is_array(t)
  if getmetatable(t) == object_mt then return false end
  local n = 0
  for k in pairs(t) do
    if math.type(k) ~= "integer" or k < 1 then return false end
    n = n + 1
  end
  for i = 1, n do if t[i] == nil then return false end end
  return true
end

local shortest = require("parry._util").shortest_float

local function encode(v, indent, depth, seen, out)
  local t = type(v)
  if v == nil or v == M.null then out[#out + 1] = "null"
  elseif t == "boolean" then out[#out + 1] = tostring(v)
  elseif t == "number" then
    if v ~= v or v == math.huge or v == -math.huge then fail("encode", "cannot encode " .. tostring(v) .. " (JSON has no nan/inf)") end
    local f = math.type(v) == "integer" and tostring(v) or shortest(v)
    if math.type(v) == "float" and not f:find("[%.eEn]") then f = f .. ".0" end
    out[#out + 1] = f
  elseif t == "string" then out[#out + 1] = encode_string(v)
  elseif t == "table" then
    if seen[v] then fail("encode", "cannot encode a table that contains itself") end
    seen[v] = true
    local nl = indent and ("\n" .. string.rep(indent, depth + 1)) or ""
    local close = indent and ("\n" .. string.rep(indent, depth)) or ""
    if is_array(v) then
      if #v == 0 then out[#out + 1] = "[]" else
        out[#out + 1] = "["
        for i = 1, #v do
          if i > 1 then out[#out + 1] = "," end
          out[#out + 1] = nl
          encode(v[i], indent, depth + 1, seen, out)
        end
        out[#out + 1] = close .. "]"
      end
    else
      local keys = {}
      for k in pairs(v) do
        if type(k) ~= "string" and type(k) ~= "number" then fail("encode", "object keys must be strings or numbers, got " .. type(k)) end
        keys[#keys + 1] = k
      end
      table.sort(keys, function(a, b) return tostring(a) < tostring(b) end)
      if #keys == 0 then out[#out + 1] = "{}" else
        out[#out + 1] = "{"
        for i, k in ipairs(keys) do
          if i > 1 then out[#out + 1] = "," end
          out[#out + 1] = nl .. encode_string(tostring(k)) .. (indent and ": " or ":")
          encode(v[k], indent, depth + 1, seen, out)
        end
        out[#out + 1] = close .. "}"
      end
    end
    seen[v] = nil
  else
    fail("encode", "cannot encode a " .. t)
  end
end

--- encode(value [, {indent="  "}]) -> JSON text.
function M.encode(v, opts)
  if opts ~= nil and type(opts) ~= "table" then fail("encode", "expected an options table, got " .. type(opts)) end
  local out = {}
  encode(v, opts and opts.indent, 0, {}, out)
  return table.concat(out)
end

--- decode(text) -> value; errors name the position of the problem.
function M.decode(s)
  if type(s) ~= "string" then fail("decode", "expected a string, got " .. type(s)) end
  local pos = 1
  local function err(msg) fail("decode", msg .. " at position " .. pos) end
  local function ws() pos = s:find("[^ \t\r\n]", pos) or #s + 1 end
  local value
  local function str()
    pos = pos + 1
    local out = {}
    while true do
      local c = s:sub(pos, pos)
      if c == "" then err("unterminated string") end
      if c == '"' then pos = pos + 1; break end
      if c == "\\" then
        local e = s:sub(pos + 1, pos + 1)
        local map = { b = "\b", f = "\f", n = "\n", r = "\r", t = "\t", ['"'] = '"', ["\\"] = "\\", ["/"] = "/" }
        if map[e] then out[#out + 1] = map[e]; pos = pos + 2
        elseif e == "u" then
          local hex = s:sub(pos + 2, pos + 5)
          if not hex:match("^%x%x%x%x$") then err("bad \\u escape") end
          local cp = tonumber(hex, 16)
          pos = pos + 6
          if cp >= 0xD800 and cp <= 0xDBFF and s:sub(pos, pos + 1) == "\\u" then
            local lo = tonumber(s:sub(pos + 2, pos + 5), 16)
            if lo and lo >= 0xDC00 and lo <= 0xDFFF then cp = 0x10000 + (cp - 0xD800) * 0x400 + (lo - 0xDC00); pos = pos + 6 end
          end
          out[#out + 1] = utf8.char(cp)
        else err("bad escape \\" .. e) end
      else
        if c:byte() < 32 then err("control character in string") end
        out[#out + 1] = c
        pos = pos + 1
      end
    end
    return table.concat(out)
  end
  -- After a container's element: true at its closing bracket, past a ',' otherwise.
  local function closes(close)
    ws()
    local d = s:sub(pos, pos)
    pos = pos + 1
    if d == close then return true end
    if d ~= "," then pos = pos - 1; err("expected ',' or '" .. close .. "'") end
    return false
  end
  function value()
    ws()
    local c = s:sub(pos, pos)
    if c == "{" then
      pos = pos + 1
      local t = M.object({})
      ws()
      if s:sub(pos, pos) == "}" then pos = pos + 1; return t end
      while true do
        ws()
        if s:sub(pos, pos) ~= '"' then err("expected a string key") end
        local k = str()
        ws()
        if s:sub(pos, pos) ~= ":" then err("expected ':'") end
        pos = pos + 1
        t[k] = value()
        if closes("}") then return t end
      end
    elseif c == "[" then
      pos = pos + 1
      local t = {}
      ws()
      if s:sub(pos, pos) == "]" then pos = pos + 1; return t end
      while true do
        t[#t + 1] = value()
        if closes("]") then return t end
      end
    elseif c == '"' then return str()
    elseif s:sub(pos, pos + 3) == "true" then pos = pos + 4; return true
    elseif s:sub(pos, pos + 4) == "false" then pos = pos + 5; return false
    elseif s:sub(pos, pos + 3) == "null" then pos = pos + 4; return M.null
    else
      local num = s:match("^-?%d+%.?%d*[eE]?[-+]?%d*", pos)
      if not num or num == "" or num == "-" then err(c == "" and "unexpected end of input" or ("unexpected character '" .. c .. "'")) end
      pos = pos + #num
      local n
      if not num:find("[%.eE]") then n = math.tointeger(tonumber(num)) or tonumber(num) else n = tonumber(num) + 0.0 end
      if n == nil then err("bad number " .. num) end
      return n
    end
  end
  local v = value()
  ws()
  if pos <= #s then err("trailing characters") end
  return v
end

--- read(path) / write(path, value [, opts]): JSON files.
local util = require("parry._util")

function M.read(path)
  if type(path) ~= "string" then fail("read", "expected a file path, got " .. type(path)) end
  local text, e = util.read_file(path)
  if not text then fail("read", "cannot read " .. tostring(path) .. ": " .. tostring(e)) end
  return M.decode(text)
end

function M.write(path, v, opts)
  if type(path) ~= "string" then fail("write", "expected a file path, got " .. type(path)) end
  local encoded, text = pcall(M.encode, v, opts or { indent = "  " })
  if not encoded then fail("write", (tostring(text):gsub("^.-parry%.json%.encode: ", ""))) end
  local ok, e = util.write_file(path, text .. "\n")
  if not ok then fail("write", "cannot write " .. tostring(path) .. ": " .. tostring(e)) end
end

return M
