/* onnx.c - a saved model converted: cnn export and cnn import (as an ONNX file, and
 * back), cnn fold (its bn layers folded for inference). */
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

/* cnn import: an ONNX file (e.g. from torch.onnx.export) as a model file. */
int cmd_import(int argc, char **argv)
{
    const char *onnx_path = NULL, *save = NULL, *normalize = NULL;
    const opt opts[] = {
        {"--onnx", OPT_STR, &onnx_path, 0, 0, NULL, "IN", "the ONNX file to read (required)"},
        {"--save", OPT_STR, &save, 0, 0, NULL, "FILE", "the model file to write (required)"},
        {"--normalize", OPT_STR, &normalize, 0, 0, NULL, "unit|MEAN/STD",
         "how the network's inputs were made from pixels: px/255 - 0.5, or (px/255 - "
         "mean)/std per channel, e.g. 0.1307/0.3081 (default: the file's metadata, as cnn "
         "export writes it, else unit)"},
        {NULL, 0, NULL, 0, 0, NULL, NULL, NULL},
    };
    int rc = parse_opts("import", "--onnx IN.onnx --save FILE [--normalize unit|MEAN/STD]", opts,
                        argc, argv);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (!onnx_path || !save) {
        fprintf(stderr, "%s: import needs --onnx IN.onnx and --save FILE\n", prog);
        return 2;
    }
    if (normalize && strcmp(normalize, "dataset") == 0) {
        fprintf(stderr, "%s: --normalize dataset is for training: give the MEAN/STD the "
                "network was trained with\n", prog);
        return 2;
    }
    char err[512];
    cnn_model model = {0};
    if (cnn_onnx_import(&model, onnx_path, err, sizeof err) != CNN_OK) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return 1;
    }
    const cnn_dataset shape = {.format = CNN_DATA_IDX, .channels = model.arch.C};
    cnn_status st = CNN_ERR_ARG;
    if (!normalize || !choose_norm(normalize, &shape, &model.norm)) {
        st = cnn_model_save(&model, save, err, sizeof err);
        if (st != CNN_OK)
            fprintf(stderr, "%s: %s\n", prog, err);
    }
    if (st == CNN_OK) {
        char desc[CNN_ARCH_LEN];
        printf("imported %s: %s on %d x %d x %d inputs, %zu parameters; wrote %s\n", onnx_path,
               cnn_arch_describe(&model.arch, desc, sizeof desc), model.arch.C, model.arch.H,
               model.arch.W, model.n_params, save);
    }
    cnn_model_free(&model);
    return st == CNN_OK ? 0 : 1;
}

/* cnn fold: a model with its bn layers folded into the conv or dense layer before them. */
int cmd_fold(int argc, char **argv)
{
    const char *model_path = NULL, *save = NULL;
    const opt opts[] = {
        {"--model", OPT_STR, &model_path, 0, 0, NULL, "FILE", "the model to fold (required)"},
        {"--save", OPT_STR, &save, 0, 0, NULL, "OUT", "the folded model to write (required)"},
        {NULL, 0, NULL, 0, 0, NULL, NULL, NULL},
    };
    int rc = parse_opts("fold", "--model FILE --save OUT", opts, argc, argv);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (!model_path || !save) {
        fprintf(stderr, "%s: fold needs --model FILE and --save OUT\n", prog);
        return 2;
    }
    cnn_model model = {0}, folded = {0};
    if (load_model(model_path, &model))
        return 1;
    char err[512], from[CNN_ARCH_LEN], to[CNN_ARCH_LEN];
    cnn_status st = cnn_model_fold(&model, &folded);
    if (st != CNN_OK)
        fprintf(stderr, "%s: %s: cannot fold: %s\n", prog, model_path, cnn_status_str(st));
    else if ((st = cnn_model_save(&folded, save, err, sizeof err)) != CNN_OK)
        fprintf(stderr, "%s: %s\n", prog, err);
    else
        printf("folded %s (%s) into %s (%s)\n", model_path,
               cnn_arch_describe(&model.arch, from, sizeof from), save,
               cnn_arch_describe(&folded.arch, to, sizeof to));
    cnn_model_free(&folded);
    cnn_model_free(&model);
    return st == CNN_OK ? 0 : 1;
}
