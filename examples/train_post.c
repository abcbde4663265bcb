/* train_post.c - train the post's network on MNIST with the library alone, and save it.
 *
 * usage: train_post MNIST-DIR MODEL-OUT [EPOCHS [TRAIN-LIMIT]]
 * Build: cc train_post.c $(pkg-config --cflags --libs cnn) -o train_post */
#include <cnn.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc < 3 || argc > 5) {
        fprintf(stderr, "usage: %s MNIST-DIR MODEL-OUT [EPOCHS [TRAIN-LIMIT]]\n", argv[0]);
        return 2;
    }
    const int epochs = argc > 3 ? atoi(argv[3]) : 3;
    char err[512];
    cnn_dataset train, test;
    if (cnn_mnist_load(argv[1], "train", &train, err, sizeof err) != CNN_OK ||
        cnn_mnist_load(argv[1], "t10k", &test, err, sizeof err) != CNN_OK) {
        fprintf(stderr, "%s: %s\n", argv[0], err);
        return 1;
    }
    if (argc > 4 && (size_t)atol(argv[4]) < train.n)
        train.n = (size_t)atol(argv[4]);

    cnn_arch arch; /* the post's network for the data's images */
    cnn_arch_build(&arch, CNN_ARCH_POST, train.channels, train.rows, train.cols, NULL, 0);
    cnn_rng rng;
    cnn_rng_seed(&rng, 1);
    cnn_model model = {0};
    cnn_train_config cfg = cnn_train_config_default(); /* batch 1, lr 0.005: the post's SGD */
    cnn_trainer *trainer = NULL;
    uint32_t *order = malloc(train.n * sizeof *order);
    int rc = 1;
    if (!order || cnn_model_init(&model, &arch, &rng) != CNN_OK ||
        cnn_trainer_create(&trainer, &arch, &cfg) != CNN_OK) {
        fprintf(stderr, "%s: out of memory\n", argv[0]);
        goto out;
    }
    for (size_t i = 0; i < train.n; i++)
        order[i] = (uint32_t)i;
    for (int ep = 1; ep <= epochs; ep++) {
        cnn_rng_shuffle(&rng, order, train.n);
        cnn_stats st = {0};
        for (size_t i = 0; i < train.n; i++)
            if (cnn_train_step_u8(trainer, &model, train.pixels, train.labels, order + i, 1,
                                  &st) != CNN_OK) {
                fprintf(stderr, "%s: a training step failed\n", argv[0]);
                goto out;
            }
        printf("epoch %d: train loss %.4f, accuracy %.2f%%\n", ep, st.loss_sum / (double)st.count,
               100.0 * (double)st.correct / (double)st.count);
    }
    cnn_stats st = {0};
    cnn_evaluate_u8(trainer, &model, test.pixels, test.labels, test.n, NULL, &st);
    printf("test accuracy %.4f\n", (double)st.correct / (double)st.count);
    if (cnn_model_save(&model, argv[2], err, sizeof err) != CNN_OK) {
        fprintf(stderr, "%s: %s\n", argv[0], err);
        goto out;
    }
    printf("saved %s\n", argv[2]);
    rc = 0;
out:
    free(order);
    cnn_trainer_free(trainer);
    cnn_model_free(&model);
    cnn_dataset_free(&train);
    cnn_dataset_free(&test);
    return rc;
}
