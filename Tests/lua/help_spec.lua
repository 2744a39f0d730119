-- help() and the API reference: every public function and module is documented,
-- and the REPL's completion and printing helpers behave.
local parry = require("parry")
local help = require("parry.help")
local repl = require("parry.repl")

describe("the API reference", function()
  it("documents every public function with a signature, a description and an example", function()
    local missing, n = {}, 0
    for _, g in ipairs(help.groups()) do
      for name, fn in pairs(g[2]) do
        if type(fn) == "function" and type(name) == "string" and not name:match("^_") then
          n = n + 1
          local text = help.text(fn)
          if not text then
            missing[#missing + 1] = g[1] .. "." .. name
          else
            assert.truthy(text:find("[%({]"), "no signature for " .. name)
            assert.truthy(text:find("\n    ", 1, true), "no example for " .. g[1] .. "." .. name .. ":\n" .. text)
          end
        end
      end
    end
    table.sort(missing)
    assert.equals(0, #missing, "undocumented: " .. table.concat(missing, ", "))
    assert.truthy(n > 250, "expected the whole API, found " .. n)
  end)

  it("has a section per module and finds entries by name", function()
    for _, g in ipairs(help.groups()) do
      assert.truthy(help.text(g[1]), "no section for " .. g[1])
    end
    assert.truthy(help.text("Tensor:sum"):find("Tensor:sum", 1, true))
    assert.truthy(help.text(parry.nn.Linear):find("Kaiming", 1, true))
    local text, err = help.text(print)
    assert.is_nil(text)
    assert.truthy(err:find("no documentation"))
  end)
end)

describe("parry.repl", function()
  it("completes globals, fields, tensor and module methods, and require names", function()
    local saved = _G.parry
    _G.parry = parry   -- the REPL makes parry global
    _G.__t = parry.randn(2)
    _G.__m = parry.nn.Linear(2, 2)
    local function has(list, v) for _, x in ipairs(list) do if x == v then return true end end return false end
    assert.truthy(has(repl.complete("__t:su"), "__t:sum"))
    assert.truthy(has(repl.complete("__t:su"), "__t:sub_"))
    assert.is_false(has(repl.complete("__t:su"), "__t:numel"))
    assert.truthy(has(repl.complete("__m:for"), "__m:forward"))
    assert.truthy(has(repl.complete("parry.nn.Li"), "parry.nn.Linear"))
    assert.truthy(has(repl.complete("parry.fl.sim"), "parry.fl.simulate"))
    assert.truthy(has(repl.complete("pri"), "print"))
    assert.truthy(has(repl.complete("whi"), "while"))
    assert.truthy(has(repl.complete("parry.f", 'require("parry.f'), "parry.fl"))
    assert.same({}, repl.complete("nosuchthing.x"))
    _G.__t, _G.__m, _G.parry = nil, nil, saved
  end)

  it("formats values: quoted strings, depth-limited tables, cycles, tensors", function()
    assert.equals('"a\\nb"', repl.format("a\nb"))
    assert.equals("{1, 2, x = true}", repl.format({1, 2, x = true}))
    assert.equals("{a = {b = {...}}}", repl.format({a = {b = {c = 1}}}))
    local t = {}; t.self = t
    assert.equals("{self = <cycle>}", repl.format(t))
    assert.truthy(repl.format(parry.zeros(2)):find("tensor", 1, true))
    local long = {}
    for i = 1, 40 do long[i] = i end
    assert.truthy(repl.format(long):find("... (10 more)", 1, true))
  end)

  it("feeds lines: expressions print, `;` is quiet, chunks continue, errors recover", function()
    local out = {}
    local errs = {}
    local function sink(s) out[#out + 1] = s end
    local function err_sink(s) errs[#errs + 1] = s end
    assert.equals("ok", repl.feed("1 + 1", sink))
    assert.equals("2", out[#out])
    assert.equals(2, _G._)
    assert.equals("ok", repl.feed("_ * 3;", sink))
    assert.equals(1, #out)
    assert.equals("more", repl.feed("for i = 1, 2 do", sink))
    assert.equals("ok", repl.feed("end", sink))
    assert.equals("error", repl.feed("error('x')", sink, err_sink))
    assert.truthy(errs[1]:find("stdin:1: x", 1, true))
    assert.equals("ok", repl.feed("=40 + 2", sink))
    assert.equals("42", out[#out])
  end)
end)
