// Batch norm's per-channel passes (see include/ckernels.h), for ParryNN's
// fused batch norm (BatchNorm.swift).
//
// They compute exactly what the Swift loops they replace computed, in the
// same order: every row (one image's plane of one channel) is summed in eight
// lanes, lane j taking elements j, j+8, j+16, … in turn, the lanes then added
// 0 to 7, then the tail elements one by one; rows are added to the channel's
// total in image order; products and sums are separate roundings (no fused
// multiply-add). So the bits are those of the Swift code, on any CPU; only
// the width of the instructions differs: 256-bit vectors where the CPU has
// AVX2 (the Swift code ran on SSE2, the default x86-64 target), the same
// source compiled for the baseline elsewhere.

#include "ckernels.h"
#include "vec.h"

#pragma clang fp contract(off)

PK_INLINE float lanes(v8 a) {      // a0 + a1 + … + a7, in that order
    float r = a[0];
    for (int j = 1; j < 8; j++) r += a[j];
    return r;
}
// g where a·x + b > 0, else 0 (ReLU's backward, the forward's v recomputed).
PK_INLINE v8 relu_mask(v8 x, v8 g, v8 a, v8 b) {
    v8i keep = (x * a + b) > splat(0);
    return (v8)((v8i)g & keep);
}
PK_INLINE float relu_mask1(float x, float g, float a, float b) { return x * a + b > 0 ? g : 0; }

// The row sums below run ROWS rows side by side: each row's eight lanes are
// one chain of dependent adds (the order is fixed), so one row at a time
// waits on the add latency; rows are independent and still join the total in
// image order.
#define ROWS 4
#define PK_UNROLL _Pragma("clang loop unroll(full)")

// Σ_s Σ_l x[s·stride + l] (square = 0) or Σ_s Σ_l (x − mu)² (square = 1), rows
// in order, each in eight lanes.
PK_INLINE float bn_rows(const float *x, long n, long stride, long len, float mu, const int square) {
    float total = 0;
    v8 m = splat(mu);
    for (long s0 = 0; s0 < n; s0 += ROWS) {
        int rows = n - s0 < ROWS ? (int)(n - s0) : ROWS;
        v8 acc[ROWS];
        float tail[ROWS];
        const float *r[ROWS];
        PK_UNROLL for (int q = 0; q < ROWS; q++) { acc[q] = splat(0); tail[q] = 0; r[q] = x + (s0 + (q < rows ? q : 0)) * stride; }
#define TERM(v) (square ? ((v) - m) * ((v) - m) : (v))
        long l = 0;
        if (rows == ROWS) {
            for (; l + 8 <= len; l += 8) { PK_UNROLL for (int q = 0; q < ROWS; q++) { v8 v = load8(r[q] + l); acc[q] += TERM(v); } }
        } else {
            for (int q = 0; q < rows; q++) for (l = 0; l + 8 <= len; l += 8) { v8 v = load8(r[q] + l); acc[q] += TERM(v); }
        }
#undef TERM
        for (int q = 0; q < rows; q++) {
            for (long k = l; k < len; k++) { float v = r[q][k]; tail[q] += square ? (v - mu) * (v - mu) : v; }
            total += lanes(acc[q]) + tail[q];
        }
    }
    return total;
}
PK_INLINE float bn_sum(const float *x, long n, long stride, long len) { return bn_rows(x, n, stride, len, 0, 0); }
PK_INLINE float bn_sqdev(const float *x, long n, long stride, long len, float mu) { return bn_rows(x, n, stride, len, mu, 1); }

// y = a·x + b, then (relu) v > 0 ? v : (v is NaN ? v : 0).
PK_INLINE void bn_apply(const float *x, float *y, long n, long stride, long len, float a, float b, int relu) {
    v8 av = splat(a), bv = splat(b), zero = splat(0);
    for (long s = 0; s < n; s++) {
        const float *src = x + s * stride;
        float *dst = y + s * stride;
        long l = 0;
        if (relu) {
            for (; l + 8 <= len; l += 8) {
                v8 v = load8(src + l) * av + bv;
                v8i keep = (v > zero) | (v != v);
                store8(dst + l, (v8)((v8i)v & keep));
            }
            for (; l < len; l++) { float v = src[l] * a + b; dst[l] = v > 0 ? v : (v != v ? v : 0); }
        } else {
            for (; l + 8 <= len; l += 8) store8(dst + l, load8(src + l) * av + bv);
            for (; l < len; l++) dst[l] = src[l] * a + b;
        }
    }
}

// Σ g' and Σ g'·(x − mu), g' = g (ReLU-masked when relu).
PK_INLINE void bn_grad_sums(const float *g, const float *x, long n, long stride, long len, float mu,
                            float a, float b, int relu, float *sumG, float *sumGX) {
    float tg = 0, tgx = 0;
    v8 m = splat(mu), av = splat(a), bv = splat(b);
    for (long s0 = 0; s0 < n; s0 += ROWS) {
        int rows = n - s0 < ROWS ? (int)(n - s0) : ROWS;
        v8 acc[ROWS], accx[ROWS];
        float tail[ROWS], tailx[ROWS];
        const float *gr[ROWS], *xr[ROWS];
        PK_UNROLL for (int q = 0; q < ROWS; q++) {
            acc[q] = accx[q] = splat(0); tail[q] = tailx[q] = 0;
            long off = (s0 + (q < rows ? q : 0)) * stride;
            gr[q] = g + off; xr[q] = x + off;
        }
        long l = 0;
        if (rows == ROWS) {
            for (; l + 8 <= len; l += 8) {
                PK_UNROLL for (int q = 0; q < ROWS; q++) {
                    v8 xv = load8(xr[q] + l), gv = load8(gr[q] + l);
                    if (relu) gv = relu_mask(xv, gv, av, bv);
                    acc[q] += gv;
                    accx[q] += gv * (xv - m);
                }
            }
        } else {
            for (int q = 0; q < rows; q++) {
                for (l = 0; l + 8 <= len; l += 8) {
                    v8 xv = load8(xr[q] + l), gv = load8(gr[q] + l);
                    if (relu) gv = relu_mask(xv, gv, av, bv);
                    acc[q] += gv;
                    accx[q] += gv * (xv - m);
                }
            }
        }
        for (int q = 0; q < rows; q++) {
            if (relu) {
                for (long k = l; k < len; k++) {
                    float gv = relu_mask1(xr[q][k], gr[q][k], a, b);
                    tail[q] += gv; tailx[q] += gv * (xr[q][k] - mu);
                }
            } else {    // the two tails as rowSum and rowDotCentered took them
                for (long k = l; k < len; k++) tail[q] += gr[q][k];
                for (long k = l; k < len; k++) tailx[q] += gr[q][k] * (xr[q][k] - mu);
            }
            tg += lanes(acc[q]) + tail[q];
            tgx += lanes(accx[q]) + tailx[q];
        }
    }
    *sumG = tg;
    *sumGX = tgx;
}

// Training: dx = k1·(g' − mg − (x − mu)·inv·mgx). Eval: dx = k1·g'.
PK_INLINE void bn_grad_input(const float *g, const float *x, float *dx, long n, long stride, long len,
                             float a, float b, int relu, int training,
                             float k1, float mg, float mu, float inv, float mgx) {
    v8 av = splat(a), bv = splat(b), k1v = splat(k1), mgv = splat(mg), muv = splat(mu);
    v8 invv = splat(inv), mgxv = splat(mgx);
    for (long s = 0; s < n; s++) {
        const float *gr = g + s * stride, *xr = x + s * stride;
        float *d = dx + s * stride;
        long l = 0;
        if (training) {
            for (; l + 8 <= len; l += 8) {
                v8 xv = load8(xr + l), gv = load8(gr + l);
                if (relu) gv = relu_mask(xv, gv, av, bv);
                store8(d + l, k1v * (gv - mgv - (xv - muv) * invv * mgxv));
            }
            for (; l < len; l++) {
                float gv = relu ? relu_mask1(xr[l], gr[l], a, b) : gr[l];
                d[l] = k1 * (gv - mg - (xr[l] - mu) * inv * mgx);
            }
        } else {
            for (; l + 8 <= len; l += 8) {
                v8 gv = load8(gr + l);
                if (relu) gv = relu_mask(load8(xr + l), gv, av, bv);
                store8(d + l, k1v * gv);
            }
            for (; l < len; l++) d[l] = k1 * (relu ? relu_mask1(xr[l], gr[l], a, b) : gr[l]);
        }
    }
}

PK_DISPATCH(bn_sum, (const float *x, long n, long stride, long len), (x, n, stride, len), float)
PK_DISPATCH(bn_sqdev, (const float *x, long n, long stride, long len, float mu), (x, n, stride, len, mu), float)
PK_DISPATCH(bn_apply, (const float *x, float *y, long n, long stride, long len, float a, float b, int relu),
            (x, y, n, stride, len, a, b, relu), void)
PK_DISPATCH(bn_grad_sums, (const float *g, const float *x, long n, long stride, long len, float mu, float a, float b,
                           int relu, float *sumG, float *sumGX),
            (g, x, n, stride, len, mu, a, b, relu, sumG, sumGX), void)
PK_DISPATCH(bn_grad_input, (const float *g, const float *x, float *dx, long n, long stride, long len, float a, float b,
                            int relu, int training, float k1, float mg, float mu, float inv, float mgx),
            (g, x, dx, n, stride, len, a, b, relu, training, k1, mg, mu, inv, mgx), void)
