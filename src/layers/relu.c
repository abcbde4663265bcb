/* relu.c - ReLU: out = max(in, 0). The gradient passes where the output is positive
 * (so not at 0, as PyTorch). Element-wise: any layout, one engine. */
#include "cnn.h"
#include "kernels.h"

#include "layer.h"
#include "onnx.h"
#include "simd.h"


CNN_VECTOR
static void relu_forward_any_isa(float *restrict out, const float *restrict in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = in[i] > 0.0f ? in[i] : 0.0f;
}

/* The exported name; the variants stay local (their dispatcher would be exported). */
void cnn_relu_forward(float *restrict out, const float *restrict in, size_t n)
{
    relu_forward_any_isa(out, in, n);
}

CNN_VECTOR
static void relu_backward_any_isa(float *restrict din, const float *restrict dout, const float *restrict out,
                       size_t n)
{
    for (size_t i = 0; i < n; i++)
        din[i] = out[i] > 0.0f ? dout[i] : 0.0f;
}

/* The exported name; the variants stay local (their dispatcher would be exported). */
void cnn_relu_backward(float *restrict din, const float *restrict dout, const float *restrict out,
                       size_t n)
{
    relu_backward_any_isa(din, dout, out, n);
}

/* ---- the kind: relu */

static const char *relu_shape(cnn_layer *l)
{
    l->OC = l->C, l->OH = l->H, l->OW = l->W;
    return NULL;
}

static void relu_forward(const cnn_pass *p) { cnn_relu_forward(p->out, p->in, p->stored); }

static void relu_backward(const cnn_pass *p)
{
    if (p->din)
        cnn_relu_backward(p->din, p->dout, p->out, p->stored);
}

static void relu_onnx(onnx_out *g, const cnn_layer *l, const char *in, const char *out,
                      const float *w, const float *bias, const float *state)
{
    (void)l, (void)w, (void)bias, (void)state;
    onnx_node(g, "Relu", &in, 1, out, NULL, 0);
}

static int relu_onnx_read(const onnx_graph_in *g, const onnx_node_in *node, int last,
                          onnx_take *take, char *why, size_t len)
{
    (void)g, (void)last, (void)take;
    static const char *const known[] = {NULL};
    if (!onnx_is(node->op, "Relu"))
        return 0;
    return onnx_check_attrs(node, known, why, len) ? -1 : 1;
}

const cnn_kind cnn_kind_relu = {
    .name = "relu",
    .grammar = "relu",
    .flags = CNN_KIND_ELEMENTWISE | CNN_KIND_HE_BEFORE,
    .parse = cnn_kind_bare,
    .describe = cnn_kind_name_describe,
    .shape = relu_shape,
    .forward = relu_forward,
    .backward = relu_backward,
    .onnx_export = relu_onnx,
    .onnx_import = relu_onnx_read,
};
