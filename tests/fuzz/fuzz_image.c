/* fuzz_image.c - libFuzzer target: cnn_image_decode on the bytes themselves (PNG,
 * JPEG, PGM, PPM by content). A decoded image must have a shape in range, and its
 * last pixel must be there; a failure must leave the outputs cleared. */
#include "cnn.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    uint8_t *px = NULL;
    int channels = 0, rows = 0, cols = 0;
    char err[512];
    if (cnn_image_decode(data, size, "fuzz", &px, &channels, &rows, &cols, err, sizeof err) ==
        CNN_OK) {
        if ((channels != 1 && channels != 3) || rows < 1 || rows > CNN_IMAGE_MAX_SIDE ||
            cols < 1 || cols > CNN_IMAGE_MAX_SIDE)
            abort();
        volatile uint8_t sink = px[(size_t)channels * (size_t)rows * (size_t)cols - 1];
        (void)sink;
    } else if (px || channels || rows || cols) {
        abort();
    }
    free(px);
    return 0;
}
