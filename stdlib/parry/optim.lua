--- parry.optim: optimizers and learning-rate schedules (PyTorch's update rules).
--
--   local opt = parry.optim.SGD(net:parameters(), {lr = 0.05, momentum = 0.9})
--   local sched = parry.optim.lr.cosine(opt, {T_max = 10})
--   opt:zero_grad(); loss:backward(); opt:step(); sched:step()
local core = require("parry.core")
local optim = { lr = {} }
for name, fn in pairs(core._optim) do optim[name] = fn end
for name, fn in pairs(core._lr) do optim.lr[name] = fn end
return optim
