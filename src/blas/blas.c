/* blas.c - which BLAS runs, and which OpenBLAS core suits this CPU.
 *
 * OpenBLAS built with DYNAMIC_ARCH picks its kernels ("core") from the CPU model
 * when it loads. A CPU newer than the library may get a core far below what it can
 * run (OpenBLAS 0.3.21 runs Intel family 6 model 207, an AVX-512 Xeon, on its SSE3
 * Prescott kernels). cnn_blas_core_decide says, from the CPU's
 * features alone, which core fits and why; it is a pure function. */
#include "cnn.h"

#include "autocore.h"

#include "config.h"
#include "kernels.h"

#include <cblas.h>
#include <dlfcn.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#if HAVE_OPENMP
#include <omp.h>
#endif

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
    snprintf(buf, len, "%s, %s threading, core %s", openblas_get_config(),
             variant_name(openblas_get_parallel()), openblas_get_corename());
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

/* ---------------------------------------------------------------- the decision */

static int name_in(const char *name, const char *const *list)
{
    for (; *list; list++)
        if (strcasecmp(name, *list) == 0)
            return 1;
    return 0;
}

/* Cores with AVX-512 kernels, and (with them) cores with AVX2 + FMA kernels, under
 * the names OpenBLAS gives them, in all versions that have them. */
static const char *const avx512_cores[] = {"SkylakeX", "Cooperlake", "SapphireRapids", NULL};
static const char *const avx2_cores[] = {"Haswell", "Zen", "SkylakeX", "Cooperlake",
                                         "SapphireRapids", NULL};

static int has_avx512(const cnn_cpu_features *c)
{
    return c->avx2 && c->fma && c->avx512f && c->avx512bw && c->avx512dq && c->avx512vl;
}

/* The best core of `available` for this CPU's instruction sets, or NULL. */
static const char *best_core(const cnn_cpu_features *c, unsigned available)
{
    if (has_avx512(c)) {
        if (c->avx512bf16 && (available & CNN_CORE_COOPERLAKE))
            return "Cooperlake";
        if (available & CNN_CORE_SKYLAKEX)
            return "SkylakeX";
    }
    if (c->avx2 && c->fma) {
        if (c->amd && (available & CNN_CORE_ZEN))
            return "Zen";
        if (available & CNN_CORE_HASWELL)
            return "Haswell";
        if (available & CNN_CORE_ZEN)
            return "Zen";
    }
    return NULL;
}

/* Does the detected core fall short of the instruction sets the CPU has? */
static int falls_short(const char *detected, const char *best)
{
    if (name_in(best, avx512_cores))
        return !name_in(detected, avx512_cores);
    return !name_in(detected, avx2_cores);
}

cnn_blas_core_choice cnn_blas_core_decide(const cnn_cpu_features *cpu, const char *detected,
                                          const char *blas, unsigned available,
                                          const char *env_core, int keep)
{
    cnn_blas_core_choice ch;
    memset(&ch, 0, sizeof ch);
    if (env_core && *env_core) {
        snprintf(ch.reason, sizeof ch.reason, "set by OPENBLAS_CORETYPE");
        return ch;
    }
    const char *best = best_core(cpu, available);
    if (!detected || !best || !falls_short(detected, best))
        return ch; /* OpenBLAS's choice fits, or there is nothing better to run */
    if (keep) {
        snprintf(ch.reason, sizeof ch.reason,
                 "kept by CNN_KEEP_BLAS_CORE: %s would suit this CPU", best);
        return ch;
    }
    ch.core = best;
    snprintf(ch.reason, sizeof ch.reason, "chosen for this CPU: %s detected %s",
             blas && *blas ? blas : "OpenBLAS", detected);
    return ch;
}

/* ---------------------------------------------------------------- this process */

void cnn_cpu_features_read(cnn_cpu_features *f)
{
    memset(f, 0, sizeof *f);
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__)
    /* GCC's checks include the operating system's support of the wider registers. */
    __builtin_cpu_init();
    f->amd = __builtin_cpu_is("amd");
    f->avx2 = __builtin_cpu_supports("avx2") != 0;
    f->fma = __builtin_cpu_supports("fma") != 0;
    f->avx512f = __builtin_cpu_supports("avx512f") != 0;
    f->avx512bw = __builtin_cpu_supports("avx512bw") != 0;
    f->avx512dq = __builtin_cpu_supports("avx512dq") != 0;
    f->avx512vl = __builtin_cpu_supports("avx512vl") != 0;
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 12
    f->avx512bf16 = __builtin_cpu_supports("avx512bf16") != 0;
#endif
#endif
}

unsigned cnn_blas_cores_available(void)
{
    unsigned mask = 0;
#if HAVE_OPENBLAS_EXT
    /* Only a DYNAMIC_ARCH build switches cores; each core it carries is a table
     * gotoblas_<NAME> among its symbols. */
    if (!strstr(openblas_get_config(), "DYNAMIC_ARCH"))
        return 0;
    void *self = dlopen(NULL, RTLD_LAZY);
    if (!self)
        return 0;
    static const struct {
        const char *sym;
        unsigned bit;
    } cores[] = {{"gotoblas_HASWELL", CNN_CORE_HASWELL},
                 {"gotoblas_ZEN", CNN_CORE_ZEN},
                 {"gotoblas_SKYLAKEX", CNN_CORE_SKYLAKEX},
                 {"gotoblas_COOPERLAKE", CNN_CORE_COOPERLAKE}};
    for (size_t i = 0; i < sizeof cores / sizeof cores[0]; i++)
        if (dlsym(self, cores[i].sym))
            mask |= cores[i].bit;
    dlclose(self);
#endif
    return mask;
}

const char *cnn_blas_version(char *buf, size_t len)
{
    snprintf(buf, len, "OpenBLAS");
#if HAVE_OPENBLAS_EXT
    /* openblas_get_config() starts with "OpenBLAS 0.3.21 ..." */
    const char *cfg = openblas_get_config();
    const char *sp = strchr(cfg, ' ');
    if (sp)
        sp = strchr(sp + 1, ' ');
    const size_t n = sp ? (size_t)(sp - cfg) : strlen(cfg);
    snprintf(buf, len, "%.*s", (int)n, cfg);
#endif
    return buf;
}

const char *cnn_blas_core_recommended(char *why, size_t len)
{
#if HAVE_OPENBLAS_EXT
    cnn_cpu_features cpu;
    char version[64];
    cnn_cpu_features_read(&cpu);
    const cnn_blas_core_choice ch =
        cnn_blas_core_decide(&cpu, openblas_get_corename(), cnn_blas_version(version, sizeof version),
                             cnn_blas_cores_available(), NULL, 0);
    if (why && len)
        snprintf(why, len, "%s", ch.reason);
    return ch.core;
#else
    if (why && len)
        why[0] = '\0';
    return NULL;
#endif
}

const char *cnn_blas_core_warning(char *buf, size_t len)
{
#if HAVE_OPENBLAS_EXT
    const char *want = cnn_blas_core_recommended(NULL, 0);
    if (want) {
        snprintf(buf, len,
                 "OpenBLAS runs the %s kernels, but this CPU supports %s; they can be several "
                 "times slower: run with OPENBLAS_CORETYPE=%s in the environment",
                 openblas_get_corename(), name_in(want, avx512_cores) ? "AVX-512" : "AVX2", want);
        return buf;
    }
#else
    (void)buf;
    (void)len;
#endif
    return NULL;
}

void cnn_blas_alone(void)
{
#if HAVE_OPENMP
    omp_set_num_threads(1);
#endif
}
