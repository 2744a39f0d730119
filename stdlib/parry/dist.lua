--- parry.dist: collectives and messages between the processes of an MPI job
-- (Open MPI's `mpirun -np N parry script.lua`, Slurm's `srun --mpi=pmix`).
--
-- Without an MPI starter the process is rank 0 of 1: every collective is a
-- local copy and nothing else changes. Ranks are MPI's own 0-based numbers
-- (the one exception to parry's 1-based indexing, so they match what mpirun
-- and Slurm print); lists indexed by rank are Lua tables with rank r at
-- index r + 1. Every rank must make the same collective calls in the same
-- order, as in MPI. The collectives return new tensors (torch.distributed's
-- work in place).
local core = require("parry.core")
local util = require("parry._util")
local C = core._dist

local dist = {}

local function describe(v)
  if core.is_tensor(v) then return "a tensor" end
  if math.type(v) == "integer" then return tostring(v) end
  return type(v) == "nil" and "nil" or "a " .. (math.type(v) or type(v))
end

local RANK, SIZE, ACTIVE = C._info()

--- This process's rank, 0 .. size() - 1.
function dist.rank() return RANK end
--- The number of processes in the job (1 without mpirun).
function dist.size() return SIZE end
--- Whether this is rank 0, the one that prints and writes.
function dist.is_main() return RANK == 0 end
--- Whether the process runs under an MPI starter (true under `mpirun -np 1` too).
function dist.is_distributed() return ACTIVE end
--- Waits until every rank has called it.
dist.barrier = C.barrier

-- Plain Lua values travel as strings: nil, booleans, integers, floats,
-- strings and tables of them (no cycles, no functions, userdata or tensors
-- inside tables).
local encode
local function encode_into(v, out, seen, where, fname)
  local t = type(v)
  if t == "nil" then out[#out + 1] = "N"
  elseif t == "boolean" then out[#out + 1] = v and "T" or "F"
  elseif math.type(v) == "integer" then out[#out + 1] = string.pack("<c1i8", "i", v)
  elseif t == "number" then out[#out + 1] = string.pack("<c1d", "d", v)
  elseif t == "string" then out[#out + 1] = string.pack("<c1s4", "s", v)
  elseif t == "table" and not core.is_tensor(v) then
    if seen[v] then util.raise(string.format("%s: cannot send a table that contains itself (at %s)", fname, where)) end
    seen[v] = true
    local n = 0
    for _ in pairs(v) do n = n + 1 end
    out[#out + 1] = string.pack("<c1I4", "t", n)
    for k, x in pairs(v) do
      local kt = type(k)
      if kt ~= "string" and kt ~= "number" and kt ~= "boolean" then
        util.raise(string.format("%s: table keys must be strings, numbers or booleans, got a %s key at %s", fname, kt, where))
      end
      encode_into(k, out, seen, where, fname)
      encode_into(x, out, seen, where .. "." .. tostring(k), fname)
    end
    seen[v] = nil
  else
    local what = core.is_tensor(v) and "a tensor inside a table (send tensors on their own)" or "a " .. t
    util.raise(string.format("%s: cannot send %s at %s; values may be nil, booleans, numbers, strings and tables of them",
      fname, what, where))
  end
end

encode = function(v, fname)
  local out = {}
  encode_into(v, out, {}, "value", fname)
  return table.concat(out)
end

local function decode(s)
  local pos = 1
  local function read()
    local tag = s:sub(pos, pos)
    pos = pos + 1
    if tag == "N" then return nil
    elseif tag == "T" then return true
    elseif tag == "F" then return false
    elseif tag == "i" then local v; v, pos = string.unpack("<i8", s, pos); return v
    elseif tag == "d" then local v; v, pos = string.unpack("<d", s, pos); return v
    elseif tag == "s" then local v; v, pos = string.unpack("<s4", s, pos); return v
    elseif tag == "t" then
      local n; n, pos = string.unpack("<I4", s, pos)
      local t = {}
      for _ = 1, n do
        local k = read()
        t[k] = read()
      end
      return t
    end
    error("parry.dist: received a malformed value", 0)
  end
  return read()
end

local function wire(v, fname)
  if core.is_tensor(v) then return v end
  return encode(v, fname)
end

-- For collectives: the value on the wire, or nil and the error message; the
-- message travels in the value's place so that every rank raises it.
local function wire_or_failure(v, fname)
  local ok, x = pcall(wire, v, fname)
  if ok then return x, nil end
  local msg = tostring(x):gsub("^[^:]*:%d+: ", ""):gsub("^parry%.dist%.%w+: ", "")
  return nil, msg
end

local function unwire(x)
  if type(x) == "string" then return decode(x) end
  return x
end

local function check_rank(r, fname, what)
  if math.type(r) ~= "integer" then
    util.raise(string.format("%s: %s must be an integer rank in 0..%d, got %s", fname, what, SIZE - 1, describe(r)))
  end
  if r < 0 or r >= SIZE then
    util.raise(string.format("%s: %s must be a rank in 0..%d (MPI's 0-based numbers), got %d", fname, what, SIZE - 1, r))
  end
end

local function op_of(opts, fname)
  if opts == nil then return "sum" end
  if type(opts) == "string" then return opts end
  if type(opts) ~= "table" then
    util.raise(string.format("%s: options must be a table like {op = \"sum\"}, got %s", fname, describe(opts)))
  end
  local _, msg = util.check_options(opts, {op = true, root = true})
  if msg then util.raise(fname .. ": " .. msg) end
  return opts.op
end

--- The elementwise reduction of every rank's tensor, on every rank:
-- op "sum" (default), "mean", "max" or "min". Shapes and dtypes must agree.
function dist.allreduce(t, opts)
  return C._allreduce(t, op_of(opts, "parry.dist.allreduce"))
end

--- The reduction on `root` (default 0); nil on the other ranks.
function dist.reduce(t, opts)
  local op = op_of(opts, "parry.dist.reduce")
  local root = type(opts) == "table" and opts.root or 0
  check_rank(root, "parry.dist.reduce", "root")
  return C._reduce(t, op, root)
end

--- `root`'s tensor or value on every rank (the others' argument is ignored).
function dist.broadcast(v, root)
  root = root or 0
  check_rank(root, "parry.dist.broadcast", "root")
  local x, failure
  if RANK == root then x, failure = wire_or_failure(v, "parry.dist.broadcast") end
  return unwire(C._broadcast(x, root, failure))
end

--- Every rank's tensor or value, as a table indexed by rank + 1, on every rank.
-- Tensors may differ in shape between ranks.
function dist.allgather(v)
  local out = C._allgather(wire_or_failure(v, "parry.dist.allgather"))
  for i = 1, #out do out[i] = unwire(out[i]) end
  return out
end

--- Every rank's tensor or value on `root` (default 0) as a table indexed by
-- rank + 1; nil on the other ranks.
function dist.gather(v, root)
  root = root or 0
  check_rank(root, "parry.dist.gather", "root")
  local x, failure = wire_or_failure(v, "parry.dist.gather")
  local out = C._gather(x, root, failure)
  if out then for i = 1, #out do out[i] = unwire(out[i]) end end
  return out
end

--- Sends a tensor or a plain value to rank `to` (blocking, as MPI_Send).
function dist.send(v, to)
  check_rank(to, "parry.dist.send", "to")
  if to == RANK then util.raise("parry.dist.send: cannot send to this process's own rank (" .. RANK .. ")") end
  C._send(wire(v, "parry.dist.send"), to)
end

--- The next tensor or value from rank `from` (any rank when nil), and the sender's rank.
function dist.recv(from)
  if from ~= nil then
    check_rank(from, "parry.dist.recv", "from")
    if from == RANK then util.raise("parry.dist.recv: cannot receive from this process's own rank (" .. RANK .. ")") end
  end
  if SIZE == 1 then util.raise("parry.dist.recv: there is no other rank (run under mpirun -np 2 or more)") end
  local x, is_tensor, src = C._recv(from)
  if is_tensor then return x, src end
  return decode(x), src
end

--- Rank 0 calls fn(...); the others wait; every rank gets its results
-- (tensors or plain values). An error in fn ends the job.
function dist.run(fn, ...)
  if type(fn) ~= "function" then
    util.raise("parry.dist.run: expected a function, got " .. describe(fn))
  end
  local res, n = nil, nil
  if RANK == 0 then
    res = table.pack(fn(...))
    n = res.n
  end
  n = dist.broadcast(n, 0)
  local out = {}
  for k = 1, n do out[k] = dist.broadcast(res and res[k], 0) end
  return table.unpack(out, 1, n)
end

--- data_parallel(model [, {bucket_mb=25, check_every=0, broadcast_buffers=true}]) -> dp
-- Data-parallel training: every rank holds a replica of `model` (rank 0's
-- parameters and buffers are copied to the others now). Each step, every rank
-- takes its slice of the global batch (`ds:batches(bs, {shard = dp:shard()})`),
-- runs backward on its slice's mean loss, then `dp:sync(n, loss)` averages
-- the gradients weighted by the slice sizes, so the optimizer step is the
-- one single-process training takes on the whole batch. Returns the global
-- batch size and mean loss. check_every = k compares the replicas' hashes
-- every k syncs (a debugging aid).
function dist.data_parallel(model, opts)
  local fname = "parry.dist.data_parallel"
  if not require("parry.nn").is_module(model) then
    util.raise(fname .. ": expected a module for model (argument 1), got " .. describe(model))
  end
  if opts ~= nil and type(opts) ~= "table" then util.raise(fname .. ": expected an options table, got " .. describe(opts)) end
  opts = opts or {}
  local _, msg = util.check_options(opts, {bucket_mb = true, check_every = true, broadcast_buffers = true})
  if msg then util.raise(fname .. ": " .. msg) end
  local bucket_mb = opts.bucket_mb or 25
  if type(bucket_mb) ~= "number" or bucket_mb <= 0 then util.raise(fname .. ": bucket_mb must be a positive number") end
  local check_every = opts.check_every or 0
  if math.type(check_every) ~= "integer" or check_every < 0 then
    util.raise(fname .. ": check_every must be a non-negative integer")
  end
  local params = model:parameters()
  local buffers = {}
  for i, pair in ipairs(model:named_buffers()) do buffers[i] = pair[2] end   -- {name, tensor} in module order
  local everything = {}
  for _, p in ipairs(params) do everything[#everything + 1] = p end
  for _, b in ipairs(buffers) do everything[#everything + 1] = b end
  C._dp_broadcast(everything, 0)
  local dp = {model = model, params = params, buffers = buffers, steps = 0}
  local bucket_bytes = math.max(4, math.floor(bucket_mb * 1048576))
  local sync_buffers = opts.broadcast_buffers ~= false and #buffers > 0
  --- {rank, size}: the `shard` option of Dataset:batches.
  function dp:shard() return {RANK, SIZE} end
  --- sync(n [, loss]): averages the gradients over the ranks (call after
  -- backward, before the optimizer step; n = this rank's slice size, 0 for an
  -- empty slice). Returns the global batch size and mean loss.
  function dp:sync(n, loss)
    if math.type(n) ~= "integer" or n < 0 then
      util.raise("dp:sync: n must be this rank's number of samples (an integer ≥ 0), got " .. describe(n))
    end
    if loss ~= nil and type(loss) ~= "number" then util.raise("dp:sync: loss must be a number, got " .. describe(loss)) end
    local total, mean = C._dp_sync(self.params, n, loss or 0, bucket_bytes)
    self.steps = self.steps + 1
    -- batch norm's running statistics: rank 0's, as PyTorch DDP's broadcast_buffers
    if sync_buffers then C._dp_broadcast(self.buffers, 0) end
    if check_every > 0 and self.steps % check_every == 0 then self:check() end
    return total, mean
  end
  --- check(): errors when the replicas' parameters or buffers differ.
  function dp:check() C._dp_check(everything, self.steps) end
  return dp
end

--- Ends the whole job from any rank with a message naming the rank.
function dist.abort(message, code)
  C._abort(message ~= nil and tostring(message) or nil, code)
end

return dist
