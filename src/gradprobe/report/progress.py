"""Progress bars for long checks (tqdm, optional).

``gp.check(..., progress=None)`` shows a bar when the check is predicted to
take more than ``config.PROGRESS_MIN_SECONDS`` (entries x evaluations per
entry x the measured time of one loss); ``True`` always, ``False`` never.
The bar counts entries, so tqdm shows entries/s and the time left.

The bar is drawn by wrapping the engine (:class:`ProgressEngine`): the
entries of one ``evaluate`` call are handed to the real engine in chunks
(a few thousand for the Python engine, a few batches for the Numba engine)
and the bar moves between chunks. Every entry is evaluated on its own, so
the losses are exactly those of an unwrapped engine. An engine with a
``report_progress`` attribute (the Dask engine) gets the whole call and
moves the bar itself, as its tasks complete. When progress is off
the engine is not wrapped at all: nothing is added to the hot path.

tqdm is an optional dependency (``pip install gradprobe[progress]``); without
it, ``progress=True`` warns once and the check runs without a bar.
"""
from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import config

if TYPE_CHECKING:
    from ..engines.base import Engine
    from ..problem.point import Problem

_warned_missing = False


def predicted_seconds(entries: int, evaluations_per_entry: int, loss_seconds: float) -> float:
    """Predicted time of a per-entry check: ``entries x evaluations x time of one loss``.

    Examples
    --------
    >>> predicted_seconds(1_000_000, 2, 1e-5)
    20.0
    """
    if not math.isfinite(loss_seconds):
        return 0.0
    return float(entries) * evaluations_per_entry * loss_seconds


def wants_progress(progress: bool | None, seconds: float) -> bool:
    """Whether to draw a bar: ``progress`` if given, else when ``seconds`` is long.

    Examples
    --------
    >>> wants_progress(None, 0.1), wants_progress(None, 60.0), wants_progress(True, 0.1)
    (False, True, True)
    """
    if progress is None:
        return seconds > config.PROGRESS_MIN_SECONDS
    return bool(progress)


def make_bar(total: int | None, description: str) -> Any:
    """A tqdm bar counting entries, or None (with one warning) when tqdm is missing.

    Examples
    --------
    >>> bar = make_bar(10, "check")
    >>> bar is None or bar.total == 10
    True
    >>> bar is None or bar.close()
    """
    global _warned_missing
    try:
        from tqdm.auto import tqdm
    except ImportError:
        if not _warned_missing:
            _warned_missing = True
            warnings.warn("progress=True needs tqdm (pip install tqdm, or "
                          "gradprobe[progress]); checking without a progress bar",
                          RuntimeWarning, stacklevel=3)
        return None
    return tqdm(total=total, desc=description, unit="entry",
                dynamic_ncols=True, leave=False)


class ProgressEngine:
    """An engine that hands entries to another engine in chunks and moves a bar.

    Parameters
    ----------
    engine : Engine
        The engine doing the work; every other attribute (``name``,
        ``evaluate_directions``, ...) is the wrapped engine's.
    bar : tqdm-like
        Has ``update(n)``, ``total``, ``n`` and ``refresh()``.
    chunk : int, optional
        Entries per call of the wrapped engine (default: a few thousand for the
        Python engine, an eighth of the entries for the Numba engine).

    Examples
    --------
    >>> import numpy as np
    >>> from gradprobe.engines.python import PythonEngine
    >>> from gradprobe.problem.params import ParamSet
    >>> from gradprobe.problem.point import prepare
    >>> class Bar:
    ...     total, n = 5, 0
    ...     def update(self, k): self.n += k
    ...     def refresh(self): pass
    >>> f = lambda w: float(np.sum(w ** 2))
    >>> problem = prepare(f, ParamSet.from_user(np.ones(5), f), (), upcast=True,
    ...                   complex_step=False, seed=0)
    >>> engine, bar = ProgressEngine(PythonEngine(), Bar(), chunk=2), Bar()
    >>> engine.bar = bar
    >>> engine.evaluate(problem, 0, np.arange(5), np.full((5, 1), 2.0)).ravel()
    array([8., 8., 8., 8., 8.])
    >>> bar.n, engine.name
    (5, 'python')
    """

    def __init__(self, engine: "Engine", bar: Any, chunk: int | None = None):
        self.engine = engine
        self.bar = bar
        self.chunk = chunk

    def __getattr__(self, name: str) -> Any:
        return getattr(self.engine, name)

    def _chunk(self, k: int) -> int:
        if self.chunk is not None:
            return self.chunk
        if getattr(self.engine, "name", "") == "numba":
            return max(1, -(-k // config.PROGRESS_NUMBA_BATCHES))
        return config.PROGRESS_CHUNK_ENTRIES

    def evaluate(self, problem: "Problem", param: int, entries: np.ndarray,
                 points: np.ndarray) -> np.ndarray:
        """Losses at ``points``, as the wrapped engine's ``evaluate``, chunk by chunk."""
        k = len(entries)
        bar = self.bar
        if bar.total is not None and bar.n + k > bar.total:
            bar.total = bar.n + k  # confirmations and kink probes come on top
            bar.refresh()
        if hasattr(self.engine, "report_progress"):  # it moves the bar as its tasks finish
            self.engine.report_progress = bar.update
            return self.engine.evaluate(problem, param, entries, points)
        chunk = self._chunk(k)
        if k <= chunk:
            out = self.engine.evaluate(problem, param, entries, points)
            bar.update(k)
            return out
        parts = []
        for lo in range(0, k, chunk):
            hi = min(k, lo + chunk)
            parts.append(self.engine.evaluate(problem, param, entries[lo:hi], points[lo:hi]))
            bar.update(hi - lo)
        return np.concatenate(parts, axis=0)
