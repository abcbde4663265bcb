/* fileio.c - error messages, safe opening, whole-file reads and atomic writes. */
#define _GNU_SOURCE /* O_TMPFILE, flock */
#include "fileio.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/file.h>
#include <time.h>
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

/* fsync the directory dir, so that a rename in it is durable. */
static int sync_dir(const char *dir)
{
    const int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0)
        return -1;
    const int rc = fsync(fd);
    close(fd);
    return rc;
}

const char *cnn_file_kind(mode_t m)
{
    return S_ISDIR(m)    ? "a directory"
           : S_ISCHR(m)  ? "a character device"
           : S_ISBLK(m)  ? "a block device"
           : S_ISFIFO(m) ? "a FIFO"
           : S_ISSOCK(m) ? "a socket"
           : S_ISREG(m)  ? "a file"
                         : "not a regular file";
}

char *cnn_path_join(const char *dir, const char *name)
{
    const size_t dl = strlen(dir), nl = strlen(name);
    const int slash = dl > 0 && dir[dl - 1] != '/';
    char *p = malloc(dl + (size_t)slash + nl + 1);
    if (!p)
        return NULL;
    memcpy(p, dir, dl);
    if (slash)
        p[dl] = '/';
    memcpy(p + dl + slash, name, nl + 1);
    return p;
}

#define LINK_HOPS 40 /* as the kernel's own limit on a path's links */

cnn_status cnn_output_target(const char *path, char *target, size_t len, char *err,
                             size_t errlen)
{
    const size_t plen = strlen(path);
    if (plen == 0)
        return cnn_errorf(CNN_ERR_ARG, err, errlen, "an output path is empty");
    if (path[plen - 1] == '/')
        return cnn_errorf(CNN_ERR_IO, err, errlen, "%s names a directory, not a file", path);
    if (plen + 1 > len)
        return cnn_errorf(CNN_ERR_IO, err, errlen, "%s: the path is too long", path);
    memcpy(target, path, plen + 1);
    for (int hops = 0;; hops++) {
        struct stat sb;
        if (lstat(target, &sb)) {
            if (errno == ENOENT)
                break; /* a new file (its directory is checked below) */
            return cnn_errorf(CNN_ERR_IO, err, errlen, "%s: %s", path, strerror(errno));
        }
        if (S_ISREG(sb.st_mode))
            break;
        if (!S_ISLNK(sb.st_mode)) {
            if (strcmp(target, path))
                return cnn_errorf(CNN_ERR_IO, err, errlen,
                                  "%s: links to %s, which is %s: only a regular file is "
                                  "replaced", path, target, cnn_file_kind(sb.st_mode));
            return cnn_errorf(CNN_ERR_IO, err, errlen,
                              "%s is %s: only a regular file is replaced", path,
                              cnn_file_kind(sb.st_mode));
        }
        if (hops == LINK_HOPS)
            return cnn_errorf(CNN_ERR_IO, err, errlen, "%s: %s", path, strerror(ELOOP));
        char link[PATH_MAX];
        const ssize_t n = readlink(target, link, sizeof link - 1);
        if (n < 0)
            return cnn_errorf(CNN_ERR_IO, err, errlen, "%s: %s", path, strerror(errno));
        link[n] = '\0';
        if (link[0] != '/') { /* relative to the link's own directory */
            char dir[PATH_MAX];
            if (cnn_dirname(dir, sizeof dir, target) ||
                (size_t)snprintf(target, len, "%s/%s", dir, link) >= len)
                return cnn_errorf(CNN_ERR_IO, err, errlen, "%s: the path is too long", path);
        } else if ((size_t)n + 1 > len) {
            return cnn_errorf(CNN_ERR_IO, err, errlen, "%s: the path is too long", path);
        } else {
            memcpy(target, link, (size_t)n + 1);
        }
        if (target[strlen(target) - 1] == '/')
            return cnn_errorf(CNN_ERR_IO, err, errlen, "%s: links to %s, a directory", path,
                              target);
    }
    char dir[PATH_MAX];
    struct stat sb;
    if (cnn_dirname(dir, sizeof dir, target))
        return cnn_errorf(CNN_ERR_IO, err, errlen, "%s: the path is too long", path);
    errno = 0;
    if (stat(dir, &sb) || !S_ISDIR(sb.st_mode) || access(dir, W_OK))
        return cnn_errorf(CNN_ERR_IO, err, errlen, "%s: cannot write into %s: %s", path, dir,
                          errno ? strerror(errno) : "not a directory");
    return CNN_OK;
}

/* Temporary names: TARGET.tmp. and six characters. */
#define TMP_MARK ".tmp."
#define TMP_RAND 6

/* Remove TARGET.tmp.XXXXXX files in dir that no process holds: a writer keeps an
 * flock on its temporary file until it is renamed, and the kernel drops the lock when
 * the writer dies, however it dies. Best effort: what cannot be opened stays. */
static void remove_stale_temporaries(const char *dir, const char *base)
{
    DIR *d = opendir(dir);
    if (!d)
        return;
    const int dfd = dirfd(d);
    const size_t blen = strlen(base), mlen = strlen(TMP_MARK);
    for (struct dirent *e; (e = readdir(d));) {
        const char *name = e->d_name;
        if (strlen(name) != blen + mlen + TMP_RAND || strncmp(name, base, blen) ||
            strncmp(name + blen, TMP_MARK, mlen))
            continue;
        const int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
        if (fd < 0)
            continue;
        struct stat sb;
        if (!fstat(fd, &sb) && S_ISREG(sb.st_mode) && !flock(fd, LOCK_EX | LOCK_NB))
            unlinkat(dfd, name, 0);
        close(fd); /* drops the lock */
    }
    closedir(d);
}

/* A fresh temporary name for target (not created). */
static void temporary_name(char *tmp, const char *target, unsigned *seq)
{
    static const char digits[] = "abcdefghijklmnopqrstuvwxyz0123456789";
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    uint64_t x = (uint64_t)ts.tv_nsec * 0x9E3779B97F4A7C15u ^ (uint64_t)getpid() << 20 ^
                 (uint64_t)(*seq)++ * 0xBF58476D1CE4E5B9u;
    char *p = tmp + sprintf(tmp, "%s" TMP_MARK, target);
    for (int i = 0; i < TMP_RAND; i++, x /= 36)
        p[i] = digits[x % 36];
    p[TMP_RAND] = '\0';
}

/* An unnamed file in dir (O_TMPFILE), or -1 where the file system has none. */
static int unnamed_file(const char *dir)
{
#ifdef O_TMPFILE
    return open(dir, O_TMPFILE | O_WRONLY | O_CLOEXEC, 0644);
#else
    (void)dir;
    errno = EOPNOTSUPP;
    return -1;
#endif
}

/* Give the unnamed file fd the name tmp (a fresh one, tried a few times). */
static int name_unnamed(int fd, char *tmp, const char *target, unsigned *seq)
{
    char proc[64];
    snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
    for (int tries = 0; tries < 16; tries++) {
        temporary_name(tmp, target, seq);
        if (!linkat(AT_FDCWD, proc, AT_FDCWD, tmp, AT_SYMLINK_FOLLOW))
            return 0;
        if (errno != EEXIST)
            return -1;
    }
    return -1;
}

/* A named temporary file beside target, created exclusively. */
static int named_file(char *tmp, const char *target, unsigned *seq)
{
    for (int tries = 0; tries < 16; tries++) {
        temporary_name(tmp, target, seq);
        const int fd = open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
        if (fd >= 0 || errno != EEXIST)
            return fd;
    }
    return -1;
}

/* The bytes into fd, durably. @return what failed, or NULL. */
static const char *fill(int fd, const unsigned char *buf, size_t len)
{
    if (write_all(fd, buf, len))
        return "write";
    if (fchmod(fd, 0644))
        return "chmod";
    if (fsync(fd))
        return "fsync";
    return NULL;
}

/* A temporary file beside target holding buf, durably, locked (flock) and named tmp:
 * an unnamed file named only once written, or a named one where the file system or a
 * missing /proc does not allow that. @return the open descriptor, or -1 with the step
 * that failed in *what and its errno in *e (no file is then left). */
static int locked_temporary(const char *dir, const char *target, const unsigned char *buf,
                            size_t len, char *tmp, const char **what, int *e)
{
    unsigned seq = 0;
    int fd = unnamed_file(dir);
    if (fd >= 0) {
        *what = flock(fd, LOCK_EX) ? "flock" : fill(fd, buf, len);
        if (!*what && !name_unnamed(fd, tmp, target, &seq))
            return fd;
        *e = errno;
        close(fd);
        if (*what)
            return -1;
    }
    fd = named_file(tmp, target, &seq);
    if (fd < 0) {
        *what = "create", *e = errno;
        return -1;
    }
    *what = flock(fd, LOCK_EX) ? "flock" : fill(fd, buf, len);
    if (!*what)
        return fd;
    *e = errno;
    unlink(tmp);
    close(fd);
    return -1;
}

cnn_status cnn_write_atomic(const char *path, const unsigned char *buf, size_t len, char *err,
                            size_t errlen)
{
    char target[PATH_MAX], dir[PATH_MAX], tmp[PATH_MAX + 16];
    const cnn_status st = cnn_output_target(path, target, sizeof target, err, errlen);
    if (st != CNN_OK)
        return st;
    cnn_dirname(dir, sizeof dir, target); /* fits: checked by cnn_output_target */
    const char *slash = strrchr(target, '/');
    remove_stale_temporaries(dir, slash ? slash + 1 : target);

    const char *what = NULL;
    int e = 0;
    const int fd = locked_temporary(dir, target, buf, len, tmp, &what, &e);
    if (fd < 0)
        return cnn_errorf(CNN_ERR_IO, err, errlen, "%s: cannot write it (%s failed: %s)", path,
                          what, strerror(e));
    struct stat sb; /* the target may have changed since it was checked */
    const int turned = !lstat(target, &sb) && !S_ISREG(sb.st_mode);
    if (turned || rename(tmp, target)) {
        e = errno;
        unlink(tmp);
    }
    close(fd); /* only now: the lock marks the temporary file as in use until the rename */
    if (turned)
        return cnn_errorf(CNN_ERR_IO, err, errlen,
                          "%s became %s while it was written: left as it is", target,
                          cnn_file_kind(sb.st_mode));
    if (e)
        return cnn_errorf(CNN_ERR_IO, err, errlen, "%s: cannot write it (rename failed: %s)",
                          path, strerror(e));
    if (sync_dir(dir))
        return cnn_errorf(CNN_ERR_IO, err, errlen,
                          "%s: written, but syncing its directory failed: %s", path,
                          strerror(errno));
    return CNN_OK;
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
