/* test_run.c - a run through the library alone: a run stopped anywhere, saved as a
 * checkpoint, loaded and resumed with cnn_run_resume ends with the bits of a run never
 * stopped, with everything that keeps state across steps (Adam's moments and update
 * count, a cosine schedule with warmup, shuffles, shifts, flips, turns and zooms,
 * dropout masks); and the run's edges (its end, wrong data, bad configurations). */
#include "cnn.h"

#include "check.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define N 300    /* training samples */
#define BATCH 32 /* 10 steps an epoch, the last of 12 */
#define EPOCHS 3

static cnn_arch net(void)
{
    cnn_arch a;
    char err[256];
    if (cnn_arch_build(&a, "conv6bp1,relu,pool,dropout20,dense16,relu,softmax10", 1, 28, 28,
                       err, sizeof err) != CNN_OK) {
        printf("Bail out! %s\n", err);
        exit(1);
    }
    return a;
}

static cnn_run_config config(int threads)
{
    cnn_run_config c = {.train = cnn_train_config_default(), .epochs = EPOCHS, .shuffle = 1,
                        .shift = 2, .flip = 1, .rotate = 8.0f, .zoom = 0.1f, .schedule = CNN_SCHEDULE_COSINE, .lr_gamma = 1.0f,
                        .warmup = 5};
    c.train.batch = BATCH, c.train.threads = threads, c.train.lr = 0.002f;
    c.train.optimizer = CNN_OPTIMIZER_ADAMW, c.train.weight_decay = 0.01f, c.train.seed = 7;
    return c;
}

/* A fresh model and run, as `cnn train` makes them: the weights from the seed's
 * generator, the shuffles from what follows; the inputs normalised by a mean and
 * deviation (which the checkpoint must carry for the resumed run to match). */
static cnn_run *start(cnn_model *m, const cnn_run_config *c)
{
    cnn_rng rng;
    cnn_rng_seed(&rng, c->train.seed);
    const cnn_arch a = net();
    cnn_run *r = NULL;
    if (cnn_model_init(m, &a, &rng) != CNN_OK || cnn_run_create(&r, m, c, N, &rng) != CNN_OK) {
        printf("Bail out! cannot start a run\n");
        exit(1);
    }
    m->norm = (cnn_norm){CNN_NORM_MEAN_STD, 1, {0.13f}, {0.31f}};
    return r;
}

/* Steps until the run is over; @return how many, or -1 on a failed step. */
static int finish(cnn_run *r, const cnn_dataset *d)
{
    int steps = 0;
    while (cnn_run_position(r, NULL, NULL)) {
        if (cnn_run_step(r, d, NULL) != CNN_OK)
            return -1;
        steps++;
    }
    return steps;
}

/* Stop after `stop` steps, save, load, resume with `threads` threads, finish; the
 * weights must be those of the run never stopped. */
static void resumed_run(const cnn_dataset *d, const cnn_model *whole, int stop, int threads,
                        const char *path)
{
    cnn_model m;
    const cnn_run_config c = config(1);
    cnn_run *r = start(&m, &c);
    int ok = 1;
    for (int i = 0; i < stop; i++)
        ok &= cnn_run_step(r, d, NULL) == CNN_OK;
    cnn_checkpoint k;
    cnn_run_checkpoint(r, &k);
    char err[512] = "";
    ok &= cnn_checkpoint_save(&k, path, err, sizeof err) == CNN_OK;
    cnn_run_free(r);
    cnn_model_free(&m);
    tap_ok(ok, "stopped after %d steps and saved (%s)", stop, err);

    cnn_checkpoint loaded;
    if (cnn_checkpoint_load(&loaded, path, err, sizeof err) != CNN_OK) {
        tap_ok(0, "load the checkpoint: %s", err);
        return;
    }
    cnn_run_config again = cnn_checkpoint_config(&loaded);
    const cnn_run_config want = config(1);
    tap_ok(again.epochs == EPOCHS && again.shift == 2 && again.flip == 1 && again.rotate == 8.0f &&
               again.zoom == 0.1f && again.shuffle == 1 &&
               again.schedule == CNN_SCHEDULE_COSINE && again.warmup == 5 &&
               again.train.optimizer == CNN_OPTIMIZER_ADAMW && again.train.seed == 7 &&
               again.train.batch == BATCH && again.train.lr == want.train.lr &&
               again.train.weight_decay == want.train.weight_decay,
           "the checkpoint gives back the run's configuration");
    again.train.threads = threads;
    int epoch;
    size_t pos;
    cnn_run *rest = NULL;
    const cnn_status st = cnn_run_resume(&rest, &loaded.model, &again, &loaded);
    if (st != CNN_OK) {
        tap_ok(0, "resume: %s", cnn_status_str(st));
        cnn_checkpoint_free(&loaded);
        return;
    }
    cnn_run_position(rest, &epoch, &pos);
    const int left = finish(rest, d);
    tap_ok(left == EPOCHS * 10 - stop &&
               memcmp(loaded.model.params, whole->params, whole->n_params * sizeof(float)) == 0,
           "resumed at epoch %d, sample %zu, on %d thread%s: %d more steps, the weights of "
           "the run never stopped, bit for bit", epoch, pos, threads, threads == 1 ? "" : "s",
           left);
    cnn_run_free(rest);
    cnn_checkpoint_free(&loaded);
}

static void edges(const cnn_dataset *d)
{
    cnn_model m;
    cnn_run_config c = config(1);
    cnn_run *r = start(&m, &c);
    cnn_dataset other = *d;
    other.n = N - 1;
    tap_ok(cnn_run_step(r, &other, NULL) == CNN_ERR_ARG, "a data set of another size: refused");
    const int steps = finish(r, d);
    cnn_stats st = {0};
    tap_ok(steps == EPOCHS * 10 && cnn_run_step(r, d, &st) == CNN_ERR_ARG && st.count == 0,
           "%d steps, then the run is over: a further step is refused", steps);
    const uint32_t *idx;
    tap_ok(cnn_run_next(r, &idx, NULL) == 0, "and nothing is next");
    cnn_run_free(r);

    cnn_run *bad = NULL;
    cnn_rng rng;
    cnn_rng_seed(&rng, 1);
    const char *what[] = {"0 epochs", "a shift of 9", "the step schedule without its N",
                          "a batch larger than the data", "no data"};
    const size_t n[] = {N, N, N, 16, 0};
    cnn_run_config bad_config[5];
    for (int i = 0; i < 5; i++)
        bad_config[i] = config(1);
    bad_config[0].epochs = 0;
    bad_config[1].shift = 9;
    bad_config[2].schedule = CNN_SCHEDULE_STEP;
    for (int i = 0; i < 5; i++)
        tap_ok(cnn_run_create(&bad, &m, &bad_config[i], n[i], &rng) == CNN_ERR_ARG && !bad,
               "cnn_run_create refuses %s", what[i]);
    cnn_model_free(&m);
}

int main(void)
{
    cnn_dataset d;
    if (cnn_dataset_synthetic(&d, N, 3) != CNN_OK) {
        printf("Bail out! no synthetic data\n");
        return 1;
    }
    cnn_blas_setup();

    cnn_model whole;
    const cnn_run_config c = config(1);
    cnn_run *r = start(&whole, &c);
    tap_ok(finish(r, &d) == EPOCHS * 10, "a run of %d epochs of 10 steps", EPOCHS);
    cnn_run_free(r);

    const char *tmpdir = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char path[512];
    snprintf(path, sizeof path, "%s/cnn-run-XXXXXX", tmpdir);
    const int fd = mkstemp(path);
    if (fd < 0) {
        printf("Bail out! cannot make a temporary file under %s\n", tmpdir);
        return 1;
    }
    close(fd);
    resumed_run(&d, &whole, 3, 1, path);  /* inside the first epoch */
    resumed_run(&d, &whole, 10, 2, path); /* at its end: the next shuffles */
    resumed_run(&d, &whole, 17, 3, path); /* inside the second, on 3 threads */
    unlink(path);

    edges(&d);
    cnn_model_free(&whole);
    cnn_dataset_free(&d);
    return tap_done();
}
