/* bench_train.c - end-to-end training and inference throughput of the post's
 * network, both engines, over batch sizes and thread counts; the achieved GFLOP/s
 * against the machine's SGEMM peak measured in the same run; and the wall-clock
 * training time until the test accuracy first reaches 97%.
 *
 * A training step counts 275,808 FLOPs per image: conv forward 97,344, conv filter
 * gradient 97,344, dense forward, weight gradient and input gradient 27,040 each.
 *
 * With --cnn PATH it also runs the cnn program's default training (`cnn train --data
 * DIR`: the post's 3 epochs over all of MNIST) and reports its wall time and peak
 * resident memory (the kernel's ru_maxrss of the child).
 *
 * usage: bench_train [--data DIR] [--json FILE] [--quick] [--no-tta] [--cnn PATH]
 *                    [--batches 1,16,64,256] [--threads 1,2] [--engines blas,reference]
 * Real MNIST from DIR when it is there, otherwise synthetic images of the same shape.
 * With --json FILE it also writes FILE.dat and, when gnuplot is installed, FILE.png
 * (without the .json suffix): the scaling over threads and batch sizes. */
#include "cnn.h"

#include "bench.h"
#include "config.h"

#include <cblas.h>
#include <errno.h>
#include <math.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>
#if HAVE_OPENMP
#include <omp.h>
#endif

#define MAXLIST 16

/* What trains: the network (the post's by default, or --arch) and its optimiser. */
typedef struct {
    cnn_arch arch;
    float momentum, weight_decay;
    int nesterov;
    double flops; /* per training image */
} network;

/* A data set as the trainer keeps it: the uint8 pixels, converted chunk by chunk. */
typedef struct {
    const uint8_t *px;
    const uint8_t *y;
    size_t n;
} split;

typedef struct {
    cnn_engine engine;
    int batch, threads;
    size_t images;
    double ips, spread; /* images per second (median), relative spread */
} train_result;

typedef struct {
    cnn_engine engine;
    int threads;
    double ips;
    double folded_ips; /* the same with bn folded (cnn_model_fold); 0 without bn */
} infer_result;

typedef struct {
    int batch, threads;
    float lr;
    int epochs;        /* epochs run */
    double seconds;    /* training time until >= 97%, or NAN */
    double accuracy;   /* the best test accuracy seen */
    double eval_s;     /* evaluation time, not counted */
} tta_result;

static const char *engine_name(cnn_engine e) { return e == CNN_ENGINE_BLAS ? "blas" : "reference"; }

static int parse_list(const char *s, int *out, int max)
{
    int n = 0;
    while (*s && n < max) {
        char *end;
        errno = 0;
        long v = strtol(s, &end, 10);
        if (errno || end == s || v < 1 || v > 65536)
            return -1;
        out[n++] = (int)v;
        s = *end == ',' ? end + 1 : end;
        if (*end && *end != ',')
            return -1;
    }
    return n;
}

/* One SGEMM of n x n x n: GFLOP/s, median of 3. threads 1 runs inside a one-thread
 * region, as our training calls do; otherwise OpenBLAS uses all cores. */
static double sgemm_peak(int n, int all_threads)
{
    float *a = malloc((size_t)n * n * 4), *b = malloc((size_t)n * n * 4), *c = malloc((size_t)n * n * 4);
    for (size_t i = 0; i < (size_t)n * n; i++)
        a[i] = b[i] = (float)(i % 7) * 0.1f;
    double v[3];
    for (int r = 0; r < 4; r++) {
        const double t0 = bench_now();
        if (all_threads) {
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0, c, n);
        } else {
#if HAVE_OPENMP
#pragma omp parallel num_threads(1)
#endif
            {
#if HAVE_OPENMP
                omp_set_num_threads(1);
#endif
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, a, n, b, n, 0,
                            c, n);
            }
        }
        if (r > 0) /* the first is a warm-up */
            v[r - 1] = 2.0 * n * n * n / (bench_now() - t0) / 1e9;
    }
    free(a), free(b), free(c);
    return bench_stats(v, 3).median;
}

/* A fresh network from seed 1, and a trainer for it; rng continues from the
 * initialization (it then shuffles). */
static cnn_trainer *start_run(const network *net, cnn_model *m, cnn_rng *rng, cnn_engine e,
                              int batch, int threads, float lr)
{
    cnn_rng_seed(rng, 1);
    cnn_model_init(m, &net->arch, rng);
    cnn_train_config c = {.engine = e, .ties = CNN_TIES_SINGLE, .batch = batch,
                          .threads = threads, .lr = lr, .momentum = net->momentum,
                          .nesterov = net->nesterov, .weight_decay = net->weight_decay};
    cnn_trainer *t;
    cnn_trainer_create(&t, &net->arch, &c);
    return t;
}

/* Train `images` images (a whole number of steps) from a fresh model; @return the
 * images per second of the timed part. */
static double train_ips(const network *net, const split *tr, cnn_engine e, int batch, int threads,
                        float lr, size_t images, uint32_t *order)
{
    cnn_rng rng;
    cnn_model m;
    cnn_trainer *t = start_run(net, &m, &rng, e, batch, threads, lr);
    for (size_t i = 0; i < tr->n; i++)
        order[i] = (uint32_t)i;
    cnn_rng_shuffle(&rng, order, tr->n);
    /* warm-up: a few steps, then the timed run from the start of the order */
    for (int i = 0; i < 4; i++)
        cnn_train_step_u8(t, &m, tr->px, tr->y, order, batch, NULL);
    const double t0 = bench_now();
    size_t done = 0;
    while (done < images) {
        const size_t at = done % tr->n;
        const int nb = (int)(tr->n - at < (size_t)batch ? tr->n - at : (size_t)batch);
        cnn_train_step_u8(t, &m, tr->px, tr->y, order + at, nb, NULL);
        done += (size_t)nb;
    }
    const double dt = bench_now() - t0;
    cnn_trainer_free(t);
    cnn_model_free(&m);
    return (double)done / dt;
}

/* Inference images per second (median of 3) of a fresh model, and with a bn network
 * of its folded twin (cnn_model_fold) in alternate rounds, into r. */
static void infer_ips(const network *net, const split *te, size_t images, infer_result *r)
{
    cnn_rng rng;
    cnn_model m[2];
    memset(m, 0, sizeof m);
    cnn_trainer *t[2] = {start_run(net, &m[0], &rng, r->engine, 1, r->threads, 0.005f), NULL};
    const int kinds = net->arch.n_state && cnn_model_fold(&m[0], &m[1]) == CNN_OK ? 2 : 1;
    if (kinds == 2) {
        cnn_train_config c = {.engine = r->engine, .batch = 1, .threads = r->threads, .lr = 0.005f};
        cnn_trainer_create(&t[1], &m[1].arch, &c);
    }
    cnn_stats st = {0};
    double v[2][3];
    for (int k = 0; k < kinds; k++) /* warm-up */
        cnn_evaluate_u8(t[k], &m[k], te->px, te->y, images < 1024 ? images : 1024, NULL, &st);
    for (int round = 0; round < 3; round++)
        for (int k = 0; k < kinds; k++) {
            const double t0 = bench_now();
            cnn_evaluate_u8(t[k], &m[k], te->px, te->y, images, NULL, &st);
            v[k][round] = (double)images / (bench_now() - t0);
        }
    r->ips = bench_stats(v[0], 3).median;
    r->folded_ips = kinds == 2 ? bench_stats(v[1], 3).median : 0.0;
    for (int k = 0; k < kinds; k++) {
        cnn_trainer_free(t[k]);
        cnn_model_free(&m[k]);
    }
}

/* Epochs of shuffled training, the test accuracy after each, until >= 97%. */
static tta_result time_to_97(const network *net, const split *tr, const split *te, int batch,
                             int threads, float lr, int max_epochs, uint32_t *order)
{
    tta_result r = {.batch = batch, .threads = threads, .lr = lr, .seconds = NAN};
    cnn_rng rng;
    cnn_model m;
    cnn_trainer *t = start_run(net, &m, &rng, CNN_ENGINE_BLAS, batch, threads, lr);
    for (size_t i = 0; i < tr->n; i++)
        order[i] = (uint32_t)i;
    double train_s = 0.0;
    for (int ep = 1; ep <= max_epochs; ep++) {
        cnn_rng_shuffle(&rng, order, tr->n);
        const double t0 = bench_now();
        for (size_t i = 0; i < tr->n; i += (size_t)batch) {
            const int nb = (int)(tr->n - i < (size_t)batch ? tr->n - i : (size_t)batch);
            cnn_train_step_u8(t, &m, tr->px, tr->y, order + i, nb, NULL);
        }
        train_s += bench_now() - t0;
        const double e0 = bench_now();
        cnn_stats st = {0};
        cnn_evaluate_u8(t, &m, te->px, te->y, te->n, NULL, &st);
        r.eval_s += bench_now() - e0;
        r.epochs = ep;
        const double acc = (double)st.correct / (double)st.count;
        r.accuracy = fmax(r.accuracy, acc);
        if (acc >= 0.97) {
            r.seconds = train_s;
            break;
        }
    }
    cnn_trainer_free(t);
    cnn_model_free(&m);
    return r;
}

typedef struct {
    int ok;
    double seconds, max_rss_mb;
} full_run;

/* Run `cnn train --data DIR` with its output discarded; wall time and peak RSS. */
static full_run run_cnn_train(const char *cnn, const char *data)
{
    full_run r = {.seconds = NAN};
    fflush(stdout);
    const double t0 = bench_now();
    const pid_t pid = fork();
    if (pid == 0) {
        if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr))
            _exit(127);
        execl(cnn, cnn, "train", "--data", data, (char *)NULL);
        _exit(127);
    }
    int status;
    struct rusage ru;
    if (pid < 0 || waitpid(pid, &status, 0) != pid || getrusage(RUSAGE_CHILDREN, &ru) != 0)
        return r;
    r.seconds = bench_now() - t0;
    /* the largest of the waited-for children: the first this program runs */
    r.max_rss_mb = (double)ru.ru_maxrss / 1024.0; /* kilobytes on Linux */
    r.ok = WIFEXITED(status) && WEXITSTATUS(status) == 0;
    return r;
}

static void write_plot(const char *json, const train_result *res, int nres, const int *batches,
                       int nb)
{
    char base[1024], dat[1100], png[1100];
    snprintf(base, sizeof base, "%s", json);
    char *dot = strrchr(base, '.');
    if (dot && strcmp(dot, ".json") == 0)
        *dot = '\0';
    snprintf(dat, sizeof dat, "%s.dat", base);
    snprintf(png, sizeof png, "%s.png", base);
    bench_out o;
    FILE *f = bench_out_open(&o);
    if (!f)
        return;
    /* one block per batch size: threads, images/s (BLAS engine) */
    fprintf(f, "# BLAS engine training throughput, images/s: one block per batch size\n");
    for (int b = 0; b < nb; b++) {
        fprintf(f, "# batch %d\n", batches[b]);
        for (int i = 0; i < nres; i++)
            if (res[i].engine == CNN_ENGINE_BLAS && res[i].batch == batches[b])
                fprintf(f, "%d %.1f\n", res[i].threads, res[i].ips);
        fprintf(f, "\n\n");
    }
    if (!bench_out_close(&o, "bench_train", dat) || !bench_out_ok("bench_train", png))
        return;
    printf("wrote %s\n", dat);
    if (system("command -v gnuplot >/dev/null 2>&1") != 0) {
        printf("gnuplot not installed: no PNG (apt-get install gnuplot-nox)\n");
        return;
    }
    FILE *g = popen("gnuplot", "w");
    if (!g)
        return;
    fprintf(g, "set terminal pngcairo size 900,500 noenhanced\nset output '%s'\n", png);
    fprintf(g, "set title 'Training throughput of the post''s CNN (BLAS engine, 60,000 images)'\n");
    fprintf(g, "set xlabel 'threads'\nset ylabel 'images per second'\nset grid\n");
    fprintf(g, "set key left top\nset xtics 1\nset yrange [0:*]\n");
    fprintf(g, "plot ");
    for (int b = 0; b < nb; b++)
        fprintf(g, "%s'%s' index %d using 1:2 with linespoints lw 2 title 'batch %d'",
                b ? ", " : "", dat, b, batches[b]);
    fprintf(g, "\n");
    if (pclose(g) == 0)
        printf("wrote %s\n", png);
}

int main(int argc, char **argv)
{
    cnn_core_report core;
    cnn_core_autoselect(argv, &core); /* may restart the program on a better core */
    const char *data = NULL, *json = NULL, *cnn = NULL, *arch_desc = CNN_ARCH_POST;
    int quick = 0, tta = 1;
    float lr = 0.005f;
    network net = {0};
    int batches[MAXLIST] = {1, 16, 64, 256}, nb = 4;
    int threads[MAXLIST], nt = 0;
    cnn_engine engines[2] = {CNN_ENGINE_BLAS, CNN_ENGINE_REFERENCE};
    int ne = 2;
#if HAVE_OPENMP
    const int cores = omp_get_num_procs();
#else
    const int cores = 1;
#endif
    for (int t = 1; t <= cores && nt < MAXLIST; t++)
        threads[nt++] = t;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--data") == 0 && v)
            data = v, i++;
        else if (strcmp(a, "--json") == 0 && v)
            json = v, i++;
        else if (strcmp(a, "--cnn") == 0 && v)
            cnn = v, i++;
        else if (strcmp(a, "--quick") == 0)
            quick = 1;
        else if (strcmp(a, "--arch") == 0 && v)
            arch_desc = v, i++;
        else if (strcmp(a, "--lr") == 0 && v && (lr = strtof(v, NULL)) > 0)
            i++;
        else if (strcmp(a, "--momentum") == 0 && v && (net.momentum = strtof(v, NULL)) >= 0 &&
                 net.momentum < 1)
            i++;
        else if (strcmp(a, "--nesterov") == 0)
            net.nesterov = 1;
        else if (strcmp(a, "--weight-decay") == 0 && v &&
                 (net.weight_decay = strtof(v, NULL)) >= 0)
            i++;
        else if (strcmp(a, "--no-tta") == 0)
            tta = 0;
        else if (strcmp(a, "--batches") == 0 && v && (nb = parse_list(v, batches, MAXLIST)) > 0)
            i++;
        else if (strcmp(a, "--threads") == 0 && v && (nt = parse_list(v, threads, MAXLIST)) > 0)
            i++;
        else if (strcmp(a, "--engines") == 0 && v) {
            ne = 0;
            if (strstr(v, "blas"))
                engines[ne++] = CNN_ENGINE_BLAS;
            if (strstr(v, "reference"))
                engines[ne++] = CNN_ENGINE_REFERENCE;
            if (!ne)
                goto usage;
            i++;
        } else {
        usage:
            fprintf(stderr, "usage: bench_train [--data DIR] [--json FILE] [--quick] [--no-tta] "
                            "[--cnn PATH] [--arch LAYERS] [--lr X] [--momentum X] [--nesterov] "
                            "[--weight-decay X] [--batches 1,16,64,256] [--threads 1,2] [--engines blas,reference]\n");
            return 2;
        }
    }
    if (json && !bench_out_ok("bench_train", json))
        return 1;
    char err[512];
    if (cnn_arch_build(&net.arch, arch_desc, 1, 28, 28, err, sizeof err) != CNN_OK ||
        (net.nesterov && net.momentum == 0.0f)) {
        fprintf(stderr, "bench_train: %s\n", net.nesterov ? "--nesterov needs --momentum" : err);
        return 2;
    }
    net.flops = cnn_arch_train_flops(&net.arch);
    const int post = strcmp(arch_desc, CNN_ARCH_POST) == 0;
    if (!post)
        tta = 0; /* the post's settings; time to accuracy of a recipe: cnn train */
    cnn_blas_setup();
    bench_machine mach;
    bench_machine_read(&mach, &core);
    char warn[256];
    printf("machine: %s, %d cores\nBLAS: %s\n", mach.cpu, mach.cores, mach.blas);
    if (core.warning[0])
        printf("warning: %s\n", core.warning);
    if (cnn_blas_core_warning(warn, sizeof warn))
        printf("warning: %s\n", warn);

    /* data: MNIST when present, else synthetic images of the same shape */
    cnn_dataset dtr = {0}, dte = {0};
    int real = data && cnn_mnist_load(data, "train", &dtr, err, sizeof err) == CNN_OK &&
               cnn_mnist_load(data, "t10k", &dte, err, sizeof err) == CNN_OK;
    if (!real) {
        cnn_dataset_free(&dtr);
        dtr.n = 60000, dte.n = 10000;
        dtr.pixels = malloc(dtr.n * 784), dtr.labels = malloc(dtr.n);
        dte.pixels = malloc(dte.n * 784), dte.labels = malloc(dte.n);
        cnn_rng rng;
        cnn_rng_seed(&rng, 7);
        cnn_synth_digits(dtr.pixels, dtr.labels, dtr.n, &rng);
        cnn_synth_digits(dte.pixels, dte.labels, dte.n, &rng);
        tta = 0; /* synthetic digits are too easy to mean anything here */
    }
    const split tr = {dtr.pixels, dtr.labels, dtr.n}, te = {dte.pixels, dte.labels, dte.n};
    uint32_t *order = malloc(tr.n * sizeof *order);
    printf("data: %s (%zu training, %zu test images)\n",
           real ? data : "synthetic digits (no MNIST given or found)", tr.n, te.n);
    char desc[CNN_ARCH_LEN];
    printf("network: %s, %zu parameters, %.0f FLOPs per training image; SGD lr %g, momentum %g%s, "
           "weight decay %g\n", cnn_arch_describe(&net.arch, desc, sizeof desc), net.arch.n_params,
           net.flops, (double)lr, (double)net.momentum, net.nesterov ? " (Nesterov)" : "",
           (double)net.weight_decay);

    const double peak1 = sgemm_peak(quick ? 512 : 1024, 0);
    const double peakn = sgemm_peak(quick ? 512 : 1024, 1);
    printf("SGEMM peak (%d^3): %.1f GFLOP/s on 1 thread, %.1f on %d\n\n", quick ? 512 : 1024,
           peak1, peakn, cores);

    /* training */
    train_result res[2 * MAXLIST * MAXLIST];
    int nres = 0;
    printf("training, one epoch-equivalent per setting; median of repeats (spread)\n");
    printf("%-10s %6s %8s %9s %14s %10s %9s %8s\n", "engine", "batch", "threads", "images",
           "images/s", "epoch s", "GFLOP/s", "of peak");
    for (int e = 0; e < ne; e++)
        for (int b = 0; b < nb; b++)
            for (int t = 0; t < nt; t++) {
                train_result r = {.engine = engines[e], .batch = batches[b], .threads = threads[t]};
                const int ref = engines[e] == CNN_ENGINE_REFERENCE;
                r.images = ref ? (quick ? 1000 : 6000) : (quick ? 6000 : tr.n);
                const int reps = ref ? 1 : (quick ? 1 : 3);
                double v[3];
                for (int k = 0; k < reps; k++)
                    v[k] = train_ips(&net, &tr, r.engine, r.batch, r.threads, lr, r.images, order);
                bench_stat s = bench_stats(v, reps);
                r.ips = s.median, r.spread = s.spread;
                const double gf = r.ips * net.flops / 1e9;
                const double peak = r.threads == 1 ? peak1 : peakn * r.threads / cores;
                printf("%-10s %6d %8d %9zu %14.0f %10.3f %9.1f %7.1f%% (%.0f%%)\n",
                       engine_name(r.engine), r.batch, r.threads, r.images, r.ips, 60000.0 / r.ips,
                       gf, 100 * gf / peak, 100 * r.spread);
                fflush(stdout);
                res[nres++] = r;
            }

    /* inference */
    infer_result inf[2 * MAXLIST];
    int ninf = 0;
    printf("\ninference over the test set (chunks of %d images)\n", CNN_CHUNK_MAX);
    for (int e = 0; e < ne; e++)
        for (int t = 0; t < nt; t++) {
            const size_t n = engines[e] == CNN_ENGINE_REFERENCE ? 2000 : te.n;
            infer_result r = {engines[e], threads[t], 0, 0};
            infer_ips(&net, &te, n, &r);
            printf("%-10s threads %d: %12.0f images/s", engine_name(r.engine), r.threads, r.ips);
            if (r.folded_ips > 0)
                printf("; bn folded (cnn fold): %.0f images/s, %.2fx", r.folded_ips,
                       r.folded_ips / r.ips);
            printf("\n");
            inf[ninf++] = r;
        }

    /* time to 97% */
    tta_result tt[8];
    int ntt = 0;
    if (tta) {
        static const struct {
            int batch;
            float lr;
        } settings[] = {{1, 0.005f}, {1, 0.01f}, {16, 0.05f}, {64, 0.1f}};
        printf("\ntime to 97%% test accuracy (evaluated after each epoch, up to 5; training time "
               "only), %d threads\n", cores);
        for (size_t k = 0; k < sizeof settings / sizeof *settings; k++) {
            tta_result r = time_to_97(&net, &tr, &te, settings[k].batch, cores, settings[k].lr,
                                      quick ? 2 : 5, order);
            if (isnan(r.seconds))
                printf("batch %3d lr %-6g: not reached in %d epochs (best %.2f%%)\n", r.batch,
                       (double)r.lr, r.epochs, 100 * r.accuracy);
            else
                printf("batch %3d lr %-6g: %.3f s (%d epochs, %.2f%%; evaluation %.3f s more)\n",
                       r.batch, (double)r.lr, r.seconds, r.epochs, 100 * r.accuracy, r.eval_s);
            tt[ntt++] = r;
        }
    }

    /* the cnn program's default run, as a user starts it */
    full_run full = {.seconds = NAN};
    if (cnn && real) {
        full = run_cnn_train(cnn, data);
        if (full.ok)
            printf("\nfull training run (%s train --data %s: 3 epochs, batch 1): %.2f s wall, "
                   "peak resident memory %.1f MB\n", cnn, data, full.seconds, full.max_rss_mb);
        else
            printf("\nfull training run (%s train): failed\n", cnn);
    }

    if (json) {
        bench_out o;
        FILE *f = bench_out_open(&o);
        if (!f) {
            fprintf(stderr, "bench_train: out of memory for %s\n", json);
            return 1;
        }
        fprintf(f, "{\"tool\": \"cnn-bench\", \"machine\": ");
        bench_json_machine(f, &mach, CNN_BUILD_FLAGS);
        fprintf(f, ",\n \"network\": \"%s\", \"lr\": %g, \"momentum\": %g, \"nesterov\": %d, "
                "\"weight_decay\": %g", desc, (double)lr, (double)net.momentum, net.nesterov,
                (double)net.weight_decay);
        fprintf(f, ",\n \"data\": \"%s\", \"flops_per_image\": %.0f,\n", real ? "mnist" : "synthetic",
                net.flops);
        fprintf(f, " \"sgemm_peak_gflops\": {\"threads_1\": %.2f, \"threads_all\": %.2f},\n", peak1,
                peakn);
        fprintf(f, " \"train\": [");
        for (int i = 0; i < nres; i++)
            fprintf(f, "%s\n  {\"engine\": \"%s\", \"batch\": %d, \"threads\": %d, \"images\": %zu, "
                    "\"images_per_s\": %.1f, \"spread\": %.3f, \"epoch_s\": %.4f, \"gflops\": %.2f}",
                    i ? "," : "", engine_name(res[i].engine), res[i].batch, res[i].threads,
                    res[i].images, res[i].ips, res[i].spread, 60000.0 / res[i].ips,
                    res[i].ips * net.flops / 1e9);
        fprintf(f, "\n ],\n \"inference\": [");
        for (int i = 0; i < ninf; i++)
            fprintf(f, "%s\n  {\"engine\": \"%s\", \"threads\": %d, \"images_per_s\": %.1f, "
                    "\"folded_images_per_s\": %.1f}", i ? "," : "", engine_name(inf[i].engine),
                    inf[i].threads, inf[i].ips, inf[i].folded_ips);
        fprintf(f, "\n ],\n \"time_to_97\": [");
        for (int i = 0; i < ntt; i++) {
            fprintf(f, "%s\n  {\"engine\": \"blas\", \"batch\": %d, \"threads\": %d, \"lr\": %g, "
                    "\"epochs\": %d, \"accuracy\": %.4f, \"seconds\": ", i ? "," : "", tt[i].batch,
                    tt[i].threads, (double)tt[i].lr, tt[i].epochs, tt[i].accuracy);
            if (isnan(tt[i].seconds))
                fprintf(f, "null}");
            else
                fprintf(f, "%.4f}", tt[i].seconds);
        }
        fprintf(f, "\n ],\n \"full_run\": ");
        if (full.ok)
            fprintf(f, "{\"command\": \"cnn train\", \"seconds\": %.3f, \"max_rss_mb\": %.1f}",
                    full.seconds, full.max_rss_mb);
        else
            fprintf(f, "null");
        fprintf(f, "}\n");
        if (!bench_out_close(&o, "bench_train", json))
            return 1;
        printf("\nwrote %s\n", json);
        write_plot(json, res, nres, batches, nb);
    }
    free(order);
    cnn_dataset_free(&dtr);
    cnn_dataset_free(&dte);
    return 0;
}
