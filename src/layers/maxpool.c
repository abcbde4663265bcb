/* maxpool.c - the maxpool kind: maxpool<K>s<S>, the max over K x K windows moved by
 * S (K 1..7, S 1..7; S = K when s is left out), no padding, PyTorch's floor rule for
 * the output size: floor((H - K) / S) + 1. Forward records the first max of each
 * window in row-major order; backward routes the gradient by either tie rule (the
 * first max, or every position equal to the max), adding where windows overlap. Both
 * engines run these loops. (`pool`, 2x2 stride 2, has its own faster code: pool.c.) */
#include "cnn.h"

#include "layer.h"
#include "onnx.h"

#include <string.h>

static size_t maxpool_bytes(const cnn_layer *l) { return cnn_layer_out_len(l); }

static void maxpool_forward(const cnn_pass *p)
{
    const cnn_layer *l = p->l;
    const int K = l->kernel, S = l->stride;
    for (int c = 0; c < l->C; c++)
        for (int i = 0; i < l->OH; i++)
            for (int j = 0; j < l->OW; j++) {
                const float *win = p->in + ((size_t)c * l->H + (size_t)i * S) * l->W + j * S;
                float best = win[0];
                int at = 0;
                for (int di = 0; di < K; di++)
                    for (int dj = 0; dj < K; dj++)
                        if (win[(size_t)di * l->W + dj] > best)
                            best = win[(size_t)di * l->W + dj], at = di * K + dj;
                const size_t o = ((size_t)c * l->OH + i) * l->OW + j;
                p->out[o] = best;
                p->arg[o] = (uint8_t)at;
            }
}

static void maxpool_backward(const cnn_pass *p)
{
    const cnn_layer *l = p->l;
    const int K = l->kernel, S = l->stride;
    if (!p->din)
        return;
    memset(p->din, 0, (size_t)l->C * l->H * l->W * sizeof(float));
    for (int c = 0; c < l->C; c++)
        for (int i = 0; i < l->OH; i++)
            for (int j = 0; j < l->OW; j++) {
                const size_t o = ((size_t)c * l->OH + i) * l->OW + j;
                const size_t base = ((size_t)c * l->H + (size_t)i * S) * l->W + (size_t)j * S;
                if (p->ties == CNN_TIES_ALL) {
                    for (int di = 0; di < K; di++)
                        for (int dj = 0; dj < K; dj++)
                            if (p->in[base + (size_t)di * l->W + dj] == p->out[o])
                                p->din[base + (size_t)di * l->W + dj] += p->dout[o];
                } else {
                    p->din[base + (size_t)(p->arg[o] / K) * l->W + p->arg[o] % K] += p->dout[o];
                }
            }
}

static void maxpool_onnx(onnx_out *g, const cnn_layer *l, const char *in, const char *out,
                         const float *w, const float *bias, const float *state)
{
    (void)w, (void)bias, (void)state;
    onnx_window(g, "MaxPool", l, l->kernel, l->stride, in, out);
}

static int maxpool_onnx_read(const onnx_graph_in *g, const onnx_node_in *node, int last,
                             onnx_take *take, char *why, size_t len)
{
    (void)g, (void)last;
    return onnx_window_read(node, "MaxPool", take, why, len);
}

const cnn_kind cnn_kind_maxpool = {
    .name = "maxpool",
    .grammar = "maxpool<K>s<S>",
    .parse = cnn_kind_window,
    .describe = cnn_kind_window_describe,
    .shape = cnn_kind_window_shape,
    .bytes = maxpool_bytes,
    .forward = maxpool_forward,
    .backward = maxpool_backward,
    .onnx_export = maxpool_onnx,
    .onnx_import = maxpool_onnx_read,
};
