--- parry.doctor: `parry doctor` — what a new user needs to know when
-- something is off: versions, the BLAS and threads, where the stdlib and the
-- docs were found, the datasets at their default paths, LuaRocks, MuJoCo's
-- model files and MPI, each with the fix when it is missing.
local M = {}

local function exists(path)
  local f = io.open(path, "rb")
  if f then f:close() return true end
  return false
end

local function run(cmd)
  local p = io.popen(cmd .. " 2>/dev/null")
  if not p then return nil end
  local out = p:read("a")
  local ok = p:close()
  return ok and out or nil
end

--- checks() -> a list of {name=, ok=, detail=, fix=} (ok nil: information only).
function M.checks()
  local parry = require("parry")
  local core = require("parry.core")
  local list = {}
  local function add(name, ok, detail, fix) list[#list + 1] = { name = name, ok = ok, detail = detail, fix = fix } end

  add("parry", nil, parry.version .. " on " .. _VERSION)
  add("threads", nil, ("%d (parry.set_num_threads; OpenBLAS runs single-threaded inside parry's own threads)"):format(parry.get_num_threads()))
  local coretype = os.getenv("OPENBLAS_CORETYPE")
  add("BLAS", nil, "OpenBLAS" .. (coretype and (", OPENBLAS_CORETYPE=" .. coretype) or ", core type detected at run time"))
  local here = package.searchpath("parry", package.path)
  add("stdlib", here ~= nil, here or "parry/init.lua not on package.path",
      "run the parry binary from the build tree or an install (make install), or set PARRY_PATH to the stdlib folder")
  local docs = require("parry.help").sections().path
  add("docs", docs ~= nil, docs or "docs/reference.md not found (help() is empty)",
      "set PARRY_DOCS to the docs folder, or make install")
  local fm = "/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte"
  add("Fashion-MNIST", exists(fm) or exists(fm .. ".gz"), "/usr/share/datasets/fashion-mnist",
      "apt install dataset-fashion-mnist (scripts/deps installs it)")
  add("MNIST, CIFAR-10", nil, "no default location: pass root= to parry.data.mnist / cifar10 / cifar10c")
  local rocks = run("luarocks --lua-version 5.4 path --lr-path")
  add("LuaRocks", rocks ~= nil, rocks and ("luarocks 5.4 tree: " .. rocks:gsub("%s+$", ""):sub(1, 120)) or "luarocks not found",
      "apt install luarocks; rocks installed with --lua-version 5.4 load through package.path")
  local assets, why = core._rl.mujoco_assets()
  add("MuJoCo", assets ~= nil, assets and ("libmujoco linked; Gymnasium's models in " .. assets) or ("libmujoco linked; " .. tostring(why)),
      "make deps-rl (a venv with gymnasium[mujoco] where parry looks), or set PARRY_MUJOCO_ASSETS")
  local mpi = run("command -v mpirun")
  add("MPI", nil, mpi and ("mpirun at " .. mpi:gsub("%s+$", "") .. "; parry.dist is not built yet") or "not installed; parry.dist is not built yet")
  return list
end

--- main() -> exit status: prints the checks; 1 when something needed is missing.
function M.main()
  local bad = 0
  for _, c in ipairs(M.checks()) do
    local mark = c.ok == nil and "  " or c.ok and "ok" or "!!"
    print(("%s %-16s %s"):format(mark, c.name, c.detail))
    if c.ok == false then
      bad = bad + 1
      print(("   %-16s fix: %s"):format("", c.fix))
    end
  end
  print(bad == 0 and "\nnothing is missing" or ("\n%d thing%s to fix"):format(bad, bad == 1 and "" or "s"))
  return bad == 0 and 0 or 1
end

return M
