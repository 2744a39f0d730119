// The kernels written once with clang's vector types and compiled twice —
// for AVX2 and for the baseline x86-64 (or whatever the target is) — chosen
// at run time (batchnorm.c, pool.c). Private to CKernels.
#ifndef PARRY_CKERNELS_VEC_H
#define PARRY_CKERNELS_VEC_H

#include <string.h>

// The vector helpers are always inlined, so the baseline build's "AVX vector
// passed without AVX" ABI note concerns no real call.
#pragma clang diagnostic ignored "-Wpsabi"

typedef float v8 __attribute__((vector_size(32)));
typedef int v8i __attribute__((vector_size(32)));

#define PK_INLINE static inline __attribute__((always_inline))

PK_INLINE v8 load8(const float *p) { v8 v; memcpy(&v, p, sizeof v); return v; }
PK_INLINE void store8(float *p, v8 v) { memcpy(p, &v, sizeof v); }
PK_INLINE v8 splat(float a) { return (v8){a, a, a, a, a, a, a, a}; }

// Each entry point twice: for AVX2 and for the baseline, chosen once.
#if defined(__x86_64__)
#define PK_AVX2 __attribute__((target("avx2")))
static int has_avx2(void) {
    // Threads may race to fill it; each computes the same value (relaxed
    // atomics, so ThreadSanitizer sees no data race in the first kernel calls
    // made from worker threads).
    static int cached = -1;
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx2") ? 1 : 0;
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
}
#define PK_DISPATCH(name, params, args, ret)                                 \
    PK_AVX2 static ret name##_avx2 params { return name args; }             \
    static ret name##_base params { return name args; }                     \
    ret pk_##name params { return has_avx2() ? name##_avx2 args : name##_base args; }
#else
#define PK_DISPATCH(name, params, args, ret) ret pk_##name params { return name args; }
#endif

#endif
