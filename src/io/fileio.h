/* fileio.h - error messages, safe opening, whole-file reads and atomic writes for
 * the file formats (internal). */
#ifndef CNN_FILEIO_H
#define CNN_FILEIO_H

#include "cnn.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>

/* Write one formatted line into err (when err and errlen allow); @return st. */
cnn_status cnn_errorf(cnn_status st, char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Open path read-only and check, on the opened descriptor, that it is a regular
 * file (a directory, FIFO or device is refused without blocking). @return the
 * descriptor with *sb filled, or -1 with the reason in err. */
int cnn_open_regular(const char *path, struct stat *sb, char *err, size_t errlen);

/* Read a whole regular file of at most max bytes into *buf (malloc'ed, *len bytes);
 * a file that changes size while being read is an error. */
cnn_status cnn_read_file(const char *path, size_t max, unsigned char **buf, size_t *len,
                         char *err, size_t errlen);

/* A PGM or PPM image from memory (image.c), maxval 1..max_maxval, pixels
 * [channels][rows][cols] as cnn_image_decode; cnn_pgm_read takes it with 255. */
cnn_status cnn_pnm_decode(const uint8_t *data, size_t len, const char *name,
                          unsigned max_maxval, uint8_t **pixels, int *channels, int *rows,
                          int *cols, char *err, size_t errlen);

/* Name k of count names stored back to back, each NUL-terminated (a model's or a data
 * set's classes); NULL when there are none or k is out of range. */
const char *cnn_name_at(const char *names, int count, int k);
/* Bytes of count such names, their NULs included (0 when names is NULL). */
size_t cnn_names_len(const char *names, int count);

/* What a file of mode m is, for messages: "a directory", "a FIFO", "a file"... */
const char *cnn_file_kind(mode_t m);
/* dir/name in a new string (malloc'ed); NULL when out of memory. */
char *cnn_path_join(const char *dir, const char *name);

/* Where a write to path lands: path itself, or the file a symbolic link (or a chain
 * of them) at path names, so that the link stays and its target is replaced. Refused
 * with one line in err: a target that exists and is not a regular file (a directory,
 * device, FIFO or socket: never written through), a path ending in '/', a link loop,
 * a directory that does not exist or cannot be written. target gets len bytes. */
cnn_status cnn_output_target(const char *path, char *target, size_t len, char *err,
                             size_t errlen);

/* Replace the file path names (cnn_output_target) with buf atomically: the bytes go
 * into an unnamed file in its directory (O_TMPFILE; where the file system has none, a
 * temporary file "TARGET.tmp.XXXXXX" beside it), fsync, a name given to it only
 * then, rename over the target, fsync of the directory. The writer holds an flock on
 * its temporary file until the rename; before writing, temporary files of the same
 * target that no process holds (left by a writer killed mid-write) are removed. On
 * failure the previous file, if any, is intact and no temporary file is left. */
cnn_status cnn_write_atomic(const char *path, const unsigned char *buf, size_t len, char *err,
                            size_t errlen);

/* The directory part of path ("." when none) into dir; @return 0, or -1 if it does
 * not fit in len bytes. */
int cnn_dirname(char *dir, size_t len, const char *path);

/* Little-endian fields. */
static inline void cnn_put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}
static inline uint32_t cnn_get_u32(const unsigned char *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static inline void cnn_put_u64(unsigned char *p, uint64_t v)
{
    cnn_put_u32(p, (uint32_t)v);
    cnn_put_u32(p + 4, (uint32_t)(v >> 32));
}
static inline uint64_t cnn_get_u64(const unsigned char *p)
{
    return (uint64_t)cnn_get_u32(p) | (uint64_t)cnn_get_u32(p + 4) << 32;
}
static inline void cnn_put_f32(unsigned char *p, float f)
{
    uint32_t bits;
    memcpy(&bits, &f, 4);
    cnn_put_u32(p, bits);
}
static inline float cnn_get_f32(const unsigned char *p)
{
    const uint32_t bits = cnn_get_u32(p);
    float f;
    memcpy(&f, &bits, 4);
    return f;
}

/* CRC-32 (zlib, IEEE) of n bytes. */
uint32_t cnn_crc32(const unsigned char *p, size_t n);

/* The model file format (cnn.h) in memory: the length of a model's bytes, the
 * bytes themselves, and their parse with every check (path names the source in
 * messages). */
size_t cnn_model_bytes_len(const cnn_model *m);
void cnn_model_to_bytes(const cnn_model *m, unsigned char *buf);
cnn_status cnn_model_from_bytes(cnn_model *m, const unsigned char *buf, size_t len,
                                const char *path, char *err, size_t errlen);

#endif
