-- Compares parry's FGSM and PGD (random_start = false) with torchattacks' on
-- the same model and images (written by scripts/compare_torchattacks.py).
--   parry scripts/compare_torchattacks.lua out/cnn.safetensors out/torchattacks.safetensors [n=1000]
local parry = require("parry")
local ckpt, theirs_path, n = arg[1], arg[2], tonumber(arg[3]) or 1000
local net = parry.models.small_cnn{}
net:load_state_dict((parry.load(ckpt)))
net:eval()
local test = parry.data.fashion_mnist{split = "test", limit = n}
local theirs = parry.load(theirs_path)
local function acc(x) return parry.no_grad(function() return net(x):argmax(2):eq(test.y):float():mean():item() end) end
local t0 = parry.clock()
local fgsm = parry.attacks.fgsm(net, test.x, test.y, {eps = 0.1})
local t1 = parry.clock()
local pgd = parry.attacks.pgd(net, test.x, test.y, {eps = 0.1, alpha = 0.01, steps = 20, random_start = false})
local t2 = parry.clock()
for _, r in ipairs{{"fgsm", fgsm, theirs.fgsm, t1 - t0}, {"pgd-20", pgd, theirs.pgd, t2 - t1}} do
  local name, ours, ref, secs = r[1], r[2], r[3], r[4]
  local diff = (ours - ref):abs()
  print(string.format("%-7s parry acc %.4f (%.2f s)  torchattacks acc %.4f  max |Δ| %.2e  pixels differing %.4f%%",
    name, acc(ours), secs, acc(ref), diff:max():item(), diff:gt(1e-6):float():mean():item() * 100))
end
