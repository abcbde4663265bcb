/* test_cli.c - the cnn program: bad flags give one clear line on stderr and a
 * non-zero exit; a short synthetic training run prints the post's lines. */
#include "check.h"
#include "proc.h"

#include <string.h>

static const char *exe;

static void bad(const char *why, const char *const *args, const char *needle)
{
    static char out[1 << 16], err[1 << 16];
    const int rc = run_cmd(exe, args, out, err, sizeof out);
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
    bad("a zero-width layer", (const char *[]){"train", "--synthetic", "60", "--arch", "conv0,softmax10", NULL},
        "layer 1 'conv0' has no filters");
    bad("a layer after the output",
        (const char *[]){"train", "--synthetic", "60", "--arch", "softmax10,relu", NULL},
        "must be last");
    bad("an empty layer", (const char *[]){"train", "--synthetic", "60", "--arch", "conv8,,softmax10", NULL},
        "layer 2 ''");
    bad("momentum 1", (const char *[]){"train", "--momentum", "1", NULL}, "--momentum");
    bad("Nesterov without momentum", (const char *[]){"train", "--nesterov", NULL}, "--nesterov");
    bad("an unknown schedule", (const char *[]){"train", "--schedule", "step", NULL}, "--schedule");
    bad("batch larger than the data",
        (const char *[]){"train", "--synthetic", "20", "--batch", "64", NULL}, "--batch");

    static char out[1 << 20], err[1 << 16];
    int rc = run_cmd(exe, (const char *[]){"--help", NULL}, out, err, sizeof err);
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
