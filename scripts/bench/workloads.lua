-- parry's side of `make bench`: prints "name<TAB>seconds<TAB>note" lines.
-- Workloads mirror ../shared/peers/torch_bench.py (same data, sizes, batch
-- sizes and optimizer) so the two columns of the table are comparable.
local parry = require("parry")
-- Optional arguments: the workloads to run (default all).
local only = nil
for _, name in ipairs(arg) do only = only or {}; only[name] = true end

local function emit(name, seconds, note)
  print(string.format("%s\t%.9g\t%s", name, seconds, note or ""))
  io.stdout:flush()
end

local function best_of(reps, f)
  f()
  local best = math.huge
  for _ = 1, reps do
    local t = parry.clock(); f(); best = math.min(best, parry.clock() - t)
  end
  return best
end

local function want(name) return only == nil or only[name] == true end

-- PARRY_BENCH_QUICK=1 (make bench-quick): smaller versions of the core rows,
-- the same ones scripts/bench/torch_workloads.py runs under the variable.
local quick = os.getenv("PARRY_BENCH_QUICK") == "1"
local IMAGES = quick and 12800 or 60000    -- training images per epoch
local BATCH = quick and 32 or 128          -- the ResNet rows' batch
local ATTACKED = quick and 200 or 1000     -- test images the attack rows attack

if want("sgemm2048") then
  parry.manual_seed(0)
  local a, b = parry.randn(2048, 2048), parry.randn(2048, 2048)
  emit("sgemm2048", best_of(5, function() return a:matmul(b) end), "2048x2048")
end

if want("tiny_add") then
  local a = parry.randn(16)
  local n = 200000
  local t = best_of(3, function() for _ = 1, n do local _ = a + a end end)
  emit("tiny_add", t / n, "per call")
end

local train, test
local function data()
  train = train or parry.data.fashion_mnist{split = "train"}
  test = test or parry.data.fashion_mnist{split = "test"}
end

local function epoch(net)
  local opt = parry.optim.SGD(net:parameters(), {lr = 0.05, momentum = 0.9})
  local ds = train
  if IMAGES < #train then
    local idx = {}
    for i = 1, IMAGES do idx[i] = i end
    ds = train:view(idx)
  end
  local t = parry.clock()
  for xb, yb in ds:batches(128, {shuffle = true}) do
    local loss = parry.losses.cross_entropy(net(xb), yb)
    opt:zero_grad(); loss:backward(); opt:step()
  end
  return parry.clock() - t
end

local function accuracy(net)
  return require("parry.train").accuracy(net, test)
end

if want("mlp_epoch") then
  data(); parry.manual_seed(0)
  local mlp = parry.models.mlp{784, 256, 256, 10}
  local s = epoch(mlp)
  emit("mlp_epoch", s, string.format("test acc %.4f", accuracy(mlp)))
end

local cnn
if want("cnn_epoch") or want("pgd20") or want("autoattack_fast") then
  data(); parry.manual_seed(0)
  cnn = parry.models.small_cnn{}
  local s = epoch(cnn)
  if want("cnn_epoch") then emit("cnn_epoch", s, string.format("test acc %.4f", accuracy(cnn))) end
end

if want("pgd20") then
  cnn:eval()
  local x, y = test.x:narrow(1, 1, ATTACKED), test.y:narrow(1, 1, ATTACKED)
  local t = parry.clock()
  local adv = parry.attacks.pgd(cnn, x, y, {eps = 0.1, alpha = 0.01, steps = 20, random_start = true, seed = 0})
  local s = parry.clock() - t
  local acc = parry.no_grad(function() return cnn(adv):argmax(2):eq(y):float():mean():item() end)
  emit("pgd20", s, string.format("robust acc %.4f", acc))
end

if want("autoattack_fast") then
  if not cnn then data(); parry.manual_seed(0); cnn = parry.models.small_cnn{}; epoch(cnn) end
  cnn:eval()
  local x, y = test.x:narrow(1, 1, ATTACKED), test.y:narrow(1, 1, ATTACKED)
  local t = parry.clock()
  local _, log = parry.attacks.autoattack(cnn, x, y, {eps = 0.1, version = "fast", seed = 0})
  emit("autoattack_fast", parry.clock() - t, string.format("robust acc %.4f", log[#log].robust_accuracy))
end

for _, name in ipairs{"resnet20", "resnet18"} do
  -- One forward and backward pass of a CIFAR-style ResNet in train mode
  -- (ResNet-18: the model RiFT uses), best of 3 after a warm-up.
  if want(name .. "_fwd_bwd") then
    parry.manual_seed(0)
    local net = parry.models[name]{in_channels = 3, classes = 10}
    local x, y = parry.rand(BATCH, 3, 32, 32), parry.randint(1, 10, BATCH)
    local s = best_of(3, function()
      net:zero_grad()
      parry.losses.cross_entropy(net(x), y):backward()
    end)
    emit(name .. "_fwd_bwd", s, string.format("batch %dx3x32x32", BATCH))
  end
end

if want("dverge_step") then
  -- One DVERGE batch (train/train_dverge.py's loop): 3 ResNet-20 sub-models
  -- in train mode, batch 128x3x32x32, each distils the batch toward a
  -- shuffled copy at the logits (layer 20, the code's fixed-layer default;
  -- 10 momentum sign steps, eps 0.07), then each model takes one SGD step on
  -- the other two models' distilled batches.
  parry.manual_seed(0)
  local models = {}
  for i = 1, 3 do models[i] = parry.models.resnet20{in_channels = 3, classes = 10} end
  local data = {parry.rand(128, 3, 32, 32), parry.randint(1, 10, 128)}
  local s = best_of(2, function()
    parry.robust.dverge{models = models, train = data, epochs = 1, batch_size = 128, layer = "fc", seed = 0}
  end)
  emit("dverge_step", s, "3 ResNet-20, batch 128, 10 distillation steps at the logits")
end

if want("random_api_100k") then
  -- issue 19's random API programs: 100,000 random calls (scripts/random_api.lua, seed 1).
  local root = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "../../"
  local t = parry.clock()
  local r = dofile(root .. "scripts/random_api.lua").run{calls = 100000, seed = 1}
  emit("random_api_100k", parry.clock() - t, string.format("%d errors raised, %d results checked, %d failures", r.errors, r.checked, #r.failures))
end

if only and only.soak_pgd_at then
  -- issue 19's long-run soak (not in the default run: `scripts/bench/run soak_pgd_at`):
  -- PGD-AT steps (PGD-7, ε 0.1, α 0.025, batch 128) of the small CNN, no
  -- collectgarbage(); resident memory and the mean step time every 1,000 steps
  -- on stderr. PARRY_SOAK_STEPS sets the length (default 10,000).
  data(); parry.manual_seed(0)
  local steps = tonumber(os.getenv("PARRY_SOAK_STEPS")) or 10000
  local net = parry.models.small_cnn{in_channels = 1, classes = 10}
  local opt = parry.optim.SGD(net:parameters(), {lr = 0.05, momentum = 0.9})
  local function rss()
    local f = io.open("/proc/self/statm"); local _, r = f:read("n", "n"); f:close()
    return r * 4096 / 2 ^ 20
  end
  local done, t0, tk, curve = 0, parry.clock(), parry.clock(), {}
  net:train()
  while done < steps do
    for xb, yb in train:batches(128, {shuffle = true}) do
      local loss = parry.robust.pgd_loss(net, xb, yb, {eps = 0.1, alpha = 0.025, steps = 7})
      opt:zero_grad(); loss:backward(); opt:step()
      done = done + 1
      if done % 1000 == 0 then
        local now = parry.clock()
        curve[#curve + 1] = string.format("%d:%.0fMB/%.1fms", done, rss(), (now - tk))
        io.stderr:write(string.format("soak step %d: resident %.0f MB, %.1f ms/step\n", done, rss(), now - tk))
        tk = now
      end
      if done >= steps then break end
    end
  end
  emit("soak_pgd_at", parry.clock() - t0, table.concat(curve, " "))
end

if want("fedavg_100x600") then
  -- FedAvg, 100 clients × 600 Fashion-MNIST images (iid), 1 local epoch of
  -- the 784-256-256-10 MLP (batch 32, SGD lr 0.05), 5 rounds; the server
  -- model is evaluated on the 10k test images each round. Overhead = time
  -- outside local training (copies, aggregation, evaluation) / total.
  data()
  local clients = parry.fl.partition(train, 100, {method = "iid", seed = 0})
  -- PARRY_FL_DISTRIBUTED=1 under mpirun: the clients spread over the ranks
  local distributed = os.getenv("PARRY_FL_DISTRIBUTED") == "1"
  local res = parry.fl.simulate{
    model = function() return parry.models.mlp{784, 256, 256, 10} end,
    clients = clients, test = test, rounds = 5, local_epochs = 1, batch_size = 32, lr = 0.05,
    aggregator = "fedavg", eval_clients = false, standalone = false, seed = 0, distributed = distributed,
  }
  local name = distributed and string.format("fedavg_100x600_%dranks", parry.dist.size()) or "fedavg_100x600"
  if distributed and not parry.dist.is_main() then return end
  emit(name, res.total_seconds, string.format("%.2f rounds/s, %.1f%% outside local training, global acc %.4f",
    #res.rounds / res.total_seconds, 100 * res.overhead, res.rounds[#res.rounds].global_accuracy))
end

local function peak_mb()
  local f = io.open("/proc/self/status")
  if not f then return 0 / 0 end
  local kb = f:read("a"):match("VmHWM:%s*(%d+)")
  f:close()
  return (tonumber(kb) or 0) / 1024
end

if want("fl_10k_clients") then
  -- Simulated clients cost what runs: 10,000 iid Fashion-MNIST clients (6
  -- images each; PARRY_FL_CLIENTS=N for other counts, 60000/N images each) of
  -- the 784-64-10 MLP, 2 FedAvg rounds (1 local epoch, batch 32, lr 0.05), no
  -- per-client evaluation. Peak resident memory, and the time outside local
  -- training per client and round. The peer: ../shared/peers or
  -- scripts/bench/flower_fl.py (Flower's simulation engine) on the same task.
  data()
  local n = tonumber(os.getenv("PARRY_FL_CLIENTS") or "") or 10000
  local clients = parry.fl.partition(train, n, {method = "iid", seed = 0})
  local res = parry.fl.simulate{
    model = function() return parry.models.mlp{784, 64, 10} end,
    clients = clients, test = test, rounds = 2, local_epochs = 1, batch_size = 32, lr = 0.05,
    aggregator = "fedavg", eval_clients = false, standalone = false, seed = 0,
  }
  local outside = res.total_seconds - res.train_seconds
  emit("fl_10k_clients", res.total_seconds, string.format("%d clients: peak %.0f MB, %.3f ms/client/round outside local training, global acc %.4f",
    n, peak_mb(), 1000 * outside / (n * #res.rounds), res.rounds[#res.rounds].global_accuracy))
end

if want("allreduce_10M") then
  -- parry.dist.allreduce of 10M floats (sum) under mpirun (scripts/bench/run
  -- starts 2 ranks), best of 5 after a warm-up, timed on rank 0; the header
  -- exchange and the result's allocation are included.
  local d = parry.dist
  local t = parry.randn(10000000)
  local best = math.huge
  d.allreduce(t)
  for _ = 1, 5 do
    d.barrier()
    local t0 = parry.clock()
    local _ = d.allreduce(t)
    best = math.min(best, parry.clock() - t0)
  end
  if d.is_main() then emit("allreduce_10M", best, string.format("%d ranks, parry.dist.allreduce", d.size())) end
end

if want("rift_mrc") then
  -- RiFT's module robust criticality for one module (conv4) of
  -- examples/rift.lua's CNN: 10 passes of weight-gradient ascent (batch 512,
  -- lr 1, projection to ‖Δ‖ ≤ 0.1‖θ‖ after each pass, then an evaluation pass)
  -- over 1,024 images taken as the fixed adversarial set.
  data(); parry.manual_seed(0)
  local nn = parry.nn
  local layers = {}
  for _, b in ipairs{{1, 16}, {16, 16}, "pool", {16, 32}, {32, 32}, "pool"} do
    if b == "pool" then layers[#layers + 1] = nn.MaxPool2d(2) else
      for _, m in ipairs{nn.Conv2d(b[1], b[2], 3, {padding = 1, bias = false}), nn.BatchNorm2d(b[2]), nn.ReLU()} do layers[#layers + 1] = m end
    end
  end
  for _, m in ipairs{nn.Flatten(), nn.Linear(32 * 7 * 7, 128), nn.ReLU(), nn.Linear(128, 10)} do layers[#layers + 1] = m end
  local net = nn.Sequential(layers)
  local set = {test.x:narrow(1, 1, 1024), test.y:narrow(1, 1, 1024)}
  local r
  local s = best_of(2, function() r = parry.robust.mrc(net, set, {adversarial = true, modules = {"11"}, seed = 0}) end)
  emit("rift_mrc", s, string.format("conv4, 10 passes over 1024 images; MRC %.4f", r[1].mrc))
end

if want("env_steps") then
  -- The native CartPole-v1 vector env, 16 sub-envs, random actions (next-step
  -- autoreset), 20,000 vector steps = 320,000 env steps; the figure is the
  -- time per 100,000 env steps.
  local v = parry.rl.vector("CartPole-v1", 16)
  v:reset({seed = 0})
  local g = parry.Generator(0)
  local n = 20000
  local s = best_of(2, function()
    for _ = 1, n do v:step(parry.randint(1, 2, 16, {generator = g})) end
  end)
  emit("env_steps", s / (n * 16) * 1e5, string.format("per 100k env steps, 16 envs; %.0f env steps/s", n * 16 / s))
end

if want("ppo_cartpole_100k") then
  -- 100,352 steps of PPO (49 updates of 2048) on CartPole-v1 with the
  -- defaults (CleanRL's continuous-action settings), one env; then the
  -- deterministic policy's mean return over 10 episodes.
  local t = parry.clock()
  local policy, history = parry.rl.ppo{env = "CartPole-v1", total_steps = 100352, seed = 1}
  local s = parry.clock() - t
  local ev = parry.rl.evaluate(policy, "CartPole-v1", {episodes = 10, seed = 100})
  emit("ppo_cartpole_100k", s, string.format("eval return %.1f, last update %.1f", ev.mean, history[#history].episodic_return))
end

if want("mujoco_hopper") or want("mujoco_hopper_1env") then
  -- Hopper-v4 (MuJoCo, frame skip 4), random actions in [−1, 1], 20,000 env
  -- steps: mujoco_hopper as a vector env of 8 (next-step autoreset; MuJoCo
  -- sub-envs step on all cores), mujoco_hopper_1env one env reset by hand.
  -- Needs Gymnasium's model files (make deps-rl); skipped without them.
  local ok = pcall(parry.rl.make, "Hopper-v4")
  local g = parry.Generator(0)
  local n = 20000
  if ok and want("mujoco_hopper") then
    local v = parry.rl.vector("Hopper-v4", 8, {seed = 0})
    v:reset()
    local s = best_of(2, function()
      for _ = 1, n / 8 do v:step(parry.rand(8, 3, {generator = g}) * 2 - 1) end
    end)
    emit("mujoco_hopper", s / n * 1e4, string.format("per 10k env steps, 8 envs on %d threads; %.0f steps/s", parry.get_num_threads(), n / s))
  end
  if ok and want("mujoco_hopper_1env") then
    local env = parry.rl.make("Hopper-v4", {seed = 0})
    local s = best_of(2, function()
      env:reset()
      for _ = 1, n do
        local _, _, term, trunc = env:step(parry.rand(3, {generator = g}) * 2 - 1)
        if term or trunc then env:reset() end
      end
    end)
    emit("mujoco_hopper_1env", s / n * 1e4, string.format("per 10k env steps, one env; %.0f steps/s", n / s))
  end
end
