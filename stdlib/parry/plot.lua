--- parry.plot: SVG line, scatter and bar charts with axes, ticks, legend and
-- title, written to a file that any browser opens.
--
--   local plot = require("parry.plot")     -- or parry.plot
--   local fig = plot.figure{title = "Robust accuracy vs ε", xlabel = "ε", ylabel = "accuracy"}
--   fig:line({0, 0.05, 0.1}, {0.90, 0.55, 0.12}, {label = "standard"})
--   fig:line({0, 0.05, 0.1}, {0.81, 0.74, 0.66}, {label = "PGD-AT", dashed = true})
--   fig:save("robust_vs_eps.svg")
--   plot.bar{labels = {"FedAvg", "RFFL"}, values = {0.68, 0.81}, title = "mean honest accuracy", file = "fl.svg"}
local M = {}

local palette = { "#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf" }

-- Raises at the first caller outside this file, so messages point at the script's line.
local function fail(fn, msg) require("parry._util").raise("parry.plot." .. fn .. ": " .. msg) end

local function esc(s)
  return (tostring(s):gsub("[&<>\"']", { ["&"] = "&amp;", ["<"] = "&lt;", [">"] = "&gt;", ['"'] = "&quot;", ["'"] = "&apos;" }))
end

local function numbers(fn, what, t)
  if type(t) == "table" and getmetatable(t) and getmetatable(t).__name == "parry.Tensor" then t = t:totable() end
  if type(t) ~= "table" or #t == 0 then fail(fn, what .. " must be a non-empty list of numbers") end
  for i, v in ipairs(t) do
    if type(v) ~= "number" then fail(fn, what .. "[" .. i .. "] is a " .. type(v) .. ", expected a number") end
  end
  return t
end

--- ticks(lo, hi [, n=5]) -> "nice" tick values (steps of 1, 2 or 5 × 10^k) covering [lo, hi].
function M.ticks(lo, hi, n)
  n = n or 5
  if hi < lo then lo, hi = hi, lo end
  if hi == lo then local d = lo == 0 and 1 or math.abs(lo) * 0.1; lo, hi = lo - d, hi + d end
  local raw = (hi - lo) / n
  local mag = 10 ^ math.floor(math.log(raw, 10))
  local step = mag
  for _, m in ipairs{ 1, 2, 5, 10 } do
    if raw <= m * mag * 1.0000001 then step = m * mag; break end
  end
  local out = {}
  local first = math.floor(lo / step + 1e-9)
  for i = first, first + 1000 do
    local v = tonumber(string.format("%.12g", i * step))     -- 0.6, not 0.6000000000000001
    out[#out + 1] = v == 0 and 0 or v
    if v >= hi - step * 1e-9 then break end
  end
  return out, step
end

local function label(v, step)
  local digits = math.max(0, -math.floor(math.log(step, 10) + 1e-9))
  return string.format("%." .. digits .. "f", v)
end

local Figure = {}
Figure.__index = Figure

--- figure{title=, xlabel=, ylabel=, width=640, height=400, ylim={lo, hi}, xlim={lo, hi}} -> a figure.
function M.figure(opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("figure", "expected an options table") end
  return setmetatable({ opts = opts, series = {}, categories = nil }, Figure)
end

local function add(self, fn, kind, xs, ys, o)
  o = o or {}
  if type(o) ~= "table" then fail(fn, "expected an options table") end
  if kind == "bar" then
    if type(xs) ~= "table" or #xs == 0 then fail(fn, "labels must be a non-empty list") end
    ys = numbers(fn, "values", ys)
    if #xs ~= #ys then fail(fn, "labels and values have different lengths (" .. #xs .. " and " .. #ys .. ")") end
    if self.categories and #self.categories ~= #xs then fail(fn, "every bar series needs the same labels") end
    if #self.series > 0 and not self.categories then fail(fn, "cannot mix bars with lines or points") end
    self.categories = xs
  else
    if self.categories then fail(fn, "cannot mix lines or points with bars") end
    xs, ys = numbers(fn, "x", xs), numbers(fn, "y", ys)
    if #xs ~= #ys then fail(fn, "x and y have different lengths (" .. #xs .. " and " .. #ys .. ")") end
  end
  self.series[#self.series + 1] = { kind = kind, x = xs, y = ys, label = o.label, color = o.color or palette[(#self.series % #palette) + 1], dashed = o.dashed }
  return self
end

--- fig:line(x, y [, {label=, color=, dashed=}]) · fig:scatter(x, y, {...}) · fig:bar(labels, values, {...})
function Figure:line(x, y, o) return add(self, "line", "line", x, y, o) end
function Figure:scatter(x, y, o) return add(self, "scatter", "scatter", x, y, o) end
function Figure:bar(labels, values, o) return add(self, "bar", "bar", labels, values, o) end

--- fig:svg() -> the SVG document as a string.
function Figure:svg()
  local o = self.opts
  local W, H = o.width or 640, o.height or 400
  local ml, mr, mt, mb = 70, 20, o.title and 40 or 20, 55
  local pw, ph = W - ml - mr, H - mt - mb
  local out = {
    '<?xml version="1.0" encoding="UTF-8"?>',
    string.format('<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">', W, H, W, H),
    string.format('<rect x="0" y="0" width="%d" height="%d" fill="white"/>', W, H),
  }
  if #self.series == 0 then fail("svg", "the figure has no series") end
  -- data ranges
  local ylo, yhi = math.huge, -math.huge
  local xlo, xhi = math.huge, -math.huge
  for _, s in ipairs(self.series) do
    for i, v in ipairs(s.y) do
      ylo, yhi = math.min(ylo, v), math.max(yhi, v)
      if s.kind ~= "bar" then xlo, xhi = math.min(xlo, s.x[i]), math.max(xhi, s.x[i]) end
    end
  end
  if self.categories then ylo = math.min(ylo, 0); yhi = math.max(yhi, 0) end
  if o.ylim then ylo, yhi = o.ylim[1], o.ylim[2] end
  local yt, ystep = M.ticks(ylo, yhi)
  ylo, yhi = math.min(ylo, yt[1]), math.max(yhi, yt[#yt])
  local function Y(v) return mt + ph - (v - ylo) / (yhi - ylo) * ph end
  local X, xt, xstep
  if self.categories then
    local n = #self.categories
    X = function(i) return ml + (i - 0.5) / n * pw end
  else
    if o.xlim then xlo, xhi = o.xlim[1], o.xlim[2] end
    xt, xstep = M.ticks(xlo, xhi)
    xlo, xhi = math.min(xlo, xt[1]), math.max(xhi, xt[#xt])
    X = function(v) return ml + (v - xlo) / (xhi - xlo) * pw end
  end
  -- grid, ticks and labels
  out[#out + 1] = '<g class="axes" stroke="#ccc" stroke-width="1">'
  for _, v in ipairs(yt) do
    out[#out + 1] = string.format('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>', ml, Y(v), ml + pw, Y(v))
  end
  if xt then for _, v in ipairs(xt) do
    out[#out + 1] = string.format('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f"/>', X(v), mt, X(v), mt + ph)
  end end
  out[#out + 1] = '</g>'
  out[#out + 1] = string.format('<rect x="%d" y="%d" width="%d" height="%d" fill="none" stroke="black"/>', ml, mt, pw, ph)
  out[#out + 1] = '<g class="ticks" fill="black">'
  for _, v in ipairs(yt) do
    out[#out + 1] = string.format('<text x="%.1f" y="%.1f" text-anchor="end">%s</text>', ml - 6, Y(v) + 4, esc(label(v, ystep)))
  end
  if xt then
    for _, v in ipairs(xt) do
      out[#out + 1] = string.format('<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>', X(v), mt + ph + 18, esc(label(v, xstep)))
    end
  else
    for i, c in ipairs(self.categories) do
      out[#out + 1] = string.format('<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>', X(i), mt + ph + 18, esc(c))
    end
  end
  out[#out + 1] = '</g>'
  if o.title then out[#out + 1] = string.format('<text class="title" x="%.1f" y="24" text-anchor="middle" font-size="16">%s</text>', ml + pw / 2, esc(o.title)) end
  if o.xlabel then out[#out + 1] = string.format('<text class="xlabel" x="%.1f" y="%d" text-anchor="middle">%s</text>', ml + pw / 2, H - 12, esc(o.xlabel)) end
  if o.ylabel then out[#out + 1] = string.format('<text class="ylabel" x="16" y="%.1f" text-anchor="middle" transform="rotate(-90 16 %.1f)">%s</text>', mt + ph / 2, mt + ph / 2, esc(o.ylabel)) end
  -- series
  local nbars = 0
  for _, s in ipairs(self.series) do if s.kind == "bar" then nbars = nbars + 1 end end
  local bar_i = 0
  for _, s in ipairs(self.series) do
    local attrs = string.format('data-label="%s"', esc(s.label or ""))
    if s.kind == "line" then
      local pts = {}
      for i = 1, #s.x do pts[i] = string.format("%.1f,%.1f", X(s.x[i]), Y(s.y[i])) end
      out[#out + 1] = string.format('<polyline class="series line" %s points="%s" fill="none" stroke="%s" stroke-width="2"%s/>',
        attrs, table.concat(pts, " "), s.color, s.dashed and ' stroke-dasharray="6 4"' or "")
    elseif s.kind == "scatter" then
      out[#out + 1] = string.format('<g class="series scatter" %s fill="%s">', attrs, s.color)
      for i = 1, #s.x do out[#out + 1] = string.format('<circle cx="%.1f" cy="%.1f" r="3.5"/>', X(s.x[i]), Y(s.y[i])) end
      out[#out + 1] = '</g>'
    else
      bar_i = bar_i + 1
      local slot = pw / #self.categories
      local bw = slot * 0.8 / nbars
      out[#out + 1] = string.format('<g class="series bar" %s fill="%s">', attrs, s.color)
      for i, v in ipairs(s.y) do
        local x = ml + (i - 1) * slot + slot * 0.1 + (bar_i - 1) * bw
        local y0, y1 = Y(math.max(v, 0)), Y(math.min(v, 0))
        out[#out + 1] = string.format('<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f"/>', x, y0, bw, y1 - y0)
      end
      out[#out + 1] = '</g>'
    end
  end
  -- legend
  local labelled = {}
  for _, s in ipairs(self.series) do if s.label then labelled[#labelled + 1] = s end end
  if #labelled > 0 then
    local lw = 0
    for _, s in ipairs(labelled) do lw = math.max(lw, #tostring(s.label)) end
    local bw, bh = lw * 7 + 40, #labelled * 18 + 8
    local lx, ly = ml + pw - bw - 8, mt + 8
    out[#out + 1] = string.format('<g class="legend"><rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="white" fill-opacity="0.85" stroke="#999"/>', lx, ly, bw, bh)
    for i, s in ipairs(labelled) do
      local y = ly + 4 + (i - 0.5) * 18
      if s.kind == "line" then
        out[#out + 1] = string.format('<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"%s/>', lx + 6, y, lx + 26, y, s.color, s.dashed and ' stroke-dasharray="6 4"' or "")
      elseif s.kind == "scatter" then
        out[#out + 1] = string.format('<circle cx="%.1f" cy="%.1f" r="3.5" fill="%s"/>', lx + 16, y, s.color)
      else
        out[#out + 1] = string.format('<rect x="%.1f" y="%.1f" width="14" height="10" fill="%s"/>', lx + 9, y - 5, s.color)
      end
      out[#out + 1] = string.format('<text x="%.1f" y="%.1f">%s</text>', lx + 32, y + 4, esc(s.label))
    end
    out[#out + 1] = '</g>'
  end
  out[#out + 1] = '</svg>'
  return table.concat(out, "\n") .. "\n"
end

--- fig:save(path): writes the SVG file; returns the path.
function Figure:save(path)
  if type(path) ~= "string" then fail("save", "expected a file path, got " .. type(path)) end
  local ok, err = require("parry._util").write_file(path, self:svg())
  if not ok then fail("save", "cannot write " .. path .. ": " .. tostring(err)) end
  return path
end

local function quick(kind, spec)
  if type(spec) ~= "table" then fail(kind, "expected a table of settings") end
  local fig = M.figure{ title = spec.title, xlabel = spec.xlabel, ylabel = spec.ylabel, width = spec.width,
    height = spec.height, ylim = spec.ylim, xlim = spec.xlim }
  if kind == "bar" then
    if spec.series then
      for _, s in ipairs(spec.series) do fig:bar(spec.labels, s.values or s.y, s) end
    else fig:bar(spec.labels, spec.values, { label = spec.label }) end
  else
    local series = spec.series or { { x = spec.x, y = spec.y, label = spec.label } }
    for _, s in ipairs(series) do fig[kind](fig, s.x or spec.x, s.y, s) end
  end
  if spec.file then fig:save(spec.file) end
  return fig
end

--- line{x=, y= | series={{x=, y=, label=}...}, title=, xlabel=, ylabel=, file=} · scatter{...} · bar{labels=, values= | series=, ...}
-- One-call charts; `file` saves the SVG. Return the figure.
function M.line(spec) return quick("line", spec) end
function M.scatter(spec) return quick("scatter", spec) end
function M.bar(spec) return quick("bar", spec) end

return M
