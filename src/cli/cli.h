/* cli.h - what the cnn program's files share (internal to the program): the options
 * machinery, the data and file helpers, the signals, and the commands. */
#ifndef CNN_CLI_H
#define CNN_CLI_H

#include "cnn.h"

#include "autocore.h"
#include "config.h"
#include "dist.h"
#include "fileio.h"

#include <errno.h>
#include <signal.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>
#include <zlib.h>
#if HAVE_OPENMP
#include <omp.h>
#endif

typedef enum { OPT_FLAG, OPT_INT, OPT_U64, OPT_FLOAT, OPT_FRAC, OPT_STR, OPT_CHOICE } opt_kind;

typedef struct {
    const char *name;
    opt_kind kind;
    void *dst;                   /* int (FLAG, CHOICE), long (INT), uint64_t, float, const char * */
    long lo, hi;                 /* OPT_INT range */
    const char *const *choices;  /* OPT_CHOICE, NULL-terminated; *dst = index */
    const char *arg, *help;
} opt;

long all_cores(void);
extern cnn_core_report blas_core;
void catch_signals(void);
int check_model_data(const char *path, const cnn_model *m, const cnn_dataset *d, const char *data);
int check_save_path(const char *flag, const char *path);
int cmd_eval(int argc, char **argv);
int cmd_predict(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_import(int argc, char **argv);
int cmd_fold(int argc, char **argv);
int cmd_train(int argc, char **argv);
extern const char *const engines[];
/* The split "train" or "test" of the data set in dir (any format; train gives a test
 * image folder its classes), its first limit images (0: all). */
int load_data(const char *dir, const char *split, const cnn_dataset *train, long limit,
              const char *flag, cnn_dataset *d);
int load_model(const char *path, cnn_model *m);
/* A fresh model's normalisation from --normalize (NULL: the data format's default:
 * unit for IDX and synthetic data, the training set's statistics for colour data). */
int choose_norm(const char *spec, const cnn_dataset *tr, cnn_norm *out);
void print_norm(const cnn_norm *n);
int make_synthetic(long n, uint64_t seed, cnn_dataset *d);
int network(cnn_arch *a, const char *desc, const cnn_model *resumed, const char *path, const cnn_dataset *d);
double now(void);
extern const char *const optimizers[];
int parse_opts(const char *cmd, const char *synopsis, const opt *opts, int argc, char **argv);
void print_blas(void);
void print_network(const cnn_arch *a, const cnn_run_config *r);
void print_test(const cnn_stats *st);
extern const char *prog;
extern const char *const reductions[];
int save_model(const cnn_model *m, const char *path);
extern const char *const schedules[];
int set_opt(const opt *o, const char *val);
void stop_and_save(const cnn_checkpoint *ck, const cnn_model *m, const char *save, const char *ckpt_path, long epoch, size_t step, size_t n);
extern volatile sig_atomic_t stop_signal;
extern const char *const tie_rules[];
int write_checkpoint(const cnn_checkpoint *ck, const char *path);

#endif
