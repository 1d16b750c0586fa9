"""Difference formulas, step sizes and error bars.

Everything here is pure array arithmetic: a :class:`Stencil` says where to
evaluate the loss around each entry (:meth:`Stencil.points`), and turns the
losses found there into derivative estimates with an error bar
(:meth:`Stencil.estimate`). Engines only evaluate the points; they never
need to know which formula is in use.

Steps are powers of two, so ``x + h`` is exact for almost every ``x``; the
formulas still divide by the differences of the points actually evaluated,
so the rare inexact step costs nothing.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .. import config

#: Evaluation points of each method, in multiples of the step ``h``.
OFFSETS = {
    "central": (1.0, -1.0),
    "forward": (1.0,),
    "richardson": (1.0, -1.0, 2.0, -2.0),
}


def step_size(x: np.ndarray, method: str, noise_rel: float,
              eps: float | None = None) -> np.ndarray:
    """The step for every entry of ``x``.

    Parameters
    ----------
    x : ndarray
        Values of the entries to perturb.
    method : str
        One of ``config.METHODS``.
    noise_rel : float
        Relative noise of one evaluation of the loss (at least the
        evaluation dtype's machine epsilon).
    eps : float, optional
        A fixed absolute step chosen by the user; used as given.

    Returns
    -------
    ndarray of float64
        ``noise_rel ** (1 / (order + 1)) * max(1, |x|)`` rounded down to a
        power of two (``cbrt(eps) * max(1, |x|)`` for the central method in
        exact arithmetic), or ``eps``.

    Examples
    --------
    >>> step_size(np.array([0.5, 1000.0]), "central", 2.0 ** -52)
    array([3.81469727e-06, 3.90625000e-03])
    """
    scale = np.maximum(1.0, np.abs(np.asarray(x, dtype=np.float64)))
    if eps is not None:
        return np.full(scale.shape, float(eps))
    if method == "complex":
        return config.COMPLEX_STEP * scale
    ideal = noise_rel ** (1.0 / (config.METHOD_ORDER[method] + 1)) * scale
    return np.exp2(np.floor(np.log2(ideal)))


def one_sided_slope(f0: float | np.ndarray, x: np.ndarray, near: np.ndarray,
                    f_near: np.ndarray, far: np.ndarray, f_far: np.ndarray) -> np.ndarray:
    """One-sided derivative at ``x`` from two points on the same side of it.

    The derivative at ``x`` of the parabola through ``(x, f0)``,
    ``(near, f_near)`` and ``(far, f_far)``: exact for a quadratic piece, so a
    kink's one-sided derivatives carry no ``h f''`` truncation (a first-order
    quotient ``(f(x+h) - f(x)) / h`` misses by ``h f'' / 2``, enough to put an
    analytic value that sits on one side of a kink outside the bracket).

    Examples
    --------
    >>> x = np.array([0.0]); f = lambda t: np.where(t > 0, 3 * t + t * t, -t)
    >>> near, far = np.array([0.25]), np.array([0.5])
    >>> one_sided_slope(0.0, x, near, f(near), far, f(far))
    array([3.])
    """
    d_near, d_far = near - x, far - x
    s_near, s_far = (f_near - f0) / d_near, (f_far - f0) / d_far
    return (s_near * d_far - s_far * d_near) / (d_far - d_near)


def central_truncation(h: np.ndarray, d1: np.ndarray, left: np.ndarray, right: np.ndarray,
                       scale: np.ndarray, local: bool = True) -> np.ndarray:
    """Modelled truncation error ``h^2 |f'''| / 6`` of central differences.

    Three losses carry ``f'`` (``d1``) and ``f''`` (``(right - left) / h``) but not
    ``f'''``. The model assumes ``f`` changes on a length ``l``:
    ``|f'''| <= |f''| / l + |f'| / l^2``, with ``l`` the shorter of the entry's
    scale ``max(1, |x|)`` and the length the losses show, ``|f'| / |f''|`` (a
    function that bends within a short distance of the point changes on that
    distance); ``h |right - left|``, the bar for a unit length, stays a floor.
    With ``local=False`` the length is ``scale`` alone: tight near stationary
    points, where ``|f'| / |f''|`` is short without ``f'''`` being large (the
    bar of :meth:`Stencil.estimate` by default; a check uses ``local=True`` and
    confirms the entries whose bar that makes wider than their tolerance).
    Inflection points (``f'' = 0``) of a function that changes on a shorter
    length than its scale escape the model: a measurement on a few entries
    scales it (:func:`gradprobe.differences.estimation.estimate_entries`), and entries that
    fail, or whose bar is wider than their tolerance, are confirmed at smaller
    steps (:func:`successive_steps`).

    Examples
    --------
    >>> h = np.array([1e-3]); x = np.array([0.5])
    >>> right = (np.exp(x + h) - np.exp(x)) / h; left = (np.exp(x) - np.exp(x - h)) / h
    >>> d1 = (np.exp(x + h) - np.exp(x - h)) / (2 * h)
    >>> err = abs(d1[0] - np.exp(0.5))
    >>> bool(err < central_truncation(h, d1, left, right, np.ones(1))[0])
    True
    """
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        curvature = np.abs(right - left) / h
        slope = np.abs(d1)
        shown = np.where(curvature > 0, slope / np.where(curvature > 0, curvature, 1.0), np.inf)
        length = np.minimum(scale, shown) if local else np.asarray(scale, dtype=np.float64)
        bend = curvature / np.minimum(1.0, length)
        out = h * h * (bend + np.where(length > 0, slope / (length * length), 0.0))
    return np.where(np.isfinite(out), out, np.inf)


@dataclass(frozen=True)
class Estimate:
    """Derivative estimates at a set of entries.

    Attributes
    ----------
    value : ndarray
        The numerical derivative of every entry.
    error_bar : ndarray
        Bound on its rounding plus truncation error.
    left, right : ndarray or None
        One-sided derivatives where the stencil has both sides (used to
        recognise kinks): ``(f(x) - f(x-h)) / h`` and ``(f(x+h) - f(x)) / h``
        for the central method; second order (:func:`one_sided_slope` through
        ``x``, ``x +- h``, ``x +- 2h``) for Richardson's.
    step : ndarray or None
        The step the estimate was finally made with, where it was chosen
        entry by entry (:func:`successive_steps`); kink probes start from it.
    truncation : ndarray or None
        The modelled truncation part of ``error_bar`` (central differences),
        which a measurement may scale (:func:`gradprobe.differences.estimation.estimate_entries`).
    """

    value: np.ndarray
    error_bar: np.ndarray
    left: np.ndarray | None = None
    right: np.ndarray | None = None
    step: np.ndarray | None = None
    truncation: np.ndarray | None = None


class Stencil:
    """One difference method: where to evaluate and how to combine.

    Parameters
    ----------
    method : str
        ``"central"``, ``"forward"``, ``"richardson"`` or ``"complex"``.

    Examples
    --------
    >>> st = Stencil("central")
    >>> x = np.array([1.0]); h = np.array([2.0 ** -10])
    >>> pts = st.points(x, h)
    >>> est = st.estimate(np.sin(pts), x, pts, f0=np.sin(1.0), noise=1e-16, eps=2.0**-52)
    >>> bool(abs(est.value[0] - np.cos(1.0)) < est.error_bar[0])
    True
    """

    def __init__(self, method: str):
        if method not in config.METHODS:
            raise ValueError(f"unknown method {method!r}; expected one of {config.METHODS}")
        self.method = method

    @property
    def evaluations_per_entry(self) -> int:
        """Loss evaluations this stencil needs per entry."""
        return config.EVALS_PER_ENTRY[self.method]

    def points(self, x: np.ndarray, h: np.ndarray) -> np.ndarray:
        """Perturbed values of every entry, shape ``(len(x), evaluations_per_entry)``.

        The result has ``x``'s dtype (complex for the complex step): these are
        exactly the values the engine writes into the parameter.
        """
        if self.method == "complex":
            dtype = np.result_type(x.dtype, np.complex64)
            return (x.astype(dtype) + 1j * h.astype(dtype))[:, None]
        offsets = np.asarray(OFFSETS[self.method])
        return (x[:, None] + offsets[None, :] * h[:, None]).astype(x.dtype)

    def estimate(self, losses: np.ndarray, x: np.ndarray, points: np.ndarray,
                 f0: float, noise: float, eps: float,
                 length: float | None = None, local: bool = False) -> Estimate:
        """Derivatives and error bars from the losses at :meth:`points`.

        Parameters
        ----------
        losses : ndarray, shape (k, evaluations_per_entry)
            The loss at every point (complex for the complex step).
        x : ndarray, shape (k,)
            Unperturbed values of the entries.
        points : ndarray
            What :meth:`points` returned.
        f0 : float
            The loss at the unperturbed point.
        noise : float
            Absolute noise of one evaluation (see :mod:`gradprobe.problem.noise`).
        eps : float
            Machine epsilon of the evaluation dtype: the noise of every
            evaluation is taken as at least a few ulp of the losses involved.
        length : float, optional
            A measured length on which ``f`` changes (central differences):
            the truncation model uses it where it is shorter than ``max(1, |x|)``.
        local : bool
            Central differences: let the truncation model use the length the
            losses show, ``|f'| / |f''|`` (see :func:`central_truncation`).
        """
        x = np.asarray(x, dtype=np.float64)
        scale = np.maximum(1.0, np.abs(x))
        model_scale = scale if length is None else np.minimum(scale, length)
        # column by column: a reduction along the short axis of (k, points) is slow
        # for the many rows of array-valued functions (same values)
        sizes = np.abs(losses)
        largest = sizes[:, 0]
        for column in range(1, sizes.shape[1]):
            largest = np.maximum(largest, sizes[:, column])
        magnitude = np.maximum(abs(f0), largest)
        floor = config.NOISE_FLOOR_ULPS * eps * magnitude
        rounding = config.NOISE_SAFETY * np.maximum(noise, floor)
        if self.method == "complex":
            h = np.imag(points[:, 0]).astype(np.float64)
            value = np.imag(losses[:, 0]) / h
            # No cancellation: the imaginary part carries the noise of f relative
            # to the size of f's terms. |f(x)| is that size unless the terms cancel
            # at the point (f(x) ~ 0, e.g. a loss minus its value there), where the
            # change of f over the entry's scale, |f'| max(1, |x|), still is.
            terms = np.maximum(abs(f0), np.abs(value) * scale)
            with np.errstate(divide="ignore", over="ignore", invalid="ignore"):
                rel = np.where(terms > 0, noise / np.maximum(terms, np.finfo(np.float64).tiny),
                               eps)
            bar = config.NOISE_SAFETY * np.maximum(rel, eps) * np.abs(value)
            return Estimate(value, bar)
        losses = np.asarray(losses, dtype=np.float64)
        p = np.asarray(points, dtype=np.float64)
        if self.method == "forward":
            # Two points carry no curvature information: the truncation term
            # h |f'| / scale is a scale-model guess, and failures are re-estimated
            # with Richardson's formula before they are reported.
            dx = p[:, 0] - x
            value = (losses[:, 0] - f0) / dx
            bar = 2.0 * rounding / np.abs(dx) + np.abs(dx) * np.abs(value) / scale
            return Estimate(value, bar)
        right = (losses[:, 0] - f0) / (p[:, 0] - x)
        left = (f0 - losses[:, 1]) / (x - p[:, 1])
        d1_span = p[:, 0] - p[:, 1]
        d1 = (losses[:, 0] - losses[:, 1]) / d1_span
        h = 0.5 * np.abs(d1_span)
        if self.method == "central":
            truncation = central_truncation(h, d1, left, right, model_scale, local)
            bar = 2.0 * rounding / np.abs(d1_span) + truncation
            return Estimate(d1, bar, left, right, truncation=truncation)
        d2_span = p[:, 2] - p[:, 3]
        d2 = (losses[:, 2] - losses[:, 3]) / d2_span
        value = d1 + (d1 - d2) / 3.0
        # Kinks are judged on second-order one-sided derivatives: where f is
        # piecewise quadratic (ReLU inside a squared error) they are exact.
        right = one_sided_slope(f0, x, p[:, 0], losses[:, 0], p[:, 2], losses[:, 2])
        left = one_sided_slope(f0, x, p[:, 1], losses[:, 1], p[:, 3], losses[:, 3])
        # |d1 - d2| / 3 estimates the error of d1, an upper bound for the
        # extrapolated value's; it is taken 1.5 times, so that d1 itself (the
        # right value when only the outer points cross a kink) lies inside the
        # bar, not on its edge. Rounding of (8 d1 - d2 ...) / 3 is 1.5 noise / h.
        bar = 1.5 * rounding / h + 0.5 * np.abs(d1 - d2)
        return Estimate(value, bar, left, right)


def estimate_rows(stencil: Stencil, losses: np.ndarray, x: np.ndarray, points: np.ndarray,
                  f0: float | np.ndarray, noise: float | np.ndarray, eps: float,
                  **options: Any) -> Estimate:
    """:meth:`Stencil.estimate`, ``config.ESTIMATE_CHUNK`` rows at a time.

    Every row's estimate depends on that row alone, so the result is the same
    as one call; but the stencil's temporaries (a dozen arrays of one value
    per row) exist for one chunk only, and each chunk is written into the
    output arrays, allocated once. ``f0`` and ``noise`` are scalars or one
    value per row (an array-valued function's output and noise per entry);
    ``options`` go to :meth:`Stencil.estimate`.

    Examples
    --------
    >>> st = Stencil("central")
    >>> x = np.linspace(0.0, 1.0, 5); pts = st.points(x, np.full(5, 2.0 ** -10))
    >>> whole = st.estimate(np.sin(pts), x, pts, np.sin(x), 1e-16, 2.0 ** -52)
    >>> rows = estimate_rows(st, np.sin(pts), x, pts, np.sin(x), 1e-16, 2.0 ** -52, chunk=2)
    >>> bool(np.array_equal(whole.value, rows.value) and np.array_equal(whole.error_bar,
    ...                                                                 rows.error_bar))
    True
    """
    chunk = int(options.pop("chunk", config.ESTIMATE_CHUNK))
    size = losses.shape[0]
    if size <= chunk:
        return stencil.estimate(losses, x, points, f0, noise, eps, **options)

    def rows(a: Any, sl: slice) -> Any:
        return a[sl] if np.ndim(a) else a

    out: dict[str, np.ndarray | None] = {}
    for lo in range(0, size, chunk):
        sl = slice(lo, min(size, lo + chunk))
        est = stencil.estimate(losses[sl], x[sl], points[sl], rows(f0, sl), rows(noise, sl),
                               eps, **options)
        for key in ("value", "error_bar", "left", "right", "step", "truncation"):
            part = getattr(est, key)
            if lo == 0:
                out[key] = None if part is None else np.empty(size, dtype=part.dtype)
            if part is not None:
                out[key][sl] = part
    return Estimate(out["value"], out["error_bar"], out["left"], out["right"],
                    step=out["step"], truncation=out["truncation"])


def successive_steps(evaluate: Callable[[np.ndarray, np.ndarray], np.ndarray],
                     x: np.ndarray, h0: np.ndarray, dtype: np.dtype, f0: float,
                     noise: float, eps: float, tolerance: np.ndarray,
                     first: Estimate | None = None,
                     grow: bool = False) -> tuple[Estimate, int]:
    """Derivatives at successively smaller steps, each error measured, the best kept.

    Central differences at ``h0, h0 / r, h0 / r^2, ...`` (``r =
    config.SHRINK_RATIO``, at most ``config.SHRINK_LEVELS`` smaller steps),
    each level combined with the previous one by Richardson's rule. The error
    bar of a level is *measured*: the change from the previous level (the
    extrapolated values' change, or the central value's when larger), times
    ``config.SHRINK_SAFETY``, plus the rounding at that step. An entry stops
    when its bar is below ``config.SHRINK_TARGET * tolerance``, when rounding
    alone exceeds its best bar (rounding grows as the step shrinks, so no
    smaller step can do better: the error estimate has started to grow for
    good), or when ``f`` is not finite at the smaller step. A bar that grows
    while truncation still dominates it is the step passing the function's
    own length, not a reason to stop. This is the scheme of ``scipy.differentiate.derivative``
    and of Ridders' method, run towards small steps: the function decides how
    small the step must be.

    Parameters
    ----------
    evaluate : callable
        ``evaluate(rows, points)`` returns the losses at ``points`` (shape
        ``(len(rows), 2)``, values of the entries ``rows`` of ``x``).
    x : ndarray
        Values of the entries (float64).
    h0 : ndarray
        First step of every entry.
    dtype : numpy.dtype
        Dtype the points are written in (the working copy's).
    f0, noise, eps : float
        Loss at the point, absolute noise of one evaluation, evaluation epsilon.
    tolerance : ndarray
        ``max(rtol * |derivative|, atol)`` of every entry: the error it must
        resolve.
    first : Estimate, optional
        A central estimate at ``h0`` (reused as the first level); evaluated
        when not given.
    grow : bool
        Run towards *larger* steps instead (``h0 * r, h0 * r^2, ...``), for
        entries whose bar is limited by the noise of ``f``: a function that
        changes on a longer length than its scale tolerates longer steps. It
        stops when the measured (truncation) part alone exceeds the best bar.

    Returns
    -------
    estimate : Estimate
        The best level of every entry, with its step; ``truncation`` holds
        the measured (not rounding) part of its bar.
    evaluations : int
        Losses evaluated.

    Examples
    --------
    >>> f = lambda p: np.tanh(p / 3e-4)
    >>> x = np.array([1e-4]); exact = (1 - np.tanh(x / 3e-4) ** 2) / 3e-4
    >>> est, n = successive_steps(lambda rows, p: f(p), x, np.array([2.0 ** -8]),
    ...                           np.dtype(np.float64), float(f(x[0])), 1e-16,
    ...                           2.0 ** -52, np.array([1e-5 * exact[0]]))
    >>> bool(abs(est.value[0] - exact[0]) < est.error_bar[0] < 1e-5 * exact[0]), n <= 14
    (True, True)
    """
    x = np.asarray(x, dtype=np.float64)
    count = x.size
    evaluations = 0
    ratio = config.SHRINK_RATIO

    def level(rows: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, ...]:
        nonlocal evaluations
        points = np.stack([x[rows] + h, x[rows] - h], axis=1).astype(dtype)
        losses = np.real(np.asarray(evaluate(rows, points))).astype(np.float64)
        evaluations += losses.size
        p = np.real(points).astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            span = p[:, 0] - p[:, 1]
            value = (losses[:, 0] - losses[:, 1]) / span
            right = (losses[:, 0] - f0) / (p[:, 0] - x[rows])
            left = (f0 - losses[:, 1]) / (x[rows] - p[:, 1])
            magnitude = np.maximum(abs(f0), np.max(np.abs(losses), axis=1))
            floor = config.NOISE_FLOOR_ULPS * eps * magnitude
            rounding = 2.0 * config.NOISE_SAFETY * np.maximum(noise, floor) / np.abs(span)
        finite = np.all(np.isfinite(losses), axis=1) & (span != 0)
        return value, left, right, rounding, 0.5 * np.abs(span), finite

    all_rows = np.arange(count)
    h = np.asarray(h0, dtype=np.float64).copy()
    if first is None or first.left is None:
        d, left, right, rounding, half, finite = level(all_rows, h)
        bar = np.full(count, np.inf)  # a single level measures nothing
        measured = bar.copy()
    else:
        d, left, right = (np.asarray(a, dtype=np.float64).copy()
                          for a in (first.value, first.left, first.right))
        bar = np.asarray(first.error_bar, dtype=np.float64).copy()
        measured = np.zeros(count) if first.truncation is None else \
            np.asarray(first.truncation, dtype=np.float64).copy()
        half = h.copy()
        finite = np.isfinite(d)
        with np.errstate(invalid="ignore"):
            rounding = np.where(np.isfinite(bar), np.maximum(bar - measured, 0.0), np.inf)
    best = [d.copy(), bar.copy(), left.copy(), right.copy(), h.copy(), measured.copy()]
    prev_d, prev_r, prev_half = d.copy(), np.full(count, np.nan), half.copy()
    prev_round, prev_left, prev_right = rounding.copy(), left.copy(), right.copy()
    target = config.SHRINK_TARGET * np.asarray(tolerance, dtype=np.float64)
    active = finite & ~(best[1] <= target)
    for k in range(1, config.SHRINK_LEVELS + 1):
        rows = np.flatnonzero(active)
        if rows.size == 0:
            break
        h[rows] = h[rows] * ratio if grow else h[rows] / ratio
        d, left, right, rounding, half, finite = level(rows, h[rows])
        # (small, large): the two steps of this pair; the value is extrapolated
        # from the smaller step's difference, whose rounding it carries
        if grow:
            small, large = prev_d[rows], d
            h_small, h_large = prev_half[rows], half
            noise_small = prev_round[rows]
            step_small = h[rows] / ratio
            left_small, right_small = prev_left[rows], prev_right[rows]
        else:
            small, large = d, prev_d[rows]
            h_small, h_large = half, prev_half[rows]
            noise_small = rounding
            step_small = h[rows]
            left_small, right_small = left, right
        with np.errstate(invalid="ignore", over="ignore"):
            q = h_small * h_small / (h_large * h_large - h_small * h_small)
            extrapolated = small + (small - large) * q
            change = np.abs(small - large)
            if k == 1:
                error = change
            else:
                error = np.maximum(np.abs(extrapolated - prev_r[rows]), change * q)
            measured = config.SHRINK_SAFETY * error
            bar = measured + (1.0 + 2.0 * q) * noise_small
        bar = np.where(finite & np.isfinite(bar), bar, np.inf)
        better = bar < best[1][rows]
        at = rows[better]
        for store, source in zip(best, (extrapolated, bar, left_small, right_small,
                                        step_small, measured)):
            store[at] = source[better]
        # rounding only grows as the step shrinks, truncation as it grows: past
        # the point where that part alone exceeds the best bar, no step helps
        limit = measured if grow else rounding
        done = ~finite | (best[1][rows] <= target[rows]) | (limit > best[1][rows])
        active[rows[done]] = False
        prev_d[rows], prev_r[rows], prev_half[rows] = d, extrapolated, half
        prev_round[rows], prev_left[rows], prev_right[rows] = rounding, left, right
    return Estimate(best[0], best[1], best[2], best[3], step=best[4],
                    truncation=best[5]), evaluations
