"""The reference engine: a plain Python loop calling ``f`` once per point.

It is the slowest engine and the one every other engine is tested against.
With ``workers > 1`` the entries are split into chunks evaluated by a thread
pool, each thread on its own copy of the parameters; that helps when ``f``
spends its time in NumPy calls that release the GIL (matrix products).
"""
from __future__ import annotations

import concurrent.futures
from typing import TYPE_CHECKING

import numpy as np

from ..problem.params import loss_value

if TYPE_CHECKING:
    from ..problem.point import Problem


class PythonEngine:
    """Loop over entries in Python (optionally in threads).

    Parameters
    ----------
    workers : int, optional
        Threads to use; ``None`` or 1 runs serially in the calling thread.
    """

    name = "python"

    def __init__(self, workers: int | None = None):
        self.workers = workers or 1

    def evaluate(self, problem: "Problem", param: int, entries: np.ndarray,
                 points: np.ndarray) -> np.ndarray:
        dtype = np.complex128 if problem.complex_step else np.float64
        out = np.empty(points.shape, dtype=dtype)
        if self.workers <= 1 or len(entries) < 2 * self.workers:
            _evaluate_chunk(problem, param, entries, points, out, problem.working)
            problem.evaluations += points.size
            return out
        bounds = np.linspace(0, len(entries), self.workers + 1).astype(int)
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=self.workers)
        try:
            futures = [
                pool.submit(_evaluate_chunk, problem, param, entries[lo:hi], points[lo:hi],
                            out[lo:hi], [a.copy() for a in problem.working])
                for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
            for fut in futures:
                fut.result()
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        problem.evaluations += points.size
        return out

    def evaluate_directions(self, problem: "Problem", directions: list,
                            steps: np.ndarray) -> np.ndarray:
        """Losses with every parameter displaced at once (see :func:`evaluate_directions`)."""
        return evaluate_directions(problem, directions, steps)


def _evaluate_chunk(problem: "Problem", param: int, entries: np.ndarray,
                    points: np.ndarray, out: np.ndarray, arrays: list[np.ndarray]) -> None:
    """Evaluate ``f`` at every point of ``entries``, perturbing ``arrays[param]`` in place."""
    flat = arrays[param].reshape(-1)
    f, call, args = problem.f, problem.paramset.call, problem.args
    complex_ok = problem.complex_step
    for row, index in enumerate(entries):
        original = flat[index]
        try:
            for col in range(points.shape[1]):
                flat[index] = points[row, col]
                value = call(f, arrays, args)
                if type(value) is not float:  # fast path for the common case
                    value = loss_value(value, context=problem.describe_point(
                        param, int(index), points[row, col]), allow_complex=complex_ok)
                out[row, col] = value
        finally:
            flat[index] = original


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
