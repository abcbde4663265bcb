/* checkpoint.c - training checkpoints (layout in cnn.h): the model, the position in
 * the epoch, its sample order and the generator state. */
#include "cnn.h"

#include "fileio.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEAD 100
#define CKPT_MAX_BYTES (1ull << 34)

#define TAIL_V2 24 /* momentum, Nesterov, weight decay, schedule, epochs, shift */

/* Version 1 holds the post's plain SGD; anything more takes version 2. */
static int writes_v2(const cnn_checkpoint *c)
{
    return c->cfg.momentum != 0.0f || c->cfg.nesterov || c->cfg.weight_decay != 0.0f ||
           c->schedule != CNN_SCHEDULE_CONSTANT || c->shift != 0;
}

float cnn_schedule_lr(cnn_schedule s, float lr, uint64_t t, uint64_t T)
{
    if (s != CNN_SCHEDULE_COSINE || T == 0)
        return lr;
    const double f = 0.5 * (1.0 + cos(3.14159265358979323846 * (double)t / (double)T));
    const float v = (float)(lr * f);
    return v > 0.0f ? v : lr * 1e-6f; /* the last step: a learning rate must stay > 0 */
}

/* Version 2's optimiser fields and velocities: n bytes at t. */
static cnn_status read_tail(cnn_checkpoint *k, const unsigned char *t, size_t n, const char *path,
                            char *err, size_t errlen)
{
    k->cfg.momentum = cnn_get_f32(t);
    k->cfg.nesterov = (int)cnn_get_u32(t + 4);
    k->cfg.weight_decay = cnn_get_f32(t + 8);
    const uint32_t sched = cnn_get_u32(t + 12), epochs = cnn_get_u32(t + 16);
    const uint32_t shift = cnn_get_u32(t + 20);
    const size_t P = k->model.n_params;
    const int mom = k->cfg.momentum > 0.0f;
    if (!(k->cfg.momentum >= 0.0f && k->cfg.momentum < 1.0f) || (unsigned)k->cfg.nesterov > 1 ||
        (k->cfg.nesterov && !mom) || !(k->cfg.weight_decay >= 0.0f) ||
        !isfinite(k->cfg.weight_decay) || sched > 1 || epochs < 1 || epochs > 100000 || shift > 8 ||
        (int)epochs < k->epoch || n != TAIL_V2 + (mom ? 4 * P : 0))
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: inconsistent optimiser fields (momentum %g, weight decay %g, "
                          "schedule %u, %u epochs, %zu bytes)", path, (double)k->cfg.momentum,
                          (double)k->cfg.weight_decay, sched, epochs, n);
    k->schedule = (cnn_schedule)sched;
    k->epochs = (int)epochs;
    k->shift = (int)shift;
    if (!mom)
        return CNN_OK;
    k->velocity = malloc(P * sizeof *k->velocity);
    if (!k->velocity)
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", path);
    for (size_t i = 0; i < P; i++) {
        k->velocity[i] = cnn_get_f32(t + TAIL_V2 + 4 * i);
        if (!isfinite(k->velocity[i]))
            return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: velocity %zu is not finite",
                              path, i);
    }
    return CNN_OK;
}

cnn_status cnn_checkpoint_save(const cnn_checkpoint *c, const char *path, char *err,
                               size_t errlen)
{
    if (!c || !c->model.params || !c->order || !path || !*path)
        return cnn_errorf(CNN_ERR_ARG, err, errlen, "checkpoint save: nothing to save or no path");
    const size_t L = cnn_model_bytes_len(&c->model);
    const int v2 = writes_v2(c);
    if (v2 && c->cfg.momentum > 0.0f && !c->velocity)
        return cnn_errorf(CNN_ERR_ARG, err, errlen, "checkpoint save: momentum without velocities");
    const size_t tail = v2 ? TAIL_V2 + (c->cfg.momentum > 0.0f ? 4 * c->model.n_params : 0) : 0;
    const size_t len = HEAD + L + 4 * (size_t)c->n + tail + 4;
    unsigned char *b = malloc(len);
    if (!b)
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory for %zu bytes", path,
                          len);
    memcpy(b, CNN_CHECKPOINT_MAGIC, 8);
    cnn_put_u32(b + 8, v2 ? 2 : 1);
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
    if (v2) {
        unsigned char *t = b + HEAD + L + 4 * c->n;
        cnn_put_f32(t, c->cfg.momentum);
        cnn_put_u32(t + 4, (uint32_t)c->cfg.nesterov);
        cnn_put_f32(t + 8, c->cfg.weight_decay);
        cnn_put_u32(t + 12, (uint32_t)c->schedule);
        cnn_put_u32(t + 16, (uint32_t)c->epochs);
        cnn_put_u32(t + 20, (uint32_t)c->shift);
        if (c->cfg.momentum > 0.0f)
            for (size_t i = 0; i < c->model.n_params; i++)
                cnn_put_f32(t + TAIL_V2 + 4 * i, c->velocity[i]);
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
    free(c->velocity);
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
    if (version != 1 && version != CNN_CHECKPOINT_VERSION) {
        st = cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                        "%s: checkpoint format version %u, this program reads versions 1 and %u",
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
    k.shuffle = (int)cnn_get_u32(b + 80);
    k.seed = cnn_get_u64(b + 84);
    const uint64_t L = cnn_get_u64(b + 92);
    if (k.epoch < 1 || k.n < 1 || k.n > UINT32_MAX || k.pos > k.n || k.cfg.batch < 1 ||
        !isfinite(k.cfg.lr) || !(k.cfg.lr > 0) || (unsigned)k.cfg.ties > 1 ||
        (unsigned)k.cfg.engine > 1 || (unsigned)k.shuffle > 1 || L > len ||
        len < HEAD + L + 4 * k.n + 4 + (version == 2 ? TAIL_V2 : 0) ||
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
    if (version == 2) {
        st = read_tail(&k, b + HEAD + L + 4 * k.n, len - (HEAD + L + 4 * k.n) - 4, path, err,
                       errlen);
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
