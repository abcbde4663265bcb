/* test_pgm.c - the PGM reader: P5 and P2 images load exactly (maxval rescaled);
 * malformed, truncated, 16-bit and non-file inputs are rejected with one line. */
#include "cnn.h"

#include "check.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char dir[256];

static const char *write_file(const char *name, const void *data, size_t n)
{
    static char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    fwrite(data, 1, n, f);
    fclose(f);
    return path;
}

static void rejects(const char *what, const char *path, const char *needle)
{
    uint8_t *px = (uint8_t *)1;
    int r = -1, c = -1;
    char err[512] = "";
    const cnn_status st = cnn_pgm_read(path, &px, &r, &c, err, sizeof err);
    tap_ok(st != CNN_OK && px == NULL && r == 0 && c == 0 && strstr(err, needle) &&
               strstr(err, path) && !strchr(err, '\n'),
           "%s: %s", what, err);
}

int main(void)
{
    snprintf(dir, sizeof dir, "%s/cnn-pgm-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) {
        printf("Bail out! cannot make a temporary directory\n");
        return 1;
    }
    char buf[2048];
    uint8_t img[784];
    for (int i = 0; i < 784; i++)
        img[i] = (uint8_t)(i * 7);
    int h = snprintf(buf, sizeof buf, "P5\n# a comment\n28 28\n255\n");
    memcpy(buf + h, img, 784);
    const char *p5 = write_file("a.pgm", buf, (size_t)h + 784);
    uint8_t *px = NULL;
    int r, c;
    char err[512];
    cnn_status st = cnn_pgm_read(p5, &px, &r, &c, err, sizeof err);
    tap_ok(st == CNN_OK && r == 28 && c == 28 && memcmp(px, img, 784) == 0,
           "P5 28x28 with a comment loads exactly");
    free(px);

    const char p2[] = "P2\n3 2 # width height\n15\n0 15 7\n# row two\n1 2 3\n";
    st = cnn_pgm_read(write_file("b.pgm", p2, strlen(p2)), &px, &r, &c, err, sizeof err);
    const uint8_t want[6] = {0, 255, 119, 17, 34, 51};
    tap_ok(st == CNN_OK && r == 2 && c == 3 && memcmp(px, want, 6) == 0,
           "P2 3x2 with maxval 15 loads, rescaled to 0..255");
    free(px);

    rejects("truncated pixels", write_file("t.pgm", buf, (size_t)h + 700), "truncated");
    rejects("trailing data", write_file("x.pgm", buf, (size_t)h + 790), "trailing");
    rejects("16-bit maxval", write_file("w.pgm", "P5 2 2 65535\n12345678", 21), "maxval");
    rejects("zero maxval", write_file("z.pgm", "P5 2 2 0\n1234", 13), "maxval");
    rejects("no magic", write_file("m.pgm", "P6 2 2 255\n123456789012", 23), "not a PGM");
    rejects("empty file", write_file("e.pgm", "", 0), "not a PGM");
    rejects("missing height", write_file("h.pgm", "P5 28", 5), "height");
    rejects("negative width", write_file("n.pgm", "P2 -3 2 255\n", 12), "width");
    rejects("huge size", write_file("g.pgm", "P5 100000 100000 255\n", 22), "size");
    rejects("P2 pixel above maxval", write_file("v.pgm", "P2 2 1 9\n3 10\n", 14), "pixel 1");
    rejects("P2 missing pixel", write_file("q.pgm", "P2 2 2 9\n3 1 2\n", 15), "pixel 3");
    rejects("P2 garbage pixel", write_file("y.pgm", "P2 2 1 9\n3 x\n", 13), "pixel 1");
    char sub[300];
    snprintf(sub, sizeof sub, "%s/adir", dir);
    mkdir(sub, 0755);
    rejects("a directory", sub, "is a directory");
    snprintf(sub, sizeof sub, "%s/none.pgm", dir);
    rejects("a missing file", sub, "No such file");
    rejects("a file that changes size while being read", "/proc/self/status", "changed size");

    const char *names[] = {"a.pgm", "b.pgm", "t.pgm", "x.pgm", "w.pgm", "z.pgm", "m.pgm",
                           "e.pgm", "h.pgm", "n.pgm", "g.pgm", "v.pgm", "q.pgm", "y.pgm"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++) {
        snprintf(sub, sizeof sub, "%s/%s", dir, names[i]);
        unlink(sub);
    }
    snprintf(sub, sizeof sub, "%s/adir", dir);
    rmdir(sub);
    rmdir(dir);
    return tap_done();
}
