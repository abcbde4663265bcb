/* fold.c - a model for inference with its evaluation-time affine layers (bn) folded
 * into the layer before them. A layer whose kind has eval_affine (y = scale[c] x +
 * shift[c] per channel in evaluation) right after one with CNN_KIND_AFFINE_ROWS (a
 * conv, a dense layer: channel c is row c of the weights, plus bias[c]) becomes part of
 * it: row c times scale[c], bias scale[c] b[c] + shift[c] (the layer gains a bias if it
 * had none). The folded network computes the same evaluation function, one pass over
 * each folded map fewer, within float rounding. */
#include "cnn.h"

#include "fileio.h"
#include "layer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 1 if layer i of a folds into layer i - 1. */
static int folds(const cnn_arch *a, int i)
{
    return i > 0 && cnn_kind_of(a->layer[i].kind)->eval_affine &&
           (cnn_kind_of(a->layer[i - 1].kind)->flags & CNN_KIND_AFFINE_ROWS) &&
           a->layer[i - 1].OC == a->layer[i].C;
}

/* The folded network's description: every layer that does not fold, those before a
 * folding one with a bias. */
static cnn_status folded_arch(const cnn_arch *a, cnn_arch *out, int *kept)
{
    char desc[CNN_ARCH_LEN] = "", tok[64];
    size_t len = 0;
    int n = 0;
    for (int i = 0; i < a->n; i++) {
        if (folds(a, i))
            continue;
        cnn_layer l = a->layer[i];
        if (i + 1 < a->n && folds(a, i + 1))
            l.bias = 1;
        cnn_kind_of(l.kind)->describe(&l, tok, sizeof tok);
        const int w = snprintf(desc + len, sizeof desc - len, "%s%s", n ? "," : "", tok);
        if (w < 0 || (size_t)w >= sizeof desc - len)
            return CNN_ERR_ARG;
        len += (size_t)w;
        kept[n++] = i;
    }
    return cnn_arch_build(out, desc, a->C, a->H, a->W, NULL, 0);
}

/* Layer from of m into layer to of f: its parameters and state, times scale and plus
 * shift per output channel when they are given. */
static void copy_layer(const cnn_model *m, const cnn_layer *from, cnn_model *f,
                       const cnn_layer *to, const float *scale, const float *shift)
{
    memcpy(f->params + to->weights_at, m->params + from->weights_at,
           from->n_weights * sizeof(float));
    if (from->n_bias)
        memcpy(f->params + to->bias_at, m->params + from->bias_at, from->n_bias * sizeof(float));
    if (from->n_state)
        memcpy(f->state + to->state_at, m->state + from->state_at, from->n_state * sizeof(float));
    if (!scale)
        return;
    const size_t row = to->n_weights / (size_t)to->OC;
    for (int c = 0; c < to->OC; c++) {
        float *w = f->params + to->weights_at + (size_t)c * row;
        for (size_t k = 0; k < row; k++)
            w[k] *= scale[c];
        float *b = f->params + to->bias_at + c;
        *b = from->n_bias ? *b * scale[c] + shift[c] : shift[c];
    }
}

cnn_status cnn_model_fold(const cnn_model *m, cnn_model *out)
{
    int kept[CNN_MAX_LAYERS];
    cnn_arch arch;
    if (!m || !out)
        return CNN_ERR_ARG;
    cnn_status st = folded_arch(&m->arch, &arch, kept);
    cnn_model f;
    if (st != CNN_OK || (st = cnn_model_alloc(&f, &arch)) != CNN_OK)
        return st;
    f.norm = m->norm;
    int widest = 1;
    for (int i = 0; i < m->arch.n; i++)
        widest = m->arch.layer[i].OC > widest ? m->arch.layer[i].OC : widest;
    float *scale = malloc(2 * (size_t)widest * sizeof *scale);
    if (m->names) { /* the same names, back to back */
        const size_t bytes = cnn_names_len(m->names, arch.classes);
        if ((f.names = malloc(bytes)))
            memcpy(f.names, m->names, bytes);
    }
    if (!scale || (m->names && !f.names)) {
        free(scale);
        cnn_model_free(&f);
        return CNN_ERR_NOMEM;
    }
    float *shift = scale + widest;
    for (int j = 0; j < arch.n; j++) {
        const int i = kept[j];
        const cnn_layer *from = &m->arch.layer[i];
        const int fold = i + 1 < m->arch.n && folds(&m->arch, i + 1);
        if (fold) {
            const cnn_layer *bn = &m->arch.layer[i + 1];
            cnn_kind_of(bn->kind)->eval_affine(bn, m->params + bn->weights_at,
                                               m->params + bn->bias_at, m->state + bn->state_at,
                                               scale, shift);
        }
        copy_layer(m, from, &f, &arch.layer[j], fold ? scale : NULL, shift);
    }
    free(scale);
    *out = f;
    return CNN_OK;
}
