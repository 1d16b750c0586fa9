"""cffi build script of the optional C kernel ``gradprobe._ckernel``.

Run at install time through ``setup.py`` (``cffi_modules``); the sources are
``csrc/``: the perturbation loop for C losses (``gp_kernel``), the C twin of
:mod:`gradprobe.nn`'s Numba kernels (``gp_nn``) and their thread pool
(``gp_parallel``). The build may fail (no C compiler): ``setup.py``
then installs gradprobe without the kernel, and
:mod:`gradprobe.engines.cffi` reports it as unavailable.

Build in place by hand (from the repository root)::

    python src/gradprobe/_cffi_build.py
"""
from __future__ import annotations

import os
import sys

from cffi import FFI

_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
_CSRC = os.path.join(_ROOT, "csrc")


def _relative(path: str) -> str:
    """``path`` relative to the working directory when below it (setuptools
    places objects of absolute sources outside ``build/``)."""
    rel = os.path.relpath(path)
    return path if rel.startswith("..") else rel


CDEF = """
typedef double (*gp_loss_fn)(const double *theta, size_t n, void *ctx);
int gp_evaluate(gp_loss_fn loss, void *ctx, const double *theta, size_t n,
                size_t offset, size_t size, const int64_t *entries, size_t k,
                const double *points, size_t m, double *out, int threads);
int gp_max_threads(void);
#define GP_OK 0
#define GP_EINVAL 1
#define GP_ENOMEM 2
"""

#: Declarations of csrc/gp_nn.h that Python calls (cffi checks them against the
#: header when it compiles the module).
NN_CDEF = """
#define GP_NN_IDENTITY 0
#define GP_NN_RELU 1
#define GP_NN_TANH 2
#define GP_NN_SIGMOID 3
#define GP_NN_LOSS_MSE 0
#define GP_NN_LOSS_SOFTMAX_CE 1
#define GP_NN_STAGE_ACTIVATION 0
#define GP_NN_STAGE_DENSE 1
#define GP_NN_OK 0
#define GP_NN_EINVAL 1
#define GP_NN_ENOMEM 2
int gp_nn_matmul_d(const double *A, const double *B, double *C, size_t M, size_t K,
                   size_t N, int threads);
int gp_nn_matmul_f(const float *A, const float *B, float *C, size_t M, size_t K,
                   size_t N, int threads);
int gp_nn_dense_forward_d(const double *X, const double *W, const double *b, double *Z,
                          size_t M, size_t K, size_t N, int threads);
int gp_nn_dense_forward_f(const float *X, const float *W, const float *b, float *Z,
                          size_t M, size_t K, size_t N, int threads);
void gp_nn_transpose_d(const double *A, double *out, size_t M, size_t N);
void gp_nn_transpose_f(const float *A, float *out, size_t M, size_t N);
void gp_nn_column_sums_d(const double *A, double *out, size_t M, size_t N);
void gp_nn_column_sums_f(const float *A, float *out, size_t M, size_t N);
int gp_nn_activation_forward_d(int code, const double *Z, double *A, size_t count,
                               int threads);
int gp_nn_activation_forward_f(int code, const float *Z, float *A, size_t count,
                               int threads);
int gp_nn_activation_backward_d(int code, const double *Z, const double *A,
                                const double *dA, double *dZ, size_t count, int threads);
int gp_nn_activation_backward_f(int code, const float *Z, const float *A,
                                const float *dA, float *dZ, size_t count, int threads);
double gp_nn_mse_loss_d(const double *A, const double *T, size_t M, size_t N, double scale);
double gp_nn_mse_loss_f(const float *A, const float *T, size_t M, size_t N, double scale);
void gp_nn_mse_backward_d(const double *A, const double *T, double scale, double *dA,
                          size_t count);
void gp_nn_mse_backward_f(const float *A, const float *T, double scale, float *dA,
                          size_t count);
double gp_nn_softmax_ce_loss_d(const double *Z, const double *T, size_t M, size_t N,
                               double scale);
double gp_nn_softmax_ce_loss_f(const float *Z, const float *T, size_t M, size_t N,
                               double scale);
void gp_nn_softmax_ce_backward_d(const double *Z, const double *T, double scale, double *dZ,
                                 size_t M, size_t N);
void gp_nn_softmax_ce_backward_f(const float *Z, const float *T, double scale, float *dZ,
                                 size_t M, size_t N);
int gp_nn_contract(const double *L, const double *R, double *out, size_t terms, size_t n_i,
                   size_t n_j, int threads);
typedef struct {
    size_t count;
    const int64_t *kinds, *codes, *widths_in, *widths_out, *offs, *w_offs;
    const double *base_in, *base_out, *deriv, *weights, *sens;
    size_t table_size;
    size_t weight_size;
    size_t max_width;
} gp_nn_stages;
typedef struct {
    int code;
    double scale;
    const double *resid, *prob, *mass, *targets, *rho;
    size_t width;
    double base_ulps;
} gp_nn_loss;
int gp_nn_entry_differences(const double *xin, size_t batch, size_t n_in, size_t n_out,
                            const int64_t *rows, const int64_t *cols, const double *steps,
                            size_t k, const double *offsets, size_t m,
                            const gp_nn_stages *stages, const gp_nn_loss *loss,
                            double *dl, double *noise, uint8_t *crossed, int threads);
"""

#: The C sources of the module, in csrc/.
SOURCES = ("gp_kernel.c", "gp_nn.c", "gp_parallel.c")

ffibuilder = FFI()
ffibuilder.cdef(CDEF + NN_CDEF)
ffibuilder.set_source(
    "gradprobe._ckernel",
    '#include "gp_kernel.h"\n#include "gp_nn.h"',
    sources=[_relative(os.path.join(_CSRC, name)) for name in SOURCES],
    include_dirs=[_relative(_CSRC)],
    # -ffp-contract=off: no fused multiply-add, so the nn kernels round exactly
    # like their Numba twins; -O3 vectorises their row loops (without
    # reassociating any sum); -pthread for the worker threads.
    extra_compile_args=[] if sys.platform == "win32" else ["-O3", "-ffp-contract=off",
                                                            "-pthread"],
    extra_link_args=[] if sys.platform == "win32" else ["-pthread"],
)

if __name__ == "__main__":  # pragma: no cover - manual build
    os.chdir(os.path.join(_ROOT, "src"))
    ffibuilder.compile(verbose=True)
