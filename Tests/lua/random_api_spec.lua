-- Random API programs (scripts/random_api.lua): a few thousand random tensor,
-- autograd, nn, loss and attack calls through pcall, on several seeds. Every
-- error must start with the called function's name, and error-free
-- elementwise results must match a Lua reference (`make bench`'s
-- random_api_100k runs 100,000).
local root = (debug.getinfo(1, "S").source:match("^@(.*/)") or "./") .. "../../"
local random_api = dofile(root .. "scripts/random_api.lua")

describe("random API programs", function()
  it("raise only named errors and agree with the Lua reference", function()
    for seed = 1, 3 do
      local r = random_api.run{calls = 2000, seed = seed}
      assert.equals(0, #r.failures, "seed " .. seed .. ":\n" .. table.concat(r.failures, "\n"))
      assert.is_true(r.errors > 200, "the generator should make many bad calls too")
      assert.is_true(r.checked > 100, "and check many good ones")
    end
  end)
end)
