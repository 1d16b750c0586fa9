/* gradprobe C kernel: see gp_kernel.h. */
#include "gp_kernel.h"

#include <string.h>

#include "gp_parallel.h"

/* Chunks of rows per thread in one gp_evaluate call: the threads claim them from
 * a shared counter, so a thread slowed down by another process takes fewer (the
 * Numba engine does the same: config.NUMBA_CHUNKS_PER_THREAD). */
#define GP_CHUNKS_PER_THREAD 4

typedef struct {
    gp_loss_fn loss;
    void *ctx;
    const double *theta;
    size_t n;
    size_t offset;
    const int64_t *entries;
    const double *points;
    size_t m;
    double *out;
    size_t k;       /* rows */
    size_t chunks;  /* row chunks, claimed through next */
    size_t next;
} gp_loop;

/* One thread: claims chunks of rows until none is left, on a private copy of theta
 * made once.  (lo, hi) is this thread's index range in gp_parallel_ranges, unused. */
static int gp_run_chunks(void *arg, size_t lo, size_t hi)
{
    gp_loop *r = (gp_loop *)arg;
    (void)lo;
    (void)hi;
    double *work = (double *)gp_aligned_alloc(r->n * sizeof(double));
    if (work == NULL)
        return GP_ENOMEM;
    memcpy(work, r->theta, r->n * sizeof(double));
    const size_t per = r->k / r->chunks, extra = r->k % r->chunks;
    for (size_t c = gp_parallel_claim(&r->next); c < r->chunks; c = gp_parallel_claim(&r->next)) {
        /* chunk c: rows [first, last), the first `extra` chunks one row longer */
        const size_t first = c * per + (c < extra ? c : extra);
        const size_t last = first + per + (c < extra ? 1 : 0);
        for (size_t row = first; row < last; ++row) {
            size_t index = r->offset + (size_t)r->entries[row];
            for (size_t col = 0; col < r->m; ++col) {
                work[index] = r->points[row * r->m + col];
                r->out[row * r->m + col] = r->loss(work, r->n, r->ctx);
            }
            work[index] = r->theta[index];  /* restore before the next entry */
        }
    }
    gp_aligned_free(work);
    return GP_OK;
}

int gp_max_threads(void)
{
    return gp_parallel_max_threads();
}

int gp_evaluate(gp_loss_fn loss, void *ctx, const double *theta, size_t n,
                size_t offset, size_t size, const int64_t *entries, size_t k,
                const double *points, size_t m, double *out, int threads)
{
    if (k == 0)
        return GP_OK;
    if (loss == NULL || theta == NULL || entries == NULL || points == NULL ||
        out == NULL || n == 0 || m == 0 || size == 0 || offset > n || size > n - offset)
        return GP_EINVAL;
    for (size_t i = 0; i < k; ++i)
        if (entries[i] < 0 || (uint64_t)entries[i] >= (uint64_t)size)
            return GP_EINVAL;
    if (threads < 1)
        threads = 1;
    if ((size_t)threads > k)
        threads = (int)k;
    size_t chunks = threads == 1 ? 1 : (size_t)threads * GP_CHUNKS_PER_THREAD;
    if (chunks > k)
        chunks = k;
    gp_loop loop = {loss, ctx, theta, n, offset, entries, points, m, out, k, chunks, 0};
    /* one task per thread; each claims chunks of rows on its own copy of theta */
    return gp_parallel_ranges((size_t)threads, threads, gp_run_chunks, &loop);
}
