/* train.c - minibatch SGD across OpenMP threads, and evaluation.
 *
 * A minibatch of n samples is cut into nchunks = min(n, CNN_MAX_CHUNKS) chunks
 * whose boundaries depend only on n. Threads take whole chunks; a chunk sums its
 * samples' gradients in sample order into its own gradient slot; the update then
 * sums the slots in chunk order. No sum depends on which thread did what, so the
 * weights are bit-identical for any thread count. Every buffer is allocated in
 * cnn_trainer_create: a step allocates nothing. */
#include "cnn.h"

#include "arena.h"
#include "config.h"

#include <math.h>
#include <string.h>
#if HAVE_OPENMP
#include <omp.h>
#endif

#define EVAL_BLOCK 1024

struct cnn_trainer {
    cnn_shape shape;
    cnn_train_config cfg;
    size_t n_params;
    size_t slot_stride; /* floats between gradient slots (64-byte multiple) */
    int nslots;
    float *slots;       /* [nslots][slot_stride] per-chunk gradient sums */
    cnn_acts *acts;     /* [threads] */
    float *loss;        /* [max(batch, EVAL_BLOCK)] per-sample loss of the last step */
    uint8_t *hit;       /* [max(batch, EVAL_BLOCK)] per-sample correctness */
};

cnn_train_config cnn_train_config_default(void)
{
    return (cnn_train_config){.engine = CNN_ENGINE_BLAS, .ties = CNN_TIES_SINGLE, .batch = 1,
                              .threads = 1, .lr = 0.005f};
}

const cnn_train_config *cnn_trainer_config(const cnn_trainer *t) { return &t->cfg; }

/* Inside our parallel regions BLAS calls must run on the calling thread only: the
 * OpenMP OpenBLAS checks omp_in_parallel(), which is false in a one-thread team, and
 * then asks omp_get_max_threads(). Setting it here affects this task alone. */
static void blas_on_this_thread(void)
{
#if HAVE_OPENMP
    omp_set_num_threads(1);
#endif
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

void cnn_trainer_free(cnn_trainer *t)
{
    if (!t)
        return;
    if (t->acts)
        for (int i = 0; i < t->cfg.threads; i++)
            cnn_acts_free(&t->acts[i]);
    free(t->acts);
    free(t->slots);
    free(t->loss);
    free(t->hit);
    free(t);
}

cnn_status cnn_trainer_create(cnn_trainer **out, const cnn_shape *s, const cnn_train_config *c)
{
    *out = NULL;
    if (cnn_shape_check(s) != CNN_OK || !c || c->batch < 1 || c->threads < 1 ||
        c->threads > 1024 || !isfinite(c->lr) || !(c->lr > 0.0f) ||
        (c->engine != CNN_ENGINE_BLAS && c->engine != CNN_ENGINE_REFERENCE) ||
        (c->ties != CNN_TIES_SINGLE && c->ties != CNN_TIES_ALL))
        return CNN_ERR_ARG;
    cnn_trainer *t = calloc(1, sizeof *t);
    if (!t)
        return CNN_ERR_NOMEM;
    t->shape = *s;
    t->cfg = *c;
    t->n_params = cnn_shape_param_len(s);
    t->slot_stride = cnn_align_up(t->n_params * sizeof(float)) / sizeof(float);
    t->nslots = c->batch < CNN_MAX_CHUNKS ? c->batch : CNN_MAX_CHUNKS;
    const size_t per_sample = (size_t)(c->batch > EVAL_BLOCK ? c->batch : EVAL_BLOCK);
    t->slots = cnn_aligned_alloc((size_t)t->nslots * t->slot_stride * sizeof(float));
    t->acts = calloc((size_t)c->threads, sizeof *t->acts);
    t->loss = malloc(per_sample * sizeof *t->loss);
    t->hit = malloc(per_sample);
    if (!t->slots || !t->acts || !t->loss || !t->hit) {
        cnn_trainer_free(t);
        return CNN_ERR_NOMEM;
    }
    for (int i = 0; i < c->threads; i++)
        if (cnn_acts_alloc(&t->acts[i], s) != CNN_OK) {
            cnn_trainer_free(t);
            return CNN_ERR_NOMEM;
        }
    *out = t;
    return CNN_OK;
}

static int same_shape(const cnn_shape *a, const cnn_shape *b)
{
    return a->C == b->C && a->H == b->H && a->W == b->W && a->F == b->F &&
           a->classes == b->classes;
}

static int labels_valid(const uint8_t *labels, const uint32_t *idx, size_t n, int classes)
{
    for (size_t i = 0; i < n; i++)
        if (labels[idx ? idx[i] : i] >= classes)
            return 0;
    return 1;
}

/* One SGD step: forward and backward of every sample into its chunk's gradient
 * slot, then params -= lr * (sum of slots in chunk order) / n. */
cnn_status cnn_train_step(cnn_trainer *t, cnn_model *m, const float *images,
                          const uint8_t *labels, const uint32_t *idx, int n, cnn_stats *st)
{
    if (!t || !m || !images || !labels || n < 1 || n > t->cfg.batch ||
        !same_shape(&t->shape, &m->shape) || !labels_valid(labels, idx, (size_t)n, m->shape.classes))
        return CNN_ERR_ARG;
    const size_t in_len = cnn_shape_input_len(&m->shape);
    const int nchunks = n < CNN_MAX_CHUNKS ? n : CNN_MAX_CHUNKS;
    const int threads = t->cfg.threads < nchunks ? t->cfg.threads : nchunks;
    const cnn_engine engine = t->cfg.engine;
    const cnn_pool_ties ties = t->cfg.ties;
    const float lr = t->cfg.lr;
    const long np = (long)t->n_params;
    int finite = 1;

#if HAVE_OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1)
#endif
    {
        blas_on_this_thread();
        cnn_acts *a = &t->acts[thread_id()];
#if HAVE_OPENMP
#pragma omp for schedule(static)
#endif
        for (int c = 0; c < nchunks; c++) {
            float *grad = t->slots + (size_t)c * t->slot_stride;
            memset(grad, 0, t->n_params * sizeof(float));
            const int lo = (int)((long)c * n / nchunks), hi = (int)((long)(c + 1) * n / nchunks);
            for (int i = lo; i < hi; i++) {
                const size_t s = idx ? idx[i] : (size_t)i;
                const float *x = images + s * in_len;
                t->loss[i] = cnn_forward(m, a, x, labels[s], engine);
                t->hit[i] = cnn_argmax(a->probs, m->shape.classes) == labels[s];
                cnn_backward(m, a, grad, NULL, x, engine, ties);
            }
        }
#if HAVE_OPENMP
#pragma omp single
#endif
        for (int i = 0; i < n; i++)
            if (!isfinite(t->loss[i]))
                finite = 0;
        if (finite) {
            /* Each thread updates its own contiguous range of parameters: slot 0 +=
             * slot 1, += slot 2, ... (chunk order), then params -= lr/n * slot 0. */
            const int nt = thread_count(), me = thread_id();
            const size_t lo = (size_t)np * me / nt, hi = (size_t)np * (me + 1) / nt;
            float *g0 = t->slots;
            for (int c = 1; c < nchunks; c++) {
                const float *gc = t->slots + (size_t)c * t->slot_stride;
                for (size_t p = lo; p < hi; p++)
                    g0[p] += gc[p];
            }
            const float step = lr / (float)n; /* n = 1: exactly the post's lr * grad */
            float *params = m->params;
            for (size_t p = lo; p < hi; p++)
                params[p] -= step * g0[p];
        }
    }

    if (st)
        for (int i = 0; i < n; i++) {
            st->loss_sum += t->loss[i];
            st->correct += t->hit[i];
            st->count++;
        }
    return finite ? CNN_OK : CNN_ERR_NUMERIC;
}

cnn_status cnn_evaluate(cnn_trainer *t, const cnn_model *m, const float *images,
                        const uint8_t *labels, size_t n, uint8_t *pred, cnn_stats *st)
{
    if (!t || !m || !images || !labels || !same_shape(&t->shape, &m->shape) ||
        !labels_valid(labels, NULL, n, m->shape.classes))
        return CNN_ERR_ARG;
    const size_t in_len = cnn_shape_input_len(&m->shape);
    const int threads = t->cfg.threads;
    for (size_t lo = 0; lo < n; lo += EVAL_BLOCK) {
        const long cnt = (long)(n - lo < EVAL_BLOCK ? n - lo : EVAL_BLOCK);
#if HAVE_OPENMP
#pragma omp parallel num_threads(threads) if (threads > 1 && cnt > 1)
#endif
        {
            blas_on_this_thread();
            cnn_acts *a = &t->acts[thread_id()];
#if HAVE_OPENMP
#pragma omp for schedule(static)
#endif
            for (long i = 0; i < cnt; i++) {
                const size_t s = lo + (size_t)i;
                t->loss[i] = cnn_forward(m, a, images + s * in_len, labels[s], t->cfg.engine);
                const int p = cnn_argmax(a->probs, m->shape.classes);
                t->hit[i] = p == labels[s];
                if (pred)
                    pred[s] = (uint8_t)p;
            }
        }
        if (st)
            for (long i = 0; i < cnt; i++) {
                st->loss_sum += t->loss[i];
                st->correct += t->hit[i];
                st->count++;
            }
    }
    return CNN_OK;
}
