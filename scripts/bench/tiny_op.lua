-- Per-call cost of a tiny tensor op from Lua (16-float add), microseconds.
local parry = require("parry")
local a = parry.randn(16)
local n = tonumber(arg[1]) or 200000
for _ = 1, 1000 do local _ = a + a end
local t = parry.clock()
for _ = 1, n do local _ = a + a end
print(string.format("%.3f", (parry.clock() - t) / n * 1e6))
