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


def noise_by_output(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """ECnoise's difference table for every column of ``values`` at once.

    The vectorized form of :func:`gradprobe.problem.noise.noise_from_table`, which it
    matches column by column (``tests/test_vector_checks.py`` checks this).

    Parameters
    ----------
    values : ndarray, shape (n_points, m)
        Column ``k`` holds output entry ``k`` at ``x + j * delta * v`` for
        consecutive ``j``.

    Returns
    -------
    level : ndarray, shape (m,)
        The noise of every output entry (0.0 where ``status`` is not 1).
    status : ndarray of int, shape (m,)
        1 success; 2 spacing too small; 3 spacing too large; 0 the column
        holds a non-finite value.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> t = np.linspace(-4, 4, 9)[:, None] * 1e-3
    >>> smooth = 1 + t + t ** 2
    >>> level, status = noise_by_output(np.hstack([smooth + 1e-9 * rng.standard_normal((9, 1)),
    ...                                            np.ones((9, 1))]))
    >>> status.tolist(), bool(2e-10 < level[0] < 5e-9)
    ([1, 2], True)
    """
    f = np.asarray(values, dtype=np.float64)
    n, m = f.shape
    finite = np.all(np.isfinite(f), axis=0)
    f = np.where(finite, f, 0.0)
    orders = min(config.NOISE_MAX_ORDER, n - 1)
    levels = np.zeros((orders, m))
    sign_change = np.zeros((orders, m), dtype=bool)
    too_small = np.zeros(m, dtype=bool)
    gamma = 1.0
    for j in range(1, orders + 1):
        f = np.diff(f, axis=0)
        if j == 1:
            too_small = np.count_nonzero(f == 0.0, axis=0) >= n / 2
        gamma *= 0.5 * j / (2 * j - 1)
        levels[j - 1] = np.sqrt(gamma * np.mean(f * f, axis=0))
        sign_change[j - 1] = f.min(axis=0) * f.max(axis=0) < 0.0
    level = np.zeros(m)
    status = np.full(m, 3, dtype=np.int64)
    status[too_small] = 2
    decided = too_small | ~finite
    for k in range(orders - 2):
        window = levels[k:k + 3]
        low, high = window.min(axis=0), window.max(axis=0)
        ok = (low > 0) & (high <= 4.0 * low) & sign_change[k] & ~decided
        level[ok] = levels[k][ok]
        status[ok] = 1
        decided |= ok
    status[~finite] = 0
    return level, status


def combine_readings(first: tuple[np.ndarray, np.ndarray],
                     second: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Noise per output entry from tables at a spacing and a 100x smaller one.

    Mirrors :func:`gradprobe.problem.noise.estimate_noise`: true noise does not
    depend on the spacing, so when both readings succeed the smaller wins,
    unless it shrank with the spacing (a kink crossed by the probe, not
    noise); a reading that does not survive the smaller spacing (which then
    sees a smooth table) is dropped. Entries without a reading get 0 (the
    caller applies its floor).

    Examples
    --------
    >>> ok = (np.array([1e-9, 1e-9, 1e-6]), np.array([1, 1, 1]))
    >>> small = (np.array([2e-9, 0.0, 1e-9]), np.array([1, 3, 1]))
    >>> combine_readings(ok, small).tolist()
    [1e-09, 0.0, 0.0]
    """
    (l1, s1), (l2, s2) = first, second
    ok1, ok2 = s1 == 1, s2 == 1
    low, high = np.minimum(l1, l2), np.maximum(l1, l2)
    shrank = low < high / np.sqrt(config.NOISE_SPACING_FACTOR)
    level = np.zeros(l1.shape)
    level = np.where(ok1 & ok2 & ~shrank, low, level)
    level = np.where(ok1 & ~ok2 & (s2 == 2), l1, level)
    level = np.where(~ok1 & ok2, l2, level)
    return level


def noise_direction(working: list[np.ndarray], seed: int
                    ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The base point (real part, float64) and the unit direction the noise of ``f``
    is measured along: random (seeded), each entry scaled by ``max(1, |x|)``. The
    scalar and the vector checks measure along the same direction.

    Examples
    --------
    >>> base, direction = noise_direction([np.array([1.0, 100.0])], seed=0)
    >>> round(float(np.sqrt(sum(np.sum(d * d) for d in direction))), 12)
    1.0
    """
    rng = np.random.default_rng([seed, config.SEED_TAG_NOISE])
    base = [a.real.astype(np.float64) for a in working]
    direction = [rng.standard_normal(a.shape) * np.maximum(1.0, np.abs(a)) for a in base]
    norm = np.sqrt(sum(float(np.sum(d * d)) for d in direction))
    return base, [d / norm for d in direction]
