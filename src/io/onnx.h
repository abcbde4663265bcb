/* onnx.h - the part of ONNX this project writes and reads (internal): a protobuf
 * encoder into a growing buffer, and the graph each layer kind writes itself into
 * (cnn_kind's onnx_export); the nodes and tensors an import reads, each kind taking
 * the nodes that are its own (cnn_kind's onnx_import). Opset 13, IR version 7;
 * tensors are float32 (int64 for a shape).
 * The schema's field numbers are those of onnx.proto (ModelProto, GraphProto,
 * NodeProto, AttributeProto, TensorProto, ValueInfoProto). */
#ifndef CNN_ONNX_H
#define CNN_ONNX_H

#include "cnn.h"

#include <stddef.h>
#include <stdint.h>

#define CNN_ONNX_OPSET 13
#define CNN_ONNX_IR_VERSION 7
#define CNN_ONNX_NAME 64 /* longest tensor name, with its NUL */

/* Bytes of protobuf fields; failed is set, and nothing more is written, when memory
 * runs out. */
typedef struct pb_buf {
    unsigned char *p;
    size_t n, cap;
    int failed;
} pb_buf;

void pb_varint(pb_buf *b, uint32_t field, uint64_t v);           /* wire type 0 */
void pb_fixed32(pb_buf *b, uint32_t field, uint32_t v);          /* wire type 5 */
void pb_bytes(pb_buf *b, uint32_t field, const void *p, size_t n); /* wire type 2 */
void pb_string(pb_buf *b, uint32_t field, const char *s);
void pb_message(pb_buf *b, uint32_t field, pb_buf *sub); /* sub appended, then freed */
void pb_free(pb_buf *b);

/* The graph being written: its nodes and initializers, and the rank of the tensor the
 * next layer reads (4: N x C x H x W maps, 2: N x units rows). */
typedef struct onnx_out {
    pb_buf graph;
    int rank;
} onnx_out;

/* An attribute: an int, a float or up to 4 ints. */
typedef struct onnx_attr {
    const char *name;
    enum { ONNX_INT, ONNX_FLOAT, ONNX_INTS } type;
    int64_t i;
    float f;
    int n;
    int64_t ints[4];
} onnx_attr;

/* A node op reading in[0..nin) into out (also its name). */
void onnx_node(onnx_out *g, const char *op, const char *const *in, int nin, const char *out,
               const onnx_attr *attrs, int nattr);
/* An initializer: float32 values v of dims[0..ndim). */
void onnx_tensor(onnx_out *g, const char *name, const int64_t *dims, int ndim, const float *v);
/* name = base + suffix (both short: the walk's names). @return name. */
char *onnx_name(char name[CNN_ONNX_NAME], const char *base, const char *suffix);
/* The rows (rank 2) of tensor in: in itself, or a Flatten of it into tmp.
 * The maps (rank 4, C x H x W) of tensor in: in itself, or a Reshape of it into tmp. */
const char *onnx_rows(onnx_out *g, const char *in, char tmp[CNN_ONNX_NAME]);
const char *onnx_maps(onnx_out *g, const char *in, int C, int H, int W,
                      char tmp[CNN_ONNX_NAME]);

/* A pooling op (MaxPool, AveragePool) over K x K windows moved by S, no padding, on
 * the maps of l's input. */
void onnx_window(onnx_out *g, const char *op, const cnn_layer *l, int K, int S, const char *in,
                 const char *out);

/* ---------------------------------------------------------------- reading */

#define ONNX_MAX_INPUTS 8  /* of a node */
#define ONNX_MAX_ATTRS 16  /* of a node */
#define ONNX_MAX_DIMS 8    /* of a tensor */

/* A name as read: bytes in the file (not NUL-terminated). */
typedef struct onnx_str {
    const char *p;
    size_t n;
} onnx_str;

/* A tensor (an initializer, or a Constant node's value) as read: its values are
 * raw_data (little-endian) or float_data / int64_data, checked against its dims. */
typedef struct onnx_tensor_in {
    onnx_str name;
    int ndim;
    int64_t dims[ONNX_MAX_DIMS];
    size_t count;        /* the product of dims */
    int type;            /* 1 float, 7 int64 */
    const unsigned char *raw; /* raw_data, or the packed float_data / int64_data */
    size_t raw_len;
    int packed;          /* raw holds float_data (fixed32) or int64_data (varints) */
} onnx_tensor_in;

typedef struct onnx_attr_in {
    onnx_str name;
    int type;       /* AttributeProto.type: 1 float, 2 int, 3 string, 4 tensor, 7 ints */
    float f;
    int64_t i;
    int n;          /* ints: how many (at most 8 kept; more is an error) */
    int64_t ints[8];
    onnx_str s;
    const unsigned char *t; /* a tensor's bytes (TensorProto) */
    size_t t_len;
} onnx_attr_in;

typedef struct onnx_node_in {
    onnx_str op, name, out;
    int nin, nattr;
    onnx_str in[ONNX_MAX_INPUTS];
    onnx_attr_in attr[ONNX_MAX_ATTRS];
} onnx_node_in;

/* What a kind's onnx_import takes from a node: the layer (kind, units, kernel, stride,
 * pad, bias) and the tensors that become its parameters and state, in the order of
 * cnn_layer's weights, biases, state (NULL: none; a missing bias is zeros). */
typedef struct onnx_take {
    cnn_layer layer;
    const onnx_tensor_in *weights, *bias, *state[2];
    int transposed; /* the weights are [K][N] (Gemm with transB 0), not [N][K] */
} onnx_take;

/* The tensor input k of node (an initializer or a constant) or NULL; the attribute
 * called name or NULL. */
typedef struct onnx_graph_in onnx_graph_in; /* onnx_import.c */
const onnx_tensor_in *onnx_input_tensor(const onnx_graph_in *g, const onnx_node_in *node, int k);
const onnx_attr_in *onnx_attr_of(const onnx_node_in *node, const char *name);
/* 1 if s is the NUL-terminated text t */
int onnx_is(onnx_str s, const char *t);
/* An int attribute (or its default when absent): 1, or 0 if present and not an int. */
int onnx_int(const onnx_node_in *node, const char *name, int64_t dflt, int64_t *v);
/* An ints attribute of want values each equal to v (or absent: default_ok): 1 or 0. */
int onnx_ints_all(const onnx_node_in *node, const char *name, int want, int64_t v,
                  int default_ok);
/* -1 with why naming the first of node's attributes not in the NULL-terminated list
 * known; 0 when there is none. */
int onnx_check_attrs(const onnx_node_in *node, const char *const *known, char *why, size_t len);
/* why = the formatted reason; @return -1 (a kind's onnx_import refusing). */
int onnx_refuse(char *why, size_t len, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Value i of a float tensor. */
float onnx_tensor_float(const onnx_tensor_in *t, size_t i);
/* A pooling node of op over square windows moved by equal strides, without padding,
 * floor (ceil_mode 0), no dilation: 1 with take's kernel and stride, 0 if node is not
 * op, -1 with why if it is op with something else (as a kind's onnx_import). */
int onnx_window_read(const onnx_node_in *node, const char *op, onnx_take *take, char *why,
                     size_t len);
/* A square 2-D window attribute (kernel_shape, strides): 1 with *k, or 0. */
int onnx_square(const onnx_node_in *node, const char *name, int64_t dflt, int64_t *k);

#endif
