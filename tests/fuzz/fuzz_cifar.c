/* fuzz_cifar.c - libFuzzer target: the CIFAR-10 loader. The input is a CIFAR
 * directory: its first two bytes (little-endian) say how many of the bytes that
 * follow are batches.meta.txt, the rest is test_batch.bin. The directory is made once
 * per process and removed at its exit. */
#define _GNU_SOURCE
#include "cnn.h"

#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[256], meta[320], batch[320];

static void remove_dir(void)
{
    unlink(meta);
    unlink(batch);
    rmdir(dir);
}

static void make_dir(void)
{
    const char *tmp = getenv("TMPDIR");
    snprintf(dir, sizeof dir, "%s/cnn-fuzz-cifar-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    if (!mkdtemp(dir))
        abort();
    snprintf(meta, sizeof meta, "%s/batches.meta.txt", dir);
    snprintf(batch, sizeof batch, "%s/test_batch.bin", dir);
    atexit(remove_dir);
}

static void put(const char *path, const uint8_t *data, size_t len)
{
    const int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0)
        abort();
    for (size_t done = 0; done < len;) {
        const ssize_t k = write(fd, data + done, len - done);
        if (k <= 0)
            abort();
        done += (size_t)k;
    }
    close(fd);
}

/* What a loaded set must be: one image per 3,073 bytes, every label named. */
static void check(const cnn_dataset *d, size_t batch_len)
{
    if (d->n == 0 || d->n * 3073 != batch_len || d->channels != 3 || d->rows != 32 ||
        d->cols != 32 || d->n_names < 1 || d->n_names > 256)
        abort();
    for (size_t i = 0; i < d->n; i++)
        if (d->labels[i] >= d->n_names)
            abort();
    for (int k = 0; k < d->n_names; k++) {
        const size_t len = strlen(cnn_dataset_class_name(d, k));
        if (len < 1 || len >= CNN_NAME_MAX)
            abort();
    }
    volatile uint8_t sink = d->pixels[d->n * 3072 - 1];
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (!dir[0])
        make_dir();
    if (size < 2)
        return 0;
    size_t meta_len = (size_t)data[0] | (size_t)data[1] << 8;
    data += 2, size -= 2;
    meta_len = meta_len < size ? meta_len : size;
    put(meta, data, meta_len);
    put(batch, data + meta_len, size - meta_len);
    cnn_dataset d;
    char err[512];
    if (cnn_cifar10_load(dir, "test", &d, err, sizeof err) == CNN_OK) {
        check(&d, size - meta_len);
        cnn_dataset_free(&d);
    } else if (d.pixels || d.labels || d.names || d.n) {
        abort();
    }
    return 0;
}
