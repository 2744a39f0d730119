--- parry.robust: adversarial training.
--
--   local loss = parry.robust.pgd_loss(model, x, y, {eps = 0.1, alpha = 0.02, steps = 7})
--   parry.robust.train(model, ds, opt, {loss = "trades", eps = 0.1, epochs = 2})
--   parry.robust.train(model, ds, opt, {loss = function(model, x, y) ... return scalar end})
local core = require("parry.core")
local losses = require("parry.losses")
local robust = {}
for name, fn in pairs(core._robust) do robust[name] = fn end

local function fail(msg) require("parry._util").raise("parry.robust.train: " .. msg) end

--- train(model, ds, opt, {loss=, epochs=1, batch_size=128, transform=, generator=, on_epoch=, <attack options>})
-- `loss` is "pgd" (PGD-AT), "trades", "ce", or a function(model, x, y) -> scalar
-- loss (e.g. the comp-sum adversarial losses). Attack options (eps, alpha,
-- steps, beta, norm, attack_mode) are passed to the named losses. Calls
-- on_epoch(epoch, mean_loss, seconds) after each epoch; returns the mean loss
-- of the last epoch.
function robust.train(model, ds, opt, opts)
  opts = opts or {}
  if type(opts) ~= "table" then fail("expected an options table") end
  local loss = opts.loss or "pgd"
  local attack = {}
  for _, k in ipairs{ "eps", "alpha", "steps", "beta", "norm", "attack_mode", "random_start", "bounds" } do attack[k] = opts[k] end
  local fn
  if loss == "pgd" then
    if not attack.eps then fail("missing option eps") end
    attack.beta = nil
    fn = function(m, x, y) return robust.pgd_loss(m, x, y, attack) end
  elseif loss == "trades" then
    if not attack.eps then fail("missing option eps") end
    attack.norm, attack.attack_mode, attack.random_start = nil, nil, nil
    fn = function(m, x, y) return robust.trades_loss(m, x, y, attack) end
  elseif loss == "ce" then
    fn = function(m, x, y) return losses.cross_entropy(m(x), y) end
  elseif type(loss) == "function" then
    fn = loss
  else
    fail("loss must be \"pgd\", \"trades\", \"ce\" or a function(model, x, y), got " .. tostring(loss))
  end
  local last
  for epoch = 1, opts.epochs or 1 do
    local t0, total, n = core.clock(), 0, 0
    model:train()
    for xb, yb in ds:batches(opts.batch_size or 128, { shuffle = true, transform = opts.transform, generator = opts.generator }) do
      local l = fn(model, xb, yb)
      opt:zero_grad()
      l:backward()
      opt:step()
      total, n = total + l:item(), n + 1
    end
    last = total / math.max(n, 1)
    if opts.on_epoch then opts.on_epoch(epoch, last, core.clock() - t0) end
  end
  return last
end

return robust
