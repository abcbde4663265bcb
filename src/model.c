/* model.c - shapes, parameters, per-thread activations, and the forward and
 * backward pass of one image through Conv3x3 -> MaxPool2 -> Softmax. */
#include "cnn.h"

#include "arena.h"

#include <math.h>
#include <string.h>

const char *cnn_status_str(cnn_status s)
{
    switch (s) {
    case CNN_OK: return "success";
    case CNN_ERR_NOMEM: return "out of memory";
    case CNN_ERR_ARG: return "invalid argument";
    case CNN_ERR_IO: return "input/output error";
    case CNN_ERR_FORMAT: return "malformed file";
    case CNN_ERR_NUMERIC: return "loss or parameters not finite";
    }
    return "unknown status";
}

cnn_shape cnn_shape_post(void) { return (cnn_shape){.C = 1, .H = 28, .W = 28, .F = 8, .classes = 10}; }

cnn_status cnn_shape_check(const cnn_shape *s)
{
    if (!s || s->C < 1 || s->C > 4096 || s->H < 4 || s->H > 4096 || s->W < 4 || s->W > 4096 ||
        s->F < 1 || s->F > 4096 || s->classes < 2 || s->classes > 4096)
        return CNN_ERR_ARG;
    return CNN_OK;
}

size_t cnn_shape_input_len(const cnn_shape *s) { return (size_t)s->C * s->H * s->W; }
size_t cnn_shape_conv_len(const cnn_shape *s) { return (size_t)s->F * (s->H - 2) * (s->W - 2); }
size_t cnn_shape_dense_len(const cnn_shape *s)
{
    return (size_t)s->F * ((s->H - 2) / 2) * ((s->W - 2) / 2);
}
size_t cnn_shape_param_len(const cnn_shape *s)
{
    return (size_t)s->F * s->C * 9 + (size_t)s->classes * cnn_shape_dense_len(s) + s->classes;
}

cnn_params cnn_params_view(const cnn_shape *s, float *flat)
{
    cnn_params p;
    p.filters = flat;
    p.W = p.filters + (size_t)s->F * s->C * 9;
    p.b = p.W + (size_t)s->classes * cnn_shape_dense_len(s);
    return p;
}

cnn_status cnn_model_alloc(cnn_model *m, const cnn_shape *s)
{
    memset(m, 0, sizeof *m);
    if (cnn_shape_check(s) != CNN_OK)
        return CNN_ERR_ARG;
    m->shape = *s;
    m->n_params = cnn_shape_param_len(s);
    m->params = cnn_aligned_alloc(m->n_params * sizeof(float));
    if (!m->params)
        return CNN_ERR_NOMEM;
    memset(m->params, 0, m->n_params * sizeof(float));
    m->p = cnn_params_view(s, m->params);
    return CNN_OK;
}

cnn_status cnn_model_init(cnn_model *m, const cnn_shape *s, cnn_rng *rng)
{
    cnn_status st = cnn_model_alloc(m, s);
    if (st != CNN_OK)
        return st;
    const size_t nf = (size_t)s->F * s->C * 9, K = cnn_shape_dense_len(s);
    for (size_t i = 0; i < nf; i++)
        m->p.filters[i] = (float)(cnn_rng_normal(rng) / 9.0);
    for (size_t i = 0; i < (size_t)s->classes * K; i++)
        m->p.W[i] = (float)(cnn_rng_normal(rng) / (double)K);
    /* biases stay 0 */
    return CNN_OK;
}

void cnn_model_free(cnn_model *m)
{
    free(m->params);
    memset(m, 0, sizeof *m);
}

/* Every piece sits at an offset that depends only on the sample's place in the chunk
 * (the arena is 64-byte aligned): a BLAS kernel's path, and so its rounding, never
 * depends on which thread's buffers a sample landed in. */
cnn_status cnn_acts_alloc_batch(cnn_acts *a, const cnn_shape *s, int cap)
{
    memset(a, 0, sizeof *a);
    if (cnn_shape_check(s) != CNN_OK || cap < 1 || cap > 4096)
        return CNN_ERR_ARG;
    const size_t P = (size_t)(s->H - 2) * (s->W - 2);
    const size_t conv = cnn_shape_conv_len(s), K = cnn_shape_dense_len(s), N = s->classes;
    a->col_stride = cnn_align_up((size_t)s->C * 9 * P * sizeof(float)) / sizeof(float);
    a->conv_stride = cnn_align_up(conv * sizeof(float)) / sizeof(float);
    a->K_stride = K; /* unpadded: the dense SGEMMs take the pool rows as one matrix */
    const size_t c = (size_t)cap;
    size_t off = 0;
    const size_t o_col = cnn_arena_take(&off, c * a->col_stride * sizeof(float));
    const size_t o_conv = cnn_arena_take(&off, c * a->conv_stride * sizeof(float));
    const size_t o_pool = cnn_arena_take(&off, c * a->K_stride * sizeof(float));
    const size_t o_arg = cnn_arena_take(&off, c * a->K_stride);
    const size_t o_logits = cnn_arena_take(&off, c * N * sizeof(float));
    const size_t o_probs = cnn_arena_take(&off, c * N * sizeof(float));
    const size_t o_dlogits = cnn_arena_take(&off, c * N * sizeof(float));
    const size_t o_dpool = cnn_arena_take(&off, c * a->K_stride * sizeof(float));
    const size_t o_dconv = cnn_arena_take(&off, conv * sizeof(float));
    const size_t o_x = cnn_arena_take(&off, c * cnn_shape_input_len(s) * sizeof(float));
    char *base = cnn_aligned_alloc(off);
    if (!base)
        return CNN_ERR_NOMEM;
    memset(base, 0, off);
    a->shape = *s;
    a->cap = cap;
    a->arena = base;
    a->col = (float *)(base + o_col);
    a->conv = (float *)(base + o_conv);
    a->pool = (float *)(base + o_pool);
    a->arg = (uint8_t *)(base + o_arg);
    a->logits = (float *)(base + o_logits);
    a->probs = (float *)(base + o_probs);
    a->dlogits = (float *)(base + o_dlogits);
    a->dpool = (float *)(base + o_dpool);
    a->dconv = (float *)(base + o_dconv);
    a->x = (float *)(base + o_x);
    return CNN_OK;
}

cnn_status cnn_acts_alloc(cnn_acts *a, const cnn_shape *s) { return cnn_acts_alloc_batch(a, s, 1); }

void cnn_acts_free(cnn_acts *a)
{
    free(a->arena);
    memset(a, 0, sizeof *a);
}

int cnn_argmax(const float *v, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (v[i] > v[best])
            best = i;
    return best;
}

static const float *sample(const float *images, const uint32_t *idx, int b, size_t len)
{
    return images + (idx ? (size_t)idx[b] : (size_t)b) * len;
}

/* Forward of nb samples up to the logits: conv and pool per sample, then the dense
 * layer for all of them at once. The conv output is kept per sample only when
 * keep_conv (the reference engine, and the backward under CNN_TIES_ALL, read it);
 * otherwise every sample writes the first sample's piece, which stays in L1. */
static void forward_logits(const cnn_model *m, cnn_acts *a, const float *images,
                           const uint32_t *idx, int nb, cnn_engine e, int keep_conv)
{
    const cnn_shape *s = &m->shape;
    const size_t in_len = cnn_shape_input_len(s), Ks = a->K_stride;
    const int K = (int)cnn_shape_dense_len(s), N = s->classes;
    for (int b = 0; b < nb; b++) {
        const float *x = sample(images, idx, b, in_len);
        float *conv = a->conv + (keep_conv ? b * a->conv_stride : 0), *pool = a->pool + b * Ks;
        if (e == CNN_ENGINE_BLAS) {
            cnn_conv3x3_forward(conv, a->col + b * a->col_stride, x, m->p.filters, s->C, s->H,
                                s->W, s->F);
            cnn_maxpool2_forward(pool, a->arg + b * Ks, conv, s->F, s->H - 2, s->W - 2);
        } else {
            cnn_conv3x3_forward_ref(conv, x, m->p.filters, s->C, s->H, s->W, s->F);
            cnn_maxpool2_forward_ref(pool, a->arg + b * Ks, conv, s->F, s->H - 2, s->W - 2);
            cnn_dense_forward_ref(a->logits + (size_t)b * N, pool, m->p.W, m->p.b, K, N);
        }
    }
    if (e == CNN_ENGINE_BLAS)
        cnn_dense_forward(a->logits, a->pool, m->p.W, m->p.b, nb, K, N);
}

/* Backward of nb samples after forward_logits and the softmax: the dense layer for
 * all at once, then pool and conv per sample, adding alpha times the gradient to
 * grad; dx [nb][C][H][W] may be NULL. */
static void backward_all(const cnn_model *m, cnn_acts *a, float *grad, float alpha, float *dx,
                         const float *images, const uint32_t *idx, int nb, cnn_engine e,
                         cnn_pool_ties ties)
{
    const cnn_shape *s = &m->shape;
    const size_t in_len = cnn_shape_input_len(s), Ks = a->K_stride;
    const int K = (int)cnn_shape_dense_len(s), N = s->classes;
    cnn_params g = cnn_params_view(s, grad);
    if (e == CNN_ENGINE_BLAS)
        cnn_dense_backward(a->dpool, g.W, g.b, alpha, a->dlogits, a->pool, m->p.W, nb, K, N);
    else
        for (int b = 0; b < nb; b++)
            cnn_dense_backward_ref(a->dpool + b * Ks, g.W, g.b, alpha,
                                   a->dlogits + (size_t)b * N, a->pool + b * Ks, m->p.W, K, N);
    for (int b = 0; b < nb; b++) {
        const float *conv = a->conv + b * a->conv_stride, *pool = a->pool + b * Ks;
        const uint8_t *arg = a->arg + b * Ks;
        float *dxb = dx ? dx + b * in_len : NULL;
        if (e == CNN_ENGINE_BLAS) {
            cnn_maxpool2_backward(a->dconv, a->dpool + b * Ks, arg, conv, pool, ties, s->F,
                                  s->H - 2, s->W - 2);
            cnn_conv3x3_backward(dxb, g.filters, alpha, a->col + b * a->col_stride, a->dconv,
                                 m->p.filters, s->C, s->H, s->W, s->F);
        } else {
            cnn_maxpool2_backward_ref(a->dconv, a->dpool + b * Ks, arg, conv, pool, ties, s->F,
                                      s->H - 2, s->W - 2);
            cnn_conv3x3_backward_ref(dxb, g.filters, alpha, a->dconv,
                                     sample(images, idx, b, in_len), m->p.filters, s->C, s->H,
                                     s->W, s->F);
        }
    }
}

float cnn_forward(const cnn_model *m, cnn_acts *a, const float *x, int label, cnn_engine e)
{
    forward_logits(m, a, x, NULL, 1, e, 1);
    return cnn_softmax_xent(a->probs, a->dlogits, a->logits, label, m->shape.classes);
}

void cnn_backward(const cnn_model *m, cnn_acts *a, float *grad, float *dx, const float *x,
                  cnn_engine e, cnn_pool_ties ties)
{
    backward_all(m, a, grad, 1.0f, dx, x, NULL, 1, e, ties);
}

/* The data flow of a training step, for the nb samples of one chunk: image b is
 * images[img_idx[b]] and its label labels[lab_idx[b]] (either index NULL: b). */
static int chunk_grad(const cnn_model *m, cnn_acts *a, float *grad, float alpha,
                      const float *images, const uint32_t *img_idx, const uint8_t *labels,
                      const uint32_t *lab_idx, int nb, cnn_engine e, cnn_pool_ties ties,
                      float *loss, uint8_t *pred)
{
    const int N = m->shape.classes;
    int finite = 1;
    forward_logits(m, a, images, img_idx, nb, e,
                   e != CNN_ENGINE_BLAS || (grad && ties == CNN_TIES_ALL));
    for (int b = 0; b < nb; b++) {
        const int label = labels[lab_idx ? lab_idx[b] : (uint32_t)b];
        float *probs = a->probs + (size_t)b * N;
        loss[b] = cnn_softmax_xent(probs, a->dlogits + (size_t)b * N, a->logits + (size_t)b * N,
                                   label, N);
        pred[b] = (uint8_t)cnn_argmax(probs, N);
        finite &= isfinite(loss[b]) != 0;
    }
    if (grad && finite)
        backward_all(m, a, grad, alpha, NULL, images, img_idx, nb, e, ties);
    return finite;
}

int cnn_chunk_grad(const cnn_model *m, cnn_acts *a, float *grad, float alpha,
                   const float *images, const uint8_t *labels, const uint32_t *idx, int nb,
                   cnn_engine e, cnn_pool_ties ties, float *loss, uint8_t *pred)
{
    return chunk_grad(m, a, grad, alpha, images, idx, labels, idx, nb, e, ties, loss, pred);
}

int cnn_chunk_grad_u8(const cnn_model *m, cnn_acts *a, float *grad, float alpha,
                      const uint8_t *pixels, const uint8_t *labels, const uint32_t *idx, int nb,
                      cnn_engine e, cnn_pool_ties ties, float *loss, uint8_t *pred)
{
    const size_t len = cnn_shape_input_len(&m->shape);
    for (int b = 0; b < nb; b++)
        cnn_pixels_to_float(a->x + (size_t)b * len, pixels + (idx ? idx[b] : (size_t)b) * len,
                            len);
    return chunk_grad(m, a, grad, alpha, a->x, NULL, labels, idx, nb, e, ties, loss, pred);
}
