"""Numerical derivative estimates at chosen entries: stencil x engine.

This is the one place where a stencil's points are handed to an engine and
the losses coming back are turned into estimates, so every engine and every
check mode share it.
"""
from __future__ import annotations

import numpy as np

from .. import config
from ..config import SHRINK_TARGET
from ..engines.base import Engine
from ..problem.point import Problem
from .stencils import Estimate, Stencil, one_sided_slope, step_size, successive_steps


def select_entries(size: int, samples: int | None, seed: int, param: int) -> np.ndarray:
    """Flat indices to check: all of them, or ``samples`` drawn without replacement.

    The draw depends only on ``seed``, the parameter's position and its size,
    so a check is reproducible.

    Examples
    --------
    >>> select_entries(5, None, 0, 0)
    array([0, 1, 2, 3, 4])
    >>> len(select_entries(1000, 10, 0, 0))
    10
    """
    if samples is None or samples >= size:
        return np.arange(size, dtype=np.int64)
    rng = np.random.default_rng([seed, param, config.SEED_TAG_SAMPLE])
    return np.sort(rng.choice(size, size=samples, replace=False)).astype(np.int64)


def _losses_inside(problem: Problem, engine: Engine, param: int, entries: np.ndarray,
                   x_real: np.ndarray, h: np.ndarray, stencil: Stencil, dtype: np.dtype,
                   adapt: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Losses at the stencil's points; where ``f`` is not finite, smaller steps.

    A perturbed point outside ``f``'s domain (``nan``/``inf`` where the base
    point is finite) is evaluated again with the entry's step divided by
    ``config.SHRINK_RATIO``, at most ``config.DOMAIN_SHRINKS`` times (only for
    automatic steps: a user's ``eps`` is used as given). When no step gives
    finite losses the first failing point is named in a ValueError.

    Returns ``(losses, points, h)`` with the steps finally used.
    """
    points = stencil.points(x_real, h).astype(dtype, copy=False)
    losses = engine.evaluate(problem, param, entries, points)
    finite = np.isfinite(losses)
    if finite.all():
        return losses, points, h
    first_row, first_col = (int(v) for v in np.argwhere(~finite)[0])
    first = (losses[first_row, first_col].item(), points[first_row, first_col],
             h[first_row], x_real[first_row].item(), int(entries[first_row]))
    if adapt:
        h = h.copy()
        losses, points = losses.copy(), points.copy()
        for _ in range(config.DOMAIN_SHRINKS):
            rows = np.flatnonzero(~np.all(np.isfinite(losses), axis=1))
            if rows.size == 0:
                break
            h[rows] = h[rows] / config.SHRINK_RATIO
            points[rows] = stencil.points(x_real[rows], h[rows]).astype(dtype, copy=False)
            losses[rows] = engine.evaluate(problem, param, entries[rows], points[rows])
    if np.isfinite(losses).all():
        return losses, points, h
    value, point, step, x0, entry = first
    raise ValueError(
        f"f returned {value!r} {problem.describe_point(param, entry, point)} "
        f"(step {step:.3g} from {x0!r}); the loss must be finite near the "
        "checked point: pass a smaller eps, or check a point further from the "
        "domain boundary")


def measured_length(problem: Problem, engine: Engine, param: int, entries: np.ndarray,
                    x_real: np.ndarray, h: np.ndarray, est: Estimate,
                    dtype: np.dtype) -> float | None:
    """A length on which ``f`` changes, measured at a few entries of one parameter.

    Three losses per entry cannot show ``f'''``, which a central difference's
    truncation is made of. At up to ``config.CALIBRATION_ENTRIES`` entries
    (spread over the checked ones) the central difference is repeated at twice
    the step: ``|d(h) - d(2h)| / 3`` measures its truncation, hence ``|f'''|``,
    and the length ``l`` with ``|f'''| = |f''| / l + |f'| / l^2``. The shortest
    measured length (divided by ``config.CALIBRATION_SAFETY``) caps the length
    of the truncation model of every entry (:func:`gradprobe.differences.stencils.central_truncation`).
    ``None`` when no measured truncation stood above the rounding.
    """
    n = entries.size
    rows = np.unique(np.linspace(0, n - 1, min(n, config.CALIBRATION_ENTRIES)).astype(np.int64))
    wide = Stencil("central")
    points = wide.points(x_real[rows], 2.0 * h[rows]).astype(dtype, copy=False)
    losses = np.real(engine.evaluate(problem, param, entries[rows], points)).astype(np.float64)
    p = np.real(points).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        d2 = (losses[:, 0] - losses[:, 1]) / (p[:, 0] - p[:, 1])
        d1 = est.value[rows]
        truncation = np.abs(d1 - d2) / 3.0
        rounding = est.error_bar[rows] - est.truncation[rows]
        significant = np.isfinite(truncation) & (truncation > 2.0 * rounding)
        third = 6.0 * truncation / (h[rows] * h[rows])
        second = np.abs(est.right[rows] - est.left[rows]) / h[rows]
        first = np.abs(d1)
        length = (second + np.sqrt(second * second + 4.0 * third * first)) / (2.0 * third)
    length = length[significant & np.isfinite(length) & (length > 0)]
    if length.size == 0:
        return None
    return float(length.min()) / config.CALIBRATION_SAFETY


def estimate_entries(problem: Problem, engine: Engine, stencil: Stencil, param: int,
                     entries: np.ndarray | None, eps: float | None) -> Estimate:
    """Numerical derivatives of ``f`` with respect to ``entries`` of parameter ``param``
    (None: every entry).

    Entries go to the engine ``config.ESTIMATE_CHUNK`` at a time, each chunk's
    estimates written into arrays allocated once: the perturbed points, the
    losses and the stencil's temporaries never exist for more than one chunk
    (every entry's estimate depends on that entry alone, so the result is
    the same as in one call).

    Automatic steps shrink where ``f`` is not finite at a perturbed point, and
    the central difference's truncation bar is calibrated on a few entries
    (:func:`measured_length`).

    Raises
    ------
    ValueError
        When ``f`` returns a non-finite loss at a perturbed point at every
        step tried (the message names the parameter, the entry and the
        perturbed value).
    """
    size = problem.working[param].size if entries is None else entries.size
    chunk = config.ESTIMATE_CHUNK

    def chosen(lo: int, hi: int) -> np.ndarray:
        return np.arange(lo, hi, dtype=np.int64) if entries is None else entries[lo:hi]

    if size <= chunk:
        return _estimate_chunk(problem, engine, stencil, param, chosen(0, size), eps)
    # the truncation model's length is measured once, on entries spread over all of
    # them (the same entries as in one call), and serves every chunk
    length = None
    if _calibrated(stencil, eps):
        at = np.unique(np.linspace(0, size - 1, config.CALIBRATION_ENTRIES).astype(np.int64))
        sample = at if entries is None else entries[at]
        first = _estimate_chunk(problem, engine, stencil, param, sample, eps, calibrate=False)
        length = measured_length(problem, engine, param, sample, _real(problem, param, sample),
                                 first.step, first, problem.working[param].dtype)
    out: dict[str, np.ndarray | None] = {}
    keys = ("value", "error_bar", "left", "right", "step", "truncation")
    for lo in range(0, size, chunk):
        hi = min(size, lo + chunk)
        est = _estimate_chunk(problem, engine, stencil, param, chosen(lo, hi), eps,
                              length=length, calibrate=False)
        for key in keys:
            part = getattr(est, key)
            if lo == 0:
                out[key] = None if part is None else np.empty(size, dtype=part.dtype)
            if part is not None:
                out[key][lo:hi] = part
    return Estimate(out["value"], out["error_bar"], out["left"], out["right"],
                    step=out["step"], truncation=out["truncation"])


def _calibrated(stencil: Stencil, eps: float | None) -> bool:
    """Automatic central steps: shrunk inside f's domain, their truncation bar calibrated."""
    return eps is None and stencil.method == "central"


def _real(problem: Problem, param: int, entries: np.ndarray) -> np.ndarray:
    x = problem.working[param].reshape(-1)[entries]
    return (x.real if np.iscomplexobj(x) else x).astype(np.float64)


def _estimate_chunk(problem: Problem, engine: Engine, stencil: Stencil, param: int,
                    entries: np.ndarray, eps: float | None, *, length: float | None = None,
                    calibrate: bool = True) -> Estimate:
    """:func:`estimate_entries` for one chunk of entries; the truncation length is
    measured here (``calibrate``) or given (``length``)."""
    flat = problem.working[param].reshape(-1)
    x = flat[entries]
    x_real = x.real if np.iscomplexobj(x) else x
    h = step_size(x_real, stencil.method, problem.noise_rel, eps)
    adapt = eps is None and stencil.method != "complex"
    losses, points, h = _losses_inside(problem, engine, param, entries, x_real, h, stencil,
                                       flat.dtype, adapt)
    eps_eval = float(np.finfo(problem.eval_dtype).eps)
    est = stencil.estimate(losses, x_real, points, problem.f0, problem.noise.level, eps_eval,
                           local=adapt)
    if _calibrated(stencil, eps) and calibrate and entries.size:
        length = measured_length(problem, engine, param, entries,
                                 x_real.astype(np.float64), h, est, flat.dtype)
    if _calibrated(stencil, eps) and length is not None:
        est = stencil.estimate(losses, x_real, points, problem.f0, problem.noise.level,
                               eps_eval, length=length, local=True)
    if _calibrated(stencil, eps):  # the steps used, shrunk or not
        est = Estimate(est.value, est.error_bar, est.left, est.right, step=h,
                       truncation=est.truncation)
    return est


def confirm_entries(problem: Problem, engine: Engine, param: int, entries: np.ndarray,
                    tolerance: np.ndarray, first: Estimate | None) -> Estimate:
    """Derivatives of suspect entries at steps chosen by the function
    (:func:`gradprobe.differences.stencils.successive_steps`), from the central step down.

    Where that is still wider than the tolerance and limited by the noise of
    ``f``, successive *larger* steps are tried too, and the smaller bar kept.
    """
    flat = problem.working[param].reshape(-1)
    x = flat[entries]
    x_real = (x.real if np.iscomplexobj(x) else x).astype(np.float64)
    h0 = step_size(x_real, "central", problem.noise_rel)
    if first is not None and first.step is not None:
        h0 = first.step  # the first estimate's steps (shrunk inside f's domain)
    eps_eval = float(np.finfo(problem.eval_dtype).eps)

    def evaluate(rows: np.ndarray, points: np.ndarray) -> np.ndarray:
        return engine.evaluate(problem, param, entries[rows], points)

    est, _ = successive_steps(evaluate, x_real, h0, flat.dtype, problem.f0,
                              problem.noise.level, eps_eval, tolerance, first)
    limited = np.flatnonzero(~(est.error_bar <= SHRINK_TARGET * tolerance) &
                             ~(2.0 * est.truncation > est.error_bar))
    if limited.size:
        start = Estimate(first.value[limited], first.error_bar[limited], first.left[limited],
                         first.right[limited], truncation=None if first.truncation is None
                         else first.truncation[limited]) if first is not None else None
        wide, _ = successive_steps(lambda rows, points: evaluate(limited[rows], points),
                                   x_real[limited], h0[limited], flat.dtype, problem.f0,
                                   problem.noise.level, eps_eval, tolerance[limited], start,
                                   grow=True)
        better = wide.error_bar < est.error_bar[limited]
        if better.any():
            at = limited[better]
            parts = [np.asarray(a).copy() for a in (est.value, est.error_bar, est.left,
                                                    est.right, est.step, est.truncation)]
            for part, source in zip(parts, (wide.value, wide.error_bar, wide.left, wide.right,
                                            wide.step, wide.truncation)):
                part[at] = source[better]
            est = Estimate(*parts[:4], step=parts[4], truncation=parts[5])
    return est


def one_sided(problem: Problem, engine: Engine, param: int, entries: np.ndarray,
              eps: float | None, steps: np.ndarray | None = None,
              ) -> tuple[np.ndarray, np.ndarray]:
    """Left and right one-sided derivatives at a step ``KINK_STEP_DIVISOR`` times
    smaller than the central step (or than ``steps``, where the confirmation
    chose a step for the entry): a kink keeps its jump there, a smooth
    function's one-sided derivatives move together. Each is of second order
    (the points ``x +- h`` and ``x +- 2h``, :func:`~gradprobe.differences.stencils.one_sided_slope`),
    so the curvature on either side of a kink does not move them."""
    flat = problem.working[param].reshape(-1)
    x = flat[entries]
    x_real = (x.real if np.iscomplexobj(x) else x).astype(np.float64)
    h = step_size(x_real, "central", problem.noise_rel, eps)
    if steps is not None:
        h = np.where(np.isfinite(steps), steps, h)
    h = h / config.KINK_STEP_DIVISOR
    points = np.stack([x_real + h, x_real - h, x_real + 2 * h, x_real - 2 * h],
                      axis=1).astype(flat.dtype)
    losses = np.real(engine.evaluate(problem, param, entries, points)).astype(np.float64)
    p = np.real(points).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        right = one_sided_slope(problem.f0, x_real, p[:, 0], losses[:, 0], p[:, 2], losses[:, 2])
        left = one_sided_slope(problem.f0, x_real, p[:, 1], losses[:, 1], p[:, 3], losses[:, 3])
    return left, right
