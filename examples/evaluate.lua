-- evaluate.lua — load a checkpoint written by train_mlp.lua or train_cnn.lua
-- and report Fashion-MNIST test accuracy and loss.
--
--   parry examples/evaluate.lua out/cnn.safetensors
local parry = require("parry")

local path = arg[1] or "out/cnn.safetensors"
local state, meta = parry.load(path)
local net
if meta.arch == "mlp" then
  local sizes = {}
  for s in (meta.sizes or "784,256,256,10"):gmatch("%d+") do sizes[#sizes + 1] = tonumber(s) end
  net = parry.models.mlp(sizes)
elseif meta.arch == "small_cnn" then
  net = parry.models.small_cnn{in_channels = 1, classes = 10}
else
  error(path .. ": unknown or missing arch in the checkpoint's metadata: " .. tostring(meta.arch))
end
net:load_state_dict(state)
net:eval()

local test = parry.data.fashion_mnist{split = "test"}
local correct, total_loss = 0, 0
parry.no_grad(function()
  for xb, yb in test:batches(1000) do
    local logits = net(xb)
    total_loss = total_loss + parry.losses.cross_entropy(logits, yb, {reduction = "sum"}):item()
    correct = correct + logits:argmax(2):eq(yb):sum():item()
  end
end)
print(string.format("%s (%s): test accuracy %.4f, loss %.4f", path, meta.arch, correct / #test, total_loss / #test))
