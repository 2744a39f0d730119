-- train_mlp.lua — a 784-256-256-10 MLP on Fashion-MNIST (the PyTorch peer's MLP).
--
--   parry examples/train_mlp.lua [epochs=3] [checkpoint=out/mlp.safetensors]
--
-- SGD (lr 0.05, momentum 0.9), batch 128. Prints loss, test accuracy and time
-- per epoch (about 87-88% test accuracy after 3 epochs), then saves a
-- checkpoint that examples/evaluate.lua loads. Takes well under a minute.
local parry = require("parry")
local nn, optim, losses = parry.nn, parry.optim, parry.losses

local epochs = tonumber(arg[1]) or 3
local path = arg[2] or "out/mlp.safetensors"
parry.manual_seed(0)

local train = parry.data.fashion_mnist{split = "train"}
local test = parry.data.fashion_mnist{split = "test"}
local net = parry.models.mlp{784, 256, 256, 10}
local opt = optim.SGD(net:parameters(), {lr = 0.05, momentum = 0.9})

local function accuracy(model, ds)
  model:eval()
  local correct = 0
  parry.no_grad(function()
    for xb, yb in ds:batches(1000) do
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
  print(string.format("epoch %d  loss %.4f  test acc %.4f  %.2f s", epoch, total / batches, accuracy(net, test), seconds))
end

os.execute("mkdir -p " .. (path:match("^(.*)/") or "."))
parry.save(net, path, {metadata = {arch = "mlp", sizes = "784,256,256,10"}})
print("saved " .. path)
