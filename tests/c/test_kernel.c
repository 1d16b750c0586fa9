/* Exercises csrc/gp_kernel.c directly, without Python: run it under
 * AddressSanitizer and UndefinedBehaviorSanitizer (tests/test_engine_cffi.py
 * and .ci/run build it with -fsanitize=address,undefined).
 *
 *   gcc -std=c99 -g -O1 -fsanitize=address,undefined -fno-omit-frame-pointer \
 *       -pthread -Icsrc csrc/gp_kernel.c tests/c/test_kernel.c -o test_kernel
 *   ./test_kernel
 *
 * The loss checks, on every call, that its theta differs from the base
 * point in at most one entry (so every copy was restored after the previous
 * entry); the test compares the losses with the exact expected values and
 * checks that theta itself was never written. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gp_kernel.h"

typedef struct {
    const double *base;   /* the unperturbed theta */
    size_t n;
    int bad_calls;        /* calls that saw more than one changed entry */
    long calls;
} check_ctx;

/* Weighted sum of squares: sum_i (i + 1) * theta_i^2, exact in binary for
 * the small integers and halves used below. */
static double loss(const double *theta, size_t n, void *ctx)
{
    check_ctx *c = (check_ctx *)ctx;
    size_t changed = 0;
    double s = 0.0;
    for (size_t i = 0; i < n; ++i) {
        if (theta[i] != c->base[i])
            ++changed;
        s += (double)(i + 1) * theta[i] * theta[i];
    }
    if (changed > 1 || n != c->n)
        __atomic_fetch_add(&c->bad_calls, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&c->calls, 1, __ATOMIC_RELAXED);
    return s;
}

static int failures = 0;

#define EXPECT(cond, ...) do { if (!(cond)) { ++failures; \
    fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

static void run_case(size_t n, size_t offset, size_t size, size_t m, int threads)
{
    double *theta = malloc(n * sizeof(double));
    double *saved = malloc(n * sizeof(double));
    size_t k = size;
    int64_t *entries = malloc(k * sizeof(int64_t));
    double *points = malloc(k * m * sizeof(double));
    double *out = malloc(k * m * sizeof(double));
    for (size_t i = 0; i < n; ++i)
        theta[i] = 0.5 * (double)((i * 7) % 11) - 2.0;
    memcpy(saved, theta, n * sizeof(double));
    for (size_t i = 0; i < k; ++i) {
        entries[i] = (int64_t)(k - 1 - i);  /* reversed order */
        for (size_t j = 0; j < m; ++j)
            points[i * m + j] = (double)j - 1.5;
    }
    double base = 0.0;
    for (size_t i = 0; i < n; ++i)
        base += (double)(i + 1) * theta[i] * theta[i];
    check_ctx c = {theta, n, 0, 0};
    int status = gp_evaluate(loss, &c, theta, n, offset, size, entries, k, points, m, out,
                             threads);
    EXPECT(status == GP_OK, "status %d", status);
    EXPECT(c.bad_calls == 0, "%d calls saw an unrestored copy", c.bad_calls);
    EXPECT(c.calls == (long)(k * m), "%ld calls, expected %zu", c.calls, k * m);
    EXPECT(memcmp(theta, saved, n * sizeof(double)) == 0, "theta was written");
    for (size_t i = 0; i < k; ++i) {
        size_t idx = offset + (size_t)entries[i];
        for (size_t j = 0; j < m; ++j) {
            double p = points[i * m + j];
            /* Same terms, same order as the loss: bit-identical. */
            double expected = 0.0;
            for (size_t q = 0; q < n; ++q) {
                double v = q == idx ? p : theta[q];
                expected += (double)(q + 1) * v * v;
            }
            EXPECT(out[i * m + j] == expected, "n=%zu entry %zu point %zu: %.17g != %.17g",
                   n, idx, j, out[i * m + j], expected);
        }
    }
    (void)base;
    free(theta); free(saved); free(entries); free(points); free(out);
}

int main(void)
{
    const int thread_counts[] = {1, 2, 3, 8};
    const size_t ms[] = {1, 2, 4};
    for (size_t t = 0; t < sizeof thread_counts / sizeof *thread_counts; ++t)
        for (size_t q = 0; q < sizeof ms / sizeof *ms; ++q) {
            run_case(1, 0, 1, ms[q], thread_counts[t]);        /* one entry */
            run_case(10, 3, 5, ms[q], thread_counts[t]);       /* a middle parameter */
            run_case(37, 30, 7, ms[q], thread_counts[t]);      /* the last parameter */
            run_case(200, 0, 200, ms[q], thread_counts[t]);    /* more rows than threads */
        }

    /* Invalid arguments are refused, nothing is called. */
    double theta[4] = {1, 2, 3, 4}, points[2] = {0, 1}, out[2] = {-1, -1};
    int64_t entry = 0, big = 2, negative = -1;
    check_ctx c = {theta, 4, 0, 0};
    EXPECT(gp_evaluate(NULL, &c, theta, 4, 0, 2, &entry, 1, points, 2, out, 1) == GP_EINVAL,
           "NULL loss accepted");
    EXPECT(gp_evaluate(loss, &c, theta, 4, 0, 2, &big, 1, points, 2, out, 1) == GP_EINVAL,
           "entry >= size accepted");
    EXPECT(gp_evaluate(loss, &c, theta, 4, 0, 2, &negative, 1, points, 2, out, 1)
           == GP_EINVAL, "negative entry accepted");
    EXPECT(gp_evaluate(loss, &c, theta, 4, 3, 2, &entry, 1, points, 2, out, 1) == GP_EINVAL,
           "offset + size > n accepted");
    EXPECT(gp_evaluate(loss, &c, theta, 4, 0, 2, &entry, 1, points, 0, out, 1) == GP_EINVAL,
           "m = 0 accepted");
    EXPECT(gp_evaluate(loss, &c, theta, 4, 0, 2, &entry, 0, points, 2, out, 1) == GP_OK,
           "k = 0 refused");
    EXPECT(c.calls == 0, "the loss was called on invalid arguments");
    EXPECT(out[0] == -1 && out[1] == -1, "out written on invalid arguments");

    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("gp_kernel: all checks passed\n");
    return 0;
}
