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

--- checks() -> a list of {name=, ok=, detail=, fix=, slow=} (ok nil: information only; slow: works, below
-- this machine's speed, with the fix).
function M.checks()
  local parry = require("parry")
  local core = require("parry.core")
  local list = {}
  local function add(name, ok, detail, fix)
    local c = { name = name, ok = ok, detail = detail, fix = fix }
    list[#list + 1] = c
    return c
  end

  add("parry", nil, parry.version .. " on " .. _VERSION)
  add("threads", nil, ("%d (parry.set_num_threads; OpenBLAS runs single-threaded inside parry's own threads)"):format(parry.get_num_threads()))
  local coretype = os.getenv("OPENBLAS_CORETYPE")
  local blas = parry.blas_info()
  local lib = blas.config:match("^OpenBLAS [%d%.]+") or blas.library
  local chosen = coretype and ("OPENBLAS_CORETYPE=" .. coretype) or "chosen at load time"
  if blas.fallback then
    -- The library does not know this CPU model and fell back to narrower kernels.
    local c = add("BLAS", nil, ("%s runs its %s kernels (%s, %s) on a CPU with %s: matrix products and convolutions run "
        .. "several times below this machine's rate"):format(lib, blas.core, blas.core_vector, chosen, blas.cpu_vector),
      blas.suggested_core and ("export OPENBLAS_CORETYPE=%s before starting parry (OpenBLAS reads it once, when it loads)"):format(blas.suggested_core))
    c.slow = true
  else
    add("BLAS", nil, ("%s, %s kernels (%s, %s); the CPU's widest unit: %s"):format(lib, blas.core, blas.core_vector, chosen, blas.cpu_vector))
  end
  -- The convolution path (docs/tensors.md); PARRY_CONV is read once, by the kernels.
  local conv = os.getenv("PARRY_CONV")
  local how = not blas.conv_direct and "im2col + OpenBLAS"
    or blas.conv_dweight == "direct" and ("direct kernels on %s"):format(blas.conv_isa)
    or ("direct kernels on %s for the forward pass and the input gradient, im2col + OpenBLAS for the weight gradient")
       :format(blas.conv_isa)
  if conv == nil or conv == "direct" or conv == "avx2" or conv == "im2col" then
    add("convolutions", nil, how .. (conv and (" (PARRY_CONV=%s)"):format(conv) or ""))
  else
    add("convolutions", false, ('PARRY_CONV="%s" is not a path parry knows, so the default runs: %s'):format(conv, how),
        "set PARRY_CONV to direct, avx2 or im2col, or unset it (docs/tensors.md)")
  end
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
  local dist = require("parry.dist")
  add("MPI", nil, mpi and ("mpirun at " .. mpi:gsub("%s+$", "") .. "; parry.dist is linked ("
      .. (dist.is_distributed() and ("rank %d of %d"):format(dist.rank(), dist.size()) or "one process: mpirun -np N parry script.lua spreads a run") .. ")")
      or "mpirun not found: parry.dist runs as one process (apt install openmpi-bin)")
  return list
end

--- main() -> exit status: prints the checks; 1 when something needed is missing.
function M.main()
  local bad, slow = 0, 0
  for _, c in ipairs(M.checks()) do
    -- !! something needed is missing; ~~ it works, slower than this machine allows.
    local mark = c.slow and "~~" or c.ok == nil and "  " or c.ok and "ok" or "!!"
    print(("%s %-16s %s"):format(mark, c.name, c.detail))
    if c.ok == false or (c.slow and c.fix) then
      if c.ok == false then bad = bad + 1 else slow = slow + 1 end
      print(("   %-16s fix: %s"):format("", c.fix))
    end
  end
  print(bad == 0 and "\nnothing is missing" or ("\n%d thing%s to fix"):format(bad, bad == 1 and "" or "s"))
  if slow > 0 then print(("%d setting%s to change for speed (~~)"):format(slow, slow == 1 and "" or "s")) end
  return bad == 0 and 0 or 1
end

return M
