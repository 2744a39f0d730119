// OpenBLAS's CBLAS interface (Debian libopenblas-dev).
#include <cblas.h>

// The widest vector instruction set this CPU offers for float32 GEMM kernels:
// 3 = AVX-512 (F, DQ, BW, VL), 2 = AVX2 with FMA, 1 = AVX, 0 = SSE only.
// BLASInfo compares it with the kernels OpenBLAS chose (see BLASInfo.swift).
static inline int parry_cpu_vector_level(void) {
#if defined(__x86_64__)
    __builtin_cpu_init();
    if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
        __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl")) return 3;
    if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return 2;
    if (__builtin_cpu_supports("avx")) return 1;
#endif
    return 0;
}
