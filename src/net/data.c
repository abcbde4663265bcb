/* data.c - input normalisation, a synthetic, separable digit-like data set, and the
 * moves of data augmentation. */
#include "cnn.h"

#include "mix.h"
#include "simd.h"
#include "steps.h"

#include <math.h>

/* px / 255 - 0.5 in double, rounded to float: (px - 127.5) / 255 in float (an exact
 * subtraction, one correctly rounded division) gives the same float for every one of
 * the 256 values (test_model_io checks all of them), and vectorizes. */
CNN_VECTOR
void cnn_pixels_to_float(float *restrict dst, const uint8_t *restrict src, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = ((float)src[i] - 127.5f) / 255.0f;
}

/* torchvision's ToTensor then Normalize, in float: px / 255, minus the mean, over the
 * deviation (each a correctly rounded float operation, so the same bits as PyTorch). */
CNN_VECTOR
static void mean_std_channel(float *restrict dst, const uint8_t *restrict px, size_t n,
                             float mean, float std)
{
    for (size_t i = 0; i < n; i++)
        dst[i] = ((float)px[i] / 255.0f - mean) / std;
}

void cnn_norm_channel(const cnn_norm *norm, int c, float *dst, const uint8_t *px, size_t n)
{
    if (norm->kind == CNN_NORM_MEAN_STD)
        mean_std_channel(dst, px, n, norm->mean[c], norm->std[c]);
    else
        cnn_pixels_to_float(dst, px, n);
}

void cnn_norm_apply(const cnn_norm *n, float *dst, const uint8_t *px, int C, size_t plane)
{
    if (n->kind != CNN_NORM_MEAN_STD) { /* one pass over every channel */
        cnn_pixels_to_float(dst, px, (size_t)C * plane);
        return;
    }
    for (int c = 0; c < C; c++)
        cnn_norm_channel(n, c, dst + (size_t)c * plane, px + (size_t)c * plane, plane);
}

float cnn_norm_value(const cnn_norm *n, int c, uint8_t v)
{
    float x;
    cnn_norm_channel(n, c, &x, &v, 1);
    return x;
}

int cnn_norm_valid(const cnn_norm *n, int C)
{
    if (!n || (n->kind != CNN_NORM_UNIT && n->kind != CNN_NORM_MEAN_STD))
        return 0;
    if (n->kind == CNN_NORM_UNIT)
        return 1;
    if (n->channels != C || C < 1 || C > CNN_NORM_CHANNELS)
        return 0;
    for (int c = 0; c < C; c++)
        if (!isfinite(n->mean[c]) || !isfinite(n->std[c]) || !(n->std[c] > 0.0f))
            return 0;
    return 1;
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

/* The shifts are those the project always drew (the same bits of the same hash), so a
 * run with shifts and no flips is unchanged; the flip comes from a second hash. */
void cnn_draw_moves(cnn_move *out, uint64_t seed, uint64_t epoch, const uint32_t *idx, int n,
                    int shift, int flip)
{
    for (int i = 0; i < n; i++) {
        const uint64_t key = seed ^ (epoch << 32) ^ ((uint64_t)idx[i] * 0x9e3779b97f4a7c15ULL);
        const uint64_t z = cnn_mix64_finish(key), span = 2 * (uint64_t)shift + 1;
        out[i].dy = (int8_t)((int)(z % span) - shift);
        out[i].dx = (int8_t)((int)((z >> 32) % span) - shift);
        out[i].flip = flip ? (uint8_t)(cnn_mix64_finish(key ^ 0x666c6970666c6970ULL) >> 63) : 0;
    }
}
