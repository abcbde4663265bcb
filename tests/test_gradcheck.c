/* test_gradcheck.c - finite-difference gradient checks of every layer, of both
 * engines, and of the whole network (including the conv input gradient with C > 1
 * and both max-pool tie rules), and of stacked networks (two convs with C > 1, biases,
 * ReLU, hidden dense layers, both tie rules, both engines) against an independent
 * float64 forward.
 *
 * Central differences (f(p+h) - f(p-h)) / (2h), with the loss accumulated in
 * double. A point passes when |numeric - analytic| <= ATOL + RTOL * max(|numeric|,
 * |analytic|); every checked gradient must also be clearly non-zero, and the
 * checker itself is shown to reject a zeroed, a scaled and a shuffled gradient.
 * The layer losses L = sum(out * R) are linear in what is perturbed, so their
 * differences are exact up to float rounding (RTOL 1e-3); the whole network is
 * smooth away from pool ties and max switches (RTOL 2e-2, h = 1e-3). */
#include "cnn.h"
#include "post.h"
#include "kernels.h"

#include "check.h"

#include <string.h>

typedef double (*loss_fn)(void *ctx);

typedef struct {
    double worst;   /* largest error / allowed error */
    size_t at;      /* index of that element */
    double num, ana;
    double maxabs;  /* largest |analytic| */
    size_t skipped; /* points where every step straddled a kink */
} fd_result;

/* Compare ana[i] with the central difference of f with respect to p[i], for the
 * nidx indices idx (all of 0..n-1 when idx is NULL). The max pool makes the loss
 * piecewise smooth: where the forward and backward one-sided differences disagree,
 * a kink lies within h, so the step shrinks (h/4, h/16); a point still kinked
 * after that is skipped and counted. */
static fd_result fd_compare(float *p, const float *ana, size_t n, const size_t *idx, size_t nidx,
                            loss_fn f, void *ctx, float h, double rtol, double atol)
{
    fd_result r = {0};
    if (!idx)
        nidx = n;
    const double l0 = f(ctx);
    for (size_t t = 0; t < nidx; t++) {
        const size_t i = idx ? idx[t] : t;
        const float keep = p[i];
        const double a = ana[i];
        double num = NAN;
        float step = h;
        for (int tries = 0; tries < 3; tries++, step /= 4) {
            const float up = keep + step, dn = keep - step;
            p[i] = up;
            const double lp = f(ctx);
            p[i] = dn;
            const double lm = f(ctx);
            p[i] = keep;
            const double fwd = (lp - l0) / ((double)up - keep);
            const double bwd = (l0 - lm) / ((double)keep - dn);
            if (fabs(fwd - bwd) <= 2 * (atol + rtol * fmax(fabs(fwd), fabs(bwd)))) {
                num = (lp - lm) / ((double)up - (double)dn);
                break;
            }
        }
        f(ctx); /* leave the state as at the unperturbed point */
        if (fabs(a) > r.maxabs)
            r.maxabs = fabs(a);
        if (isnan(num)) {
            r.skipped++;
            continue;
        }
        const double q = fabs(num - a) / (atol + rtol * fmax(fabs(num), fabs(a)));
        if (!(q <= r.worst)) {
            r.worst = isnan(q) ? INFINITY : q;
            r.at = i, r.num = num, r.ana = a;
        }
    }
    return r;
}

/* One TAP point from a comparison: the gradient matches, is not trivially zero
 * (its largest entry is at least `floor`), and at most a tenth of the points sat
 * on a kink. */
static int fd_report(const char *name, fd_result r, size_t pts, double floor)
{
    if (r.maxabs < floor)
        return tap_ok(0, "%s: analytic gradient is (almost) zero, max |g| = %.3g", name, r.maxabs);
    if (r.skipped * 10 > pts)
        return tap_ok(0, "%s: %zu of %zu points on a kink", name, r.skipped, pts);
    if (r.worst <= 1.0)
        return tap_ok(1, "%s (%zu points, %zu on a kink, worst %.2g of tolerance, max |g| %.3g)",
                      name, pts, r.skipped, r.worst, r.maxabs);
    return tap_ok(0, "%s: element %zu numeric %.9g analytic %.9g", name, r.at, r.num, r.ana);
}

static int fd_check(const char *name, float *p, const float *ana, size_t n, const size_t *idx,
                    size_t nidx, loss_fn f, void *ctx, float h, double rtol, double atol)
{
    fd_result r = fd_compare(p, ana, n, idx, nidx, f, ctx, h, rtol, atol);
    return fd_report(name, r, idx ? nidx : n, 100 * atol);
}

/* The checker must reject wrong gradients: zero, 5% too large, and shuffled. */
static void fd_self_test(const char *name, float *p, const float *ana, size_t n, loss_fn f,
                         void *ctx, float h, double rtol, double atol)
{
    float *bad = malloc(n * sizeof *bad);
    memset(bad, 0, n * sizeof *bad);
    fd_result z = fd_compare(p, bad, n, NULL, 0, f, ctx, h, rtol, atol);
    tap_ok(z.worst > 1.0, "%s: checker rejects a zero gradient (%.3g x tolerance)", name, z.worst);
    for (size_t i = 0; i < n; i++)
        bad[i] = ana[i] * 1.05f;
    fd_result s = fd_compare(p, bad, n, NULL, 0, f, ctx, h, rtol, atol);
    tap_ok(s.worst > 1.0, "%s: checker rejects a gradient 5%% too large (%.3g x tolerance)", name,
           s.worst);
    for (size_t i = 0; i < n; i++)
        bad[i] = ana[(i + 1) % n];
    fd_result m = fd_compare(p, bad, n, NULL, 0, f, ctx, h, rtol, atol);
    tap_ok(m.worst > 1.0, "%s: checker rejects a shuffled gradient (%.3g x tolerance)", name,
           m.worst);
    free(bad);
}

static void fill_uniform(float *v, size_t n, cnn_rng *rng, double lo, double hi)
{
    for (size_t i = 0; i < n; i++)
        v[i] = (float)(lo + (hi - lo) * cnn_rng_uniform(rng));
}

static double dot(const float *a, const float *b, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)a[i] * b[i];
    return s;
}

/* ------------------------------------------------------------------ conv */

typedef struct {
    int C, H, W, F;
    size_t nout; /* outputs the engine computes */
    float *in, *filt, *out, *col, *R;
    cnn_engine e;
} conv_ctx;

static double conv_loss(void *p)
{
    conv_ctx *c = p;
    if (c->e == CNN_ENGINE_BLAS)
        cnn_conv3x3_forward(c->out, c->col, c->in, c->filt, c->C, c->H, c->W, c->F);
    else
        cnn_conv3x3_forward_ref(c->out, c->in, c->filt, c->C, c->H, c->W, c->F);
    return dot(c->out, c->R, c->nout);
}

static void test_conv(cnn_rng *rng, cnn_engine e)
{
    const char *en = e == CNN_ENGINE_BLAS ? "blas" : "reference";
    conv_ctx c = {.C = 3, .H = 7, .W = 6, .F = 4, .e = e};
    const size_t nin = (size_t)c.C * c.H * c.W, nf = (size_t)c.F * c.C * 9;
    /* the BLAS engine computes the pool-covered positions only, in pool-block order */
    const size_t nout = e == CNN_ENGINE_BLAS ? (size_t)c.F * 4 * ((c.H - 2) / 2) * ((c.W - 2) / 2)
                                             : (size_t)c.F * (c.H - 2) * (c.W - 2);
    c.nout = nout;
    c.in = malloc(nin * sizeof(float));
    c.filt = malloc(nf * sizeof(float));
    c.out = malloc(nout * sizeof(float));
    c.R = malloc(nout * sizeof(float));
    c.col = malloc((size_t)c.C * 9 * (c.H - 2) * (c.W - 2) * sizeof(float));
    float *din = malloc(nin * sizeof(float)), *dfilt = calloc(nf, sizeof(float));
    fill_uniform(c.in, nin, rng, -1, 1);
    fill_uniform(c.filt, nf, rng, -1, 1);
    fill_uniform(c.R, nout, rng, -1, 1);

    conv_loss(&c); /* leaves im2col(in) in col for the BLAS backward */
    if (e == CNN_ENGINE_BLAS)
        cnn_conv3x3_backward(din, dfilt, 1.0f, c.col, c.R, c.filt, c.C, c.H, c.W, c.F);
    else
        cnn_conv3x3_backward_ref(din, dfilt, 1.0f, c.R, c.in, c.filt, c.C, c.H, c.W, c.F);
    char name[128];
    snprintf(name, sizeof name, "%s conv3x3 C=3 filter gradient", en);
    fd_check(name, c.filt, dfilt, nf, NULL, 0, conv_loss, &c, 1e-2f, 1e-3, 1e-4);
    snprintf(name, sizeof name, "%s conv3x3 C=3 input gradient", en);
    fd_check(name, c.in, din, nin, NULL, 0, conv_loss, &c, 1e-2f, 1e-3, 1e-4);
    if (e == CNN_ENGINE_BLAS) {
        fd_self_test("conv filter", c.filt, dfilt, nf, conv_loss, &c, 1e-2f, 1e-3, 1e-4);
        /* accumulation: a second backward adds the same gradient again */
        float *twice = malloc(nf * sizeof(float));
        memcpy(twice, dfilt, nf * sizeof(float));
        conv_loss(&c);
        cnn_conv3x3_backward(NULL, twice, 1.0f, c.col, c.R, c.filt, c.C, c.H, c.W, c.F);
        int ok = 1;
        for (size_t i = 0; i < nf; i++)
            ok &= fabsf(twice[i] - 2 * dfilt[i]) <= 1e-5f * (1 + fabsf(dfilt[i]));
        tap_ok(ok, "blas conv3x3 backward accumulates into the filter gradient");
        free(twice);
    }
    free(c.in), free(c.filt), free(c.out), free(c.R), free(c.col), free(din), free(dfilt);
}

/* ------------------------------------------------------------------ pool */

typedef struct {
    int F, H, W;
    float *in, *out, *R;
    uint8_t *arg;
    cnn_engine e;
} pool_ctx;

static double pool_loss(void *p)
{
    pool_ctx *c = p;
    if (c->e == CNN_ENGINE_BLAS)
        cnn_maxpool2_forward(c->out, c->arg, c->in, c->F, c->H, c->W);
    else
        cnn_maxpool2_forward_ref(c->out, c->arg, c->in, c->F, c->H, c->W);
    return dot(c->out, c->R, (size_t)c->F * (c->H / 2) * (c->W / 2));
}

static void test_pool(cnn_rng *rng, cnn_engine e)
{
    const char *en = e == CNN_ENGINE_BLAS ? "blas" : "reference";
    /* odd height: the last row is dropped; the BLAS engine takes pool-block order */
    pool_ctx c = {.F = 3, .H = 7, .W = 6, .e = e};
    const size_t nout = (size_t)c.F * (c.H / 2) * (c.W / 2);
    const size_t nin = e == CNN_ENGINE_BLAS ? 4 * nout : (size_t)c.F * c.H * c.W;
    c.in = malloc(nin * sizeof(float));
    c.out = malloc(nout * sizeof(float));
    c.R = malloc(nout * sizeof(float));
    c.arg = malloc(nout);
    float *din = malloc(nin * sizeof(float));
    fill_uniform(c.in, nin, rng, -1, 1);
    fill_uniform(c.R, nout, rng, -1, 1);
    char name[128];
    for (int rule = 0; rule < 2; rule++) {
        pool_loss(&c);
        if (e == CNN_ENGINE_BLAS)
            cnn_maxpool2_backward(din, c.R, c.arg, c.in, c.out, (cnn_pool_ties)rule, c.F, c.H,
                                  c.W);
        else
            cnn_maxpool2_backward_ref(din, c.R, c.arg, c.in, c.out, (cnn_pool_ties)rule, c.F,
                                      c.H, c.W);
        snprintf(name, sizeof name, "%s maxpool2 input gradient, ties=%s (no ties)", en,
                 rule ? "all" : "single");
        fd_check(name, c.in, din, nin, NULL, 0, pool_loss, &c, 1e-3f, 1e-3, 1e-4);
    }
    if (e == CNN_ENGINE_BLAS)
        fd_self_test("maxpool", c.in, din, nin, pool_loss, &c, 1e-3f, 1e-3, 1e-4);

    /* Ties: one 2x2 block (the same in both layouts) of four equal values, and one
     * with two equal maxima. */
    const float blk[2][4] = {{0.25f, 0.25f, 0.25f, 0.25f}, {-1.0f, 0.5f, 0.2f, 0.5f}};
    for (int b = 0; b < 2; b++) {
        float in[4] = {blk[b][0], blk[b][1], blk[b][2], blk[b][3]}, out, g = 2.0f, d[4];
        uint8_t arg;
        if (e == CNN_ENGINE_BLAS) {
            cnn_maxpool2_forward(&out, &arg, in, 1, 2, 2);
            cnn_maxpool2_backward(d, &g, &arg, in, &out, CNN_TIES_SINGLE, 1, 2, 2);
        } else {
            cnn_maxpool2_forward_ref(&out, &arg, in, 1, 2, 2);
            cnn_maxpool2_backward_ref(d, &g, &arg, in, &out, CNN_TIES_SINGLE, 1, 2, 2);
        }
        const int first = b == 0 ? 0 : 1;
        int ok = out == blk[b][first] && arg == first;
        for (int k = 0; k < 4; k++)
            ok &= d[k] == (k == first ? 2.0f : 0.0f);
        tap_ok(ok, "%s maxpool2 ties=single routes a tied block's gradient to the first max only",
               en);
        if (e == CNN_ENGINE_BLAS)
            cnn_maxpool2_backward(d, &g, &arg, in, &out, CNN_TIES_ALL, 1, 2, 2);
        else
            cnn_maxpool2_backward_ref(d, &g, &arg, in, &out, CNN_TIES_ALL, 1, 2, 2);
        ok = 1;
        for (int k = 0; k < 4; k++)
            ok &= d[k] == (in[k] == out ? 2.0f : 0.0f);
        tap_ok(ok, "%s maxpool2 ties=all copies a tied block's gradient to every max (%d of 4)",
               en, b == 0 ? 4 : 2);
    }
    free(c.in), free(c.out), free(c.R), free(c.arg), free(din);
}

/* ------------------------------------------------------------------ dense */

typedef struct {
    int B, K, N;
    float *x, *W, *b, *logits, *R; /* x [B][K], logits and R [B][N] */
    cnn_engine e;
} dense_ctx;

static double dense_loss(void *p)
{
    dense_ctx *c = p;
    if (c->e == CNN_ENGINE_BLAS)
        cnn_dense_forward(c->logits, c->x, c->W, c->b, c->B, c->K, c->N);
    else
        for (int r = 0; r < c->B; r++)
            cnn_dense_forward_ref(c->logits + r * c->N, c->x + r * c->K, c->W, c->b, c->K, c->N);
    return dot(c->logits, c->R, (size_t)c->B * c->N);
}

/* B = 1 takes the SGEMV/SGER path of the BLAS engine, B > 1 the SGEMM one. */
static void test_dense(cnn_rng *rng, cnn_engine e, int B)
{
    const char *en = e == CNN_ENGINE_BLAS ? "blas" : "reference";
    dense_ctx c = {.B = B, .K = 37, .N = 5, .e = e};
    const size_t nw = (size_t)c.K * c.N, nx = (size_t)B * c.K, nl = (size_t)B * c.N;
    c.x = malloc(nx * sizeof(float));
    c.W = malloc(nw * sizeof(float));
    c.b = malloc(c.N * sizeof(float));
    c.logits = malloc(nl * sizeof(float));
    c.R = malloc(nl * sizeof(float));
    float *dx = malloc(nx * sizeof(float)), *dW = calloc(nw, sizeof(float));
    float *db = calloc(c.N, sizeof(float));
    fill_uniform(c.x, nx, rng, -1, 1);
    fill_uniform(c.W, nw, rng, -1, 1);
    fill_uniform(c.b, c.N, rng, -1, 1);
    fill_uniform(c.R, nl, rng, -1, 1);
    if (e == CNN_ENGINE_BLAS)
        cnn_dense_backward(dx, dW, db, 1.0f, c.R, c.x, c.W, B, c.K, c.N);
    else
        for (int r = 0; r < B; r++)
            cnn_dense_backward_ref(dx + r * c.K, dW, db, 1.0f, c.R + r * c.N, c.x + r * c.K, c.W, c.K,
                                   c.N);
    char name[128];
    snprintf(name, sizeof name, "%s dense, %d sample(s): weight gradient", en, B);
    fd_check(name, c.W, dW, nw, NULL, 0, dense_loss, &c, 1e-2f, 1e-3, 1e-4);
    snprintf(name, sizeof name, "%s dense, %d sample(s): bias gradient", en, B);
    fd_check(name, c.b, db, c.N, NULL, 0, dense_loss, &c, 1e-2f, 1e-3, 1e-4);
    snprintf(name, sizeof name, "%s dense, %d sample(s): input gradient", en, B);
    fd_check(name, c.x, dx, nx, NULL, 0, dense_loss, &c, 1e-2f, 1e-3, 1e-4);
    if (e == CNN_ENGINE_BLAS && B == 1)
        fd_self_test("dense weight", c.W, dW, nw, dense_loss, &c, 1e-2f, 1e-3, 1e-4);
    free(c.x), free(c.W), free(c.b), free(c.logits), free(c.R), free(dx), free(dW), free(db);
}

/* ------------------------------------------------------------------ softmax */

typedef struct {
    float logits[10], probs[10];
    int label;
    float eps;
} sm_ctx;

static double sm_loss(void *p)
{
    sm_ctx *c = p;
    return cnn_softmax_xent(c->probs, NULL, c->logits, c->label, 10, c->eps);
}

/* Label smoothing: the loss against a float64 -sum q ln p with q = (1 - eps) onehot +
 * eps / N, and its gradient p - q against central differences; eps 0 is the plain
 * loss bit for bit. */
static void test_smoothing(cnn_rng *rng)
{
    sm_ctx c = {.label = 7, .eps = 0.1f};
    float dl[10], plain[10], dplain[10];
    fill_uniform(c.logits, 10, rng, -4, 4);
    const float l = cnn_softmax_xent(c.probs, dl, c.logits, c.label, 10, c.eps);
    double mx = c.logits[0], sum = 0, want = 0;
    for (int i = 1; i < 10; i++)
        mx = fmax(mx, c.logits[i]);
    for (int i = 0; i < 10; i++)
        sum += exp(c.logits[i] - mx);
    for (int i = 0; i < 10; i++) {
        const double q = (i == c.label ? 0.9 : 0.0) + 0.01;
        want -= q * (c.logits[i] - mx - log(sum));
    }
    tap_ok(fabs(l - want) < 1e-6 * want, "smoothed loss %.9g, float64 %.9g", (double)l, want);
    fd_check("smoothed cross-entropy gradient (p - q)", c.logits, dl, 10, NULL, 0, sm_loss, &c,
             1e-2f, 2e-3, 1e-4);
    double dsum = 0;
    for (int i = 0; i < 10; i++)
        dsum += dl[i];
    tap_ok(fabs(dsum) < 1e-6, "the smoothed gradient sums to 0 (%.3g)", dsum);
    const float l0 = cnn_softmax_xent(c.probs, dl, c.logits, c.label, 10, 0.0f);
    const float lp = cnn_softmax_xent(plain, dplain, c.logits, c.label, 10, 0.0f);
    tap_ok(l0 == lp && memcmp(dl, dplain, sizeof dl) == 0 && l0 < l,
           "eps 0 is the plain loss (%.9g), below the smoothed one here", (double)l0);
}

static void test_softmax(cnn_rng *rng)
{
    sm_ctx c = {.label = 3};
    float dl[10];
    fill_uniform(c.logits, 10, rng, -3, 3);
    cnn_softmax_xent(c.probs, dl, c.logits, c.label, 10, 0.0f);
    fd_check("softmax cross-entropy gradient (p - onehot)", c.logits, dl, 10, NULL, 0, sm_loss,
             &c, 1e-2f, 2e-3, 1e-4);
    double sum = 0;
    for (int i = 0; i < 10; i++)
        sum += c.probs[i];
    tap_ok(fabs(sum - 1.0) < 1e-6, "softmax probabilities sum to 1 (%.9f)", sum);

    /* Large logits: exp(1000) overflows, the stable form does not. */
    const float big[3] = {1000.0f, 0.0f, -1000.0f};
    float p[3], d[3];
    const float l1 = cnn_softmax_xent(p, d, big, 1, 3, 0.0f);
    const float l0 = cnn_softmax_xent(p, d, big, 0, 3, 0.0f);
    tap_ok(l1 == 1000.0f && l0 == 0.0f && p[0] == 1.0f && p[1] == 0.0f && isfinite(d[0]) &&
               d[0] == 0.0f,
           "softmax cross-entropy is finite and exact for logits of +-1000 (loss %g and %g)",
           (double)l1, (double)l0);
    /* The smallest representable probability still gives a finite loss. */
    const float far[2] = {0.0f, -200.0f};
    const float l2 = cnn_softmax_xent(p, NULL, far, 1, 2, 0.0f);
    tap_ok(fabsf(l2 - 200.0f) < 1e-3f, "loss of a probability below float range is 200, got %g",
           (double)l2);
}

/* ------------------------------------------------------------------ network */

/* An independent float64 forward of the whole network (the post's math, written
 * out once more): per-element finite differences against it resolve gradients to
 * ~1e-9 with a step of 1e-6, far below the gap to the nearest pool switch. */
typedef struct {
    cnn_arch s;
    double *p; /* filters | W | b, laid out like cnn_model.params */
    double *x; /* [C][H][W] */
    int label;
} dnet;

static double dnet_loss(void *ctx)
{
    const dnet *d = ctx;
    const cnn_arch *s = &d->s;
    const int OH = s->H - 2, OW = s->W - 2, PH = OH / 2, PW = OW / 2;
    const size_t K = post_dense_len(s), nf = (size_t)post_filters(s) * s->C * 9;
    const double *filt = d->p, *W = d->p + nf, *b = W + (size_t)s->classes * K;
    double *pool = malloc(K * sizeof *pool), logit[64];
    for (int f = 0; f < post_filters(s); f++)
        for (int i = 0; i < PH; i++)
            for (int j = 0; j < PW; j++) {
                double mx = -INFINITY;
                for (int di = 0; di < 2; di++)
                    for (int dj = 0; dj < 2; dj++) {
                        double v = 0.0;
                        for (int c = 0; c < s->C; c++)
                            for (int ki = 0; ki < 3; ki++)
                                for (int kj = 0; kj < 3; kj++)
                                    v += d->x[((size_t)c * s->H + 2 * i + di + ki) * s->W + 2 * j +
                                              dj + kj] *
                                         filt[(((size_t)f * s->C + c) * 3 + ki) * 3 + kj];
                        if (v > mx)
                            mx = v;
                    }
                pool[((size_t)f * PH + i) * PW + j] = mx;
            }
    double mx = -INFINITY;
    for (int n = 0; n < s->classes; n++) {
        logit[n] = b[n];
        for (size_t k = 0; k < K; k++)
            logit[n] += W[(size_t)n * K + k] * pool[k];
        if (logit[n] > mx)
            mx = logit[n];
    }
    double sum = 0.0;
    for (int n = 0; n < s->classes; n++)
        sum += exp(logit[n] - mx);
    free(pool);
    return log(sum) - (logit[d->label] - mx);
}

/* Per-element: numeric derivative of a float64 loss f with respect to v[idx[t]]
 * (double, step 1e-6) against the engine's float analytic gradient ana[idx[t]]. */
#define D_RTOL 1e-3
#define D_ATOL 1e-6
static fd_result fd_compare_f64(double *v, const float *ana, size_t n, const size_t *idx,
                                size_t nidx, loss_fn f, void *ctx)
{
    const double h = 1e-6;
    fd_result r = {0};
    if (!idx)
        nidx = n;
    for (size_t t = 0; t < nidx; t++) {
        const size_t i = idx ? idx[t] : t;
        const double keep = v[i];
        v[i] = keep + h;
        const double lp = f(ctx);
        v[i] = keep - h;
        const double lm = f(ctx);
        v[i] = keep;
        const double num = (lp - lm) / (2 * h), a = ana[i];
        const double q = fabs(num - a) / (D_ATOL + D_RTOL * fmax(fabs(num), fabs(a)));
        if (!(q <= r.worst)) {
            r.worst = isnan(q) ? INFINITY : q;
            r.at = i, r.num = num, r.ana = a;
        }
        r.maxabs = fmax(r.maxabs, fabs(a));
    }
    return r;
}

static fd_result fd_compare_d(double *v, const float *ana, size_t n, const size_t *idx,
                              size_t nidx, dnet *d)
{
    return fd_compare_f64(v, ana, n, idx, nidx, dnet_loss, d);
}

static int fd_check_d(const char *name, double *v, const float *ana, size_t n, const size_t *idx,
                      size_t nidx, dnet *d)
{
    return fd_report(name, fd_compare_d(v, ana, n, idx, nidx, d), idx ? nidx : n, 1e-2);
}

typedef struct {
    cnn_model *m;
    cnn_acts *a;
    float *x;
    float *dir; /* a direction over params (n_params) then input (input_len) */
    float t;    /* distance along it */
    float *base_p, *base_x;
    int label;
    cnn_engine e;
} dir_ctx;

/* The engine's own float forward at (params, x) + t * dir. */
static double dir_loss(void *ctx)
{
    dir_ctx *c = ctx;
    const size_t np = c->m->n_params, nx = post_input_len(&c->m->arch);
    for (size_t i = 0; i < np; i++)
        c->m->params[i] = c->base_p[i] + c->t * c->dir[i];
    for (size_t i = 0; i < nx; i++)
        c->x[i] = c->base_x[i] + c->t * c->dir[np + i];
    const double l = cnn_forward(c->m, c->a, c->x, c->label, c->e);
    memcpy(c->m->params, c->base_p, np * sizeof(float));
    memcpy(c->x, c->base_x, nx * sizeof(float));
    return l;
}

static void test_network(cnn_rng *rng, const cnn_arch *s, const char *what, int tied_image)
{
    cnn_model m;
    cnn_acts a;
    cnn_model_init(&m, s, rng);
    cnn_acts_alloc(&a, s, 1);
    /* larger dense weights than the post's randn/K, so that the conv path carries a
     * gradient well above float rounding, yet the softmax is not saturated */
    const size_t K = post_dense_len(s), nW = (size_t)s->classes * K;
    const size_t nf = (size_t)post_filters(s) * s->C * 9;
    for (size_t i = 0; i < nW; i++)
        post_view(&m.arch, m.params).W[i] = (float)(0.15 * cnn_rng_normal(rng));
    fill_uniform(post_view(&m.arch, m.params).b, (size_t)s->classes, rng, -0.1, 0.1);
    const size_t nin = post_input_len(s);
    float *x = malloc(nin * sizeof(float)), *dx = malloc(nin * sizeof(float));
    float *grad = malloc(m.n_params * sizeof(float));
    if (tied_image) { /* flat background with a graded bar: most pool blocks are ties */
        for (size_t i = 0; i < nin; i++)
            x[i] = -0.5f;
        for (int i = 8; i < 20; i++)
            for (int j = 12; j < 16; j++)
                x[i * s->W + j] = 0.5f - 0.03f * (float)(i + j);
    } else {
        fill_uniform(x, nin, rng, -0.5, 0.5);
    }
    const int label = 1;
    dnet d = {.s = *s, .label = label};
    d.p = malloc(m.n_params * sizeof(double));
    d.x = malloc(nin * sizeof(double));
    for (size_t i = 0; i < m.n_params; i++)
        d.p[i] = m.params[i];
    for (size_t i = 0; i < nin; i++)
        d.x[i] = x[i];
    size_t idx[300];
    for (int i = 0; i < 300; i++)
        idx[i] = (size_t)cnn_rng_below(rng, nW);

    /* a random direction for the directional checks */
    const size_t ndir = m.n_params + nin;
    float *dir = malloc(ndir * sizeof(float)), *bp = malloc(m.n_params * sizeof(float));
    float *bx = malloc(nin * sizeof(float));
    memcpy(bp, m.params, m.n_params * sizeof(float));
    memcpy(bx, x, nin * sizeof(float));

    for (int e = 0; e < 2; e++)
        for (int rule = 0; rule < 2; rule++) {
            const cnn_engine en_ = (cnn_engine)e;
            const char *en = e == CNN_ENGINE_BLAS ? "blas" : "reference";
            const char *rn = rule == CNN_TIES_ALL ? "all" : "single";
            memset(grad, 0, m.n_params * sizeof(float));
            cnn_forward(&m, &a, x, label, en_);
            cnn_backward(&m, &a, grad, dx, x, en_, (cnn_pool_ties)rule);
            post_params g = post_view(s, grad);
            char name[200];
            if (tied_image && rule == CNN_TIES_ALL) {
                /* The post's rule copies a gradient to every tied position: that is
                 * not the derivative, and finite differences must say so. */
                fd_result r = fd_compare_d(d.p, g.filters, nf, NULL, 0, &d);
                tap_ok(r.worst > 1.0,
                       "%s %s, ties=all over tied blocks is not the derivative (%.3g x "
                       "tolerance), as the post's rule", en, what, r.worst);
                continue;
            }
            if (e == CNN_ENGINE_BLAS && rule == CNN_TIES_SINGLE && !tied_image) {
                /* the checker rejects a filter gradient 1% off or shuffled */
                float *bad = malloc(nf * sizeof *bad);
                for (size_t i = 0; i < nf; i++)
                    bad[i] = g.filters[i] * 1.01f;
                fd_result r1 = fd_compare_d(d.p, bad, nf, NULL, 0, &d);
                for (size_t i = 0; i < nf; i++)
                    bad[i] = g.filters[(i + 1) % nf];
                fd_result r2 = fd_compare_d(d.p, bad, nf, NULL, 0, &d);
                free(bad);
                tap_ok(r1.worst > 1.0 && r2.worst > 1.0,
                       "%s: float64 checker rejects a filter gradient 1%% off (%.3g x tolerance) "
                       "or shuffled (%.3g x)", what, r1.worst, r2.worst);
            }
            snprintf(name, sizeof name, "%s %s, ties=%s: filter gradient", en, what, rn);
            fd_check_d(name, d.p, g.filters, nf, NULL, 0, &d);
            snprintf(name, sizeof name, "%s %s, ties=%s: W gradient (300 entries)", en, what, rn);
            fd_check_d(name, d.p + nf, g.W, nW, idx, 300, &d);
            snprintf(name, sizeof name, "%s %s, ties=%s: b gradient", en, what, rn);
            fd_check_d(name, d.p + nf + nW, g.b, (size_t)s->classes, NULL, 0, &d);
            if (tied_image)
                continue; /* moving one input pixel breaks ties: no derivative there */
            snprintf(name, sizeof name, "%s %s, ties=%s: input gradient", en, what, rn);
            fd_check_d(name, d.x, dx, nin, NULL, 0, &d);

            /* Directional derivatives through the engine's own float forward, along
             * random directions over every parameter and input at once. */
            for (int k = 0; k < 3; k++) {
                double ana = 0.0, norm = 0.0;
                for (size_t i = 0; i < ndir; i++) {
                    dir[i] = (float)cnn_rng_normal(rng);
                    ana += (double)dir[i] * (i < m.n_params ? grad[i] : dx[i - m.n_params]);
                    norm += (double)dir[i] * dir[i];
                }
                for (size_t i = 0; i < ndir; i++)
                    dir[i] = (float)(dir[i] / sqrt(norm));
                ana /= sqrt(norm);
                dir_ctx c = {&m, &a, x, dir, 1e-3f, bp, bx, label, en_};
                const double lp = dir_loss(&c);
                c.t = -1e-3f;
                const double lm = dir_loss(&c);
                const double num = (lp - lm) / 2e-3;
                tap_ok(fabs(num - ana) <= 1e-3 + 2e-2 * fabs(ana),
                       "%s %s, ties=%s: engine forward, directional derivative %d: numeric "
                       "%.6g analytic %.6g", en, what, rn, k + 1, num, ana);
            }
        }
    free(dir), free(bp), free(bx), free(d.p), free(d.x);
    free(x), free(dx), free(grad);
    cnn_acts_free(&a);
    cnn_model_free(&m);
}

/* ------------------------------------------------------------------ stacked networks */


static double dstack_loss(void *ctx);

/* v[at..at+n) against ana[at..at+n), per element, step 1e-6 of the float64 loss. */
static fd_result fd_compare_stack(double *v, const float *ana, size_t at, size_t n, void *d)
{
    return fd_compare_f64(v + at, ana + at, n, NULL, 0, dstack_loss, d);
}

/* relu, and the conv with a bias in both layouts: layer losses linear in what is
 * perturbed (relu is, away from 0). */
typedef struct {
    const float *x;
    float *out;
    const float *R;
    size_t n;
} relu_ctx;

static double relu_loss(void *p)
{
    relu_ctx *c = p;
    cnn_relu_forward(c->out, c->x, c->n);
    return dot(c->out, c->R, c->n);
}

static void test_relu(cnn_rng *rng)
{
    enum { N = 300 };
    float x[N], out[N], R[N], dx[N];
    fill_uniform(x, N, rng, -1, 1);
    fill_uniform(R, N, rng, -1, 1);
    relu_ctx c = {x, out, R, N};
    relu_loss(&c);
    cnn_relu_backward(dx, R, out, N);
    fd_check("relu: input gradient", x, dx, N, NULL, 0, relu_loss, &c, 1e-2f, 1e-3, 1e-4);
    fd_self_test("relu", x, dx, N, relu_loss, &c, 1e-2f, 1e-3, 1e-4);
}

typedef struct {
    float *x, *filt, *bias, *out, *col;
    const float *R;
    int C, H, W, F, blocked;
    size_t nout;
} cb_ctx;

static double cb_loss(void *p)
{
    cb_ctx *c = p;
    cnn_conv3x3_forward_ex(c->out, c->col, c->x, c->filt, c->bias, c->C, c->H, c->W, c->F,
                           c->blocked);
    return dot(c->out, c->R, c->nout);
}

static void test_conv_bias(cnn_rng *rng, int blocked)
{
    const int C = 3, H = 9, W = 8, F = 4; /* odd: the blocked layout drops a row */
    const size_t nout = (size_t)F * (blocked ? 4 * ((H - 2) / 2) * ((W - 2) / 2) : (H - 2) * (W - 2));
    const size_t nin = (size_t)C * H * W, nf = (size_t)F * C * 9;
    float *x = malloc(nin * 4), *filt = malloc(nf * 4), bias[4], *out = malloc(nout * 4);
    float *col = malloc((size_t)C * 9 * (H - 2) * (W - 2) * 4), *R = malloc(nout * 4);
    float *dx = malloc(nin * 4), *df = calloc(nf, 4), db[4] = {0};
    fill_uniform(x, nin, rng, -1, 1);
    fill_uniform(filt, nf, rng, -1, 1);
    fill_uniform(bias, 4, rng, -1, 1);
    fill_uniform(R, nout, rng, -1, 1);
    cb_ctx c = {x, filt, bias, out, col, R, C, H, W, F, blocked, nout};
    cb_loss(&c);
    cnn_conv3x3_backward_ex(dx, df, db, 1.0f, col, R, filt, C, H, W, F, blocked);
    const char *lay = blocked ? "pool-block order" : "plain layout";
    char name[96];
    snprintf(name, sizeof name, "conv with bias, %s: filter gradient", lay);
    fd_check(name, filt, df, nf, NULL, 0, cb_loss, &c, 1e-2f, 1e-3, 1e-4);
    snprintf(name, sizeof name, "conv with bias, %s: bias gradient", lay);
    fd_check(name, bias, db, 4, NULL, 0, cb_loss, &c, 1e-2f, 1e-3, 1e-4);
    snprintf(name, sizeof name, "conv with bias, %s: input gradient", lay);
    fd_check(name, x, dx, nin, NULL, 0, cb_loss, &c, 1e-2f, 1e-3, 1e-4);
    snprintf(name, sizeof name, "conv with bias, %s", lay);
    fd_self_test(name, bias, db, 4, cb_loss, &c, 1e-2f, 1e-3, 1e-4);
    free(x), free(filt), free(out), free(col), free(R), free(dx), free(df);
}

/* col2im is the adjoint of im2col: <im2col(x), y> = <x, col2im(y)>, both layouts,
 * sizes through the parity planes and past them. */
static void test_adjoint(cnn_rng *rng)
{
    static const int sizes[][3] = {{2, 13, 13}, {3, 10, 9}, {1, 28, 28}, {1, 70, 66}};
    for (int s = 0; s < 4; s++)
        for (int blocked = 0; blocked < 2; blocked++) {
            const int C = sizes[s][0], H = sizes[s][1], W = sizes[s][2];
            const size_t P = blocked ? 4 * (size_t)((H - 2) / 2) * ((W - 2) / 2)
                                     : (size_t)(H - 2) * (W - 2);
            const size_t nin = (size_t)C * H * W, ncol = (size_t)C * 9 * P;
            float *x = malloc(nin * 4), *y = malloc(ncol * 4), *col = malloc(ncol * 4);
            float *back = malloc(nin * 4);
            fill_uniform(x, nin, rng, -1, 1);
            fill_uniform(y, ncol, rng, -1, 1);
            (blocked ? cnn_im2col3x3 : cnn_im2col3x3_plain)(col, x, C, H, W);
            (blocked ? cnn_col2im3x3 : cnn_col2im3x3_plain)(back, y, C, H, W);
            const double l = dot(col, y, ncol), r = dot(x, back, nin);
            tap_ok(fabs(l - r) <= 1e-4 * (1 + fabs(l)),
                   "col2im is the adjoint of im2col, %s, %dx%dx%d: %.9g vs %.9g",
                   blocked ? "pool-block order" : "plain", C, H, W, l, r);
            free(x), free(y), free(col), free(back);
        }
}

/* An independent float64 forward of any stacked network, from the layer definitions
 * (not the engine's code), for per-element finite differences. */
typedef struct dstack {
    const cnn_arch *n;
    double *p; /* laid out like cnn_model.params */
    double *x;
    int label;
    uint8_t *keep[CNN_MAX_LAYERS]; /* dropout layers: the mask the engine drew, fixed */
} dstack;

static double dstack_loss(void *ctx)
{
    const dstack *d = ctx;
    const cnn_arch *n = d->n;
    size_t cap = (size_t)n->C * n->H * n->W;
    for (int l = 0; l < n->n; l++)
        cap = cap > cnn_layer_out_len(&n->layer[l]) ? cap : cnn_layer_out_len(&n->layer[l]);
    double *a = malloc(cap * sizeof *a), *b = malloc(cap * sizeof *b);
    memcpy(a, d->x, (size_t)n->C * n->H * n->W * sizeof *a);
    for (int l = 0; l < n->n; l++) {
        const cnn_layer *L = &n->layer[l];
        const double *w = d->p + L->weights_at, *bias = L->n_bias ? d->p + L->bias_at : NULL;
        const size_t K = (size_t)L->C * L->H * L->W;
        for (int o = 0; o < L->OC; o++)
            for (int i = 0; i < L->OH; i++)
                for (int j = 0; j < L->OW; j++) {
                    double v = 0;
                    const size_t at = ((size_t)o * L->OH + i) * L->OW + j;
                    if (L->kind == CNN_LAYER_CONV) { /* kernel Kc, stride, zero padding */
                        const int Kc = L->kernel;
                        v = bias ? bias[o] : 0;
                        for (int c = 0; c < L->C; c++)
                            for (int ki = 0; ki < Kc; ki++)
                                for (int kj = 0; kj < Kc; kj++) {
                                    const int y = i * L->stride - L->pad + ki;
                                    const int x = j * L->stride - L->pad + kj;
                                    if (y < 0 || y >= L->H || x < 0 || x >= L->W)
                                        continue;
                                    v += w[(((size_t)o * L->C + c) * Kc + ki) * Kc + kj] *
                                         a[((size_t)c * L->H + y) * L->W + x];
                                }
                    } else if (L->kind == CNN_LAYER_RELU) {
                        v = a[at] > 0 ? a[at] : 0;
                    } else if (L->kind == CNN_LAYER_POOL) {
                        v = -INFINITY;
                        for (int di = 0; di < 2; di++)
                            for (int dj = 0; dj < 2; dj++)
                                v = fmax(v, a[((size_t)o * L->H + 2 * i + di) * L->W + 2 * j + dj]);
                    } else if (L->kind == CNN_LAYER_MAXPOOL || L->kind == CNN_LAYER_AVGPOOL) {
                        const int Kp = L->kernel, S = L->stride, avg = L->kind == CNN_LAYER_AVGPOOL;
                        v = avg ? 0 : -INFINITY;
                        for (int di = 0; di < Kp; di++)
                            for (int dj = 0; dj < Kp; dj++) {
                                const double u = a[((size_t)o * L->H + i * S + di) * L->W + j * S + dj];
                                v = avg ? v + u / (Kp * Kp) : fmax(v, u);
                            }
                    } else if (L->kind == CNN_LAYER_DROPOUT) { /* inverted, fixed mask */
                        v = !d->keep[l] ? a[at] /* evaluation: the identity */
                            : d->keep[l][at] ? a[at] / (1 - L->units / 100.0) : 0;
                    } else if (L->kind == CNN_LAYER_GAP) {
                        for (int k = 0; k < L->H * L->W; k++)
                            v += a[(size_t)o * L->H * L->W + k] / (L->H * L->W);
                    } else {
                        v = bias[o];
                        for (size_t k = 0; k < K; k++)
                            v += w[(size_t)o * K + k] * a[k];
                    }
                    b[at] = v;
                }
        double *t = a;
        a = b, b = t;
    }
    double mx = -INFINITY, sum = 0;
    for (int c = 0; c < n->classes; c++)
        mx = fmax(mx, a[c]);
    for (int c = 0; c < n->classes; c++)
        sum += exp(a[c] - mx);
    /* -ln p[k] for the label, and its mean over the classes for label smoothing */
    const double eps = n->layer[n->n - 1].smoothing / 100.0;
    double mean_nll = 0;
    for (int c = 0; c < n->classes; c++)
        mean_nll += (log(sum) - (a[c] - mx)) / n->classes;
    const double loss = (1 - eps) * (log(sum) - (a[d->label] - mx)) + eps * mean_nll;
    free(a), free(b);
    return loss;
}

/* key: 0, or a training key that fixes every dropout layer's mask */
static void test_stacked_key(cnn_rng *rng, const char *desc, int C, int H, int W, uint64_t key)
{
    cnn_arch arch;
    char err[256] = "";
    if (!tap_ok(cnn_arch_build(&arch, desc, C, H, W, err, sizeof err) == CNN_OK, "%s builds %s",
                desc, err))
        return;
    cnn_model m;
    cnn_acts a;
    cnn_model_init(&m, &arch, rng);
    cnn_acts_alloc(&a, &arch, 1);
    for (int l = 0; l < arch.n; l++) /* biases that are not 0 */
        fill_uniform(m.params + arch.layer[l].bias_at, arch.layer[l].n_bias, rng, -0.2, 0.2);
    const size_t nin = (size_t)C * H * W, np = m.n_params;
    float *x = malloc(nin * 4), *dx = malloc(nin * 4), *grad = malloc(np * 4);
    fill_uniform(x, nin, rng, -0.5, 0.5);
    dstack d = {&arch, malloc(np * sizeof(double)), malloc(nin * sizeof(double)), 2, {NULL}};
    for (size_t i = 0; i < np; i++)
        d.p[i] = m.params[i];
    for (size_t i = 0; i < nin; i++)
        d.x[i] = x[i];
    /* the float64 forward agrees with the engine's (with the masks it drew) */
    a.train_key = key;
    const float lf = cnn_forward(&m, &a, x, d.label, CNN_ENGINE_REFERENCE);
    size_t kept = 0, dropped = 0;
    for (int l = 0; l < arch.n; l++)
        if (arch.layer[l].kind == CNN_LAYER_DROPOUT && key) {
            const size_t len = cnn_layer_out_len(&arch.layer[l]);
            d.keep[l] = malloc(len);
            memcpy(d.keep[l], a.args[l], len);
            for (size_t i = 0; i < len; i++)
                kept += d.keep[l][i], dropped += !d.keep[l][i];
        }
    if (key)
        tap_ok(kept > 0 && dropped > 0, "%s: the dropout masks keep %zu values and drop %zu",
               desc, kept, dropped);
    const double ld = dstack_loss(&d);
    tap_ok(fabs(lf - ld) <= 1e-5 * (1 + fabs(ld)), "%s: float64 forward %.9g, engine %.9g", desc,
           ld, (double)lf);
    for (int e = 0; e < 2; e++)
        for (int rule = 0; rule < 2; rule++) {
            memset(grad, 0, np * 4);
            cnn_forward(&m, &a, x, d.label, (cnn_engine)e);
            cnn_backward(&m, &a, grad, dx, x, (cnn_engine)e, (cnn_pool_ties)rule);
            char name[300];
            for (int l = 0; l < arch.n; l++) {
                const cnn_layer *L = &arch.layer[l];
                if (!L->n_weights)
                    continue;
                snprintf(name, sizeof name, "%s %s, ties=%s: layer %d weights and bias", desc,
                         e ? "reference" : "blas", rule ? "all" : "single", l + 1);
                fd_report(name, fd_compare_stack(d.p, grad, L->weights_at, L->n_weights + L->n_bias, &d),
                          L->n_weights + L->n_bias, 1e-3);
            }
            snprintf(name, sizeof name, "%s %s, ties=%s: input gradient", desc,
                     e ? "reference" : "blas", rule ? "all" : "single");
            fd_report(name, fd_compare_stack(d.x, dx, 0, nin, &d), nin, 1e-3);
        }
    free(x), free(dx), free(grad), free(d.p), free(d.x);
    for (int l = 0; l < arch.n; l++)
        free(d.keep[l]);
    cnn_acts_free(&a);
    cnn_model_free(&m);
}

static void test_stacked(cnn_rng *rng, const char *desc, int C, int H, int W)
{
    test_stacked_key(rng, desc, C, H, W, 0);
}

int main(void)
{
    cnn_rng rng;
    cnn_rng_seed(&rng, 20261129);
    test_conv(&rng, CNN_ENGINE_BLAS);
    test_conv(&rng, CNN_ENGINE_REFERENCE);
    test_pool(&rng, CNN_ENGINE_BLAS);
    test_pool(&rng, CNN_ENGINE_REFERENCE);
    test_dense(&rng, CNN_ENGINE_BLAS, 1);
    test_dense(&rng, CNN_ENGINE_BLAS, 3);
    test_dense(&rng, CNN_ENGINE_REFERENCE, 1);
    test_dense(&rng, CNN_ENGINE_REFERENCE, 3);
    test_softmax(&rng);
    test_smoothing(&rng);
    const cnn_arch post = post_arch_mnist();
    test_network(&rng, &post, "post network, random image", 0);
    test_network(&rng, &post, "post network, tied image", 1);
    const cnn_arch multi = post_arch(2, 10, 9, 3, 4);
    test_network(&rng, &multi, "C=2 10x9 network", 0);
    test_relu(&rng);
    test_conv_bias(&rng, 0);
    test_conv_bias(&rng, 1);
    test_adjoint(&rng);
    test_stacked(&rng, "conv4b,relu,conv5b,relu,pool,dense12,relu,softmax6", 2, 12, 11);
    test_stacked(&rng, "conv3,relu,pool,conv4b,pool,relu,dense7,softmax5", 1, 15, 14);
    test_stacked(&rng, "dense9,relu,softmax4", 2, 5, 4);
    /* kernels 5 and 1, stride 2, padding, colour input; convs into pools (pool-block
     * order) and not (plain), a stride-2 conv into a pool, odd maps */
    test_stacked(&rng, "conv4bk5p2,relu,pool,conv5s2p1,relu,conv3bk1,pool,dense7,softmax5", 3,
                 14, 13);
    test_stacked(&rng, "conv3bs2,pool,conv4k2p1,relu,dense6,relu,softmax4", 3, 17, 15);
    test_stacked(&rng, "conv2k7p3,relu,conv3bk1s3,softmax3", 2, 9, 10);
    /* window pools: overlapping (3s2), odd sizes, average, global average */
    test_stacked(&rng, "conv4bp1,relu,maxpool3s2,conv5b,relu,avgpool2s1,conv6bk1,gap,softmax4", 3,
                 13, 12);
    test_stacked(&rng, "avgpool3s2,conv3bk2,maxpool2,dense5,relu,softmax3", 2, 11, 10);
    /* dropout in training, with the masks its key draws held fixed; and in evaluation */
    test_stacked_key(&rng, "conv4b,relu,dropout30,pool,conv5bp1,relu,dropout50,dense9,relu,softmax4",
                     2, 12, 11, 0x1234567890abcdefu);
    test_stacked(&rng, "conv4b,relu,dropout30,pool,dense6,dropout20,softmax3", 1, 9, 9);
    /* label smoothing: the training loss and its gradient through the network */
    test_stacked(&rng, "conv4bp1,relu,pool,dense8,relu,softmax5ls20", 2, 10, 9);
    return tap_done();
}
