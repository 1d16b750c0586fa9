"""Numerical derivative estimates at chosen entries: stencil x engine.

This is the one place where a stencil's points are handed to an engine and
the losses coming back are turned into estimates, so every engine and every
check mode share it.
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from . import config
from .engines.base import Engine
from .problem import Problem
from .stencils import Estimate, Stencil, one_sided_slope, step_size

if TYPE_CHECKING:
    from .report import ParamReport


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
                     entries: np.ndarray | None, eps: float | None) -> Estimate:
    """Numerical derivatives of ``f`` with respect to ``entries`` of parameter ``param``
    (None: every entry).

    Entries go to the engine ``config.ESTIMATE_CHUNK`` at a time, each chunk's
    estimates written into arrays allocated once: the perturbed points, the
    losses and the stencil's temporaries never exist for more than one chunk
    (every entry's estimate depends on that entry alone, so the result is
    the same as in one call).

    Raises
    ------
    ValueError
        When ``f`` returns a non-finite loss at a perturbed point (the message
        names the parameter, the entry and the perturbed value).
    """
    size = problem.working[param].size if entries is None else entries.size
    chunk = config.ESTIMATE_CHUNK

    def chosen(lo: int, hi: int) -> np.ndarray:
        return np.arange(lo, hi, dtype=np.int64) if entries is None else entries[lo:hi]

    if size <= chunk:
        return _estimate_chunk(problem, engine, stencil, param, chosen(0, size), eps)
    out: dict[str, np.ndarray | None] = {}
    for lo in range(0, size, chunk):
        hi = min(size, lo + chunk)
        est = _estimate_chunk(problem, engine, stencil, param, chosen(lo, hi), eps)
        for key in ("value", "error_bar", "left", "right"):
            part = getattr(est, key)
            if lo == 0:
                out[key] = None if part is None else np.empty(size, dtype=part.dtype)
            if part is not None:
                out[key][lo:hi] = part
    return Estimate(out["value"], out["error_bar"], out["left"], out["right"])


def _estimate_chunk(problem: Problem, engine: Engine, stencil: Stencil, param: int,
                    entries: np.ndarray, eps: float | None) -> Estimate:
    """:func:`estimate_entries` for one chunk of entries."""
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
    function's one-sided derivatives move together. Each is of second order
    (the points ``x +- h`` and ``x +- 2h``, :func:`~gradprobe.stencils.one_sided_slope`),
    so the curvature on either side of a kink does not move them."""
    flat = problem.working[param].reshape(-1)
    x = flat[entries]
    x_real = (x.real if np.iscomplexobj(x) else x).astype(np.float64)
    h = step_size(x_real, "central", problem.noise_rel, eps) / config.KINK_STEP_DIVISOR
    points = np.stack([x_real + h, x_real - h, x_real + 2 * h, x_real - 2 * h],
                      axis=1).astype(flat.dtype)
    losses = np.real(engine.evaluate(problem, param, entries, points)).astype(np.float64)
    p = np.real(points).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        right = one_sided_slope(problem.f0, x_real, p[:, 0], losses[:, 0], p[:, 2], losses[:, 2])
        left = one_sided_slope(problem.f0, x_real, p[:, 1], losses[:, 1], p[:, 3], losses[:, 3])
    return left, right


def check_entries(problem: Problem, engine: Engine, stencil: Stencil, param: int,
                  entries: np.ndarray | None, grad: np.ndarray, *, eps: float | None,
                  rtol: float | None, atol: float | None) -> "ParamReport":
    """Estimate and judge ``entries`` of one parameter: the per-entry check.

    Failing central/forward estimates are confirmed with Richardson's formula
    and kink candidates with one-sided differences at a smaller step, exactly
    as in a full check; every mode (full, sample, the entries named by
    directional localization) goes through here.

    Examples
    --------
    >>> import numpy as np
    >>> from gradprobe.engines.python import PythonEngine
    >>> from gradprobe.params import ParamSet
    >>> from gradprobe.problem import prepare
    >>> f = lambda w: float(np.sum(w ** 3))
    >>> w = np.array([1.0, 2.0, 3.0])
    >>> problem = prepare(f, ParamSet.from_user(w, f), (), upcast=True,
    ...                   complex_step=False, seed=0)
    >>> r = check_entries(problem, PythonEngine(), Stencil("central"), 0,
    ...                   np.array([2]), np.array([3.0, 12.0, 30.0]), eps=None,
    ...                   rtol=None, atol=None)
    >>> r.checked, r.failed_indices
    (1, [(2,)])
    """
    from .verdict import compare_param

    array = problem.paramset.arrays[param]
    if entries is not None:
        entries = np.asarray(entries, dtype=np.int64)

    def chosen(positions: np.ndarray) -> np.ndarray:
        """Flat indices of the checked entries at ``positions`` (None: every entry)."""
        return np.asarray(positions, dtype=np.int64) if entries is None \
            else entries[positions]

    if (array.size if entries is None else entries.size) == 0:
        empty = np.empty(0)
        est = Estimate(empty, empty)
    else:
        est = estimate_entries(problem, engine, stencil, param, entries, eps)
    refine = None
    if stencil.method in ("central", "forward"):
        def refine(positions: np.ndarray) -> Estimate:
            return estimate_entries(problem, engine, Stencil("richardson"), param,
                                    chosen(positions), eps)
    kink_probe = None
    if stencil.method != "complex":
        def kink_probe(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return one_sided(problem, engine, param, chosen(positions), eps)
    return compare_param(problem.names[param], array.shape, array.dtype, entries, grad,
                         est, rtol=rtol, atol=atol, refine=refine, kink_probe=kink_probe)
