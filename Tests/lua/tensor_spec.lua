-- The tensor API as a script sees it (API.md "Tensors"). Expected values are
-- worked out by hand in the comments.
local parry = require("parry")

describe("creation", function()
  it("infers dtype from nested tables like PyTorch", function()
    local i = parry.tensor{{1, 2}, {3, 4}}
    assert.equals("int64", i:dtype())
    assert.same({2, 2}, i:shape())
    assert.equals("float32", parry.tensor{1, 2.5}:dtype())
    assert.equals("float32", parry.tensor({1, 2}, {dtype = "float32"}):dtype())
    assert.same({{1, 2}, {3, 4}}, i:totable())
  end)

  it("takes shapes as varargs or one table", function()
    assert.same({2, 3}, parry.zeros(2, 3):shape())
    assert.same({2, 3}, parry.zeros{2, 3}:shape())
    assert.same({}, parry.zeros():shape())
    assert.equals("int64", parry.ones({2}, {dtype = "int64"}):dtype())
    assert.equals("int64", parry.zeros(2, {dtype = "int64"}):dtype())
    assert.same({7, 7}, parry.full({2}, 7):totable())
    assert.same({{1, 0}, {0, 1}}, parry.eye(2):totable())
    assert.same({2, 3}, parry.eye(2, 3):shape())
  end)

  it("arange is inclusive like a numeric for", function()
    assert.same({1, 2, 3, 4, 5}, parry.arange(1, 5):totable())
    assert.same({1, 2, 3}, parry.arange(3):totable())
    assert.same({10, 7, 4, 1}, parry.arange(10, 1, -3):totable())
    assert.near({0, 0.25, 0.5, 0.75, 1}, parry.arange(0, 1, 0.25), 1e-7)
    assert.equals(0, parry.arange(5, 1):numel())
    assert.near({0, 0.5, 1}, parry.linspace(0, 1, 3), 1e-7)
  end)

  it("randperm is a permutation of 1..n", function()
    local p = parry.randperm(20):totable()
    table.sort(p)
    for i = 1, 20 do assert.equals(i, p[i]) end
  end)

  it("randint is inclusive", function()
    parry.manual_seed(3)
    local r = parry.randint(1, 3, 1000)
    assert.equals(1, r:min():item())
    assert.equals(3, r:max():item())
  end)

  it("is reproducible under manual_seed", function()
    parry.manual_seed(123); local a = parry.randn(5); local u = parry.rand(2, 2)
    parry.manual_seed(123); local b = parry.randn(5); local v = parry.rand(2, 2)
    assert.equals(a, b)
    assert.equals(u, v)
    parry.manual_seed(124)
    assert.is_false(parry.randn(5):eq(a):sum():item() == 5)
  end)

  it("*_like copy shape and dtype", function()
    local x = parry.zeros(2, 3, {dtype = "int64"})
    assert.same({2, 3}, parry.ones_like(x):shape())
    assert.equals("int64", parry.ones_like(x):dtype())
    assert.equals("float32", parry.zeros_like(x, {dtype = "float32"}):dtype())
    assert.same({2, 3}, parry.randn_like(parry.zeros(2, 3)):shape())
    assert.same({2, 3}, parry.rand_like(parry.zeros(2, 3)):shape())
  end)
end)

describe("inspection", function()
  local x = parry.arange(1, 6):reshape(2, 3)
  it("reports shape, size, dim, numel, item", function()
    assert.same({2, 3}, x:shape())
    assert.equals(3, x:size(2))
    assert.equals(3, x:size(-1))
    assert.same({2, 3}, x:size())
    assert.equals(2, x:dim())
    assert.equals(6, x:numel())
    assert.equals(21, x:sum():item())
    assert.equals(2, #x)
    assert.equals(math.type(x:sum():item()), "integer")
    assert.equals(math.type(x:float():sum():item()), "float")
  end)

  it("prints like PyTorch with shape and dtype", function()
    assert.equals("tensor([1, 2, 3], dtype=int64)", tostring(parry.arange(1, 3)))
    assert.equals("tensor([[1., 2.],\n        [3., 4.]], shape={2,2}, dtype=float32)",
      tostring(parry.tensor{{1, 2}, {3, 4}}:float()))
    local big = tostring(parry.zeros(50, 50))
    assert.truthy(big:find("...", 1, true))
    assert.truthy(#big < 600)
  end)
end)

describe("indexing", function()
  it("is 1-based with negatives from the end", function()
    local x = parry.tensor{{1, 2, 3}, {4, 5, 6}}
    assert.same({4, 5, 6}, x[2]:totable())
    assert.equals(6, x[2][3])
    assert.equals(6, x[-1][-1])
    assert.equals(1, x[1][1])
  end)

  it("assigns through t[i] = v", function()
    local x = parry.zeros(2, 3)
    x[1] = 5
    x[2] = parry.tensor{1, 2, 3}
    x[2][3] = -1
    assert.same({{5, 5, 5}, {1, 2, -1}}, x:totable())
  end)

  it("selects, narrows, index_selects and gathers with 1-based positions", function()
    local x = parry.tensor{{1, 2, 3}, {4, 5, 6}}
    assert.same({2, 5}, x:select(2, 2):totable())
    assert.same({{2, 3}, {5, 6}}, x:narrow(2, 2, 2):totable())
    assert.same({{3, 1}, {6, 4}}, x:index_select(2, parry.tensor{3, 1}):totable())
    assert.same({{3, 1}, {6, 4}}, x:index_select(2, {3, -3}):totable())
    -- gather dim 2: out[i][j] = x[i][idx[i][j]]
    assert.same({{3, 1}, {5, 5}}, x:gather(2, parry.tensor{{3, 1}, {2, 2}}):totable())
  end)

  it("views share storage", function()
    local x = parry.zeros(2, 3)
    x:view(6)[4] = 9
    assert.equals(9, x[2][1])
    x:t()[3][1] = 7   -- transposed view: element (1,3) of x
    assert.equals(7, x[1][3])
  end)
end)

describe("shape operations", function()
  local x = parry.arange(1, 24):reshape(2, 3, 4)
  it("reshape, view, flatten, squeeze, unsqueeze", function()
    assert.same({6, 4}, x:reshape(-1, 4):shape())
    assert.same({6, 4}, x:view{6, 4}:shape())
    assert.same({24}, x:flatten():shape())
    assert.same({2, 12}, x:flatten(2):shape())
    assert.same({6, 4}, x:flatten(1, 2):shape())
    assert.same({2, 1, 3, 4}, x:unsqueeze(2):shape())
    assert.same({2, 3, 4, 1}, x:unsqueeze(-1):shape())
    assert.same({2, 3, 4}, x:unsqueeze(2):squeeze():shape())
    assert.same({2, 3, 4}, x:unsqueeze(1):squeeze(1):shape())
  end)

  it("transpose, permute, expand, contiguous", function()
    assert.same({4, 3, 2}, x:transpose(1, 3):shape())
    assert.same({4, 2, 3}, x:permute(3, 1, 2):shape())
    assert.same({4, 2, 3}, x:permute{3, 1, 2}:shape())
    local p = x:permute(3, 1, 2)
    assert.is_false(p:is_contiguous())
    assert.is_true(p:contiguous():is_contiguous())
    assert.equals(p, p:contiguous())
    assert.same({{1, 1}, {2, 2}}, parry.tensor{{1}, {2}}:expand(2, 2):totable())
    assert.same({{1, 2}, {1, 2}, {1, 2}}, parry.tensor{1, 2}:expand(3, -1):totable())
    -- x[1][2][3] = 1 + 4 + 2 = 7 is at permuted position [3][1][2]
    assert.equals(7, p[3][1][2])
  end)

  it("split, chunk, cat, stack", function()
    local v = parry.arange(1, 7)
    local parts = v:split(3)
    assert.equals(3, #parts)
    assert.same({7}, parts[3]:totable())
    assert.equals(3, #v:chunk(3))
    assert.same({1, 2, 3, 4, 5, 6, 7}, parry.cat(parts):totable())
    local a, b = parry.tensor{1, 2}, parry.tensor{3, 4}
    assert.same({{1, 2}, {3, 4}}, parry.stack{a, b}:totable())
    assert.same({{1, 3}, {2, 4}}, parry.stack({a, b}, 2):totable())
    assert.same({{1, 2, 3, 4}}, parry.cat({a:unsqueeze(1), b:unsqueeze(1)}, 2):totable())
  end)
end)

describe("math", function()
  it("broadcasts with operators and numbers on either side", function()
    local col, row = parry.tensor{{1}, {2}}, parry.tensor{10, 20, 30}
    assert.same({{11, 21, 31}, {12, 22, 32}}, (col + row):totable())
    assert.same({{9, 19, 29}, {8, 18, 28}}, (row - col):totable())
    assert.same({2, 4}, (2 * parry.tensor{1, 2}):totable())
    assert.same({0, 1}, (1 - parry.tensor{1, 0}):totable())
    assert.near({0.5, 1}, parry.tensor{1, 2} / 2, 1e-7)
    assert.same({1, 4, 9}, (parry.tensor{1, 2, 3} ^ 2):totable())
    assert.same({2, 4, 8}, (2 ^ parry.tensor{1, 2, 3}):totable())
    assert.same({-1, 2}, (-parry.tensor{1, -2}):totable())
    assert.same({3, 5}, parry.tensor{1, 2}:add(parry.tensor{2, 3}):totable())
    assert.same({3, 5}, parry.add(parry.tensor{1, 2}, parry.tensor{2, 3}):totable())
  end)

  it("floor-divides and takes remainders with Python's signs", function()
    local x = parry.tensor{7, -7, 7, -7}
    local d = parry.tensor{2, 2, -2, -2}
    -- 7//2 = 3, -7//2 = -4, 7//-2 = -4, -7//-2 = 3; remainders take the divisor's sign
    assert.same({3, -4, -4, 3}, (x // d):totable())
    assert.same({1, 1, -1, -1}, (x % d):totable())
    assert.same({3, -4, -4, 3}, (x:float() // d:float()):totable())
    assert.same({1, 1, -1, -1}, (x:float() % d:float()):totable())
    assert.same({1, 2, 0}, (parry.tensor{10, 11, 12} % 3):totable())
    assert.same({0}, (parry.tensor{5} // 0):totable())   -- integer division by zero gives 0, never a crash
  end)

  it("promotes types like PyTorch", function()
    local i = parry.tensor{1, 2}
    assert.equals("int64", (i + 1):dtype())
    assert.equals("float32", (i + 0.5):dtype())
    assert.equals("float32", (i / 1):dtype())
    assert.equals("float32", (i + parry.zeros(2)):dtype())
  end)

  it("computes unary functions", function()
    local x = parry.tensor{-1.0, 0.0, 2.0}
    assert.near({math.exp(-1), 1, math.exp(2)}, x:exp(), 1e-5)
    assert.near({1, 0, 2}, x:abs(), 0)
    assert.near({-1, 0, 1}, x:sign(), 0)
    assert.near({0, 0, 2}, x:relu(), 0)
    assert.near({1 / (1 + math.exp(1)), 0.5, 1 / (1 + math.exp(-2))}, x:sigmoid(), 1e-6)
    local t2 = (math.exp(4) - 1) / (math.exp(4) + 1)
    assert.near({-t2 * 0 - (math.exp(2) - 1) / (math.exp(2) + 1), 0, t2}, x:tanh(), 1e-6)
    assert.near({math.sqrt(2), 2}, parry.tensor{2.0, 4.0}:sqrt(), 1e-6)
    assert.near({0, math.log(2)}, parry.tensor{1.0, 2.0}:log(), 1e-6)
    assert.same({-1, 0, 1}, x:clamp(-1, 1):totable())
    assert.same({0, 0, 1}, x:clamp(0, 1):totable())
    assert.same({-1, 0, 1.5}, x:clamp(nil, 1.5):totable())
  end)

  it("reduces along 1-based dims", function()
    local x = parry.tensor{{1.0, 5.0, 3.0}, {4.0, 2.0, 6.0}}
    assert.same({5, 7, 9}, x:sum(1):totable())
    assert.same({9, 12}, x:sum(2):totable())
    assert.same({{9}, {12}}, x:sum(2, true):totable())
    assert.same({3, 4}, x:mean(2):totable())
    assert.equals(3.5, x:mean():item())
    -- row 1: mean 3, deviations 4, 4, 0 -> unbiased var 4, biased 8/3
    assert.near({4, 4}, x:var(2), 1e-6)
    assert.near({8 / 3, 8 / 3}, x:var(2, {unbiased = false}), 1e-6)
    assert.near({2, 2}, x:std(2), 1e-6)
    local v, i = x:max(2)
    assert.same({5, 6}, v:totable())
    assert.same({2, 3}, i:totable())
    local mv, mi = x:min(1)
    assert.same({1, 2, 3}, mv:totable())
    assert.same({1, 2, 1}, mi:totable())
    assert.equals(6, x:max():item())
    assert.same({2, 3}, x:argmax(2):totable())
    assert.equals(6, x:argmax():item())   -- flat 1-based index of 6.0
    assert.equals(1, x:argmin():item())
    assert.same({6, 6}, x:max(parry.full({3}, 6)):max(2):totable())
  end)

  it("computes norms", function()
    local x = parry.tensor{{3.0, -4.0}, {0.0, 1.0}}
    assert.near({5, 1}, x:norm(2, 2), 1e-6)
    assert.near(math.sqrt(26), x:norm():item(), 1e-5)
    assert.near({7, 1}, x:norm(1, 2), 1e-6)
    assert.near({4, 1}, x:norm(math.huge, 2), 1e-6)
    assert.near({4, 1}, x:norm("inf", 2), 1e-6)
  end)

  it("softmax rows are probabilities and log_softmax matches", function()
    local x = parry.tensor{{1.0, 2.0, 3.0}, {1000.0, 1000.0, 1000.0}}
    local p = x:softmax(2)
    local z = math.exp(1) + math.exp(2) + math.exp(3)
    assert.near({{math.exp(1) / z, math.exp(2) / z, math.exp(3) / z}, {1 / 3, 1 / 3, 1 / 3}}, p, 1e-6)
    assert.near(x:log_softmax(2), p:log(), 1e-4)  -- float32 log of rounded p
    assert.near({1, 1}, p:sum(2), 1e-6)
  end)

  it("compares into float masks and selects with where", function()
    local x = parry.tensor{1, 2, 3}
    assert.same({0, 1, 0}, x:eq(2):totable())
    assert.same({1, 0, 1}, x:ne(2):totable())
    assert.same({1, 0, 0}, x:lt(2):totable())
    assert.same({1, 1, 0}, x:le(2):totable())
    assert.same({0, 0, 1}, x:gt(2):totable())
    assert.same({0, 1, 1}, x:ge(2):totable())
    assert.equals("float32", x:eq(2):dtype())
    assert.same({1, 0, 3}, parry.where(x:ne(2), x, 0):totable())
    assert.same({1, 0, 3}, x:ne(2):where(x, 0):totable())
  end)

  it("has in-place variants that return self", function()
    local x = parry.ones(3)
    assert.equals(x, x:add_(1))
    x:mul_(parry.tensor{1, 2, 3})
    assert.same({2, 4, 6}, x:totable())
    x:sub_(1):div_(2)
    assert.same({0.5, 1.5, 2.5}, x:totable())
    x:clamp_(1, 2)
    assert.same({1, 1.5, 2}, x:totable())
    x:fill_(3)
    assert.same({3, 3, 3}, x:totable())
    x:copy_(parry.tensor{1, 2, 3})
    assert.same({1, 2, 3}, x:totable())
    x:zero_()
    assert.same({0, 0, 0}, x:totable())
    parry.manual_seed(1)
    x:uniform_(2, 3)
    assert.truthy(x:min():item() >= 2 and x:max():item() < 3)
    x:normal_(0, 1)
    assert.equals(3, x:numel())
    assert.error(function() parry.ones(2, {dtype = "int64"}):div_(2) end, "Tensor:div_")
  end)

  it("converts dtypes", function()
    local x = parry.tensor{1.7, -1.7}
    assert.same({1, -1}, x:long():totable())
    assert.equals("int64", x:long():dtype())
    assert.equals("float32", x:long():float():dtype())
    assert.equals("int64", x:to("int64"):dtype())
  end)
end)

describe("matmul", function()
  it("matches the definition for 1-D, 2-D and batched operands", function()
    local a = parry.tensor{{1.0, 2.0}, {3.0, 4.0}}
    local b = parry.tensor{{5.0, 6.0}, {7.0, 8.0}}
    -- [[1*5+2*7, 1*6+2*8], [3*5+4*7, 3*6+4*8]]
    assert.same({{19, 22}, {43, 50}}, a:matmul(b):totable())
    assert.same({{19, 22}, {43, 50}}, parry.matmul(a, b):totable())
    assert.same({17, 35}, a:matmul(parry.tensor{1.0, 8.0}):totable())  -- {1+16, 3+32}
    assert.equals(14, parry.tensor{1.0, 2.0, 3.0}:matmul(parry.tensor{1.0, 2.0, 3.0}):item())
    local batch = parry.stack{a, b}
    local c = batch:matmul(a)
    assert.same({2, 2, 2}, c:shape())
    assert.same({{7, 10}, {15, 22}}, c[1]:totable())
    assert.same(b:matmul(a):totable(), c[2]:totable())
    -- a transposed view goes through BLAS as a transpose
    assert.same({{26, 30}, {38, 44}}, a:t():matmul(b):totable())
  end)

  it("agrees with a Lua triple loop on random matrices", function()
    parry.manual_seed(5)
    local a, b = parry.randn(7, 5), parry.randn(5, 3)
    local c = a:matmul(b)
    local A, B = a:totable(), b:totable()
    for i = 1, 7 do
      for j = 1, 3 do
        local s = 0
        for k = 1, 5 do s = s + A[i][k] * B[k][j] end
        assert.near(s, c[i][j], 1e-4)
      end
    end
  end)
end)

describe("require", function()
  it("returns the module table and loads stdlib through package.path", function()
    assert.equals(parry, require("parry"))
    assert.equals("function", type(parry.zeros))
    assert.equals("string", type(parry.version))
    assert.truthy(package.searchpath("parry.test", package.path))
  end)

  it("extends tensors from Lua through parry.Tensor", function()
    parry.Tensor.double_it = function(t) return t * 2 end
    assert.same({2, 4}, parry.tensor{1, 2}:double_it():totable())
    parry.Tensor.double_it = nil
  end)

  it("loads a Debian Lua C module (lua-cjson) from the system cpath", function()
    local cjson = require("cjson")
    assert.equals('{"a":[1,2]}', cjson.encode({a = {1, 2}}))
    assert.same({x = 3}, cjson.decode('{"x":3}'))
  end)
end)

describe("generators", function()
  it("give per-call streams independent of the shared one", function()
    local g1, g2 = parry.Generator(7), parry.Generator(7)
    parry.manual_seed(1)
    local a = parry.randn(4, {generator = g1})
    local shared = parry.randn(4)
    local b = parry.randn(4, {generator = g2})
    assert.equals(a, b)                         -- same seed, same stream
    parry.manual_seed(1)
    assert.equals(shared, parry.randn(4))       -- the shared stream was not consumed by g1
    g1:manual_seed(7)
    assert.equals(a, parry.randn(4, {generator = g1}))
    assert.equals(parry.randint(1, 9, 5, {generator = g1:manual_seed(3)}),
                  parry.randint(1, 9, 5, {generator = parry.Generator(3)}))
    assert.equals(parry.randperm(6, {generator = parry.Generator(2)}), parry.randperm(6, {generator = parry.Generator(2)}))
    local u = parry.zeros(3):uniform_(0, 1, {generator = parry.Generator(5)})
    assert.equals(u, parry.rand(3, {generator = parry.Generator(5)}))
    assert.error(function() parry.rand(2, {generator = 5}) end, "parry.rand: option 'generator' must be a parry.Generator")
  end)
end)

describe("memory", function()
  it("recycles large buffers after collection and reports it", function()
    -- no garbage left from earlier specs: a (generational) collection between
    -- m0 and the next reading would free more than the new tensor adds
    collectgarbage(); collectgarbage()
    parry.empty_cache()
    local m0 = parry.memory_stats()
    assert(m0.cached_bytes == 0, "cache not emptied: " .. m0.cached_bytes)
    for _, k in ipairs{"live_bytes", "cached_bytes", "pool_hits", "pool_misses"} do assert(math.type(m0[k]) == "integer", k) end
    local t = parry.zeros(300, 1000)                     -- 1.2 MB: pooled
    local live = parry.memory_stats().live_bytes
    assert(live >= m0.live_bytes + 1200000, "live bytes did not grow")
    t = nil
    collectgarbage(); collectgarbage()
    local m1 = parry.memory_stats()
    assert(m1.cached_bytes >= 1200000, "freed buffer not cached: " .. m1.cached_bytes)
    local u = parry.ones(300, 1000)                      -- same size class: served from the cache, and all ones
    local m2 = parry.memory_stats()
    assert(m2.pool_hits == m1.pool_hits + 1, "expected a cache hit")
    assert(u:sum():item() == 300000)
    parry.empty_cache()
    assert(parry.memory_stats().cached_bytes == 0)
  end)
end)

describe("shapes with a zero size", function()
  it("refuse sizes whose product would overflow the strides (found by fuzzing the IDX reader)", function()
    assert.error(function() parry.zeros(0, 1 << 40, 1 << 40) end, "has too many elements")
    assert.error(function() parry.zeros(0):reshape(0, 1 << 40, 1 << 40) end, "parry.reshape: shape {0,1099511627776,1099511627776} has too many elements")
    assert.error(function() parry.zeros(0):view(0, 1 << 40, 1 << 40) end, "parry.view")
    assert.equals(0, parry.zeros(0, 1 << 20, 1 << 20):numel())   -- large but representable: fine
  end)
end)
