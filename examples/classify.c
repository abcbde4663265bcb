/* classify.c - load a model file (any network) and classify an image: PNG, JPEG, PGM
 * or PPM, of the model's input size, converted by the model's own normalisation.
 *
 * usage: classify MODEL IMAGE
 * Build: cc classify.c $(pkg-config --cflags --libs cnn) -o classify */
#include <cnn.h>

#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: %s MODEL IMAGE\n", argv[0]);
        return 2;
    }
    char err[512];
    cnn_model model;
    if (cnn_model_load(&model, argv[1], err, sizeof err) != CNN_OK) {
        fprintf(stderr, "%s: %s\n", argv[0], err);
        return 1;
    }
    uint8_t *pixels = NULL;
    int channels, rows, cols, rc = 1;
    cnn_acts acts = {0};
    float *x = NULL;
    const cnn_arch *a = &model.arch;
    if (cnn_image_read(argv[2], &pixels, &channels, &rows, &cols, err, sizeof err) != CNN_OK) {
        fprintf(stderr, "%s: %s\n", argv[0], err);
        goto out;
    }
    if (channels != a->C || rows != a->H || cols != a->W) {
        fprintf(stderr, "%s: %s is %dx%dx%d, the model takes %dx%dx%d\n", argv[0], argv[2],
                channels, rows, cols, a->C, a->H, a->W);
        goto out;
    }
    const size_t plane = (size_t)rows * cols;
    x = malloc((size_t)channels * plane * sizeof *x);
    if (!x || cnn_acts_alloc(&acts, a, 1) != CNN_OK) {
        fprintf(stderr, "%s: out of memory\n", argv[0]);
        goto out;
    }
    cnn_norm_apply(&model.norm, x, pixels, channels, plane);
    cnn_forward(&model, &acts, x, -1, CNN_ENGINE_BLAS);
    const int best = cnn_argmax(acts.probs, a->classes);
    const char *name = cnn_model_class_name(&model, best);
    printf("class %d%s%s (p = %.4f)\n", best, name ? " " : "", name ? name : "",
           (double)acts.probs[best]);
    rc = 0;
out:
    free(x);
    free(pixels);
    cnn_acts_free(&acts);
    cnn_model_free(&model);
    return rc;
}
