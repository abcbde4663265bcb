/* model.c - shapes, parameters, per-thread activations, and the forward and
 * backward pass of one image through Conv3x3 -> MaxPool2 -> Softmax. */
#include "cnn.h"

#include "layer.h"

#include "arena.h"

#include <math.h>
#include <stdio.h>
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

cnn_status cnn_model_alloc_arch(cnn_model *m, const cnn_arch *a)
{
    memset(m, 0, sizeof *m);
    if (!a || a->n < 1 || a->n_params == 0)
        return CNN_ERR_ARG;
    m->arch = *a;
    const cnn_layer *first = &a->layer[0], *last = &a->layer[a->n - 1];
    m->shape = (cnn_shape){.C = a->C, .H = a->H, .W = a->W,
                           .F = first->kind == CNN_LAYER_CONV ? first->units : 0,
                           .classes = a->classes};
    m->n_params = a->n_params;
    m->params = cnn_aligned_alloc(m->n_params * sizeof(float));
    if (!m->params)
        return CNN_ERR_NOMEM;
    memset(m->params, 0, m->n_params * sizeof(float));
    m->p.filters = first->kind == CNN_LAYER_CONV ? m->params + first->weights_at : NULL;
    m->p.W = m->params + last->weights_at;
    m->p.b = m->params + last->bias_at;
    return CNN_OK;
}

cnn_status cnn_model_alloc(cnn_model *m, const cnn_shape *s)
{
    memset(m, 0, sizeof *m);
    cnn_arch a;
    if (cnn_arch_of_shape(&a, s) != CNN_OK)
        return CNN_ERR_ARG;
    return cnn_model_alloc_arch(m, &a);
}

cnn_status cnn_model_init_arch(cnn_model *m, const cnn_arch *a, cnn_rng *rng)
{
    cnn_status st = cnn_model_alloc_arch(m, a);
    if (st != CNN_OK)
        return st;
    for (int i = 0; i < a->n; i++) {
        const cnn_layer *l = &a->layer[i];
        if (!l->n_weights)
            continue;
        const double fan_in = cnn_kind_of(l->kind)->fan_in(l);
        const double he = sqrt(2.0 / fan_in);
        float *w = m->params + l->weights_at;
        for (size_t k = 0; k < l->n_weights; k++)
            w[k] = l->he_init ? (float)(cnn_rng_normal(rng) * he) : (float)(cnn_rng_normal(rng) / fan_in);
        /* biases stay 0 */
    }
    return CNN_OK;
}

cnn_status cnn_model_init(cnn_model *m, const cnn_shape *s, cnn_rng *rng)
{
    memset(m, 0, sizeof *m);
    cnn_arch a;
    if (cnn_arch_of_shape(&a, s) != CNN_OK)
        return CNN_ERR_ARG;
    return cnn_model_init_arch(m, &a, rng);
}

void cnn_model_free(cnn_model *m)
{
    free(m->params);
    memset(m, 0, sizeof *m);
}

/* Every piece sits at an offset that depends only on the sample's place in the chunk
 * (the arena is 64-byte aligned): a BLAS kernel's path, and so its rounding, never
 * depends on which thread's buffers a sample landed in. Conv outputs and im2col
 * matrices are 64-byte aligned per sample; the other outputs are unpadded rows, so
 * that a dense layer takes them as one matrix. */
cnn_status cnn_acts_alloc_arch(cnn_acts *a, const cnn_arch *arch, int cap)
{
    memset(a, 0, sizeof *a);
    if (!arch || arch->n < 1 || cap < 1 || cap > 4096)
        return CNN_ERR_ARG;
    const size_t c = (size_t)cap;
    size_t off = 0, o_out[CNN_MAX_LAYERS], o_dout[CNN_MAX_LAYERS], o_col[CNN_MAX_LAYERS],
           o_arg[CNN_MAX_LAYERS];
    size_t arg_len[CNN_MAX_LAYERS];
    for (int i = 0; i < arch->n; i++) {
        const cnn_layer *l = &arch->layer[i];
        const cnn_kind *kind = cnn_kind_of(l->kind);
        const size_t len = cnn_layer_out_len(l);
        a->stride[i] = kind->flags & CNN_KIND_ALIGNED
                           ? cnn_align_up(len * sizeof(float)) / sizeof(float) : len;
        if (kind->scratch) {
            a->col_strides[i] = cnn_align_up(kind->scratch(l) * sizeof(float)) / sizeof(float);
            o_col[i] = cnn_arena_take(&off, c * a->col_strides[i] * sizeof(float));
        }
        o_out[i] = cnn_arena_take(&off, c * a->stride[i] * sizeof(float));
        arg_len[i] = kind->bytes ? kind->bytes(l) : 0;
        if (arg_len[i])
            o_arg[i] = cnn_arena_take(&off, c * arg_len[i]);
    }
    const size_t N = (size_t)arch->classes, in_len = (size_t)arch->C * arch->H * arch->W;
    const size_t o_probs = cnn_arena_take(&off, c * N * sizeof(float));
    for (int i = arch->n - 1; i >= 0; i--)
        o_dout[i] = cnn_arena_take(&off, c * a->stride[i] * sizeof(float));
    const size_t o_x = cnn_arena_take(&off, c * in_len * sizeof(float));
    char *base = cnn_aligned_alloc(off);
    if (!base)
        return CNN_ERR_NOMEM;
    memset(base, 0, off);
    a->cap = cap;
    a->arena = base;
    for (int i = 0; i < arch->n; i++) {
        const cnn_layer *l = &arch->layer[i];
        const cnn_kind *kind = cnn_kind_of(l->kind);
        a->out[i] = (float *)(base + o_out[i]);
        a->dout[i] = (float *)(base + o_dout[i]);
        if (kind->scratch)
            a->cols[i] = (float *)(base + o_col[i]);
        if (arg_len[i])
            a->args[i] = (uint8_t *)(base + o_arg[i]);
        const int ties = kind->window_ties ? kind->window_ties(l) : 0;
        if (ties < 0) {
            cnn_acts_free(a);
            return CNN_ERR_NOMEM;
        }
        a->window_ties[i] = (uint8_t)ties;
    }
    a->probs = (float *)(base + o_probs);
    a->x = (float *)(base + o_x);
    const cnn_layer *last = &arch->layer[arch->n - 1];
    a->shape = (cnn_shape){.C = arch->C, .H = arch->H, .W = arch->W,
                           .F = arch->layer[0].kind == CNN_LAYER_CONV ? arch->layer[0].units : 0,
                           .classes = arch->classes};
    a->logits = a->out[arch->n - 1];
    a->dlogits = a->dout[arch->n - 1];
    (void)last;
    if (cnn_arch_is_post(arch)) {
        a->col = a->cols[0], a->col_stride = a->col_strides[0];
        a->conv = a->out[0], a->conv_stride = a->stride[0], a->dconv = a->dout[0];
        a->pool = a->out[1], a->K_stride = a->stride[1], a->arg = a->args[1];
        a->dpool = a->dout[1];
    }
    return CNN_OK;
}

cnn_status cnn_acts_alloc_batch(cnn_acts *a, const cnn_shape *s, int cap)
{
    memset(a, 0, sizeof *a);
    cnn_arch arch;
    if (cnn_arch_of_shape(&arch, s) != CNN_OK)
        return CNN_ERR_ARG;
    return cnn_acts_alloc_arch(a, &arch, cap);
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
