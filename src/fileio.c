/* fileio.c - error messages and safe opening for the file readers. */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

cnn_status cnn_errorf(cnn_status st, char *err, size_t errlen, const char *fmt, ...)
{
    if (err && errlen) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, errlen, fmt, ap);
        va_end(ap);
    }
    return st;
}

/* O_NONBLOCK keeps the open itself from blocking on a FIFO; it changes nothing for
 * the regular files that pass the check. */
int cnn_open_regular(const char *path, struct stat *sb, char *err, size_t errlen)
{
    const int fd = open(path, O_RDONLY | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) {
        cnn_errorf(CNN_ERR_IO, err, errlen, "%s: %s", path, strerror(errno));
        return -1;
    }
    const char *why = NULL;
    if (fstat(fd, sb))
        why = strerror(errno);
    else if (S_ISDIR(sb->st_mode))
        why = "is a directory";
    else if (!S_ISREG(sb->st_mode))
        why = "is not a regular file";
    if (why) {
        close(fd);
        cnn_errorf(CNN_ERR_IO, err, errlen, "%s: %s", path, why);
        return -1;
    }
    return fd;
}
