// The C side of parry's Lua edge.
//
// Swift cannot import Lua's function-like macros, and a Lua error is a
// longjmp that must never cross a Swift frame. This header wraps the macros as
// functions and provides the trampolines through which every Swift function is
// exposed to Lua: the Swift function reports an error by pushing a message and
// returning PARRY_ERROR; the C trampoline then raises it with lua_error, so the
// longjmp starts and ends in C and Lua frames only.
#ifndef PARRY_SHIM_H
#define PARRY_SHIM_H

#include <stddef.h>
#include <lua.h>
#include <lauxlib.h>
#include <lualib.h>

/// A Swift function exposed to Lua. Returns the number of results (>= 0),
/// PARRY_ERROR after pushing an error message (position info is prepended),
/// or PARRY_RETHROW after pushing an error object to raise unchanged.
typedef int (*parry_SwiftFunction)(lua_State *L);
#define PARRY_ERROR (-1)
#define PARRY_RETHROW (-2)

/// Userdata kinds; each has one metatable, registered once in the registry.
enum { PARRY_TENSOR = 0, PARRY_GENERATOR = 1, PARRY_MODULE = 2, PARRY_OPTIMIZER = 3, PARRY_SCHEDULER = 4, PARRY_ENV = 5, PARRY_KIND_COUNT = 16 };

// --- trampolines -----------------------------------------------------------
/// Marks chunks whose source starts with `prefix` ("@DIR/parry/") as parry's
/// stdlib: errors from bindings are positioned at the first frame outside it.
void parry_add_stdlib_prefix(const char *prefix);
int parry_in_stdlib(const char *source);
/// Pushes a Lua function that calls `f` through the error trampoline.
void parry_pushfunction(lua_State *L, parry_SwiftFunction f);
/// Pushes an `__index` function: string keys are looked up raw in the table at
/// `methods` (an absolute or relative stack index), everything else — and
/// missing names — goes to `fallback` (called as fallback(obj, key)).
void parry_pushindexer(lua_State *L, int methods, parry_SwiftFunction fallback);

// --- userdata ----------------------------------------------------------------
/// Pops the table on top of the stack and registers it as the metatable of `kind`.
void parry_setkindmetatable(lua_State *L, int kind);
/// Pushes the metatable of `kind` (nil if none registered).
int parry_pushkindmetatable(lua_State *L, int kind);
/// Pushes a full userdata boxing `object` with the metatable of `kind`.
void parry_pushobject(lua_State *L, void *object, int kind);
/// The same with `nuv` user values (nil until set).
void parry_pushobject_uv(lua_State *L, void *object, int kind, int nuv);
/// The object boxed at `idx` if it is a userdata box of `kind` (the box's
/// size and kind tag are checked, not the metatable, which
/// debug.setmetatable can move), else NULL. Never raises.
void *parry_toobject(lua_State *L, int idx, int kind);
/// Takes the object out of the box at `idx` (for __gc) and clears the box.
void *parry_takeobject(lua_State *L, int idx, int kind);

// --- running code ------------------------------------------------------------
/// lua_pcall with a message handler that appends a traceback.
int parry_docall(lua_State *L, int narg, int nres);
/// Installs a SIGINT handler that interrupts running Lua code (as lua.c does)
/// while `active` is non-zero; restores the default handler otherwise.
void parry_sigint(lua_State *L, int active);
/// Non-zero once SIGINT arrived while parry_sigint was active (native loops poll it).
int parry_native_interrupted(void);
void parry_clear_native_interrupt(void);
/// While `active`, SIGINT at the REPL prompt only sets a flag (read by
/// parry_prompt_interrupted, which clears it) and interrupts the terminal read.
void parry_prompt_sigint(int active);
int parry_prompt_interrupted(void);

// --- garbage collector ---------------------------------------------------------
void parry_gc_collect(lua_State *L);
void parry_gc_generational(lua_State *L);
/// Gives the state parry's allocator (lauxlib's realloc/free with a free
/// list per small block size in front); the state is unchanged if out of memory.
void parry_use_small_allocator(lua_State *L);
/// lua_close, then frees the allocator's lists and record, if it has parry's.
void parry_close_state(lua_State *L);
/// Bytes held in the lists of the allocator whose userdata is `ud` (lua_getallocf).
typedef struct parry_allocator parry_allocator;
size_t parry_small_allocator_cached(const parry_allocator *a);
int parry_gc_count_kb(lua_State *L);

// --- macro wrappers ------------------------------------------------------------
static inline int parry_registryindex(void) { return LUA_REGISTRYINDEX; }
static inline int parry_upvalueindex(int i) { return lua_upvalueindex(i); }
static inline void parry_pop(lua_State *L, int n) { lua_pop(L, n); }
static inline void parry_newtable(lua_State *L) { lua_newtable(L); }
static inline void parry_insert(lua_State *L, int idx) { lua_insert(L, idx); }
static inline void parry_remove(lua_State *L, int idx) { lua_remove(L, idx); }
static inline void parry_replace(lua_State *L, int idx) { lua_replace(L, idx); }
static inline const char *parry_tostring(lua_State *L, int idx, size_t *len) { return lua_tolstring(L, idx, len); }
static inline lua_Number parry_tonumber(lua_State *L, int idx, int *isnum) { return lua_tonumberx(L, idx, isnum); }
static inline lua_Integer parry_tointeger(lua_State *L, int idx, int *isnum) { return lua_tointegerx(L, idx, isnum); }
static inline int parry_pcall(lua_State *L, int narg, int nres, int msgh) { return lua_pcall(L, narg, nres, msgh); }
static inline int parry_loadbuffer(lua_State *L, const char *s, size_t n, const char *name) { return luaL_loadbuffer(L, s, n, name); }
static inline void parry_pushcfunction(lua_State *L, lua_CFunction f) { lua_pushcfunction(L, f); }
static inline int parry_isnoneornil(lua_State *L, int idx) { return lua_isnoneornil(L, idx); }

#endif
