/* test_model_io.c - model files: a save / load round trip reproduces parameters and
 * predictions bit for bit; the documented layout holds; truncated, corrupt,
 * wrong-version, wrong-architecture and non-finite files, directories and missing
 * files are rejected with a one-line error and leave the model untouched; a failed
 * save leaves the previous file and no temporary behind; a save removes the temporary
 * files a killed writer left, and only those. */
#include "cnn.h"
#include "post.h"

#include "check.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/file.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

static char dir[256];

static char *path_in(const char *name)
{
    static char buf[4][512];
    static int k;
    k = (k + 1) % 4;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    fseek(f, 0, SEEK_END);
    *n = (size_t)ftell(f);
    rewind(f);
    unsigned char *b = malloc(*n + 1);
    if (fread(b, 1, *n, f) != *n)
        *n = 0;
    fclose(f);
    return b;
}

static void spit(const char *path, const unsigned char *b, size_t n)
{
    FILE *f = fopen(path, "wb");
    fwrite(b, 1, n, f);
    fclose(f);
}

static void put_u32(unsigned char *p, uint32_t v)
{
    for (int i = 0; i < 4; i++)
        p[i] = (unsigned char)(v >> (8 * i));
}

static void fix_crc(unsigned char *b, size_t n)
{
    put_u32(b + n - 4, (uint32_t)crc32(0L, b, (uInt)(n - 4)));
}

/* Loading path must fail, mention `needle`, and leave the model as it was. */
static void rejects(const char *what, const char *path, const char *needle)
{
    cnn_model m = {.n_params = 12345};
    char err[512] = "";
    const cnn_status st = cnn_model_load(&m, path, err, sizeof err);
    tap_ok(st != CNN_OK && m.n_params == 12345 && m.params == NULL && strstr(err, needle) &&
               !strchr(err, '\n'),
           "%s: rejected: %s", what, err);
    /* and without an error buffer */
    tap_ok(cnn_model_load(&m, path, NULL, 0) != CNN_OK && m.params == NULL,
           "%s: rejected without an error buffer", what);
}

/* A version 2 file (any network but the post's): a stacked network's round trip and
 * the layout; descriptions that do not parse or build, counts that do not match. */
static void version2(void)
{
    cnn_arch a;
    char err[512];
    const char *desc = "conv4b,relu,conv6,relu,pool,dense16,relu,softmax10";
    cnn_arch_build(&a, desc, 1, 12, 10, err, sizeof err);
    cnn_model m, l = {0};
    cnn_rng rng;
    cnn_rng_seed(&rng, 5);
    cnn_model_init(&m, &a, &rng);
    m.params[a.layer[0].bias_at] = 0.25f; /* a bias that is not 0 */
    const char *path = path_in("stacked.cnn");
    cnn_status st = cnn_model_save(&m, path, err, sizeof err);
    if (st == CNN_OK)
        st = cnn_model_load(&l, path, err, sizeof err);
    tap_ok(st == CNN_OK && cnn_arch_equal(&l.arch, &m.arch) && l.n_params == m.n_params &&
               memcmp(l.params, m.params, m.n_params * sizeof(float)) == 0,
           "version 2: a stacked network (%s, %zu parameters) saves and loads bit for bit (%s)",
           desc, m.n_params, st == CNN_OK ? "ok" : err);
    size_t n = 0;
    unsigned char *b = slurp(path, &n);
    const size_t L = strlen(desc), P = m.n_params;
    tap_ok(b && n == 36 + L + 4 * P + 4 && b[8] == 2 && b[12] == 1 && b[16] == 12 && b[20] == 10 &&
               b[24] == L && memcmp(b + 28, desc, L) == 0 && b[28 + L] + 256u * b[29 + L] == P,
           "version 2 layout: version, input 1x12x10, the description, P, %zu bytes", n);
    unsigned char *c = malloc(n + 64);
    /* the same file with another description of the same length (28 + L bytes) */
    static const struct {
        const char *what, *desc, *needle;
    } bad[] = {
        {"an unknown layer", "conv4b,relu,conv6,relu,pool,dense16,relu,softmaX10", "is not one of"},
        {"a network that does not build", "conv4b,relu,conv6,relu,pool,pool,pool,pool,softmax10",
         "does not build"},
        {"another network with another parameter count", "conv4b,relu,conv6,relu,pool,dense17,"
                                                         "relu,softmax10", "parameters"},
        {"a non-printable byte", "conv4b,relu,conv6,relu,pool,dense16,relu\001softmax10",
         "non-printable"},
    };
    for (size_t i = 0; b && i < sizeof bad / sizeof *bad; i++) {
        memcpy(c, b, n);
        memcpy(c + 28, bad[i].desc, L);
        fix_crc(c, n);
        spit(path_in("bad2.cnn"), c, n);
        char what[96];
        snprintf(what, sizeof what, "version 2 with %s", bad[i].what);
        rejects(what, path_in("bad2.cnn"), bad[i].needle);
    }
    const uint32_t lens[] = {0, 512, 0xffffffffu};
    for (size_t i = 0; b && i < sizeof lens / sizeof *lens; i++) {
        memcpy(c, b, n);
        put_u32(c + 24, lens[i]);
        fix_crc(c, n);
        spit(path_in("len2.cnn"), c, n);
        char what[96];
        snprintf(what, sizeof what, "version 2 with a description length of %u", lens[i]);
        rejects(what, path_in("len2.cnn"), "description");
    }
    if (b) {
        memcpy(c, b, n);
        put_u32(c + 16, 2); /* a 2-pixel-high input: the first conv cannot run */
        fix_crc(c, n);
        spit(path_in("tiny2.cnn"), c, n);
        rejects("version 2 with a 1x2x10 input", path_in("tiny2.cnn"), "does not build");
        spit(path_in("cut2.cnn"), b, 30 + L / 2);
        rejects("version 2 cut in the description", path_in("cut2.cnn"), "truncated");
    }
    free(c);
    free(b);
    cnn_model_free(&l);
    cnn_model_free(&m);
}

/* torchvision's ToTensor then Normalize, computed by PyTorch 1.13 (x.float().div(255)
 * .sub(mean).div(std)) for CIFAR-10's usual statistics: the float32 bits. */
static const uint8_t norm_px[8] = {0, 1, 37, 127, 128, 200, 254, 255};
static const uint32_t norm_torch[3][8] = {
    {0xbffea713u, 0xbffc9ed3u, 0xbfb375cbu, 0x3cdc3232u, 0x3d2f2140u, 0x3f97cb19u, 0x4002c452u,
     0x4003c873u},
    {0xbffd7a10u, 0xbffb6a55u, 0xbfb13418u, 0x3d8537f4u, 0x3da633aeu, 0x3f9ecfb4u, 0x40071088u,
     0x40081864u},
    {0xbfda7891u, 0xbfd88d5au, 0xbf937998u, 0x3e49be64u, 0x3e591825u, 0x3fa54a88u, 0x40067415u,
     0x400769b1u},
};

/* Version 3: a normalisation and class names travel with the model. */
static void version3(void)
{
    const cnn_norm cifar = {CNN_NORM_MEAN_STD, 3, {0.4914f, 0.4822f, 0.4465f},
                            {0.2470f, 0.2435f, 0.2616f}};
    uint8_t img[3 * 8];
    for (int c = 0; c < 3; c++)
        memcpy(img + 8 * c, norm_px, 8);
    float x[3 * 8];
    cnn_norm_apply(&cifar, x, img, 3, 8);
    int same = 1;
    for (int i = 0; i < 24; i++) {
        uint32_t u;
        memcpy(&u, &x[i], 4);
        same &= u == norm_torch[i / 8][i % 8] && cnn_norm_value(&cifar, i / 8, img[i]) == x[i];
    }
    tap_ok(same, "per-channel normalisation: the bits PyTorch's ToTensor and Normalize give");

    const char *desc = "conv4b,relu,pool,dense6,relu,softmax3";
    cnn_arch a;
    char err[512] = "";
    cnn_arch_build(&a, desc, 3, 8, 6, err, sizeof err);
    cnn_rng rng;
    cnn_rng_seed(&rng, 5);
    cnn_model m, l = {0};
    cnn_model_init(&m, &a, &rng);
    m.norm = cifar;
    const char *names[3] = {"cat", "dog", ("k\xc3\xa4" "fer")};
    tap_ok(cnn_model_set_names(&m, names, 3) == CNN_OK &&
               strcmp(cnn_model_class_name(&m, 2), "k\xc3\xa4" "fer") == 0 &&
               !cnn_model_class_name(&m, 3),
           "class names set and read back");
    const char *bad_names[][3] = {{"cat", "", "x"}, {"cat", "d\tog", "x"}, {"a", "b", NULL}};
    int refused = 1;
    for (int i = 0; i < 3; i++)
        refused &= cnn_model_set_names(&m, bad_names[i], 3) == CNN_ERR_ARG;
    refused &= cnn_model_set_names(&m, names, 2) == CNN_ERR_ARG;
    tap_ok(refused && strcmp(cnn_model_class_name(&m, 0), "cat") == 0,
           "an empty name, a control character, a missing name or the wrong count are refused, "
           "the names unchanged");
    const char *path = path_in("v3.cnn");
    cnn_status st = cnn_model_save(&m, path, err, sizeof err);
    if (st == CNN_OK)
        st = cnn_model_load(&l, path, err, sizeof err);
    tap_ok(st == CNN_OK && memcmp(l.params, m.params, m.n_params * 4) == 0 &&
               memcmp(&l.norm, &m.norm, sizeof l.norm) == 0 && l.names &&
               strcmp(cnn_model_class_name(&l, 2), names[2]) == 0,
           "version 3 saves and loads the parameters, the normalisation and the names bit for "
           "bit (%s)", st == CNN_OK ? "ok" : err);
    size_t n = 0;
    unsigned char *b = slurp(path, &n);
    const size_t L = strlen(desc), at = 28 + L, names_len = 4 + 4 + 7; /* three names, each with its NUL */
    tap_ok(b && b[8] == 3 && b[at] == 1 && b[at + 4] == 3 && b[at + 32] == names_len &&
               memcmp(b + at + 36, "cat\0dog\0", 8) == 0 &&
               n == at + 36 + names_len + 8 + 4 * m.n_params + 4,
           "version 3 layout: kind, channels, means, deviations, the names, then P (%zu bytes)", n);
    /* hostile version 3 files: each field broken, the CRC fixed */
    static const struct {
        const char *what;
        size_t off;
        uint32_t value;
        const char *needle;
    } bad[] = {
        {"a normalisation kind 7", 0, 7, "normalisation"},
        {"2 channels of statistics for 3-channel inputs", 4, 2, "normalisation"},
        {"a deviation of 0", 8 + 12, 0, "deviation"},
        {"a NaN mean", 8, 0x7fc00000u, "not finite"},
        {"a names block past the end", 32, 1u << 30, "truncated class names"},
        {"one class name fewer", 32, 8, "number of class names"},
    };
    unsigned char *c = malloc(n);
    for (size_t i = 0; b && i < sizeof bad / sizeof *bad; i++) {
        memcpy(c, b, n);
        put_u32(c + at + bad[i].off, bad[i].value);
        fix_crc(c, n);
        spit(path_in("bad3.cnn"), c, n);
        char what[96];
        snprintf(what, sizeof what, "version 3 with %s", bad[i].what);
        rejects(what, path_in("bad3.cnn"), bad[i].needle);
    }
    if (b) {
        memcpy(c, b, n);
        c[at + 36 + 3] = 'x'; /* "catxdog\0...": two names run together */
        fix_crc(c, n);
        spit(path_in("bad3.cnn"), c, n);
        rejects("version 3 with two names run together", path_in("bad3.cnn"),
                "number of class names");
        memcpy(c, b, n);
        c[at + 36 + 1] = '\n';
        fix_crc(c, n);
        spit(path_in("bad3.cnn"), c, n);
        rejects("version 3 with a newline in a name", path_in("bad3.cnn"), "control character");
        for (size_t cut = at + 2; cut < at + 36 + names_len; cut += 7) {
            spit(path_in("cut3.cnn"), b, cut);
            rejects("version 3 cut short", path_in("cut3.cnn"), "truncated");
        }
    }
    free(c);
    free(b);
    cnn_model_free(&l);
    cnn_model_free(&m);
}

static int count_entries(void)
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n;
}

int main(void)
{
    const char *tmpdir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    snprintf(dir, sizeof dir, "%s/cnn-model-io-XXXXXX", tmpdir);
    if (!mkdtemp(dir)) {
        printf("Bail out! cannot make a temporary directory under %s\n", tmpdir);
        return 1;
    }
    cnn_rng rng;
    cnn_rng_seed(&rng, 99);
    const cnn_arch s = post_arch_mnist();
    cnn_model m;
    cnn_model_init(&m, &s, &rng);
    for (int i = 0; i < 10; i++)
        post_view(&m.arch, m.params).b[i] = (float)cnn_rng_normal(&rng);
    char err[512] = "";

    /* round trip */
    char good[512]; /* path_in's buffers rotate: keep a copy */
    snprintf(good, sizeof good, "%s", path_in("good.cnn"));
    cnn_status st = cnn_model_save(&m, good, err, sizeof err);
    tap_ok(st == CNN_OK, "save succeeds (%s)", st == CNN_OK ? "ok" : err);
    cnn_model l = {0};
    st = cnn_model_load(&l, good, err, sizeof err);
    tap_ok(st == CNN_OK && l.n_params == m.n_params &&
               memcmp(l.params, m.params, m.n_params * sizeof(float)) == 0 &&
               cnn_arch_equal(&l.arch, &m.arch),
           "load returns the same shape and bit-identical parameters (%s)",
           st == CNN_OK ? "ok" : err);
    if (st != CNN_OK)
        return tap_done();
    cnn_acts a1, a2;
    cnn_acts_alloc(&a1, &s, 1);
    cnn_acts_alloc(&a2, &s, 1);
    uint8_t pix[10 * 784], lab[10];
    float x[10 * 784];
    cnn_synth_digits(pix, lab, 10, &rng);
    cnn_pixels_to_float(x, pix, sizeof pix);
    uint8_t all[256];
    float conv[256];
    int exact = 1;
    for (int v = 0; v < 256; v++)
        all[v] = (uint8_t)v;
    cnn_pixels_to_float(conv, all, 256);
    for (int v = 0; v < 256; v++) {
        volatile double px = v; /* computed here, at run time */
        const float want = (float)(px / 255.0 - 0.5);
        exact &= memcmp(&conv[v], &want, sizeof want) == 0;
    }
    tap_ok(exact, "input scaling: every pixel value gives (float)(px / 255.0 - 0.5) bit for bit");
    int same = 1;
    for (int i = 0; i < 10; i++) {
        cnn_forward(&m, &a1, x + i * 784, lab[i], CNN_ENGINE_BLAS);
        cnn_forward(&l, &a2, x + i * 784, lab[i], CNN_ENGINE_BLAS);
        same &= memcmp(a1.probs, a2.probs, 10 * sizeof(float)) == 0;
    }
    tap_ok(same, "predictions of the loaded model are bit-identical on 10 images");

    /* the documented layout */
    size_t n = 0;
    unsigned char *b = slurp(good, &n);
    const size_t P = m.n_params;
    uint32_t dims[5];
    for (int i = 0; i < 5; i++)
        dims[i] = (uint32_t)b[12 + 4 * i] | (uint32_t)b[13 + 4 * i] << 8;
    float b0;
    memcpy(&b0, b + 40 + 4 * (P - 10), 4); /* little-endian host, as the format */
    tap_ok(n == 40 + 4 * P + 4 && memcmp(b, "CNNMODEL", 8) == 0 && b[8] == 1 && dims[0] == 1 &&
               dims[1] == 28 && dims[2] == 28 && dims[3] == 8 && dims[4] == 10 &&
               b[32] + 256u * b[33] == P && b0 == post_view(&m.arch, m.params).b[0] &&
               crc32(0L, b, (uInt)(n - 4)) == ((uint32_t)b[n - 4] | (uint32_t)b[n - 3] << 8 |
                                               (uint32_t)b[n - 2] << 16 | (uint32_t)b[n - 1] << 24),
           "file layout: magic, version 1, shape 1x28x28/8/10, %zu params, b last, CRC-32", P);

    /* broken files */
    const size_t cuts[] = {0, 4, 8, 11, 20, 39, 40, 41, 1000, n - 5, n - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof *cuts; i++) {
        char name[64], what[64];
        snprintf(name, sizeof name, "cut%zu.cnn", cuts[i]);
        snprintf(what, sizeof what, "truncated to %zu bytes", cuts[i]);
        spit(path_in(name), b, cuts[i]);
        rejects(what, path_in(name), cuts[i] < 8 ? "not a model file" : "truncated");
    }
    unsigned char *c = malloc(n + 8);
    memcpy(c, b, n);
    memcpy(c + n, "trailing", 8);
    spit(path_in("long.cnn"), c, n + 8);
    rejects("trailing bytes", path_in("long.cnn"), "trailing");
    memcpy(c, b, n);
    c[1000] ^= 0x40;
    spit(path_in("flip.cnn"), c, n);
    rejects("one flipped bit in the weights", path_in("flip.cnn"), "CRC");
    memcpy(c, b, n);
    c[n - 1] ^= 1;
    spit(path_in("crc.cnn"), c, n);
    rejects("a wrong CRC", path_in("crc.cnn"), "CRC");
    memcpy(c, b, n);
    c[0] = 'X';
    spit(path_in("magic.cnn"), c, n);
    rejects("a wrong magic", path_in("magic.cnn"), "not a model file");
    memcpy(c, b, n);
    put_u32(c + 8, 5);
    fix_crc(c, n);
    spit(path_in("v5.cnn"), c, n);
    rejects("format version 5", path_in("v5.cnn"), "version 5");
    memcpy(c, b, n);
    put_u32(c + 24, 16); /* F = 16: the parameter count no longer matches */
    fix_crc(c, n);
    spit(path_in("arch.cnn"), c, n);
    rejects("16 filters over an 8-filter body", path_in("arch.cnn"), "parameters");
    memcpy(c, b, n);
    put_u32(c + 12, 0x80000000u); /* C = 2^31 */
    fix_crc(c, n);
    spit(path_in("huge.cnn"), c, n);
    rejects("2^31 input channels", path_in("huge.cnn"), "unsupported architecture");
    memcpy(c, b, n);
    put_u32(c + 24, 0); /* F = 0 */
    fix_crc(c, n);
    spit(path_in("zero.cnn"), c, n);
    rejects("zero filters", path_in("zero.cnn"), "unsupported architecture");
    memcpy(c, b, n);
    put_u32(c + 40 + 4 * 5, 0x7fc00000u); /* a NaN filter */
    fix_crc(c, n);
    spit(path_in("nan.cnn"), c, n);
    rejects("a NaN parameter", path_in("nan.cnn"), "not finite");
    mkdir(path_in("adir.cnn"), 0755);
    rejects("a directory", path_in("adir.cnn"), "directory");
    rejects("a missing file", path_in("missing.cnn"), "No such file");
    /* /proc files claim size 0 and then deliver bytes: a file changing size as it is read */
    rejects("a file that changes size while being read", "/proc/self/status",
            "changed size while being read");
    /* permissions: root reads everything, so this case needs another user */
    spit(path_in("locked.cnn"), b, n);
    chmod(path_in("locked.cnn"), 0);
    if (geteuid() != 0) {
        rejects("an unreadable file", path_in("locked.cnn"), "Permission denied");
    } else { /* root reads everything: try it as nobody */
        const pid_t pid = fork();
        if (pid == 0) {
            cnn_model u = {0};
            char e[512] = "";
            if (setgid(65534) || setuid(65534))
                _exit(3);
            const cnn_status s2 = cnn_model_load(&u, path_in("locked.cnn"), e, sizeof e);
            _exit(s2 != CNN_OK && strstr(e, "Permission denied") && !u.params ? 0 : 1);
        }
        int status = 0;
        waitpid(pid, &status, 0);
        tap_ok(WIFEXITED(status) && WEXITSTATUS(status) == 0,
               "an unreadable file (as user nobody): rejected with 'Permission denied'");
    }

    version2();
    version3();

    /* failed saves */
    const int before = count_entries();
    st = cnn_model_save(&m, path_in("nodir/x.cnn"), err, sizeof err);
    tap_ok(st != CNN_OK && strstr(err, "nodir/x.cnn"), "save into a missing directory fails: %s",
           err);
    st = cnn_model_save(&m, path_in("adir.cnn"), err, sizeof err);
    struct stat sb;
    tap_ok(st != CNN_OK && stat(path_in("adir.cnn"), &sb) == 0 && S_ISDIR(sb.st_mode) &&
               count_entries() == before,
           "save over a directory fails, leaves it and no temporary file: %s", err);
    /* a save over an existing model replaces it whole, leaving no temporary */
    post_view(&m.arch, m.params).b[3] += 1.0f;
    st = cnn_model_save(&m, good, err, sizeof err);
    cnn_model l2 = {0};
    const cnn_status st2 = st == CNN_OK ? cnn_model_load(&l2, good, err, sizeof err) : st;
    const int entries = count_entries();
    tap_ok(st2 == CNN_OK && post_view(&l2.arch, l2.params).b[3] == post_view(&m.arch, m.params).b[3] && entries == before,
           "saving over a model replaces it and leaves no temporary file (%d entries, %d before; "
           "%s)", entries, before, st2 == CNN_OK ? "loads" : err);
    cnn_model_free(&l2);

    /* Temporary files of a writer killed mid-write: the next save of the same file
     * removes those no process holds, keeps one that a live writer holds (flock), and
     * leaves other files alone. */
    char stale[512], held[512], other[512], similar[512];
    snprintf(stale, sizeof stale, "%s", path_in("good.cnn.tmp.k1ll3d"));
    snprintf(held, sizeof held, "%s", path_in("good.cnn.tmp.w0rk1n"));
    snprintf(other, sizeof other, "%s", path_in("other.cnn.tmp.k1ll3d"));
    snprintf(similar, sizeof similar, "%s", path_in("good.cnn.tmp.abc"));
    spit(stale, (const unsigned char *)"partial", 7);
    spit(other, (const unsigned char *)"partial", 7);
    spit(similar, (const unsigned char *)"partial", 7);
    spit(held, (const unsigned char *)"partial", 7);
    const int hfd = open(held, O_RDONLY);
    const int locked = hfd >= 0 && flock(hfd, LOCK_EX) == 0;
    st = cnn_model_save(&m, good, err, sizeof err);
    tap_ok(st == CNN_OK && locked && access(stale, F_OK) != 0 && access(held, F_OK) == 0 &&
               access(other, F_OK) == 0 && access(similar, F_OK) == 0,
           "a save removes its file's stale temporary files, keeps one a live writer holds, and "
           "no other file");
    if (hfd >= 0)
        close(hfd); /* the "writer" dies: its file is stale now */
    st = cnn_model_save(&m, good, err, sizeof err);
    tap_ok(st == CNN_OK && access(held, F_OK) != 0,
           "once its writer is gone, the next save removes that one too");
    unlink(other), unlink(similar);

    /* clean up */
    free(b);
    free(c);
    DIR *d = opendir(dir);
    for (struct dirent *e; (e = readdir(d));)
        if (e->d_name[0] != '.') {
            if (unlink(path_in(e->d_name)))
                rmdir(path_in(e->d_name));
        }
    closedir(d);
    rmdir(dir);
    cnn_acts_free(&a1);
    cnn_acts_free(&a2);
    cnn_model_free(&l);
    cnn_model_free(&m);
    return tap_done();
}
