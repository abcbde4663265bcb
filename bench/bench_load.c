/* bench_load.c - how fast a data set loads and how much memory it takes: the split of
 * a directory in any format --data reads (IDX, CIFAR-10 batches, an image folder),
 * on 1 to all threads, with images per second, the pixels' size and the process's
 * peak resident memory (a fresh process per thread count, so each peak is its own).
 *
 *   build/bench/bench_load DIR [--split train|test] [--threads N]
 */
#include "cnn.h"
#include "config.h"

#if HAVE_OPENMP
#include <omp.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

int main(int argc, char **argv)
{
    const char *dir = NULL, *split = "train";
#if HAVE_OPENMP
    int threads = omp_get_num_procs();
#else
    int threads = 1; /* a build without OpenMP decodes on one thread */
#endif
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--split") && i + 1 < argc)
            split = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc)
            threads = atoi(argv[++i]);
        else if (argv[i][0] != '-' && !dir)
            dir = argv[i];
        else {
            fprintf(stderr, "usage: bench_load DIR [--split train|test] [--threads N]\n");
            return 2;
        }
    }
    if (!dir || threads < 1) {
        fprintf(stderr, "usage: bench_load DIR [--split train|test] [--threads N]\n");
        return 2;
    }
#if HAVE_OPENMP
    omp_set_num_threads(threads);
#endif
    char err[512];
    cnn_dataset d;
    const double t0 = now();
    if (cnn_dataset_load(dir, split, NULL, &d, NULL, NULL, err, sizeof err) != CNN_OK) {
        fprintf(stderr, "bench_load: %s\n", err);
        return 1;
    }
    const double dt = now() - t0;
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    static const char *const formats[] = {"synthetic", "IDX", "CIFAR-10", "image folder"};
    const double pixels_mb = (double)d.n * cnn_dataset_image_len(&d) / 1e6;
    printf("%s (%s, %s): %zu images of %dx%dx%d, %d thread%s: %.2f s, %.0f images/s; "
           "pixels %.1f MB, peak resident %.1f MB\n",
           dir, split, formats[d.format], d.n, d.channels, d.rows, d.cols, threads,
           threads > 1 ? "s" : "", dt, (double)d.n / dt, pixels_mb, ru.ru_maxrss / 1e3);
    cnn_dataset_free(&d);
    return 0;
}
