#include <stdlib.h>
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

/* The small-block allocator's state (below) doubles as the per-state record
 * of registry references to the kinds' metatables: lua_rawgeti of the
 * registry's array part instead of lua_rawgetp's hash lookup, ~90 of a
 * 16-float `a + a`'s instructions. States parry did not create (the C
 * module in another interpreter) keep the lookup by key. */
#define PARRY_SMALL_BLOCK 256
#define PARRY_SMALL_CACHE (8u << 20)

struct parry_allocator {
  void *head[PARRY_SMALL_BLOCK + 1];
  size_t cached;
  int kind_ref[PARRY_KIND_COUNT];            /* 0: none */
};

static void *small_alloc(void *ud, void *ptr, size_t osize, size_t nsize);

static struct parry_allocator *state_allocator(lua_State *L) {
  void *ud = NULL;
  return lua_getallocf(L, &ud) == small_alloc ? (struct parry_allocator *)ud : NULL;
}

void parry_setkindmetatable(lua_State *L, int kind) {
  struct parry_allocator *a = state_allocator(L);
  if (a != NULL) {
    lua_pushvalue(L, -1);
    int ref = luaL_ref(L, LUA_REGISTRYINDEX);
    a->kind_ref[kind] = ref > 0 ? ref : 0;
  }
  lua_rawsetp(L, LUA_REGISTRYINDEX, &kind_keys[kind]);
}

/* A script can rewrite the registry (debug.getregistry): whatever is there
 * is used only if it is a table (lua_setmetatable takes nothing else). */
int parry_pushkindmetatable(lua_State *L, int kind) {
  struct parry_allocator *a = state_allocator(L);
  if (a != NULL && a->kind_ref[kind] > 0) {
    if (lua_rawgeti(L, LUA_REGISTRYINDEX, a->kind_ref[kind]) == LUA_TTABLE) return LUA_TTABLE;
    lua_settop(L, -2);
  }
  int t = lua_rawgetp(L, LUA_REGISTRYINDEX, &kind_keys[kind]);
  if (t != LUA_TTABLE && t != LUA_TNIL) {
    lua_settop(L, -2);
    lua_pushnil(L);
    t = LUA_TNIL;
  }
  return t;
}

/* A userdata of parry's holds a box: the object and the address of its
 * kind's key. The type check of an argument reads the box, not the
 * metatable: debug.setmetatable can put any metatable on any userdata (a
 * file handle wearing the tensor metatable had its FILE* read as a tensor),
 * and the checks of a 16-float `a + a` (its two arguments and its
 * finalizer's) took ~500 of its ~3,880 instructions through
 * lua_getmetatable, ~270 this way (the op: 3,752). Only C code makes
 * userdata, so a foreign one matches only if it is a box's size and holds
 * the address of a static of this file in its second word. */
typedef struct parry_box {
  void *object;
  const char *kind_tag;
} parry_box;

void parry_pushobject(lua_State *L, void *object, int kind) {
  parry_pushobject_uv(L, object, kind, 0);
}

void parry_pushobject_uv(lua_State *L, void *object, int kind, int nuv) {
  parry_box *box = (parry_box *)lua_newuserdatauv(L, sizeof(parry_box), nuv);
  box->object = object;
  box->kind_tag = &kind_keys[kind];
  parry_pushkindmetatable(L, kind);
  lua_setmetatable(L, -2);
}

static parry_box *box_of(lua_State *L, int idx, int kind) {
  if (lua_type(L, idx) != LUA_TUSERDATA || lua_rawlen(L, idx) != sizeof(parry_box)) return NULL;
  parry_box *box = (parry_box *)lua_touserdata(L, idx);
  return box->kind_tag == &kind_keys[kind] ? box : NULL;
}

void *parry_toobject(lua_State *L, int idx, int kind) {
  parry_box *box = box_of(L, idx, kind);
  return box ? box->object : NULL;
}

void *parry_takeobject(lua_State *L, int idx, int kind) {
  parry_box *box = box_of(L, idx, kind);
  if (!box) return NULL;
  void *object = box->object;
  box->object = NULL;
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

/* The Lua state's allocator: lauxlib's realloc/free, with a free list per
 * exact block size up to PARRY_SMALL_BLOCK bytes in front. A minor
 * collection frees thousands of tensor boxes at once, more than glibc's
 * per-thread cache holds, so each box went through malloc's slow paths: a
 * 16-float `a + a` runs 3,623 instructions instead of 3,752 and takes
 * ~0.86x the time (paired whole processes). Every block is a
 * malloc block, so any block may be handed to realloc or free, and one
 * state's blocks (those allocated before lua_setallocf included) may sit
 * in the lists. At most PARRY_SMALL_CACHE bytes are kept; the rest goes
 * back to free at once. Lua calls a state's allocator from that state's
 * thread only. */
static void *small_alloc(void *ud, void *ptr, size_t osize, size_t nsize) {
  struct parry_allocator *a = (struct parry_allocator *)ud;
  if (nsize == 0) {
    if (ptr == NULL) return NULL;
    if (osize >= sizeof(void *) && osize <= PARRY_SMALL_BLOCK && a->cached + osize <= PARRY_SMALL_CACHE) {
      *(void **)ptr = a->head[osize];
      a->head[osize] = ptr;
      a->cached += osize;
    } else {
      free(ptr);
    }
    return NULL;
  }
  if (ptr == NULL) {                           /* osize is the object's type, not a size */
    if (nsize <= PARRY_SMALL_BLOCK && a->head[nsize] != NULL) {
      void *block = a->head[nsize];
      a->head[nsize] = *(void **)block;
      a->cached -= nsize;
      return block;
    }
    return malloc(nsize);
  }
  return realloc(ptr, nsize);
}

void parry_use_small_allocator(lua_State *L) {
  struct parry_allocator *a = (struct parry_allocator *)calloc(1, sizeof *a);
  if (a != NULL) lua_setallocf(L, small_alloc, a);
}

void parry_close_state(lua_State *L) {
  struct parry_allocator *a = state_allocator(L);
  lua_close(L);
  if (a == NULL) return;
  for (size_t size = 0; size <= PARRY_SMALL_BLOCK; size++) {
    for (void *block = a->head[size]; block != NULL;) {
      void *next = *(void **)block;
      free(block);
      block = next;
    }
  }
  free(a);
}

size_t parry_small_allocator_cached(const parry_allocator *a) { return a ? a->cached : 0; }

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
