--- parry.attacks: adversarial attacks and robustness evaluation.
--
--   local x_adv = parry.attacks.pgd(model, x, y, {eps = 0.1, alpha = 0.01, steps = 20})
--   local r = parry.attacks.evaluate(model, x, y, {eps = 0.1, attacks = {"fgsm", "pgd", {"apgd", {steps = 50}}}})
--   print(parry.attacks.report(r))
--
-- `model` is a module (put in eval mode for the attack, then restored) or any
-- function returning logits. Labels are 1..C (the target class when
-- `targeted = true`). Inputs stay inside `bounds` (default {0, 1}) and the
-- ε-ball. Randomness comes from `seed =` or `generator =` (else the shared
-- generator, so `parry.manual_seed` reproduces a run).
local core = require("parry.core")
local attacks = {}
for name, fn in pairs(core._attacks) do attacks[name] = fn end

--- A readable table of an evaluate() result.
function attacks.report(r)
  if type(r) ~= "table" or type(r.robust) ~= "table" then
    require("parry._util").raise("parry.attacks.report: expected the table returned by parry.attacks.evaluate")
  end
  local lines = { string.format("%-16s %8s", "attack", "accuracy"), string.format("%-16s %8.4f", "clean", r.clean) }
  for _, name in ipairs(r.order or {}) do lines[#lines + 1] = string.format("%-16s %8.4f", name, r.robust[name]) end
  lines[#lines + 1] = string.format("%-16s %8.4f", "worst case", r.worst_case)
  for _, w in ipairs(r.warnings or {}) do lines[#lines + 1] = "warning: " .. w end
  return table.concat(lines, "\n")
end

return attacks
