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

/* ---- the decision (blas.c), a pure function the tests drive with any CPU */

/* The CPU's instruction sets that decide the core (x86-64; all 0 elsewhere). */
typedef struct cnn_cpu_features {
    int amd;                                     /* AMD or Hygon: AVX2 core Zen */
    int avx2, fma;                               /* AVX2 cores need both */
    int avx512f, avx512bw, avx512dq, avx512vl;   /* AVX-512 cores need all four */
    int avx512bf16;                              /* Cooperlake */
} cnn_cpu_features;

/* This CPU's features, as far as the operating system enables them. */
void cnn_cpu_features_read(cnn_cpu_features *f);

/* OpenBLAS cores the choice considers, as bits of a mask. */
enum {
    CNN_CORE_HASWELL = 1u,
    CNN_CORE_ZEN = 2u,
    CNN_CORE_SKYLAKEX = 4u,
    CNN_CORE_COOPERLAKE = 8u,
};
/* The cores this process's OpenBLAS carries (0 unless it is a DYNAMIC_ARCH build). */
unsigned cnn_blas_cores_available(void);
/* "OpenBLAS 0.3.21": the library and its version. @return buf. */
const char *cnn_blas_version(char *buf, size_t len);

typedef struct cnn_blas_core_choice {
    const char *core; /* the core to run ("SkylakeX"), or NULL: keep OpenBLAS's */
    char reason[160]; /* why, or "" when OpenBLAS's own choice fits */
} cnn_blas_core_choice;

/* The decision, a pure function of its arguments. cpu: the features; detected: the
 * core OpenBLAS chose itself; blas: "OpenBLAS 0.3.21"; available: the cores it has;
 * env_core: the user's OPENBLAS_CORETYPE (NULL if unset; always respected); keep:
 * the user asked to keep OpenBLAS's choice. A core is chosen only when the detected
 * one falls short of the CPU: AVX-512 F/BW/DQ/VL present but a core without AVX-512
 * kernels (then Cooperlake where AVX-512 BF16 is present, else SkylakeX), or AVX2 and
 * FMA present but a pre-Haswell core (then Zen on AMD, else Haswell). */
cnn_blas_core_choice cnn_blas_core_decide(const cnn_cpu_features *cpu, const char *detected,
                                          const char *blas, unsigned available,
                                          const char *env_core, int keep);


/* ---- the restart (autocore.c) */

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
