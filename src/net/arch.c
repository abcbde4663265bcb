/* arch.c - a network description ("conv32b,relu,pool,dense128,relu,softmax10") to a
 * checked list of layers, with the shapes flowing from the input. */
#include "cnn.h"

#include "fileio.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_UNITS 65536
#define MAX_PARAMS ((size_t)1 << 28) /* 1 GiB of floats */

size_t cnn_layer_out_len(const cnn_layer *l) { return (size_t)l->OC * l->OH * l->OW; }

/* The number after a layer's name: 1 on success, 0 if it is not a number, -1 if it is
 * one past MAX_UNITS. */
static int units_of(const char *s, size_t len, int *units, int *bias, int allow_bias)
{
    char buf[32];
    if (len == 0 || len >= sizeof buf)
        return 0;
    memcpy(buf, s, len);
    buf[len] = '\0';
    *bias = 0;
    if (allow_bias && buf[len - 1] == 'b') {
        *bias = 1;
        buf[--len] = '\0';
    }
    if (len == 0 || buf[0] < '0' || buf[0] > '9' || strspn(buf, "0123456789") != len)
        return 0;
    char *end;
    errno = 0;
    const long v = strtol(buf, &end, 10);
    if (errno == ERANGE || v > MAX_UNITS)
        return -1;
    *units = (int)v;
    return 1;
}

/* One token to a layer record (kind and hyperparameters): 1, 0 if it is no layer, -1
 * if its width is out of range. */
static int parse_layer(const char *tok, size_t len, cnn_layer *l)
{
    memset(l, 0, sizeof *l);
    if (len == 4 && memcmp(tok, "relu", 4) == 0) {
        l->kind = CNN_LAYER_RELU;
        return 1;
    }
    if (len == 4 && memcmp(tok, "pool", 4) == 0) {
        l->kind = CNN_LAYER_POOL;
        return 1;
    }
    if (len > 4 && memcmp(tok, "conv", 4) == 0) {
        l->kind = CNN_LAYER_CONV;
        return units_of(tok + 4, len - 4, &l->units, &l->bias, 1);
    }
    if (len > 5 && memcmp(tok, "dense", 5) == 0) {
        l->kind = CNN_LAYER_DENSE;
        l->bias = 1;
        int no;
        return units_of(tok + 5, len - 5, &l->units, &no, 0);
    }
    if (len > 7 && memcmp(tok, "softmax", 7) == 0) {
        l->kind = CNN_LAYER_SOFTMAX;
        l->bias = 1;
        int no;
        return units_of(tok + 7, len - 7, &l->units, &no, 0);
    }
    return 0;
}

static const char *kind_name(cnn_layer_kind k)
{
    switch (k) {
    case CNN_LAYER_CONV: return "conv";
    case CNN_LAYER_RELU: return "relu";
    case CNN_LAYER_POOL: return "pool";
    case CNN_LAYER_DENSE: return "dense";
    case CNN_LAYER_SOFTMAX: return "softmax";
    }
    return "?";
}

/* The output shape of l from its input shape; NULL, or why not. */
static const char *flow(cnn_layer *l)
{
    switch (l->kind) {
    case CNN_LAYER_CONV:
        if (l->units < 1)
            return "has no filters";
        if (l->H < 3 || l->W < 3)
            return "needs a map of at least 3x3";
        l->OC = l->units, l->OH = l->H - 2, l->OW = l->W - 2;
        return NULL;
    case CNN_LAYER_RELU:
        l->OC = l->C, l->OH = l->H, l->OW = l->W;
        return NULL;
    case CNN_LAYER_POOL:
        if (l->H < 2 || l->W < 2)
            return "cannot pool a map smaller than 2x2";
        l->OC = l->C, l->OH = l->H / 2, l->OW = l->W / 2;
        return NULL;
    case CNN_LAYER_DENSE:
    case CNN_LAYER_SOFTMAX:
        if (l->units < (l->kind == CNN_LAYER_SOFTMAX ? 2 : 1))
            return l->kind == CNN_LAYER_SOFTMAX ? "needs at least 2 classes" : "has no outputs";
        l->OC = l->units, l->OH = 1, l->OW = 1;
        return NULL;
    }
    return "is unknown";
}

static void describe_layer(const cnn_layer *l, char *buf, size_t len)
{
    if (l->kind == CNN_LAYER_RELU || l->kind == CNN_LAYER_POOL)
        snprintf(buf, len, "%s", kind_name(l->kind));
    else
        snprintf(buf, len, "%s%d%s", kind_name(l->kind), l->units,
                 l->kind == CNN_LAYER_CONV && l->bias ? "b" : "");
}

cnn_status cnn_arch_build(cnn_arch *a, const char *desc, int C, int H, int W, char *err,
                          size_t errlen)
{
    memset(a, 0, sizeof *a);
    if (!desc || !*desc)
        return cnn_errorf(CNN_ERR_ARG, err, errlen, "architecture: empty description");
    if (strlen(desc) >= CNN_ARCH_LEN)
        return cnn_errorf(CNN_ERR_ARG, err, errlen, "architecture: description longer than %d "
                          "characters", CNN_ARCH_LEN - 1);
    if (C < 1 || C > 4096 || H < 1 || H > 4096 || W < 1 || W > 4096)
        return cnn_errorf(CNN_ERR_ARG, err, errlen, "architecture: input %dx%dx%d out of range",
                          C, H, W);
    a->C = C, a->H = H, a->W = W;
    int c = C, h = H, w = W;
    size_t off = 0;
    for (const char *p = desc;;) {
        const size_t len = strcspn(p, ",");
        const int at = a->n + 1;
        if (a->n == CNN_MAX_LAYERS)
            return cnn_errorf(CNN_ERR_ARG, err, errlen, "architecture: more than %d layers",
                              CNN_MAX_LAYERS);
        cnn_layer *l = &a->layer[a->n];
        const int parsed = parse_layer(p, len, l);
        if (parsed < 0)
            return cnn_errorf(CNN_ERR_ARG, err, errlen,
                              "architecture: layer %d '%.*s' is too wide: at most %d %s", at,
                              (int)(len > 40 ? 40 : len), p, MAX_UNITS,
                              l->kind == CNN_LAYER_CONV ? "filters" : "outputs");
        if (!parsed)
            return cnn_errorf(CNN_ERR_ARG, err, errlen,
                              "architecture: layer %d '%.*s' is not one of conv<F>, conv<F>b, "
                              "relu, pool, dense<N>, softmax<N>", at, (int)(len > 40 ? 40 : len),
                              p);
        if (a->n > 0 && a->layer[a->n - 1].kind == CNN_LAYER_SOFTMAX)
            return cnn_errorf(CNN_ERR_ARG, err, errlen, "architecture: layer %d '%.*s' follows "
                              "the softmax output layer, which must be last", at, (int)len, p);
        l->C = c, l->H = h, l->W = w;
        const char *why = flow(l);
        if (why)
            return cnn_errorf(CNN_ERR_ARG, err, errlen,
                              "architecture: layer %d '%.*s' %s (its input is %dx%dx%d)", at,
                              (int)len, p, why, c, h, w);
        const size_t K = (size_t)c * h * w;
        l->nw = l->kind == CNN_LAYER_CONV ? (size_t)l->units * c * 9
                : l->kind == CNN_LAYER_DENSE || l->kind == CNN_LAYER_SOFTMAX ? (size_t)l->units * K
                                                                           : 0;
        l->nb = l->bias ? (size_t)l->units : 0;
        l->w = off, l->b = off + l->nw;
        off += l->nw + l->nb;
        if (off > MAX_PARAMS)
            return cnn_errorf(CNN_ERR_ARG, err, errlen,
                              "architecture: layer %d '%.*s' takes the parameters past %zu", at,
                              (int)len, p, MAX_PARAMS);
        c = l->OC, h = l->OH, w = l->OW;
        a->n++;
        if (!p[len])
            break;
        p += len + 1;
    }
    cnn_layer *last = &a->layer[a->n - 1];
    if (last->kind != CNN_LAYER_SOFTMAX)
        return cnn_errorf(CNN_ERR_ARG, err, errlen,
                          "architecture: no output layer: '%s' must end with softmax<N>", desc);
    a->classes = last->units;
    a->n_params = off;
    /* Pool-block order for a conv whose output, maybe through relus, feeds a pool; He
     * initialisation for a layer a relu follows. */
    for (int i = 0; i < a->n; i++) {
        cnn_layer *l = &a->layer[i];
        l->he = i + 1 < a->n && a->layer[i + 1].kind == CNN_LAYER_RELU;
        if (l->kind != CNN_LAYER_CONV)
            continue;
        int j = i + 1;
        while (j < a->n && a->layer[j].kind == CNN_LAYER_RELU)
            j++;
        if (j < a->n && a->layer[j].kind == CNN_LAYER_POOL)
            for (int k = i; k < j; k++)
                a->layer[k].blocked = 1;
    }
    return CNN_OK;
}

const char *cnn_arch_describe(const cnn_arch *a, char *buf, size_t len)
{
    size_t used = 0;
    if (len)
        buf[0] = '\0';
    for (int i = 0; i < a->n && used < len; i++) {
        char one[32];
        describe_layer(&a->layer[i], one, sizeof one);
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? "," : "", one);
    }
    return buf;
}

cnn_status cnn_arch_of_shape(cnn_arch *a, const cnn_shape *s)
{
    memset(a, 0, sizeof *a);
    if (!s || cnn_shape_check(s) != CNN_OK)
        return CNN_ERR_ARG;
    char desc[64];
    snprintf(desc, sizeof desc, "conv%d,pool,softmax%d", s->F, s->classes);
    return cnn_arch_build(a, desc, s->C, s->H, s->W, NULL, 0);
}

int cnn_arch_equal(const cnn_arch *a, const cnn_arch *b)
{
    if (a->C != b->C || a->H != b->H || a->W != b->W || a->n != b->n ||
        a->n_params != b->n_params)
        return 0;
    for (int i = 0; i < a->n; i++) {
        const cnn_layer *x = &a->layer[i], *y = &b->layer[i];
        if (x->kind != y->kind || x->units != y->units || x->bias != y->bias)
            return 0;
    }
    return 1;
}

int cnn_arch_is_post(const cnn_arch *a)
{
    return a->n == 3 && a->layer[0].kind == CNN_LAYER_CONV && !a->layer[0].bias &&
           a->layer[1].kind == CNN_LAYER_POOL && a->layer[2].kind == CNN_LAYER_SOFTMAX;
}

double cnn_arch_train_flops(const cnn_arch *a)
{
    double f = 0.0;
    int first_param = a->n;
    for (int l = a->n - 1; l >= 0; l--)
        if (a->layer[l].nw)
            first_param = l;
    for (int l = 0; l < a->n; l++) {
        const cnn_layer *L = &a->layer[l];
        double pass = 0.0;
        if (L->kind == CNN_LAYER_CONV)
            pass = 2.0 * L->units * L->C * 9 * L->OH * L->OW;
        else if (L->kind == CNN_LAYER_DENSE || L->kind == CNN_LAYER_SOFTMAX)
            pass = 2.0 * L->units * L->C * L->H * L->W;
        /* forward and weight gradient; the input gradient when a layer below learns */
        f += pass * (l > first_param ? 3 : 2);
    }
    return f;
}
