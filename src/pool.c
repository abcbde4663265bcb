/* pool.c - MaxPool2: non-overlapping 2x2 blocks, stride 2; an odd last row or
 * column is dropped. Forward records the first max of each block in the order
 * (0,0),(0,1),(1,0),(1,1); backward routes the gradient by one of two tie rules. */
#include "cnn.h"

#include <string.h>

void cnn_maxpool2_forward(float *out, uint8_t *arg, const float *in, int F, int H, int W)
{
    const int PH = H / 2, PW = W / 2;
    for (int f = 0; f < F; f++)
        for (int i = 0; i < PH; i++) {
            const float *r0 = in + ((size_t)f * H + 2 * i) * W, *r1 = r0 + W;
            float *o = out + ((size_t)f * PH + i) * PW;
            uint8_t *g = arg + ((size_t)f * PH + i) * PW;
            for (int j = 0; j < PW; j++) {
                /* Pairwise, with selects rather than branches (ties are common and
                 * unpredictable): the first max of (0,1), the first of (2,3), and
                 * the second pair only when strictly larger. */
                const float v0 = r0[2 * j], v1 = r0[2 * j + 1], v2 = r1[2 * j], v3 = r1[2 * j + 1];
                const int b01 = v1 > v0, b23 = v3 > v2;
                const float m01 = b01 ? v1 : v0, m23 = b23 ? v3 : v2;
                const int take = m23 > m01;
                o[j] = m23 > m01 ? m23 : m01;
                g[j] = (uint8_t)(b01 + take * (2 + b23 - b01));
            }
        }
}

void cnn_maxpool2_backward(float *din, const float *dout, const uint8_t *arg, const float *in,
                           const float *out, cnn_pool_ties ties, int F, int H, int W)
{
    const int PH = H / 2, PW = W / 2;
    memset(din, 0, (size_t)F * H * W * sizeof(float));
    for (int f = 0; f < F; f++)
        for (int i = 0; i < PH; i++)
            for (int j = 0; j < PW; j++) {
                const size_t o = ((size_t)f * PH + i) * PW + j;
                const size_t base = ((size_t)f * H + 2 * i) * W + 2 * j;
                const size_t pos[4] = {base, base + 1, base + W, base + W + 1};
                if (ties == CNN_TIES_ALL) {
                    for (int k = 0; k < 4; k++)
                        if (in[pos[k]] == out[o])
                            din[pos[k]] = dout[o];
                } else {
                    din[pos[arg[o]]] = dout[o];
                }
            }
}
