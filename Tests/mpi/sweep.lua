-- parry.exp.grid{distributed = true} under mpirun: the result list equals the
-- sequential sweep's (same summaries in grid order, a failing configuration
-- recorded rather than fatal), each run is written once, and the hand-out is
-- dynamic: one slow configuration keeps its rank busy while the others take
-- the rest (a static split would give every rank the same count).
local parry = require("parry")
local d = parry.dist
local fs = require("parry.core")._fs

local function check(cond, msg, ...)
  if not cond then error(string.format(msg, ...), 2) end
end

local function fn(_, c)
  if c.lr == 0.3 and c.width == 8 then error("diverged on purpose") end
  if c.lr == 0.1 and c.width == 4 then   -- the slow one
    local t = parry.clock()
    while parry.clock() - t < 0.6 do end
  end
  -- depends on the seeded generator: every run starts from seed 5
  return {score = c.lr * c.width + parry.randn(4):sum():item(), draws = parry.rand(2):totable()}
end
local grid = {lr = {0.1, 0.2, 0.3}, width = {4, 8}}

local function tmp()
  local p = os.tmpname(); os.remove(p); fs.mkdir(p); return p
end
local seq_dir = tmp()
local seq = parry.exp.grid{name = "s", dir = seq_dir, grid = grid, seed = 5, fn = fn, quiet = true, keep_going = true}
local shared = d.broadcast(d.is_main() and tmp() or nil, 0)
local runs = parry.exp.grid{name = "s", dir = shared, grid = grid, seed = 5, fn = fn, quiet = true, distributed = true}

check(#runs == #seq and #runs == 6, "%d distributed runs, %d sequential", #runs, #seq)
local per_rank = {}
for k, r in ipairs(runs) do
  local s = seq[k]
  check(r.summary._status == s.summary._status, "run %d: status %s vs %s", k, r.summary._status, s.summary._status)
  check(r.summary.score == s.summary.score, "run %d: score %s vs %s", k, tostring(r.summary.score), tostring(s.summary.score))
  if s.summary.draws then
    check(r.summary.draws[2] == s.summary.draws[2], "run %d: draws differ", k)
  end
  check(r.config.lr == s.config.lr and r.config.width == s.config.width, "run %d: config", k)
  local rank = tonumber(r.dir:match("%-r(%d+)x*$") or "0")
  per_rank[rank] = (per_rank[rank] or 0) + 1
end
check(runs[6].summary._status == "failed" and runs[6].summary._error:find("diverged on purpose", 1, true), "the failing run")
d.barrier()
-- each run recorded once (rank 0 lists the shared folder)
if d.is_main() then
  local listed = parry.exp.list(shared)
  check(#listed == 6, "%d records in the shared folder, want 6", #listed)
end
if d.size() == 2 then
  local most = math.max(per_rank[0] or 0, per_rank[1] or 0)
  check(most >= 5, "the hand-out was not dynamic: runs per rank %d / %d", per_rank[0] or 0, per_rank[1] or 0)
end
d.barrier()
fs.rmtree(seq_dir)
if d.is_main() then fs.rmtree(shared); print("ok sweep " .. d.size()) end
