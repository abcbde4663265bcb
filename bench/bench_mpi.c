/* bench_mpi.c - data-parallel training throughput under mpirun: images per second of
 * STEPS minibatch steps split over the ranks (each rank running its share on its own
 * threads), the time of the exchange that keeps the ranks bit-identical (every rank's
 * chunk gradients gathered to all: src/cli/dist.c), and, for comparison, the time a plain
 * MPI_Allreduce of one gradient vector takes (a reduction in an order MPI chooses).
 *
 * usage: mpirun -np P bench_mpi [--data DIR] [--arch LAYERS] [--batch N] [--threads N]
 *                               [--steps N] [--reduce exact|allreduce]
 * exchange_ms is the reduction the run used (every chunk gathered, by default; with
 * allreduce, an MPI_Allreduce of each rank's chunk sum), after a barrier (wait_ms: the
 * ranks' imbalance); allreduce_ms a bare MPI_Allreduce of one gradient.
 * Without MPI (or without mpirun) it measures one process. */
#include "cnn.h"

#include "bench.h"
#include "config.h"
#include "dist.h"

#if HAVE_MPI
#include <mpi.h>
#endif
#if HAVE_OPENMP
#include <omp.h>
#endif

/* Seconds this rank waits for the others to finish their share (a barrier). */
static double dist_wait(const cnn_dist *d)
{
    const double t0 = bench_now();
#if HAVE_MPI
    if (d->mpi && d->size > 1)
        MPI_Barrier(MPI_COMM_WORLD);
#else
    (void)d;
#endif
    return bench_now() - t0;
}

/* Seconds in bn's synchronisation points (the stages' gathers of chunk sums). */
static double sync_s;

static void timed_sync(void *ctx, double *sums, size_t per_chunk, int nchunks, int c0, int c1)
{
    const double t0 = bench_now();
    dist_sync_sums(ctx, sums, per_chunk, nchunks, c0, c1);
    sync_s += bench_now() - t0;
}

int main(int argc, char **argv)
{
    cnn_core_report core;
    cnn_core_autoselect(argv, &core); /* may restart the program on a better core */
    cnn_dist d;
    dist_init(&d, NULL, NULL);
    const char *data = "data/mnist", *desc = CNN_ARCH_POST;
    int batch = 64, threads = 1, steps = 300, exact = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (strcmp(a, "--data") == 0 && v)
            data = v, i++;
        else if (strcmp(a, "--arch") == 0 && v)
            desc = v, i++;
        else if (strcmp(a, "--batch") == 0 && v && (batch = atoi(v)) >= d.size)
            i++;
        else if (strcmp(a, "--threads") == 0 && v && (threads = atoi(v)) >= 1)
            i++;
        else if (strcmp(a, "--steps") == 0 && v && (steps = atoi(v)) >= 1)
            i++;
        else if (strcmp(a, "--reduce") == 0 && v && (!strcmp(v, "exact") || !strcmp(v, "allreduce")))
            exact = !strcmp(v, "exact"), i++;
        else {
            if (d.rank == 0)
                fprintf(stderr, "usage: [mpirun -np P] bench_mpi [--data DIR] [--arch LAYERS] "
                                "[--batch N >= P] [--threads N] [--steps N] "
                                "[--reduce exact|allreduce]\n");
            dist_finalize(&d);
            return 2;
        }
    }
    cnn_blas_setup();
    cnn_dataset tr = {0};
    char err[512];
    cnn_arch arch;
    int ok = cnn_mnist_load(data, "train", &tr, err, sizeof err) == CNN_OK &&
             cnn_arch_build(&arch, desc, 1, tr.rows, tr.cols, err, sizeof err) == CNN_OK;
    int bad;
    if (!dist_all_ok(&d, ok, &bad)) {
        if (d.rank == bad)
            fprintf(stderr, "bench_mpi (rank %d): %s\n", d.rank, err);
        cnn_dataset_free(&tr);
        dist_finalize(&d);
        return 1;
    }
    cnn_rng rng;
    cnn_rng_seed(&rng, 1);
    cnn_model m;
    cnn_model_init(&m, &arch, &rng);
    cnn_train_config c = cnn_train_config_default();
    c.batch = batch, c.threads = threads, c.lr = 0.05f, c.momentum = 0.9f;
    cnn_trainer *t;
    cnn_trainer_create(&t, &arch, &c);
    if (dist_prepare(&d, m.n_params, batch))
        dist_abort(&d, 1);
    if (dist_watch(&d, 30.0)) /* the watchdog cnn train runs with */
        dist_abort(&d, 1);
    cnn_trainer_set_sync(t, timed_sync, &d); /* bn's statistics: every rank's chunk sums */
    uint32_t *order = malloc(tr.n * sizeof *order);
    for (size_t i = 0; i < tr.n; i++)
        order[i] = (uint32_t)i;
    cnn_rng_shuffle(&rng, order, tr.n);
    float *vec = calloc(m.n_params, sizeof *vec), *sum = calloc(m.n_params, sizeof *sum);
    const int nch = cnn_chunk_count(batch);
    int c0, c1;
    dist_share(&d, nch, &c0, &c1);
    double exchange = 0.0, reduce = 0.0, wait = 0.0;
    for (int pass = 0; pass < 2; pass++) { /* a warm-up pass of 10 steps, then the timed one */
        const int n_steps = pass ? steps : 10;
        exchange = reduce = wait = sync_s = 0.0;
        dist_max(&d, 0); /* start together */
        const double t0 = bench_now();
        for (int s = 0; s < n_steps; s++) {
            const uint32_t *idx = order + ((size_t)s * batch) % (tr.n - (size_t)batch);
            cnn_train_step_chunks(t, &m, tr.pixels, tr.labels, idx, batch, NULL, c0, c1);
            wait += dist_wait(&d); /* the ranks' compute imbalance, apart from the exchange */
            int signal = 0;
            exchange += exact ? dist_exchange(&d, t, batch, m.n_params, &signal)
                              : dist_allreduce(&d, t, batch, m.n_params, &signal);
            cnn_train_step_finish(t, &m, tr.labels, idx, batch, NULL);
        }
        const double dt = bench_now() - t0;
#if HAVE_MPI
        if (d.mpi && d.size > 1)
            for (int s = 0; s < n_steps; s++) {
                const double r0 = bench_now();
                MPI_Allreduce(vec, sum, (int)m.n_params, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
                reduce += bench_now() - r0;
            }
#endif
        if (pass && d.rank == 0) {
            char name[CNN_ARCH_LEN];
            const double ips = (double)n_steps * batch / dt;
            printf("{\"network\": \"%s\", \"reduce\": \"%s\", \"ranks\": %d, "
                   "\"threads_per_rank\": %d, \"batch\": %d, "
                   "\"steps\": %d, \"images_per_s\": %.0f, \"step_ms\": %.4f, "
                   "\"wait_ms\": %.4f, \"exchange_ms\": %.4f, \"bn_sync_ms\": %.4f, "
                   "\"allreduce_ms\": %.4f, "
                   "\"gradient_floats\": %zu, "
                   "\"exchanged_floats\": %zu, \"gflops\": %.2f}\n",
                   cnn_arch_describe(&arch, name, sizeof name), exact ? "exact" : "allreduce",
                   d.size, threads, batch, n_steps,
                   ips, 1e3 * dt / n_steps, 1e3 * wait / n_steps, 1e3 * exchange / n_steps,
                   1e3 * sync_s / n_steps, 1e3 * reduce / n_steps,
                   m.n_params, exact ? (size_t)nch * m.n_params : m.n_params,
                   ips * cnn_arch_train_flops(&arch) / 1e9);
        }
    }
    free(vec), free(sum), free(order);
    cnn_trainer_free(t);
    cnn_model_free(&m);
    cnn_dataset_free(&tr);
    dist_finalize(&d);
    return 0;
}
