/* gradprobe C kernel: a parallel loop over contiguous ranges of tasks, on pthreads. */
#ifndef GRADPROBE_PARALLEL_H
#define GRADPROBE_PARALLEL_H

#include <stddef.h>

/* Runs body(ctx, lo, hi) on `threads` contiguous ranges covering [0, tasks)
 * and returns 0 or the last nonzero status a range returned.  Range 0 runs in
 * the calling thread, and so does any range whose thread cannot be created;
 * threads <= 1 (or a build without pthreads) runs everything there. */
typedef int (*gp_range_fn)(void *ctx, size_t lo, size_t hi);
int gp_parallel_ranges(size_t tasks, int threads, gp_range_fn body, void *ctx);

/* Threads gp_parallel_ranges can actually run (1 when built without pthreads). */
int gp_parallel_max_threads(void);

/* Returns *next and increments it, atomically: the threads of one
 * gp_parallel_ranges call claim chunks of work from a shared counter with it,
 * so a thread that is slowed down (another process on its core) takes fewer. */
size_t gp_parallel_claim(size_t *next);

/* A private work buffer for one thread, aligned to a cache line (64 bytes), as
 * NumPy and Numba align theirs: a loss reading a 16-byte-aligned copy of theta
 * ran 8 % slower (W3).  NULL when out of memory; free with gp_aligned_free. */
void *gp_aligned_alloc(size_t bytes);
void gp_aligned_free(void *p);

/* The hot loops are compiled twice on x86-64 GCC, for AVX2 and for the
 * baseline, and the loader picks the one the CPU runs: vector speed without
 * a machine-specific build.  -ffp-contract=off keeps FMA out of both, so
 * both give the same bits. */
#if defined(__GNUC__) && !defined(__clang__) && defined(__x86_64__) && defined(__linux__) \
    && !defined(GP_NO_TARGET_CLONES)
#define GP_HOT __attribute__((target_clones("avx2", "default")))
#else
#define GP_HOT
#endif

#if defined(_MSC_VER) && !defined(__cplusplus)
#define restrict __restrict
#endif

#endif
