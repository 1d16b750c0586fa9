"""The engine contract and backend selection."""
from __future__ import annotations

import math
from typing import TYPE_CHECKING, Protocol

import numpy as np

from ..problem.params import loss_value

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


def evaluate_directions(problem: "Problem", directions: list, steps: np.ndarray,
                        first: int = 0) -> np.ndarray:
    """Losses with every parameter displaced along each direction, in a Python loop.

    The reference implementation of the optional engine method
    ``evaluate_directions`` (see :class:`~gradprobe.engines.base.Engine`), and
    the fallback for engines without one. Every point is a fresh array, so the
    working copies are never written. ``first`` is the check's index of
    ``directions[0]`` (for messages: a Dask task gets a slice of them).

    Examples
    --------
    >>> import numpy as np
    >>> from gradprobe.problem.params import ParamSet
    >>> from gradprobe.problem.point import prepare
    >>> f = lambda w: float(np.sum(w ** 2))
    >>> problem = prepare(f, ParamSet.from_user(np.ones(2), f), (), upcast=True,
    ...                   complex_step=False, seed=0)
    >>> evaluate_directions(problem, [[np.array([1.0, -1.0])]], np.array([0.5, -0.5]))
    array([[2.5, 2.5]])
    """

    dtype = np.complex128 if problem.complex_step else np.float64
    out = np.empty((len(directions), len(steps)), dtype=dtype)
    f, call, args = problem.f, problem.paramset.call, problem.args
    for i, direction in enumerate(directions):
        for j, step in enumerate(steps):
            arrays = [displace(w, d, step) for w, d in zip(problem.working, direction)]
            value = call(f, arrays, args)
            if type(value) is not float:
                value = loss_value(value, context=(
                    f"with every parameter displaced along random direction {first + i} "
                    f"(step {abs(step):.3g})"), allow_complex=problem.complex_step)
            out[i, j] = value
            problem.evaluations += 1
    return out


def displace(working: np.ndarray, direction: np.ndarray | None,
             step: float | complex) -> np.ndarray:
    """``working + step * direction`` in the working copy's dtype: the point engines evaluate.

    Parameters
    ----------
    working : ndarray
        A parameter's working copy (never written).
    direction : ndarray or None
        Flat float64 displacement per unit step, or ``None`` (unchanged).
    step : float or complex
        Step along the direction (imaginary for the complex step).

    Returns
    -------
    ndarray
        A new array of ``working``'s shape and dtype (``working`` itself for
        ``None``). The sum is formed in float64 (complex128) and rounded once.

    Examples
    --------
    >>> displace(np.array([1.0, 2.0], np.float32), np.array([0.5, -0.25]), 2.0)
    array([2. , 1.5], dtype=float32)
    """
    if direction is None:
        return working
    flat = working.reshape(-1)
    return (flat + step * direction).astype(working.dtype, copy=False).reshape(working.shape)
