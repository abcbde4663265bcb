/* autocore.h - for the programs (cnn, the benchmarks): run the OpenBLAS core that
 * suits this CPU without the user doing anything (internal).
 *
 * OpenBLAS reads OPENBLAS_CORETYPE only when it loads, before main. So when the core
 * it detected falls short of the CPU (cnn_blas_core_decide), the program restarts
 * itself once, at the very start of main, with OPENBLAS_CORETYPE set to the better
 * core; the restarted program checks that core (one small SGEMM and SGEMV of each
 * kind against plain loops, exact on integers) and, on a mismatch, restarts once more
 * on OpenBLAS's own choice and says so. CNN_BLAS_CORE_STATE carries the state across
 * the restarts, so there is never a third. A user's OPENBLAS_CORETYPE is respected;
 * CNN_KEEP_BLAS_CORE=1 keeps OpenBLAS's choice.
 *
 * Test hooks (the suites force the paths a developer's CPU does not take):
 *   CNN_TEST_BLAS_DETECTED=1    take OPENBLAS_CORETYPE as OpenBLAS's own detection
 *   CNN_TEST_BLAS_CHECK_FAIL=1  make the check of a chosen core fail */
#ifndef CNN_AUTOCORE_H
#define CNN_AUTOCORE_H

#include <stddef.h>

typedef struct cnn_core_report {
    char how[224];     /* how the core came to run ("chosen for this CPU: ..."), or "" */
    char warning[320]; /* something the user should know, or "" */
} cnn_core_report;

/* First thing in main, before any output or thread: may replace the process with
 * itself (execv of /proc/self/exe, same argv); otherwise fills *r. */
void cnn_core_autoselect(char **argv, cnn_core_report *r);

/* The BLAS line: cnn_blas_describe, then how the core was chosen. @return buf. */
const char *cnn_core_describe(const cnn_core_report *r, char *buf, size_t len);

/* One SGEMM of each transposition and one SGEMV of each, small and over the
 * small-matrix size, against plain loops on small integers (every sum exact).
 * @return 1 if all agree exactly, else 0 with the reason in why. */
int cnn_blas_selfcheck(char *why, size_t len);

#endif
