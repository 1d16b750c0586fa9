"""Checking a loss written in C: linear regression through cffi.

The loss has gradprobe's C ABI, ``double loss(const double *theta, size_t n,
void *ctx)``: ``theta`` holds the parameters ``w`` (``d`` weights) and ``b``
(the bias) one after the other, and ``ctx`` points to the data (a struct
with the inputs, the targets and their sizes)::

    E(w, b) = 1 / (2 m) * sum_r (x_r . w + b - y_r)^2
    dE/dw = X^T (Xw + b - y) / m,   dE/db = sum(Xw + b - y) / m

:func:`build` compiles the C code with cffi (API mode, into a temporary
folder: it needs a C compiler), :func:`check_correct` and
:func:`check_buggy` check the hand-written gradient, the second with the
classic mistake of forgetting the ``1/m``. With the C kernel built,
``gp.check`` runs every perturbed loss in C threads (``backend="cffi"``).

Run with ``python -m gradprobe.examples.c_loss``.
"""
from __future__ import annotations

import importlib.util
import tempfile
from typing import Any

import numpy as np

import gradprobe as gp

#: Declarations cffi parses (the loss must have exactly this signature).
CDEF = """
typedef struct { const double *x; const double *y; size_t m; size_t d; } regression_data;
double regression_loss(const double *theta, size_t n, void *ctx);
"""

#: The C implementation: theta = (w[0], ..., w[d-1], b).
C_SOURCE = r"""
#include <stddef.h>

typedef struct { const double *x; const double *y; size_t m; size_t d; } regression_data;

double regression_loss(const double *theta, size_t n, void *ctx)
{
    const regression_data *data = (const regression_data *)ctx;
    const double *w = theta, b = theta[data->d];
    double total = 0.0;
    (void)n;  /* n == d + 1, validated by gradprobe before the call */
    for (size_t r = 0; r < data->m; ++r) {
        double residual = b - data->y[r];
        for (size_t j = 0; j < data->d; ++j)
            residual += data->x[r * data->d + j] * w[j];
        total += residual * residual;
    }
    return total / (2.0 * (double)data->m);
}
"""

#: Rows and features of the synthetic data set.
ROWS, FEATURES = 50, 5


def build(tmpdir: str | None = None) -> tuple[Any, Any]:
    """Compile :data:`C_SOURCE` with cffi and return ``(ffi, lib)``.

    Raises
    ------
    Exception
        Whatever cffi raises when no C compiler is available
        (``distutils``/``setuptools`` ``CompileError`` and the like).
    """
    import cffi

    builder = cffi.FFI()
    builder.cdef(CDEF)
    builder.set_source("_gradprobe_example_c_loss", C_SOURCE)
    path = builder.compile(tmpdir=tmpdir or tempfile.mkdtemp(prefix="gradprobe-c-loss-"))
    spec = importlib.util.spec_from_file_location("_gradprobe_example_c_loss", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.ffi, module.lib


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Inputs ``X`` (ROWS x FEATURES) and targets ``y``, float64, C-contiguous."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((ROWS, FEATURES))
    y = X @ np.arange(1.0, FEATURES + 1) + 0.5 + 0.1 * rng.standard_normal(ROWS)
    return X, y


def context(ffi: Any, X: np.ndarray, y: np.ndarray) -> tuple[Any, tuple]:
    """The ``ctx`` pointer for the loss, and the buffers it points into.

    Keep the second value alive as long as the pointer is used: cffi does
    not own the NumPy buffers.
    """
    x_buf, y_buf = ffi.from_buffer("double[]", X), ffi.from_buffer("double[]", y)
    ctx = ffi.new("regression_data *", {"x": x_buf, "y": y_buf, "m": X.shape[0],
                                        "d": X.shape[1]})
    return ctx, (X, y, x_buf, y_buf)


def gradient(w: np.ndarray, b: np.ndarray, X: np.ndarray, y: np.ndarray,
             forget_mean: bool = False) -> dict[str, np.ndarray]:
    """The hand-written gradient (``forget_mean`` drops the ``1/m``: the bug)."""
    residual = X @ w + b[0] - y
    scale = 1.0 if forget_mean else 1.0 / len(y)
    return {"w": X.T @ residual * scale, "b": np.array([residual.sum() * scale])}


def point() -> dict[str, np.ndarray]:
    """The point checked: ``w`` and a 1-element ``b``, in the order of ``theta``."""
    return {"w": np.linspace(-1.0, 1.0, FEATURES), "b": np.array([0.25])}


def check_correct(ffi: Any, lib: Any) -> gp.CheckReport:
    """Check the correct gradient of the C loss (passes).

    Examples
    --------
    >>> try:
    ...     ffi, lib = build()
    ... except Exception:  # no C compiler: nothing to show
    ...     ffi = None
    >>> ffi is None or check_correct(ffi, lib).passed
    True
    """
    X, y = data()
    ctx, keep = context(ffi, X, y)
    params = point()
    return gp.check(lib.regression_loss, params, gradient(params["w"], params["b"], X, y),
                    args=(ctx,))


def check_buggy(ffi: Any, lib: Any) -> gp.CheckReport:
    """Check the gradient that forgot the ``1/m`` (fails, diagnosed as scaled)."""
    X, y = data()
    ctx, keep = context(ffi, X, y)
    params = point()
    return gp.check(lib.regression_loss, params,
                    gradient(params["w"], params["b"], X, y, forget_mean=True), args=(ctx,))


def main() -> None:
    """Compile the C loss and print both reports."""
    ffi, lib = build()
    print(check_correct(ffi, lib))
    print()
    print(check_buggy(ffi, lib))


if __name__ == "__main__":
    main()
