/* bench.h - timing, statistics and machine description for the benchmarks
 * (header-only). Times are wall-clock (CLOCK_MONOTONIC); a figure is the median of
 * repeats after a warm-up, with its spread (max - min) / median. */
#ifndef CNN_BENCH_H
#define CNN_BENCH_H

#include "cnn.h"
#include "autocore.h"
#include "fileio.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Output files (--json and what goes with it) are written as every file here: built
 * in memory, then replaced atomically, never through a device node or a directory. */
typedef struct {
    FILE *f;
    char *buf;
    size_t len;
} bench_out;

/* Check before the benchmarks run that path can be written: @return 1, or 0 after
 * printing why. */
static inline int bench_out_ok(const char *tool, const char *path)
{
    char target[4096], err[4352];
    if (cnn_output_target(path, target, sizeof target, err, sizeof err) == CNN_OK)
        return 1;
    fprintf(stderr, "%s: %s\n", tool, err);
    return 0;
}

static inline FILE *bench_out_open(bench_out *o)
{
    o->buf = NULL, o->len = 0;
    o->f = open_memstream(&o->buf, &o->len);
    return o->f;
}

/* Close o and write what it holds to path: @return 1, or 0 after printing why. */
static inline int bench_out_close(bench_out *o, const char *tool, const char *path)
{
    char err[4352];
    int ok = fclose(o->f) == 0;
    ok = ok && cnn_write_atomic(path, (const unsigned char *)o->buf, o->len, err,
                                sizeof err) == CNN_OK;
    if (!ok)
        fprintf(stderr, "%s: %s\n", tool, err);
    free(o->buf);
    return ok;
}

static inline double bench_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int bench_cmp(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

typedef struct {
    double median, spread;
} bench_stat;

/* Median and relative spread of n samples (sorts v). */
static inline bench_stat bench_stats(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, bench_cmp);
    bench_stat s;
    s.median = n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
    s.spread = s.median > 0 ? (v[n - 1] - v[0]) / s.median : 0;
    return s;
}

typedef struct {
    char cpu[128];
    int cores;
    char blas[512];
    char core[32];      /* the OpenBLAS core in use */
    char core_how[224]; /* how it was chosen: "OpenBLAS's choice", "chosen for this CPU: ..." */
    char compiler[128];
} bench_machine;

/* core: from cnn_core_autoselect, called first in main. */
static inline void bench_machine_read(bench_machine *m, const cnn_core_report *core)
{
    memset(m, 0, sizeof *m);
    snprintf(m->cpu, sizeof m->cpu, "unknown");
    FILE *f = fopen("/proc/cpuinfo", "r");
    char line[512];
    while (f && fgets(line, sizeof line, f)) {
        if (strncmp(line, "model name", 10) == 0 && strcmp(m->cpu, "unknown") == 0) {
            char *v = strchr(line, ':');
            if (v) {
                v += 2;
                v[strcspn(v, "\n")] = '\0';
                snprintf(m->cpu, sizeof m->cpu, "%s", v);
            }
        }
        if (strncmp(line, "processor", 9) == 0)
            m->cores++;
    }
    if (f)
        fclose(f);
    cnn_core_describe(core, m->blas, sizeof m->blas);
    const char *name = strstr(m->blas, ", core ");
    snprintf(m->core, sizeof m->core, "%.*s", name ? (int)strcspn(name + 7, ",") : 7,
             name ? name + 7 : "unknown");
    snprintf(m->core_how, sizeof m->core_how, "%s", core->how[0] ? core->how : "OpenBLAS's choice");
#ifdef __VERSION__
    snprintf(m->compiler, sizeof m->compiler, "%s %s", "gcc-compatible", __VERSION__);
#endif
}

/* JSON string: s with quotes and backslashes escaped. */
static inline void bench_json_str(FILE *f, const char *s)
{
    fputc('"', f);
    for (; *s; s++) {
        if (*s == '"' || *s == '\\')
            fputc('\\', f);
        if ((unsigned char)*s >= 0x20)
            fputc(*s, f);
    }
    fputc('"', f);
}

static inline void bench_json_machine(FILE *f, const bench_machine *m, const char *flags)
{
    fprintf(f, "{\"cpu\": ");
    bench_json_str(f, m->cpu);
    fprintf(f, ", \"cores\": %d, \"blas\": ", m->cores);
    bench_json_str(f, m->blas);
    fprintf(f, ", \"blas_core\": ");
    bench_json_str(f, m->core);
    fprintf(f, ", \"blas_core_how\": ");
    bench_json_str(f, m->core_how);
    fprintf(f, ", \"compiler\": ");
    bench_json_str(f, m->compiler);
    fprintf(f, ", \"flags\": ");
    bench_json_str(f, flags);
    fprintf(f, "}");
}

#endif
