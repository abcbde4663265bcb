/* common.c - what the commands share: machine and BLAS lines, data sets, the network,
 * model files, the test lines, stop signals and safe writes. */
#include "cli.h"

/* ---------------------------------------------------------------- helpers */

double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

long all_cores(void)
{
#if HAVE_OPENMP
    return omp_get_num_procs();
#else
    return 1;
#endif
}

void print_blas(void)
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

/* A progress line on stderr while a large image folder loads. */
static void show_progress(size_t done, size_t total, void *ctx)
{
    const char *what = ctx;
    if (total < 5000)
        return;
    fprintf(stderr, "\r%s: loading %s images: %zu of %zu", prog, what, done, total);
    if (done == total)
        fputc('\n', stderr);
    fflush(stderr);
}

int load_data(const char *dir, const char *split, const cnn_dataset *train, long limit,
              const char *flag, cnn_dataset *d)
{
    char err[512];
    const int is_train = strcmp(split, "train") == 0;
    memset(d, 0, sizeof *d);
    if (cnn_dataset_load(dir, split, train, d, show_progress, is_train ? "training" : "test",
                         err, sizeof err) != CNN_OK) {
        fprintf(stderr, "%s: %s\n", prog, err);
        if (strstr(err, "no train") || strstr(err, "no t10k"))
            fprintf(stderr, "%s: --data takes MNIST-style IDX files (fetch MNIST with "
                    "scripts/fetch-mnist), CIFAR-10 batches, or train/ and test/ folders of "
                    "class folders\n", prog);
        return 1;
    }
    return apply_limit(d, limit, flag, is_train ? "training" : "test");
}

/* n comma-separated numbers of s (up to the end or '/') into v; @return how many, or
 * -1 if one is not a number. */
static int numbers(const char *s, float *v, int max, const char **end)
{
    int n = 0;
    for (;;) {
        char *e;
        errno = 0;
        const double x = strtod(s, &e);
        if (e == s || errno || !isfinite(x) || n == max)
            return -1;
        v[n++] = (float)x;
        if (*e != ',') {
            *end = e;
            return n;
        }
        s = e + 1;
    }
}

int choose_norm(const char *spec, const cnn_dataset *tr, cnn_norm *out)
{
    const int C = tr->channels;
    const int by_stats = spec ? strcmp(spec, "dataset") == 0
                              : tr->format == CNN_DATA_CIFAR || tr->format == CNN_DATA_FOLDER;
    if (!spec ? !by_stats : strcmp(spec, "unit") == 0) {
        *out = (cnn_norm){.kind = CNN_NORM_UNIT};
        return 0;
    }
    if (C > CNN_NORM_CHANNELS) {
        fprintf(stderr, "%s: --normalize: per-channel normalisation takes up to %d channels, "
                "the data has %d (use --normalize unit)\n", prog, CNN_NORM_CHANNELS, C);
        return 1;
    }
    if (by_stats)
        return cnn_dataset_norm(tr, out) != CNN_OK;
    cnn_norm n = {.kind = CNN_NORM_MEAN_STD, .channels = C};
    const char *end;
    const int nm = numbers(spec, n.mean, CNN_NORM_CHANNELS, &end);
    const int ns = nm > 0 && *end == '/' ? numbers(end + 1, n.std, CNN_NORM_CHANNELS, &end) : -1;
    if (ns < 0 || *end || (nm != 1 && nm != C) || (ns != 1 && ns != C)) {
        fprintf(stderr, "%s: --normalize expects unit, dataset or MEAN/STD, each one number "
                "or one per channel (%d here; e.g. 0.5,0.5,0.5/0.25,0.25,0.25), got '%s'\n",
                prog, C, spec);
        return 1;
    }
    for (int c = 1; c < C; c++) {
        if (nm == 1)
            n.mean[c] = n.mean[0];
        if (ns == 1)
            n.std[c] = n.std[0];
    }
    if (!cnn_norm_valid(&n, C)) {
        fprintf(stderr, "%s: --normalize %s: every deviation must be > 0\n", prog, spec);
        return 1;
    }
    *out = n;
    return 0;
}

/* The normalisation, in one line for the run's header. */
void print_norm(const cnn_norm *n)
{
    if (n->kind == CNN_NORM_UNIT) {
        printf("input: px/255 - 0.5\n");
        return;
    }
    printf("input: (px/255 - mean) / std, mean");
    for (int c = 0; c < n->channels; c++)
        printf("%s%.4f", c ? "," : " ", (double)n->mean[c]);
    printf(", std");
    for (int c = 0; c < n->channels; c++)
        printf("%s%.4f", c ? "," : " ", (double)n->std[c]);
    printf("\n");
}

int make_synthetic(long n, uint64_t seed, cnn_dataset *d)
{
    const cnn_status st = cnn_dataset_synthetic(d, (size_t)n, seed);
    if (st != CNN_OK)
        fprintf(stderr, "%s: %ld synthetic images: %s\n", prog, n, cnn_status_str(st));
    return st != CNN_OK;
}

/* The model must take the data's images, have a class for each of its labels, and
 * the same names for them when both have names. */
int check_model_data(const char *path, const cnn_model *m, const cnn_dataset *d,
                     const char *data)
{
    const cnn_arch *a = &m->arch;
    if (a->C != d->channels || a->H != d->rows || a->W != d->cols) {
        fprintf(stderr, "%s: %s: the model takes %dx%dx%d images, %s's are %dx%dx%d\n", prog,
                path, a->C, a->H, a->W, data, d->channels, d->rows, d->cols);
        return 1;
    }
    const int classes = cnn_dataset_classes(d);
    if (classes > a->classes) {
        fprintf(stderr, "%s: %s: the model has %d classes, the data has labels up to %d\n",
                prog, path, a->classes, classes - 1);
        return 1;
    }
    for (int k = 0; m->names && k < d->n_names; k++)
        if (k >= a->classes ||
            strcmp(cnn_model_class_name(m, k), cnn_dataset_class_name(d, k)) != 0) {
            fprintf(stderr, "%s: %s: the model's class %d is '%s', %s's is '%s'\n", prog, path,
                    k, k < a->classes ? cnn_model_class_name(m, k) : "(none)", data,
                    cnn_dataset_class_name(d, k));
            return 1;
        }
    return 0;
}

/* The network to train: --arch for the data's images, or the resumed model's (which
 * --arch, when given, must name). @return 1 after saying why not. */
int network(cnn_arch *a, const char *desc, const cnn_model *resumed, const char *path,
                   const cnn_dataset *d)
{
    char err[512];
    if (cnn_arch_build(a, desc ? desc : CNN_ARCH_POST, d->channels, d->rows, d->cols, err,
                       sizeof err)) {
        fprintf(stderr, "%s: --arch: %s\n", prog, err);
        return 1;
    }
    if (resumed && desc && !cnn_arch_equal(a, &resumed->arch)) {
        char mine[CNN_ARCH_LEN];
        fprintf(stderr, "%s: --arch %s differs from the network of %s (%s)\n", prog, desc, path,
                cnn_arch_describe(&resumed->arch, mine, sizeof mine));
        return 1;
    }
    if (resumed)
        *a = resumed->arch;
    const int top = cnn_dataset_classes(d) - 1; /* the largest label of the data */
    if (top >= a->classes) {
        fprintf(stderr, "%s: %s: the network has %d classes, the data has labels up to %d "
                "(end it with softmax%d)\n", prog, resumed ? path : "--arch", a->classes, top,
                top + 1);
        return 1;
    }
    return 0;
}

/* Beyond the post's network and SGD, one line says what trains. */
void print_network(const cnn_arch *a, const cnn_run_config *r)
{
    const cnn_train_config *c = &r->train;
    const int moved = r->shift || r->flip || r->rotate > 0.0f || r->zoom > 0.0f;
    if (cnn_arch_is_post(a) && a->layer[0].units == 8 && c->momentum == 0.0f &&
        c->weight_decay == 0.0f && r->schedule == CNN_SCHEDULE_CONSTANT && !moved &&
        c->optimizer == CNN_OPTIMIZER_SGD && !r->warmup)
        return;
    char desc[CNN_ARCH_LEN];
    static const char *const names[] = {"SGD", "Adam", "AdamW"};
    printf("network %s (%zu parameters); %s", cnn_arch_describe(a, desc, sizeof desc),
           a->n_params, names[c->optimizer]);
    if (c->optimizer != CNN_OPTIMIZER_SGD)
        printf(" (betas %g, %g, eps %g)", (double)c->beta1, (double)c->beta2, (double)c->eps);
    if (c->momentum > 0.0f)
        printf(", momentum %g%s", (double)c->momentum, c->nesterov ? " (Nesterov)" : "");
    if (c->weight_decay > 0.0f)
        printf(", weight decay %g", (double)c->weight_decay);
    printf(", %s learning rate", schedules[r->schedule]);
    if (r->warmup)
        printf(" after %llu steps of warmup", (unsigned long long)r->warmup);
    if (moved)
        printf("; training images");
    const char *sep = " ";
    if (r->rotate > 0.0f)
        printf("%sturned by up to %g degrees", sep, (double)r->rotate), sep = ", ";
    if (r->zoom > 0.0f)
        printf("%sscaled by up to %g%%", sep, 100.0 * r->zoom), sep = ", ";
    if (r->shift)
        printf("%smoved by up to %d pixels", sep, r->shift), sep = ", ";
    if (r->flip)
        printf("%smirrored at random", sep);
    printf("\n");
}

int load_model(const char *path, cnn_model *m)
{
    char err[512];
    if (cnn_model_load(m, path, err, sizeof err) == CNN_OK)
        return 0;
    fprintf(stderr, "%s: %s\n", prog, err);
    return 1;
}

/* Fail before training, not after it, when the model could not be saved: the same
 * check every write makes (a regular file or a new one, through links, in a writable
 * directory). */
int check_save_path(const char *flag, const char *path)
{
    char target[4096], err[4096 + 256];
    if (cnn_output_target(path, target, sizeof target, err, sizeof err) == CNN_OK)
        return 0;
    fprintf(stderr, "%s: %s %s\n", prog, flag, err);
    return 1;
}

void print_test(const cnn_stats *st)
{
    printf("Test Loss: %.10g\n", st->loss_sum / (double)st->count);
    printf("Test Accuracy: %.10g\n", (double)st->correct / (double)st->count);
}

/* ---------------------------------------------------------------- signals */

/* The first SIGINT or SIGTERM asks training to stop after the current step and save;
 * a second one ends the program at once, writing nothing. Saves run with both
 * signals blocked, so a file is always either the previous one or complete. */
volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    if (stop_signal)
        _exit(128 + sig);
    stop_signal = sig;
}

void catch_signals(void)
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

int save_model(const cnn_model *m, const char *path) { return write_out(m, NULL, path); }

int write_checkpoint(const cnn_checkpoint *ck, const char *path)
{
    return write_out(NULL, ck, path);
}

/* After a stop signal: save what there is to save, and say where. */
void stop_and_save(const cnn_checkpoint *ck, const cnn_model *m, const char *save,
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
