/* evaluate.c - cnn eval and cnn predict. */
#include "cli.h"

/* ---------------------------------------------------------------- eval */

/* Rows: the true class (its name when the model has names), columns: predicted. */
static void print_confusion(const cnn_model *m, const size_t *conf)
{
    const int classes = m->arch.classes;
    int width = 6;
    for (int k = 0; k < classes && m->names; k++) {
        const int len = (int)strlen(cnn_model_class_name(m, k)) + 4;
        width = len > width ? (len < 24 ? len : 24) : width;
    }
    printf("Confusion matrix (rows: true class, columns: predicted):\n%*s", width, "");
    for (int c = 0; c < classes; c++)
        printf("%6d", c);
    printf("\n");
    for (int r = 0; r < classes; r++) {
        if (m->names)
            printf("%3d %-*.*s", r, width - 4, width - 4, cnn_model_class_name(m, r));
        else
            printf("%6d", r);
        for (int c = 0; c < classes; c++)
            printf("%6zu", conf[(size_t)r * (size_t)classes + (size_t)c]);
        printf("\n");
    }
}

int cmd_eval(int argc, char **argv)
{
    const char *data = "data/mnist", *model_path = NULL;
    long threads = all_cores(), test_limit = 0;
    int engine = 0;
    const opt opts[] = {
        {"--model", OPT_STR, &model_path, 0, 0, NULL, "FILE", "the model to evaluate (required)"},
        {"--data", OPT_STR, &data, 0, 0, NULL, "DIR",
         "its test split: MNIST-style IDX files, CIFAR-10 batches or a test/ folder of class "
         "folders (default data/mnist)"},
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
    /* an image folder's classes are the model's, when it has names */
    const cnn_dataset classes_of = {.n_names = model.names ? model.arch.classes : 0,
                                    .names = model.names};
    if (load_data(data, "test", model.names ? &classes_of : NULL, test_limit, "--test-limit",
                  &te))
        goto out;
    if (check_model_data(model_path, &model, &te, data))
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
    print_confusion(&model, conf);
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

/* One image's prediction: with a name (the file), its lines for a reader (the image,
 * the class, every probability, with names); without, one line for a program (the
 * index, the class, every probability in %.9g). */
static void print_prediction(const cnn_model *m, const float *probs, const char *file,
                             long index)
{
    const int K = m->arch.classes, predicted = cnn_argmax(probs, K);
    if (!file) {
        printf("%ld %d", index, predicted);
        for (int c = 0; c < K; c++)
            printf(" %.9g", (double)probs[c]);
        printf("\n");
        return;
    }
    if (index >= 0)
        printf("image: %s, index %ld\n", file, index);
    else
        printf("image: %s\n", file);
    const char *name = cnn_model_class_name(m, predicted);
    printf("predicted class: %d%s%s%s\n", predicted, name ? " (" : "", name ? name : "",
           name ? ")" : "");
    for (int c = 0; c < K; c++) {
        name = cnn_model_class_name(m, c);
        printf("p(%d) = %.6f%s%s\n", c, (double)probs[c], name ? " " : "", name ? name : "");
    }
}

int cmd_predict(int argc, char **argv)
{
    const char *model_path = NULL, *pgm = NULL, *idx = NULL, *image_path = NULL;
    long index = 0, count = 0;
    int engine = 0;
    const opt opts[] = {
        {"--model", OPT_STR, &model_path, 0, 0, NULL, "FILE", "the model (required)"},
        {"--image", OPT_STR, &image_path, 0, 0, NULL, "FILE",
         "classify this PNG, JPEG, PGM or PPM image, of the model's input size"},
        {"--pgm", OPT_STR, &pgm, 0, 0, NULL, "FILE",
         "classify this PGM image (white digit on black, as MNIST)"},
        {"--idx", OPT_STR, &idx, 0, 0, NULL, "FILE", "or an image of this IDX image file"},
        {"--index", OPT_INT, &index, 0, 1L << 40, NULL, "N", "which image of --idx (default 0)"},
        {"--count", OPT_INT, &count, 1, 1L << 40, NULL, "N",
         "classify N images of --idx from --index: a line each, the index, the class and "
         "every probability (%.9g)"},
        {"--engine", OPT_CHOICE, &engine, 0, 0, engines, "blas|reference",
         "im2col + BLAS (default) or the naive reference loops"},
        {NULL, 0, NULL, 0, 0, NULL, NULL, NULL},
    };
    int rc = parse_opts("predict", "--model FILE (--image FILE | --pgm FILE | --idx FILE "
                        "[--index N] [--count N])", opts, argc, argv);
    if (rc)
        return rc == 1 ? 0 : rc;
    if (!model_path || (!!pgm + !!idx + !!image_path) != 1) {
        fprintf(stderr, "%s: predict needs --model FILE and one of --image FILE, --pgm FILE or "
                "--idx FILE\n", prog);
        return 2;
    }
    if (count && !idx) {
        fprintf(stderr, "%s: --count is for the images of --idx FILE\n", prog);
        return 2;
    }
    char err[512];
    uint8_t *pixels = NULL;
    size_t n = 1;
    int rows = 0, cols = 0, channels = 1;
    cnn_status st = image_path ? cnn_image_read(image_path, &pixels, &channels, &rows, &cols, err,
                                                sizeof err)
                    : pgm      ? cnn_pgm_read(pgm, &pixels, &rows, &cols, err, sizeof err)
                               : cnn_idx_read_images(idx, &pixels, &n, &rows, &cols, err,
                                                     sizeof err);
    if (st != CNN_OK) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return 1;
    }
    cnn_model model = {0};
    cnn_acts acts = {0};
    float *x = NULL;
    rc = 1;
    if (idx && (size_t)index + (size_t)(count ? count : 1) > n) {
        fprintf(stderr, "%s: --index %ld%s is past the last image of %s (it holds %zu)\n",
                prog, index + (count ? count - 1 : 0), count ? " (--index + --count - 1)" : "",
                idx, n);
        goto out;
    }
    /* the image, as a data set of one, unlabelled */
    const cnn_dataset image = {.channels = channels, .rows = rows, .cols = cols};
    if (load_model(model_path, &model) ||
        check_model_data(model_path, &model, &image, image_path ? image_path : pgm ? pgm : idx))
        goto out;
    const size_t len = cnn_dataset_image_len(&image);
    x = malloc(len * sizeof *x);
    if (!x || cnn_acts_alloc(&acts, &model.arch, 1) != CNN_OK) {
        fprintf(stderr, "%s: out of memory\n", prog);
        goto out;
    }
    cnn_blas_setup();
    const char *what = image_path ? image_path : pgm;
    for (long i = index; i < index + (count ? count : 1); i++) {
        cnn_norm_apply(&model.norm, x, pixels + (size_t)i * len, channels, len / channels);
        cnn_forward(&model, &acts, x, -1, (cnn_engine)engine);
        print_prediction(&model, acts.probs, count ? NULL : idx ? idx : what, idx ? i : -1);
    }
    rc = 0;
out:
    free(x);
    cnn_acts_free(&acts);
    cnn_model_free(&model);
    free(pixels);
    return rc;
}
