"""The engine contract and backend selection."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from ..problem.point import Problem


class Engine(Protocol):
    """Evaluates the loss with one entry of one parameter replaced at a time.

    Implementations must never write the user's arrays (they only see the
    problem's private working copies) and must leave the working copies as
    they found them, including when ``f`` raises.

    Optional: ``evaluate_directions(problem, directions, steps)`` returns the
    losses, shape ``(len(directions), len(steps))``, with *every* parameter
    displaced at once: ``directions[i][p]`` is ``None`` (parameter ``p`` keeps
    its value) or a flat float64 array of its size, and the point of
    ``(i, j)`` is ``gradprobe.differences.directional.displace(working[p], directions[i][p],
    steps[j])`` for every ``p`` (``steps`` are complex for the complex step).
    It must add ``len(directions) * len(steps)`` to ``problem.evaluations``.
    Directional checks fall back to
    :func:`gradprobe.engines.python.evaluate_directions` when an engine lacks it.
    """

    name: str

    def evaluate(self, problem: "Problem", param: int, entries: np.ndarray,
                 points: np.ndarray) -> np.ndarray:
        """Losses at perturbed points.

        Parameters
        ----------
        problem : Problem
            The prepared problem (working copies, ``f``, ``args``).
        param : int
            Which parameter is perturbed.
        entries : ndarray of int64, shape (k,)
            Flat (C-order) indices of the entries to perturb.
        points : ndarray, shape (k, m)
            ``points[i, j]`` is written into entry ``entries[i]`` for the
            ``j``-th evaluation; the dtype is the working copy's.

        Returns
        -------
        ndarray, shape (k, m)
            float64 losses (complex128 for the complex step), unvalidated for
            finiteness: the caller names the first bad entry.
        """
        ...


def batch_rows(points_per_entry: int, loss_seconds: float, threads: int,
               most: int | None = None) -> int:
    """Entries per call of a compiled kernel: Ctrl-C (and progress) are seen between calls.

    As many as ``threads`` threads are predicted to finish in about
    ``config.ENGINE_CALL_SECONDS`` from the measured time of one loss, at
    least one per thread, and at most ``most`` (no limit when ``None``). An
    unmeasured loss (NaN) gets ``most`` entries per call.

    Examples
    --------
    A 1 ms loss, central differences, 2 threads: 500 entries a call
    (1,000 evaluations, 0.5 s on each thread).

    >>> batch_rows(2, 1e-3, 2)
    500

    A 1 us loss, or an unmeasured one, with at most 8,192 entries a call:

    >>> batch_rows(2, 1e-6, 2, 8192), batch_rows(2, float("nan"), 2, 8192)
    (8192, 8192)

    A 1 s loss: one entry per thread.

    >>> batch_rows(2, 1.0, 2)
    2
    """
    from .. import config

    threads = max(1, int(threads))
    rows = float("inf") if most is None else max(1, int(most))
    if math.isfinite(loss_seconds) and loss_seconds > 0:
        rows = min(rows, config.ENGINE_CALL_SECONDS * threads
                   / (max(1, points_per_entry) * loss_seconds))
    return int(max(threads, rows)) if math.isfinite(rows) else np.iinfo(np.int64).max


def select_engine(backend: str, f: object, workers: int | None, client: object = None) -> Engine:
    """The engine for ``backend`` (``"auto"`` picks the fastest that applies).

    ``client`` (a ``distributed.Client``) is for ``backend="dask"`` only. An
    engine with a ``close()`` method holds resources (a cluster, scattered
    data): call :func:`release` when the check is over.
    """
    from .python import PythonEngine

    if backend == "dask":
        if _is_c_loss(f):
            raise TypeError(
                "backend='dask' cannot send a C function (cffi pointer or numba.cfunc) to "
                "worker processes: its address is only valid in the process that made it; use "
                "backend='cffi' (all cores of this machine) or a Python / numba.njit loss")
        from .dask import DaskEngine

        return DaskEngine(client=client, workers=workers)
    if client is not None:
        raise ValueError(f"client= is only used with backend='dask' (backend={backend!r}); "
                         "pass backend='dask' to evaluate the losses on that cluster")
    if backend == "cffi" or (backend == "auto" and _is_c_loss(f)):
        from .cffi import CffiEngine, CFunctionLoss, LOSS_ABI, kernel_available

        if not isinstance(f, CFunctionLoss):
            raise TypeError(
                f"backend='cffi' needs a C loss ({LOSS_ABI}) given as a cffi function "
                f"pointer, got {type(f).__name__}; use backend='python' for a Python f")
        if backend == "auto" and not kernel_available():
            return PythonEngine(workers=workers)  # C kernel not built or turned off
        return CffiEngine(workers=workers)
    if backend == "numba" or (backend == "auto" and _is_numba_function(f)):
        from .numba import NumbaEngine, is_numba_function

        if _is_c_loss(f):
            raise TypeError("backend='numba' runs numba.njit functions; a C loss (cffi "
                            "pointer or numba.cfunc) runs on backend='cffi' (or 'auto')")
        if not is_numba_function(f):
            raise TypeError(
                f"backend='numba' needs a numba.njit function, got {type(f).__name__}; "
                "decorate f with @numba.njit, or use backend='python'")
        return NumbaEngine(workers=workers)
    if backend in ("auto", "python"):
        return PythonEngine(workers=workers)
    raise ValueError(f"backend {backend!r} is not available")


def release(engine: object) -> None:
    """Call ``engine.close()`` if it has one (the Dask engine: cluster, scattered data).

    Examples
    --------
    >>> from gradprobe.engines.python import PythonEngine
    >>> release(PythonEngine())  # nothing to release
    """
    close = getattr(engine, "close", None)
    if close is not None:
        close()


def as_loss(f: object, args: object) -> object:
    """``f``, or a C function (cffi pointer, ``numba.cfunc``) wrapped for Python to call.

    A C loss (``double loss(const double *theta, size_t n, void *ctx)``) is
    wrapped in :class:`gradprobe.engines.cffi.CFunctionLoss` and ``args``
    validated for it; anything else is returned unchanged (cffi is imported
    only when ``f`` is a cffi object or a ``numba.cfunc``).

    Examples
    --------
    >>> as_loss(len, ()) is len
    True
    """
    if type(f).__module__ not in ("_cffi_backend", "numba.core.ccallback") and \
            type(getattr(f, "__self__", None)).__module__ != "_cffi_backend" and \
            not _is_c_loss(f):
        return f
    from .cffi import as_loss as wrap

    return wrap(f, args)


def _is_c_loss(f: object) -> bool:
    """A :class:`~gradprobe.engines.cffi.CFunctionLoss` (checked without importing cffi)."""
    return type(f).__name__ == "CFunctionLoss" and \
        type(f).__module__ == "gradprobe.engines.cffi"


def _is_numba_function(f: object) -> bool:
    """A CPU ``numba.njit`` dispatcher? (Imports the Numba engine only if it may be.)"""
    if not hasattr(f, "py_func") or "numba" not in type(f).__module__:
        return False
    from .numba import is_numba_function

    return is_numba_function(f)
