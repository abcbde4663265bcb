/* layer.h - what a layer kind is (internal). Each kind is described once, in its own
 * file under src/layers/, by a cnn_kind: how its token in a network description
 * parses and is written back, how shapes flow through it, its parameters and
 * per-sample scratch, its initialisation fan-in, its FLOPs, and its forward and
 * backward for both engines. cnn_kind_of() is the one table the description parser
 * (arch.c), the parameters and activations (model.c), the walk (net.c) and the
 * trainer (train.c) loop over; no kind knows another. */
#ifndef CNN_LAYER_H
#define CNN_LAYER_H

#include "cnn.h"

#include <stddef.h>
#include <stdint.h>

/* One pass of one sample through a layer (or, for a kind with CNN_KIND_ROWS on the
 * BLAS engine, of the chunk's nb samples at once, one row each). */
typedef struct cnn_pass {
    const cnn_layer *l;
    int blas;           /* the engine: BLAS (1) or the reference loops (0) */
    int nb;             /* samples in this pass: 1, or the chunk's rows */
    const float *in;    /* the input (rows ldin floats apart) */
    int ldin;
    float *out;         /* forward: the output to write; backward: what the forward wrote
                           (rows, and those of dout, ldout floats apart) */
    int ldout;
    size_t stored;      /* floats of one sample's output as stored (its layout's length) */
    const float *w;     /* the layer's weights in the parameters, and its biases (NULL */
    const float *bias;  /*   without) */
    float alpha;        /* backward: adds alpha times the gradient of w and bias */
    float *gw, *gbias;  /*   into these */
    const float *dout;  /* backward: the gradient of the output */
    float *din;         /* backward: the gradient of the input, NULL when nothing needs it */
    float *col;         /* the sample's scratch (cnn_kind.scratch floats) */
    uint8_t *arg;       /* the sample's bytes (cnn_kind.bytes), e.g. a max pool's argmax */
    int in_blocked;     /* BLAS: the input is in pool-block order (see conv.c) */
    int window_ties;    /* conv: make identical patches of a pool window tie (conv_ties.h) */
    cnn_pool_ties ties; /* backward of max pooling */
    uint64_t key;       /* training: this sample's and layer's random key (dropout); 0 in
                           evaluation */
    const double *batch_sums; /* a CNN_KIND_BATCH_STATS layer in a training step: its sums
                                 over the whole minibatch (forward: the input's; backward,
                                 once dout is known: the gradient's), NULL in evaluation */
    double batch_count; /*   the values each of those sums is over */
    const float *state; /* the layer's model state (cnn_kind.state floats) */
    int team;           /* threads the pass may split over (1: the caller alone) */
    uint64_t *passes;   /* [team]: each member adds the parts of the pass it ran */
} cnn_pass;

enum {
    CNN_KIND_ROWS = 1,         /* BLAS engine: one pass over the chunk's rows */
    CNN_KIND_OUTPUT = 2,       /* the output layer: last, classes = its units */
    CNN_KIND_BLOCKABLE = 4,    /* BLAS engine: can write its output in pool-block order */
    CNN_KIND_ELEMENTWISE = 8,  /* works in any layout: pool-block order passes through */
    CNN_KIND_READS_BLOCKS = 16, /* a 2x2 pool: reads pool-block order; its backward needs
                                   only what it stores (cnn_kind.bytes) unless the `all`
                                   tie rule compares its input */
    CNN_KIND_HE_BEFORE = 32,   /* a layer it follows is initialised with He's scaling */
    CNN_KIND_GRAD_FIRST = 64,  /* forms its parameter gradient before its input
                                  gradient: the step cannot update it in place when a
                                  layer below needs that input gradient */
    CNN_KIND_ALIGNED = 128,    /* each sample's output is 64-byte aligned (a per-sample
                                  SGEMM writes it); others are rows without padding */
    CNN_KIND_BATCH_STATS = 256, /* training needs sums over the whole minibatch (bn): the
                                   step stops at the layer, forward and backward, until
                                   every chunk's sums are in (cnn_kind.sums) */
    CNN_KIND_AFFINE_ROWS = 512, /* output channel c is row c of the weights (n_weights / OC
                                   values) applied to the input, plus bias[c] when the
                                   layer has a bias (bias = 1 gives it one): a
                                   per-channel affine map after it folds into it */
};

struct onnx_out; /* onnx.h */
struct onnx_graph_in;
struct onnx_node_in;
struct onnx_take;

typedef struct cnn_kind {
    const char *name;    /* the token's name: "conv" */
    const char *grammar; /* as error messages list it: "conv<F>[b]" */
    unsigned flags;      /* CNN_KIND_* */
    /* The rest of the token after the name into l (kind already set): 1, 0 if it is
     * not this kind's syntax, -1 if a value in it is out of range (*why says which,
     * e.g. "is too wide: at most 65536 filters"). */
    int (*parse)(const char *rest, size_t len, cnn_layer *l, const char **why);
    /* The token in canonical spelling. */
    void (*describe)(const cnn_layer *l, char *buf, size_t len);
    /* l's output shape (OC, OH, OW) from its input (C, H, W): NULL, or why not. */
    const char *(*shape)(cnn_layer *l);
    /* Weights and biases in the parameter vector; fan-in for initialisation (unused,
     * and may be NULL, with an init of its own). */
    size_t (*weights)(const cnn_layer *l);
    size_t (*biases)(const cnn_layer *l);
    double (*fan_in)(const cnn_layer *l);
    /* FLOPs (2 per multiply-add) of one forward pass of one sample. */
    double (*flops)(const cnn_layer *l);
    /* Per-sample scratch floats and bytes the passes use (NULL: none). */
    size_t (*scratch)(const cnn_layer *l);
    size_t (*bytes)(const cnn_layer *l);
    /* BLAS engine, for a kind without CNN_KIND_ROWS: 1 if a layer of this shape runs
     * one pass over a chunk's images (cnn_layer.whole_chunk); NULL: never. */
    int (*whole_chunk)(const cnn_layer *l);
    /* Set up once per activations: conv's check of its SGEMM (conv_ties.h). 1, 0, or
     * -1 out of memory; NULL: nothing. */
    int (*window_ties)(const cnn_layer *l);
    /* Floats of model state besides the parameters (NULL: none), and the initial
     * weights and state when not the default (normal weights by fan-in, state 0). */
    size_t (*state)(const cnn_layer *l);
    void (*init)(const cnn_layer *l, float *weights, float *state);
    /* CNN_KIND_BATCH_STATS: doubles of the whole-minibatch sums; a sample's share of
     * them added into acc, forward (from p->in) and backward (from p->dout); and the
     * state after a training step whose forward sums over count values were these. */
    /* The state a model file or an import may hold: NULL if usable, else why not
     * (bn: "a running variance below 0"); NULL hook: any finite state. */
    const char *(*check_state)(const cnn_layer *l, const float *state);
    size_t (*sums)(const cnn_layer *l);
    void (*forward_sums)(const cnn_pass *p, double *acc);
    void (*backward_sums)(const cnn_pass *p, double *acc);
    void (*update_state)(const cnn_layer *l, float *state, const double *sums, double count);
    /* A kind that is, in evaluation, y = scale[c] x + shift[c] per channel (bn): those
     * from its weights, biases and state (cnn_model_fold); NULL: not such a kind. */
    void (*eval_affine)(const cnn_layer *l, const float *w, const float *bias,
                        const float *state, float *scale, float *shift);
    /* 1 if a layer of this shape works on pool-block order as on plain maps (as an
     * element-wise kind always does); NULL: only plain maps, unless element-wise. */
    int (*any_layout)(const cnn_layer *l);
    void (*forward)(const cnn_pass *p);
    void (*backward)(const cnn_pass *p);
    /* ONNX (onnx.h): l's nodes reading tensor in and writing tensor out, with its
     * weights, biases (NULL without) and state (NULL without). */
    void (*onnx_export)(struct onnx_out *g, const cnn_layer *l, const char *in,
                        const char *out, const float *w, const float *bias,
                        const float *state);
    /* ONNX import (onnx.h): 1 if node, the chain's next (last: the last that computes,
     * maybe before a Softmax), is this kind's, with take filled; 0 if it is not; -1 if
     * it is this kind's operator with something the kind cannot take (why says what,
     * e.g. "group 2: grouped convolutions are not read"). NULL: never imported. */
    int (*onnx_import)(const struct onnx_graph_in *g, const struct onnx_node_in *node,
                       int last, struct onnx_take *take, char *why, size_t len);
} cnn_kind;

/* The description of a kind (NULL for none); the kinds, in the order of the table. */
const cnn_kind *cnn_kind_of(cnn_layer_kind k);
int cnn_kind_count(void);

#define CNN_MAX_UNITS 65536 /* filters of a conv, outputs of a dense layer */

/* The layers' state in a model (finite, and as each kind's check_state wants): 0, or
 * -1 with why naming the layer. */
int cnn_state_check(const cnn_arch *a, const float *state, char *why, size_t len);

/* Shared by kinds that take a width: the digits of rest into *units (at most
 * max): 1, 0 if rest is not a number, -1 if it is over max. */
int cnn_kind_units(const char *rest, size_t len, int max, int *units);

/* Shared by the pooling kinds: "<K>" or "<K>s<S>" into l->kernel, l->stride (as
 * parse), its spelling "<name><K>s<S>" (as describe), and the output shape of such a
 * window without padding (as shape). */
int cnn_kind_window(const char *rest, size_t len, cnn_layer *l, const char **why);
void cnn_kind_window_describe(const cnn_layer *l, char *buf, size_t len);
const char *cnn_kind_window_shape(cnn_layer *l);

/* Shared by kinds without options (relu, pool, gap): the name alone parses (as
 * parse) and is the spelling (as describe). */
int cnn_kind_bare(const char *rest, size_t len, cnn_layer *l, const char **why);
void cnn_kind_name_describe(const cnn_layer *l, char *buf, size_t len);

#endif
