/* fileio.h - error messages and safe opening for the file readers (internal). */
#ifndef CNN_FILEIO_H
#define CNN_FILEIO_H

#include "cnn.h"

#include <stddef.h>
#include <sys/stat.h>

/* Write one formatted line into err (when err and errlen allow); @return st. */
cnn_status cnn_errorf(cnn_status st, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Open path read-only and check, on the opened descriptor, that it is a regular
 * file (a directory, FIFO or device is refused without blocking). @return the
 * descriptor with *sb filled, or -1 with the reason in err. */
int cnn_open_regular(const char *path, struct stat *sb, char *err, size_t errlen);

#endif
