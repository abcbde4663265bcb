/* test_fashion.c - Fashion-MNIST as Debian ships it (dataset-fashion-mnist: the four
 * gzip IDX files in /usr/share/datasets/fashion-mnist) through the cnn program: the
 * loader's counts and first labels, a stacked network trained briefly reaches a stated
 * accuracy, eval of the saved model reproduces the training run's test figures, and
 * predict rebuilds the network from the file; written out as a PNG image folder
 * (scripts/mnist-to-images), it loads to the same images and labels.
 *
 * Without the files the test is skipped, but only outside CI: with CI set in the
 * environment (as .ci/run does) missing data is a failure. */
#include "cnn.h"

#include "check.h"
#include "proc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static char out[1 << 20], err[1 << 16];

static double field(const char *key) { return out_field(out, key); }

static const uint8_t *sample_px;
static const uint8_t *sample_lab;
static size_t sample_len;

/* Order samples by label, then pixels. */
static int by_content(const void *a, const void *b)
{
    const uint32_t i = *(const uint32_t *)a, j = *(const uint32_t *)b;
    if (sample_lab[i] != sample_lab[j])
        return sample_lab[i] < sample_lab[j] ? -1 : 1;
    return memcmp(sample_px + i * sample_len, sample_px + j * sample_len, sample_len);
}

static uint32_t *sorted_order(const cnn_dataset *d)
{
    uint32_t *order = malloc(d->n * sizeof *order);
    for (size_t i = 0; i < d->n; i++)
        order[i] = (uint32_t)i;
    sample_px = d->pixels, sample_lab = d->labels, sample_len = cnn_dataset_image_len(d);
    qsort(order, d->n, sizeof *order, by_content);
    return order;
}

/* The same images with the same labels, as multisets. */
static int same_set(const cnn_dataset *a, const cnn_dataset *b)
{
    if (a->n != b->n || cnn_dataset_image_len(a) != cnn_dataset_image_len(b) ||
        a->channels != b->channels || a->rows != b->rows)
        return 0;
    uint32_t *oa = sorted_order(a), *ob = sorted_order(b);
    const size_t len = cnn_dataset_image_len(a);
    int same = 1;
    for (size_t i = 0; i < a->n && same; i++)
        same = a->labels[oa[i]] == b->labels[ob[i]] &&
               memcmp(a->pixels + oa[i] * len, b->pixels + ob[i] * len, len) == 0;
    free(oa), free(ob);
    return same;
}

/* The data set written as a PNG image folder by the script users run, loaded back. */
static void as_png_folder(const char *dir, const char *script, const char *scratch)
{
    char folder[600], cmd[2048], msg[512];
    snprintf(folder, sizeof folder, "%s/fashion-png", scratch);
    snprintf(cmd, sizeof cmd, "rm -rf '%s' && '%s' --idx '%s' --out '%s' > /dev/null", folder,
             script, dir, folder);
    if (!tap_ok(system(cmd) == 0, "scripts/mnist-to-images writes Fashion-MNIST as 70,000 PNGs"))
        return;
    const char *splits[2][2] = {{"train", "train"}, {"test", "t10k"}};
    cnn_dataset png_train = {0};
    for (int s = 0; s < 2; s++) {
        cnn_dataset idx = {0}, png = {0};
        const cnn_status a = cnn_mnist_load(dir, splits[s][1], &idx, msg, sizeof msg);
        const cnn_status b = cnn_dataset_load(folder, splits[s][0], s ? &png_train : NULL, &png,
                                              NULL, NULL, msg, sizeof msg);
        tap_ok(a == CNN_OK && b == CNN_OK && png.format == CNN_DATA_FOLDER && png.n_names == 10 &&
                   same_set(&idx, &png),
               "the %s split as PNG files loads to exactly the IDX images and labels, as a set "
               "(%zu images; %s)", splits[s][0], png.n, b == CNN_OK ? "ok" : msg);
        cnn_dataset_free(&idx);
        if (s == 0)
            png_train = png;
        else
            cnn_dataset_free(&png);
    }
    cnn_dataset_free(&png_train);
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", folder);
    if (system(cmd) != 0)
        tap_ok(0, "remove %s", folder);
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: test_fashion FASHION-DIR PATH-TO-cnn SCRATCH-DIR "
                "PATH-TO-mnist-to-images\n");
        return 1;
    }
    const char *dir = argv[1], *exe = argv[2];
    char msg[512], model[600];
    snprintf(model, sizeof model, "%s/fashion-test.cnn", argv[3]);
    cnn_dataset train = {0}, test = {0};
    if (cnn_mnist_load(dir, "train", &train, msg, sizeof msg) != CNN_OK ||
        cnn_mnist_load(dir, "t10k", &test, msg, sizeof msg) != CNN_OK) {
        const char *ci = getenv("CI");
        if (ci && *ci) {
            printf("Bail out! Fashion-MNIST is required in CI: %s (apt-get install "
                   "dataset-fashion-mnist)\n", msg);
            return 1;
        }
        printf("1..0 # SKIP no Fashion-MNIST in %s (apt-get install dataset-fashion-mnist); "
               "skipped outside CI only\n", dir);
        return 0;
    }
    tap_ok(train.n == 60000 && test.n == 10000 && train.rows == 28 && train.cols == 28 &&
               train.labels[0] == 9 && train.labels[1] == 0 && test.labels[0] == 9 &&
               test.labels[1] == 2,
           "Fashion-MNIST: 60000 + 10000 gzip images of 28x28, first labels 9 0 / 9 2");
    cnn_dataset_free(&train);
    cnn_dataset_free(&test);

    /* one epoch of a small stacked network over 10,000 images: 81.7% measured */
    int rc = run_cmd(exe,
                     (const char *[]){"train", "--data", dir, "--arch",
                                      "conv8b,relu,pool,dense32,relu,softmax10", "--batch", "32",
                                      "--lr", "0.05", "--momentum", "0.9", "--epochs", "1",
                                      "--train-limit", "10000", "--test-limit", "2000", "--save",
                                      model, NULL},
                     out, err, sizeof err);
    const double acc = field("Test Accuracy: "), loss = field("Test Loss: ");
    tap_ok(rc == 0 && acc >= 0.75, "train: a stacked network on 10,000 images, one epoch: test "
           "accuracy %.4f (at least 0.75)", acc);
    rc = run_cmd(exe, (const char *[]){"eval", "--model", model, "--data", dir, "--test-limit",
                                       "2000", NULL},
                 out, err, sizeof err);
    tap_ok(rc == 0 && field("Test Accuracy: ") == acc && field("Test Loss: ") == loss,
           "eval of the saved model gives the same loss and accuracy (%.10g, %.4f)", loss, acc);
    char images[600];
    snprintf(images, sizeof images, "%s/t10k-images-idx3-ubyte.gz", dir);
    rc = run_cmd(exe, (const char *[]){"predict", "--model", model, "--idx", images, "--index", "0",
                                       NULL},
                 out, err, sizeof err);
    double psum = 0;
    for (int c = 0; c < 10; c++) {
        char key[16];
        snprintf(key, sizeof key, "p(%d) = ", c);
        psum += field(key);
    }
    tap_ok(rc == 0 && strstr(out, "predicted class: ") && fabs(psum - 1.0) < 1e-4,
           "predict rebuilds the stacked network from the file: ten probabilities summing to %.6f",
           psum);
    remove(model);
    as_png_folder(dir, argv[4], argv[3]);
    return tap_done();
}
