/* train.c - the trainer: minibatch steps across OpenMP threads (whole or in parts),
 * the optimisers (SGD with momentum, Adam, AdamW), and evaluation.
 *
 * A minibatch of n samples is cut into chunks whose boundaries depend only on n
 * (chunk_count). Threads take whole chunks; a chunk runs as one unit (the dense
 * layer as SGEMMs over its samples) and sums its gradient into its own slot; the
 * update then sums the slots in chunk order. No sum depends on which thread did
 * what, so the weights are bit-identical for any thread count. Every buffer is
 * allocated in cnn_trainer_create: a step allocates nothing. */
#include "cnn.h"

#include "arena.h"
#include "config.h"
#include "kernels.h"
#include "layer.h"
#include "mix.h"
#include "simd.h"
#include "steps.h"

#include <math.h>
#include <stdio.h>
#include <string.h>
#if HAVE_OPENMP
#include <omp.h>
#endif

#define EVAL_BLOCK 1024

struct cnn_trainer {
    cnn_arch arch;
    cnn_train_config cfg;
    size_t n_params;
    size_t slot_stride; /* floats between gradient slots (64-byte multiple) */
    int nslots;
    float *slots;       /* [nslots][slot_stride] per-chunk gradient sums, zero between steps */
    uint8_t *chunk_ok;  /* [nslots] 1 if every loss of the chunk was finite */
    float *state;       /* the optimiser's: SGD momentum [n_params], Adam [2][n_params], or
                           NULL */
    size_t state_len;
    uint64_t updates;   /* updates made (Adam's bias correction) */
    uint64_t epoch;     /* of the next steps: with cfg.seed, the dropout key */
    cnn_acts *acts;     /* [nacts], each for CNN_CHUNK_MAX samples: a thread's, or with
                           stages a chunk's (its activations wait between stages) */
    int nacts;
    int stages;         /* of a training pass (cnn_stage_count): 1 without bn */
    size_t sums_len;    /* doubles of a chunk's sums (the largest layer's) */
    double *sums;       /* [nslots][sums_len] each chunk's sums of the stage it ran */
    double *totals_buf; /* every batch-statistics layer's minibatch sums, back to back */
    const double *totals[CNN_MAX_LAYERS]; /* [layer] into totals_buf, or NULL */
    cnn_sync_fn sync;   /* steps in parts: fills in the other processes' chunk sums */
    void *sync_ctx;
    float *loss;        /* [max(batch, EVAL_BLOCK)] per-sample loss of the last step */
    uint8_t *pred;      /* [max(batch, EVAL_BLOCK)] per-sample predicted class */
};

/* Chunks of at most CNN_CHUNK_MAX samples, and at least CNN_CHUNKS_MIN chunks (when
 * there are that many samples) so that small minibatches still spread over cores. */
static int chunk_count(int n)
{
    const int by_size = (n + CNN_CHUNK_MAX - 1) / CNN_CHUNK_MAX;
    const int by_cores = n < CNN_CHUNKS_MIN ? n : CNN_CHUNKS_MIN;
    return by_size > by_cores ? by_size : by_cores;
}

cnn_train_config cnn_train_config_default(void)
{
    return (cnn_train_config){.engine = CNN_ENGINE_BLAS, .ties = CNN_TIES_SINGLE, .batch = 1,
                              .threads = 1, .lr = 0.005f, .optimizer = CNN_OPTIMIZER_SGD,
                              .beta1 = 0.9f, .beta2 = 0.999f, .eps = 1e-8f};
}

static int adam(const cnn_train_config *c) { return c->optimizer != CNN_OPTIMIZER_SGD; }

const cnn_train_config *cnn_trainer_config(const cnn_trainer *t) { return &t->cfg; }

cnn_status cnn_trainer_set_lr(cnn_trainer *t, float lr)
{
    if (!t || !isfinite(lr) || !(lr > 0.0f))
        return CNN_ERR_ARG;
    t->cfg.lr = lr;
    return CNN_OK;
}

float *cnn_trainer_state(cnn_trainer *t, size_t *len)
{
    if (len)
        *len = t ? t->state_len : 0;
    return t ? t->state : NULL;
}

uint64_t *cnn_trainer_updates(cnn_trainer *t) { return t ? &t->updates : NULL; }

void cnn_trainer_set_epoch(cnn_trainer *t, uint64_t epoch)
{
    if (t)
        t->epoch = epoch;
}

/* The activations' key for a training step (never 0) or evaluation (0). */
static uint64_t step_key(const cnn_trainer *t, int training)
{
    if (!training)
        return 0;
    return cnn_mix64(t->cfg.seed ^ cnn_mix64(t->epoch)) | 1;
}

static int thread_count(void)
{
#if HAVE_OPENMP
    return omp_get_num_threads();
#else
    return 1;
#endif
}

static int thread_id(void)
{
#if HAVE_OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

/* With more threads than chunks, each of the `busy` chunk threads leads a team, the
 * threads shared out as evenly as they go (a conv lowered per chunk splits its groups
 * over its team); else teams of one. Chunk thread i's team: *team threads, the first
 * of them worker *lead (the acts it uses). */
static void team_of(int threads, int busy, int i, int *lead, int *team)
{
    const int base = busy > 0 && threads > busy ? threads / busy : 1;
    const int extra = busy > 0 && threads > busy ? threads % busy : 0;
    *lead = i * base + (i < extra ? i : extra);
    *team = base + (i < extra);
    if (*team > CNN_MAX_TEAM)
        *team = CNN_MAX_TEAM;
}

/* The activations of this chunk thread (one of `busy`), with its team set. */
static cnn_acts *team_acts(cnn_trainer *t, int busy)
{
    int lead, team;
    team_of(t->cfg.threads, busy, thread_id(), &lead, &team);
    t->acts[lead].team = team;
    return &t->acts[lead];
}

/* Teams inside the chunks' threads are nested parallel regions: allowed for the step
 * when there are any (@return the caller's setting, restored by unnest). */
static int nest(int teams)
{
#if HAVE_OPENMP
    const int levels = omp_get_max_active_levels();
    if (teams && levels < 2)
        omp_set_max_active_levels(2);
    return levels;
#else
    (void)teams;
    return 0;
#endif
}

static void unnest(int levels)
{
#if HAVE_OPENMP
    if (omp_get_max_active_levels() != levels)
        omp_set_max_active_levels(levels);
#else
    (void)levels;
#endif
}


void cnn_trainer_free(cnn_trainer *t)
{
    if (!t)
        return;
    if (t->acts)
        for (int i = 0; i < t->nacts; i++)
            cnn_acts_free(&t->acts[i]);
    free(t->acts);
    free(t->sums);
    free(t->totals_buf);
    free(t->slots);
    free(t->chunk_ok);
    free(t->state);
    free(t->loss);
    free(t->pred);
    free(t);
}

/* The sums of the batch-statistics layers: each chunk's, and the minibatch's. */
static cnn_status stats_buffers(cnn_trainer *t)
{
    size_t total = 0;
    for (int l = 0; l < t->arch.n; l++) {
        const cnn_kind *kind = cnn_kind_of(t->arch.layer[l].kind);
        const size_t len = kind->sums ? kind->sums(&t->arch.layer[l]) : 0;
        t->sums_len = len > t->sums_len ? len : t->sums_len;
        total += len;
    }
    if (!total)
        return CNN_OK;
    t->sums = calloc((size_t)t->nslots * t->sums_len, sizeof *t->sums);
    t->totals_buf = calloc(total, sizeof *t->totals_buf);
    if (!t->sums || !t->totals_buf)
        return CNN_ERR_NOMEM;
    for (int l = 0, at = 0; l < t->arch.n; l++) {
        const cnn_kind *kind = cnn_kind_of(t->arch.layer[l].kind);
        if (kind->sums) {
            t->totals[l] = t->totals_buf + at;
            at += (int)kind->sums(&t->arch.layer[l]);
        }
    }
    return CNN_OK;
}

cnn_status cnn_trainer_create(cnn_trainer **out, const cnn_arch *arch, const cnn_train_config *c)
{
    *out = NULL;
    if (!arch || arch->n < 1 || !c || c->batch < 1 || c->threads < 1 ||
        c->threads > 1024 || !isfinite(c->lr) || !(c->lr > 0.0f) ||
        !(c->momentum >= 0.0f && c->momentum < 1.0f) || (c->nesterov && c->momentum == 0.0f) ||
        !(c->weight_decay >= 0.0f) || !isfinite(c->weight_decay) ||
        (unsigned)c->optimizer > CNN_OPTIMIZER_ADAMW ||
        (adam(c) && (c->momentum != 0.0f || !(c->beta1 >= 0.0f && c->beta1 < 1.0f) ||
                     !(c->beta2 >= 0.0f && c->beta2 < 1.0f) || !(c->eps > 0.0f) ||
                     !isfinite(c->eps))) ||
        (c->engine != CNN_ENGINE_BLAS && c->engine != CNN_ENGINE_REFERENCE) ||
        (c->ties != CNN_TIES_SINGLE && c->ties != CNN_TIES_ALL))
        return CNN_ERR_ARG;
    cnn_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return CNN_ERR_NOMEM;
    t->arch = *arch;
    t->cfg = *c;
    t->n_params = arch->n_params;
    t->slot_stride = cnn_align_up((t->n_params + CNN_SLOT_TAIL) * sizeof(float)) / sizeof(float);
    t->nslots = chunk_count(c->batch); /* chunk_count grows with n */
    const size_t per_sample = (size_t)(c->batch > EVAL_BLOCK ? c->batch : EVAL_BLOCK);
    t->slots = cnn_aligned_alloc((size_t)t->nslots * t->slot_stride * sizeof(float));
    t->chunk_ok = calloc((size_t)t->nslots, 1);
    t->state_len = adam(c) ? 2 * t->n_params : c->momentum > 0.0f ? t->n_params : 0;
    if (t->state_len && !(t->state = calloc(t->state_len, sizeof(float)))) {
        cnn_trainer_free(t);
        return CNN_ERR_NOMEM;
    }
    t->stages = cnn_stage_count(arch);
    t->nacts = t->stages > 1 && t->nslots > c->threads ? t->nslots : c->threads;
    t->acts = calloc((size_t)t->nacts, sizeof *t->acts);
    t->loss = malloc(per_sample * sizeof *t->loss);
    t->pred = malloc(per_sample);
    if (!t->slots || !t->chunk_ok || !t->acts || !t->loss || !t->pred ||
        stats_buffers(t) != CNN_OK) {
        cnn_trainer_free(t);
        return CNN_ERR_NOMEM;
    }
    memset(t->slots, 0, (size_t)t->nslots * t->slot_stride * sizeof(float));
    for (int i = 0; i < t->nacts; i++)
        if (cnn_acts_alloc(&t->acts[i], arch, CNN_CHUNK_MAX) != CNN_OK) {
            cnn_trainer_free(t);
            return CNN_ERR_NOMEM;
        }
    *out = t;
    return CNN_OK;
}

/* A per-sample step may add -lr times the gradient straight into the parameters as
 * the backward goes (the post's step) when no layer needs, after its own update, the
 * weights it just changed: every layer computes its input gradient before its update,
 * except a kind that forms its parameter gradient first (a conv), so only as the first
 * layer. */
static int in_place_ok(const cnn_arch *a)
{
    for (int l = 1; l < a->n; l++)
        if (cnn_kind_of(a->layer[l].kind)->flags & CNN_KIND_GRAD_FIRST)
            return 0;
    return 1;
}

static int labels_valid(const uint8_t *labels, const uint32_t *idx, size_t n, int classes)
{
    for (size_t i = 0; i < n; i++)
        if (labels[idx ? idx[i] : i] >= classes)
            return 0;
    return 1;
}

/* The update of one step over parameters [lo, hi) from g0, the sum of the n
 * samples' gradients: plain SGD (the post), with momentum and weight decay, or Adam
 * and AdamW (cnn_train_config says how). */
typedef struct {
    cnn_train_config c; /* a copy: nothing the update writes can alias it */
    float lr;
    int n;
    float step, bc2_sqrt; /* Adam: lr / (1 - beta1^t), sqrt(1 - beta2^t) */
    int apply;            /* 0: a loss was not finite, no update */
} update_rule;

static update_rule update_of(const cnn_trainer *t, int n, int apply)
{
    update_rule u = {t->cfg, t->cfg.lr, n, 0.0f, 0.0f, apply};
    if (adam(&t->cfg)) { /* as PyTorch: the corrections in double, then as floats */
        const double k = (double)(t->updates + 1);
        u.step = (float)((double)t->cfg.lr / (1.0 - pow((double)t->cfg.beta1, k)));
        u.bc2_sqrt = (float)sqrt(1.0 - pow((double)t->cfg.beta2, k));
    }
    return u;
}

/* Adam and AdamW over [lo, hi): m = state, v = state + P. */
CNN_VECTOR
static void adam_update(float *restrict params, const float *restrict g0, float *restrict m,
                        float *restrict v, update_rule u, size_t lo, size_t hi)
{
    const cnn_train_config *c = &u.c;
    const float nf = (float)u.n, b1 = c->beta1, b2 = c->beta2, eps = c->eps;
    const int decoupled = c->optimizer == CNN_OPTIMIZER_ADAMW;
    const float decay = decoupled ? 1.0f - u.lr * c->weight_decay : 1.0f;
    const float wd = decoupled ? 0.0f : c->weight_decay;
    for (size_t p = lo; p < hi; p++) {
        const float g = g0[p] / nf + wd * params[p];
        m[p] += (1.0f - b1) * (g - m[p]); /* PyTorch's lerp */
        v[p] = b2 * v[p] + (1.0f - b2) * (g * g);
        params[p] = params[p] * decay - u.step * (m[p] / (sqrtf(v[p]) / u.bc2_sqrt + eps));
    }
}

/* Over parameters [lo, hi): slot 0 += slot 1, += slot 2, ... (chunk order), then the
 * update from slot 0, leaving every slot zero. */
CNN_VECTOR
static void apply_slots(float *restrict params, float *restrict state, size_t n_params,
                        float *restrict slots, size_t stride, int nchunks, update_rule u,
                        size_t lo, size_t hi)
{
    const cnn_train_config *c = &u.c;
    float *restrict velocity = adam(c) ? NULL : state;
    float *restrict g0 = slots;
    for (int c = 1; c < nchunks; c++) {
        float *restrict gc = slots + (size_t)c * stride;
        for (size_t p = lo; p < hi; p++) {
            g0[p] += gc[p];
            gc[p] = 0.0f;
        }
    }
    if (u.apply && adam(c)) {
        adam_update(params, g0, state, state + n_params, u, lo, hi);
    } else if (u.apply && !velocity && c->weight_decay == 0.0f) {
        const float step = u.lr / (float)u.n;
        for (size_t p = lo; p < hi; p++)
            params[p] -= step * g0[p];
    } else if (u.apply) {
        const float nf = (float)u.n, momentum = c->momentum, wd = c->weight_decay;
        const int nesterov = c->nesterov;
        for (size_t p = lo; p < hi; p++) {
            const float g = g0[p] / nf + wd * params[p];
            float d = g;
            if (velocity) {
                velocity[p] = momentum * velocity[p] + g;
                d = nesterov ? g + momentum * velocity[p] : velocity[p];
            }
            params[p] -= u.lr * d;
        }
    }
    memset(g0 + lo, 0, (hi - lo) * sizeof(float));
}

/* The images of a step: network input, or uint8 pixels converted chunk by chunk. */
typedef struct {
    const float *x;
    const uint8_t *px;
    const cnn_move *moves; /* with px: [n] each sample's move, or NULL */
} image_src;

static int run_chunk(const cnn_model *m, cnn_acts *a, float *grad, float alpha, image_src src,
                     const uint8_t *labels, const uint32_t *idx, int nb, const cnn_trainer *t,
                     float *loss, uint8_t *pred)
{
    a->train_key = step_key(t, grad != NULL);
    if (src.px)
        return cnn_chunk_grad_u8_moved(m, a, grad, alpha, src.px, labels, idx, nb, src.moves,
                                       t->cfg.engine, t->cfg.ties, loss, pred);
    return cnn_chunk_grad(m, a, grad, alpha, src.x, labels, idx, nb, t->cfg.engine, t->cfg.ties,
                          loss, pred);
}

/* The samples [lo, hi) of a step: idx's, or lo..hi-1 written into seq. */
static const uint32_t *chunk_samples(const uint32_t *idx, int lo, int hi, uint32_t *seq)
{
    if (idx)
        return idx + lo;
    for (int i = lo; i < hi; i++)
        seq[i - lo] = (uint32_t)i;
    return seq;
}

/* After stage s, the minibatch's sums of the layer it ends with: the chunks' sums added
 * in chunk order (the other processes' chunks filled in first, in a step in parts). */
static void reduce_stage(cnn_trainer *t, int s, int nchunks, int c0, int c1)
{
    int bwd;
    const int l = cnn_stage_sums_layer(&t->arch, s, &bwd);
    if (l < 0)
        return;
    if (t->sync && (c0 > 0 || c1 < nchunks))
        t->sync(t->sync_ctx, t->sums, t->sums_len, nchunks, c0, c1);
    const cnn_layer *L = &t->arch.layer[l];
    const size_t half = cnn_kind_of(L->kind)->sums(L) / 2, off = bwd ? half : 0;
    double *total = (double *)t->totals[l] + off;
    memset(total, 0, half * sizeof *total);
    for (int c = 0; c < nchunks; c++)
        for (size_t i = 0; i < half; i++)
            total[i] += t->sums[(size_t)c * t->sums_len + off + i];
}

/* Chunks [c0, c1) of a network with batch statistics, stage by stage: every chunk
 * runs a stage on its own activations, then one thread makes the minibatch's sums
 * that the next stage reads. The same chunks and threads as run_chunks. */
static void run_staged(cnn_trainer *t, cnn_model *m, image_src images, const uint8_t *labels,
                       const uint32_t *idx, int n, int c0, int c1)
{
    const int nchunks = chunk_count(n), todo = c1 - c0;
    const int threads = t->cfg.threads < todo ? t->cfg.threads : todo;
    const int levels = nest(t->cfg.threads > threads);
    const uint64_t key = step_key(t, 1);
    for (int c = c0; c < c1; c++)
        t->chunk_ok[c] = 1;
#if HAVE_OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
    {
        cnn_blas_alone();
        int lead, team;
        team_of(t->cfg.threads, threads, thread_id(), &lead, &team);
        for (int s = 0; s < t->stages; s++) {
#if HAVE_OPENMP
#pragma omp for schedule(static)
#endif
            for (int c = c0; c < c1; c++) {
                const int lo = cnn_chunk_start(c, n), hi = cnn_chunk_start(c + 1, n);
                uint32_t seq[CNN_CHUNK_MAX];
                const uint32_t *ci = chunk_samples(idx, lo, hi, seq);
                cnn_acts *a = &t->acts[c];
                a->team = team, a->train_key = key;
                const cnn_stage_args args = {
                    images.x, images.px, ci, labels,
                    images.moves ? images.moves + lo : NULL, hi - lo,
                    t->slots + (size_t)c * t->slot_stride, NULL, t->cfg.engine, t->cfg.ties,
                    t->totals, n};
                if (!cnn_chunk_stage(m, a, &args, s, t->sums + (size_t)c * t->sums_len,
                                     t->loss + lo, t->pred + lo))
                    t->chunk_ok[c] = 0;
            }
#if HAVE_OPENMP
#pragma omp single
#endif
            reduce_stage(t, s, nchunks, c0, c1);
        }
    }
    unnest(levels);
}

/* After a step's update: the state its batch statistics move (bn's running ones). */
static void update_model_state(const cnn_trainer *t, cnn_model *m, int n)
{
    for (int l = 0; l < t->arch.n; l++) {
        const cnn_layer *L = &t->arch.layer[l];
        const cnn_kind *kind = cnn_kind_of(L->kind);
        if (kind->update_state)
            kind->update_state(L, m->state + L->state_at, t->totals[l],
                               (double)n * L->H * L->W);
    }
}

/* Chunks [c0, c1) of a minibatch of n (of nchunks) into their gradient slots, with
 * their samples' losses and predictions; then, when apply, the update from all the
 * slots. One parallel region: the chunks, then (after the loop's barrier, which makes
 * every chunk's verdict visible) the update, each thread over its own contiguous
 * range of parameters. */
static void run_chunks(cnn_trainer *t, cnn_model *m, image_src images, const uint8_t *labels,
                       const uint32_t *idx, int n, int c0, int c1, int apply)
{
    if (t->stages > 1 && c1 > c0) {
        run_staged(t, m, images, labels, idx, n, c0, c1);
        if (apply)
            run_chunks(t, m, images, labels, idx, n, 0, 0, 1);
        return;
    }
    const int nchunks = chunk_count(n), todo = c1 - c0 > 0 ? c1 - c0 : nchunks;
    const int threads = t->cfg.threads < todo ? t->cfg.threads : todo;
    const size_t np = t->n_params, stride = t->slot_stride;
    const int levels = nest(t->cfg.threads > threads);
#if HAVE_OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
    {
        cnn_blas_alone();
        cnn_acts *a = team_acts(t, threads);
#if HAVE_OPENMP
#pragma omp for schedule(static)
#endif
        for (int c = c0; c < c1; c++) {
            const int lo = cnn_chunk_start(c, n), hi = cnn_chunk_start(c + 1, n);
            uint32_t seq[CNN_CHUNK_MAX];
            const uint32_t *ci = chunk_samples(idx, lo, hi, seq);
            image_src part = images;
            if (part.moves)
                part.moves += lo;
            t->chunk_ok[c] = (uint8_t)run_chunk(m, a, t->slots + (size_t)c * stride, 1.0f, part,
                                                labels, ci, hi - lo, t, t->loss + lo,
                                                t->pred + lo);
        }
        if (apply) {
            int all_ok = 1;
            for (int c = 0; c < nchunks; c++)
                all_ok &= t->chunk_ok[c];
            const int nt = thread_count(), me = thread_id();
            const size_t lo = np * (size_t)me / (size_t)nt;
            const size_t hi = np * (size_t)(me + 1) / (size_t)nt;
            apply_slots(m->params, t->state, np, t->slots, stride, nchunks,
                        update_of(t, n, all_ok), lo, hi);
        }
    }
    unnest(levels);
    if (apply) {
        int all_ok = 1;
        for (int c = 0; c < nchunks; c++)
            all_ok &= t->chunk_ok[c];
        t->updates += (uint64_t)all_ok;
        if (all_ok)
            update_model_state(t, m, n);
    }
}

static void add_step_stats(const cnn_trainer *t, const uint8_t *labels, const uint32_t *idx,
                           int n, cnn_stats *st)
{
    if (st)
        for (int i = 0; i < n; i++) {
            st->loss_sum += t->loss[i];
            st->correct += t->pred[i] == labels[idx ? idx[i] : (uint32_t)i];
            st->count++;
        }
}

/* One SGD step. One sample: the backward updates the parameters in place (alpha =
 * -lr), as the post does. More: every chunk's forward and backward into its gradient
 * slot, then params -= lr * (sum of slots in chunk order) / n, zeroing the slots on
 * the way. A non-finite loss leaves the parameters untouched. */
static cnn_status train_step(cnn_trainer *t, cnn_model *m, image_src images,
                             const uint8_t *labels, const uint32_t *idx, int n, cnn_stats *st)
{
    if (!t || !m || !(images.x || images.px) || !labels || n < 1 || n > t->cfg.batch ||
        !cnn_arch_equal(&t->arch, &m->arch) ||
        !labels_valid(labels, idx, (size_t)n, m->arch.classes))
        return CNN_ERR_ARG;
    const int nchunks = chunk_count(n);
    int finite = 1;

    if (t->stages > 1 && t->cfg.batch < 2)
        return CNN_ERR_ARG; /* batch statistics of one sample: refused, as PyTorch does */
    if (n == 1 && t->stages == 1 && in_place_ok(&t->arch) && !t->state &&
        t->cfg.weight_decay == 0.0f) {
        /* BLAS on this thread only, without the cost of a parallel region: this
         * thread's OpenMP setting is lowered for the step and then restored. */
#if HAVE_OPENMP
        const int caller = omp_get_max_threads();
        omp_set_num_threads(1);
#endif
        finite = run_chunk(m, &t->acts[0], m->params, -t->cfg.lr, images, labels, idx, 1, t,
                           t->loss, t->pred);
#if HAVE_OPENMP
        omp_set_num_threads(caller);
#endif
    } else {
        run_chunks(t, m, images, labels, idx, n, 0, nchunks, 1);
        for (int c = 0; c < nchunks; c++)
            finite &= t->chunk_ok[c];
    }

    add_step_stats(t, labels, idx, n, st);
    return finite ? CNN_OK : CNN_ERR_NUMERIC;
}

/* Blocks of EVAL_BLOCK samples, each cut into chunks of CNN_CHUNK_MAX: fixed
 * boundaries, so the result does not depend on the thread count either. */
static cnn_status evaluate(cnn_trainer *t, const cnn_model *m, image_src images,
                           const uint8_t *labels, size_t n, uint8_t *pred, cnn_stats *st)
{
    if (!t || !m || !(images.x || images.px) || !labels || !cnn_arch_equal(&t->arch, &m->arch) ||
        !labels_valid(labels, NULL, n, m->arch.classes))
        return CNN_ERR_ARG;
    for (size_t lo = 0; lo < n; lo += EVAL_BLOCK) {
        const int cnt = (int)(n - lo < EVAL_BLOCK ? n - lo : EVAL_BLOCK);
        const int nchunks = (cnt + CNN_CHUNK_MAX - 1) / CNN_CHUNK_MAX;
        const int threads = t->cfg.threads < nchunks ? t->cfg.threads : nchunks;
        const int levels = nest(t->cfg.threads > threads);
#if HAVE_OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
        {
            cnn_blas_alone();
            cnn_acts *a = team_acts(t, threads);
#if HAVE_OPENMP
#pragma omp for schedule(static)
#endif
            for (int c = 0; c < nchunks; c++) {
                const int b = c * CNN_CHUNK_MAX;
                const int nb = cnt - b < CNN_CHUNK_MAX ? cnt - b : CNN_CHUNK_MAX;
                const size_t first = lo + (size_t)b;
                const size_t at = first * ((size_t)m->arch.C * m->arch.H * m->arch.W);
                const image_src part = {images.x ? images.x + at : NULL,
                                        images.px ? images.px + at : NULL, NULL};
                run_chunk(m, a, NULL, 0.0f, part, labels + first, NULL, nb, t, t->loss + b,
                          t->pred + b);
            }
        }
        unnest(levels);
        for (int i = 0; i < cnt; i++) {
            if (pred)
                pred[lo + (size_t)i] = t->pred[i];
            if (st) {
                st->loss_sum += t->loss[i];
                st->correct += t->pred[i] == labels[lo + (size_t)i];
                st->count++;
            }
        }
    }
    return CNN_OK;
}

cnn_status cnn_train_step(cnn_trainer *t, cnn_model *m, const float *images,
                          const uint8_t *labels, const uint32_t *idx, int n, cnn_stats *st)
{
    return train_step(t, m, (image_src){images, NULL, NULL}, labels, idx, n, st);
}

cnn_status cnn_train_step_u8(cnn_trainer *t, cnn_model *m, const uint8_t *pixels,
                             const uint8_t *labels, const uint32_t *idx, int n, cnn_stats *st)
{
    return train_step(t, m, (image_src){NULL, pixels, NULL}, labels, idx, n, st);
}

static int moves_valid(const cnn_move *moves, int n)
{
    for (int i = 0; moves && i < n; i++)
        if (moves[i].dy < -8 || moves[i].dy > 8 || moves[i].dx < -8 || moves[i].dx > 8 ||
            moves[i].flip > 1 || !(fabsf(moves[i].angle) <= 180.0f) ||
            !(fabsf(moves[i].zoom) <= 0.5f))
            return 0;
    return 1;
}

cnn_status cnn_train_step_u8_moved(cnn_trainer *t, cnn_model *m, const uint8_t *pixels,
                                   const uint8_t *labels, const uint32_t *idx, int n,
                                   const cnn_move *moves, cnn_stats *st)
{
    if (!moves_valid(moves, n))
        return CNN_ERR_ARG;
    return train_step(t, m, (image_src){NULL, pixels, moves}, labels, idx, n, st);
}

cnn_status cnn_evaluate(cnn_trainer *t, const cnn_model *m, const float *images,
                        const uint8_t *labels, size_t n, uint8_t *pred, cnn_stats *st)
{
    return evaluate(t, m, (image_src){images, NULL, NULL}, labels, n, pred, st);
}

cnn_status cnn_evaluate_u8(cnn_trainer *t, const cnn_model *m, const uint8_t *pixels,
                           const uint8_t *labels, size_t n, uint8_t *pred, cnn_stats *st)
{
    return evaluate(t, m, (image_src){NULL, pixels, NULL}, labels, n, pred, st);
}

/* ---------------------------------------------------------------- steps in parts */

int cnn_chunk_count(int n) { return n < 1 ? 0 : chunk_count(n); }

void cnn_trainer_passes(const cnn_trainer *t, uint64_t *passes)
{
    const int threads = t->cfg.threads;
    memset(passes, 0, (size_t)threads * sizeof *passes);
    for (int lead = 0; lead < threads; lead++)
        for (int m = 0; lead + m < threads && m < CNN_MAX_TEAM; m++)
            passes[lead + m] += t->acts[lead].team_passes[m];
}

int cnn_chunk_start(int c, int n) { return n < 1 ? 0 : (int)((long)c * n / chunk_count(n)); }

cnn_status cnn_train_step_chunks(cnn_trainer *t, cnn_model *m, const uint8_t *pixels,
                                 const uint8_t *labels, const uint32_t *idx, int n,
                                 const cnn_move *moves, int c0, int c1)
{
    if (!t || !m || !pixels || !labels || n < 1 || n > t->cfg.batch ||
        !cnn_arch_equal(&t->arch, &m->arch) || c0 < 0 || c1 < c0 || c1 > chunk_count(n) ||
        !labels_valid(labels, idx, (size_t)n, m->arch.classes) || !moves_valid(moves, n))
        return CNN_ERR_ARG;
    if (c1 > c0)
        run_chunks(t, m, (image_src){NULL, pixels, moves}, labels, idx, n, c0, c1, 0);
    return CNN_OK;
}

void cnn_trainer_set_sync(cnn_trainer *t, cnn_sync_fn sync, void *ctx)
{
    t->sync = sync, t->sync_ctx = ctx;
}

void cnn_trainer_exchange(cnn_trainer *t, float **slots, size_t *stride, float **loss,
                          uint8_t **pred, uint8_t **chunk_ok)
{
    *slots = t->slots, *stride = t->slot_stride;
    *loss = t->loss, *pred = t->pred, *chunk_ok = t->chunk_ok;
}

cnn_status cnn_train_step_finish(cnn_trainer *t, cnn_model *m, const uint8_t *labels,
                                 const uint32_t *idx, int n, cnn_stats *st)
{
    if (!t || !m || !labels || n < 1 || n > t->cfg.batch)
        return CNN_ERR_ARG;
    const int nchunks = chunk_count(n);
    int finite = 1;
    for (int c = 0; c < nchunks; c++)
        finite &= t->chunk_ok[c];
    run_chunks(t, m, (image_src){NULL, NULL, NULL}, labels, idx, n, 0, 0, 1);
    add_step_stats(t, labels, idx, n, st);
    return finite ? CNN_OK : CNN_ERR_NUMERIC;
}
