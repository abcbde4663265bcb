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

/* A uniform value in [-1, 1) from 53 bits of z. */
static float uniform_pm1(uint64_t z) { return (float)((double)(z >> 11) * 0x1p-52 - 1.0); }

/* The shifts are those the project always drew (the same bits of the same hash), so a
 * run with shifts and no other move is unchanged; the flip, the turn and the zoom each
 * come from a hash of their own. */
void cnn_draw_moves(cnn_move *out, uint64_t seed, uint64_t epoch, const uint32_t *idx, int n,
                    int shift, int flip, float rotate, float zoom)
{
    for (int i = 0; i < n; i++) {
        const uint64_t key = seed ^ (epoch << 32) ^ ((uint64_t)idx[i] * 0x9e3779b97f4a7c15ULL);
        const uint64_t z = cnn_mix64_finish(key), span = 2 * (uint64_t)shift + 1;
        out[i].dy = (int8_t)((int)(z % span) - shift);
        out[i].dx = (int8_t)((int)((z >> 32) % span) - shift);
        out[i].flip = flip ? (uint8_t)(cnn_mix64_finish(key ^ 0x666c6970666c6970ULL) >> 63) : 0;
        out[i].angle = rotate > 0.0f
                           ? rotate * uniform_pm1(cnn_mix64_finish(key ^ 0x726f74617465ULL))
                           : 0.0f;
        out[i].zoom =
            zoom > 0.0f ? zoom * uniform_pm1(cnn_mix64_finish(key ^ 0x7a6f6f6dULL)) : 0.0f;
    }
}

/* What the value v (0..255, not necessarily whole) of channel c becomes: the formulas
 * of cnn_norm_channel, so a whole v gives the same float. */
static float norm_level(const cnn_norm *norm, int c, float v)
{
    if (norm->kind == CNN_NORM_MEAN_STD)
        return (v / 255.0f - norm->mean[c]) / norm->std[c];
    return (v - 127.5f) / 255.0f;
}

/* dst = the plane px [H][W] turned and zoomed by mv about its centre, then shifted:
 * each output pixel takes the bilinear mix of the four source pixels around where the
 * inverse move puts it, those outside the image being 0. */
static void warp_plane(float *dst, const uint8_t *px, const cnn_norm *norm, int c, int H,
                       int W, cnn_move mv)
{
    const float rad = mv.angle * (float)(3.14159265358979323846 / 180.0);
    const float s = 1.0f + mv.zoom, cs = cosf(rad) / s, sn = sinf(rad) / s;
    const float cy = 0.5f * (float)(H - 1), cx = 0.5f * (float)(W - 1);
    for (int y = 0; y < H; y++) {
        const float v = (float)y - cy - (float)mv.dy;
        for (int x = 0; x < W; x++) {
            const float u = (float)x - cx - (float)mv.dx;
            /* the inverse of a turn by angle counter-clockwise (rows grow downwards) */
            const float sx = cs * u - sn * v + cx, sy = sn * u + cs * v + cy;
            const float fx = floorf(sx), fy = floorf(sy), ax = sx - fx, ay = sy - fy;
            const int x0 = (int)fx, y0 = (int)fy;
            float acc = 0.0f;
            for (int dy = 0; dy < 2; dy++)
                for (int dx = 0; dx < 2; dx++) {
                    const int yy = y0 + dy, xx = x0 + dx;
                    if (yy < 0 || yy >= H || xx < 0 || xx >= W)
                        continue;
                    acc += (dy ? ay : 1.0f - ay) * (dx ? ax : 1.0f - ax) * (float)px[yy * W + xx];
                }
            dst[y * W + x] = norm_level(norm, c, acc);
        }
    }
}

/* dst = the plane px [H][W] shifted by mv.dy, mv.dx (vacated pixels 0), exactly. */
static void shift_plane(float *dst, const uint8_t *px, const cnn_norm *norm, int c, int H,
                        int W, cnn_move mv)
{
    const int dy = mv.dy, dx = mv.dx;
    const float zero = cnn_norm_value(norm, c, 0);
    for (int y = 0; y < H; y++) {
        float *row = dst + (size_t)y * W;
        const int sy = y - dy;
        if (sy < 0 || sy >= H) {
            for (int x = 0; x < W; x++)
                row[x] = zero;
            continue;
        }
        const int x0 = dx > 0 ? dx : 0, x1 = dx < 0 ? W + dx : W; /* [x0, x1) from px */
        for (int x = 0; x < x0 && x < W; x++)
            row[x] = zero;
        if (x1 > x0)
            cnn_norm_channel(norm, c, row + x0, px + (size_t)sy * W + x0 - dx,
                             (size_t)(x1 - x0));
        for (int x = x1 > 0 ? x1 : 0; x < W; x++)
            row[x] = zero;
    }
}

void cnn_move_input(float *dst, const uint8_t *px, const cnn_norm *norm, int C, int H, int W,
                    cnn_move mv)
{
    const size_t plane = (size_t)H * W;
    for (int c = 0; c < C; c++) {
        float *out = dst + c * plane;
        if (mv.angle != 0.0f || mv.zoom != 0.0f)
            warp_plane(out, px + c * plane, norm, c, H, W, mv);
        else
            shift_plane(out, px + c * plane, norm, c, H, W, mv);
        for (int y = 0; mv.flip && y < H; y++) {
            float *row = out + (size_t)y * W;
            for (int x = 0; x < W / 2; x++) {
                const float t = row[x];
                row[x] = row[W - 1 - x], row[W - 1 - x] = t;
            }
        }
    }
}
