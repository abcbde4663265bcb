/* options.c - the command-line options: a table per command, parsed and checked,
 * with --help. */
#include "cli.h"

/* ---------------------------------------------------------------- options */

const char *const engines[] = {"blas", "reference", NULL};
const char *const tie_rules[] = {"single", "all", NULL};
const char *const schedules[] = {"constant", "cosine", "step", NULL};
const char *const optimizers[] = {"sgd", "adam", "adamw", NULL};
const char *const reductions[] = {"exact", "allreduce", NULL};

static int bad_value(const char *flag, const char *want, const char *got)
{
    fprintf(stderr, "%s: %s expects %s, got '%s'\n", prog, flag, want, got);
    return 2;
}

int set_opt(const opt *o, const char *val)
{
    char *end;
    errno = 0;
    switch (o->kind) {
    case OPT_FLAG:
        *(int *)o->dst = 1;
        return 0;
    case OPT_INT: {
        long v = strtol(val, &end, 10);
        if (errno || end == val || *end || v < o->lo || v > o->hi) {
            char want[96];
            snprintf(want, sizeof want, "an integer from %ld to %ld", o->lo, o->hi);
            return bad_value(o->name, want, val);
        }
        *(long *)o->dst = v;
        return 0;
    }
    case OPT_U64: {
        unsigned long long v = strtoull(val, &end, 10);
        if (errno || end == val || *end || *val == '-' || *val == '+' || *val == ' ')
            return bad_value(o->name, "a non-negative integer", val);
        *(uint64_t *)o->dst = v;
        return 0;
    }
    case OPT_FLOAT: {
        double v = strtod(val, &end);
        if (errno || end == val || *end || !isfinite(v) || !(v > 0.0) || v > 1e3)
            return bad_value(o->name, "a number above 0 and at most 1000", val);
        *(float *)o->dst = (float)v;
        return 0;
    }
    case OPT_FRAC: {
        double v = strtod(val, &end);
        if (errno || end == val || *end || !isfinite(v) || !(v >= 0.0) || !(v < 1.0))
            return bad_value(o->name, "a number from 0 up to (not including) 1", val);
        *(float *)o->dst = (float)v;
        return 0;
    }
    case OPT_STR:
        if (!*val)
            return bad_value(o->name, "a non-empty value", val);
        *(const char **)o->dst = val;
        return 0;
    case OPT_CHOICE:
        for (int i = 0; o->choices[i]; i++)
            if (strcmp(val, o->choices[i]) == 0) {
                *(int *)o->dst = i;
                return 0;
            }
        return bad_value(o->name, o->arg, val);
    }
    return 2;
}

static void print_help(FILE *f, const char *cmd, const char *synopsis, const opt *opts)
{
    fprintf(f, "usage: %s %s %s\n\n", prog, cmd, synopsis);
    for (const opt *o = opts; o->name; o++) {
        char left[64];
        snprintf(left, sizeof left, "%s%s%s", o->name, o->kind == OPT_FLAG ? "" : " ",
                 o->kind == OPT_FLAG ? "" : o->arg);
        fprintf(f, "  %-27s %s\n", left, o->help);
    }
}

/* @return 0 to go on, 1 after --help, 2 on a bad flag (already reported). */
int parse_opts(const char *cmd, const char *synopsis, const opt *opts, int argc,
                      char **argv)
{
    for (int i = 0; i < argc; i++) {
        if (strcmp(argv[i], "--help") == 0 || strcmp(argv[i], "-h") == 0) {
            print_help(stdout, cmd, synopsis, opts);
            if (strcmp(cmd, "train") == 0)
                fputs("\n--arch LAYERS: comma-separated, shapes flowing from the input:\n"
                      "  conv<F>         3x3 convolution, valid, stride 1, F filters, no bias; then\n"
                      "                  any of b (a bias), k<K> (kernel 1-7), s<S> (stride 1-4),\n"
                      "                  p<P> (zero padding 0 to K-1): conv32bk5p2\n"
                      "  relu            max(x, 0)\n"
                      "  pool            2x2 max pooling, stride 2\n"
                      "  maxpool<K>s<S>  max over K x K windows moved by S (avgpool<K>s<S>: mean)\n"
                      "  gap             global average pooling, to C x 1 x 1\n"
                      "  dropout<P>      drop P percent in training (inverted), identity otherwise\n"
                      "  dense<N>        fully connected, N outputs, with a bias\n"
                      "  softmax<N>      the output layer (fully connected + softmax), last;\n"
                      "                  ls<P>: trained with P percent label smoothing\n"
                      "The post's network is conv8,pool,softmax10 (the default). A recipe to 99.5% on\n"
                      "MNIST: --arch conv16bp1,relu,pool,conv32bp1,relu,pool,dense128,relu,dropout25,\n"
                      "softmax10 --batch 64 --optimizer adamw --lr 0.003 --weight-decay 0.05\n"
                      "  --schedule cosine --warmup 200 --epochs 16 --shift 2\n", stdout);
            return 1;
        }
        const opt *o = opts;
        while (o->name && strcmp(o->name, argv[i]) != 0)
            o++;
        if (!o->name) {
            fprintf(stderr, "%s: unknown option '%s' for %s (see %s %s --help)\n", prog, argv[i],
                    cmd, prog, cmd);
            return 2;
        }
        if (o->kind != OPT_FLAG && i + 1 >= argc) {
            fprintf(stderr, "%s: %s needs a value (%s)\n", prog, o->name, o->arg);
            return 2;
        }
        if (set_opt(o, o->kind == OPT_FLAG ? NULL : argv[++i]))
            return 2;
    }
    return 0;
}
