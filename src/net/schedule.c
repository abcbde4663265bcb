/* schedule.c - the learning rate of each step: constant, cosine or step decay, times a
 * linear warmup. Computed in double and rounded once to float. */
#include "cnn.h"

#include <math.h>

float cnn_lr_at(const cnn_lr_schedule *s, uint64_t t)
{
    double f = 1.0;
    if (s->kind == CNN_SCHEDULE_COSINE && s->steps > 0)
        f = 0.5 * (1.0 + cos(3.14159265358979323846 * (double)t / (double)s->steps));
    else if (s->kind == CNN_SCHEDULE_STEP && s->every > 0)
        f = pow((double)s->gamma, (double)(t / s->every));
    if (s->warmup > 0 && t + 1 < s->warmup)
        f *= (double)(t + 1) / (double)s->warmup;
    const float v = (float)(s->lr * f);
    return v > 0.0f ? v : s->lr * 1e-6f; /* a learning rate must stay > 0 */
}
