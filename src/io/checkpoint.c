/* checkpoint.c - training checkpoints (layout in cnn.h): the model, the position in
 * the epoch, its sample order, the generator state, the run's settings and the
 * optimiser's state. */
#include "cnn.h"

#include "fileio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEAD 100
#define CKPT_MAX_BYTES (1ull << 34)

#define TAIL_V2 24 /* momentum, Nesterov, weight decay, schedule, epochs, shift */
#define TAIL_V3 (TAIL_V2 + 44) /* optimiser, betas, eps, updates, N, gamma, warmup */
#define TAIL_V4 (TAIL_V3 + 4)  /* flip */
#define TAIL_V5 (TAIL_V4 + 8)  /* rotate, zoom */

/* Version 1 holds the post's plain SGD; momentum, weight decay, the cosine schedule
 * and shifts take version 2; Adam, the step schedule and warmup version 3; flips 4;
 * turns and zooms 5. */
static int version_for(const cnn_checkpoint *c)
{
    if (c->rotate != 0.0f || c->zoom != 0.0f)
        return 5;
    if (c->flip)
        return 4;
    if (c->cfg.optimizer != CNN_OPTIMIZER_SGD || c->schedule == CNN_SCHEDULE_STEP || c->warmup)
        return 3;
    if (c->cfg.momentum != 0.0f || c->cfg.nesterov || c->cfg.weight_decay != 0.0f ||
        c->schedule != CNN_SCHEDULE_CONSTANT || c->shift != 0)
        return 2;
    return 1;
}

/* Bytes of a version's fields after the sample order, before the optimiser's state. */
static size_t tail_head(int version)
{
    static const size_t tail[] = {0, 0, TAIL_V2, TAIL_V3, TAIL_V4, TAIL_V5};
    return tail[version];
}

/* Floats of the optimiser's state (cnn_trainer_state) a checkpoint holds. */
static size_t state_len(const cnn_train_config *c, size_t P)
{
    return c->optimizer != CNN_OPTIMIZER_SGD ? 2 * P : c->momentum > 0.0f ? P : 0;
}

/* The optimiser fields of versions 2 and 3 and the optimiser's state: n bytes at t. */
static cnn_status read_tail(cnn_checkpoint *k, int version, const unsigned char *t, size_t n,
                            const char *path, char *err, size_t errlen)
{
    k->cfg.momentum = cnn_get_f32(t);
    k->cfg.nesterov = (int)cnn_get_u32(t + 4);
    k->cfg.weight_decay = cnn_get_f32(t + 8);
    const uint32_t sched = cnn_get_u32(t + 12), epochs = cnn_get_u32(t + 16);
    const uint32_t shift = cnn_get_u32(t + 20);
    uint32_t opt = CNN_OPTIMIZER_SGD, flip = 0;
    k->cfg.beta1 = 0.9f, k->cfg.beta2 = 0.999f, k->cfg.eps = 1e-8f, k->lr_gamma = 1.0f;
    if (version >= 3 && n >= TAIL_V3) {
        opt = cnn_get_u32(t + 24);
        k->cfg.beta1 = cnn_get_f32(t + 28);
        k->cfg.beta2 = cnn_get_f32(t + 32);
        k->cfg.eps = cnn_get_f32(t + 36);
        k->updates = cnn_get_u64(t + 40);
        k->lr_every = cnn_get_u64(t + 48);
        k->lr_gamma = cnn_get_f32(t + 56);
        k->warmup = cnn_get_u64(t + 60);
    }
    if (version >= 4 && n >= TAIL_V4)
        flip = cnn_get_u32(t + 68);
    float rotate = 0.0f, zoom = 0.0f;
    if (version >= 5 && n >= TAIL_V5)
        rotate = cnn_get_f32(t + 72), zoom = cnn_get_f32(t + 76);
    k->cfg.optimizer = (cnn_optimizer)(opt <= CNN_OPTIMIZER_ADAMW ? opt : 0);
    const size_t P = k->model.n_params, head = tail_head(version);
    const size_t S = state_len(&k->cfg, P);
    const int mom = k->cfg.momentum > 0.0f, adam = opt != CNN_OPTIMIZER_SGD;
    if (!(k->cfg.momentum >= 0.0f && k->cfg.momentum < 1.0f) || (unsigned)k->cfg.nesterov > 1 ||
        (k->cfg.nesterov && !mom) || !(k->cfg.weight_decay >= 0.0f) ||
        !isfinite(k->cfg.weight_decay) || sched > (version >= 3 ? 2u : 1u) || epochs < 1 ||
        epochs > 100000 || shift > 8 || flip > 1 ||
        !(rotate >= 0.0f && rotate <= 180.0f) || !(zoom >= 0.0f && zoom <= 0.5f) || (int)epochs < k->epoch || n != head + 4 * S ||
        opt > CNN_OPTIMIZER_ADAMW || (adam && mom) ||
        !(k->cfg.beta1 >= 0.0f && k->cfg.beta1 < 1.0f) ||
        !(k->cfg.beta2 >= 0.0f && k->cfg.beta2 < 1.0f) || !(k->cfg.eps > 0.0f) ||
        !isfinite(k->cfg.eps) || !(k->lr_gamma > 0.0f && k->lr_gamma <= 1.0f) ||
        (sched == CNN_SCHEDULE_STEP && k->lr_every < 1))
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: inconsistent optimiser fields (optimiser %u, momentum %g, weight "
                          "decay %g, schedule %u, %u epochs, %zu bytes)", path, opt,
                          (double)k->cfg.momentum, (double)k->cfg.weight_decay, sched, epochs,
                          n);
    k->schedule = (cnn_schedule)sched;
    k->epochs = (int)epochs;
    k->shift = (int)shift;
    k->flip = (int)flip;
    k->rotate = rotate, k->zoom = zoom;
    if (!S)
        return CNN_OK;
    k->state = malloc(S * sizeof *k->state);
    if (!k->state)
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", path);
    for (size_t i = 0; i < S; i++) {
        k->state[i] = cnn_get_f32(t + head + 4 * i);
        if (!isfinite(k->state[i]) || (adam && i >= P && k->state[i] < 0.0f))
            return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                              "%s: the optimiser's state %zu is %g", path, i,
                              (double)k->state[i]);
    }
    return CNN_OK;
}

cnn_status cnn_checkpoint_save(const cnn_checkpoint *c, const char *path, char *err,
                               size_t errlen)
{
    if (!c || !c->model.params || !c->order || !path || !*path)
        return cnn_errorf(CNN_ERR_ARG, err, errlen, "checkpoint save: nothing to save or no path");
    const size_t L = cnn_model_bytes_len(&c->model);
    const int version = version_for(c);
    const size_t S = state_len(&c->cfg, c->model.n_params);
    if (S && !c->state)
        return cnn_errorf(CNN_ERR_ARG, err, errlen,
                          "checkpoint save: an optimiser with state, and no state");
    const size_t tail = version == 1 ? 0 : tail_head(version) + 4 * S;
    const size_t len = HEAD + L + 4 * (size_t)c->n + tail + 4;
    unsigned char *b = malloc(len);
    if (!b)
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory for %zu bytes", path,
                          len);
    memcpy(b, CNN_CHECKPOINT_MAGIC, 8);
    cnn_put_u32(b + 8, (uint32_t)version);
    cnn_put_u32(b + 12, (uint32_t)c->epoch);
    cnn_put_u64(b + 16, c->pos);
    cnn_put_u64(b + 24, c->n);
    for (int i = 0; i < 4; i++)
        cnn_put_u64(b + 32 + 8 * i, c->rng.s[i]);
    cnn_put_u32(b + 64, (uint32_t)c->cfg.batch);
    cnn_put_f32(b + 68, c->cfg.lr);
    cnn_put_u32(b + 72, (uint32_t)c->cfg.ties);
    cnn_put_u32(b + 76, (uint32_t)c->cfg.engine);
    cnn_put_u32(b + 80, (uint32_t)c->shuffle);
    cnn_put_u64(b + 84, c->seed);
    cnn_put_u64(b + 92, L);
    cnn_model_to_bytes(&c->model, b + HEAD);
    for (uint64_t i = 0; i < c->n; i++)
        cnn_put_u32(b + HEAD + L + 4 * i, c->order[i]);
    if (version > 1) {
        unsigned char *t = b + HEAD + L + 4 * c->n;
        cnn_put_f32(t, c->cfg.momentum);
        cnn_put_u32(t + 4, (uint32_t)c->cfg.nesterov);
        cnn_put_f32(t + 8, c->cfg.weight_decay);
        cnn_put_u32(t + 12, (uint32_t)c->schedule);
        cnn_put_u32(t + 16, (uint32_t)c->epochs);
        cnn_put_u32(t + 20, (uint32_t)c->shift);
        if (version >= 3) {
            cnn_put_u32(t + 24, (uint32_t)c->cfg.optimizer);
            cnn_put_f32(t + 28, c->cfg.beta1);
            cnn_put_f32(t + 32, c->cfg.beta2);
            cnn_put_f32(t + 36, c->cfg.eps);
            cnn_put_u64(t + 40, c->updates);
            cnn_put_u64(t + 48, c->lr_every);
            cnn_put_f32(t + 56, c->lr_gamma);
            cnn_put_u64(t + 60, c->warmup);
        }
        if (version >= 4)
            cnn_put_u32(t + 68, (uint32_t)c->flip);
        if (version >= 5)
            cnn_put_f32(t + 72, c->rotate), cnn_put_f32(t + 76, c->zoom);
        const size_t head = tail_head(version);
        for (size_t i = 0; i < S; i++)
            cnn_put_f32(t + head + 4 * i, c->state[i]);
    }
    cnn_put_u32(b + len - 4, cnn_crc32(b, len - 4));
    const cnn_status st = cnn_write_atomic(path, b, len, err, errlen);
    free(b);
    return st;
}

void cnn_checkpoint_free(cnn_checkpoint *c)
{
    cnn_model_free(&c->model);
    free(c->order);
    free(c->state);
    memset(c, 0, sizeof *c);
}

int cnn_is_checkpoint(const char *path)
{
    FILE *f = fopen(path, "rb");
    char magic[8] = {0};
    const int is = f && fread(magic, 1, 8, f) == 8 && memcmp(magic, CNN_CHECKPOINT_MAGIC, 8) == 0;
    if (f)
        fclose(f);
    return is;
}

cnn_status cnn_checkpoint_load(cnn_checkpoint *c, const char *path, char *err, size_t errlen)
{
    memset(c, 0, sizeof *c);
    unsigned char *b;
    size_t len;
    cnn_status st = cnn_read_file(path, CKPT_MAX_BYTES, &b, &len, err, errlen);
    if (st != CNN_OK)
        return st;
    cnn_checkpoint k = {0};
    uint8_t *seen = NULL;
    if (len < 8 || memcmp(b, CNN_CHECKPOINT_MAGIC, 8) != 0) {
        st = cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: not a checkpoint (no %s magic)", path,
                        CNN_CHECKPOINT_MAGIC);
        goto out;
    }
    if (len < HEAD + 4) {
        st = cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: truncated header (%zu bytes)", path, len);
        goto out;
    }
    const uint32_t version = cnn_get_u32(b + 8);
    if (version < 1 || version > CNN_CHECKPOINT_VERSION) {
        st = cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                        "%s: checkpoint format version %u, this program reads versions 1 to %u",
                        path, version, CNN_CHECKPOINT_VERSION);
        goto out;
    }
    const uint32_t crc = cnn_crc32(b, len - 4), stored = cnn_get_u32(b + len - 4);
    if (crc != stored) {
        st = cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                        "%s: corrupt or truncated (CRC-32 %08x, the file says %08x)", path, crc,
                        stored);
        goto out;
    }
    k.epoch = (int)cnn_get_u32(b + 12);
    k.pos = cnn_get_u64(b + 16);
    k.n = cnn_get_u64(b + 24);
    for (int i = 0; i < 4; i++)
        k.rng.s[i] = cnn_get_u64(b + 32 + 8 * i);
    k.cfg.batch = (int)cnn_get_u32(b + 64);
    k.cfg.lr = cnn_get_f32(b + 68);
    k.cfg.ties = (cnn_pool_ties)cnn_get_u32(b + 72);
    k.cfg.engine = (cnn_engine)cnn_get_u32(b + 76);
    k.cfg.threads = 1;
    k.cfg.beta1 = 0.9f, k.cfg.beta2 = 0.999f, k.cfg.eps = 1e-8f, k.lr_gamma = 1.0f;
    k.shuffle = (int)cnn_get_u32(b + 80);
    k.seed = cnn_get_u64(b + 84);
    const uint64_t L = cnn_get_u64(b + 92);
    if (k.epoch < 1 || k.n < 1 || k.n > UINT32_MAX || k.pos > k.n || k.cfg.batch < 1 ||
        !isfinite(k.cfg.lr) || !(k.cfg.lr > 0) || (unsigned)k.cfg.ties > 1 ||
        (unsigned)k.cfg.engine > 1 || (unsigned)k.shuffle > 1 || L > len ||
        len < HEAD + L + 4 * k.n + 4 + tail_head((int)version) ||
        (version == 1 && len != HEAD + L + 4 * k.n + 4)) {
        st = cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                        "%s: inconsistent header (epoch %d, position %llu of %llu, batch %d, "
                        "%zu bytes)", path, k.epoch, (unsigned long long)k.pos,
                        (unsigned long long)k.n, k.cfg.batch, len);
        goto out;
    }
    st = cnn_model_from_bytes(&k.model, b + HEAD, (size_t)L, path, err, errlen);
    if (st != CNN_OK)
        goto out;
    if (version > 1) {
        st = read_tail(&k, (int)version, b + HEAD + L + 4 * k.n, len - (HEAD + L + 4 * k.n) - 4,
                       path, err, errlen);
        if (st != CNN_OK)
            goto out;
    }
    k.order = malloc(k.n * sizeof *k.order);
    seen = calloc(k.n, 1);
    if (!k.order || !seen) {
        st = cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", path);
        goto out;
    }
    for (uint64_t i = 0; i < k.n; i++) {
        const uint32_t v = cnn_get_u32(b + HEAD + L + 4 * i);
        if (v >= k.n || seen[v]) {
            st = cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                            "%s: the sample order is not a permutation (entry %llu is %u)", path,
                            (unsigned long long)i, v);
            goto out;
        }
        seen[v] = 1;
        k.order[i] = v;
    }
    *c = k;
    k = (cnn_checkpoint){0};
out:
    cnn_checkpoint_free(&k);
    free(seen);
    free(b);
    return st;
}
