/* dist.c - data-parallel training across MPI ranks (see dist.h). */
#include "dist.h"

#include "config.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>
#if HAVE_MPI
#include <mpi.h>
#endif

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* Launched by mpirun or srun: their variables are in the environment. */
static int under_launcher(void)
{
    static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_RANK",
                                       "PMI_SIZE", NULL};
    for (int i = 0; vars[i]; i++)
        if (getenv(vars[i]))
            return 1;
    return 0;
}

void dist_init(cnn_dist *d, int *argc, char ***argv)
{
    memset(d, 0, sizeof *d);
    d->size = 1;
#if HAVE_MPI
    if (!under_launcher())
        return;
    MPI_Init(argc, argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->size);
    d->mpi = 1;
#else
    (void)argc;
    (void)argv;
    (void)under_launcher;
#endif
}

void dist_finalize(cnn_dist *d)
{
#if HAVE_MPI
    if (d->mpi)
        MPI_Finalize();
#endif
    d->mpi = 0;
}

int dist_all_ok(const cnn_dist *d, int ok, int *bad)
{
    *bad = ok ? -1 : d->rank;
#if HAVE_MPI
    if (d->mpi) {
        const int mine = ok ? d->size : d->rank;
        int lowest;
        MPI_Allreduce(&mine, &lowest, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
        *bad = lowest < d->size ? lowest : -1;
    }
#endif
    return *bad < 0;
}

int dist_same(const cnn_dist *d, uint32_t v, int *bad)
{
    *bad = -1;
#if HAVE_MPI
    if (d->mpi) {
        uint32_t v0 = v;
        MPI_Bcast(&v0, 1, MPI_UINT32_T, 0, MPI_COMM_WORLD);
        return dist_all_ok(d, v == v0, bad);
    }
#else
    (void)d;
    (void)v;
#endif
    return 1;
}

int dist_max(const cnn_dist *d, int flag)
{
#if HAVE_MPI
    if (d->mpi) {
        int all;
        MPI_Allreduce(&flag, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        return all;
    }
#else
    (void)d;
#endif
    return flag;
}

void dist_share(const cnn_dist *d, int nchunks, int *c0, int *c1)
{
    *c0 = (int)((long)d->rank * nchunks / d->size);
    *c1 = (int)((long)(d->rank + 1) * nchunks / d->size);
}

double dist_exchange(const cnn_dist *d, cnn_trainer *t, int n)
{
    const double t0 = seconds();
#if HAVE_MPI
    if (!d->mpi || d->size < 2)
        return 0.0;
    float *slots, *loss;
    uint8_t *pred, *ok;
    size_t stride;
    cnn_trainer_exchange(t, &slots, &stride, &loss, &pred, &ok);
    const int nch = cnn_chunk_count(n), P = d->size;
    int chunks[P], cdis[P], samples[P], sdis[P];
    for (int r = 0; r < P; r++) {
        const int c0 = (int)((long)r * nch / P), c1 = (int)((long)(r + 1) * nch / P);
        chunks[r] = c1 - c0, cdis[r] = c0;
        sdis[r] = (int)((long)c0 * n / nch);
        samples[r] = (int)((long)c1 * n / nch) - sdis[r];
    }
    MPI_Datatype slot;
    MPI_Type_contiguous((int)stride, MPI_FLOAT, &slot);
    MPI_Type_commit(&slot);
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, slots, chunks, cdis, slot, MPI_COMM_WORLD);
    MPI_Type_free(&slot);
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, loss, samples, sdis, MPI_FLOAT,
                   MPI_COMM_WORLD);
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, pred, samples, sdis, MPI_UINT8_T,
                   MPI_COMM_WORLD);
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, ok, chunks, cdis, MPI_UINT8_T,
                   MPI_COMM_WORLD);
#else
    (void)d;
    (void)t;
    (void)n;
#endif
    return seconds() - t0;
}

double dist_sum(const cnn_dist *d, double v)
{
#if HAVE_MPI
    if (d->mpi && d->size > 1) {
        double all[d->size];
        MPI_Allgather(&v, 1, MPI_DOUBLE, all, 1, MPI_DOUBLE, MPI_COMM_WORLD);
        double s = 0.0;
        for (int r = 0; r < d->size; r++)
            s += all[r];
        return s;
    }
#else
    (void)d;
#endif
    return v;
}

void dist_abort(const cnn_dist *d, int code)
{
#if HAVE_MPI
    if (d->mpi)
        MPI_Abort(MPI_COMM_WORLD, code);
#else
    (void)d;
#endif
    exit(code);
}
