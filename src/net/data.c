/* data.c - input scaling, a synthetic, separable digit-like data set, and the shift
 * draws of data augmentation. */
#include "cnn.h"

#include "mix.h"
#include "simd.h"

/* px / 255 - 0.5 in double, rounded to float: (px - 127.5) / 255 in float (an exact
 * subtraction, one correctly rounded division) gives the same float for every one of
 * the 256 values (test_model_io checks all of them), and vectorizes. */
CNN_VECTOR
void cnn_pixels_to_float(float *restrict dst, const uint8_t *restrict src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = ((float)src[i] - 127.5f) / 255.0f;
}

/* Class k: a 5x5 bright square centred on a 2 x 5 grid (rows 8, 20; columns
 * 4, 9, 14, 19, 24), moved by up to 1 pixel each way, over uniform noise in 0..63.
 * The jittered centres of two classes never coincide, so the set is separable. */
void cnn_synth_digits(uint8_t *images, uint8_t *labels, size_t n, cnn_rng *rng)
{
    for (size_t s = 0; s < n; s++) {
        uint8_t *img = images + s * CNN_SYNTH_SIDE * CNN_SYNTH_SIDE;
        const int k = (int)cnn_rng_below(rng, CNN_SYNTH_CLASSES);
        const int ci = (k < 5 ? 8 : 20) + (int)cnn_rng_below(rng, 3) - 1;
        const int cj = 4 + 5 * (k % 5) + (int)cnn_rng_below(rng, 3) - 1;
        for (int i = 0; i < CNN_SYNTH_SIDE; i++)
            for (int j = 0; j < CNN_SYNTH_SIDE; j++) {
                int v = (int)cnn_rng_below(rng, 64);
                if (i >= ci - 2 && i <= ci + 2 && j >= cj - 2 && j <= cj + 2)
                    v = 192 + (int)cnn_rng_below(rng, 64);
                img[i * CNN_SYNTH_SIDE + j] = (uint8_t)v;
            }
        labels[s] = (uint8_t)k;
    }
}

void cnn_draw_shifts(int8_t *out, uint64_t seed, uint64_t epoch, const uint32_t *idx, int n,
                     int max)
{
    for (int i = 0; i < n; i++) {
        const uint64_t z =
            cnn_mix64_finish(seed ^ (epoch << 32) ^ ((uint64_t)idx[i] * 0x9e3779b97f4a7c15ULL));
        const uint64_t span = 2 * (uint64_t)max + 1;
        out[2 * i] = (int8_t)((int)(z % span) - max);
        out[2 * i + 1] = (int8_t)((int)((z >> 32) % span) - max);
    }
}
