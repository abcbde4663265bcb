/* model.c - shapes, parameters, per-thread activations, and the forward and
 * backward pass of one image through Conv3x3 -> MaxPool2 -> Softmax. */
#include "cnn.h"

#include "arena.h"

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

cnn_status cnn_acts_alloc(cnn_acts *a, const cnn_shape *s)
{
    memset(a, 0, sizeof *a);
    if (cnn_shape_check(s) != CNN_OK)
        return CNN_ERR_ARG;
    const size_t P = (size_t)(s->H - 2) * (s->W - 2);
    const size_t conv = cnn_shape_conv_len(s), K = cnn_shape_dense_len(s), N = s->classes;
    size_t off = 0;
    const size_t o_col = cnn_arena_take(&off, (size_t)s->C * 9 * P * sizeof(float));
    const size_t o_conv = cnn_arena_take(&off, conv * sizeof(float));
    const size_t o_pool = cnn_arena_take(&off, K * sizeof(float));
    const size_t o_arg = cnn_arena_take(&off, K);
    const size_t o_logits = cnn_arena_take(&off, N * sizeof(float));
    const size_t o_probs = cnn_arena_take(&off, N * sizeof(float));
    const size_t o_dlogits = cnn_arena_take(&off, N * sizeof(float));
    const size_t o_dpool = cnn_arena_take(&off, K * sizeof(float));
    const size_t o_dconv = cnn_arena_take(&off, conv * sizeof(float));
    char *base = cnn_aligned_alloc(off);
    if (!base)
        return CNN_ERR_NOMEM;
    memset(base, 0, off);
    a->shape = *s;
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
    return CNN_OK;
}

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

float cnn_forward(const cnn_model *m, cnn_acts *a, const float *x, int label, cnn_engine e)
{
    const cnn_shape *s = &m->shape;
    const int K = (int)cnn_shape_dense_len(s);
    if (e == CNN_ENGINE_BLAS) {
        cnn_conv3x3_forward(a->conv, a->col, x, m->p.filters, s->C, s->H, s->W, s->F);
        cnn_maxpool2_forward(a->pool, a->arg, a->conv, s->F, s->H - 2, s->W - 2);
        cnn_dense_forward(a->logits, a->pool, m->p.W, m->p.b, K, s->classes);
    } else {
        cnn_conv3x3_forward_ref(a->conv, x, m->p.filters, s->C, s->H, s->W, s->F);
        cnn_maxpool2_forward_ref(a->pool, a->arg, a->conv, s->F, s->H - 2, s->W - 2);
        cnn_dense_forward_ref(a->logits, a->pool, m->p.W, m->p.b, K, s->classes);
    }
    return cnn_softmax_xent(a->probs, a->dlogits, a->logits, label, s->classes);
}

void cnn_backward(const cnn_model *m, cnn_acts *a, float *grad, float *dx, const float *x,
                  cnn_engine e, cnn_pool_ties ties)
{
    const cnn_shape *s = &m->shape;
    const int K = (int)cnn_shape_dense_len(s);
    cnn_params g = cnn_params_view(s, grad);
    if (e == CNN_ENGINE_BLAS) {
        cnn_dense_backward(a->dpool, g.W, g.b, a->dlogits, a->pool, m->p.W, K, s->classes);
        cnn_maxpool2_backward(a->dconv, a->dpool, a->arg, a->conv, a->pool, ties, s->F,
                              s->H - 2, s->W - 2);
        cnn_conv3x3_backward(dx, g.filters, a->col, a->dconv, m->p.filters, s->C, s->H, s->W,
                             s->F);
    } else {
        cnn_dense_backward_ref(a->dpool, g.W, g.b, a->dlogits, a->pool, m->p.W, K, s->classes);
        cnn_maxpool2_backward_ref(a->dconv, a->dpool, a->arg, a->conv, a->pool, ties, s->F,
                                  s->H - 2, s->W - 2);
        cnn_conv3x3_backward_ref(dx, g.filters, a->dconv, x, m->p.filters, s->C, s->H, s->W,
                                 s->F);
    }
}
