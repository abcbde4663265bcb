/* fuzz_onnx.c - libFuzzer target: the ONNX importer (cnn_onnx_import_mem) on any
 * bytes, and a forward pass of whatever model it builds, in both engines (the network
 * it read must run; its weights are finite but may be as large as a float goes, so
 * the loss may not be). */
#include "cnn.h"

#include <stdint.h>
#include <stdlib.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    cnn_model m = {0};
    if (cnn_onnx_import_mem(&m, data, size, "fuzz.onnx", err, sizeof err) != CNN_OK)
        return 0;
    const cnn_arch *n = &m.arch;
    size_t acts = (size_t)n->C * n->H * n->W;
    for (int l = 0; l < n->n; l++)
        acts += cnn_layer_out_len(&n->layer[l]) * (n->layer[l].kind == CNN_LAYER_CONV ? 10 : 1);
    if (m.n_params != n->n_params || m.norm.kind != CNN_NORM_UNIT)
        abort();
    if (acts <= 200000 && m.n_params <= 100000) {
        cnn_acts a;
        if (cnn_acts_alloc(&a, n, 1) != CNN_OK)
            abort();
        float *x = calloc((size_t)n->C * n->H * n->W, sizeof(float));
        for (int e = 0; e < 2; e++)
            (void)cnn_forward(&m, &a, x, 0, (cnn_engine)e);
        free(x);
        cnn_acts_free(&a);
    }
    cnn_model_free(&m);
    return 0;
}
