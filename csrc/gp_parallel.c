/* gradprobe C kernel: see gp_parallel.h. */
#if !defined(_WIN32) && !defined(_POSIX_C_SOURCE)
#define _POSIX_C_SOURCE 200112L  /* posix_memalign under -std=c99 */
#endif
#include "gp_parallel.h"

#include <stdlib.h>
#if defined(_WIN32)
#include <malloc.h>
#endif

#if !defined(_WIN32)
#include <pthread.h>
#define GP_HAVE_PTHREADS 1
#else
#define GP_HAVE_PTHREADS 0
#endif

typedef struct {
    gp_range_fn body;
    void *ctx;
    size_t lo, hi;
    int status;
} gp_task_range;

static void *gp_run(void *arg)
{
    gp_task_range *r = (gp_task_range *)arg;
    r->status = r->body(r->ctx, r->lo, r->hi);
    return NULL;
}

void *gp_aligned_alloc(size_t bytes)
{
    if (bytes == 0)
        bytes = 1;
#if defined(_WIN32)
    return _aligned_malloc(bytes, 64);
#else
    void *p = NULL;
    return posix_memalign(&p, 64, bytes) == 0 ? p : NULL;
#endif
}

void gp_aligned_free(void *p)
{
#if defined(_WIN32)
    _aligned_free(p);
#else
    free(p);
#endif
}

int gp_parallel_max_threads(void)
{
    return GP_HAVE_PTHREADS ? 1024 : 1;
}

#if GP_HAVE_PTHREADS && !defined(__GNUC__)
static pthread_mutex_t gp_claim_lock = PTHREAD_MUTEX_INITIALIZER;
#endif

size_t gp_parallel_claim(size_t *next)
{
#if defined(__GNUC__)  /* gcc, clang */
    return __atomic_fetch_add(next, (size_t)1, __ATOMIC_RELAXED);
#elif GP_HAVE_PTHREADS
    pthread_mutex_lock(&gp_claim_lock);
    const size_t claimed = (*next)++;
    pthread_mutex_unlock(&gp_claim_lock);
    return claimed;
#else
    return (*next)++;  /* one thread */
#endif
}

int gp_parallel_ranges(size_t tasks, int threads, gp_range_fn body, void *ctx)
{
    if (tasks == 0)
        return 0;
    if (threads < 1)
        threads = 1;
    if (threads > gp_parallel_max_threads())
        threads = gp_parallel_max_threads();
    if ((size_t)threads > tasks)
        threads = (int)tasks;
    if (threads == 1)
        return body(ctx, 0, tasks);

    gp_task_range *ranges = (gp_task_range *)calloc((size_t)threads, sizeof(gp_task_range));
    if (ranges == NULL)
        return body(ctx, 0, tasks);  /* no memory for bookkeeping: run serially */
    for (int t = 0; t < threads; ++t) {
        ranges[t].body = body;
        ranges[t].ctx = ctx;
        ranges[t].lo = (tasks * (size_t)t) / (size_t)threads;
        ranges[t].hi = (tasks * (size_t)(t + 1)) / (size_t)threads;
    }
    int status = 0;
#if GP_HAVE_PTHREADS
    pthread_t *ids = (pthread_t *)calloc((size_t)threads, sizeof(pthread_t));
    char *started = (char *)calloc((size_t)threads, 1);
    if (ids != NULL && started != NULL) {
        for (int t = 1; t < threads; ++t)
            started[t] = pthread_create(&ids[t], NULL, gp_run, &ranges[t]) == 0;
        gp_run(&ranges[0]);
        for (int t = 1; t < threads; ++t) {
            if (started[t])
                pthread_join(ids[t], NULL);
            else
                gp_run(&ranges[t]);
        }
    } else
#endif
    {
        for (int t = 0; t < threads; ++t)
            gp_run(&ranges[t]);
    }
#if GP_HAVE_PTHREADS
    free(ids);
    free(started);
#endif
    for (int t = 0; t < threads; ++t)
        if (ranges[t].status != 0)
            status = ranges[t].status;
    free(ranges);
    return status;
}
