/* onnx.h - the part of ONNX this project writes (internal): a protobuf encoder into a
 * growing buffer, and the graph each layer kind writes itself into (cnn_kind's
 * onnx_export). Opset 13, IR version 7; tensors are float32 (int64 for a shape).
 * The schema's field numbers are those of onnx.proto (ModelProto, GraphProto,
 * NodeProto, AttributeProto, TensorProto, ValueInfoProto). */
#ifndef CNN_ONNX_H
#define CNN_ONNX_H

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

#endif
