/* main.c - the cnn program: train, eval and predict. */
#include "cnn.h"

#include "autocore.h"
#include "config.h"
#include "fileio.h"

#include <errno.h>
#include <signal.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#if HAVE_OPENMP
#include <omp.h>
#endif

static const char *prog = "cnn";
static cnn_core_report blas_core; /* how the OpenBLAS core was chosen, set first in main */

/* ---------------------------------------------------------------- options */

typedef enum { OPT_FLAG, OPT_INT, OPT_U64, OPT_FLOAT, OPT_FRAC, OPT_STR, OPT_CHOICE } opt_kind;

typedef struct {
    const char *name;
    opt_kind kind;
    void *dst;                   /* int (FLAG, CHOICE), long (INT), uint64_t, float, const char * */
    long lo, hi;                 /* OPT_INT range */
    const char *const *choices;  /* OPT_CHOICE, NULL-terminated; *dst = index */
    const char *arg, *help;
} opt;

static const char *const engines[] = {"blas", "reference", NULL};
static const char *const tie_rules[] = {"single", "all", NULL};
static const char *const schedules[] = {"constant", "cosine", NULL};

static int bad_value(const char *flag, const char *want, const char *got)
{
    fprintf(stderr, "%s: %s expects %s, got '%s'\n", prog, flag, want, got);
    return 2;
}

static int set_opt(const opt *o, const char *val)
{
    char *end;
    errno = 0;
    switch (o->kind) {
    case OPT_FLAG:
        *(int *)o->dst = 1;
        return 0;
    case OPT_INT: {
        long v = strtol(val, &end, 10);
        if (errno || end == val || *end || v < o->lo || v > o->hi) {
            char want[96];
            snprintf(want, sizeof want, "an integer from %ld to %ld", o->lo, o->hi);
            return bad_value(o->name, want, val);
        }
        *(long *)o->dst = v;
        return 0;
    }
    case OPT_U64: {
        unsigned long long v = strtoull(val, &end, 10);
        if (errno || end == val || *end || *val == '-' || *val == '+' || *val == ' ')
            return bad_value(o->name, "a non-negative integer", val);
        *(uint64_t *)o->dst = v;
        return 0;
    }
    case OPT_FLOAT: {
        double v = strtod(val, &end);
        if (errno || end == val || *end || !isfinite(v) || !(v > 0.0) || v > 1e3)
            return bad_value(o->name, "a number above 0 and at most 1000", val);
        *(float *)o->dst = (float)v;
        return 0;
    }
    case OPT_FRAC: {
        double v = strtod(val, &end);
        if (errno || end == val || *end || !isfinite(v) || !(v >= 0.0) || !(v < 1.0))
            return bad_value(o->name, "a number from 0 up to (not including) 1", val);
        *(float *)o->dst = (float)v;
        return 0;
    }
    case OPT_STR:
        if (!*val)
            return bad_value(o->name, "a non-empty value", val);
        *(const char **)o->dst = val;
        return 0;
    case OPT_CHOICE:
        for (int i = 0; o->choices[i]; i++)
            if (strcmp(val, o->choices[i]) == 0) {
                *(int *)o->dst = i;
                return 0;
            }
        return bad_value(o->name, o->arg, val);
    }
    return 2;
}

static void print_help(FILE *f, const char *cmd, const char *synopsis, const opt *opts)
{
    fprintf(f, "usage: %s %s %s\n\n", prog, cmd, synopsis);
    for (const opt *o = opts; o->name; o++) {
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", o->name, o->kind == OPT_FLAG ? "" : " ",
                 o->kind == OPT_FLAG ? "" : o->arg);
        fprintf(f, "  %-27s %s\n", left, o->help);
    }
}

/* @return 0 to go on, 1 after --help, 2 on a bad flag (already reported). */
static int parse_opts(const char *cmd, const char *synopsis, const opt *opts, int argc,
                      char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_help(stdout, cmd, synopsis, opts);
            if (strcmp(cmd, "train") == 0)
                fputs("\n--arch LAYERS: comma-separated, shapes flowing from the input:\n"
                      "  conv<F>     3x3 convolution, valid, F filters, no bias (conv<F>b: with a bias)\n"
                      "  relu        max(x, 0)\n"
                      "  pool        2x2 max pooling, stride 2\n"
                      "  dense<N>    fully connected, N outputs, with a bias\n"
                      "  softmax<N>  the output layer (fully connected + softmax), last\n"
                      "The post's network is conv8,pool,softmax10 (the default). A recipe to 99.4% on\n"
                      "MNIST: --arch conv16b,relu,pool,conv32b,relu,pool,dense128,relu,softmax10\n"
                      "  --batch 64 --lr 0.05 --momentum 0.9 --nesterov --weight-decay 0.0005\n"
                      "  --schedule cosine --epochs 12 --shift 2\n", stdout);
            return 1;
        }
        const opt *o = opts;
        while (o->name && strcmp(o->name, argv[i]) != 0)
            o++;
        if (!o->name) {
            fprintf(stderr, "%s: unknown option '%s' for %s (see %s %s --help)\n", prog, argv[i],
                    cmd, prog, cmd);
            return 2;
        }
        if (o->kind != OPT_FLAG && i + 1 >= argc) {
            fprintf(stderr, "%s: %s needs a value (%s)\n", prog, o->name, o->arg);
            return 2;
        }
        if (set_opt(o, o->kind == OPT_FLAG ? NULL : argv[++i]))
            return 2;
    }
    return 0;
}

/* ---------------------------------------------------------------- helpers */

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static long all_cores(void)
{
#if HAVE_OPENMP
    return omp_get_num_procs();
#else
    return 1;
#endif
}

static void print_blas(void)
{
    char buf[512];
    printf("BLAS: %s\n", cnn_core_describe(&blas_core, buf, sizeof buf));
    const char *warn = blas_core.warning[0] ? blas_core.warning
                                            : cnn_blas_core_warning(buf, sizeof buf);
    if (warn)
        fprintf(stderr, "%s: warning: %s\n", prog, warn);
}

/* Keep the first `limit` images (0: all). The images stay in memory as their pixels:
 * training converts each chunk's images to network input as it goes. */
static int apply_limit(cnn_dataset *d, long limit, const char *flag, const char *what)
{
    if (limit > 0) {
        if ((size_t)limit > d->n) {
            fprintf(stderr, "%s: %s %ld exceeds the %zu %s images\n", prog, flag, limit, d->n,
                    what);
            return 1;
        }
        d->n = (size_t)limit;
    }
    return 0;
}

static int load_mnist(const char *dir, const char *split, long limit, const char *flag,
                      cnn_dataset *d)
{
    char err[512];
    memset(d, 0, sizeof *d);
    if (cnn_mnist_load(dir, split, d, err, sizeof err) != CNN_OK) {
        fprintf(stderr, "%s: %s\n", prog, err);
        if (strstr(err, "no train") || strstr(err, "no t10k"))
            fprintf(stderr, "%s: fetch MNIST with scripts/fetch-mnist, or give --data DIR\n",
                    prog);
        return 1;
    }
    return apply_limit(d, limit, flag, strcmp(split, "train") == 0 ? "training" : "test");
}

static int make_synthetic(long n, uint64_t seed, cnn_dataset *d)
{
    memset(d, 0, sizeof *d);
    d->n = (size_t)n;
    d->rows = d->cols = 28;
    d->pixels = malloc((size_t)n * 784);
    d->labels = malloc((size_t)n);
    if (!d->pixels || !d->labels) {
        fprintf(stderr, "%s: out of memory for %ld synthetic images\n", prog, n);
        return 1;
    }
    cnn_rng rng;
    cnn_rng_seed(&rng, seed);
    cnn_synth_digits(d->pixels, d->labels, (size_t)n, &rng);
    return 0;
}

/* The post's network for images of the data's size. */
static cnn_shape shape_for(const cnn_dataset *d)
{
    cnn_shape s = cnn_shape_post();
    s.H = d->rows;
    s.W = d->cols;
    return s;
}

/* The model must take the data's images and classes. */
static int check_model_shape(const char *path, const cnn_model *m, const cnn_shape *want)
{
    const cnn_shape *s = &m->shape;
    if (s->C == want->C && s->H == want->H && s->W == want->W && s->classes == want->classes)
        return 0;
    fprintf(stderr, "%s: %s: the model takes %dx%dx%d images and %d classes, the data has "
            "%dx%dx%d and %d\n", prog, path, s->C, s->H, s->W, s->classes, want->C, want->H,
            want->W, want->classes);
    return 1;
}

/* The network to train: --arch for the data's images, or the resumed model's (which
 * --arch, when given, must name). @return 1 after saying why not. */
static int network(cnn_arch *a, const char *desc, const cnn_model *resumed, const char *path,
                   const cnn_dataset *d)
{
    char err[512];
    if (cnn_arch_build(a, desc ? desc : CNN_ARCH_POST, 1, d->rows, d->cols, err, sizeof err)) {
        fprintf(stderr, "%s: --arch: %s\n", prog, err);
        return 1;
    }
    if (!resumed)
        return 0;
    if (desc && !cnn_arch_equal(a, &resumed->arch)) {
        char mine[CNN_ARCH_LEN];
        fprintf(stderr, "%s: --arch %s differs from the network of %s (%s)\n", prog, desc, path,
                cnn_arch_describe(&resumed->arch, mine, sizeof mine));
        return 1;
    }
    *a = resumed->arch;
    return 0;
}

/* Each sample's random move for epoch ep, a function of (seed, epoch, sample) alone:
 * the same for any thread count, and after resuming from a checkpoint. */
static void draw_shifts(int8_t *out, uint64_t seed, long ep, const uint32_t *idx, int n, int max)
{
    for (int i = 0; i < n; i++) {
        uint64_t z = seed ^ ((uint64_t)ep << 32) ^ ((uint64_t)idx[i] * 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL; /* splitmix64's finaliser */
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        z ^= z >> 31;
        const uint64_t span = 2 * (uint64_t)max + 1;
        out[2 * i] = (int8_t)((int)(z % span) - max);
        out[2 * i + 1] = (int8_t)((int)((z >> 32) % span) - max);
    }
}

/* Beyond the post's network and SGD, one line says what trains. */
static void print_network(const cnn_arch *a, const cnn_train_config *c, int schedule, int shift)
{
    if (cnn_arch_is_post(a) && a->layer[0].units == 8 && c->momentum == 0.0f &&
        c->weight_decay == 0.0f && schedule == CNN_SCHEDULE_CONSTANT && !shift)
        return;
    char desc[CNN_ARCH_LEN];
    printf("network %s (%zu parameters); SGD", cnn_arch_describe(a, desc, sizeof desc),
           a->n_params);
    if (c->momentum > 0.0f)
        printf(", momentum %g%s", (double)c->momentum, c->nesterov ? " (Nesterov)" : "");
    if (c->weight_decay > 0.0f)
        printf(", weight decay %g", (double)c->weight_decay);
    printf(", %s learning rate", schedules[schedule]);
    if (shift)
        printf("; training images moved by up to %d pixels", shift);
    printf("\n");
}

static int load_model(const char *path, cnn_model *m)
{
    char err[512];
    if (cnn_model_load(m, path, err, sizeof err) == CNN_OK)
        return 0;
    fprintf(stderr, "%s: %s\n", prog, err);
    return 1;
}

/* Fail before training, not after it, when the model could not be saved. */
static int check_save_path(const char *flag, const char *path)
{
    char dir[4096];
    struct stat sb;
    const size_t len = strlen(path);
    if (cnn_dirname(dir, sizeof dir, path)) {
        fprintf(stderr, "%s: %s %s: the path is too long\n", prog, flag, path);
        return 1;
    }
    errno = 0;
    if (path[len - 1] == '/') {
        fprintf(stderr, "%s: %s %s names a directory, not a file\n", prog, flag, path);
        return 1;
    }
    if (stat(dir, &sb) || !S_ISDIR(sb.st_mode) || access(dir, W_OK)) {
        fprintf(stderr, "%s: %s %s: cannot write into %s: %s\n", prog, flag, path, dir,
                errno ? strerror(errno) : "not a directory");
        return 1;
    }
    if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)) {
        fprintf(stderr, "%s: %s %s is a directory\n", prog, flag, path);
        return 1;
    }
    return 0;
}

static void print_test(const cnn_stats *st)
{
    printf("Test Loss: %.10g\n", st->loss_sum / (double)st->count);
    printf("Test Accuracy: %.10g\n", (double)st->correct / (double)st->count);
}

/* ---------------------------------------------------------------- signals */

/* The first SIGINT or SIGTERM asks training to stop after the current step and save;
 * a second one ends the program at once, writing nothing. Saves run with both
 * signals blocked, so a file is always either the previous one or complete. */
static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    if (stop_signal)
        _exit(128 + sig);
    stop_signal = sig;
}

static void catch_signals(void)
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
}

static void block_signals(int block)
{
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    sigprocmask(block ? SIG_BLOCK : SIG_UNBLOCK, &set, NULL);
}

/* Write the checkpoint ck, or else the model m, to path with the stop signals held
 * back; @return 1 (after saying why) on failure. */
static int write_out(const cnn_model *m, const cnn_checkpoint *ck, const char *path)
{
    char err[512];
    block_signals(1);
    const cnn_status st = ck ? cnn_checkpoint_save(ck, path, err, sizeof err)
                             : cnn_model_save(m, path, err, sizeof err);
    block_signals(0);
    if (st != CNN_OK)
        fprintf(stderr, "%s: %s\n", prog, err);
    return st != CNN_OK;
}

static int save_model(const cnn_model *m, const char *path) { return write_out(m, NULL, path); }

static int write_checkpoint(const cnn_checkpoint *ck, const char *path)
{
    return write_out(NULL, ck, path);
}

/* After a stop signal: save what there is to save, and say where. */
static void stop_and_save(const cnn_checkpoint *ck, const cnn_model *m, const char *save,
                          const char *ckpt_path, long epoch, size_t step, size_t n)
{
    const char *name = stop_signal == SIGINT ? "SIGINT" : "SIGTERM";
    const int saved = save && !save_model(m, save);
    const int ckpt = ckpt_path && !write_checkpoint(ck, ckpt_path);
    fprintf(stderr, "%s: stopped by %s after step %zu of %zu in epoch %ld", prog, name, step, n,
            epoch);
    if (saved)
        fprintf(stderr, "; model saved to %s", save);
    if (ckpt)
        fprintf(stderr, "; checkpoint saved to %s (continue with --resume %s)", ckpt_path,
                ckpt_path);
    if (!saved && !ckpt)
        fprintf(stderr, "; nothing saved (no --save or --checkpoint given)");
    fprintf(stderr, "\n");
}

/* ---------------------------------------------------------------- train */

static int cmd_train(int argc, char **argv)
{
    const char *data = "data/mnist", *save = NULL, *resume = NULL, *ckpt_path = NULL;
    const char *ckpt_every_s = NULL;
    long epochs = 3, batch = 1, threads = all_cores(), train_limit = 0, test_limit = 0;
    long log_every = 100, synthetic = 0;
    uint64_t seed = 1;
    float lr = 0.005f, momentum = 0.0f, weight_decay = 0.0f;
    int engine = 0, ties = 0, no_shuffle = 0, nesterov = 0, schedule = 0, test_every = 0;
    long shift = 0;
    const char *arch_desc = NULL;
    const opt opts[] = {
        {"--data", OPT_STR, &data, 0, 0, NULL, "DIR",
         "MNIST or Fashion-MNIST directory (default data/mnist)"},
        {"--arch", OPT_STR, &arch_desc, 0, 0, NULL, "LAYERS",
         "the network, e.g. conv32b,relu,pool,dense128,relu,softmax10 (default conv8,pool,softmax10)"},
        {"--epochs", OPT_INT, &epochs, 1, 100000, NULL, "N", "passes over the training set (default 3)"},
        {"--batch", OPT_INT, &batch, 1, 65536, NULL, "N",
         "minibatch size; 1 is the post's per-sample SGD (default 1)"},
        {"--lr", OPT_FLOAT, &lr, 0, 0, NULL, "X", "SGD learning rate (default 0.005)"},
        {"--momentum", OPT_FRAC, &momentum, 0, 0, NULL, "X", "SGD momentum, 0 <= X < 1 (default 0)"},
        {"--nesterov", OPT_FLAG, &nesterov, 0, 0, NULL, "", "Nesterov momentum (needs --momentum)"},
        {"--weight-decay", OPT_FRAC, &weight_decay, 0, 0, NULL, "X",
         "L2 weight decay added to the gradient (default 0)"},
        {"--schedule", OPT_CHOICE, &schedule, 0, 0, schedules, "constant|cosine",
         "learning rate constant (default) or cosine from --lr to 0 over the run"},
        {"--threads", OPT_INT, &threads, 1, 1024, NULL, "N", "OpenMP threads (default: all cores)"},
        {"--seed", OPT_U64, &seed, 0, 0, NULL, "N", "seed of the weights and the shuffling (default 1)"},
        {"--train-limit", OPT_INT, &train_limit, 1, 1L << 40, NULL, "N",
         "train on the first N images (the post: 1000; default all)"},
        {"--test-limit", OPT_INT, &test_limit, 1, 1L << 40, NULL, "N",
         "test on the first N images (the post: 1000; default all)"},
        {"--engine", OPT_CHOICE, &engine, 0, 0, engines, "blas|reference",
         "im2col + BLAS (default) or the naive reference loops"},
        {"--pool-ties", OPT_CHOICE, &ties, 0, 0, tie_rules, "single|all",
         "gradient of tied pool maxima to the first (default) or to all (the post)"},
        {"--no-shuffle", OPT_FLAG, &no_shuffle, 0, 0, NULL, "",
         "keep the data order (the post shuffles every epoch)"},
        {"--log-every", OPT_INT, &log_every, 1, 1L << 40, NULL, "N",
         "print the post's progress line every N steps (default 100)"},
        {"--shift", OPT_INT, &shift, 0, 8, NULL, "N",
         "move each training image by a random -N..N pixels each way, every epoch (default 0)"},
        {"--test-every-epoch", OPT_FLAG, &test_every, 0, 0, NULL, "",
         "also test after every epoch (not counted in the epoch's time)"},
        {"--save", OPT_STR, &save, 0, 0, NULL, "FILE", "write the trained model to FILE (atomically)"},
        {"--resume", OPT_STR, &resume, 0, 0, NULL, "FILE",
         "continue from a checkpoint exactly, or start from a model's weights"},
        {"--checkpoint", OPT_STR, &ckpt_path, 0, 0, NULL, "FILE",
         "keep a resumable checkpoint in FILE (atomically replaced)"},
        {"--checkpoint-every", OPT_STR, &ckpt_every_s, 0, 0, NULL, "N|epoch",
         "write it every N steps or every epoch (default: every epoch)"},
        {"--synthetic", OPT_INT, &synthetic, 10, 10000000, NULL, "N",
         "train on N synthetic digits (test on N/6) instead of MNIST"},
        {NULL, 0, NULL, 0, 0, NULL, NULL, NULL},
    };
    int rc = parse_opts("train", "[options]", opts, argc, argv);
    if (rc)
        return rc == 1 ? 0 : rc;

    long ckpt_every = 0; /* steps; 0: at the end of every epoch */
    if (ckpt_every_s && strcmp(ckpt_every_s, "epoch") != 0) {
        const opt o = {"--checkpoint-every", OPT_INT, &ckpt_every, 1, 1L << 40, NULL, "N|epoch",
                       NULL};
        if (set_opt(&o, ckpt_every_s))
            return 2;
    }
    if (ckpt_every_s && !ckpt_path) {
        fprintf(stderr, "%s: --checkpoint-every needs --checkpoint FILE\n", prog);
        return 2;
    }
    if (nesterov && momentum == 0.0f) {
        fprintf(stderr, "%s: --nesterov needs --momentum X with X > 0\n", prog);
        return 2;
    }
    if ((save && check_save_path("--save", save)) ||
        (ckpt_path && check_save_path("--checkpoint", ckpt_path)))
        return 1;

    cnn_dataset tr = {0}, te = {0};
    cnn_model model = {0};
    cnn_checkpoint ck = {0};
    cnn_trainer *trainer = NULL;
    uint32_t *order = NULL;
    float *ck_velocity = NULL;
    int8_t *shifts = NULL;
    const int from_ckpt = resume && cnn_is_checkpoint(resume);
    char err[512];
    rc = 1;
    if (from_ckpt) {
        if (cnn_checkpoint_load(&ck, resume, err, sizeof err) != CNN_OK) {
            fprintf(stderr, "%s: %s\n", prog, err);
            return 1;
        }
        model = ck.model; /* the checkpoint's model, order and velocities now belong to this run */
        order = ck.order;
        ck_velocity = ck.velocity;
        ck.model = (cnn_model){0}, ck.order = NULL, ck.velocity = NULL;
    } else if (resume && load_model(resume, &model)) {
        return 1;
    }
    if (synthetic) {
        if (make_synthetic(synthetic + synthetic / 6, seed, &tr))
            goto out;
        te = tr; /* the last N/6 images, borrowed */
        te.n = (size_t)(synthetic / 6 > 0 ? synthetic / 6 : 1);
        tr.n = (size_t)synthetic;
        te.pixels = tr.pixels + tr.n * 784;
        te.labels = tr.labels + tr.n;
        if (train_limit > synthetic || test_limit > (long)te.n) {
            fprintf(stderr, "%s: --train-limit / --test-limit exceed the synthetic set\n", prog);
            goto out;
        }
        if (train_limit)
            tr.n = (size_t)train_limit;
        if (test_limit)
            te.n = (size_t)test_limit;
    } else if (load_mnist(data, "train", train_limit, "--train-limit", &tr) ||
               load_mnist(data, "t10k", test_limit, "--test-limit", &te)) {
        goto out;
    }
    if ((size_t)batch > tr.n) {
        fprintf(stderr, "%s: --batch %ld is larger than the %zu training images\n", prog, batch,
                tr.n);
        goto out;
    }

    const cnn_shape shape = shape_for(&tr);
    cnn_arch arch;
    if (network(&arch, arch_desc, resume ? &model : NULL, resume, &tr))
        goto out;
    cnn_train_config cfg = {.engine = (cnn_engine)engine, .ties = (cnn_pool_ties)ties,
                            .batch = (int)batch, .threads = (int)threads, .lr = lr,
                            .momentum = momentum, .nesterov = nesterov,
                            .weight_decay = weight_decay};
    cnn_rng rng;
    cnn_rng_seed(&rng, seed);
    long first_epoch = 1;
    size_t first_pos = 0; /* where the first epoch resumes; 0: a fresh, shuffled epoch */
    cnn_status st = CNN_OK;
    if (resume && check_model_shape(resume, &model, &shape))
        goto out;
    if (from_ckpt) {
        if (ck.n != tr.n) {
            fprintf(stderr, "%s: %s: the checkpoint is of a %llu-image training set, this run "
                    "has %zu (use the same data, --train-limit and --synthetic)\n", prog, resume,
                    (unsigned long long)ck.n, tr.n);
            goto out;
        }
        if (ck.cfg.batch != cfg.batch || ck.cfg.lr != cfg.lr || ck.cfg.ties != cfg.ties ||
            ck.cfg.engine != cfg.engine || ck.shuffle != !no_shuffle ||
            ck.cfg.momentum != cfg.momentum || ck.cfg.nesterov != cfg.nesterov ||
            ck.cfg.weight_decay != cfg.weight_decay || (int)ck.schedule != schedule ||
            ck.shift != shift ||
            (ck.schedule != CNN_SCHEDULE_CONSTANT && ck.epochs != epochs))
            fprintf(stderr, "%s: warning: %s was made with other settings (batch %d, lr %g, "
                    "pool ties %s, engine %s%s, momentum %g%s, weight decay %g, schedule %s "
                    "over %d epochs): the run will differ from one never interrupted\n", prog,
                    resume, ck.cfg.batch, (double)ck.cfg.lr, tie_rules[ck.cfg.ties],
                    engines[ck.cfg.engine], ck.shuffle ? "" : ", no shuffle",
                    (double)ck.cfg.momentum, ck.cfg.nesterov ? " (Nesterov)" : "",
                    (double)ck.cfg.weight_decay, schedules[ck.schedule], ck.epochs);
        rng = ck.rng;
        first_epoch = ck.epoch;
        first_pos = (size_t)ck.pos;
        if (first_pos == tr.n) /* the epoch was complete */
            first_epoch++, first_pos = 0;
    } else if (!resume) {
        st = cnn_model_init_arch(&model, &arch, &rng);
    }
    if (st == CNN_OK)
        st = cnn_trainer_create_arch(&trainer, &arch, &cfg);
    if (st == CNN_OK && ck_velocity && cnn_trainer_velocity(trainer))
        memcpy(cnn_trainer_velocity(trainer), ck_velocity, model.n_params * sizeof(float));
    shifts = malloc(2 * (size_t)batch);
    if (!order && (order = malloc(tr.n * sizeof *order)))
        for (size_t i = 0; i < tr.n; i++)
            order[i] = (uint32_t)i;
    if (st != CNN_OK || !order || !shifts) {
        fprintf(stderr, "%s: cannot set up training: %s\n", prog,
                cnn_status_str(st != CNN_OK ? st : CNN_ERR_NOMEM));
        goto out;
    }
    /* what a checkpoint records; epoch, pos and rng are filled in when one is written */
    ck = (cnn_checkpoint){.model = model, .n = tr.n, .order = order, .cfg = cfg,
                          .shuffle = !no_shuffle, .seed = seed,
                          .schedule = (cnn_schedule)schedule, .epochs = (int)epochs,
                          .shift = (int)shift,
                          .velocity = cnn_trainer_velocity(trainer)};

    cnn_blas_setup();
    print_blas();
    printf("engine %s, batch %ld, lr %g, %ld thread%s, pool ties %s, seed %llu\n",
           engines[engine], batch, (double)lr, threads, threads == 1 ? "" : "s",
           tie_rules[ties], (unsigned long long)seed);
    print_network(&arch, &cfg, schedule, (int)shift);
    printf("data: %s: %zu training images, %zu test images\n",
           synthetic ? "synthetic digits" : data, tr.n, te.n);
    if (from_ckpt)
        printf("resuming %s: epoch %ld, step %zu\n", resume, first_epoch, first_pos);
    else if (resume)
        printf("starting from the weights of %s\n", resume);
    printf("MNIST CNN initialized!\n");
    catch_signals();

    long steps = 0; /* minibatch steps of this run, for --checkpoint-every */
    double train_s = 0.0; /* training time of this run so far */
    const uint64_t steps_per_epoch = (tr.n + (size_t)batch - 1) / (size_t)batch;
    for (long ep = first_epoch; ep <= epochs; ep++) {
        const size_t start = ep == first_epoch ? first_pos : 0;
        size_t step = start; /* samples so far in this epoch: the post counts per epoch */
        printf("--- Epoch %ld ---\n", ep);
        if (start == 0 && !no_shuffle)
            cnn_rng_shuffle(&rng, order, tr.n);
        cnn_stats epoch = {0}, win = {0};
        double io = 0.0; /* checkpoint writing, left out of the speed */
        const double t0 = now();
        for (size_t i = start; i < tr.n; i += (size_t)batch) {
            const size_t left = tr.n - i;
            const int n = (int)(left < (size_t)batch ? left : (size_t)batch);
            cnn_stats s = {0};
            if (schedule != CNN_SCHEDULE_CONSTANT)
                cnn_trainer_set_lr(trainer, cnn_schedule_lr((cnn_schedule)schedule, lr,
                                                             (uint64_t)(ep - 1) * steps_per_epoch +
                                                                 i / (size_t)batch,
                                                             (uint64_t)epochs * steps_per_epoch));
            if (shift)
                draw_shifts(shifts, seed, ep, order + i, n, (int)shift);
            st = cnn_train_step_u8_shift(trainer, &model, tr.pixels, tr.labels, order + i, n,
                                         shift ? shifts : NULL, &s);
            if (st == CNN_ERR_NUMERIC) {
                fprintf(stderr, "%s: the loss became NaN or infinite at step %zu of epoch %ld; "
                        "nothing saved; try a smaller --lr than %g\n", prog, step + (size_t)n, ep,
                        (double)lr);
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
            steps++;
            if (step / (size_t)log_every != before / (size_t)log_every) {
                printf("[Step %zu] Past %zu steps: Average Loss %.3f | Accuracy: %.0f%%\n", step,
                       win.count, win.loss_sum / (double)win.count,
                       100.0 * (double)win.correct / (double)win.count);
                fflush(stdout);
                win = (cnn_stats){0};
            }
            ck.epoch = (int)ep, ck.pos = step, ck.rng = rng;
            if (stop_signal) {
                rc = 128 + stop_signal;
                stop_and_save(&ck, &model, save, ckpt_path, ep, step, tr.n);
                goto out;
            }
            if (ckpt_path && ckpt_every && steps % ckpt_every == 0 && step < tr.n) {
                const double c0 = now();
                if (write_checkpoint(&ck, ckpt_path))
                    goto out;
                io += now() - c0;
            }
        }
        if (ckpt_path && write_checkpoint(&ck, ckpt_path)) /* the end of every epoch */
            goto out;
        const double dt = now() - t0 - io;
        train_s += dt;
        printf("Epoch %ld: %.3f s, %.0f images/s; train loss %.4f, accuracy %.2f%%\n", ep, dt,
               (double)epoch.count / dt, epoch.loss_sum / (double)epoch.count,
               100.0 * (double)epoch.correct / (double)epoch.count);
        if (test_every && ep < epochs) {
            cnn_stats t = {0};
            const double e0 = now();
            if (cnn_evaluate_u8(trainer, &model, te.pixels, te.labels, te.n, NULL, &t) == CNN_OK)
                printf("Epoch %ld: test loss %.4f, accuracy %.2f%% after %.1f s of training "
                       "(evaluation %.2f s)\n", ep, t.loss_sum / (double)t.count,
                       100.0 * (double)t.correct / (double)t.count, train_s, now() - e0);
        }
        fflush(stdout);
    }
    cnn_stats test = {0};
    st = cnn_evaluate_u8(trainer, &model, te.pixels, te.labels, te.n, NULL, &test);
    if (st != CNN_OK) {
        fprintf(stderr, "%s: evaluation failed: %s\n", prog, cnn_status_str(st));
        goto out;
    }
    printf("--- Testing the CNN ---\n");
    print_test(&test);
    if (save) {
        if (save_model(&model, save))
            goto out;
        printf("model saved to %s\n", save);
    }
    rc = stop_signal ? 128 + stop_signal : 0; /* a signal during the test: still non-zero */
out:
    free(order);
    free(shifts);
    free(ck_velocity);
    cnn_trainer_free(trainer);
    cnn_model_free(&model);
    if (synthetic)
        te = (cnn_dataset){0};
    cnn_dataset_free(&tr);
    cnn_dataset_free(&te);
    return rc;
}

/* ---------------------------------------------------------------- eval */

static int cmd_eval(int argc, char **argv)
{
    const char *data = "data/mnist", *model_path = NULL;
    long threads = all_cores(), test_limit = 0;
    int engine = 0;
    const opt opts[] = {
        {"--model", OPT_STR, &model_path, 0, 0, NULL, "FILE", "the model to evaluate (required)"},
        {"--data", OPT_STR, &data, 0, 0, NULL, "DIR", "MNIST directory (default data/mnist)"},
        {"--test-limit", OPT_INT, &test_limit, 1, 1L << 40, NULL, "N",
         "evaluate the first N test images (default all)"},
        {"--threads", OPT_INT, &threads, 1, 1024, NULL, "N", "OpenMP threads (default: all cores)"},
        {"--engine", OPT_CHOICE, &engine, 0, 0, engines, "blas|reference",
         "im2col + BLAS (default) or the naive reference loops"},
        {NULL, 0, NULL, 0, 0, NULL, NULL, NULL},
    };
    int rc = parse_opts("eval", "--model FILE [options]", opts, argc, argv);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (!model_path) {
        fprintf(stderr, "%s: eval needs --model FILE\n", prog);
        return 2;
    }
    cnn_dataset te = {0};
    cnn_model model = {0};
    cnn_trainer *trainer = NULL;
    uint8_t *pred = NULL;
    if (load_model(model_path, &model))
        return 1;
    rc = 1;
    if (load_mnist(data, "t10k", test_limit, "--test-limit", &te))
        goto out;
    const cnn_shape shape = shape_for(&te);
    if (check_model_shape(model_path, &model, &shape))
        goto out;
    cnn_train_config cfg = cnn_train_config_default();
    cfg.engine = (cnn_engine)engine;
    cfg.threads = (int)threads;
    pred = malloc(te.n);
    cnn_stats st = {0};
    if (!pred || cnn_trainer_create_arch(&trainer, &model.arch, &cfg) != CNN_OK ||
        cnn_evaluate_u8(trainer, &model, te.pixels, te.labels, te.n, pred, &st) != CNN_OK) {
        fprintf(stderr, "%s: evaluation failed (out of memory)\n", prog);
        goto out;
    }
    printf("model: %s\ndata: %s: %zu test images\n", model_path, data, te.n);
    print_test(&st);
    size_t conf[10][10] = {{0}};
    for (size_t i = 0; i < te.n; i++)
        conf[te.labels[i]][pred[i]]++;
    printf("Confusion matrix (rows: true class, columns: predicted):\n      ");
    for (int c = 0; c < 10; c++)
        printf("%6d", c);
    printf("\n");
    for (int r = 0; r < 10; r++) {
        printf("%6d", r);
        for (int c = 0; c < 10; c++)
            printf("%6zu", conf[r][c]);
        printf("\n");
    }
    rc = 0;
out:
    free(pred);
    cnn_trainer_free(trainer);
    cnn_model_free(&model);
    cnn_dataset_free(&te);
    return rc;
}

/* ---------------------------------------------------------------- predict */

static int cmd_predict(int argc, char **argv)
{
    const char *model_path = NULL, *pgm = NULL, *idx = NULL;
    long index = 0;
    int engine = 0;
    const opt opts[] = {
        {"--model", OPT_STR, &model_path, 0, 0, NULL, "FILE", "the model (required)"},
        {"--pgm", OPT_STR, &pgm, 0, 0, NULL, "FILE",
         "classify this PGM image (white digit on black, as MNIST)"},
        {"--idx", OPT_STR, &idx, 0, 0, NULL, "FILE", "or an image of this IDX image file"},
        {"--index", OPT_INT, &index, 0, 1L << 40, NULL, "N", "which image of --idx (default 0)"},
        {"--engine", OPT_CHOICE, &engine, 0, 0, engines, "blas|reference",
         "im2col + BLAS (default) or the naive reference loops"},
        {NULL, 0, NULL, 0, 0, NULL, NULL, NULL},
    };
    int rc = parse_opts("predict", "--model FILE (--pgm FILE | --idx FILE [--index N])", opts,
                        argc, argv);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (!model_path || !pgm == !idx) {
        fprintf(stderr, "%s: predict needs --model FILE and one of --pgm FILE or --idx FILE\n",
                prog);
        return 2;
    }
    char err[512];
    uint8_t *pixels = NULL;
    size_t n = 1;
    int rows = 0, cols = 0;
    cnn_status st = pgm ? cnn_pgm_read(pgm, &pixels, &rows, &cols, err, sizeof err)
                        : cnn_idx_read_images(idx, &pixels, &n, &rows, &cols, err, sizeof err);
    if (st != CNN_OK) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return 1;
    }
    cnn_model model = {0};
    cnn_acts acts = {0};
    float *x = NULL;
    rc = 1;
    if (idx && (size_t)index >= n) {
        fprintf(stderr, "%s: --index %ld is past the last image of %s (it holds %zu)\n", prog,
                index, idx, n);
        goto out;
    }
    const cnn_shape want = {.C = 1, .H = rows, .W = cols, .F = 8, .classes = 10};
    if (load_model(model_path, &model) || check_model_shape(model_path, &model, &want))
        goto out;
    const size_t len = (size_t)rows * (size_t)cols;
    x = malloc(len * sizeof *x);
    if (!x || cnn_acts_alloc_arch(&acts, &model.arch, 1) != CNN_OK) {
        fprintf(stderr, "%s: out of memory\n", prog);
        goto out;
    }
    cnn_pixels_to_float(x, pixels + (size_t)index * len, len);
    cnn_blas_setup();
    cnn_forward(&model, &acts, x, -1, (cnn_engine)engine);
    const int digit = cnn_argmax(acts.probs, model.shape.classes);
    if (pgm)
        printf("image: %s\n", pgm);
    else
        printf("image: %s, index %ld\n", idx, index);
    printf("predicted digit: %d\n", digit);
    for (int c = 0; c < model.shape.classes; c++)
        printf("p(%d) = %.6f\n", c, (double)acts.probs[c]);
    rc = 0;
out:
    free(x);
    cnn_acts_free(&acts);
    cnn_model_free(&model);
    free(pixels);
    return rc;
}

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s COMMAND [options]\n"
            "\n"
            "Small CNNs on MNIST and Fashion-MNIST; by default the network of \"CNNs, Part 2\"\n"
            "(Conv3x3 x8 -> MaxPool2 -> Softmax). 'cnn train --help' shows --arch for others.\n"
            "\n"
            "commands:\n"
            "  train     train a network and test it (the post's output lines)\n"
            "  eval      test loss, accuracy and confusion matrix of a saved model\n"
            "  predict   classify one image (PGM, or an image of an IDX file)\n"
            "\n"
            "'%s COMMAND --help' lists the options of a command; '%s --version'.\n"
            "\n"
            "OpenBLAS kernels: when the ones OpenBLAS picks fall short of this CPU (AVX-512\n"
            "or AVX2 unused), %s restarts itself once with OPENBLAS_CORETYPE set to the\n"
            "best core for it, after checking that core, and says so on the BLAS line.\n"
            "A user's OPENBLAS_CORETYPE is always kept; CNN_KEEP_BLAS_CORE=1 turns this off.\n",
            prog, prog, prog, prog);
}

int main(int argc, char **argv)
{
    cnn_core_autoselect(argv, &blas_core); /* may restart the program on a better core */
    if (argc < 2) {
        fprintf(stderr, "%s: missing command (see %s --help)\n", prog, prog);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("cnn %s\n", CNN_VERSION);
        return 0;
    }
    if (strcmp(cmd, "train") == 0)
        return cmd_train(argc - 2, argv + 2);
    if (strcmp(cmd, "eval") == 0)
        return cmd_eval(argc - 2, argv + 2);
    if (strcmp(cmd, "predict") == 0)
        return cmd_predict(argc - 2, argv + 2);
    fprintf(stderr, "%s: unknown command '%s' (see %s --help)\n", prog, cmd, prog);
    return 2;
}
