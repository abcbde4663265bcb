/* avgpool.c - the average pooling kinds. avgpool<K>s<S>: the mean over K x K windows
 * moved by S (K 1..7, S 1..7; S = K when s is left out), no padding, the floor rule
 * for the output size, as PyTorch's AvgPool2d; the gradient spreads evenly over each
 * window, adding where windows overlap. gap: global average pooling, the mean of each
 * channel's whole map, to C x 1 x 1. Means are the window's sum in row-major order
 * divided by its size. Both engines run these loops. */
#include "cnn.h"

#include "layer.h"
#include "onnx.h"

#include <string.h>

static void avgpool_forward(const cnn_pass *p)
{
    const cnn_layer *l = p->l;
    const int K = l->kernel, S = l->stride;
    const float n = (float)(K * K);
    for (int c = 0; c < l->C; c++)
        for (int i = 0; i < l->OH; i++)
            for (int j = 0; j < l->OW; j++) {
                const float *win = p->in + ((size_t)c * l->H + (size_t)i * S) * l->W + j * S;
                float sum = 0.0f;
                for (int di = 0; di < K; di++)
                    for (int dj = 0; dj < K; dj++)
                        sum += win[(size_t)di * l->W + dj];
                p->out[((size_t)c * l->OH + i) * l->OW + j] = sum / n;
            }
}

static void avgpool_backward(const cnn_pass *p)
{
    const cnn_layer *l = p->l;
    const int K = l->kernel, S = l->stride;
    const float n = (float)(K * K);
    if (!p->din)
        return;
    memset(p->din, 0, (size_t)l->C * l->H * l->W * sizeof(float));
    for (int c = 0; c < l->C; c++)
        for (int i = 0; i < l->OH; i++)
            for (int j = 0; j < l->OW; j++) {
                const float g = p->dout[((size_t)c * l->OH + i) * l->OW + j] / n;
                float *win = p->din + ((size_t)c * l->H + (size_t)i * S) * l->W + j * S;
                for (int di = 0; di < K; di++)
                    for (int dj = 0; dj < K; dj++)
                        win[(size_t)di * l->W + dj] += g;
            }
}

static void avgpool_onnx(onnx_out *g, const cnn_layer *l, const char *in, const char *out,
                         const float *w, const float *bias, const float *state)
{
    (void)w, (void)bias, (void)state;
    onnx_window(g, "AveragePool", l, l->kernel, l->stride, in, out);
}

static int avgpool_onnx_read(const onnx_graph_in *g, const onnx_node_in *node, int last,
                             onnx_take *take, char *why, size_t len)
{
    (void)g, (void)last;
    return onnx_window_read(node, "AveragePool", take, why, len);
}

const cnn_kind cnn_kind_avgpool = {
    .name = "avgpool",
    .grammar = "avgpool<K>s<S>",
    .parse = cnn_kind_window,
    .describe = cnn_kind_window_describe,
    .shape = cnn_kind_window_shape,
    .forward = avgpool_forward,
    .backward = avgpool_backward,
    .onnx_export = avgpool_onnx,
    .onnx_import = avgpool_onnx_read,
};

/* ---- gap */

static const char *gap_shape(cnn_layer *l)
{
    l->OC = l->C, l->OH = 1, l->OW = 1;
    return NULL;
}

static void gap_forward(const cnn_pass *p)
{
    const cnn_layer *l = p->l;
    const size_t n = (size_t)l->H * l->W;
    for (int c = 0; c < l->C; c++) {
        float sum = 0.0f;
        for (size_t k = 0; k < n; k++)
            sum += p->in[(size_t)c * n + k];
        p->out[c] = sum / (float)n;
    }
}

static void gap_backward(const cnn_pass *p)
{
    const cnn_layer *l = p->l;
    const size_t n = (size_t)l->H * l->W;
    if (!p->din)
        return;
    for (int c = 0; c < l->C; c++) {
        const float g = p->dout[c] / (float)n;
        for (size_t k = 0; k < n; k++)
            p->din[(size_t)c * n + k] = g;
    }
}

static void gap_onnx(onnx_out *g, const cnn_layer *l, const char *in, const char *out,
                     const float *w, const float *bias, const float *state)
{
    (void)w, (void)bias, (void)state;
    char maps[CNN_ONNX_NAME];
    const char *x = onnx_maps(g, in, l->C, l->H, l->W, maps);
    onnx_node(g, "GlobalAveragePool", &x, 1, out, NULL, 0);
}

static int gap_onnx_read(const onnx_graph_in *g, const onnx_node_in *node, int last,
                         onnx_take *take, char *why, size_t len)
{
    (void)g, (void)last, (void)take;
    static const char *const known[] = {NULL};
    if (!onnx_is(node->op, "GlobalAveragePool"))
        return 0;
    return onnx_check_attrs(node, known, why, len) ? -1 : 1;
}

const cnn_kind cnn_kind_gap = {
    .name = "gap",
    .grammar = "gap",
    .parse = cnn_kind_bare,
    .describe = cnn_kind_name_describe,
    .shape = gap_shape,
    .forward = gap_forward,
    .backward = gap_backward,
    .onnx_export = gap_onnx,
    .onnx_import = gap_onnx_read,
};
