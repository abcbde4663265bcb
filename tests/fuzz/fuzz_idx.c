/* fuzz_idx.c - libFuzzer target: the IDX image and label readers, raw or gzip. */
#include "fuzz_input.h"

#include "cnn.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], err[512];
    const int fd = fuzz_file(data, size, path, sizeof path);
    uint8_t *px = NULL, *labels = NULL;
    size_t n = 0;
    int rows = 0, cols = 0;
    if (cnn_idx_read_images(path, &px, &n, &rows, &cols, err, sizeof err) == CNN_OK) {
        if (!px || n == 0 || rows < 1 || cols < 1)
            abort();
        volatile uint8_t sink = px[n * (size_t)rows * (size_t)cols - 1]; /* all of it is ours */
        (void)sink;
    }
    free(px);
    if (cnn_idx_read_labels(path, 10, &labels, &n, err, sizeof err) == CNN_OK)
        for (size_t i = 0; i < n; i++)
            if (labels[i] > 9)
                abort();
    free(labels);
    close(fd);
    return 0;
}
