-- LuaRocks package of parry as a Lua 5.4 module (parry/core.so + the stdlib):
--   luarocks --lua-version 5.4 make scripts/parry-scm-1.rockspec [--tree DIR]
-- (PARRY_CONFIG=debug in the environment installs the debug build instead).
-- from the repository root. Needs the Swift toolchain and scripts/deps' packages.
rockspec_format = "3.0"
package = "parry"
version = "scm-1"
source = { url = "git+file://." }
description = {
  summary = "Tensors, autograd, adversarial attacks, robust training, federated learning and robust RL for Lua 5.4",
  detailed = "parry's Swift kernels as a Lua C module (parry.core) with its Lua standard library (parry, parry.nn, parry.rl, ...).",
  license = "see the repository",
}
dependencies = { "lua >= 5.4, < 5.5" }
build = {
  type = "command",
  -- LuaRocks exports CC=gcc and its flags; SwiftPM must use its own clang
  build_command = "env -u CC -u CFLAGS -u LD -u LDFLAGS -u LIBFLAG swift build -c ${PARRY_CONFIG:-release} --product parry_core",
  install_command = "mkdir -p $(LIBDIR)/parry $(LUADIR) && "
    .. "cp .build/${PARRY_CONFIG:-release}/libparry_core.so $(LIBDIR)/parry/core.so && "
    .. "cp -R stdlib/parry $(LUADIR)/",
}
