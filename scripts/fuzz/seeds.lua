-- Writes the seed inputs of every fuzz target into Tests/fuzz/<target>/
-- (small valid files, and a few truncated or odd ones): the fuzzer starts
-- from them, and `make test` replays them with whatever fuzzing added.
--   parry scripts/fuzz/seeds.lua
local parry = require("parry")
local fs = require("parry.core")._fs
local root = "Tests/fuzz"

local function put(target, name, bytes)
  local dir = root .. "/" .. target
  if not fs.isdir(dir) then fs.mkdir(dir) end
  local f = assert(io.open(dir .. "/" .. name, "wb"))
  f:write(bytes)
  f:close()
end
local function slurp(path)
  local f = assert(io.open(path, "rb")); local s = f:read("a"); f:close(); return s
end
if not fs.isdir(root) then fs.mkdir(root) end
local tmp = os.tmpname()

-- safetensors: a tensor, a module's state dict with metadata, an empty table
parry.save(parry.arange(1, 6):float():reshape(2, 3), tmp)
put("safetensors", "tensor", slurp(tmp))
parry.save(parry.models.mlp{3, 2}, tmp, {metadata = {format = "seed", n = "1"}})
put("safetensors", "module", slurp(tmp))
parry.save({ids = parry.tensor{1, 2, 3}}, tmp)
put("safetensors", "int64", slurp(tmp))
put("safetensors", "truncated", slurp(tmp):sub(1, 20))

-- IDX: ubyte images (magic 0x00000803), labels (0x00000801), a float one (0x0D)
local function idx(code, dims, payload)
  local h = string.pack(">I4", (code << 8) | #dims)
  for _, d in ipairs(dims) do h = h .. string.pack(">I4", d) end
  return h .. payload
end
local imgs = idx(0x08, {2, 3, 3}, string.rep("\0\127\255", 6))
put("idx", "images", imgs)
put("idx", "labels", idx(0x08, {4}, "\1\2\3\4"))
put("idx", "floats", idx(0x0D, {2}, string.pack(">f>f", 1.5, -2)))
put("idx", "short", imgs:sub(1, 13))

-- gzip: the same IDX files compressed (gzip(1) from the shell)
for _, name in ipairs({"images", "labels"}) do
  os.execute("gzip -9 -n -c " .. root .. "/idx/" .. name .. " > " .. root .. "/gzip_" .. name .. ".tmp")
  if not fs.isdir(root .. "/gzip") then fs.mkdir(root .. "/gzip") end
  os.rename(root .. "/gzip_" .. name .. ".tmp", root .. "/gzip/" .. name)
end
put("gzip", "raw-not-gzip", imgs)

-- NPY: version 1.0 headers for <f4 (2, 2), <i8 (3,), a Fortran-order one
local function npy(descr, shape, fortran, payload)
  local header = string.format("{'descr': '%s', 'fortran_order': %s, 'shape': %s, }", descr,
    fortran and "True" or "False", shape)
  local pad = 64 - ((10 + #header + 1) % 64)
  header = header .. string.rep(" ", pad) .. "\n"
  return "\147NUMPY\1\0" .. string.pack("<I2", #header) .. header .. payload
end
put("npy", "f4", npy("<f4", "(2, 2)", false, string.pack("<f<f<f<f", 1, 2, 3, 4)))
put("npy", "i8", npy("<i8", "(3,)", false, string.pack("<i8<i8<i8", 1, -2, 3)))
put("npy", "fortran", npy("<f4", "(2, 2)", true, string.pack("<f<f<f<f", 1, 2, 3, 4)))
put("npy", "scalar", npy("<f8", "()", false, string.pack("<d", 3.25)))

-- CSV
put("csv", "header", "a,b,label\n1.5,2,1\n-3,4e-2,2\n")
put("csv", "quoted", "name,x\n\"a, b\",1\n\"say \"\"hi\"\"\",2\n")
put("csv", "ragged", "1,2,3\n4,5\n")

-- CIFAR-10 binary: records of 1 label byte + 3072 pixel bytes
local rec = string.char(3) .. string.rep("\10\200", 1536)
put("cifar", "two", rec .. string.char(9) .. string.rep("\0", 3072))
put("cifar", "partial", rec:sub(1, 100))

-- JSON
put("json", "object", '{"acc": [0.81, 0.83], "ok": true, "name": "x\\u00e9", "n": null, "i": -12}')
put("json", "nested", '[[[[{"a": {"b": [1e-3, 2E+4, -0.0]}}]]]]')
put("json", "bad", '{"a": [1, 2,]}')

-- library manifests
put("manifest", "ok", 'return {name = "robustutils", version = "1.2.0", modules = {"robustutils", ["robustutils.extra"] = "extra.lua"}, dependencies = {other = ">=1.0"}}\n')
put("manifest", "bad_version", 'return {name = "x", version = "one", modules = {}}\n')
put("manifest", "loops", "while true do end\n")          -- would hang without the instruction budget

-- bundles: a real one made by parry.lib.bundle, and a broken one
local lib = tmp .. "-lib"
fs.mkdir(lib)
local f = assert(io.open(lib .. "/parry.lib.lua", "w"))
f:write('return {name = "seedlib", version = "0.1.0", modules = {"seedlib"}}\n'); f:close()
f = assert(io.open(lib .. "/seedlib.lua", "w"))
f:write('local M = {}\nfunction M.twice(x) return 2 * x end\nreturn M\n'); f:close()
parry.lib.bundle(lib, tmp .. "-bundle.lua")
put("bundle", "seedlib", slurp(tmp .. "-bundle.lua"))
put("bundle", "not_a_bundle", "return 42\n")
put("bundle", "loops", "local t = {} for i = 1, 1e12 do t[i % 10] = i end return t\n")
fs.rmtree(lib)
os.remove(tmp .. "-bundle.lua")
os.remove(tmp)
print("seeds written to " .. root)
