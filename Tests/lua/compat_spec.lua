-- A spec in the subset parry's runner shares with busted (describe, it,
-- pending, before_each, after_each; assert.are.same / are.equal / is_true /
-- is.truthy / is_near / has_error / error_matches). It passes under
-- `parry test` and, through the C module, under Debian's busted on lua5.4
-- (cli_spec runs both). The rest of Tests/lua uses parry's extensions
-- (assert.near, assert.error with a substring) and runs under parry only.
local parry = require("parry")

describe("parry through either runner", function()
  local x
  before_each(function()
    parry.manual_seed(7)
    x = parry.randn(3, 4)
  end)
  after_each(function() x = nil end)

  it("computes with tensors", function()
    assert.are.same({3, 4}, x:size())
    assert.are.equal(12, x:numel())
    assert.is_near(0, (x - x):abs():sum():item(), 1e-12)
    assert.is_true(parry.is_tensor(x))
    assert.is.truthy(x:matmul(x:t()):numel() == 9)
  end)

  it("reports bad calls as errors", function()
    assert.has_error(function() parry.matmul(parry.zeros(2, 3), parry.zeros(4, 5)) end,
      "parry.matmul: shapes {2,3} and {4,5} do not match (3 ~= 4)")
    assert.error_matches(function() parry.zeros(2):view(3) end, "parry%.view")
  end)

  it("trains a step of PPO's building blocks", function()
    local env = parry.rl.make("CartPole-v1", {seed = 1})
    local obs = env:reset()
    local _, reward, terminated = env:step(2)
    assert.are.same({4}, obs:size())
    assert.are.equal(1.0, reward)
    assert.is_false(terminated)
  end)

  pending("is skipped by both runners")
end)
