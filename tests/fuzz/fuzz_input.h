/* fuzz_input.h - hand a fuzzer's bytes to the file readers as a real, regular file:
 * an anonymous memory file (memfd) opened through /proc/self/fd; and run what a
 * reader built. */
#ifndef CNN_FUZZ_INPUT_H
#define CNN_FUZZ_INPUT_H

#define _GNU_SOURCE
#include "cnn.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Write data to a fresh memfd; path receives its name. @return the fd (close it). */
static inline int fuzz_file(const uint8_t *data, size_t size, char *path, size_t len)
{
    const int fd = memfd_create("cnn-fuzz", MFD_CLOEXEC);
    if (fd < 0)
        abort();
    size_t done = 0;
    while (done < size) {
        const ssize_t k = write(fd, data + done, size - done);
        if (k <= 0)
            abort();
        done += (size_t)k;
    }
    snprintf(path, len, "/proc/self/fd/%d", fd);
    return fd;
}

/* A forward pass of a small model m on a zero input in both engines (the network a
 * reader built must run); with finite_loss, a loss that is not a number aborts. */
static inline void fuzz_forward(const cnn_model *m, int finite_loss)
{
    const cnn_arch *n = &m->arch;
    size_t acts = (size_t)n->C * n->H * n->W;
    for (int l = 0; l < n->n; l++)
        acts += cnn_layer_out_len(&n->layer[l]) * (n->layer[l].kind == CNN_LAYER_CONV ? 10 : 1);
    if (m->n_params != n->n_params)
        abort();
    if (acts > 200000 || m->n_params > 100000)
        return;
    cnn_acts a;
    if (cnn_acts_alloc(&a, n, 1) != CNN_OK)
        abort();
    float *x = calloc((size_t)n->C * n->H * n->W, sizeof(float));
    for (int e = 0; e < 2; e++)
        if (isnan(cnn_forward(m, &a, x, 0, (cnn_engine)e)) && finite_loss)
            abort();
    free(x);
    cnn_acts_free(&a);
}

#endif
