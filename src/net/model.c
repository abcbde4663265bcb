/* model.c - a model's parameters (allocation and initialisation, layer by layer from
 * the kind table), per-thread activations, and the statuses' names. */
#include "cnn.h"

#include "fileio.h"
#include "layer.h"

#include "arena.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
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

cnn_status cnn_model_alloc(cnn_model *m, const cnn_arch *a)
{
    memset(m, 0, sizeof *m);
    if (!a || a->n < 1 || a->n_params == 0)
        return CNN_ERR_ARG;
    m->arch = *a;
    m->n_params = a->n_params;
    m->params = cnn_aligned_alloc(m->n_params * sizeof(float));
    m->n_state = a->n_state;
    m->state = a->n_state ? calloc(a->n_state, sizeof(float)) : NULL;
    if (!m->params || (a->n_state && !m->state)) {
        cnn_model_free(m);
        return CNN_ERR_NOMEM;
    }
    memset(m->params, 0, m->n_params * sizeof(float));
    return CNN_OK;
}

cnn_status cnn_model_init(cnn_model *m, const cnn_arch *a, cnn_rng *rng)
{
    cnn_status st = cnn_model_alloc(m, a);
    if (st != CNN_OK)
        return st;
    for (int i = 0; i < a->n; i++) {
        const cnn_layer *l = &a->layer[i];
        const cnn_kind *kind = cnn_kind_of(l->kind);
        if (kind->init) {
            kind->init(l, m->params + l->weights_at, m->state + l->state_at);
            continue;
        }
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

void cnn_model_free(cnn_model *m)
{
    free(m->params);
    free(m->state);
    free(m->names);
    memset(m, 0, sizeof *m);
}

/* A name a model file and a terminal can carry: 1..CNN_NAME_MAX-1 bytes, none of them
 * a control character (UTF-8's bytes above 0x7f are fine). */
static int name_ok(const char *s)
{
    const size_t len = s ? strlen(s) : 0;
    if (len == 0 || len >= CNN_NAME_MAX)
        return 0;
    for (size_t i = 0; i < len; i++)
        if ((unsigned char)s[i] < 0x20 || s[i] == 0x7f)
            return 0;
    return 1;
}

cnn_status cnn_model_set_names(cnn_model *m, const char *const *names, int n)
{
    if (!m)
        return CNN_ERR_ARG;
    if (!names) {
        free(m->names);
        m->names = NULL;
        return CNN_OK;
    }
    if (n != m->arch.classes)
        return CNN_ERR_ARG;
    size_t total = 0;
    for (int k = 0; k < n; k++) {
        if (!name_ok(names[k]))
            return CNN_ERR_ARG;
        total += strlen(names[k]) + 1;
    }
    char *buf = malloc(total), *p = buf;
    if (!buf)
        return CNN_ERR_NOMEM;
    for (int k = 0; k < n; k++) {
        const size_t len = strlen(names[k]) + 1;
        memcpy(p, names[k], len);
        p += len;
    }
    free(m->names);
    m->names = buf;
    return CNN_OK;
}

const char *cnn_model_class_name(const cnn_model *m, int k)
{
    return m ? cnn_name_at(m->names, m->arch.classes, k) : NULL;
}

/* Every piece sits at an offset that depends only on the sample's place in the chunk
 * (the arena is 64-byte aligned): a BLAS kernel's path, and so its rounding, never
 * depends on which thread's buffers a sample landed in. Conv outputs and im2col
 * matrices are 64-byte aligned per sample; the other outputs are unpadded rows, so
 * that a dense layer takes them as one matrix. */
cnn_status cnn_acts_alloc(cnn_acts *a, const cnn_arch *arch, int cap)
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
