/* conv.c - the conv kind: F filters of C x K x K (K = 1..7), stride S, P zeros of
 * padding on every side, with or without a bias; output F x OH x OW.
 *
 * BLAS engine, per image, with T = C*K*K taps and N output positions:
 *   forward      col[T][N] = im2col(in);   out[F][N]  = filt[F][T] . col[T][N]
 *   filter grad  dfilt[F][T] += dout[F][N] . col[T][N]^T
 *   input grad   col[T][N] = filt[F][T]^T . dout[F][N];   din = col2im(col)
 * When a pool reads the output, the N columns are in pool-block order, the order the
 * 2x2 max pool reads: column (k*PH + i)*PW + j is output position (2i + k/2,
 * 2j + k%2), k = 0..3, with PH, PW = OH/2, OW/2. The pool then takes the max of four
 * contiguous planes, which vectorizes, instead of strided 2x2 blocks. Positions no
 * pool block covers (an odd last row or column) do not reach the loss and are not
 * computed: N = 4*PH*PW. Otherwise the columns are the OH x OW positions row by row.
 * The 3x3 valid stride-1 conv (the post's) has its own faster im2col and col2im.
 * Reference engine: the post's loops over each position's region, output
 * [F][OH][OW]. */
#include "cnn.h"
#include "kernels.h"

#include "arena.h"
#include "config.h"
#include "conv_ties.h"
#include "layer.h"
#include "onnx.h"
#include "simd.h"

#include <cblas.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#if HAVE_OPENMP
#include <omp.h>
#endif

/* col[c*9 + ki*3 + kj][(k*PH + i)*PW + j] = in[c][2i + k/2 + ki][2j + k%2 + kj].
 * Block (c, ki, kj, k) is a PH x PW window, at ((k/2 + ki)/2, (k%2 + kj)/2), of one
 * of the four parity planes in[c][2i + p][2j + q]. Each channel is split into its
 * parity planes once (on the stack when they fit); every block is then a set of
 * short contiguous row copies. The post's 28 x 28 input gets its own inlined copy
 * with constant sizes, which the compiler turns into straight vector code: twice as
 * fast as the general loops. */
#define PLANES_MAX 4096 /* floats: images up to about 62 x 62 */

/* dst[i][j] = in[2i + a][2j + b], rows x cols */
static inline __attribute__((always_inline)) void gather_strided(float *restrict dst,
                                                                 const float *restrict in, int W,
                                                                 int rows, int cols, int a,
                                                                 int b)
{
    for (int i = 0; i < rows; i++) {
        const float *restrict src = in + (size_t)(2 * i + a) * W + b;
        for (int j = 0; j < cols; j++)
            dst[(size_t)i * cols + j] = src[2 * j];
    }
}

static inline __attribute__((always_inline)) void im2col_sized(float *col, const float *in,
                                                               int C, int H, int W, int PH,
                                                               int PW, size_t ld, size_t room)
{
    const int RH = PH + 1, RW = PW + 1; /* a parity plane */
    const size_t Q = (size_t)PH * PW, P = 4 * Q;
    const int fits = 4 * RH * RW <= PLANES_MAX;
    const int wide = 4 * RH * RW + 16 <= PLANES_MAX && PH * PW != 169; /* not the post's: kept */
    float planes[PLANES_MAX];
    for (int c = 0; c < C; c++) {
        const float *chan = in + (size_t)c * H * W;
        if (fits)
            for (int p = 0; p < 4; p++)
                gather_strided(planes + p * RH * RW, chan, W, RH, RW, p / 2, p % 2);
        for (int ki = 0; ki < 3; ki++)
            for (int kj = 0; kj < 3; kj++)
                for (int k = 0; k < 4; k++) {
                    const int a = k / 2 + ki, b = k % 2 + kj;
                    const size_t row = (size_t)c * 9 + ki * 3 + kj;
                    float *restrict dst = col + row * ld + k * Q;
                    if (!fits) {
                        gather_strided(dst, chan, W, PH, PW, a, b);
                        continue;
                    }
                    const float *restrict src =
                        planes + ((a % 2) * 2 + b % 2) * RH * RW + (a / 2) * RW + b / 2;
                    /* Short rows go as whole 8- or 16-float copies (no library call per
                     * row): each spills into the rows and blocks after it, which are
                     * written later; a row whose copy would pass what is written later
                     * (the end of col; in a chunk's matrix, the room after this
                     * image's columns) is copied exactly, as are the rows after it. */
                    const size_t width = PW <= 8 ? 8 : 16;
                    const size_t limit = ld == P ? (size_t)C * 9 * P : row * ld + room;
                    const size_t left = limit - (size_t)(dst - col);
                    int i = 0;
                    if (wide && PW <= 8)
                        for (; i < PH && (size_t)i * PW + width <= left; i++)
                            memcpy(dst + (size_t)i * PW, src + (size_t)i * RW, 8 * sizeof(float));
                    else if (wide && PW <= 16)
                        for (; i < PH && (size_t)i * PW + width <= left; i++)
                            memcpy(dst + (size_t)i * PW, src + (size_t)i * RW, 16 * sizeof(float));
                    for (; i < PH; i++)
                        for (int j = 0; j < PW; j++)
                            dst[(size_t)i * PW + j] = src[(size_t)i * RW + j];
                }
    }
}

/* Rows ld floats apart; room: floats from the start of this image's columns to the
 * end of what is written later in a row (see above; used when ld > P). */
CNN_VECTOR
static void im2col3x3_any_isa(float *col, const float *in, int C, int H, int W, size_t ld,
                              size_t room)
{
    if (H == 28 && W == 28 && ld == 4 * 13 * 13)
        im2col_sized(col, in, C, 28, 28, 13, 13, 4 * 13 * 13, 0);
    else
        im2col_sized(col, in, C, H, W, (H - 2) / 2, (W - 2) / 2, ld, room);
}

/* The exported name; the variants stay local (their dispatcher would be exported). */
void cnn_im2col3x3(float *col, const float *in, int C, int H, int W)
{
    im2col3x3_any_isa(col, in, C, H, W, 4 * (size_t)((H - 2) / 2) * ((W - 2) / 2), 0);
}

/* The adjoint of im2col: in = the sum of the col entries that copied each pixel.
 * Through the parity planes, as im2col: every block adds into its window of one plane
 * with contiguous rows, then the planes are interleaved into the channel. */
CNN_VECTOR
static void col2im3x3_any_isa(float *in, const float *col, int C, int H, int W, size_t ld)
{
    const int PH = (H - 2) / 2, PW = (W - 2) / 2, RH = PH + 1, RW = PW + 1;
    const size_t Q = (size_t)PH * PW;
    memset(in, 0, (size_t)C * H * W * sizeof(float));
    if (4 * RH * RW <= PLANES_MAX) {
        float planes[PLANES_MAX];
        for (int c = 0; c < C; c++) {
            memset(planes, 0, (size_t)4 * RH * RW * sizeof(float));
            for (int ki = 0; ki < 3; ki++)
                for (int kj = 0; kj < 3; kj++)
                    for (int k = 0; k < 4; k++) {
                        const int a = k / 2 + ki, b = k % 2 + kj;
                        const float *restrict src = col + ((size_t)c * 9 + ki * 3 + kj) * ld + k * Q;
                        float *restrict dst =
                            planes + ((a % 2) * 2 + b % 2) * RH * RW + (a / 2) * RW + b / 2;
                        if (PW <= 8) { /* short rows: fixed-width masked vector adds */
                            for (int i = 0; i < PH; i++)
                                for (int j = 0; j < 8; j++)
                                    if (j < PW)
                                        dst[(size_t)i * RW + j] += src[(size_t)i * PW + j];
                        } else {
                            for (int i = 0; i < PH; i++)
                                for (int j = 0; j < PW; j++)
                                    dst[(size_t)i * RW + j] += src[(size_t)i * PW + j];
                        }
                    }
            float *chan = in + (size_t)c * H * W;
            for (int p = 0; p < 4; p++)
                for (int r = 0; r < RH && 2 * r + p / 2 < H; r++)
                    for (int q = 0; q < RW && 2 * q + p % 2 < W; q++)
                        chan[(size_t)(2 * r + p / 2) * W + 2 * q + p % 2] =
                            planes[(size_t)p * RH * RW + (size_t)r * RW + q];
        }
        return;
    }
    for (int c = 0; c < C; c++)
        for (int ki = 0; ki < 3; ki++)
            for (int kj = 0; kj < 3; kj++) {
                const float *row = col + ((size_t)c * 9 + ki * 3 + kj) * ld;
                for (int k = 0; k < 4; k++)
                    for (int i = 0; i < PH; i++) {
                        float *dst = in + ((size_t)c * H + 2 * i + k / 2 + ki) * W + k % 2 + kj;
                        const float *src = row + ((size_t)k * PH + i) * PW;
                        for (int j = 0; j < PW; j++)
                            dst[2 * j] += src[j];
                    }
            }
}

/* The exported name; the variants stay local (their dispatcher would be exported). */
void cnn_col2im3x3(float *in, const float *col, int C, int H, int W)
{
    col2im3x3_any_isa(in, col, C, H, W, 4 * (size_t)((H - 2) / 2) * ((W - 2) / 2));
}

void cnn_blocks_to_nchw(float *dst, const float *src, int F, int H, int W)
{
    const int PH = H / 2, PW = W / 2;
    memset(dst, 0, (size_t)F * H * W * sizeof(float));
    for (int f = 0; f < F; f++)
        for (int k = 0; k < 4; k++)
            for (int i = 0; i < PH; i++)
                for (int j = 0; j < PW; j++)
                    dst[((size_t)f * H + 2 * i + k / 2) * W + 2 * j + k % 2] =
                        src[(((size_t)f * 4 + k) * PH + i) * PW + j];
}

/* The plain layout: col[c*9 + ki*3 + kj][i*(W-2) + j] = in[c][i + ki][j + kj], for a
 * conv whose output no pool reads next (its output is then [F][H-2][W-2]). */
CNN_VECTOR
static void im2col3x3_plain_any_isa(float *col, const float *in, int C, int H, int W,
                                    size_t ld)
{
    const int OH = H - 2, OW = W - 2;
    for (int c = 0; c < C; c++)
        for (int ki = 0; ki < 3; ki++)
            for (int kj = 0; kj < 3; kj++) {
                float *row = col + ((size_t)c * 9 + ki * 3 + kj) * ld;
                for (int i = 0; i < OH; i++)
                    memcpy(row + (size_t)i * OW, in + ((size_t)c * H + i + ki) * W + kj,
                           (size_t)OW * sizeof(float));
            }
}

/* The exported name; the variants stay local (their dispatcher would be exported). */
void cnn_im2col3x3_plain(float *col, const float *in, int C, int H, int W)
{
    im2col3x3_plain_any_isa(col, in, C, H, W, (size_t)(H - 2) * (W - 2));
}

CNN_VECTOR
static void col2im3x3_plain_any_isa(float *in, const float *col, int C, int H, int W,
                                    size_t ld)
{
    const int OH = H - 2, OW = W - 2;
    memset(in, 0, (size_t)C * H * W * sizeof(float));
    for (int c = 0; c < C; c++)
        for (int ki = 0; ki < 3; ki++)
            for (int kj = 0; kj < 3; kj++) {
                const float *row = col + ((size_t)c * 9 + ki * 3 + kj) * ld;
                for (int i = 0; i < OH; i++) {
                    float *dst = in + ((size_t)c * H + i + ki) * W + kj;
                    const float *src = row + (size_t)i * OW;
                    for (int j = 0; j < OW; j++)
                        dst[j] += src[j];
                }
            }
}

/* The exported name; the variants stay local (their dispatcher would be exported). */
void cnn_col2im3x3_plain(float *in, const float *col, int C, int H, int W)
{
    col2im3x3_plain_any_isa(in, col, C, H, W, (size_t)(H - 2) * (W - 2));
}

/* A conv's geometry: C x H x W in, F filters of C x K x K, stride S, zero padding P
 * on every side, output F x OH x OW. */
typedef struct {
    int C, H, W, F, K, S, P, OH, OW;
} geom;

static geom geom_3x3(int C, int H, int W, int F)
{
    return (geom){C, H, W, F, 3, 1, 0, H - 2, W - 2};
}

static geom geom_of(const cnn_layer *l)
{
    return (geom){l->C, l->H, l->W, l->units, l->kernel, l->stride, l->pad, l->OH, l->OW};
}

/* The 3x3 valid stride-1 conv has its own im2col and col2im (above). */
static int is_3x3(const geom *g) { return g->K == 3 && g->S == 1 && g->P == 0; }

/* Output positions per filter: the pool-covered ones (blocked) or all. */
static int positions(const geom *g, int blocked)
{
    return blocked ? 4 * (g->OH / 2) * (g->OW / 2) : g->OH * g->OW;
}

/* Taps per filter. */
static int taps(const geom *g) { return g->C * g->K * g->K; }

/* The j < n with 0 <= j*step + off < W: [*lo, *hi). */
static void valid_span(int n, int step, int off, int W, int *lo, int *hi)
{
    *lo = off >= 0 ? 0 : (-off + step - 1) / step;
    *hi = off > W - 1 ? 0 : (W - 1 - off) / step + 1;
    if (*hi > n)
        *hi = n;
    if (*lo > *hi)
        *lo = *hi;
}

/* dst[j] = row[j*step + off] inside the row, 0 in the padding, for j < n. */
static void gather_row(float *restrict dst, const float *restrict row, int n, int step, int off,
                       int W)
{
    int lo, hi;
    valid_span(n, step, off, W, &lo, &hi);
    for (int j = 0; j < lo; j++)
        dst[j] = 0.0f;
    for (int j = lo; j < hi; j++)
        dst[j] = row[j * step + off];
    for (int j = hi; j < n; j++)
        dst[j] = 0.0f;
}

/* Its adjoint: row[j*step + off] += src[j] inside the row. */
static void scatter_row(float *restrict row, const float *restrict src, int n, int step, int off,
                        int W)
{
    int lo, hi;
    valid_span(n, step, off, W, &lo, &hi);
    for (int j = lo; j < hi; j++)
        row[j * step + off] += src[j];
}

/* Any geometry: col[(c*K + ki)*K + kj][p] = in[c][y*S - P + ki][x*S - P + kj] for the
 * position (y, x) of column p, 0 in the padding; in pool-block order, output row
 * 2i + k/2 of plane k holds the positions x = 2j + k%2, so its taps step by 2S. With
 * add, the adjoint: in += those col entries (in zeroed by the caller). */
static void im2col_rows(const geom *g, float *col, size_t ld, float *in, int blocked, int add)
{
    const int PH = g->OH / 2, PW = g->OW / 2;
    for (int c = 0; c < g->C; c++)
        for (int ki = 0; ki < g->K; ki++)
            for (int kj = 0; kj < g->K; kj++) {
                float *row = col + ((size_t)(c * g->K + ki) * g->K + kj) * ld;
                const int planes = blocked ? 4 : 1, rows = blocked ? PH : g->OH;
                const int width = blocked ? PW : g->OW, step = blocked ? 2 * g->S : g->S;
                for (int k = 0; k < planes; k++)
                    for (int i = 0; i < rows; i++) {
                        const int y = blocked ? 2 * i + k / 2 : i, iy = y * g->S - g->P + ki;
                        const int off = (blocked ? (k % 2) * g->S : 0) - g->P + kj;
                        float *seg = row + ((size_t)k * rows + i) * width;
                        if (iy < 0 || iy >= g->H) { /* a row of padding */
                            if (!add)
                                memset(seg, 0, (size_t)width * sizeof(float));
                            continue;
                        }
                        float *src = in + ((size_t)c * g->H + iy) * g->W;
                        if (add)
                            scatter_row(src, seg, width, step, off, g->W);
                        else
                            gather_row(seg, src, width, step, off, g->W);
                    }
            }
}

static void im2col_any(const geom *g, float *col, size_t ld, const float *in, int blocked)
{
    im2col_rows(g, col, ld, (float *)in, blocked, 0); /* reads in only */
}

static void col2im_any(const geom *g, float *in, const float *col, size_t ld, int blocked)
{
    memset(in, 0, (size_t)g->C * g->H * g->W * sizeof(float));
    im2col_rows(g, (float *)col, ld, in, blocked, 1); /* reads col only */
}

/* A 3x3 stride-1 conv with padding runs the valid 3x3 code on a padded copy of its
 * input, kept in the scratch after the im2col matrix. */
static int is_padded_3x3(const geom *g) { return g->K == 3 && g->S == 1 && g->P > 0; }

static size_t padded_len(const geom *g)
{
    return (size_t)g->C * (g->H + 2 * g->P) * (g->W + 2 * g->P);
}

/* One image's im2col: its columns of a matrix whose rows are ld floats apart (ld =
 * positions for one image alone; a chunk's images side by side otherwise, room as in
 * im2col_sized), through pad (padded_len floats) for a padded 3x3 conv. */
static void im2col(const geom *g, float *col, size_t ld, size_t room, float *pad,
                   const float *in, int blocked)
{
    const int C = g->C, H = g->H, W = g->W, P = g->P, Hp = H + 2 * P, Wp = W + 2 * P;
    if (is_padded_3x3(g)) {
        memset(pad, 0, padded_len(g) * sizeof(float));
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                memcpy(pad + ((size_t)c * Hp + y + P) * Wp + P, in + ((size_t)c * H + y) * W,
                       (size_t)W * sizeof(float));
        in = pad;
    } else if (!is_3x3(g)) {
        im2col_any(g, col, ld, in, blocked);
        return;
    }
    if (blocked)
        im2col3x3_any_isa(col, in, C, Hp, Wp, ld, room);
    else
        im2col3x3_plain_any_isa(col, in, C, Hp, Wp, ld);
}

/* Its adjoint: in = col2im of one image's columns (rows ld apart), through pad. */
static void col2im(const geom *g, float *in, const float *col, size_t ld, float *pad,
                   int blocked)
{
    const int C = g->C, H = g->H, W = g->W, P = g->P, Hp = H + 2 * P, Wp = W + 2 * P;
    if (!is_3x3(g) && !is_padded_3x3(g)) {
        col2im_any(g, in, col, ld, blocked);
        return;
    }
    float *out = is_padded_3x3(g) ? pad : in;
    if (blocked)
        col2im3x3_any_isa(out, col, C, Hp, Wp, ld);
    else
        col2im3x3_plain_any_isa(out, col, C, Hp, Wp, ld);
    if (out != in) /* the padding's share is dropped */
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                memcpy(in + ((size_t)c * H + y) * W, out + ((size_t)c * Hp + y + P) * Wp + P,
                       (size_t)W * sizeof(float));
}

/* Ties within pool windows, whatever the SGEMM kernel. A pool reads four positions
 * per window; where two of them have identical patches, exact arithmetic gives them
 * the same output, and the pool's tie rules depend on it. SGEMM need not: OpenBLAS's
 * AVX2 kernels (Haswell, Zen) sum a dot product in one chain or in two (even and odd
 * k, added at the end) depending on which M panel and N cut of the kernel the column
 * falls in, so identical patches can differ in the last bit. After the SGEMM each
 * window's four patches are compared tap by tap (col is in pool-block order: patch k
 * of window q is column k*Q + q), and a position whose patch equals an earlier one's
 * of the same window takes that one's outputs. Equality of floats is transitive
 * (NaN equals nothing), so "the first equal earlier position" is well defined; the
 * step changes no bit where the kernel already gives identical outputs. The walker
 * runs it only where cnn_conv_sgemm_consistent (below), run once per layer when the
 * activations are allocated, finds that this SGEMM, on this layer's shape, does not
 * give identical columns identical outputs: on the kernels where they agree (SkylakeX,
 * Cooperlake, SandyBridge and Prescott for the post's shape) it costs nothing. */
typedef float tie_vf __attribute__((vector_size(64)));  /* 16 windows */
typedef int32_t tie_vi __attribute__((vector_size(64))); /* their equalities */

/* take ? a : b, lane by lane, on the floats' bits */
#define TIE_PICK(take, a, b) (((take) & (a)) | (~(take) & (b)))

/* Windows q0 .. q0+15: the six equalities stay in registers over the K taps. */
static inline __attribute__((always_inline)) void window_ties16(float *out, const float *col,
                                                                 size_t ld, int K, int F,
                                                                 size_t Q, size_t q0)
{
    const size_t P = 4 * Q;
    tie_vi e01 = ~(tie_vi){0}, e02 = e01, e03 = e01, e12 = e01, e13 = e01, e23 = e01;
    for (int t = 0; t < K; t++) {
        const float *c = col + (size_t)t * ld + q0;
        tie_vf a0, a1, a2, a3;
        memcpy(&a0, c, sizeof a0);
        memcpy(&a1, c + Q, sizeof a1);
        memcpy(&a2, c + 2 * Q, sizeof a2);
        memcpy(&a3, c + 3 * Q, sizeof a3);
        e01 &= a0 == a1, e02 &= a0 == a2, e03 &= a0 == a3;
        e12 &= a1 == a2, e13 &= a1 == a3, e23 &= a2 == a3;
    }
    const tie_vi any = e01 | e02 | e03 | e12 | e13 | e23;
    int32_t some = 0;
    for (int l = 0; l < 16; l++)
        some |= any[l];
    if (!some)
        return;
    for (int f = 0; f < F; f++) {
        float *o = out + (size_t)f * P + q0;
        tie_vi v0, v1, v2, v3;
        memcpy(&v0, o, sizeof v0);
        memcpy(&v1, o + Q, sizeof v1);
        memcpy(&v2, o + 2 * Q, sizeof v2);
        memcpy(&v3, o + 3 * Q, sizeof v3);
        v1 = TIE_PICK(e01, v0, v1);
        v2 = TIE_PICK(e02, v0, TIE_PICK(e12, v1, v2));
        v3 = TIE_PICK(e03, v0, TIE_PICK(e13, v1, TIE_PICK(e23, v2, v3)));
        memcpy(o + Q, &v1, sizeof v1);
        memcpy(o + 2 * Q, &v2, sizeof v2);
        memcpy(o + 3 * Q, &v3, sizeof v3);
    }
}

/* col: the image's columns, rows ld floats apart */
CNN_VECTOR
static void window_ties(float *out, const float *col, size_t ld, int K, int F, size_t Q)
{
    if (Q >= 16) {
        /* The last 16 overlap the ones before when Q is not a multiple: the step is
         * idempotent (it reads col and writes only canonical values). */
        for (size_t q0 = 0;; q0 += 16) {
            if (q0 + 16 > Q)
                q0 = Q - 16;
            window_ties16(out, col, ld, K, F, Q, q0);
            if (q0 + 16 == Q)
                break;
        }
        return;
    }
    for (size_t q = 0; q < Q; q++) /* small maps: one window at a time */
        for (int k = 1; k < 4; k++)
            for (int j = 0; j < k; j++) {
                int same = 1;
                for (int t = 0; t < K && same; t++)
                    same = col[(size_t)t * ld + j * Q + q] == col[(size_t)t * ld + k * Q + q];
                if (!same)
                    continue;
                for (int f = 0; f < F; f++)
                    out[(size_t)f * 4 * Q + k * Q + q] = out[(size_t)f * 4 * Q + j * Q + q];
                break;
            }
}

/* A chunk's images are lowered in groups whose im2col matrix stays near this size,
 * so that the SGEMM reads it from cache after im2col wrote it; the group size depends
 * on the layer's shape and the chunk's size alone. */
#ifndef CNN_LOWER_BYTES
#define CNN_LOWER_BYTES (512 * 1024)
#endif

/* The most images a group of a chunk of nb holds. */
static int group_most(const geom *g, int blocked, int nb)
{
    const size_t one = (size_t)taps(g) * positions(g, blocked) * sizeof(float);
    const size_t fit = one ? CNN_LOWER_BYTES / one : 1;
    return fit < 1 ? 1 : fit > (size_t)nb ? nb : (int)fit;
}

/* The images of each group: the chunk in as few groups as fit, of even sizes. */
static int group_size(const geom *g, int blocked, int nb)
{
    const int groups = (nb + group_most(g, blocked, nb) - 1) / group_most(g, blocked, nb);
    return (nb + groups - 1) / groups;
}

int cnn_conv_group(const cnn_layer *l, int nb)
{
    const geom g = geom_of(l);
    return l->whole_chunk ? group_size(&g, l->pool_order, nb) : 1;
}

int cnn_conv_positions(const cnn_layer *l)
{
    const geom g = geom_of(l);
    return positions(&g, l->pool_order);
}

/* The scratch of a pass over p->nb images (one, or a chunk's), in groups of at most
 * group_size, each group's pieces its own (so that groups can run on several threads):
 *   the groups' im2col matrices, one after another: a row per tap and the group's
 *     images' columns side by side (rows ld = images * positions apart);
 *   over a chunk, each group's SGEMM output or gathered output gradient, F rows of ld;
 *   a padded 3x3 conv's padded copy of one image, one per group;
 *   over a chunk, each group's filter and bias gradient, F * taps + F floats. */
typedef struct {
    size_t P, ld; /* positions of one image; floats between rows */
    int n;        /* images in the group */
    float *mat, *rows, *pad, *grad;
} lowering;

static size_t pad_floats(const geom *g) { return is_padded_3x3(g) ? padded_len(g) : 0; }

static lowering lowering_of(const geom *g, float *col, int b0, int n, int nb, int blocked)
{
    const size_t P = (size_t)positions(g, blocked), K = (size_t)taps(g), F = (size_t)g->F;
    const size_t group = (size_t)(b0 / group_size(g, blocked, nb));
    lowering w = {.P = P, .ld = (size_t)n * P, .n = n};
    float *rows = col + K * nb * P, *pads = rows + (nb > 1 ? F * nb * P : 0);
    float *grads = pads + nb * pad_floats(g);
    w.mat = col + K * b0 * P;
    w.rows = rows + F * b0 * P;
    w.pad = pads + group * pad_floats(g);
    w.grad = grads + group * (F * K + F);
    return w;
}

static int group_count(const geom *g, int blocked, int nb)
{
    const int G = group_size(g, blocked, nb);
    return (nb + G - 1) / G;
}

/* The first image of group k, and how many it holds. */
static int group_first(const geom *g, int blocked, int nb, int k, int *n)
{
    const int G = group_size(g, blocked, nb), b0 = k * G;
    *n = nb - b0 < G ? nb - b0 : G;
    return b0;
}

static int team_member(void)
{
#if HAVE_OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* One group of a forward: out = filt . im2col(in) (+ bias), then, for a pool's input
 * whose SGEMM may break ties (conv_ties.h), the window tie step. */
static void forward_group(const geom *g, const cnn_pass *p, int blocked, int k)
{
    const int K = taps(g), F = g->F, nb = p->nb;
    int n;
    const int b0 = group_first(g, blocked, nb, k, &n);
    const lowering w = lowering_of(g, p->col, b0, n, nb, blocked);
    for (int b = 0; b < n; b++)
        im2col(g, w.mat + b * w.P, w.ld, (size_t)(n - b) * w.P, w.pad,
               p->in + (size_t)(b0 + b) * p->ldin, blocked);
    float *out = nb == 1 ? p->out : w.rows;
    if (p->bias) /* out = bias, then += filt . col */
        for (int f = 0; f < F; f++)
            for (size_t i = 0; i < w.ld; i++)
                out[(size_t)f * w.ld + i] = p->bias[f];
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, F, (int)w.ld, K, 1.0f, p->w, K,
                w.mat, (int)w.ld, p->bias ? 1.0f : 0.0f, out, (int)w.ld);
    for (int b = 0; b < n && nb > 1; b++) /* each image's outputs, [F][P] */
        for (int f = 0; f < F; f++)
            memcpy(p->out + (size_t)(b0 + b) * p->ldout + (size_t)f * w.P,
                   w.rows + (size_t)f * w.ld + (size_t)b * w.P, w.P * sizeof(float));
    if (blocked && p->window_ties)
        for (int b = 0; b < n; b++)
            window_ties(p->out + (size_t)(b0 + b) * p->ldout, w.mat + b * w.P, w.ld, K, F,
                        w.P / 4);
}

typedef void (*group_fn)(const geom *g, const cnn_pass *p, int blocked, int k);

/* one(k) for every group of the pass, over the pass's team when it has one (and no
 * parallel construct at all otherwise: it costs a microsecond). @return the groups. */
static int each_group(const geom *g, const cnn_pass *p, int blocked, group_fn one)
{
    const int groups = group_count(g, blocked, p->nb);
    const int team = p->team < groups ? p->team : groups;
    if (team <= 1) {
        for (int k = 0; k < groups; k++)
            one(g, p, blocked, k);
        return groups;
    }
#if HAVE_OPENMP
#pragma omp parallel for num_threads(team) schedule(static)
#endif
    for (int k = 0; k < groups; k++) {
        cnn_blas_alone();
        one(g, p, blocked, k);
        if (p->passes)
            p->passes[team_member()]++;
    }
    return groups;
}

/* The forward of p->nb images, inputs p->ldin and outputs p->ldout floats apart: one
 * SGEMM per group, the groups over the pass's team. */
static void forward_blas(const geom *g, const cnn_pass *p, int blocked)
{
    each_group(g, p, blocked, forward_group);
}

void cnn_conv3x3_forward_ex(float *out, float *col, const float *in, const float *filt,
                            const float *bias, int C, int H, int W, int F, int blocked)
{
    const geom g = geom_3x3(C, H, W, F);
    const cnn_pass p = {.nb = 1, .in = in, .out = out, .col = col, .w = filt, .bias = bias,
                        .team = 1};
    forward_blas(&g, &p, blocked);
}

void cnn_conv_window_ties(float *out, const float *col, int K, int F, int Q)
{
    window_ties(out, col, 4 * (size_t)Q, K, F, (size_t)Q);
}

/* Values with full 23-bit fractions: their products and sums round, so a kernel that
 * orders a dot product differently for some columns shows it. */
static float probe_value(uint32_t *state)
{
    *state = *state * 1664525u + 1013904223u;
    return (float)(int32_t)(*state >> 8) * 0x1p-23f + 0.1f;
}

int cnn_conv_sgemm_consistent(int F, int P, int K, int bias)
{
    float *filt = cnn_aligned_alloc((size_t)F * K * sizeof(float));
    float *col = cnn_aligned_alloc((size_t)K * P * sizeof(float));
    float *out = cnn_aligned_alloc((size_t)F * P * sizeof(float));
    int same = -1;
    if (filt && col && out) {
#if HAVE_OPENMP
        const int caller = omp_get_max_threads(); /* as in a training step: BLAS on */
        omp_set_num_threads(1);                   /* this thread alone */
#endif
        same = 1;
        uint32_t state = 12345;
        for (int trial = 0; trial < 2 && same; trial++) {
            for (size_t i = 0; i < (size_t)F * K; i++)
                filt[i] = probe_value(&state);
            for (int k = 0; k < K; k++) {
                const float v = probe_value(&state);
                for (int p = 0; p < P; p++)
                    col[(size_t)k * P + p] = v;
            }
            for (int f = 0; f < F; f++) /* the bias, when the layer has one */
                for (int p = 0; p < P; p++)
                    out[(size_t)f * P + p] = (float)f;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, F, P, K, 1.0f, filt, K, col,
                        P, bias ? 1.0f : 0.0f, out, P);
            for (int f = 0; f < F && same; f++)
                for (int p = 1; p < P; p++)
                    if (memcmp(&out[(size_t)f * P + p], &out[(size_t)f * P], sizeof(float))) {
                        same = 0;
                        break;
                    }
        }
#if HAVE_OPENMP
        omp_set_num_threads(caller);
#endif
    }
    free(filt);
    free(col);
    free(out);
    return same;
}

/* The sum of v[0..n) in a fixed order of 16 partial sums: vectorizes, and does not
 * depend on where v is. */
CNN_VECTOR
static float sum_fixed(const float *restrict v, size_t n)
{
    float acc[16] = {0};
    size_t i = 0;
    for (; i + 16 <= n; i += 16)
        for (int k = 0; k < 16; k++)
            acc[k] += v[i + k];
    for (int k = 0; i < n; i++, k++)
        acc[k] += v[i];
    float s = 0.0f;
    for (int k = 0; k < 16; k++)
        s += acc[k];
    return s;
}

/* One group of a backward: its filter and bias gradient (into its own piece of the
 * scratch over a chunk, else straight into p->gw), and its input gradient when p->din. */
static void backward_group(const geom *g, const cnn_pass *p, int blocked, int k)
{
    const int K = taps(g), F = g->F, nb = p->nb;
    int n;
    const int b0 = group_first(g, blocked, nb, k, &n);
    const lowering w = lowering_of(g, p->col, b0, n, nb, blocked);
    const float *dout = p->dout;
    float *gw = p->gw, *gbias = p->gbias;
    if (nb > 1) {
        for (int b = 0; b < n; b++)
            for (int f = 0; f < F; f++)
                memcpy(w.rows + (size_t)f * w.ld + (size_t)b * w.P,
                       p->dout + (size_t)(b0 + b) * p->ldout + (size_t)f * w.P,
                       w.P * sizeof(float));
        dout = w.rows;
        gw = w.grad, gbias = p->gbias ? w.grad + (size_t)F * K : NULL;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, F, K, (int)w.ld, p->alpha, dout,
                (int)w.ld, w.mat, (int)w.ld, nb > 1 ? 0.0f : 1.0f, gw, K);
    if (gbias)
        for (int f = 0; f < F; f++) {
            const float s = p->alpha * sum_fixed(dout + (size_t)f * w.ld, w.ld);
            gbias[f] = nb > 1 ? s : gbias[f] + s;
        }
    if (!p->din)
        return;
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, (int)w.ld, F, 1.0f, p->w, K, dout,
                (int)w.ld, 0.0f, w.mat, (int)w.ld);
    for (int b = 0; b < n; b++)
        col2im(g, p->din + (size_t)(b0 + b) * p->ldin, w.mat + b * w.P, w.ld, w.pad, blocked);
}

/* The backward of p->nb images: the groups over the pass's team, then, over a chunk,
 * their filter and bias gradients added to p->gw and p->gbias in group order (the
 * same sums whatever the team). */
static void backward_blas(const geom *g, const cnn_pass *p, int blocked)
{
    const int groups = each_group(g, p, blocked, backward_group), K = taps(g), F = g->F;
    if (p->nb == 1)
        return;
    for (int k = 0; k < groups; k++) {
        int n;
        const int b0 = group_first(g, blocked, p->nb, k, &n);
        const lowering w = lowering_of(g, p->col, b0, n, p->nb, blocked);
        for (size_t i = 0; i < (size_t)F * K; i++)
            p->gw[i] += w.grad[i];
        for (int f = 0; f < F && p->gbias; f++)
            p->gbias[f] += w.grad[(size_t)F * K + f];
    }
}

void cnn_conv3x3_backward_ex(float *din, float *dfilt, float *dbias, float alpha, float *col,
                             const float *dout, const float *filt, int C, int H, int W, int F,
                             int blocked)
{
    const geom g = geom_3x3(C, H, W, F);
    const cnn_pass p = {.nb = 1, .col = col, .w = filt, .alpha = alpha, .gw = dfilt,
                        .gbias = dbias, .dout = dout, .din = din, .team = 1};
    backward_blas(&g, &p, blocked);
}

void cnn_conv3x3_forward(float *out, float *col, const float *in, const float *filt,
                         int C, int H, int W, int F)
{
    cnn_conv3x3_forward_ex(out, col, in, filt, NULL, C, H, W, F, 1);
}

void cnn_conv3x3_backward(float *din, float *dfilt, float alpha, float *col, const float *dout,
                          const float *filt, int C, int H, int W, int F)
{
    cnn_conv3x3_backward_ex(din, dfilt, NULL, alpha, col, dout, filt, C, H, W, F, 1);
}

/* The reference engine's bias: added to every output position, its gradient the sum
 * of the output gradient over them. */
void cnn_conv_bias_forward_ref(float *out, const float *bias, int F, int P)
{
    for (int f = 0; f < F; f++)
        for (int p = 0; p < P; p++)
            out[(size_t)f * P + p] += bias[f];
}

void cnn_conv_bias_backward_ref(float *dbias, float alpha, const float *dout, int F, int P)
{
    for (int f = 0; f < F; f++) {
        float sum = 0.0f;
        for (int p = 0; p < P; p++)
            sum += dout[(size_t)f * P + p];
        dbias[f] += alpha * sum;
    }
}

/* ---- reference engine: out[f][i][j] = the sum over the region of (i, j), in the order
 * c, ki, kj, of region * filter[f], taps in the padding left out */

static int inside(const geom *g, int y, int x) { return y >= 0 && y < g->H && x >= 0 && x < g->W; }

static void forward_ref(const geom *g, float *out, const float *in, const float *filt)
{
    const int K = g->K;
    for (int i = 0; i < g->OH; i++)
        for (int j = 0; j < g->OW; j++)
            for (int f = 0; f < g->F; f++) {
                float sum = 0.0f;
                for (int c = 0; c < g->C; c++)
                    for (int ki = 0; ki < K; ki++)
                        for (int kj = 0; kj < K; kj++) {
                            const int y = i * g->S - g->P + ki, x = j * g->S - g->P + kj;
                            if (inside(g, y, x))
                                sum += in[((size_t)c * g->H + y) * g->W + x] *
                                       filt[(((size_t)f * g->C + c) * K + ki) * K + kj];
                        }
                out[((size_t)f * g->OH + i) * g->OW + j] = sum;
            }
}

/* dfilt[f] += alpha * (sum over (i, j) of dout[f][i][j] * region(i, j)): the sum is
 * formed first and added once, as the post forms its gradient before the update.
 * din[region(i, j)] += dout[f][i][j] * filt[f]. */
static void backward_ref(const geom *g, float *din, float *dfilt, float alpha, const float *dout,
                         const float *in, const float *filt)
{
    const int K = g->K;
    for (int f = 0; f < g->F; f++)
        for (int c = 0; c < g->C; c++)
            for (int ki = 0; ki < K; ki++)
                for (int kj = 0; kj < K; kj++) {
                    float sum = 0.0f;
                    for (int i = 0; i < g->OH; i++)
                        for (int j = 0; j < g->OW; j++) {
                            const int y = i * g->S - g->P + ki, x = j * g->S - g->P + kj;
                            if (inside(g, y, x))
                                sum += dout[((size_t)f * g->OH + i) * g->OW + j] *
                                       in[((size_t)c * g->H + y) * g->W + x];
                        }
                    dfilt[(((size_t)f * g->C + c) * K + ki) * K + kj] += alpha * sum;
                }
    if (!din)
        return;
    memset(din, 0, (size_t)g->C * g->H * g->W * sizeof(float));
    for (int i = 0; i < g->OH; i++)
        for (int j = 0; j < g->OW; j++)
            for (int f = 0; f < g->F; f++) {
                const float d = dout[((size_t)f * g->OH + i) * g->OW + j];
                for (int c = 0; c < g->C; c++)
                    for (int ki = 0; ki < K; ki++)
                        for (int kj = 0; kj < K; kj++) {
                            const int y = i * g->S - g->P + ki, x = j * g->S - g->P + kj;
                            if (inside(g, y, x))
                                din[((size_t)c * g->H + y) * g->W + x] +=
                                    d * filt[(((size_t)f * g->C + c) * K + ki) * K + kj];
                        }
            }
}

void cnn_conv3x3_forward_ref(float *out, const float *in, const float *filt,
                             int C, int H, int W, int F)
{
    const geom g = geom_3x3(C, H, W, F);
    forward_ref(&g, out, in, filt);
}

void cnn_conv3x3_backward_ref(float *din, float *dfilt, float alpha, const float *dout,
                              const float *in, const float *filt, int C, int H, int W, int F)
{
    const geom g = geom_3x3(C, H, W, F);
    backward_ref(&g, din, dfilt, alpha, dout, in, filt);
}

/* ---- the kind: conv<F> then any of b (a bias), k<K> (kernel 1..7, default 3), s<S>
 * (stride 1..4, default 1), p<P> (zero padding 0..K-1, default 0): conv32bk5p2 */

/* The number at rest[*i] (advancing *i): -1 if there is none, or past max. */
static long option_value(const char *rest, size_t len, size_t *i, long max)
{
    if (*i >= len || rest[*i] < '0' || rest[*i] > '9')
        return -1;
    long v = 0;
    for (; *i < len && rest[*i] >= '0' && rest[*i] <= '9'; (*i)++)
        if ((v = v * 10 + (rest[*i] - '0')) > max)
            v = max + 1;
    return v;
}

static int conv_parse(const char *rest, size_t len, cnn_layer *l, const char **why)
{
    size_t i = 0;
    while (i < len && rest[i] >= '0' && rest[i] <= '9')
        i++;
    const int r = cnn_kind_units(rest, i, CNN_MAX_UNITS, &l->units);
    if (r < 0)
        *why = "is too wide: at most 65536 filters";
    if (r <= 0)
        return r;
    l->kernel = 3, l->stride = 1, l->pad = 0;
    int seen = 0, pad_given = 0;
    while (i < len) {
        const char o = rest[i++];
        const int bit = o == 'b' ? 1 : o == 'k' ? 2 : o == 's' ? 4 : o == 'p' ? 8 : 0;
        if (!bit || seen & bit)
            return 0; /* not an option, or one given twice */
        seen |= bit;
        if (o == 'b') {
            l->bias = 1;
            continue;
        }
        const long v = option_value(rest, len, &i, 99);
        if (v < 0)
            return 0;
        if (o == 'k' && (v < 1 || v > 7))
            return *why = "has a kernel out of range: k1 to k7", -1;
        if (o == 's' && (v < 1 || v > 4))
            return *why = "has a stride out of range: s1 to s4", -1;
        if (o == 'k')
            l->kernel = (int)v;
        else if (o == 's')
            l->stride = (int)v;
        else
            l->pad = (int)v, pad_given = 1;
    }
    if (pad_given && l->pad > l->kernel - 1)
        return *why = "has padding out of range: p0 to its kernel size - 1", -1;
    return 1;
}

static void conv_describe(const cnn_layer *l, char *buf, size_t len)
{
    int n = snprintf(buf, len, "conv%d%s", l->units, l->bias ? "b" : "");
    if (l->kernel != 3 && n >= 0 && (size_t)n < len)
        n += snprintf(buf + n, len - (size_t)n, "k%d", l->kernel);
    if (l->stride != 1 && n >= 0 && (size_t)n < len)
        n += snprintf(buf + n, len - (size_t)n, "s%d", l->stride);
    if (l->pad && n >= 0 && (size_t)n < len)
        snprintf(buf + n, len - (size_t)n, "p%d", l->pad);
}

static const char *conv_shape(cnn_layer *l)
{
    static const char *const too_small[8] = {
        "", "", "needs a map of at least 2x2, padding included",
        "needs a map of at least 3x3, padding included",
        "needs a map of at least 4x4, padding included",
        "needs a map of at least 5x5, padding included",
        "needs a map of at least 6x6, padding included",
        "needs a map of at least 7x7, padding included"};
    if (l->units < 1)
        return "has no filters";
    if (l->H + 2 * l->pad < l->kernel || l->W + 2 * l->pad < l->kernel)
        return too_small[l->kernel];
    l->OC = l->units;
    l->OH = (l->H + 2 * l->pad - l->kernel) / l->stride + 1;
    l->OW = (l->W + 2 * l->pad - l->kernel) / l->stride + 1;
    return NULL;
}

static size_t conv_taps(const cnn_layer *l) { return (size_t)l->C * l->kernel * l->kernel; }
static size_t conv_weights(const cnn_layer *l) { return (size_t)l->units * conv_taps(l); }
static size_t conv_biases(const cnn_layer *l) { return l->bias ? (size_t)l->units : 0; }
static double conv_fan_in(const cnn_layer *l) { return (double)conv_taps(l); }
static double conv_flops(const cnn_layer *l)
{
    return 2.0 * l->units * (double)conv_taps(l) * l->OH * l->OW;
}
/* Per image, as lowering_of lays them out (a group per image at most): its im2col
 * columns (all OH x OW positions; the pool-block order uses fewer), over a chunk its
 * share of the output rows, a padded 3x3 conv's padded input, and over a chunk a
 * group's filter and bias gradient. */
static size_t conv_scratch(const cnn_layer *l)
{
    const geom g = geom_of(l);
    const size_t F = (size_t)l->units, K = conv_taps(l);
    return (K + (l->whole_chunk ? F : 0)) * l->OH * l->OW + pad_floats(&g) +
           (l->whole_chunk ? F * K + F : 0);
}

/* Lowered per chunk when the image has more than one channel: the filter gradient's
 * SGEMM, summed over one image's positions alone, is then too short to run near the
 * peak (bench_layers measures both ways for each shape). A one-channel first layer,
 * the post's among them, stays per image, where its short im2col stays in cache. */
static int conv_whole_chunk(const cnn_layer *l) { return l->C > 1; }

/* Every SGEMM shape the forward can run: one image's, or a group's of up to
 * group_size images side by side. */
static int conv_window_ties(const cnn_layer *l)
{
    if (!l->pool_order)
        return 0;
    const geom g = geom_of(l);
    const int most = l->whole_chunk ? group_most(&g, 1, CNN_CHUNK_MAX) : 1;
    for (int n = 1; n <= most; n++) {
        const int same = cnn_conv_sgemm_consistent(g.F, n * positions(&g, 1), taps(&g), l->bias);
        if (same <= 0)
            return same < 0 ? -1 : 1;
    }
    return 0;
}

static void conv_forward(const cnn_pass *p)
{
    const cnn_layer *l = p->l;
    const geom g = geom_of(l);
    if (p->blas) {
        forward_blas(&g, p, l->pool_order);
        return;
    }
    forward_ref(&g, p->out, p->in, p->w);
    if (p->bias)
        cnn_conv_bias_forward_ref(p->out, p->bias, g.F, g.OH * g.OW);
}

static void conv_backward(const cnn_pass *p)
{
    const cnn_layer *l = p->l;
    const geom g = geom_of(l);
    if (p->blas) {
        backward_blas(&g, p, l->pool_order);
        return;
    }
    backward_ref(&g, p->din, p->gw, p->alpha, p->dout, p->in, p->w);
    if (p->gbias)
        cnn_conv_bias_backward_ref(p->gbias, p->alpha, p->dout, g.F, g.OH * g.OW);
}

/* ONNX Conv: W [F][C][K][K] is the filters as stored, B the biases. */
static void conv_onnx(onnx_out *g, const cnn_layer *l, const char *in, const char *out,
                      const float *w, const float *bias, const float *state)
{
    (void)state;
    char maps[CNN_ONNX_NAME], wn[CNN_ONNX_NAME], bn[CNN_ONNX_NAME];
    const char *args[3] = {onnx_maps(g, in, l->C, l->H, l->W, maps), onnx_name(wn, out, "_W"),
                           onnx_name(bn, out, "_B")};
    const int64_t K = l->kernel, S = l->stride, P = l->pad;
    onnx_tensor(g, wn, (const int64_t[]){l->units, l->C, K, K}, 4, w);
    if (bias)
        onnx_tensor(g, bn, (const int64_t[]){l->units}, 1, bias);
    const onnx_attr attrs[] = {{"kernel_shape", ONNX_INTS, .n = 2, .ints = {K, K}},
                               {"strides", ONNX_INTS, .n = 2, .ints = {S, S}},
                               {"pads", ONNX_INTS, .n = 4, .ints = {P, P, P, P}}};
    onnx_node(g, "Conv", args, bias ? 3 : 2, out, attrs, 3);
}

/* ONNX Conv: square kernel, equal strides, the same padding on every side, no groups
 * or dilation; W [F][C][K][K], an optional bias B [F]. */
static int conv_onnx_read(const onnx_graph_in *g, const onnx_node_in *node, int last,
                          onnx_take *take, char *why, size_t len)
{
    (void)last;
    if (!onnx_is(node->op, "Conv"))
        return 0;
    static const char *const known[] = {"kernel_shape", "strides", "pads", "dilations", "group",
                                        "auto_pad", NULL};
    const onnx_tensor_in *w = onnx_input_tensor(g, node, 1), *b = onnx_input_tensor(g, node, 2);
    const onnx_attr_in *pads = onnx_attr_of(node, "pads"), *auto_pad = onnx_attr_of(node, "auto_pad");
    int64_t K, S, group;
    if (onnx_check_attrs(node, known, why, len))
        return -1;
    if (!w || w->ndim != 4 || w->dims[2] != w->dims[3] || w->dims[0] < 1)
        return onnx_refuse(why, len, "its weights are not an initializer of F x C x K x K");
    if (!onnx_square(node, "kernel_shape", w->dims[2], &K) || K != w->dims[2])
        return onnx_refuse(why, len, "a kernel that is not square is not read");
    if (!onnx_square(node, "strides", 1, &S))
        return onnx_refuse(why, len, "strides that differ between axes are not read");
    if (!onnx_int(node, "group", 1, &group) || group != 1)
        return onnx_refuse(why, len, "grouped convolution is not read");
    if (!onnx_ints_all(node, "dilations", 2, 1, 1))
        return onnx_refuse(why, len, "dilation is not read");
    if (auto_pad && !onnx_is(auto_pad->s, "NOTSET"))
        return onnx_refuse(why, len, "auto_pad is not read (give explicit pads)");
    if (pads && (pads->n != 4 || !onnx_ints_all(node, "pads", 4, pads->ints[0], 0)))
        return onnx_refuse(why, len, "padding that differs between sides is not read");
    if (b && (b->ndim != 1 || b->dims[0] != w->dims[0]))
        return onnx_refuse(why, len, "a bias that is not one value per filter is not read");
    take->layer.units = (int)w->dims[0];
    take->layer.bias = b != NULL;
    take->layer.kernel = (int)K, take->layer.stride = (int)S;
    take->layer.pad = pads ? (int)pads->ints[0] : 0;
    take->weights = w, take->bias = b;
    return 1;
}

const cnn_kind cnn_kind_conv = {
    .name = "conv",
    .grammar = "conv<F>[b][k<K>][s<S>][p<P>]",
    .flags = CNN_KIND_BLOCKABLE | CNN_KIND_GRAD_FIRST | CNN_KIND_ALIGNED | CNN_KIND_AFFINE_ROWS,
    .parse = conv_parse,
    .describe = conv_describe,
    .shape = conv_shape,
    .weights = conv_weights,
    .biases = conv_biases,
    .fan_in = conv_fan_in,
    .flops = conv_flops,
    .scratch = conv_scratch,
    .whole_chunk = conv_whole_chunk,
    .window_ties = conv_window_ties,
    .forward = conv_forward,
    .backward = conv_backward,
    .onnx_export = conv_onnx,
    .onnx_import = conv_onnx_read,
};
