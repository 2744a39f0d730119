#include "cfuzzcoverage.h"
#include <stdint.h>
#include <string.h>

// libFuzzer reads every byte between __start_ and __stop_ of this section as
// one more coverage counter (its "extra counters").
__attribute__((section("__libfuzzer_extra_counters"), used))
static uint8_t counters[1 << 16];

// Lines of parry's own Lua files count; code that came with the input (a
// bundle's or manifest's chunks, loaded from the fuzzer's scratch folder or
// from a string) does not: its lines are new on every input, which would make
// every input look like new coverage. The key is the file's name, not the
// address of Lua's copy of it, so a chunk loaded twice counts once.
static void line_hook(lua_State *L, lua_Debug *ar) {
    if (!lua_getinfo(L, "S", ar) || ar->source[0] != '@' || strstr(ar->source, "parry-fuzz-")) return;
    uint32_t h = 2166136261u;
    for (const char *p = ar->source; *p; p++) h = (h ^ (uint8_t)*p) * 16777619u;
    h ^= (uint32_t)ar->currentline * 40503u;
    uint8_t *c = &counters[(h ^ (h >> 16)) & 0xFFFF];
    if (*c != 255) (*c)++;
}

void parry_fuzz_cover_lua(lua_State *L) { lua_sethook(L, line_hook, LUA_MASKLINE, 0); }
