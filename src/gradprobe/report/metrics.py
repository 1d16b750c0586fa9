"""Per-entry error metrics: absolute and relative errors, allowances, ratios.

What a report shows for each entry and what the verdict compares: NumPy for
small checks, the fused kernel of :mod:`gradprobe.report.metrics_kernel` for
large ones (the two agree bit for bit).
"""
from __future__ import annotations

import contextlib
import time
from typing import Iterator

import numpy as np

from .. import config
from .numpy_metrics import _error_metrics, _passes
def entry_metrics(a: np.ndarray, n: np.ndarray, bar: np.ndarray | float, rtol: float,
                  atol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(abs_error, rel_error, allowance, ratio)`` of every entry: the fused kernel
    for large arrays, NumPy below ``config.VERDICT_KERNEL_MIN_ENTRIES`` (the two
    agree bit for bit)."""
    if _kernel(np.size(a)):
        from .metrics_kernel import error_metrics

        return error_metrics(a, n, bar, rtol, atol)
    with _numpy_time(np.size(a)):
        return _error_metrics(np.asarray(a, dtype=np.float64), n, bar, rtol, atol)


def _kernel(size: int) -> bool:
    """Use the fused kernels: a large check (``config.VERDICT_KERNEL_MIN_ENTRIES``)
    whose kernels load from the cache or have paid for their compile
    (:func:`gradprobe.report.metrics_kernel.ready`)."""
    if size < config.VERDICT_KERNEL_MIN_ENTRIES:
        return False
    from . import metrics_kernel as verdict_kernel

    return verdict_kernel.ready()


@contextlib.contextmanager
def _numpy_time(size: int) -> Iterator[None]:
    """Count the time of a large check's NumPy passes towards the kernels' compile."""
    start = time.perf_counter()
    try:
        yield
    finally:
        if size >= config.VERDICT_KERNEL_MIN_ENTRIES:
            from . import metrics_kernel as verdict_kernel

            verdict_kernel.NUMPY_SECONDS[0] += time.perf_counter() - start


def first_pass(a: np.ndarray, n: np.ndarray, bar: np.ndarray | float, rtol: float,
               atol: float) -> tuple[np.ndarray, tuple[float, float, int | None]]:
    """The failing entries (``ratio > 1`` of :func:`entry_metrics`) and the
    :func:`error_summary` of a check without kinks; for large checks one fused
    pass without per-entry float arrays (NumPy, chunk by chunk, until the
    kernel is ready)."""
    if _kernel(np.size(a)):
        from .metrics_kernel import first_pass as kernel_pass

        return kernel_pass(a, n, bar, rtol, atol, config.VERDICT_CHUNK)
    with _numpy_time(np.size(a)):
        failed, summary = _passes(a, n, bar, rtol, atol, None, want_failed=True)
    return failed, summary


def error_summary(a: np.ndarray, n: np.ndarray, bar: np.ndarray | float, rtol: float,
                  atol: float, kink: np.ndarray) -> tuple[float, float, int | None]:
    """``(max_abs_error, max_rel_error, worst position)`` over the entries that are
    not kinks, exactly as :class:`ParamReport` derives them from the arrays of
    :func:`entry_metrics` (NaN propagates; the worst position is the first
    NaN ratio, else the first largest; None when every entry is a kink)."""
    if _kernel(np.size(a)):
        from .metrics_kernel import error_summary as kernel_summary

        return kernel_summary(a, n, bar, rtol, atol, kink, config.VERDICT_CHUNK)
    with _numpy_time(np.size(a)):
        return _passes(a, n, bar, rtol, atol, kink, want_failed=False)[1]


def presentation(a: np.ndarray, n: np.ndarray, bar: np.ndarray | float, rtol: float,
                 atol: float, kink: np.ndarray,
                 count: int) -> tuple[np.ndarray, float | None]:
    """``(positions of the count worst entries, largest shown relative error)``:
    what ``str(report)`` and ``report.to_dict()`` show of a parameter, in one
    pass without per-entry float arrays (the fused kernel for large checks,
    NumPy ``config.VERDICT_CHUNK`` entries at a time otherwise; the same
    result). See :func:`gradprobe.report.numpy_metrics.presentation`."""
    if _kernel(np.size(a)):
        from .metrics_kernel import presentation as kernel_presentation

        return kernel_presentation(a, n, bar, rtol, atol, kink, count, config.VERDICT_CHUNK)
    from .numpy_metrics import presentation as numpy_presentation

    with _numpy_time(np.size(a)):
        return numpy_presentation(a, n, bar, rtol, atol, kink, count, config.VERDICT_CHUNK)
