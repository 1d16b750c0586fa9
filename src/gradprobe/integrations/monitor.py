"""Gradient checks inside a training loop: :class:`GradientMonitor`.

A backward pass that is right at initialisation can go wrong later (a branch
taken only once activations saturate, a buffer reused after a warm-up, a
learning-rate schedule that switches code paths). The monitor checks the
gradient every ``every`` steps, cheaply (``mode="auto"`` with a small time
budget: random directions plus a sample of every parameter when a full check
would not fit), logs each check on the ``"gradprobe"`` logger, and on a failure
warns (:class:`GradientWarning`), raises (:class:`gradprobe.GradientCheckError`)
or calls your function.
"""
from __future__ import annotations

import dataclasses
import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Union

from .. import config
from ..errors import GradientCheckError
from ..options import CheckOptions, positive_int

if TYPE_CHECKING:
    from ..report.reports import CheckReport

logger = logging.getLogger("gradprobe")
logger.addHandler(logging.NullHandler())  # a library: the application configures logging

OnFail = Union[str, Callable[["CheckReport"], Any]]


class GradientWarning(UserWarning):
    """Warned by :class:`GradientMonitor` when a gradient check fails (``on_fail="warn"``).

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warnings.warn("bad gradient", GradientWarning)
    >>> caught[0].category.__name__
    'GradientWarning'
    """


@dataclass(frozen=True)
class MonitorRecord:
    """One gradient check made by :class:`GradientMonitor` (kept in ``.history``).

    Attributes
    ----------
    step : int
        Training step (0-based count of calls to :meth:`GradientMonitor.step`).
    passed : bool
    max_rel_error : dict of str to float
        Largest relative error of every parameter over the entries compared.
    failed : dict of str to int
        Failing entries of every parameter.
    evaluations : int
        Loss evaluations spent by the check.
    seconds : float
        Wall time of the check.
    strategy : str
        ``"full"`` or ``"directional+sample"`` (what ``mode="auto"`` chose),
        else the mode.

    Examples
    --------
    >>> r = MonitorRecord(step=100, passed=True, max_rel_error={"w": 1e-10},
    ...                   failed={"w": 0}, evaluations=40, seconds=0.002, strategy="full")
    >>> r.step, r.passed
    (100, True)
    """

    step: int
    passed: bool
    max_rel_error: dict[str, float] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    evaluations: int = 0
    seconds: float = 0.0
    strategy: str = ""


class GradientMonitor:
    """Check a training loop's gradient every ``every`` steps.

    Parameters
    ----------
    f : callable
        The loss, called as in :func:`gradprobe.check` (``f(*params, *args)``;
        dict parameters bind to ``f``'s arguments by name).
    every : int
        Check on steps ``0, every, 2 * every, ...`` (default 100).
    mode : {"auto", "full", "sample", "directional"}
        Check mode (default ``"auto"``: a full check when it fits ``budget_s``,
        otherwise random directions plus a sample of every parameter, with the
        wrong entries localized on failure).
    budget_s : float, optional
        Time budget of ``mode="auto"`` (default 0.05 s): a full check is run
        when its predicted time fits, otherwise directions plus a sample (whose
        cost, a few hundred evaluations, does not depend on the budget; a
        failing check costs more, for the localization).
    on_fail : {"warn", "raise"} or callable
        ``"warn"``: a :class:`GradientWarning` whose message is the report;
        ``"raise"``: :class:`gradprobe.GradientCheckError`; a callable is
        called with the failing report.
    **check_options
        Any other option of :func:`gradprobe.check` (``method``, ``rtol``,
        ``samples``, ``directions``, ``backend``, ``args`` used when
        :meth:`step` gets none, ...). ``seed`` is the first check's seed; each
        check adds its count, so successive checks sample other entries and
        directions.

    Attributes
    ----------
    history : list of MonitorRecord
        One small record per check (no arrays are kept).
    steps : int
        Calls to :meth:`step` so far.
    last_report : CheckReport or None
        The most recent check's report.

    Examples
    --------
    >>> import numpy as np, gradprobe as gp
    >>> def loss(w, x):
    ...     return 0.5 * np.sum((w * x - 1.0) ** 2)
    >>> x, w = np.linspace(0.5, 1.5, 8), np.zeros(8)
    >>> monitor = gp.GradientMonitor(loss, every=10)
    >>> for step in range(25):
    ...     grad = (w * x - 1.0) * x
    ...     report = monitor.step(w, grad, x)
    ...     w = w - 0.5 * grad
    >>> [(r.step, r.passed) for r in monitor.history]
    [(0, True), (10, True), (20, True)]
    """

    def __init__(self, f: Callable[..., Any], every: int = config.MONITOR_EVERY,
                 mode: str = "auto", budget_s: float | None = None,
                 on_fail: OnFail = "warn", **check_options: Any):
        if not callable(f):
            raise TypeError(f"f must be callable, got {type(f).__name__}")
        self.every = positive_int("every", every)
        if self.every is None:
            raise ValueError("every=None is not valid; expected a positive integer")
        if not (callable(on_fail) or on_fail in ("warn", "raise")):
            raise ValueError(f"on_fail={on_fail!r} is not valid; expected 'warn', 'raise' "
                             "or a function of the report")
        self.f = f
        self.on_fail = on_fail
        self.default_args = tuple(check_options.pop("args", ()))
        check_options.setdefault("progress", False)  # no bars in a loop by default
        #: Every check's options, validated now (errors name GradientMonitor); each
        #: check runs with its own seed.
        self.options = CheckOptions.build("GradientMonitor", {
            "mode": mode, "budget_s": budget_s, **check_options})
        if self.options.mode == "auto" and self.options.budget_s is None:
            self.options = dataclasses.replace(self.options, budget_s=config.MONITOR_BUDGET_S)
        self.mode = self.options.mode
        self.budget_s = self.options.budget_s
        self.seed = self.options.seed
        self.progress = self.options.progress
        self.check_options = check_options
        self.history: list[MonitorRecord] = []
        self.steps = 0
        self.last_report: CheckReport | None = None

    def due(self, step: int | None = None) -> bool:
        """Whether ``step`` (default: the next call of :meth:`step`) is a check step.

        Examples
        --------
        >>> import numpy as np, gradprobe as gp
        >>> m = gp.GradientMonitor(lambda w: np.sum(w ** 2), every=3)
        >>> [s for s in range(10) if m.due(s)]
        [0, 3, 6, 9]
        """
        return (self.steps if step is None else step) % self.every == 0

    def step(self, params: Any, grads: Any, *args: Any) -> "CheckReport | None":
        """Count one training step; on a check step, check ``grads`` at ``params``.

        Parameters
        ----------
        params, grads
            As in :func:`gradprobe.check` (``grads`` may be a callable). Not
            modified and not kept.
        *args
            Extra arguments of ``f`` for this step (the batch); default: the
            ``args`` given to the constructor.

        Returns
        -------
        CheckReport or None
            The report on a check step, else None.

        Examples
        --------
        >>> import numpy as np, gradprobe as gp
        >>> m = gp.GradientMonitor(lambda w: np.sum(w ** 2), every=2, on_fail="raise")
        >>> m.step(np.ones(3), 2 * np.ones(3)).passed, m.step(np.ones(3), np.ones(3))
        (True, None)
        """
        step = self.steps
        self.steps += 1
        if not self.due(step):
            return None
        from ..checks.scalar import run_check

        start = time.perf_counter()
        report = run_check(self.f, params, grads, tuple(args) if args else self.default_args,
                           dataclasses.replace(self.options, seed=self.seed + len(self.history)))
        seconds = time.perf_counter() - start
        record = MonitorRecord(
            step=step, passed=report.passed,
            max_rel_error={k: float(p.max_rel_error) for k, p in report.params.items()},
            failed={k: int(p.failed) for k, p in report.params.items()},
            evaluations=int(report.evaluations), seconds=seconds,
            strategy=report.strategy or report.mode)
        self.history.append(record)
        self.last_report = report
        if report.passed:
            logger.info("step %d: gradient check passed (%s, %d evaluations, %.3g s, "
                        "largest relative error %s)", step, record.strategy,
                        record.evaluations, seconds, _worst(record))
            return report
        logger.warning("step %d: gradient check FAILED\n%s", step, report)
        if self.on_fail == "raise":
            raise GradientCheckError(report)
        if self.on_fail == "warn":
            warnings.warn(f"gradient check failed at step {step}:\n{report}",
                          GradientWarning, stacklevel=2)
        else:
            self.on_fail(report)
        return report

    @property
    def first_failure(self) -> MonitorRecord | None:
        """The first failing check in ``history``, or None.

        Examples
        --------
        >>> import numpy as np, gradprobe as gp
        >>> gp.GradientMonitor(lambda w: np.sum(w ** 2)).first_failure is None
        True
        """
        return next((r for r in self.history if not r.passed), None)

    def __repr__(self) -> str:
        failed = sum(not r.passed for r in self.history)
        return (f"<GradientMonitor every={self.every} mode={self.mode}: {self.steps} steps, "
                f"{len(self.history)} checks, {failed} failed>")


def _worst(record: MonitorRecord) -> str:
    if not record.max_rel_error:
        return "-"
    name = max(record.max_rel_error, key=lambda k: record.max_rel_error[k])
    return f"{record.max_rel_error[name]:.3g} ({name})"
