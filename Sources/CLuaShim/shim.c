#include <string.h>
#include "shim.h"
#include <signal.h>

static char kind_keys[PARRY_KIND_COUNT];

/* parry's own Lua modules ("@DIR/parry/"), registered by the host: an
 * error a script's call causes is positioned at the script's line, not at
 * the stdlib line that passed the bad value on. */
#define PARRY_MAX_PREFIXES 8
static char stdlib_prefixes[PARRY_MAX_PREFIXES][4096];
static int stdlib_prefix_count = 0;

void parry_add_stdlib_prefix(const char *prefix) {
  size_t n = strlen(prefix);
  if (n == 0 || n >= sizeof stdlib_prefixes[0]) return;
  for (int i = 0; i < stdlib_prefix_count; i++)
    if (strcmp(stdlib_prefixes[i], prefix) == 0) return;
  if (stdlib_prefix_count < PARRY_MAX_PREFIXES) memcpy(stdlib_prefixes[stdlib_prefix_count++], prefix, n + 1);
}

int parry_in_stdlib(const char *source) {
  for (int i = 0; i < stdlib_prefix_count; i++)
    if (strncmp(source, stdlib_prefixes[i], strlen(stdlib_prefixes[i])) == 0) return 1;
  return 0;
}

/* Pushes "file:line: " of the first Lua frame from level 1 up that is
 * neither a C function nor in parry's stdlib, or "" if there is none (a
 * tail call from a chunk's top level leaves no frame of the script). */
static void where_user(lua_State *L) {
  lua_Debug ar;
  for (int level = 1; lua_getstack(L, level, &ar); level++) {
    if (!lua_getinfo(L, "Sl", &ar) || ar.currentline <= 0 || parry_in_stdlib(ar.source)) continue;
    lua_pushfstring(L, "%s:%d: ", ar.short_src, ar.currentline);
    return;
  }
  lua_pushliteral(L, "");
}

/* Raises the error that a Swift function reported, positioned at the user's line. */
static int raise_reported(lua_State *L, int status) {
  if (status == PARRY_ERROR && lua_type(L, -1) == LUA_TSTRING) {
    where_user(L);
    lua_insert(L, -2);
    lua_concat(L, 2);
  }
  return lua_error(L);
}

static int trampoline(lua_State *L) {
  parry_SwiftFunction f = (parry_SwiftFunction)lua_touserdata(L, lua_upvalueindex(1));
  int n = f(L);
  if (n >= 0) return n;
  return raise_reported(L, n);
}

void parry_pushfunction(lua_State *L, parry_SwiftFunction f) {
  lua_pushlightuserdata(L, (void *)f);
  lua_pushcclosure(L, trampoline, 1);
}

static int index_trampoline(lua_State *L) {
  if (lua_type(L, 2) == LUA_TSTRING) {
    lua_pushvalue(L, 2);
    if (lua_rawget(L, lua_upvalueindex(1)) != LUA_TNIL) return 1;
    lua_pop(L, 1);
  }
  parry_SwiftFunction f = (parry_SwiftFunction)lua_touserdata(L, lua_upvalueindex(2));
  int n = f(L);
  if (n >= 0) return n;
  return raise_reported(L, n);
}

void parry_pushindexer(lua_State *L, int methods, parry_SwiftFunction fallback) {
  methods = lua_absindex(L, methods);
  lua_pushvalue(L, methods);
  lua_pushlightuserdata(L, (void *)fallback);
  lua_pushcclosure(L, index_trampoline, 2);
}

/* The metatable addresses of the state that registered its kinds last, so
 * the type check of every argument (box_of) compares two pointers instead of
 * looking the metatable up in the registry (a registry lookup and a rawequal
 * were ~250 of the ~4,700 instructions of a 16-float `a + a`, three checks per
 * op). A pointer match is exact: the cached tables are anchored in that
 * state's registry until it closes, when a finalizer clears the cache (before
 * the tables are freed), and another live state's tables cannot share their
 * addresses. Any other state takes the registry path, as before. */
static const void *kind_mt_cache[PARRY_KIND_COUNT];
static char cache_owner_key;

static int clear_kind_cache(lua_State *L) {
  (void)L;
  memset((void *)kind_mt_cache, 0, sizeof kind_mt_cache);
  return 0;
}

void parry_setkindmetatable(lua_State *L, int kind) {
  if (lua_rawgetp(L, LUA_REGISTRYINDEX, &cache_owner_key) == LUA_TNIL) {
    /* First kind of this state: a sentinel whose __gc (at lua_close) clears
     * the cache. A full collection never finds it garbage: the registry holds it. */
    lua_newuserdatauv(L, 1, 0);
    lua_createtable(L, 0, 1);
    lua_pushcfunction(L, clear_kind_cache);
    lua_setfield(L, -2, "__gc");
    lua_setmetatable(L, -2);
    lua_rawsetp(L, LUA_REGISTRYINDEX, &cache_owner_key);
    memset((void *)kind_mt_cache, 0, sizeof kind_mt_cache);   /* another state's entries: no longer ours to trust */
  }
  lua_pop(L, 1);
  kind_mt_cache[kind] = lua_topointer(L, -1);
  lua_rawsetp(L, LUA_REGISTRYINDEX, &kind_keys[kind]);
}

int parry_pushkindmetatable(lua_State *L, int kind) {
  return lua_rawgetp(L, LUA_REGISTRYINDEX, &kind_keys[kind]);
}

void parry_pushobject(lua_State *L, void *object, int kind) {
  parry_pushobject_uv(L, object, kind, 0);
}

void parry_pushobject_uv(lua_State *L, void *object, int kind, int nuv) {
  void **box = (void **)lua_newuserdatauv(L, sizeof(void *), nuv);
  *box = object;
  lua_rawgetp(L, LUA_REGISTRYINDEX, &kind_keys[kind]);
  lua_setmetatable(L, -2);
}

static void **box_of(lua_State *L, int idx, int kind) {
  if (lua_type(L, idx) != LUA_TUSERDATA) return NULL;
  void **box = (void **)lua_touserdata(L, idx);
  if (!lua_getmetatable(L, idx)) return NULL;
  const void *cached = kind_mt_cache[kind];
  if (cached != NULL && lua_topointer(L, -1) == cached) {
    lua_settop(L, -2);
    return box;
  }
  /* not the cached state's metatable (maybe another state's): the registry decides */
  lua_rawgetp(L, LUA_REGISTRYINDEX, &kind_keys[kind]);
  int same = lua_rawequal(L, -1, -2);
  lua_pop(L, 2);
  return same ? box : NULL;
}

void *parry_toobject(lua_State *L, int idx, int kind) {
  void **box = box_of(L, idx, kind);
  return box ? *box : NULL;
}

void *parry_takeobject(lua_State *L, int idx, int kind) {
  void **box = box_of(L, idx, kind);
  if (!box) return NULL;
  void *object = *box;
  *box = NULL;
  return object;
}

/* Message handler: appends a traceback (as lua.c's msghandler). */
static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (msg == NULL) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING)
      return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

int parry_docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  int status = lua_pcall(L, narg, nres, base);
  lua_remove(L, base);
  return status;
}

/* Ctrl-C: as lua.c, set a hook from the signal handler that raises an error
 * at the next Lua instruction, so long loops return to the prompt. */
static lua_State *interrupted_state = NULL;

static void interrupt_hook(lua_State *L, lua_Debug *ar) {
  (void)ar;
  lua_sethook(L, NULL, 0, 0);
  luaL_error(L, "interrupted!");
}

/* Native work (an attack, a training loop in Swift) polls this flag between
 * steps through parry_native_interrupted(). */
static volatile sig_atomic_t native_interrupt = 0;

static void on_sigint(int sig) {
  (void)sig;
  int mask = LUA_MASKCALL | LUA_MASKRET | LUA_MASKLINE | LUA_MASKCOUNT;
  native_interrupt = 1;
  if (interrupted_state) lua_sethook(interrupted_state, interrupt_hook, mask, 1);
}

void parry_sigint(lua_State *L, int active) {
  interrupted_state = active ? L : NULL;
  native_interrupt = 0;
  signal(SIGINT, active ? on_sigint : SIG_DFL);
}

int parry_native_interrupted(void) { return native_interrupt != 0; }
void parry_clear_native_interrupt(void) { native_interrupt = 0; }

/* Ctrl-C at the REPL prompt: the handler only records it; without SA_RESTART
 * the terminal read fails with EINTR, libedit's readline returns NULL and the
 * REPL asks parry_prompt_interrupted() whether that was Ctrl-C or Ctrl-D. */
static volatile sig_atomic_t prompt_interrupted = 0;

static void on_prompt_sigint(int sig) {
  (void)sig;
  prompt_interrupted = 1;
}

void parry_prompt_sigint(int active) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sigemptyset(&sa.sa_mask);
  sa.sa_handler = active ? on_prompt_sigint : SIG_DFL;
  sa.sa_flags = 0;
  if (active) prompt_interrupted = 0;
  sigaction(SIGINT, &sa, NULL);
}

int parry_prompt_interrupted(void) {
  int v = prompt_interrupted;
  prompt_interrupted = 0;
  return v;
}

void parry_gc_collect(lua_State *L) { lua_gc(L, LUA_GCCOLLECT); }
void parry_gc_generational(lua_State *L) { lua_gc(L, LUA_GCGEN, 0, 0); }
int parry_gc_count_kb(lua_State *L) { return lua_gc(L, LUA_GCCOUNT); }

/* parry as a Lua C module: `require("parry.core")` from any Lua 5.4 finds
   parry/core.so and calls this. The Swift side hands over its opener (a
   parry_SwiftFunction, run through the trampoline like every binding), so a
   Lua error here unwinds C frames only. */
extern parry_SwiftFunction parry_module_opener(void);

int luaopen_parry_core(lua_State *L) {
  parry_pushfunction(L, parry_module_opener());
  lua_call(L, 0, 1);
  return 1;
}
