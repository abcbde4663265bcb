/* onnx.c - cnn export: a saved model as an ONNX file. */
#include "cli.h"

int cmd_export(int argc, char **argv)
{
    const char *model_path = NULL, *onnx_path = NULL;
    const opt opts[] = {
        {"--model", OPT_STR, &model_path, 0, 0, NULL, "FILE", "the model to export (required)"},
        {"--onnx", OPT_STR, &onnx_path, 0, 0, NULL, "OUT",
         "the ONNX file to write, atomically (required)"},
        {NULL, 0, NULL, 0, 0, NULL, NULL, NULL},
    };
    int rc = parse_opts("export", "--model FILE --onnx OUT.onnx", opts, argc, argv);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (!model_path || !onnx_path) {
        fprintf(stderr, "%s: export needs --model FILE and --onnx OUT.onnx\n", prog);
        return 2;
    }
    cnn_model model = {0};
    if (load_model(model_path, &model))
        return 1;
    char err[512];
    const cnn_status st = cnn_onnx_export(&model, onnx_path, err, sizeof err);
    if (st == CNN_OK)
        printf("wrote %s (ONNX opset 13): input N x %d x %d x %d, output N x %d "
               "probabilities\n", onnx_path, model.arch.C, model.arch.H, model.arch.W,
               model.arch.classes);
    else
        fprintf(stderr, "%s: %s\n", prog, err);
    cnn_model_free(&model);
    return st == CNN_OK ? 0 : 1;
}
