"""The reference engine: a plain Python loop calling ``f`` once per point.

It is the slowest engine and the one every other engine is tested against.
With ``workers > 1`` the entries are split into chunks evaluated by a thread
pool, each thread on its own copy of the parameters; that helps when ``f``
spends its time in NumPy calls that release the GIL (matrix products).
"""
from __future__ import annotations

import concurrent.futures
import threading
from typing import TYPE_CHECKING

import numpy as np

from ..problem.params import loss_value
from .base import Engine, displace, evaluate_directions  # noqa: F401  (their old home)

if TYPE_CHECKING:
    from ..problem.point import Problem


class PythonEngine(Engine):
    """Loop over entries in Python (optionally in threads).

    Parameters
    ----------
    workers : int, optional
        Threads to use; ``None`` or 1 runs serially in the calling thread.
    """

    name = "python"

    @classmethod
    def claims(cls, f: object) -> bool:
        """Any ``f``: ``backend="auto"`` asks this engine last."""
        return True

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
        # Set on the way out (an error in f, Ctrl-C): the other threads stop at
        # their next entry, so even a second Ctrl-C during the shutdown below
        # leaves no thread calling f after this method has returned or raised.
        stop = threading.Event()
        try:
            futures = [
                pool.submit(_evaluate_chunk, problem, param, entries[lo:hi], points[lo:hi],
                            out[lo:hi], [a.copy() for a in problem.working], stop)
                for lo, hi in zip(bounds[:-1], bounds[1:]) if hi > lo]
            for fut in futures:
                fut.result()
        except BaseException:
            stop.set()
            raise
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        problem.evaluations += points.size
        return out


def _evaluate_chunk(problem: "Problem", param: int, entries: np.ndarray,
                    points: np.ndarray, out: np.ndarray, arrays: list[np.ndarray],
                    stop: threading.Event | None = None) -> None:
    """Evaluate ``f`` at every point of ``entries``, perturbing ``arrays[param]`` in place.

    Returns early, with ``arrays`` restored, once ``stop`` is set.
    """
    flat = arrays[param].reshape(-1)
    f, call, args = problem.f, problem.paramset.call, problem.args
    complex_ok = problem.complex_step
    for row, index in enumerate(entries):
        if stop is not None and stop.is_set():
            return
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
