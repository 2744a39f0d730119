--- parry.losses: loss functions. Labels are int64 tensors with values 1..C;
-- `reduction` is "mean" (default), "sum" or "none".
--
--   local loss = parry.losses.cross_entropy(logits, y, {label_smoothing = 0.1})
local core = require("parry.core")
local losses = {}
for name, fn in pairs(core._losses) do losses[name] = fn end
--- trades(model, x, y, {eps=, alpha=, steps=, beta=}): TRADES (Zhang et al. 2019), as parry.robust.trades_loss.
losses.trades = core._robust.trades_loss
--- adv_comp_sum(model, x, y, {tau=, nu=, eps=, alpha=, steps=, norm=}): the smooth adversarial comp-sum loss.
losses.adv_comp_sum = core._robust.adv_comp_sum_loss
return losses
