/* gradprobe C kernel: the perturbation loop of the finite-difference engine.
 *
 * The user's loss has the ABI  double loss(const double *theta, size_t n, void *ctx)
 * where theta is the concatenation (C order) of every parameter, as float64.
 * gp_evaluate() perturbs one entry of theta at a time on private copies and
 * collects the losses; it never writes theta.  Every pointer and size is
 * validated by the Python caller (gradprobe.engines.cffi) before it gets here.
 */
#ifndef GRADPROBE_KERNEL_H
#define GRADPROBE_KERNEL_H

#include <stddef.h>
#include <stdint.h>

typedef double (*gp_loss_fn)(const double *theta, size_t n, void *ctx);

/* Error codes of gp_evaluate (0 is success). */
#define GP_OK 0
#define GP_EINVAL 1   /* a NULL pointer, k or m out of range, or an entry >= size */
#define GP_ENOMEM 2   /* a private copy of theta could not be allocated */

/* Losses at perturbed points.
 *
 *   out[i*m + j] = loss(theta with theta[offset + entries[i]] = points[i*m + j])
 *
 * for i < k, j < m.  size is the number of entries of the perturbed
 * parameter (entries must be < size, offset + size <= n).  threads >= 1
 * threads (at most k) each make one copy of theta and claim chunks of rows
 * from a shared counter (restoring the copy after every entry); threads == 1
 * runs in the calling thread.  Every out[i*m + j] is the same whatever the
 * thread count: each is one call of loss on theta with one entry replaced.
 * Returns GP_OK, GP_EINVAL or GP_ENOMEM (out is then unspecified). */
int gp_evaluate(gp_loss_fn loss, void *ctx, const double *theta, size_t n,
                size_t offset, size_t size, const int64_t *entries, size_t k,
                const double *points, size_t m, double *out, int threads);

/* Threads gp_evaluate can actually run (1 when built without pthreads). */
int gp_max_threads(void);

#endif
