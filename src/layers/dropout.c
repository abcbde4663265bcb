/* dropout.c - the dropout kind: dropout<P>, P percent of the values dropped (1..99).
 * Inverted dropout: in training each value is kept with probability 1 - P/100 and
 * scaled by 1 / (1 - P/100), or set to 0; in evaluation and prediction the layer is
 * the identity. The mask of a sample comes from its pass's key alone (the trainer's
 * seed and epoch, the sample's index in the data set and the layer: cnn_pass.key), so
 * it is the same for any thread count, any cut of the minibatch and after a resume;
 * the forward stores it (one byte a value) for the backward. Both engines; a value's
 * mask is drawn by its place in [C][H][W], so a conv before dropout writes that order
 * (not the pool-block order, which would give the engines different masks). */
#include "cnn.h"

#include "layer.h"
#include "onnx.h"
#include "mix.h"

#include <math.h>
#include <stdio.h>

static int dropout_parse(const char *rest, size_t len, cnn_layer *l, const char **why)
{
    const int r = cnn_kind_units(rest, len, 99, &l->units);
    if (r < 0 || (r > 0 && l->units < 1))
        return *why = "drops a percentage out of range: 1 to 99", -1;
    return r;
}

static void dropout_describe(const cnn_layer *l, char *buf, size_t len)
{
    snprintf(buf, len, "dropout%d", l->units);
}

static const char *dropout_shape(cnn_layer *l)
{
    l->OC = l->C, l->OH = l->H, l->OW = l->W;
    return NULL;
}

static size_t dropout_bytes(const cnn_layer *l) { return cnn_layer_out_len(l); }

static void dropout_forward(const cnn_pass *p)
{
    const size_t n = p->stored;
    if (!p->key) { /* evaluation */
        for (size_t i = 0; i < n; i++)
            p->out[i] = p->in[i];
        return;
    }
    const uint32_t drop = (uint32_t)((uint64_t)p->l->units * 0x100000000u / 100);
    const float scale = 1.0f / (1.0f - (float)p->l->units / 100.0f);
    for (size_t i = 0; i < n; i++) {
        const int keep = (uint32_t)(cnn_mix64(p->key ^ cnn_mix64(i)) >> 32) >= drop;
        p->arg[i] = (uint8_t)keep;
        p->out[i] = keep ? p->in[i] * scale : 0.0f;
    }
}

static void dropout_backward(const cnn_pass *p)
{
    if (!p->din)
        return;
    const float scale = 1.0f / (1.0f - (float)p->l->units / 100.0f);
    for (size_t i = 0; i < p->stored; i++)
        p->din[i] = p->key && !p->arg[i] ? 0.0f : p->key ? p->dout[i] * scale : p->dout[i];
}

/* ONNX Dropout with its ratio: the identity in inference, and read back as this
 * layer. */
static void dropout_onnx(onnx_out *g, const cnn_layer *l, const char *in, const char *out,
                         const float *w, const float *bias, const float *state)
{
    (void)w, (void)bias, (void)state;
    char ratio[CNN_ONNX_NAME];
    const float p = (float)l->units / 100.0f;
    onnx_tensor(g, onnx_name(ratio, out, "_ratio"), NULL, 0, &p);
    const char *args[2] = {in, ratio};
    onnx_node(g, "Dropout", args, 2, out, NULL, 0);
}

/* ONNX Dropout (the identity in inference): its ratio, an input (opset 12 on) or an
 * attribute, 0.5 by default, as a whole percent. */
static int dropout_onnx_read(const onnx_graph_in *g, const onnx_node_in *node, int last,
                             onnx_take *take, char *why, size_t len)
{
    (void)last;
    if (!onnx_is(node->op, "Dropout"))
        return 0;
    static const char *const known[] = {"ratio", "seed", NULL};
    const onnx_tensor_in *r = onnx_input_tensor(g, node, 1);
    const onnx_attr_in *attr = onnx_attr_of(node, "ratio");
    if (onnx_check_attrs(node, known, why, len))
        return -1;
    if (node->nin > 2 && node->in[2].n)
        return onnx_refuse(why, len, "a training_mode input is not read");
    if (node->nin > 1 && node->in[1].n && (!r || r->type != 1 || r->count != 1))
        return onnx_refuse(why, len, "a ratio that is not one float constant is not read");
    const double ratio = r ? (double)onnx_tensor_float(r, 0) : attr ? (double)attr->f : 0.5;
    const double percent = floor(ratio * 100.0 + 0.5);
    if (!(fabs(ratio * 100.0 - percent) < 1e-3) || percent < 1 || percent > 99)
        return onnx_refuse(why, len, "ratio %g: a whole percent from 1 to 99 is read", ratio);
    take->layer.units = (int)percent;
    return 1;
}

const cnn_kind cnn_kind_dropout = {
    .name = "dropout",
    .grammar = "dropout<P>",
    .parse = dropout_parse,
    .onnx_export = dropout_onnx,
    .onnx_import = dropout_onnx_read,
    .describe = dropout_describe,
    .shape = dropout_shape,
    .bytes = dropout_bytes,
    .forward = dropout_forward,
    .backward = dropout_backward,
};
