/* test_bn.c - batch normalization (bn) in training and evaluation, against an
 * independent float64 forward of whole minibatches written here from the definition
 * (PyTorch's BatchNorm: the minibatch's mean and biased variance, eps 1e-5; running
 * mean and unbiased variance with momentum 0.1):
 *   - the losses of a minibatch cut into uneven chunks, and every parameter's gradient
 *     (gamma, beta and the layers below and above each bn, so its input gradient too)
 *     against central differences of the float64 minibatch loss, both engines;
 *   - the running statistics after steps, and evaluation with them;
 *   - the weights and running statistics bit-identical for 1, 2 and 3 threads at batch
 *     sizes that do not divide into equal chunks;
 *   - batch 1 refused; a model with bn saved and loaded with its state, and refused
 *     with a negative running variance. */
#include "cnn.h"
#include "steps.h"

#include "check.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define EPS 1e-5

/* ---------------------------------------------------------------- float64 forward */

typedef struct dbatch {
    const cnn_arch *n;
    double *p;             /* laid out like cnn_model.params */
    const double *x;       /* [B][C][H][W] */
    const uint8_t *labels; /* [B] */
    int B;
    int train;             /* 1: bn with the minibatch's statistics; 0: running ones */
    const float *state;    /* the running statistics (evaluation) */
    double *mean, *var;    /* [layer][channel], what training saw (may be NULL) */
} dbatch;

static size_t largest(const cnn_arch *n)
{
    size_t cap = (size_t)n->C * n->H * n->W;
    for (int l = 0; l < n->n; l++)
        cap = cap > cnn_layer_out_len(&n->layer[l]) ? cap : cnn_layer_out_len(&n->layer[l]);
    return cap;
}

/* One layer other than bn for one sample: a (input) to b (output). */
static void layer_one(const cnn_layer *L, const double *w, const double *bias, const double *a,
                      double *b)
{
    const size_t K = (size_t)L->C * L->H * L->W;
    for (int o = 0; o < L->OC; o++)
        for (int i = 0; i < L->OH; i++)
            for (int j = 0; j < L->OW; j++) {
                double v = 0;
                if (L->kind == CNN_LAYER_CONV) {
                    v = bias ? bias[o] : 0;
                    for (int c = 0; c < L->C; c++)
                        for (int ki = 0; ki < L->kernel; ki++)
                            for (int kj = 0; kj < L->kernel; kj++) {
                                const int y = i * L->stride - L->pad + ki;
                                const int x = j * L->stride - L->pad + kj;
                                if (y >= 0 && y < L->H && x >= 0 && x < L->W)
                                    v += w[(((size_t)o * L->C + c) * L->kernel + ki) *
                                               L->kernel + kj] *
                                         a[((size_t)c * L->H + y) * L->W + x];
                            }
                } else if (L->kind == CNN_LAYER_RELU) {
                    const double u = a[((size_t)o * L->H + i) * L->W + j];
                    v = u > 0 ? u : 0;
                } else if (L->kind == CNN_LAYER_POOL) {
                    v = -INFINITY;
                    for (int di = 0; di < 2; di++)
                        for (int dj = 0; dj < 2; dj++)
                            v = fmax(v, a[((size_t)o * L->H + 2 * i + di) * L->W + 2 * j + dj]);
                } else { /* dense, softmax */
                    v = bias[o];
                    for (size_t k = 0; k < K; k++)
                        v += w[(size_t)o * K + k] * a[k];
                }
                b[((size_t)o * L->OH + i) * L->OW + j] = v;
            }
}

/* bn over the whole minibatch, act [B][C][plane], in place. */
static void bn_batch(const dbatch *d, int l, double *act, size_t stride)
{
    const cnn_layer *L = &d->n->layer[l];
    const size_t plane = (size_t)L->H * L->W;
    const double *gamma = d->p + L->weights_at, *beta = d->p + L->bias_at;
    for (int c = 0; c < L->C; c++) {
        double mean = 0, var = 0;
        if (d->train) {
            for (int b = 0; b < d->B; b++)
                for (size_t k = 0; k < plane; k++)
                    mean += act[b * stride + c * plane + k];
            mean /= (double)d->B * plane;
            for (int b = 0; b < d->B; b++)
                for (size_t k = 0; k < plane; k++) {
                    const double u = act[b * stride + c * plane + k] - mean;
                    var += u * u;
                }
            var /= (double)d->B * plane;
            if (d->mean)
                d->mean[l * 64 + c] = mean, d->var[l * 64 + c] = var;
        } else {
            mean = d->state[L->state_at + c], var = d->state[L->state_at + L->C + c];
        }
        for (int b = 0; b < d->B; b++)
            for (size_t k = 0; k < plane; k++) {
                double *v = &act[b * stride + c * plane + k];
                *v = gamma[c] * (*v - mean) / sqrt(var + EPS) + beta[c];
            }
    }
}

/* The minibatch's summed loss; each sample's into loss[b] when not NULL. */
static double dbatch_loss_each(const dbatch *d, double *loss)
{
    const cnn_arch *n = d->n;
    const size_t cap = largest(n), in = (size_t)n->C * n->H * n->W;
    double *a = malloc((size_t)d->B * cap * sizeof *a), *b = malloc((size_t)d->B * cap * sizeof *b);
    for (int s = 0; s < d->B; s++)
        memcpy(a + s * cap, d->x + s * in, in * sizeof *a);
    for (int l = 0; l < n->n; l++) {
        const cnn_layer *L = &n->layer[l];
        if (L->kind == CNN_LAYER_BN) {
            bn_batch(d, l, a, cap);
            continue;
        }
        for (int s = 0; s < d->B; s++)
            layer_one(L, d->p + L->weights_at, L->n_bias ? d->p + L->bias_at : NULL, a + s * cap,
                      b + s * cap);
        double *t = a;
        a = b, b = t;
    }
    double total = 0;
    for (int s = 0; s < d->B; s++) {
        const double *o = a + s * cap;
        double mx = -INFINITY, sum = 0;
        for (int c = 0; c < n->classes; c++)
            mx = fmax(mx, o[c]);
        for (int c = 0; c < n->classes; c++)
            sum += exp(o[c] - mx);
        const double ls = log(sum) - (o[d->labels[s]] - mx);
        if (loss)
            loss[s] = ls;
        total += ls;
    }
    free(a), free(b);
    return total;
}

static double dbatch_loss(void *ctx) { return dbatch_loss_each(ctx, NULL); }

/* ---------------------------------------------------------------- the engine */

typedef struct setup {
    cnn_arch arch;
    cnn_model m;
    uint8_t *px, *labels;
    int B;
} setup;

static int make(setup *s, const char *desc, int C, int H, int W, int B, uint64_t seed)
{
    char err[256] = "";
    if (cnn_arch_build(&s->arch, desc, C, H, W, err, sizeof err) != CNN_OK) {
        tap_ok(0, "%s builds: %s", desc, err);
        return 0;
    }
    cnn_rng rng;
    cnn_rng_seed(&rng, seed);
    cnn_model_init(&s->m, &s->arch, &rng);
    for (int l = 0; l < s->arch.n; l++) { /* gammas and betas away from 1 and 0 */
        const cnn_layer *L = &s->arch.layer[l];
        if (L->kind != CNN_LAYER_BN)
            continue;
        for (int c = 0; c < L->C; c++) {
            s->m.params[L->weights_at + c] = (float)(0.6 + 0.8 * cnn_rng_uniform(&rng));
            s->m.params[L->bias_at + c] = (float)(0.4 * cnn_rng_uniform(&rng) - 0.2);
        }
    }
    const size_t in = (size_t)C * H * W;
    s->B = B;
    s->px = malloc((size_t)B * in);
    s->labels = malloc((size_t)B);
    for (size_t i = 0; i < (size_t)B * in; i++)
        s->px[i] = (uint8_t)cnn_rng_below(&rng, 256);
    for (int b = 0; b < B; b++)
        s->labels[b] = (uint8_t)cnn_rng_below(&rng, (uint64_t)s->arch.classes);
    return 1;
}

static void unmake(setup *s)
{
    cnn_model_free(&s->m);
    free(s->px), free(s->labels);
}

static cnn_trainer *trainer(const setup *s, int threads, cnn_engine e, int batch)
{
    cnn_train_config c = cnn_train_config_default();
    c.batch = batch, c.threads = threads, c.engine = e, c.lr = 0.05f, c.momentum = 0.9f;
    cnn_trainer *t = NULL;
    cnn_trainer_create(&t, &s->arch, &c);
    return t;
}

/* The minibatch's gradient (the chunks' slots added in chunk order) and losses,
 * without an update. */
static void engine_grad(const setup *s, cnn_engine e, int threads, float *grad, float *loss)
{
    cnn_trainer *t = trainer(s, threads, e, s->B);
    const int nchunks = cnn_chunk_count(s->B);
    cnn_train_step_chunks(t, (cnn_model *)&s->m, s->px, s->labels, NULL, s->B, NULL, 0, nchunks);
    float *slots, *l;
    uint8_t *pred, *ok;
    size_t stride;
    cnn_trainer_exchange(t, &slots, &stride, &l, &pred, &ok);
    memset(grad, 0, s->m.n_params * sizeof *grad);
    for (int c = 0; c < nchunks; c++)
        for (size_t i = 0; i < s->m.n_params; i++)
            grad[i] += slots[(size_t)c * stride + i];
    memcpy(loss, l, (size_t)s->B * sizeof *loss);
    cnn_trainer_free(t);
}

static double *as_double(const float *v, size_t n)
{
    double *d = malloc(n * sizeof *d);
    for (size_t i = 0; i < n; i++)
        d[i] = v[i];
    return d;
}

static double *inputs(const setup *s)
{
    const size_t n = (size_t)s->B * s->arch.C * s->arch.H * s->arch.W;
    float *x = malloc(n * sizeof *x);
    cnn_pixels_to_float(x, s->px, n);
    double *d = as_double(x, n);
    free(x);
    return d;
}

/* Losses and every parameter's gradient against the float64 minibatch. */
static void check_gradients(const char *desc, int C, int H, int W, int B, cnn_engine e)
{
    setup s;
    if (!make(&s, desc, C, H, W, B, 11))
        return;
    const char *eng = e == CNN_ENGINE_BLAS ? "blas" : "reference";
    const size_t np = s.m.n_params;
    float *grad = malloc(np * sizeof *grad), *loss = malloc((size_t)B * sizeof *loss);
    engine_grad(&s, e, 2, grad, loss);
    double *x = inputs(&s), *dl = malloc((size_t)B * sizeof *dl);
    dbatch d = {&s.arch, as_double(s.m.params, np), x, s.labels, B, 1, NULL, NULL, NULL};
    dbatch_loss_each(&d, dl);
    double worst_loss = 0;
    for (int b = 0; b < B; b++)
        worst_loss = fmax(worst_loss, fabs(loss[b] - dl[b]) / (1e-6 + fabs(dl[b])));
    tap_ok(worst_loss < 1e-5, "%s, batch %d (%d chunks), %s: every sample's training-mode "
           "loss within %.2g of the float64 minibatch's", desc, B, cnn_chunk_count(B), eng,
           worst_loss);
    double worst = 0;
    size_t at = 0;
    const double h = 1e-6;
    for (size_t i = 0; i < np; i++) {
        const double keep = d.p[i];
        d.p[i] = keep + h;
        const double lp = dbatch_loss(&d);
        d.p[i] = keep - h;
        const double lm = dbatch_loss(&d);
        d.p[i] = keep;
        const double num = (lp - lm) / (2 * h);
        const double q = fabs(num - grad[i]) / (1e-5 + 1e-3 * fmax(fabs(num), fabs(grad[i])));
        if (!(q <= worst))
            worst = isnan(q) ? INFINITY : q, at = i;
    }
    tap_ok(worst <= 1.0, "%s, batch %d, %s: all %zu parameter gradients (gamma, beta, and the "
           "layers around each bn) against central differences of the float64 minibatch loss "
           "(worst %.2g of tolerance, at %zu)", desc, B, eng, np, worst, at);
    /* the check fails a wrong gradient: gamma's scaled by 1.05 */
    for (int l = 0; l < s.arch.n; l++)
        if (s.arch.layer[l].kind == CNN_LAYER_BN) {
            const size_t g = s.arch.layer[l].weights_at;
            d.p[g] += h;
            const double lp = dbatch_loss(&d);
            d.p[g] -= 2 * h;
            const double lm = dbatch_loss(&d);
            d.p[g] += h;
            const double num = (lp - lm) / (2 * h), wrong = 1.05 * grad[g];
            tap_ok(fabs(num - wrong) > 1e-5 + 1e-3 * fabs(num),
                   "%s, %s: a gamma gradient 5%% off is told apart (%.6g vs %.6g)", desc, eng,
                   num, wrong);
            break;
        }
    free(grad), free(loss), free(x), free(dl), free(d.p);
    unmake(&s);
}

/* Running statistics after steps, and evaluation with them. */
static void check_running(const char *desc, int C, int H, int W, int B)
{
    setup s;
    if (!make(&s, desc, C, H, W, B, 12))
        return;
    const size_t np = s.m.n_params;
    double *x = inputs(&s);
    double mean[CNN_MAX_LAYERS * 64], var[CNN_MAX_LAYERS * 64];
    double *want = calloc(s.arch.n_state, sizeof *want);
    for (int l = 0; l < s.arch.n; l++) /* running variance starts at 1 */
        for (int c = 0; c < s.arch.layer[l].C && s.arch.layer[l].kind == CNN_LAYER_BN; c++)
            want[s.arch.layer[l].state_at + s.arch.layer[l].C + c] = 1.0;
    cnn_trainer *t = trainer(&s, 2, CNN_ENGINE_BLAS, B);
    for (int step = 0; step < 3; step++) {
        dbatch d = {&s.arch, as_double(s.m.params, np), x, s.labels, B, 1, NULL, mean, var};
        dbatch_loss(&d); /* the statistics this step sees */
        for (int l = 0; l < s.arch.n; l++) {
            const cnn_layer *L = &s.arch.layer[l];
            if (L->kind != CNN_LAYER_BN)
                continue;
            const double count = (double)B * L->H * L->W;
            for (int c = 0; c < L->C; c++) {
                double *rm = &want[L->state_at + c], *rv = &want[L->state_at + L->C + c];
                *rm = 0.9 * *rm + 0.1 * mean[l * 64 + c];
                *rv = 0.9 * *rv + 0.1 * var[l * 64 + c] * count / (count - 1);
            }
        }
        free(d.p);
        cnn_train_step_u8(t, &s.m, s.px, s.labels, NULL, B, NULL);
    }
    double worst = 0;
    for (size_t i = 0; i < s.arch.n_state; i++)
        worst = fmax(worst, fabs(s.m.state[i] - want[i]) / (1e-6 + fabs(want[i])));
    tap_ok(worst < 1e-4, "%s: running mean and unbiased variance after 3 steps within %.2g of "
           "the float64 ones", desc, worst);
    /* evaluation: the running statistics, one sample at a time */
    cnn_acts a;
    cnn_acts_alloc(&a, &s.arch, 1);
    dbatch d = {&s.arch, as_double(s.m.params, np), x, s.labels, B, 0, s.m.state, NULL, NULL};
    double *dl = malloc((size_t)B * sizeof *dl);
    dbatch_loss_each(&d, dl);
    const size_t in = (size_t)C * H * W;
    float *xf = malloc(in * sizeof *xf);
    double worst_eval = 0;
    for (int b = 0; b < B; b++) {
        cnn_pixels_to_float(xf, s.px + b * in, in);
        const float l = cnn_forward(&s.m, &a, xf, s.labels[b], CNN_ENGINE_BLAS);
        worst_eval = fmax(worst_eval, fabs(l - dl[b]) / (1e-6 + fabs(dl[b])));
    }
    tap_ok(worst_eval < 1e-5, "%s: evaluation uses the running statistics: each sample's loss "
           "within %.2g of the float64 one", desc, worst_eval);
    cnn_stats st = {0};
    cnn_evaluate_u8(t, &s.m, s.px, s.labels, (size_t)B, NULL, &st);
    tap_ok(fabs(st.loss_sum - dbatch_loss(&d)) < 1e-4 * (1 + fabs(st.loss_sum)),
           "%s: cnn_evaluate_u8 gives the same losses (sum %.6f)", desc, st.loss_sum);
    free(xf), free(dl), free(d.p), free(want), free(x);
    cnn_acts_free(&a);
    cnn_trainer_free(t);
    unmake(&s);
}

/* Weights and running statistics after steps, for 1, 2 and 3 threads. */
static void check_threads(const char *desc, int C, int H, int W, int B)
{
    setup s;
    if (!make(&s, desc, C, H, W, 3 * B, 13))
        return;
    float *ref = NULL, *ref_state = NULL;
    for (cnn_engine e = CNN_ENGINE_BLAS; e <= CNN_ENGINE_REFERENCE; e++)
        for (int threads = 1; threads <= 3; threads++) {
            cnn_model m;
            cnn_model_alloc(&m, &s.arch);
            memcpy(m.params, s.m.params, m.n_params * sizeof *m.params);
            memcpy(m.state, s.m.state, m.n_state * sizeof *m.state);
            cnn_trainer *t = trainer(&s, threads, e, B);
            for (int k = 0; k < 3; k++)
                cnn_train_step_u8(t, &m, s.px + (size_t)k * B * C * H * W, s.labels + k * B,
                                  NULL, B, NULL);
            if (threads == 1) {
                free(ref), free(ref_state);
                ref = malloc(m.n_params * sizeof *ref);
                ref_state = malloc(m.n_state * sizeof *ref_state);
                memcpy(ref, m.params, m.n_params * sizeof *ref);
                memcpy(ref_state, m.state, m.n_state * sizeof *ref_state);
            } else {
                tap_ok(memcmp(ref, m.params, m.n_params * sizeof *ref) == 0 &&
                           memcmp(ref_state, m.state, m.n_state * sizeof *ref_state) == 0,
                       "%s, batch %d (%d chunks), %s: %d threads give the weights and running "
                       "statistics of 1, bit for bit", desc, B, cnn_chunk_count(B),
                       e == CNN_ENGINE_BLAS ? "blas" : "reference", threads);
            }
            cnn_trainer_free(t);
            cnn_model_free(&m);
        }
    free(ref), free(ref_state);
    unmake(&s);
}

/* Every proper prefix of the version-4 model file at path is refused with a message,
 * read back from a file of exactly its length (the AddressSanitizer build sees any read
 * past it). */
static void check_prefixes(const char *path)
{
    FILE *f = fopen(path, "rb");
    static unsigned char buf[1 << 16];
    const size_t n = f ? fread(buf, 1, sizeof buf, f) : 0;
    if (f)
        fclose(f);
    char cut[64], err[512];
    snprintf(cut, sizeof cut, "%s.cut", path);
    size_t refused = 0;
    for (size_t len = 0; len < n; len++) {
        FILE *g = fopen(cut, "wb");
        if (!g)
            break;
        fwrite(buf, 1, len, g);
        fclose(g);
        cnn_model l = {0};
        err[0] = '\0';
        if (cnn_model_load(&l, cut, err, sizeof err) == CNN_ERR_FORMAT && err[0])
            refused++;
        else if (l.params)
            cnn_model_free(&l);
    }
    unlink(cut);
    tap_ok(n > 100 && buf[8] == 4 && refused == n,
           "every one of the %zu proper prefixes of a version-4 model file is refused (%zu)", n,
           refused);
}

static void check_files(void)
{
    setup s;
    if (!make(&s, "conv3b,bn,relu,pool,dense5,bn,relu,softmax3", 2, 8, 8, 8, 14))
        return;
    cnn_trainer *t = trainer(&s, 1, CNN_ENGINE_BLAS, 8);
    cnn_train_step_u8(t, &s.m, s.px, s.labels, NULL, 8, NULL);
    cnn_trainer_free(t);
    char path[] = "/tmp/cnn-bn-XXXXXX", err[512] = "";
    const int fd = mkstemp(path);
    if (fd >= 0)
        close(fd);
    cnn_model l = {0};
    cnn_status st = cnn_model_save(&s.m, path, err, sizeof err);
    if (st == CNN_OK)
        st = cnn_model_load(&l, path, err, sizeof err);
    tap_ok(st == CNN_OK && l.n_state == s.m.n_state &&
               memcmp(l.state, s.m.state, l.n_state * sizeof *l.state) == 0 &&
               memcmp(l.params, s.m.params, l.n_params * sizeof *l.params) == 0,
           "a model with bn saves and loads with its running statistics, bit for bit (%s)",
           st == CNN_OK ? "ok" : err);
    cnn_model_free(&l);
    check_prefixes(path);
    /* a negative running variance (1 / sqrt(var + eps) has no value) is refused */
    s.m.state[s.arch.layer[1].state_at + s.arch.layer[1].C + 2] = -0.25f;
    st = cnn_model_save(&s.m, path, err, sizeof err);
    if (st == CNN_OK)
        st = cnn_model_load(&l, path, err, sizeof err);
    tap_ok(st == CNN_ERR_FORMAT && strstr(err, "layer 2 (bn): a running variance below 0"),
           "a model file with a negative running variance is refused: %s", err);
    if (st == CNN_OK)
        cnn_model_free(&l);
    cnn_train_config c = cnn_train_config_default(); /* batch 1 */
    cnn_trainer *one = NULL;
    cnn_trainer_create(&one, &s.arch, &c);
    tap_ok(one && cnn_train_step_u8(one, &s.m, s.px, s.labels, NULL, 1, NULL) == CNN_ERR_ARG,
           "training with bn at batch 1 is refused");
    cnn_trainer_free(one);
    unlink(path);
    unmake(&s);
}

/* A copy of m: its parameters and state. */
static void copy_model(cnn_model *to, const cnn_model *m)
{
    cnn_model_alloc(to, &m->arch);
    memcpy(to->params, m->params, m->n_params * sizeof *m->params);
    memcpy(to->state, m->state, m->n_state * sizeof *m->state);
}

/* A run stopped after 3 steps, checkpointed, loaded and resumed on 1 thread ends with
 * the weights and running statistics of the run never stopped (2 threads). */
static void check_resume(void)
{
    setup s;
    if (!make(&s, "conv3b,bn,relu,pool,dense5,bn,relu,softmax3", 2, 8, 8, 40, 15))
        return;
    const cnn_dataset d = {.n = 40, .channels = 2, .rows = 8, .cols = 8, .pixels = s.px,
                           .labels = s.labels};
    cnn_run_config c = {.train = cnn_train_config_default(), .epochs = 2, .shuffle = 1,
                        .shift = 1, .flip = 1, .lr_gamma = 1.0f};
    c.train.batch = 12, c.train.threads = 2, c.train.lr = 0.05f, c.train.momentum = 0.9f;
    c.train.seed = 3;
    cnn_model whole, part;
    copy_model(&whole, &s.m);
    copy_model(&part, &s.m);
    cnn_rng rng;
    cnn_rng_seed(&rng, 3);
    cnn_run *r = NULL, *q = NULL;
    cnn_run_create(&r, &whole, &c, d.n, &rng);
    while (cnn_run_position(r, NULL, NULL))
        cnn_run_step(r, &d, NULL);
    cnn_run_create(&q, &part, &c, d.n, &rng);
    for (int k = 0; k < 3; k++)
        cnn_run_step(q, &d, NULL);
    char path[] = "/tmp/cnn-bn-ckpt-XXXXXX", err[512] = "";
    const int fd = mkstemp(path);
    if (fd >= 0)
        close(fd);
    cnn_checkpoint k, loaded = {0};
    cnn_run_checkpoint(q, &k);
    cnn_status st = cnn_checkpoint_save(&k, path, err, sizeof err);
    cnn_run_free(q), q = NULL;
    if (st == CNN_OK)
        st = cnn_checkpoint_load(&loaded, path, err, sizeof err);
    if (st == CNN_OK) {
        cnn_run_config again = cnn_checkpoint_config(&loaded);
        again.train.threads = 1;
        st = cnn_run_resume(&q, &loaded.model, &again, &loaded);
        while (st == CNN_OK && cnn_run_position(q, NULL, NULL))
            st = cnn_run_step(q, &d, NULL);
    }
    tap_ok(st == CNN_OK &&
               memcmp(loaded.model.params, whole.params, whole.n_params * sizeof(float)) == 0 &&
               memcmp(loaded.model.state, whole.state, whole.n_state * sizeof(float)) == 0,
           "a bn run with flips checkpointed after 3 steps and resumed on 1 thread ends with the "
           "weights and running statistics of the run never stopped (%s)",
           st == CNN_OK ? "ok" : err);
    cnn_checkpoint_free(&loaded);
    cnn_run_free(r), cnn_run_free(q);
    cnn_model_free(&whole), cnn_model_free(&part);
    unlink(path);
    unmake(&s);
}

/* ---------------------------------------------------------------- the PyTorch oracle */

/* The values after `key` in the oracle file (a line of the key, a line of numbers):
 * at most cap into v; @return how many, or -1 without the key. */
static int oracle(const char *path, const char *key, double *v, int cap)
{
    FILE *f = fopen(path, "r");
    static char line[1 << 16];
    int n = -1;
    while (f && fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        if (strcmp(line, key) != 0)
            continue;
        n = 0;
        if (fgets(line, sizeof line, f))
            for (char *p = line, *e; n < cap; p = e) {
                const double x = strtod(p, &e);
                if (e == p)
                    break;
                v[n++] = x;
            }
        break;
    }
    if (f)
        fclose(f);
    return n;
}

/* Largest |got - want| over atol + rtol * |want|. */
static double off_by(const float *got, const double *want, int n, double atol, double rtol)
{
    double worst = 0;
    for (int i = 0; i < n; i++)
        worst = fmax(worst, fabs(got[i] - want[i]) / (atol + rtol * fabs(want[i])));
    return worst;
}

/* One chunk of the whole minibatch through every stage (the sums of one chunk are the
 * minibatch's), with the input gradient. */
static void one_chunk(const cnn_model *m, const float *x, const uint8_t *labels, int B,
                      cnn_engine e, float *grad, float *dx, float *loss)
{
    cnn_acts a;
    cnn_acts_alloc(&a, &m->arch, B);
    a.train_key = 1;
    double *totals_buf = calloc(4096, sizeof(double)), sums[4096];
    const double *totals[CNN_MAX_LAYERS] = {NULL};
    for (int l = 0, at = 0; l < m->arch.n; l++)
        if (m->arch.layer[l].kind == CNN_LAYER_BN)
            totals[l] = totals_buf + at, at += 4 * m->arch.layer[l].C;
    const cnn_stage_args args = {x, NULL, NULL, labels, NULL, B, grad, dx, e, CNN_TIES_SINGLE,
                                 totals, B};
    uint8_t pred[64];
    for (int s = 0; s < cnn_stage_count(&m->arch); s++) {
        cnn_chunk_stage(m, &a, &args, s, sums, loss, pred);
        int bwd;
        const int l = cnn_stage_sums_layer(&m->arch, s, &bwd);
        if (l >= 0) {
            const int half = 2 * m->arch.layer[l].C, off = bwd ? half : 0;
            memcpy((double *)totals[l] + off, sums + off, (size_t)half * sizeof(double));
        }
    }
    free(totals_buf);
    cnn_acts_free(&a);
}

/* The same minibatch's training-mode losses and gradients with the output layer's
 * label smoothing (PyTorch's label_smoothing), from m's parameters and state. */
static void check_torch_smoothed(const char *path, const char *desc, const cnn_model *m,
                                 const float *x, const uint8_t *labels, int B, cnn_engine e)
{
    static double v[4096];
    double pct[1];
    char smoothed[300];
    cnn_arch arch;
    cnn_model ms;
    if (oracle(path, "smoothing", pct, 1) != 1)
        return (void)tap_ok(0, "PyTorch bn vectors: no smoothing in %s", path);
    snprintf(smoothed, sizeof smoothed, "%sls%d", desc, (int)pct[0]);
    if (!tap_ok(cnn_arch_build(&arch, smoothed, m->arch.C, m->arch.H, m->arch.W, NULL, 0) ==
                    CNN_OK && cnn_model_alloc(&ms, &arch) == CNN_OK,
                "%s builds", smoothed))
        return;
    memcpy(ms.params, m->params, m->n_params * sizeof *ms.params);
    memcpy(ms.state, m->state, m->n_state * sizeof *ms.state);
    const size_t np = ms.n_params, nx = (size_t)B * arch.C * arch.H * arch.W;
    float *grad = calloc(np, sizeof *grad), *dx = calloc(nx, sizeof *dx), loss[64];
    const char *eng = e == CNN_ENGINE_BLAS ? "blas" : "reference";
    one_chunk(&ms, x, labels, B, e, grad, dx, loss);
    oracle(path, "train_loss_smoothed", v, B);
    tap_ok(off_by(loss, v, B, 1e-6, 1e-5) <= 1, "PyTorch, %s, %s: training-mode losses with "
           "label smoothing (%.2g of tolerance)", eng, smoothed, off_by(loss, v, B, 1e-6, 1e-5));
    oracle(path, "grad_smoothed", v, (int)np);
    tap_ok(off_by(grad, v, (int)np, 1e-5, 1e-4) <= 1, "PyTorch, %s, %s: every parameter's "
           "gradient (%.2g of tolerance)", eng, smoothed, off_by(grad, v, (int)np, 1e-5, 1e-4));
    oracle(path, "dx_smoothed", v, (int)nx);
    tap_ok(off_by(dx, v, (int)nx, 1e-6, 1e-4) <= 1, "PyTorch, %s, %s: the input gradient (%.2g "
           "of tolerance)", eng, smoothed, off_by(dx, v, (int)nx, 1e-6, 1e-4));
    free(grad), free(dx);
    cnn_model_free(&ms);
}

static void check_torch(const char *path)
{
    double v[4096];
    char desc[256] = "";
    FILE *f = fopen(path, "r");
    char line[512];
    while (f && fgets(line, sizeof line, f))
        if (strcmp(line, "arch\n") == 0 && fgets(desc, sizeof desc, f))
            break;
    if (f)
        fclose(f);
    desc[strcspn(desc, "\n")] = '\0';
    double shape[3], batch[1], lab[64];
    if (!tap_ok(*desc && oracle(path, "input", shape, 3) == 3 && oracle(path, "batch", batch, 1) == 1,
                "PyTorch bn vectors read from %s (%s)", path, desc))
        return;
    const int C = (int)shape[0], H = (int)shape[1], W = (int)shape[2], B = (int)batch[0];
    cnn_arch arch;
    cnn_arch_build(&arch, desc, C, H, W, NULL, 0);
    cnn_model m;
    cnn_model_alloc(&m, &arch);
    const size_t np = m.n_params, in = (size_t)C * H * W;
    float *x = malloc((size_t)B * in * sizeof *x), *p0 = malloc(np * sizeof *p0);
    uint8_t labels[64];
    oracle(path, "labels", lab, B);
    for (int b = 0; b < B; b++)
        labels[b] = (uint8_t)lab[b];
    oracle(path, "x", v, (int)((size_t)B * in));
    for (size_t i = 0; i < (size_t)B * in; i++)
        x[i] = (float)v[i];
    oracle(path, "params", v, (int)np);
    for (size_t i = 0; i < np; i++)
        p0[i] = (float)v[i];
    for (cnn_engine e = CNN_ENGINE_BLAS; e <= CNN_ENGINE_REFERENCE; e++) {
        const char *eng = e == CNN_ENGINE_BLAS ? "blas" : "reference";
        memcpy(m.params, p0, np * sizeof *p0);
        for (int l = 0; l < arch.n; l++) /* fresh running statistics */
            for (int c = 0; c < arch.layer[l].C && arch.layer[l].kind == CNN_LAYER_BN; c++)
                m.state[arch.layer[l].state_at + c] = 0,
                m.state[arch.layer[l].state_at + arch.layer[l].C + c] = 1;
        float *grad = calloc(np, sizeof *grad), *dx = calloc((size_t)B * in, sizeof *dx);
        float loss[64];
        one_chunk(&m, x, labels, B, e, grad, dx, loss);
        oracle(path, "train_loss", v, B);
        tap_ok(off_by(loss, v, B, 1e-6, 1e-5) <= 1, "PyTorch, %s: training-mode losses (%.2g "
               "of tolerance)", eng, off_by(loss, v, B, 1e-6, 1e-5));
        oracle(path, "grad", v, (int)np);
        tap_ok(off_by(grad, v, (int)np, 1e-5, 1e-4) <= 1, "PyTorch, %s: every parameter's "
               "gradient (%.2g of tolerance)", eng, off_by(grad, v, (int)np, 1e-5, 1e-4));
        oracle(path, "dx", v, (int)((size_t)B * in));
        tap_ok(off_by(dx, v, (int)((size_t)B * in), 1e-6, 1e-4) <= 1, "PyTorch, %s: the input "
               "gradient (%.2g of tolerance)", eng, off_by(dx, v, (int)((size_t)B * in), 1e-6, 1e-4));
        check_torch_smoothed(path, desc, &m, x, labels, B, e);
        /* 3 steps of SGD with momentum, batch B, 2 threads in uneven chunks */
        double steps[3];
        oracle(path, "steps", steps, 3);
        cnn_train_config c = cnn_train_config_default();
        c.batch = B, c.threads = 2, c.engine = e, c.lr = (float)steps[1];
        c.momentum = (float)steps[2];
        cnn_trainer *t = NULL;
        cnn_trainer_create(&t, &arch, &c);
        for (int k = 0; k < (int)steps[0]; k++)
            cnn_train_step(t, &m, x, labels, NULL, B, NULL);
        oracle(path, "params_after", v, (int)np);
        tap_ok(off_by(m.params, v, (int)np, 1e-5, 1e-4) <= 1, "PyTorch, %s: the parameters after "
               "%d steps of SGD with momentum (%.2g of tolerance)", eng, (int)steps[0],
               off_by(m.params, v, (int)np, 1e-5, 1e-4));
        oracle(path, "running", v, (int)arch.n_state);
        tap_ok(off_by(m.state, v, (int)arch.n_state, 1e-6, 1e-4) <= 1, "PyTorch, %s: the running "
               "means and variances (%.2g of tolerance)", eng,
               off_by(m.state, v, (int)arch.n_state, 1e-6, 1e-4));
        cnn_acts a;
        cnn_acts_alloc(&a, &arch, 1);
        float probs[64 * 16];
        for (int b = 0; b < B; b++) {
            cnn_forward(&m, &a, x + (size_t)b * in, labels[b], e);
            memcpy(probs + b * arch.classes, a.probs, (size_t)arch.classes * sizeof *probs);
        }
        oracle(path, "eval_probs", v, B * arch.classes);
        tap_ok(off_by(probs, v, B * arch.classes, 1e-5, 1e-4) <= 1, "PyTorch, %s: evaluation-mode "
               "probabilities with the running statistics (%.2g of tolerance)", eng,
               off_by(probs, v, B * arch.classes, 1e-5, 1e-4));
        cnn_acts_free(&a);
        cnn_trainer_free(t);
        free(grad), free(dx);
    }
    free(x), free(p0);
    cnn_model_free(&m);
}

/* cnn_model_fold: a trained-looking model (random weights, gammas, betas and running
 * statistics) against its folded self: the folded description, the same evaluation
 * probabilities within float rounding on both engines, the normalisation and names. */
static void check_fold(const char *desc, const char *want, int C, int H, int W)
{
    cnn_arch arch;
    cnn_model m, f;
    cnn_rng rng;
    cnn_rng_seed(&rng, 11);
    if (!tap_ok(cnn_arch_build(&arch, desc, C, H, W, NULL, 0) == CNN_OK &&
                    cnn_model_init(&m, &arch, &rng) == CNN_OK,
                "fold: %s builds", desc))
        return;
    for (int l = 0; l < arch.n; l++) {
        const cnn_layer *L = &arch.layer[l];
        for (size_t i = 0; i < L->n_bias; i++)
            m.params[L->bias_at + i] = (float)(0.2 * cnn_rng_normal(&rng));
        for (int c = 0; c < L->C && L->kind == CNN_LAYER_BN; c++)
            m.params[L->weights_at + c] = (float)(1 + 0.3 * cnn_rng_normal(&rng));
    }
    /* running statistics of the data's own scale: 30 steps that barely move the weights */
    const size_t in = (size_t)C * H * W;
    float *x = malloc(16 * in * sizeof *x);
    uint8_t labels[16] = {0};
    for (size_t i = 0; i < 16 * in; i++)
        x[i] = (float)cnn_rng_uniform(&rng) - 0.5f;
    cnn_train_config cfg = cnn_train_config_default();
    cfg.batch = 16, cfg.lr = 1e-7f;
    cnn_trainer *t = NULL;
    cnn_trainer_create(&t, &arch, &cfg);
    for (int k = 0; k < 30; k++)
        cnn_train_step(t, &m, x, labels, NULL, 16, NULL);
    cnn_trainer_free(t);
    const char *names[3] = {"one", "two", "three"};
    m.norm.kind = CNN_NORM_MEAN_STD, m.norm.channels = C;
    for (int c = 0; c < C; c++)
        m.norm.mean[c] = 0.4f, m.norm.std[c] = 0.3f;
    cnn_model_set_names(&m, arch.classes == 3 ? names : NULL, 3);
    char got[CNN_ARCH_LEN];
    if (!tap_ok(cnn_model_fold(&m, &f) == CNN_OK, "fold: %s folds", desc))
        return;
    cnn_arch_describe(&f.arch, got, sizeof got);
    tap_ok(strcmp(got, want) == 0 && f.norm.kind == m.norm.kind && f.norm.std[0] == 0.3f &&
               (!m.names || strcmp(cnn_model_class_name(&f, 2), "three") == 0),
           "fold: %s is %s (wanted %s), with the normalisation and names", desc, got, want);
    cnn_acts a, af;
    cnn_acts_alloc(&a, &m.arch, 1);
    cnn_acts_alloc(&af, &f.arch, 1);
    for (cnn_engine e = CNN_ENGINE_BLAS; e <= CNN_ENGINE_REFERENCE; e++) {
        double worst = 0, scale = 0; /* logits: off by, and their largest size */
        double lo = INFINITY, hi = -INFINITY; /* the first logit over the inputs */
        for (int s = 0; s < 20; s++) {
            for (size_t i = 0; i < in; i++)
                x[i] = (float)cnn_rng_uniform(&rng) - 0.5f;
            cnn_forward(&m, &a, x, 0, e);
            cnn_forward(&f, &af, x, 0, e);
            const float *z = a.out[m.arch.n - 1], *zf = af.out[f.arch.n - 1];
            for (int k = 0; k < arch.classes; k++)
                worst = fmax(worst, fabs(z[k] - zf[k])), scale = fmax(scale, fabs(z[k]));
            lo = fmin(lo, z[0]), hi = fmax(hi, z[0]);
        }
        tap_ok(worst <= 1e-5 * scale && hi - lo > 1e-2 * scale,
               "fold: %s, %s: the same logits on 20 inputs (off by %.2g, of sizes up to %.3g; "
               "the first over %.3g to %.3g)", desc, e == CNN_ENGINE_BLAS ? "blas" : "reference",
               worst, scale, lo, hi);
    }
    free(x);
    cnn_acts_free(&a), cnn_acts_free(&af);
    cnn_model_free(&m), cnn_model_free(&f);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_bn TORCH-BN-VECTORS\n");
        return 1;
    }
    check_torch(argv[1]);
    const char *convnet = "conv3b,bn,relu,pool,dense5,bn,relu,softmax3";
    for (cnn_engine e = CNN_ENGINE_BLAS; e <= CNN_ENGINE_REFERENCE; e++) {
        check_gradients(convnet, 2, 8, 8, 10, e);                  /* 4 chunks: 2, 3, 2, 3 */
        check_gradients("conv4bp1,relu,bn,conv3b,bn,pool,softmax4", 1, 7, 6, 5, e);
        check_gradients("dense6,bn,relu,dense4,bn,softmax3", 2, 3, 3, 7, e);
    }
    check_running(convnet, 2, 8, 8, 12);
    const int batches[] = {10, 25, 50}; /* 4 chunks each, of unequal sizes */
    for (int i = 0; i < 3; i++)
        check_threads(convnet, 2, 8, 8, batches[i]);
    check_threads("conv4bp1,bn,relu,pool,conv6b,bn,relu,pool,dense8,bn,relu,softmax5", 3, 12,
                  12, 37);
    check_files();
    check_resume();
    /* bn after a conv without bias (it gains one), with one, after a dense layer; a bn
     * after relu, or first, stays */
    check_fold("conv4p1,bn,relu,pool,conv6b,bn,relu,pool,dense8,bn,relu,softmax3",
               "conv4bp1,relu,pool,conv6b,relu,pool,dense8,relu,softmax3", 2, 12, 12);
    check_fold("bn,conv4bk5p2,bn,relu,bn,pool,dense6,bn,softmax4",
               "bn,conv4bk5p2,relu,bn,pool,dense6,softmax4", 1, 9, 9);
    return tap_done();
}
