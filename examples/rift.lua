-- rift.lua — RiFT (Zhu et al., ICCV 2023): robust critical fine-tuning of an
-- adversarially trained CNN on Fashion-MNIST at ε = 0.1 (L∞).
--   1. PGD-AT (PGD-7, α 0.025) of a 6-module CNN (4 conv + BN, 2 linear) on
--      20,000 training images; a validation split of 1,024 held-out ones;
--   2. module robust criticality of every module on a PGD-10 set built from
--      the validation split (parry.robust.mrc): the MRC table with the drop in
--      robust accuracy under each worst-case weight perturbation;
--   3. RiFT (parry.robust.rift): fine-tune the lowest-MRC module on clean data,
--      interpolate θ(α) = α·θ_FT + (1−α)·θ_AT, pick α on the validation split;
--   4. clean / PGD-20 / AutoAttack-fast / corruption accuracy (ten corruption
--      kinds × five severities) on test images, before and after, mean ± sd
--      over 3 fine-tuning seeds.
--
--   parry examples/rift.lua [train_images=20000] [at_epochs=3] [test_images=1000]
--
-- Seeds are fixed. Measured on 2 cores (2026-12-02): 842 s with another job
-- sharing the machine for part of the run (PGD-AT 111 s, MRC 29 s, each
-- fine-tuning seed ~195 s with its interpolation, evaluations the rest; 1.25 GB).
-- MRC (PGD-10 set of the 1,024 validation images; drop = robust accuracy under
-- the worst weight perturbation minus before):
--   conv1 0.052 (−0.028)  conv4 0.288 (−0.116)  fc2 0.300 (−0.075)
--   conv3 0.353 (−0.151)  conv2 2.204 (−0.504)  fc1 2.492 (−0.431)
-- conv4 is fine-tuned (lowest MRC once the first and last modules are left out);
-- α chosen on the validation split: 0.1 for all three seeds. Test:
--                PGD-AT    RiFT (3 seeds)   change
--   clean        0.8110    0.8130±0.0000    +0.0020
--   PGD-20       0.7220    0.7207±0.0006    −0.0013
--   AA-fast      0.6980    0.6980±0.0000    +0.0000
--   corruption   0.7401    0.7397±0.0001    −0.0003
-- RiFT's claim (clean and corruption accuracy up by 1–2 points, robustness kept)
-- does not hold at this scale: fine-tuning one module for 10 epochs at lr 1e-3
-- moves the validation accuracy by 0.4 points (0.8154 → 0.8193), and the α that
-- keeps the robust accuracy (0.1) keeps +0.2 points clean, nothing on corruptions.
-- Fine-tuning conv1 (the lowest MRC overall; a run on the previous im2col
-- kernels) gave −0.001 clean, −0.001 PGD-20, −0.003 AA-fast, −0.001 corruption.
local parry = require("parry")
local nn = parry.nn

local n_train = tonumber(arg[1]) or 20000
local at_epochs = tonumber(arg[2]) or 3
local n_test = tonumber(arg[3]) or 1000
local n_aa = math.min(n_test, 500)
local eps = 0.1
local t_start = parry.clock()

local all = parry.data.fashion_mnist{split = "train", limit = n_train + 1024}
local train = all:subset(parry.arange(1, n_train))
local val = all:subset(parry.arange(n_train + 1, n_train + 1024))
local test = parry.data.fashion_mnist{split = "test", limit = n_test}

-- The model: six candidate modules (conv1..conv4, fc1, fc2).
local function cnn()
  local function block(cin, cout) return {nn.Conv2d(cin, cout, 3, {padding = 1, bias = false}), nn.BatchNorm2d(cout), nn.ReLU()} end
  local layers = {}
  for _, b in ipairs{block(1, 16), block(16, 16), {nn.MaxPool2d(2)}, block(16, 32), block(32, 32), {nn.MaxPool2d(2)}} do
    for _, m in ipairs(b) do layers[#layers + 1] = m end
  end
  for _, m in ipairs{nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10)} do layers[#layers + 1] = m end
  return nn.Sequential(layers)
end
local names = {["1"] = "conv1", ["4"] = "conv2", ["8"] = "conv3", ["11"] = "conv4", ["16"] = "fc1", ["18"] = "fc2"}
local function label(module) return (names[module] or "?") .. " (" .. module .. ")" end

-- 1. PGD-AT
parry.manual_seed(0)
local net = cnn()
local opt = parry.optim.SGD(net, {lr = 0.05, momentum = 0.9, weight_decay = 5e-4})
local sched = parry.optim.lr.cosine(opt, {T_max = at_epochs})
local t0 = parry.clock()
parry.robust.train(net, train, opt, {loss = "pgd", eps = eps, alpha = 0.025, steps = 7, epochs = at_epochs,
  on_epoch = function(e, loss, s) sched:step(); print(string.format("PGD-AT epoch %d  loss %.4f  %.0f s", e, loss, s)) end})
print(string.format("PGD-AT: %d images, %d epochs, %.0f s", n_train, at_epochs, parry.clock() - t0))

-- Clean / PGD-20 / AutoAttack-fast / corruption accuracy on the test images.
local function evaluate(model)
  model:eval()
  local r = parry.attacks.evaluate(model, test.x, test.y, {eps = eps, batch_size = 500, seed = 0,
    attacks = {{"pgd", {alpha = 0.01, steps = 20}}}})
  local aa = parry.attacks.evaluate(model, test.x:narrow(1, 1, n_aa), test.y:narrow(1, 1, n_aa),
    {eps = eps, batch_size = 500, seed = 0, attacks = {{"autoattack", {version = "fast"}}}})
  local c = parry.robust.corruption_accuracy(model, test, {seed = 0})
  return {clean = r.clean, pgd20 = r.worst_case, aa = aa.worst_case, corruption = c.mean, by_kind = c.by_kind}
end

-- 2. MRC of every module
t0 = parry.clock()
local mrc = parry.robust.mrc(net, val, {attack = {eps = eps, alpha = eps / 4, steps = 10}, seed = 0})
print(string.format("\nmodule robust criticality (PGD-10 set of %d validation images, ‖Δ‖ ≤ 0.1‖θ‖, 10 passes; %.0f s)", #val, parry.clock() - t0))
print(string.format("%-12s %8s %8s %10s %10s %8s", "module", "MRC", "loss0", "loss_max", "rob acc0", "drop"))
for _, r in ipairs(mrc) do
  print(string.format("%-12s %8.4f %8.4f %10.4f %10.4f %+8.4f", label(r.module), r.mrc, r.loss0, r.loss_max, r.robust_acc0, r.robust_acc_worst - r.robust_acc0))
end

-- 3. RiFT from 3 fine-tuning seeds. The module: the lowest MRC among the middle
-- ones (the first and the last candidate left out, as the official code's README
-- advises; rift's skip_first_last option, taken here from the table above).
local module
for _, r in ipairs(mrc) do
  if r.module ~= "1" and r.module ~= "18" then module = r.module; break end
end
print("fine-tuning " .. label(module) .. (mrc[1].module ~= module and (" (the lowest overall is " .. label(mrc[1].module) .. ")") or ""))
local before = evaluate(net)
local after, runs = {}, {}
for seed = 1, 3 do
  t0 = parry.clock()
  local r = parry.robust.rift{model = net, train = train, val = val, module = module, seed = seed,
    eval_attack = {eps = eps, alpha = eps / 4, steps = 10},
    finetune = {transform = parry.data.transforms.random_crop(28, {padding = 2})}}
  runs[seed] = r
  after[seed] = evaluate(r.model)
  print(string.format("\nRiFT seed %d: %s fine-tuned, best val acc %.4f, α = %.1f (%.0f s)", seed, label(r.module),
    math.max(table.unpack((function() local v = {} for i, e in ipairs(r.finetune_curve) do v[i] = e.val_acc end return v end)())),
    r.alpha, parry.clock() - t0))
  if seed == 1 then
    print(string.format("%6s %8s %8s", "α", "clean", "PGD-10"))
    for _, p in ipairs(r.interpolation) do print(string.format("%6.1f %8.4f %8.4f", p.alpha, p.clean, p.robust)) end
  end
end

-- 4. before / after
local function stats(key)
  local v = {}
  for i, a in ipairs(after) do v[i] = a[key] end
  local m = (v[1] + v[2] + v[3]) / 3
  local sd = math.sqrt(((v[1] - m) ^ 2 + (v[2] - m) ^ 2 + (v[3] - m) ^ 2) / 2)
  return m, sd
end
print(string.format("\n%d test images (AutoAttack-fast on %d); corruption: mean over 10 kinds × 5 severities", n_test, n_aa))
print(string.format("%-10s %8s %16s %10s", "", "PGD-AT", "RiFT (3 seeds)", "change"))
for _, k in ipairs{"clean", "pgd20", "aa", "corruption"} do
  local m, sd = stats(k)
  print(string.format("%-10s %8.4f %9.4f±%.4f %+10.4f", k, before[k], m, sd, m - before[k]))
end
print(string.format("\ntotal %.0f s", parry.clock() - t_start))
