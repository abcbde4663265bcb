/* kernels.h - the layers' kernels, both engines (internal: the library, its tests and
 * benchmarks). Each layer is a pair of functions: outputs first, then inputs, then
 * dimensions. Backward functions ACCUMULATE (+=) into parameter gradients and
 * OVERWRITE input gradients. The _ref variants are the naive reference engine. */
#ifndef CNN_KERNELS_H
#define CNN_KERNELS_H

#include "cnn.h"

/* Hidden from programs that link the shared library, also where GCC's target_clones
 * makes a dispatcher that would otherwise be exported. */
#if defined(__GNUC__)
#define CNN_HIDDEN __attribute__((visibility("hidden")))
#else
#define CNN_HIDDEN
#endif

/* Conv3x3, valid, no bias. in [C][H][W], filt [F][C*9].
 * BLAS engine: out [F][4][PH][PW] in pool-block order, PH, PW = (H-2)/2, (W-2)/2:
 * out[f][k][i][j] is the conv output at (2i + k/2, 2j + k%2), the k-th position of
 * pool block (i, j); positions outside every pool block are not computed. col is
 * scratch of C*9 x 4*PH*PW floats; forward leaves im2col(in) in it.
 * Reference engine: out [F][H-2][W-2], the usual layout. */
CNN_HIDDEN void cnn_im2col3x3(float *col, const float *in, int C, int H, int W);
CNN_HIDDEN void cnn_col2im3x3(float *in, const float *col, int C, int H, int W); /* in = col2im(col) */
CNN_HIDDEN void cnn_conv3x3_forward(float *out, float *col, const float *in, const float *filt,
                         int C, int H, int W, int F);
/* Backward: dfilt += alpha * the filter gradient (alpha 1 accumulates a gradient;
 * dfilt == filt with alpha = -lr is an in-place SGD step, then din must be NULL).
 * col must hold im2col(in) from the forward; it is overwritten when din != NULL.
 * din [C][H][W] may be NULL (first layer: no input gradient). dout is laid out as out. */
CNN_HIDDEN void cnn_conv3x3_backward(float *din, float *dfilt, float alpha, float *col, const float *dout,
                          const float *filt, int C, int H, int W, int F);
CNN_HIDDEN void cnn_conv3x3_forward_ref(float *out, const float *in, const float *filt,
                             int C, int H, int W, int F);
CNN_HIDDEN void cnn_conv3x3_backward_ref(float *din, float *dfilt, float alpha, const float *dout,
                              const float *in, const float *filt, int C, int H, int W, int F);
/* The general conv: blocked selects the pool-block order above (its im2col and
 * col2im), otherwise the plain layout out [F][H-2][W-2] (cnn_im2col3x3_plain: col
 * [C*9][(H-2)*(W-2)]); bias [F] may be NULL, as dbias. */
CNN_HIDDEN void cnn_im2col3x3_plain(float *col, const float *in, int C, int H, int W);
CNN_HIDDEN void cnn_col2im3x3_plain(float *in, const float *col, int C, int H, int W);
CNN_HIDDEN void cnn_conv3x3_forward_ex(float *out, float *col, const float *in, const float *filt,
                            const float *bias, int C, int H, int W, int F, int blocked);
CNN_HIDDEN void cnn_conv3x3_backward_ex(float *din, float *dfilt, float *dbias, float alpha, float *col,
                             const float *dout, const float *filt, int C, int H, int W, int F,
                             int blocked);
/* The reference engine's conv bias over P = (H-2)*(W-2) positions per filter. */
CNN_HIDDEN void cnn_conv_bias_forward_ref(float *out, const float *bias, int F, int P);
CNN_HIDDEN void cnn_conv_bias_backward_ref(float *dbias, float alpha, const float *dout, int F, int P);

/* ReLU over n values: out = max(in, 0); din = dout where out > 0, else 0. */
CNN_HIDDEN void cnn_relu_forward(float *out, const float *in, size_t n);
CNN_HIDDEN void cnn_relu_backward(float *din, const float *dout, const float *out, size_t n);

/* Pool-block order [F][4][H/2][W/2] to [F][H][W] (uncovered positions 0). */
CNN_HIDDEN void cnn_blocks_to_nchw(float *dst, const float *src, int F, int H, int W);

/* MaxPool2, stride 2, over F maps of H x W: out [F][H/2][W/2], arg [F][H/2][W/2] =
 * 0..3, the position of the first max in its block. Backward overwrites din (laid out
 * as in); CNN_TIES_ALL compares in with out, CNN_TIES_SINGLE uses arg. The BLAS
 * engine's functions take in / din in pool-block order, the _ref ones [F][H][W]. */
CNN_HIDDEN void cnn_maxpool2_forward(float *out, uint8_t *arg, const float *in, int F, int H, int W);
CNN_HIDDEN void cnn_maxpool2_backward(float *din, const float *dout, const uint8_t *arg, const float *in,
                           const float *out, cnn_pool_ties ties, int F, int H, int W);
CNN_HIDDEN void cnn_maxpool2_forward_ref(float *out, uint8_t *arg, const float *in, int F, int H, int W);
CNN_HIDDEN void cnn_maxpool2_backward_ref(float *din, const float *dout, const uint8_t *arg,
                               const float *in, const float *out, cnn_pool_ties ties, int F,
                               int H, int W);

/* Dense over B samples: logits[B][N] = X[B][K] W[N][K]^T + b[N]. Backward: dX[B][K] =
 * dL W (dx may be NULL), then dW += alpha dL^T X and db += alpha * the column sums of dL
 * (dW == W, db == b with alpha = -lr is an in-place SGD step: dx sees the old W). B = 1
 * uses SGEMV and SGER, B > 1 SGEMM. The _ref versions take one sample. */
CNN_HIDDEN void cnn_dense_forward(float *logits, const float *x, const float *W, const float *b, int B,
                       int K, int N);
CNN_HIDDEN void cnn_dense_backward(float *dx, float *dW, float *db, float alpha, const float *dlogits,
                        const float *x, const float *W, int B, int K, int N);
CNN_HIDDEN void cnn_dense_forward_ref(float *logits, const float *x, const float *W, const float *b,
                           int K, int N);
CNN_HIDDEN void cnn_dense_backward_ref(float *dx, float *dW, float *db, float alpha, const float *dlogits,
                            const float *x, const float *W, int K, int N);

/* The same with the rows of x (and dx) ldx floats apart (ldx >= K). */
CNN_HIDDEN void cnn_dense_forward_ld(float *logits, const float *x, int ldx, const float *W, const float *b,
                          int B, int K, int N);
CNN_HIDDEN void cnn_dense_backward_ld(float *dx, float *dW, float *db, float alpha, const float *dlogits,
                           const float *x, int ldx, const float *W, int B, int K, int N);

/* Inside our parallel regions BLAS calls must run on the calling thread only: the
 * OpenMP OpenBLAS checks omp_in_parallel(), which is false in a team of one, and then
 * asks omp_get_max_threads(). Every thread of our teams calls this first (it sets
 * that thread's own setting alone). */
CNN_HIDDEN void cnn_blas_alone(void);

/* A conv layer's lowering on the BLAS engine: the images per group of a chunk of nb
 * (1 for a layer lowered per image), and the output positions per image its im2col
 * matrix holds. */
CNN_HIDDEN int cnn_conv_group(const cnn_layer *l, int nb);
CNN_HIDDEN int cnn_conv_positions(const cnn_layer *l);

/* Softmax and cross-entropy, numerically stable, against the target q = (1 - eps)
 * onehot(label) + eps / N (eps 0: the one-hot label; eps > 0: label smoothing, as
 * PyTorch's CrossEntropyLoss(label_smoothing=eps)). probs[N] = softmax(logits);
 * dlogits = probs - q (may be NULL). @return -sum q ln(probs), 0 if label < 0. */
CNN_HIDDEN float cnn_softmax_xent(float *probs, float *dlogits, const float *logits, int label,
                                  int N, float eps);

#endif
