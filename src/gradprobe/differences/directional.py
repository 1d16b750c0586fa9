"""Directional checks: the derivative of ``f`` along random directions through every entry.

A full check moves one entry at a time. A directional check moves *every*
entry of every parameter at once, along a random direction ``u``, and
compares the derivative of ``f`` along ``u`` (for the central method, one
difference of two losses, with the stencil's error bar) with ``g . u`` from
the analytic gradient. Two evaluations cover a million entries; the price is
*resolution*: an error ``e`` in entry ``j`` moves ``g . u`` by ``e u_j``, so it
is seen only when that exceeds the allowance (:meth:`DirectionalProbe.resolution`
says how small an error that is, per parameter).

Directions
    ``u_j = sign_j * weight_j * max(1, |x_j|)`` with a random sign and a weight
    uniform in ``[DIRECTION_MIN_WEIGHT, 1]``: no tiny components, no exact
    cancellation between two equally wrong entries, and every entry moves by
    about the step a full check would give it. The step along ``u`` is the
    method's automatic step for an entry of magnitude 1 (or ``eps``, with
    ``u_j = sign_j * weight_j``).
Allowance
    The stencil's error bar (the measured noise of ``f``, times
    ``DIRECTIONAL_NOISE_SAFETY``, over the step, plus truncation), plus the rounding of the analytic gradient itself: its
    entries are assumed exact to ``DIRECTIONAL_GRAD_ULPS`` units of
    ``eps * (|g_j| + rms(g))``, and those errors add up in ``g . u`` like a
    random walk (the signs are random), bounded by ``DIRECTIONAL_SIGMAS``
    standard deviations. No size-scaled tolerance: the per-entry ``rtol`` and
    ``atol`` apply when the entries named by localization are judged.
The analytic side is computed along the displacements actually evaluated
(``fl(x + t u) - x``), and pushed through the same difference formula as the
losses, so the two sides differ only by the gradient error, the truncation
and the rounding accounted for above.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Sequence

import numpy as np

from .. import config
from ..engines.python import displace
from .stencils import Stencil, step_size

if TYPE_CHECKING:
    from ..engines.base import Engine
    from ..problem.point import Problem

#: One direction: per parameter ``None`` (not displaced) or a flat float64 array.
Direction = list


def evaluate_along(engine: "Engine", problem: "Problem", directions: Sequence[Direction],
                   steps: np.ndarray) -> np.ndarray:
    """Losses along ``directions`` at ``steps``: the engine's own method, or the Python loop."""
    method = getattr(engine, "evaluate_directions", None)
    if method is None:
        from ..engines.python import evaluate_directions

        return evaluate_directions(problem, list(directions), steps)
    return method(problem, list(directions), steps)


@dataclass(frozen=True)
class GroupTest:
    """One directional comparison: ``g . u`` from the analytic gradient vs. ``f``.

    Attributes
    ----------
    analytic, numeric : float
        The derivative along the direction from the analytic gradient and
        from the losses.
    error_bar : float
        The numerical estimate's error bar (rounding + truncation).
    allowance : float
        ``error_bar`` plus the analytic gradient's own rounding.
    truncation : float
        Detection tests: the measured truncation error of a central
        difference at this step (``|d(h) - d(2h)| / 3``); 0 otherwise.
    """

    analytic: float
    numeric: float
    error_bar: float
    allowance: float
    truncation: float = 0.0

    @property
    def residual(self) -> float:
        """``analytic - numeric`` (NaN when the analytic gradient is not finite there)."""
        return self.analytic - self.numeric

    @property
    def failed(self) -> bool:
        """True when the residual exceeds the allowance (or is not finite)."""
        return not abs(self.residual) <= self.allowance

    @property
    def ratio(self) -> float:
        """``|residual| / allowance`` (inf when not finite)."""
        r = abs(self.residual)
        if not np.isfinite(r):
            return float("inf")
        return r / self.allowance if self.allowance > 0 else (float("inf") if r else 0.0)


class DirectionalProbe:
    """Draws directions through every parameter and compares ``g . u`` with ``f``.

    Detection directions use four evaluations (``±h``, ``±2h``): Richardson's
    formula, whose error bar *measures* the truncation along the direction.
    That matters: along a direction through every entry, derivatives of
    coupled losses (networks) grow with each order (the direction is long),
    so the per-entry scale model of the central bar does not hold. When the
    measured truncation exceeds the rounding, the step is reduced to
    balance them and the detection repeated (again while it still exceeds it,
    up to ``DIRECTIONAL_STEP_REDUCTIONS`` times). Localization's restricted
    directions use the central difference (two evaluations), with the
    largest truncation measured at detection (times
    ``LOCALIZATION_TRUNCATION_SAFETY``) added to their bar. The complex step
    needs neither: one evaluation per direction, no truncation to speak of.

    Parameters
    ----------
    problem : Problem
        The prepared problem.
    engine : Engine
        Evaluates the losses (:func:`evaluate_along`).
    grads : list of ndarray
        The analytic gradient, one array per parameter.
    eps : float, optional
        A user step: used as the step along ``u`` (never adapted), with
        unscaled directions.

    Examples
    --------
    >>> import numpy as np
    >>> from gradprobe.engines.python import PythonEngine
    >>> from gradprobe.problem.params import ParamSet
    >>> from gradprobe.problem.point import prepare
    >>> f = lambda w: float(np.sum(np.sin(w)))
    >>> w = np.linspace(-1.0, 1.0, 1000)
    >>> problem = prepare(f, ParamSet.from_user(w, f), (), upcast=True,
    ...                   complex_step=False, seed=0)
    >>> probe = DirectionalProbe(problem, PythonEngine(), [np.cos(w)])
    >>> u = probe.draw(seed=0, round_=0, k=0)
    >>> probe.detect([u])[0].failed
    False
    >>> bad = np.cos(w); bad[123] *= 1.01
    >>> probe = DirectionalProbe(problem, PythonEngine(), [bad])
    >>> probe.detect([u])[0].failed
    True
    """

    def __init__(self, problem: "Problem", engine: "Engine", grads: Sequence[np.ndarray],
                 eps: float | None = None):
        self.problem, self.engine = problem, engine
        self.sizes = [int(w.size) for w in problem.working]
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)]).astype(np.int64)
        self.total = int(self.offsets[-1])
        self.eps_eval = float(np.finfo(problem.eval_dtype).eps)
        complex_step = problem.complex_step
        self.detector = Stencil("complex" if complex_step else "richardson")
        self.localizer = Stencil("complex" if complex_step else "central")
        if eps is not None:
            self.scales = [None] * len(self.sizes)
        else:
            self.scales = [np.maximum(1.0, np.abs(w.real.astype(np.float64).reshape(-1)))
                           for w in problem.working]
        self.analytic: list[np.ndarray] = []
        self.bad: list[np.ndarray] = []
        self.rounding: list[np.ndarray] = []
        self.rms: list[float] = []
        for g in grads:
            a = np.asarray(g).astype(np.float64).reshape(-1)
            finite = np.isfinite(a)
            bad = np.flatnonzero(~finite)
            if bad.size:
                a = np.where(finite, a, 0.0)
            rms = float(np.sqrt(np.mean(a * a))) if a.size else 0.0
            dtype = np.asarray(g).dtype
            eps_g = float(np.finfo(dtype).eps) if dtype.kind == "f" else \
                float(np.finfo(np.float64).eps)
            self.analytic.append(a)
            self.bad.append(bad)
            self.rms.append(rms)
            self.rounding.append(config.DIRECTIONAL_GRAD_ULPS * eps_g * (np.abs(a) + rms))
        floor = config.NOISE_FLOOR_ULPS * self.eps_eval * abs(problem.f0)
        #: Noise of one evaluation used in the error bars (see DIRECTIONAL_NOISE_SAFETY).
        self.noise = config.DIRECTIONAL_NOISE_SAFETY * max(problem.noise.level, floor)
        self.step = float(eps) if eps is not None else self._automatic_step()
        self.adapt = eps is None and not complex_step
        #: Truncation bar added to localization's central differences.
        self.truncation = 0.0

    def _automatic_step(self) -> float:
        """The method's step for a unit-scale entry, from the noise relative to the loss's size.

        The size is the larger of ``|f(x)|`` and the RMS change of ``f`` over a
        unit step along a random direction (``|g . u|`` from the analytic
        gradient): a loss that is near zero at the point (a sum of terms that
        cancel) still varies on the scale of its terms.
        """
        mean_w2 = (1.0 - config.DIRECTION_MIN_WEIGHT ** 3) / \
            (3.0 * (1.0 - config.DIRECTION_MIN_WEIGHT))
        spread = 0.0
        for a, scale in zip(self.analytic, self.scales):
            au = a if scale is None else a * scale
            spread += float(au @ au)
        size = max(abs(self.problem.f0), np.sqrt(mean_w2 * spread),
                   np.finfo(np.float64).tiny)
        rel = min(max(self.problem.noise.level / size, self.eps_eval), config.MAX_NOISE_REL)
        method = "complex" if self.problem.complex_step else "central"
        return float(step_size(np.zeros(1), method, rel)[0])

    # -- directions --------------------------------------------------------------
    def draw(self, seed: int, round_: int, k: int,
             exclude: Sequence[np.ndarray | None] | None = None,
             skip: Iterable[int] = ()) -> Direction:
        """Direction ``k`` of round ``round_`` (reproducible from ``seed``).

        ``exclude[p]`` (bool mask) zeroes entries already named; parameters
        in ``skip`` are not displaced at all (``None``).
        """
        rng = np.random.default_rng([seed, round_, k, config.SEED_TAG_DIRECTIONS])
        skip = set(skip)
        direction: Direction = []
        for p, n in enumerate(self.sizes):
            if p in skip:
                direction.append(None)
                continue
            u = rng.uniform(config.DIRECTION_MIN_WEIGHT, 1.0, n)
            u *= rng.integers(0, 2, n) * 2.0 - 1.0
            if self.scales[p] is not None:
                u *= self.scales[p]
            if exclude is not None and exclude[p] is not None:
                u[exclude[p]] = 0.0
            direction.append(u)
        return direction

    def full_ranges(self, direction: Direction) -> list[tuple[int, int, int]]:
        """``(param, start, stop)`` of every displaced parameter."""
        return [(p, 0, n) for p, n in enumerate(self.sizes) if direction[p] is not None]

    def restrict(self, direction: Direction, lo: int, hi: int
                 ) -> tuple[Direction, list[tuple[int, int, int]]] | None:
        """``direction`` kept on the global flat range ``[lo, hi)`` and zero elsewhere.

        Returns ``None`` when the direction is zero on the whole range.
        """
        restricted: Direction = [None] * len(self.sizes)
        ranges = []
        for p, n in enumerate(self.sizes):
            start = max(lo - int(self.offsets[p]), 0)
            stop = min(hi - int(self.offsets[p]), n)
            if stop <= start or direction[p] is None:
                continue
            part = direction[p][start:stop]
            if not np.any(part):
                continue
            u = np.zeros(n)
            u[start:stop] = part
            restricted[p] = u
            ranges.append((p, start, stop))
        return (restricted, ranges) if ranges else None

    # -- comparison ----------------------------------------------------------------
    def detect(self, directions: Sequence[Direction]) -> list[GroupTest]:
        """Test full directions with the measuring (4-point) formula.

        The first call reduces the step while the measured truncation exceeds
        the rounding (at most ``config.DIRECTIONAL_STEP_REDUCTIONS`` times) and
        tests again. Every call sets the truncation
        bar used by :meth:`test` for localization.
        """
        tests = [self.test(d, self.full_ranges(d), detect=True) for d in directions]
        reductions = config.DIRECTIONAL_STEP_REDUCTIONS if self.adapt else 0
        self.adapt = False
        for _ in range(reductions):
            # the step follows the function: while the measured truncation
            # exceeds the rounding, shrink it to balance them and test again
            truncation = max(t.truncation for t in tests)
            rounding = min(t.error_bar - t.truncation for t in tests)
            if not (np.isfinite(truncation) and truncation > rounding > 0):
                break
            ideal = self.step * (rounding / (2.0 * truncation)) ** (1.0 / 3.0)
            smaller = float(np.exp2(np.floor(np.log2(ideal))))
            if smaller >= self.step:
                break
            self.step = smaller
            tests = [self.test(d, self.full_ranges(d), detect=True) for d in directions]
        finite = [t.truncation for t in tests if np.isfinite(t.truncation)]
        self.truncation = config.LOCALIZATION_TRUNCATION_SAFETY * max(finite, default=0.0)
        return tests

    def test(self, direction: Direction, ranges: list[tuple[int, int, int]],
             detect: bool = False) -> GroupTest:
        """Evaluate ``f`` along ``direction`` and compare with the analytic gradient.

        ``ranges`` lists where the direction may be nonzero (``(param,
        start, stop)``), so the analytic side only touches those entries.
        ``detect`` selects the 4-point formula that measures truncation.
        """
        problem = self.problem
        stencil = self.detector if detect else self.localizer
        points = stencil.points(np.zeros(1), np.array([self.step]))[0]
        losses = evaluate_along(self.engine, problem, [direction], points)[0]
        if not np.all(np.isfinite(losses)):
            k = int(np.flatnonzero(~np.isfinite(losses))[0])
            raise ValueError(
                f"f returned {losses[k].item()!r} with every parameter displaced along a "
                f"random direction (step {abs(points[k]):.3g} x max(1, |x|) per "
                "entry); the loss must be finite near the checked point: pass a smaller "
                "eps, or check a point further from the domain boundary")
        est = stencil.estimate(losses[None, :], np.zeros(1), points[None, :],
                               problem.f0, self.noise, self.eps_eval)
        complex_step = problem.complex_step
        predicted = np.zeros(points.size, dtype=np.complex128 if complex_step else np.float64)
        spread = 0.0
        dot_rounding = 0.0
        not_finite = False
        for p, start, stop in ranges:
            u = direction[p][start:stop]
            a = self.analytic[p][start:stop]
            bad = self.bad[p]
            if bad.size:
                inside = bad[(bad >= start) & (bad < stop)]
                not_finite |= bool(np.any(u[inside - start] != 0.0))
            w = problem.working[p].reshape(-1)[start:stop]
            w64 = None if complex_step else w.astype(np.float64, copy=False)
            for k, s in enumerate(points):
                moved = displace(w, u, s)
                if complex_step:
                    predicted[k] += 1j * float(a @ moved.imag.astype(np.float64))
                else:
                    predicted[k] += float(a @ (moved.astype(np.float64, copy=False) - w64))
            r = self.rounding[p][start:stop] * u
            spread += float(r @ r)
            dot_rounding += float(np.abs(a) @ np.abs(u))
        analytic = float(stencil.estimate(predicted[None, :], np.zeros(1), points[None, :],
                                          0.0, 0.0, self.eps_eval).value[0])
        if not_finite:
            analytic = float("nan")
        truncation = 0.0
        if stencil.method == "richardson":
            d1 = (losses[0] - losses[1]) / (points[0] - points[1])
            d2 = (losses[2] - losses[3]) / (points[2] - points[3])
            truncation = float(abs(d1 - d2)) / 3.0
        bar = float(est.error_bar[0])
        if not detect:
            bar += self.truncation
        grad_rounding = config.DIRECTIONAL_SIGMAS * np.sqrt(spread) + \
            4.0 * float(np.finfo(np.float64).eps) * dot_rounding
        return GroupTest(analytic, float(est.value[0]), bar, bar + grad_rounding, truncation)

    def resolution(self, directions: Sequence[Direction], tests: Sequence[GroupTest]
                   ) -> list[float | None]:
        """Per parameter: the smallest error in any one entry sure to fail a direction.

        An error ``e`` in entry ``j`` moves the residual of direction ``k`` by
        ``e u_kj`` while the estimate may be off by up to its allowance, so
        ``|e| > 2 allowance_k / |u_kj|`` fails direction ``k``; the resolution is
        the worst entry's best direction. ``None`` for parameters no
        direction displaced.
        """
        out: list[float | None] = []
        for p, n in enumerate(self.sizes):
            best = np.full(n, np.inf)
            covered = False
            for direction, test in zip(directions, tests):
                u = direction[p]
                if u is None or not np.isfinite(test.allowance):
                    continue
                covered = True
                with np.errstate(divide="ignore"):
                    np.minimum(best, 2.0 * test.allowance / np.abs(u), out=best)
            moved = np.isfinite(best)
            out.append(float(best[moved].max()) if covered and moved.any() else None)
        return out
