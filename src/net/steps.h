/* steps.h - the trainer's lower levels (internal: the library, the cnn program, the
 * tests and benchmarks): one chunk's walk through the network (net.c), a training
 * step in parts for the MPI program (train.c), and which networks are the post's. */
#ifndef CNN_STEPS_H
#define CNN_STEPS_H

#include "cnn.h"

/* 1 for the post's shape of network: conv<F> (3x3, no bias), pool, softmax<N>; it is
 * written in model file version 1 and takes the per-sample in-place step at batch 1. */
int cnn_arch_is_post(const cnn_arch *a);

/* The walk of one chunk, nb <= a->cap samples images[idx[b]] (idx NULL: 0..nb-1),
 * through every layer (each kind per sample, or for all nb at once where it takes
 * rows: dense layers as SGEMMs), softmax; loss[b] and the predicted class pred[b]
 * out; then, when grad is not NULL and every loss is finite, the backward, adding
 * alpha times the SUM of the nb gradients to grad (grad == m->params with alpha = -lr
 * is an in-place SGD step). @return 1 if every loss is finite, else 0 (and grad is
 * untouched). */
int cnn_chunk_grad(const cnn_model *m, cnn_acts *a, float *grad, float alpha,
                   const float *images, const uint8_t *labels, const uint32_t *idx, int nb,
                   cnn_engine e, cnn_pool_ties ties, float *loss, uint8_t *pred);
/* As cnn_chunk_grad, for images given as uint8 pixels [.][C][H][W]: the nb images are
 * first converted to network input (as cnn_norm_apply with m->norm, bit for bit) into
 * a->x, so the results are those of cnn_chunk_grad on the converted images. */
int cnn_chunk_grad_u8(const cnn_model *m, cnn_acts *a, float *grad, float alpha,
                      const uint8_t *pixels, const uint8_t *labels, const uint32_t *idx, int nb,
                      cnn_engine e, cnn_pool_ties ties, float *loss, uint8_t *pred);
/* n pixels of channel c converted by norm (cnn_norm_apply, one channel's piece). */
void cnn_norm_channel(const cnn_norm *norm, int c, float *dst, const uint8_t *px, size_t n);
/* dst = the image px [C][H][W] moved by mv (cnn_move), converted by norm. */
void cnn_move_input(float *dst, const uint8_t *px, const cnn_norm *norm, int C, int H, int W,
                    cnn_move mv);
/* The same with image b moved by moves[b] (NULL: none). */
int cnn_chunk_grad_u8_moved(const cnn_model *m, cnn_acts *a, float *grad, float alpha,
                            const uint8_t *pixels, const uint8_t *labels, const uint32_t *idx,
                            int nb, const cnn_move *moves, cnn_engine e, cnn_pool_ties ties,
                            float *loss, uint8_t *pred);

/* A training pass over a network with batch-statistics layers (bn) in stages: the
 * chunks of a minibatch run each stage, then the step adds their sums for the layer the
 * stage ends at (cnn_stage_sums_layer: forward sums of its input, or backward sums of
 * its gradient) in chunk order into that layer's totals, which the following stages
 * read. With k such layers there are 2k + 1 stages: forward up to each of them; the
 * rest of the forward, the losses and the backward down to the last; then the backward
 * from each of them down to the one before. A network without them has one stage, the
 * whole pass. */
typedef struct cnn_stage_args {
    const float *images;   /* network input [.][C][H][W], or NULL for: */
    const uint8_t *pixels; /* uint8 pixels, converted by the model's normalisation */
    const uint32_t *idx;   /* the chunk's samples in images and labels (NULL: 0..nb-1) */
    const uint8_t *labels;
    const cnn_move *moves; /* with pixels: each sample's move, or NULL */
    int nb;
    float *grad;           /* the chunk's gradient slot (alpha 1) */
    float *dx;             /* NULL, or the input gradient of each sample [nb][C][H][W] */
    cnn_engine engine;
    cnn_pool_ties ties;
    const double *const *totals; /* [layer] the minibatch's sums of a batch-statistics
                                    layer (cnn_kind.sums doubles), NULL for the others */
    int batch_n;           /* the minibatch's samples */
} cnn_stage_args;
int cnn_stage_count(const cnn_arch *n);
/* The layer whose sums stage ends with (*backward_sums: 1 for the gradient's), or -1. */
int cnn_stage_sums_layer(const cnn_arch *n, int stage, int *backward_sums);
/* Stage `stage` of the chunk's samples: the chunk's share of the sums it ends with into
 * sums (its half of cnn_kind.sums doubles; the other half untouched); at stage k the
 * samples' losses and predictions. Stage 0 converts the images into a->x; later stages
 * read them there. @return 0 if a loss was not finite. */
int cnn_chunk_stage(const cnn_model *m, cnn_acts *a, const cnn_stage_args *s, int stage,
                    double *sums, float *loss, uint8_t *pred);
/* Steps in parts over a network with batch statistics: after each stage the trainer
 * calls sync (on one thread) with the chunks' sums, sums[nchunks][per_chunk], of which
 * this process made the rows of chunks [c0, c1); it must fill in the others (from the
 * processes that made them) before the trainer adds them up in chunk order. */
typedef void (*cnn_sync_fn)(void *ctx, double *sums, size_t per_chunk, int nchunks, int c0,
                            int c1);
void cnn_trainer_set_sync(cnn_trainer *t, cnn_sync_fn sync, void *ctx);

/* cnn_chunk_grad of the nb samples images[0..nb) with alpha 1 (the benchmarks' per-layer
 * profile): adds the seconds each layer's passes take to times[l] (forward) and
 * times[n + l] (backward), n the network's layers. */
int cnn_chunk_grad_timed(const cnn_model *m, cnn_acts *a, float *grad, const float *images,
                         const uint8_t *labels, int nb, cnn_engine e, cnn_pool_ties ties,
                         float *loss, double *times);

/* The work split so far: passes[w] (threads entries) receives the passes, or parts
 * of passes, worker w ran in this trainer's steps and evaluations (a team's workers
 * are consecutive, its chunk thread first). */
void cnn_trainer_passes(const cnn_trainer *t, uint64_t *passes);

/* A step in parts, for data-parallel training over several processes that hold the
 * same model: each computes some of the minibatch's chunks, the processes exchange
 * what they computed, and each applies the same update, summing the chunks in chunk
 * order, so every process holds the same bits as one process alone would.
 *   1. cnn_train_step_chunks(..., c0, c1): chunks [c0, c1) of the cnn_chunk_count(n)
 *      chunks (their samples are fixed by n alone) into their gradient slots, with
 *      their samples' losses, predictions and finite flags;
 *   2. the caller makes every process's slots, losses, predictions and flags those of
 *      the process that computed them (cnn_trainer_exchange: slots is nchunks x stride
 *      floats, chunk c's at c * stride; loss and pred [n], chunk_ok [nchunks]); a
 *      slot's CNN_SLOT_TAIL floats after its gradient are the caller's, room for the
 *      chunk's outcomes to travel with its gradient in one message;
 *   3. cnn_train_step_finish: the update from every slot (none if a loss was not
 *      finite: CNN_ERR_NUMERIC), zeroing them, and the step's statistics.
 * Steps in parts never take the post's in-place per-sample path: use batch >= 2. */
int cnn_chunk_count(int n);
#define CNN_SLOT_TAIL (2 * CNN_CHUNK_MAX + 2)
/* The first sample of chunk c (0 <= c <= cnn_chunk_count(n)) of a minibatch of n: the
 * rule that fixes which samples each chunk holds, by n alone. */
int cnn_chunk_start(int c, int n);
cnn_status cnn_train_step_chunks(cnn_trainer *t, cnn_model *m, const uint8_t *pixels,
                                 const uint8_t *labels, const uint32_t *idx, int n,
                                 const cnn_move *moves, int c0, int c1);
void cnn_trainer_exchange(cnn_trainer *t, float **slots, size_t *stride, float **loss,
                          uint8_t **pred, uint8_t **chunk_ok);
cnn_status cnn_train_step_finish(cnn_trainer *t, cnn_model *m, const uint8_t *labels,
                                 const uint32_t *idx, int n, cnn_stats *st);

#endif
