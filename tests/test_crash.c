/* test_crash.c - crash-safe training through the cnn program: SIGINT and SIGTERM
 * stop after the current step, save the model and a checkpoint, and exit non-zero;
 * resuming from a checkpoint, mid-epoch or at an epoch's end, gives bit-identical
 * weights to a run never interrupted; a second signal exits at once and leaves no
 * partial file; a NaN loss stops the run and leaves the last checkpoint intact;
 * broken checkpoints are refused; SIGKILL at random moments of a run that writes a
 * checkpoint every step, resumed each time, ends with the uninterrupted run's model
 * and no stray file. Data: synthetic digits (no MNIST needed). */
#include "cnn.h"
#include "steps.h"

#include "check.h"
#include "proc.h"

#include <dirent.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static const char *exe;
static char dir[256];
static char out[1 << 20], err[1 << 16];

static const char *in_dir(const char *name)
{
    static char buf[64][512]; /* more slots than the test uses paths: each stays valid */
    static int k;
    k = (k + 1) % 64;
    snprintf(buf[k], sizeof buf[k], "%s/%s", dir, name);
    return buf[k];
}

/* The run every test compares with: 2 epochs of 20,000 synthetic digits, batch 8. */
#define RUN "train", "--synthetic", "20000", "--epochs", "2", "--batch", "8", "--seed", "3"

static int leftovers(void) /* temporary files left in dir */
{
    DIR *d = opendir(dir);
    int n = 0;
    for (struct dirent *e; d && (e = readdir(d));)
        n += strstr(e->d_name, ".tmp.") != NULL;
    if (d)
        closedir(d);
    return n;
}

/* Start exe with args, read its stdout until `after` appears, send `sig` (twice if
 * twice), and wait. @return the exit status (-1: killed by a signal). */
static int interrupt(const char *const *args, const char *after, int sig, int twice)
{
    int ofd, efd;
    const pid_t pid = spawn_cmd(exe, args, &ofd, &efd);
    if (pid < 0)
        return -2;
    size_t no = 0;
    int sent = 0;
    for (;;) {
        const ssize_t k = read(ofd, out + no, sizeof out - 1 - no);
        if (k <= 0)
            break;
        no += (size_t)k;
        out[no] = '\0';
        if (!sent && strstr(out, after)) {
            kill(pid, sig);
            if (twice)
                kill(pid, sig);
            sent = 1;
        }
    }
    out[no] = '\0';
    const ssize_t ke = read(efd, err, sizeof err - 1);
    err[ke > 0 ? ke : 0] = '\0';
    close(ofd), close(efd);
    return wait_cmd(pid);
}

static int loads_model(const char *path)
{
    cnn_model m = {0};
    const int ok = cnn_model_load(&m, path, NULL, 0) == CNN_OK;
    cnn_model_free(&m);
    return ok;
}

/* Entries of directory d other than . and .. (names into names, up to 8). */
static int entries(const char *d, char names[][256])
{
    DIR *dd = opendir(d);
    int n = 0;
    for (struct dirent *e; dd && (e = readdir(dd));)
        if (strcmp(e->d_name, ".") && strcmp(e->d_name, "..")) {
            if (n < 8)
                snprintf(names[n], 256, "%s", e->d_name);
            n++;
        }
    if (dd)
        closedir(dd);
    return n;
}

/* SIGKILL (the OOM killer, a preemption, a power cut) at random moments of a run that
 * writes a checkpoint after every step, so that most kills land in a write; each time
 * the run resumes from the checkpoint. The final model must be the uninterrupted
 * run's, byte for byte, and the directory must hold the checkpoint and the model
 * only: no temporary file of a killed writer outlives the next write. */
static void killed_while_writing(void)
{
#define KRUN "train", "--synthetic", "3000", "--epochs", "2", "--batch", "8", "--seed", "4", \
             "--checkpoint-every", "1"
    char kdir[512], names[8][256];
    snprintf(kdir, sizeof kdir, "%s", in_dir("kills"));
    const char *R = in_dir("kill-reference.cnn");
    const char *ck = in_dir("kills/run.ckpt"), *F = in_dir("kills/final.cnn");
    int rc = mkdir(kdir, 0700) ? -2
             : run_cmd(exe, (const char *[]){KRUN, "--checkpoint", in_dir("kill-ref.ckpt"),
                                             "--save", R, NULL},
                       out, err, sizeof err);
    tap_ok(rc == 0 && loads_model(R), "the uninterrupted run with a checkpoint every step");
    /* Each run is killed once a checkpoint of its own has landed (the file is a new
     * inode after every atomic write), after a random 0 to 4 ms more, while it writes the
     * next ones: every run makes progress whatever the machine's speed, and the kills
     * fall in the writes. 25 kills, then a last run to the end. */
    uint32_t lcg = 2024;
    int kills = 0, debris = 0, finished = 0;
    for (int k = 0; k < 25 && !finished; k++) {
        struct stat sb;
        const ino_t before = stat(ck, &sb) == 0 ? sb.st_ino : 0;
        const char *args[] = {KRUN, "--checkpoint", ck, "--save", F,
                              before ? "--resume" : NULL, ck, NULL};
        int ofd, efd, status = 0;
        const pid_t pid = spawn_cmd(exe, args, &ofd, &efd);
        if (pid < 0)
            break;
        int ended = 0; /* (its few lines of output fit in the pipes, read by nobody) */
        for (int waited = 0; waited < 60000; waited++) { /* up to a minute */
            if (waitpid(pid, &status, WNOHANG) == pid) {
                ended = 1;
                break;
            }
            if (stat(ck, &sb) == 0 && sb.st_ino != before)
                break;
            nanosleep(&(struct timespec){0, 1000000L}, NULL);
        }
        if (!ended) {
            lcg = lcg * 1664525u + 1013904223u;
            nanosleep(&(struct timespec){0, (long)((lcg >> 8) % 4000) * 1000L}, NULL);
            kill(pid, SIGKILL); /* our own child */
            waitpid(pid, &status, 0);
        }
        close(ofd), close(efd);
        finished = WIFEXITED(status) && WEXITSTATUS(status) == 0;
        kills += WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
        int n = entries(kdir, names);
        for (int i = 0; i < n && i < 8; i++)
            debris += strstr(names[i], ".tmp.") != NULL;
    }
    if (!finished) {
        const char *args[] = {KRUN, "--checkpoint", ck, "--save", F, "--resume", ck, NULL};
        rc = run_cmd(exe, args, out, err, sizeof err);
        finished = rc == 0;
    }
    const int n = entries(kdir, names);
    char list[600] = "";
    for (int i = 0; i < n && i < 8; i++)
        snprintf(list + strlen(list), sizeof list - strlen(list), " %.60s", names[i]);
    tap_ok(kills >= 20 && finished && same_file(R, F),
           "killed %d times at random moments of a run checkpointing every step, resumed each "
           "time: the final model is byte-identical to the uninterrupted run's", kills);
    tap_ok(n == 2 && access(ck, F_OK) == 0 && access(F, F_OK) == 0,
           "no stray file: the directory holds the checkpoint and the model only (%d entries:%s; "
           "temporary files seen right after a kill: %d)", n, list, debris);
    unlink(ck), unlink(F), unlink(R), unlink(in_dir("kill-ref.ckpt"));
    for (int i = 0; i < n && i < 8; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%.500s/%.255s", kdir, names[i]);
        unlink(p);
    }
    rmdir(kdir);
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: test_crash PATH-TO-cnn\n");
        return 1;
    }
    exe = argv[1];
    snprintf(dir, sizeof dir, "%s/cnn-crash-XXXXXX", getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp");
    if (!mkdtemp(dir)) {
        printf("Bail out! cannot make a temporary directory\n");
        return 1;
    }
    const char *A = in_dir("A.cnn");
    int rc = run_cmd(exe, (const char *[]){RUN, "--save", A, NULL}, out, err, sizeof err);
    tap_ok(rc == 0 && loads_model(A), "the uninterrupted run saves its model (stderr: %.*s)",
           (int)strcspn(err, "\n"), err);

    /* checkpoints along the way change nothing */
    const char *C = in_dir("C.cnn"), *ckc = in_dir("every.ckpt");
    rc = run_cmd(exe, (const char *[]){RUN, "--checkpoint", ckc, "--checkpoint-every", "37",
                                       "--save", C, NULL},
                 out, err, sizeof err);
    tap_ok(rc == 0 && same_file(A, C), "checkpoints every 37 steps leave the weights bit-identical");

    /* an epoch-end checkpoint, resumed */
    const char *ck1 = in_dir("epoch1.ckpt"), *B = in_dir("B.cnn");
    rc = run_cmd(exe, (const char *[]){"train", "--synthetic", "20000", "--epochs", "1",
                                       "--batch", "8", "--seed", "3", "--checkpoint", ck1, NULL},
                 out, err, sizeof err);
    tap_ok(rc == 0, "one epoch with --checkpoint writes it");
    rc = run_cmd(exe, (const char *[]){RUN, "--resume", ck1, "--save", B, NULL}, out, err,
                 sizeof err);
    tap_ok(rc == 0 && strstr(out, "resuming") && same_file(A, B),
           "resuming the epoch-1 checkpoint for epoch 2 gives bit-identical weights");

    /* SIGINT in the middle of epoch 1 */
    const char *ck = in_dir("sigint.ckpt"), *D = in_dir("D.cnn"), *E = in_dir("E.cnn");
    rc = interrupt((const char *[]){RUN, "--checkpoint", ck, "--checkpoint-every", "1000",
                                    "--save", D, NULL},
                   "[Step 2000]", SIGINT, 0);
    tap_ok(rc == 130 && strstr(err, "stopped by SIGINT") && strstr(err, ck) && strstr(err, D) &&
               loads_model(D) && leftovers() == 0,
           "SIGINT: exit 130 after saving model and checkpoint, and saying where: %.*s", 
           (int)strcspn(err, "\n"), err);
    rc = run_cmd(exe, (const char *[]){RUN, "--resume", ck, "--save", E, NULL}, out, err,
                 sizeof err);
    tap_ok(rc == 0 && same_file(A, E),
           "resuming after SIGINT in mid-epoch gives bit-identical weights");

    /* A stacked network with Nesterov momentum, weight decay and a cosine schedule:
     * a mid-epoch checkpoint (version 2, with the velocities) resumes bit for bit */
#define STACKED "train", "--synthetic", "3000", "--epochs", "2", "--batch", "16", "--lr", "0.05", \
        "--arch", "conv4b,relu,pool,conv6b,relu,pool,dense16,relu,softmax10", "--momentum",   \
        "0.9", "--nesterov", "--weight-decay", "0.0005", "--schedule", "cosine", "--seed", "5"
    const char *S1 = in_dir("S1.cnn"), *S2 = in_dir("S2.cnn"), *cks = in_dir("stacked.ckpt");
    rc = run_cmd(exe, (const char *[]){STACKED, "--save", S1, NULL}, out, err, sizeof err);
    tap_ok(rc == 0 && loads_model(S1) && strstr(out, "network conv4b"),
           "a stacked network with Nesterov momentum and a cosine schedule trains and saves "
           "(stderr: %.*s)", (int)strcspn(err, "\n"), err);
    rc = interrupt((const char *[]){STACKED, "--checkpoint", cks, "--checkpoint-every", "50",
                                    NULL},
                   "[Step 1008]", SIGINT, 0);
    cnn_checkpoint ks;
    const int ks_ok = cnn_checkpoint_load(&ks, cks, NULL, 0) == CNN_OK;
    tap_ok(rc == 130 && ks_ok && ks.state && ks.cfg.nesterov && ks.schedule == CNN_SCHEDULE_COSINE &&
               ks.epochs == 2 && !cnn_arch_is_post(&ks.model.arch),
           "SIGINT: its checkpoint holds the network, the optimiser and its velocities");
    if (ks_ok)
        cnn_checkpoint_free(&ks);
    rc = run_cmd(exe, (const char *[]){STACKED, "--resume", cks, "--save", S2, NULL}, out, err,
                 sizeof err);
    tap_ok(rc == 0 && same_file(S1, S2) && !strstr(err, "was made with other settings"),
           "resuming it gives bit-identical weights, without a warning that the settings "
           "differ (stderr: %.*s)", (int)strcspn(err, "\n"), err);
    /* AdamW with weight decay, the step schedule and warmup, and dropout (checkpoint version 3, with
     * the moments and the count of updates): resumes bit for bit */
#define ADAMW "train", "--synthetic", "3000", "--epochs", "2", "--batch", "16", "--lr", "0.002",  \
        "--arch", "conv4bp1,relu,dropout20,pool,conv6bs2,relu,gap,softmax10", "--optimizer", "adamw", \
        "--weight-decay", "0.01", "--schedule", "step", "--lr-steps", "100", "--lr-gamma", "0.5", \
        "--warmup", "30", "--seed", "6"
    const char *W1 = in_dir("W1.cnn"), *W2 = in_dir("W2.cnn"), *ckw = in_dir("adamw.ckpt");
    rc = run_cmd(exe, (const char *[]){ADAMW, "--save", W1, NULL}, out, err, sizeof err);
    tap_ok(rc == 0 && loads_model(W1) && strstr(out, "AdamW (betas 0.9, 0.999, eps 1e-08)") &&
               strstr(out, "step learning rate after 30 steps of warmup"),
           "AdamW with a step schedule and warmup trains and saves (stderr: %.*s)",
           (int)strcspn(err, "\n"), err);
    rc = interrupt((const char *[]){ADAMW, "--checkpoint", ckw, NULL}, "[Step 1008]", SIGINT, 0);
    cnn_checkpoint kw;
    const int kw_ok = cnn_checkpoint_load(&kw, ckw, NULL, 0) == CNN_OK;
    tap_ok(rc == 130 && kw_ok && kw.cfg.optimizer == CNN_OPTIMIZER_ADAMW && kw.state &&
               kw.schedule == CNN_SCHEDULE_STEP && kw.lr_every == 100 && kw.lr_gamma == 0.5f &&
               kw.warmup == 30 && kw.updates > 0,
           "SIGINT: its checkpoint holds the optimiser, its moments and count, and the schedule");
    if (kw_ok)
        cnn_checkpoint_free(&kw);
    rc = run_cmd(exe, (const char *[]){ADAMW, "--resume", ckw, "--save", W2, NULL}, out, err,
                 sizeof err);
    tap_ok(rc == 0 && same_file(W1, W2) && !strstr(err, "was made with other settings"),
           "resuming it gives bit-identical weights (stderr: %.*s)", (int)strcspn(err, "\n"),
           err);

    rc = run_cmd(exe, (const char *[]){STACKED, "--momentum", "0.5", "--resume", cks, NULL}, out,
                 err, sizeof err);
    tap_ok(rc == 0 && strstr(err, "was made with other settings") && strstr(err, "momentum 0.9"),
           "resuming with another momentum warns that the run will differ");
    rc = run_cmd(exe, (const char *[]){"train", "--synthetic", "3000", "--epochs", "2", "--arch",
                                       "conv8,pool,softmax10", "--resume", cks, NULL},
                 out, err, sizeof err);
    tap_ok(rc != 0 && strstr(err, "differs from the network"),
           "resuming with another --arch is refused: %.*s", (int)strcspn(err, "\n"), err);

    /* SIGTERM */
    const char *ckt = in_dir("sigterm.ckpt");
    rc = interrupt((const char *[]){RUN, "--checkpoint", ckt, NULL}, "[Step 1000]", SIGTERM, 0);
    cnn_checkpoint k;
    const int ck_ok = cnn_checkpoint_load(&k, ckt, NULL, 0) == CNN_OK;
    tap_ok(rc == 143 && strstr(err, "stopped by SIGTERM") && ck_ok && k.epoch == 1 &&
               k.pos > 0 && k.pos < 20000 && k.pos % 8 == 0,
           "SIGTERM: exit 143 with a checkpoint at a step boundary of epoch 1 (step %llu)",
           ck_ok ? (unsigned long long)k.pos : 0ULL);
    if (ck_ok)
        cnn_checkpoint_free(&k);

    /* two signals: out at once, no partial file */
    const char *F = in_dir("F.cnn");
    rc = interrupt((const char *[]){RUN, "--checkpoint", in_dir("twice.ckpt"), "--save", F, NULL},
                   "[Step 1000]", SIGINT, 1);
    FILE *fp = fopen(F, "rb");
    const int f_ok = !fp || loads_model(F);
    if (fp)
        fclose(fp);
    tap_ok(rc == 130 && f_ok && leftovers() == 0,
           "a second SIGINT exits at once (130), leaving no partial or temporary file");

    /* a NaN loss keeps the last good checkpoint */
    const char *ckn = in_dir("nan.ckpt");
    rc = run_cmd(exe, (const char *[]){"train", "--synthetic", "20000", "--epochs", "1",
                                       "--batch", "8", "--seed", "3", "--checkpoint", ckn, NULL},
                 out, err, sizeof err);
    rc = run_cmd(exe, (const char *[]){"train", "--synthetic", "20000", "--epochs", "1",
                                       "--lr", "1000", "--checkpoint", ckn, "--checkpoint-every",
                                       "100000", NULL},
                 out, err, sizeof err);
    tap_ok(rc == 1 && strstr(err, "NaN or infinite at step") && strstr(err, "smaller --lr") &&
               same_file(ckn, ck1),
           "a NaN loss stops the run, names the step, and leaves the last checkpoint intact: %.*s",
           (int)strcspn(err, "\n"), err);

    /* broken checkpoints */
    FILE *src = fopen(ck1, "rb");
    static unsigned char buf[1 << 20];
    const size_t n = src ? fread(buf, 1, sizeof buf, src) : 0;
    if (src)
        fclose(src);
    const char *bad = in_dir("bad.ckpt");
    FILE *w = fopen(bad, "wb");
    fwrite(buf, 1, n / 2, w);
    fclose(w);
    rc = run_cmd(exe, (const char *[]){RUN, "--resume", bad, NULL}, out, err, sizeof err);
    tap_ok(rc == 1 && strstr(err, bad) && count_lines(err) == 1,
           "a truncated checkpoint is refused: %.*s", (int)strcspn(err, "\n"), err);
    buf[200] ^= 1;
    w = fopen(bad, "wb");
    fwrite(buf, 1, n, w);
    fclose(w);
    rc = run_cmd(exe, (const char *[]){RUN, "--resume", bad, NULL}, out, err, sizeof err);
    tap_ok(rc == 1 && strstr(err, "corrupt") && count_lines(err) == 1,
           "a checkpoint with a flipped bit is refused: %.*s", (int)strcspn(err, "\n"), err);
    rc = run_cmd(exe, (const char *[]){"train", "--synthetic", "5000", "--resume", ck1, NULL}, out,
                 err, sizeof err);
    tap_ok(rc == 1 && strstr(err, "20000-image training set"),
           "a checkpoint of another training set is refused: %.*s", (int)strcspn(err, "\n"), err);
    rc = run_cmd(exe, (const char *[]){RUN, "--checkpoint-every", "10", NULL}, out, err, sizeof err);
    tap_ok(rc == 2 && strstr(err, "--checkpoint FILE"), "--checkpoint-every needs --checkpoint");

    killed_while_writing();

    /* clean up */
    DIR *d = opendir(dir);
    for (struct dirent *e; d && (e = readdir(d));)
        if (e->d_name[0] != '.')
            unlink(in_dir(e->d_name));
    if (d)
        closedir(d);
    rmdir(dir);
    return tap_done();
}
