/* fuzz_input.h - hand a fuzzer's bytes to the file readers as a real, regular file:
 * an anonymous memory file (memfd) opened through /proc/self/fd. */
#ifndef CNN_FUZZ_INPUT_H
#define CNN_FUZZ_INPUT_H

#define _GNU_SOURCE
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

/* Write data to a fresh memfd; path receives its name. @return the fd (close it). */
static int fuzz_file(const uint8_t *data, size_t size, char *path, size_t len)
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

#endif
