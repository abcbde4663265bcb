/* pool.c - MaxPool2: non-overlapping 2x2 blocks, stride 2; an odd last row or
 * column is dropped. Forward records the first max of each block in the order
 * (0,0),(0,1),(1,0),(1,1); backward routes the gradient by one of two tie rules.
 *
 * The BLAS engine's conv output is in pool-block order (see conv.c): for each
 * filter, four planes of Q = PH*PW values, plane k holding block position
 * (k/2, k%2). Pooling is then an element-wise max over four contiguous planes.
 * The reference engine pools [F][H][W] maps block by block, as the post. */
#include "cnn.h"
#include "kernels.h"

#include "layer.h"
#include "onnx.h"
#include "simd.h"

#include <string.h>

/* The loops over one filter's Q = PH*PW values, inlined with Q constant for the
 * post's 13 x 13 pool (straight vector code) and with Q variable otherwise. */
static inline __attribute__((always_inline)) void pool_fwd_sized(float *out, uint8_t *arg,
                                                                 const float *in, int F,
                                                                 size_t Q)
{
    for (int f = 0; f < F; f++) {
        const float *restrict p0 = in + (size_t)f * 4 * Q, *restrict p1 = p0 + Q,
                              *restrict p2 = p1 + Q, *restrict p3 = p2 + Q;
        float *restrict o = out + (size_t)f * Q;
        uint8_t *restrict g = arg + (size_t)f * Q;
        for (size_t q = 0; q < Q; q++) {
            /* The first max of (0,1) and of (2,3), then the second pair only when
             * strictly larger: selects, not branches, as ties are common. */
            const float v0 = p0[q], v1 = p1[q], v2 = p2[q], v3 = p3[q];
            const int b01 = v1 > v0, b23 = v3 > v2;
            const float m01 = b01 ? v1 : v0, m23 = b23 ? v3 : v2;
            const int take = m23 > m01;
            o[q] = take ? m23 : m01;
            g[q] = (uint8_t)(b01 + take * (2 + b23 - b01));
        }
    }
}

/* g where keep, else +0: a select on the bits, with no branch even in the scalar
 * remainder of a vector loop (a branch there is taken a quarter of the time at random,
 * and its mispredictions cost more than the rest of the pass). */
static inline float kept(float g, int keep)
{
    uint32_t u;
    memcpy(&u, &g, sizeof u);
    u &= 0u - (uint32_t)keep;
    memcpy(&g, &u, sizeof g);
    return g;
}

static inline __attribute__((always_inline)) void pool_bwd_sized(float *din, const float *dout,
                                                                 const uint8_t *arg,
                                                                 const float *in,
                                                                 const float *out,
                                                                 cnn_pool_ties ties, int F,
                                                                 size_t Q)
{
    for (int f = 0; f < F; f++) {
        float *restrict d0 = din + (size_t)f * 4 * Q, *restrict d1 = d0 + Q,
                        *restrict d2 = d1 + Q, *restrict d3 = d2 + Q;
        const float *restrict g = dout + (size_t)f * Q;
        if (ties == CNN_TIES_ALL) {
            const float *restrict v0 = in + (size_t)f * 4 * Q, *restrict v1 = v0 + Q,
                                  *restrict v2 = v1 + Q, *restrict v3 = v2 + Q;
            const float *restrict m = out + (size_t)f * Q;
            for (size_t q = 0; q < Q; q++) {
                d0[q] = kept(g[q], v0[q] == m[q]);
                d1[q] = kept(g[q], v1[q] == m[q]);
                d2[q] = kept(g[q], v2[q] == m[q]);
                d3[q] = kept(g[q], v3[q] == m[q]);
            }
        } else {
            const uint8_t *restrict a = arg + (size_t)f * Q;
            for (size_t q = 0; q < Q; q++) {
                d0[q] = kept(g[q], a[q] == 0);
                d1[q] = kept(g[q], a[q] == 1);
                d2[q] = kept(g[q], a[q] == 2);
                d3[q] = kept(g[q], a[q] == 3);
            }
        }
    }
}

CNN_VECTOR
static void maxpool2_forward_any_isa(float *out, uint8_t *arg, const float *in, int F, int H, int W)
{
    if (H == 26 && W == 26)
        pool_fwd_sized(out, arg, in, F, 169);
    else
        pool_fwd_sized(out, arg, in, F, (size_t)(H / 2) * (W / 2));
}

/* The exported name; the variants stay local (their dispatcher would be exported). */
void cnn_maxpool2_forward(float *out, uint8_t *arg, const float *in, int F, int H, int W)
{
    maxpool2_forward_any_isa(out, arg, in, F, H, W);
}

CNN_VECTOR
static void maxpool2_backward_any_isa(float *din, const float *dout, const uint8_t *arg, const float *in,
                           const float *out, cnn_pool_ties ties, int F, int H, int W)
{
    if (H == 26 && W == 26)
        pool_bwd_sized(din, dout, arg, in, out, ties, F, 169);
    else
        pool_bwd_sized(din, dout, arg, in, out, ties, F, (size_t)(H / 2) * (W / 2));
}

/* The exported name; the variants stay local (their dispatcher would be exported). */
void cnn_maxpool2_backward(float *din, const float *dout, const uint8_t *arg, const float *in,
                           const float *out, cnn_pool_ties ties, int F, int H, int W)
{
    maxpool2_backward_any_isa(din, dout, arg, in, out, ties, F, H, W);
}

/* ---- reference engine: the post's loops over 2x2 blocks of [F][H][W] maps */

void cnn_maxpool2_forward_ref(float *out, uint8_t *arg, const float *in, int F, int H, int W)
{
    const int PH = H / 2, PW = W / 2;
    for (int f = 0; f < F; f++)
        for (int i = 0; i < PH; i++)
            for (int j = 0; j < PW; j++) {
                const float *blk = in + ((size_t)f * H + 2 * i) * W + 2 * j;
                const float v[4] = {blk[0], blk[1], blk[W], blk[W + 1]};
                int a = 0;
                for (int k = 1; k < 4; k++)
                    if (v[k] > v[a])
                        a = k;
                const size_t o = ((size_t)f * PH + i) * PW + j;
                out[o] = v[a];
                arg[o] = (uint8_t)a;
            }
}

void cnn_maxpool2_backward_ref(float *din, const float *dout, const uint8_t *arg,
                               const float *in, const float *out, cnn_pool_ties ties, int F,
                               int H, int W)
{
    const int PH = H / 2, PW = W / 2;
    memset(din, 0, (size_t)F * H * W * sizeof(float));
    for (int f = 0; f < F; f++)
        for (int i = 0; i < PH; i++)
            for (int j = 0; j < PW; j++) {
                const size_t o = ((size_t)f * PH + i) * PW + j;
                const size_t base = ((size_t)f * H + 2 * i) * W + 2 * j;
                const size_t pos[4] = {base, base + 1, base + W, base + W + 1};
                if (ties == CNN_TIES_ALL) {
                    for (int k = 0; k < 4; k++)
                        if (in[pos[k]] == out[o])
                            din[pos[k]] = dout[o];
                } else {
                    din[pos[arg[o]]] = dout[o];
                }
            }
}

/* ---- the kind: pool (2x2 max pooling, stride 2) */

static const char *pool_shape(cnn_layer *l)
{
    if (l->H < 2 || l->W < 2)
        return "cannot pool a map smaller than 2x2";
    l->OC = l->C, l->OH = l->H / 2, l->OW = l->W / 2;
    return NULL;
}

/* the argmax of every output */
static size_t pool_bytes(const cnn_layer *l) { return cnn_layer_out_len(l); }

static void pool_forward(const cnn_pass *p)
{
    const cnn_layer *l = p->l;
    if (p->blas && p->in_blocked)
        cnn_maxpool2_forward(p->out, p->arg, p->in, l->C, l->H, l->W);
    else
        cnn_maxpool2_forward_ref(p->out, p->arg, p->in, l->C, l->H, l->W);
}

static void pool_backward(const cnn_pass *p)
{
    const cnn_layer *l = p->l;
    if (!p->din)
        return;
    if (p->blas && p->in_blocked)
        cnn_maxpool2_backward(p->din, p->dout, p->arg, p->in, p->out, p->ties, l->C, l->H, l->W);
    else
        cnn_maxpool2_backward_ref(p->din, p->dout, p->arg, p->in, p->out, p->ties, l->C, l->H,
                                  l->W);
}

static void pool_onnx(onnx_out *g, const cnn_layer *l, const char *in, const char *out,
                      const float *w, const float *bias, const float *state)
{
    (void)w, (void)bias, (void)state;
    onnx_window(g, "MaxPool", l, 2, 2, in, out);
}

/* ONNX MaxPool of 2 x 2 moved by 2 without padding: this kind (others: maxpool). */
static int pool_onnx_read(const onnx_graph_in *g, const onnx_node_in *node, int last,
                          onnx_take *take, char *why, size_t len)
{
    (void)g, (void)last;
    onnx_take t = *take;
    if (onnx_window_read(node, "MaxPool", &t, why, len) <= 0 || t.layer.kernel != 2 ||
        t.layer.stride != 2)
        return 0; /* not this kind's: the maxpool kind reads it, or says why not */
    return 1;
}

const cnn_kind cnn_kind_pool = {
    .name = "pool",
    .grammar = "pool",
    .flags = CNN_KIND_READS_BLOCKS,
    .parse = cnn_kind_bare,
    .describe = cnn_kind_name_describe,
    .shape = pool_shape,
    .bytes = pool_bytes,
    .forward = pool_forward,
    .backward = pool_backward,
    .onnx_export = pool_onnx,
    .onnx_import = pool_onnx_read,
};
