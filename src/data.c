/* data.c - input scaling and a synthetic, separable digit-like data set. */
#include "cnn.h"

/* px / 255 - 0.5 in double, rounded to float, for every pixel value: the compiler
 * folds each entry with the same IEEE arithmetic as the expression at run time
 * (test_model_io checks all 256 against it). A look-up is what makes converting a
 * chunk's images inside a training step cheap. */
#define PX1(i) (float)((i) / 255.0 - 0.5)
#define PX4(i) PX1(i), PX1((i) + 1), PX1((i) + 2), PX1((i) + 3)
#define PX16(i) PX4(i), PX4((i) + 4), PX4((i) + 8), PX4((i) + 12)
#define PX64(i) PX16(i), PX16((i) + 16), PX16((i) + 32), PX16((i) + 48)
static const float px_to_input[256] = {PX64(0), PX64(64), PX64(128), PX64(192)};

void cnn_pixels_to_float(float *dst, const uint8_t *src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = px_to_input[src[i]];
}

/* Class k: a 5x5 bright square centred on a 2 x 5 grid (rows 8, 20; columns
 * 4, 9, 14, 19, 24), moved by up to 1 pixel each way, over uniform noise in 0..63.
 * The jittered centres of two classes never coincide, so the set is separable. */
void cnn_synth_digits(uint8_t *images, uint8_t *labels, size_t n, cnn_rng *rng)
{
    for (size_t s = 0; s < n; s++) {
        uint8_t *img = images + s * 784;
        const int k = (int)cnn_rng_below(rng, 10);
        const int ci = (k < 5 ? 8 : 20) + (int)cnn_rng_below(rng, 3) - 1;
        const int cj = 4 + 5 * (k % 5) + (int)cnn_rng_below(rng, 3) - 1;
        for (int i = 0; i < 28; i++)
            for (int j = 0; j < 28; j++) {
                int v = (int)cnn_rng_below(rng, 64);
                if (i >= ci - 2 && i <= ci + 2 && j >= cj - 2 && j <= cj + 2)
                    v = 192 + (int)cnn_rng_below(rng, 64);
                img[i * 28 + j] = (uint8_t)v;
            }
        labels[s] = (uint8_t)k;
    }
}
