/* arena.h - one 64-byte aligned allocation cut into named pieces (internal). */
#ifndef CNN_ARENA_H
#define CNN_ARENA_H

#include <stddef.h>
#include <stdlib.h>

#define CNN_ALIGN 64

static inline size_t cnn_align_up(size_t n) { return (n + CNN_ALIGN - 1) / CNN_ALIGN * CNN_ALIGN; }

/* Reserve `bytes` at the running offset *off and return where the piece starts. */
static inline size_t cnn_arena_take(size_t *off, size_t bytes)
{
    size_t at = *off;
    *off += cnn_align_up(bytes);
    return at;
}

static inline void *cnn_aligned_alloc(size_t bytes)
{
    return aligned_alloc(CNN_ALIGN, cnn_align_up(bytes ? bytes : 1));
}

#endif
