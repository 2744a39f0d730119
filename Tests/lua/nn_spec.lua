-- parry.nn, losses, optim, data and checkpoints as scripts use them.
local parry = require("parry")
local nn, F = parry.nn, parry.nn.functional
local THIS_DIR = "Tests/lua"

local function tmpfile(suffix) return os.tmpname() .. (suffix or "") end

describe("modules", function()
  it("name parameters like PyTorch with 1-based Sequential indices", function()
    local net = nn.Sequential{nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2, {bias = false})}
    local names = {}
    for i, np in ipairs(net:named_parameters()) do names[i] = np[1] end
    assert.same({"1.weight", "1.bias", "3.weight"}, names)
    assert.equals(3 * 4 + 3 + 2 * 3, net:num_parameters())
    assert.equals(net[1], net["1"])                 -- the same userdata every time
    assert.equals("Linear", net[1]:type())
    assert.same({3, 4}, net[1].weight:shape())
    assert.is_true(net[1].weight.requires_grad)
    assert.truthy(tostring(net):find("(3): Linear(in_features=3, out_features=2, bias=false)", 1, true))
  end)

  it("compute Linear as x W^T + b", function()
    local l = nn.Linear(2, 2)
    parry.no_grad(function()
      l.weight:copy_(parry.tensor{{1.0, 2.0}, {3.0, 4.0}})
      l.bias:copy_(parry.tensor{0.5, -0.5})
    end)
    assert.near({{1 + 4 + 0.5, 3 + 8 - 0.5}}, l(parry.tensor{{1.0, 2.0}}), 1e-6)
  end)

  it("switch train/eval for dropout and batch norm", function()
    parry.manual_seed(1)
    local net = nn.Sequential{nn.Linear(8, 8), nn.BatchNorm1d(8), nn.Dropout(0.5)}
    local x = parry.randn(16, 8)
    assert.is_true(net:is_training())
    net:eval()
    assert.is_false(net[2]:is_training())
    assert.equals(net(x), net(x))                   -- deterministic in eval
    net:train()
    local y = net(x)
    assert.truthy(y:eq(0):sum():item() > 20)        -- about half dropped
    assert.equals(1, net[2].num_batches_tracked:item())
  end)

  it("are defined in Lua with nn.Module:extend and mix with built-ins", function()
    local Residual = nn.Module:extend("Residual")
    function Residual:init(n)
      self.fc = nn.Linear(n, n)
      self.gain = parry.ones(1):requires_grad_()     -- a parameter
      self.mask = parry.ones(n)                       -- a buffer
      self.label = "res"                              -- a plain field
    end
    function Residual:forward(x) return self.fc(x):relu() * self.gain + x * self.mask end
    local net = nn.Sequential{Residual(4), nn.Linear(4, 2)}
    local names = {}
    for _, np in ipairs(net:named_parameters()) do names[#names + 1] = np[1] end
    assert.same({"1.gain", "1.fc.weight", "1.fc.bias", "2.weight", "2.bias"}, names)
    assert.truthy(net:state_dict()["1.mask"])
    assert.equals("res", net[1].label)
    collectgarbage(); collectgarbage()              -- the Lua child survives inside the Swift container
    local x = parry.randn(3, 4)
    local loss = net(x):sum()
    loss:backward()
    assert.truthy(net[1].gain.grad)
    assert.truthy(net[1].fc.weight.grad)
    -- subclassing and calling the parent's init
    local Scaled = Residual:extend("Scaled")
    function Scaled:init(n, s) Residual.init(self, n); self.s = s end
    function Scaled:forward(x) return Residual.forward(self, x) * self.s end
    local m = Scaled(4, 2)
    assert.equals("Scaled", m:type())
    assert.same({3, 4}, m(x):shape())
    m.fc = nil                                       -- removing a child unregisters it
    assert.equals(1, #m:parameters())
  end)

  it("pass finite-difference gradient checks end to end (inputs and parameters)", function()
    parry.manual_seed(4)
    local Gate = nn.Module:extend("Gate")
    function Gate:init(n) self.w = parry.randn(n):requires_grad_() end
    function Gate:forward(x) return x * self.w:sigmoid() end
    local net = nn.Sequential{
      nn.Conv2d(2, 3, 3, {stride = 2, padding = 1}), nn.BatchNorm2d(3), nn.LeakyReLU(0.1), nn.AvgPool2d(2, {stride = 1}),
      nn.Flatten(), nn.Linear(3 * 2 * 2, 4), nn.GELU(), Gate(4), nn.Tanh(), nn.Linear(4, 3), nn.Sigmoid(),
    }
    local x = parry.randn(3, 2, 6, 6):requires_grad_()
    local inputs = {x}
    for _, p in ipairs(net:parameters()) do inputs[#inputs + 1] = p end
    local ok, detail = parry.gradcheck(function(xx) return net(xx) end, inputs, {atol = 2e-3, rtol = 2e-2})
    assert(ok, detail)
    local ens = nn.Ensemble{nn.Linear(3, 2), nn.Sequential{nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2)}}
    local y = parry.randn(4, 3):requires_grad_()
    ok, detail = parry.gradcheck(function(v) return ens(v) end, {y})
    assert(ok, detail)
    -- the ensemble outputs log of the mean of its members' softmax
    local expected = ((ens[1](y):softmax(2) + ens[2](y):softmax(2)) / 2):log()
    assert.near(expected, ens(y), 1e-6)
  end)

  it("refuse cycles and list shared parameters once", function()
    local a, b = nn.Sequential{nn.Linear(2, 2)}, nn.Sequential{nn.Linear(2, 2)}
    a.inner = b
    assert.error(function() b.outer = a end, "would make the module its own descendant")
    assert.error(function() a:append(a) end, "would make a cycle")
    local shared = nn.Linear(3, 3)
    local twice = nn.Sequential{shared, nn.ReLU(), shared}
    assert.equals(2, #twice:parameters())
    assert.same({1, 3}, twice(parry.randn(1, 3)):shape())
  end)

  it("give features of named layers", function()
    local net = parry.models.resnet20{in_channels = 1, classes = 3}
    local f, logits = net:features(parry.randn(2, 1, 16, 16), "layer2")
    assert.same({2, 32, 8, 8}, f:shape())
    assert.same({2, 3}, logits:shape())
    local fs = net:features(parry.randn(1, 1, 16, 16), {"layer1", "layer3.3"})
    assert.same({1, 16, 16, 16}, fs.layer1:shape())
    assert.same({1, 64, 4, 4}, fs["layer3.3"]:shape())
    assert.error(function() net:features(parry.randn(1, 1, 8, 8), "layer7") end, "no submodule named 'layer7'")
  end)

  it("round-trip state dicts and reject mismatches", function()
    local a, b = parry.models.mlp{4, 3, 2}, parry.models.mlp{4, 3, 2}
    b:load_state_dict(a:state_dict())
    local x = parry.randn(2, 4)
    assert.equals(a(x), b(x))
    assert.error(function() b:load_state_dict({["2.weight"] = parry.zeros(3, 4)}) end, "missing keys")
    assert.error(function() b:load_state_dict(parry.models.mlp{4, 5, 2}:state_dict()) end, "size mismatch for ")
  end)
end)

describe("threads", function()
  it("give the same training step on 1 and 2 threads, and set_num_threads round-trips", function()
    local before = parry.get_num_threads()
    local function step(threads)
      parry.set_num_threads(threads)
      assert(parry.get_num_threads() == threads)
      parry.manual_seed(3)
      local net = parry.models.small_cnn{}
      local x, y = parry.rand(20, 1, 28, 28), parry.randint(1, 10, 20)
      local loss = parry.losses.cross_entropy(net(x), y)
      loss:backward()
      local g = {}
      for _, np in ipairs(net:named_parameters()) do g[np[1]] = np[2].grad:clone() end
      return loss:item(), g
    end
    local l1, g1 = step(1)
    local l2, g2 = step(2)
    parry.set_num_threads(before)
    assert(l1 == l2, ("loss %.9g vs %.9g"):format(l1, l2))
    local n = 0
    for name, g in pairs(g1) do
      assert((g - g2[name]):abs():max():item() == 0, name .. " gradient differs between 1 and 2 threads")
      n = n + 1
    end
    assert(n == 8, "expected 8 parameter tensors, got " .. n)
  end)
end)

describe("functional and losses", function()
  it("match closed forms", function()
    -- cross-entropy of logits {0, ln 3} with label 2: -log(3/4)
    local logits = parry.tensor{{0.0, math.log(3)}}
    assert.near(-math.log(0.75), parry.losses.cross_entropy(logits, parry.tensor{2}):item(), 1e-6)
    assert.near(-math.log(0.25), parry.losses.nll(logits:log_softmax(2), parry.tensor{1}):item(), 1e-6)
    assert.near(2.5, parry.losses.mse(parry.tensor{1.0, 2.0}, parry.tensor{0.0, 4.0}):item(), 1e-6)
    assert.near({1, 1}, parry.losses.cross_entropy(parry.zeros(2, 2), parry.tensor{1, 2}, {reduction = "none"}) / math.log(2), 1e-6)
    assert.same({{0, 1, 0}}, F.one_hot(parry.tensor{2}, 3):totable())
    assert.near({1}, F.cosine_similarity(parry.tensor{{1.0, 2.0}}, parry.tensor{{2.0, 4.0}}), 1e-6)
  end)

  it("comp-sum family: named members, aliases and bad tau", function()
    -- logits {0, ln 3}, label 2: p_y = 3/4
    local h, y = parry.tensor{{0.0, math.log(3)}}, parry.tensor{2}
    local p = 0.75
    assert.near(1 / p - 1, parry.losses.sum_exp(h, y):item(), 1e-6)
    assert.near(1 / p - 1, parry.losses.comp_sum(h, y, {tau = 0}):item(), 1e-6)
    assert.near(-math.log(p), parry.losses.comp_sum(h, y, {tau = 1}):item(), 1e-6)
    assert.near((1 - p ^ 0.7) / 0.7, parry.losses.gce(h, y, {q = 0.7}):item(), 1e-6)
    assert.near(1 - p, parry.losses.mae(h, y):item(), 1e-6)
    assert.near(parry.losses.cross_entropy(h, y):item(), parry.losses.comp_sum(h, y, {tau = 1}):item(), 1e-7)
    assert.error(function() parry.losses.comp_sum(h, y, {tau = -0.5}) end, "parry.losses.comp_sum: tau must be ≥ 0")
    assert.error(function() parry.losses.comp_sum(h, y, {tau = "a"}) end, "option 'tau' must be a number")
    assert.error(function() parry.losses.comp_sum(h, y) end, "missing option tau")
    assert.error(function() parry.losses.gce(h, y, {q = 0}) end, "q must be in (0, 1]")
  end)

  it("reject labels outside 1..C", function()
    assert.error(function() parry.losses.cross_entropy(parry.zeros(2, 3), parry.tensor{1, 4}) end, "parry.losses.cross_entropy: label 4 is outside 1..3")
    assert.error(function() parry.losses.cross_entropy(parry.zeros(2, 3), parry.tensor{0, 1}) end, "label 0 is outside 1..3")
    assert.error(function() parry.losses.cross_entropy(parry.zeros(2, 3), parry.tensor{1.0, 2.0}) end, "must be an int64 tensor")
    assert.error(function() parry.losses.cross_entropy(parry.zeros(2, 3), parry.tensor{1, 2}, {reduction = "avg"}) end, "unknown reduction 'avg'")
  end)
end)

describe("optimizers", function()
  it("take SGD steps as PyTorch", function()
    local p = parry.tensor{1.0, -1.0}:requires_grad_()
    local opt = parry.optim.SGD({p}, {lr = 0.1, momentum = 0.9})
    for _ = 1, 2 do
      opt:zero_grad()
      ;(p * p):sum():backward()                     -- grad 2p
      opt:step()
    end
    -- step 1: b = 2p0 = 2 → p1 = 1 - 0.2 = 0.8; step 2: b = 0.9·2 + 1.6 = 3.4 → p2 = 0.8 - 0.34 = 0.46
    assert.near({0.46, -0.46}, p, 1e-6)
    assert.near(0.1, opt.lr, 1e-12)
    opt.lr = 0.01
    assert.near(0.01, opt.lr, 1e-12)
  end)

  it("schedule learning rates and save optimizer state", function()
    local p = parry.zeros(1):requires_grad_()
    local opt = parry.optim.Adam({p}, {lr = 0.1, betas = {0.8, 0.99}})
    local sched = parry.optim.lr.step(opt, {step_size = 2, gamma = 0.5})
    local lrs = {}
    for i = 1, 4 do sched:step(); lrs[i] = opt.lr end
    assert.near({0.1, 0.05, 0.05, 0.025}, lrs, 1e-12)
    p.grad = parry.ones(1)
    opt:step()
    local sd = opt:state_dict()
    assert.near(0.8, sd.hyperparameters.beta1, 1e-12)
    assert.truthy(sd.state[1].exp_avg)
    local opt2 = parry.optim.Adam({p}, {lr = 1})
    opt2:load_state_dict(sd)
    assert.near(0.025, opt2.lr, 1e-12)
    assert.equals(sd.state[1].exp_avg, opt2:state_dict().state[1].exp_avg)
    assert.error(function() parry.optim.SGD({p}, {}) end, "optim.SGD: missing option lr")
    assert.error(function() parry.optim.SGD({p}, {lr = 0.1, nesterov = true}) end, "nesterov momentum requires a momentum")
  end)

  it("take parameter groups with their own lr and weight decay (PyTorch's param_groups)", function()
    local a = parry.tensor{1.0, 2.0}:requires_grad_()
    local b = parry.tensor{3.0}:requires_grad_()
    local opt = parry.optim.SGD({{params = {a}, lr = 0.5}, {params = {b}, weight_decay = 0.1}}, {lr = 0.1})
    ;((a * a):sum() + (b * 2):sum()):backward()     -- grad a = 2a = {2, 4}, grad b = 2
    opt:step()
    -- a: lr 0.5, no decay: {1 - 0.5·2, 2 - 0.5·4} = {0, 0}; b: lr 0.1, decay 0.1: 3 - 0.1·(2 + 0.1·3) = 2.77
    assert.near({0, 0}, a, 1e-7)
    assert.near({2.77}, b, 1e-6)
    local groups = opt:param_groups()
    assert.equals(2, #groups)
    assert.near(0.5, groups[1].lr, 1e-12); assert.near(0, groups[1].weight_decay, 1e-12)
    assert.near(0.1, groups[2].lr, 1e-12); assert.near(0.1, groups[2].weight_decay, 1e-12)
    assert.equals(1, groups[2].num_params)
    -- a schedule scales every group from its own base; opt.lr sets every group
    local sched = parry.optim.lr.step(opt, {step_size = 1, gamma = 0.5})
    sched:step()
    groups = opt:param_groups()
    assert.near(0.25, groups[1].lr, 1e-12); assert.near(0.05, groups[2].lr, 1e-12)
    opt:set("lr", 0.2, 2)
    assert.near(0.2, opt:param_groups()[2].lr, 1e-12)
    opt.lr = 0.3
    assert.near(0.3, opt:param_groups()[1].lr, 1e-12); assert.near(0.3, opt:param_groups()[2].lr, 1e-12)
    -- state dicts carry the groups
    local sd = opt:state_dict()
    opt:set("lr", 0.01)
    opt:load_state_dict(sd)
    assert.near(0.3, opt:param_groups()[2].lr, 1e-12)
    local nets = parry.nn.Linear(2, 2)
    local adam = parry.optim.Adam({{params = nets, lr = 0.01}, {params = {b}}})
    assert.near(0.001, adam:param_groups()[2].lr, 1e-12)
    assert.error(function() parry.optim.SGD({{params = {a}}}) end, "optim.SGD: missing option lr")
    assert.error(function() parry.optim.SGD({{params = {a}, lr = 1, bogus = 1}}) end, "parameter group 1: unknown option 'bogus'")
    assert.error(function() parry.optim.SGD({{params = {a}}, {params = {a}}}, {lr = 1}) end, "more than one group")
    assert.error(function() parry.optim.SGD({{lr = 1}}) end, "parameter group 1 has no params")
    assert.error(function() opt:set("lr", 1, 3) end, "Optimizer:set: group 3 is out of range")
    assert.error(function() opt:set("bogus", 1) end, "has no hyper-parameter 'bogus'")
    -- settings load together (nesterov needs the momentum that comes with it, in whatever
    -- order the table yields them), and a rejected change leaves the optimizer as it was
    for _ = 1, 8 do
      local src = parry.optim.SGD({a}, {lr = 0.1, momentum = 0.9, nesterov = true})
      local dst = parry.optim.SGD({a}, {lr = 0.2})
      dst:load_state_dict(src:state_dict())
      assert.near(0.9, dst.momentum, 1e-12); assert.equals(1, dst.nesterov)
    end
    local plain = parry.optim.SGD({a}, {lr = 0.2})
    assert.error(function() plain:set("nesterov", 1) end, "nesterov momentum requires a momentum")
    assert.equals(0, plain.nesterov)
  end)
end)

describe("data", function()
  it("reads Fashion-MNIST from the Debian package", function()
    local test = parry.data.fashion_mnist{split = "test", limit = 300}
    assert.equals(300, #test)
    assert.same({300, 1, 28, 28}, test.x:shape())
    assert.truthy(test.y:min():item() >= 1 and test.y:max():item() <= 10)
    assert.truthy(test.x:max():item() <= 1 and test.x:min():item() >= 0)
    assert.error(function() parry.data.fashion_mnist{root = "/nonexistent"} end, "/nonexistent/train-images-idx3-ubyte(.gz): no such file")
  end)

  it("batches with seeded shuffling, drop_last and transforms", function()
    local ds = parry.data.TensorDataset(parry.arange(1, 10):float():reshape(10, 1), parry.arange(1, 10))
    local seen, sizes = {}, {}
    for xb, yb in ds:batches(4, {shuffle = true, generator = parry.Generator(3)}) do
      sizes[#sizes + 1] = xb:size(1)
      for i = 1, yb:size(1) do seen[#seen + 1] = yb[i]; assert.equals(yb[i] + 0.0, xb[i][1]) end
    end
    assert.same({4, 4, 2}, sizes)
    table.sort(seen)
    assert.same({1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, seen)
    local again = {}
    for _, yb in ds:batches(4, {shuffle = true, generator = parry.Generator(3)}) do again[#again + 1] = yb[1] end
    local first = {}
    for _, yb in ds:batches(4, {shuffle = true, generator = parry.Generator(3)}) do first[#first + 1] = yb[1] end
    assert.same(first, again)
    local n = 0
    for _ in ds:batches(4, {drop_last = true}) do n = n + 1 end
    assert.equals(2, n)
    local tr, va = table.unpack(ds:split{0.8, 0.2})
    assert.equals(8, #tr); assert.equals(2, #va)
    local x, y = ds:get(3)
    assert.equals(3, y)
    local img = parry.arange(1, 16):float():reshape(1, 1, 4, 4)
    local T = parry.data.transforms
    local out = T.compose{T.hflip(1), T.normalize({1}, {2})}(img)
    assert.same({{{{1.5, 1, 0.5, 0}}}}, out:narrow(3, 1, 1):totable())
    assert.same({1, 1, 4, 4}, T.random_crop(4, {padding = 2})(img):shape())
    assert.error(function() ds:batches(0) end, "parry.data.batches: batch size must be a positive integer")
  end)

  it("reports truncated and missing files with their paths", function()
    local path = os.tmpname()
    local f = io.open(path, "wb")
    f:write(string.char(0, 0, 8, 1, 0, 0, 0, 9, 1, 2))     -- an IDX header for 9 bytes, then only 2
    f:close()
    assert.error(function() parry.data.idx(path) end, "parry.data.idx: " .. path .. ": truncated IDX data")
    os.remove(path)
    assert.error(function() parry.data.npy("/nonexistent.npy") end, "parry.data.npy: /nonexistent.npy: no such file")
    assert.error(function() parry.data.cifar10{root = "/nonexistent"} end, "parry.data.cifar10: /nonexistent/data_batch_1.bin: no such file")
  end)

  it("makes synthetic classification data", function()
    local ds = parry.data.synthetic_classification{n = 200, dim = 5, classes = 3, seed = 1}
    assert.same({200, 5}, ds.x:shape())
    assert.equals(3, ds.y:max():item())
    assert.equals(ds.x, parry.data.synthetic_classification{n = 200, dim = 5, classes = 3, seed = 1}.x)
  end)
end)

describe("checkpoints", function()
  it("save and load modules, tensors and tables in safetensors", function()
    local path = tmpfile(".safetensors")
    local net = parry.models.small_cnn{in_channels = 1, classes = 4, size = 8, hidden = 6}
    parry.save(net, path, {metadata = {arch = "small_cnn", epochs = 3}})
    local sd, meta = parry.load(path)
    assert.equals("small_cnn", meta.arch)
    assert.equals("3", meta.epochs)
    local copy = parry.models.small_cnn{in_channels = 1, classes = 4, size = 8, hidden = 6}
    copy:load_state_dict(sd)
    local x = parry.randn(2, 1, 8, 8)
    assert.equals(net(x), copy(x))
    parry.save({a = parry.tensor{1, 2, 3}, b = parry.eye(2)}, path)
    local t = parry.load(path)
    assert.equals(parry.tensor{1, 2, 3}, t.a)
    assert.equals("int64", t.a:dtype())
    -- the byte layout: u64 header length, a JSON header, raw little-endian data
    local f = assert(io.open(path, "rb"))
    local bytes = f:read("a")
    f:close()
    local n = string.unpack("<I8", bytes)
    assert.equals(0, n % 8)
    local header = require("cjson").decode(bytes:sub(9, 8 + n))
    assert.equals("I64", header.a.dtype)
    assert.same({3}, header.a.shape)
    assert.equals(2, string.unpack("<i8", bytes, 9 + n + header.a.data_offsets[1] + 8))
    os.remove(path)
  end)

  it("reject corrupt files with the path in the message", function()
    local path = tmpfile(".safetensors")
    local f = io.open(path, "wb"); f:write(string.pack("<I8", 4) .. "{bad"); f:close()
    assert.error(function() parry.load(path) end, path .. ": corrupt header")
    f = io.open(path, "wb"); f:write(string.pack("<I8", 999) .. "{}"); f:close()
    assert.error(function() parry.load(path) end, "corrupt header length")
    local h = '{"w":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}}'
    f = io.open(path, "wb"); f:write(string.pack("<I8", #h) .. h .. "1234"); f:close()
    assert.error(function() parry.load(path) end, "do not match its shape")
    os.remove(path)
    assert.error(function() parry.load("/nonexistent.safetensors") end, "parry.load: /nonexistent.safetensors: no such file")
    assert.error(function() parry.save(parry.ones(1), "/nonexistent/dir/x.safetensors") end, "parry.save: /nonexistent/dir/x.safetensors: cannot write")
  end)

  it("reproduce PyTorch's logits from a PyTorch checkpoint (scripts/make_torch_fixture.py)", function()
    local sd, meta = parry.load("Tests/fixtures/torch_tiny_cnn.safetensors")
    assert.truthy(meta.torch)
    local x, expected = sd.input, sd.logits
    sd.input, sd.logits = nil, nil
    local net = nn.Sequential{
      nn.Conv2d(1, 4, 3, {padding = 1}), nn.BatchNorm2d(4), nn.ReLU(), nn.MaxPool2d(2),
      nn.Conv2d(4, 6, 3, {stride = 2, padding = 1}), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
      nn.Flatten(), nn.Linear(6, 5), nn.Tanh(), nn.Linear(5, 3),
    }
    net:load_state_dict(nn.from_torch_names(sd))
    net:eval()
    assert.near(expected, net(x), 1e-5)
    assert.truthy(nn.to_torch_names(net:state_dict())["0.weight"])
  end)
end)

describe("parry.train helpers", function()
  it("train a model on separable data and measure accuracy", function()
    parry.manual_seed(7)
    local ds = parry.data.synthetic_classification{n = 300, dim = 4, classes = 3, seed = 7, spread = 3}
    local net = parry.models.mlp{4, 16, 3}
    local train = require("parry.train")
    local before = train.accuracy(net, ds)
    local opt = parry.optim.Adam(net:parameters(), {lr = 0.05})
    local first = train.epoch(net, ds, opt, {batch_size = 32, generator = parry.Generator(1)})
    local last
    for _ = 1, 5 do last = train.epoch(net, ds, opt, {batch_size = 32}) end
    assert.truthy(last < first, string.format("loss went from %.3f to %.3f", first, last))
    local after = train.accuracy(net, ds)
    assert.truthy(after > 0.9 and after > before, string.format("accuracy %.3f -> %.3f", before, after))
    assert.is_true(net:is_training())
  end)
end)

describe("weight-space helpers", function()
  local nn = parry.nn
  local Block = nn.Module:extend("CloneBlock")
  function Block:init(c) self.conv = nn.Conv2d(c, c, 3, {padding = 1}); self.bn = nn.BatchNorm2d(c); self.cfg = {scale = 2} end
  function Block:forward(x) return (self.bn(self.conv(x)) * self.cfg.scale + x):relu() end

  it("clone a model deeply: same outputs, independent weights, fields and modes", function()
    parry.manual_seed(3)
    local net = nn.Sequential{Block(2), nn.Flatten(), nn.Linear(32, 3)}
    net:eval()
    local x = parry.randn(2, 2, 4, 4)
    local copy = net:clone()
    assert.equals(tostring(net), tostring(copy))
    assert.equals(0, (copy(x) - net(x)):abs():max():item())
    assert.is_false(copy:is_training())
    assert.is_true(copy:get("3").weight.requires_grad)
    copy[1].cfg.scale = 3                                   -- plain fields are copied, not shared
    assert.equals(2, net[1].cfg.scale)
    parry.no_grad(function() copy:get("3").weight:fill_(0) end)
    assert.truthy(net:get("3").weight:abs():sum():item() > 0)
    local r = parry.models.resnet20{in_channels = 1, classes = 10}
    local r2 = r:clone()
    assert.equals(#r:parameters(), #r2:parameters())
    local z = parry.randn(1, 1, 8, 8)
    r:eval(); r2:eval()
    assert.equals(0, (r(z) - r2(z)):abs():max():item())
  end)

  it("get submodules by dotted name, listing the names on a miss", function()
    local r = parry.models.resnet20{in_channels = 1, classes = 10}
    assert.equals("Conv2d", r:get("layer2.1.conv2"):type())
    assert.equals(r, r:get(""))
    assert.error(function() r:get("layer9") end, "Module:get: no submodule named 'layer9' (available: conv1, bn1, layer1")
  end)

  it("interpolate state dicts: α = 0 and 1 exactly, 0.5 the mean, integers from the first", function()
    parry.manual_seed(4)
    local a, b = nn.Sequential{nn.Linear(3, 2), nn.BatchNorm1d(2)}, nn.Sequential{nn.Linear(3, 2), nn.BatchNorm1d(2)}
    b(parry.randn(4, 3))                                   -- b's running stats and counter move
    local sa, sb = a:state_dict(), b:state_dict()
    local s0, s1, sh = nn.interpolate(sa, sb, 0), nn.interpolate(sa, sb, 1), nn.interpolate(sa, sb, 0.5)
    for name, t in pairs(sa) do
      assert.equals(t, s0[name], name)
      if t:dtype() == "float32" then
        assert.equals(sb[name], s1[name], name)
        assert.near((t + sb[name]) / 2, sh[name], 1e-7)
      else
        assert.equals(t, s1[name], name)                   -- num_batches_tracked from the first
      end
    end
    assert.error(function() nn.interpolate(sa, sb, 1.5) end, "nn.interpolate: alpha must be in [0, 1], got 1.5")
    assert.error(function() nn.interpolate(sa, nn.Linear(3, 2):state_dict(), 0.5) end, "nn.interpolate: the state dicts have different keys")
    assert.error(function() nn.interpolate(nn.Linear(3, 2):state_dict(), nn.Linear(3, 4):state_dict(), 0.5) end,
      "'bias' has shape {2} in the first state dict and {4} in the second")
  end)
end)

describe("parry.nn.interval_bounds", function()
  it("bounds every output of sampled inputs and names bad input", function()
    parry.manual_seed(4)
    local nn = parry.nn
    local net = nn.Sequential{nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 2)}
    local x = parry.randn(1, 3)
    local lo, hi = nn.interval_bounds(net, x - 0.2, x + 0.2)
    local y = net(x + (parry.rand(2000, 3) * 2 - 1) * 0.2)
    assert.truthy((y - lo):min():item() >= -1e-5 and (hi - y):min():item() >= -1e-5)
    assert.error(function() nn.interval_bounds(net, x + 1, x) end, "nn.interval_bounds: lo must not exceed hi")
    assert.error(function() nn.interval_bounds(nn.GELU(), x, x) end, "not monotone")
  end)
end)
