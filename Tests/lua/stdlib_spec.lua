-- The experiment stdlib: parry.table, parry.json, parry.plot, parry.progress, parry.exp.
local parry = require("parry")
local fs = require("parry.core")._fs

local function tmpdir()
  local d = os.tmpname()
  os.remove(d)
  fs.mkdir(d)
  return d
end

describe("parry.table", function()
  local rows = {{method = "PGD-AT", clean = 0.808, robust = 0.688}, {method = "TRADES", clean = 0.815, robust = 0.6914}}
  it("aligns columns: text left, numbers right, floats at the given precision", function()
    local s = parry.table.format(rows, {columns = {"method", "clean", "robust"}, precision = 3})
    assert.equals(table.concat({
      "method  clean  robust",
      "------  -----  ------",
      "PGD-AT  0.808   0.688",
      "TRADES  0.815   0.691",
    }, "\n"), s)
  end)
  it("writes Markdown and CSV, and reads CSV back", function()
    local md = parry.table.format(rows, {columns = {"method", "clean"}, format = "markdown"})
    assert.equals("| method |  clean |\n| ------ | -----: |\n| PGD-AT | 0.8080 |\n| TRADES | 0.8150 |", md)
    local csv = parry.table.csv({{name = 'a,"b"', v = 0.1}, {name = "c", v = 2}}, {columns = {"name", "v"}})
    assert.equals('name,v\n"a,""b""",0.1\nc,2\n', csv)
    local path = os.tmpname()
    parry.table.write_csv(path, rows, {columns = {"method", "robust"}})
    local back, header = parry.table.read_csv(path)
    os.remove(path)
    assert.same({"method", "robust"}, header)
    assert.equals(0.6914, back[2].robust)
    assert.equals("TRADES", back[2].method)
  end)
  it("rejects bad rows and options", function()
    assert.error(function() parry.table.format({1, 2}) end, "parry.table.format: row 1 is a number")
    assert.error(function() parry.table.format(rows, {colour = 1}) end, "unknown option 'colour'")
    assert.error(function() parry.table.format(rows, {format = "html"}) end, "format must be")
  end)
end)

describe("parry.json", function()
  it("round-trips nested values, integers vs floats, escapes and null", function()
    local v = {name = "run \"1\"\n", acc = {0.81, 0.83}, n = 3, ok = false, nested = {a = parry.json.null, list = {}}, u = "é€𝄞"}
    local s = parry.json.encode(v)
    local back = parry.json.decode(s)
    assert.equals(v.name, back.name)
    assert.equals(0.83, back.acc[2])
    assert.equals("integer", math.type(back.n))
    assert.is_false(back.ok)
    assert.equals(parry.json.null, back.nested.a)
    assert.equals(v.u, back.u)
    assert.equals('{"a":[1,2.5,"x"],"b":{}}', parry.json.encode({a = {1, 2.5, "x"}, b = parry.json.object{}}))
    assert.equals("𝄞", parry.json.decode('"\\ud834\\udd1e"'))
    assert.equals(1.0, parry.json.decode("1.0"))
    assert.equals("float", math.type(parry.json.decode("1e2")))
  end)
  it("reports errors with positions", function()
    assert.error(function() parry.json.decode('{"a": [1, 2,, 3]}') end, "parry.json.decode: unexpected character ',' at position 13")
    assert.error(function() parry.json.decode('{"a": 1} x') end, "trailing characters")
    assert.error(function() parry.json.encode({f = print}) end, "cannot encode a function")
    assert.error(function() parry.json.encode(0 / 0) end, "no nan/inf")
    local t = {}; t.t = t
    assert.error(function() parry.json.encode(t) end, "contains itself")
  end)
end)

-- A minimal XML well-formedness check: tags balance, attributes are quoted.
local function check_xml(s)
  local stack = {}
  local body = s:gsub("^<%?xml.-%?>%s*", "")
  for tag in body:gmatch("<([^>]+)>") do
    if tag:sub(1, 1) == "/" then
      local name = tag:sub(2):match("^%s*([%w:_-]+)")
      assert.equals(stack[#stack], name, "mismatched </" .. tostring(name) .. ">")
      stack[#stack] = nil
    elseif tag:sub(-1) ~= "/" then
      stack[#stack + 1] = tag:match("^([%w:_-]+)")
      local attrs = tag:gsub("^[%w:_-]+", "")
      assert.truthy(not attrs:find("=[^\"]"), "unquoted attribute in <" .. tag .. ">")
    end
  end
  assert.equals(0, #stack, "unclosed tags: " .. table.concat(stack, ", "))
  assert.falsy(body:gsub("<[^>]+>", ""):find("[<>]"), "stray angle bracket in text")
end

describe("parry.plot", function()
  it("writes well-formed SVG with one element per series and point", function()
    local fig = parry.plot.figure{title = "acc < 1 & robust", xlabel = "ε", ylabel = "accuracy"}
    fig:line({0, 0.05, 0.1}, {0.9, 0.55, 0.12}, {label = "standard"})
    fig:line({0, 0.05, 0.1}, {0.81, 0.74, 0.66}, {label = "PGD-AT", dashed = true})
    fig:scatter({0.02, 0.04, 0.06, 0.08}, {0.5, 0.6, 0.4, 0.3}, {label = "probes"})
    local svg = fig:svg()
    check_xml(svg)
    local _, lines = svg:gsub('<polyline class="series line"', "")
    assert.equals(2, lines)
    local points = svg:match('data%-label="standard" points="([^"]+)"')
    local _, n = points:gsub("[%d.]+,[%d.]+", "")
    assert.equals(3, n)
    local scatter = svg:match('<g class="series scatter".-</g>')
    local _, dots = scatter:gsub("<circle", "")
    assert.equals(4, dots)
    assert.truthy(svg:find("acc &lt; 1 &amp; robust", 1, true))
    assert.truthy(svg:find('class="legend"', 1, true))
    local path = os.tmpname() .. ".svg"
    parry.plot.bar{labels = {"FedAvg", "RFFL"}, series = {{values = {0.68, 0.81}, label = "free riders"}, {values = {0.85, 0.81}, label = "flips"}}, file = path}
    local f = assert(io.open(path)); local bars = f:read("a"); f:close(); os.remove(path)
    check_xml(bars)
    local _, rects = bars:match('<g class="series bar".-</g>'):gsub("<rect", "")
    assert.equals(2, rects)
  end)
  it("picks 1-2-5 ticks and rejects bad series", function()
    local t = parry.plot.ticks(0.12, 0.9)
    assert.equals(6, #t)
    for i, v in ipairs{0, 0.2, 0.4, 0.6, 0.8, 1} do assert.equals(v, t[i]) end
    assert.same({0, 20, 40, 60, 80, 100}, parry.plot.ticks(0, 100))
    assert.error(function() parry.plot.figure():line({1, 2}, {1}) end, "parry.plot.line: x and y have different lengths")
    assert.error(function() parry.plot.figure():line({1, "a"}, {1, 2}) end, "x[2] is a string")
    assert.error(function() parry.plot.figure():svg() end, "no series")
  end)
end)

describe("parry.progress", function()
  it("prints plain periodic lines off a terminal and a final count", function()
    local lines = {}
    local sum = 0
    for i in parry.progress(50, {desc = "work", out = function(s) lines[#lines + 1] = s end}) do sum = sum + i end
    assert.equals(1275, sum)
    assert.truthy(#lines >= 10 and #lines <= 12, #lines .. " lines")
    assert.truthy(lines[#lines]:find("^work 50/50 %(100%%%)"), lines[#lines])
    assert.truthy(lines[#lines]:find("it/s", 1, true))
    for _, l in ipairs(lines) do assert.falsy(l:find("\r", 1, true)) end
    -- wrapping an iterator keeps its values
    local got = {}
    local k = 0
    for a, b in parry.progress(function() k = k + 1; if k <= 3 then return k, k * k end end, {total = 3, out = function() end}) do
      got[#got + 1] = a + b
    end
    assert.same({2, 6, 12}, got)
    -- on a terminal the bar redraws one line
    local tty = {}
    local bar = parry.progress.new(4, {tty = true, out = function(s) tty[#tty + 1] = s end})
    bar:update(4); bar:close()
    assert.truthy(tty[#tty]:find("^\r%[#+%] 4/4"), tty[#tty])
    assert.error(function() parry.progress("x") end, "parry.progress: expected a count or an iterator")
  end)
end)

describe("parry.exp", function()
  it("writes config, metrics, summary and log for runs and grids", function()
    local dir = tmpdir()
    local r = parry.exp.run{name = "demo", dir = dir, config = {lr = 0.1}, seed = 3, quiet = true, fn = function(run, config)
      run.log(1, {loss = 0.5})
      run.log(2, {loss = 0.25, acc = 0.9})
      print("hello from the run")
      return {acc = 0.9, lr = config.lr}
    end}
    assert.equals(0.1, parry.json.read(r.dir .. "/config.json").lr)
    local s = parry.json.read(r.dir .. "/summary.json")
    assert.equals(0.9, s.acc)
    assert.equals("ok", s._status)
    assert.equals(3, s._seed)
    assert.equals(require("parry.core").version, s._parry)
    local m = parry.table.read_csv(r.dir .. "/metrics.csv")
    assert.equals(2, #m)
    assert.equals(0.25, m[2].loss)
    assert.equals(0.9, m[2].acc)
    assert.is_nil(m[1].acc)
    local f = assert(io.open(r.dir .. "/log.txt")); local log = f:read("a"); f:close()
    assert.equals("hello from the run\n", log)
    -- a failing run is recorded and re-raised
    assert.error(function() parry.exp.run{name = "bad", dir = dir, quiet = true, fn = function() error("nope") end} end, "nope")
    local runs = parry.exp.grid{name = "sweep", dir = dir, grid = {lr = {0.1, 0.01}, tau = {0.5, 1, 2}}, quiet = true,
      fn = function(_, c) return {score = c.lr * c.tau} end}
    assert.equals(6, #runs)
    local listed = parry.exp.list(dir)
    assert.equals(8, #listed)
    local failed = 0
    for _, x in ipairs(listed) do if x.status == "failed" then failed = failed + 1 end end
    assert.equals(1, failed)
    fs.rmtree(dir)
  end)

  it("raises a failing configuration of a grid, or records it and goes on with keep_going", function()
    local dir = tmpdir()
    local function fn(_, c)
      if c.lr == 0.01 and c.tau == 1 then error("diverged") end
      return {score = c.lr * c.tau}
    end
    local spec = {name = "sweep", dir = dir, grid = {lr = {0.1, 0.01}, tau = {0.5, 1}}, quiet = true, fn = fn}
    assert.error(function() parry.exp.grid(spec) end, "diverged")
    spec.keep_going = true
    local runs = parry.exp.grid(spec)
    assert.equals(4, #runs)
    -- grid order: keys sorted (lr, then tau), values in their list order
    assert.same({"ok", "ok", "ok", "failed"}, {runs[1].summary._status, runs[2].summary._status,
      runs[3].summary._status, runs[4].summary._status})
    assert.equals(0.01, runs[4].config.lr)
    assert.truthy(runs[4].summary._error:find("diverged", 1, true))
    assert.near(0.1, runs[2].summary.score, 1e-12)
    fs.rmtree(dir)
  end)
end)
