-- dverge.lua — DVERGE (Yang et al., NeurIPS 2020): diversifying the
-- sub-models' vulnerabilities so a transfer attack no longer fools the whole
-- ensemble, against independent training, ADP and GAL, on Fashion-MNIST.
--   1. a baseline ensemble of 3 CIFAR-style ResNets (depth 8, width 8) trained
--      independently with cross-entropy; a surrogate ensemble of 3 more, trained
--      the same way from other seeds, for the black-box attacks;
--   2. from the baseline's weights: DVERGE (feature distillation at a random
--      layer per epoch, ε 0.07, α 0.007, 10 steps; round-robin SGD), ADP
--      (α 2, β 0.5, Adam) and GAL (λ 0.5, LeakyReLU(0.1) members holding the
--      baseline weights, Gaussian noise σ 0.045 on half the images, Adam);
--   3. on test images: clean accuracy, white-box PGD-20 of the whole ensemble,
--      black-box transfer accuracy from the surrogate (momentum PGD with 2
--      random starts, M-DI²-FGSM, SGM γ 0.2, momentum PGD on the CW margin;
--      the "all" row counts a sample only if it survives every one of them),
--      the transferability matrix within the baseline and DVERGE ensembles, and
--      the vulnerability-diversity matrix; an SVG of transfer accuracy vs ε.
--
--   parry examples/dverge.lua [train_images=5000] [epochs=4] [test_images=500]
--
-- Scale: 5,000 training images (random crop + flip), baselines 8 epochs,
-- each method 4 epochs from the baseline's weights (DVERGE at lr 0.01, × 0.1
-- after epoch 2); the paper trains ResNet-20s on CIFAR-10 for 200 epochs.
-- Seeded. Measured on 2 cores (release build, 2026-12-02): 315 s in total
-- (baselines 46 s, ADP 11 s, GAL 106 s, DVERGE 55 s, transfer attacks 60 s;
-- 2.5 GB resident at the peak).
--   method     clean  white-box PGD-20 (ε 0.03)
--   baseline  0.7714  0.5400
--   ADP       0.7756  0.5120
--   GAL       0.7745  0.5800
--   DVERGE    0.7669  0.6560
-- Black-box transfer accuracy from the surrogate ensemble, "all" row (500
-- test images; each sample must survive all 5 adversarial versions):
--   ε          0.01   0.02   0.03   0.04   0.05   0.07
--   baseline  0.752  0.710  0.622  0.492  0.318  0.132
--   ADP       0.760  0.724  0.646  0.546  0.426  0.188
--   GAL       0.752  0.728  0.684  0.610  0.464  0.166
--   DVERGE    0.764  0.730  0.710  0.680  0.644  0.496
-- Transferability within the ensemble (PGD-20 at ε 0.03, 2 restarts, 300
-- images every member gets right): mean success from one member to another
-- 0.157 for the baseline, 0.053 for DVERGE (to the whole ensemble 0.15–0.19 vs
-- 0.05–0.06; each member's own white-box success 0.33–0.41 vs 0.17–0.21).
-- DVERGE's claims hold here: lower transferability among sub-models and the
-- highest black-box transfer accuracy of the four at every ε (GAL is level at
-- 0.02), at a small clean-accuracy cost at this scale (−0.5 points).
local parry = require("parry")
local T = parry.data.transforms

local n_train = tonumber(arg[1]) or 5000
local epochs = tonumber(arg[2]) or 4
local n_test = tonumber(arg[3]) or 500
local BASE_EPOCHS, M = 8, 3
local EPS = {0.01, 0.02, 0.03, 0.04, 0.05, 0.07}
local t0 = parry.clock()

parry.manual_seed(0)
local train = parry.data.fashion_mnist{split = "train", limit = n_train}
local test = parry.data.fashion_mnist{split = "test"}
local xt, yt = test.x:narrow(1, 1, n_test), test.y:narrow(1, 1, n_test)
local augment = T.compose{T.random_crop(28, {padding = 2}), T.hflip(0.5)}

local function resnet(leaky) return parry.models.resnet{depth = 8, width = 8, in_channels = 1, classes = 10, leaky_relu = leaky} end
local function copies(models, leaky)
  local out = {}
  for i, m in ipairs(models) do
    out[i] = resnet(leaky)
    out[i]:load_state_dict(m:state_dict())
  end
  return out
end
local function accuracy(net, x, y)
  return require("parry.train").accuracy(net, parry.data.TensorDataset(x, y))
end

local function baseline(seed)
  parry.manual_seed(seed)
  local models = {}
  for i = 1, M do models[i] = resnet() end
  parry.robust.ensemble_train{models = models, train = train, loss = "ce", epochs = BASE_EPOCHS, transform = augment, seed = seed,
    optimizer = {lr = 0.1, milestones = {4, 6}}}
  return models
end

local t = parry.clock()
local base = baseline(1)
local surrogate = baseline(2)
print(string.format("baseline and surrogate ensembles: %.0f s (%d epochs each, %d models)", parry.clock() - t, BASE_EPOCHS, M))

local methods = {
  {name = "baseline", models = base, seconds = 0},
  {name = "ADP", models = copies(base)},
  {name = "GAL", models = copies(base, true)},
  {name = "DVERGE", models = copies(base)},
}
local train_spec = {
  ADP = function(models) return parry.robust.ensemble_train{models = models, train = train, loss = "adp", epochs = epochs, transform = augment, seed = 3} end,
  GAL = function(models) return parry.robust.ensemble_train{models = models, train = train, loss = "gal", epochs = epochs, transform = augment, seed = 4} end,
  DVERGE = function(models)
    return parry.robust.dverge{models = models, train = train, epochs = epochs, transform = augment, seed = 5,
      optimizer = {lr = 0.01, milestones = {math.max(epochs // 2, 1)}},
      on_epoch = function(r) print(string.format("  DVERGE epoch %d: layer %d (%s), losses %.3f %.3f %.3f, %.0f s",
        r.epoch, r.layer, r.layer_name, r.losses[1], r.losses[2], r.losses[3], r.seconds)) end}
  end,
}
for _, m in ipairs(methods) do
  if train_spec[m.name] then
    t = parry.clock()
    train_spec[m.name](m.models)
    m.seconds = parry.clock() - t
    print(string.format("%s: %d epochs in %.0f s", m.name, epochs, m.seconds))
  end
  m.ensemble = parry.nn.Ensemble(m.models)
  m.ensemble:eval()
end

-- Clean and white-box accuracy.
local WB_EPS = 0.03
print(string.format("\n%-9s %7s %12s   (clean on all 10,000 test images; white-box PGD-20 at ε %.2f on %d)", "method", "clean", "white-box", WB_EPS, n_test))
for _, m in ipairs(methods) do
  m.clean = accuracy(m.ensemble, test.x, test.y)
  local adv = parry.attacks.pgd(m.ensemble, xt, yt, {eps = WB_EPS, alpha = WB_EPS / 8, steps = 20, seed = 0})
  m.whitebox = accuracy(m.ensemble, adv, yt)
  print(string.format("%-9s %7.4f %12.4f", m.name, m.clean, m.whitebox))
end

-- Black-box transfer from the surrogate ensemble.
t = parry.clock()
local targets = {}
for _, m in ipairs(methods) do targets[m.name] = m.ensemble end
local r = parry.robust.transfer_eval{sources = {parry.nn.Ensemble(surrogate)}, targets = targets, x = xt, y = yt, eps = EPS, seed = 0,
  attacks = {{"mifgsm", {random_start = true, versions = 2}}, {"mdi2fgsm", {p = 0.5}}, {"sgm", {gamma = 0.2}}, {"mifgsm", {loss = "cw"}}}}
print(string.format("\nblack-box transfer accuracy, the \"all\" row (%d test images, %.0f s):", n_test, parry.clock() - t))
local header = string.format("%-9s", "method")
for _, e in ipairs(EPS) do header = header .. string.format(" %7.2f", e) end
print(header)
local series = {}
for _, m in ipairs(methods) do
  local line, ys = string.format("%-9s", m.name), {}
  for k, row in ipairs(r.all) do ys[k] = row.accuracy[m.name]; line = line .. string.format(" %7.3f", ys[k]) end
  print(line)
  series[#series + 1] = {x = EPS, y = ys, label = m.name}
end
print("per attack at ε 0.03 (accuracy of each ensemble):")
for _, row in ipairs(r.rows) do
  if math.abs(row.eps - 0.03) < 1e-9 then
    local line = string.format("  %-10s v%d", row.attack, row.version)
    for _, m in ipairs(methods) do line = line .. string.format("  %s %.3f", m.name, row.accuracy[m.name]) end
    print(line)
  end
end
os.execute("mkdir -p out")
parry.plot.line{title = "Fashion-MNIST: black-box transfer accuracy from a surrogate ensemble", xlabel = "eps (L∞)",
  ylabel = "accuracy under every transfer attack", file = "out/dverge_transfer.svg", series = series}

-- Transferability within the ensembles and vulnerability diversity.
local function show_matrix(title, mat, cols)
  print(title)
  for i, row in ipairs(mat) do
    local line = string.format("  from %d:", i)
    for j = 1, cols do line = line .. string.format(" %6.3f", row[j]) end
    print(line)
  end
end
t = parry.clock()
for _, name in ipairs{"baseline", "DVERGE"} do
  local m = methods[name == "baseline" and 1 or 4]
  local tr = parry.robust.transferability(m.models, xt, yt, {eps = WB_EPS, steps = 20, restarts = 2, limit = 300, seed = 0})
  show_matrix(string.format("\n%s: PGD-20 success from member i to member j (and to the ensemble, last column), ε %.2f, %d images",
    name, WB_EPS, tr.samples), tr.matrix, M + 1)
  local off, k = 0, 0
  for i = 1, M do for j = 1, M do if i ~= j then off, k = off + tr.matrix[i][j], k + 1 end end end
  m.transfer_within = off / k
  local d = parry.robust.vulnerability_diversity(m.models, xt, yt, {limit = 200, seed = 0})
  show_matrix(string.format("%s: vulnerability diversity, CE of member j on member i's distilled images (ε 0.07)", name), d, M)
end
print(string.format("(%.0f s)\nmean off-diagonal transfer success: baseline %.3f, DVERGE %.3f",
  parry.clock() - t, methods[1].transfer_within, methods[4].transfer_within))
print(string.format("\nwrote out/dverge_transfer.svg; %.0f s in total", parry.clock() - t0))
