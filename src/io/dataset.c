/* dataset.c - what every data set has, whatever its format: its size, classes and
 * names, the per-channel statistics of its pixels, and the loader that finds which
 * format a directory holds. */
#include "cnn.h"

#include "fileio.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

size_t cnn_dataset_image_len(const cnn_dataset *d)
{
    return (size_t)d->channels * (size_t)d->rows * (size_t)d->cols;
}

int cnn_dataset_classes(const cnn_dataset *d)
{
    int top = -1;
    for (size_t i = 0; i < d->n; i++)
        top = d->labels[i] > top ? d->labels[i] : top;
    return top + 1;
}

const char *cnn_name_at(const char *names, int count, int k)
{
    if (!names || k < 0 || k >= count)
        return NULL;
    for (int i = 0; i < k; i++)
        names += strlen(names) + 1;
    return names;
}

size_t cnn_names_len(const char *names, int count)
{
    size_t len = 0;
    for (int k = 0; names && k < count; k++)
        len += strlen(names + len) + 1;
    return len;
}

const char *cnn_dataset_class_name(const cnn_dataset *d, int k)
{
    return d ? cnn_name_at(d->names, d->n_names, k) : NULL;
}

cnn_status cnn_dataset_synthetic(cnn_dataset *out, size_t n, uint64_t seed)
{
    cnn_dataset d = {.n = n, .channels = 1, .rows = CNN_SYNTH_SIDE, .cols = CNN_SYNTH_SIDE,
                     .format = CNN_DATA_SYNTHETIC};
    if (n == 0 || n > ((size_t)1 << 40))
        return CNN_ERR_ARG;
    d.pixels = malloc(n * cnn_dataset_image_len(&d));
    d.labels = malloc(n);
    if (!d.pixels || !d.labels) {
        cnn_dataset_free(&d);
        return CNN_ERR_NOMEM;
    }
    cnn_rng rng;
    cnn_rng_seed(&rng, seed);
    cnn_synth_digits(d.pixels, d.labels, n, &rng);
    *out = d;
    return CNN_OK;
}

void cnn_dataset_free(cnn_dataset *d)
{
    if (!d)
        return;
    free(d->pixels);
    free(d->labels);
    free(d->names);
    memset(d, 0, sizeof *d);
}

/* Sums of v and v^2 per channel in integers (exact for any set that fits in memory),
 * so the statistics do not depend on the order of the images or the threads. */
cnn_status cnn_dataset_norm(const cnn_dataset *d, cnn_norm *out)
{
    if (!d || !out || d->n == 0 || d->channels < 1 || d->channels > CNN_NORM_CHANNELS)
        return CNN_ERR_ARG;
    const size_t plane = (size_t)d->rows * d->cols, len = cnn_dataset_image_len(d);
    cnn_norm n = {.kind = CNN_NORM_MEAN_STD, .channels = d->channels};
    for (int c = 0; c < d->channels; c++) {
        unsigned long long hist[256] = {0};
        for (size_t i = 0; i < d->n; i++) {
            const uint8_t *p = d->pixels + i * len + (size_t)c * plane;
            for (size_t k = 0; k < plane; k++)
                hist[p[k]]++;
        }
        double count = 0.0, sum = 0.0;
        for (int v = 0; v < 256; v++)
            count += (double)hist[v], sum += (double)hist[v] * v;
        const double mean = sum / count;
        double var = 0.0;
        for (int v = 0; v < 256; v++)
            var += (double)hist[v] * (v - mean) * (v - mean);
        const double sd = sqrt(var / count) / 255.0;
        n.mean[c] = (float)(mean / 255.0);
        n.std[c] = sd > 0.0 ? (float)sd : 1.0f;
    }
    *out = n;
    return CNN_OK;
}

static int exists(const char *dir, const char *name, int want_dir)
{
    char path[4096];
    if (snprintf(path, sizeof path, "%s/%s", dir, name) >= (int)sizeof path)
        return 0;
    struct stat sb;
    return stat(path, &sb) == 0 && (want_dir ? S_ISDIR(sb.st_mode) : S_ISREG(sb.st_mode));
}

cnn_status cnn_dataset_load(const char *dir, const char *split, const cnn_dataset *train,
                            cnn_dataset *out, cnn_progress_fn progress, void *ctx, char *err,
                            size_t errlen)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!dir || !split || !out || (strcmp(split, "train") != 0 && strcmp(split, "test") != 0))
        return cnn_errorf(CNN_ERR_ARG, err, errlen,
                          "cnn_dataset_load: a directory and the split train or test");
    struct stat sb;
    if (stat(dir, &sb))
        return cnn_errorf(CNN_ERR_IO, err, errlen, "%s: %s", dir, strerror(errno));
    if (!S_ISDIR(sb.st_mode))
        return cnn_errorf(CNN_ERR_IO, err, errlen, "%s: is not a directory", dir);
    if (exists(dir, "data_batch_1.bin", 0) || exists(dir, "test_batch.bin", 0))
        return cnn_cifar10_load(dir, split, out, err, errlen);
    if (exists(dir, "train", 1) || exists(dir, "test", 1))
        return cnn_folder_load(dir, split, train, out, progress, ctx, err, errlen);
    return cnn_mnist_load(dir, strcmp(split, "test") == 0 ? "t10k" : "train", out, err, errlen);
}
