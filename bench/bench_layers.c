/* bench_layers.c - each layer and direction of the post's network, reference engine
 * against BLAS engine, per image, at batch sizes 1, 16 and 64; then the layers of the
 * recipe network (two convs with bias, the second with its input gradient, relu, a
 * hidden dense layer), with the GFLOP/s the BLAS engine reaches.
 *
 * Every row first checks that the two engines agree on the data it times, then
 * times each engine: a warm-up, then REPEATS repeats of enough calls to last about
 * 20 ms each; the figure is the median time per image, with the spread
 * (max - min) / median. One thread (the layers themselves are single-threaded;
 * threads split a minibatch's samples, see bench_train).
 *
 * With --arch, any network instead: each layer's forward and backward within a
 * chunk's training step (the walk's own passes, timed), per image, with its GFLOP/s
 * against the SGEMM rate of the layer's own shape and of a large SGEMM.
 *
 * usage: bench_layers [--json FILE] [--quick]
 *        bench_layers --arch LAYERS [--input CxHxW] [--chunk N] [--quick] */
#include "cnn.h"
#include "post.h"
#include "kernels.h"

#include "bench.h"
#include "conv_ties.h"
#include "steps.h"
#include "config.h"

#include <cblas.h>
#include <math.h>
#if HAVE_OPENMP
#include <omp.h>
#endif

#define REPEATS 7
#define MAXB 64

typedef struct {
    const cnn_model *m;
    int B;
    cnn_pool_ties ties;
    const float *x;  /* [B][784] */
    cnn_acts a;      /* capacity MAXB, BLAS engine layout */
    cnn_acts r;      /* capacity MAXB, reference engine layout */
    float *grad;     /* [n_params] */
    float *dx;       /* [B][784] */
} ctx;

typedef void (*run_fn)(ctx *c, cnn_engine e);

static cnn_arch S; /* the post's network, set in main */
enum { K = 1352, N = 10, CONV = 8 * 676 };

static float *conv_of(ctx *c, cnn_engine e, int b)
{
    cnn_acts *a = e == CNN_ENGINE_BLAS ? &c->a : &c->r;
    return a->out[POST_CONV] + (size_t)b * a->stride[POST_CONV];
}

/* ---- the timed operations, one per row and engine ---- */

static void conv_fwd(ctx *c, cnn_engine e)
{
    for (int b = 0; b < c->B; b++)
        if (e == CNN_ENGINE_BLAS) { /* with the window tie step where this core needs it */
            cnn_conv3x3_forward(conv_of(c, e, b), c->a.cols[POST_CONV] + b * c->a.col_strides[POST_CONV], c->x + b * 784,
                                post_view(&c->m->arch, c->m->params).filters, 1, 28, 28, 8);
            if (c->a.window_ties[0])
                cnn_conv_window_ties(conv_of(c, e, b), c->a.cols[POST_CONV] + b * c->a.col_strides[POST_CONV], 9, 8, 169);
        } else
            cnn_conv3x3_forward_ref(conv_of(c, e, b), c->x + b * 784, post_view(&c->m->arch, c->m->params).filters, 1, 28, 28,
                                    8);
}

/* dout: the conv output itself stands in for an upstream gradient */
static void conv_wgrad(ctx *c, cnn_engine e)
{
    for (int b = 0; b < c->B; b++)
        if (e == CNN_ENGINE_BLAS)
            cnn_conv3x3_backward(NULL, c->grad, 1.0f, c->a.cols[POST_CONV] + b * c->a.col_strides[POST_CONV],
                                 conv_of(c, e, b), post_view(&c->m->arch, c->m->params).filters, 1, 28, 28, 8);
        else
            cnn_conv3x3_backward_ref(NULL, c->grad, 1.0f, conv_of(c, e, b), c->x + b * 784,
                                     post_view(&c->m->arch, c->m->params).filters, 1, 28, 28, 8);
}

static void conv_both(ctx *c, cnn_engine e)
{
    for (int b = 0; b < c->B; b++)
        if (e == CNN_ENGINE_BLAS) { /* the input gradient overwrites col: rebuild it */
            cnn_im2col3x3(c->a.cols[POST_CONV], c->x + b * 784, 1, 28, 28);
            cnn_conv3x3_backward(c->dx + b * 784, c->grad, 1.0f, c->a.cols[POST_CONV], conv_of(c, e, b),
                                 post_view(&c->m->arch, c->m->params).filters, 1, 28, 28, 8);
        } else {
            cnn_conv3x3_backward_ref(c->dx + b * 784, c->grad, 1.0f, conv_of(c, e, b),
                                     c->x + b * 784, post_view(&c->m->arch, c->m->params).filters, 1, 28, 28, 8);
        }
}

static void pool_fwd(ctx *c, cnn_engine e)
{
    cnn_acts *a = e == CNN_ENGINE_BLAS ? &c->a : &c->r;
    for (int b = 0; b < c->B; b++)
        if (e == CNN_ENGINE_BLAS)
            cnn_maxpool2_forward(a->out[POST_POOL] + b * K, a->args[POST_POOL] + b * K, conv_of(c, e, b), 8, 26, 26);
        else
            cnn_maxpool2_forward_ref(a->out[POST_POOL] + b * K, a->args[POST_POOL] + b * K, conv_of(c, e, b), 8, 26, 26);
}

static void pool_bwd(ctx *c, cnn_engine e)
{
    cnn_acts *a = e == CNN_ENGINE_BLAS ? &c->a : &c->r;
    for (int b = 0; b < c->B; b++)
        if (e == CNN_ENGINE_BLAS)
            cnn_maxpool2_backward(a->dout[POST_CONV], a->out[POST_POOL] + b * K, a->args[POST_POOL] + b * K, conv_of(c, e, b),
                                  a->out[POST_POOL] + b * K, c->ties, 8, 26, 26);
        else
            cnn_maxpool2_backward_ref(a->dout[POST_CONV], a->out[POST_POOL] + b * K, a->args[POST_POOL] + b * K,
                                      conv_of(c, e, b), a->out[POST_POOL] + b * K, c->ties, 8, 26, 26);
}

static void dense_fwd(ctx *c, cnn_engine e)
{
    cnn_acts *a = e == CNN_ENGINE_BLAS ? &c->a : &c->r;
    if (e == CNN_ENGINE_BLAS)
        cnn_dense_forward(a->out[POST_SOFTMAX], a->out[POST_POOL], post_view(&c->m->arch, c->m->params).W, post_view(&c->m->arch, c->m->params).b, c->B, K, N);
    else
        for (int b = 0; b < c->B; b++)
            cnn_dense_forward_ref(a->out[POST_SOFTMAX] + b * N, a->out[POST_POOL] + b * K, post_view(&c->m->arch, c->m->params).W, post_view(&c->m->arch, c->m->params).b, K, N);
    for (int b = 0; b < c->B; b++)
        cnn_softmax_xent(a->probs + b * N, a->dout[POST_SOFTMAX] + b * N, a->out[POST_SOFTMAX] + b * N, b % 10, N, 0.0f);
}

static void dense_bwd(ctx *c, cnn_engine e)
{
    cnn_acts *a = e == CNN_ENGINE_BLAS ? &c->a : &c->r;
    post_params g = post_view(&S, c->grad);
    if (e == CNN_ENGINE_BLAS)
        cnn_dense_backward(a->dout[POST_POOL], g.W, g.b, 1.0f, a->dout[POST_SOFTMAX], a->out[POST_POOL], post_view(&c->m->arch, c->m->params).W, c->B, K, N);
    else
        for (int b = 0; b < c->B; b++)
            cnn_dense_backward_ref(a->dout[POST_POOL] + b * K, g.W, g.b, 1.0f, a->dout[POST_SOFTMAX] + b * N,
                                   a->out[POST_POOL] + b * K, post_view(&c->m->arch, c->m->params).W, K, N);
}

/* ---- agreement checks ---- */

static double max_rel_diff(const float *x, const float *y, size_t n)
{
    double scale = 1e-30, d = 0.0;
    for (size_t i = 0; i < n; i++)
        scale = fmax(scale, fabs(y[i]));
    for (size_t i = 0; i < n; i++)
        d = fmax(d, fabs((double)x[i] - y[i]));
    return d / scale;
}

/* Run one row's operation on both engines from the same state and compare what it
 * produced; @return the largest difference relative to the array's scale. */
static double agree(ctx *c, int row, run_fn f)
{
    const cnn_model *m = c->m;
    float *gb = malloc(m->n_params * sizeof(float)), *dxb = malloc((size_t)c->B * 784 * 4);
    float *t1 = malloc((size_t)c->B * CONV * 4), *t2 = malloc((size_t)c->B * CONV * 4);
    double worst = 0.0;
    memset(c->grad, 0, m->n_params * sizeof(float));
    f(c, CNN_ENGINE_BLAS);
    memcpy(gb, c->grad, m->n_params * sizeof(float));
    memcpy(dxb, c->dx, (size_t)c->B * 784 * 4);
    memset(c->grad, 0, m->n_params * sizeof(float));
    f(c, CNN_ENGINE_REFERENCE);
    switch (row) {
    case 0: /* conv forward */
        for (int b = 0; b < c->B; b++) {
            cnn_blocks_to_nchw(t1 + (size_t)b * CONV, conv_of(c, CNN_ENGINE_BLAS, b), 8, 26, 26);
            memcpy(t2 + (size_t)b * CONV, conv_of(c, CNN_ENGINE_REFERENCE, b), CONV * 4);
        }
        worst = max_rel_diff(t1, t2, (size_t)c->B * CONV);
        break;
    case 1: /* conv filter gradient */
        worst = max_rel_diff(gb, c->grad, 72);
        break;
    case 2: /* conv filter and input gradient */
        worst = fmax(max_rel_diff(gb, c->grad, 72),
                     max_rel_diff(dxb, c->dx, (size_t)c->B * 784));
        break;
    case 3: /* pool forward */
        worst = max_rel_diff(c->a.out[POST_POOL], c->r.out[POST_POOL], (size_t)c->B * K);
        break;
    case 4: /* pool backward (last sample's, one dconv buffer) */
        cnn_blocks_to_nchw(t1, c->a.dout[POST_CONV], 8, 26, 26);
        worst = max_rel_diff(t1, c->r.dout[POST_CONV], CONV);
        break;
    case 5: /* dense + softmax forward */
        worst = max_rel_diff(c->a.probs, c->r.probs, (size_t)c->B * N);
        break;
    case 6: /* dense + softmax backward */
        worst = fmax(max_rel_diff(gb, c->grad, m->n_params),
                     max_rel_diff(c->a.dout[POST_POOL], c->r.dout[POST_POOL], (size_t)c->B * K));
        break;
    }
    free(gb), free(dxb), free(t1), free(t2);
    return worst;
}

/* Median seconds per call of f(st, arg): a warm-up, then REPEATS repeats of enough
 * calls to last about `budget` seconds each. */
typedef void (*call_fn)(void *st, int arg);
static bench_stat time_calls(call_fn f, void *st, int arg, double budget)
{
    f(st, arg); /* warm-up */
    const double t0 = bench_now();
    f(st, arg);
    const double once = fmax(bench_now() - t0, 1e-7);
    const int reps = (int)fmax(1.0, fmin(1e6, budget / once));
    double v[REPEATS];
    for (int r = 0; r < REPEATS; r++) {
        const double s = bench_now();
        for (int i = 0; i < reps; i++)
            f(st, arg);
        v[r] = (bench_now() - s) / reps;
    }
    return bench_stats(v, REPEATS);
}

typedef struct {
    ctx *c;
    run_fn f;
} row_call;

static void call_row(void *p, int e)
{
    row_call *r = p;
    r->f(r->c, (cnn_engine)e);
}

/* Median seconds per image of f on engine e. */
static bench_stat time_row(ctx *c, run_fn f, cnn_engine e, double budget)
{
    row_call r = {c, f};
    bench_stat st = time_calls(call_row, &r, (int)e, budget);
    st.median /= c->B;
    return st;
}

static const struct {
    const char *name;
    run_fn f;
    double tol; /* largest relative difference the engines may show */
} rows[] = {
    {"conv forward", conv_fwd, 1e-5},
    {"conv filter gradient", conv_wgrad, 1e-4},
    {"conv filter+input gradient", conv_both, 1e-4},
    {"pool forward", pool_fwd, 1e-6},
    {"pool backward", pool_bwd, 1e-6},
    {"dense+softmax forward", dense_fwd, 1e-5},
    {"dense+softmax backward", dense_bwd, 1e-5},
};
enum { NROWS = sizeof rows / sizeof *rows };

/* ---- the layers of the recipe network (conv32b,relu,pool,conv64b,relu,pool,
 * dense128,relu,softmax10), one image at a time as a thread runs them (the dense
 * layer over a chunk of 16), BLAS engine against the reference loops ---- */

typedef struct {
    int C, H, W, F; /* a conv: C x H x W in, F filters, bias, output into a pool */
    float *in, *filt, *bias, *out, *col, *dout, *dfilt, *dbias, *din;
    float *out_r, *dout_r; /* the reference layout [F][H-2][W-2] */
} rconv;

static void rconv_init(rconv *c, int C, int H, int W, int F, cnn_rng *rng)
{
    const int OH = H - 2, OW = W - 2;
    const size_t nin = (size_t)C * H * W, nf = (size_t)F * C * 9, nout = (size_t)F * OH * OW;
    memset(c, 0, sizeof *c);
    c->C = C, c->H = H, c->W = W, c->F = F;
    c->in = malloc(nin * 4), c->din = malloc(nin * 4), c->filt = malloc(nf * 4);
    c->dfilt = calloc(nf, 4), c->bias = malloc((size_t)F * 4), c->dbias = calloc((size_t)F, 4);
    c->out = malloc(nout * 4), c->out_r = malloc(nout * 4), c->dout = malloc(nout * 4);
    c->dout_r = malloc(nout * 4), c->col = malloc((size_t)C * 9 * OH * OW * 4);
    for (size_t i = 0; i < nin; i++)
        c->in[i] = (float)(cnn_rng_uniform(rng) - 0.5);
    for (size_t i = 0; i < nf; i++)
        c->filt[i] = (float)(0.1 * cnn_rng_normal(rng));
    for (int i = 0; i < F; i++)
        c->bias[i] = (float)(0.1 * cnn_rng_normal(rng));
    /* an upstream gradient in pool-block order, and the same as [F][H-2][W-2] */
    const size_t nb = (size_t)F * 4 * (OH / 2) * (OW / 2);
    for (size_t i = 0; i < nb; i++)
        c->dout[i] = (float)cnn_rng_normal(rng);
    cnn_blocks_to_nchw(c->dout_r, c->dout, F, OH, OW);
}

static void rconv_free(rconv *c)
{
    free(c->in), free(c->din), free(c->filt), free(c->dfilt), free(c->bias), free(c->dbias);
    free(c->out), free(c->out_r), free(c->dout), free(c->dout_r), free(c->col);
}

static void rconv_fwd(rconv *c, int blas)
{
    if (blas) {
        cnn_conv3x3_forward_ex(c->out, c->col, c->in, c->filt, c->bias, c->C, c->H, c->W, c->F, 1);
    } else {
        cnn_conv3x3_forward_ref(c->out_r, c->in, c->filt, c->C, c->H, c->W, c->F);
        cnn_conv_bias_forward_ref(c->out_r, c->bias, c->F, (c->H - 2) * (c->W - 2));
    }
}

static void rconv_bwd(rconv *c, int blas, int input)
{
    if (blas) {
        cnn_im2col3x3(c->col, c->in, c->C, c->H, c->W); /* as the forward leaves it */
        cnn_conv3x3_backward_ex(input ? c->din : NULL, c->dfilt, c->dbias, 1.0f, c->col, c->dout,
                                c->filt, c->C, c->H, c->W, c->F, 1);
    } else {
        cnn_conv3x3_backward_ref(input ? c->din : NULL, c->dfilt, 1.0f, c->dout_r, c->in, c->filt,
                                 c->C, c->H, c->W, c->F);
        cnn_conv_bias_backward_ref(c->dbias, 1.0f, c->dout_r, c->F, (c->H - 2) * (c->W - 2));
    }
}

typedef struct {
    rconv *c;
    int input;
} rconv_job;
static void job_fwd(void *p, int blas) { rconv_fwd(((rconv_job *)p)->c, blas); }
static void job_bwd(void *p, int blas)
{
    rconv_job *j = p;
    rconv_bwd(j->c, blas, j->input);
}

typedef struct {
    float *x, *W, *b, *out, *dout, *dW, *db, *dx;
    int B, K, N;
} rdense;
static void job_dense(void *p, int blas)
{
    rdense *d = p;
    if (blas) {
        cnn_dense_forward(d->out, d->x, d->W, d->b, d->B, d->K, d->N);
        cnn_dense_backward(d->dx, d->dW, d->db, 1.0f, d->dout, d->x, d->W, d->B, d->K, d->N);
    } else {
        for (int r = 0; r < d->B; r++) {
            cnn_dense_forward_ref(d->out + (size_t)r * d->N, d->x + (size_t)r * d->K, d->W, d->b,
                                  d->K, d->N);
            cnn_dense_backward_ref(d->dx + (size_t)r * d->K, d->dW, d->db, 1.0f,
                                   d->dout + (size_t)r * d->N, d->x + (size_t)r * d->K, d->W,
                                   d->K, d->N);
        }
    }
}

typedef struct {
    float *in, *out, *dout, *din;
    size_t n;
} rrelu;
static void job_relu(void *p, int blas)
{
    rrelu *r = p;
    (void)blas; /* one implementation */
    cnn_relu_forward(r->out, r->in, r->n);
    cnn_relu_backward(r->din, r->dout, r->out, r->n);
}

/* The engines must agree on a conv row before it is timed. */
static double rconv_agree(rconv *c, int input)
{
    const int OH = c->H - 2, OW = c->W - 2;
    const size_t nf = (size_t)c->F * c->C * 9, nin = (size_t)c->C * c->H * c->W;
    const size_t nout = (size_t)c->F * OH * OW;
    float *o = malloc(nout * 4), *df = malloc(nf * 4), *db = malloc((size_t)c->F * 4);
    float *dx = malloc(nin * 4);
    rconv_fwd(c, 1);
    rconv_fwd(c, 0);
    cnn_blocks_to_nchw(o, c->out, c->F, OH, OW);
    for (int f = 0; f < c->F; f++) /* positions no pool block covers: not computed */
        for (int i = 0; i < OH; i++)
            for (int j = 0; j < OW; j++)
                if (i >= OH / 2 * 2 || j >= OW / 2 * 2)
                    c->out_r[((size_t)f * OH + i) * OW + j] = 0;
    double d = max_rel_diff(o, c->out_r, nout);
    memset(c->dfilt, 0, nf * 4), memset(c->dbias, 0, (size_t)c->F * 4);
    rconv_bwd(c, 1, input);
    memcpy(df, c->dfilt, nf * 4), memcpy(db, c->dbias, (size_t)c->F * 4), memcpy(dx, c->din, nin * 4);
    memset(c->dfilt, 0, nf * 4), memset(c->dbias, 0, (size_t)c->F * 4);
    rconv_bwd(c, 0, input);
    d = fmax(d, fmax(max_rel_diff(df, c->dfilt, nf), max_rel_diff(db, c->dbias, (size_t)c->F)));
    if (input)
        d = fmax(d, max_rel_diff(dx, c->din, nin));
    free(o), free(df), free(db), free(dx);
    return d;
}

static void recipe_layers(double budget, cnn_rng *rng)
{
    rconv c1, c2;
    rconv_init(&c1, 1, 28, 28, 32, rng);
    rconv_init(&c2, 32, 13, 13, 64, rng);
    rconv_job j1f = {&c1, 0}, j1b = {&c1, 0}, j2f = {&c2, 0}, j2w = {&c2, 0}, j2b = {&c2, 1};
    enum { B = 16, K1 = 1600, N1 = 128 };
    rdense d = {malloc(B * K1 * 4), malloc(N1 * K1 * 4), calloc(N1, 4), malloc(B * N1 * 4),
                malloc(B * N1 * 4), calloc(N1 * K1, 4), calloc(N1, 4), malloc(B * K1 * 4), B, K1,
                N1};
    for (int i = 0; i < B * K1; i++)
        d.x[i] = (float)cnn_rng_uniform(rng);
    for (int i = 0; i < N1 * K1; i++)
        d.W[i] = (float)(0.03 * cnn_rng_normal(rng));
    for (int i = 0; i < B * N1; i++)
        d.dout[i] = (float)cnn_rng_normal(rng);
    rrelu r = {c1.out, malloc(32 * 676 * 4), c1.dout, malloc(32 * 676 * 4), 32 * 676};
    static const char *const names[] = {
        "conv1 1->32 forward (+bias)", "conv1 filter+bias gradient", "conv2 32->64 forward",
        "conv2 filter+bias gradient", "conv2 filter+input gradient", "relu fwd+bwd 32x26x26",
        "dense 1600->128 fwd+bwd (/16)"};
    void *jobs[] = {&j1f, &j1b, &j2f, &j2w, &j2b, &r, &d};
    call_fn fns[] = {job_fwd, job_bwd, job_fwd, job_bwd, job_bwd, job_relu, job_dense};
    const double per[] = {1, 1, 1, 1, 1, 1, B};
    const double flops[] = {2.0 * 32 * 9 * 676, 2.0 * 32 * 9 * 676, 2.0 * 64 * 288 * 121,
                            2.0 * 64 * 288 * 121, 4.0 * 64 * 288 * 121, 0, 6.0 * K1 * N1};
    printf("\nthe recipe network's layers, per image, one thread; median of %d repeats\n",
           REPEATS);
    printf("%-32s %14s %14s %8s %10s\n", "layer", "reference", "blas", "ratio", "GFLOP/s");
    for (int k = 0; k < 7; k++) {
        if (k < 5) {
            const double dd = rconv_agree(((rconv_job *)jobs[k])->c, ((rconv_job *)jobs[k])->input);
            if (!(dd <= 1e-4)) {
                printf("%-32s ENGINES DISAGREE: relative difference %.3g\n", names[k], dd);
                continue;
            }
        }
        const bench_stat sb = time_calls(fns[k], jobs[k], 1, budget);
        const bench_stat sr = k == 5 ? sb : time_calls(fns[k], jobs[k], 0, budget);
        const double tb = sb.median / per[k], tr = sr.median / per[k];
        printf("%-32s %11.2f us %11.2f us %7.1fx %10.1f\n", names[k], tr * 1e6, tb * 1e6, tr / tb,
               flops[k] / tb / 1e9);
    }
    rconv_free(&c1), rconv_free(&c2);
    free(d.x), free(d.W), free(d.b), free(d.out), free(d.dout), free(d.dW), free(d.db), free(d.dx);
    free(r.out), free(r.din);
}

/* ---- any network: each layer's share of a chunk's training step ---- */

/* One SGEMM of the shape, C = A . B (+ C) with A m x k, B k x n: a callable. */
typedef struct {
    int m, n, k;
    float *a, *b, *c;
} gemm_job;

static void run_gemm(void *p, int arg)
{
    const gemm_job *g = p;
    (void)arg;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, g->m, g->n, g->k, 1.0f, g->a, g->k,
                g->b, g->n, 0.0f, g->c, g->n);
}

/* GFLOP/s of SGEMMs of m x n x k on this thread. */
static double gemm_rate(int m, int n, int k, double budget, cnn_rng *rng)
{
    gemm_job g = {m, n, k, malloc((size_t)m * k * 4), malloc((size_t)k * n * 4),
                  malloc((size_t)m * n * 4)};
    for (size_t i = 0; i < (size_t)m * k; i++)
        g.a[i] = (float)cnn_rng_uniform(rng);
    for (size_t i = 0; i < (size_t)k * n; i++)
        g.b[i] = (float)cnn_rng_uniform(rng);
    const bench_stat st = time_calls(run_gemm, &g, 0, budget);
    free(g.a), free(g.b), free(g.c);
    return 2.0 * m * n * k / st.median / 1e9;
}

/* The SGEMM rate of a layer's own shape (its forward's: the backward's two have the
 * same sizes, transposed), or 0 for a layer without one. */
static double layer_gemm_rate(const cnn_layer *l, int nb, double budget, cnn_rng *rng)
{
    if (l->kind == CNN_LAYER_CONV) {
        const int taps = l->C * l->kernel * l->kernel;
        return gemm_rate(l->units, cnn_conv_group(l, nb) * cnn_conv_positions(l), taps, budget,
                         rng);
    }
    if (l->kind == CNN_LAYER_DENSE || l->kind == CNN_LAYER_SOFTMAX)
        return gemm_rate(nb, l->units, l->C * l->H * l->W, budget, rng);
    return 0.0;
}

typedef struct {
    const cnn_model *m;
    cnn_acts *a;
    float *grad, *x, *loss;
    uint8_t *labels;
    int nb;
    double *times;
} step_job;

static void run_step(void *p, int arg)
{
    step_job *j = p;
    (void)arg;
    cnn_chunk_grad_timed(j->m, j->a, j->grad, j->x, j->labels, j->nb, CNN_ENGINE_BLAS,
                         CNN_TIES_SINGLE, j->loss, j->times);
}

/* Each layer's forward and backward over chunks of nb images of network desc on C x H
 * x W inputs, one thread: time per image, GFLOP/s, and the fraction of the SGEMM rate
 * of the layer's own shape and of a large SGEMM. @return 0, or 1 if it cannot run. */
static int network_profile(const char *desc, int C, int H, int W, int nb, double budget,
                           cnn_rng *rng)
{
    cnn_arch arch;
    char err[512];
    if (cnn_arch_build(&arch, desc, C, H, W, err, sizeof err) != CNN_OK) {
        fprintf(stderr, "bench_layers: --arch: %s\n", err);
        return 1;
    }
    cnn_model m;
    cnn_acts a;
    if (cnn_model_init(&m, &arch, rng) != CNN_OK || cnn_acts_alloc(&a, &arch, nb) != CNN_OK) {
        fprintf(stderr, "bench_layers: out of memory\n");
        return 1;
    }
    const size_t in = (size_t)C * H * W;
    step_job j = {&m, &a, calloc(m.n_params, 4), malloc(nb * in * 4), malloc(nb * 4),
                  malloc((size_t)nb), nb, calloc(2 * (size_t)arch.n, sizeof(double))};
    for (size_t i = 0; i < nb * in; i++)
        j.x[i] = (float)(cnn_rng_uniform(rng) - 0.5);
    for (int b = 0; b < nb; b++)
        j.labels[b] = (uint8_t)cnn_rng_below(rng, (uint64_t)arch.classes);
    const bench_stat whole = time_calls(run_step, &j, 0, budget); /* the whole chunk */
    memset(j.times, 0, 2 * (size_t)arch.n * sizeof(double));
    const int reps = (int)fmax(3.0, 0.5 / fmax(whole.median, 1e-6));
    for (int r = 0; r < reps; r++)
        run_step(&j, 0);
    const double peak = gemm_rate(1024, 1024, 1024, budget, rng);
    printf("\n%s on %dx%dx%d inputs, chunks of %d images, one thread: per image\n", desc, C, H,
           W, nb);
    printf("large SGEMM (1024^3): %.1f GFLOP/s\n", peak);
    printf("%-3s %-12s %10s %10s %9s %11s %9s %9s\n", "", "layer", "forward", "backward",
           "GFLOP/s", "own SGEMM", "of own", "of large");
    int first_param = arch.n;
    for (int l = arch.n - 1; l >= 0; l--)
        if (arch.layer[l].n_weights)
            first_param = l;
    double flops_all = 0.0, t_all = 0.0;
    for (int l = 0; l < arch.n; l++) {
        const cnn_layer *L = &arch.layer[l];
        char name[64];
        cnn_arch arch1 = arch;
        arch1.n = 1, arch1.layer[0] = *L;
        cnn_arch_describe(&arch1, name, sizeof name);
        const double tf = j.times[l] / reps / nb, tb = j.times[arch.n + l] / reps / nb;
        const double pass = cnn_arch_train_flops(&arch1) / 2.0; /* one forward */
        const double flops = pass * (L->n_weights ? (l > first_param ? 3 : 2) : 0);
        flops_all += flops, t_all += tf + tb;
        printf("%-3d %-12s %7.2f us %7.2f us", l, name, tf * 1e6, tb * 1e6);
        if (flops > 0) {
            const double rate = flops / (tf + tb) / 1e9, own = layer_gemm_rate(L, nb, budget, rng);
            printf(" %9.1f %11.1f %8.0f%% %8.0f%%\n", rate, own, 100 * rate / own,
                   100 * rate / peak);
        } else {
            printf("\n");
        }
    }
    const double step = whole.median / nb;
    printf("the whole chunk: %.2f us per image (layers %.2f), %.1f GFLOP/s, %.0f%% of the large "
           "SGEMM's rate\n", step * 1e6, t_all * 1e6, flops_all / step / 1e9,
           100 * flops_all / step / 1e9 / peak);
    free(j.grad), free(j.x), free(j.loss), free(j.labels), free(j.times);
    cnn_acts_free(&a);
    cnn_model_free(&m);
    return 0;
}

int main(int argc, char **argv)
{
    cnn_core_report core;
    cnn_core_autoselect(argv, &core); /* may restart the program on a better core */
    const char *json = NULL, *arch = NULL;
    double budget = 0.02;
    int C = 1, H = 28, W = 28, chunk = CNN_CHUNK_MAX;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--json") == 0 && i + 1 < argc)
            json = argv[++i];
        else if (strcmp(argv[i], "--quick") == 0)
            budget = 0.002;
        else if (strcmp(argv[i], "--arch") == 0 && i + 1 < argc)
            arch = argv[++i];
        else if (strcmp(argv[i], "--input") == 0 && i + 1 < argc &&
                 sscanf(argv[++i], "%dx%dx%d", &C, &H, &W) == 3 && C > 0 && H > 0 && W > 0)
            continue;
        else if (strcmp(argv[i], "--chunk") == 0 && i + 1 < argc &&
                 (chunk = atoi(argv[++i])) >= 1 && chunk <= CNN_CHUNK_MAX)
            continue;
        else {
            fprintf(stderr, "usage: bench_layers [--json FILE] [--quick] | --arch LAYERS "
                    "[--input CxHxW] [--chunk 1..%d]\n", CNN_CHUNK_MAX);
            return 2;
        }
    }
    if (json && !bench_out_ok("bench_layers", json))
        return 1;
    cnn_blas_setup();
#if HAVE_OPENMP
    omp_set_num_threads(1); /* one core: the layers are timed as a thread runs them */
#endif
    bench_machine mach;
    bench_machine_read(&mach, &core);
    printf("machine: %s, %d cores\nBLAS: %s\n", mach.cpu, mach.cores, mach.blas);
    if (core.warning[0])
        printf("warning: %s\n", core.warning);

    cnn_rng rng;
    cnn_rng_seed(&rng, 1);
    if (arch)
        return network_profile(arch, C, H, W, chunk, budget, &rng);
    cnn_model m;
    S = post_arch_mnist();
    cnn_model_init(&m, &S, &rng);
    uint8_t *pix = malloc(MAXB * 784), lab[MAXB];
    float *x = malloc(MAXB * 784 * sizeof(float));
    cnn_synth_digits(pix, lab, MAXB, &rng);
    for (int i = 0; i < MAXB * 784; i++) /* a flat background, as MNIST: pool ties */
        if (pix[i] < 64)
            pix[i] = 0;
    cnn_pixels_to_float(x, pix, MAXB * 784);

    ctx c = {.m = &m, .x = x, .ties = CNN_TIES_SINGLE};
    cnn_acts_alloc(&c.a, &S, MAXB);
    cnn_acts_alloc(&c.r, &S, MAXB);
    c.grad = calloc(m.n_params, sizeof(float));
    c.dx = malloc(MAXB * 784 * sizeof(float));

    static const int batches[] = {1, 16, 64};
    double res[3][NROWS][2];
    bench_stat spread[3][NROWS][2] = {{{{0}}}};
    for (int i = 0; i < 3 * NROWS * 2; i++)
        (&res[0][0][0])[i] = NAN; /* stays NaN where the engines disagree */
    int ok = 1;
    printf("\nper image, one thread; median of %d repeats (spread)\n", REPEATS);
    printf("%-28s %5s %22s %22s %8s\n", "layer", "batch", "reference", "blas", "ratio");
    for (int bi = 0; bi < 3; bi++) {
        c.B = batches[bi];
        for (int r = 0; r < NROWS; r++) {
            /* set up the state every row starts from: a forward pass */
            conv_fwd(&c, CNN_ENGINE_BLAS), conv_fwd(&c, CNN_ENGINE_REFERENCE);
            pool_fwd(&c, CNN_ENGINE_BLAS), pool_fwd(&c, CNN_ENGINE_REFERENCE);
            dense_fwd(&c, CNN_ENGINE_BLAS), dense_fwd(&c, CNN_ENGINE_REFERENCE);
            const double d = agree(&c, r, rows[r].f);
            if (!(d <= rows[r].tol)) {
                printf("%-28s %5d   ENGINES DISAGREE: relative difference %.3g > %.1g\n",
                       rows[r].name, c.B, d, rows[r].tol);
                ok = 0;
                continue;
            }
            for (int e = 0; e < 2; e++) {
                const cnn_engine en = e ? CNN_ENGINE_BLAS : CNN_ENGINE_REFERENCE;
                spread[bi][r][e] = time_row(&c, rows[r].f, en, budget);
                res[bi][r][e] = spread[bi][r][e].median;
            }
            printf("%-28s %5d %12.3f us (%4.0f%%) %12.3f us (%4.0f%%) %7.1fx\n", rows[r].name,
                   c.B, res[bi][r][0] * 1e6, 100 * spread[bi][r][0].spread, res[bi][r][1] * 1e6,
                   100 * spread[bi][r][1].spread, res[bi][r][0] / res[bi][r][1]);
        }
    }
    {   /* the window tie step alone, whether or not this core needs it */
        double v[REPEATS];
        const int reps = 2000;
        for (int r = 0; r < REPEATS; r++) {
            const double s = bench_now();
            for (int i = 0; i < reps; i++)
                cnn_conv_window_ties(c.a.out[POST_CONV], c.a.cols[POST_CONV], 9, 8, 169);
            v[r] = (bench_now() - s) / reps;
        }
        bench_stat u = bench_stats(v, REPEATS);
        printf("%-28s %5s %12.3f us per image (%.0f%%): %s on this core, in the conv forward "
               "above %s\n", "conv window tie step", "-", u.median * 1e6, 100 * u.spread,
               c.a.window_ties[0] ? "needed" : "not needed",
               c.a.window_ties[0] ? "(the walker runs it)" : "(not run)");
    }
    recipe_layers(budget, &rng);

    /* The SGD update is the same code for both engines: params -= lr/n * grad over all
     * 13,602 parameters, once per minibatch (at batch 1 the BLAS and reference
     * backward apply it in place instead). */
    {
        float *p = m.params;
        double v[REPEATS];
        const int reps = 2000;
        for (int r = 0; r < REPEATS; r++) {
            const double s = bench_now();
            for (int i = 0; i < reps; i++) {
                for (size_t k = 0; k < m.n_params; k++)
                    p[k] -= 1e-30f * c.grad[k];
                __asm__ volatile("" : : "r"(p) : "memory");
            }
            v[r] = (bench_now() - s) / reps;
        }
        bench_stat u = bench_stats(v, REPEATS);
        printf("%-28s %5s %12.3f us per step (%.0f%%): per image %.3f us at batch 16, %.3f "
               "at 64\n", "SGD update (both engines)", "-", u.median * 1e6, 100 * u.spread,
               u.median * 1e6 / 16, u.median * 1e6 / 64);
    }

    if (json) {
        bench_out o;
        FILE *f = bench_out_open(&o);
        if (!f) {
            fprintf(stderr, "bench_layers: out of memory for %s\n", json);
            return 1;
        }
        fprintf(f, "{\"tool\": \"cnn-bench-layers\", \"machine\": ");
        bench_json_machine(f, &mach, CNN_BUILD_FLAGS);
        fprintf(f, ",\n \"layers\": [");
        int first = 1;
        for (int bi = 0; bi < 3; bi++)
            for (int r = 0; r < NROWS; r++) {
                if (isnan(res[bi][r][0]) || isnan(res[bi][r][1]))
                    continue;
                fprintf(f, "%s\n  {\"layer\": \"%s\", \"batch\": %d, \"reference_us\": %.4f, "
                        "\"blas_us\": %.4f, \"ratio\": %.3f, \"reference_spread\": %.3f, "
                        "\"blas_spread\": %.3f}", first ? "" : ",", rows[r].name, batches[bi],
                        res[bi][r][0] * 1e6, res[bi][r][1] * 1e6, res[bi][r][0] / res[bi][r][1],
                        spread[bi][r][0].spread, spread[bi][r][1].spread);
                first = 0;
            }
        fprintf(f, "\n]}\n");
        if (!bench_out_close(&o, "bench_layers", json))
            return 1;
        printf("\nwrote %s\n", json);
    }
    cnn_acts_free(&c.a);
    cnn_acts_free(&c.r);
    free(c.grad), free(c.dx), free(x), free(pix);
    cnn_model_free(&m);
    return ok ? 0 : 1;
}
