/* bn.c - the bn kind: batch normalization per channel, as PyTorch's BatchNorm2d (and
 * BatchNorm1d after a dense layer, whose C x 1 x 1 output has one value per channel):
 *   training    y = gamma * (x - mean) / sqrt(var + eps) + beta, mean and biased var
 *               of the channel over the whole minibatch (N x H x W values)
 *   evaluation  the same with the running mean and running (unbiased) variance
 * eps 1e-5, momentum 0.1, gamma initialised to 1 and beta to 0, running mean 0 and
 * running variance 1. The minibatch's sums come from the step (CNN_KIND_BATCH_STATS):
 * every chunk adds its samples' shares (forward_sums, backward_sums), the step adds the
 * chunks in chunk order and hands the totals to every pass, so no result depends on
 * the threads. A sample's sums: 16 float lanes over blocks of 256 values (vector code,
 * a fixed order), the blocks added in double; each output in float. Both engines run
 * these loops. */
#include "cnn.h"

#include "layer.h"
#include "onnx.h"
#include "simd.h"

#include <math.h>
#include <string.h>

#define BN_EPS 1e-5
#define BN_MOMENTUM 0.1

/* Sums, 4C doubles: sum x [C], sum x^2 [C] (forward), sum dy [C], sum dy * xhat [C]
 * (backward). */
static size_t bn_sums(const cnn_layer *l) { return 4 * (size_t)l->C; }
static size_t bn_weights(const cnn_layer *l) { return (size_t)l->C; } /* gamma */
static size_t bn_biases(const cnn_layer *l) { return (size_t)l->C; }  /* beta */
static size_t bn_state(const cnn_layer *l) { return 2 * (size_t)l->C; }
/* A sample's backward sums, kept from backward_sums for its backward: 2C doubles. */
static size_t bn_scratch(const cnn_layer *l) { return 4 * (size_t)l->C; }

static void bn_init(const cnn_layer *l, float *gamma, float *state)
{
    for (int c = 0; c < l->C; c++)
        gamma[c] = 1.0f, state[c] = 0.0f, state[l->C + c] = 1.0f;
}

/* Running variances must be >= 0 (the evaluation takes 1 / sqrt(var + eps)). */
static const char *bn_check_state(const cnn_layer *l, const float *state)
{
    for (int c = 0; c < l->C; c++)
        if (state[l->C + c] < 0.0f)
            return "a running variance below 0";
    return NULL;
}

static const char *bn_shape(cnn_layer *l)
{
    l->OC = l->C, l->OH = l->H, l->OW = l->W;
    return NULL;
}

/* Channel c's mean and 1 / sqrt(var + eps): from the minibatch's sums in training,
 * from the running statistics in evaluation. */
static void channel_stats(const cnn_pass *p, int c, float *mean, float *istd)
{
    const int C = p->l->C;
    if (p->batch_sums) {
        const double m = p->batch_sums[c] / p->batch_count;
        double var = p->batch_sums[C + c] / p->batch_count - m * m;
        var = var > 0.0 ? var : 0.0;
        *mean = (float)m, *istd = 1.0f / sqrtf((float)(var + BN_EPS));
    } else {
        *mean = p->state[c], *istd = 1.0f / sqrtf((float)((double)p->state[C + c] + BN_EPS));
    }
}

static size_t plane_of(const cnn_layer *l) { return (size_t)l->H * l->W; }

#define LANES 16
#define BLOCK 256

/* 16 float lanes (one AVX-512 register, or several narrower ones): GCC's vector type,
 * so the sums are straight vector adds in a fixed order. */
typedef float lanes __attribute__((vector_size(LANES * sizeof(float))));

/* The lanes in order, in double (by pointer: a vector argument's ABI depends on the
 * instruction set, which the variants differ in). */
static double total(const lanes *v)
{
    double t = 0.0;
    for (int k = 0; k < LANES; k++)
        t += (*v)[k];
    return t;
}

/* Sum of x and of x^2 over n values: per block of BLOCK values, in the lanes, then in
 * double; the values past the last whole lane group in double. */
CNN_VECTOR
static void sums_x(const float *restrict x, size_t n, double *s, double *ss)
{
    double ts = 0.0, tss = 0.0;
    size_t i = 0;
    for (size_t at = 0; at + LANES <= n; at = i) {
        const size_t end = at + BLOCK < n ? at + BLOCK : n;
        lanes a = {0}, b = {0};
        for (i = at; i + LANES <= end; i += LANES) {
            lanes v;
            memcpy(&v, x + i, sizeof v);
            a += v, b += v * v;
        }
        ts += total(&a), tss += total(&b);
    }
    for (; i < n; i++)
        ts += x[i], tss += (double)x[i] * x[i];
    *s = ts, *ss = tss;
}

/* Sum of dy and of dy * xhat, xhat = (x - mean) * istd, over n values, the same way. */
CNN_VECTOR
static void sums_dy(const float *restrict dy, const float *restrict x, float mean, float istd,
                    size_t n, double *s, double *sx)
{
    double ts = 0.0, tsx = 0.0;
    size_t i = 0;
    for (size_t at = 0; at + LANES <= n; at = i) {
        const size_t end = at + BLOCK < n ? at + BLOCK : n;
        lanes a = {0}, b = {0};
        for (i = at; i + LANES <= end; i += LANES) {
            lanes d, v;
            memcpy(&d, dy + i, sizeof d);
            memcpy(&v, x + i, sizeof v);
            a += d, b += d * ((v - mean) * istd);
        }
        ts += total(&a), tsx += total(&b);
    }
    for (; i < n; i++)
        ts += dy[i], tsx += (double)dy[i] * ((x[i] - mean) * istd);
    *s = ts, *sx = tsx;
}

/* y = gamma * xhat + beta. */
CNN_VECTOR
static void normalize(float *restrict y, const float *restrict x, size_t n, float mean,
                      float istd, float gamma, float beta)
{
    for (size_t i = 0; i < n; i++)
        y[i] = gamma * ((x[i] - mean) * istd) + beta;
}

/* dx = scale * (dy - mean_dy - xhat * mean_dyx). */
CNN_VECTOR
static void input_grad(float *restrict dx, const float *restrict dy, const float *restrict x,
                       size_t n, float mean, float istd, float scale, float mean_dy,
                       float mean_dyx)
{
    for (size_t i = 0; i < n; i++)
        dx[i] = scale * (dy[i] - mean_dy - ((x[i] - mean) * istd) * mean_dyx);
}

/* A channel's values are contiguous in pool-block order too ([C][4][H/2 * W/2]); they
 * are all there, and so the same sums, when no odd row or column is dropped. */
static int bn_any_layout(const cnn_layer *l) { return l->H % 2 == 0 && l->W % 2 == 0; }

static void bn_forward_sums(const cnn_pass *p, double *acc)
{
    const int C = p->l->C;
    const size_t plane = plane_of(p->l);
    for (int c = 0; c < C; c++) {
        double s, ss;
        sums_x(p->in + (size_t)c * plane, plane, &s, &ss);
        acc[c] += s, acc[C + c] += ss;
    }
}

/* In evaluation, gamma (x - mean) istd + beta = scale x + shift. */
static void bn_eval_affine(const cnn_layer *l, const float *w, const float *bias,
                           const float *state, float *scale, float *shift)
{
    for (int c = 0; c < l->C; c++) {
        const float istd = 1.0f / sqrtf((float)((double)state[l->C + c] + BN_EPS));
        scale[c] = w[c] * istd;
        shift[c] = bias[c] - state[c] * scale[c];
    }
}

static void bn_forward(const cnn_pass *p)
{
    const size_t plane = plane_of(p->l);
    const float *gamma = p->w, *beta = p->bias;
    for (int c = 0; c < p->l->C; c++) {
        float mean, istd;
        channel_stats(p, c, &mean, &istd);
        normalize(p->out + (size_t)c * plane, p->in + (size_t)c * plane, plane, mean, istd,
                  gamma[c], beta[c]);
    }
}

static void bn_backward_sums(const cnn_pass *p, double *acc)
{
    const int C = p->l->C;
    const size_t plane = plane_of(p->l);
    for (int c = 0; c < C; c++) {
        float mean, istd;
        channel_stats(p, c, &mean, &istd);
        double s[2];
        sums_dy(p->dout + (size_t)c * plane, p->in + (size_t)c * plane, mean, istd, plane, &s[0],
                &s[1]);
        acc[2 * C + c] += s[0], acc[3 * C + c] += s[1];
        memcpy(p->col + 4 * c, s, sizeof s); /* for this sample's backward */
    }
}

/* dx = gamma * istd * (dy - mean(dy) - xhat * mean(dy * xhat)) over the minibatch in
 * training (the statistics depend on x); gamma * istd * dy in evaluation. The
 * parameters' gradient: this sample's sum of dy * xhat (gamma) and of dy (beta). */
static void bn_backward(const cnn_pass *p)
{
    const int C = p->l->C;
    const size_t plane = plane_of(p->l);
    for (int c = 0; c < C; c++) {
        float mean, istd;
        channel_stats(p, c, &mean, &istd);
        const float *x = p->in + (size_t)c * plane, *dy = p->dout + (size_t)c * plane;
        double sums[2]; /* in a training step, backward_sums made them */
        if (p->batch_sums)
            memcpy(sums, p->col + 4 * c, sizeof sums);
        else
            sums_dy(dy, x, mean, istd, plane, &sums[0], &sums[1]);
        const double s = sums[0], sx = sums[1];
        if (p->gw)
            p->gw[c] += p->alpha * (float)sx, p->gbias[c] += p->alpha * (float)s;
        if (!p->din)
            continue;
        const float scale = p->w[c] * istd;
        float *dx = p->din + (size_t)c * plane;
        if (!p->batch_sums) {
            for (size_t i = 0; i < plane; i++)
                dx[i] = scale * dy[i];
            continue;
        }
        input_grad(dx, dy, x, plane, mean, istd, scale,
                   (float)(p->batch_sums[2 * C + c] / p->batch_count),
                   (float)(p->batch_sums[3 * C + c] / p->batch_count));
    }
}

/* PyTorch's update: running = (1 - momentum) * running + momentum * batch, with the
 * unbiased variance (count / (count - 1)). */
static void bn_update_state(const cnn_layer *l, float *state, const double *sums, double count)
{
    const int C = l->C;
    for (int c = 0; c < C; c++) {
        const double m = sums[c] / count;
        double var = sums[C + c] / count - m * m;
        var = var > 0.0 ? var : 0.0;
        const double unbiased = count > 1.0 ? var * count / (count - 1.0) : var;
        state[c] = (float)((1.0 - BN_MOMENTUM) * state[c] + BN_MOMENTUM * m);
        state[C + c] = (float)((1.0 - BN_MOMENTUM) * state[C + c] + BN_MOMENTUM * unbiased);
    }
}

/* ONNX BatchNormalization in inference: gamma, beta, the running mean and variance. */
static void bn_onnx(onnx_out *g, const cnn_layer *l, const char *in, const char *out,
                    const float *w, const float *bias, const float *state)
{
    static const char *const suffix[4] = {"_scale", "_B", "_mean", "_var"};
    const float *v[4] = {w, bias, state, state + l->C};
    char names[4][CNN_ONNX_NAME];
    const char *args[5] = {in};
    for (int i = 0; i < 4; i++) {
        args[i + 1] = onnx_name(names[i], out, suffix[i]);
        onnx_tensor(g, names[i], (const int64_t[]){l->C}, 1, v[i]);
    }
    const onnx_attr eps = {"epsilon", ONNX_FLOAT, .f = (float)BN_EPS};
    onnx_node(g, "BatchNormalization", args, 5, out, &eps, 1);
}

/* ONNX BatchNormalization in inference: scale, B, mean, var of one value per channel,
 * epsilon 1e-5 (as here). */
static int bn_onnx_read(const onnx_graph_in *g, const onnx_node_in *node, int last,
                        onnx_take *take, char *why, size_t len)
{
    (void)last;
    if (!onnx_is(node->op, "BatchNormalization"))
        return 0;
    static const char *const known[] = {"epsilon", "momentum", "training_mode", "spatial", NULL};
    const onnx_attr_in *eps = onnx_attr_of(node, "epsilon");
    int64_t training;
    if (onnx_check_attrs(node, known, why, len))
        return -1;
    if (eps && eps->f != (float)BN_EPS)
        return onnx_refuse(why, len, "epsilon %g: this bn has 1e-5", (double)eps->f);
    if (!onnx_int(node, "training_mode", 0, &training) || training)
        return onnx_refuse(why, len, "training mode is not read");
    const onnx_tensor_in *t[4];
    for (int i = 0; i < 4; i++) {
        t[i] = onnx_input_tensor(g, node, i + 1);
        if (!t[i] || t[i]->ndim != 1 || t[i]->dims[0] != t[0]->dims[0])
            return onnx_refuse(why, len, "scale, B, mean and var must be initializers of one "
                                         "value per channel");
    }
    take->weights = t[0], take->bias = t[1], take->state[0] = t[2], take->state[1] = t[3];
    return 1;
}

const cnn_kind cnn_kind_bn = {
    .name = "bn",
    .grammar = "bn",
    .flags = CNN_KIND_BATCH_STATS,
    .parse = cnn_kind_bare,
    .describe = cnn_kind_name_describe,
    .shape = bn_shape,
    .weights = bn_weights,
    .biases = bn_biases,
    .state = bn_state,
    .check_state = bn_check_state,
    .scratch = bn_scratch,
    .init = bn_init,
    .sums = bn_sums,
    .forward_sums = bn_forward_sums,
    .backward_sums = bn_backward_sums,
    .update_state = bn_update_state,
    .eval_affine = bn_eval_affine,
    .any_layout = bn_any_layout,
    .forward = bn_forward,
    .backward = bn_backward,
    .onnx_export = bn_onnx,
    .onnx_import = bn_onnx_read,
};
