/* fuzz_onnx.c - libFuzzer target: the ONNX importer (cnn_onnx_import_mem) on any
 * bytes, and a forward pass of whatever model it builds, in both engines (the network
 * it read must run; its weights are finite but may be as large as a float goes, so
 * the loss may not be). */
#include "fuzz_input.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char err[512];
    cnn_model m = {0};
    if (cnn_onnx_import_mem(&m, data, size, "fuzz.onnx", err, sizeof err) != CNN_OK)
        return 0;
    if (m.norm.kind != CNN_NORM_UNIT)
        abort();
    fuzz_forward(&m, 0); /* weights may be as large as a float goes */
    cnn_model_free(&m);
    return 0;
}
