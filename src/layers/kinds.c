/* kinds.c - the table of layer kinds (layer.h): an entry per kind, in the order of
 * cnn_layer_kind. A new kind is its own file under src/layers/ and an entry here. */
#include "layer.h"

#include <math.h>
#include <stdio.h>


/* Each defined in its own file under src/layers/. */
extern const cnn_kind cnn_kind_conv, cnn_kind_relu, cnn_kind_pool, cnn_kind_dense,
    cnn_kind_softmax, cnn_kind_maxpool, cnn_kind_avgpool, cnn_kind_gap, cnn_kind_dropout,
    cnn_kind_bn;

static const cnn_kind *const kinds[] = {
    [CNN_LAYER_CONV] = &cnn_kind_conv,       [CNN_LAYER_RELU] = &cnn_kind_relu,
    [CNN_LAYER_POOL] = &cnn_kind_pool,       [CNN_LAYER_DENSE] = &cnn_kind_dense,
    [CNN_LAYER_SOFTMAX] = &cnn_kind_softmax, [CNN_LAYER_MAXPOOL] = &cnn_kind_maxpool,
    [CNN_LAYER_AVGPOOL] = &cnn_kind_avgpool, [CNN_LAYER_GAP] = &cnn_kind_gap,
    [CNN_LAYER_DROPOUT] = &cnn_kind_dropout, [CNN_LAYER_BN] = &cnn_kind_bn,
};

int cnn_kind_count(void) { return (int)(sizeof kinds / sizeof *kinds); }

const cnn_kind *cnn_kind_of(cnn_layer_kind k)
{
    return (unsigned)k < sizeof kinds / sizeof *kinds ? kinds[k] : NULL;
}

int cnn_state_check(const cnn_arch *a, const float *state, char *why, size_t len)
{
    for (int i = 0; i < a->n; i++) {
        const cnn_layer *l = &a->layer[i];
        const cnn_kind *k = cnn_kind_of(l->kind);
        for (size_t j = 0; j < l->n_state; j++)
            if (!isfinite(state[l->state_at + j])) {
                snprintf(why, len, "layer %d (%s): state value %zu is not finite", i + 1,
                         k->name, j);
                return -1;
            }
        const char *no = l->n_state && k->check_state ? k->check_state(l, state + l->state_at)
                                                      : NULL;
        if (no) {
            snprintf(why, len, "layer %d (%s): %s", i + 1, k->name, no);
            return -1;
        }
    }
    return 0;
}

int cnn_kind_units(const char *rest, size_t len, int max, int *units)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (rest[i] < '0' || rest[i] > '9')
            return 0;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        v = v * 10 + (rest[i] - '0');
        if (v > max)
            return -1;
    }
    *units = (int)v;
    return 1;
}

/* "<K>" or "<K>s<S>": a window of K x K (1..7) moved by S (1..7; K when left out) */
int cnn_kind_window(const char *rest, size_t len, cnn_layer *l, const char **why)
{
    size_t i = 0;
    while (i < len && rest[i] >= '0' && rest[i] <= '9')
        i++;
    int k, s;
    if (cnn_kind_units(rest, i, 7, &k) <= 0 || k < 1)
        return i ? (*why = "has a window out of range: 1 to 7", -1) : 0;
    s = k;
    if (i < len) {
        if (rest[i] != 's')
            return 0;
        const int r = cnn_kind_units(rest + i + 1, len - i - 1, 7, &s);
        if (r == 0)
            return 0;
        if (r < 0 || s < 1)
            return *why = "has a stride out of range: s1 to s7", -1;
    }
    l->kernel = k, l->stride = s;
    return 1;
}

void cnn_kind_window_describe(const cnn_layer *l, char *buf, size_t len)
{
    snprintf(buf, len, "%s%ds%d", cnn_kind_of(l->kind)->name, l->kernel, l->stride);
}

int cnn_kind_bare(const char *rest, size_t len, cnn_layer *l, const char **why)
{
    (void)rest, (void)l, (void)why;
    return len == 0;
}

void cnn_kind_name_describe(const cnn_layer *l, char *buf, size_t len)
{
    snprintf(buf, len, "%s", cnn_kind_of(l->kind)->name);
}

const char *cnn_kind_window_shape(cnn_layer *l)
{
    if (l->H < l->kernel || l->W < l->kernel)
        return "has a window larger than its input";
    l->OC = l->C;
    l->OH = (l->H - l->kernel) / l->stride + 1;
    l->OW = (l->W - l->kernel) / l->stride + 1;
    return NULL;
}
