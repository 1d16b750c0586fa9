/* Exercises csrc/gp_nn.c directly, without Python: run it under
 * AddressSanitizer and UndefinedBehaviorSanitizer (.ci/run and
 * tests/test_engine_cffi.py build it with -fsanitize=address,undefined).
 *
 *   gcc -std=c99 -g -O1 -fsanitize=address,undefined -fno-omit-frame-pointer -pthread \
 *       -Icsrc csrc/gp_nn.c csrc/gp_parallel.c tests/c/test_nn.c -o test_nn -lm
 *   ./test_nn
 *
 * Every kernel is compared with a naive loop on shapes that cross the tiles,
 * at several thread counts; the entry kernel's loss differences are compared
 * with a full forward pass at the perturbed point; malformed tables must be
 * rejected with GP_NN_EINVAL before anything is read. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "gp_nn.h"

static int failures = 0;

#define EXPECT(cond, ...) do { if (!(cond)) { ++failures; \
    fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__); fputc('\n', stderr); } } while (0)

static double uniform(unsigned *state)
{
    *state = *state * 1103515245u + 12345u;
    return ((double)((*state >> 8) & 0xffff) / 65535.0) * 2.0 - 1.0;
}

static void fill(double *a, size_t n, unsigned seed)
{
    for (size_t i = 0; i < n; ++i)
        a[i] = uniform(&seed);
}

static void test_matmul(size_t M, size_t K, size_t N, int threads)
{
    double *A = malloc(M * K * sizeof(double)), *B = malloc(K * N * sizeof(double));
    double *C = malloc(M * N * sizeof(double)), *b = malloc(N * sizeof(double));
    float *Af = malloc(M * K * sizeof(float)), *Bf = malloc(K * N * sizeof(float));
    float *Cf = malloc(M * N * sizeof(float)), *bf = malloc(N * sizeof(float));
    fill(A, M * K, 1); fill(B, K * N, 2); fill(b, N, 3);
    for (size_t i = 0; i < M * K; ++i) Af[i] = (float)A[i];
    for (size_t i = 0; i < K * N; ++i) Bf[i] = (float)B[i];
    for (size_t i = 0; i < N; ++i) bf[i] = (float)b[i];
    EXPECT(gp_nn_dense_forward_d(A, B, b, C, M, K, N, threads) == GP_NN_OK, "dense_forward_d");
    EXPECT(gp_nn_dense_forward_f(Af, Bf, bf, Cf, M, K, N, threads) == GP_NN_OK,
           "dense_forward_f");
    double worst = 0.0, worst_f = 0.0;
    for (size_t m = 0; m < M; ++m)
        for (size_t n = 0; n < N; ++n) {
            double s = b[n];
            for (size_t k = 0; k < K; ++k)
                s += A[m * K + k] * B[k * N + n];
            worst = fmax(worst, fabs(C[m * N + n] - s));
            worst_f = fmax(worst_f, fabs((double)Cf[m * N + n] - s));
        }
    EXPECT(worst <= 1e-12 * (double)(K + 1), "matmul_d %zux%zux%zu threads %d: error %g",
           M, K, N, threads, worst);
    EXPECT(worst_f <= 1e-5 * (double)(K + 1), "matmul_f %zux%zux%zu: error %g", M, K, N,
           worst_f);
    free(A); free(B); free(C); free(b); free(Af); free(Bf); free(Cf); free(bf);
}

static void test_contract(size_t terms, size_t n_i, size_t n_j, int threads)
{
    double *L = malloc(terms * n_i * sizeof(double)), *R = malloc(terms * n_j * sizeof(double));
    double *out = malloc(n_i * n_j * sizeof(double));
    fill(L, terms * n_i, 4); fill(R, terms * n_j, 5);
    EXPECT(gp_nn_contract(L, R, out, terms, n_i, n_j, threads) == GP_NN_OK, "contract");
    double worst = 0.0;
    for (size_t i = 0; i < n_i; ++i)
        for (size_t j = 0; j < n_j; ++j) {
            double s = 0.0;
            for (size_t r = 0; r < terms; ++r)
                s += L[r * n_i + i] * R[r * n_j + j];
            worst = fmax(worst, fabs(out[i * n_j + j] - s));
        }
    EXPECT(worst <= 1e-12 * (double)(terms + 1), "contract %zux%zux%zu: error %g", terms, n_i,
           n_j, worst);
    free(L); free(R); free(out);
}

static void test_elementwise(void)
{
    const size_t n = 70000;  /* above GP_NN_PARALLEL_MIN: threaded */
    double *Z = malloc(n * sizeof(double)), *A = malloc(n * sizeof(double));
    double *dA = malloc(n * sizeof(double)), *dZ = malloc(n * sizeof(double));
    fill(Z, n, 6); fill(dA, n, 7);
    for (int code = GP_NN_IDENTITY; code <= GP_NN_SIGMOID; ++code) {
        EXPECT(gp_nn_activation_forward_d(code, Z, A, n, 3) == GP_NN_OK, "forward %d", code);
        EXPECT(gp_nn_activation_backward_d(code, Z, A, dA, dZ, n, 3) == GP_NN_OK, "backward");
        for (size_t i = 0; i < n; i += 997) {
            double z = Z[i], a, d;
            if (code == GP_NN_RELU) { a = z > 0 ? z : 0; d = z > 0; }
            else if (code == GP_NN_TANH) { a = tanh(z); d = 1 - a * a; }
            else if (code == GP_NN_SIGMOID) { a = 1 / (1 + exp(-z)); d = a * (1 - a); }
            else { a = z; d = 1; }
            EXPECT(fabs(A[i] - a) <= 1e-15 && fabs(dZ[i] - dA[i] * d) <= 1e-15,
                   "activation %d at %g", code, z);
        }
    }
    double T[6] = {0.5, 0.25, 0.25, 1, 0, 0}, Zs[6] = {1, 2, 3, 0, 0, 0}, g[6];
    double ce = gp_nn_softmax_ce_loss_d(Zs, T, 2, 3, 1.0);
    double lse1 = log(exp(1.0) + exp(2.0) + exp(3.0)), lse2 = log(3.0);
    EXPECT(fabs(ce - (lse1 - (0.5 + 0.5 + 0.75) + lse2)) <= 1e-14, "softmax ce %g", ce);
    gp_nn_softmax_ce_backward_d(Zs, T, 1.0, g, 2, 3);
    EXPECT(fabs(g[3] - (1.0 / 3.0 - 1.0)) <= 1e-15, "softmax ce backward %g", g[3]);
    EXPECT(gp_nn_mse_loss_d(Zs, T, 2, 3, 0.5) == 0.25 * (0.25 + 3.0625 + 7.5625 + 1), "mse");
    free(Z); free(A); free(dA); free(dZ);
}

/* A network after the perturbed layer: tanh, Dense(width -> out), identity; MSE. */
#define BATCH 5
#define N_IN 4
#define WIDTH 6
#define OUT 3

static double forward_loss(const double *x, const double *W1, const double *b1,
                           const double *W2, const double *T)
{
    double total = 0.0;
    for (size_t r = 0; r < BATCH; ++r) {
        double h[WIDTH];
        for (size_t j = 0; j < WIDTH; ++j) {
            double z = b1[j];
            for (size_t i = 0; i < N_IN; ++i)
                z += x[r * N_IN + i] * W1[i * WIDTH + j];
            h[j] = tanh(z);
        }
        for (size_t k = 0; k < OUT; ++k) {
            double a = 0.0;
            for (size_t j = 0; j < WIDTH; ++j)
                a += h[j] * W2[j * OUT + k];
            total += 0.5 * (a - T[r * OUT + k]) * (a - T[r * OUT + k]);
        }
    }
    return total;
}

static void test_entry_differences(int threads)
{
    double x[BATCH * N_IN], W1[N_IN * WIDTH], b1[WIDTH], W2[WIDTH * OUT], T[BATCH * OUT];
    fill(x, BATCH * N_IN, 8); fill(W1, N_IN * WIDTH, 9); fill(b1, WIDTH, 10);
    fill(W2, WIDTH * OUT, 11); fill(T, BATCH * OUT, 12);
    /* base point tables */
    double z1[BATCH * WIDTH], a1[BATCH * WIDTH], deriv[BATCH * WIDTH], zeros[BATCH * WIDTH];
    double resid[BATCH * OUT], prob[BATCH * OUT], rho[BATCH * OUT];
    double mass[BATCH], sens[2 * BATCH * WIDTH];
    memset(zeros, 0, sizeof zeros);
    memset(prob, 0, sizeof prob);
    memset(rho, 0, sizeof rho);
    for (size_t r = 0; r < BATCH; ++r) {
        mass[r] = 1.0;
        for (size_t j = 0; j < WIDTH; ++j) {
            double z = b1[j];
            for (size_t i = 0; i < N_IN; ++i)
                z += x[r * N_IN + i] * W1[i * WIDTH + j];
            z1[r * WIDTH + j] = z;
            a1[r * WIDTH + j] = tanh(z);
            deriv[r * WIDTH + j] = 1.0 / (cosh(z) * cosh(z));
        }
        for (size_t k = 0; k < OUT; ++k) {
            double a = 0.0;
            for (size_t j = 0; j < WIDTH; ++j)
                a += a1[r * WIDTH + j] * W2[j * OUT + k];
            resid[r * OUT + k] = a - T[r * OUT + k];
        }
    }
    for (size_t q = 0; q < 2 * BATCH * WIDTH; ++q)
        sens[q] = 1.0;
    double base_in[2 * BATCH * WIDTH], base_out[2 * BATCH * WIDTH], deriv_all[2 * BATCH * WIDTH];
    memcpy(base_in, z1, sizeof z1); memcpy(base_in + BATCH * WIDTH, zeros, sizeof zeros);
    memcpy(base_out, a1, sizeof a1); memcpy(base_out + BATCH * WIDTH, zeros, sizeof zeros);
    memcpy(deriv_all, deriv, sizeof deriv);
    memcpy(deriv_all + BATCH * WIDTH, zeros, sizeof zeros);
    int64_t kinds[2] = {GP_NN_STAGE_ACTIVATION, GP_NN_STAGE_DENSE};
    int64_t codes[2] = {GP_NN_TANH, 0}, w_in[2] = {WIDTH, WIDTH}, w_out[2] = {WIDTH, OUT};
    int64_t offs[2] = {0, BATCH * WIDTH}, w_offs[2] = {0, 0};
    gp_nn_stages st = {2, kinds, codes, w_in, w_out, offs, w_offs, base_in, base_out, deriv_all,
                       W2, sens, 2 * BATCH * WIDTH, WIDTH * OUT, WIDTH};
    gp_nn_loss lt = {GP_NN_LOSS_MSE, 1.0, resid, prob, mass, T, rho, OUT, 4.0};
    enum { K = (N_IN + 1) * WIDTH, M = 2 };
    int64_t rows[K], cols[K];
    double steps[K], offsets[M] = {1.0, -1.0}, dl[K * M], noise[K * M];
    uint8_t crossed[K];
    for (size_t e = 0; e < K; ++e) {
        rows[e] = (int64_t)(e / WIDTH);
        cols[e] = (int64_t)(e % WIDTH);
        steps[e] = 1e-3;
    }
    EXPECT(gp_nn_entry_differences(x, BATCH, N_IN, WIDTH, rows, cols, steps, K, offsets, M,
                                   &st, &lt, dl, noise, crossed, threads) == GP_NN_OK,
           "entry_differences");
    const double base = forward_loss(x, W1, b1, W2, T);
    double worst = 0.0;
    for (size_t e = 0; e < K; ++e)
        for (size_t m = 0; m < M; ++m) {
            double W1p[N_IN * WIDTH], b1p[WIDTH];
            memcpy(W1p, W1, sizeof W1p);
            memcpy(b1p, b1, sizeof b1p);
            if ((size_t)rows[e] < N_IN)
                W1p[rows[e] * WIDTH + cols[e]] += offsets[m] * steps[e];
            else
                b1p[cols[e]] += offsets[m] * steps[e];
            const double direct = forward_loss(x, W1p, b1p, W2, T) - base;
            worst = fmax(worst, fabs(dl[e * M + m] - direct));
            EXPECT(noise[e * M + m] > 0.0 && crossed[e] == 0, "noise/crossed of entry %zu", e);
        }
    EXPECT(worst <= 1e-12, "entry differences vs forward passes: error %g", worst);

    /* malformed tables are rejected before anything is read */
    int64_t bad_offs[2] = {0, 2 * BATCH * WIDTH};  /* the Dense stage's table past the end */
    gp_nn_stages bad = st;
    bad.offs = bad_offs;
    EXPECT(gp_nn_entry_differences(x, BATCH, N_IN, WIDTH, rows, cols, steps, K, offsets, M,
                                   &bad, &lt, dl, noise, crossed, threads) == GP_NN_EINVAL,
           "table offset past the end accepted");
    bad = st;
    bad.weight_size = WIDTH * OUT - 1;
    EXPECT(gp_nn_entry_differences(x, BATCH, N_IN, WIDTH, rows, cols, steps, K, offsets, M,
                                   &bad, &lt, dl, noise, crossed, threads) == GP_NN_EINVAL,
           "short weights accepted");
    bad = st;
    bad.max_width = (size_t)1 << 61;  /* batch * max_width doubles would wrap size_t */
    EXPECT(gp_nn_entry_differences(x, BATCH, N_IN, WIDTH, rows, cols, steps, K, offsets, M,
                                   &bad, &lt, dl, noise, crossed, threads) == GP_NN_EINVAL,
           "max_width beyond the widest layer accepted");
    gp_nn_loss bad_loss = lt;
    bad_loss.width = OUT + 1;
    EXPECT(gp_nn_entry_differences(x, BATCH, N_IN, WIDTH, rows, cols, steps, K, offsets, M,
                                   &st, &bad_loss, dl, noise, crossed, threads) == GP_NN_EINVAL,
           "loss width mismatch accepted");
    rows[3] = N_IN + 1;
    EXPECT(gp_nn_entry_differences(x, BATCH, N_IN, WIDTH, rows, cols, steps, K, offsets, M,
                                   &st, &lt, dl, noise, crossed, threads) == GP_NN_EINVAL,
           "row out of range accepted");
    EXPECT(gp_nn_entry_differences(x, BATCH, N_IN, WIDTH, rows, cols, steps, K, offsets, M,
                                   NULL, &lt, dl, noise, crossed, threads) == GP_NN_EINVAL,
           "NULL stages accepted");
}

int main(void)
{
    const size_t shapes[][3] = {{1, 1, 1}, {3, 5, 7}, {17, 9, 129}, {33, 258, 130}, {2, 40, 600}};
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; ++s)
        for (int threads = 1; threads <= 3; ++threads) {
            test_matmul(shapes[s][0], shapes[s][1], shapes[s][2], threads);
            test_contract(shapes[s][0], shapes[s][1], shapes[s][2], threads);
        }
    EXPECT(gp_nn_matmul_d(NULL, NULL, NULL, 2, 2, 2, 1) == GP_NN_EINVAL, "NULL matmul accepted");
    test_elementwise();
    for (int threads = 1; threads <= 3; ++threads)
        test_entry_differences(threads);
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("gp_nn kernel: all checks passed\n");
    return 0;
}
