"""A fused, parallel Numba kernel for the per-entry error metrics of :func:`judge`.

For millions of entries (a full check of a 4096 x 4096 layer) NumPy's
separate passes over the arrays dominate the check; this kernel computes the
absolute and relative errors, the allowance and the error/allowance ratio in
one pass. It computes exactly what the NumPy reference in
:mod:`gradprobe.verdict` computes (``tests/test_verdict.py`` compares them
bit for bit), and is imported only for large checks, so ``import gradprobe``
does not import Numba.

Its cold compile (1.5-6 s on 2 cores) is much longer than NumPy's passes over
a few million entries, so the kernel is used when it loads from Numba's disk
cache, or once the NumPy reference has run for longer than that compile would
take in this process (``config.NUMBA_COMPILE_PAYOFF_SECONDS``): a first check
on an empty cache compiles nothing here. Both give the same bits.
"""
from __future__ import annotations

import time

import numba
import numpy as np
from numba.core import sigutils

from . import config
from .compilation import install_notice, load_cached

install_notice()  # says so once when the kernel below compiles

_SIGNATURE = "void(f8[::1], f8[::1], f8[::1], f8, f8, f8[::1], f8[::1], f8[::1], f8[::1])"
_SIGNATURE_ARGS = sigutils.normalize_signature(_SIGNATURE)[0]


@numba.njit(cache=True, fastmath=False, inline="always")
def _maximum(x, y):  # pragma: no cover - compiled
    """``np.maximum`` for scalars: NaN if either is NaN."""
    if x != x or y != y:
        return np.nan
    return x if x >= y else y


@numba.njit(parallel=True, cache=True, fastmath=False, nogil=True)
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
    if not _kernel_ready():
        from .verdict import _error_metrics

        start = time.perf_counter()
        result = _error_metrics(a, n, bar, rtol, atol)
        _NUMPY_SECONDS[0] += time.perf_counter() - start
        return result
    out = [np.empty(a.size) for _ in range(4)]
    _metrics(a, n, bar, float(rtol), float(atol), *out)
    return out[0], out[1], out[2], out[3]


#: Seconds this process has spent in the NumPy reference instead of the kernel.
_NUMPY_SECONDS = [0.0]


def _kernel_ready() -> bool:
    """The kernel is loaded from the cache, or compiled once NumPy has run as long
    as its compile would take (``config.NUMBA_COMPILE_PAYOFF_SECONDS``)."""
    if _SIGNATURE_ARGS in _metrics.overloads:
        return True
    if load_cached(_metrics, _SIGNATURE):
        return True
    if _NUMPY_SECONDS[0] < config.NUMBA_COMPILE_PAYOFF_SECONDS:
        return False
    _metrics.compile(_SIGNATURE)
    return True
