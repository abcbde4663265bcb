/* rng.c - xoshiro256** seeded by splitmix64; normals by Marsaglia's polar method. */
#include "cnn.h"

#include "mix.h"

#include <math.h>

static uint64_t splitmix64(uint64_t *x)
{
    const uint64_t z = cnn_mix64(*x);
    *x += 0x9e3779b97f4a7c15ULL;
    return z;
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void cnn_rng_seed(cnn_rng *r, uint64_t seed)
{
    uint64_t x = seed;
    for (int i = 0; i < 4; i++)
        r->s[i] = splitmix64(&x);
}

uint64_t cnn_rng_u64(cnn_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return out;
}

double cnn_rng_uniform(cnn_rng *r) { return (double)(cnn_rng_u64(r) >> 11) * 0x1.0p-53; }

double cnn_rng_normal(cnn_rng *r)
{
    double u, v, q;
    do {
        u = 2.0 * cnn_rng_uniform(r) - 1.0;
        v = 2.0 * cnn_rng_uniform(r) - 1.0;
        q = u * u + v * v;
    } while (q >= 1.0 || q == 0.0);
    return u * sqrt(-2.0 * log(q) / q);
}

uint64_t cnn_rng_below(cnn_rng *r, uint64_t n)
{
    uint64_t limit = UINT64_MAX - UINT64_MAX % n; /* reject the biased tail */
    uint64_t x;
    do
        x = cnn_rng_u64(r);
    while (x >= limit);
    return x % n;
}

void cnn_rng_shuffle(cnn_rng *r, uint32_t *idx, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)cnn_rng_below(r, i);
        uint32_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}
