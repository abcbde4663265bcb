/* test_oracle.c - both engines against an external oracle: tests/data/post-network.txt,
 * computed in float64 by the numpy code of the "CNNs, Part 2" post (see its header).
 * Usage: test_oracle PATH/post-network.txt (a missing or malformed file fails, exit 1).
 *
 * Checked, for CNN_ENGINE_BLAS and CNN_ENGINE_REFERENCE, from the oracle's initial
 * weights: conv, pool, probs and loss of images 0 and 1; the parameter gradients of
 * both images under both pool tie rules (and that the rule really matters there);
 * the weights after 4 per-sample SGD steps (both tie rules) and after one batch-4 step
 * (single rule; BLAS also with 2 threads).
 *
 * Tolerances. The engine is float32, the oracle float64, so the error floor is float
 * rounding. Every check is |got - want| <= atol + rtol*|want|, atol scaled to the array:
 *   conv, pool, probs, loss  atol = 1e-6 * max|want|, rtol = 1e-6. Measured: largest
 *       error 1.6e-7 of max|want| (conv/pool, max|want| ~0.45, error 7e-8), probs 7e-8,
 *       loss 5e-8 relative; worst 0.10 of the tolerance.
 *   gradients                atol = 1e-5 * max|want|, rtol = 1e-5. Measured: dfilters
 *       1.6e-6 of max|want| (reference engine, a plain float sum of 676 terms; BLAS
 *       1.5e-7), dW 1.4e-7, db 3e-8; worst 0.08 of the tolerance.
 *   tie rule                 the oracle's all - single dfilters must exceed 100x the
 *       atol of 2e-5 * max|dfilters| (errors of two gradients add), and ours must match
 *       that difference within the same atol. Measured: the oracle's difference is
 *       0.022 (img0) and 0.012 (img1), 3.3e4 x that atol; ours within 0.08 of it.
 *   weights after SGD        atol = 1e-3 * max|want - init| (the largest change of that
 *       array, so a missing or wrong update cannot hide in a weight-sized tolerance),
 *       rtol = 1e-6 for the float rounding of the weight itself. Measured: filters off
 *       by 2e-8 (half an ulp of weights ~0.3), W 6e-10, b 2.5e-10; worst 0.06 of the
 *       tolerance (batch4 filters, whose largest change is only 2.3e-5).
 * So every tolerance has a margin of 10x or more over what was measured, while bugs are
 * off by orders of magnitude more (checked by mutation: a swapped tie rule, transposed
 * conv/pool indices, 3 SGD steps instead of 4, a batch of 3 instead of 4 and even lr
 * 0.00501 instead of 0.005 all fail). Each check prints a '#' line with its measured
 * error, for re-tuning. */
#include "cnn.h"
#include "post.h"
#include "kernels.h"

#include "check.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <string.h>

#define VECTORS_PROGRAM "test_oracle"
#include "vectors.h"

/* ---------------------------------------------------------------- layouts */

enum { IMG = 28, CONV = 26, POOL = 13, F = 8, NCLS = 10, KDENSE = F * POOL * POOL };
enum { NFILT = F * 9, NW = NCLS * KDENSE, NPARAMS = NFILT + NW + NCLS };

/* post (S, S, F) as [i][j][f] -> ours [f][i][j] */
static void hwf_to_fhw(double *dst, const double *src, int S)
{
    for (int i = 0; i < S; i++)
        for (int j = 0; j < S; j++)
            for (int f = 0; f < F; f++)
                dst[((size_t)f * S + i) * S + j] = src[((size_t)i * S + j) * F + f];
}

/* post W (K, N) as [k][n], k = (i*13 + j)*8 + f -> ours [n][f*169 + i*13 + j] */
static void dense_to_ours(double *dst, const double *src)
{
    for (int i = 0; i < POOL; i++)
        for (int j = 0; j < POOL; j++)
            for (int f = 0; f < F; f++) {
                const size_t k = ((size_t)i * POOL + j) * F + f;
                const size_t kk = (size_t)f * POOL * POOL + (size_t)i * POOL + j;
                for (int n = 0; n < NCLS; n++)
                    dst[(size_t)n * KDENSE + kk] = src[k * NCLS + n];
            }
}

/* A whole parameter set <prefix>_{filters,W,b} (grad: _{dfilters,dW,db}) as one flat
 * double vector in the project's layout: filters | W | b. */
static double *load_params(const char *prefix, int grad)
{
    char nf[96], nw[96], nb[96];
    snprintf(nf, sizeof nf, "%s_%sfilters", prefix, grad ? "d" : "");
    snprintf(nw, sizeof nw, "%s_%sW", prefix, grad ? "d" : "");
    snprintf(nb, sizeof nb, "%s_%sb", prefix, grad ? "d" : "");
    const double *pf = NEED(nf, F, 3, 3), *pw = NEED(nw, KDENSE, NCLS), *pb = NEED(nb, NCLS);
    double *out = malloc(NPARAMS * sizeof *out);
    if (!out)
        die("out of memory");
    memcpy(out, pf, NFILT * sizeof *out);
    dense_to_ours(out + NFILT, pw);
    memcpy(out + NFILT + NW, pb, NCLS * sizeof *out);
    return out;
}

/* ---------------------------------------------------------------- comparisons */

static double max_abs_d(const double *v, size_t n)
{
    double m = 0.0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(v[i]));
    return m;
}

/* check_close with atol = A * max|scale| (scale defaults to want), after a '#' line
 * with the measured error: the largest |err|, as a fraction of max|scale|. */
static int cmp_scaled(const char *name, const float *got, const double *want, size_t n,
                      const double *scale, double A, double rtol)
{
    const double m = max_abs_d(scale ? scale : want, n);
    double e = 0.0;
    for (size_t i = 0; i < n; i++)
        e = fmax(e, fabs((double)got[i] - want[i]));
    printf("# %s: max |err| %.3g, max |%s| %.3g, ratio %.3g\n", name, e,
           scale ? "update" : "want", m, m > 0 ? e / m : e);
    return check_close(name, got, want, n, fmax(A * m, 1e-30), rtol);
}

#define TOL_FWD_A 1e-6
#define TOL_FWD_R 1e-6
#define TOL_GRAD_A 1e-5
#define TOL_GRAD_R 1e-5
#define TOL_SGD_A 1e-3 /* of the largest change of the array */
#define TOL_SGD_R 1e-6
#define TIE_MARGIN 100.0 /* the oracle's tie effect, in multiples of the dfilters atol */

static const char *engine_name(cnn_engine e) { return e == CNN_ENGINE_BLAS ? "blas" : "reference"; }
static const char *ties_name(cnn_pool_ties t) { return t == CNN_TIES_ALL ? "all" : "single"; }

/* Gradient filters | W | b of one image against the oracle, as three test points. */
static void cmp_grad(const char *what, const float *got, const double *want)
{
    char name[200];
    snprintf(name, sizeof name, "%s dfilters", what);
    cmp_scaled(name, got, want, NFILT, NULL, TOL_GRAD_A, TOL_GRAD_R);
    snprintf(name, sizeof name, "%s dW", what);
    cmp_scaled(name, got + NFILT, want + NFILT, NW, NULL, TOL_GRAD_A, TOL_GRAD_R);
    snprintf(name, sizeof name, "%s db", what);
    cmp_scaled(name, got + NFILT + NW, want + NFILT + NW, NCLS, NULL, TOL_GRAD_A, TOL_GRAD_R);
}

/* Weights after SGD against the oracle; atol is scaled to the largest change of each
 * array from the initial weights, so that a missing update cannot hide. */
static void cmp_weights(const char *what, const float *got, const double *want,
                        const double *init, double *upd)
{
    for (size_t i = 0; i < NPARAMS; i++)
        upd[i] = want[i] - init[i];
    static const char *part[3] = {"filters", "W", "b"};
    const size_t off[3] = {0, NFILT, NFILT + NW}, len[3] = {NFILT, NW, NCLS};
    char name[200];
    for (int k = 0; k < 3; k++) {
        snprintf(name, sizeof name, "%s %s", what, part[k]);
        cmp_scaled(name, got + off[k], want + off[k], len[k], upd + off[k], TOL_SGD_A,
                   TOL_SGD_R);
    }
}

/* ---------------------------------------------------------------- main */

typedef struct oracle_img {
    double conv[F * CONV * CONV], pool[KDENSE];
    const double *probs, *loss;
    double *grad[2]; /* [CNN_TIES_SINGLE], [CNN_TIES_ALL] */
} oracle_img;

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s PATH/post-network.txt\n", argv[0]);
        return 1;
    }
    load_oracle(argv[1]);

    /* Everything the tests need, checked up front. */
    const double *pix = NEED("images", 4, IMG, IMG), *lab = NEED("labels", 4);
    uint8_t pixels[4 * IMG * IMG], labels[4];
    for (size_t i = 0; i < 4 * IMG * IMG; i++) {
        if (pix[i] < 0 || pix[i] > 255 || pix[i] != (double)(int)pix[i])
            die("'images' value %zu is not a pixel 0..255", i + 1);
        pixels[i] = (uint8_t)pix[i];
    }
    for (int i = 0; i < 4; i++) {
        if (lab[i] < 0 || lab[i] >= NCLS || lab[i] != (double)(int)lab[i])
            die("'labels' value %d is not a class 0..%d", i + 1, NCLS - 1);
        labels[i] = (uint8_t)lab[i];
    }
    double *init = load_params("init", 0);
    static oracle_img img[2];
    for (int k = 0; k < 2; k++) {
        char name[64];
        snprintf(name, sizeof name, "img%d_conv", k);
        hwf_to_fhw(img[k].conv, NEED(name, CONV, CONV, F), CONV);
        snprintf(name, sizeof name, "img%d_pool", k);
        hwf_to_fhw(img[k].pool, NEED(name, POOL, POOL, F), POOL);
        snprintf(name, sizeof name, "img%d_probs", k);
        img[k].probs = NEED(name, NCLS);
        snprintf(name, sizeof name, "img%d_loss", k);
        img[k].loss = NEED(name, 1);
        snprintf(name, sizeof name, "img%d_single", k);
        img[k].grad[CNN_TIES_SINGLE] = load_params(name, 1);
        snprintf(name, sizeof name, "img%d_all", k);
        img[k].grad[CNN_TIES_ALL] = load_params(name, 1);
    }
    double *seq4[2];
    seq4[CNN_TIES_SINGLE] = load_params("seq4_single", 0);
    seq4[CNN_TIES_ALL] = load_params("seq4_all", 0);
    double *batch4 = load_params("batch4_single", 0);

    const cnn_arch shape = post_arch_mnist();
    if (post_input_len(&shape) != IMG * IMG || shape.n_params != NPARAMS ||
        post_dense_len(&shape) != KDENSE)
        die("post_arch_mnist() is not the post's 1x28x28, 8 filters, 10 classes");

    float x[4 * IMG * IMG];
    cnn_pixels_to_float(x, pixels, 4 * IMG * IMG);
    float init_f[NPARAMS];
    for (size_t i = 0; i < NPARAMS; i++)
        init_f[i] = (float)init[i];

    cnn_model m;
    cnn_acts a;
    if (cnn_model_alloc(&m, &shape) != CNN_OK)
        die("cnn_model_alloc failed");
    if (cnn_acts_alloc(&a, &shape, 1) != CNN_OK) {
        cnn_model_free(&m);
        die("cnn_acts_alloc failed");
    }
    float *grad[2], *diff = malloc(NFILT * sizeof *diff);
    double *upd = malloc(NPARAMS * sizeof *upd), diff_want[NFILT];
    grad[0] = malloc(m.n_params * sizeof(float));
    grad[1] = malloc(m.n_params * sizeof(float));
    if (!grad[0] || !grad[1] || !diff || !upd)
        die("out of memory");

    static const cnn_engine engines[2] = {CNN_ENGINE_BLAS, CNN_ENGINE_REFERENCE};
    static const cnn_pool_ties ties[2] = {CNN_TIES_ALL, CNN_TIES_SINGLE};
    char name[128];

    /* Forward and gradients of images 0 and 1 at the initial weights. */
    for (int e = 0; e < 2; e++)
        for (int k = 0; k < 2; k++) {
            const char *en = engine_name(engines[e]);
            const float *xk = x + (size_t)k * IMG * IMG;
            memcpy(m.params, init_f, sizeof init_f);
            const float loss = cnn_forward(&m, &a, xk, labels[k], engines[e]);
            snprintf(name, sizeof name, "%s img%d conv", en, k);
            static float conv_nchw[F * CONV * CONV]; /* the BLAS engine's is in pool-block order */
            if (engines[e] == CNN_ENGINE_BLAS)
                cnn_blocks_to_nchw(conv_nchw, a.out[POST_CONV], F, CONV, CONV);
            else
                memcpy(conv_nchw, a.out[POST_CONV], sizeof conv_nchw);
            cmp_scaled(name, conv_nchw, img[k].conv, F * CONV * CONV, NULL, TOL_FWD_A, TOL_FWD_R);
            snprintf(name, sizeof name, "%s img%d pool", en, k);
            cmp_scaled(name, a.out[POST_POOL], img[k].pool, KDENSE, NULL, TOL_FWD_A, TOL_FWD_R);
            snprintf(name, sizeof name, "%s img%d probs", en, k);
            cmp_scaled(name, a.probs, img[k].probs, NCLS, NULL, TOL_FWD_A, TOL_FWD_R);
            snprintf(name, sizeof name, "%s img%d loss", en, k);
            cmp_scaled(name, &loss, img[k].loss, 1, NULL, TOL_FWD_A, TOL_FWD_R);

            for (int t = 0; t < 2; t++) {
                float *g = grad[ties[t]];
                memset(g, 0, m.n_params * sizeof(float));
                cnn_forward(&m, &a, xk, labels[k], engines[e]);
                cnn_backward(&m, &a, g, NULL, xk, engines[e], ties[t]);
                snprintf(name, sizeof name, "%s img%d %s", en, k, ties_name(ties[t]));
                cmp_grad(name, post_view(&shape, g).filters, img[k].grad[ties[t]]);
            }

            /* The tie rule must matter on this image: the oracle's two dfilters differ by
             * far more than the tolerance, and ours differ in the same way. */
            const double *wa = img[k].grad[CNN_TIES_ALL], *ws = img[k].grad[CNN_TIES_SINGLE];
            for (int i = 0; i < NFILT; i++) {
                diff_want[i] = wa[i] - ws[i];
                diff[i] = grad[CNN_TIES_ALL][i] - grad[CNN_TIES_SINGLE][i];
            }
            const double atol = 2.0 * TOL_GRAD_A * fmax(max_abs_d(wa, NFILT), max_abs_d(ws, NFILT));
            const double dmax = max_abs_d(diff_want, NFILT);
            size_t worst;
            const double r = close_ratio(diff, diff_want, NFILT, atol, 0.0, &worst);
            printf("# %s img%d all - single dfilters: oracle max |diff| %.3g (%.3g x atol), "
                   "ours off by %.3g of atol\n", en, k, dmax, dmax / atol, r);
            if (!(dmax > TIE_MARGIN * atol))
                tap_ok(0, "%s img%d tie rule matters: the oracle's all and single dfilters "
                          "differ by only %.3g (atol %.3g)", en, k, dmax, atol);
            else if (!(r <= 1.0))
                tap_ok(0, "%s img%d tie rule matters: our all - single dfilters element %zu is "
                          "%.9g, the oracle's %.9g (atol %.3g)", en, k, worst, (double)diff[worst],
                       diff_want[worst], atol);
            else
                tap_ok(1, "%s img%d tie rule matters (oracle all - single dfilters up to %.3g, "
                          "ours match, worst %.2g of tolerance)", en, k, dmax, r);
        }

    /* SGD from the initial weights: 4 per-sample steps over images 0..3, and one
     * batch-4 step with the single-max rule. */
    struct run {
        cnn_engine engine;
        cnn_pool_ties ties;
        int batch, threads;
    } runs[] = {
        {CNN_ENGINE_BLAS, CNN_TIES_ALL, 1, 1},      {CNN_ENGINE_BLAS, CNN_TIES_SINGLE, 1, 1},
        {CNN_ENGINE_REFERENCE, CNN_TIES_ALL, 1, 1}, {CNN_ENGINE_REFERENCE, CNN_TIES_SINGLE, 1, 1},
        {CNN_ENGINE_BLAS, CNN_TIES_SINGLE, 4, 1},   {CNN_ENGINE_BLAS, CNN_TIES_SINGLE, 4, 2},
        {CNN_ENGINE_REFERENCE, CNN_TIES_SINGLE, 4, 1},
    };
    for (size_t r = 0; r < sizeof runs / sizeof runs[0]; r++) {
        const struct run *u = &runs[r];
        const cnn_train_config cfg = {.engine = u->engine, .ties = u->ties, .batch = u->batch,
                                      .threads = u->threads, .lr = 0.005f};
        if (u->batch == 1)
            snprintf(name, sizeof name, "%s seq4 %s", engine_name(u->engine), ties_name(u->ties));
        else
            snprintf(name, sizeof name, "%s batch4 %s (%d thread%s)", engine_name(u->engine),
                     ties_name(u->ties), u->threads, u->threads > 1 ? "s" : "");
        cnn_trainer *tr;
        cnn_status st = cnn_trainer_create(&tr, &shape, &cfg);
        if (st != CNN_OK) {
            tap_ok(0, "%s: cnn_trainer_create: %s", name, cnn_status_str(st));
            continue;
        }
        memcpy(m.params, init_f, sizeof init_f);
        cnn_stats stats = {0};
        if (u->batch == 1)
            for (uint32_t i = 0; i < 4 && st == CNN_OK; i++)
                st = cnn_train_step(tr, &m, x, labels, &i, 1, &stats);
        else
            st = cnn_train_step(tr, &m, x, labels, NULL, 4, &stats);
        cnn_trainer_free(tr);
        if (st != CNN_OK || stats.count != 4) {
            tap_ok(0, "%s: cnn_train_step: %s (%zu samples)", name, cnn_status_str(st),
                   stats.count);
            continue;
        }
        cmp_weights(name, m.params, u->batch == 1 ? seq4[u->ties] : batch4, init, upd);
    }

    free(grad[0]);
    free(grad[1]);
    free(diff);
    free(upd);
    cnn_acts_free(&a);
    cnn_model_free(&m);
    for (int k = 0; k < 2; k++) {
        free(img[k].grad[0]);
        free(img[k].grad[1]);
    }
    free(seq4[0]);
    free(seq4[1]);
    free(batch4);
    free(init);
    cleanup();
    return tap_done();
}
