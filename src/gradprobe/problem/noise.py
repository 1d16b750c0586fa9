"""Estimating the computational noise of a loss function.

A finite difference divides a difference of two losses by a small step, so
its rounding error is the noise of one evaluation divided by the step. That
noise is not ``eps * |f|``: a loss summed over many terms, computed through
float32 buffers or with cancellation is noisier. We measure it the way Moré
and Wild's ECnoise does: evaluate ``f`` at equally spaced points along a
random direction, build the difference table, and read the noise level off
the orders at which the smooth part has vanished and the differences change
sign (J. J. Moré and S. M. Wild, "Estimating computational noise", SIAM J.
Sci. Comput. 33(3), 2011).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from .. import config


@dataclass(frozen=True)
class NoiseEstimate:
    """Absolute noise of one evaluation of ``f`` and how it was obtained.

    Attributes
    ----------
    level : float
        Standard deviation of the rounding noise of one evaluation.
    measured : bool
        True when the difference table gave an estimate; False when every
        try was inconclusive and ``level`` is the floor ``eps * |f|``.
    evaluations : int
        Loss evaluations spent.
    slope : float
        ``|df/dt|`` along the probe's direction (a unit vector through all
        entries), from the widest finite table: about the size of a typical
        gradient entry. It gives the loss a scale when ``f(x)`` itself is
        near 0 (terms that cancel), where ``noise / |f|`` would mislead.
    """

    level: float
    measured: bool
    evaluations: int
    slope: float = 0.0


def noise_from_table(values: np.ndarray) -> tuple[float, int]:
    """Noise level from losses at equally spaced points (ECnoise's core).

    Parameters
    ----------
    values : ndarray
        ``f`` at ``x + k * delta * v`` for consecutive ``k``.

    Returns
    -------
    level : float
        The estimated noise (0.0 when ``status`` is not 1).
    status : int
        1 success; 2 spacing too small (values mostly equal); 3 spacing too
        large (the smooth part dominates the differences).

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> t = np.linspace(-4, 4, 9) * 1e-3
    >>> level, status = noise_from_table(1 + t + t**2 + 1e-9 * rng.standard_normal(9))
    >>> status, 2e-10 < level < 5e-9
    (1, True)
    """
    f = np.asarray(values, dtype=np.float64).copy()
    n = f.size
    orders = min(config.NOISE_MAX_ORDER, n - 1)
    levels = np.zeros(orders)
    sign_change = np.zeros(orders, dtype=bool)
    gamma = 1.0
    for j in range(1, orders + 1):
        f = np.diff(f)
        if j == 1 and np.count_nonzero(f == 0.0) >= n / 2:
            return 0.0, 2
        gamma *= 0.5 * j / (2 * j - 1)
        levels[j - 1] = np.sqrt(gamma * np.mean(f * f))
        sign_change[j - 1] = f.min() * f.max() < 0.0
    for k in range(orders - 2):
        window = levels[k:k + 3]
        if window.min() > 0 and window.max() <= 4.0 * window.min() and sign_change[k]:
            return float(levels[k]), 1
    return 0.0, 3


def estimate_noise(loss_along: Callable[[float], float], spacing: float,
                   floor: float) -> NoiseEstimate:
    """Measure the noise of ``t -> loss_along(t)`` near ``t = 0``.

    Parameters
    ----------
    loss_along : callable
        The loss at ``x + t * v`` for a fixed unit direction ``v``.
    spacing : float
        First spacing to try; it is widened or narrowed by
        ``config.NOISE_SPACING_FACTOR`` when a try is inconclusive.
    floor : float
        Smallest noise to report (``eps * |f|``); also the fallback.

    Returns
    -------
    NoiseEstimate

    Examples
    --------
    >>> est = estimate_noise(lambda t: float(np.float32(1.0) + np.float32(t)), 1e-2, 6e-8)
    >>> est.measured, 1e-8 < est.level < 1e-6
    (True, True)
    """
    offsets = np.arange(-config.NOISE_HALF_POINTS, config.NOISE_HALF_POINTS + 1)
    evaluations = 0
    delta = spacing
    found: list[float] = []
    slope = 0.0
    for _ in range(config.NOISE_TRIES + 1):
        values = np.array([loss_along(float(k * delta)) for k in offsets])
        evaluations += values.size
        if not np.all(np.isfinite(values)):
            delta /= config.NOISE_SPACING_FACTOR
            continue
        if not slope:
            slope = abs(float(values[-1] - values[0])) / float(offsets[-1] - offsets[0]) / delta
        level, status = noise_from_table(values)
        if status == 1:
            found.append(level)
            if len(found) == 2:
                break
            # Confirm at a smaller spacing: true noise does not depend on the
            # spacing, while a kink crossed by the probe looks like noise that
            # shrinks with it. The smaller reading wins.
            delta /= config.NOISE_SPACING_FACTOR
        elif found:
            if status == 3:
                # The first reading did not survive a smaller spacing with a
                # noise-like table: the probe crossed a kink, not noise.
                found.clear()
            break
        elif len(found) == 0 and evaluations >= config.NOISE_TRIES * values.size:
            break
        else:
            delta = delta * config.NOISE_SPACING_FACTOR if status == 2 else \
                delta / config.NOISE_SPACING_FACTOR
    if len(found) == 2 and min(found) < max(found) / np.sqrt(config.NOISE_SPACING_FACTOR):
        # The reading shrank with the spacing: a kink (or a jump) crossed by the
        # probe, whose differences scale with the spacing, not noise.
        found.clear()
    if found:
        return NoiseEstimate(max(min(found), floor), True, evaluations, slope)
    return NoiseEstimate(floor, False, evaluations, slope)
