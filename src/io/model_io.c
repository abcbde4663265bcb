/* model_io.c - the versioned binary model file (layout in cnn.h): written
 * atomically, read with every field checked. */
#include "cnn.h"

#include "fileio.h"
#include "layer.h"
#include "steps.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HEADER_LEN 40    /* version 1: the post's network */
#define HEADER_LEN_V2 36 /* version 2, without the description */
#define MODEL_MAX_BYTES (1ull << 31)

/* The lowest version that holds the model: the post's network with the post's input
 * scaling and no class names as version 1, as it always was; any other network so as
 * version 2, which carries its description; a normalisation or class names need 3. */
static uint32_t version_of(const cnn_model *m)
{
    if (m->arch.n_state)
        return 4;
    if (m->norm.kind != CNN_NORM_UNIT || m->names)
        return 3;
    return cnn_arch_is_post(&m->arch) ? 1 : 2;
}

/* Bytes of the class names, NUL-terminated, back to back (0: none). */
static size_t names_len(const cnn_model *m)
{
    return cnn_names_len(m->names, m->arch.classes);
}

/* Version 3's fields between the description and the parameter count. */
static size_t v3_len(const cnn_model *m)
{
    const size_t K = m->norm.kind == CNN_NORM_UNIT ? 0 : (size_t)m->norm.channels;
    return 8 + 8 * K + 4 + names_len(m);
}

size_t cnn_model_bytes_len(const cnn_model *m)
{
    char desc[CNN_ARCH_LEN];
    const uint32_t v = version_of(m);
    if (v == 1)
        return HEADER_LEN + 4 * m->n_params + 4;
    return HEADER_LEN_V2 + strlen(cnn_arch_describe(&m->arch, desc, sizeof desc)) +
           (v >= 3 ? v3_len(m) : 0) + (v >= 4 ? 8 + 4 * m->arch.n_state : 0) +
           4 * m->n_params + 4;
}

static size_t put_v3(const cnn_model *m, unsigned char *p)
{
    const cnn_norm *n = &m->norm;
    const uint32_t K = n->kind == CNN_NORM_UNIT ? 0 : (uint32_t)n->channels;
    cnn_put_u32(p, (uint32_t)n->kind);
    cnn_put_u32(p + 4, K);
    for (uint32_t c = 0; c < K; c++) {
        cnn_put_f32(p + 8 + 4 * c, n->mean[c]);
        cnn_put_f32(p + 8 + 4 * (K + c), n->std[c]);
    }
    const size_t N = names_len(m);
    cnn_put_u32(p + 8 + 8 * K, (uint32_t)N);
    if (N)
        memcpy(p + 12 + 8 * K, m->names, N);
    return 12 + 8 * K + N;
}

void cnn_model_to_bytes(const cnn_model *m, unsigned char *buf)
{
    const size_t len = cnn_model_bytes_len(m);
    memcpy(buf, CNN_MODEL_MAGIC, 8);
    size_t at;
    const uint32_t version = version_of(m);
    if (version == 1) {
        cnn_put_u32(buf + 8, 1);
        const cnn_arch *a = &m->arch;
        const int dims[5] = {a->C, a->H, a->W, a->layer[0].units, a->classes};
        for (int i = 0; i < 5; i++)
            cnn_put_u32(buf + 12 + 4 * i, (uint32_t)dims[i]);
        at = 32;
    } else {
        char desc[CNN_ARCH_LEN];
        const size_t L = strlen(cnn_arch_describe(&m->arch, desc, sizeof desc));
        cnn_put_u32(buf + 8, version);
        cnn_put_u32(buf + 12, (uint32_t)m->arch.C);
        cnn_put_u32(buf + 16, (uint32_t)m->arch.H);
        cnn_put_u32(buf + 20, (uint32_t)m->arch.W);
        cnn_put_u32(buf + 24, (uint32_t)L);
        memcpy(buf + 28, desc, L);
        at = 28 + L;
        if (version >= 3)
            at += put_v3(m, buf + at);
        if (version >= 4) {
            cnn_put_u64(buf + at, m->arch.n_state);
            for (size_t i = 0; i < m->arch.n_state; i++)
                cnn_put_f32(buf + at + 8 + 4 * i, m->state[i]);
            at += 8 + 4 * m->arch.n_state;
        }
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

/* The names block of a version 3 file, checked: exactly `classes` names, each as
 * cnn_model_set_names takes them. @return NULL if fine, else why not. */
static const char *names_problem(const unsigned char *p, size_t N, int classes)
{
    if (N == 0)
        return NULL;
    if (p[N - 1] != '\0')
        return "the class names are not NUL-terminated";
    int count = 0;
    for (size_t i = 0, start = 0; i < N; i++) {
        if (p[i] == '\0') {
            if (i == start || i - start >= CNN_NAME_MAX)
                return "a class name is empty or too long";
            count++, start = i + 1;
        } else if (p[i] < 0x20 || p[i] == 0x7f) {
            return "a class name has a control character";
        }
    }
    return count == classes ? NULL : "the number of class names is not the number of classes";
}

/* Version 3's normalisation and names after the description (at), checked. */
static cnn_status get_v3(const cnn_arch *a, cnn_norm *norm, const char **names, size_t *at,
                         const unsigned char *buf, size_t len, const char *path, char *err,
                         size_t errlen)
{
    const unsigned char *p = buf + *at;
    if (len < *at + 8)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: truncated (normalisation)", path);
    const uint32_t kind = cnn_get_u32(p), K = cnn_get_u32(p + 4);
    if (kind > CNN_NORM_MEAN_STD || (kind == CNN_NORM_UNIT) != (K == 0) ||
        K > CNN_NORM_CHANNELS || (K && K != (uint32_t)a->C) || len < *at + 12 + 8 * (size_t)K)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: bad or truncated normalisation (kind %u, %u channels, for %d-channel "
                          "inputs)", path, kind, K, a->C);
    cnn_norm n = {.kind = (cnn_norm_kind)kind, .channels = (int)K};
    for (uint32_t c = 0; c < K; c++)
        n.mean[c] = cnn_get_f32(p + 8 + 4 * c), n.std[c] = cnn_get_f32(p + 8 + 4 * (K + c));
    if (!cnn_norm_valid(&n, a->C))
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: the normalisation has a deviation <= 0 or a value not finite", path);
    const uint32_t N = cnn_get_u32(p + 8 + 8 * K);
    const size_t names_at = *at + 12 + 8 * (size_t)K;
    if (N > len || len - names_at < (size_t)N + 12)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: truncated class names", path);
    const char *why = N && a->classes > 256 ? "class names for more than 256 classes"
                                            : names_problem(buf + names_at, N, a->classes);
    if (why)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: %s", path, why);
    *norm = n;
    *names = N ? (const char *)buf + names_at : NULL;
    *at = names_at + N;
    return CNN_OK;
}

/* Version 4's state block (at): its length must be the network's state; *state_at:
 * where its floats start. Earlier versions hold networks without state. */
static cnn_status state_block(const cnn_arch *a, uint32_t version, size_t *state_at,
                              size_t *at, const unsigned char *buf, size_t len, const char *path,
                              char *err, size_t errlen)
{
    if (version < 4)
        return a->n_state == 0 ? CNN_OK
                               : cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                                            "%s: a network with running statistics in a "
                                            "version %u file (they need version 4)", path,
                                            version);
    if (len < *at + 8)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: truncated (state)", path);
    const uint64_t S = cnn_get_u64(buf + *at);
    if (S != a->n_state || (len - *at - 8) / 4 < S)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: the state holds %llu values, the network keeps %zu", path,
                          (unsigned long long)S, a->n_state);
    *state_at = *at + 8;
    *at += 8 + 4 * (size_t)S;
    return CNN_OK;
}

/* The names of a checked names block into m. */
static cnn_status set_names(cnn_model *m, const char *names)
{
    if (!names)
        return CNN_OK;
    const char *list[256];
    const int n = m->arch.classes;
    if (n > 256)
        return CNN_ERR_ARG;
    for (int k = 0; k < n; k++, names += strlen(names) + 1)
        list[k] = names;
    return cnn_model_set_names(m, list, n);
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
    if (version < 1 || version > CNN_MODEL_VERSION)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: model format version %u, this program reads versions 1 to %u",
                          path, version, CNN_MODEL_VERSION);
    cnn_arch a;
    size_t at = 32;
    cnn_norm norm = {.kind = CNN_NORM_UNIT};
    const char *names = NULL;
    size_t state_at = 0;
    cnn_status st = version == 1 ? arch_v1(&a, buf, len, path, err, errlen)
                                 : arch_v2(&a, &at, buf, len, path, err, errlen);
    if (st == CNN_OK && version >= 3)
        st = get_v3(&a, &norm, &names, &at, buf, len, path, err, errlen);
    if (st == CNN_OK)
        st = state_block(&a, version, &state_at, &at, buf, len, path, err, errlen);
    if (st != CNN_OK)
        return st;
    if (len < at + 8)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: truncated (parameter count)", path);
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
    if (cnn_model_alloc(&tmp, &a) != CNN_OK || set_names(&tmp, names) != CNN_OK) {
        cnn_model_free(&tmp);
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", path);
    }
    tmp.norm = norm;
    for (size_t i = 0; i < a.n_state; i++)
        tmp.state[i] = cnn_get_f32(buf + state_at + 4 * i);
    char why[160];
    if (cnn_state_check(&a, tmp.state, why, sizeof why)) {
        cnn_model_free(&tmp);
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: %s", path, why);
    }
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
