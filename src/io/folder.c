/* folder.c - an image folder, torchvision's ImageFolder layout: dir/<split>/<class>/<file>.
 *
 * The classes are the folders of dir/<split> in bytewise (strcmp) order, or, for a
 * test split given a training set with names, the training set's names: a folder of
 * another name is an error, a class without a folder is not. Every regular file of
 * a class folder, in bytewise name order, is one image of that class, decoded by its
 * content (cnn_image_decode). Entries whose name starts with '.' are skipped at both
 * levels (hidden files, editors' and file managers' droppings). Symbolic links are
 * followed; a dangling one or a loop is an error, as is anything in dir/<split> that
 * is not a folder and anything in a class folder that is not a regular file (a
 * folder: no recursion; a FIFO or device: never opened).
 *
 * The file list is made first, then image 0 is decoded (its shape is the set's), the
 * pixel buffer allocated for all of them, and the rest decoded in parallel straight
 * into their places. Of the files that fail (unreadable, undecodable or of another
 * shape) the first in list order is reported, whatever the threads did. */
#include "cnn.h"

#include "config.h"

#include "fileio.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if HAVE_OPENMP
#include <omp.h>
#endif

#define FOLDER_MAX_CLASSES 256
#define FOLDER_MAX_IMAGES ((size_t)1 << 31)
/* The pixels of the whole set, and the bytes of one file. */
#define FOLDER_MAX_PIXELS ((unsigned long long)1 << 34)
#define FOLDER_MAX_FILE_BYTES ((size_t)1 << 30)
#define FOLDER_ERR_LEN 1024

/* ---------------------------------------------------------------- names and paths */

/* A growing list of strings (each malloc'ed). */
typedef struct str_list {
    char **s;
    size_t n, cap;
} str_list;

static void strs_free(str_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->s[i]);
    free(l->s);
    memset(l, 0, sizeof *l);
}

static int strs_add(str_list *l, const char *s)
{
    if (l->n == l->cap) {
        const size_t cap = l->cap ? 2 * l->cap : 64;
        char **grown = realloc(l->s, cap * sizeof *grown);
        if (!grown)
            return -1;
        l->s = grown, l->cap = cap;
    }
    if (!(l->s[l->n] = strdup(s)))
        return -1;
    l->n++;
    return 0;
}

static int by_bytes(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in directory path that do not start with '.', sorted bytewise. */
static cnn_status list_dir(const char *path, str_list *names, char *err, size_t errlen)
{
    DIR *d = opendir(path);
    if (!d)
        return cnn_errorf(CNN_ERR_IO, err, errlen, "%s: %s", path, strerror(errno));
    cnn_status st = CNN_OK;
    for (;;) {
        errno = 0;
        const struct dirent *e = readdir(d);
        if (!e) {
            if (errno)
                st = cnn_errorf(CNN_ERR_IO, err, errlen, "%s: %s", path, strerror(errno));
            break;
        }
        if (e->d_name[0] == '.')
            continue;
        if (strs_add(names, e->d_name)) {
            st = cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", path);
            break;
        }
    }
    closedir(d);
    if (st == CNN_OK && names->n > 1)
        qsort(names->s, names->n, sizeof *names->s, by_bytes);
    return st;
}

/* stat, following links; a dangling link or a loop is named as such. */
static cnn_status stat_entry(const char *path, struct stat *sb, char *err, size_t errlen)
{
    if (stat(path, sb) == 0)
        return CNN_OK;
    const int e = errno;
    struct stat lsb;
    if (e == ENOENT && lstat(path, &lsb) == 0 && S_ISLNK(lsb.st_mode))
        return cnn_errorf(CNN_ERR_IO, err, errlen, "%s: a symbolic link to nothing (%s)", path,
                          strerror(e));
    if (e == ELOOP)
        return cnn_errorf(CNN_ERR_IO, err, errlen, "%s: a symbolic link loop (%s)", path,
                          strerror(e));
    return cnn_errorf(CNN_ERR_IO, err, errlen, "%s: %s", path, strerror(e));
}

/* ---------------------------------------------------------------- classes */

/* The set's classes: their names and which folder of dir/<split> holds each. */
typedef struct class_set {
    str_list names;   /* the classes, label order */
    str_list folders; /* the folders found, sorted */
    int *label;       /* [folders.n] each folder's class */
} class_set;

static void classes_free(class_set *c)
{
    strs_free(&c->names);
    strs_free(&c->folders);
    free(c->label);
    c->label = NULL;
}

static int is_control(unsigned char c) { return c < 0x20 || c == 0x7f; }

/* A folder's name must be a class name: 1..CNN_NAME_MAX-1 bytes, no control
 * characters (the message shows them as '?', so that it stays one line). */
static cnn_status check_class_name(const char *path, const char *name, char *err,
                                   size_t errlen)
{
    const size_t len = strlen(name);
    if (len >= CNN_NAME_MAX)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: a class name of %zu bytes; at most %d", path, len,
                          CNN_NAME_MAX - 1);
    size_t bad = 0;
    while (bad < len && !is_control((unsigned char)name[bad]))
        bad++;
    if (bad == len)
        return CNN_OK;
    char *shown = strdup(path);
    if (!shown)
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "out of memory");
    for (char *p = shown; *p; p++)
        *p = is_control((unsigned char)*p) ? '?' : *p;
    cnn_errorf(CNN_ERR_FORMAT, err, errlen,
               "%s: the class name holds a control character (byte 0x%02x at %zu)", shown,
               (unsigned char)name[bad], bad + 1);
    free(shown);
    return CNN_ERR_FORMAT;
}

/* Every entry of dir/<split> (at split_path) must be a folder with a usable name. */
static cnn_status check_folders(const char *split_path, const str_list *folders, char *err,
                                size_t errlen)
{
    if (folders->n == 0)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: no class folders (expected %s/<class>/<image files>)",
                          split_path, split_path);
    if (folders->n > FOLDER_MAX_CLASSES)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: %zu class folders, at most %d",
                          split_path, folders->n, FOLDER_MAX_CLASSES);
    for (size_t i = 0; i < folders->n; i++) {
        char *path = cnn_path_join(split_path, folders->s[i]);
        if (!path)
            return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", split_path);
        struct stat sb;
        cnn_status st = stat_entry(path, &sb, err, errlen);
        if (st == CNN_OK && !S_ISDIR(sb.st_mode))
            st = cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                            "%s: is %s; %s holds one folder per class", path,
                            cnn_file_kind(sb.st_mode), split_path);
        if (st == CNN_OK)
            st = check_class_name(path, folders->s[i], err, errlen);
        free(path);
        if (st != CNN_OK)
            return st;
    }
    return CNN_OK;
}

/* The classes of the training set: each folder must be one of its names. */
static cnn_status classes_from(const cnn_dataset *train, const char *split_path,
                               class_set *c, char *err, size_t errlen)
{
    for (int k = 0; k < train->n_names; k++)
        if (strs_add(&c->names, cnn_dataset_class_name(train, k)))
            return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", split_path);
    for (size_t i = 0; i < c->folders.n; i++) {
        c->label[i] = -1;
        for (size_t k = 0; k < c->names.n && c->label[i] < 0; k++)
            if (strcmp(c->folders.s[i], c->names.s[k]) == 0)
                c->label[i] = (int)k;
        if (c->label[i] < 0)
            return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                              "%s/%s: class '%s' is not in the training set", split_path,
                              c->folders.s[i], c->folders.s[i]);
    }
    return CNN_OK;
}

static cnn_status find_classes(const char *split_path, const cnn_dataset *classes_of,
                               class_set *c, char *err, size_t errlen)
{
    cnn_status st = list_dir(split_path, &c->folders, err, errlen);
    if (st == CNN_OK)
        st = check_folders(split_path, &c->folders, err, errlen);
    if (st != CNN_OK)
        return st;
    c->label = malloc(c->folders.n * sizeof *c->label);
    if (!c->label)
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", split_path);
    if (classes_of && classes_of->names && classes_of->n_names > 0)
        return classes_from(classes_of, split_path, c, err, errlen);
    for (size_t i = 0; i < c->folders.n; i++) {
        c->label[i] = (int)i;
        if (strs_add(&c->names, c->folders.s[i]))
            return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", split_path);
    }
    return CNN_OK;
}

/* ---------------------------------------------------------------- the file list */

/* Every image file, class by class, each class's in name order. */
typedef struct file_list {
    str_list paths;
    uint8_t *labels;
    size_t labels_cap;
} file_list;

static void files_free(file_list *f)
{
    strs_free(&f->paths);
    free(f->labels);
    f->labels = NULL;
}

static cnn_status add_file(file_list *f, const char *path, int label, char *err,
                           size_t errlen)
{
    if (f->paths.n == FOLDER_MAX_IMAGES)
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: more than %zu images", path,
                          FOLDER_MAX_IMAGES);
    if (f->paths.n == f->labels_cap) {
        const size_t cap = f->labels_cap ? 2 * f->labels_cap : 256;
        uint8_t *grown = realloc(f->labels, cap);
        if (!grown)
            return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", path);
        f->labels = grown, f->labels_cap = cap;
    }
    f->labels[f->paths.n] = (uint8_t)label;
    if (strs_add(&f->paths, path))
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", path);
    return CNN_OK;
}

/* One entry of a class folder: a regular file (through links) is an image. */
static cnn_status add_entry(file_list *f, const char *path, int label, char *err,
                            size_t errlen)
{
    struct stat sb;
    const cnn_status st = stat_entry(path, &sb, err, errlen);
    if (st != CNN_OK)
        return st;
    if (S_ISDIR(sb.st_mode))
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: is a directory; a class folder holds image files only", path);
    if (!S_ISREG(sb.st_mode))
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: is %s, not an image file", path,
                          cnn_file_kind(sb.st_mode));
    return add_file(f, path, label, err, errlen);
}

static cnn_status list_class(const char *folder, int label, file_list *f, char *err,
                             size_t errlen)
{
    str_list names = {0};
    cnn_status st = list_dir(folder, &names, err, errlen);
    if (st == CNN_OK && names.n == 0)
        st = cnn_errorf(CNN_ERR_FORMAT, err, errlen, "%s: an empty class folder", folder);
    for (size_t i = 0; st == CNN_OK && i < names.n; i++) {
        char *path = cnn_path_join(folder, names.s[i]);
        st = path ? add_entry(f, path, label, err, errlen)
                  : cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", folder);
        free(path);
    }
    strs_free(&names);
    return st;
}

static cnn_status list_files(const char *split_path, const class_set *c, file_list *f,
                             char *err, size_t errlen)
{
    for (size_t i = 0; i < c->folders.n; i++) {
        char *folder = cnn_path_join(split_path, c->folders.s[i]);
        const cnn_status st =
            folder ? list_class(folder, c->label[i], f, err, errlen)
                   : cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", split_path);
        free(folder);
        if (st != CNN_OK)
            return st;
    }
    return CNN_OK;
}

/* ---------------------------------------------------------------- decoding */

typedef struct shape {
    int channels, rows, cols;
} shape;

static size_t shape_len(const shape *s)
{
    return (size_t)s->channels * (size_t)s->rows * (size_t)s->cols;
}

/* Read and decode one file; *pixels malloc'ed. */
static cnn_status decode_file(const char *path, uint8_t **pixels, shape *s, char *err,
                              size_t errlen)
{
    unsigned char *b = NULL;
    size_t len = 0;
    cnn_status st = cnn_read_file(path, FOLDER_MAX_FILE_BYTES, &b, &len, err, errlen);
    if (st == CNN_OK)
        st = cnn_image_decode(b, len, path, pixels, &s->channels, &s->rows, &s->cols, err,
                              errlen);
    free(b);
    return st;
}

/* Decode image i of the list into its place; another shape than the set's is an
 * error naming both files. */
static cnn_status decode_into(const file_list *f, size_t i, const shape *set, uint8_t *dst,
                              char *err, size_t errlen)
{
    uint8_t *px = NULL;
    shape s;
    cnn_status st = decode_file(f->paths.s[i], &px, &s, err, errlen);
    if (st == CNN_OK && memcmp(&s, set, sizeof s) != 0)
        st = cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                        "%s: %dx%dx%d, the set's images are %dx%dx%d (%s)", f->paths.s[i],
                        s.channels, s.rows, s.cols, set->channels, set->rows, set->cols,
                        f->paths.s[0]);
    if (st == CNN_OK)
        memcpy(dst, px, shape_len(set));
    free(px);
    return st;
}

/* The first failure in list order, whichever thread met it. */
typedef struct first_failure {
    size_t at; /* its index; the list's length while none */
    cnn_status st;
    char msg[FOLDER_ERR_LEN];
} first_failure;

static void note_failure(first_failure *ff, size_t i, cnn_status st, const char *msg)
{
#if HAVE_OPENMP
#pragma omp critical /* unnamed: a named one is an exported symbol */
#endif
    if (i < ff->at) {
        ff->st = st;
        snprintf(ff->msg, sizeof ff->msg, "%s", msg);
#if HAVE_OPENMP
#pragma omp atomic write
#endif
        ff->at = i;
    }
}

static size_t failed_at(first_failure *ff)
{
    size_t at;
#if HAVE_OPENMP
#pragma omp atomic read
#endif
    at = ff->at;
    return at;
}

typedef struct progress_sink {
    cnn_progress_fn fn;
    void *ctx;
    size_t done, total;
} progress_sink;

/* Count one file done; report from the calling thread only (thread 0 of the team). */
static void progress_step(progress_sink *p)
{
    size_t done;
#if HAVE_OPENMP
#pragma omp atomic capture
#endif
    done = ++p->done;
#if HAVE_OPENMP
    if (omp_get_thread_num() != 0)
        return;
#endif
    if (p->fn)
        p->fn(done, p->total, p->ctx);
}

/* Images 1..n-1 into d->pixels, in parallel; ff gets the first failure. */
static void decode_rest(const file_list *f, const shape *set, uint8_t *pixels,
                        progress_sink *prog, first_failure *ff)
{
    const size_t len = shape_len(set);
    const long long n = (long long)f->paths.n;
#if HAVE_OPENMP
#pragma omp parallel for schedule(dynamic, 16)
#endif
    for (long long i = 1; i < n; i++) {
        /* a file after a known failure cannot be the first one */
        if ((size_t)i < failed_at(ff)) {
            char msg[FOLDER_ERR_LEN] = "";
            const cnn_status st =
                decode_into(f, (size_t)i, set, pixels + (size_t)i * len, msg, sizeof msg);
            if (st != CNN_OK)
                note_failure(ff, (size_t)i, st, msg);
        }
        progress_step(prog);
    }
}

/* Decode image 0 (the set's shape), allocate the pixels of all, decode the rest. */
static cnn_status decode_all(const char *split_path, const file_list *f, cnn_dataset *d,
                             progress_sink *prog, char *err, size_t errlen)
{
    uint8_t *first = NULL;
    shape set;
    cnn_status st = decode_file(f->paths.s[0], &first, &set, err, errlen);
    if (st != CNN_OK)
        return st;
    const size_t n = f->paths.n, len = shape_len(&set);
    if ((unsigned long long)n * len > FOLDER_MAX_PIXELS || n > SIZE_MAX / len) {
        free(first);
        return cnn_errorf(CNN_ERR_FORMAT, err, errlen,
                          "%s: %zu images of %dx%dx%d, more than %llu bytes of pixels",
                          split_path, n, set.channels, set.rows, set.cols, FOLDER_MAX_PIXELS);
    }
    d->pixels = malloc(n * len);
    if (!d->pixels) {
        free(first);
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory for %zu images",
                          split_path, n);
    }
    memcpy(d->pixels, first, len);
    free(first);
    d->n = n, d->channels = set.channels, d->rows = set.rows, d->cols = set.cols;
    progress_step(prog);
    first_failure ff = {.at = n};
    decode_rest(f, &set, d->pixels, prog, &ff);
    if (ff.at < n)
        return cnn_errorf(ff.st, err, errlen, "%s", ff.msg);
    if (prog->fn)
        prog->fn(n, n, prog->ctx);
    return CNN_OK;
}

/* ---------------------------------------------------------------- the set */

/* The names back to back, each NUL-terminated, as a cnn_dataset holds them. */
static char *pack_names(const str_list *names)
{
    size_t bytes = 0;
    for (size_t k = 0; k < names->n; k++)
        bytes += strlen(names->s[k]) + 1;
    char *packed = malloc(bytes), *p = packed;
    for (size_t k = 0; packed && k < names->n; k++) {
        const size_t len = strlen(names->s[k]) + 1;
        memcpy(p, names->s[k], len);
        p += len;
    }
    return packed;
}

/* dir/<split> must be a directory. */
static cnn_status check_split(const char *split_path, char *err, size_t errlen)
{
    struct stat sb;
    const cnn_status st = stat_entry(split_path, &sb, err, errlen);
    if (st == CNN_OK && !S_ISDIR(sb.st_mode))
        return cnn_errorf(CNN_ERR_IO, err, errlen, "%s: is not a directory", split_path);
    return st;
}

static cnn_status load_split(const char *split_path, const cnn_dataset *classes_of,
                             cnn_dataset *d, progress_sink *prog, char *err, size_t errlen)
{
    class_set classes = {0};
    file_list files = {0};
    cnn_status st = check_split(split_path, err, errlen);
    if (st == CNN_OK)
        st = find_classes(split_path, classes_of, &classes, err, errlen);
    if (st == CNN_OK)
        st = list_files(split_path, &classes, &files, err, errlen);
    if (st == CNN_OK) {
        prog->total = files.paths.n;
        st = decode_all(split_path, &files, d, prog, err, errlen);
    }
    if (st == CNN_OK) {
        d->labels = files.labels, files.labels = NULL;
        d->n_names = (int)classes.names.n;
        if (!(d->names = pack_names(&classes.names)))
            st = cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", split_path);
    }
    files_free(&files);
    classes_free(&classes);
    return st;
}

cnn_status cnn_folder_load(const char *dir, const char *split, const cnn_dataset *classes_of,
                           cnn_dataset *out, cnn_progress_fn progress, void *ctx, char *err,
                           size_t errlen)
{
    if (out)
        memset(out, 0, sizeof *out);
    if (!dir || !split || !out || !*dir || !*split || strchr(split, '/'))
        return cnn_errorf(CNN_ERR_ARG, err, errlen,
                          "cnn_folder_load: a directory and a split (a folder name)");
    if (classes_of && classes_of->n_names > FOLDER_MAX_CLASSES)
        return cnn_errorf(CNN_ERR_ARG, err, errlen,
                          "cnn_folder_load: the training set names %d classes, at most %d",
                          classes_of->n_names, FOLDER_MAX_CLASSES);
    char *split_path = cnn_path_join(dir, split);
    if (!split_path)
        return cnn_errorf(CNN_ERR_NOMEM, err, errlen, "%s: out of memory", dir);
    cnn_dataset d = {.format = CNN_DATA_FOLDER};
    progress_sink prog = {.fn = progress, .ctx = ctx};
    const cnn_status st = load_split(split_path, classes_of, &d, &prog, err, errlen);
    free(split_path);
    if (st != CNN_OK) {
        cnn_dataset_free(&d);
        return st;
    }
    *out = d;
    return CNN_OK;
}
