/* gradprobe C kernel: see gp_kernel.h. */
#include "gp_kernel.h"

#include <string.h>

#include "gp_parallel.h"

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
} gp_loop;

/* Rows [lo, hi) on a private copy of theta. */
static int gp_run_rows(void *arg, size_t lo, size_t hi)
{
    const gp_loop *r = (const gp_loop *)arg;
    double *work = (double *)gp_aligned_alloc(r->n * sizeof(double));
    if (work == NULL)
        return GP_ENOMEM;
    memcpy(work, r->theta, r->n * sizeof(double));
    for (size_t row = lo; row < hi; ++row) {
        size_t index = r->offset + (size_t)r->entries[row];
        for (size_t col = 0; col < r->m; ++col) {
            work[index] = r->points[row * r->m + col];
            r->out[row * r->m + col] = r->loss(work, r->n, r->ctx);
        }
        work[index] = r->theta[index];  /* restore before the next entry */
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
    gp_loop loop = {loss, ctx, theta, n, offset, entries, points, m, out};
    /* contiguous ranges of rows, one per thread, each on its own copy of theta */
    return gp_parallel_ranges(k, threads, gp_run_rows, &loop);
}
