/* blas.c - which BLAS runs, and whether it suits this CPU. */
#include "cnn.h"

#include "config.h"

#include <cblas.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#if HAVE_OPENBLAS_EXT
static const char *variant_name(int v)
{
    switch (v) {
    case 0: return "serial";
    case 1: return "pthreads";
    case 2: return "openmp";
    }
    return "unknown";
}
#endif

const char *cnn_blas_describe(char *buf, size_t len)
{
#if HAVE_OPENBLAS_EXT
    snprintf(buf, len, "%s, core %s, %s threading", openblas_get_config(),
             openblas_get_corename(), variant_name(openblas_get_parallel()));
#else
    snprintf(buf, len, "CBLAS without OpenBLAS extensions");
#endif
    return buf;
}

void cnn_blas_setup(void)
{
#if HAVE_OPENBLAS_EXT
    /* The pthreads build would start its own threads inside each of ours. Never do
     * this for the OpenMP build: there it also sets OpenMP's thread count to 1. */
    if (openblas_get_parallel() == 1)
        openblas_set_num_threads(1);
#endif
}

static int name_in(const char *name, const char *const *list)
{
    for (; *list; list++)
        if (strcasecmp(name, *list) == 0)
            return 1;
    return 0;
}

const char *cnn_blas_core_warning(char *buf, size_t len)
{
#if HAVE_OPENBLAS_EXT && (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    static const char *const avx512[] = {"SkylakeX", "Cooperlake", "SapphireRapids", NULL};
    static const char *const avx2[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake",
                                       "SapphireRapids", NULL};
    const char *core = openblas_get_corename();
    __builtin_cpu_init();
    const char *want = NULL;
    if (__builtin_cpu_supports("avx512f") && !name_in(core, avx512))
        want = "SkylakeX";
    else if (!__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx2") &&
             __builtin_cpu_supports("fma") && !name_in(core, avx2))
        want = "Haswell";
    if (want) {
        snprintf(buf, len,
                 "OpenBLAS chose the %s kernels, but this CPU supports %s; they can be several "
                 "times slower: run with OPENBLAS_CORETYPE=%s in the environment",
                 core, strcmp(want, "SkylakeX") == 0 ? "AVX-512" : "AVX2", want);
        return buf;
    }
#else
    (void)buf;
    (void)len;
    (void)name_in;
#endif
    return NULL;
}
