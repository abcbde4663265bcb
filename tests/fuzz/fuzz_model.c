/* fuzz_model.c - libFuzzer target: the model-file and checkpoint loaders, and a
 * forward pass of whatever model loads (its shape must be usable). */
#include "fuzz_input.h"

#include "cnn.h"

#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], err[512];
    const int fd = fuzz_file(data, size, path, sizeof path);
    cnn_model m = {0};
    if (cnn_model_load(&m, path, err, sizeof err) == CNN_OK) {
        /* small shapes only: a forward pass of a valid model must work */
        if (cnn_shape_input_len(&m.shape) <= 4096 && cnn_shape_param_len(&m.shape) <= 100000) {
            cnn_acts a;
            if (cnn_acts_alloc(&a, &m.shape) != CNN_OK)
                abort();
            float *x = calloc(cnn_shape_input_len(&m.shape), sizeof(float));
            const float loss = cnn_forward(&m, &a, x, 0, CNN_ENGINE_REFERENCE);
            if (isnan(loss))
                abort(); /* finite parameters, zero input: a finite loss */
            free(x);
            cnn_acts_free(&a);
        }
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
