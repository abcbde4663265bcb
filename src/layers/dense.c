/* dense.c - the dense and softmax kinds: y = W x + b (softmax: then softmax and
 * cross-entropy, in training against labels smoothed by softmax<N>ls<P>). W is [N][K]
 * row-major (N outputs, K inputs). For one sample the forward is one SGEMV, the weight
 * gradient one SGER and the input gradient one transposed SGEMV; for B samples at once
 * (rows of X [B][K]) they become three SGEMMs (the benchmarks compare the two). */
#include "cnn.h"
#include "kernels.h"

#include "layer.h"
#include "onnx.h"

#include <cblas.h>
#include <math.h>
#include <stdio.h>
#include <string.h>

void cnn_dense_forward_ld(float *logits, const float *x, int ldx, const float *W, const float *b,
                          int B, int K, int N)
{
    for (int r = 0; r < B; r++)
        memcpy(logits + (size_t)r * N, b, (size_t)N * sizeof(float));
    if (B == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, 1.0f, W, K, x, 1, 1.0f, logits, 1);
    else /* logits[B][N] += X[B][K] . W[N][K]^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, N, K, 1.0f, x, ldx, W, K, 1.0f,
                    logits, N);
}

/* dx first: with dW == W (an in-place SGD step) it must see the weights before the
 * update, as the post computes it. */
void cnn_dense_backward_ld(float *dx, float *dW, float *db, float alpha, const float *dlogits,
                           const float *x, int ldx, const float *W, int B, int K, int N)
{
    if (dx) {
        if (B == 1)
            cblas_sgemv(CblasRowMajor, CblasTrans, N, K, 1.0f, W, K, dlogits, 1, 0.0f, dx, 1);
        else /* dX[B][K] = dL[B][N] . W[N][K] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, K, N, 1.0f, dlogits, N, W,
                        K, 0.0f, dx, ldx);
    }
    if (B == 1)
        cblas_sger(CblasRowMajor, N, K, alpha, dlogits, 1, x, 1, dW, K);
    else /* dW[N][K] += alpha dL[B][N]^T . X[B][K] */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, B, alpha, dlogits, N, x, ldx,
                    1.0f, dW, K);
    for (int r = 0; r < B; r++)
        for (int n = 0; n < N; n++)
            db[n] += alpha * dlogits[(size_t)r * N + n];
}

void cnn_dense_forward(float *logits, const float *x, const float *W, const float *b, int B,
                       int K, int N)
{
    cnn_dense_forward_ld(logits, x, K, W, b, B, K, N);
}

void cnn_dense_backward(float *dx, float *dW, float *db, float alpha, const float *dlogits,
                        const float *x, const float *W, int B, int K, int N)
{
    cnn_dense_backward_ld(dx, dW, db, alpha, dlogits, x, K, W, B, K, N);
}

void cnn_dense_forward_ref(float *logits, const float *x, const float *W, const float *b,
                           int K, int N)
{
    for (int n = 0; n < N; n++) {
        float sum = 0.0f;
        for (int k = 0; k < K; k++)
            sum += x[k] * W[(size_t)n * K + k];
        logits[n] = sum + b[n];
    }
}

void cnn_dense_backward_ref(float *dx, float *dW, float *db, float alpha, const float *dlogits,
                            const float *x, const float *W, int K, int N)
{
    if (dx)
        for (int k = 0; k < K; k++) {
            float sum = 0.0f;
            for (int n = 0; n < N; n++)
                sum += W[(size_t)n * K + k] * dlogits[n];
            dx[k] = sum;
        }
    for (int n = 0; n < N; n++) {
        for (int k = 0; k < K; k++)
            dW[(size_t)n * K + k] += alpha * (dlogits[n] * x[k]);
        db[n] += alpha * dlogits[n];
    }
}

/* p = exp(t - max) / sum exp(t - max); -ln p[k] = ln(sum exp(t - max)) - (t[k] - max).
 * Subtracting the max keeps every exp in (0, 1]: no overflow for large logits. With
 * eps, the loss is (1 - eps) (-ln p[label]) + eps times the mean of -ln p[k]. */
float cnn_softmax_xent(float *probs, float *dlogits, const float *logits, int label, int N,
                       float eps)
{
    float mx = logits[0];
    for (int n = 1; n < N; n++)
        if (logits[n] > mx)
            mx = logits[n];
    double sum = 0.0;
    for (int n = 0; n < N; n++) {
        probs[n] = expf(logits[n] - mx);
        sum += probs[n];
    }
    const float inv = (float)(1.0 / sum);
    for (int n = 0; n < N; n++)
        probs[n] *= inv;
    if (label >= 0 && eps > 0.0f) {
        const float spread = eps / (float)N;
        double logit_sum = 0.0;
        for (int n = 0; n < N; n++) {
            logit_sum += logits[n];
            if (dlogits)
                dlogits[n] = probs[n] - spread;
        }
        if (dlogits)
            dlogits[label] -= 1.0f - eps;
        const double lse = log(sum) + mx;
        return (float)((1.0 - eps) * (lse - logits[label]) + eps * (lse - logit_sum / N));
    }
    if (dlogits) {
        for (int n = 0; n < N; n++)
            dlogits[n] = probs[n];
        if (label >= 0)
            dlogits[label] -= 1.0f;
    }
    if (label < 0)
        return 0.0f;
    return (float)(log(sum) - ((double)logits[label] - mx));
}

/* ---- the kinds: dense<N> (a hidden layer) and softmax<N> (the output layer, whose
 * logits the loss reads: the same affine map) */

static int dense_parse(const char *rest, size_t len, cnn_layer *l, const char **why)
{
    l->bias = 1;
    const int r = cnn_kind_units(rest, len, CNN_MAX_UNITS, &l->units);
    if (r < 0)
        *why = "is too wide: at most 65536 outputs";
    return r;
}

static void dense_describe(const cnn_layer *l, char *buf, size_t len)
{
    snprintf(buf, len, "%s%d", cnn_kind_of(l->kind)->name, l->units);
}

static const char *dense_shape(cnn_layer *l)
{
    if (l->units < 1)
        return "has no outputs";
    l->OC = l->units, l->OH = 1, l->OW = 1;
    return NULL;
}

/* "<N>" or "<N>ls<P>": P percent of label smoothing (1..99) */
static int softmax_parse(const char *rest, size_t len, cnn_layer *l, const char **why)
{
    size_t i = 0;
    while (i < len && rest[i] >= '0' && rest[i] <= '9')
        i++;
    const int r = dense_parse(rest, i, l, why);
    if (r <= 0 || i == len)
        return r;
    if (len - i < 3 || rest[i] != 'l' || rest[i + 1] != 's')
        return 0;
    const int s = cnn_kind_units(rest + i + 2, len - i - 2, 99, &l->smoothing);
    if (s < 0 || (s > 0 && l->smoothing < 1))
        return *why = "smooths labels by a percentage out of range: ls1 to ls99", -1;
    return s;
}

static void softmax_describe(const cnn_layer *l, char *buf, size_t len)
{
    if (l->smoothing)
        snprintf(buf, len, "softmax%dls%d", l->units, l->smoothing);
    else
        snprintf(buf, len, "softmax%d", l->units);
}

static const char *softmax_shape(cnn_layer *l)
{
    return l->units < 2 ? "needs at least 2 classes" : dense_shape(l);
}

static size_t dense_inputs(const cnn_layer *l) { return (size_t)l->C * l->H * l->W; }
static size_t dense_weights(const cnn_layer *l) { return (size_t)l->units * dense_inputs(l); }
static size_t dense_biases(const cnn_layer *l) { return (size_t)l->units; }
static double dense_fan_in(const cnn_layer *l) { return (double)dense_inputs(l); }
static double dense_flops(const cnn_layer *l) { return 2.0 * (double)dense_weights(l); }

static void dense_forward(const cnn_pass *p)
{
    const int K = (int)dense_inputs(p->l), N = p->l->units;
    if (p->blas)
        cnn_dense_forward_ld(p->out, p->in, p->ldin, p->w, p->bias, p->nb, K, N);
    else
        cnn_dense_forward_ref(p->out, p->in, p->w, p->bias, K, N);
}

static void dense_backward(const cnn_pass *p)
{
    const int K = (int)dense_inputs(p->l), N = p->l->units;
    if (p->blas)
        cnn_dense_backward_ld(p->din, p->gw, p->gbias, p->alpha, p->dout, p->in, p->ldin, p->w,
                              p->nb, K, N);
    else
        cnn_dense_backward_ref(p->din, p->gw, p->gbias, p->alpha, p->dout, p->in, p->w, K, N);
}

/* ONNX Gemm of the rows with W [N][K] transposed (K: the input in C x H x W order, as
 * ONNX's Flatten of N x C x H x W), plus B. */
static void gemm_onnx(onnx_out *g, const cnn_layer *l, const char *in, const char *out,
                      const float *w, const float *bias)
{
    char rows[CNN_ONNX_NAME], wn[CNN_ONNX_NAME], bn[CNN_ONNX_NAME];
    const char *args[3] = {onnx_rows(g, in, rows), onnx_name(wn, out, "_W"),
                           onnx_name(bn, out, "_B")};
    onnx_tensor(g, wn, (const int64_t[]){l->units, (int64_t)dense_inputs(l)}, 2, w);
    onnx_tensor(g, bn, (const int64_t[]){l->units}, 1, bias);
    const onnx_attr trans_b = {"transB", ONNX_INT, .i = 1};
    onnx_node(g, "Gemm", args, 3, out, &trans_b, 1);
}

static void dense_onnx(onnx_out *g, const cnn_layer *l, const char *in, const char *out,
                       const float *w, const float *bias, const float *state)
{
    (void)state;
    gemm_onnx(g, l, in, out, w, bias);
}

/* ONNX Gemm: the rows times B (transB 1: [N][K]; 0: [K][N]) plus an optional C of N
 * values; alpha and beta 1, A not transposed. */
static int gemm_onnx_read(const onnx_graph_in *g, const onnx_node_in *node, onnx_take *take,
                          char *why, size_t len)
{
    static const char *const known[] = {"alpha", "beta", "transA", "transB", NULL};
    const onnx_tensor_in *w = onnx_input_tensor(g, node, 1), *c = onnx_input_tensor(g, node, 2);
    const onnx_attr_in *alpha = onnx_attr_of(node, "alpha"), *beta = onnx_attr_of(node, "beta");
    int64_t trans_a, trans_b;
    if (onnx_check_attrs(node, known, why, len))
        return -1;
    if ((alpha && alpha->f != 1.0f) || (beta && beta->f != 1.0f))
        return onnx_refuse(why, len, "alpha and beta other than 1 are not read");
    if (!onnx_int(node, "transA", 0, &trans_a) || trans_a != 0 ||
        !onnx_int(node, "transB", 0, &trans_b) || (trans_b != 0 && trans_b != 1))
        return onnx_refuse(why, len, "a transposed input A is not read");
    if (!w || w->ndim != 2 || w->dims[0] < 1 || w->dims[1] < 1)
        return onnx_refuse(why, len, "its weights are not a 2-D initializer");
    const int64_t N = trans_b ? w->dims[0] : w->dims[1];
    if (c && (int64_t)c->count != N)
        return onnx_refuse(why, len, "a bias that is not one value per output is not read");
    take->layer.units = (int)N, take->layer.bias = 1;
    take->weights = w, take->bias = c, take->transposed = !trans_b;
    return 1;
}

static int dense_onnx_read(const onnx_graph_in *g, const onnx_node_in *node, int last,
                           onnx_take *take, char *why, size_t len)
{
    return onnx_is(node->op, "Gemm") && !last ? gemm_onnx_read(g, node, take, why, len) : 0;
}

const cnn_kind cnn_kind_dense = {
    .name = "dense",
    .grammar = "dense<N>",
    .flags = CNN_KIND_ROWS | CNN_KIND_AFFINE_ROWS,
    .parse = dense_parse,
    .describe = dense_describe,
    .shape = dense_shape,
    .weights = dense_weights,
    .biases = dense_biases,
    .fan_in = dense_fan_in,
    .flops = dense_flops,
    .forward = dense_forward,
    .backward = dense_backward,
    .onnx_export = dense_onnx,
    .onnx_import = dense_onnx_read,
};

/* ONNX Gemm (as dense), then Softmax over the classes. */
static void softmax_onnx(onnx_out *g, const cnn_layer *l, const char *in, const char *out,
                         const float *w, const float *bias, const float *state)
{
    (void)state;
    char logits[CNN_ONNX_NAME];
    gemm_onnx(g, l, in, onnx_name(logits, out, "_logits"), w, bias);
    const onnx_attr axis = {"axis", ONNX_INT, .i = 1};
    const char *x = logits;
    onnx_node(g, "Softmax", &x, 1, out, &axis, 1);
}

/* The last Gemm (maybe before a Softmax): the output layer. */
static int softmax_onnx_read(const onnx_graph_in *g, const onnx_node_in *node, int last,
                             onnx_take *take, char *why, size_t len)
{
    return onnx_is(node->op, "Gemm") && last ? gemm_onnx_read(g, node, take, why, len) : 0;
}

const cnn_kind cnn_kind_softmax = {
    .name = "softmax",
    .grammar = "softmax<N>[ls<P>]",
    .flags = CNN_KIND_ROWS | CNN_KIND_OUTPUT,
    .parse = softmax_parse,
    .describe = softmax_describe,
    .shape = softmax_shape,
    .weights = dense_weights,
    .biases = dense_biases,
    .fan_in = dense_fan_in,
    .flops = dense_flops,
    .forward = dense_forward,
    .backward = dense_backward,
    .onnx_export = softmax_onnx,
    .onnx_import = softmax_onnx_read,
};
