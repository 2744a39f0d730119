-- Native memory is visible to Lua's collector: dropping tensors frees them
-- without collectgarbage() in the script (ARCHITECTURE.md, "The Lua/Swift edge" 4).
local parry = require("parry")

-- Resident set size of this process in MB, from /proc/self/statm (pages).
local function rss_mb()
  local f = assert(io.open("/proc/self/statm"))
  local _, resident = f:read("n", "n")
  f:close()
  return resident * 4096 / 2 ^ 20
end

-- Under the sanitizers (PARRY_SANITIZE) ASan's quarantine holds freed memory on purpose.
local measure = os.getenv("PARRY_SANITIZE") and pending or it

describe("memory", function()
  measure("stays under 300 MB while 10,000 tensors of 1 MB are created and dropped", function()
    local peak = 0
    for i = 1, 10000 do
      local t = parry.ones(262144)          -- 262144 float32 = 1 MB, pages touched
      if i % 500 == 0 then peak = math.max(peak, rss_mb()) end
    end
    assert(peak < 300, string.format("RSS peaked at %.0f MB", peak))
    assert(peak > 0)
  end)

  it("keeps tensors that are still referenced", function()
    local keep = {}
    for i = 1, 200 do
      keep[i] = parry.full({262144}, i)     -- 200 MB held: collections must not free them
      local _ = parry.ones(262144)
    end
    for i = 1, 200, 37 do assert.equals(i, keep[i][262144]) end
  end)

  measure("loads Fashion-MNIST's training set with a peak within 1.3× of the decoded floats", function()
    local support = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "support.lua")
    if not io.open("/usr/share/datasets/fashion-mnist/train-labels-idx1-ubyte.gz") then return pending("no Fashion-MNIST") end
    -- the high-water mark of a fresh process, with and without the load
    local function hwm(code)
      local out = support.sh(support.q(support.PARRY) .. " -e " .. support.q(code ..
        "; for l in io.lines('/proc/self/status') do local v = l:match('^VmHWM:%s*(%d+)') if v then print(v) end end"))
      return assert(tonumber(out:match("(%d+)%s*$")), out) / 1024
    end
    local base = hwm("local parry = require('parry')")
    local loaded = hwm("local parry = require('parry'); local d = parry.data.fashion_mnist{split = 'train'}; assert(d.x:size(1) == 60000)")
    local decoded = 60000 * 784 * 4 / 2 ^ 20      -- 179 MiB of float32
    assert(loaded - base <= 1.3 * decoded, string.format("the load peaked %.0f MiB above the %.0f MiB baseline for %.0f MiB of data", loaded - base, base, decoded))
  end)
end)

describe("PARRY_MAX_MEMORY", function()
  local support = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "support.lua")
  local function run(limit, code)
    local script = os.tmpname() .. ".lua"
    local f = assert(io.open(script, "w")); f:write(code); f:close()
    local out, status = support.sh("PARRY_MAX_MEMORY=" .. limit .. " " .. support.q(support.PARRY) .. " " .. support.q(script))
    os.remove(script)
    return out, status
  end

  it("makes an allocation past the limit a Lua error naming the function and the shape", function()
    local out, status = run("64M", [[
      local parry = require("parry")
      local keep = {}
      local ok, err = pcall(function() for i = 1, 100 do keep[i] = parry.zeros(1000, 1000) end end)
      print(ok, #keep, err)
      keep = nil
      -- dropped tensors are garbage: under pressure the collector frees them
      for i = 1, 50 do local t = parry.zeros(1000, 1000) + 1 end
      local a, b = parry.zeros(5000, 10), parry.zeros(10, 5000)   -- a 95 MB product
      print(pcall(a.matmul, a, b))
      print("alive", parry.ones(3):sum():item())
    ]])
    assert.equals(0, status, out)
    assert.truthy(out:find("false\t16\t", 1, true), out)    -- sixteen 3.8 MB tensors fit in 64 MB, not seventeen
    assert.truthy(out:find("parry.zeros: cannot allocate a float32 tensor of shape {1000,1000} (3.8 MB): PARRY_MAX_MEMORY is 64.0 MB", 1, true), out)
    assert.truthy(out:find("parry.matmul: cannot allocate a float32 tensor of shape {5000,5000}", 1, true), out)
    assert.truthy(out:find("alive\t3.0", 1, true), out)
  end)

  it("takes a percentage of physical memory and refuses nonsense quietly", function()
    local out, status = run("50%", "print(require('parry').ones(2):sum():item())")
    assert.equals(0, status, out); assert.truthy(out:find("2.0", 1, true), out)
    out, status = run("lots", "print(require('parry').ones(2):sum():item())")   -- not a size: no limit
    assert.equals(0, status, out); assert.truthy(out:find("2.0", 1, true), out)
  end)
end)
