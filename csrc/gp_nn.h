/* gradprobe C kernel: the C twin of gradprobe.nn's Numba kernels.
 *
 * The dense forward/backward kernels (gradprobe/nn/kernels.py) in float64
 * (suffix _d) and float32 (suffix _f), and the float64 kernels of the
 * structured check: the blocked contraction (gradprobe/nn/contraction.py)
 * and the entry-by-entry loss differences (gradprobe/nn/downstream.py).
 * Every kernel sums in the same order as its Numba twin and is compiled with
 * -ffp-contract=off (no fused multiply-add), so both give the same bits
 * wherever they call the same libm functions; the tests compare them.
 *
 * Arrays are C-contiguous, row-major; every pointer, shape and index is
 * validated by the Python caller (gradprobe.nn.c_kernels) before it gets here.
 * Functions taking `threads` split their work into contiguous ranges run by
 * that many pthreads (1 runs in the calling thread); results do not depend on
 * the thread count.
 */
#ifndef GRADPROBE_NN_H
#define GRADPROBE_NN_H

#include <stddef.h>
#include <stdint.h>

/* Codes shared with gradprobe/config.py (tests/test_config.py checks they agree). */
#define GP_NN_IDENTITY 0
#define GP_NN_RELU 1
#define GP_NN_TANH 2
#define GP_NN_SIGMOID 3
#define GP_NN_LOSS_MSE 0
#define GP_NN_LOSS_SOFTMAX_CE 1
#define GP_NN_STAGE_ACTIVATION 0
#define GP_NN_STAGE_DENSE 1
#define GP_NN_METHOD_CENTRAL 0
#define GP_NN_METHOD_FORWARD 1

/* Status codes (0 is success); the values of gp_kernel.h. */
#define GP_NN_OK 0
#define GP_NN_EINVAL 1
#define GP_NN_ENOMEM 2

/* Tiles of the matrix product (rows x columns of the output) and of the
 * contraction (entries i x entries j): the accumulator stays in L1 cache.
 * They change speed only, never results; tests/test_config.py checks that
 * they equal gradprobe.config's. */
#define GP_NN_MATMUL_ROWS 16
#define GP_NN_MATMUL_COLS 128
#define GP_NN_CONTRACT_ROWS 8
#define GP_NN_CONTRACT_COLS 256
/* Entries per task of gp_nn_entry_differences (each task owns its scratch). */
#define GP_NN_ENTRY_CHUNK 64
/* Elementwise kernels run threaded only above this many elements. */
#define GP_NN_PARALLEL_MIN 65536

/* ---- dense forward/backward, float64 and float32 ---------------------- */
/* C = A @ B, A (M x K), B (K x N), C (M x N). */
int gp_nn_matmul_d(const double *A, const double *B, double *C, size_t M, size_t K,
                   size_t N, int threads);
int gp_nn_matmul_f(const float *A, const float *B, float *C, size_t M, size_t K,
                   size_t N, int threads);
/* Z = X @ W + b. */
int gp_nn_dense_forward_d(const double *X, const double *W, const double *b, double *Z,
                          size_t M, size_t K, size_t N, int threads);
int gp_nn_dense_forward_f(const float *X, const float *W, const float *b, float *Z,
                          size_t M, size_t K, size_t N, int threads);
/* out (N x M) = A.T, A (M x N). */
void gp_nn_transpose_d(const double *A, double *out, size_t M, size_t N);
void gp_nn_transpose_f(const float *A, float *out, size_t M, size_t N);
/* out (N) = column sums of A (M x N), accumulated row by row. */
void gp_nn_column_sums_d(const double *A, double *out, size_t M, size_t N);
void gp_nn_column_sums_f(const float *A, float *out, size_t M, size_t N);
/* A = act(Z) and dZ = dA * act'(Z) over `count` elements. */
int gp_nn_activation_forward_d(int code, const double *Z, double *A, size_t count,
                               int threads);
int gp_nn_activation_forward_f(int code, const float *Z, float *A, size_t count,
                               int threads);
int gp_nn_activation_backward_d(int code, const double *Z, const double *A,
                                const double *dA, double *dZ, size_t count, int threads);
int gp_nn_activation_backward_f(int code, const float *Z, const float *A,
                                const float *dA, float *dZ, size_t count, int threads);
/* scale / 2 * sum((A - T)^2) in double; dA = scale * (A - T). */
double gp_nn_mse_loss_d(const double *A, const double *T, size_t M, size_t N, double scale);
double gp_nn_mse_loss_f(const float *A, const float *T, size_t M, size_t N, double scale);
void gp_nn_mse_backward_d(const double *A, const double *T, double scale, double *dA,
                          size_t count);
void gp_nn_mse_backward_f(const float *A, const float *T, double scale, float *dA,
                          size_t count);
/* scale * sum_rows(sum(T) * logsumexp(z) - T . z); dZ = scale * (sum(T) softmax(Z) - T). */
double gp_nn_softmax_ce_loss_d(const double *Z, const double *T, size_t M, size_t N,
                               double scale);
double gp_nn_softmax_ce_loss_f(const float *Z, const float *T, size_t M, size_t N,
                               double scale);
void gp_nn_softmax_ce_backward_d(const double *Z, const double *T, double scale, double *dZ,
                                 size_t M, size_t N);
void gp_nn_softmax_ce_backward_f(const float *Z, const float *T, double scale, float *dZ,
                                 size_t M, size_t N);

/* ---- the structured check, float64 ------------------------------------ */
/* out[i, j] = sum_r L[r, i] * R[r, j]; L (terms x n_i), R (terms x n_j). */
int gp_nn_contract(const double *L, const double *R, double *out, size_t terms, size_t n_i,
                   size_t n_j, int threads);

/* The layers after the perturbed Dense layer (see gradprobe.nn.downstream.Stages). */
typedef struct {
    size_t count;
    const int64_t *kinds, *codes, *widths_in, *widths_out, *offs, *w_offs;
    const double *base_in, *base_out, *deriv, *weights, *sens;
    size_t table_size;   /* elements of base_in, base_out, deriv and sens */
    size_t weight_size;  /* elements of weights */
    size_t max_width;
} gp_nn_stages;

/* The loss tables at the base point (see gradprobe.nn.plan.LossTables);
 * resid, prob, targets, rho are (batch x width), mass is (batch). */
typedef struct {
    int code;
    double scale;
    const double *resid, *prob, *mass, *targets, *rho;
    size_t width;
    double base_ulps;    /* constants.BASE_POINT_ULPS */
} gp_nn_loss;

/* dl[e, m] = L(theta + offsets[m] steps[e] e_(rows[e], cols[e])) - L(theta) and its
 * rounding bound noise[e, m] (in units of eps), crossed[e] = 1 when an evaluation
 * moved a ReLU input across zero.  xin is the perturbed layer's input
 * (batch x n_in); rows[e] == n_in selects the bias entry cols[e]; cols[e] < n_out,
 * the width of the perturbed layer's output. */
int gp_nn_entry_differences(const double *xin, size_t batch, size_t n_in, size_t n_out,
                            const int64_t *rows, const int64_t *cols, const double *steps,
                            size_t k, const double *offsets, size_t m,
                            const gp_nn_stages *stages, const gp_nn_loss *loss,
                            double *dl, double *noise, uint8_t *crossed, int threads);

/* The fast paths' finishing pass (gradprobe/nn/head_kernels.py): value[i, j] and
 * bar[i, j] of every entry of [W; b] (n_i x n_j) from the contraction's result.
 * value may be S (MSE) or V (softmax): each entry is read before it is written.
 * MSE: S, steps, value, bar (n_i x n_j; steps read only when use_steps), Q, xn (n_i),
 * rn, rhon (n_j); method is the code of constants.METHOD_CODES. */
int gp_nn_finish_mse(const double *S, const double *Q, const double *xn, const double *rn,
                     const double *rhon, const double *steps, double h0, int use_steps,
                     int method, double scale, double eps, double sum_factor, double safety,
                     double floor_ulps, double *value, double *bar, size_t n_i, size_t n_j,
                     int threads);
/* Softmax cross-entropy: V, value, bar (n_i x n_j), ln (groups x n_i), rn (groups x n_j),
 * dn, trunc, tail (n_i), rhon (n_j). */
int gp_nn_finish_softmax(const double *V, const double *ln, const double *rn,
                         const double *dn, const double *rhon, const double *trunc,
                         const double *tail, double h0, double scale, double eps, int method,
                         double sum_factor, double safety, double floor_ulps, double *value,
                         double *bar, size_t n_i, size_t n_j, size_t groups, int threads);
/* max |v| over `count` values (0 when empty; NaN entries are skipped, as in Numba's twin). */
double gp_nn_max_abs_d(const double *v, size_t count);
double gp_nn_max_abs_f(const float *v, size_t count);

#endif
