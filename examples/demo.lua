-- demo.lua — what parry is for, in about a minute: train the small CNN on a
-- Fashion-MNIST subset, attack it (FGSM, PGD-20, AutoAttack-fast) at several
-- ε, print the robustness table, and write an SVG plot of accuracy against ε
-- and a run record into demo-out/ (`make demo` runs this after the build).
--
--   parry examples/demo.lua [out=demo-out] [train_images=20000] [test_images=200]
--
-- Setting: 20,000 training images, 3 epochs of SGD (lr 0.05, momentum 0.9,
-- batch 128), L∞ attacks at ε ∈ {0.02, 0.05, 0.1, 0.2} on the first 200 test
-- images (PGD-20: step 2.5·ε/20; AutoAttack-fast: APGD-CE, APGD-T, Square).
-- Seeded; the last digits depend on the CPU's kernels (OpenBLAS picks its
-- own per CPU, and on AVX2 the convolutions' weight gradient comes from
-- OpenBLAS instead of parry's AVX-512 kernel). Measured on 2 cores, release
-- build. A Zen 3 VM, AVX2 (2026-12-03): 126.3 s in total on a busy shared
-- machine (test accuracy 0.8752; attacks 97.6 s):
--      eps    clean     FGSM   PGD-20   AutoAttack
--     0.02    0.895    0.770    0.755        0.750
--     0.05    0.895    0.590    0.475        0.430
--     0.10    0.895    0.210    0.095        0.075
--     0.20    0.895    0.025    0.000        0.000
-- A Zen 4 VM, AVX-512 (2026-12-04): 64.2 s at b411c7a (test accuracy 0.8763;
-- attacks 49.2 s); the same table and accuracy at fe3437c, whose pooling and
-- convolution changes keep every bit, in 54.5 s (training 13.4 s, attacks
-- 41.1 s; 50.0 s in another run at 7158670) on a noisy host:
--      eps    clean     FGSM   PGD-20   AutoAttack
--     0.02    0.890    0.765    0.755        0.755
--     0.05    0.890    0.555    0.445        0.400
--     0.10    0.890    0.190    0.095        0.085
--     0.20    0.890    0.045    0.000        0.000
local parry = require("parry")
local train = require("parry.train")

local out = arg[1] or "demo-out"
local n_train = tonumber(arg[2]) or 20000
local n_test = tonumber(arg[3]) or 200
local EPS = {0.02, 0.05, 0.1, 0.2}
os.execute("mkdir -p " .. out)

parry.exp.run{name = "demo", dir = out .. "/runs", seed = 0,
  config = {train_images = n_train, test_images = n_test, epochs = 3, lr = 0.05, eps = EPS},
  fn = function(run, c)
    local t0 = parry.clock()
    local train_set = parry.data.fashion_mnist{split = "train", limit = c.train_images}
    local test_set = parry.data.fashion_mnist{split = "test"}
    local net = parry.models.small_cnn{in_channels = 1, classes = 10}
    local opt = parry.optim.SGD(net:parameters(), {lr = c.lr, momentum = 0.9})
    for epoch = 1, c.epochs do
      local loss = train.epoch(net, train_set, opt, {batch_size = 128, progress = "epoch " .. epoch})
      run.log(epoch, {loss = loss})
    end
    local accuracy = train.accuracy(net, test_set)
    print(string.format("trained in %.1f s: test accuracy %.4f on all 10,000 test images", parry.clock() - t0, accuracy))

    local x, y = test_set.x:narrow(1, 1, c.test_images), test_set.y:narrow(1, 1, c.test_images)
    local rows, series = {}, {clean = {}, fgsm = {}, pgd = {}, autoattack = {}}
    local t1 = parry.clock()
    for i, eps in ipairs(c.eps) do
      local r = parry.attacks.evaluate(net, x, y, {eps = eps, batch_size = 200, seed = 0,
        attacks = {"fgsm", {"pgd", {alpha = 2.5 * eps / 20, steps = 20}}, {"autoattack", {version = "fast"}}}})
      rows[i] = {eps = eps, clean = r.clean, fgsm = r.robust.fgsm, pgd = r.robust.pgd, autoattack = r.robust.autoattack}
      for k in pairs(series) do series[k][i] = rows[i][k] end
      run.log(i, {eps = eps, fgsm = rows[i].fgsm, pgd = rows[i].pgd, autoattack = rows[i].autoattack})
    end
    print(string.format("\nrobust accuracy on %d test images (L∞; %.1f s of attacks):", c.test_images, parry.clock() - t1))
    print(string.format("%8s %8s %8s %8s %12s", "eps", "clean", "FGSM", "PGD-20", "AutoAttack"))
    for _, r in ipairs(rows) do
      print(string.format("%8.2f %8.3f %8.3f %8.3f %12.3f", r.eps, r.clean, r.fgsm, r.pgd, r.autoattack))
    end
    parry.plot.line{title = "small CNN on Fashion-MNIST: accuracy under attack", xlabel = "eps (L∞)", ylabel = "accuracy",
      file = out .. "/robustness.svg",
      series = {{x = c.eps, y = series.clean, label = "clean", dashed = true},
                {x = c.eps, y = series.fgsm, label = "FGSM"}, {x = c.eps, y = series.pgd, label = "PGD-20"},
                {x = c.eps, y = series.autoattack, label = "AutoAttack-fast"}}}
    print(string.format("\nwrote %s/robustness.svg and the run record under %s/runs; %.1f s in total", out, out, parry.clock() - t0))
    return {accuracy = accuracy, pgd_at_0_1 = rows[3].pgd, autoattack_at_0_1 = rows[3].autoattack}
  end}
