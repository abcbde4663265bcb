/* test_stacked.c - stacked networks against an external float64 oracle:
 * tests/data/stacked-network.txt, made by tests/data/make_stacked.py (numpy, written
 * from the layer definitions alone). Two networks: A, 2x14x14 input,
 * conv4b,relu,conv6b,relu,pool,dense8,relu,softmax5 (two convs with C > 1, biases, a
 * hidden dense layer); B, 1x15x13, conv3,pool,relu,conv5b,pool,softmax4 (odd sizes,
 * pool after pool, a conv without bias not first).
 *
 * Checked for both engines: every layer's output, the probabilities and the loss of
 * four images; the gradients of all parameters and of the input under both tie rules;
 * the parameters after 3 minibatch steps of plain SGD, of SGD with momentum (and its
 * velocities), of Nesterov momentum with weight decay, and after 4 per-sample steps.
 *
 * Also, from tests/data/torch-network.txt (made by make_torch.py with PyTorch in
 * float64): two padded, strided networks on colour images (kernels 5 and 1, stride 2,
 * max, average and global average pooling), the `single` tie rule (PyTorch's), and
 * three steps of Adam, Adam with weight decay, AdamW and Nesterov SGD, with the
 * optimiser's moments or velocities.
 *
 * Tolerances, as for the post's oracle (test_oracle.c): forward values of layer l
 * (from 0) within (l + 1) * 1e-6 of the array's largest value (float32 rounding
 * grows layer by layer; plus 1e-6 relative), gradients within 1e-5, parameters
 * after training within 1e-3 of the largest change of the whole vector plus 1e-6
 * relative, so that a missing or wrong step cannot hide. Each check prints its worst
 * error as a fraction of its tolerance. */
#include "cnn.h"

#include "check.h"

#define VECTORS_PROGRAM "test_stacked"
#include "vectors.h"

static double max_abs(const double *v, size_t n)
{
    double m = 0;
    for (size_t i = 0; i < n; i++)
        m = fmax(m, fabs(v[i]));
    return m;
}

/* got vs want within scale * max|want| + rtol |want|. */
static void cmp(const char *what, const float *got, const double *want, size_t n, double scale,
                double rtol)
{
    check_close(what, got, want, n, scale * fmax(max_abs(want, n), 1e-30), rtol);
}

/* [F][H][W] to the BLAS engine's pool-block order [F][4][H/2][W/2] */
static void to_blocks(double *dst, const double *src, int F, int H, int W)
{
    const int PH = H / 2, PW = W / 2;
    for (int f = 0; f < F; f++)
        for (int k = 0; k < 4; k++)
            for (int i = 0; i < PH; i++)
                for (int j = 0; j < PW; j++)
                    dst[(((size_t)f * 4 + k) * PH + i) * PW + j] =
                        src[((size_t)f * H + 2 * i + k / 2) * W + 2 * j + k % 2];
}

static const char *engine_name(cnn_engine e) { return e == CNN_ENGINE_BLAS ? "blas" : "reference"; }

typedef struct {
    const char *X;
    cnn_arch arch;
    const double *images, *labels, *params;
    size_t in_len;
    const char *rules; /* the tie rules the file has gradients for */
} net;

static const double *need(const net *n, const char *suffix, size_t count)
{
    char name[96];
    snprintf(name, sizeof name, "%s_%s", n->X, suffix);
    return need_count(name, count);
}

static void set_params(cnn_model *m, const double *p)
{
    for (size_t i = 0; i < m->n_params; i++)
        m->params[i] = (float)p[i];
}

static void image(const net *n, int k, float *x)
{
    for (size_t i = 0; i < n->in_len; i++)
        x[i] = (float)(n->images[k * n->in_len + i] / 255.0 - 0.5);
}

static void forward_and_gradients(const net *n, cnn_engine e)
{
    cnn_model m;
    cnn_acts a;
    cnn_model_alloc(&m, &n->arch);
    cnn_acts_alloc(&a, &n->arch, 1);
    set_params(&m, n->params);
    float *x = malloc(n->in_len * sizeof *x), *dx = malloc(n->in_len * sizeof *dx);
    float *grad = malloc(m.n_params * sizeof *grad);
    double *blocks = NULL;
    const char *en = engine_name(e);
    for (int k = 0; k < 4; k++) {
        char what[160], suffix[64];
        image(n, k, x);
        const int label = (int)n->labels[k];
        const float loss = cnn_forward(&m, &a, x, label, e);
        for (int l = 0; l < n->arch.n; l++) {
            const cnn_layer *L = &n->arch.layer[l];
            const size_t len = cnn_layer_out_len(L);
            snprintf(suffix, sizeof suffix, "img%d_out%d", k, l);
            const double *want = need(n, suffix, len);
            snprintf(what, sizeof what, "%s %s: image %d, layer %d output", n->X, en, k, l);
            const double depth = 1e-6 * (l + 1); /* float32 rounding grows layer by layer */
            if (e == CNN_ENGINE_BLAS && L->pool_order) {
                const size_t stored = (size_t)L->OC * 4 * (L->OH / 2) * (L->OW / 2);
                blocks = realloc(blocks, stored * sizeof *blocks);
                to_blocks(blocks, want, L->OC, L->OH, L->OW);
                check_close(what, a.out[l], blocks, stored, depth * max_abs(want, len), 1e-6);
            } else {
                cmp(what, a.out[l], want, len, depth, 1e-6);
            }
        }
        snprintf(suffix, sizeof suffix, "img%d_probs", k);
        snprintf(what, sizeof what, "%s %s: image %d, probabilities", n->X, en, k);
        cmp(what, a.probs, need(n, suffix, (size_t)n->arch.classes), (size_t)n->arch.classes,
            1e-6, 1e-6);
        snprintf(suffix, sizeof suffix, "img%d_loss", k);
        snprintf(what, sizeof what, "%s %s: image %d, loss", n->X, en, k);
        cmp(what, &loss, need(n, suffix, 1), 1, 1e-6, 1e-6);
        for (int r = 0; r < 2; r++) {
            const cnn_pool_ties ties = r ? CNN_TIES_ALL : CNN_TIES_SINGLE;
            const char *rn = r ? "all" : "single";
            if (!strstr(n->rules, rn))
                continue;
            cnn_forward(&m, &a, x, label, e);
            memset(grad, 0, m.n_params * sizeof *grad);
            cnn_backward(&m, &a, grad, dx, x, e, ties);
            snprintf(suffix, sizeof suffix, "img%d_%s_grad", k, rn);
            snprintf(what, sizeof what, "%s %s: image %d, parameter gradient (%s ties)", n->X,
                     en, k, rn);
            cmp(what, grad, need(n, suffix, m.n_params), m.n_params, 1e-5, 1e-5);
            snprintf(suffix, sizeof suffix, "img%d_%s_dx", k, rn);
            snprintf(what, sizeof what, "%s %s: image %d, input gradient (%s ties)", n->X, en, k,
                     rn);
            cmp(what, dx, need(n, suffix, n->in_len), n->in_len, 1e-5, 1e-5);
        }
    }
    free(blocks), free(x), free(dx), free(grad);
    cnn_acts_free(&a);
    cnn_model_free(&m);
}

/* steps minibatch steps (batch: images per step) from the oracle's parameters. */
static void train(const net *n, cnn_engine e, int threads, const char *what, const char *entry,
                  const char *vel_entry, int batch, int steps, float momentum, int nesterov,
                  float wd)
{
    cnn_model m;
    cnn_model_alloc(&m, &n->arch);
    set_params(&m, n->params);
    cnn_train_config c = cnn_train_config_default();
    c.engine = e, c.batch = batch, c.threads = threads, c.lr = 0.05f;
    c.momentum = momentum, c.nesterov = nesterov, c.weight_decay = wd;
    cnn_trainer *t;
    uint8_t *px = malloc(4 * n->in_len), labels[4];
    for (size_t i = 0; i < 4 * n->in_len; i++)
        px[i] = (uint8_t)n->images[i];
    for (int k = 0; k < 4; k++)
        labels[k] = (uint8_t)n->labels[k];
    int ok = cnn_trainer_create(&t, &n->arch, &c) == CNN_OK;
    for (int s = 0; ok && s < steps; s++) {
        const uint32_t order[4] = {0, 1, 2, 3};
        const uint32_t *idx = batch == 4 ? order : order + s;
        ok = cnn_train_step_u8(t, &m, px, labels, idx, batch, NULL) == CNN_OK;
    }
    char name[160];
    snprintf(name, sizeof name, "%s %s, %d thread%s: %s", n->X, engine_name(e), threads,
             threads > 1 ? "s" : "", what);
    if (!tap_ok(ok, "%s: trains", name))
        goto out;
    const double *want = need(n, entry, m.n_params);
    double change = 0;
    for (size_t i = 0; i < m.n_params; i++)
        change = fmax(change, fabs(want[i] - n->params[i]));
    check_close(name, m.params, want, m.n_params, 1e-3 * change, 1e-6);
    if (vel_entry) {
        const double *v = need(n, vel_entry, m.n_params);
        snprintf(name + strlen(name), sizeof name - strlen(name), ", velocities");
        check_close(name, cnn_trainer_state(t, NULL), v, m.n_params, 1e-4 * max_abs(v, m.n_params),
                    1e-5);
    }
out:
    cnn_trainer_free(t);
    cnn_model_free(&m);
    free(px);
}

/* A run the file describes: "adam STEPS lr X beta1 X beta2 X eps X wd X", the same
 * with adamw, or "sgd STEPS lr X momentum X nesterov 0|1 wd X"; batch 4, all four
 * images. Checks the parameters and the optimiser's state after it. */
static void described_run(const net *n, cnn_engine e, const char *run)
{
    char entry[96], opt[16];
    snprintf(entry, sizeof entry, "%s_%s_spec", n->X, run);
    const char *spec = need_text(entry);
    int steps = 0, nesterov = 0;
    double lr = 0, a = 0, b = 0, eps = 0, wd = 0;
    cnn_train_config c = cnn_train_config_default();
    const int adam = sscanf(spec, "%15s %d lr %lf beta1 %lf beta2 %lf eps %lf wd %lf", opt, &steps,
                            &lr, &a, &b, &eps, &wd) == 7;
    const int sgd = !adam && sscanf(spec, "sgd %d lr %lf momentum %lf nesterov %d wd %lf", &steps,
                                    &lr, &a, &nesterov, &wd) == 5;
    if (!tap_ok(adam || sgd, "%s: run '%s' is understood (%s)", n->X, run, spec))
        return;
    c.engine = e, c.batch = 4, c.lr = (float)lr, c.weight_decay = (float)wd;
    if (adam) {
        c.optimizer = strcmp(opt, "adamw") == 0 ? CNN_OPTIMIZER_ADAMW : CNN_OPTIMIZER_ADAM;
        c.beta1 = (float)a, c.beta2 = (float)b, c.eps = (float)eps;
    } else {
        c.momentum = (float)a, c.nesterov = nesterov;
    }
    cnn_model m;
    cnn_model_alloc(&m, &n->arch);
    set_params(&m, n->params);
    uint8_t *px = malloc(4 * n->in_len), labels[4];
    for (size_t i = 0; i < 4 * n->in_len; i++)
        px[i] = (uint8_t)n->images[i];
    for (int k = 0; k < 4; k++)
        labels[k] = (uint8_t)n->labels[k];
    cnn_trainer *t;
    int ok = cnn_trainer_create(&t, &n->arch, &c) == CNN_OK;
    for (int s = 0; ok && s < steps; s++)
        ok = cnn_train_step_u8(t, &m, px, labels, NULL, 4, NULL) == CNN_OK;
    char name[200];
    snprintf(name, sizeof name, "%s %s: %s", n->X, engine_name(e), spec);
    if (tap_ok(ok, "%s: trains", name)) {
        snprintf(entry, sizeof entry, "%s_%s_params", n->X, run);
        const double *want = need_count(entry, m.n_params);
        double change = 0;
        for (size_t i = 0; i < m.n_params; i++)
            change = fmax(change, fabs(want[i] - n->params[i]));
        check_close(name, m.params, want, m.n_params, 1e-3 * change, 1e-6);
        size_t len;
        const float *state = cnn_trainer_state(t, &len);
        snprintf(entry, sizeof entry, "%s_%s_state", n->X, run);
        const double *ws = need_count(entry, len);
        /* each half (first and second moments) on its own scale */
        const size_t half = adam ? len / 2 : len;
        for (size_t h = 0; h < len; h += half) {
            snprintf(name + strlen(name), sizeof name - strlen(name), "%s", h ? ", second moments"
                     : adam ? ", first moments" : ", velocities");
            check_close(name, state + h, ws + h, half, 1e-4 * max_abs(ws + h, half), 1e-5);
            name[strlen(name) - (h ? strlen(", second moments") : adam ? strlen(", first moments")
                                                                       : strlen(", velocities"))] = '\0';
        }
    }
    if (ok)
        cnn_trainer_free(t);
    cnn_model_free(&m);
    free(px);
}

static void run_net(const char *X)
{
    net n = {.X = X};
    char name[32];
    snprintf(name, sizeof name, "%s_arch", X);
    const char *desc = need_text(name);
    snprintf(name, sizeof name, "%s_input", X);
    const double *in = NEED(name, 3);
    char err[256];
    const cnn_status st = cnn_arch_build(&n.arch, desc, (int)in[0], (int)in[1], (int)in[2], err,
                                         sizeof err);
    if (!tap_ok(st == CNN_OK, "%s: '%s' builds (%s)", X, desc, st == CNN_OK ? "ok" : err))
        return;
    n.in_len = (size_t)in[0] * (size_t)in[1] * (size_t)in[2];
    snprintf(name, sizeof name, "%s_images", X);
    n.images = NEED(name, 4, (size_t)in[0], (size_t)in[1], (size_t)in[2]);
    n.labels = need(&n, "labels", 4);
    n.params = need(&n, "params", n.arch.n_params);
    snprintf(name, sizeof name, "%s_rules", X);
    n.rules = has_entry(name) ? need_text(name) : "single all";
    snprintf(name, sizeof name, "%s_runs", X);
    if (has_entry(name)) { /* the runs the file describes */
        char runs[256];
        snprintf(runs, sizeof runs, "%s", need_text(name));
        for (int e = 0; e < 2; e++) {
            forward_and_gradients(&n, (cnn_engine)e);
            for (char *save, *r = strtok_r(runs, " ", &save); r; r = strtok_r(NULL, " ", &save))
                described_run(&n, (cnn_engine)e, r);
            snprintf(runs, sizeof runs, "%s", need_text(name));
        }
        return;
    }
    for (int e = 0; e < 2; e++) {
        forward_and_gradients(&n, (cnn_engine)e);
        train(&n, (cnn_engine)e, 1, "3 SGD steps, batch 4", "sgd_params", NULL, 4, 3, 0, 0, 0);
        train(&n, (cnn_engine)e, 1, "3 momentum steps", "momentum_params", "momentum_velocity",
              4, 3, 0.9f, 0, 0);
        train(&n, (cnn_engine)e, 1, "3 Nesterov steps with weight decay", "nesterov_params",
              "nesterov_velocity", 4, 3, 0.9f, 1, 5e-4f);
        train(&n, (cnn_engine)e, 1, "4 per-sample SGD steps", "seq4_params", NULL, 1, 4, 0, 0, 0);
    }
    train(&n, CNN_ENGINE_BLAS, 2, "3 momentum steps", "momentum_params", "momentum_velocity", 4,
          3, 0.9f, 0, 0);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_stacked PATH/stacked-network.txt\n");
        return 1;
    }
    cnn_blas_setup();
    load_oracle(argv[1]);
    char nets[256]; /* the networks the file has, or A and B */
    snprintf(nets, sizeof nets, "%s", has_entry("networks") ? need_text("networks") : "A B");
    for (char *save, *X = strtok_r(nets, " ", &save); X; X = strtok_r(NULL, " ", &save))
        run_net(X);
    cleanup();
    return tap_done();
}
