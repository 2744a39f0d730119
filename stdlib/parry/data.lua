--- parry.data: datasets, loaders and transforms. Images are N×C×H×W float32
-- in [0, 1]; labels are int64 in 1..C.
--
--   local train = parry.data.fashion_mnist{split = "train"}
--   for xb, yb in train:batches(128, {shuffle = true, transform = T.hflip()}) do ... end
--   local x, y = train:get(1)                   -- one sample
--   local tr, va = table.unpack(train:split{0.9, 0.1})

local core = require("parry.core")
local D = core._data

local data = { idx = D.idx, npy = D.npy, csv = D.csv, corrupt = D.corrupt, point_cloud = D.point_cloud, image_signal = D.image_signal,
  transforms = {} }

local raise = require("parry._util").raise
local function fail(fn, msg) raise("parry.data." .. fn .. ": " .. msg) end

-- Wraps f so that any error it raises (its own or a tensor op's) names
-- parry.data.<fn> and points at the caller's line.
local function named(fn, f)
  local prefix = "parry.data." .. fn
  return function(...)
    local r = table.pack(pcall(f, ...))
    if r[1] then return table.unpack(r, 2, r.n) end
    local msg = tostring(r[2]):gsub("^[^\n]-:%d+: ", "")
    if msg:sub(1, #prefix) ~= prefix then msg = prefix .. ": " .. msg end
    raise(msg)
  end
end

local Dataset = {}
local DatasetMT = {}

-- An index view (ds:view) keeps its base dataset and 1-based indices and
-- materializes x and y on first access; #view and views of views need no copy.
local function view_of(self) return rawget(self, "_idx") end
DatasetMT.__len = function(self)
  local idx = view_of(self)
  if idx then return idx:numel() end
  return self.x:size(1)
end
DatasetMT.__index = function(self, key)
  if math.type(key) == "integer" then return { self:get(key) } end
  if (key == "x" or key == "y") and view_of(self) then
    local base, idx = rawget(self, "_base"), rawget(self, "_idx")
    rawset(self, "x", base.x:index_select(1, idx))
    rawset(self, "y", base.y and base.y:index_select(1, idx))
    return rawget(self, key)
  end
  return Dataset[key]
end
DatasetMT.__tostring = function(self)
  return string.format("Dataset(%d samples, x %s, y %s)", #self, table.concat(self.x:shape(), "x"),
    self.y and table.concat(self.y:shape(), "x") or "none")
end

--- TensorDataset(x [, y]): samples along dim 1 of x (and y).
function data.TensorDataset(x, y)
  if not core.is_tensor(x) then fail("TensorDataset", "expected a tensor x, got " .. type(x)) end
  if x:dim() == 0 then fail("TensorDataset", "x must have at least one dimension") end
  if y ~= nil then
    if not core.is_tensor(y) then fail("TensorDataset", "expected a tensor y, got " .. type(y)) end
    if y:dim() == 0 or y:size(1) ~= x:size(1) then
      fail("TensorDataset", string.format("x has %d samples but y has %d", x:size(1), y:dim() > 0 and y:size(1) or 0))
    end
  end
  return setmetatable({ x = x, y = y }, DatasetMT)
end

--- ds:get(i) -> x_i, y_i (1-based; negative from the end).
function Dataset:get(i)
  if getmetatable(self) ~= DatasetMT then fail("get", "call as ds:get(i) on a dataset") end
  if math.type(i) ~= "integer" then fail("get", "expected an integer index, got " .. tostring(i)) end
  return self.x[i], self.y and self.y[i]
end

--- ds:subset(idx): the samples at 1-based indices (a table or an int64 tensor).
function Dataset:subset(idx)
  if getmetatable(self) ~= DatasetMT then fail("subset", "call as ds:subset(idx) on a dataset") end
  if type(idx) ~= "table" and not core.is_tensor(idx) then fail("subset", "expected a table or tensor of indices, got " .. type(idx)) end
  if type(idx) == "table" then idx = core.tensor(idx, { dtype = "int64" }) end
  if view_of(self) and rawget(self, "x") == nil then
    local base, own = rawget(self, "_base"), rawget(self, "_idx")
    return base:subset(own:index_select(1, idx))
  end
  return data.TensorDataset(self.x:index_select(1, idx), self.y and self.y:index_select(1, idx))
end

--- ds:view(idx) -> an index view: the samples idx (1-based) of ds, read from
-- ds when used (x and y materialize on first access, once). Views of views
-- compose their indices; parry.fl trains on views without copying them.
function Dataset:view(idx)
  if getmetatable(self) ~= DatasetMT then fail("view", "call as ds:view(idx) on a dataset") end
  if type(idx) ~= "table" and not core.is_tensor(idx) then fail("view", "expected a table or tensor of indices, got " .. type(idx)) end
  if type(idx) == "table" then idx = core.tensor(idx, { dtype = "int64" }) end
  if idx:dtype() ~= "int64" or idx:dim() ~= 1 then fail("view", "indices must be a 1-D integer tensor") end
  local n = #self
  if idx:numel() > 0 and (idx:min():item() < 1 or idx:max():item() > n) then
    fail("view", "indices must be in 1.." .. n)
  end
  if view_of(self) and rawget(self, "x") == nil then
    return rawget(self, "_base"):view(rawget(self, "_idx"):index_select(1, idx))
  end
  return setmetatable({ _base = self, _idx = idx }, DatasetMT)
end

--- ds:split{f1, f2, ...} [, {generator=}]: random disjoint subsets with those
-- fractions (or counts); the last takes the remainder of rounding.
function Dataset:split(parts, opts)
  if getmetatable(self) ~= DatasetMT then fail("split", "call as ds:split{...} on a dataset") end
  if opts ~= nil and type(opts) ~= "table" then fail("split", "expected an options table, got " .. type(opts)) end
  if type(parts) ~= "table" or #parts == 0 then fail("split", "expected a table of fractions or counts, e.g. {0.9, 0.1}") end
  local n, total = #self, 0
  for _, p in ipairs(parts) do
    if type(p) ~= "number" or p < 0 then fail("split", "fractions must be non-negative numbers") end
    total = total + p
  end
  local counts, fractions = {}, total <= 1 + 1e-9
  if not fractions and total ~= n then fail("split", string.format("counts add up to %d, expected %d", total, n)) end
  local used = 0
  for i, p in ipairs(parts) do
    counts[i] = fractions and math.floor(p * n + 0.5) or math.floor(p)
    if i == #parts and fractions and math.abs(total - 1) < 1e-9 then counts[i] = n - used end
    used = used + counts[i]
  end
  if used > n then fail("split", "the parts need more samples than the dataset has") end
  local gen = opts and opts.generator
  if opts and opts.seed ~= nil then
    if math.type(opts.seed) ~= "integer" then fail("split", "seed must be an integer") end
    gen = core.Generator(opts.seed)
  end
  local perm = core.randperm(n, gen and { generator = gen } or nil)
  local out, start = {}, 1
  for i, c in ipairs(counts) do
    out[i] = c > 0 and self:subset(perm:narrow(1, start, c)) or data.TensorDataset(self.x:narrow(1, 1, 0), self.y and self.y:narrow(1, 1, 0))
    start = start + c
  end
  return out
end

--- for xb, yb in ds:batches(bs, {shuffle=, drop_last=, transform=, generator=, shard=, order=, start=}) do ... end
-- order = a permutation of 1..#ds (int64 tensor) to take the samples in
-- (instead of shuffle's); start = the first batch to yield (1-based), for
-- continuing an epoch from a checkpoint with the same order.
-- shard = {rank, size} (parry.dist's 0-based rank): bs is the global batch;
-- each global batch is cut into `size` contiguous slices and this rank gets
-- slice `rank` (possibly empty, so that every rank iterates the same number
-- of times). With the same shuffle generator state on every rank, the slices
-- partition the single-process batches.
function Dataset:batches(bs, opts)
  if getmetatable(self) ~= DatasetMT then fail("batches", "call as ds:batches(...) on a dataset") end
  if opts ~= nil and type(opts) ~= "table" then fail("batches", "expected an options table, got " .. type(opts)) end
  opts = opts or {}
  if math.type(bs) ~= "integer" or bs < 1 then fail("batches", "batch size must be a positive integer, got " .. tostring(bs)) end
  for k in pairs(opts) do
    if k ~= "shuffle" and k ~= "drop_last" and k ~= "transform" and k ~= "generator" and k ~= "shard"
        and k ~= "order" and k ~= "start" then
      fail("batches", "unknown option '" .. tostring(k) .. "' (expected shuffle, drop_last, transform, generator, shard, order, start)")
    end
  end
  if opts.order ~= nil then
    local o = opts.order
    if not core.is_tensor(o) or o:dtype() ~= "int64" or o:dim() ~= 1 or o:numel() ~= #self then
      fail("batches", "order must be a permutation of 1.." .. #self .. " (an int64 tensor), got " .. tostring(o))
    end
    if opts.shuffle then fail("batches", "give order or shuffle, not both") end
  end
  local first_batch = opts.start or 1
  if math.type(first_batch) ~= "integer" or first_batch < 1 then
    fail("batches", "start must be a positive batch number, got " .. tostring(opts.start))
  end
  local shard_rank, shard_size
  if opts.shard ~= nil then
    local s = opts.shard
    if type(s) ~= "table" or math.type(s[1]) ~= "integer" or math.type(s[2]) ~= "integer" or s[2] < 1 or s[1] < 0 or s[1] >= s[2] then
      fail("batches", "shard must be {rank, size} with 0 <= rank < size (e.g. dp:shard()), got " .. tostring(s))
    end
    shard_rank, shard_size = s[1], s[2]
  end
  local n = #self
  local order = opts.order or (opts.shuffle and core.randperm(n, opts.generator and { generator = opts.generator } or nil)) or nil
  local start = 1 + (first_batch - 1) * bs
  local x, y, transform = self.x, self.y, opts.transform
  return function()
    if start > n then return nil end
    local len = math.min(bs, n - start + 1)
    if len < bs and opts.drop_last then return nil end
    local xb, yb
    local first, count = start, len
    if shard_rank then
      local lo = (shard_rank * len) // shard_size
      local hi = ((shard_rank + 1) * len) // shard_size
      first, count = start + lo, hi - lo
    end
    if order then
      local idx = order:narrow(1, first, count)
      xb, yb = x:index_select(1, idx), y and y:index_select(1, idx)
    else
      xb, yb = x:narrow(1, first, count), y and y:narrow(1, first, count)
    end
    start = start + len
    if transform then xb = transform(xb) end
    return xb, yb
  end
end

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

-- The first of path, path.gz that exists.
local function find(fn, root, name, hint)
  for _, p in ipairs{ root .. "/" .. name, root .. "/" .. name .. ".gz" } do
    if exists(p) then return p end
  end
  fail(fn, root .. "/" .. name .. "(.gz): no such file" .. (hint or ""))
end

local function check_opts(fn, opts, allowed)
  local checked, err = require("parry._util").check_options(opts, allowed)
  if not checked then fail(fn, err) end
  return checked
end

local function idx_dataset(fn, opts, default_root, hint)
  opts = check_opts(fn, opts, { split = true, root = true, limit = true })
  if opts.limit ~= nil and (math.type(opts.limit) ~= "integer" or opts.limit < 1) then fail(fn, "limit must be a positive integer") end
  local split = opts.split or "train"
  if split ~= "train" and split ~= "test" then fail(fn, "split must be \"train\" or \"test\", got " .. tostring(split)) end
  local root = opts.root or default_root
  if not root then fail(fn, "missing option root (the folder with the IDX files)") end
  local prefix = split == "train" and "train" or "t10k"
  -- streamed straight to float32 in [0, 1], only the first `limit` images
  local images = D.idx(find(fn, root, prefix .. "-images-idx3-ubyte", hint), { limit = opts.limit, divisor = 255 })
  local labels = D.idx(find(fn, root, prefix .. "-labels-idx1-ubyte", hint), { limit = opts.limit })
  if images:dim() ~= 3 or labels:dim() ~= 1 or images:size(1) ~= labels:size(1) then
    fail(fn, "images and labels do not match (" .. table.concat(images:shape(), "x") .. " vs " .. table.concat(labels:shape(), "x") .. ")")
  end
  return data.TensorDataset(images:unsqueeze(2), labels:add_(1))
end

--- fashion_mnist{split = "train"|"test", root = , limit = } from Debian's dataset-fashion-mnist.
function data.fashion_mnist(opts)
  return idx_dataset("fashion_mnist", opts, "/usr/share/datasets/fashion-mnist",
    " (install Debian's dataset-fashion-mnist, or pass root=)")
end

--- mnist{root = , split = , limit = }: the same IDX layout.
function data.mnist(opts) return idx_dataset("mnist", opts, nil) end

--- cifar10{root = , split = "train"|"test"}: the binary version (data_batch_1.bin ... test_batch.bin).
function data.cifar10(opts)
  opts = check_opts("cifar10", opts, { split = true, root = true })
  if not opts.root then fail("cifar10", "missing option root (the folder with data_batch_1.bin ...)") end
  local split = opts.split or "train"
  local names = split == "train" and { "data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin", "data_batch_4.bin", "data_batch_5.bin" }
    or split == "test" and { "test_batch.bin" } or fail("cifar10", "split must be \"train\" or \"test\"")
  local root = opts.root
  if not exists(root .. "/" .. names[1]) and exists(root .. "/cifar-10-batches-bin/" .. names[1]) then
    root = root .. "/cifar-10-batches-bin"
  end
  local paths = {}
  for i, n in ipairs(names) do paths[i] = root .. "/" .. n end
  local x, y = D._cifar(paths)
  return data.TensorDataset(x, y + 1)
end

--- cifar10c{root=, kind=, severity=1..5, limit=}: CIFAR-10-C (Hendrycks & Dietterich
-- 2019) from its .npy files (<kind>.npy: 50,000 32×32×3 uint8 images, 10,000 per
-- severity; labels.npy), as a dataset of N×3×32×32 float32 in [0, 1].
function data.cifar10c(opts)
  opts = check_opts("cifar10c", opts, { root = true, kind = true, severity = true, limit = true })
  if type(opts.root) ~= "string" then fail("cifar10c", "missing option root (the folder with gaussian_noise.npy ... labels.npy)") end
  if type(opts.kind) ~= "string" then fail("cifar10c", "missing option kind (e.g. \"gaussian_noise\")") end
  local s = opts.severity or 1
  if math.type(s) ~= "integer" or s < 1 or s > 5 then fail("cifar10c", "severity must be an integer 1..5, got " .. tostring(s)) end
  local x = D.npy(opts.root .. "/" .. opts.kind .. ".npy")
  local y = D.npy(opts.root .. "/labels.npy")
  local per = x:size(1) // 5
  local n = math.min(opts.limit or per, per)
  x = x:narrow(1, (s - 1) * per + 1, n):permute(1, 4, 2, 3):float() / 255
  y = y:narrow(1, (s - 1) * per + 1, n):long() + 1
  return data.TensorDataset(x:contiguous(), y)
end

--- synthetic_classification{n = 1000, dim = 20, classes = 2, seed = 0, spread = 2}:
-- Gaussian blobs with class means ~ N(0, spread²) and unit noise.
function data.synthetic_classification(opts)
  opts = check_opts("synthetic_classification", opts, { n = true, dim = true, classes = true, seed = true, spread = true })
  local n, dim, classes = opts.n or 1000, opts.dim or 20, opts.classes or 2
  for _, v in ipairs{ n, dim, classes } do
    if math.type(v) ~= "integer" or v < 1 then fail("synthetic_classification", "n, dim and classes must be positive integers") end
  end
  local g = core.Generator(opts.seed or 0)
  local means = core.randn(classes, dim, { generator = g }) * (opts.spread or 2)
  local y = core.randint(1, classes, n, { generator = g })
  local x = means:index_select(1, y) + core.randn(n, dim, { generator = g })
  return data.TensorDataset(x, y)
end

-- Transforms: functions from a batch to a batch.
local T = data.transforms

function T.random_crop(size, opts)
  local h, w = size, size
  if type(size) == "table" then h, w = size[1], size[2] end
  return function(x) return D._random_crop(x, h, w, opts) end
end

function T.hflip(p, opts)
  return function(x) return D._hflip(x, p or 0.5, opts) end
end

function T.normalize(mean, std)
  return function(x) return D._normalize(x, mean, std) end
end

function T.compose(list)
  return function(x)
    for _, t in ipairs(list) do x = t(x) end
    return x
  end
end

-- Every public function reports errors under its own name.
data.TensorDataset = named("TensorDataset", data.TensorDataset)
data.fashion_mnist = named("fashion_mnist", data.fashion_mnist)
data.mnist = named("mnist", data.mnist)
data.cifar10 = named("cifar10", data.cifar10)
data.cifar10c = named("cifar10c", data.cifar10c)
data.synthetic_classification = named("synthetic_classification", data.synthetic_classification)
for _, m in ipairs{ "get", "subset", "split", "batches" } do Dataset[m] = named(m, Dataset[m]) end

return data
