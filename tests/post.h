/* post.h - the post's network for the tests (header-only): conv<F>,pool,softmax<N>
 * built for a C x H x W input, the pieces of its parameter vector, and where its
 * layers' outputs sit in the activations. */
#ifndef CNN_TEST_POST_H
#define CNN_TEST_POST_H

#include "cnn.h"

#include <stdio.h>
#include <stdlib.h>

/* Layers of the post's network, as cnn_arch.layer and cnn_acts.out index them. */
enum { POST_CONV = 0, POST_POOL = 1, POST_SOFTMAX = 2 };

/* conv<F>,pool,softmax<classes> for C x H x W inputs; the test stops if it does not
 * build. */
static inline cnn_arch post_arch(int C, int H, int W, int F, int classes)
{
    char desc[64], err[256];
    cnn_arch a;
    snprintf(desc, sizeof desc, "conv%d,pool,softmax%d", F, classes);
    if (cnn_arch_build(&a, desc, C, H, W, err, sizeof err) != CNN_OK) {
        fprintf(stderr, "post_arch: %s\n", err);
        exit(99);
    }
    return a;
}

/* The post's own: 1x28x28, 8 filters, 10 classes. */
static inline cnn_arch post_arch_mnist(void) { return post_arch(1, 28, 28, 8, 10); }

/* Named pieces of a parameter (or gradient) vector laid out like the model's. */
typedef struct post_params {
    float *filters; /* [F][C][3][3] */
    float *W;       /* [classes][K] */
    float *b;       /* [classes] */
} post_params;

static inline post_params post_view(const cnn_arch *a, float *flat)
{
    return (post_params){.filters = flat + a->layer[POST_CONV].weights_at,
                         .W = flat + a->layer[POST_SOFTMAX].weights_at,
                         .b = flat + a->layer[POST_SOFTMAX].bias_at};
}

static inline int post_filters(const cnn_arch *a) { return a->layer[POST_CONV].units; }
static inline size_t post_input_len(const cnn_arch *a) { return (size_t)a->C * a->H * a->W; }
/* F x (H-2) x (W-2): the conv's output */
static inline size_t post_conv_len(const cnn_arch *a)
{
    return cnn_layer_out_len(&a->layer[POST_CONV]);
}
/* K = F x ((H-2)/2) x ((W-2)/2): the pool's output, the dense layer's input */
static inline size_t post_dense_len(const cnn_arch *a)
{
    return cnn_layer_out_len(&a->layer[POST_POOL]);
}

#endif
