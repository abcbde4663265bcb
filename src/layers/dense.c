/* dense.c - the Softmax layer: logits = W x + b, softmax, cross-entropy.
 * W is [N][K] row-major (N classes, K inputs). For one sample the forward is one
 * SGEMV, the weight gradient one SGER and the input gradient one transposed SGEMV;
 * for B samples at once (rows of X [B][K]) they become three SGEMMs, which run
 * several times faster per sample at these narrow shapes. */
#include "cnn.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

void cnn_dense_forward_ld(float *logits, const float *x, int ldx, const float *W, const float *b,
                          int B, int K, int N)
{
    for (int r = 0; r < B; r++)
        memcpy(logits + (size_t)r * N, b, (size_t)N * sizeof(float));
    if (B == 1)
        cblas_sgemv(CblasRowMajor, CblasNoTrans, N, K, 1.0f, W, K, x, 1, 1.0f, logits, 1);
    else /* logits[B][N] += X[B][K] . W[N][K]^T */
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, N, K, 1.0f, x, ldx, W, K, 1.0f,
                    logits, N);
}

/* dx first: with dW == W (an in-place SGD step) it must see the weights before the
 * update, as the post computes it. */
void cnn_dense_backward_ld(float *dx, float *dW, float *db, float alpha, const float *dlogits,
                           const float *x, int ldx, const float *W, int B, int K, int N)
{
    if (dx) {
        if (B == 1)
            cblas_sgemv(CblasRowMajor, CblasTrans, N, K, 1.0f, W, K, dlogits, 1, 0.0f, dx, 1);
        else /* dX[B][K] = dL[B][N] . W[N][K] */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, K, N, 1.0f, dlogits, N, W,
                        K, 0.0f, dx, ldx);
    }
    if (B == 1)
        cblas_sger(CblasRowMajor, N, K, alpha, dlogits, 1, x, 1, dW, K);
    else /* dW[N][K] += alpha dL[B][N]^T . X[B][K] */
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, N, K, B, alpha, dlogits, N, x, ldx,
                    1.0f, dW, K);
    for (int r = 0; r < B; r++)
        for (int n = 0; n < N; n++)
            db[n] += alpha * dlogits[(size_t)r * N + n];
}

void cnn_dense_forward(float *logits, const float *x, const float *W, const float *b, int B,
                       int K, int N)
{
    cnn_dense_forward_ld(logits, x, K, W, b, B, K, N);
}

void cnn_dense_backward(float *dx, float *dW, float *db, float alpha, const float *dlogits,
                        const float *x, const float *W, int B, int K, int N)
{
    cnn_dense_backward_ld(dx, dW, db, alpha, dlogits, x, K, W, B, K, N);
}

void cnn_dense_forward_ref(float *logits, const float *x, const float *W, const float *b,
                           int K, int N)
{
    for (int n = 0; n < N; n++) {
        float sum = 0.0f;
        for (int k = 0; k < K; k++)
            sum += x[k] * W[(size_t)n * K + k];
        logits[n] = sum + b[n];
    }
}

void cnn_dense_backward_ref(float *dx, float *dW, float *db, float alpha, const float *dlogits,
                            const float *x, const float *W, int K, int N)
{
    if (dx)
        for (int k = 0; k < K; k++) {
            float sum = 0.0f;
            for (int n = 0; n < N; n++)
                sum += W[(size_t)n * K + k] * dlogits[n];
            dx[k] = sum;
        }
    for (int n = 0; n < N; n++) {
        for (int k = 0; k < K; k++)
            dW[(size_t)n * K + k] += alpha * (dlogits[n] * x[k]);
        db[n] += alpha * dlogits[n];
    }
}

/* p = exp(t - max) / sum exp(t - max); loss = ln(sum exp(t - max)) - (t[label] - max).
 * Subtracting the max keeps every exp in (0, 1]: no overflow for large logits. */
float cnn_softmax_xent(float *probs, float *dlogits, const float *logits, int label, int N)
{
    float mx = logits[0];
    for (int n = 1; n < N; n++)
        if (logits[n] > mx)
            mx = logits[n];
    double sum = 0.0;
    for (int n = 0; n < N; n++) {
        probs[n] = expf(logits[n] - mx);
        sum += probs[n];
    }
    const float inv = (float)(1.0 / sum);
    for (int n = 0; n < N; n++)
        probs[n] *= inv;
    if (dlogits) {
        for (int n = 0; n < N; n++)
            dlogits[n] = probs[n];
        if (label >= 0)
            dlogits[label] -= 1.0f;
    }
    if (label < 0)
        return 0.0f;
    return (float)(log(sum) - ((double)logits[label] - mx));
}
