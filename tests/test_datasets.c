/* test_datasets.c - the CIFAR-10 and image-folder loaders and cnn_dataset_load's
 * format detection, on files the test writes into a fresh temporary directory:
 * CIFAR batches whose red, green and blue planes differ (so the channel order shows),
 * image folders of PNG (libspng's encoder), PGM, PPM and JPEG (TurboJPEG) files, a
 * folder of 100,000 tiny images, and hostile layouts (wrong sizes, missing files, bad
 * names, links to nothing and link loops, a FIFO, folders where files belong, images
 * of another shape). Every pixel and label that comes back is checked; every failure
 * must leave the set zeroed and write one line naming the offending path. */
#define _XOPEN_SOURCE 700 /* nftw */
#include "cnn.h"

#include "check.h"
#include "config.h"

#include <errno.h>
#include <ftw.h>
#include <pthread.h>
#include <spng.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <turbojpeg.h>
#include <unistd.h>
#if HAVE_OPENMP
#include <omp.h>
#endif

#define CIFAR_IMAGE (3 * 32 * 32)
#define CIFAR_RECORD (1 + CIFAR_IMAGE)
#define RECORDS_PER_BATCH 3
#define JPEG_TOLERANCE 12

static char root[512];

/* ---------------------------------------------------------------- files */

/* root/rel in one of a few rotating buffers (several may be alive at once). */
static const char *full(const char *rel)
{
    static char buf[8][1024];
    static int next;
    char *p = buf[next++ % 8];
    snprintf(p, sizeof buf[0], "%s/%s", root, rel);
    return p;
}

/* mkdir -p root/rel. */
static void make_dirs(const char *rel)
{
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    for (char *s = p + strlen(root) + 1;; s++) {
        const char c = *s;
        if (c == '/' || c == '\0') {
            *s = '\0';
            if (mkdir(p, 0700) && errno != EEXIST)
                tap_ok(0, "mkdir %s: %s", p, strerror(errno));
            *s = c;
        }
        if (c == '\0')
            break;
    }
}

/* Write root/rel (its folders made first); @return its full path. */
static const char *put(const char *rel, const void *data, size_t len)
{
    char dir[1024];
    snprintf(dir, sizeof dir, "%s", rel);
    char *slash = strrchr(dir, '/');
    if (slash) {
        *slash = '\0';
        make_dirs(dir);
    }
    const char *p = full(rel);
    tap_write_file(p, data, len);
    return p;
}

static const char *put_text(const char *rel, const char *text)
{
    return put(rel, text, strlen(text));
}

static int remove_one(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb, (void)flag, (void)ftw;
    return remove(path);
}

/* ---------------------------------------------------------------- checks */

static int is_zeroed(const cnn_dataset *d)
{
    return d->n == 0 && !d->pixels && !d->labels && !d->names && d->n_names == 0 &&
           d->rows == 0 && d->cols == 0 && d->channels == 0;
}

/* A failure: not OK, the set zeroed, one line naming path and holding word. */
static void expect_fail(const char *what, cnn_status st, const cnn_dataset *d,
                        const char *err, const char *path, const char *word)
{
    const int ok = st != CNN_OK && is_zeroed(d) && strstr(err, path) &&
                   (!word || strstr(err, word)) && !strchr(err, '\n');
    tap_ok(ok, "%s: %s: %s", what, cnn_status_str(st), err);
    if (!ok)
        printf("# wanted the path %s%s%s\n", path, word ? " and " : "", word ? word : "");
}

static int names_are(const cnn_dataset *d, const char *const *want, int n)
{
    if (d->n_names != n)
        return 0;
    for (int k = 0; k < n; k++) {
        const char *got = cnn_dataset_class_name(d, k);
        if (!got || strcmp(got, want[k]) != 0)
            return 0;
    }
    return cnn_dataset_class_name(d, n) == NULL;
}

/* ---------------------------------------------------------------- CIFAR-10 */

/* Pixel (c, y, x) of CIFAR record r: the planes differ by 85 at every place. */
static uint8_t cifar_pixel(size_t r, int c, int y, int x)
{
    return (uint8_t)(r * 29 + (size_t)c * 85 + (size_t)y * 7 + (size_t)x * 3 + (size_t)(x * y));
}

static uint8_t cifar_label(size_t r) { return (uint8_t)(r * 3 % 10); }

/* A batch of `count` records, numbered from `first`, with label[r] (or cifar_label). */
static const char *cifar_batch(const char *rel, size_t first, size_t count,
                               const uint8_t *labels)
{
    unsigned char *b = malloc(count * CIFAR_RECORD + 1);
    if (!b)
        return "(no memory)";
    for (size_t i = 0; i < count; i++) {
        unsigned char *rec = b + i * CIFAR_RECORD;
        rec[0] = labels ? labels[i] : cifar_label(first + i);
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++)
                    rec[1 + c * 1024 + y * 32 + x] = cifar_pixel(first + i, c, y, x);
    }
    const char *p = put(rel, b, count * CIFAR_RECORD);
    free(b);
    return p;
}

static const char *const cifar_names[10] = {"airplane", "automobile", "bird", "cat", "deer",
                                            "dog", "frog", "horse", "ship", "truck"};

/* batches.meta.txt with CRLF line ends and blank lines after the names. */
static void cifar_meta(const char *dir)
{
    char text[512] = "", rel[256];
    for (int k = 0; k < 10; k++) {
        strcat(text, cifar_names[k]);
        strcat(text, "\r\n");
    }
    strcat(text, "\r\n\n  \n");
    snprintf(rel, sizeof rel, "%s/batches.meta.txt", dir);
    put_text(rel, text);
}

/* A whole CIFAR directory: five training batches and a test batch. */
static void cifar_dir(const char *dir)
{
    char rel[256];
    cifar_meta(dir);
    for (int b = 0; b < 5; b++) {
        snprintf(rel, sizeof rel, "%s/data_batch_%d.bin", dir, b + 1);
        cifar_batch(rel, (size_t)b * RECORDS_PER_BATCH, RECORDS_PER_BATCH, NULL);
    }
    snprintf(rel, sizeof rel, "%s/test_batch.bin", dir);
    cifar_batch(rel, 100, RECORDS_PER_BATCH, NULL);
}

/* Every pixel and label of a loaded set whose records are numbered from first. */
static int cifar_matches(const cnn_dataset *d, size_t n, size_t first)
{
    if (d->n != n || d->channels != 3 || d->rows != 32 || d->cols != 32 ||
        d->format != CNN_DATA_CIFAR || !names_are(d, cifar_names, 10))
        return 0;
    for (size_t i = 0; i < n; i++) {
        if (d->labels[i] != cifar_label(first + i))
            return 0;
        for (int c = 0; c < 3; c++)
            for (int y = 0; y < 32; y++)
                for (int x = 0; x < 32; x++)
                    if (d->pixels[i * CIFAR_IMAGE + (size_t)c * 1024 + (size_t)y * 32 + x] !=
                        cifar_pixel(first + i, c, y, x))
                        return 0;
    }
    return 1;
}

static void test_cifar_good(void)
{
    cifar_dir("cifar");
    cnn_dataset d;
    char err[1024] = "";
    cnn_status st = cnn_cifar10_load(full("cifar"), "train", &d, err, sizeof err);
    tap_ok(st == CNN_OK && cifar_matches(&d, 5 * RECORDS_PER_BATCH, 0),
           "CIFAR train: 5 batches of 3 records, every pixel (planes R, G, B), label and "
           "name: %s %s", cnn_status_str(st), err);
    cnn_dataset_free(&d);
    st = cnn_cifar10_load(full("cifar"), "test", &d, err, sizeof err);
    tap_ok(st == CNN_OK && cifar_matches(&d, RECORDS_PER_BATCH, 100),
           "CIFAR test: test_batch.bin, every pixel and label: %s %s", cnn_status_str(st), err);
    cnn_dataset_free(&d);
    st = cnn_cifar10_load(full("cifar"), "t10k", &d, err, sizeof err);
    tap_ok(st == CNN_ERR_ARG && is_zeroed(&d), "CIFAR: split t10k is an argument error: %s",
           err);
}

static void cifar_fails(const char *what, const char *dir, const char *split, const char *path,
                        const char *word)
{
    cnn_dataset d = {.n = 7};
    char err[1024] = "";
    const cnn_status st = cnn_cifar10_load(full(dir), split, &d, err, sizeof err);
    expect_fail(what, st, &d, err, path, word);
}

static void test_cifar_batches_broken(void)
{
    cifar_dir("c-size");
    const char *p = cifar_batch("c-size/test_batch.bin", 0, RECORDS_PER_BATCH, NULL);
    truncate(p, RECORDS_PER_BATCH * CIFAR_RECORD - 1);
    cifar_fails("CIFAR batch one byte short", "c-size", "test", p,
                "9218 bytes is not a whole number of 3,073-byte CIFAR-10 records");
    p = cifar_batch("c-size/data_batch_4.bin", 0, RECORDS_PER_BATCH, NULL);
    truncate(p, RECORDS_PER_BATCH * CIFAR_RECORD + 5);
    cifar_fails("CIFAR batch 5 bytes long", "c-size", "train", p, "not a whole number");
    p = put("c-size/test_batch.bin", "", 0);
    cifar_fails("CIFAR batch empty", "c-size", "test", p, "empty");

    cifar_dir("c-missing");
    p = full("c-missing/data_batch_3.bin");
    unlink(p);
    cifar_fails("CIFAR train without data_batch_3.bin", "c-missing", "train", p,
                "No such file");
    unlink(full("c-missing/test_batch.bin"));
    make_dirs("c-missing/test_batch.bin");
    cifar_fails("CIFAR test_batch.bin a directory", "c-missing", "test",
                full("c-missing/test_batch.bin"), "directory");

    cifar_dir("c-label");
    const uint8_t labels[3] = {2, 12, 0};
    p = cifar_batch("c-label/data_batch_2.bin", 0, 3, labels);
    cifar_fails("CIFAR label beyond the names", "c-label", "train", p, "record 1 has label 12");
    cifar_fails("CIFAR missing directory", "c-no-such-dir", "test", full("c-no-such-dir"),
                NULL);
}

static void test_cifar_fifo(void)
{
    cifar_dir("c-fifo");
    const char *p = full("c-fifo/test_batch.bin");
    unlink(p);
    if (mkfifo(p, 0600)) {
        tap_ok(0, "mkfifo %s: %s", p, strerror(errno));
        return;
    }
    alarm(20); /* a read that blocks on the FIFO ends the test here */
    cifar_fails("CIFAR test_batch.bin a FIFO (not opened for a blocking read)", "c-fifo",
                "test", p, "not a regular file");
    alarm(0);
}

/* One broken batches.meta.txt in a CIFAR directory of its own. */
static void meta_fails(const char *what, const char *dir, const void *text, size_t len,
                       const char *word)
{
    char rel[256];
    cifar_dir(dir);
    snprintf(rel, sizeof rel, "%s/batches.meta.txt", dir);
    const char *p = put(rel, text, len);
    cifar_fails(what, dir, "test", p, word);
}

static void test_cifar_meta(void)
{
    meta_fails("meta empty", "m-empty", "", 0, "no class names");
    meta_fails("meta only blank lines", "m-blank", "\n\r\n\n", 4, "no class names");
    char longname[256];
    snprintf(longname, sizeof longname, "cat\n%064d\ndog\n", 7);
    meta_fails("meta line of 64 bytes", "m-long", longname, strlen(longname),
               "line 2 is 64 bytes long");
    meta_fails("meta blank line between names", "m-gap", "cat\n\ndog\n", 9, "line 2 is blank");
    meta_fails("meta tab in a name", "m-tab", "cat\nhot\tdog\n", 12, "control character");
    meta_fails("meta CR inside a name", "m-cr", "cat\nhot\rdog\n", 12, "control character");
    meta_fails("meta NUL byte", "m-nul", "cat\ndo\0g\n", 9, "control character");
    char many[257 * 5 + 1] = "";
    for (int k = 0; k < 257; k++)
        snprintf(many + strlen(many), 6, "c%03d\n", k);
    meta_fails("meta of 257 names", "m-many", many, strlen(many), "more than 256");
    cifar_dir("m-missing");
    const char *p = full("m-missing/batches.meta.txt");
    unlink(p);
    cifar_fails("meta missing", "m-missing", "test", p, "No such file");

    /* the edge that passes: 63-byte names, 256 of them after one line without its LF */
    char *ok = malloc(256 * 64 + 1);
    for (int k = 0; ok && k < 256; k++)
        snprintf(ok + 64 * k, 65, "%063d\n", k);
    if (ok)
        ok[256 * 64 - 1] = '\0'; /* the last line has no line end */
    cifar_dir("m-edge");
    put("m-edge/batches.meta.txt", ok, ok ? strlen(ok) : 0);
    cnn_dataset d;
    char err[1024] = "";
    const cnn_status st = cnn_cifar10_load(full("m-edge"), "test", &d, err, sizeof err);
    const char *last = cnn_dataset_class_name(&d, 255);
    tap_ok(st == CNN_OK && d.n_names == 256 && last && strlen(last) == 63 &&
               atoi(last) == 255,
           "meta of 256 names of 63 bytes, the last without a line end: %s %s",
           cnn_status_str(st), err);
    cnn_dataset_free(&d);
    free(ok);
}

/* ---------------------------------------------------------------- images */

typedef enum image_kind {
    GREY_PNG,
    GREY_PGM,
    RGB_PNG,
    RGBA_PNG,
    RGB_PPM,
    RGB_JPEG,
} image_kind;

static int kind_channels(image_kind k) { return k == GREY_PNG || k == GREY_PGM ? 1 : 3; }

/* Pixel (c, y, x) of image `seed`: distinct planes, rows and columns. */
static uint8_t image_pixel(int seed, int c, int y, int x)
{
    return (uint8_t)(seed * 41 + c * 85 + y * 13 + x * 5 + x * y);
}

/* What a JPEG holds: smooth, so that a lossy round trip stays close. */
static uint8_t jpeg_pixel(int seed, int c, int y, int x)
{
    const int v = c == 0 ? 20 + 4 * x + seed : c == 1 ? 30 + 4 * y : 200 - 2 * (x + y);
    return (uint8_t)v;
}

static uint8_t pixel_of(image_kind k, int seed, int c, int y, int x)
{
    return k == RGB_JPEG ? jpeg_pixel(seed, c, y, x) : image_pixel(seed, c, y, x);
}

/* The image interleaved (rows of pixels of `stored` samples; a 4th is alpha). */
static uint8_t *interleaved(image_kind k, int seed, int w, int h, int stored)
{
    uint8_t *px = malloc((size_t)w * h * stored);
    for (int y = 0; px && y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < stored; c++)
                px[((size_t)y * w + x) * stored + c] =
                    c < 3 ? pixel_of(k, seed, c, y, x) : (uint8_t)(x * 50);
    return px;
}

static unsigned char *png_encode(const uint8_t *px, int w, int h, int stored, size_t *len)
{
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    if (!ctx)
        return NULL;
    struct spng_ihdr ihdr = {.width = (uint32_t)w, .height = (uint32_t)h, .bit_depth = 8};
    ihdr.color_type = stored == 1   ? SPNG_COLOR_TYPE_GRAYSCALE
                      : stored == 3 ? SPNG_COLOR_TYPE_TRUECOLOR
                                    : SPNG_COLOR_TYPE_TRUECOLOR_ALPHA;
    int rc = spng_set_ihdr(ctx, &ihdr);
    if (!rc)
        rc = spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
    if (!rc)
        rc = spng_encode_image(ctx, px, (size_t)w * h * stored, SPNG_FMT_PNG,
                               SPNG_ENCODE_FINALIZE);
    unsigned char *out = rc ? NULL : spng_get_png_buffer(ctx, len, &rc);
    spng_ctx_free(ctx);
    return out;
}

static unsigned char *netpbm_encode(const uint8_t *px, int w, int h, int stored, size_t *len)
{
    char head[64];
    const int hl = snprintf(head, sizeof head, "P%d\n%d %d\n255\n", stored == 1 ? 5 : 6, w, h);
    const size_t body = (size_t)w * h * stored;
    unsigned char *out = malloc((size_t)hl + body);
    if (!out)
        return NULL;
    memcpy(out, head, (size_t)hl);
    memcpy(out + hl, px, body);
    *len = (size_t)hl + body;
    return out;
}

static unsigned char *jpeg_encode(const uint8_t *px, int w, int h, size_t *len)
{
    tjhandle tj = tjInitCompress();
    unsigned char *jpeg = NULL, *out = NULL;
    unsigned long size = 0;
    if (tj && tjCompress2(tj, px, w, 0, h, TJPF_RGB, &jpeg, &size, TJSAMP_444, 100,
                          TJFLAG_ACCURATEDCT) == 0 && (out = malloc(size))) {
        memcpy(out, jpeg, size);
        *len = size;
    }
    tjFree(jpeg);
    if (tj)
        tjDestroy(tj);
    return out;
}

/* Write image `seed` of kind k, w x h, at root/rel; @return its full path. */
static const char *put_image(const char *rel, image_kind k, int seed, int w, int h)
{
    const int stored = k == RGBA_PNG ? 4 : kind_channels(k);
    uint8_t *px = interleaved(k, seed, w, h, stored);
    unsigned char *file = NULL;
    size_t len = 0;
    if (px && (k == GREY_PNG || k == RGB_PNG || k == RGBA_PNG))
        file = png_encode(px, w, h, stored, &len);
    else if (px && k == RGB_JPEG)
        file = jpeg_encode(px, w, h, &len);
    else if (px)
        file = netpbm_encode(px, w, h, stored, &len);
    const char *p = file ? put(rel, file, len) : "(not encoded)";
    if (!file)
        tap_ok(0, "cannot encode %s", rel);
    free(px);
    free(file);
    return p;
}

/* ---------------------------------------------------------------- good folders */

/* One file of a folder set, listed in the order the loader must return them. */
typedef struct image_spec {
    const char *rel; /* under the set's directory */
    image_kind kind;
    int seed, label;
} image_spec;

/* Class order is bytewise ("Dog" < "ant"), file order too ("10" < "9" < "a"); hidden
 * entries are skipped. */
static const image_spec grey_set[] = {
    {"train/Dog/10.png", GREY_PNG, 1, 0}, {"train/Dog/9.pgm", GREY_PGM, 2, 0},
    {"train/Dog/a.png", GREY_PNG, 3, 0},  {"train/ant/x.pgm", GREY_PGM, 4, 1},
    {"train/cat/B.pgm", GREY_PGM, 5, 2},  {"train/cat/a.png", GREY_PNG, 6, 2},
    {"train/cat/b", GREY_PNG, 7, 2},
};
static const char *const grey_names[3] = {"Dog", "ant", "cat"};

static const image_spec colour_set[] = {
    {"train/plane/1.png", RGB_PNG, 11, 0},  {"train/plane/2.ppm", RGB_PPM, 12, 0},
    {"train/ship/a.jpg", RGB_JPEG, 13, 1},  {"train/ship/b.png", RGBA_PNG, 14, 1},
    {"train/truck/z.ppm", RGB_PPM, 15, 2},
};
static const char *const colour_names[3] = {"plane", "ship", "truck"};

/* The test split of the colour set: two of the three classes. */
static const image_spec colour_test[] = {
    {"test/ship/c.png", RGB_PNG, 21, 1},
    {"test/truck/d.jpg", RGB_JPEG, 22, 2},
    {"test/truck/e.ppm", RGB_PPM, 23, 2},
};

static void put_set(const char *dir, const image_spec *s, size_t n, int w, int h)
{
    char rel[256];
    for (size_t i = 0; i < n; i++) {
        snprintf(rel, sizeof rel, "%s/%s", dir, s[i].rel);
        put_image(rel, s[i].kind, s[i].seed, w, h);
    }
}

/* Image i of d against its spec: exact, or within JPEG_TOLERANCE for a JPEG. */
static int image_matches(const cnn_dataset *d, size_t i, const image_spec *s)
{
    const size_t len = cnn_dataset_image_len(d);
    const uint8_t *px = d->pixels + i * len;
    const int tol = s->kind == RGB_JPEG ? JPEG_TOLERANCE : 0;
    for (int c = 0; c < d->channels; c++)
        for (int y = 0; y < d->rows; y++)
            for (int x = 0; x < d->cols; x++) {
                const int got = px[((size_t)c * d->rows + y) * d->cols + x];
                const int want = pixel_of(s->kind, s->seed, c, y, x);
                if (abs(got - want) > tol) {
                    printf("# image %zu (%s) (%d, %d, %d) is %d, expected %d\n", i, s->rel, c,
                           y, x, got, want);
                    return 0;
                }
            }
    return 1;
}

static int set_matches(const cnn_dataset *d, const image_spec *s, size_t n, int channels,
                       int w, int h)
{
    if (d->n != n || d->channels != channels || d->rows != h || d->cols != w ||
        d->format != CNN_DATA_FOLDER || !d->labels)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (d->labels[i] != s[i].label || !image_matches(d, i, &s[i]))
            return 0;
    return 1;
}

#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static void test_folder_grey(void)
{
    put_set("grey", grey_set, COUNT(grey_set), 5, 7);
    put_text("grey/train/cat/.DS_Store", "not an image");
    put_text("grey/train/.git/config", "not a class");
    cnn_dataset d;
    char err[1024] = "";
    const cnn_status st = cnn_folder_load(full("grey"), "train", NULL, &d, NULL, NULL, err,
                                          sizeof err);
    tap_ok(st == CNN_OK && set_matches(&d, grey_set, COUNT(grey_set), 1, 5, 7),
           "folder, greyscale PNG and PGM 5 wide, 7 high: every pixel and label, classes "
           "and files in bytewise order, hidden entries skipped: %s %s", cnn_status_str(st),
           err);
    tap_ok(st == CNN_OK && names_are(&d, grey_names, 3), "folder: class names Dog, ant, cat");
    cnn_dataset_free(&d);
}

static void test_folder_colour(void)
{
    put_set("colour", colour_set, COUNT(colour_set), 32, 32);
    put_set("colour", colour_test, COUNT(colour_test), 32, 32);
    cnn_dataset train, test;
    char err[1024] = "";
    cnn_status st = cnn_folder_load(full("colour"), "train", NULL, &train, NULL, NULL, err,
                                    sizeof err);
    tap_ok(st == CNN_OK && set_matches(&train, colour_set, COUNT(colour_set), 3, 32, 32) &&
               names_are(&train, colour_names, 3),
           "folder, colour 32x32 PNG, RGBA PNG (alpha dropped), PPM and JPEG: every pixel "
           "and label: %s %s", cnn_status_str(st), err);
    st = cnn_folder_load(full("colour"), "test", &train, &test, NULL, NULL, err, sizeof err);
    tap_ok(st == CNN_OK && set_matches(&test, colour_test, COUNT(colour_test), 3, 32, 32) &&
               names_are(&test, colour_names, 3),
           "folder test split of two classes: the training set's labels and names: %s %s",
           cnn_status_str(st), err);
    cnn_dataset_free(&test);
    /* without the training set, its own two folders are the classes */
    st = cnn_folder_load(full("colour"), "test", NULL, &test, NULL, NULL, err, sizeof err);
    tap_ok(st == CNN_OK && test.n == 3 && test.n_names == 2 && test.labels[0] == 0 &&
               test.labels[2] == 1,
           "folder test split alone: classes ship, truck as 0, 1: %s %s", cnn_status_str(st),
           err);
    cnn_dataset_free(&test);
    put_image("colour/test/zebra/z.png", RGB_PNG, 1, 32, 32);
    st = cnn_folder_load(full("colour"), "test", &train, &test, NULL, NULL, err, sizeof err);
    expect_fail("folder test class not in the training set", st, &test, err,
                full("colour/test/zebra"), "class 'zebra' is not in the training set");
    cnn_dataset_free(&train);
}

/* ---------------------------------------------------------------- progress and size */

typedef struct progress_log {
    size_t calls, last_done, last_total;
    int backwards, other_thread;
    pthread_t main;
} progress_log;

static void on_progress(size_t done, size_t total, void *ctx)
{
    progress_log *p = ctx;
    if (!pthread_equal(pthread_self(), p->main))
        p->other_thread = 1;
    if (done < p->last_done || done > total)
        p->backwards = 1;
    p->calls++;
    p->last_done = done, p->last_total = total;
}

#define MANY_CLASSES 10
#define MANY_PER_CLASS 10000 /* 100,000 files */

/* 100,000 2x2 PGM files in 10 classes, each image telling its class and index. */
static void test_folder_many(void)
{
    for (int c = 0; c < MANY_CLASSES; c++)
        for (int i = 0; i < MANY_PER_CLASS; i++) {
            char rel[128];
            snprintf(rel, sizeof rel, "many/train/c%d/%05d.pgm", c, i);
            const unsigned char pgm[] = {'P', '5', '\n', '2', ' ', '2', '\n', '2', '5', '5',
                                         '\n', (unsigned char)(i & 255),
                                         (unsigned char)(i >> 8), (unsigned char)c, 7};
            put(rel, pgm, sizeof pgm);
        }
    progress_log log = {.main = pthread_self()};
    cnn_dataset d;
    char err[1024] = "";
    const cnn_status st = cnn_folder_load(full("many"), "train", NULL, &d, on_progress, &log,
                                          err, sizeof err);
    int ok = st == CNN_OK && d.n == MANY_CLASSES * MANY_PER_CLASS && d.channels == 1 && d.rows == 2 &&
             d.cols == 2 && d.n_names == MANY_CLASSES;
    size_t per_class[MANY_CLASSES] = {0};
    for (size_t k = 0; ok && k < d.n; k++) {
        const uint8_t *px = d.pixels + 4 * k;
        const size_t i = k % MANY_PER_CLASS, c = k / MANY_PER_CLASS;
        ok = d.labels[k] == c && px[0] == (i & 255) && px[1] == (i >> 8) && px[2] == c &&
             px[3] == 7;
        per_class[d.labels[k] < MANY_CLASSES ? d.labels[k] : 0]++;
    }
    tap_ok(ok && per_class[0] == MANY_PER_CLASS && per_class[MANY_CLASSES - 1] == MANY_PER_CLASS,
           "folder of 100,000 2x2 PGM files in 10 classes: every label and pixel in order: %s %s",
           cnn_status_str(st), err);
    tap_ok(log.calls > 0 && log.last_done == d.n && log.last_total == d.n && !log.backwards &&
               !log.other_thread,
           "progress: %zu calls from the loading thread, never backwards, the last %zu of %zu",
           log.calls, log.last_done, log.last_total);
    cnn_dataset_free(&d);
}

/* ---------------------------------------------------------------- hostile folders */

static void folder_fails(const char *what, const char *dir, const char *split,
                         const cnn_dataset *classes_of, const char *path, const char *word)
{
    cnn_dataset d = {.n = 7};
    char err[1024] = "";
    alarm(20); /* a blocking open or read ends the test here */
    const cnn_status st = cnn_folder_load(full(dir), split, classes_of, &d, NULL, NULL, err,
                                          sizeof err);
    alarm(0);
    expect_fail(what, st, &d, err, path, word);
}

static void test_folder_files_broken(void)
{
    put_image("f-trunc/train/a/1.png", GREY_PNG, 1, 8, 8);
    const char *p = put_image("f-trunc/train/a/2.png", GREY_PNG, 2, 8, 8);
    struct stat sb;
    if (stat(p, &sb) == 0)
        truncate(p, sb.st_size / 2);
    folder_fails("folder: a truncated PNG", "f-trunc", "train", NULL, p, NULL);

    put_image("f-text/train/a/1.pgm", GREY_PGM, 1, 4, 4);
    p = put_text("f-text/train/a/notes.txt", "these are my cat pictures\n");
    folder_fails("folder: a text file in a class folder", "f-text", "train", NULL, p, NULL);

    put_image("f-empty/train/a/1.pgm", GREY_PGM, 1, 4, 4);
    make_dirs("f-empty/train/b");
    folder_fails("folder: an empty class folder", "f-empty", "train", NULL,
                 full("f-empty/train/b"), "empty class folder");

    put_image("f-loose/train/a/1.pgm", GREY_PGM, 1, 4, 4);
    p = put_text("f-loose/train/README", "a file beside the class folders\n");
    folder_fails("folder: a file directly in dir/train", "f-loose", "train", NULL, p,
                 "one folder per class");

    put_image("f-sub/train/a/1.pgm", GREY_PGM, 1, 4, 4);
    put_image("f-sub/train/a/more/2.pgm", GREY_PGM, 2, 4, 4);
    folder_fails("folder: a folder inside a class folder", "f-sub", "train", NULL,
                 full("f-sub/train/a/more"), "is a directory");
}

/* A file its reader may not open: as root (who reads everything), the load runs as
 * user nobody in a child, with the directories opened up to it. */
static void test_folder_unreadable(void)
{
    put_image("f-perm/train/a/1.pgm", GREY_PGM, 1, 4, 4);
    const char *p = put_image("f-perm/train/a/2.pgm", GREY_PGM, 2, 4, 4);
    chmod(p, 0);
    if (geteuid() != 0) {
        folder_fails("folder: an unreadable file", "f-perm", "train", NULL, p,
                     "Permission denied");
        return;
    }
    const char *dirs[] = {"", "f-perm", "f-perm/train", "f-perm/train/a"};
    for (size_t i = 0; i < sizeof dirs / sizeof *dirs; i++)
        chmod(full(dirs[i]), 0755);
    fflush(stdout);
    const pid_t pid = fork();
    if (pid == 0) {
        cnn_dataset d = {0};
        char err[1024] = "";
        if (setgid(65534) || setuid(65534))
            _exit(3);
        const cnn_status st = cnn_folder_load(full("f-perm"), "train", NULL, &d, NULL, NULL, err,
                                              sizeof err);
        _exit(st != CNN_OK && strstr(err, p) && strstr(err, "Permission denied") && !d.pixels
                  ? 0 : 1);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "folder: an unreadable file (as user nobody): one line naming it, 'Permission denied'");
}

static void test_folder_links(void)
{
    put_image("f-dangling/train/a/1.pgm", GREY_PGM, 1, 4, 4);
    const char *p = full("f-dangling/train/a/2.pgm");
    if (symlink("no-such-image.pgm", p))
        tap_ok(0, "symlink %s: %s", p, strerror(errno));
    folder_fails("folder: a dangling symbolic link", "f-dangling", "train", NULL, p,
                 "symbolic link to nothing");

    put_image("f-loop/train/a/1.pgm", GREY_PGM, 1, 4, 4);
    p = full("f-loop/train/a/loop_a");
    if (symlink("loop_b", p) || symlink("loop_a", full("f-loop/train/a/loop_b")))
        tap_ok(0, "symlink %s: %s", p, strerror(errno));
    folder_fails("folder: a symbolic link loop", "f-loop", "train", NULL, p, "loop");

    /* a link to an image is followed */
    put_image("f-link/train/a/1.pgm", GREY_PGM, 3, 4, 4);
    if (symlink("1.pgm", full("f-link/train/a/2.pgm")))
        tap_ok(0, "symlink: %s", strerror(errno));
    cnn_dataset d;
    char err[1024] = "";
    const cnn_status st = cnn_folder_load(full("f-link"), "train", NULL, &d, NULL, NULL, err,
                                          sizeof err);
    tap_ok(st == CNN_OK && d.n == 2 && memcmp(d.pixels, d.pixels + 16, 16) == 0,
           "folder: a symbolic link to an image is that image: %s %s", cnn_status_str(st), err);
    cnn_dataset_free(&d);

    put_image("f-fifo/train/a/1.pgm", GREY_PGM, 1, 4, 4);
    p = full("f-fifo/train/a/2.pgm");
    if (mkfifo(p, 0600))
        tap_ok(0, "mkfifo %s: %s", p, strerror(errno));
    folder_fails("folder: a FIFO in a class folder (never opened)", "f-fifo", "train", NULL, p,
                 "FIFO");
}

/* Files 0..n-1 of 2x2 PGMs in two classes, where file `odd` is 2x3 and file `odd2`
 * 1x2 and file `bad` undecodable: the error must name `odd`, the first, whatever the
 * threads' order. */
static void test_folder_shapes(void)
{
    enum { N = 400, ODD = 230, ODD2 = 260, BAD = 390 };
    char *odd = NULL, *first = NULL;
    for (int i = 0; i < N; i++) {
        char rel[128];
        snprintf(rel, sizeof rel, "f-shape/train/%s/%03d.pgm", i < N / 2 ? "a" : "b", i);
        const int w = i == ODD ? 3 : 2, h = i == ODD2 ? 1 : 2;
        const char *p = i == BAD ? put_text(rel, "P5\n2 2\n255\nxy")
                                 : put_image(rel, GREY_PGM, i, w, h);
        if (i == ODD)
            odd = strdup(p);
        if (i == 0)
            first = strdup(p);
    }
    if (!odd || !first) {
        tap_ok(0, "out of memory");
        free(odd);
        free(first);
        return;
    }
#if HAVE_OPENMP
    omp_set_num_threads(4);
#endif
    folder_fails("folder: an image of another size (the first one named, with both shapes)",
                 "f-shape", "train", NULL, odd, "1x2x3, the set's images are 1x2x2");
    cnn_dataset d = {0};
    char err[1024] = "";
    cnn_folder_load(full("f-shape"), "train", NULL, &d, NULL, NULL, err, sizeof err);
    tap_ok(strstr(err, first) != NULL, "... and the file whose shape is the set's: %s", first);
    free(odd);
    free(first);

    put_image("f-chan/train/a/1.pgm", GREY_PGM, 1, 6, 6);
    put_image("f-chan/train/a/2.pgm", GREY_PGM, 2, 6, 6);
    const char *p = put_image("f-chan/train/b/1.ppm", RGB_PPM, 3, 6, 6);
    put_image("f-chan/train/b/2.ppm", RGB_PPM, 4, 6, 6);
    folder_fails("folder: a colour image in a greyscale set", "f-chan", "train", NULL, p,
                 "3x6x6, the set's images are 1x6x6");
}

static void test_folder_layout(void)
{
    put_image("f-split/train/a/1.pgm", GREY_PGM, 1, 4, 4);
    folder_fails("folder: dir/test missing", "f-split", "test", NULL, full("f-split/test"),
                 "No such file");
    put_text("f-split/val", "not a folder");
    folder_fails("folder: dir/val a file", "f-split", "val", NULL, full("f-split/val"),
                 "not a directory");
    make_dirs("f-none/train/.hidden");
    folder_fails("folder: no class folders", "f-none", "train", NULL, full("f-none/train"),
                 "no class folders");

    char rel[256];
    snprintf(rel, sizeof rel, "f-longname/train/%064d/1.pgm", 5);
    put_image(rel, GREY_PGM, 1, 4, 4);
    folder_fails("folder: a class name of 64 bytes", "f-longname", "train", NULL,
                 full("f-longname/train/0000"), "64 bytes");
    put_image("f-ctrl/train/hot\tdog/1.pgm", GREY_PGM, 1, 4, 4);
    folder_fails("folder: a tab in a class name (shown as ?)", "f-ctrl", "train", NULL,
                 full("f-ctrl/train/hot?dog"), "control character (byte 0x09 at 4)");
    put_image("f-newline/train/two\nlines/1.pgm", GREY_PGM, 1, 4, 4);
    folder_fails("folder: a line end in a class name (the message stays one line)",
                 "f-newline", "train", NULL, full("f-newline/train/two?lines"),
                 "control character (byte 0x0a at 4)");

    for (int k = 0; k < 257; k++) {
        snprintf(rel, sizeof rel, "f-257/train/k%03d/1.pgm", k);
        put(rel, "P5\n1 1\n255\n\x01", 12);
    }
    folder_fails("folder: 257 classes", "f-257", "train", NULL, full("f-257/train"),
                 "257 class folders, at most 256");
}

/* ---------------------------------------------------------------- detection */

static void put_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24), p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8), p[3] = (unsigned char)v;
}

/* train-images-idx3-ubyte (2 images of 3x4) and train-labels-idx1-ubyte. */
static void idx_dir(const char *dir)
{
    unsigned char img[16 + 24], lab[8 + 2] = {0};
    put_be32(img, 0x803), put_be32(img + 4, 2), put_be32(img + 8, 3), put_be32(img + 12, 4);
    for (int i = 0; i < 24; i++)
        img[16 + i] = (unsigned char)(i * 10);
    put_be32(lab, 0x801), put_be32(lab + 4, 2);
    lab[8] = 4, lab[9] = 9;
    char rel[256];
    snprintf(rel, sizeof rel, "%s/train-images-idx3-ubyte", dir);
    put(rel, img, sizeof img);
    snprintf(rel, sizeof rel, "%s/train-labels-idx1-ubyte", dir);
    put(rel, lab, sizeof lab);
}

static void test_detection(void)
{
    idx_dir("idx");
    cnn_dataset d, train;
    char err[1024] = "";
    cnn_status st = cnn_dataset_load(full("idx"), "train", NULL, &d, NULL, NULL, err, sizeof err);
    tap_ok(st == CNN_OK && d.format == CNN_DATA_IDX && d.n == 2 && d.rows == 3 && d.cols == 4 &&
               d.labels[1] == 9 && d.pixels[23] == 230,
           "cnn_dataset_load: IDX files: %s %s", cnn_status_str(st), err);
    cnn_dataset_free(&d);
    st = cnn_dataset_load(full("cifar"), "test", NULL, &d, NULL, NULL, err, sizeof err);
    tap_ok(st == CNN_OK && cifar_matches(&d, RECORDS_PER_BATCH, 100),
           "cnn_dataset_load: CIFAR-10 batches: %s %s", cnn_status_str(st), err);
    cnn_dataset_free(&d);
    st = cnn_dataset_load(full("colour"), "train", NULL, &train, NULL, NULL, err, sizeof err);
    tap_ok(st == CNN_OK && set_matches(&train, colour_set, COUNT(colour_set), 3, 32, 32),
           "cnn_dataset_load: an image folder: %s %s", cnn_status_str(st), err);
    unlink(full("colour/test/zebra/z.png"));
    rmdir(full("colour/test/zebra"));
    st = cnn_dataset_load(full("colour"), "test", &train, &d, NULL, NULL, err, sizeof err);
    tap_ok(st == CNN_OK && set_matches(&d, colour_test, COUNT(colour_test), 3, 32, 32),
           "cnn_dataset_load: an image folder's test split with the training set's classes: "
           "%s %s", cnn_status_str(st), err);
    cnn_dataset_free(&d);
    cnn_dataset_free(&train);
}

/* No error buffer at all: the same failures, no crash. */
static void test_quiet(void)
{
    cnn_dataset d = {0};
    const cnn_status a = cnn_folder_load(full("f-shape"), "train", NULL, &d, NULL, NULL, NULL, 0);
    const cnn_status b = cnn_cifar10_load(full("c-label"), "train", &d, NULL, 0);
    const cnn_status c = cnn_folder_load(NULL, "train", NULL, &d, NULL, NULL, NULL, 0);
    tap_ok(a == CNN_ERR_FORMAT && b == CNN_ERR_FORMAT && c == CNN_ERR_ARG && is_zeroed(&d),
           "failures with err = NULL: %s, %s, %s", cnn_status_str(a), cnn_status_str(b),
           cnn_status_str(c));
}

int main(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(root, sizeof root, "%s/cnn-datasets-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(root)) {
        printf("Bail out! cannot make a temporary directory: %s\n", strerror(errno));
        return 1;
    }
    test_folder_unreadable(); /* first: it forks, and OpenMP's threads do not survive a fork */
    test_cifar_good();
    test_cifar_batches_broken();
    test_cifar_fifo();
    test_cifar_meta();
    test_folder_grey();
    test_folder_colour();
    test_folder_many();
    test_folder_files_broken();
    test_folder_links();
    test_folder_shapes();
    test_folder_layout();
    test_detection();
    test_quiet();
    if (nftw(root, remove_one, 16, FTW_DEPTH | FTW_PHYS))
        tap_ok(0, "cannot remove %s: %s", root, strerror(errno));
    return tap_done();
}
