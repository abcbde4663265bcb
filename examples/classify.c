/* classify.c - load a model file (any network) and classify a PGM image.
 *
 * usage: classify MODEL IMAGE.pgm
 * Build: cc classify.c $(pkg-config --cflags --libs cnn) -o classify */
#include <cnn.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL IMAGE.pgm\n", argv[0]);
        return 2;
    }
    char err[512];
    cnn_model model;
    if (cnn_model_load(&model, argv[1], err, sizeof err) != CNN_OK) {
        fprintf(stderr, "%s: %s\n", argv[0], err);
        return 1;
    }
    uint8_t *pixels = NULL;
    int rows, cols, rc = 1;
    cnn_acts acts = {0};
    float *x = NULL;
    if (cnn_pgm_read(argv[2], &pixels, &rows, &cols, err, sizeof err) != CNN_OK) {
        fprintf(stderr, "%s: %s\n", argv[0], err);
        goto out;
    }
    if (rows != model.arch.H || cols != model.arch.W || model.arch.C != 1) {
        fprintf(stderr, "%s: %s is %dx%d, the model takes %dx%dx%d\n", argv[0], argv[2], rows,
                cols, model.arch.C, model.arch.H, model.arch.W);
        goto out;
    }
    x = malloc((size_t)rows * cols * sizeof *x);
    if (!x || cnn_acts_alloc(&acts, &model.arch, 1) != CNN_OK) {
        fprintf(stderr, "%s: out of memory\n", argv[0]);
        goto out;
    }
    cnn_pixels_to_float(x, pixels, (size_t)rows * cols);
    cnn_forward(&model, &acts, x, -1, CNN_ENGINE_BLAS);
    const int best = cnn_argmax(acts.probs, model.arch.classes);
    printf("class %d (p = %.4f)\n", best, (double)acts.probs[best]);
    rc = 0;
out:
    free(x);
    free(pixels);
    cnn_acts_free(&acts);
    cnn_model_free(&model);
    return rc;
}
