/* check.h - a tiny TAP producer for the test programs (header-only). */
#ifndef CNN_CHECK_H
#define CNN_CHECK_H

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>

static int tap_count, tap_failed;

/* Report one test point; @return ok. */
static inline int tap_ok(int ok, const char *fmt, ...)
{
    va_list ap;
    printf("%s %d - ", ok ? "ok" : "not ok", ++tap_count);
    va_start(ap, fmt);
    vprintf(fmt, ap);
    va_end(ap);
    putchar('\n');
    fflush(stdout);
    if (!ok)
        tap_failed++;
    return ok;
}

/* Write len bytes to path; a failure is a failed test point. @return 1 if written. */
static inline int tap_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    int ok = f != NULL;
    if (f && len)
        ok = fwrite(data, 1, len, f) == len;
    if (f && fclose(f))
        ok = 0;
    if (!ok)
        tap_ok(0, "cannot write %s", path);
    return ok;
}

/* Print the plan; @return the exit status (0 only if every point passed). */
static inline int tap_done(void)
{
    printf("1..%d\n", tap_count);
    return tap_failed ? 1 : 0;
}

/* Largest violation of |got - want| <= atol + rtol * |want|, as a multiple of the
 * allowed error (<= 1 passes). NaN anywhere fails. */
static inline double close_ratio(const float *got, const double *want, size_t n, double atol,
                          double rtol, size_t *worst)
{
    double r = 0.0;
    *worst = 0;
    for (size_t i = 0; i < n; i++) {
        const double err = fabs((double)got[i] - want[i]);
        const double q = err / (atol + rtol * fabs(want[i]));
        if (!(q <= r) ) { /* also catches NaN */
            r = isnan(q) ? INFINITY : q;
            *worst = i;
        }
    }
    return r;
}

/* One test point: got (float) matches want (double) element-wise within tolerance. */
static inline int check_close(const char *name, const float *got, const double *want, size_t n,
                       double atol, double rtol)
{
    size_t w;
    const double r = close_ratio(got, want, n, atol, rtol, &w);
    if (r <= 1.0)
        return tap_ok(1, "%s (%zu values, worst %.2g of tolerance)", name, n, r);
    return tap_ok(0, "%s: element %zu is %.9g, expected %.9g (atol %g, rtol %g)", name, w,
                  (double)got[w], want[w], atol, rtol);
}

/* Same for two float arrays. */
static inline int check_close_f(const char *name, const float *got, const float *want, size_t n,
                         double atol, double rtol)
{
    double *w = malloc((n ? n : 1) * sizeof *w);
    if (!w)
        return tap_ok(0, "%s: out of memory", name);
    for (size_t i = 0; i < n; i++)
        w[i] = want[i];
    const int ok = check_close(name, got, w, n, atol, rtol);
    free(w);
    return ok;
}

#endif
