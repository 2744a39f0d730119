-- train_cnn.lua — the small CNN on Fashion-MNIST (the PyTorch peer's CNN):
-- conv 1→32 3×3 p1, ReLU, maxpool 2, conv 32→64 3×3 p1, ReLU, maxpool 2,
-- fc 3136→128, ReLU, fc 128→10.
--
--   parry examples/train_cnn.lua [epochs=3] [checkpoint=out/cnn.safetensors]
--
-- SGD (lr 0.05, momentum 0.9), batch 128; ≥ 90% test accuracy after 3
-- epochs. Prints loss, test accuracy and time per epoch, then saves a
-- checkpoint for examples/evaluate.lua. A few minutes on 2 cores.
local parry = require("parry")
local optim, losses = parry.optim, parry.losses

local epochs = tonumber(arg[1]) or 3
local path = arg[2] or "out/cnn.safetensors"
parry.manual_seed(0)

local train = parry.data.fashion_mnist{split = "train"}
local test = parry.data.fashion_mnist{split = "test"}
local net = parry.models.small_cnn{in_channels = 1, classes = 10}
local opt = optim.SGD(net:parameters(), {lr = 0.05, momentum = 0.9})

local function accuracy(model, ds)
  model:eval()
  local correct = 0
  parry.no_grad(function()
    for xb, yb in ds:batches(500) do
      correct = correct + model(xb):argmax(2):eq(yb):sum():item()
    end
  end)
  model:train()
  return correct / #ds
end

for epoch = 1, epochs do
  local t0, total, batches = parry.clock(), 0, 0
  for xb, yb in train:batches(128, {shuffle = true}) do
    local loss = losses.cross_entropy(net(xb), yb)
    opt:zero_grad()
    loss:backward()
    opt:step()
    total, batches = total + loss:item(), batches + 1
  end
  local seconds = parry.clock() - t0
  print(string.format("epoch %d  loss %.4f  test acc %.4f  %.1f s", epoch, total / batches, accuracy(net, test), seconds))
end

os.execute("mkdir -p " .. (path:match("^(.*)/") or "."))
parry.save(net, path, {metadata = {arch = "small_cnn"}})
print("saved " .. path)
