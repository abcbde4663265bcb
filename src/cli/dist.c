/* dist.c - data-parallel training across MPI ranks (see dist.h). */
#include "dist.h"

#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
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
    d->hosts = calloc((size_t)d->size, sizeof *d->hosts);
    if (!d->hosts)
        MPI_Abort(MPI_COMM_WORLD, 1);
    char host[MPI_MAX_PROCESSOR_NAME] = "";
    int len = 0;
    MPI_Get_processor_name(host, &len);
    snprintf(d->hosts[d->rank], sizeof d->hosts[0], "%s", host);
    MPI_Allgather(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, d->hosts, sizeof d->hosts[0], MPI_CHAR,
                  MPI_COMM_WORLD);
#else
    (void)argc;
    (void)argv;
    (void)under_launcher;
#endif
}

static void watch_stop(cnn_dist *d);

void dist_finalize(cnn_dist *d)
{
    watch_stop(d);
#if HAVE_MPI
    if (d->mpi)
        MPI_Finalize();
#endif
    d->mpi = 0;
    free(d->buf);
    free(d->hosts);
    d->buf = NULL, d->buf_len = 0, d->hosts = NULL;
}

/* ---------------------------------------------------------------- the watchdog */

/* A thread that looks every tenth of the bound (at most 0.1 s) at the collective in
 * progress, if any; past the bound it prints one line and ends this process (its
 * non-zero exit ends the job: mpirun stops every other rank). MPI_Abort is not called
 * from it: another thread is inside MPI, which MPI_THREAD_SINGLE does not allow. */
struct dist_watch {
    pthread_t thread;
    const cnn_dist *d;
    _Atomic long long since_ns; /* when the collective in progress began; 0: none */
    const char *_Atomic what;
    atomic_int stop;
};

static long long now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static void *watch_loop(void *arg)
{
    struct dist_watch *w = arg;
    const cnn_dist *d = w->d;
    const long long bound = (long long)(d->timeout * 1e9);
    const long long nap = bound / 10 < 100000000LL ? bound / 10 : 100000000LL;
    while (!atomic_load(&w->stop)) {
        nanosleep(&(struct timespec){nap / 1000000000LL, nap % 1000000000LL}, NULL);
        const long long since = atomic_load(&w->since_ns);
        if (!since || now_ns() - since < bound)
            continue;
        char others[512] = "", line[1024];
        size_t at = 0;
        for (int r = 0; r < d->size && at < sizeof others; r++)
            if (r != d->rank)
                at += (size_t)snprintf(others + at, sizeof others - at, "%s%d (%s)",
                                       at ? ", " : "", r, d->hosts ? d->hosts[r] : "?");
        const int len = snprintf(line, sizeof line,
                                 "cnn (rank %d of %d): step %llu: %s has not completed in %g "
                                 "s; it waits for rank%s %s: a host stopped answering or the "
                                 "network is partitioned; ending the job (--mpi-timeout sets "
                                 "the bound)\n", d->rank, d->size, d->steps + 1,
                                 atomic_load(&w->what), d->timeout, d->size > 2 ? "s" : "",
                                 others);
        if (write(STDERR_FILENO, line, len > 0 && (size_t)len < sizeof line ? (size_t)len
                                                                            : sizeof line - 1))
            (void)0;
        _exit(1);
    }
    return NULL;
}

int dist_watch(cnn_dist *d, double seconds_bound)
{
    d->timeout = seconds_bound;
    if (!d->mpi || d->size < 2 || seconds_bound <= 0.0 || d->watch)
        return 0;
    struct dist_watch *w = calloc(1, sizeof *w);
    if (!w)
        return -1;
    w->d = d;
    if (pthread_create(&w->thread, NULL, watch_loop, w) != 0) {
        free(w);
        return -1;
    }
    d->watch = w;
    return 0;
}

static void watch_begin(const cnn_dist *d, const char *what)
{
    if (d->watch) {
        atomic_store(&d->watch->what, what);
        atomic_store(&d->watch->since_ns, now_ns());
    }
}

static void watch_end(const cnn_dist *d)
{
    if (d->watch)
        atomic_store(&d->watch->since_ns, 0);
}

static void watch_stop(cnn_dist *d)
{
    if (!d->watch)
        return;
    atomic_store(&d->watch->stop, 1);
    pthread_join(d->watch->thread, NULL);
    free(d->watch);
    d->watch = NULL;
}

/* --reduce allreduce's message: the gradient's sum, the samples' losses and
 * predictions, the chunks' flags, the ranks' signals. */
static size_t message_len(size_t n_params, int n, int nchunks, int P)
{
    return n_params + 2 * (size_t)n + (size_t)nchunks + (size_t)P;
}

int dist_prepare(cnn_dist *d, size_t n_params, int batch)
{
    if (d->size < 2)
        return 0;
    free(d->buf);
    d->buf_len = message_len(n_params, batch, cnn_chunk_count(batch), d->size);
    d->buf = calloc(d->buf_len, sizeof *d->buf);
    return d->buf ? 0 : -1;
}

int dist_all_ok(const cnn_dist *d, int ok, int *bad)
{
    *bad = ok ? -1 : d->rank;
#if HAVE_MPI
    if (d->mpi) {
        const int mine = ok ? d->size : d->rank;
        int lowest;
        watch_begin(d, "a check that every rank is ready");
        MPI_Allreduce(&mine, &lowest, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
        watch_end(d);
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
        watch_begin(d, "a comparison of the ranks' data or weights");
        MPI_Bcast(&v0, 1, MPI_UINT32_T, 0, MPI_COMM_WORLD);
        watch_end(d);
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
        watch_begin(d, "a flag's exchange");
        MPI_Allreduce(&flag, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
        watch_end(d);
        return all;
    }
#else
    (void)d;
#endif
    return flag;
}

/* Rank r's share [c0, c1) of nchunks chunks over P ranks. */
static void share_of(int r, int P, int nchunks, int *c0, int *c1)
{
    *c0 = (int)((long)r * nchunks / P);
    *c1 = (int)((long)(r + 1) * nchunks / P);
}

void dist_share(const cnn_dist *d, int nchunks, int *c0, int *c1)
{
    share_of(d->rank, d->size, nchunks, c0, c1);
}

#if HAVE_MPI
/* Every rank's share of nch chunks of per_chunk values of type each, at buf, gathered
 * in place to every rank (what: the exchange, for the watchdog's message). */
static void gather_chunks(const cnn_dist *d, void *buf, int nch, size_t per_chunk,
                          MPI_Datatype each, const char *what)
{
    const int P = d->size;
    int chunks[P], first[P];
    for (int r = 0; r < P; r++) {
        int r0, r1;
        share_of(r, P, nch, &r0, &r1);
        chunks[r] = r1 - r0, first[r] = r0;
    }
    MPI_Datatype chunk;
    MPI_Type_contiguous((int)per_chunk, each, &chunk);
    MPI_Type_commit(&chunk);
    watch_begin(d, what);
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, chunks, first, chunk, MPI_COMM_WORLD);
    watch_end(d);
    MPI_Type_free(&chunk);
}

/* A chunk's outcomes in the tail of its slot (CNN_SLOT_TAIL floats after the
 * gradient): its finite flag, its rank's signal, its samples' losses, then their
 * predictions; or back out of it. */
static void pack_tail(float *tail, float *loss, uint8_t *pred, uint8_t *ok, int c, int n,
                      int signal)
{
    const int s0 = cnn_chunk_start(c, n), m = cnn_chunk_start(c + 1, n) - s0;
    tail[0] = ok[c], tail[1] = (float)signal;
    for (int i = 0; i < m; i++)
        tail[2 + i] = loss[s0 + i], tail[2 + CNN_CHUNK_MAX + i] = pred[s0 + i];
}

static int unpack_tail(const float *tail, float *loss, uint8_t *pred, uint8_t *ok, int c, int n)
{
    const int s0 = cnn_chunk_start(c, n), m = cnn_chunk_start(c + 1, n) - s0;
    ok[c] = (uint8_t)tail[0];
    for (int i = 0; i < m; i++)
        loss[s0 + i] = tail[2 + i], pred[s0 + i] = (uint8_t)tail[2 + CNN_CHUNK_MAX + i];
    return (int)tail[1];
}
#endif

double dist_exchange(cnn_dist *d, cnn_trainer *t, int n, size_t n_params, int *signal)
{
    const double t0 = seconds();
#if HAVE_MPI
    if (!d->mpi || d->size < 2)
        return 0.0;
    float *slots, *loss;
    uint8_t *pred, *ok;
    size_t stride;
    cnn_trainer_exchange(t, &slots, &stride, &loss, &pred, &ok);
    const int nch = cnn_chunk_count(n);
    int c0, c1;
    dist_share(d, nch, &c0, &c1);
    for (int c = c0; c < c1; c++)
        pack_tail(slots + (size_t)c * stride + n_params, loss, pred, ok, c, n, *signal);
    gather_chunks(d, slots, nch, stride, MPI_FLOAT, "the gradient exchange");
    d->steps++;
    for (int c = 0; c < nch; c++) {
        const int s = unpack_tail(slots + (size_t)c * stride + n_params, loss, pred, ok, c, n);
        *signal = s > *signal ? s : *signal;
    }
#else
    (void)d, (void)t, (void)n, (void)n_params, (void)signal;
#endif
    return seconds() - t0;
}

void dist_sync_sums(void *ctx, double *sums, size_t per_chunk, int nchunks, int c0, int c1)
{
    const cnn_dist *d = ctx;
    (void)c0, (void)c1; /* this rank's share, as dist_share gives it */
#if HAVE_MPI
    if (!d->mpi || d->size < 2)
        return;
    gather_chunks(d, sums, nchunks, per_chunk, MPI_DOUBLE,
                  "the exchange of batch normalization's sums");
#else
    (void)d, (void)sums, (void)per_chunk, (void)nchunks;
#endif
}

double dist_allreduce(cnn_dist *d, cnn_trainer *t, int n, size_t n_params, int *signal)
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
    const size_t len = message_len(n_params, n, nch, P);
    if (len > d->buf_len)
        dist_abort(d, 1); /* dist_prepare was not called for this batch */
    int c0, c1;
    dist_share(d, nch, &c0, &c1);
    /* one message: this rank's chunks summed in chunk order, its samples' losses and
     * predictions and its chunks' flags at their places, its signal at its rank; zero
     * elsewhere, so that the sum over ranks is every rank's value */
    float *msg = d->buf, *msg_loss = msg + n_params, *msg_pred = msg_loss + n;
    float *msg_ok = msg_pred + n, *msg_signal = msg_ok + nch;
    memset(msg, 0, len * sizeof *msg);
    for (int c = c0; c < c1; c++) {
        float *g = slots + (size_t)c * stride;
        for (size_t p = 0; p < n_params; p++)
            msg[p] += g[p];
        memset(g, 0, n_params * sizeof(float));
        msg_ok[c] = ok[c];
    }
    for (int i = cnn_chunk_start(c0, n); i < cnn_chunk_start(c1, n); i++)
        msg_loss[i] = loss[i], msg_pred[i] = pred[i];
    msg_signal[d->rank] = (float)*signal;
    for (size_t at = 0; at < len;) { /* counts are ints */
        const int part = (int)(len - at < (1u << 30) ? len - at : (1u << 30));
        watch_begin(d, "the gradient exchange");
        MPI_Allreduce(MPI_IN_PLACE, msg + at, part, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
        watch_end(d);
        at += (size_t)part;
    }
    d->steps++;
    memcpy(slots, msg, n_params * sizeof(float)); /* the sum, in slot 0; the rest zero */
    for (int i = 0; i < n; i++)
        loss[i] = msg_loss[i], pred[i] = (uint8_t)msg_pred[i];
    for (int c = 0; c < nch; c++)
        ok[c] = (uint8_t)msg_ok[c];
    for (int r = 0; r < P; r++)
        *signal = (int)msg_signal[r] > *signal ? (int)msg_signal[r] : *signal;
#else
    (void)d, (void)t, (void)n, (void)n_params, (void)signal;
#endif
    return seconds() - t0;
}

double dist_sum(const cnn_dist *d, double v)
{
#if HAVE_MPI
    if (d->mpi && d->size > 1) {
        double all[d->size];
        watch_begin(d, "the test's sums");
        MPI_Allgather(&v, 1, MPI_DOUBLE, all, 1, MPI_DOUBLE, MPI_COMM_WORLD);
        watch_end(d);
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
