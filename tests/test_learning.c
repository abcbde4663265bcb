/* test_learning.c - the network learns: on a synthetic, separable 10-class set the
 * test loss falls from about ln 10 and the test accuracy rises from chance, for
 * both engines, per-sample SGD and minibatches across threads. */
#include "cnn.h"
#include "post.h"

#include "check.h"

#include <string.h>

#define NTRAIN 3000
#define NTEST 1000

static void learn(cnn_engine e, int batch, int threads, float lr, const float *x,
                  const uint8_t *labels)
{
    const char *en = e == CNN_ENGINE_BLAS ? "blas" : "reference";
    const cnn_arch s = post_arch_mnist();
    cnn_rng rng;
    cnn_rng_seed(&rng, 11);
    cnn_model m;
    cnn_model_init(&m, &s, &rng);
    cnn_train_config c = cnn_train_config_default();
    c.engine = e;
    c.batch = batch;
    c.threads = threads;
    c.lr = lr;
    cnn_trainer *t;
    cnn_trainer_create(&t, &s, &c);
    const float *xt = x + (size_t)NTRAIN * 784;
    const uint8_t *lt = labels + NTRAIN;

    cnn_stats before = {0}, after = {0}, train = {0};
    cnn_evaluate(t, &m, xt, lt, NTEST, NULL, &before);
    const double l0 = before.loss_sum / NTEST, a0 = (double)before.correct / NTEST;
    tap_ok(fabs(l0 - log(10.0)) < 0.1 && a0 < 0.25,
           "%s batch %d: untrained test loss %.3f is about ln 10, accuracy %.1f%% near chance",
           en, batch, l0, 100 * a0);

    uint32_t order[NTRAIN];
    for (uint32_t i = 0; i < NTRAIN; i++)
        order[i] = i;
    cnn_rng_shuffle(&rng, order, NTRAIN);
    int ok = 1;
    for (int i = 0; i < NTRAIN; i += batch)
        ok &= cnn_train_step(t, &m, x, labels, order + i,
                             NTRAIN - i < batch ? NTRAIN - i : batch, &train) == CNN_OK;
    cnn_evaluate(t, &m, xt, lt, NTEST, NULL, &after);
    const double l1 = after.loss_sum / NTEST, a1 = (double)after.correct / NTEST;
    tap_ok(ok && l1 < 0.3 && l1 < l0 / 5,
           "%s batch %d, %d thread(s): one epoch brings the test loss from %.3f to %.3f", en,
           batch, threads, l0, l1);
    tap_ok(a1 > 0.95, "%s batch %d, %d thread(s): test accuracy rises from %.1f%% to %.1f%%", en,
           batch, threads, 100 * a0, 100 * a1);
    cnn_trainer_free(t);
    cnn_model_free(&m);
}

int main(void)
{
    cnn_blas_setup();
    cnn_rng rng;
    cnn_rng_seed(&rng, 5);
    static uint8_t pix[(NTRAIN + NTEST) * 784], labels[NTRAIN + NTEST];
    cnn_synth_digits(pix, labels, NTRAIN + NTEST, &rng);
    float *x = malloc(sizeof pix * sizeof(float));
    cnn_pixels_to_float(x, pix, sizeof pix);
    learn(CNN_ENGINE_BLAS, 1, 1, 0.005f, x, labels);
    learn(CNN_ENGINE_REFERENCE, 1, 1, 0.005f, x, labels);
    learn(CNN_ENGINE_BLAS, 16, 2, 0.05f, x, labels);
    free(x);
    return tap_done();
}
