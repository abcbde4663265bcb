/* fuzz_model.c - libFuzzer target: the model-file loader (both versions: the post's
 * network, and any network by its description) and the checkpoint loader (both
 * versions), and a forward pass of whatever model loads, in both engines (the
 * network it describes must run). */
#include "fuzz_input.h"

#include "cnn.h"

#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char path[64], err[512];
    const int fd = fuzz_file(data, size, path, sizeof path);
    cnn_model m = {0};
    if (cnn_model_load(&m, path, err, sizeof err) == CNN_OK) {
        /* small networks only: a forward pass of a valid model must work */
        const cnn_arch *n = &m.arch;
        size_t acts = (size_t)n->C * n->H * n->W;
        for (int l = 0; l < n->n; l++)
            acts += cnn_layer_out_len(&n->layer[l]) * (n->layer[l].kind == CNN_LAYER_CONV ? 10 : 1);
        if (!cnn_arch_equal(&m.arch, &m.arch) || m.n_params != n->n_params)
            abort();
        if (acts <= 200000 && m.n_params <= 100000) {
            cnn_acts a;
            if (cnn_acts_alloc(&a, n, 1) != CNN_OK)
                abort();
            float *x = calloc((size_t)n->C * n->H * n->W, sizeof(float));
            for (int e = 0; e < 2; e++) {
                const float loss = cnn_forward(&m, &a, x, 0, (cnn_engine)e);
                if (isnan(loss))
                    abort(); /* finite parameters, zero input: a finite loss */
            }
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
