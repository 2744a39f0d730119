-- A Lua error on the last rank must end the whole job with a message naming
-- the rank, while the others wait in a barrier (scripts/test-mpi checks the
-- exit status, the message and that it took seconds, not the timeout).
local d = require("parry").dist
if d.rank() == d.size() - 1 then error("failing on purpose") end
d.barrier()
print("unreachable: rank " .. d.rank() .. " passed the barrier")
