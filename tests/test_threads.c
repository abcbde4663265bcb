/* test_threads.c - training the same data from the same seed gives bit-identical
 * weights, losses and evaluation results with 1, 2 and 3 threads, for both engines,
 * both tie rules and batch sizes 1, 7, 16 and 40 (more samples than CNN_MAX_CHUNKS),
 * and so does training on the uint8 pixels (cnn_train_step_u8, cnn_evaluate_u8).
 * Also: a step leaves the caller's OpenMP thread count as it was. */
#include "cnn.h"
#include "steps.h"
#include "post.h"

#include "check.h"
#include "config.h"
#define VECTORS_PROGRAM "test_threads"
#include "vectors.h"

#include <math.h>
#include <string.h>
#if HAVE_OPENMP
#include <omp.h>
#endif

#define N 240

typedef struct {
    float *params;
    double loss;
    size_t correct;
    cnn_stats eval;
} run_result;

/* Images as floats x, or as the pixels px when x is NULL. */
static run_result run(int threads, int batch, cnn_engine e, cnn_pool_ties ties, const float *x,
                      const uint8_t *px, const uint8_t *labels)
{
    const cnn_arch s = post_arch_mnist();
    cnn_rng rng;
    cnn_rng_seed(&rng, 42);
    cnn_model m;
    cnn_model_init(&m, &s, &rng);
    cnn_train_config c = cnn_train_config_default();
    c.engine = e;
    c.ties = ties;
    c.batch = batch;
    c.threads = threads;
    c.lr = 0.01f;
    cnn_trainer *t;
    run_result r = {0};
    if (cnn_trainer_create(&t, &s, &c) != CNN_OK)
        return r;
    uint32_t order[N];
    for (uint32_t i = 0; i < N; i++)
        order[i] = i;
    cnn_rng_shuffle(&rng, order, N);
    cnn_stats st = {0};
    for (int i = 0; i < N; i += batch) {
        const int n = N - i < batch ? N - i : batch;
        if (x)
            cnn_train_step(t, &m, x, labels, order + i, n, &st);
        else
            cnn_train_step_u8(t, &m, px, labels, order + i, n, &st);
    }
    if (x)
        cnn_evaluate(t, &m, x, labels, N, NULL, &r.eval);
    else
        cnn_evaluate_u8(t, &m, px, labels, N, NULL, &r.eval);
    r.loss = st.loss_sum;
    r.correct = st.correct;
    r.params = malloc(m.n_params * sizeof(float));
    memcpy(r.params, m.params, m.n_params * sizeof(float));
    cnn_trainer_free(t);
    cnn_model_free(&m);
    return r;
}

/* A stacked network with momentum, weight decay and a cosine schedule: the weights
 * and velocities after training on 1 thread and on 2 and 3 are the same bits. */
static void stacked_threads(const char *desc, const uint8_t *px, const uint8_t *labels)
{
    cnn_arch arch;
    cnn_arch_build(&arch, desc, 1, 28, 28, NULL, 0);
    float *first = NULL, *first_v = NULL;
    for (int batch = 1; batch <= 40; batch += 39)
        for (int th = 1; th <= 3; th++) {
            cnn_rng rng;
            cnn_rng_seed(&rng, 11);
            cnn_model m;
            cnn_model_init(&m, &arch, &rng);
            cnn_train_config c = cnn_train_config_default();
            c.batch = batch, c.threads = th, c.lr = 0.05f, c.momentum = 0.9f, c.nesterov = 1;
            c.weight_decay = 5e-4f;
            cnn_trainer *t;
            cnn_trainer_create(&t, &arch, &c);
            const int steps = batch == 1 ? 40 : N / batch;
            const cnn_lr_schedule cosine = {.kind = CNN_SCHEDULE_COSINE, .lr = 0.05f,
                                            .steps = (uint64_t)steps, .gamma = 1.0f};
            for (int i = 0; i < steps; i++) {
                cnn_trainer_set_lr(t, cnn_lr_at(&cosine, (uint64_t)i));
                const int n = batch == 1 ? 1 : batch;
                cnn_train_step_u8(t, &m, px, labels, NULL, n, NULL);
            }
            const size_t np = m.n_params;
            if (th == 1) {
                free(first), free(first_v);
                first = malloc(np * 4), first_v = malloc(np * 4);
                memcpy(first, m.params, np * 4);
                memcpy(first_v, cnn_trainer_state(t, NULL), np * 4);
            } else {
                tap_ok(memcmp(first, m.params, np * 4) == 0 &&
                           memcmp(first_v, cnn_trainer_state(t, NULL), np * 4) == 0,
                       "%s, batch %d, Nesterov, weight decay, cosine: %d threads bit-identical "
                       "to 1 (weights and velocities)", desc, batch, th);
            }
            cnn_trainer_free(t);
            cnn_model_free(&m);
        }
    free(first), free(first_v);
}

static int same_move(cnn_move a, cnn_move b)
{
    return a.dy == b.dy && a.dx == b.dx && a.flip == b.flip && a.angle == b.angle &&
           a.zoom == b.zoom;
}

/* Image i's pixel (y, x) after a turn by a multiple of 90 degrees counter-clockwise
 * (quarter 0..3), then a shift and a mirror: an index permutation, no interpolation. */
static int quarter_source(int quarter, int dy, int dx, int flip, int y, int x, int *sy,
                          int *sx)
{
    const int u = (flip ? 27 - x : x) - dx, v = y - dy; /* the turned image's pixel */
    if (u < 0 || u > 27 || v < 0 || v > 27)
        return 0;
    const int q = quarter & 3; /* a turn by 90 moves source (r, c) to (27 - c, r) */
    *sy = q == 0 ? v : q == 1 ? u : q == 2 ? 27 - v : 27 - u;
    *sx = q == 0 ? u : q == 1 ? 27 - v : q == 2 ? 27 - u : v;
    return 1;
}

/* Turned and zoomed images (cnn_move_input): quarter turns are the pixels permuted,
 * any turn and zoom is the bilinear mix computed here in double, and training steps on
 * turned images are the same bits on 1, 2 and 3 threads. */
static void turned(const uint8_t *pix, const uint8_t *labels)
{
    const cnn_norm unit = {.kind = CNN_NORM_UNIT};
    float out[784];
    double worst = 0.0;
    for (int k = 0; k < 16; k++) {
        const cnn_move mv = {.dy = (int8_t)(k % 3 - 1), .dx = (int8_t)(k % 5 - 2),
                             .flip = (uint8_t)(k & 1), .angle = 90.0f * (float)(k % 4 - 1)};
        const uint8_t *img = pix + (size_t)k * 784;
        cnn_move_input(out, img, &unit, 1, 28, 28, mv);
        for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++) {
                int sy, sx;
                const int in = quarter_source((k % 4 + 3) % 4, mv.dy, mv.dx, mv.flip, y, x,
                                              &sy, &sx);
                const double want = ((in ? img[sy * 28 + sx] : 0) - 127.5) / 255.0;
                const double d = fabs(out[y * 28 + x] - want);
                worst = d > worst ? d : worst;
            }
    }
    tap_ok(worst < 1e-5, "turns by -90, 0, 90 and 180 degrees with shifts and mirrors are the "
                         "pixels permuted (largest difference %.2g)", worst);
    worst = 0.0;
    for (int k = 0; k < 16; k++) {
        const cnn_move mv = {.dy = (int8_t)(k % 3 - 1), .dx = (int8_t)(k % 5 - 2),
                             .flip = (uint8_t)(k & 1), .angle = -25.0f + 3.7f * (float)k,
                             .zoom = -0.2f + 0.03f * (float)k};
        const uint8_t *img = pix + (size_t)k * 784;
        cnn_move_input(out, img, &unit, 1, 28, 28, mv);
        const double a = mv.angle * 3.14159265358979323846 / 180.0, s = 1.0 + mv.zoom;
        for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++) {
                /* where the output pixel comes from: undo the mirror and the shift, then
                 * the zoom and the turn about the centre (13.5, 13.5) */
                const double px = (mv.flip ? 27 - x : x) - mv.dx - 13.5, py = y - mv.dy - 13.5;
                const double sx = (cos(a) * px - sin(a) * py) / s + 13.5;
                const double sy = (sin(a) * px + cos(a) * py) / s + 13.5;
                double v = 0.0;
                for (int yy = (int)floor(sy); yy <= (int)floor(sy) + 1; yy++)
                    for (int xx = (int)floor(sx); xx <= (int)floor(sx) + 1; xx++)
                        if (yy >= 0 && yy < 28 && xx >= 0 && xx < 28)
                            v += (1.0 - fabs(sy - yy)) * (1.0 - fabs(sx - xx)) *
                                 img[yy * 28 + xx];
                const double d = fabs(out[y * 28 + x] - (v - 127.5) / 255.0);
                worst = d > worst ? d : worst;
            }
    }
    tap_ok(worst < 1e-4, "turns of -25..31 degrees with zooms of -20%%..25%%, shifts and "
                         "mirrors are the bilinear mix in double (largest difference %.2g)",
           worst);
    /* PyTorch's affine_grid and grid_sample through the twin's warp (torch-turn.txt) */
    enum { TC = 3, TH = 11, TW = 14 };
    uint8_t img[TC * TH * TW];
    for (int c = 0; c < TC; c++)
        for (int y = 0; y < TH; y++)
            for (int x = 0; x < TW; x++)
                img[(c * TH + y) * TW + x] = (uint8_t)((7 * c + 13 * y * y + 5 * x) % 256);
    const double *moves = need_dims("moves", (size_t[]){8, 2}, 2);
    float got[TC * TH * TW];
    for (int k = 0; k < 8; k++) {
        char name[16];
        snprintf(name, sizeof name, "moved%d", k);
        const double *want = need_dims(name, (size_t[]){TC, TH, TW}, 3);
        const cnn_move mv = {.angle = (float)moves[2 * k], .zoom = (float)moves[2 * k + 1]};
        cnn_move_input(got, img, &unit, TC, TH, TW, mv);
        double d = 0.0;
        for (int i = 0; i < TC * TH * TW; i++)
            d = fmax(d, fabs(got[i] - want[i]));
        tap_ok(d < 1e-5, "a turn by %g degrees and a zoom of %g on a 3 x 11 x 14 image: "
                         "PyTorch's grid_sample within %.2g", moves[2 * k], moves[2 * k + 1], d);
    }
    enum { B = 20 };
    cnn_move mv[B];
    uint32_t idx[B];
    for (int i = 0; i < B; i++)
        idx[i] = (uint32_t)i;
    cnn_draw_moves(mv, 5, 1, idx, B, 2, 1, 15.0f, 0.1f);
    const cnn_arch s = post_arch_mnist();
    float *ref = NULL;
    for (int th = 1; th <= 3; th++) {
        cnn_rng rng;
        cnn_rng_seed(&rng, 8);
        cnn_model m;
        cnn_model_init(&m, &s, &rng);
        cnn_train_config c = cnn_train_config_default();
        c.batch = B, c.threads = th, c.lr = 0.05f;
        cnn_trainer *t;
        cnn_trainer_create(&t, &s, &c);
        for (int k = 0; k < 3; k++)
            cnn_train_step_u8_moved(t, &m, pix, labels, NULL, B, mv, NULL);
        if (th == 1) {
            ref = malloc(m.n_params * 4);
            memcpy(ref, m.params, m.n_params * 4);
        } else {
            tap_ok(memcmp(ref, m.params, m.n_params * 4) == 0,
                   "turned, zoomed, shifted and mirrored images, %d threads: bit-identical to "
                   "1 thread", th);
        }
        cnn_trainer_free(t);
        cnn_model_free(&m);
    }
    free(ref);
}

/* Moved images: a step on the pixels with shifts and flips is the step on images moved
 * by hand (shifted, then mirrored; bit for bit), and any thread count gives the same
 * bits. */
static void shifted(const uint8_t *pix, const uint8_t *labels)
{
    enum { B = 24 };
    cnn_move sh[B];
    for (int i = 0; i < B; i++)
        sh[i] = (cnn_move){.dy = (int8_t)(i % 5 - 2), .dx = (int8_t)((i * 7) % 9 - 4),
                           .flip = (uint8_t)(i % 3 == 0)};
    uint8_t *moved = calloc((size_t)B * 784, 1);
    for (int i = 0; i < B; i++)
        for (int y = 0; y < 28; y++)
            for (int x = 0; x < 28; x++) {
                const int sy = y - sh[i].dy, sx = (sh[i].flip ? 27 - x : x) - sh[i].dx;
                if (sy >= 0 && sy < 28 && sx >= 0 && sx < 28)
                    moved[(size_t)i * 784 + y * 28 + x] = pix[(size_t)i * 784 + sy * 28 + sx];
            }
    float *x = malloc((size_t)B * 784 * sizeof *x);
    cnn_pixels_to_float(x, moved, (size_t)B * 784);
    const cnn_arch s = post_arch_mnist();
    float *ref = NULL;
    for (int run = 0; run < 4; run++) { /* 0: by hand, 1 thread; 1..3: shifted, 1..3 threads */
        cnn_rng rng;
        cnn_rng_seed(&rng, 8);
        cnn_model m;
        cnn_model_init(&m, &s, &rng);
        cnn_train_config c = cnn_train_config_default();
        c.batch = B, c.threads = run ? run : 1, c.lr = 0.05f;
        cnn_trainer *t;
        cnn_trainer_create(&t, &s, &c);
        for (int k = 0; k < 3; k++)
            if (run == 0)
                cnn_train_step(t, &m, x, labels, NULL, B, NULL);
            else
                cnn_train_step_u8_moved(t, &m, pix, labels, NULL, B, sh, NULL);
        if (run == 0) {
            ref = malloc(m.n_params * 4);
            memcpy(ref, m.params, m.n_params * 4);
        } else {
            tap_ok(memcmp(ref, m.params, m.n_params * 4) == 0,
                   "shifted and mirrored images, %d thread%s: bit-identical to training on "
                   "images moved by hand", run, run > 1 ? "s" : "");
        }
        cnn_trainer_free(t);
        cnn_model_free(&m);
    }
    cnn_move bad[B];
    memcpy(bad, sh, sizeof bad);
    bad[5].dx = 9;
    cnn_model m;
    cnn_trainer *t;
    cnn_train_config c = cnn_train_config_default();
    c.batch = B;
    cnn_model_alloc(&m, &s);
    cnn_trainer_create(&t, &s, &c);
    tap_ok(cnn_train_step_u8_moved(t, &m, pix, labels, NULL, B, bad, NULL) == CNN_ERR_ARG,
           "a shift of 9 pixels is refused");
    bad[5].dx = 0, bad[5].flip = 2;
    tap_ok(cnn_train_step_u8_moved(t, &m, pix, labels, NULL, B, bad, NULL) == CNN_ERR_ARG,
           "a flip other than 0 or 1 is refused");
    bad[5].flip = 0, bad[7].angle = 181.0f;
    tap_ok(cnn_train_step_u8_moved(t, &m, pix, labels, NULL, B, bad, NULL) == CNN_ERR_ARG,
           "a turn of 181 degrees is refused");
    bad[7].angle = 0.0f, bad[2].zoom = NAN;
    tap_ok(cnn_train_step_u8_moved(t, &m, pix, labels, NULL, B, bad, NULL) == CNN_ERR_ARG,
           "a zoom that is not a number is refused");
    cnn_trainer_free(t);
    cnn_model_free(&m);
    free(ref), free(x), free(moved);
}

/* Steps in parts (as data-parallel processes run them): P trainers, each computing
 * its contiguous share of the chunks, exchanging slots, losses, predictions and flags
 * by copying, then finishing: every "process" holds the weights one trainer alone
 * reaches, bit for bit, for P = 2 and 3, a stacked network with Nesterov momentum. */
static void in_parts(const uint8_t *pix, const uint8_t *labels)
{
    cnn_arch arch;
    cnn_arch_build(&arch, "conv4b,relu,pool,conv6b,relu,pool,dense12,relu,softmax10", 1, 28, 28,
                   NULL, 0);
    enum { B = 40, STEPS = 5, PMAX = 3 };
    cnn_train_config c = cnn_train_config_default();
    c.batch = B, c.lr = 0.05f, c.momentum = 0.9f, c.nesterov = 1, c.weight_decay = 1e-4f;
    cnn_rng rng;
    cnn_rng_seed(&rng, 21);
    cnn_model ref;
    cnn_model_init(&ref, &arch, &rng);
    const size_t np = ref.n_params;
    float *init = malloc(np * 4);
    memcpy(init, ref.params, np * 4);
    cnn_trainer *t;
    cnn_trainer_create(&t, &arch, &c);
    cnn_stats whole = {0};
    for (int s = 0; s < STEPS; s++)
        cnn_train_step_u8(t, &ref, pix + (size_t)s * B * 784, labels + s * B, NULL, B, &whole);
    cnn_trainer_free(t);
    for (int P = 2; P <= PMAX; P++) {
        cnn_model m[PMAX];
        cnn_trainer *tr[PMAX];
        for (int r = 0; r < P; r++) {
            cnn_model_alloc(&m[r], &arch);
            memcpy(m[r].params, init, np * 4);
            cnn_trainer_create(&tr[r], &arch, &c);
        }
        cnn_stats st = {0};
        const int nch = cnn_chunk_count(B);
        for (int s = 0; s < STEPS; s++) {
            const uint8_t *px = pix + (size_t)s * B * 784, *lab = labels + s * B;
            for (int r = 0; r < P; r++)
                cnn_train_step_chunks(tr[r], &m[r], px, lab, NULL, B, NULL, r * nch / P,
                                      (r + 1) * nch / P);
            for (int r = 0; r < P; r++) /* rank r's chunks to every other rank */
                for (int q = 0; q < P; q++) {
                    if (q == r)
                        continue;
                    float *sr, *sq, *lr_, *lq;
                    uint8_t *pr, *pq, *okr, *okq;
                    size_t stride;
                    cnn_trainer_exchange(tr[r], &sr, &stride, &lr_, &pr, &okr);
                    cnn_trainer_exchange(tr[q], &sq, &stride, &lq, &pq, &okq);
                    for (int ch = r * nch / P; ch < (r + 1) * nch / P; ch++) {
                        const int lo = ch * B / nch, hi = (ch + 1) * B / nch;
                        memcpy(sq + (size_t)ch * stride, sr + (size_t)ch * stride, np * 4);
                        memcpy(lq + lo, lr_ + lo, (size_t)(hi - lo) * 4);
                        memcpy(pq + lo, pr + lo, (size_t)(hi - lo));
                        okq[ch] = okr[ch];
                    }
                }
            for (int r = 0; r < P; r++)
                cnn_train_step_finish(tr[r], &m[r], lab, NULL, B, r == 0 ? &st : NULL);
        }
        int same = st.loss_sum == whole.loss_sum && st.correct == whole.correct;
        for (int r = 0; r < P; r++) {
            same &= memcmp(m[r].params, ref.params, np * 4) == 0;
            cnn_trainer_free(tr[r]);
            cnn_model_free(&m[r]);
        }
        tap_ok(same, "steps in parts over %d processes: every process's weights and the step "
               "statistics are bit-identical to one trainer's", P);
    }
    free(init);
    cnn_model_free(&ref);
}

/* Dropout masks come from the seed, the epoch and the samples: a step in epoch 2 is not
 * the step in epoch 1, nor with another seed; the same seed and epoch give the same
 * bits; evaluation does not drop (its loss is that of the network without dropout). */
static void dropout_masks(const uint8_t *px, const uint8_t *labels)
{
    enum { B = 16 };
    cnn_arch with, without;
    cnn_arch_build(&with, "conv4b,relu,pool,dropout50,dense16,relu,dropout50,softmax10", 1, 28,
                   28, NULL, 0);
    cnn_arch_build(&without, "conv4b,relu,pool,dense16,relu,softmax10", 1, 28, 28, NULL, 0);
    cnn_rng rng;
    cnn_rng_seed(&rng, 41);
    cnn_model init;
    cnn_model_init(&init, &with, &rng);
    const size_t P = init.n_params;
    float *after[4];
    const uint64_t seeds[4] = {7, 7, 7, 8}, epochs[4] = {1, 1, 2, 1};
    for (int r = 0; r < 4; r++) {
        cnn_model m;
        cnn_model_alloc(&m, &with);
        memcpy(m.params, init.params, P * 4);
        cnn_train_config c = cnn_train_config_default();
        c.batch = B, c.lr = 0.1f, c.seed = seeds[r], c.threads = 1 + r % 2;
        cnn_trainer *t;
        cnn_trainer_create(&t, &with, &c);
        cnn_trainer_set_epoch(t, epochs[r]);
        cnn_train_step_u8(t, &m, px, labels, NULL, B, NULL);
        after[r] = malloc(P * 4);
        memcpy(after[r], m.params, P * 4);
        cnn_trainer_free(t);
        cnn_model_free(&m);
    }
    tap_ok(!memcmp(after[0], after[1], P * 4) && memcmp(after[0], after[2], P * 4) &&
               memcmp(after[0], after[3], P * 4),
           "dropout: the same seed and epoch give the same step (1 and 2 threads); another "
           "epoch or seed, another");
    /* evaluation: the same loss as the network without its dropout layers */
    cnn_model m2;
    cnn_model_alloc(&m2, &without);
    memcpy(m2.params, init.params, P * 4);
    cnn_train_config c = cnn_train_config_default();
    c.batch = B;
    cnn_trainer *t1, *t2;
    cnn_trainer_create(&t1, &with, &c);
    cnn_trainer_create(&t2, &without, &c);
    cnn_stats s1 = {0}, s2 = {0};
    cnn_evaluate_u8(t1, &init, px, labels, B, NULL, &s1);
    cnn_evaluate_u8(t2, &m2, px, labels, B, NULL, &s2);
    tap_ok(P == m2.n_params && s1.loss_sum == s2.loss_sum,
           "dropout: evaluation is the network without it, bit for bit (loss %.9g vs %.9g)",
           s1.loss_sum, s2.loss_sum);
    cnn_trainer_free(t1), cnn_trainer_free(t2);
    cnn_model_free(&m2);
    for (int r = 0; r < 4; r++)
        free(after[r]);
    cnn_model_free(&init);
}

/* Adam and AdamW, with weight decay, on a padded network: 1, 2 and 3 threads give the
 * same weights and moments; and the weights follow a float64 transcription of
 * PyTorch's update applied to the same gradients (eps 1e-3 keeps the update smooth in
 * the gradient, so float rounding of tiny gradients cannot flip its sign). */
static void adam_steps(const uint8_t *px, const uint8_t *labels)
{
    enum { B = 16, STEPS = 6 };
    cnn_arch arch;
    cnn_arch_build(&arch, "conv4bp1,relu,pool,conv6bs2,relu,gap,softmax10", 1, 28, 28, NULL, 0);
    for (int opt = CNN_OPTIMIZER_ADAM; opt <= CNN_OPTIMIZER_ADAMW; opt++) {
        const char *on = opt == CNN_OPTIMIZER_ADAM ? "Adam" : "AdamW";
        cnn_train_config c = cnn_train_config_default();
        c.batch = B, c.lr = 0.01f, c.optimizer = (cnn_optimizer)opt, c.weight_decay = 0.05f;
        c.beta1 = 0.8f, c.beta2 = 0.99f, c.eps = 1e-3f;
        cnn_rng rng;
        cnn_rng_seed(&rng, 31);
        cnn_model init;
        cnn_model_init(&init, &arch, &rng);
        const size_t P = init.n_params;
        float *first = NULL;
        for (int th = 1; th <= 3; th++) {
            cnn_model m;
            cnn_model_alloc(&m, &arch);
            memcpy(m.params, init.params, P * 4);
            c.threads = th;
            cnn_trainer *t;
            cnn_trainer_create(&t, &arch, &c);
            for (int s = 0; s < STEPS; s++)
                cnn_train_step_u8(t, &m, px + (size_t)s * B * 784, labels + s * B, NULL, B, NULL);
            size_t len;
            const float *state = cnn_trainer_state(t, &len);
            if (th == 1) {
                first = malloc((P + len) * 4);
                memcpy(first, m.params, P * 4);
                memcpy(first + P, state, len * 4);
                /* the float64 update on the same gradients */
                double *p = malloc(P * 8), *mo = calloc(P, 8), *v = calloc(P, 8);
                float *grad = malloc(P * 4), loss[B];
                for (size_t i = 0; i < P; i++)
                    p[i] = init.params[i];
                cnn_model f;
                cnn_model_alloc(&f, &arch);
                cnn_acts a;
                cnn_acts_alloc(&a, &arch, B);
                for (int s = 0; s < STEPS; s++) {
                    for (size_t i = 0; i < P; i++)
                        f.params[i] = (float)p[i];
                    memset(grad, 0, P * 4);
                    cnn_chunk_grad_u8(&f, &a, grad, 1.0f, px + (size_t)s * B * 784,
                                      labels + s * B, NULL, B, CNN_ENGINE_BLAS, CNN_TIES_SINGLE,
                                      loss, NULL);
                    const double k = s + 1, lr = c.lr, wd = c.weight_decay;
                    const double b1 = c.beta1, b2 = c.beta2, eps = c.eps;
                    for (size_t i = 0; i < P; i++) {
                        double g = grad[i] / (double)B;
                        if (opt == CNN_OPTIMIZER_ADAMW)
                            p[i] *= 1 - lr * wd;
                        else
                            g += wd * p[i];
                        mo[i] = b1 * mo[i] + (1 - b1) * g;
                        v[i] = b2 * v[i] + (1 - b2) * g * g;
                        p[i] -= lr / (1 - pow(b1, k)) * mo[i] /
                                (sqrt(v[i]) / sqrt(1 - pow(b2, k)) + eps);
                    }
                }
                double worst = 0, moved = 0;
                for (size_t i = 0; i < P; i++) {
                    worst = fmax(worst, fabs(m.params[i] - p[i]));
                    moved = fmax(moved, fabs(p[i] - init.params[i]));
                }
                tap_ok(worst <= 1e-4 * moved && moved > 0.01,
                       "%s: %d steps follow PyTorch's update in float64 (worst %.3g, updates up "
                       "to %.3g)", on, STEPS, worst, moved);
                free(p), free(mo), free(v), free(grad);
                cnn_acts_free(&a);
                cnn_model_free(&f);
            } else {
                tap_ok(memcmp(first, m.params, P * 4) == 0 && memcmp(first + P, state, len * 4) == 0,
                       "%s, weight decay: %d threads bit-identical to 1 (weights and moments)",
                       on, th);
            }
            cnn_trainer_free(t);
            cnn_model_free(&m);
        }
        free(first);
        cnn_model_free(&init);
    }
}

/* Batch 64 over 1 to 16 threads: every thread does work in every step (4 chunks, each
 * led by a thread whose team runs the groups of the per-chunk conv: 8 a chunk), and
 * the weights and evaluation are bit-identical to one thread's. */
static void work_split(const uint8_t *pix, const uint8_t *labels)
{
    cnn_arch arch;
    cnn_arch_build(&arch, "conv8bp1,relu,conv16bp1,relu,pool,softmax10", 1, 28, 28, NULL, 0);
    cnn_model init;
    cnn_rng rng;
    cnn_rng_seed(&rng, 61);
    cnn_model_init(&init, &arch, &rng);
    float *first = NULL;
    double first_loss = 0.0;
    int all_busy = 1, all_same = 1, at16 = 0;
    for (int th = 1; th <= 16; th++) {
        cnn_model m;
        cnn_model_alloc(&m, &arch);
        memcpy(m.params, init.params, m.n_params * sizeof(float));
        cnn_train_config c = cnn_train_config_default();
        c.batch = 64, c.threads = th, c.lr = 0.02f;
        cnn_trainer *t;
        if (cnn_trainer_create(&t, &arch, &c) != CNN_OK) {
            tap_ok(0, "work split: a trainer of %d threads", th);
            cnn_model_free(&m);
            continue;
        }
        uint64_t before[16], after[16];
        cnn_stats st = {0};
        int busy = 1;
        for (int step = 0; step < 3; step++) {
            cnn_trainer_passes(t, before);
            cnn_train_step_u8(t, &m, pix + (size_t)step * 64 * 784, labels + step * 64, NULL, 64,
                              NULL);
            cnn_trainer_passes(t, after);
            int working = 0;
            for (int w = 0; w < th; w++)
                working += after[w] > before[w];
            busy &= working == th;
            at16 = th == 16 ? working : at16;
        }
        cnn_evaluate_u8(t, &m, pix, labels, N, NULL, &st);
        if (!first) {
            first = malloc(m.n_params * sizeof(float));
            memcpy(first, m.params, m.n_params * sizeof(float));
            first_loss = st.loss_sum;
        } else {
            all_same &= memcmp(first, m.params, m.n_params * sizeof(float)) == 0 &&
                        st.loss_sum == first_loss;
        }
        all_busy &= busy;
        cnn_trainer_free(t);
        cnn_model_free(&m);
    }
    tap_ok(all_busy, "batch 64 on 1 to 16 threads: every thread works in every step (%d of 16 "
           "in the last step on 16)", at16);
    tap_ok(all_same, "batch 64 on 1 to 16 threads: weights and evaluation bit-identical");
    free(first);
    cnn_model_free(&init);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_threads PATH-TO-torch-turn.txt\n");
        return 2;
    }
    load_oracle(argv[1]);
    cnn_blas_setup();
    cnn_rng rng;
    cnn_rng_seed(&rng, 3);
    uint8_t pix[N * 784], labels[N];
    cnn_synth_digits(pix, labels, N, &rng);
    for (size_t i = 0; i < sizeof pix; i++) /* flat background: pool ties, as in MNIST */
        if (pix[i] < 64)
            pix[i] = 0;
    float *x = malloc(sizeof pix * sizeof(float));
    cnn_pixels_to_float(x, pix, sizeof pix);
    const size_t np = post_arch_mnist().n_params;

#if HAVE_OPENMP
    const int before = omp_get_max_threads(), levels_before = omp_get_max_active_levels();
#endif
    const int batches[] = {1, 7, 16, 40};
    for (int e = 0; e < 2; e++)
        for (int ties = 0; ties < 2; ties++)
            for (int b = 0; b < 4; b++) {
                if (e == CNN_ENGINE_REFERENCE && batches[b] != 16)
                    continue; /* the reference is slow; one batch size shows the same */
                const char *en = e == CNN_ENGINE_BLAS ? "blas" : "reference";
                const char *tn = ties ? "all" : "single";
                run_result r1 =
                    run(1, batches[b], (cnn_engine)e, (cnn_pool_ties)ties, x, NULL, labels);
                tap_ok(r1.params != NULL && r1.eval.count == N,
                       "%s batch %d ties=%s: 1 thread trains and evaluates", en, batches[b], tn);
                for (int th = 2; th <= 4; th++) {
                    /* 4: 2 threads on the pixels */
                    const int u8 = th == 4, threads = u8 ? 2 : th;
                    run_result r = run(threads, batches[b], (cnn_engine)e, (cnn_pool_ties)ties,
                                       u8 ? NULL : x, pix, labels);
                    const int same = r.params && r1.params &&
                                     memcmp(r.params, r1.params, np * sizeof(float)) == 0;
                    tap_ok(same && r.loss == r1.loss && r.correct == r1.correct &&
                               r.eval.loss_sum == r1.eval.loss_sum &&
                               r.eval.correct == r1.eval.correct,
                           "%s batch %d ties=%s: %d threads%s bit-identical to 1 (train loss "
                           "%.9g vs %.9g, eval loss %.9g vs %.9g)",
                           en, batches[b], tn, threads, u8 ? " on uint8 pixels" : "", r.loss,
                           r1.loss, r.eval.loss_sum,
                           r1.eval.loss_sum);
                    free(r.params);
                }
                free(r1.params);
            }
    stacked_threads("conv6b,relu,pool,conv8b,relu,pool,dense16,relu,softmax10", pix, labels);
    /* kernels 5 and 1, stride 2, padding: into pools and not */
    stacked_threads("conv6bk5p2,relu,pool,conv8bs2p1,relu,conv5bk1,relu,pool,dense16,relu,softmax10", pix, labels);
    stacked_threads("conv6bp1,relu,maxpool3s2,conv8b,relu,avgpool2,conv10bk1,gap,softmax10", pix,
                    labels);
    stacked_threads("conv6b,relu,dropout20,pool,conv8b,relu,pool,dense16,relu,dropout40,softmax10",
                    pix, labels);
    dropout_masks(pix, labels);
    adam_steps(pix, labels);
    { /* the move draws: in range, by (seed, epoch, sample) alone, not all equal */
        const uint32_t a[3] = {5, 9, 17}, b[2] = {17, 5};
        cnn_move x[3], y[2], z[3], noflip[3];
        cnn_draw_moves(x, 3, 2, a, 3, 2, 1, 0.0f, 0.0f);
        cnn_draw_moves(y, 3, 2, b, 2, 2, 1, 0.0f, 0.0f);
        cnn_draw_moves(z, 3, 3, a, 3, 2, 1, 0.0f, 0.0f);
        cnn_draw_moves(noflip, 3, 2, a, 3, 2, 0, 0.0f, 0.0f);
        int in_range = 1, same_shifts = 1;
        for (int i = 0; i < 3; i++) {
            in_range &= x[i].dy >= -2 && x[i].dy <= 2 && x[i].dx >= -2 && x[i].dx <= 2 &&
                        x[i].flip <= 1 && noflip[i].flip == 0;
            same_shifts &= noflip[i].dy == x[i].dy && noflip[i].dx == x[i].dx;
        }
        tap_ok(in_range && same_shifts && same_move(y[0], x[2]) && same_move(y[1], x[0]) &&
                   !(same_move(x[0], z[0]) && same_move(x[1], z[1]) && same_move(x[2], z[2])),
               "move draws: shifts in -2..2 whether flips are drawn or not, each sample's the "
               "same wherever it falls in a step, another epoch another");
        /* flips: about half of 10,000 samples, and not tied to the shifts */
        enum { DRAWS = 10000 };
        static uint32_t all[DRAWS];
        static cnn_move mv[DRAWS];
        for (uint32_t i = 0; i < DRAWS; i++)
            all[i] = i;
        cnn_draw_moves(mv, 11, 1, all, DRAWS, 1, 1, 0.0f, 0.0f);
        int flips = 0, flips_at_zero = 0, zero = 0;
        for (int i = 0; i < DRAWS; i++) {
            flips += mv[i].flip;
            zero += mv[i].dx == 0;
            flips_at_zero += mv[i].flip && mv[i].dx == 0;
        }
        tap_ok(flips > 4800 && flips < 5200 && flips_at_zero > zero * 0.45 &&
                   flips_at_zero < zero * 0.55,
               "flip draws: %d of %d mirrored, %d of the %d unshifted ones", flips, DRAWS,
               flips_at_zero, zero);
        /* turns and zooms: uniform over their ranges, the shifts and flips unchanged */
        static cnn_move tz[DRAWS];
        cnn_draw_moves(tz, 11, 1, all, DRAWS, 1, 1, 10.0f, 0.2f);
        int kept = 1, in = 1, low_turns = 0, low_zooms = 0;
        double sum_a = 0.0, sum_z = 0.0, sum_az = 0.0;
        for (int i = 0; i < DRAWS; i++) {
            kept &= tz[i].dy == mv[i].dy && tz[i].dx == mv[i].dx && tz[i].flip == mv[i].flip &&
                    mv[i].angle == 0.0f && mv[i].zoom == 0.0f;
            in &= fabsf(tz[i].angle) <= 10.0f && fabsf(tz[i].zoom) <= 0.2f;
            low_turns += tz[i].angle < -5.0f, low_zooms += tz[i].zoom < -0.1f;
            sum_a += tz[i].angle, sum_z += tz[i].zoom, sum_az += tz[i].angle * tz[i].zoom;
        }
        tap_ok(kept && in && low_turns > 2300 && low_turns < 2700 && low_zooms > 2300 &&
                   low_zooms < 2700 && fabs(sum_a / DRAWS) < 0.3 && fabs(sum_z / DRAWS) < 0.006 &&
                   fabs(sum_az / DRAWS) < 0.02,
               "turn and zoom draws: in range, a quarter in each bottom quarter (%d, %d), "
               "means %.3f and %.4f, not tied to each other, the shifts and flips as without "
               "them", low_turns, low_zooms, sum_a / DRAWS, sum_z / DRAWS);
    }
    shifted(pix, labels);
    turned(pix, labels);
    in_parts(pix, labels);
    work_split(pix, labels);
#if HAVE_OPENMP
    tap_ok(omp_get_max_threads() == before && omp_get_max_active_levels() == levels_before,
           "training leaves the caller's OpenMP thread count (%d) and nesting (%d levels) as "
           "they were", before, levels_before);
#endif
    free(x);
    return tap_done();
}
