"""The engine contract: :class:`Engine`, and what every engine shares.

:class:`Engine` is a base class with defaults: an engine implements
:meth:`Engine.evaluate` and overrides the rest where it can do better.
Choosing an engine is :mod:`.select`'s job.
"""
from __future__ import annotations

import abc
import math
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence

import numpy as np

from .. import config
from ..problem.params import loss_value

if TYPE_CHECKING:
    from ..problem.point import Problem


class Engine(abc.ABC):
    """The engine contract: evaluate the loss at perturbed points of the working copies.

    A subclass sets :attr:`name` and implements :meth:`evaluate`; everything
    else has a default it may override where it can do better. Every engine
    keeps these promises (``tests/test_engine_contract.py`` checks each of
    them on every engine):

    * The user's arrays are never written: an engine sees only the
      problem's private working copies, and leaves them as it found them,
      bit for bit, when ``f`` raises and on KeyboardInterrupt.
    * The losses are those of the Python engine, bit for bit.
    * Every evaluation is added to ``problem.evaluations``.
    * A compiled engine returns to Python about every
      ``config.ENGINE_CALL_SECONDS`` (:func:`batch_rows`), so Ctrl-C is seen.

    Adding an engine: a module defining the subclass, its line in
    :data:`gradprobe.engines.select.ENGINES`, and its entry in the contract
    suite's fixture.

    Examples
    --------
    The smallest engine: a serial loop (the defaults supply the rest).

    >>> import numpy as np
    >>> from gradprobe.problem.params import ParamSet
    >>> from gradprobe.problem.point import prepare
    >>> class Loop(Engine):
    ...     name = "loop"
    ...     def evaluate(self, problem, param, entries, points):
    ...         out = np.empty(points.shape)
    ...         for row, index in enumerate(entries):
    ...             for col, value in enumerate(points[row]):
    ...                 arrays = [a.copy() for a in problem.working]
    ...                 arrays[param].reshape(-1)[index] = value
    ...                 out[row, col] = problem.paramset.call(problem.f, arrays, problem.args)
    ...         problem.evaluations += points.size
    ...         return out
    >>> f = lambda w: float(np.sum(w ** 2))
    >>> problem = prepare(f, ParamSet.from_user(np.ones(2), f), (), upcast=True,
    ...                   complex_step=False, seed=0)
    >>> with Loop() as engine:
    ...     engine.evaluate(problem, 0, np.array([1]), np.array([[3.0]]))
    array([[10.]])
    """

    #: The backend's name (``backend=`` and ``report.backend``).
    name: ClassVar[str]
    #: True for an engine that runs local engines elsewhere and takes ``client=``
    #: (Dask); ``backend="auto"`` never picks it.
    distributed: ClassVar[bool] = False
    #: True when the engine runs the compressed groups of an array-valued ``f``
    #: (:meth:`evaluate_outputs`, for check_vjp and check_layer); False for an
    #: engine of scalar losses only, whose layer checks then go entry by entry.
    runs_groups: ClassVar[bool] = True
    #: True when the engine moves a progress bar itself, calling
    #: :attr:`report_progress` as its work completes; otherwise a bar hands it
    #: entries in chunks of :meth:`progress_chunk`.
    reports_progress: ClassVar[bool] = False
    #: Called with a count of entries done, by an engine that reports progress.
    report_progress: Callable[[int], Any] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not isinstance(getattr(cls, "name", None), str):
            raise TypeError(f"engine {cls.__name__} must set the class attribute name "
                            "(the backend's name)")

    # -- choosing the engine ----------------------------------------------
    @classmethod
    def claims(cls, f: object) -> bool:
        """Should ``backend="auto"`` run ``f`` on this engine? (Default: no.)

        Cheap: it is asked for every check, in the order of
        :data:`gradprobe.engines.select.ENGINES`.
        """
        return False

    @classmethod
    def accept(cls, f: object) -> None:
        """Raise TypeError when ``backend=cls.name`` cannot run ``f``. (Default: any f.)"""

    @classmethod
    def create(cls, f: object, workers: int | None, client: object = None,
               local: "Callable[[object], type[Engine]] | None" = None) -> "Engine":
        """The engine for one check of ``f``.

        ``client`` and ``local`` (which engine class runs ``f`` on a worker)
        are for a :attr:`distributed` engine; the default makes
        ``cls(workers=workers)``.
        """
        return cls(workers=workers)  # type: ignore[call-arg]

    # -- evaluating ---------------------------------------------------------
    @abc.abstractmethod
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
            finiteness: the caller names the first bad entry. ``k * m`` is
            added to ``problem.evaluations``.
        """

    def evaluate_directions(self, problem: "Problem", directions: list,
                            steps: np.ndarray) -> np.ndarray:
        """Losses with *every* parameter displaced at once, shape ``(len(directions), len(steps))``.

        ``directions[i][p]`` is ``None`` (parameter ``p`` keeps its value) or a
        flat float64 array of its size, and the point of ``(i, j)`` is
        :func:`displace` ``(working[p], directions[i][p], steps[j])`` for every
        ``p`` (``steps`` are complex for the complex step). Adds
        ``len(directions) * len(steps)`` to ``problem.evaluations``. The
        default is the reference loop, :func:`evaluate_directions`.
        """
        return evaluate_directions(problem, list(directions), steps)

    def evaluate_outputs(self, vf: Any, param: int, members: Sequence[np.ndarray],
                         values: Sequence[np.ndarray], contexts: Sequence[str]) -> np.ndarray:
        """Flat outputs of an array-valued function, one row per displaced point.

        Point ``i`` writes ``values[i]`` into the flat entries ``members[i]`` of
        input ``param`` (the perturbation groups of a compressed Jacobian,
        :mod:`gradprobe.differences.compression`); every other entry keeps its
        value. ``vf`` is a :class:`~gradprobe.differences.vector.VectorFunction`;
        ``contexts[i]`` says where point ``i`` is, for messages. Returns shape
        ``(len(members), vf.size)``, float64 (complex128 for the complex step),
        validated as ``vf.output`` validates; adds ``len(members)`` to
        ``vf.evaluations``. The default is the reference loop,
        :func:`evaluate_outputs`.
        """
        return evaluate_outputs(vf, param, members, values, contexts)

    def progress_chunk(self, entries: int) -> int:
        """Entries per call when a progress bar splits a call of ``entries`` entries.

        The default, ``config.PROGRESS_CHUNK_ENTRIES``, suits an engine whose
        calls cost nothing to start.
        """
        return config.PROGRESS_CHUNK_ENTRIES

    def close(self) -> None:
        """Release what the engine holds (a cluster, scattered data). Default: nothing.

        Called in ``finally`` by every public check; safe to call twice.
        """

    def __enter__(self) -> "Engine":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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
    threads = max(1, int(threads))
    rows = float("inf") if most is None else max(1, int(most))
    if math.isfinite(loss_seconds) and loss_seconds > 0:
        rows = min(rows, config.ENGINE_CALL_SECONDS * threads
                   / (max(1, points_per_entry) * loss_seconds))
    return int(max(threads, rows)) if math.isfinite(rows) else np.iinfo(np.int64).max


def evaluate_directions(problem: "Problem", directions: list, steps: np.ndarray,
                        first: int = 0) -> np.ndarray:
    """Losses with every parameter displaced along each direction, in a Python loop.

    The reference implementation of :meth:`Engine.evaluate_directions`, and
    its default. Every point is a fresh array, so the
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


def evaluate_outputs(vf: Any, param: int, members: Sequence[np.ndarray],
                     values: Sequence[np.ndarray], contexts: Sequence[str]) -> np.ndarray:
    """Outputs at displaced points of one input, in a Python loop on ``vf``'s working copy.

    The reference implementation of :meth:`Engine.evaluate_outputs`, and its
    default: each point is written into the working copy, ``vf.output`` is
    called, and the entries are restored (in ``finally``: also when ``f``
    raises, and on KeyboardInterrupt).

    Examples
    --------
    >>> from gradprobe.differences.vector import VectorFunction
    >>> from gradprobe.problem.params import ParamSet
    >>> x = np.array([0.0, 1.0, 2.0])
    >>> vf = VectorFunction.prepare(np.square, ParamSet.from_user(x, np.square), (),
    ...                             upcast=True, complex_step=False, seed=0)
    >>> evaluate_outputs(vf, 0, [np.array([0, 2])], [np.array([3.0, -1.0])], ["here"])
    array([[9., 1., 1.]])
    >>> x.tolist(), vf.working[0].tolist()
    ([0.0, 1.0, 2.0], [0.0, 1.0, 2.0])
    """
    flat = vf.working[param].reshape(-1)
    out = np.empty((len(members), vf.size),
                   dtype=np.complex128 if vf.complex_step else np.float64)
    for i, (chosen, value) in enumerate(zip(members, values)):
        original = flat[chosen].copy()
        try:
            flat[chosen] = value
            out[i] = vf.output(vf.working, contexts[i])
        finally:
            flat[chosen] = original
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
