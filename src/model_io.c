/* model_io.c - the versioned binary model file (layout in cnn.h): written
 * atomically, read with every field checked. */
#include "cnn.h"

#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define HEADER_LEN 40

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static uint32_t get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint32_t crc_of(const unsigned char *p, size_t n)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    while (n > 0) { /* zlib takes uInt lengths */
        const uInt part = n > 1u << 30 ? 1u << 30 : (uInt)n;
        crc = crc32(crc, p, part);
        p += part, n -= part;
    }
    return (uint32_t)crc;
}

static size_t file_len(size_t n_params) { return HEADER_LEN + 4 * n_params + 4; }

/* Write all of buf to fd, retrying short writes. */
static int write_all(int fd, const unsigned char *buf, size_t n)
{
    while (n > 0) {
        ssize_t k = write(fd, buf, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        buf += k, n -= (size_t)k;
    }
    return 0;
}

/* fsync the directory holding path, so the rename itself is durable. */
static int sync_dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');
    char dir[4096];
    if (!slash)
        strcpy(dir, ".");
    else if (slash == path)
        strcpy(dir, "/");
    else if ((size_t)(slash - path) < sizeof dir)
        memcpy(dir, path, (size_t)(slash - path)), dir[slash - path] = '\0';
    else
        return -1;
    int fd = open(dir, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
        return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

cnn_status cnn_model_save(const cnn_model *m, const char *path, char *err, size_t errlen)
{
    if (!m || !m->params || !path || !*path)
        return cnn_errorf(CNN_ERR_ARG, err, errlen, "model save: no model or no path");
    const size_t len = file_len(m->n_params);
    unsigned char *buf = malloc(len);
    if (!buf)
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory for %zu bytes", path, len);
    memcpy(buf, CNN_MODEL_MAGIC, 8);
    put_u32(buf + 8, CNN_MODEL_VERSION);
    const int dims[5] = {m->shape.C, m->shape.H, m->shape.W, m->shape.F, m->shape.classes};
    for (int i = 0; i < 5; i++)
        put_u32(buf + 12 + 4 * i, (uint32_t)dims[i]);
    put_u32(buf + 32, (uint32_t)m->n_params);
    put_u32(buf + 36, (uint32_t)((uint64_t)m->n_params >> 32));
    for (size_t i = 0; i < m->n_params; i++) {
        uint32_t bits;
        memcpy(&bits, &m->params[i], 4);
        put_u32(buf + HEADER_LEN + 4 * i, bits);
    }
    put_u32(buf + len - 4, crc_of(buf, len - 4));

    const size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp) {
        free(buf);
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", path);
    }
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    cnn_status st = CNN_OK;
    int fd = mkstemp(tmp);
    if (fd < 0) {
        st = cnn_errorf(CNN_ERR_IO, err, errlen, "%s: cannot create a temporary file beside it: %s",
                  path, strerror(errno));
    } else {
        const char *what = NULL;
        int e = 0;
        if (write_all(fd, buf, len))
            what = "write", e = errno;
        else if (fchmod(fd, 0644))
            what = "chmod", e = errno;
        else if (fsync(fd))
            what = "fsync", e = errno;
        if (close(fd) && !what)
            what = "close", e = errno;
        if (!what && rename(tmp, path))
            what = "rename", e = errno;
        if (what) {
            unlink(tmp);
            st = cnn_errorf(CNN_ERR_IO, err, errlen, "%s: cannot save the model (%s failed: %s)", path,
                      what, strerror(e));
        } else if (sync_dir_of(path)) {
            st = cnn_errorf(CNN_ERR_IO, err, errlen, "%s: saved, but syncing its directory failed: %s",
                      path, strerror(errno));
        }
    }
    free(tmp);
    free(buf);
    return st;
}

cnn_status cnn_model_load(cnn_model *m, const char *path, char *err, size_t errlen)
{
    struct stat sb;
    if (!m || !path)
        return cnn_errorf(CNN_ERR_ARG, err, errlen, "model load: no model or no path");
    const int fd = cnn_open_regular(path, &sb, err, errlen);
    if (fd < 0)
        return CNN_ERR_IO;
    FILE *f = fdopen(fd, "rb");
    if (!f) {
        close(fd);
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", path);
    }

    unsigned char hdr[HEADER_LEN];
    unsigned char *buf = NULL;
    cnn_status st = CNN_OK;
    const size_t got = fread(hdr, 1, HEADER_LEN, f);
    if (got < 8 || memcmp(hdr, CNN_MODEL_MAGIC, 8) != 0) {
        st = cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: not a model file (no %s magic)", path,
                  CNN_MODEL_MAGIC);
        goto out;
    }
    if (got < HEADER_LEN) {
        st = cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: truncated header (%zu of %d bytes)", path,
                  got, HEADER_LEN);
        goto out;
    }
    const uint32_t version = get_u32(hdr + 8);
    if (version != CNN_MODEL_VERSION) {
        st = cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                  "%s: model format version %u, this program reads version %u", path, version,
                  CNN_MODEL_VERSION);
        goto out;
    }
    uint32_t d[5];
    for (int i = 0; i < 5; i++)
        d[i] = get_u32(hdr + 12 + 4 * i);
    const cnn_shape s = {.C = d[0] > 4096 ? 0 : (int)d[0], .H = d[1] > 4096 ? 0 : (int)d[1],
                         .W = d[2] > 4096 ? 0 : (int)d[2], .F = d[3] > 4096 ? 0 : (int)d[3],
                         .classes = d[4] > 4096 ? 0 : (int)d[4]};
    if (cnn_shape_check(&s) != CNN_OK) {
        st = cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                  "%s: unsupported architecture (input %ux%ux%u, %u filters, %u classes)", path,
                  d[0], d[1], d[2], d[3], d[4]);
        goto out;
    }
    const uint64_t np = (uint64_t)get_u32(hdr + 32) | (uint64_t)get_u32(hdr + 36) << 32;
    const size_t want = cnn_shape_param_len(&s);
    if (np != want) {
        st = cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                  "%s: header lists %llu parameters, the architecture has %zu", path,
                  (unsigned long long)np, want);
        goto out;
    }
    const size_t len = file_len(want);
    if ((uint64_t)sb.st_size != len) {
        st = cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: %s (%lld bytes, expected %zu)", path,
                  (uint64_t)sb.st_size < len ? "truncated" : "has trailing bytes",
                  (long long)sb.st_size, len);
        goto out;
    }
    buf = malloc(len);
    if (!buf) {
        st = cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", path);
        goto out;
    }
    memcpy(buf, hdr, HEADER_LEN);
    if (fread(buf + HEADER_LEN, 1, len - HEADER_LEN, f) != len - HEADER_LEN || fgetc(f) != EOF) {
        st = cnn_errorf(CNN_ERR_IO, err, errlen, "%s: the file changed size while being read", path);
        goto out;
    }
    const uint32_t crc = crc_of(buf, len - 4), stored = get_u32(buf + len - 4);
    if (crc != stored) {
        st = cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                  "%s: corrupt (CRC-32 %08x, the file says %08x)", path, crc, stored);
        goto out;
    }
    cnn_model tmp;
    if (cnn_model_alloc(&tmp, &s) != CNN_OK) {
        st = cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", path);
        goto out;
    }
    for (size_t i = 0; i < want; i++) {
        const uint32_t bits = get_u32(buf + HEADER_LEN + 4 * i);
        memcpy(&tmp.params[i], &bits, 4);
        if (!isfinite(tmp.params[i])) {
            cnn_model_free(&tmp);
            st = cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: parameter %zu is not finite", path, i);
            goto out;
        }
    }
    *m = tmp;
out:
    free(buf);
    fclose(f);
    return st;
}
