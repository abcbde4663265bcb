/* run.c - a training run (cnn.h, "runs"): where it stands in its epochs, the sample
 * order and its shuffles, the learning rate of each step, the moves and dropout
 * epochs, and the checkpoint that records all of it. */
#include "cnn.h"

#include <stdlib.h>
#include <string.h>

struct cnn_run {
    cnn_run_config cfg;
    cnn_model *model;     /* borrowed: trained in place */
    cnn_trainer *trainer;
    size_t n;             /* training samples */
    uint32_t *order;      /* [n] this epoch's sample order */
    cnn_move *moves;      /* [batch] the step's moves */
    cnn_rng rng;          /* the generator, after this epoch's shuffle */
    int epoch;            /* from 1 */
    size_t pos;           /* samples of the epoch trained; n at its end */
    int pending;          /* samples of the step cnn_run_next prepared */
};

static int config_ok(const cnn_run_config *c)
{
    return c && c->epochs >= 1 && c->epochs <= 100000 && (unsigned)c->shuffle <= 1 &&
           c->shift >= 0 && c->shift <= 8 && (unsigned)c->flip <= 1 &&
           c->rotate >= 0.0f && c->rotate <= 180.0f && c->zoom >= 0.0f && c->zoom <= 0.5f &&
           (unsigned)c->schedule <= CNN_SCHEDULE_STEP &&
           (c->schedule != CNN_SCHEDULE_STEP || c->lr_every >= 1) &&
           (c->schedule != CNN_SCHEDULE_STEP || (c->lr_gamma > 0.0f && c->lr_gamma <= 1.0f));
}

/* Everything but the position: trainer, order 0..n-1, moves buffer. */
static cnn_status run_alloc(cnn_run **out, cnn_model *m, const cnn_run_config *c, size_t n)
{
    *out = NULL;
    if (!m || !m->params || !config_ok(c) || n == 0 || n > UINT32_MAX ||
        (size_t)c->train.batch > n)
        return CNN_ERR_ARG;
    cnn_run *r = calloc(1, sizeof *r);
    if (!r)
        return CNN_ERR_NOMEM;
    r->cfg = *c, r->model = m, r->n = n, r->epoch = 1;
    cnn_status st = cnn_trainer_create(&r->trainer, &m->arch, &c->train);
    r->order = malloc(n * sizeof *r->order);
    r->moves = malloc((size_t)(c->train.batch > 0 ? c->train.batch : 1) * sizeof *r->moves);
    if (st == CNN_OK && (!r->order || !r->moves))
        st = CNN_ERR_NOMEM;
    if (st != CNN_OK) {
        cnn_run_free(r);
        return st;
    }
    for (size_t i = 0; i < n; i++)
        r->order[i] = (uint32_t)i;
    *out = r;
    return CNN_OK;
}

cnn_status cnn_run_create(cnn_run **out, cnn_model *m, const cnn_run_config *c, size_t n,
                          const cnn_rng *rng)
{
    if (!out || !rng)
        return CNN_ERR_ARG;
    const cnn_status st = run_alloc(out, m, c, n);
    if (st == CNN_OK)
        (*out)->rng = *rng;
    return st;
}

cnn_run_config cnn_checkpoint_config(const cnn_checkpoint *k)
{
    cnn_run_config c = {.train = k->cfg, .epochs = k->epochs > k->epoch ? k->epochs : k->epoch,
                        .shuffle = k->shuffle, .shift = k->shift, .flip = k->flip,
                        .rotate = k->rotate, .zoom = k->zoom, .schedule = k->schedule,
                        .lr_every = k->lr_every, .lr_gamma = k->lr_gamma, .warmup = k->warmup};
    c.train.seed = k->seed;
    c.train.threads = 1;
    return c;
}

cnn_status cnn_run_resume(cnn_run **out, cnn_model *m, const cnn_run_config *c,
                          const cnn_checkpoint *k)
{
    if (!out || !k || !k->order || k->n == 0 || k->epoch < 1 || k->pos > k->n || !m ||
        !cnn_arch_equal(&m->arch, &k->model.arch))
        return CNN_ERR_ARG;
    cnn_status st = run_alloc(out, m, c, (size_t)k->n);
    if (st != CNN_OK)
        return st;
    cnn_run *r = *out;
    memcpy(r->order, k->order, r->n * sizeof *r->order);
    r->rng = k->rng, r->epoch = k->epoch, r->pos = (size_t)k->pos;
    size_t len;
    float *state = cnn_trainer_state(r->trainer, &len);
    /* what the optimiser kept, if it is the same one */
    if (state && k->state && k->cfg.optimizer == c->train.optimizer &&
        (k->cfg.momentum > 0.0f) == (c->train.momentum > 0.0f))
        memcpy(state, k->state, len * sizeof *state);
    *cnn_trainer_updates(r->trainer) = k->updates;
    return CNN_OK;
}

void cnn_run_free(cnn_run *r)
{
    if (!r)
        return;
    cnn_trainer_free(r->trainer);
    free(r->order);
    free(r->moves);
    free(r);
}

static uint64_t steps_per_epoch(const cnn_run *r)
{
    const size_t batch = (size_t)r->cfg.train.batch;
    return (r->n + batch - 1) / batch;
}

int cnn_run_next(cnn_run *r, const uint32_t **idx, const cnn_move **moves)
{
    if (r->pos == r->n && r->epoch < r->cfg.epochs) /* the next epoch */
        r->epoch++, r->pos = 0;
    if (r->pos == r->n || r->epoch > r->cfg.epochs)
        return 0;
    if (r->pos == 0 && r->cfg.shuffle)
        cnn_rng_shuffle(&r->rng, r->order, r->n);
    const size_t batch = (size_t)r->cfg.train.batch, left = r->n - r->pos;
    const int nb = (int)(left < batch ? left : batch);
    const uint64_t per_epoch = steps_per_epoch(r);
    if (r->cfg.schedule != CNN_SCHEDULE_CONSTANT || r->cfg.warmup) {
        const cnn_lr_schedule s = {r->cfg.schedule, r->cfg.train.lr,
                                   (uint64_t)r->cfg.epochs * per_epoch, r->cfg.lr_every,
                                   r->cfg.lr_gamma, r->cfg.warmup};
        const uint64_t t = (uint64_t)(r->epoch - 1) * per_epoch + r->pos / batch;
        cnn_trainer_set_lr(r->trainer, cnn_lr_at(&s, t));
    }
    cnn_trainer_set_epoch(r->trainer, (uint64_t)r->epoch);
    const int moved = r->cfg.shift || r->cfg.flip || r->cfg.rotate > 0.0f || r->cfg.zoom > 0.0f;
    if (moved)
        cnn_draw_moves(r->moves, r->cfg.train.seed, (uint64_t)r->epoch, r->order + r->pos, nb,
                       r->cfg.shift, r->cfg.flip, r->cfg.rotate, r->cfg.zoom);
    *idx = r->order + r->pos;
    if (moves)
        *moves = moved ? r->moves : NULL;
    r->pending = nb;
    return nb;
}

void cnn_run_advance(cnn_run *r)
{
    r->pos += (size_t)r->pending;
    r->pending = 0;
}

cnn_status cnn_run_step(cnn_run *r, const cnn_dataset *d, cnn_stats *st)
{
    if (!r || !d || d->n != r->n ||
        cnn_dataset_image_len(d) != (size_t)r->model->arch.C * r->model->arch.H * r->model->arch.W)
        return CNN_ERR_ARG;
    const uint32_t *idx;
    const cnn_move *moves;
    const int nb = cnn_run_next(r, &idx, &moves);
    if (nb == 0)
        return CNN_ERR_ARG;
    const cnn_status s = cnn_train_step_u8_moved(r->trainer, r->model, d->pixels, d->labels, idx,
                                                 nb, moves, st);
    if (s == CNN_OK)
        cnn_run_advance(r);
    else
        r->pending = 0;
    return s;
}

int cnn_run_position(const cnn_run *r, int *epoch, size_t *pos)
{
    if (epoch)
        *epoch = r->epoch;
    if (pos)
        *pos = r->pos;
    return r->epoch < r->cfg.epochs || (r->epoch == r->cfg.epochs && r->pos < r->n);
}

cnn_trainer *cnn_run_trainer(cnn_run *r) { return r ? r->trainer : NULL; }

void cnn_run_checkpoint(const cnn_run *r, cnn_checkpoint *k)
{
    cnn_trainer *t = r->trainer;
    *k = (cnn_checkpoint){.model = *r->model, .epoch = r->epoch, .pos = r->pos, .n = r->n,
                          .order = r->order, .rng = r->rng, .cfg = r->cfg.train,
                          .shuffle = r->cfg.shuffle, .seed = r->cfg.train.seed,
                          .schedule = r->cfg.schedule, .epochs = r->cfg.epochs,
                          .shift = r->cfg.shift, .flip = r->cfg.flip,
                          .rotate = r->cfg.rotate, .zoom = r->cfg.zoom,
                          .lr_every = r->cfg.lr_every,
                          .lr_gamma = r->cfg.lr_every ? r->cfg.lr_gamma : 1.0f,
                          .warmup = r->cfg.warmup, .updates = *cnn_trainer_updates(t),
                          .state = cnn_trainer_state(t, NULL)};
}
