/* autocore.c - restart the program on the OpenBLAS core that suits this CPU, and
 * check the core before trusting it (see autocore.h). */
#include "autocore.h"

#include "cnn.h"
#include "config.h"

#include <cblas.h>
#include <errno.h>
#include <setjmp.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#define STATE_VAR "CNN_BLAS_CORE_STATE"

static int env_on(const char *name)
{
    const char *v = getenv(name);
    return v && *v && strcmp(v, "0") != 0;
}

/* ---------------------------------------------------------------- the check */

/* A kernel built for instructions the CPU lacks would stop the check with SIGILL;
 * the handler turns that into a failed check. Only the check sets this. */
static sigjmp_buf *ill_jump;

static void on_sigill(int sig)
{
    (void)sig;
    if (ill_jump)
        siglongjmp(*ill_jump, 1);
    _exit(128 + SIGILL);
}

static float small_int(size_t i, unsigned salt) { return (float)((int)((i * 7 + salt) % 9) - 4); }

/* C[M][N] = A[M][K] B[K][N] through every transposition, and y = A x, y' = A^T x',
 * each compared exactly with the same sums in plain loops. */
static int check_size(int M, int N, int K, char *why, size_t len)
{
    const size_t nA = (size_t)M * K, nB = (size_t)K * N, nC = (size_t)M * N;
    float *A = malloc(nA * sizeof *A), *At = malloc(nA * sizeof *At);
    float *B = malloc(nB * sizeof *B), *Bt = malloc(nB * sizeof *Bt);
    float *C = malloc(nC * sizeof *C), *want = malloc(nC * sizeof *want);
    float *x = malloc((size_t)(M > K ? M : K) * sizeof *x), *y = malloc((size_t)(M > K ? M : K) * sizeof *y);
    int ok = A && At && B && Bt && C && want && x && y;
    if (!ok)
        snprintf(why, len, "out of memory");
    for (int i = 0; ok && i < M; i++)
        for (int k = 0; k < K; k++)
            A[(size_t)i * K + k] = At[(size_t)k * M + i] = small_int((size_t)i * K + k, 3);
    for (int k = 0; ok && k < K; k++)
        for (int j = 0; j < N; j++)
            B[(size_t)k * N + j] = Bt[(size_t)j * K + k] = small_int((size_t)k * N + j, 5);
    for (int i = 0; ok && i < M; i++)
        for (int j = 0; j < N; j++) {
            float s = 0.0f; /* integers below 2^24: every partial sum is exact */
            for (int k = 0; k < K; k++)
                s += A[(size_t)i * K + k] * B[(size_t)k * N + j];
            want[(size_t)i * N + j] = s;
        }
    static const struct {
        enum CBLAS_TRANSPOSE ta, tb;
        const char *name;
    } kinds[] = {{CblasNoTrans, CblasNoTrans, "NN"},
                 {CblasNoTrans, CblasTrans, "NT"},
                 {CblasTrans, CblasNoTrans, "TN"},
                 {CblasTrans, CblasTrans, "TT"}};
    for (int t = 0; ok && t < 4; t++) {
        const int ta = kinds[t].ta == CblasTrans, tb = kinds[t].tb == CblasTrans;
        for (size_t i = 0; i < nC; i++)
            C[i] = 1.0f; /* beta 1: C = A B + 1 */
        cblas_sgemm(CblasRowMajor, kinds[t].ta, kinds[t].tb, M, N, K, 1.0f, ta ? At : A,
                    ta ? M : K, tb ? Bt : B, tb ? K : N, 1.0f, C, N);
        for (size_t i = 0; ok && i < nC; i++)
            if (C[i] != want[i] + 1.0f) {
                snprintf(why, len, "SGEMM %s %dx%dx%d differs from plain loops at %zu: %g, not %g",
                         kinds[t].name, M, N, K, i, (double)C[i], (double)(want[i] + 1.0f));
                ok = 0;
            }
    }
    for (int tr = 0; ok && tr < 2; tr++) {
        const int rows = tr ? K : M, cols = tr ? M : K; /* y[rows] = op(A) x[cols] */
        for (int k = 0; k < cols; k++)
            x[k] = small_int((size_t)k, 1);
        cblas_sgemv(CblasRowMajor, tr ? CblasTrans : CblasNoTrans, M, K, 1.0f, A, K, x, 1, 0.0f,
                    y, 1);
        for (int r = 0; ok && r < rows; r++) {
            float s = 0.0f;
            for (int k = 0; k < cols; k++)
                s += (tr ? A[(size_t)k * K + r] : A[(size_t)r * K + k]) * x[k];
            if (y[r] != s) {
                snprintf(why, len, "SGEMV %s %dx%d differs from plain loops at %d: %g, not %g",
                         tr ? "T" : "N", M, K, r, (double)y[r], (double)s);
                ok = 0;
            }
        }
    }
    free(A), free(At), free(B), free(Bt), free(C), free(want), free(x), free(y);
    return ok;
}

int cnn_blas_selfcheck(char *why, size_t len)
{
    sigjmp_buf jump;
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigill;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGILL, &sa, &old);
    volatile int ok = 0;
    if (sigsetjmp(jump, 1) == 0) {
        ill_jump = &jump;
        /* the first within OpenBLAS's small-matrix size (M N K <= 1e6), the second past it */
        ok = check_size(35, 29, 41, why, len) && check_size(120, 104, 96, why, len);
    } else {
        snprintf(why, len, "its kernels stopped on an illegal instruction");
    }
    ill_jump = NULL;
    sigaction(SIGILL, &old, NULL);
    if (ok && env_on("CNN_TEST_BLAS_CHECK_FAIL")) {
        snprintf(why, len, "failed on request (CNN_TEST_BLAS_CHECK_FAIL)");
        ok = 0;
    }
    return ok;
}

/* ---------------------------------------------------------------- restarting */

/* Replace this process with the same program and arguments; returns only on failure.
 * The program's own path, as the kernel (or a tool running it, such as valgrind)
 * reports it, else the /proc link itself. */
static void restart(char **argv)
{
    char self[4096];
    const ssize_t n = readlink("/proc/self/exe", self, sizeof self - 1);
    fflush(NULL);
    if (n > 0) {
        self[n] = '\0';
        execv(self, argv);
    }
    execv("/proc/self/exe", argv);
}

static void set_or_unset(const char *name, const char *value)
{
    if (value && *value)
        setenv(name, value, 1);
    else
        unsetenv(name);
}

/* The restarted program: STATE is "try:<core>:<detected>:<previous OPENBLAS_CORETYPE>"
 * (this run should be on <core>) or "failed:<core>:<detected>:<why>" (the check of
 * <core> failed and this run is on OpenBLAS's own choice). */
static void after_restart(char *state, char **argv, cnn_core_report *r)
{
    char *fields[4] = {state, NULL, NULL, NULL};
    for (int i = 1; i < 4; i++) {
        char *colon = fields[i - 1] ? strchr(fields[i - 1], ':') : NULL;
        if (colon)
            *colon = '\0', fields[i] = colon + 1;
    }
    const char *core = fields[1] ? fields[1] : "?", *detected = fields[2] ? fields[2] : "?";
    const char *last = fields[3] ? fields[3] : "";
    const char *running = "unknown";
#if HAVE_OPENBLAS_EXT
    running = openblas_get_corename();
#endif
    char version[64], why[192];
    cnn_blas_version(version, sizeof version);
    if (strcmp(fields[0], "failed") == 0) {
        snprintf(r->how, sizeof r->how, "OpenBLAS's choice, as %s failed the check", core);
        snprintf(r->warning, sizeof r->warning,
                 "the %s kernels chosen for this CPU failed a check (%s); running OpenBLAS's "
                 "own choice, %s", core, last, running);
        return;
    }
    if (strcasecmp(running, core) != 0)
        snprintf(why, sizeof why, "OpenBLAS ran %s when asked for it", running);
    else if (cnn_blas_selfcheck(why, sizeof why)) {
        snprintf(r->how, sizeof r->how, "chosen for this CPU: %s detected %s", version, detected);
        return;
    }
    /* Back to OpenBLAS's own choice, once. */
    char next[512];
    snprintf(next, sizeof next, "failed:%s:%s:%s", core, detected, why);
    setenv(STATE_VAR, next, 1);
    set_or_unset("OPENBLAS_CORETYPE", last);
    restart(argv);
    unsetenv(STATE_VAR);
    snprintf(r->warning, sizeof r->warning,
             "the %s kernels chosen for this CPU failed a check (%s), and the program could not "
             "restart on OpenBLAS's own choice: %s", core, why, strerror(errno));
}

void cnn_core_autoselect(char **argv, cnn_core_report *r)
{
    memset(r, 0, sizeof *r);
#if HAVE_OPENBLAS_EXT
    const char *state = getenv(STATE_VAR);
    if (state) {
        char copy[512];
        snprintf(copy, sizeof copy, "%s", state);
        unsetenv(STATE_VAR); /* for nothing this program starts */
        after_restart(copy, argv, r);
        return;
    }
    const char *user_core = getenv("OPENBLAS_CORETYPE");
    cnn_cpu_features cpu;
    char version[64];
    cnn_cpu_features_read(&cpu);
    const cnn_blas_core_choice ch = cnn_blas_core_decide(
        &cpu, openblas_get_corename(), cnn_blas_version(version, sizeof version),
        cnn_blas_cores_available(), env_on("CNN_TEST_BLAS_DETECTED") ? NULL : user_core,
        env_on("CNN_KEEP_BLAS_CORE"));
    snprintf(r->how, sizeof r->how, "%s", ch.reason);
    if (!ch.core)
        return;
    char next[512], previous[64];
    snprintf(previous, sizeof previous, "%s", user_core ? user_core : "");
    snprintf(next, sizeof next, "try:%s:%s:%s", ch.core, openblas_get_corename(), previous);
    setenv(STATE_VAR, next, 1);
    setenv("OPENBLAS_CORETYPE", ch.core, 1);
    restart(argv);
    const int e = errno;
    unsetenv(STATE_VAR);
    set_or_unset("OPENBLAS_CORETYPE", previous);
    r->how[0] = '\0';
    snprintf(r->warning, sizeof r->warning,
             "could not restart with OPENBLAS_CORETYPE=%s (%s); running OpenBLAS's own choice, "
             "which can be several times slower on this CPU", ch.core, strerror(e));
#else
    (void)argv;
#endif
}

const char *cnn_core_describe(const cnn_core_report *r, char *buf, size_t len)
{
    cnn_blas_describe(buf, len);
    const size_t used = strlen(buf);
    if (r && r->how[0] && used < len)
        snprintf(buf + used, len - used, ", %s", r->how);
    return buf;
}
