/* simd.h - CNN_VECTOR marks the library's own hot loops (im2col, pooling, the SGD
 * update) for compilation in several instruction-set variants, chosen at load time
 * by the CPU (GCC's target_clones): a portable build still runs them with AVX2 or
 * AVX-512 where the machine has them. Element-wise float operations round the same
 * in every variant (no contraction under -std=c11), so results do not change. */
#ifndef CNN_SIMD_H
#define CNN_SIMD_H

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__) && defined(__has_attribute)
#if __has_attribute(target_clones)
#define CNN_VECTOR __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#endif
#endif
#ifndef CNN_VECTOR
#define CNN_VECTOR
#endif

#endif
