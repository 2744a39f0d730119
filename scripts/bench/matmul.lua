-- matmul through parry: best-of-reps seconds for an N×N float32 product,
-- and the cost of a tiny op called from Lua. Usage: parry matmul.lua N REPS
local parry = require("parry")
local n, reps = tonumber(arg[1]) or 1024, tonumber(arg[2]) or 10
parry.manual_seed(1)
local a, b = parry.rand(n, n) - 0.5, parry.rand(n, n) - 0.5
local _ = a:matmul(b)
local best = math.huge
for _ = 1, reps do
  local t = parry.clock()
  local c = a:matmul(b)
  best = math.min(best, parry.clock() - t)
end
print(string.format("%.9f", best))
