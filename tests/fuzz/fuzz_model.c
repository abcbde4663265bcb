/* fuzz_model.c - libFuzzer target: the model-file loader (both versions: the post's
 * network, and any network by its description) and the checkpoint loader (both
 * versions), and a forward pass of whatever model loads, in both engines (the
 * network it describes must run). */
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], err[512];
    const int fd = fuzz_file(data, size, path, sizeof path);
    cnn_model m = {0};
    if (cnn_model_load(&m, path, err, sizeof err) == CNN_OK) {
        if (!cnn_arch_equal(&m.arch, &m.arch))
            abort();
        fuzz_forward(&m, 1); /* finite parameters, zero input: a finite loss */
        cnn_model_free(&m);
    }
    cnn_checkpoint c;
    if (cnn_checkpoint_load(&c, path, err, sizeof err) == CNN_OK) {
        for (uint64_t i = 0; i < c.n; i++)
            if (c.order[i] >= c.n)
                abort();
        cnn_checkpoint_free(&c);
    }
    close(fd);
    return 0;
}
