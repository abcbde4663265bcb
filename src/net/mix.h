/* mix.h - splitmix64's mixing of 64-bit values (internal): the one formula behind the
 * seeding of the generator, the dropout keys and masks, and the shift draws. */
#ifndef CNN_MIX_H
#define CNN_MIX_H

#include <stdint.h>

/* splitmix64's finaliser: a well-mixed function of z */
static inline uint64_t cnn_mix64_finish(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

/* one splitmix64 step from state x: the value it returns for x */
static inline uint64_t cnn_mix64(uint64_t x) { return cnn_mix64_finish(x + 0x9e3779b97f4a7c15ULL); }

#endif
