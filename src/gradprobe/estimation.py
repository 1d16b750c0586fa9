"""Numerical derivative estimates at chosen entries: stencil x engine.

This is the one place where a stencil's points are handed to an engine and
the losses coming back are turned into estimates, so every engine and every
check mode share it.
"""
from __future__ import annotations

import numpy as np

from . import config
from .engines.base import Engine
from .problem import Problem
from .stencils import Estimate, Stencil, step_size


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
    rng = np.random.default_rng([seed, param, 0x73616D70])
    return np.sort(rng.choice(size, size=samples, replace=False)).astype(np.int64)


def estimate_entries(problem: Problem, engine: Engine, stencil: Stencil, param: int,
                     entries: np.ndarray, eps: float | None) -> Estimate:
    """Numerical derivatives of ``f`` with respect to ``entries`` of parameter ``param``.

    Raises
    ------
    ValueError
        When ``f`` returns a non-finite loss at a perturbed point (the message
        names the parameter, the entry and the perturbed value).
    """
    flat = problem.working[param].reshape(-1)
    x = flat[entries]
    x_real = x.real if np.iscomplexobj(x) else x
    h = step_size(x_real, stencil.method, problem.noise_rel, eps)
    points = stencil.points(x_real, h).astype(flat.dtype, copy=False)
    losses = engine.evaluate(problem, param, entries, points)
    finite = np.isfinite(losses)
    if not finite.all():
        row, col = (int(v) for v in np.argwhere(~finite)[0])
        raise ValueError(
            f"f returned {losses[row, col].item()!r} "
            f"{problem.describe_point(param, int(entries[row]), points[row, col])} "
            f"(step {h[row]:.3g} from {x_real[row].item()!r}); the loss must be finite near the "
            "checked point: pass a smaller eps, or check a point further from the "
            "domain boundary")
    eps_eval = float(np.finfo(problem.eval_dtype).eps)
    return stencil.estimate(losses, x_real, points, problem.f0, problem.noise.level, eps_eval)



def one_sided(problem: Problem, engine: Engine, param: int, entries: np.ndarray,
              eps: float | None) -> tuple[np.ndarray, np.ndarray]:
    """Left and right one-sided derivatives at a step ``KINK_STEP_DIVISOR`` times
    smaller than the central step: a kink keeps its jump there, a smooth
    function's one-sided derivatives move together."""
    flat = problem.working[param].reshape(-1)
    x = flat[entries]
    x_real = (x.real if np.iscomplexobj(x) else x).astype(np.float64)
    h = step_size(x_real, "central", problem.noise_rel, eps) / config.KINK_STEP_DIVISOR
    points = np.stack([x_real + h, x_real - h], axis=1).astype(flat.dtype)
    losses = np.real(engine.evaluate(problem, param, entries, points))
    p = np.real(points).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        right = (losses[:, 0] - problem.f0) / (p[:, 0] - x_real)
        left = (problem.f0 - losses[:, 1]) / (x_real - p[:, 1])
    return left, right
