/* net.c - the one place that walks a network's layers, forward and back, over the
 * samples of a chunk.
 *
 * The BLAS engine runs the layers marked whole_chunk over the whole chunk at once
 * (dense and softmax layers: SGEMMs over its rows; wide convs: one im2col matrix and
 * one SGEMM each way); every other layer, and every layer of the reference engine,
 * runs per sample. Consecutive per-sample layers form a run, walked sample by sample: for
 * the post's network, conv and pool for each sample, then the softmax layer for all.
 * Within a run, a gradient that one layer's backward hands to the layer before it is
 * used at once, so it lives in one piece per thread; so does a conv output that only
 * its pool reads (the pool's backward needs only its argmax), unless the backward
 * reads it (the `all` tie rule compares the pool's input with its output). */
#include "cnn.h"
#include "kernels.h"

#include "config.h"

#include "layer.h"
#include "mix.h"
#include "steps.h"

#include <math.h>
#include <string.h>
#include <time.h>
#if HAVE_OPENMP
#include <omp.h>
#endif

static unsigned flags_of(const cnn_layer *l) { return cnn_kind_of(l->kind)->flags; }

static int batched(const cnn_layer *l, cnn_engine e)
{
    return e == CNN_ENGINE_BLAS && l->whole_chunk;
}

/* Is layer l's output read by no backward, so one piece serves every sample? Its own
 * backward reads its scratch (a blockable kind: conv), and the pool after it only
 * its argmax, unless the `all` tie rule compares the pool's input. */
static int output_in_one_piece(const cnn_arch *n, int l, cnn_engine e, int keep_pool_input)
{
    return e == CNN_ENGINE_BLAS && flags_of(&n->layer[l]) & CNN_KIND_BLOCKABLE && l + 1 < n->n &&
           !batched(&n->layer[l], e) && flags_of(&n->layer[l + 1]) & CNN_KIND_READS_BLOCKS &&
           !keep_pool_input;
}

/* Is the gradient of layer l's output made and used within one sample's run? */
static int local_grad(const cnn_arch *n, int l, cnn_engine e)
{
    return l + 1 < n->n && !batched(&n->layer[l], e) && !batched(&n->layer[l + 1], e) &&
           !(flags_of(&n->layer[l]) & CNN_KIND_BATCH_STATS); /* its backward waits for the
                                                                 whole minibatch */
}

/* The samples' data for a walk: the input rows, and which pieces are shared. */
typedef struct {
    const cnn_arch *n;
    cnn_acts *a;
    const float *images; /* input of sample b: images + idx[b] * in_len (idx NULL: b) */
    const uint32_t *idx;
    size_t in_len;
    cnn_engine e;
    int keep_pool_input; /* the backward reads pool inputs (`all` ties) */
    const uint32_t *ids; /* sample b's index in its data set (NULL: b): dropout keys */
    double *times;       /* NULL, or seconds spent per layer: [l] forward, [n + l] backward */
    int team;            /* threads for per-sample runs: > 1 splits each run's samples (and
                            keeps every piece per sample); 1: sample by sample on this one */
    int level;           /* the OpenMP nesting level the walk started at */
    const float *state;  /* the model's state (bn's running statistics) */
    const double *const *totals; /* training in stages: per layer, the minibatch's sums of
                                    a batch-statistics layer (NULL otherwise) */
    int batch_n;         /*   the minibatch's samples */
} walk;

static int omp_level(void)
{
#if HAVE_OPENMP
    return omp_get_level();
#else
    return 0;
#endif
}

/* This thread's place in the walk's team (0: the walk's own thread). */
static int member(const walk *w)
{
#if HAVE_OPENMP
    return omp_get_level() > w->level ? omp_get_thread_num() : 0;
#else
    (void)w;
    return 0;
#endif
}

static double seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* Run layer l's pass (forward, or backward at slot n + l), timed when asked. */
static void timed(const walk *w, int slot, void (*run)(const cnn_pass *), const cnn_pass *p)
{
    w->a->team_passes[member(w)]++;
    if (!w->times) {
        run(p);
        return;
    }
    const double t0 = seconds();
    run(p);
    w->times[slot] += seconds() - t0;
}

/* The key of sample b at layer l in a training step (0 in evaluation). */
static uint64_t key_of(const walk *w, int l, int b)
{
    if (!w->a->train_key)
        return 0;
    const uint64_t id = w->ids ? w->ids[b] : (uint64_t)b;
    return cnn_mix64(w->a->train_key ^ cnn_mix64(id << 8 | (uint64_t)l)) | 1; /* never 0 */
}

static const float *input_of(const walk *w, int b)
{
    return w->images + (w->idx ? (size_t)w->idx[b] : (size_t)b) * w->in_len;
}

static float *out_of(const walk *w, int l, int b)
{
    const int shared = w->team <= 1 && output_in_one_piece(w->n, l, w->e, w->keep_pool_input);
    return w->a->out[l] + (shared ? 0 : (size_t)b * w->a->stride[l]);
}

static const float *in_of(const walk *w, int l, int b)
{
    return l == 0 ? input_of(w, b) : out_of(w, l - 1, b);
}

static float *dout_of(const walk *w, int l, int b)
{
    const int shared = w->team <= 1 && local_grad(w->n, l, w->e);
    return w->a->dout[l] + (shared ? 0 : (size_t)b * w->a->stride[l]);
}

/* Floats layer l stores per sample: fewer for a pool-block order output that drops
 * an odd last row or column. */
static size_t stored_len(const cnn_layer *l, cnn_engine e)
{
    if (e == CNN_ENGINE_BLAS && l->pool_order)
        return (size_t)l->OC * 4 * (l->OH / 2) * (l->OW / 2);
    return cnn_layer_out_len(l);
}

/* ---------------------------------------------------------------- forward */

/* The pass of layer l for sample b (nb 1), or, for a batched layer, for the chunk's
 * nb rows (b 0). The backward fields are filled by the backward. */
static cnn_pass pass_of(const walk *w, const float *params, int l, int b, int nb)
{
    const cnn_layer *L = &w->n->layer[l];
    cnn_pass p = {.l = L, .blas = w->e == CNN_ENGINE_BLAS, .nb = nb, .ties = CNN_TIES_SINGLE};
    if (batched(L, w->e)) {
        const int K = L->C * L->H * L->W;
        p.in = l == 0 ? w->a->x : w->a->out[l - 1];
        p.ldin = l == 0 ? K : (int)w->a->stride[l - 1];
        p.out = w->a->out[l];
        p.ldout = (int)w->a->stride[l];
    } else {
        p.in = in_of(w, l, b);
        p.out = out_of(w, l, b);
    }
    p.stored = stored_len(L, w->e);
    p.w = L->n_weights ? params + L->weights_at : NULL;
    p.bias = L->n_bias ? params + L->bias_at : NULL;
    if (w->a->cols[l])
        p.col = w->a->cols[l] + (size_t)b * w->a->col_strides[l];
    if (w->a->args[l])
        p.arg = w->a->args[l] + (size_t)b * cnn_kind_of(L->kind)->bytes(L);
    p.in_blocked = l > 0 && w->n->layer[l - 1].pool_order;
    p.state = L->n_state ? w->state + L->state_at : NULL;
    if (w->totals && w->a->train_key) {
        p.batch_sums = w->totals[l];
        p.batch_count = (double)w->batch_n * L->H * L->W;
    }
    p.window_ties = w->a->window_ties[l];
    p.key = key_of(w, l, b);
    p.team = w->a->team > 1 ? w->a->team : 1;
    p.passes = w->a->team_passes;
    return p;
}

/* Layers [l, end) of a per-sample run for sample b. */
static void forward_sample(const walk *w, const float *params, int l, int end, int b)
{
    for (int k = l; k < end; k++) {
        const cnn_pass p = pass_of(w, params, k, b, 1);
        timed(w, k, cnn_kind_of(w->n->layer[k].kind)->forward, &p);
    }
}

/* Layers [from, to) of the chunk's nb samples. */
static void forward(const walk *w, const float *params, int nb, int from, int to)
{
    const cnn_arch *n = w->n;
    for (int l = from; l < to;) {
        const cnn_kind *kind = cnn_kind_of(n->layer[l].kind);
        if (batched(&n->layer[l], w->e)) {
            const cnn_pass p = pass_of(w, params, l, 0, nb);
            timed(w, l, kind->forward, &p);
            l++;
            continue;
        }
        int end = l;
        while (end < to && !batched(&n->layer[end], w->e))
            end++;
        const int team = w->team < nb ? w->team : nb;
        if (team <= 1) /* no parallel construct at all: it costs a microsecond */
            for (int b = 0; b < nb; b++)
                forward_sample(w, params, l, end, b);
        else {
#if HAVE_OPENMP
#pragma omp parallel for num_threads(team) schedule(static)
#endif
            for (int b = 0; b < nb; b++) {
                cnn_blas_alone();
                forward_sample(w, params, l, end, b);
            }
        }
        l = end;
    }
}

/* ---------------------------------------------------------------- backward */

/* Layer l's backward for sample b (or a batched layer's for nb rows): dout to din
 * (NULL: not wanted), adding alpha times its parameters' gradient to grad. */
static void backward_pass(const walk *w, const float *params, float *grad, float alpha,
                          cnn_pool_ties ties, int l, int b, int nb, float *din)
{
    const cnn_layer *L = &w->n->layer[l];
    cnn_pass p = pass_of(w, params, l, b, nb);
    p.alpha = alpha;
    p.gw = L->n_weights ? grad + L->weights_at : NULL;
    p.gbias = L->n_bias ? grad + L->bias_at : NULL;
    p.dout = batched(L, w->e) ? w->a->dout[l] : dout_of(w, l, b);
    p.din = din;
    p.ties = ties;
    timed(w, w->n->n + l, cnn_kind_of(L->kind)->backward, &p);
}

/* The input gradient of layer l for sample b: into the gradient of layer l-1's
 * output, or dx for the first layer; NULL when nothing below needs it. */
static float *din_of(const walk *w, int l, int b, int first_param, float *dx)
{
    if (l == 0)
        return dx ? dx + (size_t)b * w->in_len : NULL;
    return l > first_param ? dout_of(w, l - 1, b) : NULL;
}

/* A per-sample run's backward, layers l down to start, over the walk's team: layer by
 * layer, a layer's samples split over the team, except a layer with parameters, whose
 * gradient the samples add to in order on this thread (the same sums as sample by
 * sample). */
static void backward_split(const walk *w, const float *params, float *grad, float alpha,
                           cnn_pool_ties ties, int nb, float *dx, int first_param, int l,
                           int start)
{
    for (int k = l; k >= start; k--) {
        const int team = w->n->layer[k].n_weights ? 1 : w->team < nb ? w->team : nb;
        if (team <= 1) {
            for (int b = 0; b < nb; b++)
                backward_pass(w, params, grad, alpha, ties, k, b, 1,
                              din_of(w, k, b, first_param, dx));
            continue;
        }
#if HAVE_OPENMP
#pragma omp parallel for num_threads(team) schedule(static)
#endif
        for (int b = 0; b < nb; b++) {
            cnn_blas_alone();
            backward_pass(w, params, grad, alpha, ties, k, b, 1, din_of(w, k, b, first_param, dx));
        }
    }
}

/* Layers hi down to lo of the chunk's nb samples. */
static void backward(const walk *w, const float *params, float *grad, float alpha,
                     cnn_pool_ties ties, int nb, float *dx, int hi, int lo)
{
    const cnn_arch *n = w->n;
    /* Input gradients are made above the first layer with parameters, and, when dx is
     * wanted, all the way down. */
    int first_param = dx ? -1 : n->n;
    for (int l = n->n - 1; l >= 0 && !dx; l--)
        if (n->layer[l].n_weights)
            first_param = l;
    for (int l = hi; l >= lo;) {
        if (batched(&n->layer[l], w->e)) {
            float *din = NULL;
            if (l == 0 && dx)
                din = dx; /* the rows of x are the gathered inputs: in_len apart */
            else if (l > 0 && l > first_param)
                din = w->a->dout[l - 1];
            backward_pass(w, params, grad, alpha, ties, l, 0, nb, din);
            l--;
            continue;
        }
        int start = l;
        while (start > lo && !batched(&n->layer[start - 1], w->e))
            start--;
        if (w->team > 1 && nb > 1)
            backward_split(w, params, grad, alpha, ties, nb, dx, first_param, l, start);
        else
            for (int b = 0; b < nb; b++)
                for (int k = l; k >= start; k--)
                    backward_pass(w, params, grad, alpha, ties, k, b, 1,
                                  din_of(w, k, b, first_param, dx));
        l = start - 1;
    }
}

/* ---------------------------------------------------------------- a chunk */

/* A batched first layer takes its inputs as one matrix: gather them into a->x. */
static void gather_rows(walk *w, int nb)
{
    if (!batched(&w->n->layer[0], w->e) || w->images == w->a->x)
        return;
    for (int b = 0; b < nb; b++)
        memcpy(w->a->x + (size_t)b * w->in_len, input_of(w, b), w->in_len * sizeof(float));
    w->images = w->a->x, w->idx = NULL;
}

/* The walk of a chunk of model m. */
static walk walk_of(const cnn_model *m, cnn_acts *a, const float *images, const uint32_t *img_idx,
                    const uint32_t *lab_idx, cnn_engine e, int keep_pool_input, double *times)
{
    walk w = {&m->arch, a, images, img_idx, (size_t)m->arch.C * m->arch.H * m->arch.W, e,
              keep_pool_input || e != CNN_ENGINE_BLAS, lab_idx, times,
              times || a->team < 1 ? 1 : a->team, omp_level(), m->state, NULL, 0};
    return w;
}

/* Each sample's loss and prediction from the output layer; its gradient into dout.
 * training: the loss the gradient descends (with the output layer's label smoothing);
 * else plain cross-entropy. @return 1 if every loss is finite. */
static int losses(const walk *w, const uint8_t *labels, int nb, int training, float *loss,
                  uint8_t *pred)
{
    const int N = w->n->classes, last = w->n->n - 1;
    const float eps = training ? (float)w->n->layer[last].smoothing / 100.0f : 0.0f;
    int finite = 1;
    for (int b = 0; b < nb; b++) {
        const int label = labels ? labels[w->ids ? w->ids[b] : (uint32_t)b] : -1;
        float *probs = w->a->probs + (size_t)b * N;
        loss[b] = cnn_softmax_xent(probs, w->a->dout[last] + (size_t)b * N,
                                   w->a->out[last] + (size_t)b * N, label, N, eps);
        if (pred)
            pred[b] = (uint8_t)cnn_argmax(probs, N);
        finite &= isfinite(loss[b]) != 0;
    }
    return finite;
}

static int chunk_grad(const cnn_model *m, cnn_acts *a, float *grad, float alpha, float *dx,
                      const float *images, const uint32_t *img_idx, const uint8_t *labels,
                      const uint32_t *lab_idx, int nb, cnn_engine e, cnn_pool_ties ties,
                      float *loss, uint8_t *pred, double *times)
{
    walk w = walk_of(m, a, images, img_idx, lab_idx, e, (grad || dx) && ties == CNN_TIES_ALL,
                     times);
    gather_rows(&w, nb);
    forward(&w, m->params, nb, 0, m->arch.n);
    const int finite = losses(&w, labels, nb, grad || dx, loss, pred);
    if ((grad || dx) && finite)
        backward(&w, m->params, grad, alpha, ties, nb, dx, m->arch.n - 1, 0);
    return finite;
}

/* ---------------------------------------------------------------- stages */

/* The batch-statistics layers of n, in order, into at[]; @return how many. */
static int stats_layers(const cnn_arch *n, int *at)
{
    int k = 0;
    for (int l = 0; l < n->n; l++)
        if (flags_of(&n->layer[l]) & CNN_KIND_BATCH_STATS)
            at[k++] = l;
    return k;
}

int cnn_stage_count(const cnn_arch *n)
{
    int at[CNN_MAX_LAYERS] = {0};
    return 2 * stats_layers(n, at) + 1;
}

int cnn_stage_sums_layer(const cnn_arch *n, int stage, int *backward_sums)
{
    int at[CNN_MAX_LAYERS] = {0};
    const int k = stats_layers(n, at);
    *backward_sums = stage >= k;
    if (stage < k)
        return at[stage];
    return stage < 2 * k ? at[2 * k - 1 - stage] : -1;
}

/* Each sample's share of layer l's sums (forward or backward) added into sums. */
static void add_sums(const walk *w, const float *params, int l, int backward_sums, int nb,
                     double *sums)
{
    const cnn_kind *kind = cnn_kind_of(w->n->layer[l].kind);
    for (int b = 0; b < nb; b++) {
        cnn_pass p = pass_of(w, params, l, b, 1);
        p.dout = dout_of(w, l, b);
        (backward_sums ? kind->backward_sums : kind->forward_sums)(&p, sums);
    }
}

/* The nb images of a chunk as network input in a->x: converted from pixels by the
 * model's normalisation (moved by moves when given), or gathered from images. */
static void chunk_input(const cnn_model *m, cnn_acts *a, const float *images,
                        const uint8_t *pixels, const uint32_t *idx, int nb,
                        const cnn_move *moves);

int cnn_chunk_stage(const cnn_model *m, cnn_acts *a, const cnn_stage_args *s, int stage,
                    double *sums, float *loss, uint8_t *pred)
{
    const cnn_arch *n = &m->arch;
    int at[CNN_MAX_LAYERS] = {0};
    const int k = stats_layers(n, at);
    if (stage == 0)
        chunk_input(m, a, s->images, s->pixels, s->idx, s->nb, s->moves);
    walk w = walk_of(m, a, a->x, NULL, s->idx, s->engine, s->ties == CNN_TIES_ALL, NULL);
    w.totals = s->totals, w.batch_n = s->batch_n;
    const float *params = m->params;
    int finite = 1, bwd;
    const int sums_layer = cnn_stage_sums_layer(n, stage, &bwd);
    if (stage < k) {
        forward(&w, params, s->nb, stage ? at[stage - 1] : 0, at[stage]);
    } else if (stage == k) {
        forward(&w, params, s->nb, k ? at[k - 1] : 0, n->n);
        finite = losses(&w, s->labels, s->nb, 1, loss, pred);
        backward(&w, params, s->grad, 1.0f, s->ties, s->nb, s->dx, n->n - 1,
                 k ? at[k - 1] + 1 : 0);
    } else {
        const int j = stage - k - 1; /* the j-th bn from the top, at[k - 1 - j] */
        backward(&w, params, s->grad, 1.0f, s->ties, s->nb, s->dx, at[k - 1 - j],
                 k - 2 - j >= 0 ? at[k - 2 - j] + 1 : 0);
    }
    if (sums_layer >= 0) {
        const size_t half = cnn_kind_of(n->layer[sums_layer].kind)->sums(&n->layer[sums_layer]) / 2;
        memset(sums + (bwd ? half : 0), 0, half * sizeof *sums);
        add_sums(&w, params, sums_layer, bwd, s->nb, sums);
    }
    return finite;
}

int cnn_chunk_grad(const cnn_model *m, cnn_acts *a, float *grad, float alpha,
                   const float *images, const uint8_t *labels, const uint32_t *idx, int nb,
                   cnn_engine e, cnn_pool_ties ties, float *loss, uint8_t *pred)
{
    return chunk_grad(m, a, grad, alpha, NULL, images, idx, labels, idx, nb, e, ties, loss,
                      pred, NULL);
}

int cnn_chunk_grad_timed(const cnn_model *m, cnn_acts *a, float *grad, const float *images,
                         const uint8_t *labels, int nb, cnn_engine e, cnn_pool_ties ties,
                         float *loss, double *times)
{
    return chunk_grad(m, a, grad, 1.0f, NULL, images, NULL, labels, NULL, nb, e, ties, loss,
                      NULL, times);
}

static void chunk_input(const cnn_model *m, cnn_acts *a, const float *images,
                        const uint8_t *pixels, const uint32_t *idx, int nb,
                        const cnn_move *moves)
{
    const cnn_arch *n = &m->arch;
    const size_t plane = (size_t)n->H * n->W, len = (size_t)n->C * plane;
    for (int b = 0; b < nb; b++) {
        const size_t at = (idx ? idx[b] : (size_t)b) * len;
        const cnn_move mv = moves ? moves[b] : (cnn_move){0};
        if (!pixels)
            memcpy(a->x + (size_t)b * len, images + at, len * sizeof(float));
        else if (mv.dy || mv.dx || mv.flip || mv.angle != 0.0f || mv.zoom != 0.0f)
            cnn_move_input(a->x + (size_t)b * len, pixels + at, &m->norm, n->C, n->H, n->W, mv);
        else
            cnn_norm_apply(&m->norm, a->x + (size_t)b * len, pixels + at, n->C, plane);
    }
}

int cnn_chunk_grad_u8_moved(const cnn_model *m, cnn_acts *a, float *grad, float alpha,
                            const uint8_t *pixels, const uint8_t *labels, const uint32_t *idx,
                            int nb, const cnn_move *moves, cnn_engine e, cnn_pool_ties ties,
                            float *loss, uint8_t *pred)
{
    chunk_input(m, a, NULL, pixels, idx, nb, moves);
    return chunk_grad(m, a, grad, alpha, NULL, a->x, NULL, labels, idx, nb, e, ties, loss, pred,
                      NULL);
}

int cnn_chunk_grad_u8(const cnn_model *m, cnn_acts *a, float *grad, float alpha,
                      const uint8_t *pixels, const uint8_t *labels, const uint32_t *idx, int nb,
                      cnn_engine e, cnn_pool_ties ties, float *loss, uint8_t *pred)
{
    return cnn_chunk_grad_u8_moved(m, a, grad, alpha, pixels, labels, idx, nb, NULL, e, ties,
                                   loss, pred);
}

float cnn_forward(const cnn_model *m, cnn_acts *a, const float *x, int label, cnn_engine e)
{
    float loss;
    const int N = m->arch.classes, last = m->arch.n - 1;
    walk w = walk_of(m, a, x, NULL, NULL, e, 1, NULL);
    w.team = 1;
    gather_rows(&w, 1);
    forward(&w, m->params, 1, 0, m->arch.n);
    loss = cnn_softmax_xent(a->probs, a->dout[last], a->out[last], label, N,
                            (float)m->arch.layer[last].smoothing / 100.0f);
    return loss;
}

void cnn_backward(const cnn_model *m, cnn_acts *a, float *grad, float *dx, const float *x,
                  cnn_engine e, cnn_pool_ties ties)
{
    walk w = walk_of(m, a, x, NULL, NULL, e, 1, NULL);
    w.team = 1;
    gather_rows(&w, 1);
    backward(&w, m->params, grad, 1.0f, ties, 1, dx, m->arch.n - 1, 0);
}
