-- train_mlp.lua — a 784-256-256-10 MLP on Fashion-MNIST (the PyTorch peer's MLP).
--
--   parry examples/train_mlp.lua [epochs=3] [checkpoint=out/mlp.safetensors]
--
-- SGD (lr 0.05, momentum 0.9), batch 128. Prints loss, test accuracy and time
-- per epoch (about 85% test accuracy after 3 epochs), then saves a
-- checkpoint that examples/evaluate.lua loads. Takes well under a minute.
local parry = require("parry")
local optim = parry.optim

local epochs = tonumber(arg[1]) or 3
local path = arg[2] or "out/mlp.safetensors"
parry.manual_seed(0)

local train = require("parry.train")
local train_set = parry.data.fashion_mnist{split = "train"}
local test_set = parry.data.fashion_mnist{split = "test"}
local net = parry.models.mlp{784, 256, 256, 10}
local opt = optim.SGD(net:parameters(), {lr = 0.05, momentum = 0.9})

for epoch = 1, epochs do
  local t0 = parry.clock()
  local loss = train.epoch(net, train_set, opt, {batch_size = 128})
  local seconds = parry.clock() - t0
  print(string.format("epoch %d  loss %.4f  test acc %.4f  %.2f s", epoch, loss, train.accuracy(net, test_set), seconds))
end

os.execute("mkdir -p " .. (path:match("^(.*)/") or "."))
parry.save(net, path, {metadata = {arch = "mlp", sizes = "784,256,256,10"}})
print("saved " .. path)
