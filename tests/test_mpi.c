/* test_mpi.c - data-parallel training under mpirun (registered when the build has
 * MPI): the same global batch and seed give bit-identical models for 1, 2 and 3 ranks
 * and without MPI, for the post's network and a stacked one with Nesterov momentum
 * and a cosine schedule; a checkpoint written by 2 ranks resumes in one process to
 * the same model; batch 1 over 2 ranks is refused; a rank without its data, or a rank
 * killed mid-run, ends the whole job within seconds, naming the rank; a rank that stops
 * answering ends it after --mpi-timeout, named by the others' watchdog; SIGTERM to
 * mpirun saves the model and checkpoint from rank 0.
 *
 * With --reduce allreduce the ranks agree and stay within 1e-5 of one process.
 *
 * usage: test_mpi MPIRUN CNN SCRATCH-DIR */
#include "check.h"
#include "proc.h"

#include "cnn.h"

#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *mpirun, *exe, *dir;
static char out[1 << 20], err[1 << 16];

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

static const char *path(const char *name)
{
    static char buf[8][600];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/mpi-%s", dir, name);
    return buf[k];
}

/* argv for mpirun -np P cnn ARGS... (in np, a buffer for the number). */
static void mpirun_argv(const char **argv, char *np, int P, const char *const *args)
{
    snprintf(np, 16, "%d", P);
    int n = 0;
    argv[n++] = "--oversubscribe";
    argv[n++] = "--bind-to";
    argv[n++] = "none";
    argv[n++] = "-np";
    argv[n++] = np;
    argv[n++] = exe;
    for (int i = 0; args[i] && n < 63; i++)
        argv[n++] = args[i];
    argv[n] = NULL;
}

/* mpirun -np P cnn ARGS...; @return its exit status. */
static int run_np(int P, const char *const *args)
{
    const char *argv[64];
    char np[16];
    mpirun_argv(argv, np, P, args);
    return run_cmd(mpirun, argv, out, err, sizeof err);
}

/* The largest |a - b| over two model files' parameters, -1 if either does not load. */
static double max_diff(const char *a, const char *b)
{
    cnn_model x, y;
    if (cnn_model_load(&x, a, NULL, 0) != CNN_OK)
        return -1;
    if (cnn_model_load(&y, b, NULL, 0) != CNN_OK) {
        cnn_model_free(&x);
        return -1;
    }
    double d = x.n_params == y.n_params ? 0 : -1;
    for (size_t i = 0; d >= 0 && i < x.n_params; i++)
        d = fmax(d, fabs((double)x.params[i] - (double)y.params[i]));
    cnn_model_free(&x), cnn_model_free(&y);
    return d;
}

#define POST "train", "--synthetic", "3000", "--epochs", "2", "--batch", "16", "--lr", "0.05", \
             "--threads", "1", "--seed", "4", "--reduce", "exact"
#define STACKED "train", "--synthetic", "2400", "--epochs", "2", "--batch", "24", "--lr",      \
                "0.05", "--arch", "conv4b,relu,pool,conv6b,relu,pool,dense16,relu,softmax10", \
                "--momentum", "0.9", "--nesterov", "--weight-decay", "0.0005", "--schedule",   \
                "cosine", "--shift", "1", "--threads", "1", "--seed", "6", "--reduce", "exact"

#define BN "train", "--synthetic", "1200", "--epochs", "2", "--batch", "37", "--lr", "0.05", \
           "--arch", "conv4b,bn,relu,pool,dense16,bn,relu,softmax10", "--momentum", "0.9",     \
           "--flip", "--threads", "1", "--seed", "7", "--reduce", "exact"

static void identical(const char *what, const char *const *args_no_save, int nargs)
{
    const char *args[64];
    char name[32];
    memcpy(args, args_no_save, (size_t)nargs * sizeof *args);
    args[nargs] = "--save";
    args[nargs + 2] = NULL;
    snprintf(name, sizeof name, "%s-alone.cnn", what);
    const char *alone = path(name);
    args[nargs + 1] = alone;
    int rc = run_cmd(exe, args, out, err, sizeof err);
    tap_ok(rc == 0, "%s: one process without mpirun trains (stderr: %.*s)", what,
           (int)strcspn(err, "\n"), err);
    for (int P = 1; P <= 3; P++) {
        snprintf(name, sizeof name, "%s-%d.cnn", what, P);
        args[nargs + 1] = path(name);
        rc = run_np(P, args);
        tap_ok(rc == 0 && same_file(alone, args[nargs + 1]),
               "%s: %d rank%s the same model, bit for bit (exit %d; %.*s)", what, P,
               P > 1 ? "s give" : " gives", rc, (int)strcspn(err, "\n"), err);
    }
}

/* Start mpirun, wait until its output shows `marker`, then act: SIGTERM to mpirun,
 * SIGKILL or SIGSTOP to its rank 1; @return the exit status, with *secs the time from
 * the action to the end. A rank stopped and left behind by its mpirun is killed. */
static int run_and(const char *const *args, int P, const char *marker, int how, double *secs)
{
    pid_t rank1 = -1;
    const char *argv[64];
    char np[16];
    mpirun_argv(argv, np, P, args);
    int ofd = -1, efd = -1;
    const pid_t pid = spawn_cmd(mpirun, argv, &ofd, &efd);
    if (pid < 0)
        return -2;
    size_t no = 0;
    double t0 = 0;
    for (int acted = 0;;) {
        const ssize_t k = read(ofd, out + no, sizeof out - 1 - no);
        if (k <= 0)
            break;
        no += (size_t)k;
        out[no] = '\0';
        if (!acted && strstr(out, marker)) {
            acted = 1;
            t0 = now_s();
            if (how == SIGTERM) {
                kill(pid, SIGTERM);
            } else { /* kill -9 or stop rank 1 of this test's own mpirun */
                rank1 = descendant_with_env(pid, "OMPI_COMM_WORLD_RANK=1");
                if (rank1 < 0 || kill(rank1, how) != 0)
                    break;
            }
        }
    }
    const ssize_t ke = read(efd, err, sizeof err - 1);
    err[ke > 0 ? ke : 0] = '\0';
    close(ofd), close(efd);
    const int rc = wait_cmd(pid);
    *secs = now_s() - t0;
    if (how == SIGSTOP && rank1 > 0 && has_env(rank1, "OMPI_COMM_WORLD_RANK=1") &&
        has_env(rank1, "CNN_TEST_MPI=watchdog"))
        kill(rank1, SIGKILL); /* still there, stopped: this test's own */
    return rc;
}

int main(int argc, char **argv)
{
    if (argc != 4) {
        fprintf(stderr, "usage: test_mpi MPIRUN CNN SCRATCH-DIR\n");
        return 1;
    }
    mpirun = argv[1], exe = argv[2], dir = argv[3];

    const char *post[] = {POST};
    identical("post", post, (int)(sizeof post / sizeof *post));
    const char *stacked[] = {STACKED};
    identical("stacked", stacked, (int)(sizeof stacked / sizeof *stacked));
    /* batch normalization: its statistics are sums over every rank's chunks */
    const char *bn[] = {BN};
    identical("bn", bn, (int)(sizeof bn / sizeof *bn));

    /* --reduce allreduce: every rank ends with the same weights (the program
     * compares a CRC-32 of them), within 1e-5 of one process's (measured: 1.8e-7, 8.9e-8) */
    for (int P = 2; P <= 3; P++) {
        char name[32];
        snprintf(name, sizeof name, "allreduce-%d.cnn", P);
        const char *model = path(name);
        const int r2 = run_np(P, (const char *[]){"train", "--synthetic", "3000", "--epochs", "2",
                                                  "--batch", "16", "--lr", "0.05", "--threads",
                                                  "1", "--seed", "4", "--reduce", "allreduce",
                                                  "--save", model, NULL});
        const double dmax = max_diff(model, path("post-alone.cnn"));
        tap_ok(r2 == 0 && dmax >= 0 && dmax <= 1e-5 && !strstr(err, "differ"),
               "MPI_Allreduce over %d ranks: ranks agree, weights within 1e-5 of one process "
               "(largest difference %.3g)", P, dmax);
    }

    /* a checkpoint of 2 ranks, resumed by one process */
    const char *ck = path("two.ckpt"), *res = path("resumed.cnn");
    int rc = run_np(2, (const char *[]){"train", "--synthetic", "3000", "--epochs", "1", "--batch",
                                        "16", "--lr", "0.05", "--threads", "1", "--seed", "4",
                                        "--reduce", "exact", "--checkpoint", ck, NULL});
    tap_ok(rc == 0, "2 ranks write a checkpoint after epoch 1 (%.*s)", (int)strcspn(err, "\n"),
           err);
    rc = run_cmd(exe, (const char *[]){POST, "--resume", ck, "--save", res, NULL}, out, err,
                 sizeof err);
    tap_ok(rc == 0 && same_file(res, path("post-alone.cnn")),
           "one process resumes it for epoch 2 to the same model as an uninterrupted run");

    rc = run_np(2, (const char *[]){"train", "--synthetic", "300", "--epochs", "1", NULL});
    tap_ok(rc != 0 && strstr(err, "cannot be split over 2 ranks"),
           "batch 1 over 2 ranks is refused: %.*s", (int)strcspn(err, "\n"), err);

    /* rank 1 without its data: a shell decides the directory by the rank */
    char script[1200];
    snprintf(script, sizeof script,
             "d=%s; [ \"$OMPI_COMM_WORLD_RANK\" = 1 ] && d=%s; exec %s train --data \"$d\" "
             "--batch 8 --epochs 1", "/nonexistent-a", "/nonexistent-b", exe);
    const double t0 = now_s();
    const char *sh[] = {"--oversubscribe", "-np", "2", "sh", "-c", script, NULL};
    rc = run_cmd(mpirun, sh, out, err, sizeof err);
    const double dt = now_s() - t0;
    tap_ok(rc != 0 && dt < 30 && strstr(err, "rank 1 of 2") && strstr(err, "/nonexistent-b"),
           "a rank that cannot read its data ends the job in %.1f s, naming it", dt);

    /* a rank killed mid-run */
    double secs = 0;
    const char *longrun[] = {"train", "--synthetic", "20000", "--epochs", "50", "--batch", "16",
                             "--threads", "1", NULL};
    rc = run_and(longrun, 2, "--- Epoch 2 ---", SIGKILL, &secs);
    tap_ok(rc != 0 && secs < 30 && strstr(err, "rank"),
           "a rank killed mid-run ends the job in %.1f s, naming the rank (exit %d)", secs, rc);

    /* SIGTERM to mpirun: the first rank saves; the signal travels in the step's one
     * exchange, in both reductions */
    for (int allreduce = 0; allreduce < 2; allreduce++) {
        const char *sck = path(allreduce ? "sig-ar.ckpt" : "sig.ckpt");
        const char *smodel = path(allreduce ? "sig-ar.cnn" : "sig.cnn");
        const char *sigrun[] = {"train", "--synthetic", "20000", "--epochs", "50", "--batch",
                                "16", "--threads", "1", "--checkpoint", sck, "--save", smodel,
                                "--reduce", allreduce ? "allreduce" : "exact", NULL};
        rc = run_and(sigrun, 2, "--- Epoch 2 ---", SIGTERM, &secs);
        cnn_checkpoint c;
        const int loads = cnn_checkpoint_load(&c, sck, NULL, 0) == CNN_OK;
        tap_ok(rc != 0 && secs < 30 && loads && strstr(err, "stopped by SIGTERM") &&
                   strstr(err, "rank 0 of 2"),
               "SIGTERM to mpirun (--reduce %s): rank 0 saves a checkpoint that loads and the "
               "model, in %.1f s", allreduce ? "allreduce" : "exact", secs);
        if (loads)
            cnn_checkpoint_free(&c);
    }

    /* a rank that stops answering (stopped, as a host cut off would be): the others'
     * watchdog ends the job, naming the step and the ranks waited for */
    for (int allreduce = 0; allreduce < 2; allreduce++) {
        setenv("CNN_TEST_MPI", "watchdog", 1); /* marks this test's ranks */
        const char *stall[] = {"train", "--synthetic", "20000", "--epochs", "50", "--batch",
                               "16", "--threads", "1", "--mpi-timeout", "3", "--reduce",
                               allreduce ? "allreduce" : "exact", NULL};
        rc = run_and(stall, 2, "--- Epoch 2 ---", SIGSTOP, &secs);
        unsetenv("CNN_TEST_MPI");
        const char *line = strstr(err, "cnn (rank 0 of 2): step ");
        tap_ok(rc != 0 && secs < 20 && line && strstr(line, "has not completed in 3 s") &&
                   strstr(line, "waits for rank 1 ("),
               "a rank that stops answering (--reduce %s): rank 0 ends the job in %.1f s after "
               "--mpi-timeout 3: %.*s", allreduce ? "allreduce" : "exact", secs,
               line ? (int)strcspn(line, "\n") : 0, line ? line : "");
    }
    return tap_done();
}
