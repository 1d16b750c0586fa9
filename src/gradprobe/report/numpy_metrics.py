"""The NumPy reference of the per-entry error metrics.

:mod:`gradprobe.report.metrics` uses it for small checks and until the fused
kernel (:mod:`gradprobe.report.metrics_kernel`) is ready; the kernel computes
the same bits (``tests/test_verdict.py`` compares them).
"""
from __future__ import annotations

import numpy as np

from .. import config

def _summary_of(abs_error: np.ndarray, rel_error: np.ndarray, ratio: np.ndarray,
                kink: np.ndarray) -> tuple[float, float, int | None]:
    """The summary numbers of a report from its per-entry arrays."""
    smooth = ~np.asarray(kink, dtype=bool)
    masked = np.where(smooth, ratio, -1.0)
    worst = None if masked.size == 0 or masked.max() < 0 else int(np.argmax(masked))
    return (float(abs_error[smooth].max(initial=0.0)),
            float(rel_error[smooth].max(initial=0.0)), worst)


def _passes(a: np.ndarray, n: np.ndarray, bar: np.ndarray | float, rtol: float, atol: float,
            kink: np.ndarray | None, *, want_failed: bool
            ) -> tuple[np.ndarray | None, tuple[float, float, int | None]]:
    """:func:`_summary_of` (and ``ratio > 1``) of :func:`entry_metrics`, computed
    ``config.VERDICT_CHUNK`` entries at a time: the same numbers, without
    full-size temporaries. NaN propagates into the maxima; the worst position is
    the first NaN ratio, else the first largest, as ``np.argmax`` over all."""
    a = np.asarray(a, dtype=np.float64)
    size = a.size
    bar = np.broadcast_to(np.asarray(bar, dtype=np.float64), (size,))
    failed = np.empty(size, dtype=bool) if want_failed else None
    max_abs = max_rel = 0.0
    best, best_pos, nan_pos = -np.inf, None, None
    for start in range(0, size, config.VERDICT_CHUNK):
        sl = slice(start, min(size, start + config.VERDICT_CHUNK))
        abs_error, rel_error, _, ratio = _error_metrics(a[sl], n[sl], bar[sl], rtol, atol)
        if failed is not None:
            failed[sl] = ratio > 1.0
        smooth = np.ones(ratio.shape, bool) if kink is None else ~np.asarray(kink[sl], bool)
        max_abs = float(np.max([max_abs, abs_error[smooth].max(initial=0.0)]))
        max_rel = float(np.max([max_rel, rel_error[smooth].max(initial=0.0)]))
        masked = np.where(smooth, ratio, -1.0)
        at = int(np.argmax(masked))
        if nan_pos is None and np.isnan(masked[at]):
            nan_pos = start + at
        elif masked[at] > best:
            best, best_pos = float(masked[at]), start + at
    if nan_pos is not None:
        worst = nan_pos
    else:
        worst = None if best_pos is None or best < 0 else best_pos
    return failed, (max_abs, max_rel, worst)


def _error_metrics(a: np.ndarray, n: np.ndarray, bar: np.ndarray | float, rtol: float,
                   atol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(abs_error, rel_error, allowance, ratio)``: the NumPy reference of
    :func:`gradprobe.report.metrics_kernel.error_metrics`, used for small checks."""
    with np.errstate(invalid="ignore", over="ignore"):
        abs_error = np.abs(a - n)
        scale = np.maximum(np.abs(a), np.abs(n))
        rel_error = np.where(scale > 0, abs_error / np.where(scale > 0, scale, 1.0), 0.0)
        allowance = np.maximum(np.maximum(atol, rtol * scale), bar)
        ratio = np.where(allowance > 0, abs_error / np.where(allowance > 0, allowance, 1.0),
                         np.where(abs_error > 0, np.inf, 0.0))
    finite = np.isfinite(a) & np.isfinite(n)  # an entry that cannot be judged fails
    ratio = np.where(finite, ratio, np.inf)
    abs_error = np.where(finite, abs_error, np.inf)
    rel_error = np.where(finite, rel_error, np.inf)
    return abs_error, rel_error, np.broadcast_to(allowance, a.shape).copy(), ratio


def presentation(a: np.ndarray, n: np.ndarray, bar: np.ndarray | float, rtol: float,
                 atol: float, kink: np.ndarray, count: int,
                 chunk: int) -> tuple[np.ndarray, float | None]:
    """What a report shows, ``chunk`` entries at a time: the positions of the
    ``count`` largest error/allowance ratios (NaN counts as inf; ties in order of
    position, as a stable ``argsort`` of all ratios), and the largest relative
    error over the entries that are not kinks and whose ``max(|a|, |n|)`` is
    above ``max(atol, bar)`` (or whose relative error is not finite); None when
    there is no such entry, NaN once one is NaN."""
    a = np.asarray(a, dtype=np.float64)
    size = a.size
    bar = np.broadcast_to(np.asarray(bar, dtype=np.float64), (size,))
    kink = np.asarray(kink, dtype=bool)
    picks, values = [], []
    best = None
    for start in range(0, size, chunk):
        sl = slice(start, min(size, start + chunk))
        _, rel, _, ratio = _error_metrics(a[sl], n[sl], bar[sl], rtol, atol)
        r = np.where(np.isnan(ratio), np.inf, ratio)
        k = min(count, r.size)
        if k > 0:
            kth = np.partition(r, r.size - k)[r.size - k]
            above = np.flatnonzero(r > kth)
            tied = np.flatnonzero(r == kth)[:k - above.size]
            chosen = np.concatenate([above, tied])
            picks.append(chosen + start)
            values.append(r[chosen])
        scale = np.maximum(np.abs(a[sl]), np.abs(n[sl]))
        floor = np.maximum(atol, np.nan_to_num(bar[sl], nan=0.0))
        with np.errstate(invalid="ignore"):
            meaningful = ~kink[sl] & ((scale > floor) | ~np.isfinite(rel))
        if meaningful.any():
            top = float(rel[meaningful].max())
            if best is None or np.isnan(top) or (not np.isnan(best) and top > best):
                best = top  # NaN, once seen, is the maximum (as ndarray.max)
    if not picks:
        return np.zeros(0, dtype=np.int64), best
    pos, val = np.concatenate(picks), np.concatenate(values)
    return pos[np.lexsort((pos, -val))][:count].astype(np.int64), best
