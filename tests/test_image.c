/* test_image.c - the image readers (cnn_image_read, cnn_image_decode) against images
 * the test makes itself in a fresh temporary directory: PNG of every colour type and
 * bit depth (libspng's encoder), greyscale and colour JPEG (TurboJPEG), PGM and PPM
 * plain and binary at maxval 7, 255 and 65535. Every pixel that comes back is checked
 * against what was written, plane by plane ([channels][rows][cols]), and reading the
 * file gives what decoding its bytes gives. Broken input must fail with one line
 * naming the file: every prefix of a PNG and of a JPEG, corrupt chunks, lying sizes,
 * garbage, a CMYK JPEG, bad PNM headers and payloads, a directory, a FIFO. And
 * several threads decoding at once all get the same pixels. */
#include "cnn.h"

#include "check.h"

#include <dirent.h>
#include <pthread.h>
#include <spng.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <turbojpeg.h>
#include <unistd.h>
#include <zlib.h>

static char dir[256];

/* ---------------------------------------------------------------- files */

/* dir/name into path (PATH_LEN bytes). */
#define PATH_LEN 512
static char *in_dir(char *path, const char *name)
{
    snprintf(path, PATH_LEN, "%s/%s", dir, name);
    return path;
}

/* Write a file into the directory; @return its path (until the next call). */
static const char *put(const char *name, const void *data, size_t n)
{
    static char path[PATH_LEN];
    FILE *f = fopen(in_dir(path, name), "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0)
        tap_ok(0, "cannot write %s", path);
    return path;
}

/* Remove everything the test made (files, a FIFO, one empty directory). */
static void clean_dir(void)
{
    DIR *d = opendir(dir);
    struct dirent *e;
    char path[PATH_LEN];
    while (d && (e = readdir(d)))
        if (strcmp(e->d_name, ".") != 0 && strcmp(e->d_name, "..") != 0)
            remove(in_dir(path, e->d_name));
    if (d)
        closedir(d);
    rmdir(dir);
}

/* ---------------------------------------------------------------- pictures */

/* A sample of 0..maxval for channel s at (y, x): hashed, so neighbours, channels
 * and planes all differ. */
static unsigned pattern(int s, int y, int x, unsigned maxval)
{
    const uint32_t h = (uint32_t)(s * 89 + y * 37 + x * 53 + x * y * 7 + 1) * 2654435761u;
    return (h >> 8) % (maxval + 1);
}

/* What the readers make of v on 0..maxval. */
static uint8_t scaled(unsigned v, unsigned maxval)
{
    return (uint8_t)((v * 255u + maxval / 2) / maxval);
}

/* An expected image: [channels][rows][cols]. */
typedef struct picture {
    int channels, rows, cols;
    uint8_t px[3 * 64 * 64];
} picture;

static size_t at(const picture *p, int c, int y, int x)
{
    return ((size_t)c * p->rows + y) * p->cols + x;
}

/* ---------------------------------------------------------------- checks */

/* The first sample farther than tol from want, as "c y x got want"; "" if none. */
static void first_difference(const uint8_t *got, const picture *want, int tol, char *where,
                             size_t len)
{
    const size_t n = (size_t)want->channels * want->rows * want->cols;
    where[0] = 0;
    for (size_t i = 0; i < n; i++)
        if (abs((int)got[i] - (int)want->px[i]) > tol) {
            const size_t plane = (size_t)want->rows * want->cols;
            snprintf(where, len, "channel %zu row %zu col %zu is %d, wrote %d", i / plane,
                     i % plane / want->cols, i % want->cols, got[i], want->px[i]);
            return;
        }
}

/* Read the file and decode its bytes: both give want (within tol), and the same. */
static void expect(const char *what, const char *name, const void *bytes, size_t n,
                   const picture *want, int tol)
{
    const char *path = put(name, bytes, n);
    uint8_t *px = NULL, *px2 = NULL;
    int ch = 0, r = 0, c = 0, ch2 = 0, r2 = 0, c2 = 0;
    char err[512] = "", err2[512] = "", where[160] = "shape";
    const cnn_status st = cnn_image_read(path, &px, &ch, &r, &c, err, sizeof err);
    const int shaped = st == CNN_OK && ch == want->channels && r == want->rows && c == want->cols;
    if (shaped)
        first_difference(px, want, tol, where, sizeof where);
    tap_ok(shaped && !where[0], "%s: %dx%dx%d, every pixel within %d %s", what,
           want->channels, want->rows, want->cols, tol, st ? err : where);
    const cnn_status st2 =
        cnn_image_decode(bytes, n, path, &px2, &ch2, &r2, &c2, err2, sizeof err2);
    tap_ok(st == st2 && ch == ch2 && r == r2 && c == c2 &&
               (st || memcmp(px, px2, (size_t)ch * r * c) == 0) && strcmp(err, err2) == 0,
           "%s: cnn_image_read and cnn_image_decode agree", what);
    free(px);
    free(px2);
}

/* One failed call: not OK, outputs cleared, one line naming `name` and needle. */
static int refused(cnn_status st, const uint8_t *px, int ch, int r, int c, const char *err,
                   const char *name, const char *needle)
{
    return st != CNN_OK && px == NULL && ch == 0 && r == 0 && c == 0 && strstr(err, name) &&
           strstr(err, needle) && !strchr(err, '\n');
}

/* The file at path is refused by cnn_image_read. */
static void rejects_path(const char *what, const char *path, const char *needle)
{
    uint8_t *px = (uint8_t *)1;
    int ch = -1, r = -1, c = -1;
    char err[512] = "";
    const cnn_status st = cnn_image_read(path, &px, &ch, &r, &c, err, sizeof err);
    tap_ok(refused(st, px, ch, r, c, err, path, needle), "%s: %s", what, err);
}

/* These bytes are refused, read from a file and decoded from memory alike. */
static void rejects(const char *what, const char *name, const void *bytes, size_t n,
                    const char *needle)
{
    const char *path = put(name, bytes, n);
    rejects_path(what, path, needle);
    uint8_t *px = (uint8_t *)1;
    int ch = -1, r = -1, c = -1;
    char err[512] = "";
    const cnn_status st = cnn_image_decode(bytes, n, path, &px, &ch, &r, &c, err, sizeof err);
    tap_ok(refused(st, px, ch, r, c, err, path, needle), "%s, from memory: %s", what, err);
}

/* Every prefix of bytes (0..n-1 of them) is refused from memory. */
static void rejects_prefixes(const char *what, const uint8_t *bytes, size_t n)
{
    size_t k = 0;
    char err[512] = "";
    for (; k < n; k++) {
        uint8_t *px = (uint8_t *)1;
        int ch = -1, r = -1, c = -1;
        err[0] = 0;
        const cnn_status st =
            cnn_image_decode(bytes, k, "cut.img", &px, &ch, &r, &c, err, sizeof err);
        if (!refused(st, px, ch, r, c, err, "cut.img", ""))
            break;
    }
    tap_ok(k == n, "%s: every prefix of the %zu bytes is refused%s%s", what, n,
           k < n ? "; not this one: " : "", k < n ? err : "");
}

/* ---------------------------------------------------------------- PNG */

typedef struct png_case {
    const char *what;
    int color_type, depth, cols, rows;
} png_case;

static int png_samples(int color_type)
{
    switch (color_type) {
    case SPNG_COLOR_TYPE_GRAYSCALE_ALPHA:
        return 2;
    case SPNG_COLOR_TYPE_TRUECOLOR:
        return 3;
    case SPNG_COLOR_TYPE_TRUECOLOR_ALPHA:
        return 4;
    default:
        return 1;
    }
}

/* Sample i of a row as SPNG_FMT_PNG wants it: packed from the high bits below 8
 * bits, host-endian at 16. */
static void put_png_sample(uint8_t *row, size_t i, int depth, unsigned v)
{
    if (depth == 16) {
        const uint16_t h = (uint16_t)v;
        memcpy(row + 2 * i, &h, 2);
    } else if (depth == 8) {
        row[i] = (uint8_t)v;
    } else {
        const size_t per_byte = 8 / (size_t)depth;
        row[i / per_byte] |= (uint8_t)(v << (8 - depth * (int)(i % per_byte + 1)));
    }
}

/* A palette of distinct colours, as many as `depth` bits index (256 at most). */
static void make_palette(struct spng_plte *plte, int depth)
{
    plte->n_entries = depth < 8 ? 1u << depth : 256;
    for (uint32_t i = 0; i < plte->n_entries; i++)
        plte->entries[i] = (struct spng_plte_entry){(uint8_t)pattern(0, (int)i, 1, 255),
                                                    (uint8_t)pattern(1, (int)i, 2, 255),
                                                    (uint8_t)pattern(2, (int)i, 3, 255), 255};
}

static void palette_colour(picture *p, int y, int x, const struct spng_plte_entry *e)
{
    p->px[at(p, 0, y, x)] = e->red;
    p->px[at(p, 1, y, x)] = e->green;
    p->px[at(p, 2, y, x)] = e->blue;
}

/* The raw image of a case (*raw malloc'ed, *len bytes) and what should come back. */
static void png_picture(const png_case *k, const struct spng_plte *plte, uint8_t **raw,
                        size_t *len, picture *want)
{
    const int spp = png_samples(k->color_type);
    const unsigned maxval = (1u << k->depth) - 1;
    const size_t stride = ((size_t)k->cols * spp * k->depth + 7) / 8;
    const int indexed = k->color_type == SPNG_COLOR_TYPE_INDEXED;
    *len = stride * k->rows;
    *raw = calloc(1, *len);
    *want = (picture){spp >= 3 || indexed ? 3 : 1, k->rows, k->cols, {0}};
    if (!*raw)
        return;
    for (int y = 0; y < k->rows; y++)
        for (int x = 0; x < k->cols; x++)
            for (int s = 0; s < spp; s++) {
                const unsigned v = pattern(s, y, x, maxval);
                put_png_sample(*raw + stride * y, (size_t)x * spp + s, k->depth, v);
                if (indexed)
                    palette_colour(want, y, x, &plte->entries[v]);
                else if (s < want->channels)
                    want->px[at(want, s, y, x)] = scaled(v, maxval);
            }
}

/* A PNG of the raw image (malloc'ed; NULL on failure). */
static uint8_t *png_encode(const png_case *k, struct spng_plte *plte, const uint8_t *raw,
                           size_t len, size_t *size)
{
    spng_ctx *ctx = spng_ctx_new(SPNG_CTX_ENCODER);
    struct spng_ihdr ihdr = {(uint32_t)k->cols, (uint32_t)k->rows, (uint8_t)k->depth,
                             (uint8_t)k->color_type, 0, 0, 0};
    int e = spng_set_option(ctx, SPNG_ENCODE_TO_BUFFER, 1);
    if (!e)
        e = spng_set_ihdr(ctx, &ihdr);
    if (!e && k->color_type == SPNG_COLOR_TYPE_INDEXED)
        e = spng_set_plte(ctx, plte);
    if (!e)
        e = spng_encode_image(ctx, raw, len, SPNG_FMT_PNG, SPNG_ENCODE_FINALIZE);
    uint8_t *png = e ? NULL : spng_get_png_buffer(ctx, size, &e);
    spng_ctx_free(ctx);
    if (!png)
        tap_ok(0, "%s: libspng cannot encode it: %s", k->what, spng_strerror(e));
    return png;
}

/* Encode a case; *want what should come back. */
static uint8_t *make_png(const png_case *k, size_t *size, picture *want)
{
    struct spng_plte plte;
    make_palette(&plte, k->depth);
    uint8_t *raw;
    size_t len;
    png_picture(k, &plte, &raw, &len, want);
    uint8_t *png = raw ? png_encode(k, &plte, raw, len, size) : NULL;
    free(raw);
    return png;
}

static const png_case png_cases[] = {
    {"PNG grey 8-bit", SPNG_COLOR_TYPE_GRAYSCALE, 8, 5, 7},
    {"PNG grey 16-bit", SPNG_COLOR_TYPE_GRAYSCALE, 16, 7, 5},
    {"PNG grey 1-bit", SPNG_COLOR_TYPE_GRAYSCALE, 1, 11, 3},
    {"PNG grey 2-bit", SPNG_COLOR_TYPE_GRAYSCALE, 2, 9, 4},
    {"PNG grey 4-bit", SPNG_COLOR_TYPE_GRAYSCALE, 4, 3, 6},
    {"PNG grey+alpha 8-bit", SPNG_COLOR_TYPE_GRAYSCALE_ALPHA, 8, 5, 7},
    {"PNG grey+alpha 16-bit", SPNG_COLOR_TYPE_GRAYSCALE_ALPHA, 16, 6, 2},
    {"PNG RGB 8-bit", SPNG_COLOR_TYPE_TRUECOLOR, 8, 5, 7},
    {"PNG RGB 16-bit", SPNG_COLOR_TYPE_TRUECOLOR, 16, 4, 9},
    {"PNG RGBA 8-bit (alpha dropped)", SPNG_COLOR_TYPE_TRUECOLOR_ALPHA, 8, 5, 7},
    {"PNG RGBA 16-bit (alpha dropped)", SPNG_COLOR_TYPE_TRUECOLOR_ALPHA, 16, 7, 3},
    {"PNG palette 8-bit", SPNG_COLOR_TYPE_INDEXED, 8, 5, 7},
    {"PNG palette 4-bit", SPNG_COLOR_TYPE_INDEXED, 4, 9, 2},
    {"PNG palette 1-bit", SPNG_COLOR_TYPE_INDEXED, 1, 13, 3},
};

static void test_png(void)
{
    for (size_t i = 0; i < sizeof png_cases / sizeof *png_cases; i++) {
        static picture want;
        size_t size;
        uint8_t *png = make_png(&png_cases[i], &size, &want);
        if (png)
            expect(png_cases[i].what, "good.png", png, size, &want, 0);
        free(png);
    }
}

/* The chunk at byte `at` of a PNG gets its CRC made again (after an edit). */
static void png_fix_crc(uint8_t *png, size_t at)
{
    const uint32_t len = (uint32_t)png[at] << 24 | png[at + 1] << 16 | png[at + 2] << 8 |
                         png[at + 3];
    const uint32_t crc = (uint32_t)crc32(0, png + at + 4, 4 + len);
    for (int i = 0; i < 4; i++)
        png[at + 8 + len + i] = (uint8_t)(crc >> (24 - 8 * i));
}

/* A copy of the PNG whose IHDR says cols x rows (its CRC made to match). */
static void png_with_size(const uint8_t *png, size_t n, uint8_t *out, uint32_t cols,
                          uint32_t rows)
{
    memcpy(out, png, n);
    for (int i = 0; i < 4; i++) {
        out[16 + i] = (uint8_t)(cols >> (24 - 8 * i));
        out[20 + i] = (uint8_t)(rows >> (24 - 8 * i));
    }
    png_fix_crc(out, 8);
}

/* Where the first IDAT chunk starts. */
static size_t png_find_idat(const uint8_t *png, size_t n)
{
    for (size_t i = 8; i + 8 <= n; i++)
        if (memcmp(png + i + 4, "IDAT", 4) == 0)
            return i;
    return 0;
}

static void test_png_broken(void)
{
    picture want;
    size_t n;
    uint8_t *png = make_png(&png_cases[7], &n, &want), bad[4096];
    if (!png || n + 8 > sizeof bad) {
        free(png);
        return;
    }
    rejects_prefixes("PNG truncated", png, n);
    memcpy(bad, png, n);
    bad[29] ^= 1; /* the IHDR's CRC */
    rejects("PNG with a bad IHDR CRC", "crc.png", bad, n, "corrupt PNG");
    const size_t idat = png_find_idat(png, n);
    memcpy(bad, png, n);
    bad[idat + 12] ^= 0x40;
    rejects("PNG with a changed IDAT byte", "idat.png", bad, n, "corrupt PNG");
    png_fix_crc(bad, idat);
    rejects("PNG with a changed IDAT byte, its CRC made to match", "idat2.png", bad, n,
            "corrupt PNG");
    png_with_size(png, n, bad, 20000, 20000);
    rejects("PNG of 20000x20000", "big.png", bad, n, "size 20000x20000");
    png_with_size(png, n, bad, 100000, 1);
    rejects("PNG of 100000x1", "wide.png", bad, n, "size 100000x1");
    png_with_size(png, n, bad, 16384, 16384);
    rejects("PNG of 16384x16384 RGB (768 MiB)", "huge.png", bad, n, "limit");
    memcpy(bad, png, n);
    memcpy(bad + n, "trailing", 8);
    expect("PNG with bytes after IEND", "after.png", bad, n + 8, &want, 0);
    free(png);
}

/* ---------------------------------------------------------------- JPEG */

/* A picture whose channels differ widely: red high, green a ramp, blue low. */
static void jpeg_picture(picture *p, int channels, int rows, int cols)
{
    *p = (picture){channels, rows, cols, {0}};
    for (int y = 0; y < rows; y++)
        for (int x = 0; x < cols; x++) {
            p->px[at(p, 0, y, x)] = (uint8_t)(channels == 1 ? 20 + 9 * x + 5 * y : 230 - x - y);
            if (channels == 3) {
                p->px[at(p, 1, y, x)] = (uint8_t)(60 + 8 * x + 6 * y);
                p->px[at(p, 2, y, x)] = (uint8_t)(15 + x);
            }
        }
}

/* A JPEG of p at quality 100 (malloc'ed by TurboJPEG: tjFree), 4:4:4 or grey;
 * pixel_format TJPF_CMYK writes p's three planes and a fourth of 0 as CMYK. */
static uint8_t *make_jpeg(const picture *p, int pixel_format, unsigned long *size)
{
    const int spp = tjPixelSize[pixel_format];
    uint8_t src[4 * 64 * 64] = {0};
    for (int y = 0; y < p->rows; y++)
        for (int x = 0; x < p->cols; x++)
            for (int c = 0; c < p->channels; c++)
                src[((size_t)y * p->cols + x) * spp + c] = p->px[at(p, c, y, x)];
    tjhandle tj = tjInitCompress();
    uint8_t *jpeg = NULL;
    *size = 0;
    const int subsampling = p->channels == 1 ? TJSAMP_GRAY : TJSAMP_444;
    if (tjCompress2(tj, src, p->cols, 0, p->rows, pixel_format, &jpeg, size, subsampling, 100,
                    0) != 0) {
        tap_ok(0, "TurboJPEG cannot encode: %s", tjGetErrorStr2(tj));
        tjFree(jpeg);
        jpeg = NULL;
    }
    tjDestroy(tj);
    return jpeg;
}

/* Overwrite the entropy-coded data after the SOS header with garbage. */
static void jpeg_garble(uint8_t *jpeg, size_t n)
{
    size_t sos = 2;
    while (sos + 4 < n && !(jpeg[sos] == 0xff && jpeg[sos + 1] == 0xda))
        sos++;
    const size_t data = sos + 2 + ((size_t)jpeg[sos + 2] << 8 | jpeg[sos + 3]);
    uint32_t h = 12345;
    for (size_t i = data; i + 2 < n; i++) {
        h = h * 1103515245u + 12345u;
        jpeg[i] = (uint8_t)(h >> 16);
    }
}

static void test_jpeg(void)
{
    static picture grey, colour;
    jpeg_picture(&grey, 1, 7, 5);
    jpeg_picture(&colour, 3, 5, 7);
    unsigned long n;
    uint8_t *jpeg = make_jpeg(&grey, TJPF_GRAY, &n);
    if (jpeg)
        expect("JPEG greyscale (quality 100)", "grey.jpg", jpeg, n, &grey, 3);
    tjFree(jpeg);
    jpeg = make_jpeg(&colour, TJPF_RGB, &n);
    if (!jpeg)
        return;
    expect("JPEG colour 4:4:4 (quality 100), planes R, G, B", "colour.jpg", jpeg, n, &colour, 3);
    rejects_prefixes("JPEG truncated", jpeg, n);
    uint8_t bad[8192];
    if (n <= sizeof bad) {
        rejects("JPEG cut in its scan", "cut.jpg", jpeg, n - 40, "corrupt JPEG");
        memcpy(bad, jpeg, n);
        jpeg_garble(bad, n);
        rejects("JPEG with garbage after its header", "garbage.jpg", bad, n, "corrupt JPEG");
    }
    tjFree(jpeg);
    jpeg = make_jpeg(&colour, TJPF_CMYK, &n);
    if (jpeg)
        rejects("CMYK JPEG", "cmyk.jpg", jpeg, n, "CMYK");
    tjFree(jpeg);
}

/* ---------------------------------------------------------------- PNM */

typedef struct pnm_case {
    char magic; /* '2', '3', '5' or '6' */
    unsigned maxval;
    int cols, rows;
} pnm_case;

/* A PNM file of the case (into buf, @return its length) and what should come back. */
static size_t make_pnm(const pnm_case *k, uint8_t *buf, size_t cap, picture *want)
{
    const int channels = k->magic == '3' || k->magic == '6' ? 3 : 1;
    const int plain = k->magic == '2' || k->magic == '3';
    *want = (picture){channels, k->rows, k->cols, {0}};
    size_t n = (size_t)snprintf((char *)buf, cap, "P%c\n# made by test_image\n%d %d\n%u\n",
                                k->magic, k->cols, k->rows, k->maxval);
    for (int y = 0; y < k->rows; y++)
        for (int x = 0; x < k->cols; x++)
            for (int c = 0; c < channels; c++) {
                const unsigned v = pattern(c, y, x, k->maxval);
                want->px[at(want, c, y, x)] = scaled(v, k->maxval);
                if (plain)
                    n += (size_t)snprintf((char *)buf + n, cap - n, "%u%c", v,
                                          c + 1 < channels ? ' ' : '\n');
                else if (k->maxval > 255)
                    buf[n++] = (uint8_t)(v >> 8), buf[n++] = (uint8_t)v;
                else
                    buf[n++] = (uint8_t)v;
            }
    return n;
}

static void test_pnm(void)
{
    static const pnm_case cases[] = {
        {'5', 255, 5, 7}, {'5', 65535, 7, 3}, {'5', 7, 4, 6},   {'2', 255, 6, 5},
        {'2', 65535, 3, 8}, {'2', 7, 5, 7},   {'6', 255, 5, 7}, {'6', 65535, 7, 5},
        {'6', 7, 2, 9},   {'3', 255, 5, 7},   {'3', 65535, 9, 2}, {'3', 7, 5, 3},
    };
    static uint8_t buf[16384];
    static picture want;
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        const size_t n = make_pnm(&cases[i], buf, sizeof buf, &want);
        char what[64];
        snprintf(what, sizeof what, "P%c %dx%d maxval %u", cases[i].magic, cases[i].cols,
                 cases[i].rows, cases[i].maxval);
        expect(what, "good.pnm", buf, n, &want, 0);
    }
    /* The longest side there is. */
    const size_t n = (size_t)snprintf((char *)buf, 64, "P5 %d 1 255\n", CNN_IMAGE_MAX_SIDE);
    static uint8_t wide[64 + CNN_IMAGE_MAX_SIDE];
    memcpy(wide, buf, n);
    memset(wide + n, 7, CNN_IMAGE_MAX_SIDE);
    uint8_t *px = NULL;
    int ch, r, c;
    tap_ok(cnn_image_decode(wide, n + CNN_IMAGE_MAX_SIDE, "wide.pgm", &px, &ch, &r, &c, NULL,
                            0) == CNN_OK &&
               ch == 1 && r == 1 && c == CNN_IMAGE_MAX_SIDE && px[c - 1] == 7,
           "P5 of %dx1 loads", CNN_IMAGE_MAX_SIDE);
    free(px);
}

static void test_pnm_broken(void)
{
    rejects("PNM with a bad header", "h.ppm", "P6 x 5 255\n", 11, "width");
    rejects("PNM with no height", "h2.ppm", "P6 5", 4, "height");
    rejects("PGM with maxval 0", "z.pgm", "P5 2 2 0\n1234", 13, "maxval 0");
    rejects("PPM with maxval 65536", "m.ppm", "P6 1 1 65536\n123456", 19, "maxval 65536");
    rejects("PPM truncated", "t.ppm", "P6 2 2 255\n12345678901", 22, "truncated");
    rejects("PPM with trailing data", "x.ppm", "P6 1 1 255\n1234", 15, "trailing");
    rejects("16-bit PGM truncated", "t16.pgm", "P5 2 1 65535\n123", 16, "truncated");
    rejects("P5 sample above maxval 7", "a.pgm", "P5 2 1 7\n\x07\x08", 11, "pixel 1");
    rejects("P3 sample missing", "q.ppm", "P3 1 2 9\n1 2 3 4 5\n", 19, "pixel 1 (blue)");
    rejects("P3 sample above maxval", "v.ppm", "P3 1 1 9\n1 10 3\n", 16, "pixel 0 (green)");
    rejects("P2 truncated before allocating", "p.pgm", "P2 16384 16384 255\n1 2 3\n", 25,
            "truncated");
    rejects("PGM wider than the limit", "w.pgm", "P5 16385 1 255\n", 15, "size 16385x1");
}

/* ---------------------------------------------------------------- anything else */

static void test_not_images(void)
{
    rejects("empty file", "empty.png", "", 0, "empty file");
    rejects("1-byte file", "one.jpg", "\xff", 1, "truncated JPEG");
    rejects("a text file", "text.png", "hello, world\n", 13, "not a PNG, JPEG, PGM or PPM");
    uint8_t noise[1000];
    uint32_t h = 99;
    for (size_t i = 0; i < sizeof noise; i++)
        noise[i] = (uint8_t)((h = h * 1664525u + 1013904223u) >> 24);
    rejects("random bytes", "noise.jpg", noise, sizeof noise, "not a PNG");
    noise[0] = 0xff, noise[1] = 0xd8, noise[2] = 0xff;
    rejects("random bytes after a JPEG magic", "noise2.jpg", noise, sizeof noise, "JPEG");
    memcpy(noise, "\x89PNG\r\n\x1a\n", 8);
    rejects("random bytes after a PNG signature", "noise3.png", noise, sizeof noise, "PNG");
    char path[PATH_LEN];
    mkdir(in_dir(path, "adir"), 0700);
    rejects_path("a directory", path, "is a directory");
    mkfifo(in_dir(path, "fifo"), 0600);
    rejects_path("a FIFO (no hang)", path, "not a regular file");
    rejects_path("a missing file", in_dir(path, "none.png"), "No such file");
    uint8_t *px = (uint8_t *)1;
    int ch = 1, r = 1, c = 1;
    tap_ok(cnn_image_decode(NULL, 5, "x", &px, &ch, &r, &c, NULL, 0) == CNN_ERR_ARG &&
               px == NULL && ch == 0,
           "NULL data is an argument error");
}

/* ---------------------------------------------------------------- threads */

typedef struct decode_job {
    const uint8_t *bytes;
    size_t n;
    const uint8_t *want; /* the first decode's pixels */
    size_t len;
    int same;
} decode_job;

static void *decode_many(void *arg)
{
    decode_job *j = arg;
    j->same = 1;
    for (int i = 0; i < 40; i++) {
        uint8_t *px = NULL;
        int ch, r, c;
        char err[256];
        if (cnn_image_decode(j->bytes, j->n, "t", &px, &ch, &r, &c, err, sizeof err) ||
            (size_t)ch * r * c != j->len || memcmp(px, j->want, j->len) != 0)
            j->same = 0;
        free(px);
    }
    return NULL;
}

/* Several threads decode the same PNG and JPEG at once; each gets the same pixels. */
static void test_threads(void)
{
    picture want;
    size_t png_n;
    unsigned long jpeg_n;
    uint8_t *png = make_png(&png_cases[9], &png_n, &want);
    jpeg_picture(&want, 3, 5, 7);
    uint8_t *jpeg = make_jpeg(&want, TJPF_RGB, &jpeg_n);
    decode_job jobs[8];
    uint8_t *first[2] = {NULL, NULL};
    int ch, r, c, ok = png && jpeg;
    for (int k = 0; k < 2 && ok; k++) {
        const uint8_t *b = k ? jpeg : png;
        const size_t n = k ? jpeg_n : png_n;
        ok = cnn_image_decode(b, n, "t", &first[k], &ch, &r, &c, NULL, 0) == CNN_OK;
        for (int t = k; t < 8 && ok; t += 2)
            jobs[t] = (decode_job){b, n, first[k], (size_t)ch * r * c, 0};
    }
    pthread_t th[8];
    int started = 0;
    while (ok && started < 8 && pthread_create(&th[started], NULL, decode_many, &jobs[started]) == 0)
        started++;
    ok = ok && started == 8;
    for (int t = 0; t < started; t++) {
        pthread_join(th[t], NULL);
        ok = ok && jobs[t].same;
    }
    tap_ok(ok, "8 threads decoding a PNG and a JPEG at once get the same pixels");
    free(first[0]);
    free(first[1]);
    free(png);
    tjFree(jpeg);
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s/cnn-image-XXXXXX",
             getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) {
        printf("Bail out! cannot make a temporary directory\n");
        return 1;
    }
    test_png();
    test_png_broken();
    test_jpeg();
    test_pnm();
    test_pnm_broken();
    test_not_images();
    test_threads();
    clean_dir();
    return tap_done();
}
