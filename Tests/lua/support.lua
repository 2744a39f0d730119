-- Helpers for the specs that drive the `parry` command (loaded with dofile).
local M = {}

-- `parry test` sets arg[-1] to the absolute path of the running binary.
M.PARRY = assert(arg and arg[-1], "run through `parry test`")

-- Under `make sanitize` (PARRY_SANITIZE set) specs that load the module into
-- another interpreter or measure resident memory are skipped: the
-- instrumented .so needs the ASan runtime preloaded, and ASan's quarantine
-- inflates memory on purpose.
M.sanitized = os.getenv("PARRY_SANITIZE") ~= nil
-- Which one ("thread" under make sanitize's ThreadSanitizer part).
M.sanitizer = os.getenv("PARRY_SANITIZE")

--- sh(cmd) -> combined stdout and stderr, exit code.
function M.sh(cmd)
  local p = io.popen(cmd .. " 2>&1")
  local out = p:read("a")
  local _, _, code = p:close()
  return out, code
end

--- q(s): s quoted for the shell.
function M.q(s) return "'" .. s:gsub("'", "'\\''") .. "'" end

--- in_order(out, parts): each part occurs in out (plain text), after the previous one.
function M.in_order(out, parts)
  local pos = 1
  for _, part in ipairs(parts) do
    local s, e = out:find(part, pos, true)
    assert(s, "missing " .. string.format("%q", part) .. " after position " .. pos .. " in:\n" .. out)
    pos = e + 1
  end
end

return M
