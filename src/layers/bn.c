/* bn.c - the bn kind: batch normalization per channel, as PyTorch's BatchNorm2d (and
 * BatchNorm1d after a dense layer, whose C x 1 x 1 output has one value per channel):
 *   training    y = gamma * (x - mean) / sqrt(var + eps) + beta, mean and biased var
 *               of the channel over the whole minibatch (N x H x W values)
 *   evaluation  the same with the running mean and running (unbiased) variance
 * eps 1e-5, momentum 0.1, gamma initialised to 1 and beta to 0, running mean 0 and
 * running variance 1. The minibatch's sums come from the step (CNN_KIND_BATCH_STATS):
 * every chunk adds its samples' shares (forward_sums, backward_sums), the step adds the
 * chunks in chunk order and hands the totals to every pass, so no result depends on
 * the threads. Sums in double; each output in float. Both engines run these loops. */
#include "cnn.h"

#include "layer.h"

#include <math.h>

#define BN_EPS 1e-5
#define BN_MOMENTUM 0.1

/* Sums, 4C doubles: sum x [C], sum x^2 [C] (forward), sum dy [C], sum dy * xhat [C]
 * (backward). */
static size_t bn_sums(const cnn_layer *l) { return 4 * (size_t)l->C; }
static size_t bn_weights(const cnn_layer *l) { return (size_t)l->C; } /* gamma */
static size_t bn_biases(const cnn_layer *l) { return (size_t)l->C; }  /* beta */
static size_t bn_state(const cnn_layer *l) { return 2 * (size_t)l->C; }
static double bn_fan_in(const cnn_layer *l) { return (double)l->C; } /* unused: bn_init */

static void bn_init(const cnn_layer *l, float *gamma, float *state)
{
    for (int c = 0; c < l->C; c++)
        gamma[c] = 1.0f, state[c] = 0.0f, state[l->C + c] = 1.0f;
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
        *mean = (float)m, *istd = (float)(1.0 / sqrt(var + BN_EPS));
    } else {
        *mean = p->state[c], *istd = (float)(1.0 / sqrt((double)p->state[C + c] + BN_EPS));
    }
}

static size_t plane_of(const cnn_layer *l) { return (size_t)l->H * l->W; }

static void bn_forward_sums(const cnn_pass *p, double *acc)
{
    const int C = p->l->C;
    const size_t plane = plane_of(p->l);
    for (int c = 0; c < C; c++) {
        const float *x = p->in + (size_t)c * plane;
        double s = 0.0, ss = 0.0;
        for (size_t i = 0; i < plane; i++)
            s += x[i], ss += (double)x[i] * x[i];
        acc[c] += s, acc[C + c] += ss;
    }
}

static void bn_forward(const cnn_pass *p)
{
    const size_t plane = plane_of(p->l);
    const float *gamma = p->w, *beta = p->bias;
    for (int c = 0; c < p->l->C; c++) {
        float mean, istd;
        channel_stats(p, c, &mean, &istd);
        const float *x = p->in + (size_t)c * plane;
        float *y = p->out + (size_t)c * plane;
        for (size_t i = 0; i < plane; i++)
            y[i] = gamma[c] * ((x[i] - mean) * istd) + beta[c];
    }
}

static void bn_backward_sums(const cnn_pass *p, double *acc)
{
    const int C = p->l->C;
    const size_t plane = plane_of(p->l);
    for (int c = 0; c < C; c++) {
        float mean, istd;
        channel_stats(p, c, &mean, &istd);
        const float *x = p->in + (size_t)c * plane, *dy = p->dout + (size_t)c * plane;
        double s = 0.0, sx = 0.0;
        for (size_t i = 0; i < plane; i++)
            s += dy[i], sx += (double)dy[i] * ((x[i] - mean) * istd);
        acc[2 * C + c] += s, acc[3 * C + c] += sx;
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
        double s = 0.0, sx = 0.0;
        for (size_t i = 0; i < plane; i++)
            s += dy[i], sx += (double)dy[i] * ((x[i] - mean) * istd);
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
        const float mean_dy = (float)(p->batch_sums[2 * C + c] / p->batch_count);
        const float mean_dyx = (float)(p->batch_sums[3 * C + c] / p->batch_count);
        for (size_t i = 0; i < plane; i++)
            dx[i] = scale * (dy[i] - mean_dy - ((x[i] - mean) * istd) * mean_dyx);
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

const cnn_kind cnn_kind_bn = {
    .name = "bn",
    .grammar = "bn",
    .flags = CNN_KIND_BATCH_STATS,
    .parse = cnn_kind_bare,
    .describe = cnn_kind_name_describe,
    .shape = bn_shape,
    .weights = bn_weights,
    .biases = bn_biases,
    .fan_in = bn_fan_in,
    .state = bn_state,
    .init = bn_init,
    .sums = bn_sums,
    .forward_sums = bn_forward_sums,
    .backward_sums = bn_backward_sums,
    .update_state = bn_update_state,
    .forward = bn_forward,
    .backward = bn_backward,
};
