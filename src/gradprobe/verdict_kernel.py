"""A fused, parallel Numba kernel for the per-entry error metrics of :func:`judge`.

For millions of entries (a full check of a 4096 x 4096 layer) NumPy's
separate passes over the arrays dominate the check; this kernel computes the
absolute and relative errors, the allowance and the error/allowance ratio in
one pass. It computes exactly what the NumPy reference in
:mod:`gradprobe.verdict` computes (``tests/test_verdict.py`` compares them
bit for bit), and is imported only for large checks, so ``import gradprobe``
does not import Numba.
"""
from __future__ import annotations

import numba
import numpy as np

from .compilation import install_notice

install_notice()  # before the kernels below compile (or load from the cache)

_SIGNATURE = "void(f8[::1], f8[::1], f8[::1], f8, f8, f8[::1], f8[::1], f8[::1], f8[::1])"


@numba.njit("f8(f8, f8)", cache=True, fastmath=False, inline="always")
def _maximum(x, y):  # pragma: no cover - compiled
    """``np.maximum`` for scalars: NaN if either is NaN."""
    if x != x or y != y:
        return np.nan
    return x if x >= y else y


@numba.njit(_SIGNATURE, parallel=True, cache=True, fastmath=False, nogil=True)
def _metrics(a, n, bar, rtol, atol, abs_error, rel_error, allowance, ratio):  # pragma: no cover
    for i in numba.prange(a.size):
        ai = a[i]
        ni = n[i]
        err = abs(ai - ni)
        scale = _maximum(abs(ai), abs(ni))
        rel = err / scale if scale > 0.0 else 0.0
        allow = _maximum(_maximum(atol, rtol * scale), bar[i])
        if allow > 0.0:
            r = err / allow
        elif err > 0.0:
            r = np.inf
        else:
            r = 0.0
        if not np.isfinite(ai):
            err = np.inf
            rel = np.inf
            r = np.inf
        abs_error[i] = err
        rel_error[i] = rel
        allowance[i] = allow
        ratio[i] = r


def error_metrics(a: np.ndarray, n: np.ndarray, bar: np.ndarray, rtol: float,
                  atol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(abs_error, rel_error, allowance, ratio)`` for 1-d float64 inputs.

    Examples
    --------
    >>> import numpy as np
    >>> err, rel, allow, ratio = error_metrics(np.array([1.0, 2.02]), np.array([1.0, 2.0]),
    ...                                        np.array([1e-10, 1e-10]), 1e-5, 0.0)
    >>> ratio > 1
    array([False,  True])
    """
    # the compiled signature takes writeable C-contiguous float64 (copies only if needed)
    a = np.require(a, np.float64, ["C", "W"])
    n = np.require(n, np.float64, ["C", "W"])
    bar = np.require(np.broadcast_to(np.asarray(bar, dtype=np.float64), a.shape), np.float64,
                     ["C", "W"])
    out = [np.empty(a.size) for _ in range(4)]
    _metrics(a, n, bar, float(rtol), float(atol), *out)
    return out[0], out[1], out[2], out[3]
