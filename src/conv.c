/* conv.c - Conv3x3: F filters of C x 3 x 3, valid padding, no bias.
 *
 * BLAS engine, per image with P = (H-2)(W-2) output positions and K = C*9 taps:
 *   forward      col[K][P] = im2col(in);   out[F][P]  = filt[F][K] . col[K][P]
 *   filter grad  dfilt[F][K] += dout[F][P] . col[K][P]^T
 *   input grad   col[K][P] = filt[F][K]^T . dout[F][P];   din = col2im(col)
 * Reference engine: the post's loops over 3x3 regions. */
#include "cnn.h"

#include <cblas.h>
#include <string.h>

/* col[(c*9 + ki*3 + kj)][i*OW + j] = in[c][i+ki][j+kj] */
void cnn_im2col3x3(float *col, const float *in, int C, int H, int W)
{
    const int OH = H - 2, OW = W - 2;
    const size_t P = (size_t)OH * OW;
    for (int c = 0; c < C; c++)
        for (int ki = 0; ki < 3; ki++)
            for (int kj = 0; kj < 3; kj++) {
                float *row = col + ((size_t)c * 9 + ki * 3 + kj) * P;
                const float *src = in + ((size_t)c * H + ki) * W + kj;
                for (int i = 0; i < OH; i++)
                    memcpy(row + (size_t)i * OW, src + (size_t)i * W, (size_t)OW * sizeof(float));
            }
}

/* The adjoint of im2col: in[c][i+ki][j+kj] = sum of col entries that copied it. */
void cnn_col2im3x3(float *in, const float *col, int C, int H, int W)
{
    const int OH = H - 2, OW = W - 2;
    const size_t P = (size_t)OH * OW;
    memset(in, 0, (size_t)C * H * W * sizeof(float));
    for (int c = 0; c < C; c++)
        for (int ki = 0; ki < 3; ki++)
            for (int kj = 0; kj < 3; kj++) {
                const float *row = col + ((size_t)c * 9 + ki * 3 + kj) * P;
                float *dst = in + ((size_t)c * H + ki) * W + kj;
                for (int i = 0; i < OH; i++)
                    for (int j = 0; j < OW; j++)
                        dst[(size_t)i * W + j] += row[(size_t)i * OW + j];
            }
}

void cnn_conv3x3_forward(float *out, float *col, const float *in, const float *filt,
                         int C, int H, int W, int F)
{
    const int P = (H - 2) * (W - 2), K = C * 9;
    cnn_im2col3x3(col, in, C, H, W);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, F, P, K,
                1.0f, filt, K, col, P, 0.0f, out, P);
}

void cnn_conv3x3_backward(float *din, float *dfilt, float *col, const float *dout,
                          const float *filt, int C, int H, int W, int F)
{
    const int P = (H - 2) * (W - 2), K = C * 9;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, F, K, P,
                1.0f, dout, P, col, P, 1.0f, dfilt, K);
    if (din) {
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, P, F,
                    1.0f, filt, K, dout, P, 0.0f, col, P);
        cnn_col2im3x3(din, col, C, H, W);
    }
}

/* ---- reference engine: out[f][i][j] = sum over the region at (i, j) of region * filter[f] */

void cnn_conv3x3_forward_ref(float *out, const float *in, const float *filt,
                             int C, int H, int W, int F)
{
    const int OH = H - 2, OW = W - 2;
    for (int i = 0; i < OH; i++)
        for (int j = 0; j < OW; j++)
            for (int f = 0; f < F; f++) {
                float sum = 0.0f;
                for (int c = 0; c < C; c++)
                    for (int ki = 0; ki < 3; ki++)
                        for (int kj = 0; kj < 3; kj++)
                            sum += in[((size_t)c * H + i + ki) * W + j + kj] *
                                   filt[(((size_t)f * C + c) * 3 + ki) * 3 + kj];
                out[((size_t)f * OH + i) * OW + j] = sum;
            }
}

/* dfilt[f] += dout[f][i][j] * region(i, j);  din[region(i, j)] += dout[f][i][j] * filt[f] */
void cnn_conv3x3_backward_ref(float *din, float *dfilt, const float *dout, const float *in,
                              const float *filt, int C, int H, int W, int F)
{
    const int OH = H - 2, OW = W - 2;
    if (din)
        memset(din, 0, (size_t)C * H * W * sizeof(float));
    for (int i = 0; i < OH; i++)
        for (int j = 0; j < OW; j++)
            for (int f = 0; f < F; f++) {
                const float g = dout[((size_t)f * OH + i) * OW + j];
                for (int c = 0; c < C; c++)
                    for (int ki = 0; ki < 3; ki++)
                        for (int kj = 0; kj < 3; kj++) {
                            const size_t xi = ((size_t)c * H + i + ki) * W + j + kj;
                            const size_t wi = (((size_t)f * C + c) * 3 + ki) * 3 + kj;
                            dfilt[wi] += g * in[xi];
                            if (din)
                                din[xi] += g * filt[wi];
                        }
            }
}
