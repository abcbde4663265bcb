/* arch.c - a network description ("conv32b,relu,pool,dense128,relu,softmax10") to a
 * checked list of layers, with the shapes flowing from the input. */
#include "cnn.h"

#include "fileio.h"
#include "layer.h"
#include "steps.h"

#include <stdio.h>
#include <string.h>

#define MAX_PARAMS ((size_t)1 << 28) /* 1 GiB of floats */

size_t cnn_layer_out_len(const cnn_layer *l) { return (size_t)l->OC * l->OH * l->OW; }

/* One token to a layer record (kind and hyperparameters): 1, 0 if it is no layer, -1
 * if a value in it is out of range (*why: which). */
static int parse_layer(const char *tok, size_t len, cnn_layer *l, const char **why)
{
    for (int k = 0; k < cnn_kind_count(); k++) {
        const cnn_kind *kind = cnn_kind_of((cnn_layer_kind)k);
        const size_t nlen = strlen(kind->name);
        if (len < nlen || memcmp(tok, kind->name, nlen))
            continue;
        memset(l, 0, sizeof *l);
        l->kind = (cnn_layer_kind)k;
        const int r = kind->parse(tok + nlen, len - nlen, l, why);
        if (r)
            return r;
    }
    return 0;
}

/* "conv<F>[b], relu, pool, dense<N>, softmax<N>" */
static void grammar(char *buf, size_t len)
{
    size_t used = 0;
    buf[0] = '\0';
    for (int k = 0; k < cnn_kind_count() && used < len; k++)
        used += (size_t)snprintf(buf + used, len - used, "%s%s", k ? ", " : "",
                                 cnn_kind_of((cnn_layer_kind)k)->grammar);
}

static size_t count(size_t (*f)(const cnn_layer *), const cnn_layer *l)
{
    return f ? f(l) : 0;
}

/* Does pool-block order pass through layer l unchanged (an element-wise kind, or one
 * that works on it at this shape)? */
static int passes_blocks(const cnn_layer *l)
{
    const cnn_kind *kind = cnn_kind_of(l->kind);
    return (kind->flags & CNN_KIND_ELEMENTWISE) || (kind->any_layout && kind->any_layout(l));
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
        const char *why = "";
        const int parsed = parse_layer(p, len, l, &why);
        if (parsed < 0)
            return cnn_errorf(CNN_ERR_ARG, err, errlen, "architecture: layer %d '%.*s' %s", at,
                              (int)(len > 40 ? 40 : len), p, why);
        if (!parsed) {
            char kinds[256];
            grammar(kinds, sizeof kinds);
            return cnn_errorf(CNN_ERR_ARG, err, errlen,
                              "architecture: layer %d '%.*s' is not one of %s", at,
                              (int)(len > 40 ? 40 : len), p, kinds);
        }
        if (a->n > 0 && cnn_kind_of(a->layer[a->n - 1].kind)->flags & CNN_KIND_OUTPUT)
            return cnn_errorf(CNN_ERR_ARG, err, errlen, "architecture: layer %d '%.*s' follows "
                              "the output layer, which must be last", at, (int)len, p);
        const cnn_kind *kind = cnn_kind_of(l->kind);
        l->C = c, l->H = h, l->W = w;
        why = kind->shape(l);
        if (why)
            return cnn_errorf(CNN_ERR_ARG, err, errlen,
                              "architecture: layer %d '%.*s' %s (its input is %dx%dx%d)", at,
                              (int)len, p, why, c, h, w);
        l->n_weights = count(kind->weights, l);
        l->n_bias = count(kind->biases, l);
        l->weights_at = off, l->bias_at = off + l->n_weights;
        off += l->n_weights + l->n_bias;
        l->n_state = count(kind->state, l);
        l->state_at = a->n_state;
        a->n_state += l->n_state;
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
    if (!(cnn_kind_of(last->kind)->flags & CNN_KIND_OUTPUT))
        return cnn_errorf(CNN_ERR_ARG, err, errlen,
                          "architecture: no output layer: '%s' must end with softmax<N>", desc);
    a->classes = last->units;
    a->n_params = off;
    /* Pool-block order for a layer that can write it and whose output, maybe through
     * element-wise layers, feeds a 2x2 pool; He initialisation for a layer that a
     * rectifier follows; passes over whole chunks where the kind takes them. */
    for (int i = 0; i < a->n; i++) {
        cnn_layer *l = &a->layer[i];
        const cnn_kind *kind = cnn_kind_of(l->kind);
        l->he_init = i + 1 < a->n && cnn_kind_of(a->layer[i + 1].kind)->flags & CNN_KIND_HE_BEFORE;
        l->whole_chunk = (kind->flags & CNN_KIND_ROWS) || (kind->whole_chunk && kind->whole_chunk(l));
        if (!(kind->flags & CNN_KIND_BLOCKABLE))
            continue;
        int j = i + 1;
        while (j < a->n && passes_blocks(&a->layer[j]))
            j++;
        if (j < a->n && cnn_kind_of(a->layer[j].kind)->flags & CNN_KIND_READS_BLOCKS)
            for (int k = i; k < j; k++)
                a->layer[k].pool_order = 1;
    }
    return CNN_OK;
}

const char *cnn_arch_describe(const cnn_arch *a, char *buf, size_t len)
{
    size_t used = 0;
    if (len)
        buf[0] = '\0';
    for (int i = 0; i < a->n && used < len; i++) {
        char one[64];
        cnn_kind_of(a->layer[i].kind)->describe(&a->layer[i], one, sizeof one);
        used += (size_t)snprintf(buf + used, len - used, "%s%s", i ? "," : "", one);
    }
    return buf;
}

int cnn_arch_equal(const cnn_arch *a, const cnn_arch *b)
{
    if (a->C != b->C || a->H != b->H || a->W != b->W || a->n != b->n ||
        a->n_params != b->n_params)
        return 0;
    for (int i = 0; i < a->n; i++) {
        const cnn_layer *x = &a->layer[i], *y = &b->layer[i];
        if (x->kind != y->kind || x->units != y->units || x->bias != y->bias ||
            x->kernel != y->kernel || x->stride != y->stride || x->pad != y->pad ||
            x->smoothing != y->smoothing)
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
        if (a->layer[l].n_weights)
            first_param = l;
    for (int l = 0; l < a->n; l++) {
        const cnn_kind *kind = cnn_kind_of(a->layer[l].kind);
        const double pass = kind->flops ? kind->flops(&a->layer[l]) : 0.0;
        /* forward and weight gradient; the input gradient when a layer below learns */
        f += pass * (l > first_param ? 3 : 2);
    }
    return f;
}
