/* pgm.c - read one 8-bit PGM image (binary P5 or plain P2), strictly: the PNM parser
 * of image.c with maxval 1..255, and a colour (PPM) image refused. */
#include "cnn.h"

#include "fileio.h"

#include <stdlib.h>

#define PGM_MAX_BYTES (64u << 20)

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
    int channels = 0;
    st = cnn_pnm_decode(b, n, path, 255, pixels, &channels, rows, cols, err, errlen);
    free(b);
    if (st == CNN_OK && channels != 1) {
        free(*pixels);
        *pixels = NULL;
        *rows = *cols = 0;
        st = cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: not a PGM image (a colour PPM)", path);
    }
    return st;
}
