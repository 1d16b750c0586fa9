"""A fused, parallel Numba kernel for the per-entry error metrics of :func:`judge`.

For millions of entries (a full check of a 4096 x 4096 layer) NumPy's
separate passes over the arrays dominate the check; this kernel computes the
absolute and relative errors, the allowance and the error/allowance ratio in
one pass. It computes exactly what the NumPy reference in
:mod:`gradprobe.report.metrics` computes (``tests/test_verdict.py`` compares them
bit for bit), and is imported only for large checks, so ``import gradprobe``
does not import Numba.

Their cold compile (1.5-6 s on 2 cores) is much longer than NumPy's passes over
a few million entries, so the kernels are used when they load from Numba's disk
cache, or once the NumPy reference has run for longer than that compile would
take in this process (``config.NUMBA_COMPILE_PAYOFF_SECONDS``): a first check
on an empty cache compiles nothing here. Both give the same bits; until then a
large check holds NumPy's per-entry arrays (see :func:`ready`).
"""
from __future__ import annotations

import time

import numba
import numpy as np
from numba.core import sigutils

from .. import config
from ..compilation import install_notice, load_cached

install_notice()  # says so once when a kernel below compiles

_SIGNATURE = "void(f8[::1], f8[::1], f8[::1], f8, f8, f8[::1], f8[::1], f8[::1], f8[::1])"
_PASS_SIGNATURE = "UniTuple(f8, 3)(f8[::1], f8[::1], f8[::1], f8, f8, b1[::1], b1, b1[::1], b1, i8)"
_PRESENTATION_SIGNATURE = ("void(f8[::1], f8[::1], f8[::1], f8, f8, b1[::1], i8, i8, f8[:, ::1], "
                           "i8[:, ::1], f8[::1], b1[::1])")


@numba.njit("f8(f8, f8)", inline="always", **config.NUMBA_FLAGS)
def _maximum(x, y):  # pragma: no cover - compiled
    """``np.maximum`` for scalars: NaN if either is NaN."""
    if x != x or y != y:
        return np.nan
    return x if x >= y else y


@numba.njit(inline="always", **config.NUMBA_FLAGS)
def _entry(ai, ni, bi, rtol, atol):  # pragma: no cover - compiled
    """``(abs_error, rel_error, allowance, ratio)`` of one entry (the one formula)."""
    err = abs(ai - ni)
    scale = _maximum(abs(ai), abs(ni))
    rel = err / scale if scale > 0.0 else 0.0
    allow = _maximum(_maximum(atol, rtol * scale), bi)
    if allow > 0.0:
        r = err / allow
    elif err > 0.0:
        r = np.inf
    else:
        r = 0.0
    if not (np.isfinite(ai) and np.isfinite(ni)):  # an entry that cannot be judged fails
        err = np.inf
        rel = np.inf
        r = np.inf
    return err, rel, allow, r


@numba.njit(parallel=True, **config.NUMBA_FLAGS)
def _metrics(a, n, bar, rtol, atol, abs_error, rel_error, allowance, ratio):  # pragma: no cover
    for i in numba.prange(a.size):
        err, rel, allow, r = _entry(a[i], n[i], bar[i], rtol, atol)
        abs_error[i] = err
        rel_error[i] = rel
        allowance[i] = allow
        ratio[i] = r


@numba.njit(parallel=True, **config.NUMBA_FLAGS)
def _verdict_pass(a, n, bar, rtol, atol, kink, use_kink, failed, write_failed,
                  chunk):  # pragma: no cover - compiled
    """One pass over the entries: ``failed[i] = ratio > 1`` (when ``write_failed``)
    and the max abs and rel error and the worst position over entries that
    are not kinks (``kink`` read only when ``use_kink``).

    NumPy's semantics: a NaN anywhere makes the max NaN, and the worst
    position is the first NaN ratio if there is one, else the first largest
    ratio; kinks count as ratio -1. Each chunk reduces its own slice, then
    the chunks are reduced in order.
    """
    size = a.size
    chunks = (size + chunk - 1) // chunk
    top = np.zeros((chunks, 2))
    best = np.full(chunks, -np.inf)
    best_pos = np.full(chunks, -1, dtype=np.int64)
    nan_pos = np.full(chunks, -1, dtype=np.int64)
    for c in numba.prange(chunks):
        max_abs = 0.0
        max_rel = 0.0
        b = -np.inf
        bp = -1
        first_nan = -1
        for i in range(c * chunk, min(size, (c + 1) * chunk)):
            err, rel, allow, r = _entry(a[i], n[i], bar[i], rtol, atol)
            if write_failed:
                failed[i] = r > 1.0
            if use_kink and kink[i]:
                r = -1.0
            else:
                max_abs = _maximum(max_abs, err)
                max_rel = _maximum(max_rel, rel)
            if r != r:
                if first_nan < 0:
                    first_nan = i
            elif r > b:
                b = r
                bp = i
        top[c, 0] = max_abs
        top[c, 1] = max_rel
        best[c] = b
        best_pos[c] = bp
        nan_pos[c] = first_nan
    max_abs = 0.0
    max_rel = 0.0
    for c in range(chunks):
        max_abs = _maximum(max_abs, top[c, 0])
        max_rel = _maximum(max_rel, top[c, 1])
    b = -np.inf
    bp = -1
    for c in range(chunks):
        if nan_pos[c] >= 0:  # np.argmax: the first NaN wins
            bp = nan_pos[c]
            b = np.nan
            break
        if best[c] > b:
            b = best[c]
            bp = best_pos[c]
    if b == b and b < 0.0:
        bp = -1  # no entry, or every entry is a kink
    return max_abs, max_rel, float(bp)


@numba.njit(parallel=True, **config.NUMBA_FLAGS)
def _presentation_pass(a, n, bar, rtol, atol, kink, count, chunk, keys, positions, shown,
                       seen):  # pragma: no cover - compiled
    """What a report shows, in one pass: per chunk, the ``count`` largest
    error/allowance ratios (NaN as inf; descending, ties by position) into
    ``keys`` and ``positions`` (-1 where the chunk has fewer entries), and the
    largest relative error over the entries the table shows one for (not a
    kink; ``max(|a|, |n|)`` above ``max(atol, bar)``, or the relative error
    not finite) into ``shown`` (``seen`` False where the chunk has none; NaN
    wins, as NumPy's max)."""
    size = a.size
    chunks = (size + chunk - 1) // chunk
    for c in numba.prange(chunks):
        filled = 0
        top = 0.0
        any_seen = False
        for i in range(c * chunk, min(size, (c + 1) * chunk)):
            err, rel, allow, r = _entry(a[i], n[i], bar[i], rtol, atol)
            key = np.inf if r != r else r
            if count > 0 and (filled < count or key > keys[c, count - 1]):
                j = filled if filled < count else count - 1
                while j > 0 and keys[c, j - 1] < key:
                    keys[c, j] = keys[c, j - 1]
                    positions[c, j] = positions[c, j - 1]
                    j -= 1
                keys[c, j] = key
                positions[c, j] = i
                if filled < count:
                    filled += 1
            if kink[i]:
                continue
            scale = _maximum(abs(a[i]), abs(n[i]))
            b = bar[i]
            if b != b:  # np.nan_to_num
                b = 0.0
            elif b == np.inf:
                b = 1.7976931348623157e308
            elif b == -np.inf:
                b = -1.7976931348623157e308
            floor = atol if atol >= b else b
            if scale > floor or not np.isfinite(rel):
                top = rel if not any_seen else _maximum(top, rel)
                any_seen = True
        shown[c] = top
        seen[c] = any_seen


def presentation(a: np.ndarray, n: np.ndarray, bar: np.ndarray | float, rtol: float,
                 atol: float, kink: np.ndarray, count: int,
                 chunk: int) -> tuple[np.ndarray, float | None]:
    """``(positions of the count largest ratios, largest shown relative error)``:
    what :func:`gradprobe.report.numpy_metrics.presentation` computes, in one
    parallel pass.

    Examples
    --------
    >>> import numpy as np
    >>> presentation(np.array([1.0, 2.02, 3.0]), np.array([1.0, 2.0, 3.0]), 1e-10, 1e-5,
    ...              0.0, np.zeros(3, bool), 2, 1024)
    (array([1, 0]), 0.00990099009900991)
    """
    a, n, bar = _inputs(a, n, bar)
    kink = np.require(kink, np.bool_, ["C"])
    count = max(int(count), 0)
    chunks = max(1, (a.size + chunk - 1) // chunk)
    keys = np.full((chunks, max(count, 1)), -np.inf)
    positions = np.full((chunks, max(count, 1)), -1, dtype=np.int64)
    shown = np.zeros(chunks)
    seen = np.zeros(chunks, dtype=np.bool_)
    _presentation_pass(a, n, bar, float(rtol), float(atol), kink, count, int(chunk), keys,
                       positions, shown, seen)
    valid = positions[:, :count] >= 0
    pos, key = positions[:, :count][valid], keys[:, :count][valid]
    order = pos[np.lexsort((pos, -key))][:count]
    if not seen.any():
        return order, None
    values = shown[seen]
    return order, float(np.nan if np.isnan(values).any() else values.max())


def _inputs(a: np.ndarray, n: np.ndarray,
            bar: np.ndarray | float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """C-contiguous writeable float64 views (copies only if needed) of the inputs."""
    a = np.require(a, np.float64, ["C", "W"])
    n = np.require(n, np.float64, ["C", "W"])
    bar = np.asarray(bar, dtype=np.float64)
    if bar.shape != a.shape:
        bar = np.broadcast_to(bar, a.shape)
    bar = np.require(bar, np.float64, ["C", "W"])
    return a, n, bar


def first_pass(a: np.ndarray, n: np.ndarray, bar: np.ndarray | float, rtol: float,
               atol: float, chunk: int) -> tuple[np.ndarray, tuple[float, float, int | None]]:
    """``ratio > 1`` of :func:`error_metrics` and the :func:`error_summary` with no
    kinks, in one pass and without any per-entry float array.

    Examples
    --------
    >>> import numpy as np
    >>> failed, summary = first_pass(np.array([1.0, 2.02]), np.array([1.0, 2.0]), 1e-10,
    ...                              1e-5, 0.0, 1024)
    >>> failed, summary[2]
    (array([False,  True]), 1)
    """
    a, n, bar = _inputs(a, n, bar)
    failed = np.empty(a.size, dtype=np.bool_)
    max_abs, max_rel, pos = _verdict_pass(a, n, bar, float(rtol), float(atol),
                                          np.zeros(1, dtype=np.bool_), False, failed, True,
                                          int(chunk))
    return failed, (max_abs, max_rel, None if pos < 0 else int(pos))


def error_summary(a: np.ndarray, n: np.ndarray, bar: np.ndarray | float, rtol: float,
                  atol: float, kink: np.ndarray, chunk: int) -> tuple[float, float, int | None]:
    """``(max abs error, max rel error, worst position)`` over entries that are not kinks,
    as NumPy computes them from the arrays of :func:`error_metrics`.

    Examples
    --------
    >>> import numpy as np
    >>> error_summary(np.array([1.0, 2.02]), np.array([1.0, 2.0]), 1e-10, 1e-5, 0.0,
    ...               np.array([False, True]), 1024)
    (0.0, 0.0, 0)
    """
    a, n, bar = _inputs(a, n, bar)
    kink = np.require(kink, np.bool_, ["C"])
    max_abs, max_rel, pos = _verdict_pass(a, n, bar, float(rtol), float(atol), kink, True,
                                          np.zeros(1, dtype=np.bool_), False, int(chunk))
    return max_abs, max_rel, (None if pos < 0 else int(pos))


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
    a, n, bar = _inputs(a, n, bar)
    if not ready():
        from .numpy_metrics import _error_metrics

        start = time.perf_counter()
        result = _error_metrics(a, n, bar, rtol, atol)
        NUMPY_SECONDS[0] += time.perf_counter() - start
        return result
    out = [np.empty(a.size) for _ in range(4)]
    _metrics(a, n, bar, float(rtol), float(atol), *out)
    return out[0], out[1], out[2], out[3]


#: Seconds this process has spent in the NumPy reference instead of the kernels.
NUMPY_SECONDS = [0.0]
_KERNELS = ((_metrics, _SIGNATURE), (_verdict_pass, _PASS_SIGNATURE),
            (_presentation_pass, _PRESENTATION_SIGNATURE))


#: Kernels found missing from the disk cache in this process: not probed again (the
#: probe reads the cache index); they become ready only by paying for their compile.
_NOT_CACHED: set[int] = set()


def _loaded(dispatcher, signature: str) -> bool:
    args = sigutils.normalize_signature(signature)[0]
    if args in dispatcher.overloads:
        return True
    if id(dispatcher) in _NOT_CACHED:
        return False
    if load_cached(dispatcher, signature):
        return True
    _NOT_CACHED.add(id(dispatcher))
    return False


def ready() -> bool:
    """The kernels are usable now: loaded from memory or the disk cache, or compiled
    once NumPy has run as long as their compile would take
    (``config.NUMBA_COMPILE_PAYOFF_SECONDS``; callers add their NumPy time to
    :data:`NUMPY_SECONDS`)."""
    if all(_loaded(k, s) for k, s in _KERNELS):
        return True
    if NUMPY_SECONDS[0] < config.NUMBA_COMPILE_PAYOFF_SECONDS:
        return False
    for kernel, signature in _KERNELS:
        kernel.compile(signature)
    return True
