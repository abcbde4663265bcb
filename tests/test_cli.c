/* test_cli.c - the cnn program: bad flags give one clear line on stderr and a
 * non-zero exit; a short synthetic training run prints the post's lines. */
#include "check.h"

#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const char *exe;

/* Run exe with args; capture stdout and stderr (up to cap bytes each); @return the
 * exit status, or -1 if it did not exit normally (a crash). */
static int run(const char *const *args, char *out, char *err, size_t cap)
{
    int po[2], pe[2];
    if (pipe(po) || pipe(pe))
        return -2;
    pid_t pid = fork();
    if (pid == 0) {
        dup2(po[1], 1);
        dup2(pe[1], 2);
        close(po[0]), close(pe[0]), close(po[1]), close(pe[1]);
        char *argv[32];
        int n = 0;
        argv[n++] = (char *)exe;
        for (; args[n - 1] && n < 31; n++)
            argv[n] = (char *)args[n - 1];
        argv[n] = NULL;
        execv(exe, argv);
        _exit(127);
    }
    close(po[1]), close(pe[1]);
    size_t no = 0, ne = 0;
    for (int open_o = 1, open_e = 1; open_o || open_e;) { /* small outputs: drain in turn */
        if (open_o) {
            ssize_t k = read(po[0], out + no, cap - 1 - no > 0 ? cap - 1 - no : 0);
            if (k <= 0)
                open_o = 0;
            else
                no += (size_t)k;
        }
        if (open_e) {
            ssize_t k = read(pe[0], err + ne, cap - 1 - ne > 0 ? cap - 1 - ne : 0);
            if (k <= 0)
                open_e = 0;
            else
                ne += (size_t)k;
        }
    }
    out[no] = err[ne] = '\0';
    close(po[0]), close(pe[0]);
    int status;
    waitpid(pid, &status, 0);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static int count_lines(const char *s)
{
    int n = 0;
    for (; *s; s++)
        n += *s == '\n';
    return n;
}

static void bad(const char *why, const char *const *args, const char *needle)
{
    static char out[1 << 16], err[1 << 16];
    const int rc = run(args, out, err, sizeof out);
    tap_ok(rc > 0 && count_lines(err) == 1 && strstr(err, needle) && out[0] == '\0',
           "%s: exit %d, stderr '%.*s'", why, rc, (int)strcspn(err, "\n"), err);
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
    bad("batch larger than the data",
        (const char *[]){"train", "--synthetic", "20", "--batch", "64", NULL}, "--batch");

    static char out[1 << 20], err[1 << 16];
    int rc = run((const char *[]){"--help", NULL}, out, err, sizeof err);
    tap_ok(rc == 0 && strstr(out, "--pool-ties") && strstr(out, "--engine"),
           "--help documents the train flags");
    rc = run((const char *[]){"train", "--synthetic", "600", "--epochs", "2", "--threads", "2",
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
