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

import numpy as np

from . import config

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
    """

    value: np.ndarray
    error_bar: np.ndarray
    left: np.ndarray | None = None
    right: np.ndarray | None = None


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
                 f0: float, noise: float, eps: float) -> Estimate:
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
            Absolute noise of one evaluation (see :mod:`gradprobe.noise`).
        eps : float
            Machine epsilon of the evaluation dtype: the noise of every
            evaluation is taken as at least a few ulp of the losses involved.
        """
        x = np.asarray(x, dtype=np.float64)
        scale = np.maximum(1.0, np.abs(x))
        magnitude = np.maximum(abs(f0), np.max(np.abs(losses), axis=1))
        floor = config.NOISE_FLOOR_ULPS * eps * magnitude
        rounding = config.NOISE_SAFETY * np.maximum(noise, floor)
        if self.method == "complex":
            h = np.imag(points[:, 0]).astype(np.float64)
            value = np.imag(losses[:, 0]) / h
            rel = noise / max(abs(f0), np.finfo(np.float64).tiny)
            bar = config.NOISE_SAFETY * max(rel, eps) * np.abs(value)
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
            # Truncation is h^2 |f'''| / 6. The one-sided jump (right - left ~ h f'')
            # measures the curvature: h |right - left| bounds the truncation when
            # f'' varies on a scale of 1 or more, and h^2 |f'| / scale^2 covers
            # inflection points (f'' = 0) under the same scale model. Entries
            # that fail are re-estimated with Richardson's measured error.
            truncation = h * np.abs(right - left) + h * h * np.abs(d1) / (scale * scale)
            bar = 2.0 * rounding / np.abs(d1_span) + truncation
            return Estimate(d1, bar, left, right)
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
