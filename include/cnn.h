/*
 * cnn.h - small convolutional networks in C, from the network of "CNNs, Part 2".
 *
 * A network is a description ("conv8,pool,softmax10", the post's: a 3x3 convolution
 * with 8 filters, 2x2 max pooling, dense + softmax) built for C x H x W inputs
 * (cnn_arch_build); models hold its parameters; a trainer trains them with
 * cross-entropy and minibatch SGD, Adam or AdamW. Two engines share this API:
 *   CNN_ENGINE_BLAS       im2col + SGEMM for convolutions, SGEMV/SGER or SGEMM for
 *                         dense layers (OpenBLAS through CBLAS); the product.
 *   CNN_ENGINE_REFERENCE  plain loops transcribing the post's algorithm; the oracle.
 *
 * Layout (all float32, row-major, N first): an input is [C][H][W] (a batch
 * [N][C][H][W]); a conv's filters [F][C][K][K], a dense layer's W [N][K] and b [N],
 * with K its input flattened as [C][H][W]; each layer's parameters follow the
 * previous one's in one vector (cnn_layer.weights_at, bias_at).
 *
 * The library never exits or prints; fallible calls return cnn_status. There is
 * no global state: the random generator and every buffer belong to the caller.
 *
 * Contracts that hold for every function below unless its comment says otherwise:
 *   Ownership  the caller owns every pointer it passes and every struct it declares;
 *              a function that allocates says so and names the function that frees
 *              (cnn_model_free, cnn_acts_free, cnn_trainer_free, cnn_dataset_free,
 *              cnn_checkpoint_free; pixel buffers from the readers: free()). A failed
 *              call leaves its outputs as they were, or zeroed where it says so.
 *   Threads    no function keeps state between calls, so calls on different objects
 *              may run at the same time on different threads. One object (a model
 *              being trained, a trainer, an acts, a rng) is used by one thread at a
 *              time; a model only read (cnn_forward with its own acts each) may be
 *              shared. A trainer runs its own OpenMP threads inside cnn_train_step
 *              and cnn_evaluate.
 *   Errors     CNN_ERR_ARG a NULL or out-of-range argument, CNN_ERR_NOMEM an
 *              allocation, CNN_ERR_IO and CNN_ERR_FORMAT a file (with one line naming
 *              the file and the problem in err, errlen bytes, when err is not NULL),
 *              CNN_ERR_NUMERIC a loss that is not finite (the parameters untouched).
 * Versions: CNN_VERSION is the project's version; the shared library's soname is
 * libcnn.so.0.MINOR while the version is 0.x (a minor release may change the ABI)
 * and libcnn.so.MAJOR from 1.0 on (a major release changes it).
 */
#ifndef CNN_H
#define CNN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CNN_VERSION "0.6.0"

/* The library's public functions; everything else in it is hidden from programs that
 * link the shared library. */
#if defined(__GNUC__) && !defined(_WIN32)
#define CNN_API __attribute__((visibility("default")))
#else
#define CNN_API
#endif

/* ---------------------------------------------------------------- status */

typedef enum cnn_status {
    CNN_OK = 0,
    CNN_ERR_NOMEM = -1,   /* an allocation failed */
    CNN_ERR_ARG = -2,     /* an argument is out of range */
    CNN_ERR_IO = -3,      /* reading or writing a file failed */
    CNN_ERR_FORMAT = -4,  /* a file's content is malformed */
    CNN_ERR_NUMERIC = -5, /* a loss or parameter became NaN or infinite */
} cnn_status;

/** @return a short English description of @p s (never NULL). */
CNN_API const char *cnn_status_str(cnn_status s);

/* ---------------------------------------------------------------- random */

/** xoshiro256** state; seed it with cnn_rng_seed. Same seed, same stream, on every machine. */
typedef struct cnn_rng {
    uint64_t s[4];
} cnn_rng;

CNN_API void cnn_rng_seed(cnn_rng *r, uint64_t seed);
CNN_API uint64_t cnn_rng_u64(cnn_rng *r);
/** @return a uniform double in [0, 1). */
CNN_API double cnn_rng_uniform(cnn_rng *r);
/** @return a standard normal double (Marsaglia's polar method). */
CNN_API double cnn_rng_normal(cnn_rng *r);
/** @return a uniform integer in [0, n), without modulo bias; n > 0. */
CNN_API uint64_t cnn_rng_below(cnn_rng *r, uint64_t n);
/** Fisher-Yates shuffle of idx[0..n). */
CNN_API void cnn_rng_shuffle(cnn_rng *r, uint32_t *idx, size_t n);

/* ---------------------------------------------------------------- layers */
/* The layers' kernels are internal (src/layers/kernels.h); networks are built from
 * descriptions (below). */

/** Pool tie rule: which of several equal maxima of a 2x2 block receive its gradient. */
typedef enum cnn_pool_ties {
    CNN_TIES_SINGLE = 0, /* the first max in the order (0,0),(0,1),(1,0),(1,1); PyTorch, Keras */
    CNN_TIES_ALL = 1,    /* every position equal to the max; the post's code */
} cnn_pool_ties;

/* ---------------------------------------------------------------- architectures */
/*
 * A network is a list of layers, built from a description: comma-separated layers,
 * shapes flowing from the input (C x H x W, from the data set):
 *   conv<F>[b][k<K>][s<S>][p<P>]
 *               convolution with F filters over all input channels: a K x K window
 *               (1..7, default 3) moved by S (1..4, default 1) over the input with P
 *               zeros on every side (0..K-1, default 0); b: with a bias. Output
 *               floor((H + 2P - K) / S) + 1 each way. "conv8" is the post's 3x3 valid
 *               convolution without bias. Written back as b, k, s, p in that order,
 *               defaults left out (conv32k3b is conv32b).
 *   relu        max(x, 0)
 *   pool        2x2 max pooling, stride 2 (an odd last row or column is dropped)
 *   maxpool<K>s<S>, avgpool<K>s<S>
 *               K x K max or average pooling moved by S (each 1..7; S = K when s<S>
 *               is left out), no padding: floor((H - K) / S) + 1 each way (PyTorch's)
 *   gap         global average pooling: C x H x W to C x 1 x 1
 *   dropout<P>  inverted dropout of P percent (1..99) in training, the identity in
 *               evaluation; the masks come from (seed, epoch, sample, layer) alone
 *   bn          batch normalization per channel (over N x H x W; after a dense layer,
 *               per unit over N), as PyTorch's BatchNorm2d/1d: in training the
 *               minibatch's mean and biased variance (eps 1e-5; the whole minibatch,
 *               across threads and ranks), then gamma (init 1) and beta (init 0); the
 *               running mean and unbiased variance (momentum 0.1) are model state, and
 *               evaluation uses them. Training with bn needs batches of 2 or more.
 *   dense<N>    fully connected, N outputs, with a bias (input flattened [C][H][W])
 *   softmax<N>  the output layer: fully connected with a bias, softmax, cross-entropy;
 *               last, exactly once. softmax<N>ls<P>: trained with label smoothing of P
 *               percent (1..99; PyTorch's label_smoothing = P/100); evaluation's loss
 *               is plain cross-entropy
 * Both tie rules (cnn_pool_ties) apply to every max pooling. The post's network is
 * "conv8,pool,softmax10". Parameters are one flat vector, layer by layer: a conv's
 * filters [F][C][K][K] then its bias [F]; a dense or softmax layer's W [N][K] then b [N].
 */
#define CNN_ARCH_POST "conv8,pool,softmax10"
#define CNN_MAX_LAYERS 32
#define CNN_ARCH_LEN 512 /* the longest description, with its NUL */
#define CNN_MAX_TEAM 64  /* threads one chunk's passes split over, at most */

typedef enum cnn_layer_kind {
    CNN_LAYER_CONV = 0,
    CNN_LAYER_RELU = 1,
    CNN_LAYER_POOL = 2,
    CNN_LAYER_DENSE = 3,
    CNN_LAYER_SOFTMAX = 4,
    CNN_LAYER_MAXPOOL = 5,
    CNN_LAYER_AVGPOOL = 6,
    CNN_LAYER_GAP = 7,
    CNN_LAYER_DROPOUT = 8,
    CNN_LAYER_BN = 9,
} cnn_layer_kind;

/** One layer: its kind, hyperparameters, shapes and where its parameters are. */
typedef struct cnn_layer {
    cnn_layer_kind kind;
    int units;      /* conv: filters; dense, softmax: outputs; dropout: percent; else 0 */
    int bias;       /* 1 if the layer has a bias (conv<F>b, dense, softmax) */
    int kernel, stride, pad; /* conv: a kernel x kernel window moved by stride, over the
                                input with pad zeros on every side; maxpool, avgpool:
                                the window and stride; else 0 */
    int smoothing;  /* softmax: label smoothing in training, percent (0: none) */
    int C, H, W;    /* input: channels, height, width */
    int OC, OH, OW; /* output (dense, softmax: units x 1 x 1) */
    int pool_order; /* BLAS engine: output in pool-block order (a conv, or a relu after
                       such a conv, feeding a 2x2 pool) */
    int whole_chunk; /* BLAS engine: one pass over a chunk's images (dense layers: an
                        SGEMM over its rows; convs whose GEMMs gain from it: one im2col
                        matrix and one SGEMM each way), not one pass per image */
    int he_init;    /* a relu follows: He's initialisation */
    size_t weights_at, n_weights; /* its weights: where they start in the parameter
                                     vector, how many */
    size_t bias_at, n_bias;       /* its biases: the same (n_bias 0 without) */
    size_t state_at, n_state;     /* its state in the model's state vector (bn: running
                                     mean [C], then running variance [C]) */
} cnn_layer;

typedef struct cnn_arch {
    int C, H, W;     /* input */
    int n;           /* layers */
    cnn_layer layer[CNN_MAX_LAYERS];
    int classes;     /* the softmax layer's outputs */
    size_t n_params;
    size_t n_state;  /* floats of state the layers keep besides their parameters */
} cnn_arch;

/** Build and check the network `desc` for C x H x W inputs. An impossible stack (an
 *  unknown layer, a value out of range, a window larger than its padded input, no
 *  softmax layer or one that is not last, too many layers or parameters) is
 *  CNN_ERR_ARG with one line naming the layer in err. */
CNN_API cnn_status cnn_arch_build(cnn_arch *a, const char *desc, int C, int H, int W, char *err,
                          size_t errlen);
/** The canonical description ("conv8,pool,softmax10"). @return buf. */
CNN_API const char *cnn_arch_describe(const cnn_arch *a, char *buf, size_t len);
/** 1 if a and b are the same network for the same input. */
CNN_API int cnn_arch_equal(const cnn_arch *a, const cnn_arch *b);
/** Multiply-add FLOPs (2 each) of one training image: every conv and dense layer's
 *  forward, weight gradient and, above the first layer with parameters, input
 *  gradient (over all OH x OW output positions). The post's network: 275,808. */
CNN_API double cnn_arch_train_flops(const cnn_arch *a);
/** Floats one sample's output of layer l takes (OC * OH * OW). */
CNN_API size_t cnn_layer_out_len(const cnn_layer *l);

/* ---------------------------------------------------------------- model */

typedef enum cnn_engine {
    CNN_ENGINE_BLAS = 0,
    CNN_ENGINE_REFERENCE = 1,
} cnn_engine;

/* ---------------------------------------------------------------- inputs */

#define CNN_NORM_CHANNELS 4 /* channels a per-channel normalisation covers */

/** How uint8 pixels become a network's input. */
typedef enum cnn_norm_kind {
    CNN_NORM_UNIT = 0,     /* px / 255 - 0.5 on every channel: the post's scaling, and the
                              default for IDX data (MNIST, Fashion-MNIST) */
    CNN_NORM_MEAN_STD = 1, /* (px / 255 - mean[c]) / std[c] in float, as torchvision's
                              ToTensor then Normalize: the default for colour data */
} cnn_norm_kind;

typedef struct cnn_norm {
    cnn_norm_kind kind;
    int channels; /* MEAN_STD: the input's channels, 1..CNN_NORM_CHANNELS */
    float mean[CNN_NORM_CHANNELS], std[CNN_NORM_CHANNELS]; /* std > 0 */
} cnn_norm;

/** Convert one image, C planes of `plane` pixels each, into dst. */
CNN_API void cnn_norm_apply(const cnn_norm *n, float *dst, const uint8_t *px, int C, size_t plane);
/** What pixel value v of channel c becomes. */
CNN_API float cnn_norm_value(const cnn_norm *n, int c, uint8_t v);
/** 1 if n is usable for C-channel inputs (UNIT always; MEAN_STD with channels == C,
 *  finite means and finite positive deviations). */
CNN_API int cnn_norm_valid(const cnn_norm *n, int C);

/** A model owns one parameter array, and the names of its classes when it has them. */
typedef struct cnn_model {
    cnn_arch arch;  /* the network */
    size_t n_params;
    float *params; /* owned, 64-byte aligned: each layer's at its weights_at, bias_at */
    cnn_norm norm; /* how its inputs are made from pixels (CNN_NORM_UNIT after init) */
    size_t n_state;
    float *state;  /* owned: arch.n_state floats the layers keep besides their
                      parameters (bn's running statistics), NULL when none */
    char *names;   /* owned: NULL, or arch.classes names, each NUL-terminated, back to
                      back (cnn_model_set_names) */
} cnn_model;

/** Allocate m for network a and initialise it, layer by layer from rng, biases 0: a
 *  layer a relu follows gets He's normal * sqrt(2 / fan_in) (fan_in C*K*K for a conv,
 *  the input length for a dense layer); the others the post's scaling, normal / fan_in
 *  (the post's network exactly: filters randn / 9, W randn / K). */
CNN_API cnn_status cnn_model_init(cnn_model *m, const cnn_arch *a, cnn_rng *rng);
/** The same with every parameter 0. */
CNN_API cnn_status cnn_model_alloc(cnn_model *m, const cnn_arch *a);
CNN_API void cnn_model_free(cnn_model *m);
/** For inference: *out (allocated here) is m with each bn that follows a conv or dense
 *  layer folded into it (its weights' row c times gamma[c] / sqrt(var[c] + eps), its
 *  bias, added if it had none, moved to beta[c] - mean[c] times that), as bn computes
 *  in evaluation; other layers, the normalisation and class names as m's. The same
 *  probabilities within float rounding, one pass over each folded map fewer. A folded
 *  model is a plain one (save, export, train); it no longer has the bn. */
CNN_API cnn_status cnn_model_fold(const cnn_model *m, cnn_model *out);
/** Name m's classes: names[0..n) with n == m->arch.classes, each 1..CNN_NAME_MAX-1
 *  printable bytes (UTF-8 allowed, no control characters); NULL removes them.
 *  CNN_ERR_ARG if they do not fit. */
#define CNN_NAME_MAX 64
CNN_API cnn_status cnn_model_set_names(cnn_model *m, const char *const *names, int n);
/** The name of class k, or NULL when the model has none. */
CNN_API const char *cnn_model_class_name(const cnn_model *m, int k);

/** Activations and scratch of up to `cap` samples for one thread; one allocation.
 *  Sample b's pieces start at b times the stride of their kind. Per layer l: out[l]
 *  its outputs, dout[l] their gradients ([cap][stride[l]]), cols[l] its scratch (a
 *  conv's im2col; [cap][col_strides[l]]), args[l] its bytes (a max pool's argmax). On
 *  the BLAS engine a conv that a 2x2 pool reads keeps its output in pool-block order
 *  (cnn_layer.pool_order); probs and x are what a user reads and writes. */
typedef struct cnn_acts {
    int cap;
    void *arena;
    size_t stride[CNN_MAX_LAYERS];
    float *out[CNN_MAX_LAYERS];
    float *dout[CNN_MAX_LAYERS];
    size_t col_strides[CNN_MAX_LAYERS];
    float *cols[CNN_MAX_LAYERS];
    uint8_t *args[CNN_MAX_LAYERS];
    float *probs;   /* [cap][classes] */
    float *x;       /* [cap][C][H][W] input converted from pixels, or gathered */
    /* BLAS engine, per conv layer in pool-block order: 1 where this process's SGEMM can
     * give identical patches different outputs (OpenBLAS's AVX2 kernels), so the walk
     * makes each pool window's identical patches' outputs equal after it (set by the
     * alloc functions, from a check of the SGEMM on the layer's shape) */
    uint8_t window_ties[CNN_MAX_LAYERS];
    /* 0: evaluation (dropout is the identity); else a training step's key (the trainer
     * sets it from its seed and epoch): a sample's dropout masks come from it, the
     * sample's index and the layer */
    uint64_t train_key;
    /* threads a chunk's wide passes may split over (a conv lowered per chunk runs its
     * groups on them): the trainer sets it when it has more threads than chunks; 0 or
     * 1: the calling thread alone. Results never depend on it. */
    int team;
    /* passes each member of the team ran, summed over the acts' life: how the work
     * was split (the thread suite counts it) */
    uint64_t team_passes[CNN_MAX_TEAM];
} cnn_acts;

/** For one sample (cap 1), or for chunks of up to cap samples of network arch. */
CNN_API cnn_status cnn_acts_alloc(cnn_acts *a, const cnn_arch *arch, int cap);
CNN_API void cnn_acts_free(cnn_acts *a);

/** Forward one image x [C][H][W]; probabilities land in a->probs.
 *  @return the training loss for label (0 if label < 0): cross-entropy, against labels
 *  smoothed as the output layer says (softmax<N>ls<P>), whose gradient cnn_backward forms. */
CNN_API float cnn_forward(const cnn_model *m, cnn_acts *a, const float *x, int label, cnn_engine e);
/** Backward after cnn_forward with the same x and label: ACCUMULATES the parameter
 *  gradient into grad (a flat vector laid out like m->params). dx [C][H][W] receives
 *  the input gradient when not NULL. */
CNN_API void cnn_backward(const cnn_model *m, cnn_acts *a, float *grad, float *dx, const float *x,
                  cnn_engine e, cnn_pool_ties ties);
/** @return the index of the largest probability (the first one on ties). */
CNN_API int cnn_argmax(const float *v, int n);

/* ---------------------------------------------------------------- training */

typedef enum cnn_optimizer {
    CNN_OPTIMIZER_SGD = 0,
    CNN_OPTIMIZER_ADAM = 1,
    CNN_OPTIMIZER_ADAMW = 2,
} cnn_optimizer;

typedef struct cnn_train_config {
    cnn_engine engine;
    cnn_pool_ties ties;
    int batch;   /* the largest minibatch a step will see, >= 1 */
    int threads; /* OpenMP threads, >= 1 */
    float lr;    /* SGD learning rate, finite and > 0 */
    /* The optimiser, PyTorch's semantics. SGD: g = mean gradient + weight_decay * p;
     * v = momentum * v + g; p -= lr * (nesterov ? g + momentum * v : v). All 0: the
     * post's SGD. Adam: g = mean gradient + weight_decay * p; m += (1 - beta1) *
     * (g - m); v = beta2 * v + (1 - beta2) * g * g; at update t (from 1),
     * p -= (lr / (1 - beta1^t)) * (m / (sqrt(v) / sqrt(1 - beta2^t) + eps)). AdamW:
     * the same without the decay in g, and p *= 1 - lr * weight_decay first. */
    float momentum;     /* SGD: 0 <= momentum < 1 */
    int nesterov;       /* SGD: 1 for Nesterov momentum (needs momentum > 0) */
    float weight_decay; /* >= 0 */
    cnn_optimizer optimizer;
    float beta1, beta2; /* Adam, AdamW: 0 <= beta < 1 (0.9, 0.999 by default) */
    float eps;          /* Adam, AdamW: > 0 (1e-8 by default) */
    uint64_t seed;      /* with the epoch (cnn_trainer_set_epoch), the dropout masks */
} cnn_train_config;

/** The post's defaults: BLAS engine, single-max ties, batch 1, 1 thread, lr 0.005. */
CNN_API cnn_train_config cnn_train_config_default(void);

/** Loss and accuracy of the samples of one step or one evaluation. */
typedef struct cnn_stats {
    double loss_sum;
    size_t correct;
    size_t count;
} cnn_stats;

/* The trainer owns every buffer a step needs (per-thread activations, per-chunk
 * gradients); a step allocates nothing. A minibatch of n samples is cut into
 * max(ceil(n / CNN_CHUNK_MAX), min(n, CNN_CHUNKS_MIN)) chunks whose boundaries
 * depend only on n; each chunk's gradient is summed as a unit and the chunks in
 * chunk order, so the result is bit-identical whatever the thread count. */
#define CNN_CHUNK_MAX 16
#define CNN_CHUNKS_MIN 4
typedef struct cnn_trainer cnn_trainer;

/** A trainer for network a with configuration c (CNN_ERR_ARG if c is out of range). */
CNN_API cnn_status cnn_trainer_create(cnn_trainer **out, const cnn_arch *a,
                                      const cnn_train_config *c);
CNN_API void cnn_trainer_free(cnn_trainer *t);
CNN_API const cnn_train_config *cnn_trainer_config(const cnn_trainer *t);

/** One SGD step on the n (1 <= n <= batch) samples images[idx[i]], labels[idx[i]]
 *  (idx NULL means 0..n-1): params -= lr * mean gradient. images is [.][C][H][W].
 *  Adds the samples' loss and accuracy, measured before the update, to *st.
 *  @return CNN_ERR_NUMERIC (parameters untouched) if a loss is not finite. */
CNN_API cnn_status cnn_train_step(cnn_trainer *t, cnn_model *m, const float *images,
                          const uint8_t *labels, const uint32_t *idx, int n, cnn_stats *st);

/** The epoch of the next steps (from 1): with the configuration's seed and each
 *  sample's index in the data set, it draws the dropout masks. */
CNN_API void cnn_trainer_set_epoch(cnn_trainer *t, uint64_t epoch);
/** The learning rate of the next steps (a schedule sets it step by step); finite > 0. */
CNN_API cnn_status cnn_trainer_set_lr(cnn_trainer *t, float lr);
/** All the optimiser keeps between steps, for checkpoints: *len floats (SGD with
 *  momentum: the velocities [n_params]; Adam, AdamW: the first moments [n_params] then
 *  the second moments [n_params]; NULL and 0 otherwise), and the count of updates made
 *  (Adam's bias correction reads it), which a resumed run sets. */
CNN_API float *cnn_trainer_state(cnn_trainer *t, size_t *len);
CNN_API uint64_t *cnn_trainer_updates(cnn_trainer *t);

/** Loss and accuracy of the model on n samples, in parallel, deterministic; when pred
 *  is not NULL, pred[i] receives the predicted class of sample i. */
CNN_API cnn_status cnn_evaluate(cnn_trainer *t, const cnn_model *m, const float *images,
                        const uint8_t *labels, size_t n, uint8_t *pred, cnn_stats *st);

/* The same two for a data set kept as its uint8 pixels (a quarter of the memory of
 * floats): each chunk's images are converted by the model's normalisation (m->norm)
 * inside the step, in the activations its thread owns, bit for bit as cnn_norm_apply.
 * Same results. */
CNN_API cnn_status cnn_train_step_u8(cnn_trainer *t, cnn_model *m, const uint8_t *pixels,
                             const uint8_t *labels, const uint32_t *idx, int n, cnn_stats *st);
CNN_API cnn_status cnn_evaluate_u8(cnn_trainer *t, const cnn_model *m, const uint8_t *pixels,
                           const uint8_t *labels, size_t n, uint8_t *pred, cnn_stats *st);
/** How one training image is moved as it is converted (data augmentation): turned by
 *  angle degrees counter-clockwise and scaled by 1 + zoom about its centre (bilinear,
 *  pixels from outside the image are value 0, the background), shifted by dy rows and
 *  dx columns (-8..8), which without a turn or a zoom is a crop of the image padded
 *  with |dy|, |dx| zeros, then mirrored left to right when flip is 1. */
typedef struct cnn_move {
    int8_t dy, dx;
    uint8_t flip;
    float angle; /* -180..180; 0: none */
    float zoom;  /* -0.5..0.5; 0: none */
} cnn_move;
/** As cnn_train_step_u8, with image i moved by moves[i] as it is converted: data
 *  augmentation without a copy of the data set. moves NULL: no move. */
CNN_API cnn_status cnn_train_step_u8_moved(cnn_trainer *t, cnn_model *m, const uint8_t *pixels,
                                   const uint8_t *labels, const uint32_t *idx, int n,
                                   const cnn_move *moves, cnn_stats *st);
/** The moves of samples idx[0..n) in an epoch into out[n]: shifts of -shift..shift
 *  each way (shift <= 8); when flip, a mirror with probability 1/2; turns uniform in
 *  -rotate..rotate degrees (rotate <= 180) and zooms uniform in -zoom..zoom (zoom <=
 *  0.5). A function of (seed, epoch, sample) alone, so the same for any thread count,
 *  any cut of the minibatch and after a resume (what `cnn train --shift/--crop-pad/
 *  --flip/--rotate/--zoom` use). */
CNN_API void cnn_draw_moves(cnn_move *out, uint64_t seed, uint64_t epoch, const uint32_t *idx,
                            int n, int shift, int flip, float rotate, float zoom);

/* ---------------------------------------------------------------- data */

/** dst[i] = src[i] / 255 - 0.5, the post's input scaling. */
CNN_API void cnn_pixels_to_float(float *dst, const uint8_t *src, size_t n);

/** A synthetic, separable set of n greyscale CNN_SYNTH_SIDE x CNN_SYNTH_SIDE uint8
 *  images of CNN_SYNTH_CLASSES classes: class k is a bright 5x5 square at one of ten
 *  places, jittered by up to 1 pixel, over uniform noise. */
#define CNN_SYNTH_SIDE 28
#define CNN_SYNTH_CLASSES 10
CNN_API void cnn_synth_digits(uint8_t *images, uint8_t *labels, size_t n, cnn_rng *rng);

/* ---------------------------------------------------------------- data files */
/*
 * Fallible file functions return a cnn_status and, on error, write one line naming
 * the file and the problem into err (errlen bytes, may be 0). They never print.
 */

/** Where a data set came from (it decides the default normalisation). */
typedef enum cnn_data_format {
    CNN_DATA_SYNTHETIC = 0,
    CNN_DATA_IDX = 1,     /* MNIST-style IDX files */
    CNN_DATA_CIFAR = 2,   /* CIFAR-10 binary batches */
    CNN_DATA_FOLDER = 3,  /* an image folder: one folder of PNG, JPEG, PGM or PPM files
                             per class */
} cnn_data_format;

/** A labelled image set in memory. */
typedef struct cnn_dataset {
    size_t n;        /* images */
    int channels;    /* of each pixel (1: greyscale, 3: RGB) */
    int rows, cols;  /* pixels per image: rows x cols */
    uint8_t *pixels; /* [n][channels][rows][cols], owned */
    uint8_t *labels; /* [n], owned */
    cnn_data_format format;
    int n_names;     /* classes named (0: none) */
    char *names;     /* owned: NULL, or n_names names, each NUL-terminated, back to back */
} cnn_dataset;

/** Read an IDX image file (magic 0x00000803: n, rows, cols, then the pixels), raw or
 *  gzip-compressed. Rejects a wrong magic, zero or oversized dimensions, and a file
 *  holding more or fewer bytes than its header promises. On success *pixels
 *  (malloc'ed, the caller frees) holds n * rows * cols bytes. */
CNN_API cnn_status cnn_idx_read_images(const char *path, uint8_t **pixels, size_t *n, int *rows,
                               int *cols, char *err, size_t errlen);
/** Read an IDX label file (magic 0x00000801), raw or gzip; every label must be below
 *  classes. */
CNN_API cnn_status cnn_idx_read_labels(const char *path, int classes, uint8_t **labels, size_t *n,
                               char *err, size_t errlen);
/** Load the MNIST split "train" or "t10k" from dir: tries `<split>-images-idx3-ubyte`
 *  and `<split>-images.idx3-ubyte`, each also with `.gz` (likewise for labels), and
 *  checks that the image and label counts agree and the labels are 0..9. */
CNN_API cnn_status cnn_mnist_load(const char *dir, const char *split, cnn_dataset *out, char *err,
                          size_t errlen);
/** n synthetic images (cnn_synth_digits, from seed) as a data set. */
CNN_API cnn_status cnn_dataset_synthetic(cnn_dataset *out, size_t n, uint64_t seed);
/** Bytes of one image: channels * rows * cols. */
CNN_API size_t cnn_dataset_image_len(const cnn_dataset *d);
/** The largest label plus one (0 for an empty set): the classes a network needs. */
CNN_API int cnn_dataset_classes(const cnn_dataset *d);
CNN_API void cnn_dataset_free(cnn_dataset *d);
/** The name of class k, or NULL. */
CNN_API const char *cnn_dataset_class_name(const cnn_dataset *d, int k);
/** The per-channel mean and population standard deviation of d's pixels / 255, in
 *  double, as a CNN_NORM_MEAN_STD normalisation (a channel of one value gets std 1).
 *  CNN_ERR_ARG for an empty set or more than CNN_NORM_CHANNELS channels. */
CNN_API cnn_status cnn_dataset_norm(const cnn_dataset *d, cnn_norm *out);

/** The CIFAR-10 binary format in dir: split "train" reads data_batch_1.bin ..
 *  data_batch_5.bin, "test" test_batch.bin; records of one label byte then 1,024 red,
 *  1,024 green and 1,024 blue bytes (32 x 32, row-major), so [3][32][32] as stored. A
 *  file must be a whole, non-zero number of records; the class names are the lines of
 *  batches.meta.txt (up to 256, none empty, blank lines at the end ignored) and every
 *  label must have one. */
CNN_API cnn_status cnn_cifar10_load(const char *dir, const char *split, cnn_dataset *out,
                                    char *err, size_t errlen);

/** Progress of a long load: done of total files (called from the loading thread). */
typedef void (*cnn_progress_fn)(size_t done, size_t total, void *ctx);

/** An image folder, torchvision's ImageFolder layout: dir/<split>/<class>/<file>, the
 *  classes the sorted folder names, the files PNG, JPEG, PGM or PPM (by content, not
 *  by name), decoded in parallel. Every image of the set must have the size and
 *  channels of the first (greyscale: 1; colour: 3, an alpha channel dropped); the first
 *  that differs, an undecodable file, an empty class folder or an entry that is
 *  neither a file nor a folder is one line naming the file. With classes_of (the
 *  training set, for a test split), the classes are its names and a folder of another
 *  name is an error. progress may be NULL. */
CNN_API cnn_status cnn_folder_load(const char *dir, const char *split,
                                   const cnn_dataset *classes_of, cnn_dataset *out,
                                   cnn_progress_fn progress, void *ctx, char *err,
                                   size_t errlen);

/** A data set in dir, of whichever format is there: MNIST-style IDX files
 *  (cnn_mnist_load), CIFAR-10 batches (cnn_cifar10_load) or an image folder
 *  (cnn_folder_load). split: "train" or "test"; for a test split, train (may be NULL)
 *  gives an image folder its classes. */
CNN_API cnn_status cnn_dataset_load(const char *dir, const char *split, const cnn_dataset *train,
                                    cnn_dataset *out, cnn_progress_fn progress, void *ctx,
                                    char *err, size_t errlen);

/** Read one image file, PNG, JPEG, PGM or PPM (by content): *channels 1 (greyscale) or
 *  3 (RGB; alpha dropped, 16-bit samples scaled to 8, palettes expanded), *pixels
 *  (malloc'ed) [channels][rows][cols]. Sides up to CNN_IMAGE_MAX_SIDE. */
#define CNN_IMAGE_MAX_SIDE 16384
CNN_API cnn_status cnn_image_read(const char *path, uint8_t **pixels, int *channels, int *rows,
                                  int *cols, char *err, size_t errlen);
/** The same from bytes in memory (name: for the messages). */
CNN_API cnn_status cnn_image_decode(const uint8_t *data, size_t len, const char *name,
                                    uint8_t **pixels, int *channels, int *rows, int *cols,
                                    char *err, size_t errlen);
/** Read a binary (P5) or plain (P2) PGM image; pixels are rescaled to 0..255 when the
 *  file's maxval is not 255. *pixels (malloc'ed) holds rows * cols bytes. */
CNN_API cnn_status cnn_pgm_read(const char *path, uint8_t **pixels, int *rows, int *cols, char *err,
                        size_t errlen);

/* ---------------------------------------------------------------- model files */
/*
 * All integers and floats little-endian. Version 1, the post's network (conv<F>, pool,
 * softmax<N>), which is always written in it:
 *   0  char[8]  magic "CNNMODEL"
 *   8  u32      format version (1)
 *  12  u32 x 5  C, H, W, F, classes
 *  32  u64      P, the number of float32 parameters that follow
 *  40  f32[P]   filters [F][C][3][3], then W [classes][K], then b [classes]
 *  40+4P u32    CRC-32 (zlib, IEEE) of every byte before it
 * Version 2, any other network:
 *   0  char[8]  magic "CNNMODEL"
 *   8  u32      format version (2)
 *  12  u32 x 3  C, H, W (the input)
 *  24  u32      L, the length of the network's description (1..511)
 *  28  char[L]  the description (cnn_arch_describe), printable ASCII, no NUL
 *  28+L u64     P
 *  36+L f32[P]  the parameters, layer by layer (cnn_arch_build)
 *  then u32     CRC-32 of every byte before it
 * Version 3, a network with a normalisation other than CNN_NORM_UNIT or with class
 * names: version 2's fields up to the description, then
 *  28+L u32     the normalisation's kind (0 UNIT, 1 MEAN_STD)
 *       u32     K, its channels (0 for UNIT, else C, at most 4)
 *       f32[K]  the means, then f32[K] the deviations
 *       u32     N, the bytes of the class names (0: none)
 *       char[N] the names, each NUL-terminated, exactly `classes` of them
 *  then as version 2 from the parameter count: u64 P, f32[P], CRC-32.
 * Version 4, a network with state (bn's running statistics): version 3's fields,
 * then u64 S (the network's state floats) and f32[S], the layers' state in order
 * (bn: running mean [C], running variance [C]); then u64 P, f32[P], CRC-32.
 * A model is written in the lowest version that holds it.
 */
#define CNN_MODEL_MAGIC "CNNMODEL"
#define CNN_MODEL_VERSION 4u

/** Save atomically: a temporary file in the same directory, fsync, rename, fsync of
 *  the directory. An interrupted or failed save leaves any previous file intact. */
CNN_API cnn_status cnn_model_save(const cnn_model *m, const char *path, char *err, size_t errlen);
/** Load and check everything (magic, version, the network: it must build and have P
 *  parameters, size, CRC, finite parameters); m is allocated on success and untouched
 *  on failure. Reads both versions. */
CNN_API cnn_status cnn_model_load(cnn_model *m, const char *path, char *err, size_t errlen);

/* ---------------------------------------------------------------- ONNX */
/*
 * ONNX (opset 13, IR version 7), the format deployment runtimes read. The graph's
 * input "input" is N x C x H x W float32 (N symbolic), each pixel p (0..255) of
 * channel c given as (p / 255 - mean[c]) / std[c]; its output "probabilities" is
 * N x classes. Metadata: "cnn_arch" (the network), "input_mean" and "input_std" (per
 * channel, comma-separated: 0.5 and 1 for this project's px/255 - 0.5), and
 * "class_names" (one per line) when the model has names. Layers: Conv (kernel,
 * stride, pads, bias), Relu, MaxPool, AveragePool, GlobalAveragePool, Gemm (after a
 * Flatten of maps), BatchNormalization (the running statistics), Dropout (with its
 * ratio: the identity in inference), Softmax.
 */
/** Write m as an ONNX model file, atomically (as cnn_model_save). */
CNN_API cnn_status cnn_onnx_export(const cnn_model *m, const char *path, char *err,
                                   size_t errlen);
/** Read an ONNX model made of those operators (as torch.onnx.export writes such a
 *  network: also Identity, Constant, Flatten, a Reshape to rows, a Pad of nothing,
 *  Dropout, and a BatchNormalization folded or not) into m (allocated on success).
 *  Its normalisation and class names are the metadata's when the file has them (as
 *  cnn_onnx_export writes them), else px/255 - 0.5 and none: set m->norm to the one
 *  the network was trained with.
 *  The graph must be one chain from its input (N x C x H x W float, C, H, W fixed) to
 *  its output, ending in a Gemm (the output layer; a Softmax after it is that layer's).
 *  Anything else is CNN_ERR_FORMAT with one line naming the first node, operator or
 *  attribute that cannot be taken; the file is untrusted input: every length is
 *  checked. cnn_onnx_import_mem reads len bytes at buf (name: for messages). */
CNN_API cnn_status cnn_onnx_import(cnn_model *m, const char *path, char *err, size_t errlen);
CNN_API cnn_status cnn_onnx_import_mem(cnn_model *m, const unsigned char *buf, size_t len,
                                       const char *name, char *err, size_t errlen);

/* ---------------------------------------------------------------- checkpoints */
/*
 * A training checkpoint holds everything a run needs to continue exactly where it
 * stood: resuming from it gives bit-identical weights to a run never interrupted.
 * Format (version 1, little-endian):
 *   0  char[8]  magic "CNNCKPT1"          8  u32  format version (1)
 *  12  u32      epoch in progress (from 1) 16  u64  samples of it already trained
 *  24  u64      n, the training set size   32  u64[4] generator state after this
 *                                                       epoch's shuffle
 *  64  u32      batch   68 f32 lr   72 u32 pool ties   76 u32 engine   80 u32 shuffle
 *  84  u64      seed    92 u64 L, the length of the model that follows
 * 100  L bytes  the model, in the model file format (either version)
 * 100+L u32[n]  this epoch's sample order (a permutation of 0..n-1)
 * then u32      CRC-32 of every byte before it
 * Version 2 (written when the run uses momentum, weight decay, a schedule or shifts) is the
 * same with the version field 2 and, between the order and the CRC:
 *   f32 momentum, u32 Nesterov (0/1), f32 weight decay, u32 schedule (0 constant,
 *   1 cosine), u32 the run's epochs (the schedule's length), u32 the largest random
 *   shift of the training images (0..8), then f32[P] the optimiser's velocities when
 *   momentum > 0.
 * Version 3 (written when the run uses Adam or AdamW, the step schedule or a warmup)
 * has version 2's fields (schedule 2: step), then u32 optimiser (0 SGD, 1 Adam,
 * 2 AdamW), f32 beta1, f32 beta2, f32 eps, u64 updates made, u64 the step schedule's N,
 * f32 its gamma, u64 warmup steps, then the optimiser's state: f32[P] velocities
 * (SGD with momentum) or f32[2P] first and second moments (Adam, AdamW), or nothing.
 * Version 4 (written when the run flips images) is version 3 with u32 flip (0/1)
 * after the warmup steps. Version 5 (written when the run turns or zooms images) is
 * version 4 with f32 rotate (degrees) and f32 zoom after the flip.
 */
#define CNN_CHECKPOINT_MAGIC "CNNCKPT1"
#define CNN_CHECKPOINT_VERSION 5u

/** Learning-rate schedules: constant; cosine from lr to 0 over the run's steps; step
 *  decay, lr * gamma^floor(t / N) (PyTorch's StepLR counted in steps). */
typedef enum cnn_schedule {
    CNN_SCHEDULE_CONSTANT = 0,
    CNN_SCHEDULE_COSINE = 1,
    CNN_SCHEDULE_STEP = 2,
} cnn_schedule;

/** A run's learning rate, step by step; any schedule times min(1, (t + 1) / warmup). */
typedef struct cnn_lr_schedule {
    cnn_schedule kind;
    float lr;        /* the base rate */
    uint64_t steps;  /* cosine: the run's steps */
    uint64_t every;  /* step: N, the steps between decays */
    float gamma;     /* step: each decay's factor */
    uint64_t warmup; /* steps of linear warmup; 0: none */
} cnn_lr_schedule;

/** The learning rate of step t (from 0); always > 0. */
CNN_API float cnn_lr_at(const cnn_lr_schedule *s, uint64_t t);

typedef struct cnn_checkpoint {
    cnn_model model;
    int epoch;          /* the epoch in progress, from 1 */
    uint64_t pos;       /* samples of it already trained (a whole number of steps, or n) */
    uint64_t n;         /* training set size */
    uint32_t *order;    /* [n] this epoch's sample order */
    cnn_rng rng;        /* the generator after this epoch's shuffle */
    cnn_train_config cfg; /* batch, lr, ties, engine, the optimiser (threads do not change
                             results) */
    int shuffle;
    uint64_t seed;
    cnn_schedule schedule;
    int epochs;         /* the run's epochs (version 2; 0 in version 1) */
    int shift;          /* training images moved by up to this many pixels (0..8) */
    int flip;           /* training images mirrored at random (version 4) */
    float rotate, zoom; /* training images turned and zoomed at random (version 5) */
    uint64_t lr_every;  /* the step schedule's N (version 3) */
    float lr_gamma;     /* the step schedule's gamma (version 3; 1 otherwise) */
    uint64_t warmup;    /* steps of learning-rate warmup (version 3) */
    uint64_t updates;   /* updates the optimiser made (version 3: Adam's bias correction) */
    float *state;       /* the optimiser's state, cnn_trainer_state: the velocities [P]
                           with SGD momentum, the moments [2P] with Adam or AdamW (owned
                           after a load; borrowed for a save) */
} cnn_checkpoint;

/** Save atomically, like a model. */
CNN_API cnn_status cnn_checkpoint_save(const cnn_checkpoint *c, const char *path, char *err,
                               size_t errlen);
/** Load and check everything; c owns its model and order afterwards. */
CNN_API cnn_status cnn_checkpoint_load(cnn_checkpoint *c, const char *path, char *err, size_t errlen);
CNN_API void cnn_checkpoint_free(cnn_checkpoint *c);
/** @return 1 if the file at path starts with the checkpoint magic. */
CNN_API int cnn_is_checkpoint(const char *path);

/* ---------------------------------------------------------------- runs */
/*
 * A run: epochs of minibatch steps over a training set, as `cnn train` makes them,
 * holding everything a checkpoint records, so that a checkpoint resumes through the
 * library alone, bit for bit. A run owns its trainer, its sample order, its generator
 * and the step's moves; it borrows the model (which it trains) and the data. Before
 * each step it
 *   - at an epoch's first step, shuffles the order from its generator (when shuffle);
 *   - sets the learning rate of step t, counted from 0 over the run, cnn_lr_at with
 *     steps = epochs * ceil(n / batch) (the cosine schedule's length);
 *   - sets the epoch (the dropout masks) and draws the moves of the step's samples
 *     (cnn_draw_moves from the seed, the epoch and each sample's index);
 * then steps on the next min(batch, left) samples of the order.
 */
typedef struct cnn_run_config {
    cnn_train_config train; /* the trainer's; train.seed also seeds the moves */
    int epochs;             /* the run's length, >= 1 */
    int shuffle;            /* 1: shuffle at every epoch's start (the post) */
    int shift;              /* move training images by up to this many pixels, 0..8 */
    int flip;               /* 1: mirror training images left to right at random */
    float rotate;           /* turn training images by up to this many degrees, 0..180 */
    float zoom;             /* scale training images by 1 - zoom..1 + zoom, 0..0.5 */
    cnn_schedule schedule;  /* of train.lr */
    uint64_t lr_every;      /* the step schedule's N (>= 1 with CNN_SCHEDULE_STEP) */
    float lr_gamma;         /* the step schedule's factor, 0 < gamma <= 1 */
    uint64_t warmup;        /* steps of linear warmup; 0: none */
} cnn_run_config;

typedef struct cnn_run cnn_run;

/** A fresh run of m over n training samples, from its first epoch; rng is the
 *  generator it shuffles with (the caller's after initialising m from it, as `cnn
 *  train` does). CNN_ERR_ARG if c is out of range or m is not c's network size. */
CNN_API cnn_status cnn_run_create(cnn_run **out, cnn_model *m, const cnn_run_config *c,
                                  size_t n, const cnn_rng *rng);
/** The configuration a checkpoint was made with (its epochs at least the epoch it
 *  stands in; threads 1: set them, they never change results). */
CNN_API cnn_run_config cnn_checkpoint_config(const cnn_checkpoint *k);
/** The run of checkpoint k, continuing where it stood: its order, generator, epoch,
 *  position and optimiser state, with configuration c (cnn_checkpoint_config(k) to
 *  continue exactly; another optimiser starts without state). m: the model to train,
 *  holding the checkpoint's parameters (&k->model itself, or a copy). */
CNN_API cnn_status cnn_run_resume(cnn_run **out, cnn_model *m, const cnn_run_config *c,
                                  const cnn_checkpoint *k);
CNN_API void cnn_run_free(cnn_run *r);

/** One step on data set d (the run's n samples): shuffle, rate, epoch and moves as
 *  above, the trainer's step, and the position moved on. Adds the step's loss and
 *  accuracy to *st (may be NULL). @return CNN_OK, CNN_ERR_ARG when the run is over or
 *  d is not its data, CNN_ERR_NUMERIC (nothing changed) if a loss was not finite. */
CNN_API cnn_status cnn_run_step(cnn_run *r, const cnn_dataset *d, cnn_stats *st);
/** The same in two halves, for a caller that makes the step itself (over several
 *  processes, say): cnn_run_next prepares the next step (shuffle, rate, epoch, moves)
 *  and gives its samples, *idx[0..n), and their moves, *moves (NULL without moves);
 *  @return n, 0 when the run is over. cnn_run_advance moves the position past them
 *  once the step is made. */
CNN_API int cnn_run_next(cnn_run *r, const uint32_t **idx, const cnn_move **moves);
CNN_API void cnn_run_advance(cnn_run *r);

/** Where the run stands: the epoch (from 1) and the samples of it trained; *pos == n
 *  at an epoch's end. @return 1 while steps are left. */
CNN_API int cnn_run_position(const cnn_run *r, int *epoch, size_t *pos);
CNN_API cnn_trainer *cnn_run_trainer(cnn_run *r);
/** The run as a checkpoint, borrowing its model, order and state (valid until the
 *  run's next step); cnn_checkpoint_save writes it. */
CNN_API void cnn_run_checkpoint(const cnn_run *r, cnn_checkpoint *k);

/* ---------------------------------------------------------------- BLAS */

/** Describe the BLAS in use ("OpenBLAS 0.3.21 ..., openmp threading, core SkylakeX").
 *  Writes at most len bytes into buf; @return buf. */
CNN_API const char *cnn_blas_describe(char *buf, size_t len);
/** Make the BLAS safe to call from our OpenMP threads (one-time, at start). For the
 *  pthread variant this sets OpenBLAS to one thread; the OpenMP variant needs nothing. */
CNN_API void cnn_blas_setup(void);
/** A warning when the BLAS core looks wrong for this CPU (e.g. Prescott kernels on an
 *  AVX-512 machine), with the fix; NULL when all is well. */
CNN_API const char *cnn_blas_core_warning(char *buf, size_t len);

/*
 * Choosing the OpenBLAS core. A DYNAMIC_ARCH OpenBLAS picks its kernels by CPU model
 * when it loads; a CPU newer than the library can get kernels far below what it runs
 * (OpenBLAS 0.3.21 gives an AVX-512 Xeon of family 6 model 207 its SSE3 Prescott
 * kernels). OpenBLAS reads OPENBLAS_CORETYPE only when it loads,
 * so a program must set it before it starts: the cnn program and the benchmarks do it
 * themselves (they restart once with it set); a program linking this library can ask
 * cnn_blas_core_recommended() and do the same, or tell its users.
 */

/** The core this process's CPU should run, when the one OpenBLAS runs falls short
 *  (NULL when it fits); why (may be NULL) receives the reason. Set OPENBLAS_CORETYPE
 *  to it before the program starts. */
CNN_API const char *cnn_blas_core_recommended(char *why, size_t len);

#ifdef __cplusplus
}
#endif
#endif
