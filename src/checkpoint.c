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

cnn_status cnn_checkpoint_save(const cnn_checkpoint *c, const char *path, char *err,
                               size_t errlen)
{
    if (!c || !c->model.params || !c->order || !path || !*path)
        return cnn_errorf(CNN_ERR_ARG, err, errlen, "checkpoint save: nothing to save or no path");
    const size_t L = cnn_model_bytes_len(&c->model);
    const size_t len = HEAD + L + 4 * (size_t)c->n + 4;
    unsigned char *b = malloc(len);
    if (!b)
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory for %zu bytes", path,
                          len);
    memcpy(b, CNN_CHECKPOINT_MAGIC, 8);
    cnn_put_u32(b + 8, CNN_CHECKPOINT_VERSION);
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
    cnn_put_u32(b + len - 4, cnn_crc32(b, len - 4));
    const cnn_status st = cnn_write_atomic(path, b, len, err, errlen);
    free(b);
    return st;
}

void cnn_checkpoint_free(cnn_checkpoint *c)
{
    cnn_model_free(&c->model);
    free(c->order);
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
    if (version != CNN_CHECKPOINT_VERSION) {
        st = cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                        "%s: checkpoint format version %u, this program reads version %u", path,
                        version, CNN_CHECKPOINT_VERSION);
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
        len != HEAD + L + 4 * k.n + 4) {
        st = cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                        "%s: inconsistent header (epoch %d, position %llu of %llu, batch %d, "
                        "%zu bytes)", path, k.epoch, (unsigned long long)k.pos,
                        (unsigned long long)k.n, k.cfg.batch, len);
        goto out;
    }
    st = cnn_model_from_bytes(&k.model, b + HEAD, (size_t)L, path, err, errlen);
    if (st != CNN_OK)
        goto out;
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
