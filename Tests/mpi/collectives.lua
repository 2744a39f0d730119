-- parry.dist's collectives against values computed locally. Run by
-- scripts/test-mpi under `mpirun -np 1, 2 and 3`; every rank knows every
-- rank's contribution (a function of the rank), so each result is checked
-- against its closed form. A failed check is a Lua error, which ends the job
-- with the rank named (and the runner reports it).
local parry = require("parry")
local d = parry.dist
local r, n = d.rank(), d.size()

local function check(cond, msg, ...)
  if not cond then error(string.format(msg, ...), 2) end
end
local function same(a, b)
  if a:numel() ~= b:numel() or a:dim() ~= b:dim() then return false end
  return a:numel() == 0 or (a:float() - b:float()):abs():max():item() == 0
end
local function close(a, b) return math.abs(a - b) <= 1e-6 * math.max(1, math.abs(b)) end
local function expect_error(pattern, fn, ...)
  local ok, err = pcall(fn, ...)
  check(not ok, "expected an error matching %q", pattern)
  check(tostring(err):find(pattern, 1, true), "error %q does not contain %q", tostring(err), pattern)
end

check(d.is_distributed(), "mpirun started this process but parry.dist is not active")
check(n == tonumber(os.getenv("OMPI_COMM_WORLD_SIZE")), "size %d differs from mpirun's %s", n, os.getenv("OMPI_COMM_WORLD_SIZE"))
check(r == tonumber(os.getenv("OMPI_COMM_WORLD_RANK")), "rank %d differs from mpirun's", r)
check(d.is_main() == (r == 0), "is_main")

-- rank k contributes x_k[i] = (k + 1) * i + k² (i = 1..6), a 2x3 tensor
local function contribution(k, dtype)
  local t = {}
  for i = 1, 6 do t[i] = (k + 1) * i + k * k end
  local x = parry.tensor(t):reshape(2, 3)
  return dtype == "int64" and x or x:float()
end
local mine = contribution(r)
for _, op in ipairs({"sum", "mean", "max", "min"}) do
  local got = d.allreduce(mine, {op = op}):reshape(6)
  for i = 1, 6 do
    local want
    for k = 0, n - 1 do
      local v = (k + 1) * i + k * k
      if want == nil then want = v
      elseif op == "sum" or op == "mean" then want = want + v
      elseif op == "max" then want = math.max(want, v)
      else want = math.min(want, v) end
    end
    if op == "mean" then want = want / n end
    check(close(got[i], want), "allreduce %s element %d: %g, want %g", op, i, got[i], want)
  end
end
-- int64 sums are exact
local isum = d.allreduce(contribution(r, "int64"))
check(isum:dtype() == "int64", "int64 allreduce keeps its dtype")
check(isum[1][1] == n * (n + 1) // 2 + (n - 1) * n * (2 * n - 1) // 6, "int64 allreduce sum")
-- the argument is not modified and the result is a new tensor
check(mine[1][1] == 1 + r * r + r, "allreduce modified its argument")

-- reduce: on the root only
for root = 0, n - 1 do
  local got = d.reduce(mine, {op = "max", root = root})
  if r == root then
    check(got ~= nil and got[2][3] == n * 6 + (n - 1) ^ 2, "reduce max on root %d", root)
  else
    check(got == nil, "reduce returned a value off the root")
  end
end

-- broadcast of tensors (the others pass nil) and of values
for root = 0, n - 1 do
  local b = d.broadcast(r == root and contribution(root) or nil, root)
  check(same(b, contribution(root)), "broadcast from %d", root)
  local v = d.broadcast(r == root and {root = root, list = {1.5, "two", true}, [7] = -3} or "ignored", root)
  check(v.root == root and v.list[1] == 1.5 and v.list[2] == "two" and v.list[3] == true and v[7] == -3,
    "broadcast of a table from %d", root)
  check(math.type(v.root) == "integer", "integers stay integers")
end

-- allgather / gather: shapes may differ between ranks
local g = d.allgather(parry.arange(1, r + 1))
check(#g == n, "allgather gives %d entries, want %d", #g, n)
for k = 0, n - 1 do
  check(g[k + 1]:numel() == k + 1 and g[k + 1][k + 1] == k + 1, "allgather entry of rank %d", k)
end
local names = d.allgather("rank" .. r)
for k = 0, n - 1 do check(names[k + 1] == "rank" .. k, "allgather of strings") end
for root = 0, n - 1 do
  local got = d.gather({r = r}, root)
  if r == root then
    for k = 0, n - 1 do check(got[k + 1].r == k, "gather on root %d", root) end
  else
    check(got == nil, "gather returned a value off the root")
  end
end

-- send / recv around a ring, tensors and values
if n > 1 then
  local right, left = (r + 1) % n, (r - 1) % n
  -- even ranks send first: no two blocking sends wait on each other
  local function ring(v)
    local got, src
    if r % 2 == 0 then d.send(v, right); got, src = d.recv(left)
    else got, src = d.recv(left); d.send(v, right) end
    check(src == left, "recv from %d reported source %d", left, src)
    return got
  end
  if n % 2 == 0 or n == 1 then
    local t = ring(contribution(r) * 2)
    check(same(t, contribution(left) * 2), "ring of tensors")
    local v = ring({from = r, nested = {x = r + 0.5}})
    check(v.from == left and v.nested.x == left + 0.5, "ring of values")
  else
    -- odd sizes: everyone sends to rank 0, which answers each
    if r == 0 then
      for _ = 1, n - 1 do
        local v, src = d.recv()
        check(v.from == src, "recv(any) source")
        d.send(parry.full({3}, src), src)
      end
    else
      d.send({from = r}, 0)
      local t = d.recv(0)
      check(t[1] == r, "reply from rank 0")
    end
  end
  -- a large tensor (several MB) arrives whole
  local big = d.broadcast(r == 0 and parry.arange(1, 3000000):float() or nil, 0)
  check(big:numel() == 3000000 and big[3000000] == 3000000, "large broadcast")
end

-- run: the main rank's results everywhere
local a, b, c = d.run(function(x) return x + 1, nil, parry.ones(2) * 3 end, 41)
check(a == 42 and b == nil and c[2] == 3, "run's results")

-- errors that every rank detects the same way (no hang)
if n > 1 then
  expect_error("the ranks passed different tensors", d.allreduce, parry.zeros(r + 1))
  expect_error("rank 1: float32 tensor of shape 2", d.allreduce, parry.zeros(r + 1))
end
expect_error("must be a rank in 0.." .. (n - 1), d.broadcast, mine, n)
expect_error("must be a rank in 0.." .. (n - 1), d.gather, mine, -1)
expect_error("cannot send a function", d.broadcast, {f = print}, 0)
-- a value only the last rank cannot send: every rank hears of it
expect_error("cannot send a function", d.allgather, r == n - 1 and {print} or r)
if n > 1 then expect_error("rank " .. (n - 1) .. ": cannot send", d.allgather, r == n - 1 and {print} or r) end
expect_error("cannot send to this process's own rank", d.send, 1, r)
expect_error("unknown op 'avg'", d.allreduce, mine, {op = "avg"})
expect_error("op 'mean' needs a float32 tensor", d.allreduce, contribution(r, "int64"), {op = "mean"})
d.barrier()
if d.is_main() then print("ok collectives " .. n) end
