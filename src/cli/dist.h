/* dist.h - data-parallel training across processes with MPI, for the cnn program
 * (internal; the library itself knows nothing of MPI).
 *
 * Under mpirun (or srun), every rank holds the same model and data. A minibatch's
 * chunks (fixed by its size alone) are split into contiguous shares, one per rank;
 * each rank computes its share (cnn_train_step_chunks, across its OpenMP threads),
 * the shares are gathered to every rank in one message (MPI_Allgatherv of the chunks'
 * gradient slots, each carrying its samples' losses and predictions, its finite flag
 * and its rank's stop signal), and every rank applies the same update,
 * summing the chunks in chunk order: the weights are bit-identical on every rank and
 * for any number of ranks. Without MPI (or outside mpirun) there is one rank. */
#ifndef CNN_DIST_H
#define CNN_DIST_H

#include "cnn.h"
#include "steps.h"

typedef struct cnn_dist {
    int rank, size; /* this process, and how many; 0 and 1 without MPI */
    int mpi;        /* MPI is initialised */
    float *buf;     /* --reduce allreduce: the one message of a step (dist_prepare) */
    size_t buf_len;
    double timeout; /* seconds a collective may take before the job is ended; 0: none */
    unsigned long long steps; /* exchanges made: the step a message names */
    char (*hosts)[64]; /* [size] each rank's host, for messages */
    struct dist_watch *watch; /* the watchdog thread (dist_watch), or NULL */
} cnn_dist;

/* Initialise MPI when the program runs under an MPI launcher; else one rank.
 *
 * With a watchdog (dist_watch), a collective below that has not completed within its
 * bound makes the rank print one line naming the step, what it was doing and the ranks
 * (and hosts) it waits for, and exit non-zero, which makes mpirun end the job: a host
 * that stops answering, a partition, cannot hang it. */
void dist_init(cnn_dist *d, int *argc, char ***argv);
void dist_finalize(cnn_dist *d);
/* Room for the exchanges of a run of a network of n_params parameters in minibatches
 * of at most batch samples, allocated once before the steps: 0, or -1 out of memory. */
int dist_prepare(cnn_dist *d, size_t n_params, int batch);
/* Start the watchdog with a bound of seconds (0: none): 0, or -1 if it cannot start. */
int dist_watch(cnn_dist *d, double seconds);

/* Every rank passes its own ok; @return 1 if all are ok, else 0 with *bad the lowest
 * rank that is not. A collective: every rank must call it at the same point. */
int dist_all_ok(const cnn_dist *d, int ok, int *bad);

/* @return 1 if every rank passed the same v, else 0 with *bad a rank whose v differs
 * from rank 0's. */
int dist_same(const cnn_dist *d, uint32_t v, int *bad);

/* @return the largest flag of all ranks (a stop signal on any rank stops them all). */
int dist_max(const cnn_dist *d, int flag);

/* This rank's share [c0, c1) of the nchunks chunks. */
void dist_share(const cnn_dist *d, int nchunks, int *c0, int *c1);

/* After each rank computed its share of a step of n samples: every rank gets every
 * rank's chunk slots, losses, predictions and flags, in one collective; *signal goes
 * in as this rank's stop signal (0: none) and comes out as the largest of every
 * rank's that holds a chunk of the step (a rank without one this step is heard at
 * its next). @return seconds spent. */
double dist_exchange(cnn_dist *d, cnn_trainer *t, int n, size_t n_params, int *signal);

/* The same, but the gradient as one MPI_Allreduce of each rank's sum of its chunks,
 * with the outcomes and every rank's signal in the same message (--reduce allreduce;
 * the gather above is bit-identical and the default; bench_mpi compares the two): 2
 * gradients' worth of traffic per rank (a ring) instead of every chunk's, in an order
 * MPI chooses, so the weights agree across ranks and with one process only within
 * rounding. @return seconds spent. */
double dist_allreduce(cnn_dist *d, cnn_trainer *t, int n, size_t n_params, int *signal);

/* The trainer's sync for batch statistics (cnn_sync_fn, ctx the cnn_dist): every
 * rank's chunks' sums gathered to every rank, so that each adds all of them in chunk
 * order, in both reduction modes: bn's statistics are the same bits on every rank. */
void dist_sync_sums(void *ctx, double *sums, size_t per_chunk, int nchunks, int c0, int c1);

/* A sum over ranks, in rank order, delivered to every rank (deterministic for a given
 * number of ranks). */
double dist_sum(const cnn_dist *d, double v);

/* End every rank now (after a failure on some ranks that others cannot see). */
void dist_abort(const cnn_dist *d, int code);

#endif
