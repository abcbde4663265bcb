/* kinds.c - the table of layer kinds (layer.h): an entry per kind, in the order of
 * cnn_layer_kind. A new kind is its own file under src/layers/ and an entry here. */
#include "layer.h"


static const cnn_kind *const kinds[] = {
    [CNN_LAYER_CONV] = &cnn_kind_conv,       [CNN_LAYER_RELU] = &cnn_kind_relu,
    [CNN_LAYER_POOL] = &cnn_kind_pool,       [CNN_LAYER_DENSE] = &cnn_kind_dense,
    [CNN_LAYER_SOFTMAX] = &cnn_kind_softmax,
};

int cnn_kind_count(void) { return (int)(sizeof kinds / sizeof *kinds); }

const cnn_kind *cnn_kind_of(cnn_layer_kind k)
{
    return (unsigned)k < sizeof kinds / sizeof *kinds ? kinds[k] : NULL;
}

int cnn_kind_units(const char *rest, size_t len, int max, int *units)
{
    if (len == 0)
        return 0;
    for (size_t i = 0; i < len; i++)
        if (rest[i] < '0' || rest[i] > '9')
            return 0;
    long v = 0;
    for (size_t i = 0; i < len; i++) {
        v = v * 10 + (rest[i] - '0');
        if (v > max)
            return -1;
    }
    *units = (int)v;
    return 1;
}
