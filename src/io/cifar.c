/* cifar.c - the CIFAR-10 binary format: batch files of 3,073-byte records (a label
 * byte, then the red, green and blue 32 x 32 planes, row-major) and the class names
 * of batches.meta.txt, one per line. Every file is a regular file read whole, its
 * size checked against the record size and a bound before anything is allocated. */
#include "cnn.h"

#include "fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CIFAR_SIDE 32
#define CIFAR_CHANNELS 3
#define CIFAR_IMAGE_BYTES (CIFAR_CHANNELS * CIFAR_SIDE * CIFAR_SIDE)
#define CIFAR_RECORD (1 + CIFAR_IMAGE_BYTES)
#define CIFAR_TRAIN_BATCHES 5
#define CIFAR_MAX_BATCHES CIFAR_TRAIN_BATCHES
/* The real set is 300 MB; batches holding more than this in all are refused. */
#define CIFAR_MAX_BYTES ((unsigned long long)1 << 34)
#define CIFAR_MAX_CLASSES 256
/* 256 names of at most 63 bytes fit many times over; blank lines may follow them. */
#define CIFAR_META_MAX_BYTES ((size_t)64 << 10)
#define CIFAR_META_NAME "batches.meta.txt"

/* The class names read so far, back to back, each NUL-terminated. */
typedef struct name_list {
    char *bytes;
    size_t len;
    int n;
} name_list;

static int is_blank(const unsigned char *s, size_t len)
{
    for (size_t i = 0; i < len; i++)
        if (s[i] != ' ')
            return 0;
    return 1;
}

/* Check line `lineno` (its CR already stripped) as a class name and append it. */
static cnn_status add_name(name_list *names, const unsigned char *s, size_t len,
                           const char *path, int lineno, char *err, size_t errlen)
{
    if (names->n == CIFAR_MAX_CLASSES)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: more than %d class names", path,
                          CIFAR_MAX_CLASSES);
    if (len >= CNN_NAME_MAX)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: line %d is %zu bytes long; a class name is 1..%d bytes", path,
                          lineno, len, CNN_NAME_MAX - 1);
    for (size_t i = 0; i < len; i++)
        if (s[i] < 0x20 || s[i] == 0x7f)
            return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                              "%s: line %d holds a control character (byte 0x%02x at column "
                              "%zu); class names are printable text", path, lineno, s[i], i + 1);
    memcpy(names->bytes + names->len, s, len);
    names->len += len;
    names->bytes[names->len++] = '\0';
    names->n++;
    return CNN_OK;
}

/* The names of batches.meta.txt's bytes: one per line (a CRLF's CR dropped), blank
 * lines at the end ignored, none in between. names->bytes must hold len + 1 bytes. */
static cnn_status parse_names(name_list *names, const unsigned char *b, size_t len,
                              const char *path, char *err, size_t errlen)
{
    int lineno = 0, first_blank = 0;
    for (size_t at = 0; at < len;) {
        const unsigned char *nl = memchr(b + at, '\n', len - at);
        const size_t end = nl ? (size_t)(nl - b) : len;
        size_t line_len = end - at;
        if (line_len > 0 && b[at + line_len - 1] == '\r')
            line_len--;
        lineno++;
        if (is_blank(b + at, line_len)) {
            first_blank = first_blank ? first_blank : lineno;
        } else if (first_blank) {
            return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                              "%s: line %d is blank, but class names follow it (one name per "
                              "line, no empty ones)", path, first_blank);
        } else {
            const cnn_status st = add_name(names, b + at, line_len, path, lineno, err, errlen);
            if (st != CNN_OK)
                return st;
        }
        at = end + 1;
    }
    if (names->n == 0)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: no class names (one per line expected)", path);
    return CNN_OK;
}

static cnn_status read_names(const char *path, name_list *names, char *err, size_t errlen)
{
    unsigned char *b = NULL;
    size_t len = 0;
    cnn_status st = cnn_read_file(path, CIFAR_META_MAX_BYTES, &b, &len, err, errlen);
    if (st != CNN_OK)
        return st;
    names->bytes = malloc(len + 1);
    if (!names->bytes)
        st = cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", path);
    else
        st = parse_names(names, b, len, path, err, errlen);
    free(b);
    return st;
}

/* The records of the batch at path, from its size: a whole, non-zero number. */
static cnn_status batch_records(const char *path, size_t *records, char *err, size_t errlen)
{
    struct stat sb;
    const int fd = cnn_open_regular(path, &sb, err, errlen);
    if (fd < 0)
        return CNN_ERR_IO;
    close(fd);
    const unsigned long long size = (unsigned long long)sb.st_size;
    if (size == 0)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: empty (a CIFAR-10 batch holds 3,073-byte records)", path);
    if (size % CIFAR_RECORD)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: %llu bytes is not a whole number of 3,073-byte CIFAR-10 records",
                          path, size);
    if (size > CIFAR_MAX_BYTES || size > SIZE_MAX)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: %llu bytes, more than the limit of %llu", path, size,
                          CIFAR_MAX_BYTES);
    *records = (size_t)(size / CIFAR_RECORD);
    return CNN_OK;
}

/* Every label of the batch at path must have a name. */
static cnn_status check_labels(const char *path, const uint8_t *labels, size_t records,
                               int n_names, char *err, size_t errlen)
{
    for (size_t i = 0; i < records; i++)
        if (labels[i] >= n_names)
            return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                              "%s: record %zu has label %u, but %s names %d classes "
                              "(labels 0..%d)", path, i, (unsigned)labels[i], CIFAR_META_NAME,
                              n_names, n_names - 1);
    return CNN_OK;
}

/* Read the batch at path (records long, as batch_records found) into its labels and
 * pixels, and check the labels. */
static cnn_status read_batch(const char *path, size_t records, uint8_t *pixels,
                             uint8_t *labels, int n_names, char *err, size_t errlen)
{
    const size_t want = records * CIFAR_RECORD;
    unsigned char *b = NULL;
    size_t len = 0;
    cnn_status st = cnn_read_file(path, want, &b, &len, err, errlen);
    if (st != CNN_OK)
        return st;
    if (len != want) {
        free(b);
        return cnn_errorf(CNN_ERR_IO, err, errlen,
                          "%s: the file changed size while being read (%zu bytes, then %zu)",
                          path, want, len);
    }
    for (size_t i = 0; i < records; i++) {
        const unsigned char *rec = b + i * CIFAR_RECORD;
        labels[i] = rec[0];
        memcpy(pixels + i * CIFAR_IMAGE_BYTES, rec + 1, CIFAR_IMAGE_BYTES);
    }
    free(b);
    return check_labels(path, labels, records, n_names, err, errlen);
}

/* The batch files of a split and the records of each. */
typedef struct batch_set {
    char *path[CIFAR_MAX_BATCHES];
    size_t records[CIFAR_MAX_BATCHES];
    int n;
    size_t total; /* records in all */
} batch_set;

static void batches_free(batch_set *s)
{
    for (int i = 0; i < s->n; i++)
        free(s->path[i]);
    s->n = 0;
}

/* Find the split's batches and size them: every one must be there before any is read. */
static cnn_status find_batches(const char *dir, const char *split, batch_set *s, char *err,
                               size_t errlen)
{
    const int train = strcmp(split, "train") == 0;
    const int count = train ? CIFAR_TRAIN_BATCHES : 1;
    unsigned long long bytes = 0;
    for (int i = 0; i < count; i++) {
        char name[32];
        snprintf(name, sizeof name, train ? "data_batch_%d.bin" : "test_batch.bin", i + 1);
        s->path[i] = cnn_path_join(dir, name);
        if (!s->path[i])
            return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", dir);
        s->n = i + 1;
        const cnn_status st = batch_records(s->path[i], &s->records[i], err, errlen);
        if (st != CNN_OK)
            return st;
        s->total += s->records[i];
        bytes += (unsigned long long)s->records[i] * CIFAR_RECORD;
        if (bytes > CIFAR_MAX_BYTES)
            return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                              "%s: the %s batches hold more than %llu bytes", dir, split,
                              CIFAR_MAX_BYTES);
    }
    return CNN_OK;
}

static cnn_status read_batches(const batch_set *s, cnn_dataset *d, const char *dir, char *err,
                               size_t errlen)
{
    d->n = s->total;
    d->pixels = malloc(s->total * CIFAR_IMAGE_BYTES);
    d->labels = malloc(s->total);
    if (!d->pixels || !d->labels)
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory for %zu images", dir,
                          s->total);
    size_t at = 0;
    for (int i = 0; i < s->n; i++) {
        const cnn_status st = read_batch(s->path[i], s->records[i],
                                         d->pixels + at * CIFAR_IMAGE_BYTES, d->labels + at,
                                         d->n_names, err, errlen);
        if (st != CNN_OK)
            return st;
        at += s->records[i];
    }
    return CNN_OK;
}

cnn_status cnn_cifar10_load(const char *dir, const char *split, cnn_dataset *out, char *err,
                            size_t errlen)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!dir || !split || !out || !*dir ||
        (strcmp(split, "train") != 0 && strcmp(split, "test") != 0))
        return cnn_errorf(CNN_ERR_ARG, err, errlen,
                          "cnn_cifar10_load: a directory and the split train or test");
    cnn_dataset d = {.channels = CIFAR_CHANNELS, .rows = CIFAR_SIDE, .cols = CIFAR_SIDE,
                     .format = CNN_DATA_CIFAR};
    name_list names = {0};
    batch_set batches = {0};
    char *meta = cnn_path_join(dir, CIFAR_META_NAME);
    cnn_status st = meta ? read_names(meta, &names, err, errlen)
                         : cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", dir);
    d.names = names.bytes;
    d.n_names = names.n;
    if (st == CNN_OK)
        st = find_batches(dir, split, &batches, err, errlen);
    if (st == CNN_OK)
        st = read_batches(&batches, &d, dir, err, errlen);
    free(meta);
    batches_free(&batches);
    if (st != CNN_OK) {
        cnn_dataset_free(&d);
        return st;
    }
    *out = d;
    return CNN_OK;
}
