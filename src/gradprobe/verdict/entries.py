"""The per-entry check: estimate chosen entries of one parameter, then judge them.

Every mode (full, sample, the entries named by directional localization)
goes through :func:`check_entries`.
"""
from __future__ import annotations

import numpy as np

from .. import config
from ..differences.estimation import confirm_entries, estimate_entries, one_sided
from ..differences.stencils import Estimate, Stencil
from ..engines.base import Engine
from ..options import CheckOptions
from ..problem.point import Problem
from ..report.reports import ParamReport
from .compare import compare_param, default_atol, default_rtol, tolerance



def check_entries(problem: Problem, engine: Engine, stencil: Stencil, param: int,
                  entries: np.ndarray | None, grad: np.ndarray, opts: CheckOptions, *,
                  gradient_scale: float = 0.0) -> ParamReport:
    """Estimate and judge ``entries`` of one parameter: the per-entry check.

    ``opts`` gives the user's step and tolerances (``eps``, ``rtol``, ``atol``).

    Failing central/forward estimates are confirmed with Richardson's formula
    and kink candidates with one-sided differences at a smaller step, exactly
    as in a full check; every mode (full, sample, the entries named by
    directional localization) goes through here.

    Examples
    --------
    >>> import numpy as np
    >>> from gradprobe.engines.python import PythonEngine
    >>> from gradprobe.options import CheckOptions
    >>> from gradprobe.problem.params import ParamSet
    >>> from gradprobe.problem.point import prepare
    >>> f = lambda w: float(np.sum(w ** 3))
    >>> w = np.array([1.0, 2.0, 3.0])
    >>> problem = prepare(f, ParamSet.from_user(w, f), (), upcast=True,
    ...                   complex_step=False, seed=0)
    >>> r = check_entries(problem, PythonEngine(), Stencil("central"), 0,
    ...                   np.array([2]), np.array([3.0, 12.0, 30.0]), CheckOptions())
    >>> r.checked, r.failed_indices
    (1, [(2,)])
    """
    eps, rtol, atol = opts.eps, opts.rtol, opts.atol
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
    if eps is not None and stencil.method in ("central", "forward"):
        def refine(positions: np.ndarray) -> Estimate:  # the user's step, as given
            return estimate_entries(problem, engine, Stencil("richardson"), param,
                                    chosen(positions), eps)
    elif eps is None and stencil.method != "complex":
        flat_grad = grad.reshape(-1)
        analytic = (flat_grad if entries is None else flat_grad[entries]).astype(np.float64)
        rtol_p = rtol if rtol is not None else default_rtol(grad.dtype)
        atol_p = atol if atol is not None else default_atol(grad.dtype, analytic, est.value)
        reuse = stencil.method == "central"

        def refine(positions: np.ndarray) -> Estimate:
            allowed = tolerance(analytic[positions], est.value[positions], rtol_p, atol_p)
            if stencil.method == "forward":
                # Richardson's formula first (as always for forward differences);
                # what it leaves failing or wider than the tolerance goes on below
                wide = estimate_entries(problem, engine, Stencil("richardson"), param,
                                        chosen(positions), None)
                error = np.abs(wide.value - analytic[positions])
                settled = (wide.error_bar <= allowed) & (error <= allowed)
                if settled.all():
                    return wide
                rest = np.flatnonzero(~settled)
                confirmed = confirm_entries(problem, engine, param, chosen(positions[rest]),
                                            allowed[rest], None)
                return _merge_rows(wide, rest, confirmed)
            first = None
            if reuse:
                first = Estimate(est.value[positions], est.error_bar[positions],
                                 est.left[positions], est.right[positions],
                                 step=est.step[positions],
                                 truncation=None if est.truncation is None
                                 else est.truncation[positions])
            return confirm_entries(problem, engine, param, chosen(positions), allowed, first)
    kink_probe = None
    if stencil.method != "complex":
        def kink_probe(positions: np.ndarray, steps: np.ndarray | None = None,
                       ) -> tuple[np.ndarray, np.ndarray]:
            return one_sided(problem, engine, param, chosen(positions), eps, steps)
    # Central differences (the default) also confirm their wide passing bars.
    # The forward and Richardson methods confirm their failures only: two
    # points carry no curvature to judge a bar by, and Richardson's is measured.
    confirm = eps is None and stencil.method == "central"
    return compare_param(problem.names[param], array.shape, array.dtype, entries, grad,
                         est, rtol=rtol, atol=atol, refine=refine, kink_probe=kink_probe,
                         confirm_unresolved=confirm, gradient_scale=gradient_scale,
                         rounding_level=_at_rounding_level(problem))


def _at_rounding_level(problem: Problem) -> bool:
    """The measured noise of ``f`` is rounding (below ``config.NOISY_MIN_ULPS``
    units of the evaluation dtype's rounding of ``|f|``), not a noisy ``f``; or
    none could be measured (its level is then the rounding floor)."""
    eps_eval = float(np.finfo(problem.eval_dtype).eps)
    return bool(not problem.noise.measured or
                problem.noise.level <= config.NOISY_MIN_ULPS * eps_eval * abs(problem.f0))


def _merge_rows(base: Estimate, rows: np.ndarray, better: Estimate) -> Estimate:
    """``base`` with its ``rows`` replaced by ``better`` (steps NaN where unknown)."""
    size = base.value.size

    def put(target: np.ndarray | None, source: np.ndarray | None) -> np.ndarray:
        out = np.full(size, np.nan) if target is None else np.asarray(target, float).copy()
        if source is not None:
            out[rows] = source
        return out

    return Estimate(put(base.value, better.value), put(base.error_bar, better.error_bar),
                    put(base.left, better.left), put(base.right, better.right),
                    step=put(base.step, better.step))
