/* model_io.c - the versioned binary model file (layout in cnn.h): written
 * atomically, read with every field checked. */
#include "cnn.h"

#include "fileio.h"
#include "steps.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_LEN 40    /* version 1: the post's network */
#define HEADER_LEN_V2 36 /* version 2, without the description */
#define MODEL_MAX_BYTES (1ull << 31)

/* The post's network is written as version 1, as it always was; any other as
 * version 2, which carries its description. */
static int writes_v1(const cnn_model *m) { return cnn_arch_is_post(&m->arch); }

size_t cnn_model_bytes_len(const cnn_model *m)
{
    char desc[CNN_ARCH_LEN];
    if (writes_v1(m))
        return HEADER_LEN + 4 * m->n_params + 4;
    return HEADER_LEN_V2 + strlen(cnn_arch_describe(&m->arch, desc, sizeof desc)) +
           4 * m->n_params + 4;
}

void cnn_model_to_bytes(const cnn_model *m, unsigned char *buf)
{
    const size_t len = cnn_model_bytes_len(m);
    memcpy(buf, CNN_MODEL_MAGIC, 8);
    size_t at;
    if (writes_v1(m)) {
        cnn_put_u32(buf + 8, 1);
        const cnn_arch *a = &m->arch;
        const int dims[5] = {a->C, a->H, a->W, a->layer[0].units, a->classes};
        for (int i = 0; i < 5; i++)
            cnn_put_u32(buf + 12 + 4 * i, (uint32_t)dims[i]);
        at = 32;
    } else {
        char desc[CNN_ARCH_LEN];
        const size_t L = strlen(cnn_arch_describe(&m->arch, desc, sizeof desc));
        cnn_put_u32(buf + 8, CNN_MODEL_VERSION);
        cnn_put_u32(buf + 12, (uint32_t)m->arch.C);
        cnn_put_u32(buf + 16, (uint32_t)m->arch.H);
        cnn_put_u32(buf + 20, (uint32_t)m->arch.W);
        cnn_put_u32(buf + 24, (uint32_t)L);
        memcpy(buf + 28, desc, L);
        at = 28 + L;
    }
    cnn_put_u64(buf + at, m->n_params);
    for (size_t i = 0; i < m->n_params; i++)
        cnn_put_f32(buf + at + 8 + 4 * i, m->params[i]);
    cnn_put_u32(buf + len - 4, cnn_crc32(buf, len - 4));
}

/* The architecture of a version 1 file: the post's network of its five dimensions. */
static cnn_status arch_v1(cnn_arch *a, const unsigned char *buf, size_t len, const char *path,
                          char *err, size_t errlen)
{
    if (len < HEADER_LEN)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: truncated header (%zu of %d bytes)",
                          path, len, HEADER_LEN);
    uint32_t d[5];
    for (int i = 0; i < 5; i++)
        d[i] = cnn_get_u32(buf + 12 + 4 * i);
    char desc[64];
    snprintf(desc, sizeof desc, "conv%u,pool,softmax%u", d[3], d[4]);
    if (d[0] > 4096 || d[1] > 4096 || d[2] > 4096 || d[3] < 1 || d[4] < 2 ||
        cnn_arch_build(a, desc, (int)d[0], (int)d[1], (int)d[2], NULL, 0) != CNN_OK)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: unsupported architecture (input %ux%ux%u, %u filters, %u classes)",
                          path, d[0], d[1], d[2], d[3], d[4]);
    return CNN_OK;
}

/* The architecture of a version 2 file; *at: where the parameter count is. */
static cnn_status arch_v2(cnn_arch *a, size_t *at, const unsigned char *buf, size_t len,
                          const char *path, char *err, size_t errlen)
{
    if (len < 28)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: truncated header (%zu bytes)", path,
                          len);
    const uint32_t C = cnn_get_u32(buf + 12), H = cnn_get_u32(buf + 16), W = cnn_get_u32(buf + 20);
    const uint32_t L = cnn_get_u32(buf + 24);
    if (L == 0 || L >= CNN_ARCH_LEN || len < (size_t)28 + L + 8)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: truncated or bad architecture description (%u bytes)", path, L);
    char desc[CNN_ARCH_LEN];
    memcpy(desc, buf + 28, L);
    desc[L] = '\0';
    for (uint32_t i = 0; i < L; i++)
        if (desc[i] < 0x21 || desc[i] > 0x7e)
            return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                              "%s: the architecture description has a non-printable byte", path);
    char why[256];
    if (C > 4096 || H > 4096 || W > 4096 ||
        cnn_arch_build(a, desc, (int)C, (int)H, (int)W, why, sizeof why) != CNN_OK)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: the network '%s' for %ux%ux%u inputs "
                          "does not build: %s", path, desc, C, H, W,
                          C > 4096 || H > 4096 || W > 4096 ? "input too large" : why);
    *at = 28 + L;
    return CNN_OK;
}

cnn_status cnn_model_from_bytes(cnn_model *m, const unsigned char *buf, size_t len,
                                const char *path, char *err, size_t errlen)
{
    if (len < 8 || memcmp(buf, CNN_MODEL_MAGIC, 8) != 0)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: not a model file (no %s magic)", path,
                          CNN_MODEL_MAGIC);
    if (len < 12)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: truncated header (%zu bytes)", path,
                          len);
    const uint32_t version = cnn_get_u32(buf + 8);
    if (version != 1 && version != CNN_MODEL_VERSION)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: model format version %u, this program reads versions 1 and %u",
                          path, version, CNN_MODEL_VERSION);
    cnn_arch a;
    size_t at = 32;
    cnn_status st = version == 1 ? arch_v1(&a, buf, len, path, err, errlen)
                                 : arch_v2(&a, &at, buf, len, path, err, errlen);
    if (st != CNN_OK)
        return st;
    const uint64_t np = cnn_get_u64(buf + at);
    const size_t want = a.n_params;
    if (np != want)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: header lists %llu parameters, the architecture has %zu", path,
                          (unsigned long long)np, want);
    const size_t flen = at + 8 + 4 * want + 4;
    if (len != flen)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: %s (%zu bytes, expected %zu)", path,
                          len < flen ? "truncated" : "has trailing bytes", len, flen);
    const uint32_t crc = cnn_crc32(buf, len - 4), stored = cnn_get_u32(buf + len - 4);
    if (crc != stored)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: corrupt (CRC-32 %08x, the file says %08x)", path, crc, stored);
    cnn_model tmp;
    if (cnn_model_alloc(&tmp, &a) != CNN_OK)
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", path);
    for (size_t i = 0; i < want; i++) {
        tmp.params[i] = cnn_get_f32(buf + at + 8 + 4 * i);
        if (!isfinite(tmp.params[i])) {
            cnn_model_free(&tmp);
            return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: parameter %zu is not finite",
                              path, i);
        }
    }
    *m = tmp;
    return CNN_OK;
}

cnn_status cnn_model_save(const cnn_model *m, const char *path, char *err, size_t errlen)
{
    if (!m || !m->params || !path || !*path)
        return cnn_errorf(CNN_ERR_ARG, err, errlen, "model save: no model or no path");
    const size_t len = cnn_model_bytes_len(m);
    unsigned char *buf = malloc(len);
    if (!buf)
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory for %zu bytes", path,
                          len);
    cnn_model_to_bytes(m, buf);
    const cnn_status st = cnn_write_atomic(path, buf, len, err, errlen);
    free(buf);
    return st;
}

cnn_status cnn_model_load(cnn_model *m, const char *path, char *err, size_t errlen)
{
    if (!m || !path)
        return cnn_errorf(CNN_ERR_ARG, err, errlen, "model load: no model or no path");
    unsigned char *buf;
    size_t len;
    cnn_status st = cnn_read_file(path, MODEL_MAX_BYTES, &buf, &len, err, errlen);
    if (st != CNN_OK)
        return st;
    st = cnn_model_from_bytes(m, buf, len, path, err, errlen);
    free(buf);
    return st;
}
