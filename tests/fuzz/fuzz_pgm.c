/* fuzz_pgm.c - libFuzzer target: the PGM reader. */
#include "fuzz_input.h"

#include "cnn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], err[512];
    const int fd = fuzz_file(data, size, path, sizeof path);
    uint8_t *px = NULL;
    int rows = 0, cols = 0;
    if (cnn_pgm_read(path, &px, &rows, &cols, err, sizeof err) == CNN_OK) {
        volatile uint8_t sink = px[(size_t)rows * (size_t)cols - 1];
        (void)sink;
    }
    free(px);
    close(fd);
    return 0;
}
