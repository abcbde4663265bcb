/* onnx_export.c - a model as an ONNX file (cnn_onnx_export): a protobuf encoder of the
 * few messages ONNX needs (onnx.h), the walk that asks each layer kind for its nodes,
 * and the model around them: input "input" (N x C x H x W, N symbolic), output
 * "probabilities" (N x classes), opset 13, the input normalisation and class names as
 * metadata. */
#include "cnn.h"

#include "fileio.h"
#include "layer.h"
#include "onnx.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---------------------------------------------------------------- protobuf */

static void put(pb_buf *b, const void *p, size_t n)
{
    if (b->failed)
        return;
    if (b->n + n > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->n + n)
            cap *= 2;
        unsigned char *q = realloc(b->p, cap);
        if (!q) {
            b->failed = 1;
            return;
        }
        b->p = q, b->cap = cap;
    }
    memcpy(b->p + b->n, p, n);
    b->n += n;
}

static void raw_varint(pb_buf *b, uint64_t v)
{
    unsigned char tmp[10];
    size_t n = 0;
    do {
        tmp[n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
    put(b, tmp, n);
}

static void key(pb_buf *b, uint32_t field, unsigned wire) { raw_varint(b, (uint64_t)field << 3 | wire); }

void pb_varint(pb_buf *b, uint32_t field, uint64_t v)
{
    key(b, field, 0);
    raw_varint(b, v);
}

void pb_fixed32(pb_buf *b, uint32_t field, uint32_t v)
{
    unsigned char le[4];
    cnn_put_u32(le, v);
    key(b, field, 5);
    put(b, le, 4);
}

void pb_bytes(pb_buf *b, uint32_t field, const void *p, size_t n)
{
    key(b, field, 2);
    raw_varint(b, n);
    put(b, p, n);
}

void pb_string(pb_buf *b, uint32_t field, const char *s) { pb_bytes(b, field, s, strlen(s)); }

void pb_message(pb_buf *b, uint32_t field, pb_buf *sub)
{
    if (sub->failed)
        b->failed = 1;
    pb_bytes(b, field, sub->p, sub->n);
    pb_free(sub);
}

void pb_free(pb_buf *b)
{
    free(b->p);
    *b = (pb_buf){0};
}

/* ---------------------------------------------------------------- the graph */

enum { ATTR_FLOAT = 1, ATTR_INT = 2, ATTR_INTS = 7 };      /* AttributeProto.type */
enum { ELEM_FLOAT = 1, ELEM_INT64 = 7 };                   /* TensorProto.data_type */

void onnx_node(onnx_out *g, const char *op, const char *const *in, int nin, const char *out,
               const onnx_attr *attrs, int nattr)
{
    pb_buf node = {0};
    for (int i = 0; i < nin; i++)
        pb_string(&node, 1, in[i]);
    pb_string(&node, 2, out);
    pb_string(&node, 3, out);
    pb_string(&node, 4, op);
    for (int i = 0; i < nattr; i++) {
        pb_buf a = {0};
        pb_string(&a, 1, attrs[i].name);
        if (attrs[i].type == ONNX_FLOAT) {
            uint32_t bits;
            memcpy(&bits, &attrs[i].f, 4);
            pb_fixed32(&a, 2, bits);
            pb_varint(&a, 20, ATTR_FLOAT);
        } else if (attrs[i].type == ONNX_INT) {
            pb_varint(&a, 3, (uint64_t)attrs[i].i);
            pb_varint(&a, 20, ATTR_INT);
        } else {
            for (int k = 0; k < attrs[i].n; k++)
                pb_varint(&a, 8, (uint64_t)attrs[i].ints[k]);
            pb_varint(&a, 20, ATTR_INTS);
        }
        pb_message(&node, 5, &a);
    }
    pb_message(&g->graph, 1, &node);
}

static void tensor(onnx_out *g, const char *name, const int64_t *dims, int ndim, int elem,
                   const void *raw, size_t bytes)
{
    pb_buf t = {0};
    for (int i = 0; i < ndim; i++)
        pb_varint(&t, 1, (uint64_t)dims[i]);
    pb_varint(&t, 2, (uint64_t)elem);
    pb_string(&t, 8, name);
    pb_bytes(&t, 9, raw, bytes);
    pb_message(&g->graph, 5, &t);
}

void onnx_tensor(onnx_out *g, const char *name, const int64_t *dims, int ndim, const float *v)
{
    size_t n = 1;
    for (int i = 0; i < ndim; i++)
        n *= (size_t)dims[i];
    unsigned char *raw = malloc(4 * n + 1); /* raw_data is little-endian */
    if (!raw) {
        g->graph.failed = 1;
        return;
    }
    for (size_t i = 0; i < n; i++) {
        uint32_t bits;
        memcpy(&bits, v + i, 4);
        cnn_put_u32(raw + 4 * i, bits);
    }
    tensor(g, name, dims, ndim, ELEM_FLOAT, raw, 4 * n);
    free(raw);
}

char *onnx_name(char name[CNN_ONNX_NAME], const char *base, const char *suffix)
{
    snprintf(name, CNN_ONNX_NAME, "%s%s", base, suffix);
    return name;
}

const char *onnx_rows(onnx_out *g, const char *in, char tmp[CNN_ONNX_NAME])
{
    if (g->rank == 2)
        return in;
    const onnx_attr axis = {"axis", ONNX_INT, .i = 1};
    onnx_node(g, "Flatten", &in, 1, onnx_name(tmp, in, "_rows"), &axis, 1);
    g->rank = 2;
    return tmp;
}

const char *onnx_maps(onnx_out *g, const char *in, int C, int H, int W,
                      char tmp[CNN_ONNX_NAME])
{
    if (g->rank == 4)
        return in;
    char shape_name[CNN_ONNX_NAME];
    const int64_t dims = 4, shape[4] = {-1, C, H, W};
    unsigned char raw[32];
    for (int i = 0; i < 4; i++)
        cnn_put_u64(raw + 8 * i, (uint64_t)shape[i]);
    tensor(g, onnx_name(shape_name, in, "_maps_shape"), &dims, 1, ELEM_INT64, raw, sizeof raw);
    const char *const args[2] = {in, shape_name};
    onnx_node(g, "Reshape", args, 2, onnx_name(tmp, in, "_maps"), NULL, 0);
    g->rank = 4;
    return tmp;
}

void onnx_window(onnx_out *g, const char *op, const cnn_layer *l, int K, int S, const char *in,
                 const char *out)
{
    char maps[CNN_ONNX_NAME];
    const char *x = onnx_maps(g, in, l->C, l->H, l->W, maps);
    const onnx_attr attrs[] = {{"kernel_shape", ONNX_INTS, .n = 2, .ints = {K, K}},
                               {"strides", ONNX_INTS, .n = 2, .ints = {S, S}}};
    onnx_node(g, op, &x, 1, out, attrs, 2);
}

/* ---------------------------------------------------------------- the model */

/* A ValueInfoProto of a float tensor: dims[i] < 0 is the symbolic batch "N". */
static void value_info(pb_buf *graph, uint32_t field, const char *name, const int64_t *dims,
                       int ndim)
{
    pb_buf shape = {0}, tensor_type = {0}, type = {0}, vi = {0};
    for (int i = 0; i < ndim; i++) {
        pb_buf dim = {0};
        if (dims[i] < 0)
            pb_string(&dim, 2, "N");
        else
            pb_varint(&dim, 1, (uint64_t)dims[i]);
        pb_message(&shape, 1, &dim);
    }
    pb_varint(&tensor_type, 1, ELEM_FLOAT);
    pb_message(&tensor_type, 2, &shape);
    pb_message(&type, 1, &tensor_type);
    pb_string(&vi, 1, name);
    pb_message(&vi, 2, &type);
    pb_message(graph, field, &vi);
}

static void metadata(pb_buf *model, const char *key_text, const char *value)
{
    pb_buf e = {0};
    pb_string(&e, 1, key_text);
    pb_string(&e, 2, value);
    pb_message(model, 14, &e);
}

/* The normalisation as per-channel means and deviations ("0.5" and "1" for
 * px/255 - 0.5), comma-separated. */
static void norm_text(const cnn_model *m, char *mean, char *std, size_t len)
{
    const int C = m->arch.C;
    size_t a = 0, b = 0;
    mean[0] = std[0] = '\0';
    for (int c = 0; c < C && a < len && b < len; c++) {
        const int unit = m->norm.kind != CNN_NORM_MEAN_STD;
        a += (size_t)snprintf(mean + a, len - a, "%s%.9g", c ? "," : "",
                              unit ? 0.5 : (double)m->norm.mean[c]);
        b += (size_t)snprintf(std + b, len - b, "%s%.9g", c ? "," : "",
                              unit ? 1.0 : (double)m->norm.std[c]);
    }
}

/* The layers' nodes and initializers into g. */
static void layers(onnx_out *g, const cnn_model *m)
{
    const cnn_arch *a = &m->arch;
    char in[CNN_ONNX_NAME] = "input", out[CNN_ONNX_NAME];
    g->rank = 4;
    for (int i = 0; i < a->n; i++) {
        const cnn_layer *l = &a->layer[i];
        const cnn_kind *k = cnn_kind_of(l->kind);
        if (i == a->n - 1)
            snprintf(out, sizeof out, "probabilities");
        else
            snprintf(out, sizeof out, "l%d_%s", i + 1, k->name);
        k->onnx_export(g, l, in, out, m->params + l->weights_at,
                       l->n_bias ? m->params + l->bias_at : NULL,
                       l->n_state ? m->state + l->state_at : NULL);
        memcpy(in, out, sizeof in);
    }
}

static const char *doc =
    "A network trained by cnn (" CNN_VERSION "). Input: N x C x H x W float32 images, "
    "each pixel p (0..255) of channel c as (p / 255 - input_mean[c]) / input_std[c] (the "
    "metadata). Output: N x classes softmax probabilities.";

cnn_status cnn_onnx_export(const cnn_model *m, const char *path, char *err, size_t errlen)
{
    if (!m || !m->params || !path)
        return cnn_errorf(CNN_ERR_ARG, err, errlen, "cnn_onnx_export: no model or no path");
    const cnn_arch *a = &m->arch;
    onnx_out g = {0};
    layers(&g, m);
    pb_string(&g.graph, 2, "cnn");
    pb_string(&g.graph, 10, doc);
    const int64_t in_dims[4] = {-1, a->C, a->H, a->W}, out_dims[2] = {-1, a->classes};
    value_info(&g.graph, 11, "input", in_dims, 4);
    value_info(&g.graph, 12, "probabilities", out_dims, 2);

    pb_buf model = {0}, opset = {0};
    pb_varint(&model, 1, CNN_ONNX_IR_VERSION);
    pb_string(&model, 2, "cnn");
    pb_string(&model, 3, CNN_VERSION);
    pb_string(&model, 6, doc);
    pb_message(&model, 7, &g.graph);
    pb_varint(&opset, 2, CNN_ONNX_OPSET);
    pb_message(&model, 8, &opset);
    char arch[CNN_ARCH_LEN], mean[512], std[512];
    metadata(&model, "cnn_arch", cnn_arch_describe(a, arch, sizeof arch));
    norm_text(m, mean, std, sizeof mean);
    metadata(&model, "input_mean", mean);
    metadata(&model, "input_std", std);
    if (m->names) { /* one per line */
        pb_buf names = {0};
        for (int c = 0; c < a->classes; c++) {
            const char *name = cnn_name_at(m->names, a->classes, c);
            put(&names, name, strlen(name));
            put(&names, c + 1 < a->classes ? "\n" : "", c + 1 < a->classes);
        }
        put(&names, "", 1);
        if (!names.failed)
            metadata(&model, "class_names", (const char *)names.p);
        model.failed |= names.failed;
        pb_free(&names);
    }
    cnn_status st = model.failed ? cnn_errorf(CNN_ERR_NOMEM, err, errlen,
                                              "%s: out of memory writing the ONNX graph", path)
                                 : cnn_write_atomic(path, model.p, model.n, err, errlen);
    pb_free(&model);
    return st;
}
