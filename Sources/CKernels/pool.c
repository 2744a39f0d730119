// 2×2 / stride-2 max pooling, forward and backward, for ParryNN's maxPool2d
// and reluMaxPool2d (Functional.swift); see include/ckernels.h.
//
// Eight windows at a time: two 8-float loads of each of the window's two
// input rows, split into even and odd columns, give the windows' four
// candidates as four vectors. A row of 7 windows (a 14-wide plane) is one
// such step instead of 7 scalar ones. Loads and stores run past the end of
// an output row into the next (which is written after), except at the very
// end of the planes a call was given, where they are cut to size.
//
// Each window's maximum is the first maximal candidate in row-major order,
// and a NaN wins and stays (PyTorch's rule): candidate v replaces best when
// !(v <= best) and best is not NaN — the comparisons of the scalar loop this
// replaced, so the same bits. The result's code is the winner's place in the
// window, 0 (0,0), 1 (0,1), 2 (1,0), 3 (1,1), plus 4 when relu and the maximum
// is not positive (relu's mask passes no gradient there).

#include "ckernels.h"
#include "vec.h"

typedef unsigned char v8b __attribute__((vector_size(8)));

PK_INLINE v8i splati(int a) { return (v8i){a, a, a, a, a, a, a, a}; }
PK_INLINE v8 pick(v8i m, v8 a, v8 b) { return (v8)(((v8i)a & m) | ((v8i)b & ~m)); }      // m ? a : b
PK_INLINE v8 evens(v8 a, v8 b) { return __builtin_shufflevector(a, b, 0, 2, 4, 6, 8, 10, 12, 14); }
PK_INLINE v8 odds(v8 a, v8 b) { return __builtin_shufflevector(a, b, 1, 3, 5, 7, 9, 11, 13, 15); }

// Row r of the windows' candidates: rows[0..1] = 16 floats from p (cut to
// `count` floats, the rest 0, when not `whole`).
PK_INLINE void load16(const float *p, int whole, int count, v8 *lo, v8 *hi) {
    if (whole) { *lo = load8(p); *hi = load8(p + 8); return; }
    float t[16] = { 0 };
    memcpy(t, p, sizeof(float) * (size_t)count);
    *lo = load8(t); *hi = load8(t + 8);
}

PK_INLINE void maxpool2x2(const float *x, long planes, long h, long w, int relu, float *out, unsigned char *code) {
    const long oh = h / 2, ow = w / 2, count = planes * oh * ow;
    const float *xend = x + planes * h * w;
    const v8 zero = splat(0);
    for (long p = 0; p < planes; p++) {
        for (long i = 0; i < oh; i++) {
            const float *r0 = x + p * h * w + 2 * i * w, *r1 = r0 + w;
            const long k0 = (p * oh + i) * ow;
            for (long j = 0; j < ow; j += 8) {
                const int n = ow - j < 8 ? (int)(ow - j) : 8;
                const int whole = r1 + 2 * j + 16 <= xend;
                v8 a0, a1, b0, b1;
                load16(r0 + 2 * j, whole, 2 * n, &a0, &a1);
                load16(r1 + 2 * j, whole, 2 * n, &b0, &b1);
                const v8 c1 = odds(a0, a1), c2 = evens(b0, b1), c3 = odds(b0, b1);
                v8 best = evens(a0, a1);
                v8i at = splati(0), better;
                better = ~(c1 <= best) & (best == best); best = pick(better, c1, best); at = (better & splati(1)) | (at & ~better);
                better = ~(c2 <= best) & (best == best); best = pick(better, c2, best); at = (better & splati(2)) | (at & ~better);
                better = ~(c3 <= best) & (best == best); best = pick(better, c3, best); at = (better & splati(3)) | (at & ~better);
                if (relu) {
                    at |= ~(best > zero) & splati(4);
                    best = (v8)((v8i)best & ~(best <= zero));       // relu: v > 0 or NaN ? v : +0
                }
                const v8b cb = __builtin_convertvector(at, v8b);
                if (k0 + j + 8 <= count) {
                    store8(out + k0 + j, best);
                    memcpy(code + k0 + j, &cb, 8);
                } else {
                    memcpy(out + k0 + j, &best, sizeof(float) * (size_t)n);
                    memcpy(code + k0 + j, &cb, (size_t)n);
                }
            }
        }
    }
}

// gx = each window's g at its code's place, +0 elsewhere (the rows and
// columns no window covers included). g + 0: what the scatter onto zeros this
// replaced gave (−0 → +0). Row 0 of every window of an output row is written
// before row 1, because a store running past the end of row 0 lands in row 1.
PK_INLINE void maxpool2x2_backward(const float *g, const unsigned char *code, long planes, long h, long w, float *gx) {
    const long oh = h / 2, ow = w / 2, count = planes * oh * ow;
    const float *gxend = gx + planes * h * w;
    const v8 zero = splat(0);
    for (long p = 0; p < planes; p++) {
        float *plane = gx + p * h * w;
        for (long i = 0; i < oh; i++) {
            const long k0 = (p * oh + i) * ow;
            for (int r = 0; r < 2; r++) {
                float *d = plane + (2 * i + r) * w;
                for (long j = 0; j < ow; j += 8) {
                    const int n = ow - j < 8 ? (int)(ow - j) : 8;
                    v8 gv;
                    v8b cb;
                    if (k0 + j + 8 <= count) {
                        gv = load8(g + k0 + j);
                        memcpy(&cb, code + k0 + j, 8);
                    } else {
                        float t[8] = { 0 };
                        unsigned char c[8] = { 4, 4, 4, 4, 4, 4, 4, 4 };
                        memcpy(t, g + k0 + j, sizeof(float) * (size_t)n);
                        memcpy(c, code + k0 + j, (size_t)n);
                        gv = load8(t);
                        memcpy(&cb, c, 8);
                    }
                    gv = gv + zero;
                    const v8i at = __builtin_convertvector(cb, v8i);
                    const v8 left = (v8)((v8i)gv & (at == splati(2 * r))), right = (v8)((v8i)gv & (at == splati(2 * r + 1)));
                    const v8 lo = __builtin_shufflevector(left, right, 0, 8, 1, 9, 2, 10, 3, 11);
                    const v8 hi = __builtin_shufflevector(left, right, 4, 12, 5, 13, 6, 14, 7, 15);
                    if (d + 2 * j + 16 <= gxend) {
                        store8(d + 2 * j, lo);
                        store8(d + 2 * j + 8, hi);
                    } else {
                        float t[16];
                        store8(t, lo); store8(t + 8, hi);
                        memcpy(d + 2 * j, t, sizeof(float) * (size_t)(2 * n));
                    }
                }
            }
            if (w & 1) { plane[(2 * i + 1) * w - 1] = 0; plane[(2 * i + 2) * w - 1] = 0; }
        }
        if (h & 1) memset(plane + (h - 1) * w, 0, sizeof(float) * (size_t)w);
    }
}

PK_DISPATCH(maxpool2x2, (const float *x, long planes, long h, long w, int relu, float *out, unsigned char *code),
            (x, planes, h, w, relu, out, code), void)
PK_DISPATCH(maxpool2x2_backward, (const float *g, const unsigned char *code, long planes, long h, long w, float *gx),
            (g, code, planes, h, w, gx), void)
