/* main.c - the cnn command-line program. */
#include "cnn.h"

#include "config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#if HAVE_OPENMP
#include <omp.h>
#endif

static const char *prog = "cnn";

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int default_threads(void)
{
#if HAVE_OPENMP
    return omp_get_num_procs();
#else
    return 1;
#endif
}

static int fail(const char *fmt, const char *a, const char *b)
{
    fprintf(stderr, "%s: ", prog);
    fprintf(stderr, fmt, a, b);
    fputc('\n', stderr);
    return 2;
}

/* Parse a whole decimal integer in [lo, hi]. */
static int parse_long(const char *flag, const char *s, long lo, long hi, long *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end != '\0' || v < lo || v > hi) {
        fprintf(stderr, "%s: %s expects an integer from %ld to %ld, got '%s'\n", prog, flag, lo,
                hi, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_u64(const char *flag, const char *s, uint64_t *out)
{
    char *end;
    errno = 0;
    if (*s == '-' || *s == '+') {
        fprintf(stderr, "%s: %s expects a non-negative integer, got '%s'\n", prog, flag, s);
        return -1;
    }
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || end == s || *end != '\0') {
        fprintf(stderr, "%s: %s expects a non-negative integer, got '%s'\n", prog, flag, s);
        return -1;
    }
    *out = v;
    return 0;
}

static int parse_positive_float(const char *flag, const char *s, float *out)
{
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (errno || end == s || *end != '\0' || !isfinite(v) || !(v > 0.0) || v > 1e6) {
        fprintf(stderr, "%s: %s expects a finite number above 0, got '%s'\n", prog, flag, s);
        return -1;
    }
    *out = (float)v;
    return 0;
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s train [options]    train the post's CNN on synthetic digits\n"
            "       %s --version | --help\n"
            "\n"
            "train options:\n"
            "  --synthetic N        training images to generate (default 6000; test set N/6)\n"
            "  --epochs N           passes over the training set (default 3)\n"
            "  --batch N            minibatch size; 1 is the post's per-sample SGD (default 1)\n"
            "  --lr X               SGD learning rate (default 0.005)\n"
            "  --threads N          OpenMP threads (default: all cores)\n"
            "  --seed N             seed of weights, data and shuffling (default 1)\n"
            "  --engine E           blas (default) or reference\n"
            "  --pool-ties R        single (default: first max gets the gradient) or all\n"
            "                       (every tied max does, as the post's code)\n"
            "  --log-every N        print the post's progress line every N steps (default 100)\n"
            "  --no-shuffle         keep the data order (the post shuffles every epoch)\n",
            prog, prog);
}

typedef struct {
    long synthetic, epochs, log_every;
    uint64_t seed;
    int shuffle;
    cnn_train_config cfg;
} train_opts;

static int parse_train(int argc, char **argv, train_opts *o)
{
    o->synthetic = 6000;
    o->epochs = 3;
    o->log_every = 100;
    o->seed = 1;
    o->shuffle = 1;
    o->cfg = cnn_train_config_default();
    o->cfg.threads = default_threads();
    for (int i = 0; i < argc; i++) {
        const char *f = argv[i];
        long v;
        if (strcmp(f, "--help") == 0 || strcmp(f, "-h") == 0) {
            usage(stdout);
            exit(0);
        }
        if (strcmp(f, "--no-shuffle") == 0) {
            o->shuffle = 0;
            continue;
        }
        if (strncmp(f, "--", 2) != 0)
            return fail("unexpected argument '%s'%s", f, "");
        const char *val = i + 1 < argc ? argv[i + 1] : NULL;
        int known = 1;
        if (!val && (strcmp(f, "--synthetic") == 0 || strcmp(f, "--epochs") == 0 ||
                     strcmp(f, "--batch") == 0 || strcmp(f, "--lr") == 0 ||
                     strcmp(f, "--threads") == 0 || strcmp(f, "--seed") == 0 ||
                     strcmp(f, "--engine") == 0 || strcmp(f, "--pool-ties") == 0 ||
                     strcmp(f, "--log-every") == 0))
            return fail("%s needs a value%s", f, "");
        if (strcmp(f, "--synthetic") == 0) {
            if (parse_long(f, val, 10, 10000000, &o->synthetic))
                return 2;
        } else if (strcmp(f, "--epochs") == 0) {
            if (parse_long(f, val, 1, 100000, &o->epochs))
                return 2;
        } else if (strcmp(f, "--batch") == 0) {
            if (parse_long(f, val, 1, 65536, &v))
                return 2;
            o->cfg.batch = (int)v;
        } else if (strcmp(f, "--threads") == 0) {
            if (parse_long(f, val, 1, 1024, &v))
                return 2;
            o->cfg.threads = (int)v;
        } else if (strcmp(f, "--log-every") == 0) {
            if (parse_long(f, val, 1, 1000000000, &o->log_every))
                return 2;
        } else if (strcmp(f, "--lr") == 0) {
            if (parse_positive_float(f, val, &o->cfg.lr))
                return 2;
        } else if (strcmp(f, "--seed") == 0) {
            if (parse_u64(f, val, &o->seed))
                return 2;
        } else if (strcmp(f, "--engine") == 0) {
            if (strcmp(val, "blas") == 0)
                o->cfg.engine = CNN_ENGINE_BLAS;
            else if (strcmp(val, "reference") == 0)
                o->cfg.engine = CNN_ENGINE_REFERENCE;
            else
                return fail("--engine expects blas or reference, got '%s'%s", val, "");
        } else if (strcmp(f, "--pool-ties") == 0) {
            if (strcmp(val, "single") == 0)
                o->cfg.ties = CNN_TIES_SINGLE;
            else if (strcmp(val, "all") == 0)
                o->cfg.ties = CNN_TIES_ALL;
            else
                return fail("--pool-ties expects single or all, got '%s'%s", val, "");
        } else {
            known = 0;
        }
        if (!known)
            return fail("unknown option '%s' for train (see %s train --help)", f, prog);
        i++;
    }
    if (o->cfg.batch > o->synthetic)
        return fail("--batch is larger than the training set%s%s", "", "");
    return 0;
}

static void print_setup(const train_opts *o)
{
    char buf[256];
    printf("BLAS: %s\n", cnn_blas_describe(buf, sizeof buf));
    const char *warn = cnn_blas_core_warning(buf, sizeof buf);
    if (warn)
        fprintf(stderr, "%s: warning: %s\n", prog, warn);
    printf("engine %s, batch %d, lr %g, %d thread%s, pool ties %s, seed %llu\n",
           o->cfg.engine == CNN_ENGINE_BLAS ? "blas" : "reference", o->cfg.batch,
           (double)o->cfg.lr, o->cfg.threads, o->cfg.threads == 1 ? "" : "s",
           o->cfg.ties == CNN_TIES_ALL ? "all" : "single", (unsigned long long)o->seed);
}

static int cmd_train(int argc, char **argv)
{
    train_opts o;
    int rc = parse_train(argc, argv, &o);
    if (rc)
        return rc;
    cnn_blas_setup();
    print_setup(&o);

    const size_t n_train = (size_t)o.synthetic, n_test = n_train / 6 > 0 ? n_train / 6 : 1;
    const cnn_shape shape = cnn_shape_post();
    const size_t in_len = cnn_shape_input_len(&shape);
    cnn_rng rng;
    cnn_rng_seed(&rng, o.seed);

    uint8_t *pix = malloc((n_train + n_test) * in_len);
    uint8_t *labels = malloc(n_train + n_test);
    float *images = malloc((n_train + n_test) * in_len * sizeof(float));
    uint32_t *order = malloc(n_train * sizeof *order);
    cnn_model model = {0};
    cnn_trainer *tr = NULL;
    rc = 1;
    if (!pix || !labels || !images || !order) {
        fprintf(stderr, "%s: out of memory for %zu synthetic images\n", prog, n_train + n_test);
        goto out;
    }
    cnn_synth_digits(pix, labels, n_train + n_test, &rng);
    cnn_pixels_to_float(images, pix, (n_train + n_test) * in_len);
    for (size_t i = 0; i < n_train; i++)
        order[i] = (uint32_t)i;

    cnn_status st = cnn_model_init(&model, &shape, &rng);
    if (st == CNN_OK)
        st = cnn_trainer_create(&tr, &shape, &o.cfg);
    if (st != CNN_OK) {
        fprintf(stderr, "%s: cannot set up training: %s\n", prog, cnn_status_str(st));
        goto out;
    }
    printf("MNIST CNN initialized!\n");

    size_t step = 0;
    for (long ep = 1; ep <= o.epochs; ep++) {
        printf("--- Epoch %ld ---\n", ep);
        if (o.shuffle)
            cnn_rng_shuffle(&rng, order, n_train);
        cnn_stats epoch = {0}, win = {0};
        const double t0 = now();
        for (size_t i = 0; i < n_train; i += (size_t)o.cfg.batch) {
            const int n = (int)(n_train - i < (size_t)o.cfg.batch ? n_train - i : (size_t)o.cfg.batch);
            cnn_stats s = {0};
            st = cnn_train_step(tr, &model, images, labels, order + i, n, &s);
            if (st == CNN_ERR_NUMERIC) {
                fprintf(stderr,
                        "%s: the loss became NaN or infinite at step %zu; try a smaller --lr\n",
                        prog, step + (size_t)n);
                goto out;
            }
            if (st != CNN_OK) {
                fprintf(stderr, "%s: training step failed: %s\n", prog, cnn_status_str(st));
                goto out;
            }
            epoch.loss_sum += s.loss_sum, epoch.correct += s.correct, epoch.count += s.count;
            win.loss_sum += s.loss_sum, win.correct += s.correct, win.count += s.count;
            const size_t before = step;
            step += (size_t)n;
            if (step / (size_t)o.log_every != before / (size_t)o.log_every) {
                printf("[Step %zu] Past %zu steps: Average Loss %.3f | Accuracy: %.0f%%\n",
                       step, win.count, win.loss_sum / win.count, 100.0 * win.correct / win.count);
                win = (cnn_stats){0};
            }
        }
        const double dt = now() - t0;
        printf("Epoch %ld: loss %.4f, accuracy %.2f%%, %.3f s, %.0f images/s\n", ep,
               epoch.loss_sum / epoch.count, 100.0 * epoch.correct / epoch.count, dt,
               epoch.count / dt);
    }
    printf("--- Testing the CNN ---\n");
    cnn_stats test = {0};
    st = cnn_evaluate(tr, &model, images + n_train * in_len, labels + n_train, n_test, &test);
    if (st != CNN_OK) {
        fprintf(stderr, "%s: evaluation failed: %s\n", prog, cnn_status_str(st));
        goto out;
    }
    printf("Test Loss: %.6f\n", test.loss_sum / test.count);
    printf("Test Accuracy: %.4f\n", (double)test.correct / test.count);
    rc = 0;
out:
    cnn_trainer_free(tr);
    cnn_model_free(&model);
    free(order);
    free(images);
    free(labels);
    free(pix);
    return rc;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "%s: missing command (see %s --help)\n", prog, prog);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "--version") == 0) {
        printf("cnn %s\n", CNN_VERSION);
        return 0;
    }
    if (strcmp(argv[1], "train") == 0)
        return cmd_train(argc - 2, argv + 2);
    fprintf(stderr, "%s: unknown command '%s' (see %s --help)\n", prog, argv[1], prog);
    return 2;
}
