-- bind_model.lua — the small "Bind" model of examples/bind_pretrain.lua and
-- examples/calibration.lua: three modalities derived from each Fashion-MNIST
-- image and one encoder per modality into a shared 64-d space.
--   image   the 1×28×28 image itself                  small CNN
--   point   128 foreground points (x, y), ∝ intensity PointNet: shared per-point MLP, max pool
--   signal  the image along a Hilbert curve, + noise   1-D CNN
-- Used with dofile(); returns {DIM, MODALITIES, inputs(x, seed), encoders(), save(), load()}.
local parry = require("parry")
local nn = parry.nn

local M = {DIM = 64, MODALITIES = {"image", "point", "signal"}}

--- The three modalities of a batch of images (N×1×28×28), seeded.
function M.inputs(x, seed)
  return {
    image = x,
    point = parry.data.point_cloud(x, {points = 128, jitter = 1, seed = seed}),
    signal = parry.data.image_signal(x, {curve = "hilbert", noise = 0.05, seed = seed + 1}),
  }
end

function M.encoders()
  local d = M.DIM
  return {
    image = nn.Sequential{
      nn.Conv2d(1, 32, 3, {padding = 1}), nn.BatchNorm2d(32), nn.ReLU(), nn.MaxPool2d(2),
      nn.Conv2d(32, 64, 3, {padding = 1}), nn.BatchNorm2d(64), nn.ReLU(), nn.MaxPool2d(2),
      nn.Flatten(), nn.Linear(64 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, d)},
    point = nn.Sequential{   -- PointNet: 1×1 convolutions are the per-point MLP; the max over points makes it order-free
      nn.Conv1d(2, 64, 1), nn.BatchNorm1d(64), nn.ReLU(),
      nn.Conv1d(64, 128, 1), nn.BatchNorm1d(128), nn.ReLU(),
      nn.Conv1d(128, 256, 1), nn.BatchNorm1d(256), nn.ReLU(),
      nn.AdaptiveMaxPool1d(1), nn.Flatten(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, d)},
    signal = nn.Sequential{  -- 1024 samples
      nn.Conv1d(1, 16, 7, {stride = 2, padding = 3}), nn.BatchNorm1d(16), nn.ReLU(), nn.MaxPool1d(2),
      nn.Conv1d(16, 32, 5, {padding = 2}), nn.BatchNorm1d(32), nn.ReLU(), nn.MaxPool1d(2),
      nn.Conv1d(32, 64, 5, {padding = 2}), nn.BatchNorm1d(64), nn.ReLU(), nn.MaxPool1d(4),
      nn.Flatten(), nn.Linear(64 * 32, 128), nn.ReLU(), nn.Linear(128, d)},
  }
end

-- A residual MLP head, x + W₂·relu(W₁·x) with W₂ = 0 at the start: the identity map, with more capacity than a Linear.
local ResidualHead = nn.Module:extend("ResidualHead")
function ResidualHead:init(d, hidden)
  self.fc1 = nn.Linear(d, hidden)
  self.fc2 = nn.Linear(hidden, d)
  parry.no_grad(function() self.fc2.weight:zero_(); self.fc2.bias:zero_() end)
end
function ResidualHead:forward(x) return x + self.fc2(self.fc1(x):relu()) end

--- A calibration head initialised to the identity: "linear" (Linear(d, d)) or "mlp" (residual, `hidden` units, default d).
function M.head(kind, hidden)
  local d = M.DIM
  if kind == "mlp" then return ResidualHead(d, hidden or d) end
  local h = nn.Linear(d, d)
  parry.no_grad(function() h.weight:copy_(parry.eye(d)); h.bias:zero_() end)
  return h
end

--- Saves the encoders and the class centers into one safetensors file.
function M.save(path, encoders, centers)
  local all = {centers = centers:detach()}
  for m, enc in pairs(encoders) do
    for name, t in pairs(enc:state_dict()) do all[m .. "." .. name] = t end
  end
  parry.save(all, path)
end

--- The encoders (frozen, eval mode) and centers saved by M.save.
function M.load(path)
  local all = parry.load(path)
  local encoders = M.encoders()
  for m, enc in pairs(encoders) do
    local sd = {}
    for name, t in pairs(all) do
      local rest = name:match("^" .. m .. "%.(.+)$")
      if rest then sd[rest] = t end
    end
    enc:load_state_dict(sd)
    enc:freeze()
  end
  return encoders, all.centers
end

return M
