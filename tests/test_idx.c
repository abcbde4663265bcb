/* test_idx.c - the IDX readers and the MNIST loader against good files and a corpus
 * of broken ones that the test writes itself into a fresh temporary directory:
 * truncated at every header field and inside the data, wrong or swapped magic, zero
 * and oversized dimensions, lying headers (raw and gzip), trailing bytes, bad labels,
 * corrupt and truncated gzip streams, a directory, a FIFO, a missing and an empty file.
 * Every failure must return a non-OK status, leave the outputs NULL/0 and write one
 * line starting with the file's path and naming the problem. The whole corpus is run
 * again with no error buffer at all. */
#include "cnn.h"

#include "check.h"

#include <errno.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define MAX_PATHS 256
#define READ_IMAGES 1
#define READ_LABELS 2

/* Every path the test creates (removed in reverse order at the end) and the broken
 * files, run again without an error buffer. */
typedef struct corpus {
    char dir[512];
    char *made[MAX_PATHS];
    int made_dir[MAX_PATHS];
    size_t n_made;
    const char *broken[MAX_PATHS];
    int broken_for[MAX_PATHS]; /* READ_IMAGES or READ_LABELS: the reader it breaks */
    size_t n_broken;
    int full; /* a list overflowed: a bug in the test */
} corpus;

/* dir/name, remembered for removal; NULL if the list is full. */
static const char *new_path(corpus *c, const char *name, int is_dir)
{
    if (c->n_made == MAX_PATHS) {
        c->full = 1;
        return NULL;
    }
    const size_t len = strlen(c->dir) + 1 + strlen(name) + 1;
    char *p = malloc(len);
    if (!p)
        return NULL;
    snprintf(p, len, "%s/%s", c->dir, name);
    c->made[c->n_made] = p;
    c->made_dir[c->n_made++] = is_dir;
    return p;
}

static const char *make_dir(corpus *c, const char *name)
{
    const char *p = new_path(c, name, 1);
    if (p && mkdir(p, 0700)) {
        tap_ok(0, "mkdir %s: %s", p, strerror(errno));
        return NULL;
    }
    return p;
}

/* Write len bytes to dir/name, raw or through gzip. @return the path. */
static const char *write_file(corpus *c, const char *name, const void *data, size_t len, int gz)
{
    const char *p = new_path(c, name, 0);
    if (!p)
        return "(no path)";
    int ok;
    if (gz) {
        gzFile f = gzopen(p, "wb");
        ok = f != NULL;
        if (f && len)
            ok = gzwrite(f, data, (unsigned)len) == (int)len;
        if (f && gzclose(f) != Z_OK)
            ok = 0;
        if (!ok)
            tap_ok(0, "cannot write %s", p);
    } else {
        tap_write_file(p, data, len);
    }
    return p;
}

/* The whole content of a file the test wrote; NULL on failure. */
static unsigned char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    size_t cap = 1 << 16, n = 0, k;
    unsigned char *buf = malloc(cap);
    while (buf && (k = fread(buf + n, 1, cap - n, f)) > 0) {
        n += k;
        if (n == cap) {
            unsigned char *g = realloc(buf, cap *= 2);
            if (!g)
                free(buf);
            buf = g;
        }
    }
    fclose(f);
    *len = n;
    return buf;
}

static uint8_t pixel_at(size_t k) { return (uint8_t)(k * 37u + (k >> 8) * 11u); }

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

/* An IDX file in memory: magic, nd dims, then body_len payload bytes (pixel_at, or
 * `labels` when given) followed by `extra` bytes. */
static unsigned char *idx_bytes(uint32_t magic, const uint32_t *dims, int nd, size_t body_len,
                                const uint8_t *labels, size_t extra, size_t *len)
{
    const size_t h = 4 + 4 * (size_t)nd;
    *len = h + body_len + extra;
    unsigned char *b = malloc(*len);
    if (!b)
        return NULL;
    put_be32(b, magic);
    for (int i = 0; i < nd; i++)
        put_be32(b + 4 + 4 * i, dims[i]);
    for (size_t i = 0; i < body_len; i++)
        b[h + i] = labels ? labels[i] : pixel_at(i);
    memset(b + h + body_len, 0xAB, extra);
    return b;
}

/* Write an image file: header n x rows x cols, body_len pixel bytes, extra bytes. */
static const char *images_file(corpus *c, const char *name, uint32_t magic, uint32_t n,
                               uint32_t rows, uint32_t cols, size_t body_len, size_t extra,
                               int gz)
{
    const uint32_t dims[3] = {n, rows, cols};
    size_t len;
    unsigned char *b = idx_bytes(magic, dims, 3, body_len, NULL, extra, &len);
    const char *p = b ? write_file(c, name, b, len, gz) : "(no memory)";
    free(b);
    return p;
}

static const char *labels_file(corpus *c, const char *name, uint32_t magic, uint32_t n,
                               const uint8_t *labels, size_t body_len, size_t extra, int gz)
{
    size_t len;
    unsigned char *b = idx_bytes(magic, &n, 1, body_len, labels, extra, &len);
    const char *p = b ? write_file(c, name, b, len, gz) : "(no memory)";
    free(b);
    return p;
}

/* The first `keep` bytes of an IDX file written raw. */
static const char *prefix_file(corpus *c, const char *name, const unsigned char *b, size_t keep)
{
    return write_file(c, name, b, keep, 0);
}

/* One line, starting with "PATH: ", naming the problem (word) and the path only once. */
static int message_ok(const char *err, const char *path, const char *word)
{
    const size_t pl = strlen(path);
    return strncmp(err, path, pl) == 0 && err[pl] == ':' && err[pl + 1] == ' ' &&
           strstr(err + pl, word) != NULL && strchr(err, '\n') == NULL &&
           strstr(err + pl, path) == NULL; /* named once: zlib's "path: " prefix is cut */
}

static void remember(corpus *c, const char *path, int reader)
{
    if (c->n_broken == MAX_PATHS) {
        c->full = 1;
        return;
    }
    c->broken[c->n_broken] = path;
    c->broken_for[c->n_broken++] = reader;
}

static void expect_images_fail(corpus *c, const char *what, const char *path, cnn_status want,
                               const char *word)
{
    char err[1024];
    int dummy;
    uint8_t *px = (uint8_t *)&dummy; /* must come back NULL */
    size_t n = 99;
    int rows = 99, cols = 99;
    strcpy(err, "untouched");
    const cnn_status st = cnn_idx_read_images(path, &px, &n, &rows, &cols, err, sizeof err);
    const int ok = st == want && !px && n == 0 && rows == 0 && cols == 0 &&
                   message_ok(err, path, word);
    tap_ok(ok, "images, %s: [%s] %s", what, cnn_status_str(st), err);
    if (st == CNN_OK)
        free(px);
    remember(c, path, READ_IMAGES);
}

static void expect_labels_fail(corpus *c, const char *what, const char *path, int classes,
                               cnn_status want, const char *word)
{
    char err[1024];
    int dummy;
    uint8_t *lb = (uint8_t *)&dummy;
    size_t n = 99;
    strcpy(err, "untouched");
    const cnn_status st = cnn_idx_read_labels(path, classes, &lb, &n, err, sizeof err);
    const int ok = st == want && !lb && n == 0 && message_ok(err, path, word);
    tap_ok(ok, "labels, %s: [%s] %s", what, cnn_status_str(st), err);
    if (st == CNN_OK)
        free(lb);
    if (want != CNN_ERR_ARG && classes == 10) /* broken whatever the class count */
        remember(c, path, READ_LABELS);
}

/* A good image file: n images of rows x cols holding pixel_at(0..). */
static void expect_images_ok(const char *what, const char *path, size_t want_n, int want_r,
                             int want_c)
{
    char err[1024] = "";
    uint8_t *px = NULL;
    size_t n = 0;
    int rows = 0, cols = 0;
    const cnn_status st = cnn_idx_read_images(path, &px, &n, &rows, &cols, err, sizeof err);
    int ok = st == CNN_OK && px && n == want_n && rows == want_r && cols == want_c;
    size_t bad = 0;
    for (size_t i = 0; ok && i < n * (size_t)rows * (size_t)cols; i++)
        if (px[i] != pixel_at(i))
            ok = 0, bad = i;
    tap_ok(ok, "images, %s: %s, %zu x %d x %d %s", what, cnn_status_str(st), n, rows, cols, err);
    if (!ok && st == CNN_OK)
        printf("# first wrong pixel at %zu\n", bad);
    free(px);
}

static void expect_labels_ok(const char *what, const char *path, const uint8_t *want,
                             size_t want_n)
{
    char err[1024] = "";
    uint8_t *lb = NULL;
    size_t n = 0;
    const cnn_status st = cnn_idx_read_labels(path, 10, &lb, &n, err, sizeof err);
    const int ok = st == CNN_OK && lb && n == want_n && memcmp(lb, want, n) == 0;
    tap_ok(ok, "labels, %s: %s, %zu labels %s", what, cnn_status_str(st), n, err);
    free(lb);
}

static const uint8_t good_labels[3] = {7, 0, 9};

static void test_good_files(corpus *c)
{
    const char *p = images_file(c, "good-images", 0x803, 3, 28, 28, 3 * 784, 0, 0);
    expect_images_ok("valid raw, 3 of 28x28", p, 3, 28, 28);
    p = images_file(c, "good-images.gz", 0x803, 3, 28, 28, 3 * 784, 0, 1);
    expect_images_ok("valid gzip with .gz suffix", p, 3, 28, 28);
    p = images_file(c, "good-images-gz-no-suffix", 0x803, 3, 28, 28, 3 * 784, 0, 1);
    expect_images_ok("valid gzip without .gz suffix", p, 3, 28, 28);
    p = images_file(c, "odd-shape", 0x803, 2, 1, 4096, 2 * 4096, 0, 0);
    expect_images_ok("valid raw, 2 of 1x4096", p, 2, 1, 4096);
    /* More than the first 1 MiB buffer: the compressed reader has to grow it. */
    p = images_file(c, "big-images.gz", 0x803, 3000, 28, 28, 3000 * 784, 0, 1);
    expect_images_ok("valid gzip, 3000 of 28x28 (growing buffer)", p, 3000, 28, 28);

    p = labels_file(c, "good-labels", 0x801, 3, good_labels, 3, 0, 0);
    expect_labels_ok("valid raw", p, good_labels, 3);
    p = labels_file(c, "good-labels.gz", 0x801, 3, good_labels, 3, 0, 1);
    expect_labels_ok("valid gzip with .gz suffix", p, good_labels, 3);
    p = labels_file(c, "good-labels-gz-no-suffix", 0x801, 3, good_labels, 3, 0, 1);
    expect_labels_ok("valid gzip without .gz suffix", p, good_labels, 3);
}

static void test_truncated(corpus *c)
{
    const uint32_t dims[3] = {3, 28, 28};
    size_t len;
    unsigned char *b = idx_bytes(0x803, dims, 3, 3 * 784, NULL, 0, &len);
    if (!b) {
        tap_ok(0, "out of memory");
        return;
    }
    static const size_t cuts[] = {0, 2, 3, 4, 6, 8, 10, 12, 15};
    char name[64];
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        snprintf(name, sizeof name, "images-cut-%zu", cuts[i]);
        const char *p = prefix_file(c, name, b, cuts[i]);
        snprintf(name, sizeof name, "truncated after %zu header bytes", cuts[i]);
        expect_images_fail(c, name, p, CNN_ERR_FORMAT, cuts[i] ? "truncated header" : "empty");
    }
    static const size_t body_cuts[] = {16, 17, 16 + 784, 16 + 3 * 784 - 1};
    for (size_t i = 0; i < sizeof body_cuts / sizeof body_cuts[0]; i++) {
        snprintf(name, sizeof name, "images-cut-%zu", body_cuts[i]);
        const char *p = prefix_file(c, name, b, body_cuts[i]);
        snprintf(name, sizeof name, "truncated after %zu bytes (inside the data)", body_cuts[i]);
        expect_images_fail(c, name, p, CNN_ERR_FORMAT, "bytes of pixels, header promises 2352");
    }
    /* The same inside the data of a gzip stream that is itself complete. */
    const char *p = write_file(c, "images-short.gz", b, 16 + 1000, 1);
    expect_images_fail(c, "gzip, complete stream, data cut at 1000 bytes", p, CNN_ERR_FORMAT,
                       "holds 1000 bytes of pixels, header promises 2352");
    free(b);

    b = idx_bytes(0x801, (const uint32_t[]){3}, 1, 3, good_labels, 0, &len);
    if (!b)
        return;
    static const size_t lcuts[] = {0, 2, 4, 6, 7};
    for (size_t i = 0; i < sizeof lcuts / sizeof lcuts[0]; i++) {
        snprintf(name, sizeof name, "labels-cut-%zu", lcuts[i]);
        p = prefix_file(c, name, b, lcuts[i]);
        snprintf(name, sizeof name, "truncated after %zu header bytes", lcuts[i]);
        expect_labels_fail(c, name, p, 10, CNN_ERR_FORMAT, lcuts[i] ? "truncated header" : "empty");
    }
    p = prefix_file(c, "labels-cut-10", b, 10);
    expect_labels_fail(c, "truncated inside the data", p, 10, CNN_ERR_FORMAT,
                       "holds 2 labels, header promises 3");
    free(b);
}

static void test_headers(corpus *c)
{
    const char *p = images_file(c, "magic-804", 0x804, 3, 28, 28, 3 * 784, 0, 0);
    expect_images_fail(c, "magic 0x804", p, CNN_ERR_FORMAT, "bad magic 0x00000804");
    p = images_file(c, "magic-junk", 0x12345678, 3, 28, 28, 3 * 784, 0, 0);
    expect_images_fail(c, "magic 0x12345678", p, CNN_ERR_FORMAT, "bad magic 0x12345678");
    p = write_file(c, "text-file", "hello, world\nthis is no IDX file\n", 33, 0);
    expect_images_fail(c, "a text file", p, CNN_ERR_FORMAT, "bad magic");
    p = labels_file(c, "magic-junk-labels", 0xdeadbeef, 3, good_labels, 3, 0, 0);
    expect_labels_fail(c, "magic 0xdeadbeef", p, 10, CNN_ERR_FORMAT, "bad magic 0xdeadbeef");

    p = labels_file(c, "labels-as-images", 0x801, 3, good_labels, 3, 0, 0);
    expect_images_fail(c, "a label file given as images", p, CNN_ERR_FORMAT,
                       "is a label file (magic 0x00000801), expected images");
    p = labels_file(c, "labels-as-images.gz", 0x801, 3, good_labels, 3, 0, 1);
    expect_images_fail(c, "a gzip label file given as images", p, CNN_ERR_FORMAT,
                       "is a label file");
    p = images_file(c, "images-as-labels", 0x803, 3, 28, 28, 3 * 784, 0, 0);
    expect_labels_fail(c, "an image file given as labels", p, 10, CNN_ERR_FORMAT,
                       "is an image file (magic 0x00000803), expected labels");

    p = images_file(c, "images-n0", 0x803, 0, 28, 28, 0, 0, 0);
    expect_images_fail(c, "n = 0", p, CNN_ERR_FORMAT, "promises 0 images");
    p = labels_file(c, "labels-n0", 0x801, 0, NULL, 0, 0, 0);
    expect_labels_fail(c, "n = 0", p, 10, CNN_ERR_FORMAT, "promises 0 labels");
    p = images_file(c, "images-rows0", 0x803, 3, 0, 28, 0, 0, 0);
    expect_images_fail(c, "rows = 0", p, CNN_ERR_FORMAT, "0 x 28 pixels");
    p = images_file(c, "images-cols0", 0x803, 3, 28, 0, 0, 0, 0);
    expect_images_fail(c, "cols = 0", p, CNN_ERR_FORMAT, "28 x 0 pixels");
    p = images_file(c, "images-65535", 0x803, 1, 65535, 65535, 100, 0, 0);
    expect_images_fail(c, "rows = cols = 65535", p, CNN_ERR_FORMAT, "65535 x 65535 pixels");
    p = images_file(c, "images-4097", 0x803, 1, 4097, 1, 4097, 0, 0);
    expect_images_fail(c, "rows = 4097", p, CNN_ERR_FORMAT, "4097 x 1 pixels");
    p = images_file(c, "images-max-dims", 0x803, 0xffffffffu, 4096, 4096, 10, 0, 0);
    expect_images_fail(c, "n = 2^32-1 of 4096x4096 (2^56 bytes)", p, CNN_ERR_FORMAT,
                       "more than the limit");
}

/* Headers promising far more than the file holds: must fail on the size, not on a
 * giant allocation. */
static void test_lying_headers(corpus *c)
{
    const uint32_t big = 0x80000000u;
    const char *p = images_file(c, "images-2g-28x28", 0x803, big, 28, 28, 100, 0, 0);
    expect_images_fail(c, "n = 2^31 of 28x28, raw", p, CNN_ERR_FORMAT, "more than the limit");
    p = images_file(c, "images-2g-28x28.gz", 0x803, big, 28, 28, 100, 0, 1);
    expect_images_fail(c, "n = 2^31 of 28x28, gzip", p, CNN_ERR_FORMAT, "more than the limit");
    p = images_file(c, "images-2g-1x1", 0x803, big, 1, 1, 100, 0, 0);
    expect_images_fail(c, "n = 2^31 of 1x1, raw", p, CNN_ERR_FORMAT,
                       "holds 100 bytes of pixels, header promises 2147483648");
    p = images_file(c, "images-2g-1x1.gz", 0x803, big, 1, 1, 100, 0, 1);
    expect_images_fail(c, "n = 2^31 of 1x1, gzip", p, CNN_ERR_FORMAT,
                       "holds 100 bytes of pixels, header promises 2147483648");
    p = images_file(c, "images-2g-1x1-nosuffix", 0x803, big, 1, 1, 100, 0, 1);
    expect_images_fail(c, "n = 2^31 of 1x1, gzip without .gz", p, CNN_ERR_FORMAT,
                       "header promises 2147483648");
    p = images_file(c, "images-lying-big.gz", 0x803, 20000, 28, 28, 3000 * 784, 0, 1);
    expect_images_fail(c, "gzip, 3000 images under a header of 20000", p, CNN_ERR_FORMAT,
                       "holds 2352000 bytes of pixels, header promises 15680000");
    p = labels_file(c, "labels-2g", 0x801, big, good_labels, 3, 0, 0);
    expect_labels_fail(c, "n = 2^31, raw", p, 10, CNN_ERR_FORMAT,
                       "holds 3 labels, header promises 2147483648");
    p = labels_file(c, "labels-2g.gz", 0x801, big, good_labels, 3, 0, 1);
    expect_labels_fail(c, "n = 2^31, gzip", p, 10, CNN_ERR_FORMAT,
                       "holds 3 labels, header promises 2147483648");
}

static void test_trailing_and_labels(corpus *c)
{
    const char *p = images_file(c, "images-extra", 0x803, 3, 28, 28, 3 * 784, 5, 0);
    expect_images_fail(c, "5 extra bytes, raw", p, CNN_ERR_FORMAT, "has 5 extra bytes");
    p = images_file(c, "images-extra.gz", 0x803, 3, 28, 28, 3 * 784, 5, 1);
    expect_images_fail(c, "5 extra bytes, gzip", p, CNN_ERR_FORMAT, "has 5 extra bytes");
    p = images_file(c, "images-extra-1", 0x803, 3, 28, 28, 3 * 784, 1, 0);
    expect_images_fail(c, "1 extra byte, raw", p, CNN_ERR_FORMAT, "has 1 extra byte after");
    p = images_file(c, "images-extra-2m.gz", 0x803, 1, 28, 28, 784, 3u << 20, 1);
    expect_images_fail(c, "3 MiB of extra bytes, gzip (counted up to 1 MiB)", p,
                       CNN_ERR_FORMAT, "has at least 1048576 extra bytes");
    p = labels_file(c, "labels-extra", 0x801, 3, good_labels, 3, 2, 0);
    expect_labels_fail(c, "2 extra bytes, raw", p, 10, CNN_ERR_FORMAT, "has 2 extra bytes");
    p = labels_file(c, "labels-extra.gz", 0x801, 3, good_labels, 3, 2, 1);
    expect_labels_fail(c, "2 extra bytes, gzip", p, 10, CNN_ERR_FORMAT, "has 2 extra bytes");

    const uint8_t ten[3] = {1, 2, 10}, big[3] = {255, 0, 0};
    p = labels_file(c, "labels-10", 0x801, 3, ten, 3, 0, 0);
    expect_labels_fail(c, "label value 10", p, 10, CNN_ERR_FORMAT, "label 2 is 10");
    p = labels_file(c, "labels-255.gz", 0x801, 3, big, 3, 0, 1);
    expect_labels_fail(c, "label value 255, gzip", p, 10, CNN_ERR_FORMAT, "label 0 is 255");
    p = labels_file(c, "labels-7", 0x801, 3, good_labels, 3, 0, 0);
    expect_labels_fail(c, "label 7 with 5 classes", p, 5, CNN_ERR_FORMAT, "label 0 is 7");
    expect_labels_fail(c, "0 classes", p, 0, CNN_ERR_ARG, "classes");
}

/* Valid gzip framing around bad deflate data, and good files cut or damaged. */
static void test_bad_gzip(corpus *c)
{
    unsigned char junk[64] = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
    memset(junk + 10, 0xff, sizeof junk - 10); /* a final block of reserved type 3 */
    const char *p = write_file(c, "garbage-ff.gz", junk, sizeof junk, 0);
    expect_images_fail(c, "gzip header then 0xff bytes", p, CNN_ERR_FORMAT, "gzip data");
    expect_labels_fail(c, "gzip header then 0xff bytes", p, 10, CNN_ERR_FORMAT, "gzip data");
    memset(junk + 10, 0, sizeof junk - 10); /* a stored block whose lengths disagree */
    p = write_file(c, "garbage-00.gz", junk, sizeof junk, 0);
    expect_images_fail(c, "gzip header then zero bytes", p, CNN_ERR_FORMAT, "gzip data");
    p = write_file(c, "gzip-header-only", junk, 10, 0);
    expect_images_fail(c, "a bare 10-byte gzip header", p, CNN_ERR_FORMAT, "gzip data");
    p = write_file(c, "gzip-magic-only", junk, 2, 0);
    expect_images_fail(c, "the two gzip magic bytes alone", p, CNN_ERR_FORMAT, "");

    const char *good = images_file(c, "for-cutting.gz", 0x803, 40, 28, 28, 40 * 784, 0, 1);
    size_t len = 0;
    unsigned char *g = slurp(good, &len);
    if (!g || len < 40) {
        tap_ok(0, "cannot read back %s", good);
        free(g);
        return;
    }
    p = write_file(c, "cut-half.gz", g, len / 2, 0);
    expect_images_fail(c, "valid gzip cut in the middle", p, CNN_ERR_FORMAT,
                       "unexpected end of file");
    p = write_file(c, "cut-20.gz", g, 20, 0);
    expect_images_fail(c, "valid gzip cut after 20 bytes", p, CNN_ERR_FORMAT, "gzip data");
    p = write_file(c, "cut-trailer.gz", g, len - 8, 0);
    expect_images_fail(c, "valid gzip without its 8-byte trailer", p, CNN_ERR_FORMAT,
                       "unexpected end of file");
    g[len - 8] ^= 0x55;
    p = write_file(c, "bad-crc.gz", g, len, 0);
    expect_images_fail(c, "valid gzip with a wrong CRC", p, CNN_ERR_FORMAT, "incorrect data check");
    g[len - 8] ^= 0x55;
    g[len - 1] ^= 0x01;
    p = write_file(c, "bad-isize.gz", g, len, 0);
    expect_images_fail(c, "valid gzip with a wrong length", p, CNN_ERR_FORMAT,
                       "incorrect length check");
    g[len - 1] ^= 0x01;
    g[len / 2] ^= 0xff;
    p = write_file(c, "flipped.gz", g, len, 0);
    expect_images_fail(c, "valid gzip with one byte flipped mid-stream", p, CNN_ERR_FORMAT,
                       "gzip data");
    g[len / 2] ^= 0xff;

    /* A second gzip member holding extra bytes: zlib reads members back to back. */
    unsigned char *two = malloc(2 * len);
    if (two) {
        memcpy(two, g, len);
        memcpy(two + len, g, len);
        p = write_file(c, "two-members.gz", two, 2 * len, 0);
        expect_images_fail(c, "two concatenated gzip members", p, CNN_ERR_FORMAT,
                           "has 31376 extra bytes");
        free(two);
    }
    free(g);
}

static void test_not_files(corpus *c)
{
    const char *p = make_dir(c, "a-directory");
    if (p) {
        expect_images_fail(c, "a directory", p, CNN_ERR_IO, "is a directory");
        expect_labels_fail(c, "a directory", p, 10, CNN_ERR_IO, "is a directory");
    }
    p = new_path(c, "a-fifo", 0);
    if (p && mkfifo(p, 0600) == 0) /* gzopen would block on it forever */
        expect_images_fail(c, "a FIFO", p, CNN_ERR_IO, "not a regular file");
    else
        tap_ok(0, "mkfifo %s: %s", p ? p : "?", strerror(errno));
    struct stat sb;
    if (stat("/dev/null", &sb) == 0)
        expect_images_fail(c, "/dev/null", "/dev/null", CNN_ERR_IO, "not a regular file");
    /* a /proc file says it is empty, then delivers bytes: a size that changes as it is
     * read; the reader goes by the bytes it gets, and these are no IDX header */
    expect_images_fail(c, "a file that changes size while read", "/proc/self/status",
                       CNN_ERR_FORMAT, "magic");
    p = new_path(c, "no-such-file", 0);
    if (p) {
        expect_images_fail(c, "a missing file", p, CNN_ERR_IO, "No such file or directory");
        expect_labels_fail(c, "a missing file", p, 10, CNN_ERR_IO, "No such file or directory");
    }
    p = new_path(c, "no-such-dir/file", 0);
    if (p)
        expect_images_fail(c, "a file in a missing directory", p, CNN_ERR_IO, "No such file");
    p = write_file(c, "empty", "", 0, 0);
    expect_images_fail(c, "an empty file", p, CNN_ERR_FORMAT, "empty file");
    expect_labels_fail(c, "an empty file", p, 10, CNN_ERR_FORMAT, "empty file");
    p = write_file(c, "empty.gz", "", 0, 1);
    expect_images_fail(c, "an empty gzip stream", p, CNN_ERR_FORMAT, "truncated header");
}

/* Bad arguments, a short error buffer and err = NULL with errlen 0. */
static void test_arguments(corpus *c)
{
    char err[64];
    uint8_t *px;
    size_t n;
    int r, co;
    cnn_status st = cnn_idx_read_images(NULL, &px, &n, &r, &co, err, sizeof err);
    tap_ok(st == CNN_ERR_ARG && !px && n == 0, "images, NULL path: %s", err);
    st = cnn_idx_read_images(c->broken[0], NULL, &n, &r, &co, err, sizeof err);
    tap_ok(st == CNN_ERR_ARG, "images, NULL output: %s", err);
    uint8_t *lb;
    st = cnn_idx_read_labels(NULL, 10, &lb, &n, err, sizeof err);
    tap_ok(st == CNN_ERR_ARG && !lb && n == 0, "labels, NULL path: %s", err);

    /* An error message cut to fit its buffer, and no byte written past it. */
    char small[16];
    memset(small, '#', sizeof small);
    const char *missing = "/nonexistent/some/long/path/name";
    st = cnn_idx_read_images(missing, &px, &n, &r, &co, small, 10);
    tap_ok(st == CNN_ERR_IO && strlen(small) == 9 && small[10] == '#',
           "a 10-byte error buffer holds \"%s\", nothing written past it", small);
    memset(small, '#', sizeof small);
    st = cnn_idx_read_images(missing, &px, &n, &r, &co, small, 0);
    tap_ok(st != CNN_OK && small[0] == '#', "errlen 0: the buffer is untouched");
}

/* Every broken file again through the reader it breaks, with no error buffer (NULL,
 * and a buffer of length 0): no crash, a non-OK status, NULL outputs. */
static void test_corpus_quiet(corpus *c)
{
    size_t fails = 0;
    for (size_t i = 0; i < c->n_broken; i++)
        for (int pass = 0; pass < 2; pass++) {
            char untouched[4] = "abc";
            char *err = pass ? untouched : NULL;
            uint8_t *out = NULL;
            size_t n = 1;
            int r = 1, co = 1;
            cnn_status st;
            if (c->broken_for[i] == READ_IMAGES) {
                st = cnn_idx_read_images(c->broken[i], &out, &n, &r, &co, err, 0);
            } else {
                st = cnn_idx_read_labels(c->broken[i], 10, &out, &n, err, 0);
                r = co = 0;
            }
            if (st == CNN_OK || out || n || r || co || strcmp(untouched, "abc") != 0) {
                fails++;
                printf("# %s: %s reader gave %s\n", c->broken[i],
                       c->broken_for[i] == READ_IMAGES ? "image" : "label", cnn_status_str(st));
            }
            free(out);
        }
    tap_ok(fails == 0, "%zu broken files with err = NULL and errlen = 0: all fail cleanly",
           c->n_broken);
}

static void expect_mnist_ok(const char *what, const char *dir, const char *split)
{
    cnn_dataset d;
    char err[1024] = "";
    const cnn_status st = cnn_mnist_load(dir, split, &d, err, sizeof err);
    int ok = st == CNN_OK && d.n == 3 && d.rows == 28 && d.cols == 28 && d.pixels && d.labels &&
             memcmp(d.labels, good_labels, 3) == 0;
    for (size_t i = 0; ok && i < 3 * 784; i++)
        ok = d.pixels[i] == pixel_at(i);
    tap_ok(ok, "mnist, %s: %s %s", what, cnn_status_str(st), err);
    if (st == CNN_OK) {
        cnn_dataset_free(&d);
        tap_ok(!d.pixels && !d.labels && d.n == 0 && d.rows == 0,
               "cnn_dataset_free zeroes the set");
        cnn_dataset_free(&d); /* and is safe on a zeroed one */
    }
}

/* words: up to three strings the message must contain. */
static void expect_mnist_fail(const char *what, const char *dir, const char *split,
                              cnn_status want, const char *const words[3])
{
    int dummy;
    cnn_dataset d = {.n = 5, .rows = 5, .cols = 5, .pixels = (uint8_t *)&dummy,
                     .labels = (uint8_t *)&dummy};
    char err[1024];
    strcpy(err, "untouched");
    const cnn_status st = cnn_mnist_load(dir, split, &d, err, sizeof err);
    int ok = st == want && !d.pixels && !d.labels && d.n == 0 && d.rows == 0 && d.cols == 0 &&
             !strchr(err, '\n');
    for (int i = 0; i < 3; i++)
        if (words[i] && !strstr(err, words[i]))
            ok = 0;
    tap_ok(ok, "mnist, %s: [%s] %s", what, cnn_status_str(st), err);
    if (st == CNN_OK)
        cnn_dataset_free(&d);
    /* And once more without an error buffer. */
    cnn_dataset q;
    const cnn_status s2 = cnn_mnist_load(dir, split, &q, NULL, 0);
    tap_ok(s2 == want && !q.pixels && !q.labels && q.n == 0,
           "mnist, %s, err = NULL: %s", what, cnn_status_str(s2));
    if (s2 == CNN_OK)
        cnn_dataset_free(&q);
}

static void test_mnist(corpus *c)
{
    const char *d = make_dir(c, "mnist-train");
    if (!d)
        return;
    images_file(c, "mnist-train/train-images-idx3-ubyte", 0x803, 3, 28, 28, 3 * 784, 0, 0);
    labels_file(c, "mnist-train/train-labels-idx1-ubyte", 0x801, 3, good_labels, 3, 0, 0);
    expect_mnist_ok("train, raw, dashed names", d, "train");
    expect_mnist_fail("t10k asked, only train present", d, "t10k", CNN_ERR_IO,
                      (const char *const[3]){d, "no t10k images", "t10k-images.idx3-ubyte[.gz]"});
    char with_slash[600];
    snprintf(with_slash, sizeof with_slash, "%s/", d);
    expect_mnist_ok("train, directory given with a trailing slash", with_slash, "train");

    d = make_dir(c, "mnist-t10k");
    if (!d)
        return;
    images_file(c, "mnist-t10k/t10k-images.idx3-ubyte.gz", 0x803, 3, 28, 28, 3 * 784, 0, 1);
    labels_file(c, "mnist-t10k/t10k-labels.idx1-ubyte", 0x801, 3, good_labels, 3, 0, 0);
    expect_mnist_ok("t10k, dotted names, gzip images, raw labels", d, "t10k");

    /* The raw file wins over a broken .gz beside it. */
    d = make_dir(c, "mnist-prefer");
    if (!d)
        return;
    images_file(c, "mnist-prefer/train-images-idx3-ubyte", 0x803, 3, 28, 28, 3 * 784, 0, 0);
    write_file(c, "mnist-prefer/train-images-idx3-ubyte.gz", "junk", 4, 0);
    labels_file(c, "mnist-prefer/train-labels.idx1-ubyte.gz", 0x801, 3, good_labels, 3, 0, 1);
    expect_mnist_ok("raw images preferred to a broken .gz, dotted gzip labels", d, "train");

    d = make_dir(c, "mnist-mismatch");
    if (!d)
        return;
    const char *ip = images_file(c, "mnist-mismatch/train-images-idx3-ubyte", 0x803, 3, 28, 28,
                                 3 * 784, 0, 0);
    const char *lp = labels_file(c, "mnist-mismatch/train-labels-idx1-ubyte", 0x801, 2,
                                 good_labels, 2, 0, 0);
    expect_mnist_fail("3 images, 2 labels", d, "train", CNN_ERR_FORMAT,
                      (const char *const[3]){ip, lp, "3 images, but"});

    d = make_dir(c, "mnist-empty");
    if (!d)
        return;
    expect_mnist_fail("empty directory", d, "train", CNN_ERR_IO,
                      (const char *const[3]){d, "no train images",
                                             "train-images-idx3-ubyte[.gz]"});

    d = make_dir(c, "mnist-nolabels");
    if (!d)
        return;
    images_file(c, "mnist-nolabels/train-images-idx3-ubyte.gz", 0x803, 3, 28, 28, 3 * 784, 0, 1);
    expect_mnist_fail("images without labels", d, "train", CNN_ERR_IO,
                      (const char *const[3]){d, "no train labels",
                                             "train-labels.idx1-ubyte[.gz]"});

    d = make_dir(c, "mnist-badlabel");
    if (!d)
        return;
    images_file(c, "mnist-badlabel/train-images-idx3-ubyte", 0x803, 3, 28, 28, 3 * 784, 0, 0);
    lp = labels_file(c, "mnist-badlabel/train-labels-idx1-ubyte", 0x801, 3,
                     (const uint8_t[]){1, 12, 3}, 3, 0, 0);
    expect_mnist_fail("a label of 12", d, "train", CNN_ERR_FORMAT,
                      (const char *const[3]){lp, "label 1 is 12", NULL});

    d = make_dir(c, "mnist-badimages");
    if (!d)
        return;
    ip = images_file(c, "mnist-badimages/train-images-idx3-ubyte", 0x803, 3, 28, 28, 100, 0, 0);
    labels_file(c, "mnist-badimages/train-labels-idx1-ubyte", 0x801, 3, good_labels, 3, 0, 0);
    expect_mnist_fail("truncated images", d, "train", CNN_ERR_FORMAT,
                      (const char *const[3]){ip, "holds 100 bytes", NULL});

    d = make_dir(c, "mnist-dirnamed");
    if (!d)
        return;
    ip = make_dir(c, "mnist-dirnamed/train-images-idx3-ubyte");
    labels_file(c, "mnist-dirnamed/train-labels-idx1-ubyte", 0x801, 3, good_labels, 3, 0, 0);
    expect_mnist_fail("a directory named like the images", d, "train", CNN_ERR_IO,
                      (const char *const[3]){ip ? ip : "?", "is a directory", NULL});

    expect_mnist_fail("split \"test\"", c->dir, "test", CNN_ERR_ARG,
                      (const char *const[3]){"unknown split", "\"test\"", NULL});
    expect_mnist_fail("split \"\"", c->dir, "", CNN_ERR_ARG,
                      (const char *const[3]){"unknown split", NULL, NULL});
    const char *missing = new_path(c, "no-such-dir", 1);
    if (missing)
        expect_mnist_fail("a missing directory", missing, "train", CNN_ERR_IO,
                          (const char *const[3]){missing, "No such file or directory", NULL});
    expect_mnist_fail("a file given as the directory", c->made[0], "train",
                      CNN_ERR_IO, (const char *const[3]){"is not a directory", NULL, NULL});
    expect_mnist_fail("NULL directory", NULL, "train", CNN_ERR_ARG,
                      (const char *const[3]){NULL, NULL, NULL});

    cnn_dataset z = {0};
    cnn_dataset_free(&z);
    cnn_dataset_free(NULL);
    tap_ok(1, "cnn_dataset_free on a zeroed set and on NULL");
}

/* Remove everything created, deepest first; @return 0 when the directory is gone. */
static int cleanup(corpus *c)
{
    for (size_t i = c->n_made; i-- > 0;) {
        if (c->made_dir[i])
            rmdir(c->made[i]); /* may not exist (the "missing" paths) */
        else
            unlink(c->made[i]);
        free(c->made[i]);
    }
    return rmdir(c->dir);
}

int main(void)
{
    corpus *c = calloc(1, sizeof *c);
    if (!c)
        return 1;
    const char *tmp = getenv("TMPDIR");
    snprintf(c->dir, sizeof c->dir, "%s/cnn-test-idx-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(c->dir)) {
        tap_ok(0, "mkdtemp %s: %s", c->dir, strerror(errno));
        free(c);
        return tap_done();
    }
    printf("# corpus in %s\n", c->dir);

    test_good_files(c);
    test_truncated(c);
    test_headers(c);
    test_lying_headers(c);
    test_trailing_and_labels(c);
    test_bad_gzip(c);
    test_not_files(c);
    test_arguments(c);
    test_corpus_quiet(c);
    test_mnist(c);

    tap_ok(!c->full, "the test's path lists did not overflow");
    const int gone = cleanup(c) == 0;
    tap_ok(gone, "temporary directory %s removed", c->dir);
    free(c);
    return tap_done();
}
