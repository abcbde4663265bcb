/* test_engines.c - the BLAS engine against the reference engine: forward outputs,
 * every gradient (both tie rules, with and without the input gradient), and the
 * weights after several SGD steps at batch sizes 1 and 8; the same for stacked
 * networks (two and three convs, a conv that is not followed by a pool, hidden dense
 * layers, a pool first), with momentum.
 *
 * Tolerances: the engines sum in different orders (GEMM blocking and FMA against
 * plain loops), so single results differ by a few float ulps: forward and
 * gradients within 1e-5 relative plus 1e-6 of the array's scale; weights after
 * 20 steps within 1e-6 absolute (weights are ~0.1, updates ~1e-3; measured ~3e-8). A layout or
 * indexing bug is off by orders of magnitude more. */
#include "cnn.h"
#include "post.h"
#include "kernels.h"

#include "check.h"
#include "config.h"
#include "conv_ties.h"

#include <cblas.h>

#include <string.h>

static double max_abs(const float *v, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(v[i]));
    return m;
}

/* got vs want with atol scaled to want's magnitude */
static int same(const char *name, const float *got, const float *want, size_t n, double rtol)
{
    return check_close_f(name, got, want, n, 1e-6 * fmax(max_abs(want, n), 1e-3), rtol);
}

/* Images of the synthetic set; with flat=1 the background noise is cut to 0, so
 * that, as in MNIST, most pool blocks are ties. */
static float *make_images(size_t n, uint8_t *labels, int flat, cnn_rng *rng)
{
    uint8_t *pix = malloc(n * 784);
    float *x = malloc(n * 784 * sizeof(float));
    cnn_synth_digits(pix, labels, n, rng);
    if (flat)
        for (size_t i = 0; i < n * 784; i++)
            if (pix[i] < 64)
                pix[i] = 0;
    cnn_pixels_to_float(x, pix, n * 784);
    free(pix);
    return x;
}

/* Conv-shaped arrays of both engines in [F][OH][OW], positions outside every pool
 * block zeroed (the BLAS engine, in pool-block order, does not compute them). */
static void conv_nchw(float *dst, const float *src, cnn_engine e, const cnn_arch *s)
{
    const int OH = s->H - 2, OW = s->W - 2;
    if (e == CNN_ENGINE_BLAS) {
        cnn_blocks_to_nchw(dst, src, post_filters(s), OH, OW);
        return;
    }
    for (int f = 0; f < post_filters(s); f++)
        for (int i = 0; i < OH; i++)
            for (int j = 0; j < OW; j++) {
                const size_t o = ((size_t)f * OH + i) * OW + j;
                dst[o] = i < OH / 2 * 2 && j < OW / 2 * 2 ? src[o] : 0.0f;
            }
}

static void compare_sample(const cnn_arch *s, const char *what, const float *x, int label,
                           cnn_rng *rng)
{
    cnn_model m;
    cnn_acts ab, ar;
    cnn_model_init(&m, s, rng);
    for (int i = 0; i < s->classes; i++)
        post_view(&m.arch, m.params).b[i] = (float)(0.1 * (float)cnn_rng_normal(rng));
    cnn_acts_alloc(&ab, s, 1);
    cnn_acts_alloc(&ar, s, 1);
    const size_t conv = post_conv_len(s), K = post_dense_len(s);
    const size_t nin = post_input_len(s);
    char name[160];

    const float lb = cnn_forward(&m, &ab, x, label, CNN_ENGINE_BLAS);
    const float lr = cnn_forward(&m, &ar, x, label, CNN_ENGINE_REFERENCE);
    float *cb = malloc(conv * sizeof(float)), *cr = malloc(conv * sizeof(float));
    conv_nchw(cb, ab.out[POST_CONV], CNN_ENGINE_BLAS, s);
    conv_nchw(cr, ar.out[POST_CONV], CNN_ENGINE_REFERENCE, s);
    snprintf(name, sizeof name, "%s: conv output", what);
    same(name, cb, cr, conv, 1e-5);
    snprintf(name, sizeof name, "%s: pool output", what);
    same(name, ab.out[POST_POOL], ar.out[POST_POOL], K, 1e-5);
    snprintf(name, sizeof name, "%s: logits", what);
    same(name, ab.out[POST_SOFTMAX], ar.out[POST_SOFTMAX], (size_t)s->classes, 1e-5);
    snprintf(name, sizeof name, "%s: probabilities", what);
    same(name, ab.probs, ar.probs, (size_t)s->classes, 1e-5);
    tap_ok(fabsf(lb - lr) <= 1e-5f * (1 + fabsf(lr)), "%s: loss %.7g vs %.7g", what, (double)lb,
           (double)lr);

    float *gb = calloc(m.n_params, sizeof(float)), *gr = calloc(m.n_params, sizeof(float));
    float *db = malloc(nin * sizeof(float)), *dr = malloc(nin * sizeof(float));
    for (int rule = 0; rule < 2; rule++) {
        const char *rn = rule == CNN_TIES_ALL ? "all" : "single";
        memset(gb, 0, m.n_params * sizeof(float));
        memset(gr, 0, m.n_params * sizeof(float));
        cnn_forward(&m, &ab, x, label, CNN_ENGINE_BLAS);
        cnn_backward(&m, &ab, gb, db, x, CNN_ENGINE_BLAS, (cnn_pool_ties)rule);
        cnn_backward(&m, &ar, gr, dr, x, CNN_ENGINE_REFERENCE, (cnn_pool_ties)rule);
        post_params pb = post_view(s, gb), pr = post_view(s, gr);
        snprintf(name, sizeof name, "%s, ties=%s: filter gradient", what, rn);
        same(name, pb.filters, pr.filters, (size_t)post_filters(s) * s->C * 9, 1e-4);
        snprintf(name, sizeof name, "%s, ties=%s: W gradient", what, rn);
        same(name, pb.W, pr.W, (size_t)s->classes * K, 1e-5);
        snprintf(name, sizeof name, "%s, ties=%s: b gradient", what, rn);
        same(name, pb.b, pr.b, (size_t)s->classes, 1e-5);
        snprintf(name, sizeof name, "%s, ties=%s: input gradient", what, rn);
        same(name, db, dr, nin, 1e-4);
        conv_nchw(cb, ab.dout[POST_CONV], CNN_ENGINE_BLAS, s);
        conv_nchw(cr, ar.dout[POST_CONV], CNN_ENGINE_REFERENCE, s);
        snprintf(name, sizeof name, "%s, ties=%s: pool input gradient", what, rn);
        same(name, cb, cr, conv, 1e-5);
    }
    /* Without an input gradient the parameter gradients are the same. */
    memset(gr, 0, m.n_params * sizeof(float));
    cnn_forward(&m, &ab, x, label, CNN_ENGINE_BLAS);
    cnn_backward(&m, &ab, gr, NULL, x, CNN_ENGINE_BLAS, CNN_TIES_ALL);
    snprintf(name, sizeof name, "%s: blas gradients with and without the input gradient", what);
    tap_ok(memcmp(gr, gb, m.n_params * sizeof(float)) == 0, "%s", name);
    free(gb), free(gr), free(db), free(dr), free(cb), free(cr);
    cnn_acts_free(&ab);
    cnn_acts_free(&ar);
    cnn_model_free(&m);
}

static const char *blas_core(void)
{
#if HAVE_OPENBLAS_EXT
    return openblas_get_corename();
#else
    return "this BLAS";
#endif
}

/* Pairs of positions of one 2x2 pool window (of the post's 26 x 26 conv output) with
 * identical patches, and how many of their outputs differ in any bit. */
static void window_pairs(const float *x, const float *conv, size_t *pairs, size_t *differ)
{
    *pairs = *differ = 0;
    for (int i = 0; i < 13; i++)
        for (int j = 0; j < 13; j++)
            for (int u = 0; u < 4; u++)
                for (int v = u + 1; v < 4; v++) {
                    const int yu = 2 * i + u / 2, xu = 2 * j + u % 2;
                    const int yv = 2 * i + v / 2, xv = 2 * j + v % 2;
                    int eq = 1;
                    for (int k = 0; k < 9; k++)
                        eq &= x[(yu + k / 3) * 28 + xu + k % 3] == x[(yv + k / 3) * 28 + xv + k % 3];
                    if (!eq)
                        continue;
                    for (int f = 0; f < 8; f++) {
                        (*pairs)++;
                        *differ += memcmp(&conv[f * 676 + yu * 26 + xu],
                                          &conv[f * 676 + yv * 26 + xv], 4) != 0;
                    }
                }
}

/* The post's tie rules need identical patches of a pool window to give bit-identical
 * conv outputs. The BLAS engine gets them from the SGEMM where its kernel orders every
 * column's sum alike, and from the window tie step where it does not (OpenBLAS's AVX2
 * kernels): the setup's check of the SGEMM must tell which, on whatever core runs. */
static void test_identical_patches(const float *x, cnn_rng *rng)
{
    const cnn_arch s = post_arch_mnist();
    cnn_model m;
    cnn_acts a;
    cnn_model_init(&m, &s, rng);
    cnn_acts_alloc(&a, &s, 1);
    float conv[8 * 676], stepped[8 * 676];
    size_t pairs, differ;
    cnn_forward(&m, &a, x, 0, CNN_ENGINE_REFERENCE);
    conv_nchw(conv, a.out[POST_CONV], CNN_ENGINE_REFERENCE, &s);
    size_t all = 0, off = 0; /* the reference: identical patches anywhere, one output */
    for (int p = 0; p < 676; p++) {
        int eq = 1;
        for (int k = 0; k < 9; k++)
            eq &= x[(p / 26 + k / 3) * 28 + p % 26 + k % 3] == x[(k / 3) * 28 + k % 3];
        for (int f = 0; eq && f < 8; f++, all++)
            off += memcmp(&conv[f * 676 + p], &conv[f * 676], 4) != 0;
    }
    tap_ok(all > 1000 && off == 0,
           "reference: %zu conv outputs of patches identical to the first are bit-identical "
           "(%zu differ)", all, off);
    window_pairs(x, conv, &pairs, &differ);
    tap_ok(pairs > 1000 && differ == 0,
           "reference: %zu outputs of identical patches within pool windows are bit-identical "
           "(%zu differ)", pairs, differ);

    const int needed = a.window_ties[0];
    a.window_ties[0] = 0; /* the SGEMM alone */
    cnn_forward(&m, &a, x, 0, CNN_ENGINE_BLAS);
    conv_nchw(conv, a.out[POST_CONV], CNN_ENGINE_BLAS, &s);
    a.window_ties[0] = 1; /* with the tie step */
    cnn_forward(&m, &a, x, 0, CNN_ENGINE_BLAS);
    conv_nchw(stepped, a.out[POST_CONV], CNN_ENGINE_BLAS, &s);
    a.window_ties[0] = (uint8_t)needed;
    size_t raw_differ;
    window_pairs(x, conv, &pairs, &raw_differ);
    window_pairs(x, stepped, &pairs, &differ);
    tap_ok(pairs > 1000 && differ == 0,
           "blas with the tie step: %zu outputs of identical patches within pool windows are "
           "bit-identical (%zu differ)", pairs, differ);
    tap_ok(needed ? raw_differ > 0 : raw_differ == 0 && !memcmp(conv, stepped, sizeof conv),
           "blas on %s: the setup's check says the tie step is %s, and the SGEMM alone gives "
           "%zu of them different outputs%s", blas_core(),
           needed ? "needed" : "not needed", raw_differ,
           needed ? "" : " (the step changes no bit)");
    const char *core = blas_core();
    if (!strcmp(core, "Haswell") || !strcmp(core, "Zen"))
        tap_ok(needed, "the AVX2 kernels (%s) need the tie step for the post's conv", core);
    cnn_acts_free(&a);
    cnn_model_free(&m);
}

/* The tie step alone, on every way four patches can be equal (the 15 partitions of a
 * window's four positions), with NaN taps, over window counts that take the vector path
 * (with an overlapping last group) and the one-window path. */
static void test_window_tie_step(cnn_rng *rng)
{
    /* class of position k in each partition: the first member's index labels it */
    static const int part[15][4] = {
        {0, 1, 2, 3}, {0, 0, 2, 3}, {0, 1, 0, 3}, {0, 1, 2, 0}, {0, 1, 1, 3},
        {0, 1, 2, 1}, {0, 1, 2, 2}, {0, 0, 0, 3}, {0, 0, 2, 0}, {0, 1, 0, 0},
        {0, 1, 1, 1}, {0, 0, 2, 2}, {0, 1, 0, 1}, {0, 1, 1, 0}, {0, 0, 0, 0}};
    const int K = 5, F = 3;
    const int counts[] = {7, 16, 40};
    for (size_t c = 0; c < sizeof counts / sizeof *counts; c++) {
        const int Q = counts[c];
        const size_t P = 4 * (size_t)Q;
        float *col = malloc(K * P * sizeof(float)), *out = malloc(F * P * sizeof(float));
        float *want = malloc(F * P * sizeof(float));
        for (int q = 0; q < Q; q++) {
            const int *cls = part[q % 15];
            const int nan = q % 15 == 14 && q >= 15; /* all four equal but for a NaN */
            for (int t = 0; t < K; t++) {
                float v[4];
                for (int k = 0; k < 4; k++) /* distinct values per class */
                    v[k] = (float)cnn_rng_normal(rng) + (float)(10 * k);
                for (int k = 0; k < 4; k++)
                    col[t * P + k * Q + q] = nan && t == 2 ? NAN : v[cls[k]];
            }
            for (int f = 0; f < F; f++)
                for (int k = 0; k < 4; k++)
                    out[f * P + k * Q + q] = (float)cnn_rng_normal(rng);
            for (int f = 0; f < F; f++)
                for (int k = 0; k < 4; k++)
                    want[f * P + k * Q + q] = out[f * P + (nan ? k : cls[k]) * Q + q];
        }
        cnn_conv_window_ties(out, col, K, F, Q);
        tap_ok(!memcmp(out, want, F * P * sizeof(float)),
               "the window tie step over %d windows: every position takes the outputs of the "
               "first identical patch of its window, and a patch with a NaN equals none", Q);
        free(col), free(out), free(want);
    }
}

static void compare_training(int batch, cnn_pool_ties ties, const float *x, const uint8_t *labels,
                             size_t n, cnn_rng *rng)
{
    const cnn_arch s = post_arch_mnist();
    cnn_model mb, mr;
    cnn_rng r2 = *rng;
    cnn_model_init(&mb, &s, rng);
    cnn_model_init(&mr, &s, &r2);
    float *init = malloc(mb.n_params * sizeof(float));
    memcpy(init, mb.params, mb.n_params * sizeof(float));
    cnn_train_config c = cnn_train_config_default();
    c.batch = batch;
    c.ties = ties;
    cnn_trainer *tb, *tr;
    cnn_trainer_create(&tb, &s, &c);
    c.engine = CNN_ENGINE_REFERENCE;
    cnn_trainer_create(&tr, &s, &c);
    cnn_stats sb = {0}, sr = {0};
    int steps = 0, ok = 1;
    for (size_t i = 0; i + (size_t)batch <= n && steps < 20; i += (size_t)batch, steps++) {
        ok &= cnn_train_step(tb, &mb, x + i * 784, labels + i, NULL, batch, &sb) == CNN_OK;
        ok &= cnn_train_step(tr, &mr, x + i * 784, labels + i, NULL, batch, &sr) == CNN_OK;
    }
    tap_ok(ok, "batch %d ties=%s: %d SGD steps run", batch, ties ? "all" : "single", steps);
    char name[128];
    snprintf(name, sizeof name, "batch %d ties=%s: weights after %d steps", batch,
             ties ? "all" : "single", steps);
    check_close_f(name, mb.params, mr.params, mb.n_params, 1e-6, 0);
    tap_ok(fabs(sb.loss_sum - sr.loss_sum) <= 1e-4 * sr.loss_sum && sb.correct == sr.correct,
           "batch %d ties=%s: step losses agree (%.6f vs %.6f)", batch, ties ? "all" : "single",
           sb.loss_sum, sr.loss_sum);
    /* the run really moved the weights */
    double moved = 0.0;
    for (size_t i = 0; i < mb.n_params; i++)
        moved = fmax(moved, fabs((double)mb.params[i] - init[i]));
    tap_ok(moved > 1e-3, "batch %d ties=%s: the steps moved the weights (by up to %.3g)", batch,
           ties ? "all" : "single", moved);
    free(init);
    cnn_trainer_free(tb);
    cnn_trainer_free(tr);
    cnn_model_free(&mb);
    cnn_model_free(&mr);
}

/* A stacked network, both engines: probabilities, every gradient and the input
 * gradient of one image (both tie rules), and the weights after 12 steps of SGD with
 * Nesterov momentum and weight decay (batch 8, and batch 1, which takes the slot path
 * as its convs are not all first). Training compounds the engines' rounding: weights
 * within 1e-5 absolute (measured in the printed worst ratio). */
static void compare_stacked(const char *desc, const float *x, const uint8_t *labels, cnn_rng *rng)
{
    cnn_arch arch;
    char err[256] = "";
    if (!tap_ok(cnn_arch_build(&arch, desc, 1, 28, 28, err, sizeof err) == CNN_OK, "%s builds%s",
                desc, err))
        return;
    cnn_model m;
    cnn_acts ab, ar;
    cnn_model_init(&m, &arch, rng);
    for (int l = 0; l < arch.n; l++)
        for (size_t i = 0; i < arch.layer[l].n_bias; i++)
            m.params[arch.layer[l].bias_at + i] = (float)(0.1 * (float)cnn_rng_normal(rng));
    cnn_acts_alloc(&ab, &arch, 1);
    cnn_acts_alloc(&ar, &arch, 1);
    const size_t np = m.n_params;
    float *gb = malloc(np * 4), *gr = malloc(np * 4), dxb[784], dxr[784];
    char name[256];
    for (int rule = 0; rule < 2; rule++) {
        memset(gb, 0, np * 4), memset(gr, 0, np * 4);
        cnn_forward(&m, &ab, x, labels[0], CNN_ENGINE_BLAS);
        cnn_forward(&m, &ar, x, labels[0], CNN_ENGINE_REFERENCE);
        if (rule == 0) {
            snprintf(name, sizeof name, "%s: probabilities", desc);
            same(name, ab.probs, ar.probs, (size_t)arch.classes, 1e-5);
        }
        cnn_backward(&m, &ab, gb, dxb, x, CNN_ENGINE_BLAS, (cnn_pool_ties)rule);
        cnn_backward(&m, &ar, gr, dxr, x, CNN_ENGINE_REFERENCE, (cnn_pool_ties)rule);
        for (int l = 0; l < arch.n; l++) {
            const cnn_layer *L = &arch.layer[l];
            if (!L->n_weights)
                continue;
            snprintf(name, sizeof name, "%s, ties=%s: layer %d gradient", desc,
                     rule ? "all" : "single", l + 1);
            /* sums over many positions cancel: 1e-5 of the array's scale, as against
             * the oracle */
            check_close_f(name, gb + L->weights_at, gr + L->weights_at, L->n_weights + L->n_bias,
                          1e-5 * fmax(max_abs(gr + L->weights_at, L->n_weights + L->n_bias), 1e-3), 1e-4);
        }
        snprintf(name, sizeof name, "%s, ties=%s: input gradient", desc, rule ? "all" : "single");
        check_close_f(name, dxb, dxr, 784, 1e-5 * fmax(max_abs(dxr, 784), 1e-3), 1e-4);
    }
    for (int batch = 1; batch <= 8; batch += 7) {
        cnn_model mb, mr;
        cnn_model_alloc(&mb, &arch);
        cnn_model_alloc(&mr, &arch);
        memcpy(mb.params, m.params, np * 4);
        memcpy(mr.params, m.params, np * 4);
        cnn_train_config c = cnn_train_config_default();
        c.batch = batch, c.lr = 0.02f, c.momentum = 0.9f, c.nesterov = 1, c.weight_decay = 1e-4f;
        cnn_trainer *tb, *tr;
        cnn_trainer_create(&tb, &arch, &c);
        c.engine = CNN_ENGINE_REFERENCE;
        cnn_trainer_create(&tr, &arch, &c);
        for (int s = 0; s < 12; s++) {
            const uint32_t idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
            cnn_train_step(tb, &mb, x, labels, idx, batch, NULL);
            cnn_train_step(tr, &mr, x, labels, idx, batch, NULL);
        }
        snprintf(name, sizeof name, "%s: weights after 12 Nesterov steps at batch %d", desc,
                 batch);
        check_close_f(name, mb.params, mr.params, np, 1e-5, 0);
        cnn_trainer_free(tb), cnn_trainer_free(tr);
        cnn_model_free(&mb), cnn_model_free(&mr);
    }
    free(gb), free(gr);
    cnn_acts_free(&ab), cnn_acts_free(&ar);
    cnn_model_free(&m);
}

/* Label smoothing is the training loss: a step's loss is the mean of cnn_forward's
 * smoothed losses (bn's batch stages: at least (1 - eps) times the plain network's
 * step loss plus eps ln 10 a sample, as the mean -ln p over 10 classes is at least ln
 * 10), and evaluation reports plain cross-entropy, the plain network's. */
static void smoothing_losses(const char *desc, const float *x, const uint8_t *labels,
                             cnn_rng *rng)
{
    char plain_desc[256];
    snprintf(plain_desc, sizeof plain_desc, "%.*s", (int)(strstr(desc, "ls") - desc), desc);
    cnn_arch arch, plain;
    if (!tap_ok(cnn_arch_build(&arch, desc, 1, 28, 28, NULL, 0) == CNN_OK &&
                    cnn_arch_build(&plain, plain_desc, 1, 28, 28, NULL, 0) == CNN_OK,
                "%s and %s build", desc, plain_desc))
        return;
    cnn_model m, mp;
    cnn_acts a;
    cnn_model_init(&m, &arch, rng);
    cnn_model_alloc(&mp, &plain);
    memcpy(mp.params, m.params, m.n_params * 4);
    if (m.n_state)
        memcpy(mp.state, m.state, m.n_state * 4);
    cnn_acts_alloc(&a, &arch, 1);
    const int n = 8;
    const double eps = arch.layer[arch.n - 1].smoothing / 100.0;
    double forward_sum = 0;
    for (int i = 0; i < n; i++)
        forward_sum += cnn_forward(&m, &a, x + (size_t)i * 784, labels[i], CNN_ENGINE_BLAS);
    cnn_train_config c = cnn_train_config_default();
    c.batch = n;
    cnn_trainer *t, *tp;
    if (!tap_ok(cnn_trainer_create(&t, &arch, &c) == CNN_OK &&
                    cnn_trainer_create(&tp, &plain, &c) == CNN_OK,
                "%s: trainers", desc))
        return;
    cnn_stats eval = {0}, eval_plain = {0}, step = {0}, step_plain = {0};
    cnn_evaluate(t, &m, x, labels, (size_t)n, NULL, &eval);
    cnn_evaluate(tp, &mp, x, labels, (size_t)n, NULL, &eval_plain);
    const uint32_t idx[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    cnn_train_step(t, &m, x, labels, idx, n, &step);
    cnn_train_step(tp, &mp, x, labels, idx, n, &step_plain);
    if (arch.n_state) {
        const double floor = (1 - eps) * step_plain.loss_sum + eps * n * log(10.0);
        tap_ok(step.loss_sum != step_plain.loss_sum && step.loss_sum > floor - 1e-5 * floor,
               "%s: a step's loss %.9g is smoothed: not the plain %.9g, at least %.9g", desc,
               step.loss_sum, step_plain.loss_sum, floor);
    } else {
        tap_ok(fabs(step.loss_sum - forward_sum) < 1e-5 * forward_sum,
               "%s: a step's loss %.9g is the smoothed loss of cnn_forward %.9g", desc,
               step.loss_sum, forward_sum);
    }
    tap_ok(eval.loss_sum == eval_plain.loss_sum && eval.loss_sum != step.loss_sum,
           "%s: evaluation's loss %.9g is plain cross-entropy (%.9g)", desc, eval.loss_sum,
           eval_plain.loss_sum);
    cnn_trainer_free(t), cnn_trainer_free(tp);
    cnn_acts_free(&a);
    cnn_model_free(&m), cnn_model_free(&mp);
}

int main(void)
{
    cnn_blas_setup();
    cnn_rng rng;
    cnn_rng_seed(&rng, 7);
    uint8_t labels[256];
    float *noisy = make_images(256, labels, 0, &rng);
    uint8_t flat_labels[256];
    float *flat = make_images(256, flat_labels, 1, &rng);

    const cnn_arch post = post_arch_mnist();
    compare_sample(&post, "post network, noisy image", noisy, labels[0], &rng);
    compare_sample(&post, "post network, flat-background image", flat, flat_labels[0], &rng);
    const cnn_arch multi = post_arch(3, 12, 15, 5, 7);
    float xm[3 * 12 * 15];
    for (size_t i = 0; i < sizeof xm / sizeof *xm; i++)
        xm[i] = (float)(cnn_rng_uniform(&rng) - 0.5);
    compare_sample(&multi, "C=3 12x15 network", xm, 4, &rng);
    /* too large for im2col's on-stack parity planes: the direct gather path */
    const cnn_arch large = post_arch(1, 70, 66, 2, 3);
    float *xl = malloc(70 * 66 * sizeof(float));
    for (int i = 0; i < 70 * 66; i++)
        xl[i] = (float)(cnn_rng_uniform(&rng) - 0.5);
    compare_sample(&large, "1x70x66 network", xl, 2, &rng);
    free(xl);
    test_identical_patches(flat, &rng);
    test_window_tie_step(&rng);

    compare_training(1, CNN_TIES_SINGLE, flat, flat_labels, 256, &rng);
    compare_training(1, CNN_TIES_ALL, flat, flat_labels, 256, &rng);
    compare_training(8, CNN_TIES_SINGLE, noisy, labels, 256, &rng);
    compare_training(8, CNN_TIES_ALL, flat, flat_labels, 256, &rng);
    compare_training(48, CNN_TIES_SINGLE, noisy, labels, 256, &rng); /* chunks of 12 */
    /* Noisy images: over a flat background, the engines' different rounding of the
     * convs after the first breaks pool ties differently (see the README). */
    compare_stacked("conv6b,relu,pool,conv8b,relu,pool,dense16,relu,softmax10", noisy, labels,
                    &rng);
    compare_stacked("conv4,relu,conv5b,relu,pool,conv6b,pool,softmax10", noisy, labels, &rng);
    compare_stacked("pool,conv5b,relu,dense12,softmax10", flat, flat_labels, &rng);
    compare_stacked("conv6bk5p2,relu,pool,conv8bs2p1,relu,conv5bk1,relu,pool,dense16,relu,softmax10",
                    noisy, labels, &rng);
    compare_stacked("conv4bk7p3s2,relu,pool,conv6k1,pool,softmax10", flat, flat_labels, &rng);
    compare_stacked("conv6bp1,relu,maxpool3s2,conv8b,relu,avgpool2,conv10bk1,gap,softmax10", noisy,
                    labels, &rng);
    compare_stacked("conv6b,relu,dropout25,pool,conv8b,relu,pool,dense16,relu,dropout50,softmax10",
                    noisy, labels, &rng);
    /* convs lowered per chunk in groups: of one image (an im2col matrix of 338 KiB),
     * into a pool, and of two (113 KiB) */
    compare_stacked("conv12bp1,relu,conv16bp1,relu,pool,conv8bp1,softmax10", noisy, labels, &rng);
    compare_stacked("conv6bp1,relu,pool,dense16,relu,softmax10ls10", noisy, labels, &rng);
    smoothing_losses("conv6bp1,relu,pool,dense16,relu,softmax10ls10", noisy, labels, &rng);
    smoothing_losses("conv6bp1,bn,relu,pool,dense16,bn,relu,softmax10ls10", noisy, labels, &rng);
    free(noisy);
    free(flat);
    return tap_done();
}
