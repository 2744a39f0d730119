--- parry.train: small experiment helpers shared by scripts and examples.
--
--   local train = require("parry.train")
--   local loss = train.epoch(net, ds, opt, {batch_size = 128})
--   local acc = train.accuracy(net, test)
local core = require("parry.core")
local losses = require("parry.losses")
local util = require("parry._util")

local M = {}

local function fail(fn, msg) util.raise("parry.train." .. fn .. ": " .. msg) end

-- Checks the arguments every helper takes; returns the options table.
local function check(fn, model, ds, opts, allowed)
  if not require("parry.nn").is_module(model) then fail(fn, "expected a module for model (argument 1), got " .. type(model)) end
  if type(ds) ~= "table" or type(ds.batches) ~= "function" then
    fail(fn, "expected a dataset for ds (argument 2), got " .. type(ds))
  end
  local checked, err = util.check_options(opts, allowed)
  if not checked then fail(fn, err) end
  return checked
end

--- One pass over `ds` in shuffled mini-batches, one optimizer step each.
-- Options: batch_size (128), loss (cross-entropy; a function(logits, y) -> scalar),
-- transform (applied to each input batch), generator (for the shuffle),
-- distributed (true or a parry.dist.data_parallel object: under mpirun each
-- rank trains on its slice of every global batch of batch_size and the
-- gradients are averaged; seed every rank's shuffle generator the same).
-- Returns the mean training loss (over the global batches when distributed).
function M.epoch(model, ds, opt, opts)
  opts = check("epoch", model, ds, opts, {batch_size = true, loss = true, transform = true, generator = true, progress = true,
    distributed = true})
  if type(opt) ~= "userdata" and type(opt) ~= "table" or type(opt.step) ~= "function" then
    fail("epoch", "expected an optimizer for opt (argument 3), got " .. type(opt))
  end
  local loss_fn = opts.loss or losses.cross_entropy
  local total, batches = 0, 0
  local bs = opts.batch_size or 128
  local bar = opts.progress and require("parry.progress").new(math.ceil(#ds / bs),
    {desc = type(opts.progress) == "string" and opts.progress or "epoch"})
  model:train()
  local dp = util.data_parallel_of(model, opts.distributed, "parry.train.epoch")
  for xb, yb in ds:batches(bs, {shuffle = true, transform = opts.transform, generator = opts.generator,
                                shard = dp and dp:shard()}) do
    opt:zero_grad()
    local n, value = xb:size(1), 0
    if n > 0 or not dp then
      local loss = loss_fn(model(xb), yb)
      loss:backward()
      value = loss:item()
    end
    if dp then _, value = dp:sync(n, value) end
    opt:step()
    total, batches = total + value, batches + 1
    if bar then bar:step() end
  end
  if bar then bar:close() end
  return total / math.max(batches, 1)
end

--- Fraction of `ds` that `model` classifies correctly (eval mode, no grad);
-- the model's mode is restored afterwards.
function M.accuracy(model, ds, opts)
  opts = check("accuracy", model, ds, opts, {batch_size = true})
  local was_training = model:is_training()
  model:eval()
  local correct = 0
  core.no_grad(function()
    for xb, yb in ds:batches(opts.batch_size or 500) do
      correct = correct + model(xb):argmax(2):eq(yb):sum():item()
    end
  end)
  model:train(was_training)
  return correct / #ds
end

return M
