/* model_io.c - the versioned binary model file (layout in cnn.h): written
 * atomically, read with every field checked. */
#include "cnn.h"

#include "fileio.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_LEN 40
#define MODEL_MAX_BYTES (1ull << 31)

size_t cnn_model_bytes_len(const cnn_model *m) { return HEADER_LEN + 4 * m->n_params + 4; }

void cnn_model_to_bytes(const cnn_model *m, unsigned char *buf)
{
    const size_t len = cnn_model_bytes_len(m);
    memcpy(buf, CNN_MODEL_MAGIC, 8);
    cnn_put_u32(buf + 8, CNN_MODEL_VERSION);
    const int dims[5] = {m->shape.C, m->shape.H, m->shape.W, m->shape.F, m->shape.classes};
    for (int i = 0; i < 5; i++)
        cnn_put_u32(buf + 12 + 4 * i, (uint32_t)dims[i]);
    cnn_put_u64(buf + 32, m->n_params);
    for (size_t i = 0; i < m->n_params; i++)
        cnn_put_f32(buf + HEADER_LEN + 4 * i, m->params[i]);
    cnn_put_u32(buf + len - 4, cnn_crc32(buf, len - 4));
}

cnn_status cnn_model_from_bytes(cnn_model *m, const unsigned char *buf, size_t len,
                                const char *path, char *err, size_t errlen)
{
    if (len < 8 || memcmp(buf, CNN_MODEL_MAGIC, 8) != 0)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: not a model file (no %s magic)", path,
                          CNN_MODEL_MAGIC);
    if (len < HEADER_LEN)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: truncated header (%zu of %d bytes)",
                          path, len, HEADER_LEN);
    const uint32_t version = cnn_get_u32(buf + 8);
    if (version != CNN_MODEL_VERSION)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: model format version %u, this program reads version %u", path,
                          version, CNN_MODEL_VERSION);
    uint32_t d[5];
    for (int i = 0; i < 5; i++)
        d[i] = cnn_get_u32(buf + 12 + 4 * i);
    const cnn_shape s = {.C = d[0] > 4096 ? 0 : (int)d[0], .H = d[1] > 4096 ? 0 : (int)d[1],
                         .W = d[2] > 4096 ? 0 : (int)d[2], .F = d[3] > 4096 ? 0 : (int)d[3],
                         .classes = d[4] > 4096 ? 0 : (int)d[4]};
    if (cnn_shape_check(&s) != CNN_OK)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: unsupported architecture (input %ux%ux%u, %u filters, %u classes)",
                          path, d[0], d[1], d[2], d[3], d[4]);
    const uint64_t np = cnn_get_u64(buf + 32);
    const size_t want = cnn_shape_param_len(&s);
    if (np != want)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: header lists %llu parameters, the architecture has %zu", path,
                          (unsigned long long)np, want);
    const size_t flen = HEADER_LEN + 4 * want + 4;
    if (len != flen)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: %s (%zu bytes, expected %zu)", path,
                          len < flen ? "truncated" : "has trailing bytes", len, flen);
    const uint32_t crc = cnn_crc32(buf, len - 4), stored = cnn_get_u32(buf + len - 4);
    if (crc != stored)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: corrupt (CRC-32 %08x, the file says %08x)", path, crc, stored);
    cnn_model tmp;
    if (cnn_model_alloc(&tmp, &s) != CNN_OK)
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", path);
    for (size_t i = 0; i < want; i++) {
        tmp.params[i] = cnn_get_f32(buf + HEADER_LEN + 4 * i);
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
