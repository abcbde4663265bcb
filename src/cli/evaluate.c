/* evaluate.c - cnn eval and cnn predict. */
#include "cli.h"

/* ---------------------------------------------------------------- eval */

int cmd_eval(int argc, char **argv)
{
    const char *data = "data/mnist", *model_path = NULL;
    long threads = all_cores(), test_limit = 0;
    int engine = 0;
    const opt opts[] = {
        {"--model", OPT_STR, &model_path, 0, 0, NULL, "FILE", "the model to evaluate (required)"},
        {"--data", OPT_STR, &data, 0, 0, NULL, "DIR", "MNIST directory (default data/mnist)"},
        {"--test-limit", OPT_INT, &test_limit, 1, 1L << 40, NULL, "N",
         "evaluate the first N test images (default all)"},
        {"--threads", OPT_INT, &threads, 1, 1024, NULL, "N", "OpenMP threads (default: all cores)"},
        {"--engine", OPT_CHOICE, &engine, 0, 0, engines, "blas|reference",
         "im2col + BLAS (default) or the naive reference loops"},
        {NULL, 0, NULL, 0, 0, NULL, NULL, NULL},
    };
    int rc = parse_opts("eval", "--model FILE [options]", opts, argc, argv);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (!model_path) {
        fprintf(stderr, "%s: eval needs --model FILE\n", prog);
        return 2;
    }
    cnn_dataset te = {0};
    cnn_model model = {0};
    cnn_trainer *trainer = NULL;
    uint8_t *pred = NULL;
    size_t *conf = NULL; /* [classes][classes]: true class, predicted */
    if (load_model(model_path, &model))
        return 1;
    rc = 1;
    if (load_mnist(data, "t10k", test_limit, "--test-limit", &te))
        goto out;
    if (check_model_data(model_path, &model, &te))
        goto out;
    const int classes = model.arch.classes;
    cnn_train_config cfg = cnn_train_config_default();
    cfg.engine = (cnn_engine)engine;
    cfg.threads = (int)threads;
    pred = malloc(te.n);
    conf = calloc((size_t)classes * (size_t)classes, sizeof *conf);
    cnn_stats st = {0};
    if (!pred || !conf || cnn_trainer_create(&trainer, &model.arch, &cfg) != CNN_OK ||
        cnn_evaluate_u8(trainer, &model, te.pixels, te.labels, te.n, pred, &st) != CNN_OK) {
        fprintf(stderr, "%s: evaluation failed (out of memory)\n", prog);
        goto out;
    }
    printf("model: %s\ndata: %s: %zu test images\n", model_path, data, te.n);
    print_test(&st);
    for (size_t i = 0; i < te.n; i++)
        conf[(size_t)te.labels[i] * (size_t)classes + pred[i]]++;
    printf("Confusion matrix (rows: true class, columns: predicted):\n      ");
    for (int c = 0; c < classes; c++)
        printf("%6d", c);
    printf("\n");
    for (int r = 0; r < classes; r++) {
        printf("%6d", r);
        for (int c = 0; c < classes; c++)
            printf("%6zu", conf[(size_t)r * (size_t)classes + (size_t)c]);
        printf("\n");
    }
    rc = 0;
out:
    free(conf);
    free(pred);
    cnn_trainer_free(trainer);
    cnn_model_free(&model);
    cnn_dataset_free(&te);
    return rc;
}

/* ---------------------------------------------------------------- predict */

int cmd_predict(int argc, char **argv)
{
    const char *model_path = NULL, *pgm = NULL, *idx = NULL;
    long index = 0;
    int engine = 0;
    const opt opts[] = {
        {"--model", OPT_STR, &model_path, 0, 0, NULL, "FILE", "the model (required)"},
        {"--pgm", OPT_STR, &pgm, 0, 0, NULL, "FILE",
         "classify this PGM image (white digit on black, as MNIST)"},
        {"--idx", OPT_STR, &idx, 0, 0, NULL, "FILE", "or an image of this IDX image file"},
        {"--index", OPT_INT, &index, 0, 1L << 40, NULL, "N", "which image of --idx (default 0)"},
        {"--engine", OPT_CHOICE, &engine, 0, 0, engines, "blas|reference",
         "im2col + BLAS (default) or the naive reference loops"},
        {NULL, 0, NULL, 0, 0, NULL, NULL, NULL},
    };
    int rc = parse_opts("predict", "--model FILE (--pgm FILE | --idx FILE [--index N])", opts,
                        argc, argv);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (!model_path || !pgm == !idx) {
        fprintf(stderr, "%s: predict needs --model FILE and one of --pgm FILE or --idx FILE\n",
                prog);
        return 2;
    }
    char err[512];
    uint8_t *pixels = NULL;
    size_t n = 1;
    int rows = 0, cols = 0;
    cnn_status st = pgm ? cnn_pgm_read(pgm, &pixels, &rows, &cols, err, sizeof err)
                        : cnn_idx_read_images(idx, &pixels, &n, &rows, &cols, err, sizeof err);
    if (st != CNN_OK) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return 1;
    }
    cnn_model model = {0};
    cnn_acts acts = {0};
    float *x = NULL;
    rc = 1;
    if (idx && (size_t)index >= n) {
        fprintf(stderr, "%s: --index %ld is past the last image of %s (it holds %zu)\n", prog,
                index, idx, n);
        goto out;
    }
    /* PGM and IDX images are greyscale; the image, as a data set of one, unlabelled */
    const cnn_dataset image = {.channels = 1, .rows = rows, .cols = cols};
    if (load_model(model_path, &model) || check_model_data(model_path, &model, &image))
        goto out;
    const size_t len = cnn_dataset_image_len(&image);
    x = malloc(len * sizeof *x);
    if (!x || cnn_acts_alloc(&acts, &model.arch, 1) != CNN_OK) {
        fprintf(stderr, "%s: out of memory\n", prog);
        goto out;
    }
    cnn_pixels_to_float(x, pixels + (size_t)index * len, len);
    cnn_blas_setup();
    cnn_forward(&model, &acts, x, -1, (cnn_engine)engine);
    const int predicted = cnn_argmax(acts.probs, model.arch.classes);
    if (pgm)
        printf("image: %s\n", pgm);
    else
        printf("image: %s, index %ld\n", idx, index);
    printf("predicted class: %d\n", predicted);
    for (int c = 0; c < model.arch.classes; c++)
        printf("p(%d) = %.6f\n", c, (double)acts.probs[c]);
    rc = 0;
out:
    free(x);
    cnn_acts_free(&acts);
    cnn_model_free(&model);
    free(pixels);
    return rc;
}
