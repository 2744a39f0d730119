-- quickstart.lua — a first look at parry's tensors (runs in well under a second).
--
--   make demo            (or: .build/release/parry examples/quickstart.lua)
--
-- Shows creation, 1-based indexing, broadcasting, reductions, matmul and
-- seeded randomness. Every index-like value (dims, indices, argmax) is 1-based.
local parry = require("parry")

parry.manual_seed(0)

local x = parry.arange(1, 6):float():reshape(2, 3)
print("x =", x)
print("x[2] =", x[2], "x[2][3] =", x[2][3])

-- Broadcasting: a row vector is added to every row.
local y = x + parry.tensor{10, 20, 30}
print("x + {10, 20, 30} =", y)

-- Reductions take a 1-based dim; max returns values and 1-based indices.
print("row sums =", x:sum(2))
local values, indices = x:max(2)
print("row max =", values, "at", indices)

-- Matrix products run on OpenBLAS.
local w = parry.randn(3, 4)
print("x @ w has shape", table.concat((x:matmul(w)):shape(), "x"))

-- Softmax along the class dimension; rows sum to one.
local p = parry.randn(2, 5):softmax(2)
print("softmax rows sum to", p:sum(2))

-- Same seed, same numbers.
parry.manual_seed(42); local a = parry.rand(3)
parry.manual_seed(42); local b = parry.rand(3)
print("seeded draws equal:", (a:eq(b)):sum():item() == 3)

-- Bad input is a Lua error that names the function, never a crash.
local ok, err = pcall(function() return parry.zeros(2, 3):matmul(parry.zeros(4, 5)) end)
print("caught:", err)
