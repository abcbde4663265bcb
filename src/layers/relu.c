/* relu.c - ReLU: out = max(in, 0). The gradient passes where the output is positive
 * (so not at 0, as PyTorch). Element-wise: any layout, one engine. */
#include "cnn.h"

#include "simd.h"

CNN_VECTOR
void cnn_relu_forward(float *restrict out, const float *restrict in, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = in[i] > 0.0f ? in[i] : 0.0f;
}

CNN_VECTOR
void cnn_relu_backward(float *restrict din, const float *restrict dout, const float *restrict out,
                       size_t n)
{
    for (size_t i = 0; i < n; i++)
        din[i] = out[i] > 0.0f ? dout[i] : 0.0f;
}
