// Lua line coverage for libFuzzer: parry's JSON decoder and library
// manifests are Lua code, run by Debian's (uninstrumented) interpreter, so
// libFuzzer's edge coverage cannot see them. A line hook hashes (chunk,
// line) into libFuzzer's extra counters, which it treats as coverage.
#ifndef PARRY_CFUZZCOVERAGE_H
#define PARRY_CFUZZCOVERAGE_H
#include <lua.h>
void parry_fuzz_cover_lua(lua_State *L);
#endif
