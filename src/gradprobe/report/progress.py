"""Progress bars for long checks (tqdm, optional).

``gp.check(..., progress=None)`` shows a bar when the check is predicted to
take more than ``config.PROGRESS_MIN_SECONDS`` (entries x evaluations per
entry x the measured time of one loss); ``True`` always, ``False`` never.
The bar counts entries, so tqdm shows entries/s and the time left.

The bar is drawn by wrapping the engine (:class:`ProgressEngine`): the
entries of one ``evaluate`` call are handed to the real engine in chunks
(a few thousand for the Python engine, a few batches for the Numba engine)
and the bar moves between chunks (:meth:`Engine.progress_chunk
<gradprobe.engines.base.Engine.progress_chunk>` entries a call). Every entry
is evaluated on its own, so the losses are exactly those of an unwrapped
engine. An engine that :attr:`reports_progress
<gradprobe.engines.base.Engine.reports_progress>` (the Dask engine) gets the
whole call and moves the bar itself, as its tasks complete. When progress is off
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
from ..engines.base import Engine

if TYPE_CHECKING:
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


class ProgressEngine(Engine):
    """An engine that hands entries to another engine in chunks and moves a bar.

    Parameters
    ----------
    engine : Engine
        The engine doing the work; its ``name``, ``evaluate_directions``,
        ``evaluate_outputs`` and ``close`` are this engine's.
    bar : tqdm-like
        Has ``update(n)``, ``total``, ``n`` and ``refresh()``.
    chunk : int, optional
        Entries per call of the wrapped engine (default: the engine's
        ``progress_chunk``: a few thousand for the Python engine, an eighth of
        the entries for the Numba engine).

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

    name = "progress"  # the instance's name is the wrapped engine's

    def __init__(self, engine: Engine, bar: Any, chunk: int | None = None):
        self.engine = engine
        self.name = engine.name  # type: ignore[misc]
        self.bar = bar
        self.chunk = chunk

    def _chunk(self, k: int) -> int:
        return self.chunk if self.chunk is not None else self.engine.progress_chunk(k)

    def evaluate_directions(self, problem: "Problem", directions: list,
                            steps: np.ndarray) -> np.ndarray:
        """The wrapped engine's (directions are few: the bar does not count them)."""
        return self.engine.evaluate_directions(problem, directions, steps)

    def evaluate_outputs(self, vf: Any, param: int, members: Any, values: Any,
                         contexts: Any) -> np.ndarray:
        """The wrapped engine's."""
        return self.engine.evaluate_outputs(vf, param, members, values, contexts)

    def progress_chunk(self, entries: int) -> int:
        return self._chunk(entries)

    def close(self) -> None:
        """Close the wrapped engine."""
        self.engine.close()

    def evaluate(self, problem: "Problem", param: int, entries: np.ndarray,
                 points: np.ndarray) -> np.ndarray:
        """Losses at ``points``, as the wrapped engine's ``evaluate``, chunk by chunk."""
        k = len(entries)
        bar = self.bar
        if bar.total is not None and bar.n + k > bar.total:
            bar.total = bar.n + k  # confirmations and kink probes come on top
            bar.refresh()
        if self.engine.reports_progress:  # it moves the bar as its tasks finish
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
