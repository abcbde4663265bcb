/* pgm.c - read one 8-bit PGM image (binary P5 or plain P2), strictly. */
#include "cnn.h"

#include "fileio.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define PGM_MAX_BYTES (64u << 20)

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

cnn_status cnn_pgm_read(const char *path, uint8_t **pixels, int *rows, int *cols, char *err,
                        size_t errlen)
{
    *pixels = NULL;
    *rows = *cols = 0;
    unsigned char *b;
    size_t n;
    cnn_status st = cnn_read_file(path, PGM_MAX_BYTES, &b, &n, err, errlen);
    if (st != CNN_OK)
        return st;
    uint8_t *px = NULL;
    if (n < 2 || b[0] != 'P' || (b[1] != '5' && b[1] != '2')) {
        st = cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: not a PGM image (no P5 or P2 magic)", path);
        goto out;
    }
    const int plain = b[1] == '2';
    size_t i = 2;
    long v[3];
    static const char *const field[3] = {"width", "height", "maxval"};
    for (int k = 0; k < 3; k++) {
        const size_t before = i;
        i = skip_space(b, n, i);
        v[k] = i > before ? number(b, n, &i) : -1;
        if (v[k] < 0) {
            st = cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: bad or missing %s in the PGM header",
                      path, field[k]);
            goto out;
        }
    }
    if (v[0] < 1 || v[0] > 4096 || v[1] < 1 || v[1] > 4096) {
        st = cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: unsupported size %ldx%ld", path, v[0], v[1]);
        goto out;
    }
    if (v[2] < 1 || v[2] > 255) {
        st = cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: maxval %ld: only 8-bit PGM (1..255) is read",
                  path, v[2]);
        goto out;
    }
    const size_t count = (size_t)v[0] * (size_t)v[1];
    px = malloc(count);
    if (!px) {
        st = cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", path);
        goto out;
    }
    if (!plain) {
        if (i >= n || !isspace(b[i])) {
            st = cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: no whitespace after the maxval", path);
            goto out;
        }
        i++;
        if (n - i != count) {
            st = cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: %s: %zu bytes of pixels for %ldx%ld", path,
                      n - i < count ? "truncated" : "trailing data", n - i, v[0], v[1]);
            goto out;
        }
        memcpy(px, b + i, count);
    } else {
        for (size_t k = 0; k < count; k++) {
            const size_t before = i;
            i = skip_space(b, n, i);
            const long p = (i > before || k == 0) && i < n ? number(b, n, &i) : -1;
            if (p < 0 || p > v[2]) {
                st = cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: pixel %zu is missing, not a number or above maxval %ld", path, k,
                          v[2]);
                goto out;
            }
            px[k] = (uint8_t)p;
        }
        if (skip_space(b, n, i) != n) {
            st = cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: trailing data after the pixels", path);
            goto out;
        }
    }
    if (v[2] != 255)
        for (size_t k = 0; k < count; k++)
            px[k] = (uint8_t)((px[k] * 255u + (unsigned)v[2] / 2) / (unsigned)v[2]);
    *pixels = px;
    *cols = (int)v[0];
    *rows = (int)v[1];
    px = NULL;
out:
    free(px);
    free(b);
    return st;
}
