// parry's own convolution kernels: a direct (implicit-GEMM) convolution for
// stride 1 with the output as wide as the input, written with AVX-512
// intrinsics (and, giving the same bits, AVX2) and chosen at run time
// (pk_conv_direct_available). No column matrix is built: each window row is
// a masked load from the input plane.
// Called from ParryNN's conv2d (Conv.swift), which keeps the im2col + BLAS
// path for every other shape, for CPUs without AVX2, and (by default) for
// the weight gradient on AVX2 CPUs.
#ifndef PARRY_CKERNELS_H
#define PARRY_CKERNELS_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

/// 1 when this CPU runs the direct kernels (AVX-512F, or AVX2 with FMA), else 0.
int pk_conv_direct_available(void);
/// The instruction set they run on: 2 = AVX-512F, 1 = AVX2 + FMA, 0 = none (im2col).
int pk_conv_isa(void);
/// 1 when the weight gradient runs on them too (AVX-512; AVX2 when asked),
/// 0 when conv2d takes it from im2col columns (AVX2 by default).
int pk_conv_dweight_direct(void);
/// Modes, for tests and benchmarks (not while a convolution runs): 0 = the
/// default; 1 = everything on the AVX2 kernels, also on an AVX-512 CPU
/// (PARRY_CONV=avx2); 2 = everything on the CPU's widest (PARRY_CONV=direct);
/// 3 = AVX2 forward and input gradient, the weight gradient from columns (the
/// AVX2 default, also on AVX-512). Returns pk_conv_isa().
int pk_conv_set_mode(int mode);
/// Output channels per weight-gradient tile (4 on AVX-512, 3 on AVX2): callers
/// splitting pk_conv_dweight by output channels cut at multiples of it.
int pk_conv_dweight_tile(void);

/// Floats needed by pk_conv_pack for `outCh` output channels and K = inCh·kh·kw.
size_t pk_conv_packed_floats(int outCh, int K);

/// Packs an O×C×kh×kw weight for pk_conv_direct. transposeFlip = 0: the
/// convolution itself (outCh = O, inCh = C). transposeFlip = 1: the kernel of
/// the input gradient, W'[c][o][i][j] = W[o][c][kh-1-i][kw-1-j] (outCh = C, inCh = O).
void pk_conv_pack(const float *w, int O, int C, int kh, int kw, int transposeFlip, float *packed);

/// n images: out[s][m][l] = bias[m] (or 0) + Σ_{c,i,j} W[m][c][i][j]·in[s][c][row(l)+i-ph][col(l)+j-pw],
/// zero outside the input; stride 1, output OH×W with OH = H + 2ph - kh + 1 and
/// 2·pw = kw - 1 (the output as wide as the input). `packed` from pk_conv_pack.
/// Image s starts at in + s·inStride and out + s·outStride.
void pk_conv_direct(const float *in, ptrdiff_t inStride, int n, int inCh, int H, int W,
                    int kh, int kw, int ph, int pw,
                    const float *packed, int outCh, const float *bias,
                    float *out, ptrdiff_t outStride);

/// dw[o][k] (+)= Σ_s Σ_l g[s][o][l]·x[s][k-window][l] for the same geometry
/// (k = (c·kh + i)·kw + j; g is O×OH×W per image, x is C×H×W). accumulate = 0
/// overwrites dw.
void pk_conv_dweight(const float *x, ptrdiff_t xStride, const float *g, ptrdiff_t gStride, int n,
                     int C, int H, int W, int kh, int kw, int ph, int pw, int O,
                     float *dw, int accumulate);

/// Strided convolutions (any stride, kernel and padding) whose phase planes
/// X_pq[u][v] = x[sh·u + p][sw·v + q] that carry taps are as wide as the output
/// (an even width with a 3×3, padding 1 or 1×1, padding 0 kernel at stride 2):
/// 1 when this CPU runs them and the geometry qualifies, else 0.
int pk_conv_phase_ok(int H, int W, int kh, int kw, int sh, int sw, int ph, int pw);
/// Floats of one image's phase planes (C × phases × ⌈H/sh⌉ × OW).
size_t pk_conv_phase_floats(int C, int H, int W, int kh, int kw, int sh, int sw, int ph, int pw);
/// Writes the phase planes of n images (image s at x + s·xStride) to `phases`,
/// image after image, pk_conv_phase_floats apart.
void pk_conv_phase_split(const float *x, ptrdiff_t xStride, int n, int C, int H, int W,
                         int kh, int kw, int sh, int sw, int ph, int pw, float *phases);
/// The convolution from the phase planes; `packed` from pk_conv_pack (transposeFlip 0).
void pk_conv_phase_forward(const float *phases, int n, int C, int H, int W, int kh, int kw, int sh, int sw,
                           int ph, int pw, const float *packed, int O, const float *bias,
                           float *out, ptrdiff_t outStride);
/// dw (O rows of C·kh·kw, overwritten) = Σ over n images of g ⊗ windows, from the phase planes.
void pk_conv_phase_dweight(const float *phases, int n, const float *g, ptrdiff_t gStride, int C, int H, int W,
                           int kh, int kw, int sh, int sw, int ph, int pw, int O, float *dw);
/// The input gradient's packed weights (pk_conv_phase_dinput_floats of them).
size_t pk_conv_phase_dinput_floats(int O, int C, int kh, int kw);
void pk_conv_phase_pack_dinput(const float *w, int O, int C, int H, int W, int kh, int kw, int sh, int sw,
                               int ph, int pw, float *packed);
/// dx (n images of C×H×W, overwritten) from g (O×OH×OW per image).
void pk_conv_phase_dinput(const float *g, ptrdiff_t gStride, int n, int O, int C, int H, int W,
                          int kh, int kw, int sh, int sw, int ph, int pw, const float *packed,
                          float *dx, ptrdiff_t dxStride);

/// Batch norm's passes over one channel of an N×C×(spatial) tensor: n rows of
/// `len` floats, row s at x + s·stride (batchnorm.c). The same float
/// operations, in the same order, as ParryNN's Swift loops they replaced.
/// Σ of the channel's elements.
float pk_bn_sum(const float *x, long n, long stride, long len);
/// Σ (x − mu)².
float pk_bn_sqdev(const float *x, long n, long stride, long len, float mu);
/// y = a·x + b (relu: then v > 0 or NaN ? v : 0); y has x's layout.
void pk_bn_apply(const float *x, float *y, long n, long stride, long len, float a, float b, int relu);
/// Σ g' and Σ g'·(x − mu), g' = g, or (relu) g where a·x + b > 0 and 0 elsewhere.
void pk_bn_grad_sums(const float *g, const float *x, long n, long stride, long len, float mu,
                     float a, float b, int relu, float *sumG, float *sumGX);
/// dx = k1·(g' − mg − (x − mu)·inv·mgx) when training, else k1·g'.
void pk_bn_grad_input(const float *g, const float *x, float *dx, long n, long stride, long len,
                      float a, float b, int relu, int training, float k1, float mg, float mu, float inv, float mgx);

/// 2×2 / stride-2 max pooling of `planes` h×w planes (pool.c): out and code
/// are planes×(h/2)×(w/2) (a last odd row or column is in no window). code =
/// the place of the window's first maximum in row-major order (NaN wins) —
/// 0 (0,0), 1 (0,1), 2 (1,0), 3 (1,1) — plus 4 when relu and the maximum is
/// not positive; with relu, out = max > 0 or NaN ? max : +0 (relu then pool).
void pk_maxpool2x2(const float *x, long planes, long h, long w, int relu, float *out, unsigned char *code);
/// gx (planes×h×w, overwritten) = g + 0 at each window's code place, +0 elsewhere.
void pk_maxpool2x2_backward(const float *g, const unsigned char *code, long planes, long h, long w, float *gx);

#ifdef __cplusplus
}
#endif
#endif
