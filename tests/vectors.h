/* vectors.h - the oracle files' reader for the test programs (header-only).
 * A file is a series of entries: a line 'NAME DIM1 DIM2 ...' followed by one line of
 * prod(DIM) numbers, row-major; or a line 'NAME' alone followed by one line of text
 * (need_text). Lines starting with '#' and blank lines are skipped. Any malformed
 * line ends the program with one clear line on stderr and a TAP bail out.
 * Define VECTORS_PROGRAM (the program's name) before including. */
#ifndef CNN_VECTORS_H
#define CNN_VECTORS_H

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_DIMS 4

typedef struct vec {
    char name[64];
    int ndim;
    size_t dims[MAX_DIMS];
    size_t n;
    double *v;
    char *text; /* a text entry (no dimensions) */
} vec;

static vec *tab;
static size_t ntab, captab;
static char *text;
static const char *oracle_path = "(none)";

static void cleanup(void)
{
    for (size_t i = 0; i < ntab; i++)
        free(tab[i].v), free(tab[i].text);
    free(tab);
    free(text);
    tab = NULL;
    text = NULL;
    ntab = captab = 0;
}

/* One clear line on stderr (and a TAP bail out), then exit 1. */
static void die(const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    fprintf(stderr, "%s: %s: %s\n", VECTORS_PROGRAM, oracle_path, msg);
    printf("Bail out! %s: %s\n", oracle_path, msg);
    fflush(stdout);
    cleanup();
    exit(1);
}

static char *read_file(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die("cannot open the oracle file (%s)", strerror(errno));
    size_t len = 0, cap = 1 << 20;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            fclose(f);
            die("out of memory reading the file");
        }
        len += fread(buf + len, 1, cap - 1 - len, f);
        if (len < cap - 1)
            break;
        cap *= 2;
        char *nb = realloc(buf, cap);
        if (!nb)
            free(buf);
        buf = nb;
    }
    const int err = ferror(f) ? errno : 0;
    fclose(f);
    if (err) {
        free(buf);
        die("read error (%s)", strerror(err));
    }
    buf[len] = '\0';
    if (memchr(buf, '\0', len)) {
        free(buf);
        die("the file contains a NUL byte");
    }
    return buf;
}

static int is_blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r')
            return 0;
    return 1;
}

/* 'NAME DIM1 DIM2 ...' into a new table entry (values not yet read). */
static void parse_header(char *line, size_t lineno)
{
    char *s = line;
    while (*s == ' ' || *s == '\t')
        s++;
    const char *name = s;
    while (*s && *s != ' ' && *s != '\t' && *s != '\r')
        s++;
    const size_t nlen = (size_t)(s - name);
    if (nlen == 0 || nlen >= sizeof tab[0].name)
        die("line %zu: bad vector name", lineno);
    for (size_t i = 0; i < ntab; i++)
        if (strlen(tab[i].name) == nlen && !memcmp(tab[i].name, name, nlen))
            die("line %zu: vector '%.*s' appears twice", lineno, (int)nlen, name);
    if (ntab == captab) {
        const size_t nc = captab ? 2 * captab : 64;
        vec *nt = realloc(tab, nc * sizeof *nt);
        if (!nt)
            die("out of memory");
        tab = nt;
        captab = nc;
    }
    vec *v = &tab[ntab];
    memset(v, 0, sizeof *v);
    memcpy(v->name, name, nlen);
    v->name[nlen] = '\0';
    v->n = 1;
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == '\r')
            s++;
        if (!*s)
            break;
        if (*s < '0' || *s > '9')
            die("line %zu: '%s': a dimension is not a positive integer", lineno, v->name);
        char *end;
        errno = 0;
        const unsigned long d = strtoul(s, &end, 10);
        if (errno || d == 0 || d > 100000000UL || (*end && *end != ' ' && *end != '\t' &&
                                                   *end != '\r'))
            die("line %zu: '%s': a dimension is not a positive integer", lineno, v->name);
        if (v->ndim == MAX_DIMS)
            die("line %zu: '%s' has more than %d dimensions", lineno, v->name, MAX_DIMS);
        v->dims[v->ndim++] = d;
        if (v->n > 100000000UL / d)
            die("line %zu: '%s' is too large", lineno, v->name);
        v->n *= d;
        s = end;
    }
    ntab++; /* v->v stays NULL until its values line; no dimensions: a text line */
}

static void parse_values(vec *v, char *line, size_t lineno)
{
    if (v->ndim == 0) {
        v->text = strdup(line);
        if (!v->text)
            die("out of memory");
        return;
    }
    v->v = malloc(v->n * sizeof *v->v);
    if (!v->v)
        die("out of memory");
    char *s = line;
    size_t k = 0;
    for (;;) {
        while (*s == ' ' || *s == '\t' || *s == '\r')
            s++;
        if (!*s)
            break;
        char *end;
        const double x = strtod(s, &end);
        if (end == s || (*end && *end != ' ' && *end != '\t' && *end != '\r'))
            die("line %zu: '%s': value %zu is not a number", lineno, v->name, k + 1);
        if (!isfinite(x))
            die("line %zu: '%s': value %zu is not finite", lineno, v->name, k + 1);
        if (k == v->n)
            die("line %zu: '%s' has more than the %zu values of its dimensions", lineno,
                v->name, v->n);
        v->v[k++] = x;
        s = end;
    }
    if (k != v->n)
        die("line %zu: '%s' has %zu values, its dimensions need %zu", lineno, v->name, k, v->n);
}

static void load_oracle(const char *path)
{
    oracle_path = path;
    text = read_file(path);
    char *line = text;
    size_t lineno = 0;
    vec *pending = NULL; /* a header waiting for its values line */
    while (*line) {
        char *nl = strchr(line, '\n');
        char *next = nl ? nl + 1 : line + strlen(line);
        if (nl)
            *nl = '\0';
        lineno++;
        if (pending) {
            parse_values(pending, line, lineno);
            pending = NULL;
        } else if (line[0] != '#' && !is_blank(line)) {
            parse_header(line, lineno);
            pending = &tab[ntab - 1];
        }
        line = next;
    }
    if (pending)
        die("'%s' has no values line (file truncated?)", pending->name);
    if (ntab == 0)
        die("no vectors in the file");
    free(text);
    text = NULL;
}

/* The values of vector `name`, which must have exactly the given dimensions. */
static const double *need_dims(const char *name, const size_t *dims, int ndim)
{
    for (size_t i = 0; i < ntab; i++) {
        if (strcmp(tab[i].name, name))
            continue;
        int ok = tab[i].ndim == ndim;
        for (int d = 0; ok && d < ndim; d++)
            ok = tab[i].dims[d] == dims[d];
        if (!ok) {
            char want[96], have[96];
            size_t a = 0, b = 0;
            for (int d = 0; d < ndim; d++)
                a += (size_t)snprintf(want + a, sizeof want - a, d ? " %zu" : "%zu", dims[d]);
            for (int d = 0; d < tab[i].ndim; d++)
                b += (size_t)snprintf(have + b, sizeof have - b, d ? " %zu" : "%zu",
                                      tab[i].dims[d]);
            die("vector '%s' has dimensions (%s), expected (%s)", name, have, want);
        }
        return tab[i].v;
    }
    die("vector '%s' is missing", name);
    return NULL;
}
/* The values of vector `name`, which must hold exactly n values (any dimensions). */
static inline const double *need_count(const char *name, size_t n)
{
    for (size_t i = 0; i < ntab; i++)
        if (strcmp(tab[i].name, name) == 0) {
            if (!tab[i].v || tab[i].n != n)
                die("vector '%s' has %zu values, expected %zu", name, tab[i].n, n);
            return tab[i].v;
        }
    die("vector '%s' is missing", name);
    return NULL;
}

/* Whether the file has an entry `name`. */
static inline int has_entry(const char *name)
{
    for (size_t i = 0; i < ntab; i++)
        if (strcmp(tab[i].name, name) == 0)
            return 1;
    return 0;
}

/* The text of entry `name` (a header with no dimensions). */
static inline const char *need_text(const char *name)
{
    for (size_t i = 0; i < ntab; i++)
        if (strcmp(tab[i].name, name) == 0) {
            if (!tab[i].text)
                die("entry '%s' is not a text entry", name);
            return tab[i].text;
        }
    die("entry '%s' is missing", name);
    return NULL;
}

#define NEED(name, ...)                                                                      \
    need_dims(name, (const size_t[]){__VA_ARGS__},                                           \
              (int)(sizeof((const size_t[]){__VA_ARGS__}) / sizeof(size_t)))

#endif
