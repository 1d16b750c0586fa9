/* gradprobe C kernel: the C twin of gradprobe.nn's Numba kernels (see gp_nn.h). */
#include "gp_nn.h"

#include <math.h>
#include <stdint.h>
#include <stdlib.h>

#include "gp_parallel.h"

#define GP_CAT_(a, b) a##b
#define GP_CAT(a, b) GP_CAT_(a, b)

/* ---- dense forward/backward: double, then float ----------------------- */
#define REAL double
#define FN(name) GP_CAT(name, _d)
#define TANH tanh
#define EXP exp
#include "gp_nn_dense.inc"
#undef REAL
#undef FN
#undef TANH
#undef EXP

#define REAL float
#define FN(name) GP_CAT(name, _f)
#define TANH tanhf
#define EXP expf
#include "gp_nn_dense.inc"
#undef REAL
#undef FN
#undef TANH
#undef EXP

/* ---- the contraction out = L.T @ R ------------------------------------- */
typedef struct {
    const double *L, *R;
    double *out;
    size_t terms, n_i, n_j, col_tiles;
} gp_nn_contract_args;

/* Tiles [lo, hi): every entry sums groups of four consecutive r (added
 * pairwise), the groups in order of r, then the remaining r
 * (gradprobe/nn/contraction.py). */
static GP_HOT int gp_nn_contract_tiles(void *ctx, size_t lo, size_t hi)
{
    const gp_nn_contract_args *a = ctx;
    const double *L = a->L, *R = a->R;
    const size_t terms = a->terms, n_i = a->n_i, n_j = a->n_j;
    double acc[GP_NN_CONTRACT_ROWS][GP_NN_CONTRACT_COLS];
    for (size_t tile = lo; tile < hi; ++tile) {
        const size_t i0 = (tile / a->col_tiles) * GP_NN_CONTRACT_ROWS;
        const size_t j0 = (tile % a->col_tiles) * GP_NN_CONTRACT_COLS;
        const size_t rows = (n_i - i0 < GP_NN_CONTRACT_ROWS) ? n_i - i0 : GP_NN_CONTRACT_ROWS;
        const size_t cols = (n_j - j0 < GP_NN_CONTRACT_COLS) ? n_j - j0 : GP_NN_CONTRACT_COLS;
        for (size_t ii = 0; ii < rows; ++ii)
            for (size_t jj = 0; jj < cols; ++jj)
                acc[ii][jj] = 0.0;
        const size_t grouped = terms - terms % 4;
        for (size_t r = 0; r < grouped; r += 4) {
            const double *r0 = R + r * n_j + j0, *r1 = r0 + n_j, *r2 = r1 + n_j, *r3 = r2 + n_j;
            for (size_t ii = 0; ii < rows; ++ii) {
                const size_t i = i0 + ii;
                const double l0 = L[r * n_i + i], l1 = L[(r + 1) * n_i + i];
                const double l2 = L[(r + 2) * n_i + i], l3 = L[(r + 3) * n_i + i];
                double *restrict out = acc[ii];
                for (size_t jj = 0; jj < cols; ++jj)
                    out[jj] += ((l0 * r0[jj] + l1 * r1[jj]) + (l2 * r2[jj] + l3 * r3[jj]));
            }
        }
        for (size_t r = grouped; r < terms; ++r) {
            const double *rrow = R + r * n_j + j0;
            for (size_t ii = 0; ii < rows; ++ii) {
                const double left = L[r * n_i + i0 + ii];
                double *restrict out = acc[ii];
                for (size_t jj = 0; jj < cols; ++jj)
                    out[jj] += left * rrow[jj];
            }
        }
        for (size_t ii = 0; ii < rows; ++ii)
            for (size_t jj = 0; jj < cols; ++jj)
                a->out[(i0 + ii) * n_j + j0 + jj] = acc[ii][jj];
    }
    return GP_NN_OK;
}

int gp_nn_contract(const double *L, const double *R, double *out, size_t terms, size_t n_i,
                   size_t n_j, int threads)
{
    if (n_i == 0 || n_j == 0)
        return GP_NN_OK;
    if (out == NULL || (terms > 0 && (L == NULL || R == NULL)))
        return GP_NN_EINVAL;
    gp_nn_contract_args args = {L, R, out, terms, n_i, n_j,
                                (n_j + GP_NN_CONTRACT_COLS - 1) / GP_NN_CONTRACT_COLS};
    const size_t tiles = ((n_i + GP_NN_CONTRACT_ROWS - 1) / GP_NN_CONTRACT_ROWS) * args.col_tiles;
    return gp_parallel_ranges(tiles, threads, gp_nn_contract_tiles, &args);
}

/* ---- the fast paths' finishing pass ------------------------------------ */
/* Every expression is that of gradprobe/nn/head_kernels.py, in the same order
 * of operations (C and Python both associate left to right). */
static double gp_nn_max2(double x, double y)
{
    return x >= y ? x : y;
}

typedef struct {
    const double *S, *Q, *xn, *rn, *rhon, *steps;
    double h0;
    int use_steps, method;
    double scale, eps, sum_factor, safety, floor_ulps;
    double *value, *bar;
    size_t n_j;
} gp_nn_finish_mse_args;

static GP_HOT int gp_nn_finish_mse_rows(void *ctx, size_t lo, size_t hi)
{
    const gp_nn_finish_mse_args *a = ctx;
    const size_t n_j = a->n_j;
    const double scale = a->scale, eps = a->eps, safety = a->safety;
    for (size_t i = lo; i < hi; ++i) {
        for (size_t j = 0; j < n_j; ++j) {
            const size_t q = i * n_j + j;
            const double h = a->use_steps ? a->steps[q] : a->h0;
            const double s = a->S[q];
            const double unit_noise = scale * eps * a->xn[i]
                                      * (a->sum_factor * a->rn[j] + a->rhon[j]);
            if (a->method == GP_NN_METHOD_CENTRAL) {
                const double even = 0.5 * scale * h * h * a->Q[i];
                const double dl = scale * h * fabs(s) + even;
                const double rounding = safety * gp_nn_max2(h * unit_noise + eps * even,
                                                            a->floor_ulps * eps * dl);
                a->value[q] = scale * s;
                a->bar[q] = rounding / h;
            } else if (a->method == GP_NN_METHOD_FORWARD) {
                const double even = 0.5 * scale * h * h * a->Q[i];
                const double dl = fabs(scale * h * s + even);
                const double rounding = safety * gp_nn_max2(h * unit_noise + eps * even,
                                                            a->floor_ulps * eps * dl);
                a->value[q] = scale * (s + 0.5 * h * a->Q[i]);
                a->bar[q] = 2.0 * rounding / h + 0.5 * scale * h * a->Q[i];
            } else {
                const double even = 2.0 * scale * h * h * a->Q[i];
                const double dl = 2.0 * scale * h * fabs(s) + even;
                const double rounding = safety * gp_nn_max2(2.0 * h * unit_noise + eps * even,
                                                            a->floor_ulps * eps * dl);
                a->value[q] = scale * s;
                a->bar[q] = 1.5 * rounding / h;
            }
        }
    }
    return GP_NN_OK;
}

int gp_nn_finish_mse(const double *S, const double *Q, const double *xn, const double *rn,
                     const double *rhon, const double *steps, double h0, int use_steps,
                     int method, double scale, double eps, double sum_factor, double safety,
                     double floor_ulps, double *value, double *bar, size_t n_i, size_t n_j,
                     int threads)
{
    if (n_i == 0 || n_j == 0)
        return GP_NN_OK;
    if (S == NULL || Q == NULL || xn == NULL || rn == NULL || rhon == NULL || value == NULL ||
        bar == NULL || (use_steps && steps == NULL))
        return GP_NN_EINVAL;
    gp_nn_finish_mse_args args = {S, Q, xn, rn, rhon, steps, h0, use_steps, method, scale,
                                  eps, sum_factor, safety, floor_ulps, value, bar, n_j};
    if (n_i * n_j < GP_NN_PARALLEL_MIN)
        threads = 1;
    return gp_parallel_ranges(n_i, threads, gp_nn_finish_mse_rows, &args);
}

typedef struct {
    const double *V, *ln, *rn, *dn, *rhon, *trunc, *tail;
    double h0, scale, eps;
    int method;
    double sum_factor, safety, floor_ulps;
    double *value, *bar;
    size_t n_i, n_j, groups;
} gp_nn_finish_softmax_args;

static GP_HOT int gp_nn_finish_softmax_rows(void *ctx, size_t lo, size_t hi)
{
    const gp_nn_finish_softmax_args *a = ctx;
    const size_t n_i = a->n_i, n_j = a->n_j, groups = a->groups;
    const double scale = a->scale, eps = a->eps;
    const double span = a->method == GP_NN_METHOD_CENTRAL ? 2.0 * a->h0 : a->h0;
    const double factor = a->method == GP_NN_METHOD_CENTRAL ? 1.0 : 2.0;
    for (size_t i = lo; i < hi; ++i) {
        for (size_t j = 0; j < n_j; ++j) {
            const size_t q = i * n_j + j;
            const double F = scale * a->V[q];
            double products = 0.0;
            for (size_t g = 0; g < groups; ++g)
                products += a->ln[g * n_i + i] * a->rn[g * n_j + j];
            const double noise = scale * eps * (a->sum_factor * products
                                                + a->dn[i] * a->rhon[j]);
            const double rounding = a->safety * gp_nn_max2(noise,
                                                           a->floor_ulps * eps * fabs(F));
            a->value[q] = F / span;
            a->bar[q] = factor * rounding / span + a->trunc[i] + a->tail[i] / span;
        }
    }
    return GP_NN_OK;
}

int gp_nn_finish_softmax(const double *V, const double *ln, const double *rn,
                         const double *dn, const double *rhon, const double *trunc,
                         const double *tail, double h0, double scale, double eps, int method,
                         double sum_factor, double safety, double floor_ulps, double *value,
                         double *bar, size_t n_i, size_t n_j, size_t groups, int threads)
{
    if (n_i == 0 || n_j == 0)
        return GP_NN_OK;
    if (V == NULL || dn == NULL || rhon == NULL || trunc == NULL || tail == NULL ||
        value == NULL || bar == NULL || (groups > 0 && (ln == NULL || rn == NULL)))
        return GP_NN_EINVAL;
    gp_nn_finish_softmax_args args = {V, ln, rn, dn, rhon, trunc, tail, h0, scale, eps,
                                      method, sum_factor, safety, floor_ulps, value, bar,
                                      n_i, n_j, groups};
    if (n_i * n_j < GP_NN_PARALLEL_MIN)
        threads = 1;
    return gp_parallel_ranges(n_i, threads, gp_nn_finish_softmax_rows, &args);
}

double gp_nn_max_abs_d(const double *v, size_t count)
{
    double top = 0.0;
    for (size_t n = 0; n < count; ++n) {
        const double a = fabs(v[n]);
        if (a > top)
            top = a;
    }
    return top;
}

double gp_nn_max_abs_f(const float *v, size_t count)
{
    double top = 0.0;
    for (size_t n = 0; n < count; ++n) {
        const double a = fabs((double)v[n]);
        if (a > top)
            top = a;
    }
    return top;
}

/* ---- entry-by-entry loss differences ----------------------------------- */
/* act(z + d) - act(z) from the base values (gradprobe/nn/increments.py). */
static double gp_nn_activation_increment(int64_t code, double z, double a, double deriv,
                                         double d)
{
    if (code == GP_NN_RELU) {
        const double zn = z + d;
        if (z > 0.0)
            return zn > 0.0 ? d : -z;
        return zn > 0.0 ? zn : 0.0;
    }
    if (code == GP_NN_TANH) {
        const double td = tanh(d);
        return deriv * td / (1.0 + a * td);
    }
    if (code == GP_NN_SIGMOID) {
        const double em = expm1(d);
        return deriv * em / (1.0 + a * em);
    }
    return d;
}

typedef struct {
    const double *xin;
    size_t batch, n_in;
    const int64_t *rows, *cols;
    const double *steps;
    size_t k;
    const double *offsets;
    size_t m_count;
    const gp_nn_stages *st;
    const gp_nn_loss *loss;
    double *dl, *noise;
    uint8_t *crossed;
} gp_nn_entry_args;

/* One entry, one offset: the loss difference, its rounding bound, and whether
 * a ReLU input crossed zero.  cur, nxt hold batch * max_width, col batch. */
static GP_HOT void gp_nn_one_difference(const gp_nn_entry_args *a, size_t e, size_t m,
                                        double *cur, double *nxt, double *col,
                                        unsigned char *active, int *crossing)
{
    const gp_nn_stages *st = a->st;
    const gp_nn_loss *lt = a->loss;
    const size_t batch = a->batch, n_in = a->n_in, width_final = lt->width;
    const size_t i = (size_t)a->rows[e], j = (size_t)a->cols[e];
    const double step = a->offsets[m] * a->steps[e];
    for (size_t r = 0; r < batch; ++r)
        col[r] = i < n_in ? step * a->xin[r * n_in + i] : step;
    double stage_noise = 0.0;
    int column = 1;
    for (size_t s = 0; s < st->count; ++s) {
        const size_t w_in = (size_t)st->widths_in[s], w_out = (size_t)st->widths_out[s];
        const size_t off = (size_t)st->offs[s];
        if (st->kinds[s] == GP_NN_STAGE_ACTIVATION) {
            const int64_t code = st->codes[s];
            if (column) {
                for (size_t r = 0; r < batch; ++r) {
                    const size_t q = off + r * w_in + j;
                    const double z = st->base_in[q];
                    if (code == GP_NN_RELU && (z > 0.0) != (z + col[r] > 0.0))
                        *crossing = 1;
                    col[r] = gp_nn_activation_increment(code, z, st->base_out[q], st->deriv[q],
                                                        col[r]);
                    stage_noise += fabs(col[r]) * st->sens[q];
                }
            } else {
                for (size_t r = 0; r < batch; ++r) {
                    if (!active[r])
                        continue;
                    for (size_t q = r * w_in; q < (r + 1) * w_in; ++q) {
                        const double z = st->base_in[off + q];
                        if (code == GP_NN_RELU && (z > 0.0) != (z + cur[q] > 0.0))
                            *crossing = 1;
                        cur[q] = gp_nn_activation_increment(code, z, st->base_out[off + q],
                                                            st->deriv[off + q], cur[q]);
                        stage_noise += fabs(cur[q]) * st->sens[off + q];
                    }
                }
            }
        } else {
            const size_t wo = (size_t)st->w_offs[s];
            if (column) {
                /* rows whose increment is zero stay zero in every later layer */
                for (size_t r = 0; r < batch; ++r) {
                    const double dv = col[r];
                    active[r] = dv != 0.0;
                    stage_noise += fabs(dv) * st->sens[off + r * w_in + j];
                    const double *w = st->weights + wo + j * w_out;
                    for (size_t kk = 0; kk < w_out; ++kk)
                        cur[r * w_out + kk] = dv * w[kk];
                }
                column = 0;
            } else {
                for (size_t q = 0; q < batch * w_out; ++q)
                    nxt[q] = 0.0;
                for (size_t r = 0; r < batch; ++r) {
                    if (!active[r])
                        continue;
                    for (size_t p = 0; p < w_in; ++p) {
                        const double dv = cur[r * w_in + p];
                        if (dv == 0.0)
                            continue;
                        stage_noise += fabs(dv) * st->sens[off + r * w_in + p];
                        const double *restrict w = st->weights + wo + p * w_out;
                        double *restrict out = nxt + r * w_out;
                        for (size_t kk = 0; kk < w_out; ++kk)
                            out[kk] += dv * w[kk];
                    }
                }
                double *swap = cur;
                cur = nxt;
                nxt = swap;
            }
        }
    }
    double total = 0.0, magnitude = 0.0;
    size_t terms = batch;
    if (column) {
        for (size_t r = 0; r < batch; ++r) {
            const double dv = col[r];
            const size_t q = r * width_final + j;
            if (lt->code == GP_NN_LOSS_MSE) {
                const double rr = lt->resid[q];
                total += dv * (rr + 0.5 * dv);
                magnitude += fabs(dv) * (fabs(rr) + 0.5 * fabs(dv) + lt->rho[q]);
            } else {
                const double p = lt->prob[q];
                const double g = log1p(p * expm1(dv));
                total += lt->mass[r] * g - lt->targets[q] * dv;
                magnitude += (fabs(lt->mass[r]) * (fabs(g) + p * fabs(expm1(dv))
                                                   * (1.0 + lt->rho[q]))
                              + fabs(lt->targets[q] * dv));
            }
        }
    } else {
        terms = batch * width_final;
        for (size_t r = 0; r < batch; ++r) {
            if (!active[r])
                continue;  /* an all-zero increment changes nothing */
            if (lt->code == GP_NN_LOSS_MSE) {
                for (size_t kk = 0; kk < width_final; ++kk) {
                    const double dv = cur[r * width_final + kk];
                    const double rr = lt->resid[r * width_final + kk];
                    total += dv * (rr + 0.5 * dv);
                    magnitude += fabs(dv) * (fabs(rr) + 0.5 * fabs(dv)
                                             + lt->rho[r * width_final + kk]);
                }
            } else {
                double inner = 0.0, inner_mag = 0.0, linear = 0.0, linear_mag = 0.0;
                for (size_t kk = 0; kk < width_final; ++kk) {
                    const size_t q = r * width_final + kk;
                    const double dv = cur[q];
                    const double em = expm1(dv);
                    inner += lt->prob[q] * em;
                    inner_mag += lt->prob[q] * fabs(em) * (1.0 + lt->rho[q]);
                    linear += lt->targets[q] * dv;
                    linear_mag += fabs(lt->targets[q] * dv);
                }
                const double g = log1p(inner);
                total += lt->mass[r] * g - linear;
                magnitude += fabs(lt->mass[r]) * (fabs(g) + inner_mag) + linear_mag;
            }
        }
    }
    a->dl[e * a->m_count + m] = lt->scale * total;
    a->noise[e * a->m_count + m] = (lt->scale * magnitude
                                    * (2.0 + sqrt((double)terms) + lt->base_ulps)
                                    + stage_noise);
}

/* Chunks [lo, hi) of GP_NN_ENTRY_CHUNK entries, with scratch of their own. */
static int gp_nn_entry_chunks(void *ctx, size_t lo, size_t hi)
{
    const gp_nn_entry_args *a = ctx;
    const size_t width = a->st->max_width, batch = a->batch;
    double *cur = (double *)malloc((batch * width + 1) * sizeof(double));
    double *nxt = (double *)malloc((batch * width + 1) * sizeof(double));
    double *col = (double *)malloc((batch + 1) * sizeof(double));
    unsigned char *active = (unsigned char *)calloc(batch + 1, 1);
    int status = GP_NN_OK;
    if (cur == NULL || nxt == NULL || col == NULL || active == NULL) {
        status = GP_NN_ENOMEM;
    } else {
        const size_t first = lo * GP_NN_ENTRY_CHUNK;
        const size_t last = hi * GP_NN_ENTRY_CHUNK < a->k ? hi * GP_NN_ENTRY_CHUNK : a->k;
        for (size_t e = first; e < last; ++e) {
            int crossing = 0;
            for (size_t m = 0; m < a->m_count; ++m)
                gp_nn_one_difference(a, e, m, cur, nxt, col, active, &crossing);
            a->crossed[e] = crossing ? 1 : 0;
        }
    }
    free(cur);
    free(nxt);
    free(col);
    free(active);
    return status;
}

/* Every table index the loop can form stays inside its table. */
static int gp_nn_stages_valid(const gp_nn_stages *st, const gp_nn_loss *lt, size_t batch,
                              size_t n_out)
{
    if (st->count > 0 && (st->kinds == NULL || st->codes == NULL || st->widths_in == NULL ||
                          st->widths_out == NULL || st->offs == NULL || st->w_offs == NULL ||
                          st->base_in == NULL || st->base_out == NULL || st->deriv == NULL ||
                          st->weights == NULL || st->sens == NULL))
        return 0;
    if (n_out > st->max_width)
        return 0;
    size_t width = n_out, widest = n_out;
    for (size_t s = 0; s < st->count; ++s) {
        const int64_t w_in = st->widths_in[s], w_out = st->widths_out[s];
        const int64_t off = st->offs[s], wo = st->w_offs[s];
        if (w_in < 1 || w_out < 1 || off < 0 || wo < 0 || (size_t)w_in != width ||
            (size_t)w_out > st->max_width)
            return 0;
        if ((size_t)off > st->table_size || batch * (size_t)w_in > st->table_size - (size_t)off)
            return 0;
        if (st->kinds[s] == GP_NN_STAGE_ACTIVATION) {
            if (w_in != w_out)
                return 0;
        } else if (st->kinds[s] == GP_NN_STAGE_DENSE) {
            if ((size_t)wo > st->weight_size ||
                (size_t)w_in * (size_t)w_out > st->weight_size - (size_t)wo)
                return 0;
        } else {
            return 0;
        }
        width = (size_t)w_out;
        if (width > widest)
            widest = width;
    }
    /* max_width sizes each thread's scratch (batch * max_width + 1 doubles): it must be
     * the widest layer, no more, and that scratch size must not overflow size_t */
    if (width != lt->width || st->max_width != widest ||
        (batch > 0 && widest > (SIZE_MAX / sizeof(double) - 1) / batch))
        return 0;
    if (lt->code != GP_NN_LOSS_MSE && lt->code != GP_NN_LOSS_SOFTMAX_CE)
        return 0;
    return batch == 0 || (lt->resid != NULL && lt->prob != NULL && lt->mass != NULL &&
                          lt->targets != NULL && lt->rho != NULL);
}

int gp_nn_entry_differences(const double *xin, size_t batch, size_t n_in, size_t n_out,
                            const int64_t *rows, const int64_t *cols, const double *steps,
                            size_t k, const double *offsets, size_t m,
                            const gp_nn_stages *stages, const gp_nn_loss *loss,
                            double *dl, double *noise, uint8_t *crossed, int threads)
{
    if (k == 0)
        return GP_NN_OK;
    if (stages == NULL || loss == NULL || rows == NULL || cols == NULL || steps == NULL ||
        offsets == NULL || dl == NULL || noise == NULL || crossed == NULL || m == 0 ||
        (batch > 0 && n_in > 0 && xin == NULL) ||
        !gp_nn_stages_valid(stages, loss, batch, n_out))
        return GP_NN_EINVAL;
    for (size_t e = 0; e < k; ++e)
        if (rows[e] < 0 || (size_t)rows[e] > n_in || cols[e] < 0 || (size_t)cols[e] >= n_out)
            return GP_NN_EINVAL;
    gp_nn_entry_args args = {xin, batch, n_in, rows, cols, steps, k, offsets, m,
                             stages, loss, dl, noise, crossed};
    const size_t chunks = (k + GP_NN_ENTRY_CHUNK - 1) / GP_NN_ENTRY_CHUNK;
    return gp_parallel_ranges(chunks, threads, gp_nn_entry_chunks, &args);
}
