/* onnx_import.c - an ONNX file as a model (cnn_onnx_import): a strict protobuf reader
 * (every length checked against what holds it, no recursion beyond the schema's
 * fixed depth), the graph's nodes read as one chain from the input to the output,
 * each taken by the layer kind it belongs to (cnn_kind.onnx_import) or, for the
 * operators that only rename or reshape (Identity, Constant, Flatten, a flattening
 * Reshape, a Pad of zeros), followed through; then the network built and checked as
 * `--arch` is, and the tensors copied into its parameters and state. Anything else is
 * one line naming the first node, operator or attribute it cannot take. */
#include "cnn.h"

#include "fileio.h"
#include "layer.h"
#include "onnx.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_FILE (1ull << 30)
#define MAX_NODES 1024
#define MAX_TENSORS 1024
#define MAX_ELEMENTS (1ull << 28) /* of one tensor */
#define MAX_SIDE 4096             /* of the input: channels, rows, columns */

/* ---------------------------------------------------------------- protobuf */

typedef struct pb_in {
    const unsigned char *p, *end;
} pb_in;

typedef struct pb_field {
    uint32_t num;
    unsigned wire;
    uint64_t v;                /* wire types 0, 1, 5: the value */
    const unsigned char *data; /* wire type 2: the bytes */
    size_t len;
} pb_field;

static int read_varint(pb_in *r, uint64_t *v)
{
    uint64_t x = 0;
    for (int shift = 0; shift < 70; shift += 7) {
        if (r->p >= r->end)
            return 0;
        const unsigned char b = *r->p++;
        if (shift == 63 && b > 1)
            return 0; /* more than 64 bits */
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 1;
        }
    }
    return 0;
}

/* The next field: 1, 0 at the end, -1 if the bytes are not protobuf. */
static int next_field(pb_in *r, pb_field *f)
{
    if (r->p == r->end)
        return 0;
    uint64_t k;
    if (!read_varint(r, &k) || (k >> 3) == 0 || (k >> 3) > 0x1fffffff)
        return -1;
    f->num = (uint32_t)(k >> 3), f->wire = (unsigned)(k & 7), f->data = NULL, f->len = 0;
    switch (f->wire) {
    case 0:
        return read_varint(r, &f->v) ? 1 : -1;
    case 1:
    case 5: {
        const size_t n = f->wire == 1 ? 8 : 4;
        if ((size_t)(r->end - r->p) < n)
            return -1;
        f->v = 0;
        for (size_t i = 0; i < n; i++)
            f->v |= (uint64_t)r->p[i] << (8 * i);
        r->p += n;
        return 1;
    }
    case 2: {
        uint64_t n;
        if (!read_varint(r, &n) || n > (uint64_t)(r->end - r->p))
            return -1;
        f->data = r->p, f->len = (size_t)n;
        r->p += n;
        return 1;
    }
    default: /* groups (3, 4) are not in ONNX's schema */
        return -1;
    }
}

static pb_in sub(const pb_field *f) { return (pb_in){f->data, f->data + f->len}; }
static onnx_str str_of(const pb_field *f) { return (onnx_str){(const char *)f->data, f->len}; }

int onnx_is(onnx_str s, const char *t)
{
    return strlen(t) == s.n && (s.n == 0 || memcmp(s.p, t, s.n) == 0);
}

static int same(onnx_str a, onnx_str b)
{
    return a.n == b.n && (a.n == 0 || memcmp(a.p, b.p, a.n) == 0);
}

/* ---------------------------------------------------------------- the graph as read */

typedef struct onnx_graph_in {
    onnx_node_in *node;
    int nodes;
    onnx_tensor_in *tensor; /* initializers, then Constant nodes' values */
    int tensors;
    onnx_str input, output; /* the one input that is not an initializer; the output */
    onnx_str mean, std, names; /* metadata input_mean, input_std, class_names (as export
                                  writes them), empty when absent */
    int64_t in_dims[4];
    int opset;
    const char *file; /* for messages */
    char *err;
    size_t errlen;
} onnx_graph_in;

/* One line into err: "FILE: what". @return CNN_ERR_FORMAT. */
static cnn_status bad(const onnx_graph_in *g, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
static cnn_status bad(const onnx_graph_in *g, const char *fmt, ...)
{
    char line[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    return cnn_errorf(CNN_ERR_FORMAT, g->err, g->errlen, "%s: %s", g->file, line);
}

/* A name for messages: at most 60 bytes, printable. */
static const char *shown(onnx_str s, char buf[64])
{
    size_t n = s.n < 60 ? s.n : 60;
    for (size_t i = 0; i < n; i++)
        buf[i] = s.p[i] >= 32 && s.p[i] < 127 ? s.p[i] : '?';
    buf[n] = '\0';
    if (s.n > 60)
        memcpy(buf + 57, "...", 4);
    return buf;
}

/* "node K (Op 'name')" for messages, K from 1 in the file's order. */
static const char *node_label(const onnx_graph_in *g, const onnx_node_in *n, char buf[160])
{
    char op[64], name[64];
    const int k = (int)(n - g->node) + 1;
    if (n->name.n)
        snprintf(buf, 160, "node %d (%s '%s')", k, shown(n->op, op), shown(n->name, name));
    else
        snprintf(buf, 160, "node %d (%s)", k, shown(n->op, op));
    return buf;
}

/* TensorProto: dims, data type, name, raw_data or packed float_data / int64_data. */
static cnn_status read_tensor(onnx_graph_in *g, pb_in r, onnx_tensor_in *t)
{
    *t = (onnx_tensor_in){0};
    pb_field f;
    int rc, has_values = 0;
    while ((rc = next_field(&r, &f)) > 0) {
        if (f.num == 1 && f.wire == 0) {
            if (t->ndim == ONNX_MAX_DIMS)
                return bad(g, "a tensor has more than %d dimensions", ONNX_MAX_DIMS);
            t->dims[t->ndim++] = (int64_t)f.v;
        } else if (f.num == 1 && f.wire == 2) {
            pb_in d = sub(&f);
            uint64_t v;
            while (d.p < d.end) {
                if (!read_varint(&d, &v))
                    return bad(g, "a tensor's dims are not protobuf");
                if (t->ndim == ONNX_MAX_DIMS)
                    return bad(g, "a tensor has more than %d dimensions", ONNX_MAX_DIMS);
                t->dims[t->ndim++] = (int64_t)v;
            }
        } else if (f.num == 2 && f.wire == 0) {
            t->type = f.v <= 100 ? (int)f.v : -1;
        } else if (f.num == 8 && f.wire == 2) {
            t->name = str_of(&f);
        } else if ((f.num == 9 || f.num == 4 || f.num == 7) && f.wire == 2) {
            if (has_values++)
                return bad(g, "a tensor holds its values twice");
            t->raw = f.data, t->raw_len = f.len, t->packed = f.num != 9;
        } else if (f.num == 4 || f.num == 7) {
            return bad(g, "tensor values that are not packed are not read");
        } else if (f.num == 14 && f.wire == 0 && f.v == 1) {
            return bad(g, "tensors with external data are not read: save the model with its "
                          "weights inside");
        }
    }
    if (rc < 0)
        return bad(g, "a tensor is not protobuf (truncated or corrupt)");
    uint64_t count = 1;
    for (int i = 0; i < t->ndim; i++) {
        if (t->dims[i] < 0 || (uint64_t)t->dims[i] > MAX_ELEMENTS)
            return bad(g, "a tensor has a dimension of %lld", (long long)t->dims[i]);
        count *= (uint64_t)t->dims[i];
        if (count > MAX_ELEMENTS)
            return bad(g, "a tensor has more than %llu values",
                       (unsigned long long)MAX_ELEMENTS);
    }
    t->count = (size_t)count;
    if (t->type != 1 && t->type != 7)
        return bad(g, "a tensor of data type %d: only float (1) and int64 (7) are read",
                   t->type);
    size_t have = t->raw_len / (t->type == 1 ? 4 : 8);
    if (t->packed && t->type == 7) { /* varints: count them */
        pb_in d = {t->raw, t->raw + t->raw_len};
        uint64_t v;
        for (have = 0; d.p < d.end; have++)
            if (!read_varint(&d, &v))
                return bad(g, "a tensor's int64_data is not protobuf");
    } else if (t->raw_len % (t->type == 1 ? 4 : 8)) {
        have = (size_t)-1;
    }
    if (have != t->count)
        return bad(g, "a tensor of %zu values holds %zu bytes of data", t->count, t->raw_len);
    return CNN_OK;
}

float onnx_tensor_float(const onnx_tensor_in *t, size_t i)
{
    const uint32_t bits = cnn_get_u32(t->raw + 4 * i);
    float v;
    memcpy(&v, &bits, 4);
    return v;
}

static int64_t tensor_int(const onnx_tensor_in *t, size_t i)
{
    if (!t->packed)
        return (int64_t)cnn_get_u64(t->raw + 8 * i);
    pb_in d = {t->raw, t->raw + t->raw_len};
    uint64_t v = 0;
    for (size_t k = 0; k <= i; k++)
        read_varint(&d, &v); /* counted when read */
    return (int64_t)v;
}

static cnn_status read_attr(onnx_graph_in *g, pb_in r, onnx_attr_in *a)
{
    *a = (onnx_attr_in){0};
    pb_field f;
    int rc;
    while ((rc = next_field(&r, &f)) > 0) {
        if (f.num == 1 && f.wire == 2)
            a->name = str_of(&f);
        else if (f.num == 20 && f.wire == 0)
            a->type = f.v <= 100 ? (int)f.v : -1;
        else if (f.num == 2 && f.wire == 5) {
            const uint32_t bits = (uint32_t)f.v;
            memcpy(&a->f, &bits, 4);
        } else if (f.num == 3 && f.wire == 0)
            a->i = (int64_t)f.v;
        else if (f.num == 4 && f.wire == 2)
            a->s = str_of(&f);
        else if (f.num == 5 && f.wire == 2)
            a->t = f.data, a->t_len = f.len;
        else if (f.num == 8) { /* ints, one by one or packed */
            pb_in d = f.wire == 2 ? sub(&f) : (pb_in){0};
            uint64_t v = f.v;
            do {
                if (f.wire == 2 && !read_varint(&d, &v))
                    return bad(g, "an attribute's ints are not protobuf");
                if (a->n == 8)
                    return bad(g, "an attribute has more than 8 ints");
                a->ints[a->n++] = (int64_t)v;
            } while (f.wire == 2 && d.p < d.end);
        }
    }
    return rc < 0 ? bad(g, "an attribute is not protobuf (truncated or corrupt)") : CNN_OK;
}

static cnn_status read_node(onnx_graph_in *g, pb_in r, onnx_node_in *n)
{
    *n = (onnx_node_in){0};
    pb_field f;
    int rc, outs = 0;
    while ((rc = next_field(&r, &f)) > 0) {
        if (f.wire != 2)
            continue;
        if (f.num == 1) {
            if (n->nin == ONNX_MAX_INPUTS)
                return bad(g, "a node has more than %d inputs", ONNX_MAX_INPUTS);
            n->in[n->nin++] = str_of(&f);
        } else if (f.num == 2) {
            if (outs++ == 0)
                n->out = str_of(&f);
            else if (f.len) /* a second output that something could read */
                n->out.n = (size_t)-1;
        } else if (f.num == 3) {
            n->name = str_of(&f);
        } else if (f.num == 4) {
            n->op = str_of(&f);
        } else if (f.num == 5) {
            if (n->nattr == ONNX_MAX_ATTRS)
                return bad(g, "a node has more than %d attributes", ONNX_MAX_ATTRS);
            const cnn_status st = read_attr(g, sub(&f), &n->attr[n->nattr++]);
            if (st != CNN_OK)
                return st;
        } else if (f.num == 7 && f.len && !(f.len == 7 && !memcmp(f.data, "ai.onnx", 7))) {
            char b[64];
            return bad(g, "an operator of domain '%s': only ONNX's own are read",
                       shown(str_of(&f), b));
        }
    }
    if (rc < 0)
        return bad(g, "a node is not protobuf (truncated or corrupt)");
    char b[160];
    if (!outs || n->out.n == (size_t)-1)
        return bad(g, "%s has %s outputs: one is read", node_label(g, n, b),
                   outs ? "several" : "no");
    return CNN_OK;
}

/* ValueInfoProto of the graph's input: its name and, when float, its dims (-1: not a
 * fixed size); elem type into *elem. */
static cnn_status read_value_info(onnx_graph_in *g, pb_in r, onnx_str *name, int *elem,
                                  int64_t dims[4], int *ndim)
{
    pb_field f, t, tt, s, d = {0};
    int rc;
    *ndim = 0, *elem = 0;
    while ((rc = next_field(&r, &f)) > 0) {
        if (f.num == 1 && f.wire == 2)
            *name = str_of(&f);
        if (f.num != 2 || f.wire != 2)
            continue;
        pb_in type = sub(&f);
        while ((rc = next_field(&type, &t)) > 0) {
            if (t.num != 1 || t.wire != 2)
                continue;
            pb_in tensor_type = sub(&t);
            while ((rc = next_field(&tensor_type, &tt)) > 0) {
                if (tt.num == 1 && tt.wire == 0)
                    *elem = tt.v <= 100 ? (int)tt.v : -1;
                if (tt.num != 2 || tt.wire != 2)
                    continue;
                pb_in shape = sub(&tt);
                while ((rc = next_field(&shape, &s)) > 0) {
                    if (s.num != 1 || s.wire != 2)
                        continue;
                    if (*ndim == 4)
                        return bad(g, "the input has more than 4 dimensions");
                    int64_t v = -1;
                    pb_in dim = sub(&s);
                    while ((rc = next_field(&dim, &d)) > 0)
                        if (d.num == 1 && d.wire == 0)
                            v = (int64_t)d.v;
                    if (rc < 0)
                        break;
                    dims[(*ndim)++] = v;
                }
                if (rc < 0)
                    break;
            }
            if (rc < 0)
                break;
        }
        if (rc < 0)
            break;
    }
    return rc < 0 ? bad(g, "the graph's input or output is not protobuf") : CNN_OK;
}

static const onnx_tensor_in *tensor_named(const onnx_graph_in *g, onnx_str name)
{
    for (int i = g->tensors - 1; i >= 0; i--) /* the latest of a name */
        if (same(g->tensor[i].name, name))
            return &g->tensor[i];
    return NULL;
}

/* GraphProto: nodes, initializers, the one input that is not an initializer, the
 * one output. */
static cnn_status read_graph(onnx_graph_in *g, pb_in r)
{
    pb_field f;
    int rc, inputs = 0, outputs = 0;
    onnx_str in_names[MAX_TENSORS + 1];
    int64_t dims[MAX_TENSORS + 1][4];
    int ndims[MAX_TENSORS + 1], elems[MAX_TENSORS + 1];
    cnn_status st = CNN_OK;
    while (st == CNN_OK && (rc = next_field(&r, &f)) > 0) {
        if (f.wire != 2)
            continue;
        if (f.num == 1) {
            if (g->nodes == MAX_NODES)
                return bad(g, "more than %d nodes", MAX_NODES);
            st = read_node(g, sub(&f), &g->node[g->nodes++]);
        } else if (f.num == 5) {
            if (g->tensors == MAX_TENSORS)
                return bad(g, "more than %d initializers", MAX_TENSORS);
            st = read_tensor(g, sub(&f), &g->tensor[g->tensors++]);
        } else if (f.num == 11) {
            if (inputs > MAX_TENSORS)
                return bad(g, "more than %d graph inputs", MAX_TENSORS);
            st = read_value_info(g, sub(&f), &in_names[inputs], &elems[inputs], dims[inputs],
                                 &ndims[inputs]);
            inputs++;
        } else if (f.num == 12) {
            int64_t od[4];
            int on, oe;
            if (outputs++)
                return bad(g, "the graph has more than one output: one is read");
            st = read_value_info(g, sub(&f), &g->output, &oe, od, &on);
        } else if (f.num == 15) {
            return bad(g, "sparse initializers are not read");
        }
    }
    if (st != CNN_OK)
        return st;
    if (rc < 0)
        return bad(g, "the graph is not protobuf (truncated or corrupt)");
    int found = 0;
    for (int i = 0; i < inputs; i++) {
        if (tensor_named(g, in_names[i]))
            continue; /* an initializer listed as an input, as older exporters do */
        if (found++)
            return bad(g, "the graph has more than one input: one image tensor is read");
        char b[64];
        if (elems[i] != 1 || ndims[i] != 4)
            return bad(g, "the input '%s' is not a float tensor of 4 dimensions (N x C x H x W)",
                       shown(in_names[i], b));
        for (int k = 1; k < 4; k++)
            if (dims[i][k] < 1 || dims[i][k] > MAX_SIDE)
                return bad(g, "the input '%s' has dimension %d of %lld: C, H and W must be "
                              "fixed, 1 to %d", shown(in_names[i], b), k,
                           (long long)dims[i][k], MAX_SIDE);
        g->input = in_names[i];
        memcpy(g->in_dims, dims[i], sizeof g->in_dims);
    }
    if (!found)
        return bad(g, "the graph has no input");
    if (!outputs)
        return bad(g, "the graph has no output");
    return CNN_OK;
}

static cnn_status read_model(onnx_graph_in *g, const unsigned char *buf, size_t len)
{
    pb_in r = {buf, buf + len};
    pb_field f, o;
    int rc, graphs = 0;
    const unsigned char *graph = NULL;
    size_t graph_len = 0;
    while ((rc = next_field(&r, &f)) > 0) {
        if (f.num == 7 && f.wire == 2) {
            graphs++, graph = f.data, graph_len = f.len;
        } else if (f.num == 8 && f.wire == 2) {
            pb_in set = sub(&f);
            onnx_str domain = {"", 0};
            uint64_t version = 0;
            while ((rc = next_field(&set, &o)) > 0) {
                if (o.num == 1 && o.wire == 2)
                    domain = str_of(&o);
                if (o.num == 2 && o.wire == 0)
                    version = o.v;
            }
            if (rc < 0)
                break;
            if (domain.n == 0 || onnx_is(domain, "ai.onnx"))
                g->opset = version <= 1000 ? (int)version : 1000;
        } else if (f.num == 14 && f.wire == 2) {
            pb_in entry = sub(&f);
            onnx_str key = {"", 0}, value = {"", 0};
            while ((rc = next_field(&entry, &o)) > 0)
                if (o.wire == 2 && (o.num == 1 || o.num == 2))
                    *(o.num == 1 ? &key : &value) = str_of(&o);
            if (rc < 0)
                break;
            if (onnx_is(key, "input_mean"))
                g->mean = value;
            else if (onnx_is(key, "input_std"))
                g->std = value;
            else if (onnx_is(key, "class_names"))
                g->names = value;
        }
    }
    if (rc < 0 || len == 0)
        return bad(g, "not an ONNX model (not protobuf, truncated or corrupt)");
    if (graphs != 1)
        return bad(g, "not an ONNX model (%s)", graphs ? "several graphs" : "no graph");
    if (g->opset < 9 || g->opset > 21)
        return bad(g, "ONNX opset %d: opsets 9 to 21 are read", g->opset);
    return read_graph(g, (pb_in){graph, graph + graph_len});
}

/* ---------------------------------------------------------------- for the kinds */

const onnx_attr_in *onnx_attr_of(const onnx_node_in *node, const char *name)
{
    for (int i = 0; i < node->nattr; i++)
        if (onnx_is(node->attr[i].name, name))
            return &node->attr[i];
    return NULL;
}

const onnx_tensor_in *onnx_input_tensor(const onnx_graph_in *g, const onnx_node_in *node, int k)
{
    return k < node->nin && node->in[k].n ? tensor_named(g, node->in[k]) : NULL;
}

int onnx_int(const onnx_node_in *node, const char *name, int64_t dflt, int64_t *v)
{
    const onnx_attr_in *a = onnx_attr_of(node, name);
    if (a && a->type != 2)
        return 0;
    *v = a ? a->i : dflt;
    return 1;
}

int onnx_ints_all(const onnx_node_in *node, const char *name, int want, int64_t v,
                  int default_ok)
{
    const onnx_attr_in *a = onnx_attr_of(node, name);
    if (!a)
        return default_ok;
    if (a->type != 7 || a->n != want)
        return 0;
    for (int i = 0; i < a->n; i++)
        if (a->ints[i] != v)
            return 0;
    return 1;
}

int onnx_square(const onnx_node_in *node, const char *name, int64_t dflt, int64_t *k)
{
    const onnx_attr_in *a = onnx_attr_of(node, name);
    if (!a) {
        *k = dflt;
        return dflt > 0;
    }
    if (a->type != 7 || a->n != 2 || a->ints[0] != a->ints[1])
        return 0;
    *k = a->ints[0];
    return 1;
}

int onnx_refuse(char *why, size_t len, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(why, len, fmt, ap);
    va_end(ap);
    return -1;
}

int onnx_check_attrs(const onnx_node_in *node, const char *const *known, char *why, size_t len)
{
    for (int i = 0; i < node->nattr; i++) {
        int k = 0;
        while (known[k] && !onnx_is(node->attr[i].name, known[k]))
            k++;
        if (!known[k]) {
            char b[64];
            return onnx_refuse(why, len, "the attribute '%s' is not read",
                               shown(node->attr[i].name, b));
        }
    }
    return 0;
}

int onnx_window_read(const onnx_node_in *node, const char *op, onnx_take *take, char *why,
                     size_t len)
{
    static const char *const known[] = {"kernel_shape", "strides", "pads", "ceil_mode",
                                        "dilations", "storage_order", "auto_pad",
                                        "count_include_pad", NULL};
    const onnx_attr_in *auto_pad = onnx_attr_of(node, "auto_pad");
    int64_t k, s, ceil_mode, order;
    if (!onnx_is(node->op, op))
        return 0;
    if (onnx_check_attrs(node, known, why, len))
        return -1;
    if (!onnx_square(node, "kernel_shape", 0, &k) || !onnx_square(node, "strides", 1, &s))
        return onnx_refuse(why, len, "a window or strides that are not square are not read");
    if (!onnx_ints_all(node, "pads", 4, 0, 1) || (auto_pad && !onnx_is(auto_pad->s, "NOTSET")))
        return onnx_refuse(why, len, "padding is not read");
    if (!onnx_int(node, "ceil_mode", 0, &ceil_mode) || ceil_mode)
        return onnx_refuse(why, len, "ceil_mode is not read");
    if (!onnx_ints_all(node, "dilations", 2, 1, 1))
        return onnx_refuse(why, len, "dilation is not read");
    if (!onnx_int(node, "storage_order", 0, &order) || order)
        return onnx_refuse(why, len, "storage_order 1 is not read");
    take->layer.kernel = (int)k, take->layer.stride = (int)s;
    return 1;
}

/* ---------------------------------------------------------------- the chain */

/* The nodes that only rename or reshape the running tensor: 1 followed (the running
 * tensor is now its output), 0 not such a node, or an error status (negative). */
static int pass_through(onnx_graph_in *g, const onnx_node_in *n)
{
    if (onnx_is(n->op, "Identity"))
        return 1;
    if (onnx_is(n->op, "Flatten")) {
        int64_t axis;
        if (!onnx_int(n, "axis", 1, &axis) || axis != 1)
            return -1;
        return 1;
    }
    const onnx_tensor_in *t = onnx_input_tensor(g, n, 1);
    if (onnx_is(n->op, "Reshape")) { /* to N x (the rest): [-1 or 0, K or -1] */
        if (!t || t->type != 7 || t->count != 2)
            return -1;
        const int64_t a = tensor_int(t, 0), b = tensor_int(t, 1);
        const int64_t rest = g->in_dims[1] * g->in_dims[2] * g->in_dims[3];
        if ((a != -1 && a != 0) || (b != -1 && !(b > 0 && b <= rest)))
            return -1;
        return 1;
    }
    if (onnx_is(n->op, "Pad")) { /* of nothing: pads all 0 */
        const onnx_attr_in *pads = onnx_attr_of(n, "pads");
        for (size_t i = 0; t && t->type == 7 && i < t->count; i++)
            if (tensor_int(t, i) != 0)
                return -1;
        for (int i = 0; pads && i < pads->n; i++)
            if (pads->ints[i] != 0)
                return -1;
        return (t && t->type == 7) || (pads && !t) ? 1 : -1;
    }
    return 0;
}

typedef struct chain {
    int n;
    onnx_take take[CNN_MAX_LAYERS];
} chain;

/* Node i's data input is the running tensor cur, its other inputs are tensors. */
static cnn_status check_inputs(onnx_graph_in *g, const onnx_node_in *n, onnx_str cur)
{
    char b[160], d[64];
    if (n->nin < 1 || !same(n->in[0], cur))
        return bad(g, "%s reads '%s', not the output of the node before it: only a chain of "
                      "layers from the input is read",
                   node_label(g, n, b), n->nin ? shown(n->in[0], d) : "nothing");
    for (int k = 1; k < n->nin; k++)
        if (n->in[k].n && !tensor_named(g, n->in[k]))
            return bad(g, "%s reads '%s', which is neither an initializer nor a constant "
                          "(missing, or computed: only a chain of layers is read)",
                       node_label(g, n, b), shown(n->in[k], d));
    return CNN_OK;
}

/* Constant nodes become tensors; an Identity of a tensor is that tensor again. */
static cnn_status constant(onnx_graph_in *g, const onnx_node_in *n, int *is_tensor)
{
    *is_tensor = 0;
    const onnx_tensor_in *alias = NULL;
    if (onnx_is(n->op, "Identity") && n->nin == 1 && (alias = tensor_named(g, n->in[0])))
        *is_tensor = 1;
    else if (onnx_is(n->op, "Constant"))
        *is_tensor = 1;
    if (!*is_tensor)
        return CNN_OK;
    if (g->tensors == MAX_TENSORS)
        return bad(g, "more than %d initializers and constants", MAX_TENSORS);
    onnx_tensor_in *t = &g->tensor[g->tensors];
    if (alias) {
        *t = *alias;
    } else {
        const onnx_attr_in *v = onnx_attr_of(n, "value");
        char b[160];
        if (!v || v->type != 4 || n->nattr != 1)
            return bad(g, "%s: only a tensor 'value' is read", node_label(g, n, b));
        const cnn_status st = read_tensor(g, (pb_in){v->t, v->t + v->t_len}, t);
        if (st != CNN_OK)
            return st;
    }
    t->name = n->out;
    g->tensors++;
    return CNN_OK;
}

/* The index of the last node that computes (not a Softmax at the end, nor renames after
 * it): the output layer's. */
static int last_computing(const onnx_graph_in *g)
{
    int last = g->nodes - 1;
    while (last > 0 && (onnx_is(g->node[last].op, "Identity") ||
                        onnx_is(g->node[last].op, "Softmax")))
        last--;
    return last;
}

static cnn_status walk(onnx_graph_in *g, chain *c)
{
    onnx_str cur = g->input;
    int softmax = 0;
    const int last = last_computing(g);
    char b[160], why[160];
    for (int i = 0; i < g->nodes; i++) {
        const onnx_node_in *n = &g->node[i];
        int is_tensor;
        cnn_status st = constant(g, n, &is_tensor);
        if (st != CNN_OK)
            return st;
        if (is_tensor)
            continue;
        if ((st = check_inputs(g, n, cur)) != CNN_OK)
            return st;
        if (softmax)
            return bad(g, "%s follows the Softmax: it must be last", node_label(g, n, b));
        if (onnx_is(n->op, "Softmax")) {
            int64_t axis;
            if (i < last || !onnx_int(n, "axis", g->opset >= 13 ? -1 : 1, &axis) ||
                (axis != 1 && axis != -1))
                return bad(g, "%s: only a Softmax over the classes (axis 1) at the end is "
                              "read", node_label(g, n, b));
            softmax = 1, cur = n->out;
            continue;
        }
        int taken = 0;
        for (int k = 0; k < cnn_kind_count() && !taken; k++) {
            const cnn_kind *kind = cnn_kind_of((cnn_layer_kind)k);
            if (!kind->onnx_import)
                continue;
            onnx_take t = {.layer.kind = (cnn_layer_kind)k};
            why[0] = '\0';
            taken = kind->onnx_import(g, n, i == last, &t, why, sizeof why);
            if (taken < 0)
                return bad(g, "%s: %s", node_label(g, n, b), why);
            if (taken && c->n == CNN_MAX_LAYERS)
                return bad(g, "more than %d layers", CNN_MAX_LAYERS);
            if (taken)
                c->take[c->n++] = t;
        }
        if (!taken) {
            const int r = pass_through(g, n);
            if (r < 0)
                return bad(g, "%s: only a Flatten at axis 1, a Reshape to N rows or a Pad of "
                              "nothing is read between layers", node_label(g, n, b));
            if (!r)
                return bad(g, "%s: not an operator this program reads (see cnn.h, ONNX)",
                           node_label(g, n, b));
        }
        cur = n->out;
    }
    if (!same(cur, g->output))
        return bad(g, "the graph's output '%s' is not the end of its chain of layers",
                   shown(g->output, why));
    return CNN_OK;
}

/* ---------------------------------------------------------------- the model */

/* dst = the tensor's n floats (transposed from [K][N] to [N][K] when asked), all
 * finite. */
static cnn_status copy_floats(onnx_graph_in *g, float *dst, size_t n, const onnx_tensor_in *t,
                              int transposed, size_t N, const char *what, int layer)
{
    char b[64];
    if (!t) {
        memset(dst, 0, n * sizeof *dst);
        return CNN_OK;
    }
    if (t->type != 1 || t->count != n)
        return bad(g, "layer %d's %s '%s' has %zu %s values, the network needs %zu", layer,
                   what, shown(t->name, b), t->count, t->type == 1 ? "float" : "int64", n);
    for (size_t i = 0; i < n; i++) {
        const size_t at = transposed ? (i % (n / N)) * N + i / (n / N) : i;
        dst[i] = onnx_tensor_float(t, at);
        if (!isfinite(dst[i]))
            return bad(g, "layer %d's %s '%s' holds %g", layer, what, shown(t->name, b),
                       (double)dst[i]);
    }
    return CNN_OK;
}

static cnn_status build(onnx_graph_in *g, const chain *c, cnn_model *m)
{
    char desc[CNN_ARCH_LEN] = "", token[64], line[400];
    size_t at = 0;
    for (int i = 0; i < c->n; i++) {
        cnn_kind_of(c->take[i].layer.kind)->describe(&c->take[i].layer, token, sizeof token);
        at += (size_t)snprintf(desc + at, at < sizeof desc ? sizeof desc - at : 0, "%s%s",
                               i ? "," : "", token);
        if (at >= sizeof desc)
            return bad(g, "the network is too long to describe");
    }
    cnn_arch a;
    if (cnn_arch_build(&a, desc, (int)g->in_dims[1], (int)g->in_dims[2], (int)g->in_dims[3],
                       line, sizeof line) != CNN_OK)
        return bad(g, "the layers read (%s) make no network here: %s", desc, line);
    cnn_status st = cnn_model_alloc(m, &a);
    if (st != CNN_OK)
        return cnn_errorf(st, g->err, g->errlen, "%s: out of memory", g->file);
    for (int i = 0; i < a.n && st == CNN_OK; i++) {
        const cnn_layer *l = &a.layer[i];
        const onnx_take *t = &c->take[i];
        st = copy_floats(g, m->params + l->weights_at, l->n_weights, t->weights, t->transposed,
                         (size_t)l->units, "weights", i + 1);
        if (st == CNN_OK && l->n_bias)
            st = copy_floats(g, m->params + l->bias_at, l->n_bias, t->bias, 0, 1, "biases",
                             i + 1);
        for (int k = 0; k < 2 && st == CNN_OK && l->n_state; k++)
            st = copy_floats(g, m->state + l->state_at + k * l->n_state / 2, l->n_state / 2,
                             t->state[k], 0, 1, k ? "running variance" : "running mean", i + 1);
    }
    char why[160];
    if (st == CNN_OK && cnn_state_check(&a, m->state, why, sizeof why))
        st = bad(g, "%s", why);
    if (st != CNN_OK)
        cnn_model_free(m);
    return st;
}

/* Comma-separated numbers of s into v[0..max): how many, or -1 if s is not that. */
static int numbers(onnx_str s, float *v, int max)
{
    char text[512];
    if (s.n == 0 || s.n >= sizeof text)
        return -1;
    memcpy(text, s.p, s.n);
    text[s.n] = '\0';
    int n = 0;
    for (char *p = text, *end;; p = end + 1) {
        if (n == max)
            return -1;
        const double d = strtod(p, &end);
        if (end == p || !isfinite(d))
            return -1;
        v[n++] = (float)d;
        if (*end != ',')
            return *end ? -1 : n;
    }
}

/* The normalisation and class names the metadata give (as cnn_onnx_export writes
 * them), when they are there. */
static cnn_status metadata(onnx_graph_in *g, cnn_model *m)
{
    const int C = m->arch.C;
    if (g->mean.n || g->std.n) {
        cnn_norm n = {.kind = CNN_NORM_MEAN_STD, .channels = C};
        int unit = 1;
        if (C > CNN_NORM_CHANNELS || numbers(g->mean, n.mean, C + 1) != C ||
            numbers(g->std, n.std, C + 1) != C || !cnn_norm_valid(&n, C))
            return bad(g, "the metadata's input_mean and input_std are not %d numbers each, "
                          "deviations > 0", C);
        for (int c = 0; c < C; c++)
            unit &= n.mean[c] == 0.5f && n.std[c] == 1.0f;
        m->norm = unit ? (cnn_norm){.kind = CNN_NORM_UNIT} : n;
    }
    if (!g->names.n)
        return CNN_OK;
    const int K = m->arch.classes;
    char *text = malloc(g->names.n + 1);
    const char **names = calloc((size_t)K, sizeof *names);
    int n = 0;
    if (text && names) {
        memcpy(text, g->names.p, g->names.n);
        text[g->names.n] = '\0';
        for (char *p = text; p && n <= K; n++) {
            char *nl = strchr(p, '\n');
            if (nl)
                *nl = '\0';
            if (n < K)
                names[n] = p;
            p = nl ? nl + 1 : NULL;
        }
    }
    const cnn_status st = !text || !names ? CNN_ERR_NOMEM
                          : n != K        ? CNN_ERR_ARG
                                          : cnn_model_set_names(m, names, K);
    free(text);
    free(names);
    if (st == CNN_ERR_NOMEM)
        return cnn_errorf(st, g->err, g->errlen, "%s: out of memory", g->file);
    return st == CNN_OK ? CNN_OK
                        : bad(g, "the metadata's class_names are not %d names, one per line, "
                                 "each 1 to %d printable bytes", K, CNN_NAME_MAX - 1);
}

cnn_status cnn_onnx_import_mem(cnn_model *m, const unsigned char *buf, size_t len,
                               const char *name, char *err, size_t errlen)
{
    onnx_graph_in g = {.file = name ? name : "(memory)", .err = err, .errlen = errlen};
    g.node = calloc(MAX_NODES, sizeof *g.node);
    g.tensor = calloc(MAX_TENSORS, sizeof *g.tensor);
    chain *c = calloc(1, sizeof *c);
    cnn_status st = g.node && g.tensor && c ? CNN_OK
                                            : cnn_errorf(CNN_ERR_NOMEM, err, errlen,
                                                         "%s: out of memory", g.file);
    if (st == CNN_OK && !buf)
        st = bad(&g, "no bytes");
    if (st == CNN_OK)
        st = read_model(&g, buf, len);
    if (st == CNN_OK)
        st = walk(&g, c);
    cnn_model built = {0};
    if (st == CNN_OK)
        st = build(&g, c, &built);
    if (st == CNN_OK && (st = metadata(&g, &built)) != CNN_OK)
        cnn_model_free(&built);
    if (st == CNN_OK)
        *m = built;
    free(g.node);
    free(g.tensor);
    free(c);
    return st;
}

cnn_status cnn_onnx_import(cnn_model *m, const char *path, char *err, size_t errlen)
{
    unsigned char *buf;
    size_t len;
    cnn_status st = cnn_read_file(path, MAX_FILE, &buf, &len, err, errlen);
    if (st != CNN_OK)
        return st;
    st = cnn_onnx_import_mem(m, buf, len, path, err, errlen);
    free(buf);
    return st;
}
