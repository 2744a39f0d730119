// Direct convolution kernels (AVX-512F, and AVX2 giving the same bits), see include/ckernels.h.
//
// The geometry they cover: stride 1 and an output as wide as the input
// (2·pw = kw − 1: 3×3 with padding 1, 1×1 with padding 0, 5×5 with padding 2,
// any row padding). Then output position l = row·W + col reads input element
// l + (i − ph)·W + (j − pw) of each channel plane for window offset (i, j): a
// constant shift per (i, j), so 16 consecutive outputs read 16 consecutive
// inputs, and the lanes whose window falls on padding (or wraps onto the
// neighbouring image row) are masked off — a masked load returns 0 there and
// does not touch memory. So the column matrix of im2col is never written.
//
// Forward (and the input gradient, which is the same convolution of g with
// the flipped, transposed kernel): a register tile of up to 12 output channels
// × 32 positions (24 accumulators), weights broadcast from a packed [k][row]
// panel. Weight gradient: a tile of 4 output channels × 6 window rows, each
// accumulator a 16-lane partial sum over positions and images, reduced at the
// end of an image group. Summation order depends only on the shapes and on
// how many images one call gets (the caller fixes that), not on threads.

#include "ckernels.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__)
#include <immintrin.h>
#define PK_X86 1
#endif

// Register tiles: loops over their rows and columns must unroll completely so
// the accumulators stay in registers.
#define PK_UNROLL _Pragma("clang loop unroll(full)")

#define MRMAX 12       // output channels per forward tile
#define PANEL 32       // output positions per forward tile (two vectors)
#define MOMAX 4        // output channels per weight-gradient tile
#define NKMAX 6        // window rows per weight-gradient tile
#define MO2 3          // output channels per AVX2 weight-gradient tile

// The instruction set the kernels run on: the CPU's widest, AVX-512F or AVX2
// with FMA (or AVX2 on an AVX-512 CPU when asked), and whether the weight
// gradient runs on them too. On AVX-512 it does. On AVX2 by default it does
// not: there the forward and input-gradient tiles beat im2col on OpenBLAS's
// AVX2 GEMM, the weight-gradient tiles do not (docs/tensors.md), so conv2d
// takes the weight gradient from im2col columns; PARRY_CONV=direct runs all
// three on the kernels. Same bits on AVX2 and AVX-512 whenever all three run
// here: every output and every 16-lane partial sum of the weight gradient adds
// the same products in the same order on both, and the partials are reduced
// along the same tree.
enum { ISA_NONE = 0, ISA_AVX2 = 1, ISA_AVX512 = 2 };

static int cpu_isa(void) {
#ifdef PK_X86
    static int cached = -1;          // threads may race to fill it, each with the same value (relaxed atomics)
    int v = __atomic_load_n(&cached, __ATOMIC_RELAXED);
    if (v < 0) {
        __builtin_cpu_init();
        v = __builtin_cpu_supports("avx512f") ? ISA_AVX512
          : __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") ? ISA_AVX2 : ISA_NONE;
        __atomic_store_n(&cached, v, __ATOMIC_RELAXED);
    }
    return v;
#else
    return ISA_NONE;
#endif
}

// The modes of pk_conv_set_mode (ckernels.h).
enum { MODE_DEFAULT = 0, MODE_AVX2 = 1, MODE_WIDEST = 2, MODE_AVX2_COLUMNS = 3 };
static int conv_mode = -1;           // -1: PARRY_CONV not read yet

static int mode(void) {
    int m = __atomic_load_n(&conv_mode, __ATOMIC_RELAXED);
    if (m < 0) {
        const char *e = getenv("PARRY_CONV");
        m = !e ? MODE_DEFAULT : strcmp(e, "avx2") == 0 ? MODE_AVX2
          : strcmp(e, "direct") == 0 ? MODE_WIDEST : MODE_DEFAULT;
        __atomic_store_n(&conv_mode, m, __ATOMIC_RELAXED);
    }
    return m;
}

static int conv_isa(void) {
    const int cpu = cpu_isa(), m = mode();
    return (m == MODE_AVX2 || m == MODE_AVX2_COLUMNS) && cpu >= ISA_AVX2 ? ISA_AVX2 : cpu;
}

int pk_conv_direct_available(void) { return conv_isa() != ISA_NONE; }

int pk_conv_isa(void) { return conv_isa(); }

int pk_conv_dweight_direct(void) {
    const int isa = conv_isa(), m = mode();
    return isa == ISA_AVX512 || (isa == ISA_AVX2 && (m == MODE_AVX2 || m == MODE_WIDEST));
}

int pk_conv_dweight_tile(void) { return conv_isa() == ISA_AVX512 ? MOMAX : MO2; }

int pk_conv_set_mode(int m) {
    __atomic_store_n(&conv_mode, m >= MODE_DEFAULT && m <= MODE_AVX2_COLUMNS ? m : MODE_DEFAULT, __ATOMIC_RELAXED);
    return conv_isa();
}

size_t pk_conv_packed_floats(int outCh, int K) {
    if (outCh <= 0 || K <= 0) return 0;
    return (size_t)((outCh + MRMAX - 1) / MRMAX) * MRMAX * (size_t)K;
}

// Tile t holds output channels t·12 ..< min(outCh, t·12 + 12) (mr of them) at
// packed + t·12·K, laid out [k][mr].
void pk_conv_pack(const float *w, int O, int C, int kh, int kw, int transposeFlip, float *packed) {
    const int outCh = transposeFlip ? C : O, inCh = transposeFlip ? O : C, kk = kh * kw, K = inCh * kk;
    for (int m0 = 0; m0 < outCh; m0 += MRMAX) {
        const int mr = outCh - m0 < MRMAX ? outCh - m0 : MRMAX;
        float *dst = packed + (size_t)m0 * K;
        for (int k = 0; k < K; k++) {
            const int c = k / kk, q = k % kk, i = q / kw, j = q % kw;
            for (int t = 0; t < mr; t++) {
                const int m = m0 + t;
                dst[(size_t)k * mr + t] = transposeFlip
                    ? w[(((size_t)c * C + m) * kh + (kh - 1 - i)) * kw + (kw - 1 - j)]
                    : w[(((size_t)m * C + c) * kh + i) * kw + j];
            }
        }
    }
}

#ifdef PK_X86

// ---- forward / input gradient ------------------------------------------------

static inline __attribute__((always_inline, target("avx512f")))
void fwd_tile(const int MR, const float *in, ptrdiff_t plane, int inCh, int kk, const ptrdiff_t *shift,
              const uint32_t *masks, const float *wp, const float *bias, float *out, ptrdiff_t L,
              __mmask16 s0, __mmask16 s1, ptrdiff_t d1, ptrdiff_t od1) {
    __m512 a0[MRMAX], a1[MRMAX];
    PK_UNROLL
    for (int r = 0; r < MR; r++) {
        const __m512 b = _mm512_set1_ps(bias ? bias[r] : 0.0f);
        a0[r] = b; a1[r] = b;
    }
    for (int c = 0; c < inCh; c++) {
        const float *pc = in + c * plane;
        for (int q = 0; q < kk; q++) {
            const float *p = pc + shift[q];
            const uint32_t m = masks[q];
            const __m512 x0 = _mm512_maskz_loadu_ps((__mmask16)(m & 0xFFFF), p);
            const __m512 x1 = _mm512_maskz_loadu_ps((__mmask16)(m >> 16), p + d1);
            PK_UNROLL
            for (int r = 0; r < MR; r++) {
                const __m512 w = _mm512_set1_ps(wp[r]);
                a0[r] = _mm512_fmadd_ps(w, x0, a0[r]);
                a1[r] = _mm512_fmadd_ps(w, x1, a1[r]);
            }
            wp += MR;
        }
    }
    PK_UNROLL
    for (int r = 0; r < MR; r++) {
        _mm512_mask_storeu_ps(out + r * L, s0, a0[r]);
        _mm512_mask_storeu_ps(out + r * L + od1, s1, a1[r]);
    }
}

typedef void (*fwd_fn)(const float *, ptrdiff_t, int, int, const ptrdiff_t *, const uint32_t *, const float *,
                       const float *, float *, ptrdiff_t, __mmask16, __mmask16, ptrdiff_t, ptrdiff_t);
#define FWD(MR) \
    static __attribute__((target("avx512f"))) void fwd_##MR(const float *in, ptrdiff_t plane, int inCh, int kk, \
        const ptrdiff_t *shift, const uint32_t *masks, const float *wp, const float *bias, float *out, ptrdiff_t L, \
        __mmask16 s0, __mmask16 s1, ptrdiff_t d1, ptrdiff_t od1) { \
        fwd_tile(MR, in, plane, inCh, kk, shift, masks, wp, bias, out, L, s0, s1, d1, od1); }
FWD(1) FWD(2) FWD(3) FWD(4) FWD(5) FWD(6) FWD(7) FWD(8) FWD(9) FWD(10) FWD(11) FWD(12)
static const fwd_fn fwd_table[MRMAX + 1] = {
    0, fwd_1, fwd_2, fwd_3, fwd_4, fwd_5, fwd_6, fwd_7, fwd_8, fwd_9, fwd_10, fwd_11, fwd_12
};

// The AVX2 forward tile: up to 6 output channels × 16 positions (12
// accumulators of 8 lanes; AVX2 has 16 vector registers), rows r of a packed
// 12-row tile (ws rows per k). Each output adds the same products in the same
// order as the AVX-512 tile (bias, then c, then the taps), so the same bits.
// Lane masks are vectors here (vm: 16 int32 per tap, −1 = in the window);
// vmaskmovps does not touch memory under a 0 lane.
#define MR2 6          // output channels per AVX2 forward tile

static inline __attribute__((always_inline, target("avx2,fma")))
void store8(float *d, __m256 v, uint32_t m) {
    if (m == 0xFF) { _mm256_storeu_ps(d, v); return; }
    float t[8];
    _mm256_storeu_ps(t, v);
    for (int b = 0; b < 8; b++) if (m >> b & 1) d[b] = t[b];
}

static inline __attribute__((always_inline, target("avx2,fma")))
void fwd2_tile(const int MR, const float *in, ptrdiff_t plane, int inCh, int kk, const ptrdiff_t *shift,
               const int32_t *vm, const float *wp, int ws, const float *bias, float *out, ptrdiff_t L,
               uint32_t s0, uint32_t s1, ptrdiff_t d1, ptrdiff_t od1) {
    __m256 a0[MR2], a1[MR2];
    PK_UNROLL
    for (int r = 0; r < MR; r++) {
        const __m256 b = _mm256_set1_ps(bias ? bias[r] : 0.0f);
        a0[r] = b; a1[r] = b;
    }
    for (int c = 0; c < inCh; c++) {
        const float *pc = in + c * plane;
        for (int q = 0; q < kk; q++) {
            const float *p = pc + shift[q];
            const int32_t *m = vm + q * 16;
            const __m256 x0 = _mm256_maskload_ps(p, _mm256_loadu_si256((const __m256i *)m));
            const __m256 x1 = _mm256_maskload_ps(p + d1, _mm256_loadu_si256((const __m256i *)(m + 8)));
            PK_UNROLL
            for (int r = 0; r < MR; r++) {
                const __m256 w = _mm256_broadcast_ss(wp + r);
                a0[r] = _mm256_fmadd_ps(w, x0, a0[r]);
                a1[r] = _mm256_fmadd_ps(w, x1, a1[r]);
            }
            wp += ws;
        }
    }
    PK_UNROLL
    for (int r = 0; r < MR; r++) {
        store8(out + r * L, a0[r], s0);
        store8(out + r * L + od1, a1[r], s1);
    }
}

typedef void (*fwd2_fn)(const float *, ptrdiff_t, int, int, const ptrdiff_t *, const int32_t *, const float *, int,
                        const float *, float *, ptrdiff_t, uint32_t, uint32_t, ptrdiff_t, ptrdiff_t);
#define FWD2(MR) \
    static __attribute__((target("avx2,fma"))) void fwd2_##MR(const float *in, ptrdiff_t plane, int inCh, int kk, \
        const ptrdiff_t *shift, const int32_t *vm, const float *wp, int ws, const float *bias, float *out, ptrdiff_t L, \
        uint32_t s0, uint32_t s1, ptrdiff_t d1, ptrdiff_t od1) { \
        fwd2_tile(MR, in, plane, inCh, kk, shift, vm, wp, ws, bias, out, L, s0, s1, d1, od1); }
FWD2(1) FWD2(2) FWD2(3) FWD2(4) FWD2(5) FWD2(6)
static const fwd2_fn fwd2_table[MR2 + 1] = { 0, fwd2_1, fwd2_2, fwd2_3, fwd2_4, fwd2_5, fwd2_6 };

// Positions per forward panel: two vectors.
static int fwd_panel(void) { return conv_isa() == ISA_AVX512 ? PANEL : 16; }

// The AVX2 kernels' lane masks: `count` masks of `lanes` bits as int32 vectors (−1 / 0).
static void mask_vectors(const uint32_t *bits, ptrdiff_t count, int lanes, int32_t *v) {
    for (ptrdiff_t i = 0; i < count; i++)
        for (int b = 0; b < lanes; b++) v[i * lanes + b] = bits[i] >> b & 1 ? -1 : 0;
}
static int32_t *expand_masks(const uint32_t *bits, ptrdiff_t count, int lanes) {
    int32_t *v = malloc(sizeof(int32_t) * (size_t)(count * lanes));
    if (!v) abort();
    mask_vectors(bits, count, lanes, v);
    return v;
}

// Lane masks of output positions l < L on a W-wide grid for taps reading
// input row row(l) + di[t] (of hin[t] rows) and column col(l) + dj[t] (of W):
// masks[p·ntaps + t], `lanes` bits per panel p.
static void make_masks(ptrdiff_t L, int W, int ntaps, const int *di, const int *dj, const int *hin,
                       int lanes, ptrdiff_t panels, uint32_t *masks) {
    for (ptrdiff_t p = 0; p < panels; p++)
        for (int t = 0; t < ntaps; t++) {
            uint32_t m = 0;
            for (int b = 0; b < lanes; b++) {
                const ptrdiff_t l = p * lanes + b;
                if (l >= L) break;
                const int row = (int)(l / W) + di[t], col = (int)(l % W) + dj[t];
                if (row >= 0 && row < hin[t] && col >= 0 && col < W) m |= (uint32_t)1 << b;
            }
            masks[p * ntaps + t] = m;
        }
}

// The forward driver: n images of inCh planes (`plane` floats apart) → outCh
// planes of L positions; tap t of channel c reads c·plane + shift[t] + l under
// masks (fwd_panel() lanes per panel, from make_masks). Packed weights [k = c·ntaps + t][row].
static void run_direct(const float *in, ptrdiff_t inStride, int n, int inCh, ptrdiff_t plane, ptrdiff_t L,
                       int ntaps, const ptrdiff_t *shift, const uint32_t *masks,
                       const float *packed, int outCh, const float *bias, float *out, ptrdiff_t outStride) {
    const int K = inCh * ntaps, wide = conv_isa() == ISA_AVX512, panel = fwd_panel(), half = panel / 2;
    const ptrdiff_t panels = (L + panel - 1) / panel;
    const uint32_t full = (1u << half) - 1;
    // A last panel of at most half a panel's positions (a whole 4×4 map on
    // AVX-512, the last 4 positions of a 14×14 one) is done for two images at
    // once: the second vector of each register row reads the next image's, so
    // its lanes do not idle (image pairs 0-1, 2-3, …; an odd last image alone).
    const ptrdiff_t rest = L - (panels - 1) * panel;
    const int pairs = rest <= half && n > 1;
    uint32_t *pmasks = pairs ? malloc(sizeof(uint32_t) * (size_t)ntaps) : NULL;
    if (pairs && !pmasks) abort();
    const uint32_t *tmasks = masks + (panels - 1) * ntaps;
    if (pairs) for (int t = 0; t < ntaps; t++) pmasks[t] = tmasks[t] | (tmasks[t] << half);
    int32_t *vm = wide ? NULL : expand_masks(masks, panels * ntaps, panel);
    int32_t *vmp = wide || !pairs ? NULL : expand_masks(pmasks, ntaps, panel);
    for (int s = 0; s < n; s++) {
        const float *img = in + s * inStride;
        float *o = out + s * outStride;
        const int both = pairs && s % 2 == 0 && s + 1 < n, done = pairs && s % 2 == 1;   // done: with image s − 1
        for (int m0 = 0; m0 < outCh; m0 += MRMAX) {
            const int mr = outCh - m0 < MRMAX ? outCh - m0 : MRMAX;
            const float *wp = packed + (size_t)m0 * K;
            const float *b = bias ? bias + m0 : NULL;
            for (ptrdiff_t p = 0; p < panels - done; p++) {
                const int paired = both && p == panels - 1;
                const ptrdiff_t l0 = p * panel, left = L - l0;
                const uint32_t s0 = paired ? (1u << rest) - 1 : left >= half ? full : (1u << left) - 1;
                const uint32_t s1 = paired ? (1u << rest) - 1 : left >= panel ? full : left <= half ? 0 : (1u << (left - half)) - 1;
                const ptrdiff_t d1 = paired ? inStride : half, od1 = paired ? outStride : half;
                float *dst = o + m0 * L + l0;
                if (wide) {
                    fwd_table[mr](img + l0, plane, inCh, ntaps, shift, paired ? pmasks : masks + p * ntaps, wp, b, dst, L,
                                  (__mmask16)s0, (__mmask16)s1, d1, od1);
                    continue;
                }
                // AVX2: the 12-row tile as 1–2 tiles of at most 6 rows, as even as they come.
                const int parts = (mr + MR2 - 1) / MR2;
                for (int i = 0; i < parts; i++) {
                    const int r0 = mr * i / parts, r1 = mr * (i + 1) / parts;
                    fwd2_table[r1 - r0](img + l0, plane, inCh, ntaps, shift, paired ? vmp : vm + p * ntaps * panel,
                                        wp + r0, mr, b ? b + r0 : NULL, dst + r0 * L, L, s0, s1, d1, od1);
                }
            }
        }
    }
    free(pmasks); free(vm); free(vmp);
}

// Taps of a stride-1 convolution with the output as wide as the input.
typedef struct { int n; int *di, *dj, *hin; ptrdiff_t *shift; } taps_t;
static taps_t taps_alloc(int n) {
    taps_t t = { n, malloc(sizeof(int) * (size_t)n), malloc(sizeof(int) * (size_t)n), malloc(sizeof(int) * (size_t)n),
                 malloc(sizeof(ptrdiff_t) * (size_t)n) };
    if (!t.di || !t.dj || !t.hin || !t.shift) abort();
    return t;
}
static void taps_free(taps_t t) { free(t.di); free(t.dj); free(t.hin); free(t.shift); }

// The kh·kw taps of a stride-1 convolution of an H-row, W-wide input, (i, j) order.
static taps_t stride1_taps(int kh, int kw, int ph, int pw, int H, int W) {
    taps_t t = taps_alloc(kh * kw);
    for (int q = 0; q < kh * kw; q++) {
        t.di[q] = q / kw - ph; t.dj[q] = q % kw - pw; t.hin[q] = H;
        t.shift[q] = (ptrdiff_t)t.di[q] * W + t.dj[q];
    }
    return t;
}

static void conv_direct_s1(const float *in, ptrdiff_t inStride, int n, int inCh, int H, int W,
                               int kh, int kw, int ph, int pw, const float *packed, int outCh,
                               const float *bias, float *out, ptrdiff_t outStride) {
    const int OH = H + 2 * ph - kh + 1, kk = kh * kw;
    const int panel = fwd_panel();
    const ptrdiff_t L = (ptrdiff_t)OH * W, panels = (L + panel - 1) / panel;
    taps_t t = stride1_taps(kh, kw, ph, pw, H, W);
    uint32_t *masks = malloc(sizeof(uint32_t) * (size_t)(panels * kk));
    if (!masks) abort();
    make_masks(L, W, kk, t.di, t.dj, t.hin, panel, panels, masks);
    run_direct(in, inStride, n, inCh, (ptrdiff_t)H * W, L, kk, t.shift, masks, packed, outCh, bias, out, outStride);
    free(masks); taps_free(t);
}

// ---- weight gradient ---------------------------------------------------------

static inline __attribute__((always_inline, target("avx512f")))
void dw_tile(const int MO, const int NK, const int UNIT, const float *x, ptrdiff_t xStride, const float *g,
             ptrdiff_t gStride, int n, ptrdiff_t L, const ptrdiff_t *koff, const int *kq, const uint16_t *masks,
             int kk, ptrdiff_t plane, ptrdiff_t chunks, __mmask16 tail, float *dw, int K) {
    __m512 acc[MOMAX][NKMAX];
    PK_UNROLL
    for (int o = 0; o < MO; o++) for (int k = 0; k < NK; k++) acc[o][k] = _mm512_setzero_ps();
    for (int s = 0; s < n; s++) {
        const float *gs = g + s * gStride, *xs = x + s * xStride;
        for (ptrdiff_t ch = 0; ch < chunks; ch++) {
            const __mmask16 gm = ch == chunks - 1 ? tail : 0xFFFF;
            __m512 gv[MOMAX];
            PK_UNROLL
            for (int o = 0; o < MO; o++) gv[o] = _mm512_maskz_loadu_ps(gm, gs + o * L + ch * 16);
            const uint16_t *mc = masks + ch * kk;
            PK_UNROLL
            for (int k = 0; k < NK; k++) {
                // UNIT: one tap whose every mask is the g mask; column k at koff[0] + k·plane
                // (one row pointer: the per-column offsets, taps and masks spilled).
                const __m512 xv = UNIT ? _mm512_maskz_loadu_ps(gm, xs + koff[0] + k * plane + ch * 16)
                                       : _mm512_maskz_loadu_ps(mc[kq[k]], xs + koff[k] + ch * 16);
                PK_UNROLL
                for (int o = 0; o < MO; o++) acc[o][k] = _mm512_fmadd_ps(gv[o], xv, acc[o][k]);
            }
        }
    }
    PK_UNROLL
    for (int o = 0; o < MO; o++) for (int k = 0; k < NK; k++) dw[o * K + k] += _mm512_reduce_add_ps(acc[o][k]);
}

typedef void (*dw_fn)(const float *, ptrdiff_t, const float *, ptrdiff_t, int, ptrdiff_t, const ptrdiff_t *,
                      const int *, const uint16_t *, int, ptrdiff_t, ptrdiff_t, __mmask16, float *, int);
#define DW(U, MO, NK) \
    static __attribute__((target("avx512f"))) void dw##U##_##MO##_##NK(const float *x, ptrdiff_t xStride, const float *g, \
        ptrdiff_t gStride, int n, ptrdiff_t L, const ptrdiff_t *koff, const int *kq, const uint16_t *masks, int kk, \
        ptrdiff_t plane, ptrdiff_t chunks, __mmask16 tail, float *dw, int K) { \
        dw_tile(MO, NK, U, x, xStride, g, gStride, n, L, koff, kq, masks, kk, plane, chunks, tail, dw, K); }
#define DWROW(U, MO) DW(U, MO, 1) DW(U, MO, 2) DW(U, MO, 3) DW(U, MO, 4) DW(U, MO, 5) DW(U, MO, 6)
DWROW(0, 1) DWROW(0, 2) DWROW(0, 3) DWROW(0, 4) DWROW(1, 1) DWROW(1, 2) DWROW(1, 3) DWROW(1, 4)
#define DWENT(U, MO) { 0, dw##U##_##MO##_1, dw##U##_##MO##_2, dw##U##_##MO##_3, dw##U##_##MO##_4, dw##U##_##MO##_5, \
                       dw##U##_##MO##_6 }
// [unit][output channels][columns]: unit = 1 for a single tap every lane of which is in the window.
static const dw_fn dw_table[2][MOMAX + 1][NKMAX + 1] = {
    { { 0 }, DWENT(0, 1), DWENT(0, 2), DWENT(0, 3), DWENT(0, 4) },
    { { 0 }, DWENT(1, 1), DWENT(1, 2), DWENT(1, 3), DWENT(1, 4) }
};

// The four horizontal sums of a, b, c, d as one 4-float vector (13
// instructions; four _mm512_reduce_add_ps take about 36).
static inline __attribute__((always_inline, target("avx512f")))
__m128 hsum4(__m512 a, __m512 b, __m512 c, __m512 d) {
    const __m512 t0 = _mm512_add_ps(_mm512_unpacklo_ps(a, b), _mm512_unpackhi_ps(a, b));   // a02 b02 a13 b13 per 128 bits
    const __m512 t1 = _mm512_add_ps(_mm512_unpacklo_ps(c, d), _mm512_unpackhi_ps(c, d));
    const __m512 u = _mm512_add_ps(_mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t1))),
                                   _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(t0), _mm512_castps_pd(t1))));
    const __m512 v = _mm512_add_ps(u, _mm512_shuffle_f32x4(u, u, _MM_SHUFFLE(1, 0, 3, 2)));
    const __m512 w = _mm512_add_ps(v, _mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm512_castps512_ps128(w);
}

// The weight gradient for kw = 3 (the common case): a tile of MO output
// channels × R window rows (c, i) × the 3 columns j of each row. The three
// columns read one row pointer at +0, +1, +2 floats and three masks stored
// side by side, so the loop needs a few pointers instead of an offset and a
// mask index per column (which spilled the 4×6 generic tile).
static inline __attribute__((always_inline, target("avx512f")))
void dw3_tile(const int MO, const int R, const float *x, ptrdiff_t xStride, const float *g, ptrdiff_t gStride,
              int n, ptrdiff_t L, const ptrdiff_t *roff, const uint16_t *const *rmask,
              ptrdiff_t chunks, __mmask16 tail, float *dw, int K) {
    __m512 acc[MOMAX][2][3];
    PK_UNROLL
    for (int o = 0; o < MO; o++) {
        PK_UNROLL
        for (int r = 0; r < R; r++) {
            PK_UNROLL
            for (int j = 0; j < 3; j++) acc[o][r][j] = _mm512_setzero_ps();
        }
    }
    for (int s = 0; s < n; s++) {
        const float *gs = g + s * gStride, *xs = x + s * xStride;
        const float *xr[2];
        const uint16_t *mr[2];
        PK_UNROLL
        for (int r = 0; r < R; r++) { xr[r] = xs + roff[r]; mr[r] = rmask[r]; }
        for (ptrdiff_t ch = 0; ch < chunks; ch++) {
            const __mmask16 gm = ch == chunks - 1 ? tail : 0xFFFF;
            __m512 gv[MOMAX];
            PK_UNROLL
            for (int o = 0; o < MO; o++) gv[o] = _mm512_maskz_loadu_ps(gm, gs + o * L + ch * 16);
            PK_UNROLL
            for (int r = 0; r < R; r++) {
                PK_UNROLL
                for (int j = 0; j < 3; j++) {
                    const __m512 xv = _mm512_maskz_loadu_ps(mr[r][ch * 3 + j], xr[r] + ch * 16 + j);
                    PK_UNROLL
                    for (int o = 0; o < MO; o++) acc[o][r][j] = _mm512_fmadd_ps(gv[o], xv, acc[o][r][j]);
                }
            }
        }
    }
    // Row o's 3R sums are contiguous in dw: four at a time through hsum4.
    PK_UNROLL
    for (int o = 0; o < MO; o++) {
        float *d = dw + o * K;
        const __m512 z = _mm512_setzero_ps();
        if (R == 2) {
            _mm_storeu_ps(d, _mm_add_ps(_mm_loadu_ps(d), hsum4(acc[o][0][0], acc[o][0][1], acc[o][0][2], acc[o][1][0])));
            const __m128 t = hsum4(acc[o][1][1], acc[o][1][2], z, z);
            d[4] += _mm_cvtss_f32(t);
            d[5] += _mm_cvtss_f32(_mm_shuffle_ps(t, t, 1));
        } else {
            const __m128 t = hsum4(acc[o][0][0], acc[o][0][1], acc[o][0][2], z);
            d[0] += _mm_cvtss_f32(t);
            d[1] += _mm_cvtss_f32(_mm_shuffle_ps(t, t, 1));
            d[2] += _mm_cvtss_f32(_mm_shuffle_ps(t, t, 2));
        }
    }
}

typedef void (*dw3_fn)(const float *, ptrdiff_t, const float *, ptrdiff_t, int, ptrdiff_t, const ptrdiff_t *,
                       const uint16_t *const *, ptrdiff_t, __mmask16, float *, int);
#define DW3(MO, R) \
    static __attribute__((target("avx512f"))) void dw3_##MO##_##R(const float *x, ptrdiff_t xStride, const float *g, \
        ptrdiff_t gStride, int n, ptrdiff_t L, const ptrdiff_t *roff, const uint16_t *const *rmask, \
        ptrdiff_t chunks, __mmask16 tail, float *dw, int K) { \
        dw3_tile(MO, R, x, xStride, g, gStride, n, L, roff, rmask, chunks, tail, dw, K); }
DW3(1, 1) DW3(1, 2) DW3(2, 1) DW3(2, 2) DW3(3, 1) DW3(3, 2) DW3(4, 1) DW3(4, 2)
static const dw3_fn dw3_table[MOMAX + 1][3] = {
    { 0 }, { 0, dw3_1_1, dw3_1_2 }, { 0, dw3_2_1, dw3_2_2 }, { 0, dw3_3_1, dw3_3_2 }, { 0, dw3_4_1, dw3_4_2 }
};

// ---- weight gradient on AVX2 -------------------------------------------------
//
// The AVX-512 tiles keep one 16-lane partial sum per weight: lane b adds the
// products of positions 16·ch + b, chunk after chunk, image after image. The
// AVX2 tiles compute the same partials half at a time — lanes 0–7 in one pass,
// lanes 8–15 in a second (x and g offset by 8) — each an 8-lane accumulator
// with the same FMAs in the same order, kept in `part` between passes; then
// the 16 lanes are reduced along the AVX-512 code's tree (below).
// So the same bits, with 8-lane registers: MO2 = 3 output channels × 3
// columns — 9 accumulators, 3 g vectors, x and its mask (4 × 3 accumulators spill).
#define NK2 3
// Positions per block of the AVX2 kw = 3 weight-gradient sweep: a block's g
// rows (MO2 × 512 floats, 6 KB) stay in L1 while every window row and both
// halves pass over them. A sweep of each row and half over all the group's
// positions streamed g from L2 twice per row: one core on ResNet-20's stage 1
// (16 → 16 channels, 32×32, Zen 3) ran the tile at 33 GFLOP/s, 42–45 in blocks.
#define DW2_BLOCK 512

// _mm512_reduce_add_ps as the compiler emits it (upper half onto lower, 8 → 4 → 2 → 1).
static float reduce16_tree(const float *p) {
    float v[8], a[4];
    for (int i = 0; i < 8; i++) v[i] = p[i] + p[i + 8];
    for (int i = 0; i < 4; i++) a[i] = v[i] + v[i + 4];
    return (a[0] + a[2]) + (a[1] + a[3]);
}

// One lane of hsum4: per 128-bit block k, S_k = (p0 + p2) + (p1 + p3); then (S0 + S2) + (S1 + S3).
static float hsum4_tree(const float *p) {
    float S[4];
    for (int k = 0; k < 4; k++) S[k] = (p[4 * k] + p[4 * k + 2]) + (p[4 * k + 1] + p[4 * k + 3]);
    return (S[0] + S[2]) + (S[1] + S[3]);
}

// One chunk of 8 lanes: TAIL = the last chunk, g (and a unit tap's x) under the tail mask.
static inline __attribute__((always_inline, target("avx2,fma")))
void dw2_step(const int MO, const int NK, const int UNIT, const int TAIL, __m256 acc[MO2][NK2], const float *gs,
              ptrdiff_t L, const float *xs, const ptrdiff_t *koff, const int *kq, const int32_t *mc, ptrdiff_t plane,
              __m256i tm) {
    __m256 gv[MO2];
    PK_UNROLL
    for (int o = 0; o < MO; o++) gv[o] = TAIL ? _mm256_maskload_ps(gs + o * L, tm) : _mm256_loadu_ps(gs + o * L);
    PK_UNROLL
    for (int k = 0; k < NK; k++) {
        const __m256 xv = UNIT ? (TAIL ? _mm256_maskload_ps(xs + koff[0] + k * plane, tm) : _mm256_loadu_ps(xs + koff[0] + k * plane))
                               : _mm256_maskload_ps(xs + koff[k], _mm256_loadu_si256((const __m256i *)(mc + kq[k] * 16)));
        PK_UNROLL
        for (int o = 0; o < MO; o++) acc[o][k] = _mm256_fmadd_ps(gv[o], xv, acc[o][k]);
    }
}

// x, g, vm (masks [ch][tap][16]) and vt (the tail mask) already offset by the half (0 or 8).
static inline __attribute__((always_inline, target("avx2,fma")))
void dw2_tile(const int MO, const int NK, const int UNIT, const float *x, ptrdiff_t xStride, const float *g,
              ptrdiff_t gStride, int n, ptrdiff_t L, const ptrdiff_t *koff, const int *kq, const int32_t *vm,
              int kk, ptrdiff_t plane, ptrdiff_t chunks, const int32_t *vt, float *part) {
    __m256 acc[MO2][NK2];
    PK_UNROLL
    for (int o = 0; o < MO; o++) for (int k = 0; k < NK; k++) acc[o][k] = _mm256_setzero_ps();
    const __m256i tm = _mm256_loadu_si256((const __m256i *)vt);
    for (int s = 0; s < n; s++) {
        const float *gs = g + s * gStride, *xs = x + s * xStride;
        ptrdiff_t ch = 0;
        for (; ch < chunks - 1; ch++)
            dw2_step(MO, NK, UNIT, 0, acc, gs + ch * 16, L, xs + ch * 16, koff, kq, vm + ch * kk * 16, plane, tm);
        dw2_step(MO, NK, UNIT, 1, acc, gs + ch * 16, L, xs + ch * 16, koff, kq, vm + ch * kk * 16, plane, tm);
    }
    PK_UNROLL
    for (int o = 0; o < MO; o++) for (int k = 0; k < NK; k++) _mm256_storeu_ps(part + (o * NK2 + k) * 16, acc[o][k]);
}

typedef void (*dw2_fn)(const float *, ptrdiff_t, const float *, ptrdiff_t, int, ptrdiff_t, const ptrdiff_t *,
                       const int *, const int32_t *, int, ptrdiff_t, ptrdiff_t, const int32_t *, float *);
#define DW2(U, MO, NK) \
    static __attribute__((target("avx2,fma"))) void dw2##U##_##MO##_##NK(const float *x, ptrdiff_t xStride, \
        const float *g, ptrdiff_t gStride, int n, ptrdiff_t L, const ptrdiff_t *koff, const int *kq, const int32_t *vm, \
        int kk, ptrdiff_t plane, ptrdiff_t chunks, const int32_t *vt, float *part) { \
        dw2_tile(MO, NK, U, x, xStride, g, gStride, n, L, koff, kq, vm, kk, plane, chunks, vt, part); }
#define DW2ROW(U, MO) DW2(U, MO, 1) DW2(U, MO, 2) DW2(U, MO, 3)
DW2ROW(0, 1) DW2ROW(0, 2) DW2ROW(0, 3) DW2ROW(1, 1) DW2ROW(1, 2) DW2ROW(1, 3)
#define DW2ENT(U, MO) { 0, dw2##U##_##MO##_1, dw2##U##_##MO##_2, dw2##U##_##MO##_3 }
static const dw2_fn dw2_table[2][MO2 + 1][NK2 + 1] = {
    { { 0 }, DW2ENT(0, 1), DW2ENT(0, 2), DW2ENT(0, 3) },
    { { 0 }, DW2ENT(1, 1), DW2ENT(1, 2), DW2ENT(1, 3) }
};

// kw = 3 on AVX2: MO output channels × one window row's 3 columns (one row
// pointer at +0, +1, +2 floats; rm = the row's first mask vector + half,
// column j of chunk ch at rm + ch·mstride + 16·j), over chunks ch0..<ch1 of
// n images, resuming the 8-lane partials in `part` and leaving them there.
static inline __attribute__((always_inline, target("avx2,fma")))
void dw32_tile(const int MO, const float *x, ptrdiff_t xStride, const float *g, ptrdiff_t gStride, int n,
               ptrdiff_t L, ptrdiff_t ch0, ptrdiff_t ch1, const int32_t *rm, ptrdiff_t mstride, ptrdiff_t chunks,
               const int32_t *vt, float *part) {
    __m256 acc[MO2][3];
    PK_UNROLL
    for (int o = 0; o < MO; o++) for (int j = 0; j < 3; j++) acc[o][j] = _mm256_loadu_ps(part + (o * 3 + j) * 16);
    const __m256i tm = _mm256_loadu_si256((const __m256i *)vt);
    for (int s = 0; s < n; s++) {
        const float *gs = g + s * gStride, *xr = x + s * xStride;
        for (ptrdiff_t ch = ch0; ch < ch1; ch++) {
            __m256 gv[MO2];
            if (ch < chunks - 1) {
                PK_UNROLL
                for (int o = 0; o < MO; o++) gv[o] = _mm256_loadu_ps(gs + o * L + ch * 16);
            } else {
                PK_UNROLL
                for (int o = 0; o < MO; o++) gv[o] = _mm256_maskload_ps(gs + o * L + ch * 16, tm);
            }
            PK_UNROLL
            for (int j = 0; j < 3; j++) {
                const __m256 xv = _mm256_maskload_ps(xr + ch * 16 + j, _mm256_loadu_si256((const __m256i *)(rm + ch * mstride + j * 16)));
                PK_UNROLL
                for (int o = 0; o < MO; o++) acc[o][j] = _mm256_fmadd_ps(gv[o], xv, acc[o][j]);
            }
        }
    }
    PK_UNROLL
    for (int o = 0; o < MO; o++) for (int j = 0; j < 3; j++) _mm256_storeu_ps(part + (o * 3 + j) * 16, acc[o][j]);
}

typedef void (*dw32_fn)(const float *, ptrdiff_t, const float *, ptrdiff_t, int, ptrdiff_t, ptrdiff_t, ptrdiff_t,
                        const int32_t *, ptrdiff_t, ptrdiff_t, const int32_t *, float *);
#define DW32(MO) \
    static __attribute__((target("avx2,fma"))) void dw32_##MO(const float *x, ptrdiff_t xStride, const float *g, \
        ptrdiff_t gStride, int n, ptrdiff_t L, ptrdiff_t ch0, ptrdiff_t ch1, const int32_t *rm, ptrdiff_t mstride, \
        ptrdiff_t chunks, const int32_t *vt, float *part) { \
        dw32_tile(MO, x, xStride, g, gStride, n, L, ch0, ch1, rm, mstride, chunks, vt, part); }
DW32(1) DW32(2) DW32(3)
static const dw32_fn dw32_table[MO2 + 1] = { 0, dw32_1, dw32_2, dw32_3 };

// Images per group: the tiles of one group of output channels sweep all the
// group's x planes, which (about) fit in half the L2 cache, so the tiles after
// the first read them from there; the partial sums are reduced once per group.
#define DW_GROUP_BYTES (512 * 1024)

// Images per weight-gradient group (DW_GROUP_BYTES of x planes, at least one).
static int dw_group(int C, ptrdiff_t plane) {
    const size_t perImage = sizeof(float) * (size_t)C * (size_t)plane;
    const int group = (int)(DW_GROUP_BYTES / (perImage ? perImage : 1));
    return group < 1 ? 1 : group;
}

// The weight gradient over tap lists (any kernel width; strided convolutions
// on phase planes): dw[o][c·ntaps + t] += Σ_s Σ_l g[s][o][l]·x[s][c·plane + shift[t] + l]
// under the taps' masks, in 4×6 tiles of (output channel, k).
static void run_dweight_taps(const float *x, ptrdiff_t xStride, const float *g, ptrdiff_t gStride, int n,
                             int C, ptrdiff_t plane, ptrdiff_t L, int W, taps_t t, int O, float *dw) {
    const int kk = t.n, K = C * kk;
    const ptrdiff_t chunks = (L + 15) / 16;
    const __mmask16 tail = (L % 16) ? (__mmask16)((1u << (L % 16)) - 1) : 0xFFFF;
    ptrdiff_t *koff = malloc(sizeof(ptrdiff_t) * (size_t)K);
    int *kq = malloc(sizeof(int) * (size_t)K);
    uint32_t *m32 = malloc(sizeof(uint32_t) * (size_t)(chunks * kk));
    uint16_t *masks = malloc(sizeof(uint16_t) * (size_t)(chunks * kk));
    if (!koff || !kq || !m32 || !masks) abort();
    for (int k = 0; k < K; k++) { kq[k] = k % kk; koff[k] = (k / kk) * plane + t.shift[k % kk]; }
    make_masks(L, W, kk, t.di, t.dj, t.hin, 16, chunks, m32);
    for (ptrdiff_t i = 0; i < chunks * kk; i++) masks[i] = (uint16_t)m32[i];
    // A single tap with every lane in its window (1×1, and the strided 1×1 on
    // its phase plane): the unit tile, the same FMAs in the same order.
    int unit = kk == 1;
    for (ptrdiff_t ch = 0; unit && ch < chunks; ch++) unit = masks[ch] == (ch == chunks - 1 ? tail : 0xFFFF);
    const int group = dw_group(C, plane);
    if (conv_isa() != ISA_AVX512) {
        const uint32_t tail32 = tail;
        int32_t *vm = expand_masks(m32, chunks * kk, 16), vt[16];
        mask_vectors(&tail32, 1, 16, vt);
        float part[MO2 * NK2 * 16];
        for (int s0 = 0; s0 < n; s0 += group) {
            const int ns = n - s0 < group ? n - s0 : group;
            for (int o0 = 0; o0 < O; o0 += MO2) {
                const int mo = O - o0 < MO2 ? O - o0 : MO2;
                for (int k0 = 0; k0 < K; k0 += NK2) {
                    const int nk = K - k0 < NK2 ? K - k0 : NK2;
                    for (int h = 0; h < 16; h += 8)
                        dw2_table[unit][mo][nk](x + s0 * xStride + h, xStride, g + s0 * gStride + o0 * L + h, gStride, ns, L,
                                                koff + k0, kq + k0, vm + h, kk, plane, chunks, vt + h, part + h);
                    for (int o = 0; o < mo; o++)
                        for (int k = 0; k < nk; k++) dw[(size_t)(o0 + o) * K + k0 + k] += reduce16_tree(part + (o * NK2 + k) * 16);
                }
            }
        }
        free(vm);
        free(koff); free(kq); free(m32); free(masks);
        return;
    }
    for (int s0 = 0; s0 < n; s0 += group) {
        const int ns = n - s0 < group ? n - s0 : group;
        for (int o0 = 0; o0 < O; o0 += MOMAX) {
            const int mo = O - o0 < MOMAX ? O - o0 : MOMAX;
            for (int k0 = 0; k0 < K; k0 += NKMAX) {
                const int nk = K - k0 < NKMAX ? K - k0 : NKMAX;
                dw_table[unit][mo][nk](x + s0 * xStride, xStride, g + s0 * gStride + o0 * L, gStride, ns, L,
                                       koff + k0, kq + k0, masks, kk, plane, chunks, tail, dw + (size_t)o0 * K + k0, K);
            }
        }
    }
    free(koff); free(kq); free(m32); free(masks);
}

static void conv_dweight_s1(const float *x, ptrdiff_t xStride, const float *g, ptrdiff_t gStride, int n,
                                int C, int H, int W, int kh, int kw, int ph, int pw, int O,
                                float *dw, int accumulate) {
    const int OH = H + 2 * ph - kh + 1, kk = kh * kw, K = C * kk;
    const ptrdiff_t L = (ptrdiff_t)OH * W, plane = (ptrdiff_t)H * W;
    if (!accumulate) memset(dw, 0, sizeof(float) * (size_t)O * (size_t)K);
    taps_t t = stride1_taps(kh, kw, ph, pw, H, W);
    if (kw != 3) {
        run_dweight_taps(x, xStride, g, gStride, n, C, plane, L, W, t, O, dw);
        taps_free(t);
        return;
    }
    const ptrdiff_t chunks = (L + 15) / 16;
    const __mmask16 tail = (L % 16) ? (__mmask16)((1u << (L % 16)) - 1) : 0xFFFF;
    uint32_t *masks = malloc(sizeof(uint32_t) * (size_t)(chunks * kk));
    // Masks side by side per window row i: rmasks[(i·chunks + ch)·3 + j].
    uint16_t *rmasks = malloc(sizeof(uint16_t) * (size_t)(kh * chunks * 3));
    const int rows = C * kh;
    ptrdiff_t *roff = malloc(sizeof(ptrdiff_t) * (size_t)rows);
    const uint16_t **rmask = malloc(sizeof(uint16_t *) * (size_t)rows);
    if (!masks || !rmasks || !roff || !rmask) abort();
    make_masks(L, W, kk, t.di, t.dj, t.hin, 16, chunks, masks);
    for (int i = 0; i < kh; i++)
        for (ptrdiff_t ch = 0; ch < chunks; ch++)
            for (int j = 0; j < 3; j++) rmasks[(i * chunks + ch) * 3 + j] = (uint16_t)masks[ch * kk + i * 3 + j];
    for (int row = 0; row < rows; row++) {
        const int c = row / kh, i = row % kh;
        roff[row] = c * plane + t.shift[i * 3];            // the row's first column, j = 0
        rmask[row] = rmasks + (size_t)i * chunks * 3;
    }
    const int group = dw_group(C, plane);
    if (conv_isa() != ISA_AVX512) {
        // The masks as vectors in make_masks' order, [ch][tap][16]: row i's columns are taps 3i + j.
        const uint32_t tail32 = tail;
        int32_t *vm = expand_masks(masks, chunks * kk, 16), vt[16];
        mask_vectors(&tail32, 1, 16, vt);
        // part[row][o·3 + j][16]: every window row's partials of one tile of
        // output channels, so the tile can sweep a block of positions through
        // all rows and both halves while the block's g rows are in L1.
        const size_t prow = MO2 * 3 * 16;
        float *part = malloc(sizeof(float) * prow * (size_t)rows);
        if (!part) abort();
        const int tiles = (O + MO2 - 1) / MO2;         // as even as they come (a block of 4: 2 + 2)
        const ptrdiff_t bchunks = DW2_BLOCK / 16;      // chunks per block
        for (int s0 = 0; s0 < n; s0 += group) {
            const int ns = n - s0 < group ? n - s0 : group;
            for (int ti = 0; ti < tiles; ti++) {
                const int o0 = O * ti / tiles, mo = O * (ti + 1) / tiles - o0;
                memset(part, 0, sizeof(float) * prow * (size_t)rows);
                // Blocks of positions: a range of chunks of one image, or whole
                // images when an image has fewer chunks. Either way each
                // partial adds its products image after image, chunk after chunk.
                const int per = chunks >= bchunks ? 1 : (int)(bchunks / chunks);
                for (int s = 0; s < ns; s += per) {
                    const int nb = ns - s < per ? ns - s : per;
                    const float *xs = x + (s0 + s) * xStride, *gs = g + (s0 + s) * gStride + o0 * L;
                    for (ptrdiff_t c0 = 0; c0 < chunks; c0 += bchunks) {
                        const ptrdiff_t c1 = chunks - c0 < bchunks ? chunks : c0 + bchunks;
                        for (int row = 0; row < rows; row++) {
                            const int32_t *rm = vm + (row % kh) * 3 * 16;
                            for (int h = 0; h < 16; h += 8)
                                dw32_table[mo](xs + roff[row] + h, xStride, gs + h, gStride, nb, L, c0, c1,
                                               rm + h, kk * 16, chunks, vt + h, part + row * prow + h);
                        }
                    }
                }
                for (int row = 0; row < rows; row++)
                    for (int o = 0; o < mo; o++)
                        for (int j = 0; j < 3; j++)
                            dw[(size_t)(o0 + o) * K + row * 3 + j] += hsum4_tree(part + row * prow + (o * 3 + j) * 16);
            }
        }
        free(part);
        free(vm);
        free(masks); free(rmasks); free(roff); free(rmask);
        taps_free(t);
        return;
    }
    for (int s0 = 0; s0 < n; s0 += group) {
        const int ns = n - s0 < group ? n - s0 : group;
        for (int o0 = 0; o0 < O; o0 += MOMAX) {
            const int mo = O - o0 < MOMAX ? O - o0 : MOMAX;
            for (int r0 = 0; r0 < rows; r0 += 2) {
                const int nr = rows - r0 < 2 ? rows - r0 : 2;
                dw3_table[mo][nr](x + s0 * xStride, xStride, g + s0 * gStride + o0 * L, gStride, ns, L,
                                  roff + r0, rmask + r0, chunks, tail, dw + (size_t)o0 * K + r0 * 3, K);
            }
        }
    }
    free(masks); free(rmasks); free(roff); free(rmask);
    taps_free(t);
}

// ---- strided convolutions: phase planes ---------------------------------------
//
// With stride (sh, sw), tap (i, j) reads input row sh·r + i − ph = sh·(r + a) + p
// (p = (i − ph) mod sh, a = ⌊(i − ph)/sh⌋), column likewise (q, b): element
// (r + a, col + b) of the phase plane X_pq[u][v] = x[sh·u + p][sw·v + q]. Each
// phase plane with taps must be as wide as the output; the planes of one
// channel are stored one after another, [c][phase][rows][OW], so a tap is again
// a constant shift from the channel's base and the stride-1 kernels apply
// unchanged, with the weights in their usual order.

typedef struct {
    int OH, OW, rows;        // output size; rows of every stored phase plane (⌈H/sh⌉)
    int nph;                 // phases with taps, numbered as the taps (i, j) first reach them
    int slot[64];            // phase p·sw + q → its stored index, or −1 (sh·sw ≤ 64)
    int hp[64];              // rows of stored phase k
} phases_t;

static int floordiv(int a, int b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

static int phases_make(int H, int W, int kh, int kw, int sh, int sw, int ph, int pw, phases_t *P) {
    if (sh < 1 || sw < 1 || sh * sw > 64 || kh * kw > 1024) return 0;
    P->OH = (H + 2 * ph - kh) / sh + 1; P->OW = (W + 2 * pw - kw) / sw + 1;
    if (H + 2 * ph < kh || W + 2 * pw < kw || P->OH <= 0 || P->OW <= 0) return 0;
    P->rows = (H + sh - 1) / sh; P->nph = 0;
    for (int k = 0; k < sh * sw; k++) P->slot[k] = -1;
    for (int i = 0; i < kh; i++)
        for (int j = 0; j < kw; j++) {
            const int p = (i - ph) - sh * floordiv(i - ph, sh), q = (j - pw) - sw * floordiv(j - pw, sw);
            if ((W - q + sw - 1) / sw != P->OW) return 0;          // the phase plane must be as wide as the output
            if (P->slot[p * sw + q] < 0) { P->hp[P->nph] = (H - p + sh - 1) / sh; P->slot[p * sw + q] = P->nph++; }
        }
    return 1;
}

// Taps in the usual (i, j) order on the phase planes of one channel.
static taps_t phase_taps(const phases_t *P, int kh, int kw, int sh, int sw, int ph, int pw) {
    taps_t t = taps_alloc(kh * kw);
    const ptrdiff_t planeRows = (ptrdiff_t)P->rows * P->OW;
    for (int i = 0; i < kh; i++)
        for (int j = 0; j < kw; j++) {
            const int a = floordiv(i - ph, sh), b = floordiv(j - pw, sw);
            const int k = P->slot[(i - ph - sh * a) * sw + (j - pw - sw * b)], q = i * kw + j;
            t.di[q] = a; t.dj[q] = b; t.hin[q] = P->hp[k];
            t.shift[q] = k * planeRows + (ptrdiff_t)a * P->OW + b;
        }
    return t;
}

#endif  // PK_X86

int pk_conv_phase_ok(int H, int W, int kh, int kw, int sh, int sw, int ph, int pw) {
#ifdef PK_X86
    phases_t P;
    return pk_conv_direct_available() && phases_make(H, W, kh, kw, sh, sw, ph, pw, &P);
#else
    (void)H; (void)W; (void)kh; (void)kw; (void)sh; (void)sw; (void)ph; (void)pw;
    return 0;
#endif
}

#ifdef PK_X86
size_t pk_conv_phase_floats(int C, int H, int W, int kh, int kw, int sh, int sw, int ph, int pw) {
    phases_t P;
    if (!phases_make(H, W, kh, kw, sh, sw, ph, pw, &P)) return 0;
    return (size_t)C * (size_t)P.nph * (size_t)P.rows * (size_t)P.OW;
}

void pk_conv_phase_split(const float *x, ptrdiff_t xStride, int n, int C, int H, int W,
                         int kh, int kw, int sh, int sw, int ph, int pw, float *phases) {
    phases_t P;
    if (n <= 0 || !phases_make(H, W, kh, kw, sh, sw, ph, pw, &P)) return;
    const ptrdiff_t planeRows = (ptrdiff_t)P.rows * P.OW, stride = (ptrdiff_t)C * P.nph * planeRows;
    for (int s = 0; s < n; s++)
        for (int c = 0; c < C; c++) {
            const float *src = x + s * xStride + (ptrdiff_t)c * H * W;
            float *dst = phases + s * stride + (ptrdiff_t)c * P.nph * planeRows;
            for (int p = 0; p < sh; p++)
                for (int q = 0; q < sw; q++) {
                    const int k = P.slot[p * sw + q];
                    if (k < 0) continue;
                    float *d = dst + k * planeRows;
                    for (int u = 0; u < P.rows; u++) {
                        const int y = sh * u + p;
                        for (int v = 0; v < P.OW; v++) d[u * P.OW + v] = y < H ? src[y * W + sw * v + q] : 0.0f;
                    }
                }
        }
}

void pk_conv_phase_forward(const float *phases, int n, int C, int H, int W, int kh, int kw, int sh, int sw,
                           int ph, int pw, const float *packed, int O, const float *bias,
                           float *out, ptrdiff_t outStride) {
    phases_t P;
    if (n <= 0 || O <= 0 || C <= 0 || !pk_conv_direct_available() || !phases_make(H, W, kh, kw, sh, sw, ph, pw, &P)) return;
    const int panel = fwd_panel();
    const ptrdiff_t planeRows = (ptrdiff_t)P.rows * P.OW, L = (ptrdiff_t)P.OH * P.OW, panels = (L + panel - 1) / panel;
    taps_t t = phase_taps(&P, kh, kw, sh, sw, ph, pw);
    uint32_t *masks = malloc(sizeof(uint32_t) * (size_t)(panels * t.n));
    if (!masks) abort();
    make_masks(L, P.OW, t.n, t.di, t.dj, t.hin, panel, panels, masks);
    run_direct(phases, (ptrdiff_t)C * P.nph * planeRows, n, C, P.nph * planeRows, L, t.n, t.shift, masks,
               packed, O, bias, out, outStride);
    free(masks); taps_free(t);
}

void pk_conv_phase_dweight(const float *phases, int n, const float *g, ptrdiff_t gStride, int C, int H, int W,
                           int kh, int kw, int sh, int sw, int ph, int pw, int O, float *dw) {
    phases_t P;
    if (O <= 0 || C <= 0 || !pk_conv_direct_available() || !phases_make(H, W, kh, kw, sh, sw, ph, pw, &P)) return;
    const ptrdiff_t planeRows = (ptrdiff_t)P.rows * P.OW, L = (ptrdiff_t)P.OH * P.OW;
    taps_t t = phase_taps(&P, kh, kw, sh, sw, ph, pw);
    memset(dw, 0, sizeof(float) * (size_t)O * (size_t)(C * kh * kw));
    if (n > 0) run_dweight_taps(phases, (ptrdiff_t)C * P.nph * planeRows, g, gStride, n, C, P.nph * planeRows, L, P.OW, t, O, dw);
    taps_free(t);
}

// Input gradient: for each stored phase (p, q), dX_pq[c][u][v] = Σ_o Σ_taps W[o][c][i][j]·g[o][u − a][v − b]
// is a stride-1 tap convolution of g (on the OH×OW grid, as wide as the phase)
// into the phase's rows, scattered back to x[sh·u + p][sw·v + q]; input pixels
// on no phase with taps (a stride larger than the kernel) get 0.
size_t pk_conv_phase_dinput_floats(int O, int C, int kh, int kw) { return pk_conv_packed_floats(C, O * kh * kw); }

// The taps (i·kw + j, in (i, j) order) that read phase (p, q); kh·kw ≤ 1024 (phases_make).
static int phase_members(int kh, int kw, int sh, int sw, int ph, int pw, int p, int q, int *idx) {
    int nt = 0;
    for (int i = 0; i < kh; i++)
        for (int j = 0; j < kw; j++)
            if ((i - ph) - sh * floordiv(i - ph, sh) == p && (j - pw) - sw * floordiv(j - pw, sw) == q) idx[nt++] = i * kw + j;
    return nt;
}

void pk_conv_phase_pack_dinput(const float *w, int O, int C, int H, int W, int kh, int kw, int sh, int sw,
                               int ph, int pw, float *packed) {
    phases_t P;
    if (!phases_make(H, W, kh, kw, sh, sw, ph, pw, &P)) return;
    float *dst = packed;
    for (int p = 0; p < sh; p++)
        for (int q = 0; q < sw; q++) {
            if (P.slot[p * sw + q] < 0) continue;
            int taps[1024];
            const int nt = phase_members(kh, kw, sh, sw, ph, pw, p, q, taps);
            // Tiles of 12 input channels c (the outputs here), k = o·nt + t, laid out [k][row].
            const int K = O * nt;
            for (int m0 = 0; m0 < C; m0 += MRMAX) {
                const int mr = C - m0 < MRMAX ? C - m0 : MRMAX;
                for (int k = 0; k < K; k++) {
                    const int o = k / nt, tap = taps[k % nt];
                    for (int r = 0; r < mr; r++) dst[(size_t)k * mr + r] = w[((size_t)o * C + m0 + r) * kh * kw + tap];
                }
                dst += (size_t)mr * K;
            }
        }
}

void pk_conv_phase_dinput(const float *g, ptrdiff_t gStride, int n, int O, int C, int H, int W,
                          int kh, int kw, int sh, int sw, int ph, int pw, const float *packed,
                          float *dx, ptrdiff_t dxStride) {
    phases_t P;
    if (n <= 0 || C <= 0 || !pk_conv_direct_available() || !phases_make(H, W, kh, kw, sh, sw, ph, pw, &P)) return;
    const ptrdiff_t Lg = (ptrdiff_t)P.OH * P.OW;
    const int panel = fwd_panel();
    // Per stored phase, once: its taps on the g grid (offsets −a, −b), their
    // masks on the phase's rows, and its block of packed weights.
    taps_t tk[64];
    uint32_t *mk[64];
    const float *wk[64];
    int pk[64], qk[64];
    const float *wp = packed;
    for (int p = 0; p < sh; p++)
        for (int q = 0; q < sw; q++) {
            const int k = P.slot[p * sw + q];
            if (k < 0) continue;
            int taps[1024];
            const int nt = phase_members(kh, kw, sh, sw, ph, pw, p, q, taps);
            taps_t t = taps_alloc(nt);
            for (int e = 0; e < nt; e++) {
                const int a = floordiv(taps[e] / kw - ph, sh), b = floordiv(taps[e] % kw - pw, sw);
                t.di[e] = -a; t.dj[e] = -b; t.hin[e] = P.OH;
                t.shift[e] = -(ptrdiff_t)a * P.OW - b;
            }
            const ptrdiff_t L = (ptrdiff_t)P.hp[k] * P.OW, panels = (L + panel - 1) / panel;
            mk[k] = malloc(sizeof(uint32_t) * (size_t)(panels * nt));
            if (!mk[k]) abort();
            make_masks(L, P.OW, nt, t.di, t.dj, t.hin, panel, panels, mk[k]);
            tk[k] = t; wk[k] = wp; pk[k] = p; qk[k] = q;
            wp += (size_t)C * (size_t)(O * nt);        // this phase's block (pk_conv_phase_pack_dinput)
        }
    float *tmp = malloc(sizeof(float) * (size_t)C * (size_t)P.rows * (size_t)P.OW);
    if (!tmp) abort();
    for (int s = 0; s < n; s++) {
        float *d = dx + s * dxStride;
        memset(d, 0, sizeof(float) * (size_t)C * (size_t)H * (size_t)W);
        for (int k = 0; k < P.nph; k++) {
            const int hp = P.hp[k], p = pk[k], q = qk[k];
            const ptrdiff_t L = (ptrdiff_t)hp * P.OW;
            run_direct(g + s * gStride, gStride, 1, O, Lg, L, tk[k].n, tk[k].shift, mk[k], wk[k], C, NULL, tmp, L);
            for (int c = 0; c < C; c++)
                for (int u = 0; u < hp; u++)
                    for (int v = 0; v < P.OW; v++)
                        d[((ptrdiff_t)c * H + sh * u + p) * W + sw * v + q] = tmp[(c * hp + u) * P.OW + v];
        }
    }
    free(tmp);
    for (int k = 0; k < P.nph; k++) { free(mk[k]); taps_free(tk[k]); }
}
#else
// Not built for this CPU: pk_conv_phase_ok is 0, so these are never called.
size_t pk_conv_phase_floats(int C, int H, int W, int kh, int kw, int sh, int sw, int ph, int pw) { abort(); }
void pk_conv_phase_split(const float *x, ptrdiff_t xStride, int n, int C, int H, int W,
                         int kh, int kw, int sh, int sw, int ph, int pw, float *phases) { abort(); }
void pk_conv_phase_forward(const float *phases, int n, int C, int H, int W, int kh, int kw, int sh, int sw,
                           int ph, int pw, const float *packed, int O, const float *bias,
                           float *out, ptrdiff_t outStride) { abort(); }
void pk_conv_phase_dweight(const float *phases, int n, const float *g, ptrdiff_t gStride, int C, int H, int W,
                           int kh, int kw, int sh, int sw, int ph, int pw, int O, float *dw) { abort(); }
size_t pk_conv_phase_dinput_floats(int O, int C, int kh, int kw) { abort(); }
void pk_conv_phase_pack_dinput(const float *w, int O, int C, int H, int W, int kh, int kw, int sh, int sw,
                               int ph, int pw, float *packed) { abort(); }
void pk_conv_phase_dinput(const float *g, ptrdiff_t gStride, int n, int O, int C, int H, int W,
                          int kh, int kw, int sh, int sw, int ph, int pw, const float *packed,
                          float *dx, ptrdiff_t dxStride) { abort(); }
#endif  // PK_X86

void pk_conv_direct(const float *in, ptrdiff_t inStride, int n, int inCh, int H, int W,
                    int kh, int kw, int ph, int pw,
                    const float *packed, int outCh, const float *bias,
                    float *out, ptrdiff_t outStride) {
    if (n <= 0 || outCh <= 0 || inCh <= 0) return;
#ifdef PK_X86
    if (pk_conv_direct_available() && 2 * pw == kw - 1 && H + 2 * ph - kh + 1 > 0) {
        conv_direct_s1(in, inStride, n, inCh, H, W, kh, kw, ph, pw, packed, outCh, bias, out, outStride);
        return;
    }
#endif
    abort();   // the caller checks pk_conv_direct_available and the geometry first
}

void pk_conv_dweight(const float *x, ptrdiff_t xStride, const float *g, ptrdiff_t gStride, int n,
                     int C, int H, int W, int kh, int kw, int ph, int pw, int O,
                     float *dw, int accumulate) {
    if (O <= 0 || C <= 0) return;
    if (n <= 0) { if (!accumulate) memset(dw, 0, sizeof(float) * (size_t)O * (size_t)C * (size_t)(kh * kw)); return; }
#ifdef PK_X86
    if (pk_conv_direct_available() && 2 * pw == kw - 1 && H + 2 * ph - kh + 1 > 0) {
        conv_dweight_s1(x, xStride, g, gStride, n, C, H, W, kh, kw, ph, pw, O, dw, accumulate);
        return;
    }
#endif
    abort();
}
