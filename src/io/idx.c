/* idx.c - IDX image and label files (the MNIST format), raw or gzip-compressed,
 * read with every header field and the payload size checked, and the MNIST
 * directory loader on top of them.
 *
 * IDX: a big-endian u32 magic 0x000008DD (0x08 = unsigned bytes, DD = number of
 * dimensions), DD big-endian u32 sizes, then the bytes in row-major order. */
#include "cnn.h"

#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define IDX_IMAGES 0x00000803u
#define IDX_LABELS 0x00000801u
#define IDX_MAX_SIDE 4096u
/* No sane image set is larger than this; a header promising more is rejected
 * before anything is allocated. */
#define IDX_MAX_BYTES ((uint64_t)1 << 34)
/* The first payload buffer of a compressed file; it doubles as data arrives, so a
 * header that lies about its size costs at most twice the real data. */
#define IDX_FIRST_CHUNK ((size_t)1 << 20)
/* gzread takes an unsigned and returns an int: read in pieces below INT_MAX. */
#define IDX_MAX_READ ((size_t)1 << 30)
/* How far past the promised data a compressed file is inflated to count extra bytes. */
#define IDX_MAX_EXTRA ((uint64_t)1 << 20)

static uint32_t get_be32(const unsigned char *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}

/* What one IDX kind holds, for the checks and the messages. */
typedef struct idx_kind {
    uint32_t magic;
    int ndims;
    const char *noun;      /* "images" or "labels" */
    const char *other;     /* the kind whose magic this is not: "a label file" */
} idx_kind;

static const idx_kind kind_images = {IDX_IMAGES, 3, "images", "an image file"};
static const idx_kind kind_labels = {IDX_LABELS, 1, "labels", "a label file"};

/* Open path for reading through zlib. The descriptor is checked with fstat before
 * zlib sees it: gzopen would block on a FIFO and happily "read" a directory or a
 * device, none of which is an IDX file. O_NONBLOCK keeps the open itself from
 * blocking on a FIFO; it changes nothing for a regular file. */
static cnn_status open_regular(const char *path, struct stat *sb, gzFile *gz, char *err,
                               size_t errlen)
{
    *gz = NULL;
    const int fd = cnn_open_regular(path, sb, err, errlen);
    if (fd < 0)
        return CNN_ERR_IO;
    *gz = gzdopen(fd, "rb");
    if (!*gz) {
        close(fd);
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory opening it", path);
    }
    gzbuffer(*gz, 1u << 17);
    return CNN_OK;
}

/* Read up to len bytes; @return how many arrived. Fewer means end of data or an
 * error, which the caller tells apart with stream_error. */
static size_t read_upto(gzFile gz, unsigned char *buf, size_t len)
{
    size_t got = 0;
    while (got < len) {
        const size_t part = len - got < IDX_MAX_READ ? len - got : IDX_MAX_READ;
        const int k = gzread(gz, buf + got, (unsigned)part);
        if (k <= 0)
            break;
        got += (size_t)k;
    }
    return got;
}

/* @return zlib's message if the stream is in error (corrupt data, a gzip stream
 * that ends early, a read error), NULL if all is well; *errnum gets zlib's code. A
 * truncated gzip stream is Z_BUF_ERROR, which gzread reports only through gzerror. */
static const char *stream_error(gzFile gz, int *errnum)
{
    int e = Z_OK;
    const char *msg = gzerror(gz, &e);
    if (errnum)
        *errnum = e;
    if (e == Z_OK)
        return NULL;
    return msg && *msg ? msg : "unknown zlib error";
}

/* A failed read of the disk is an I/O error; bad compressed data is bad content. */
static cnn_status stream_cnn_errorf(gzFile gz, const char *path, char *err, size_t errlen)
{
    int errnum;
    const char *msg = stream_error(gz, &errnum);
    /* zlib prefixes its messages with "path: "; ours already starts with the path. */
    const size_t pl = strlen(path);
    if (strncmp(msg, path, pl) == 0 && msg[pl] == ':' && msg[pl + 1] == ' ')
        msg += pl + 2;
    if (errnum == Z_ERRNO || gzdirect(gz))
        return cnn_errorf(CNN_ERR_IO, err, errlen, "%s: read error: %s", path, msg);
    if (errnum == Z_MEM_ERROR)
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: gzip: %s", path, msg);
    return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: corrupt or truncated gzip data: %s", path, msg);
}

static const char *field_name(const idx_kind *k, size_t got)
{
    if (got < 4)
        return "the magic number";
    if (got < 8)
        return k->ndims == 3 ? "the image count" : "the label count";
    return got < 12 ? "the row count" : "the column count";
}

/* Read and check the header; dims receives n (and rows, cols for images) and *bytes
 * the payload size it promises. */
static cnn_status read_header(gzFile gz, const struct stat *sb, const char *path,
                              const idx_kind *k, uint32_t dims[3], uint64_t *bytes, char *err,
                              size_t errlen)
{
    unsigned char hdr[16];
    const size_t hlen = 4 + 4 * (size_t)k->ndims;
    const size_t got = read_upto(gz, hdr, hlen);
    if (got < hlen && stream_error(gz, NULL))
        return stream_cnn_errorf(gz, path, err, errlen);
    if (got == 0 && sb->st_size == 0)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                    "%s: empty file (truncated header, 0 of %zu bytes)", path, hlen);
    /* The magic first, so that a label file given as images says so even when it is
     * shorter than an image header. */
    if (got >= 4) {
        const uint32_t magic = get_be32(hdr);
        const idx_kind *o = k->ndims == 3 ? &kind_labels : &kind_images;
        if (magic == o->magic)
            return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                        "%s: is %s (magic 0x%08x), expected %s (magic 0x%08x)", path, o->other,
                        (unsigned)magic, k->noun, (unsigned)k->magic);
        if (magic != k->magic)
            return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                        "%s: bad magic 0x%08x, expected 0x%08x (IDX %s: unsigned bytes, %d "
                        "dimension%s)",
                        path, (unsigned)magic, (unsigned)k->magic, k->noun, k->ndims,
                        k->ndims == 1 ? "" : "s");
    }
    if (got < hlen)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                    "%s: truncated header (%zu of %zu bytes, ends inside %s)", path, got, hlen,
                    field_name(k, got));
    dims[0] = get_be32(hdr + 4);
    dims[1] = dims[2] = 1;
    if (dims[0] == 0)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: header promises 0 %s", path, k->noun);
    if (k->ndims == 3) {
        dims[1] = get_be32(hdr + 8);
        dims[2] = get_be32(hdr + 12);
        if (dims[1] < 1 || dims[1] > IDX_MAX_SIDE || dims[2] < 1 || dims[2] > IDX_MAX_SIDE)
            return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                        "%s: images of %u x %u pixels (rows and columns must be 1..%u)", path,
                        (unsigned)dims[1], (unsigned)dims[2], IDX_MAX_SIDE);
    }
    /* At most 2^32 * 2^12 * 2^12 = 2^56: no overflow in 64 bits. */
    *bytes = (uint64_t)dims[0] * dims[1] * dims[2];
    if (*bytes > IDX_MAX_BYTES || *bytes > SIZE_MAX)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                    "%s: header promises %llu bytes of %s, more than the limit of %llu", path,
                    (unsigned long long)*bytes, k->noun,
                    (unsigned long long)(IDX_MAX_BYTES < SIZE_MAX ? IDX_MAX_BYTES : SIZE_MAX));
    return CNN_OK;
}

static cnn_status size_cnn_errorf(const char *path, const idx_kind *k, uint64_t have, uint64_t want,
                            char *err, size_t errlen)
{
    if (k->ndims == 3)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                    "%s: holds %llu bytes of pixels, header promises %llu", path,
                    (unsigned long long)have, (unsigned long long)want);
    return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: holds %llu labels, header promises %llu", path,
                (unsigned long long)have, (unsigned long long)want);
}

static cnn_status extra_cnn_errorf(const char *path, uint64_t extra, int at_least, char *err,
                             size_t errlen)
{
    return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: has %s%llu extra byte%s after the data", path,
                at_least ? "at least " : "", (unsigned long long)extra, extra == 1 ? "" : "s");
}

/* Read exactly `want` payload bytes into a buffer that grows as they arrive (a
 * compressed file's size says nothing about its content), then make sure the data
 * ends there. */
static cnn_status read_payload(gzFile gz, const char *path, const idx_kind *k, uint64_t want,
                               unsigned char **out, char *err, size_t errlen)
{
    size_t cap = gzdirect(gz) || want < IDX_FIRST_CHUNK ? (size_t)want : IDX_FIRST_CHUNK;
    size_t got = 0;
    unsigned char *buf = malloc(cap);
    if (!buf)
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory for %zu bytes", path, cap);
    for (;;) {
        const size_t k_got = read_upto(gz, buf + got, cap - got);
        got += k_got;
        if (got < cap || cap == want)
            break;
        const size_t next = cap > want / 2 ? (size_t)want : 2 * cap;
        unsigned char *grown = realloc(buf, next);
        if (!grown) {
            free(buf);
            return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory for %zu bytes", path,
                        next);
        }
        buf = grown, cap = next;
    }
    cnn_status st = CNN_OK;
    if (stream_error(gz, NULL)) {
        st = stream_cnn_errorf(gz, path, err, errlen);
    } else if (got < want) {
        st = size_cnn_errorf(path, k, got, want, err, errlen);
    } else {
        /* Inflating on to the end also checks the gzip trailer (CRC and length). */
        unsigned char scratch[4096];
        uint64_t extra = 0;
        size_t n;
        while (extra < IDX_MAX_EXTRA && (n = read_upto(gz, scratch, sizeof scratch)) > 0)
            extra += n;
        if (stream_error(gz, NULL))
            st = stream_cnn_errorf(gz, path, err, errlen);
        else if (extra)
            st = extra_cnn_errorf(path, extra, extra >= IDX_MAX_EXTRA, err, errlen);
    }
    if (st != CNN_OK) {
        free(buf);
        return st;
    }
    *out = buf;
    return CNN_OK;
}

/* The whole of one IDX file of kind k: header, size checks, payload. */
static cnn_status idx_read(const char *path, const idx_kind *k, uint32_t dims[3],
                           unsigned char **data, char *err, size_t errlen)
{
    struct stat sb;
    gzFile gz;
    cnn_status st = open_regular(path, &sb, &gz, err, errlen);
    if (st != CNN_OK)
        return st;
    uint64_t want = 0;
    st = read_header(gz, &sb, path, k, dims, &want, err, errlen);
    if (st == CNN_OK && gzdirect(gz)) {
        /* Uncompressed: the file size settles the payload size before any allocation. */
        const uint64_t hlen = 4 + 4 * (uint64_t)k->ndims, size = (uint64_t)sb.st_size;
        const uint64_t have = size > hlen ? size - hlen : 0;
        if (have < want)
            st = size_cnn_errorf(path, k, have, want, err, errlen);
        else if (have > want)
            st = extra_cnn_errorf(path, have - want, 0, err, errlen);
    }
    if (st == CNN_OK)
        st = read_payload(gz, path, k, want, data, err, errlen);
    /* Reading only: a failing close loses nothing, and stream errors were checked. */
    gzclose(gz);
    return st;
}

cnn_status cnn_idx_read_images(const char *path, uint8_t **pixels, size_t *n, int *rows,
                               int *cols, char *err, size_t errlen)
{
    if (pixels)
        *pixels = NULL;
    if (n)
        *n = 0;
    if (rows)
        *rows = 0;
    if (cols)
        *cols = 0;
    if (!path || !pixels || !n || !rows || !cols)
        return cnn_errorf(CNN_ERR_ARG, err, errlen, "cnn_idx_read_images: NULL argument");
    uint32_t dims[3];
    unsigned char *data = NULL;
    const cnn_status st = idx_read(path, &kind_images, dims, &data, err, errlen);
    if (st != CNN_OK)
        return st;
    *pixels = data;
    *n = dims[0];
    *rows = (int)dims[1];
    *cols = (int)dims[2];
    return CNN_OK;
}

cnn_status cnn_idx_read_labels(const char *path, int classes, uint8_t **labels, size_t *n,
                               char *err, size_t errlen)
{
    if (labels)
        *labels = NULL;
    if (n)
        *n = 0;
    if (!path || !labels || !n)
        return cnn_errorf(CNN_ERR_ARG, err, errlen, "cnn_idx_read_labels: NULL argument");
    if (classes < 1)
        return cnn_errorf(CNN_ERR_ARG, err, errlen, "%s: %d classes (must be at least 1)", path,
                    classes);
    uint32_t dims[3];
    unsigned char *data = NULL;
    const cnn_status st = idx_read(path, &kind_labels, dims, &data, err, errlen);
    if (st != CNN_OK)
        return st;
    for (size_t i = 0; i < dims[0]; i++)
        if (data[i] >= classes) {
            const unsigned bad = data[i];
            free(data);
            return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: label %zu is %u, labels must be 0..%d",
                        path, i, bad, classes - 1);
        }
    *labels = data;
    *n = dims[0];
    return CNN_OK;
}

/* The first existing spelling of <split><stem><sep>idx<d>-ubyte[.gz]. *path is the
 * malloc'ed path found; it stays NULL (with an error) when none exists. */
static cnn_status find_file(const char *dir, const char *split, const char *what, int d,
                            char **path, char *err, size_t errlen)
{
    static const char *const seps[2] = {"-", "."};
    static const char *const exts[2] = {"", ".gz"};
    char name[64];
    *path = NULL;
    for (int e = 0; e < 2; e++)
        for (int s = 0; s < 2; s++) {
            snprintf(name, sizeof name, "%s-%s%sidx%d-ubyte%s", split, what, seps[s], d,
                     exts[e]);
            char *p = cnn_path_join(dir, name);
            if (!p)
                return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", dir);
            struct stat sb;
            if (stat(p, &sb) == 0) {
                *path = p;
                return CNN_OK;
            }
            /* Anything but "not there" (a permission problem, say) is worth reporting
             * rather than silently trying the next spelling. */
            if (errno != ENOENT) {
                const cnn_status st = cnn_errorf(CNN_ERR_IO, err, errlen, "%s: %s", p, strerror(errno));
                free(p);
                return st;
            }
            free(p);
        }
    return cnn_errorf(CNN_ERR_IO, err, errlen,
                "%s: no %s %s (looked for %s-%s-idx%d-ubyte[.gz] and %s-%s.idx%d-ubyte[.gz])",
                dir, split, what, split, what, d, split, what, d);
}

cnn_status cnn_mnist_load(const char *dir, const char *split, cnn_dataset *out, char *err,
                          size_t errlen)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!dir || !split || !out)
        return cnn_errorf(CNN_ERR_ARG, err, errlen, "cnn_mnist_load: NULL argument");
    if (!*dir)
        return cnn_errorf(CNN_ERR_ARG, err, errlen, "cnn_mnist_load: empty directory name");
    if (strcmp(split, "train") != 0 && strcmp(split, "t10k") != 0)
        return cnn_errorf(CNN_ERR_ARG, err, errlen,
                    "%s: unknown split \"%.32s\" (expected train or t10k)", dir, split);
    struct stat sb;
    if (stat(dir, &sb))
        return cnn_errorf(CNN_ERR_IO, err, errlen, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return cnn_errorf(CNN_ERR_IO, err, errlen, "%s: is not a directory", dir);

    char *ipath = NULL, *lpath = NULL;
    cnn_dataset d = {.channels = 1, .format = CNN_DATA_IDX};
    size_t nl = 0;
    cnn_status st = find_file(dir, split, "images", 3, &ipath, err, errlen);
    if (st == CNN_OK)
        st = find_file(dir, split, "labels", 1, &lpath, err, errlen);
    if (st == CNN_OK)
        st = cnn_idx_read_images(ipath, &d.pixels, &d.n, &d.rows, &d.cols, err, errlen);
    if (st == CNN_OK)
        st = cnn_idx_read_labels(lpath, 10, &d.labels, &nl, err, errlen);
    if (st == CNN_OK && nl != d.n)
        st = cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: holds %zu images, but %s holds %zu labels",
                  ipath, d.n, lpath, nl);
    free(ipath);
    free(lpath);
    if (st != CNN_OK) {
        cnn_dataset_free(&d);
        return st;
    }
    *out = d;
    return CNN_OK;
}
