-- attack_eval.lua — how robust is the standard CNN? Clean, FGSM, PGD-20,
-- APGD, Square and AutoAttack-fast accuracy at ε = 0.1 (L∞) on the first
-- 1000 Fashion-MNIST test images.
--
--   parry examples/train_cnn.lua          # writes out/cnn.safetensors (~1 min)
--   parry examples/attack_eval.lua [checkpoint=out/cnn.safetensors] [n=1000]
--
-- About a minute on 2 cores (measured 66 s with a build sharing the machine; 41 s
-- alone the day before; Square and AutoAttack dominate). On the checkpoint
-- train_cnn.lua writes (test acc 0.905): clean 0.905, FGSM 0.128, PGD-20 0.030,
-- APGD 0.016, Square 0.054, AutoAttack-fast 0.010 (worst case 0.010).
local parry = require("parry")

local path = arg[1] or "out/cnn.safetensors"
local n = tonumber(arg[2]) or 1000
local state, meta = parry.load(path)
assert(meta.arch == "small_cnn", path .. " is not a small_cnn checkpoint (train it with examples/train_cnn.lua)")
local net = parry.models.small_cnn{in_channels = 1, classes = 10}
net:load_state_dict(state)

local test = parry.data.fashion_mnist{split = "test", limit = n}
local eps = 0.1
local t0 = parry.clock()
local r = parry.attacks.evaluate(net, test.x, test.y, {
  eps = eps, batch_size = 250, seed = 0,
  attacks = {
    "fgsm",
    {"pgd", {alpha = 0.01, steps = 20}},
    {"apgd", {steps = 100}},
    {"square", {queries = 1000}},
    {"autoattack", {version = "fast"}},
  },
})
print(string.format("%s, eps = %.2f, %d test images", path, eps, n))
print(parry.attacks.report(r))
print(string.format("total %.1f s", parry.clock() - t0))
