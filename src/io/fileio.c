/* fileio.c - error messages, safe opening, whole-file reads and atomic writes. */
#include "fileio.h"

#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <zlib.h>

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

cnn_status cnn_read_file(const char *path, size_t max, unsigned char **buf, size_t *len,
                         char *err, size_t errlen)
{
    *buf = NULL;
    *len = 0;
    struct stat sb;
    const int fd = cnn_open_regular(path, &sb, err, errlen);
    if (fd < 0)
        return CNN_ERR_IO;
    const size_t size = (size_t)sb.st_size;
    if ((unsigned long long)sb.st_size > max) {
        close(fd);
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: too large (%lld bytes)", path,
                          (long long)sb.st_size);
    }
    unsigned char *b = malloc(size + 1);
    if (!b) {
        close(fd);
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory for %zu bytes", path,
                          size);
    }
    size_t got = 0; /* read one byte more than expected: a growing file shows */
    while (got < size + 1) {
        const ssize_t k = read(fd, b + got, size + 1 - got);
        if (k < 0 && errno == EINTR)
            continue;
        if (k < 0) {
            const int e = errno;
            free(b);
            close(fd);
            return cnn_errorf(CNN_ERR_IO, err, errlen, "%s: read error: %s", path, strerror(e));
        }
        if (k == 0)
            break;
        got += (size_t)k;
    }
    close(fd);
    if (got != size) {
        free(b);
        return cnn_errorf(CNN_ERR_IO, err, errlen,
                          "%s: the file changed size while being read (%zu bytes, then %zu%s)",
                          path, size, got, got > size ? " or more" : "");
    }
    *buf = b;
    *len = size;
    return CNN_OK;
}

int cnn_dirname(char *dir, size_t len, const char *path)
{
    const char *slash = strrchr(path, '/');
    const size_t n = !slash ? 0 : slash == path ? 1 : (size_t)(slash - path);
    if (n + 2 > len)
        return -1;
    if (!slash)
        strcpy(dir, ".");
    else
        memcpy(dir, path, n), dir[n] = '\0';
    return 0;
}

/* Write all of buf to fd, retrying short writes. */
static int write_all(int fd, const unsigned char *buf, size_t n)
{
    while (n > 0) {
        const ssize_t k = write(fd, buf, n);
        if (k < 0 && errno == EINTR)
            continue;
        if (k <= 0)
            return -1;
        buf += k, n -= (size_t)k;
    }
    return 0;
}

/* fsync the directory holding path, so the rename itself is durable. */
static int sync_dir_of(const char *path)
{
    char dir[4096];
    if (cnn_dirname(dir, sizeof dir, path))
        return -1;
    const int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    const int rc = fsync(fd);
    close(fd);
    return rc;
}

cnn_status cnn_write_atomic(const char *path, const unsigned char *buf, size_t len, char *err,
                            size_t errlen)
{
    const size_t plen = strlen(path);
    char *tmp = malloc(plen + 16);
    if (!tmp)
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", path);
    memcpy(tmp, path, plen);
    memcpy(tmp + plen, ".tmp.XXXXXX", 12);
    cnn_status st = CNN_OK;
    const int fd = mkstemp(tmp);
    if (fd < 0) {
        st = cnn_errorf(CNN_ERR_IO, err, errlen, "%s: cannot create a temporary file beside it: %s",
                        path, strerror(errno));
    } else {
        const char *what = NULL;
        int e = 0;
        if (write_all(fd, buf, len))
            what = "write", e = errno;
        else if (fchmod(fd, 0644))
            what = "chmod", e = errno;
        else if (fsync(fd))
            what = "fsync", e = errno;
        if (close(fd) && !what)
            what = "close", e = errno;
        if (!what && rename(tmp, path))
            what = "rename", e = errno;
        if (what) {
            unlink(tmp);
            st = cnn_errorf(CNN_ERR_IO, err, errlen, "%s: cannot write it (%s failed: %s)", path,
                            what, strerror(e));
        } else if (sync_dir_of(path)) {
            st = cnn_errorf(CNN_ERR_IO, err, errlen,
                            "%s: written, but syncing its directory failed: %s", path,
                            strerror(errno));
        }
    }
    free(tmp);
    return st;
}

uint32_t cnn_crc32(const unsigned char *p, size_t n)
{
    uLong crc = crc32(0L, Z_NULL, 0);
    while (n > 0) { /* zlib takes uInt lengths */
        const uInt part = n > 1u << 30 ? 1u << 30 : (uInt)n;
        crc = crc32(crc, p, part);
        p += part, n -= part;
    }
    return (uint32_t)crc;
}
