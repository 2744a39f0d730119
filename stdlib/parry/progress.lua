--- parry.progress: a progress bar with rate and ETA for loops.
--
--   for i in parry.progress(100, {desc = "epochs"}) do ... end
--   for xb, yb in parry.progress(ds:batches(128), {desc = "train", total = math.ceil(#ds / 128)}) do ... end
--   local p = parry.progress.new(n, {desc = "attack"}); p:update(k); p:close()
-- On a terminal (stderr) it redraws one line; otherwise it prints plain lines
-- about every 10% (or every `every` seconds), so logs stay readable.
local core = require("parry.core")
local M = {}

local Bar = {}
Bar.__index = Bar

local function fail(msg) require("parry._util").raise("parry.progress: " .. msg) end

local function duration(s)
  if s ~= s or s == math.huge then return "?" end
  if s < 60 then return string.format("%.0fs", s) end
  if s < 3600 then return string.format("%dm%02ds", s // 60, math.floor(s % 60)) end
  return string.format("%dh%02dm", s // 3600, math.floor(s % 3600 / 60))
end

--- new(total [, {desc=, out=, tty=, every=, width=30}]) -> a bar with :update(n), :step(k), :close().
-- `out` is a function(string) (default: stderr); `tty` forces the mode.
function M.new(total, opts)
  if total ~= nil and (type(total) ~= "number" or total < 0) then fail("total must be a non-negative number or nil") end
  opts = opts or {}
  if type(opts) ~= "table" then fail("expected an options table") end
  local tty = opts.tty
  if tty == nil then tty = opts.out == nil and core._fs.isatty(2) end
  local self = setmetatable({
    total = total, n = 0, desc = opts.desc or "", start = core.clock(), last = -math.huge, last_n = -1,
    tty = tty, every = opts.every, width = opts.width or 30,
    out = opts.out or function(s) io.stderr:write(s); io.stderr:flush() end,
  }, Bar)
  return self
end

function Bar:line()
  local elapsed = core.clock() - self.start
  local rate = elapsed > 0 and self.n / elapsed or 0
  local head = self.desc ~= "" and (self.desc .. " ") or ""
  if self.total and self.total > 0 then
    local frac = math.min(self.n / self.total, 1)
    local eta = rate > 0 and (self.total - self.n) / rate or math.huge
    local bar = ""
    if self.tty then
      local filled = math.floor(frac * self.width + 0.5)
      bar = "[" .. string.rep("#", filled) .. string.rep(".", self.width - filled) .. "] "
    end
    return string.format("%s%s%d/%d (%3.0f%%) %.1f it/s, %s elapsed, ETA %s", head, bar, self.n, self.total,
      100 * frac, rate, duration(elapsed), duration(eta))
  end
  return string.format("%s%d it, %.1f it/s, %s elapsed", head, self.n, rate, duration(elapsed))
end

function Bar:draw(final)
  local now = core.clock()
  if self.tty then
    if final or now - self.last >= 0.1 then
      self.out("\r" .. self:line() .. "\27[K" .. (final and "\n" or ""))
      self.last = now
    end
    return
  end
  local due
  if final then due = true
  elseif self.every then due = now - self.last >= self.every
  elseif self.total and self.total > 0 then
    due = math.floor(10 * self.n / self.total) > math.floor(10 * math.max(self.last_n, 0) / self.total) or self.last_n < 0
  else due = now - self.last >= 10 end
  if due and self.n ~= self.last_n then
    self.out(self:line() .. "\n")
    self.last, self.last_n = now, self.n
  end
end

--- bar:update(n): sets the count; bar:step([k]) adds k (1); bar:close() prints the final line.
function Bar:update(n) self.n = n; self:draw(false) end
function Bar:step(k) self.n = self.n + (k or 1); self:draw(false) end
function Bar:close() if not self.closed then self.closed = true; self:draw(true) end end

--- progress(n_or_iterator [, opts]): an iterator over 1..n, or over another
-- iterator's values, that draws the bar as it goes (`total=` for iterators).
local function progress(what, opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("expected an options table, got " .. type(opts)) end
  if math.type(what) == "integer" then
    local bar = M.new(what, opts)
    local i = 0
    return function()
      i = i + 1
      if i > what then bar.n = what; bar:close(); return nil end
      if i > 1 then bar:step() else bar:draw(false) end
      return i
    end
  elseif type(what) == "function" then
    local bar = M.new(opts.total, opts)
    local first = true
    return function(...)
      if not first then bar:step() end
      first = false
      local r = table.pack(what(...))
      if r[1] == nil then bar:close(); return nil end
      return table.unpack(r, 1, r.n)
    end
  end
  fail("expected a count or an iterator function, got " .. type(what))
end

return setmetatable(M, { __call = function(_, ...) return progress(...) end })
