/* test_cli.c - the cnn program: bad flags give one clear line on stderr and a
 * non-zero exit; output paths that are not regular files are refused before training
 * and left untouched, a symbolic link has its target replaced; a short synthetic
 * training run prints the post's lines. */
#define _DEFAULT_SOURCE /* mknod, S_IFCHR */
#include "check.h"
#include "proc.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

static const char *exe;

static void bad(const char *why, const char *const *args, const char *needle)
{
    static char out[1 << 16], err[1 << 16];
    const int rc = run_cmd(exe, args, out, err, sizeof out);
    tap_ok(rc > 0 && count_lines(err) == 1 && strstr(err, needle) && out[0] == '\0',
           "%s: exit %d, stderr '%.*s'", why, rc, (int)strcspn(err, "\n"), err);
}

static char scratch[] = "/tmp/cnn-cli-XXXXXX";

static const char *in_scratch(const char *name)
{
    static char buf[32][256]; /* enough for every name output_paths makes */
    static int next;
    char *p = buf[next++ % 32];
    snprintf(p, sizeof buf[0], "%s/%s", scratch, name);
    return p;
}

/* The last line of stderr (the program may warn about its BLAS core first). */
static const char *last_line(const char *err, char *line, size_t len)
{
    const size_t n = strlen(err);
    size_t end = n && err[n - 1] == '\n' ? n - 1 : n, start = end;
    while (start > 0 && err[start - 1] != '\n')
        start--;
    snprintf(line, len, "%.*s", (int)(end - start), err + start);
    return line;
}

/* train with flag PATH is refused before training: one line naming the path and what
 * it is, a non-zero exit, nothing trained, the node as it was. */
static void refused(const char *kind, const char *flag, const char *path, const char *needle)
{
    static char out[1 << 16], err[1 << 16];
    char line[1024];
    struct stat before, after;
    const int had = lstat(path, &before) == 0;
    const int rc = run_cmd(exe, (const char *[]){"train", "--synthetic", "60", "--epochs", "1",
                                                 flag, path, NULL},
                           out, err, sizeof out);
    last_line(err, line, sizeof line);
    const int same = had && lstat(path, &after) == 0 && after.st_mode == before.st_mode &&
                     after.st_ino == before.st_ino && after.st_rdev == before.st_rdev &&
                     after.st_size == before.st_size;
    tap_ok(rc > 0 && strstr(line, path) && strstr(line, needle) && !strstr(out, "Epoch") && same,
           "%s %s (%s) is refused before training and left as it was: exit %d, '%s'", flag,
           kind, path, rc, line);
}

static void output_paths(void)
{
    if (!mkdtemp(scratch)) {
        tap_ok(0, "cannot make a scratch directory: %s", strerror(errno));
        return;
    }
    const char *flags[] = {"--save", "--checkpoint"};
    const char *chr = in_scratch("null"), *blk = in_scratch("block"), *fifo = in_scratch("fifo");
    const char *sock = in_scratch("socket"), *dir = in_scratch("dir"), *loop = in_scratch("loop");
    const char *to_chr = in_scratch("to-null");
    /* scratch device nodes (never the system's): /dev/null's and a loop device's numbers */
    const int nodes = mknod(chr, S_IFCHR | 0666, makedev(1, 3)) == 0 &&
                      mknod(blk, S_IFBLK | 0600, makedev(7, 200)) == 0;
    const int node_errno = errno;
    int sfd = socket(AF_UNIX, SOCK_STREAM, 0);
    struct sockaddr_un sa = {.sun_family = AF_UNIX};
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", sock);
    const int made = mkfifo(fifo, 0600) == 0 && mkdir(dir, 0700) == 0 && sfd >= 0 &&
                     bind(sfd, (struct sockaddr *)&sa, sizeof sa) == 0 &&
                     symlink("loop", loop) == 0 && symlink("null", to_chr) == 0;
    tap_ok(made, "scratch FIFO, socket, directory and links made in %s", scratch);
    for (int f = 0; f < 2; f++) {
        if (nodes) {
            refused("a character device", flags[f], chr, "a character device");
            refused("a block device", flags[f], blk, "a block device");
            refused("a link to a character device", flags[f], to_chr, "a character device");
        } else {
            printf("ok %d # SKIP cannot make device nodes here (%s): %s refuses them as any "
                   "non-regular file\n", ++tap_count, strerror(node_errno), flags[f]);
        }
        refused("a FIFO", flags[f], fifo, "a FIFO");
        refused("a socket", flags[f], sock, "a socket");
        refused("a directory", flags[f], dir, "a directory");
        refused("a link loop", flags[f], loop, "symbolic links");
    }

    /* latest.cnn -> runs/run42.cnn: the run replaces run42.cnn and the link stays; a
     * dangling link creates the file it names */
    static char out[1 << 16], err[1 << 16];
    const char *runs = in_scratch("runs"), *run42 = in_scratch("runs/run42.cnn");
    const char *latest = in_scratch("latest.cnn"), *dangling = in_scratch("dangling.cnn");
    FILE *old = (mkdir(runs, 0700) == 0) ? fopen(run42, "w") : NULL;
    if (old)
        fputs("an older run\n", old), fclose(old);
    symlink("runs/run42.cnn", latest);
    symlink("runs/new.cnn", dangling);
    const int rc = run_cmd(exe, (const char *[]){"train", "--synthetic", "60", "--epochs", "1",
                                                 "--save", latest, "--checkpoint", dangling,
                                                 NULL},
                           out, err, sizeof out);
    struct stat ls, ts = {0}, ns, ds;
    const int run42_ok = stat(run42, &ts) == 0 && S_ISREG(ts.st_mode) && ts.st_size > 1000;
    char target[256] = "";
    const ssize_t tl = readlink(latest, target, sizeof target - 1);
    if (tl > 0)
        target[tl] = '\0';
    tap_ok(rc == 0 && lstat(latest, &ls) == 0 && S_ISLNK(ls.st_mode) &&
               !strcmp(target, "runs/run42.cnn") && run42_ok,
           "--save through a link replaces the file it names (%lld bytes) and keeps the link",
           (long long)ts.st_size);
    tap_ok(rc == 0 && lstat(dangling, &ds) == 0 && S_ISLNK(ds.st_mode) &&
               stat(in_scratch("runs/new.cnn"), &ns) == 0 && S_ISREG(ns.st_mode),
           "--checkpoint through a dangling link creates the file it names");
    if (sfd >= 0)
        close(sfd);
    const char *names[] = {"null", "block", "fifo", "socket", "loop", "to-null", "latest.cnn",
                           "dangling.cnn", "runs/run42.cnn", "runs/new.cnn"};
    for (size_t i = 0; i < sizeof names / sizeof *names; i++)
        unlink(in_scratch(names[i]));
    rmdir(dir), rmdir(runs), rmdir(scratch);
}

/* A binary PPM of w x h with pixel (y, x) of channel c from the seed. */
static void write_ppm(const char *path, int w, int h, unsigned seed)
{
    char head[64];
    const int k = snprintf(head, sizeof head, "P6\n%d %d\n255\n", w, h);
    unsigned char *b = malloc((size_t)k + 3 * (size_t)w * h);
    memcpy(b, head, (size_t)k);
    for (int i = 0; i < 3 * w * h; i++)
        b[k + i] = (unsigned char)((i * 37 + seed * 101) % 251);
    tap_write_file(path, b, (size_t)k + 3 * (size_t)w * h);
    free(b);
}

/* Colour data through the program: CIFAR-format batches written here train a small
 * network with crops and flips; its file carries the normalisation and the names, so
 * eval labels the confusion matrix and predict names the class of a PPM. */
static void colour_data(void)
{
    static char dir[] = "/tmp/cnn-cli-colour-XXXXXX", out[1 << 20], err[1 << 16];
    char path[512], model[512], line[1024];
    if (!mkdtemp(dir))
        return;
    enum { PER = 16, REC = 3073 };
    unsigned char *rec = malloc(PER * REC);
    for (int b = 0; b <= 5; b++) { /* 5 training batches, then the test batch */
        for (int r = 0; r < PER; r++) {
            rec[r * REC] = (unsigned char)((b + r) % 3);
            for (int i = 1; i < REC; i++)
                rec[r * REC + i] = (unsigned char)((i * 13 + r * 7 + b * 3 + rec[r * REC] * 60) % 256);
        }
        snprintf(path, sizeof path, b < 5 ? "%s/data_batch_%d.bin" : "%s/test_batch.bin", dir,
                 b + 1);
        tap_write_file(path, rec, PER * REC);
    }
    free(rec);
    snprintf(path, sizeof path, "%s/batches.meta.txt", dir);
    tap_write_file(path, "red\ngreen\nblue\n\n", 16);
    snprintf(model, sizeof model, "%s/m.cnn", dir);
    int rc = run_cmd(exe, (const char *[]){"train", "--data", dir, "--arch",
                                           "conv4b,relu,pool,softmax3", "--batch", "8",
                                           "--epochs", "2", "--crop-pad", "2", "--flip",
                                           "--save", model, NULL},
                     out, err, sizeof out);
    tap_ok(rc == 0 && strstr(out, "data: ") && strstr(out, "80 training images, 16 test images") &&
               strstr(out, "input: (px/255 - mean) / std, mean ") &&
               strstr(out, "moved by up to 2 pixels, mirrored at random"),
           "CIFAR-format colour data trains with crops and flips, normalised by its statistics "
           "(exit %d, stderr '%s')", rc, last_line(err, line, sizeof line));
    rc = run_cmd(exe, (const char *[]){"eval", "--model", model, "--data", dir, NULL}, out, err,
                 sizeof out);
    tap_ok(rc == 0 && strstr(out, "  0 red") && strstr(out, "  2 blue"),
           "eval labels the confusion matrix with the class names (exit %d)", rc);
    snprintf(path, sizeof path, "%s/a.ppm", dir);
    write_ppm(path, 32, 32, 3);
    rc = run_cmd(exe, (const char *[]){"predict", "--model", model, "--image", path, NULL}, out,
                 err, sizeof out);
    tap_ok(rc == 0 && strstr(out, "predicted class: ") && strstr(out, ") \n") == NULL &&
               (strstr(out, " (red)\n") || strstr(out, " (green)\n") || strstr(out, " (blue)\n")) &&
               strstr(out, "p(1) = "),
           "predict takes a colour image and names its class: %.*s", (int)strcspn(strstr(out, "predicted") ? strstr(out, "predicted") : out, "\n"),
           strstr(out, "predicted") ? strstr(out, "predicted") : out);
    snprintf(path, sizeof path, "%s/small.ppm", dir);
    write_ppm(path, 28, 28, 4);
    bad("predict of an image of another size",
        (const char *[]){"predict", "--model", model, "--image", path, NULL}, "3x32x32");
    bad("resume with --normalize",
        (const char *[]){"train", "--data", dir, "--resume", model, "--normalize", "unit", NULL},
        "--normalize is for a new network");
    bad("--normalize with two means for three channels",
        (const char *[]){"train", "--data", dir, "--arch", "conv4b,relu,pool,softmax3",
                         "--normalize", "0.5,0.5/0.2", NULL},
        "--normalize");
    bad("--normalize with a zero deviation",
        (const char *[]){"train", "--data", dir, "--arch", "conv4b,relu,pool,softmax3",
                         "--normalize", "0.5/0", NULL},
        "deviation");
    snprintf(path, sizeof path, "rm -rf '%s'", dir);
    if (system(path) != 0)
        tap_ok(0, "remove %s", dir);
}

/* A bn network with label smoothing checkpointed after an epoch and resumed to the
 * second saves the same bytes as a run of two epochs straight: the resumed run owns
 * the checkpoint's model, its running statistics included. */
static void resume_bn(void)
{
    static char out[1 << 16], err[1 << 16];
    char dir[] = "/tmp/cnn-resume-XXXXXX", straight[64], resumed[64], ckpt[64];
    if (!mkdtemp(dir))
        return (void)tap_ok(0, "cannot make a scratch directory: %s", strerror(errno));
    snprintf(straight, sizeof straight, "%s/straight.cnn", dir);
    snprintf(resumed, sizeof resumed, "%s/resumed.cnn", dir);
    snprintf(ckpt, sizeof ckpt, "%s/run.ckpt", dir);
#define BN_RUN "train", "--synthetic", "600", "--batch", "16", "--optimizer", "adamw", "--lr", \
               "0.003", "--arch", "conv4bp1,bn,relu,pool,dense8,bn,relu,softmax10ls10"
    int rc = run_cmd(exe, (const char *[]){BN_RUN, "--epochs", "2", "--save", straight, NULL}, out,
                     err, sizeof out);
    rc |= run_cmd(exe, (const char *[]){BN_RUN, "--epochs", "1", "--checkpoint", ckpt, NULL}, out,
                  err, sizeof out);
    rc |= run_cmd(exe, (const char *[]){BN_RUN, "--epochs", "2", "--resume", ckpt, "--save",
                                        resumed, NULL},
                  out, err, sizeof out);
#undef BN_RUN
    tap_ok(rc == 0 && strstr(out, "resuming") && same_file(straight, resumed) == 1,
           "a bn network resumed from its checkpoint by cnn train saves the bytes of a run "
           "straight through");
    unlink(straight), unlink(resumed), unlink(ckpt), rmdir(dir);
}

/* cnn fold: a bn network trained a little, folded; predict gives the same
 * probabilities to the printed digits on an image, with the bn layers gone. */
static void fold(void)
{
    static char out[1 << 16], err[1 << 16], pred[2][1 << 12];
    char dir[] = "/tmp/cnn-fold-XXXXXX", model[64], folded[64], image[64];
    if (!mkdtemp(dir))
        return (void)tap_ok(0, "cannot make a scratch directory: %s", strerror(errno));
    snprintf(model, sizeof model, "%s/bn.cnn", dir);
    snprintf(folded, sizeof folded, "%s/folded.cnn", dir);
    snprintf(image, sizeof image, "%s/digit.pgm", dir);
    FILE *f = fopen(image, "wb");
    if (f) {
        fprintf(f, "P5\n28 28\n255\n");
        for (int i = 0; i < 784; i++)
            fputc((i * 37 + i / 28 * 11) % 256, f);
        fclose(f);
    }
    int rc = run_cmd(exe, (const char *[]){"train", "--synthetic", "600", "--epochs", "2", "--batch",
                                           "16", "--arch", "conv4,bn,relu,pool,dense8,bn,relu,softmax10",
                                           "--save", model, NULL},
                     out, err, sizeof out);
    rc |= run_cmd(exe, (const char *[]){"fold", "--model", model, "--save", folded, NULL}, out, err,
                  sizeof out);
    tap_ok(rc == 0 && strstr(out, "into") && strstr(out, "(conv4b,relu,pool,dense8,relu,softmax10)"),
           "fold writes the network without bn: %.*s", (int)strcspn(out, "\n"), out);
    for (int i = 0; i < 2; i++)
        rc |= run_cmd(exe, (const char *[]){"predict", "--model", i ? folded : model, "--pgm",
                                            image, NULL},
                      pred[i], err, sizeof pred[i]);
    const char *p0 = strstr(pred[0], "p(0)");
    tap_ok(rc == 0 && p0 && strcmp(pred[0], pred[1]) == 0,
           "the folded model predicts alike: %.*s", p0 ? (int)strcspn(p0, "\n") : 0, p0 ? p0 : "");
    unlink(model), unlink(folded), unlink(image), rmdir(dir);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_cli PATH-TO-cnn\n");
        return 1;
    }
    exe = argv[1];
    bad("no command", (const char *[]){NULL}, "missing command");
    bad("unknown command", (const char *[]){"frobnicate", NULL}, "unknown command 'frobnicate'");
    bad("unknown flag", (const char *[]){"train", "--frob", NULL}, "unknown option '--frob'");
    bad("trailing garbage in --lr", (const char *[]){"train", "--lr", "0.1x", NULL}, "--lr");
    bad("NaN learning rate", (const char *[]){"train", "--lr", "nan", NULL}, "--lr");
    bad("infinite learning rate", (const char *[]){"train", "--lr", "inf", NULL}, "--lr");
    bad("negative learning rate", (const char *[]){"train", "--lr", "-1", NULL}, "--lr");
    bad("zero batch", (const char *[]){"train", "--batch", "0", NULL}, "--batch");
    bad("non-numeric epochs", (const char *[]){"train", "--epochs", "three", NULL}, "--epochs");
    bad("zero threads", (const char *[]){"train", "--threads", "0", NULL}, "--threads");
    bad("negative seed", (const char *[]){"train", "--seed", "-3", NULL}, "--seed");
    bad("missing value", (const char *[]){"train", "--batch", NULL}, "--batch needs a value");
    bad("unknown engine", (const char *[]){"train", "--engine", "gpu", NULL}, "--engine");
    bad("unknown tie rule", (const char *[]){"train", "--pool-ties", "some", NULL}, "--pool-ties");
    bad("zero train limit", (const char *[]){"train", "--train-limit", "0", NULL},
        "--train-limit");
    bad("missing data directory", (const char *[]){"train", "--data", "/nonexistent/mnist", NULL},
        "/nonexistent/mnist");
    bad("a file as the data directory", (const char *[]){"train", "--data", exe, NULL}, exe);
    bad("eval without a model", (const char *[]){"eval", NULL}, "--model");
    bad("eval with a missing model",
        (const char *[]){"eval", "--model", "/nonexistent.cnn", NULL},
        "/nonexistent.cnn");
    bad("predict without an image", (const char *[]){"predict", "--model", "m.cnn", NULL},
        "--pgm");
    bad("predict with two images",
        (const char *[]){"predict", "--model", "m.cnn", "--pgm", "a", "--idx", "b", NULL}, "one of");
    bad("predict of a missing image",
        (const char *[]){"predict", "--model", "m.cnn", "--pgm", "/nonexistent.pgm", NULL},
        "/nonexistent.pgm");
    bad("save into a missing directory",
        (const char *[]){"train", "--synthetic", "60", "--epochs", "1", "--save",
                         "/nonexistent/dir/m.cnn", NULL},
        "/nonexistent/dir/m.cnn");
    bad("zero checkpoint interval",
        (const char *[]){"train", "--checkpoint", "c.ckpt", "--checkpoint-every", "0", NULL},
        "--checkpoint-every");
    bad("non-numeric checkpoint interval",
        (const char *[]){"train", "--checkpoint", "c.ckpt", "--checkpoint-every", "often", NULL},
        "--checkpoint-every");
    bad("checkpoint into a missing directory",
        (const char *[]){"train", "--checkpoint", "/nonexistent/dir/c.ckpt", NULL},
        "/nonexistent/dir/c.ckpt");
    bad("resume from a missing file", (const char *[]){"train", "--resume", "/nonexistent.ckpt", NULL},
        "/nonexistent.ckpt");
    bad("an unknown layer", (const char *[]){"train", "--synthetic", "60", "--arch", "conv8,tanh,softmax10", NULL},
        "layer 2 'tanh'");
    bad("pooling a 1x1 map",
        (const char *[]){"train", "--synthetic", "60", "--arch",
                         "conv8,pool,pool,pool,pool,pool,softmax10", NULL},
        "layer 6 'pool' cannot pool");
    bad("a conv on a map smaller than 3x3",
        (const char *[]){"train", "--synthetic", "60", "--arch", "pool,pool,pool,pool,conv8,softmax10", NULL},
        "layer 5 'conv8' needs a map of at least 3x3");
    bad("no output layer", (const char *[]){"train", "--synthetic", "60", "--arch", "conv8,pool", NULL},
        "no output layer");
    bad("too many filters", (const char *[]){"train", "--synthetic", "60", "--arch",
                                              "conv100000b,pool,softmax10", NULL},
        "layer 1 'conv100000b' is too wide: at most 65536 filters");
    bad("too many outputs", (const char *[]){"train", "--synthetic", "60", "--arch",
                                             "conv8,pool,dense2000000000,softmax10", NULL},
        "layer 3 'dense2000000000' is too wide: at most 65536 outputs");
    bad("a width past long", (const char *[]){"train", "--synthetic", "60", "--arch",
                                              "conv8,pool,softmax99999999999999999999", NULL},
        "is too wide");
    bad("a kernel of 9", (const char *[]){"train", "--synthetic", "60", "--arch",
                                          "conv8k9,pool,softmax10", NULL},
        "layer 1 'conv8k9' has a kernel out of range: k1 to k7");
    bad("a stride of 5", (const char *[]){"train", "--synthetic", "60", "--arch",
                                          "conv8s5,pool,softmax10", NULL},
        "layer 1 'conv8s5' has a stride out of range: s1 to s4");
    bad("padding as large as the kernel", (const char *[]){"train", "--synthetic", "60", "--arch",
                                                           "conv8k3p3,pool,softmax10", NULL},
        "layer 1 'conv8k3p3' has padding out of range");
    bad("an option given twice", (const char *[]){"train", "--synthetic", "60", "--arch",
                                                  "conv8k3k5,pool,softmax10", NULL},
        "layer 1 'conv8k3k5' is not one of conv<F>[b][k<K>][s<S>][p<P>]");
    bad("an unknown conv option", (const char *[]){"train", "--synthetic", "60", "--arch",
                                                   "conv8d2,pool,softmax10", NULL},
        "layer 1 'conv8d2' is not one of");
    bad("a kernel larger than the padded map",
        (const char *[]){"train", "--synthetic", "60", "--arch",
                         "pool,pool,pool,conv4k7p1,softmax10", NULL},
        "layer 4 'conv4k7p1' needs a map of at least 7x7, padding included");
    bad("fewer classes than the data's labels",
        (const char *[]){"train", "--synthetic", "60", "--arch", "conv4,pool,softmax3", NULL},
        "the network has 3 classes, the data has labels up to 9 (end it with softmax10)");
    bad("a zero-width layer", (const char *[]){"train", "--synthetic", "60", "--arch", "conv0,softmax10", NULL},
        "layer 1 'conv0' has no filters");
    bad("a layer after the output",
        (const char *[]){"train", "--synthetic", "60", "--arch", "softmax10,relu", NULL},
        "must be last");
    bad("an empty layer", (const char *[]){"train", "--synthetic", "60", "--arch", "conv8,,softmax10", NULL},
        "layer 2 ''");
    bad("momentum 1", (const char *[]){"train", "--momentum", "1", NULL}, "--momentum");
    bad("Nesterov without momentum", (const char *[]){"train", "--nesterov", NULL}, "--nesterov");
    bad("an unknown schedule", (const char *[]){"train", "--schedule", "linear", NULL}, "--schedule");
    bad("the step schedule without its steps",
        (const char *[]){"train", "--schedule", "step", NULL}, "--schedule step goes with --lr-steps");
    bad("steps without the step schedule", (const char *[]){"train", "--lr-steps", "100", NULL},
        "--schedule step goes with --lr-steps");
    bad("a decay factor above 1",
        (const char *[]){"train", "--schedule", "step", "--lr-steps", "9", "--lr-gamma", "2", NULL},
        "--lr-gamma");
    bad("an unknown optimizer", (const char *[]){"train", "--optimizer", "lion", NULL},
        "--optimizer");
    bad("momentum with Adam", (const char *[]){"train", "--optimizer", "adam", "--momentum", "0.9", NULL},
        "--momentum and --nesterov are SGD's");
    bad("beta2 of 1", (const char *[]){"train", "--optimizer", "adam", "--beta2", "1", NULL},
        "--beta2");
    bad("a zero warmup", (const char *[]){"train", "--warmup", "0", NULL}, "--warmup");
    bad("batch larger than the data",
        (const char *[]){"train", "--synthetic", "20", "--batch", "64", NULL}, "--batch");

    output_paths();
    colour_data();
    bad("--shift and --crop-pad together",
        (const char *[]){"train", "--synthetic", "60", "--shift", "1", "--crop-pad", "2", NULL},
        "--crop-pad");
    bad("a crop padding of 9", (const char *[]){"train", "--crop-pad", "9", NULL}, "--crop-pad");
    bad("a turn of 181 degrees", (const char *[]){"train", "--rotate", "181", NULL}, "--rotate");
    bad("a negative turn", (const char *[]){"train", "--rotate", "-5", NULL}, "--rotate");
    bad("a zoom of 0.6", (const char *[]){"train", "--zoom", "0.6", NULL}, "--zoom");
    bad("bn at batch 1",
        (const char *[]){"train", "--synthetic", "60", "--arch", "conv4b,bn,relu,pool,softmax10",
                         NULL},
        "--batch 1 with bn");
    bad("label smoothing of 100 percent",
        (const char *[]){"train", "--synthetic", "60", "--arch", "conv4,pool,softmax10ls100", NULL},
        "layer 3 'softmax10ls100' smooths labels by a percentage out of range: ls1 to ls99");
    bad("fold without a model", (const char *[]){"fold", "--save", "f.cnn", NULL}, "--model");
    bad("fold of a missing model",
        (const char *[]){"fold", "--model", "/nonexistent.cnn", "--save", "f.cnn", NULL},
        "/nonexistent.cnn");
    fold();
    resume_bn();
    bad("an unknown normalisation",
        (const char *[]){"train", "--synthetic", "60", "--normalize", "zscore", NULL},
        "--normalize");

    static char out[1 << 20], err[1 << 16];
    /* conv options in any order, written back in one spelling: b, k, s, p, defaults out */
    int rc = run_cmd(exe, (const char *[]){"train", "--synthetic", "60", "--epochs", "1",
                                           "--arch", "conv8p0k3b,relu,pool,conv6p2s2k5,pool,"
                                           "conv4s1k1,softmax10", NULL},
                     out, err, sizeof out);
    tap_ok(rc == 0 && strstr(out, "network conv8b,relu,pool,conv6k5s2p2,pool,conv4k1,softmax10 "),
           "conv options in any order are written in canonical spelling: %.*s",
           (int)strcspn(strstr(out, "network") ? strstr(out, "network") : out, "\n"),
           strstr(out, "network") ? strstr(out, "network") : out);
    rc = run_cmd(exe, (const char *[]){"--help", NULL}, out, err, sizeof err);
    tap_ok(rc == 0 && strstr(out, "train") && strstr(out, "eval") && strstr(out, "predict"),
           "--help lists the commands");
    rc = run_cmd(exe, (const char *[]){"train", "--help", NULL}, out, err, sizeof err);
    tap_ok(rc == 0 && strstr(out, "--pool-ties") && strstr(out, "--engine") &&
               strstr(out, "--train-limit") && strstr(out, "--resume"),
           "train --help documents the train flags");
    rc = run_cmd(exe, (const char *[]){"eval", "--help", NULL}, out, err, sizeof err);
    tap_ok(rc == 0 && strstr(out, "--model") && strstr(out, "--test-limit"),
           "eval --help documents the eval flags");
    rc = run_cmd(exe, (const char *[]){"predict", "--help", NULL}, out, err, sizeof err);
    tap_ok(rc == 0 && strstr(out, "--pgm") && strstr(out, "--idx") && strstr(out, "--index"),
           "predict --help documents the predict flags");
    rc = run_cmd(exe, (const char *[]){"train", "--synthetic", "600", "--epochs", "2", "--threads", "2",
                              "--seed", "9", NULL},
             out, err, sizeof out);
    tap_ok(rc == 0, "a short synthetic training run exits 0 (stderr: %.*s)",
           (int)strcspn(err, "\n"), err);
    tap_ok(strstr(out, "BLAS: ") && strstr(out, "MNIST CNN initialized!") &&
               strstr(out, "--- Epoch 2 ---") && strstr(out, "--- Testing the CNN ---"),
           "the run reports its BLAS and prints the post's headings");
    const char *step = strstr(out, "[Step 100] Past 100 steps: Average Loss ");
    double loss = -1;
    int acc = -1;
    const int parsed =
        step && sscanf(step, "[Step 100] Past 100 steps: Average Loss %lf | Accuracy: %d%%",
                       &loss, &acc) == 2;
    tap_ok(parsed && loss > 0 && loss < 3 && acc >= 0 && acc <= 100,
           "the post's progress line parses (loss %.3f, accuracy %d%%)", loss, acc);
    const char *ta = strstr(out, "Test Accuracy: ");
    double a = -1;
    const int got = ta && sscanf(ta, "Test Accuracy: %lf", &a) == 1;
    tap_ok(got && a > 0.9,
           "synthetic test accuracy after 2 epochs is above 0.9 (%.4f)", a);
    return tap_done();
}
