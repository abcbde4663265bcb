/* train.c - cnn train: options, data, the starting point, a library run (cnn_run) and
 * its epochs as the post prints them, checkpoints, the test, and the MPI ranks. */
#include "cli.h"

/* ---------------------------------------------------------------- train */

/* Everything `cnn train` was asked to do. */
typedef struct {
    const char *data, *save, *resume, *ckpt_path, *arch, *normalize;
    long epochs, batch, threads, train_limit, test_limit, log_every, synthetic, shift, crop_pad;
    int flip;
    float rotate, zoom;
    long ckpt_every; /* steps; 0: at the end of every epoch */
    uint64_t seed;
    float lr, momentum, weight_decay, beta1, beta2, eps, lr_gamma, mpi_timeout;
    long lr_steps, warmup;
    int engine, ties, no_shuffle, nesterov, schedule, test_every, optimizer;
    int allreduce; /* under MPI: MPI_Allreduce, not every chunk gathered (bit-identical) */
} train_args;

/* @return 0 to go on, 1 after --help, 2 on a bad flag (already reported). */
static int train_options(train_args *o, int argc, char **argv)
{
    const char *ckpt_every_s = NULL;
    *o = (train_args){.data = "data/mnist", .epochs = 3, .batch = 1, .threads = all_cores(),
                      .log_every = 100, .seed = 1, .lr = 0.005f, .beta1 = 0.9f,
                      .beta2 = 0.999f, .eps = 1e-8f, .lr_gamma = 0.1f, .mpi_timeout = 30.0f};
    const opt opts[] = {
        {"--data", OPT_STR, &o->data, 0, 0, NULL, "DIR",
         "MNIST-style IDX files, CIFAR-10 batches, or train/ and test/ folders of class "
         "folders of PNG, JPEG, PGM or PPM images (default data/mnist)"},
        {"--normalize", OPT_STR, &o->normalize, 0, 0, NULL, "unit|dataset|MEAN/STD",
         "input px/255 - 0.5 (IDX data's default), (px/255 - mean)/std per channel from the "
         "training set (colour data's default), or given, e.g. 0.49,0.48,0.45/0.25,0.24,0.26"},
        {"--arch", OPT_STR, &o->arch, 0, 0, NULL, "LAYERS",
         "the network, e.g. conv32b,relu,pool,dense128,relu,softmax10 (default conv8,pool,softmax10)"},
        {"--epochs", OPT_INT, &o->epochs, 1, 100000, NULL, "N", "passes over the training set (default 3)"},
        {"--batch", OPT_INT, &o->batch, 1, 65536, NULL, "N",
         "minibatch size; 1 is the post's per-sample SGD (default 1)"},
        {"--lr", OPT_FLOAT, &o->lr, 0, 0, NULL, "X", "learning rate (default 0.005)"},
        {"--optimizer", OPT_CHOICE, &o->optimizer, 0, 0, optimizers, "sgd|adam|adamw",
         "SGD (default), Adam, or AdamW (decoupled weight decay), as PyTorch's"},
        {"--beta1", OPT_FRAC, &o->beta1, 0, 0, NULL, "X", "Adam's beta1, 0 <= X < 1 (default 0.9)"},
        {"--beta2", OPT_FRAC, &o->beta2, 0, 0, NULL, "X", "Adam's beta2, 0 <= X < 1 (default 0.999)"},
        {"--eps", OPT_FLOAT, &o->eps, 0, 0, NULL, "X", "Adam's epsilon, > 0 (default 1e-8)"},
        {"--momentum", OPT_FRAC, &o->momentum, 0, 0, NULL, "X", "SGD momentum, 0 <= X < 1 (default 0)"},
        {"--nesterov", OPT_FLAG, &o->nesterov, 0, 0, NULL, "", "Nesterov momentum (needs --momentum)"},
        {"--weight-decay", OPT_FRAC, &o->weight_decay, 0, 0, NULL, "X",
         "L2 weight decay added to the gradient (default 0)"},
        {"--schedule", OPT_CHOICE, &o->schedule, 0, 0, schedules, "constant|cosine|step",
         "learning rate constant (default), cosine from --lr to 0 over the run, or times "
         "--lr-gamma every --lr-steps steps"},
        {"--lr-steps", OPT_INT, &o->lr_steps, 1, 1L << 40, NULL, "N",
         "the step schedule: steps between decays"},
        {"--lr-gamma", OPT_FLOAT, &o->lr_gamma, 0, 0, NULL, "X",
         "the step schedule: each decay's factor, 0 < X <= 1 (default 0.1)"},
        {"--warmup", OPT_INT, &o->warmup, 1, 1L << 40, NULL, "N",
         "multiply the learning rate by min(1, (t + 1) / N) at step t (from 0)"},
        {"--threads", OPT_INT, &o->threads, 1, 1024, NULL, "N", "OpenMP threads (default: all cores)"},
        {"--seed", OPT_U64, &o->seed, 0, 0, NULL, "N", "seed of the weights and the shuffling (default 1)"},
        {"--train-limit", OPT_INT, &o->train_limit, 1, 1L << 40, NULL, "N",
         "train on the first N images (the post: 1000; default all)"},
        {"--test-limit", OPT_INT, &o->test_limit, 1, 1L << 40, NULL, "N",
         "test on the first N images (the post: 1000; default all)"},
        {"--engine", OPT_CHOICE, &o->engine, 0, 0, engines, "blas|reference",
         "im2col + BLAS (default) or the naive reference loops"},
        {"--pool-ties", OPT_CHOICE, &o->ties, 0, 0, tie_rules, "single|all",
         "gradient of tied pool maxima to the first (default) or to all (the post)"},
        {"--no-shuffle", OPT_FLAG, &o->no_shuffle, 0, 0, NULL, "",
         "keep the data order (the post shuffles every epoch)"},
        {"--log-every", OPT_INT, &o->log_every, 1, 1L << 40, NULL, "N",
         "print the post's progress line every N steps (default 100)"},
        {"--shift", OPT_INT, &o->shift, 0, 8, NULL, "N",
         "move each training image by a random -N..N pixels each way, every epoch (default 0)"},
        {"--crop-pad", OPT_INT, &o->crop_pad, 0, 8, NULL, "N",
         "random crops of each training image padded with N zeros, every epoch (the same "
         "draws as --shift N)"},
        {"--flip", OPT_FLAG, &o->flip, 0, 0, NULL, "",
         "mirror each training image left to right with probability 1/2, every epoch"},
        {"--rotate", OPT_FLOAT, &o->rotate, 0, 0, NULL, "DEG",
         "turn each training image by a random -DEG..DEG degrees (at most 180) about its "
         "centre, every epoch"},
        {"--zoom", OPT_FRAC, &o->zoom, 0, 0, NULL, "X",
         "scale each training image by a random 1-X..1+X (X at most 0.5) about its centre, "
         "every epoch"},
        {"--test-every-epoch", OPT_FLAG, &o->test_every, 0, 0, NULL, "",
         "also test after every epoch (not counted in the epoch's time)"},
        {"--save", OPT_STR, &o->save, 0, 0, NULL, "FILE", "write the trained model to FILE (atomically)"},
        {"--resume", OPT_STR, &o->resume, 0, 0, NULL, "FILE",
         "continue from a checkpoint exactly, or start from a model's weights"},
        {"--checkpoint", OPT_STR, &o->ckpt_path, 0, 0, NULL, "FILE",
         "keep a resumable checkpoint in FILE (atomically replaced)"},
        {"--checkpoint-every", OPT_STR, &ckpt_every_s, 0, 0, NULL, "N|epoch",
         "write it every N steps or every epoch (default: every epoch)"},
        {"--synthetic", OPT_INT, &o->synthetic, 10, 10000000, NULL, "N",
         "train on N synthetic digits (test on N/6) instead of MNIST"},
        {"--reduce", OPT_CHOICE, &o->allreduce, 0, 0, reductions, "exact|allreduce",
         "under mpirun: gather every chunk's gradient, the same bits for any number of ranks "
         "(default), or MPI_Allreduce"},
        {"--mpi-timeout", OPT_FLOAT, &o->mpi_timeout, 0, 0, NULL, "S",
         "under mpirun: end the job when an exchange between ranks takes over S seconds (a "
         "host that stopped answering, a partition; default 30)"},
        {NULL, 0, NULL, 0, 0, NULL, NULL, NULL},
    };
    const int rc = parse_opts("train", "[options]", opts, argc, argv);
    if (rc)
        return rc;
    if (ckpt_every_s && strcmp(ckpt_every_s, "epoch") != 0) {
        const opt e = {"--checkpoint-every", OPT_INT, &o->ckpt_every, 1, 1L << 40, NULL, "N|epoch",
                       NULL};
        if (set_opt(&e, ckpt_every_s))
            return 2;
    }
    if (ckpt_every_s && !o->ckpt_path) {
        fprintf(stderr, "%s: --checkpoint-every needs --checkpoint FILE\n", prog);
        return 2;
    }
    if (o->shift && o->crop_pad) {
        fprintf(stderr, "%s: --shift and --crop-pad are the same moves: give one of them\n",
                prog);
        return 2;
    }
    if (o->crop_pad)
        o->shift = o->crop_pad;
    if (o->rotate > 180.0f || o->zoom > 0.5f) {
        fprintf(stderr, "%s: %s: at most %s\n", prog, o->rotate > 180.0f ? "--rotate" : "--zoom",
                o->rotate > 180.0f ? "180 degrees" : "0.5");
        return 2;
    }
    if (o->normalize && o->resume) {
        fprintf(stderr, "%s: --normalize is for a new network: %s keeps its own\n", prog,
                o->resume);
        return 2;
    }
    if (o->nesterov && o->momentum == 0.0f) {
        fprintf(stderr, "%s: --nesterov needs --momentum X with X > 0\n", prog);
        return 2;
    }
    if (o->optimizer != CNN_OPTIMIZER_SGD && (o->momentum != 0.0f || o->nesterov)) {
        fprintf(stderr, "%s: --momentum and --nesterov are SGD's; Adam keeps its own "
                "(--beta1)\n", prog);
        return 2;
    }
    if (o->lr_gamma > 1.0f) {
        fprintf(stderr, "%s: --lr-gamma expects a number with 0 < X <= 1, got %g\n", prog,
                (double)o->lr_gamma);
        return 2;
    }
    if ((o->schedule == CNN_SCHEDULE_STEP) != (o->lr_steps > 0)) {
        fprintf(stderr, "%s: --schedule step goes with --lr-steps N (and --lr-gamma X)\n", prog);
        return 2;
    }
    return 0;
}

/* The training and test sets from --data, or synthetic digits (the test set then
 * borrows the last N/6 of the same allocation). */
static int load_training_data(const train_args *o, cnn_dataset *tr, cnn_dataset *te)
{
    if (!o->synthetic)
        return load_data(o->data, "train", NULL, o->train_limit, "--train-limit", tr) ||
               load_data(o->data, "test", tr, o->test_limit, "--test-limit", te);
    if (make_synthetic(o->synthetic + o->synthetic / 6, o->seed, tr))
        return 1;
    *te = *tr;
    te->n = (size_t)(o->synthetic / 6 > 0 ? o->synthetic / 6 : 1);
    tr->n = (size_t)o->synthetic;
    te->pixels = tr->pixels + tr->n * cnn_dataset_image_len(tr);
    te->labels = tr->labels + tr->n;
    if (o->train_limit > o->synthetic || o->test_limit > (long)te->n) {
        fprintf(stderr, "%s: --train-limit / --test-limit exceed the synthetic set\n", prog);
        return 1;
    }
    if (o->train_limit)
        tr->n = (size_t)o->train_limit;
    if (o->test_limit)
        te->n = (size_t)o->test_limit;
    return 0;
}

/* A run in progress: what it trains, on what; the library's run knows where it stands. */
typedef struct {
    cnn_dataset tr, te;
    cnn_arch arch;
    cnn_run_config cfg;
    cnn_model model;
    cnn_run *run;
    cnn_trainer *trainer; /* the run's */
    cnn_checkpoint ck;    /* the resumed checkpoint, until the run has taken its state */
    int from_ckpt;
    cnn_dist *dist; /* this rank of the ranks training together */
} train_run;

static void run_free(train_run *r, const train_args *o)
{
    cnn_run_free(r->run);
    cnn_checkpoint_free(&r->ck);
    cnn_model_free(&r->model);
    if (o->synthetic)
        r->te = (cnn_dataset){0};
    cnn_dataset_free(&r->tr);
    cnn_dataset_free(&r->te);
}

/* Resuming a checkpoint with other settings: the run will not be the one it came
 * from; say so. */
static void warn_other_settings(const cnn_checkpoint *c, const train_args *o)
{
    const cnn_train_config *k = &c->cfg;
    if (k->batch == o->batch && k->lr == o->lr && (int)k->ties == o->ties &&
        (int)k->engine == o->engine && c->shuffle == !o->no_shuffle &&
        k->momentum == o->momentum && k->nesterov == o->nesterov &&
        k->weight_decay == o->weight_decay && (int)c->schedule == o->schedule &&
        c->shift == o->shift && c->flip == o->flip && c->rotate == o->rotate &&
        c->zoom == o->zoom && (c->schedule == CNN_SCHEDULE_CONSTANT || c->epochs == o->epochs) &&
        (int)k->optimizer == o->optimizer &&
        (k->optimizer == CNN_OPTIMIZER_SGD ||
         (k->beta1 == o->beta1 && k->beta2 == o->beta2 && k->eps == o->eps)) &&
        c->lr_every == (uint64_t)o->lr_steps && c->warmup == (uint64_t)o->warmup &&
        (!c->lr_every || c->lr_gamma == o->lr_gamma))
        return;
    fprintf(stderr, "%s: warning: %s was made with other settings (batch %d, lr %g, pool ties "
            "%s, engine %s%s, %s, momentum %g%s, weight decay %g, schedule %s over %d epochs, "
            "shift %d%s, turns %g, zooms %g): the run will differ from one never "
            "interrupted\n", prog, o->resume,
            k->batch, (double)k->lr, tie_rules[k->ties], engines[k->engine],
            c->shuffle ? "" : ", no shuffle", optimizers[k->optimizer], (double)k->momentum,
            k->nesterov ? " (Nesterov)" : "", (double)k->weight_decay, schedules[c->schedule],
            c->epochs, c->shift, c->flip ? ", flips" : "", (double)c->rotate, (double)c->zoom);
}

/* The starting point: a checkpoint's state, a model's weights, or a fresh network. */
static int start_point(train_run *r, const train_args *o)
{
    char err[512];
    r->from_ckpt = o->resume && cnn_is_checkpoint(o->resume);
    if (r->from_ckpt) {
        cnn_checkpoint k;
        if (cnn_checkpoint_load(&k, o->resume, err, sizeof err) != CNN_OK) {
            fprintf(stderr, "%s: %s\n", prog, err);
            return 1;
        }
        r->ck = k; /* its model (parameters, state, names) now belongs to this run */
        r->model = k.model;
        r->ck.model.params = NULL, r->ck.model.state = NULL, r->ck.model.names = NULL;
    } else if (o->resume && load_model(o->resume, &r->model)) {
        return 1;
    }
    return 0;
}

/* A fresh network for the data: its weights from rng, its normalisation, and the data's
 * class names when it has as many classes. */
static cnn_status new_model(train_run *r, const cnn_norm norm, cnn_rng *rng)
{
    cnn_status st = cnn_model_init(&r->model, &r->arch, rng);
    if (st != CNN_OK)
        return st;
    r->model.norm = norm;
    if (r->tr.n_names != r->arch.classes)
        return CNN_OK;
    const char *names[256];
    for (int k = 0; k < r->tr.n_names; k++)
        names[k] = cnn_dataset_class_name(&r->tr, k);
    return cnn_model_set_names(&r->model, names, r->tr.n_names);
}

/* Everything a run needs before its first step, or 1 after saying why not. */
static int set_up(train_run *r, const train_args *o)
{
    if (start_point(r, o) || load_training_data(o, &r->tr, &r->te))
        return 1;
    if ((size_t)o->batch > r->tr.n) {
        fprintf(stderr, "%s: --batch %ld is larger than the %zu training images\n", prog,
                o->batch, r->tr.n);
        return 1;
    }
    if (network(&r->arch, o->arch, o->resume ? &r->model : NULL, o->resume, &r->tr) ||
        (o->resume && check_model_data(o->resume, &r->model, &r->tr, o->data)))
        return 1;
    int bn = 0;
    for (int l = 0; l < r->arch.n; l++)
        bn |= r->arch.layer[l].kind == CNN_LAYER_BN;
    if (o->batch < 2 && bn) {
        fprintf(stderr, "%s: --batch %ld with bn: batch normalization needs the statistics of "
                "at least 2 samples a step (give --batch 2 or more)\n", prog, o->batch);
        return 1;
    }
    const cnn_train_config train = {
        .engine = (cnn_engine)o->engine, .ties = (cnn_pool_ties)o->ties, .batch = (int)o->batch,
        .threads = (int)o->threads, .lr = o->lr, .momentum = o->momentum,
        .nesterov = o->nesterov, .weight_decay = o->weight_decay,
        .optimizer = (cnn_optimizer)o->optimizer, .beta1 = o->beta1, .beta2 = o->beta2,
        .eps = o->eps, .seed = o->seed};
    r->cfg = (cnn_run_config){.train = train, .epochs = (int)o->epochs,
                              .shuffle = !o->no_shuffle, .shift = (int)o->shift,
                              .flip = o->flip, .rotate = o->rotate, .zoom = o->zoom,
                              .schedule = (cnn_schedule)o->schedule,
                              .lr_every = (uint64_t)o->lr_steps, .lr_gamma = o->lr_gamma,
                              .warmup = (uint64_t)o->warmup};
    cnn_status st = CNN_OK;
    cnn_norm norm = {.kind = CNN_NORM_UNIT};
    if (!o->resume && choose_norm(o->normalize, &r->tr, &norm))
        return 1;
    if (r->from_ckpt) {
        const cnn_checkpoint *c = &r->ck;
        if (c->n != r->tr.n) {
            fprintf(stderr, "%s: %s: the checkpoint is of a %llu-image training set, this run "
                    "has %zu (use the same data, --train-limit and --synthetic)\n", prog,
                    o->resume, (unsigned long long)c->n, r->tr.n);
            return 1;
        }
        warn_other_settings(c, o);
        st = cnn_run_resume(&r->run, &r->model, &r->cfg, &r->ck);
        cnn_checkpoint_free(&r->ck); /* the run holds its order and state now */
    } else {
        cnn_rng rng; /* the weights' generator, then the shuffles' */
        cnn_rng_seed(&rng, o->seed);
        if (!o->resume)
            st = new_model(r, norm, &rng);
        if (st == CNN_OK)
            st = cnn_run_create(&r->run, &r->model, &r->cfg, r->tr.n, &rng);
    }
    if (st != CNN_OK) {
        fprintf(stderr, "%s: cannot set up training: %s\n", prog, cnn_status_str(st));
        return 1;
    }
    r->trainer = cnn_run_trainer(r->run);
    if (r->dist->size > 1)
        cnn_trainer_set_sync(r->trainer, dist_sync_sums, (void *)r->dist);
    return 0;
}

static void print_run(const train_run *r, const train_args *o)
{
    cnn_blas_setup();
    print_blas();
    printf("engine %s, batch %ld, lr %g, %ld thread%s, pool ties %s, seed %llu\n",
           engines[o->engine], o->batch, (double)o->lr, o->threads, o->threads == 1 ? "" : "s",
           tie_rules[o->ties], (unsigned long long)o->seed);
    print_network(&r->arch, &r->cfg);
    if (r->model.norm.kind != CNN_NORM_UNIT)
        print_norm(&r->model.norm);
    printf("data: %s: %zu training images, %zu test images\n",
           o->synthetic ? "synthetic digits" : o->data, r->tr.n, r->te.n);
    int epoch;
    size_t pos;
    cnn_run_position(r->run, &epoch, &pos);
    if (r->from_ckpt && pos == r->tr.n) /* the epoch was complete */
        epoch++, pos = 0;
    if (r->from_ckpt)
        printf("resuming %s: epoch %d, step %zu\n", o->resume, epoch, pos);
    else if (o->resume)
        printf("starting from the weights of %s\n", o->resume);
    printf("MNIST CNN initialized!\n");
}

static void add_stats(cnn_stats *to, const cnn_stats *s)
{
    to->loss_sum += s->loss_sum, to->correct += s->correct, to->count += s->count;
}

/* One step of the run's next n samples idx[0..n): alone, or this rank's share of the
 * chunks, then every rank's shares (with *signal, this rank's stop signal, which
 * becomes the largest of all ranks'), then the same update on every rank. */
static cnn_status train_one_step(train_run *r, const train_args *o, const uint32_t *idx,
                                 const cnn_move *moves, int n, cnn_stats *s, int *signal)
{
    if (r->dist->size == 1)
        return cnn_train_step_u8_moved(r->trainer, &r->model, r->tr.pixels, r->tr.labels, idx,
                                       n, moves, s);
    int c0, c1;
    dist_share(r->dist, cnn_chunk_count(n), &c0, &c1);
    const cnn_status st = cnn_train_step_chunks(r->trainer, &r->model, r->tr.pixels,
                                                r->tr.labels, idx, n, moves, c0, c1);
    if (st != CNN_OK)
        dist_abort(r->dist, 1); /* the same on every rank: cannot happen on one alone */
    if (o->allreduce)
        dist_allreduce(r->dist, r->trainer, n, r->model.n_params, signal);
    else
        dist_exchange(r->dist, r->trainer, n, r->model.n_params, signal);
    return cnn_train_step_finish(r->trainer, &r->model, r->tr.labels, idx, n, s);
}

/* The checkpoint, written by the first rank; a failure there ends every rank. */
static int save_checkpoint(const train_run *r, const train_args *o)
{
    if (r->dist->rank != 0)
        return 0;
    cnn_checkpoint ck;
    cnn_run_checkpoint(r->run, &ck);
    if (!write_checkpoint(&ck, o->ckpt_path))
        return 0;
    if (r->dist->size > 1)
        dist_abort(r->dist, 1);
    return 1;
}

/* The test set's statistics: each rank tests a slice whose ends fall on the chunks of
 * 16 that one process would use (so every image's loss is the same bits), and the
 * slices' sums are added in rank order. */
static cnn_status test_split(train_run *r, cnn_stats *st)
{
    const cnn_dist *d = r->dist;
    const size_t n = r->te.n, len = cnn_dataset_image_len(&r->te);
    size_t lo = n * (size_t)d->rank / (size_t)d->size / CNN_CHUNK_MAX * CNN_CHUNK_MAX;
    size_t hi = n * (size_t)(d->rank + 1) / (size_t)d->size / CNN_CHUNK_MAX * CNN_CHUNK_MAX;
    if (d->rank == d->size - 1)
        hi = n;
    cnn_stats mine = {0};
    const cnn_status s = hi > lo ? cnn_evaluate_u8(r->trainer, &r->model, r->te.pixels + lo * len,
                                                   r->te.labels + lo, hi - lo, NULL, &mine)
                                 : CNN_OK;
    int bad;
    if (!dist_all_ok(d, s == CNN_OK, &bad))
        return CNN_ERR_NOMEM;
    st->loss_sum += dist_sum(d, mine.loss_sum);
    st->correct += (size_t)dist_sum(d, (double)mine.correct);
    st->count += n;
    return CNN_OK;
}

/* One epoch's steps from `start` (samples already trained). @return 0, or the exit
 * status after a failure or a stop signal (already reported, files saved). */
static int run_epoch(train_run *r, const train_args *o, long ep, size_t start, long *steps,
                     cnn_stats *epoch, double *io)
{
    const size_t n_all = r->tr.n;
    size_t step = start; /* samples so far in this epoch: the post counts per epoch */
    cnn_stats win = {0};
    while (step < n_all) {
        const uint32_t *idx;
        const cnn_move *moves;
        const int n = cnn_run_next(r->run, &idx, &moves); /* shuffle, rate, moves */
        cnn_stats s = {0};
        int sig = stop_signal; /* every rank's, after the step's exchange */
        const cnn_status st = train_one_step(r, o, idx, moves, n, &s, &sig);
        if (st == CNN_ERR_NUMERIC) {
            fprintf(stderr, "%s: the loss became NaN or infinite at step %zu of epoch %ld; "
                    "nothing saved; try a smaller --lr than %g\n", prog, step + (size_t)n, ep,
                    (double)o->lr);
            return 1;
        }
        if (st != CNN_OK) {
            fprintf(stderr, "%s: training step failed: %s\n", prog, cnn_status_str(st));
            return 1;
        }
        cnn_run_advance(r->run);
        add_stats(epoch, &s), add_stats(&win, &s);
        const size_t before = step;
        step += (size_t)n;
        (*steps)++;
        if (step / (size_t)o->log_every != before / (size_t)o->log_every) {
            printf("[Step %zu] Past %zu steps: Average Loss %.3f | Accuracy: %.0f%%\n", step,
                   win.count, win.loss_sum / (double)win.count,
                   100.0 * (double)win.correct / (double)win.count);
            fflush(stdout);
            win = (cnn_stats){0};
        }
        if (sig) { /* every rank stops after the same step; the first saves */
            if (!stop_signal)
                stop_signal = sig;
            if (r->dist->rank == 0) {
                cnn_checkpoint ck;
                cnn_run_checkpoint(r->run, &ck);
                stop_and_save(&ck, &r->model, o->save, o->ckpt_path, ep, step, n_all);
            }
            return 128 + sig;
        }
        if (o->ckpt_path && o->ckpt_every && *steps % o->ckpt_every == 0 && step < n_all) {
            const double c0 = now();
            if (save_checkpoint(r, o))
                return 1;
            *io += now() - c0;
        }
    }
    return 0;
}

/* The test set's loss and accuracy after an epoch, with the training time so far. */
static void test_after(train_run *r, long ep, double train_s)
{
    cnn_stats t = {0};
    const double e0 = now();
    if (test_split(r, &t) == CNN_OK)
        printf("Epoch %ld: test loss %.4f, accuracy %.2f%% after %.1f s of training "
               "(evaluation %.2f s)\n", ep, t.loss_sum / (double)t.count,
               100.0 * (double)t.correct / (double)t.count, train_s, now() - e0);
}

/* The data flow of a run: epochs of steps, a checkpoint at each epoch's end, the
 * post's lines; then the test and the model file. */
static int train_and_test(train_run *r, const train_args *o)
{
    long steps = 0;       /* minibatch steps of this run, for --checkpoint-every */
    double train_s = 0.0; /* training time of this run so far */
    int ep;
    size_t start;
    while (cnn_run_position(r->run, &ep, &start)) {
        if (start == r->tr.n) /* the last one ended: the next starts */
            ep++, start = 0;
        printf("--- Epoch %d ---\n", ep);
        cnn_stats epoch = {0};
        double io = 0.0; /* checkpoint writing, left out of the speed */
        const double t0 = now();
        const int rc = run_epoch(r, o, ep, start, &steps, &epoch, &io);
        if (rc)
            return rc;
        if (o->ckpt_path && save_checkpoint(r, o)) /* every epoch's end */
            return 1;
        const double dt = now() - t0 - io;
        train_s += dt;
        printf("Epoch %d: %.3f s, %.0f images/s; train loss %.4f, accuracy %.2f%%\n", ep, dt,
               (double)epoch.count / dt, epoch.loss_sum / (double)epoch.count,
               100.0 * (double)epoch.correct / (double)epoch.count);
        if (o->test_every && ep < o->epochs)
            test_after(r, ep, train_s);
        fflush(stdout);
    }
    int bad;
    if (r->dist->size > 1 && !dist_same(r->dist, (uint32_t)crc32(0L, (const Bytef *)r->model.params,
                                                               (uInt)(r->model.n_params * 4)),
                                         &bad)) {
        fprintf(stderr, "%s: rank %d's weights differ from rank 0's\n", prog, bad);
        return 1;
    }
    cnn_stats test = {0};
    const cnn_status st = test_split(r, &test);
    if (st != CNN_OK) {
        fprintf(stderr, "%s: evaluation failed: %s\n", prog, cnn_status_str(st));
        return 1;
    }
    printf("--- Testing the CNN ---\n");
    print_test(&test);
    if (o->save && r->dist->rank == 0) {
        if (save_model(&r->model, o->save))
            return 1;
        printf("model saved to %s\n", o->save);
    }
    return stop_signal ? 128 + stop_signal : 0; /* a signal during the test: still non-zero */
}

/* The data every rank trains on must be the same: a CRC-32 of it, compared. */
static uint32_t data_checksum(const train_run *r)
{
    const size_t len = cnn_dataset_image_len(&r->tr);
    uLong c = crc32(0L, Z_NULL, 0);
    const cnn_dataset *sets[2] = {&r->tr, &r->te};
    for (int k = 0; k < 2; k++)
        for (size_t at = 0, total = sets[k]->n * len; at < total;) {
            const uInt part = (uInt)(total - at < (1u << 30) ? total - at : (1u << 30));
            c = crc32(c, sets[k]->pixels + at, part);
            at += part;
        }
    for (int k = 0; k < 2; k++)
        c = crc32(c, sets[k]->labels, (uInt)sets[k]->n);
    return (uint32_t)c;
}

/* Several ranks: only the first prints and writes files; every message names its
 * rank. Every rank must be able to start before any of them does. */
static int ranks_agree(train_run *r, const train_args *o, int ok)
{
    const cnn_dist *d = r->dist;
    int bad;
    if (!dist_all_ok(d, ok, &bad)) {
        if (d->rank == 0 && bad != 0)
            fprintf(stderr, "%s: stopped: rank %d could not start (its message says why)\n",
                    prog, bad);
        return 0;
    }
    if (d->size > 1 && !dist_same(d, data_checksum(r), &bad)) {
        if (d->rank == bad)
            fprintf(stderr, "%s: the data in %s differs from rank 0's (a CRC-32 of its images "
                    "and labels)\n", prog, o->synthetic ? "the synthetic set" : o->data);
        return 0;
    }
    return 1;
}

int cmd_train(int argc, char **argv)
{
    static char name[64];
    cnn_dist dist;
    dist_init(&dist, NULL, NULL);
    if (dist.size > 1) {
        snprintf(name, sizeof name, "cnn (rank %d of %d)", dist.rank, dist.size);
        prog = name;
        if (dist.rank != 0 && !freopen("/dev/null", "w", stdout))
            dist_abort(&dist, 1);
    }
    train_args o;
    const int opts = train_options(&o, argc, argv); /* 1: --help, 2: a bad flag */
    int rc = opts == 2 ? 2 : 0, ok = opts == 0;
    train_run r;
    memset(&r, 0, sizeof r);
    r.dist = &dist;
    if (ok && dist.size > 1 && o.batch < dist.size) { /* the same on every rank: one says it */
        if (dist.rank == 0)
                fprintf(stderr, "%s: --batch %ld cannot be split over %d ranks: give a batch of "
                    "at least %d (batch 1, the post's per-sample SGD, runs in one process)\n",
                    prog, o.batch, dist.size, dist.size);
        ok = 0, rc = 2;
    }
    if (ok && dist.rank == 0 && ((o.save && check_save_path("--save", o.save)) ||
                                 (o.ckpt_path && check_save_path("--checkpoint", o.ckpt_path))))
        ok = 0, rc = 1;
    if (ok && set_up(&r, &o))
        ok = 0, rc = 1;
    if (ok && dist_prepare(&dist, r.model.n_params, (int)o.batch)) {
        fprintf(stderr, "%s: out of memory\n", prog);
        ok = 0, rc = 1;
    }
    if (ranks_agree(&r, &o, ok)) {
        if (dist_watch(&dist, o.mpi_timeout)) /* set up: no step takes this long */
            dist_abort(&dist, 1);
        print_run(&r, &o);
        catch_signals();
        rc = train_and_test(&r, &o);
    } else if (ok) {
        rc = 1; /* this rank could start, another could not */
    }
    run_free(&r, &o);
    dist_finalize(&dist);
    return rc;
}
