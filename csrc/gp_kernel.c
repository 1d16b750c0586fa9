/* gradprobe C kernel: see gp_kernel.h. */
#include "gp_kernel.h"

#include <stdlib.h>
#include <string.h>

#if !defined(_WIN32)
#include <pthread.h>
#define GP_HAVE_PTHREADS 1
#else
#define GP_HAVE_PTHREADS 0
#endif

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
    size_t lo, hi;   /* rows of this range */
    int status;
} gp_range;

/* One range of rows on a private copy of theta. */
static void *gp_run_range(void *arg)
{
    gp_range *r = (gp_range *)arg;
    double *work = (double *)malloc(r->n * sizeof(double));
    if (work == NULL) {
        r->status = GP_ENOMEM;
        return NULL;
    }
    memcpy(work, r->theta, r->n * sizeof(double));
    for (size_t row = r->lo; row < r->hi; ++row) {
        size_t index = r->offset + (size_t)r->entries[row];
        for (size_t col = 0; col < r->m; ++col) {
            work[index] = r->points[row * r->m + col];
            r->out[row * r->m + col] = r->loss(work, r->n, r->ctx);
        }
        work[index] = r->theta[index];  /* restore before the next entry */
    }
    free(work);
    r->status = GP_OK;
    return NULL;
}

int gp_max_threads(void)
{
    return GP_HAVE_PTHREADS ? 1024 : 1;
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
    if (threads > gp_max_threads())
        threads = gp_max_threads();
    if ((size_t)threads > k)
        threads = (int)k;

    gp_range *ranges = (gp_range *)calloc((size_t)threads, sizeof(gp_range));
    if (ranges == NULL)
        return GP_ENOMEM;
    for (int t = 0; t < threads; ++t) {
        gp_range *r = &ranges[t];
        r->loss = loss; r->ctx = ctx; r->theta = theta; r->n = n; r->offset = offset;
        r->entries = entries; r->points = points; r->m = m; r->out = out;
        r->lo = (k * (size_t)t) / (size_t)threads;
        r->hi = (k * (size_t)(t + 1)) / (size_t)threads;
        r->status = GP_OK;
    }
    int status = GP_OK;
#if GP_HAVE_PTHREADS
    if (threads > 1) {
        pthread_t *ids = (pthread_t *)calloc((size_t)threads, sizeof(pthread_t));
        char *started = (char *)calloc((size_t)threads, 1);
        if (ids == NULL || started == NULL) {
            free(ids); free(started); free(ranges);
            return GP_ENOMEM;
        }
        /* Range 0 runs in the calling thread; a thread that cannot be
         * created has its range run there too, after the others start. */
        for (int t = 1; t < threads; ++t)
            started[t] = pthread_create(&ids[t], NULL, gp_run_range, &ranges[t]) == 0;
        gp_run_range(&ranges[0]);
        for (int t = 1; t < threads; ++t) {
            if (started[t])
                pthread_join(ids[t], NULL);
            else
                gp_run_range(&ranges[t]);
        }
        free(ids);
        free(started);
    } else
#endif
    {
        for (int t = 0; t < threads; ++t)
            gp_run_range(&ranges[t]);
    }
    for (int t = 0; t < threads; ++t)
        if (ranges[t].status != GP_OK)
            status = ranges[t].status;
    free(ranges);
    return status;
}
