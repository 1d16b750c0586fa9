"""The engine contract and backend selection."""
from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

import numpy as np

if TYPE_CHECKING:
    from ..problem import Problem


class Engine(Protocol):
    """Evaluates the loss with one entry of one parameter replaced at a time.

    Implementations must never write the user's arrays (they only see the
    problem's private working copies) and must leave the working copies as
    they found them, including when ``f`` raises.
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


def select_engine(backend: str, f: object, workers: int | None) -> Engine:
    """The engine for ``backend`` (``"auto"`` picks the fastest that applies)."""
    from .python import PythonEngine

    if backend in ("auto", "python"):
        return PythonEngine(workers=workers)
    raise ValueError(f"backend {backend!r} is not available")
