/* image.c - one image, PNG (libspng), JPEG (TurboJPEG) or PNM (PGM, PPM; parsed
 * here, and shared with cnn_pgm_read), recognised by its content and returned as
 * bytes in channel-planar order [channels][rows][cols].
 *
 * Every decoder ends the same way: it names its samples as they lie interleaved,
 * pixel by pixel (a decoder's output buffer, or a binary PNM's payload itself), and
 * to_planar picks the colour samples (an alpha sample is skipped), scales them to
 * 0..255 and lays them out plane by plane. Sizes are checked before any allocation;
 * each call has its own decoder state, so calls on different data may run at once. */
#include "cnn.h"

#include "fileio.h"

#include <ctype.h>
#include <spng.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <turbojpeg.h>

/* The largest file cnn_image_read reads. */
#define IMAGE_MAX_FILE ((size_t)64 << 20)
/* The most bytes a decoder may produce for one image (its interleaved output, alpha
 * and 16-bit samples included), checked before anything is allocated. */
#define IMAGE_MAX_DECODED ((uint64_t)256 << 20)
/* libspng's limits on a PNG's ancillary chunks (text, colour profiles): one chunk's
 * inflated size, and all of them kept at once. The image data is not held to them. */
#define PNG_MAX_CHUNK ((size_t)16 << 20)
#define PNG_MAX_CHUNK_CACHE ((size_t)64 << 20)

#ifndef TJFLAG_LIMITSCANS /* TurboJPEG before 2.1: no limit on a progressive JPEG's scans */
#define TJFLAG_LIMITSCANS 0
#endif

static const char *const not_an_image = "not a PNG, JPEG, PGM or PPM image";

/* A decoded image, as the entry points hand it back. */
typedef struct planar {
    uint8_t *pixels; /* malloc'ed, [channels][rows][cols] */
    int channels, rows, cols;
} planar;

/* Samples interleaved pixel by pixel. */
typedef struct interleaved {
    const uint8_t *at;
    int step;        /* samples per pixel, an alpha sample included */
    int wide;        /* 1: 16-bit big-endian samples; 0: one byte each */
    unsigned maxval; /* the value of full intensity: 255, 65535 or a PNM's maxval */
} interleaved;

/* ---------------------------------------------------------------- samples */

static unsigned get_sample(const interleaved *s, size_t k)
{
    if (!s->wide)
        return s->at[k];
    return (unsigned)s->at[2 * k] << 8 | s->at[2 * k + 1];
}

static void put_sample(uint8_t *at, size_t k, int wide, unsigned v)
{
    if (!wide) {
        at[k] = (uint8_t)v;
        return;
    }
    at[2 * k] = (uint8_t)(v >> 8);
    at[2 * k + 1] = (uint8_t)v;
}

/* Bytes of one pixel's samples. */
static unsigned pixel_bytes(const interleaved *s)
{
    return (unsigned)s->step * (s->wide ? 2u : 1u);
}

/* v of 0..maxval on 0..255, rounded to nearest (v itself when maxval is 255). */
static uint8_t to_byte(unsigned v, unsigned maxval)
{
    return (uint8_t)(((uint32_t)v * 255u + maxval / 2) / maxval);
}

/* Refuse sides outside 1..CNN_IMAGE_MAX_SIDE, and images whose decoding takes more
 * than IMAGE_MAX_DECODED bytes at bytes_per_pixel, before anything is allocated. */
static cnn_status check_size(const char *name, const char *format, long long cols,
                             long long rows, unsigned bytes_per_pixel, char *err, size_t errlen)
{
    if (cols < 1 || cols > CNN_IMAGE_MAX_SIDE || rows < 1 || rows > CNN_IMAGE_MAX_SIDE)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: unsupported %s size %lldx%lld (sides must be 1..%d)", name,
                          format, cols, rows, CNN_IMAGE_MAX_SIDE);
    const uint64_t bytes = (uint64_t)cols * (uint64_t)rows * bytes_per_pixel;
    if (bytes > IMAGE_MAX_DECODED)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: %s of %lldx%lld pixels takes %llu bytes decoded, more than the "
                          "limit of %llu",
                          name, format, cols, rows, (unsigned long long)bytes,
                          (unsigned long long)IMAGE_MAX_DECODED);
    return CNN_OK;
}

/* The colour samples of src (its first `channels` of each pixel) scaled to 0..255,
 * plane by plane, into out (allocated here). */
static cnn_status to_planar(const interleaved *src, int channels, int rows, int cols,
                            const char *name, planar *out, char *err, size_t errlen)
{
    const size_t plane = (size_t)rows * (size_t)cols;
    uint8_t *px = malloc((size_t)channels * plane);
    if (!px)
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory for %dx%dx%d pixels",
                          name, channels, rows, cols);
    for (int c = 0; c < channels; c++) {
        uint8_t *dst = px + (size_t)c * plane;
        for (size_t p = 0; p < plane; p++)
            dst[p] = to_byte(get_sample(src, p * (size_t)src->step + (size_t)c), src->maxval);
    }
    *out = (planar){px, channels, rows, cols};
    return CNN_OK;
}

/* An image into the callers' outputs (those not NULL); a zeroed one clears them. */
static void hand_out(const planar *p, uint8_t **pixels, int *channels, int *rows, int *cols)
{
    if (pixels)
        *pixels = p->pixels;
    if (channels)
        *channels = p->channels;
    if (rows)
        *rows = p->rows;
    if (cols)
        *cols = p->cols;
}

/* ---------------------------------------------------------------- PNG */

/* How a PNG is decoded: libspng's output format and what its pixels hold. Greyscale
 * of 1, 2 or 4 bits is unpacked and scaled by libspng (SPNG_FMT_G8), a palette
 * expanded (SPNG_FMT_RGB8); every other PNG comes as it is stored (SPNG_FMT_RAW:
 * 8-bit or big-endian 16-bit samples, alpha included), scaled here as a PNM is. */
typedef struct png_layout {
    int fmt;
    int channels; /* 1 greyscale, 3 colour */
    interleaved samples;
} png_layout;

static png_layout png_layout_of(const struct spng_ihdr *h)
{
    png_layout l = {SPNG_FMT_RAW, 3, {NULL, 3, h->bit_depth == 16, 255}};
    switch (h->color_type) {
    case SPNG_COLOR_TYPE_GRAYSCALE:
        l.channels = l.samples.step = 1;
        if (h->bit_depth < 8)
            l.fmt = SPNG_FMT_G8;
        break;
    case SPNG_COLOR_TYPE_GRAYSCALE_ALPHA:
        l.channels = 1;
        l.samples.step = 2;
        break;
    case SPNG_COLOR_TYPE_TRUECOLOR_ALPHA:
        l.samples.step = 4;
        break;
    case SPNG_COLOR_TYPE_INDEXED:
        l.fmt = SPNG_FMT_RGB8;
        break;
    default: /* SPNG_COLOR_TYPE_TRUECOLOR */
        break;
    }
    if (l.samples.wide)
        l.samples.maxval = 65535;
    return l;
}

/* One line for libspng's error e. */
static cnn_status png_error(int e, const char *name, char *err, size_t errlen)
{
    if (e == SPNG_EMEM)
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory decoding the PNG", name);
    return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: corrupt PNG (libspng: %s)", name,
                      spng_strerror(e));
}

static uint32_t get_be32(const uint8_t *p)
{
    return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* libspng refused the size (error e): say which, from the IHDR's bytes. */
static cnn_status png_side_error(int e, const uint8_t *data, size_t len, const char *name,
                                 char *err, size_t errlen)
{
    const cnn_status st = len >= 24 ? check_size(name, "PNG", get_be32(data + 16),
                                                 get_be32(data + 20), 1, err, errlen)
                                    : CNN_OK;
    return st != CNN_OK ? st : png_error(e, name, err, errlen);
}

/* 1 if the chunks after the signature lead to a whole IEND chunk. libspng 0.7.3 takes
 * a file that ends inside IEND's CRC; a file cut anywhere must not pass. */
static int png_has_iend(const uint8_t *data, size_t len)
{
    static const uint8_t iend[12] = {0, 0, 0, 0, 'I', 'E', 'N', 'D', 0xae, 0x42, 0x60, 0x82};
    size_t at = 8;
    while (len - at >= 12) {
        if (memcmp(data + at + 4, "IEND", 4) == 0)
            return memcmp(data + at, iend, sizeof iend) == 0;
        const uint32_t chunk_len = get_be32(data + at);
        if (chunk_len > len - at - 12)
            return 0;
        at += 12 + (size_t)chunk_len;
    }
    return 0;
}

/* Limits, the input and its header; @return libspng's error. */
static int png_start(spng_ctx *ctx, const uint8_t *data, size_t len, struct spng_ihdr *ihdr)
{
    int e = spng_set_image_limits(ctx, CNN_IMAGE_MAX_SIDE, CNN_IMAGE_MAX_SIDE);
    if (!e)
        e = spng_set_chunk_limits(ctx, PNG_MAX_CHUNK, PNG_MAX_CHUNK_CACHE);
    if (!e)
        e = spng_set_png_buffer(ctx, data, len);
    if (!e)
        e = spng_get_ihdr(ctx, ihdr);
    return e;
}

/* The header: libspng's checks, then the size's. */
static cnn_status png_header(spng_ctx *ctx, const uint8_t *data, size_t len, const char *name,
                             struct spng_ihdr *ihdr, png_layout *l, char *err, size_t errlen)
{
    const int e = png_start(ctx, data, len, ihdr);
    if (e == SPNG_EUSER_WIDTH || e == SPNG_EUSER_HEIGHT)
        return png_side_error(e, data, len, name, err, errlen);
    if (e)
        return png_error(e, name, err, errlen);
    *l = png_layout_of(ihdr);
    return check_size(name, "PNG", ihdr->width, ihdr->height, pixel_bytes(&l->samples), err,
                      errlen);
}

/* The image into *buf (malloc'ed, its decoded size), then the chunks after it: the
 * file must hold everything up to IEND. */
static cnn_status png_body(spng_ctx *ctx, const uint8_t *data, size_t len, const char *name,
                           const struct spng_ihdr *ihdr, const png_layout *l, uint8_t **buf,
                           char *err, size_t errlen)
{
    size_t size = 0;
    int e = spng_decoded_image_size(ctx, l->fmt, &size);
    if (!e && size != (size_t)ihdr->width * ihdr->height * pixel_bytes(&l->samples))
        e = SPNG_EINTERNAL;
    if (!e && !(*buf = malloc(size)))
        e = SPNG_EMEM;
    if (!e)
        e = spng_decode_image(ctx, *buf, size, l->fmt, 0);
    if (!e)
        e = spng_decode_chunks(ctx);
    if (e)
        return png_error(e, name, err, errlen);
    if (!png_has_iend(data, len))
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: truncated PNG (no complete IEND chunk)",
                          name);
    return CNN_OK;
}

static cnn_status png_decode(const uint8_t *data, size_t len, const char *name, planar *out,
                             char *err, size_t errlen)
{
    spng_ctx *ctx = spng_ctx_new(0);
    if (!ctx)
        return png_error(SPNG_EMEM, name, err, errlen);
    struct spng_ihdr ihdr = {0};
    png_layout l = {0};
    uint8_t *buf = NULL;
    cnn_status st = png_header(ctx, data, len, name, &ihdr, &l, err, errlen);
    if (st == CNN_OK)
        st = png_body(ctx, data, len, name, &ihdr, &l, &buf, err, errlen);
    if (st == CNN_OK) {
        l.samples.at = buf;
        st = to_planar(&l.samples, l.channels, (int)ihdr.height, (int)ihdr.width, name, out,
                       err, errlen);
    }
    free(buf);
    spng_ctx_free(ctx);
    return st;
}

/* ---------------------------------------------------------------- JPEG */

static cnn_status jpeg_error(tjhandle tj, const char *name, char *err, size_t errlen)
{
    return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: corrupt JPEG (%s)", name,
                      tjGetErrorStr2(tj));
}

/* Decode into *buf (malloc'ed), one byte per sample, cols x rows x channels. A
 * warning (data cut short, a corrupt segment) stops it and is an error: an image
 * libjpeg would fill in with grey must not pass for a good one. */
static cnn_status jpeg_pixels(tjhandle tj, const uint8_t *data, size_t len, int channels,
                              int rows, int cols, uint8_t **buf, const char *name, char *err,
                              size_t errlen)
{
    *buf = malloc((size_t)channels * (size_t)rows * (size_t)cols);
    if (!*buf)
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory for %dx%dx%d pixels",
                          name, channels, rows, cols);
    const int format = channels == 1 ? TJPF_GRAY : TJPF_RGB;
    const int flags = TJFLAG_STOPONWARNING | TJFLAG_LIMITSCANS;
    if (tjDecompress2(tj, data, (unsigned long)len, *buf, cols, 0, rows, format, flags) != 0 ||
        tjGetErrorCode(tj) == TJERR_WARNING)
        return jpeg_error(tj, name, err, errlen);
    return CNN_OK;
}

static cnn_status jpeg_decode(const uint8_t *data, size_t len, const char *name, planar *out,
                              char *err, size_t errlen)
{
    tjhandle tj = tjInitDecompress();
    if (!tj)
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: cannot start TurboJPEG (%s)", name,
                          tjGetErrorStr2(NULL));
    int cols = 0, rows = 0, subsampling = 0, colorspace = 0;
    uint8_t *buf = NULL;
    cnn_status st = CNN_OK;
    if (tjDecompressHeader3(tj, data, (unsigned long)len, &cols, &rows, &subsampling,
                            &colorspace) != 0)
        st = jpeg_error(tj, name, err, errlen);
    else if (colorspace == TJCS_CMYK || colorspace == TJCS_YCCK)
        st = cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                        "%s: a CMYK JPEG (only greyscale and colour JPEGs are read)", name);
    const int channels = colorspace == TJCS_GRAY ? 1 : 3;
    if (st == CNN_OK)
        st = check_size(name, "JPEG", cols, rows, (unsigned)channels, err, errlen);
    if (st == CNN_OK)
        st = jpeg_pixels(tj, data, len, channels, rows, cols, &buf, name, err, errlen);
    if (st == CNN_OK) {
        const interleaved samples = {buf, channels, 0, 255};
        st = to_planar(&samples, channels, rows, cols, name, out, err, errlen);
    }
    free(buf);
    tjDestroy(tj);
    return st;
}

/* ---------------------------------------------------------------- PNM */

/* What a PNM header says; the samples start at `at`. */
typedef struct pnm_header {
    int channels; /* 1: PGM (P2, P5); 3: PPM (P3, P6) */
    int plain;    /* 1: samples in decimal (P2, P3); 0: binary (P5, P6) */
    long cols, rows, maxval;
    size_t at;
} pnm_header;

/* Skip whitespace and '#' comments; @return the new position. */
static size_t skip_space(const unsigned char *b, size_t n, size_t i)
{
    while (i < n) {
        if (b[i] == '#')
            while (i < n && b[i] != '\n')
                i++;
        else if (isspace(b[i]))
            i++;
        else
            break;
    }
    return i;
}

/* Parse a decimal number of at most 9 digits at b[*i]; @return it, or -1. */
static long number(const unsigned char *b, size_t n, size_t *i)
{
    long v = 0;
    size_t start = *i;
    while (*i < n && isdigit(b[*i]) && *i - start < 9)
        v = v * 10 + (b[(*i)++] - '0');
    if (*i == start || (*i < n && isdigit(b[*i])))
        return -1;
    return v;
}

static const char *pnm_kind(int channels)
{
    return channels == 1 ? "PGM" : "PPM";
}

/* The magic, width, height and maxval (1..max_maxval), and the size checks. */
static cnn_status pnm_read_header(const unsigned char *b, size_t n, const char *name,
                                  unsigned max_maxval, pnm_header *h, char *err, size_t errlen)
{
    if (n < 2 || b[0] != 'P' || !(b[1] == '2' || b[1] == '3' || b[1] == '5' || b[1] == '6'))
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: not a PGM or PPM image (no P2, P3, P5 or P6 magic)", name);
    h->channels = b[1] == '3' || b[1] == '6' ? 3 : 1;
    h->plain = b[1] == '2' || b[1] == '3';
    long *field[3] = {&h->cols, &h->rows, &h->maxval};
    static const char *const field_name[3] = {"width", "height", "maxval"};
    size_t i = 2;
    for (int k = 0; k < 3; k++) {
        const size_t before = i;
        i = skip_space(b, n, i);
        *field[k] = i > before ? number(b, n, &i) : -1;
        if (*field[k] < 0)
            return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: bad or missing %s in the %s header",
                              name, field_name[k], pnm_kind(h->channels));
    }
    h->at = i;
    const cnn_status st = check_size(name, pnm_kind(h->channels), h->cols, h->rows,
                                     (unsigned)h->channels, err, errlen);
    if (st != CNN_OK)
        return st;
    if (h->maxval < 1 || h->maxval > (long)max_maxval)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: maxval %ld outside 1..%u", name,
                          h->maxval, max_maxval);
    return CNN_OK;
}

static size_t pnm_pixels(const pnm_header *h)
{
    return (size_t)h->cols * (size_t)h->rows;
}

/* "pixel 3 (green)": where sample k is, for the messages. */
static const char *sample_place(const pnm_header *h, size_t k, char *buf, size_t len)
{
    static const char *const rgb[3] = {" (red)", " (green)", " (blue)"};
    snprintf(buf, len, "pixel %zu%s", k / (size_t)h->channels,
             h->channels == 1 ? "" : rgb[k % 3]);
    return buf;
}

/* A binary payload, s: exactly the samples, none above maxval. */
static cnn_status pnm_check_binary(size_t n, const char *name, const pnm_header *h,
                                   const interleaved *s, char *err, size_t errlen)
{
    const size_t bytes = pnm_pixels(h) * pixel_bytes(s), have = n - h->at;
    if (have != bytes)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: %s: %zu bytes of pixels for %ldx%ld",
                          name, have < bytes ? "truncated" : "trailing data", have, h->cols,
                          h->rows);
    const unsigned largest = s->wide ? 65535u : 255u; /* what a sample can hold */
    char place[48];
    for (size_t k = 0; k < pnm_pixels(h) * (size_t)h->channels && s->maxval < largest; k++)
        if (get_sample(s, k) > s->maxval)
            return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: %s is above maxval %ld", name,
                              sample_place(h, k, place, sizeof place), h->maxval);
    return CNN_OK;
}

/* Decimal samples into binary ones as s lays them out (*out malloc'ed). */
static cnn_status pnm_parse_plain(const unsigned char *b, size_t n, const char *name,
                                  const pnm_header *h, const interleaved *s, uint8_t **out,
                                  char *err, size_t errlen)
{
    const size_t count = pnm_pixels(h) * (size_t)h->channels;
    size_t i = h->at;
    if (n - i < count) /* every sample takes a digit at least */
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: truncated: %zu bytes cannot hold the %zu samples of %ldx%ld",
                          name, n - i, count, h->cols, h->rows);
    uint8_t *samples = malloc(pnm_pixels(h) * pixel_bytes(s));
    if (!samples)
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", name);
    char place[48];
    for (size_t k = 0; k < count; k++) {
        const size_t before = i;
        i = skip_space(b, n, i);
        const long v = (i > before || k == 0) && i < n ? number(b, n, &i) : -1;
        if (v < 0 || v > h->maxval) {
            free(samples);
            return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                              "%s: %s is missing, not a number or above maxval %ld", name,
                              sample_place(h, k, place, sizeof place), h->maxval);
        }
        put_sample(samples, k, s->wide, (unsigned)v);
    }
    if (skip_space(b, n, i) != n) {
        free(samples);
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: trailing data after the pixels", name);
    }
    *out = samples;
    return CNN_OK;
}

static cnn_status pnm_decode(const uint8_t *b, size_t n, const char *name, unsigned max_maxval,
                             planar *out, char *err, size_t errlen)
{
    pnm_header h;
    cnn_status st = pnm_read_header(b, n, name, max_maxval, &h, err, errlen);
    if (st != CNN_OK)
        return st;
    interleaved s = {b, h.channels, h.maxval > 255, (unsigned)h.maxval};
    uint8_t *parsed = NULL;
    if (h.plain) {
        st = pnm_parse_plain(b, n, name, &h, &s, &parsed, err, errlen);
        s.at = parsed;
    } else if (h.at >= n || !isspace(b[h.at])) {
        st = cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: no whitespace after the maxval", name);
    } else {
        h.at++;
        s.at = b + h.at;
        st = pnm_check_binary(n, name, &h, &s, err, errlen);
    }
    if (st == CNN_OK)
        st = to_planar(&s, h.channels, (int)h.rows, (int)h.cols, name, out, err, errlen);
    free(parsed);
    return st;
}

cnn_status cnn_pnm_decode(const uint8_t *data, size_t len, const char *name,
                          unsigned max_maxval, uint8_t **pixels, int *channels, int *rows,
                          int *cols, char *err, size_t errlen)
{
    planar p = {0};
    const cnn_status st = pnm_decode(data, len, name, max_maxval, &p, err, errlen);
    hand_out(&p, pixels, channels, rows, cols);
    return st;
}

static cnn_status pnm_decode_any(const uint8_t *data, size_t len, const char *name,
                                 planar *out, char *err, size_t errlen)
{
    return pnm_decode(data, len, name, 65535, out, err, errlen);
}

/* ---------------------------------------------------------------- by content */

typedef cnn_status decode_fn(const uint8_t *data, size_t len, const char *name, planar *out,
                             char *err, size_t errlen);

static const struct image_format {
    const char *magic;
    size_t magic_len;
    const char *what;
    decode_fn *decode;
} image_formats[] = {
    {"\x89PNG\r\n\x1a\n", 8, "PNG", png_decode},
    {"\xff\xd8\xff", 3, "JPEG", jpeg_decode},
    {"P2", 2, "PGM", pnm_decode_any},
    {"P5", 2, "PGM", pnm_decode_any},
    {"P3", 2, "PPM", pnm_decode_any},
    {"P6", 2, "PPM", pnm_decode_any},
};

static cnn_status decode_by_content(const uint8_t *data, size_t len, const char *name,
                                    planar *out, char *err, size_t errlen)
{
    if (len == 0)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: empty file (%s)", name, not_an_image);
    const size_t n = sizeof image_formats / sizeof *image_formats;
    for (size_t f = 0; f < n; f++) {
        const struct image_format *fmt = &image_formats[f];
        const size_t have = len < fmt->magic_len ? len : fmt->magic_len;
        if (memcmp(data, fmt->magic, have) != 0)
            continue;
        if (have < fmt->magic_len)
            return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: truncated %s (%zu byte%s)", name,
                              fmt->what, len, len == 1 ? "" : "s");
        return fmt->decode(data, len, name, out, err, errlen);
    }
    return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: %s", name, not_an_image);
}

/* ---------------------------------------------------------------- entry points */

cnn_status cnn_image_decode(const uint8_t *data, size_t len, const char *name, uint8_t **pixels,
                            int *channels, int *rows, int *cols, char *err, size_t errlen)
{
    planar p = {0};
    hand_out(&p, pixels, channels, rows, cols);
    if ((!data && len) || !name || !pixels || !channels || !rows || !cols)
        return cnn_errorf(CNN_ERR_ARG, err, errlen, "cnn_image_decode: NULL argument");
    const cnn_status st = decode_by_content(data, len, name, &p, err, errlen);
    hand_out(&p, pixels, channels, rows, cols);
    return st;
}

cnn_status cnn_image_read(const char *path, uint8_t **pixels, int *channels, int *rows,
                          int *cols, char *err, size_t errlen)
{
    const planar none = {0};
    hand_out(&none, pixels, channels, rows, cols);
    if (!path || !pixels || !channels || !rows || !cols)
        return cnn_errorf(CNN_ERR_ARG, err, errlen, "cnn_image_read: NULL argument");
    unsigned char *b = NULL;
    size_t n = 0;
    cnn_status st = cnn_read_file(path, IMAGE_MAX_FILE, &b, &n, err, errlen);
    if (st == CNN_OK)
        st = cnn_image_decode(b, n, path, pixels, channels, rows, cols, err, errlen);
    free(b);
    return st;
}
