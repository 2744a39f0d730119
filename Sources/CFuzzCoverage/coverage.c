#include "cfuzzcoverage.h"
#include <stdint.h>

// libFuzzer reads every byte between __start_ and __stop_ of this section as
// one more coverage counter (its "extra counters").
__attribute__((section("__libfuzzer_extra_counters"), used))
static uint8_t counters[1 << 16];

static void line_hook(lua_State *L, lua_Debug *ar) {
    if (!lua_getinfo(L, "S", ar)) return;
    uintptr_t h = (uintptr_t)ar->source * 2654435761u ^ (uintptr_t)ar->currentline * 40503u;
    uint8_t *c = &counters[(h ^ (h >> 16)) & 0xFFFF];
    if (*c != 255) (*c)++;
}

void parry_fuzz_cover_lua(lua_State *L) { lua_sethook(L, line_hook, LUA_MASKLINE, 0); }
