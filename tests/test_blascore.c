/* test_blascore.c - the choice of the OpenBLAS core.
 *
 * 1. cnn_blas_core_decide over a table of real machines and OpenBLAS versions.
 * 2. The check of a core (cnn_blas_selfcheck) passes on the core this process runs.
 * 3. The cnn program, forced through each path it takes on a mis-detected CPU (the
 *    test hooks of src/blas/autocore.h take a user's OPENBLAS_CORETYPE=Prescott as OpenBLAS's
 *    own detection): what its BLAS line reports, and that a model trained on the chosen
 *    core and one trained on Prescott's kernels agree within the engines' tolerance. */
#include "check.h"
#include "proc.h"
#include "autocore.h"

#include "cnn.h"

#include <string.h>
#include <strings.h>

static const cnn_cpu_features
    /* Intel Xeon family 6 model 207 (Emerald Rapids): AVX-512 with BF16, AMX */
    emerald = {.avx2 = 1, .fma = 1, .avx512f = 1, .avx512bw = 1, .avx512dq = 1, .avx512vl = 1,
               .avx512bf16 = 1},
    /* Intel Xeon family 6 model 85 (Skylake-SP / Cascade Lake): AVX-512 without BF16 */
    skylake_sp = {.avx2 = 1, .fma = 1, .avx512f = 1, .avx512bw = 1, .avx512dq = 1, .avx512vl = 1},
    /* AMD EPYC family 25 model 17 (Zen 4): AVX-512 with BF16 */
    zen4 = {.amd = 1, .avx2 = 1, .fma = 1, .avx512f = 1, .avx512bw = 1, .avx512dq = 1,
            .avx512vl = 1, .avx512bf16 = 1},
    /* AMD EPYC family 25 model 1 (Zen 3): AVX2 */
    zen3 = {.amd = 1, .avx2 = 1, .fma = 1},
    /* Intel Core family 6 model 183 (Raptor Lake): AVX2, no AVX-512 */
    raptor = {.avx2 = 1, .fma = 1},
    /* Intel Xeon Phi family 6 model 87 (Knights Landing): AVX-512 F but not BW/DQ/VL */
    knl = {.avx2 = 1, .fma = 1, .avx512f = 1},
    /* Intel Xeon family 6 model 45 (Sandy Bridge-EP): AVX only */
    sandy = {0},
    /* an AVX-512 CPU under an OS that does not save the ZMM registers: GCC's checks
     * report no AVX-512, only AVX2 */
    zmm_off = {.avx2 = 1, .fma = 1};

#define ALL (CNN_CORE_HASWELL | CNN_CORE_ZEN | CNN_CORE_SKYLAKEX | CNN_CORE_COOPERLAKE)
#define NO_COOPERLAKE (CNN_CORE_HASWELL | CNN_CORE_ZEN | CNN_CORE_SKYLAKEX)

static const struct {
    const char *name;
    const cnn_cpu_features *cpu;
    const char *detected;
    unsigned available;
    const char *env; /* OPENBLAS_CORETYPE */
    int keep;        /* CNN_KEEP_BLAS_CORE */
    const char *want;   /* the core chosen, NULL: none */
    const char *reason; /* a phrase of the reason ("" for an empty one) */
} cases[] = {
    {"Emerald Rapids, OpenBLAS 0.3.21 detects Prescott (the measured case)", &emerald, "Prescott",
     ALL, NULL, 0, "Cooperlake", "chosen for this CPU: OpenBLAS 0.3.21 detected Prescott"},
    {"Emerald Rapids with an OpenBLAS without Cooperlake", &emerald, "Prescott", NO_COOPERLAKE,
     NULL, 0, "SkylakeX", "detected Prescott"},
    {"Emerald Rapids, the user set OPENBLAS_CORETYPE=Haswell", &emerald, "Haswell", ALL, "Haswell",
     0, NULL, "set by OPENBLAS_CORETYPE"},
    {"Emerald Rapids, the user set OPENBLAS_CORETYPE=Prescott", &emerald, "Prescott", ALL,
     "Prescott", 0, NULL, "set by OPENBLAS_CORETYPE"},
    {"Emerald Rapids, CNN_KEEP_BLAS_CORE=1", &emerald, "Prescott", ALL, NULL, 1, NULL,
     "kept by CNN_KEEP_BLAS_CORE: Cooperlake would suit this CPU"},
    {"Sapphire Rapids, detected Cooperlake", &emerald, "Cooperlake", ALL, NULL, 0, NULL, ""},
    {"Emerald Rapids on an OpenBLAS that detects SapphireRapids", &emerald, "SapphireRapids", ALL,
     NULL, 0, NULL, ""},
    {"Skylake-SP, detected SkylakeX", &skylake_sp, "SkylakeX", ALL, NULL, 0, NULL, ""},
    {"Skylake-SP, detected Haswell (an AVX2 core on an AVX-512 CPU)", &skylake_sp, "Haswell", ALL,
     NULL, 0, "SkylakeX", "detected Haswell"},
    {"Zen 4, OpenBLAS 0.3.21 detects Cooperlake", &zen4, "Cooperlake", ALL, NULL, 0, NULL, ""},
    {"Zen 4 on an OpenBLAS that detects Zen", &zen4, "Zen", ALL, NULL, 0, "Cooperlake",
     "detected Zen"},
    {"Zen 3, detected Zen", &zen3, "Zen", ALL, NULL, 0, NULL, ""},
    {"Zen 3 on an OpenBLAS that does not know it (Prescott)", &zen3, "Prescott", ALL, NULL, 0,
     "Zen", "detected Prescott"},
    {"Zen 3, detected Haswell", &zen3, "Haswell", ALL, NULL, 0, NULL, ""},
    {"Raptor Lake on an OpenBLAS that detects Sandybridge", &raptor, "Sandybridge", ALL, NULL, 0,
     "Haswell", "detected Sandybridge"},
    {"Raptor Lake, detected Haswell", &raptor, "Haswell", ALL, NULL, 0, NULL, ""},
    {"Knights Landing, detected Haswell (AVX-512 F alone is not enough)", &knl, "Haswell", ALL,
     NULL, 0, NULL, ""},
    {"Knights Landing, detected Prescott", &knl, "Prescott", ALL, NULL, 0, "Haswell",
     "detected Prescott"},
    {"Sandy Bridge, detected Sandybridge", &sandy, "Sandybridge", ALL, NULL, 0, NULL, ""},
    {"Sandy Bridge, detected Prescott: nothing better to run", &sandy, "Prescott", ALL, NULL, 0,
     NULL, ""},
    {"AVX-512 CPU with the ZMM state off, detected SkylakeX", &zmm_off, "SkylakeX", ALL, NULL, 0,
     NULL, ""},
    {"Emerald Rapids, an OpenBLAS built for one core (no choice possible)", &emerald, "Prescott", 0,
     NULL, 0, NULL, ""},
    {"an empty OPENBLAS_CORETYPE counts as unset", &emerald, "Prescott", ALL, "", 0, "Cooperlake",
     "detected Prescott"},
    {"core names compare without case", &emerald, "COOPERLAKE", ALL, NULL, 0, NULL, ""},
};

static void table(void)
{
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const cnn_blas_core_choice ch =
            cnn_blas_core_decide(cases[i].cpu, cases[i].detected, "OpenBLAS 0.3.21",
                                 cases[i].available, cases[i].env, cases[i].keep);
        const int core_ok = cases[i].want ? ch.core && strcmp(ch.core, cases[i].want) == 0
                                          : ch.core == NULL;
        const int reason_ok = cases[i].reason[0] ? strstr(ch.reason, cases[i].reason) != NULL
                                                 : ch.reason[0] == '\0';
        tap_ok(core_ok && reason_ok, "%s: %s (%s)", cases[i].name, ch.core ? ch.core : "keep",
               ch.reason);
    }
}

/* ---------------------------------------------------------------- the program */

static char out[1 << 18], err[1 << 16];

static void env(const char *detected_hook, const char *fail_hook, const char *keep,
                const char *core)
{
    unsetenv("CNN_BLAS_CORE_STATE");
    detected_hook ? setenv("CNN_TEST_BLAS_DETECTED", detected_hook, 1)
                  : unsetenv("CNN_TEST_BLAS_DETECTED");
    fail_hook ? setenv("CNN_TEST_BLAS_CHECK_FAIL", fail_hook, 1)
              : unsetenv("CNN_TEST_BLAS_CHECK_FAIL");
    keep ? setenv("CNN_KEEP_BLAS_CORE", keep, 1) : unsetenv("CNN_KEEP_BLAS_CORE");
    core ? setenv("OPENBLAS_CORETYPE", core, 1) : unsetenv("OPENBLAS_CORETYPE");
}

/* Train briefly, saving to model; @return the exit status (out, err filled). */
static int train(const char *exe, const char *model)
{
    return run_cmd(exe,
                   (const char *[]){"train", "--synthetic", "600", "--epochs", "1", "--batch", "8",
                                    "--lr", "0.05", "--threads", "2", "--save", model, NULL},
                   out, err, sizeof err);
}

static int first_line_has(const char *needle)
{
    const size_t n = strcspn(out, "\n");
    const char *at = strstr(out, needle);
    return at && (size_t)(at - out) < n;
}

/* Largest |a - b| over two saved models' parameters (-1 if either does not load). */
static double model_diff(const char *a, const char *b)
{
    cnn_model ma, mb;
    char e[256];
    if (cnn_model_load(&ma, a, e, sizeof e) != CNN_OK)
        return -1;
    if (cnn_model_load(&mb, b, e, sizeof e) != CNN_OK) {
        cnn_model_free(&ma);
        return -1;
    }
    double d = ma.n_params == mb.n_params ? 0 : -1;
    for (size_t i = 0; d >= 0 && i < ma.n_params; i++) {
        const double x = fabs((double)ma.params[i] - (double)mb.params[i]);
        d = x > d ? x : d;
    }
    cnn_model_free(&ma);
    cnn_model_free(&mb);
    return d;
}

static void program(const char *exe, const char *dir)
{
    cnn_cpu_features cpu;
    char version[64], want_line[256], m_default[512], m_chosen[512], m_weak[512];
    cnn_cpu_features_read(&cpu);
    cnn_blas_version(version, sizeof version);
    const cnn_blas_core_choice ch = cnn_blas_core_decide(&cpu, "Prescott", version,
                                                         cnn_blas_cores_available(), NULL, 0);
    snprintf(m_default, sizeof m_default, "%s/blascore-default.cnn", dir);
    snprintf(m_chosen, sizeof m_chosen, "%s/blascore-chosen.cnn", dir);
    snprintf(m_weak, sizeof m_weak, "%s/blascore-prescott.cnn", dir);

    env(NULL, NULL, NULL, NULL);
    int rc = train(exe, m_default);
    tap_ok(rc == 0 && strncmp(out, "BLAS: ", 6) == 0, "default run: the first line is the BLAS line");

    env(NULL, NULL, NULL, "Prescott");
    rc = train(exe, m_weak);
    tap_ok(rc == 0 && first_line_has("core Prescott, set by OPENBLAS_CORETYPE"),
           "a user's OPENBLAS_CORETYPE is kept and reported: %.*s", (int)strcspn(out, "\n"), out);

    if (!ch.core) {
        for (int i = 0; i < 4; i++)
            printf("ok %d # SKIP this CPU has no core better than Prescott to choose\n",
                   ++tap_count);
        return;
    }
    env("1", NULL, NULL, "Prescott");
    rc = train(exe, m_chosen);
    snprintf(want_line, sizeof want_line, "core %s, chosen for this CPU: %s detected Prescott",
             ch.core, version);
    tap_ok(rc == 0 && first_line_has(want_line) && err[0] == '\0',
           "a mis-detected core is replaced and reported: '%s' in '%.*s'", want_line,
           (int)strcspn(out, "\n"), out);

    env("1", "1", NULL, "Prescott");
    rc = train(exe, m_default);
    snprintf(want_line, sizeof want_line, "core Prescott, OpenBLAS's choice, as %s failed the check",
             ch.core);
    tap_ok(rc == 0 && first_line_has(want_line) && count_lines(err) == 1 &&
               strstr(err, "failed a check"),
           "a chosen core that fails its check is dropped, with one warning: %.*s",
           (int)strcspn(out, "\n"), out);

    env("1", NULL, "1", "Prescott");
    rc = train(exe, m_default);
    tap_ok(rc == 0 && first_line_has("core Prescott, kept by CNN_KEEP_BLAS_CORE"),
           "CNN_KEEP_BLAS_CORE=1 keeps OpenBLAS's choice: %.*s", (int)strcspn(out, "\n"), out);
    env(NULL, NULL, NULL, NULL);

    /* 75 steps of minibatch SGD on two kernel sets: the engines' 20-step tolerance
     * is 1e-6 absolute; rounding differences grow slowly with the steps. */
    const double d = model_diff(m_chosen, m_weak);
    tap_ok(d >= 0 && d <= 1e-5, "the chosen core and Prescott's kernels train the same model "
           "(largest weight difference %.3g, tolerance 1e-5)", d);
}

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: test_blascore PATH-TO-cnn SCRATCH-DIR\n");
        return 1;
    }
    table();
    char why[256] = "";
    tap_ok(cnn_blas_selfcheck(why, sizeof why), "the core this process runs passes the check %s",
           why);
    setenv("CNN_TEST_BLAS_CHECK_FAIL", "1", 1);
    tap_ok(!cnn_blas_selfcheck(why, sizeof why) && strstr(why, "on request"),
           "the check's failure hook fails it (%s)", why);
    unsetenv("CNN_TEST_BLAS_CHECK_FAIL");
    program(argv[1], argv[2]);
    return tap_done();
}
