/* main.c - the cnn program: train, eval, predict, export, import and fold (each in its
 * own file; the last three in onnx.c), dispatched here. */
#include "cli.h"

const char *prog = "cnn"; /* "cnn (rank 1 of 2)" when ranks train together */
cnn_core_report blas_core; /* how the OpenBLAS core was chosen, set first in main */

/* ---------------------------------------------------------------- main */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: %s COMMAND [options]\n"
            "\n"
            "Small CNNs on MNIST and Fashion-MNIST; by default the network of \"CNNs, Part 2\"\n"
            "(Conv3x3 x8 -> MaxPool2 -> Softmax). 'cnn train --help' shows --arch for others.\n"
            "\n"
            "commands:\n"
            "  train     train a network and test it (the post's output lines)\n"
            "  eval      test loss, accuracy and confusion matrix of a saved model\n"
            "  predict   classify one image (PNG, JPEG, PGM, PPM, or images of an IDX file)\n"
            "  export    write a saved model as an ONNX file\n"
            "  import    read an ONNX file (e.g. from torch.onnx.export) as a model file\n"
            "  fold      fold a saved model's bn layers into the layers before them\n"
            "\n"
            "'%s COMMAND --help' lists the options of a command; '%s --version'.\n"
            "\n"
            "OpenBLAS kernels: when the ones OpenBLAS picks fall short of this CPU (AVX-512\n"
            "or AVX2 unused), %s restarts itself once with OPENBLAS_CORETYPE set to the\n"
            "best core for it, after checking that core, and says so on the BLAS line.\n"
            "A user's OPENBLAS_CORETYPE is always kept; CNN_KEEP_BLAS_CORE=1 turns this off.\n",
            prog, prog, prog, prog);
}

int main(int argc, char **argv)
{
    cnn_core_autoselect(argv, &blas_core); /* may restart the program on a better core */
    if (argc < 2) {
        fprintf(stderr, "%s: missing command (see %s --help)\n", prog, prog);
        return 2;
    }
    const char *cmd = argv[1];
    if (strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0 || strcmp(cmd, "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(cmd, "--version") == 0) {
        printf("cnn %s\n", CNN_VERSION);
        return 0;
    }
    if (strcmp(cmd, "train") == 0)
        return cmd_train(argc - 2, argv + 2);
    if (strcmp(cmd, "eval") == 0)
        return cmd_eval(argc - 2, argv + 2);
    if (strcmp(cmd, "predict") == 0)
        return cmd_predict(argc - 2, argv + 2);
    if (strcmp(cmd, "export") == 0)
        return cmd_export(argc - 2, argv + 2);
    if (strcmp(cmd, "import") == 0)
        return cmd_import(argc - 2, argv + 2);
    if (strcmp(cmd, "fold") == 0)
        return cmd_fold(argc - 2, argv + 2);
    fprintf(stderr, "%s: unknown command '%s' (see %s --help)\n", prog, cmd, prog);
    return 2;
}
