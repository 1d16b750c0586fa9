"""Error metrics, allowances, kinks: deciding which entries fail.

An entry fails only when the difference between the analytic and the
numerical derivative exceeds *every* allowance:

* ``atol`` (default: a small fraction of the parameter's largest gradient
  entry, which absorbs the rounding of near-zero entries);
* ``rtol * max(|analytic|, |numeric|)`` (default by the gradient's dtype);
* the numerical estimate's own error bar (rounding + truncation).

A failing entry whose analytic value lies between the one-sided derivatives,
which differ by a clear jump, is a *kink* (ReLU at 0, ``max``, ``abs``): ``f``
is not differentiable there, and the entry is reported apart, not failed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np

from . import config
from .report import ParamReport
from .stencils import Estimate


@dataclass(frozen=True)
class Judgement:
    """Per-entry verdict of one parameter.

    Attributes
    ----------
    abs_error, rel_error : ndarray
        ``|a - n|`` and ``|a - n| / max(|a|, |n|)`` (0 where both are 0).
    allowance : ndarray
        The largest of the three allowances for each entry.
    ratio : ndarray
        ``abs_error / allowance``: above 1 means the entry fails.
    failed, kink : ndarray of bool
        Failing entries and entries at a kink (disjoint).
    rtol, atol : float
        The tolerances used (after defaults were resolved).
    """

    abs_error: np.ndarray
    rel_error: np.ndarray
    allowance: np.ndarray
    ratio: np.ndarray
    failed: np.ndarray
    kink: np.ndarray
    rtol: float
    atol: float


def default_rtol(grad_dtype: np.dtype) -> float:
    """Relative tolerance for a gradient stored in ``grad_dtype``.

    Examples
    --------
    >>> default_rtol(np.dtype("float32"))
    0.001
    """
    return config.DEFAULT_RTOL[_precision(grad_dtype)]


def default_atol(grad_dtype: np.dtype, analytic: np.ndarray, numeric: np.ndarray) -> float:
    """Absolute tolerance: a fraction of the parameter's largest gradient entry."""
    finite_a = np.abs(analytic[np.isfinite(analytic)])
    largest = max(float(finite_a.max(initial=0.0)), float(np.abs(numeric).max(initial=0.0)))
    return config.DEFAULT_ATOL_FRACTION[_precision(grad_dtype)] * largest


def _precision(dtype: np.dtype) -> np.dtype:
    """The floating dtype whose tolerances apply (integers count as float64)."""
    dtype = np.dtype(dtype)
    if dtype.kind == "f" and dtype in config.DEFAULT_RTOL:
        return dtype
    return np.dtype(np.float64)


def judge(analytic: np.ndarray, estimate: Estimate, *, rtol: float, atol: float) -> Judgement:
    """Compare analytic with numerical derivatives entry by entry.

    Parameters
    ----------
    analytic : ndarray, shape (k,)
        The user's gradient at the checked entries (float64).
    estimate : Estimate
        Numerical derivatives, error bars and one-sided derivatives.
    rtol, atol : float
        Resolved tolerances.

    Returns
    -------
    Judgement

    Examples
    --------
    >>> from gradprobe.stencils import Estimate
    >>> est = Estimate(np.array([1.0, 2.0]), np.array([1e-10, 1e-10]))
    >>> judge(np.array([1.0, 2.02]), est, rtol=1e-5, atol=0.0).failed
    array([False,  True])
    """
    a = np.asarray(analytic, dtype=np.float64)
    if a.size >= config.VERDICT_KERNEL_MIN_ENTRIES:
        from .verdict_kernel import error_metrics

        abs_error, rel_error, allowance, ratio = error_metrics(
            a, estimate.value, estimate.error_bar, rtol, atol)
    else:
        abs_error, rel_error, allowance, ratio = _error_metrics(
            a, estimate.value, estimate.error_bar, rtol, atol)
    failed = ratio > 1.0
    kink = np.zeros_like(failed)
    if estimate.left is not None and estimate.right is not None and failed.any():
        at = np.flatnonzero(failed)
        kink[at] = _at_kink(a[at], estimate.left[at], estimate.right[at], allowance[at])
        failed = failed & ~kink
    return Judgement(abs_error, rel_error, allowance, ratio, failed, kink, rtol, atol)


def _error_metrics(a: np.ndarray, n: np.ndarray, bar: np.ndarray | float, rtol: float,
                   atol: float) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(abs_error, rel_error, allowance, ratio)``: the NumPy reference of
    :func:`gradprobe.verdict_kernel.error_metrics`, used for small checks."""
    with np.errstate(invalid="ignore", over="ignore"):
        abs_error = np.abs(a - n)
        scale = np.maximum(np.abs(a), np.abs(n))
        rel_error = np.where(scale > 0, abs_error / np.where(scale > 0, scale, 1.0), 0.0)
        allowance = np.maximum(np.maximum(atol, rtol * scale), bar)
        ratio = np.where(allowance > 0, abs_error / np.where(allowance > 0, allowance, 1.0),
                         np.where(abs_error > 0, np.inf, 0.0))
    finite = np.isfinite(a)
    ratio = np.where(finite, ratio, np.inf)
    abs_error = np.where(finite, abs_error, np.inf)
    rel_error = np.where(finite, rel_error, np.inf)
    return abs_error, rel_error, np.broadcast_to(allowance, a.shape).copy(), ratio


def tolerance(analytic: np.ndarray, numeric: np.ndarray, rtol: float,
              atol: float) -> np.ndarray:
    """``max(atol, rtol * max(|a|, |n|))``: the error an entry must resolve.

    Examples
    --------
    >>> tolerance(np.array([2.0, 0.0]), np.array([2.0, 0.0]), 1e-5, 1e-9)
    array([2.e-05, 1.e-09])
    """
    with np.errstate(invalid="ignore"):
        scale = np.maximum(np.abs(analytic), np.abs(numeric))
        return np.maximum(atol, rtol * np.where(np.isfinite(scale), scale, 0.0))


def _at_kink(a: np.ndarray, left: np.ndarray, right: np.ndarray,
             allowance: np.ndarray) -> np.ndarray:
    """Entries whose one-sided derivatives jump and bracket the analytic value."""
    low, high = np.minimum(left, right), np.maximum(left, right)
    jump = high - low
    significant = jump > np.maximum(2.0 * allowance,
                                    config.KINK_MIN_JUMP * np.maximum(np.abs(low), np.abs(high)))
    between = (a >= low - allowance) & (a <= high + allowance)
    return significant & between & np.isfinite(a)


def _confirm_kinks(analytic: np.ndarray, estimate: Estimate, verdict: Judgement,
                   kink_probe: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                   ) -> Judgement:
    """Keep only the kink candidates whose jump survives a smaller step."""
    positions = np.flatnonzero(verdict.kink)
    if estimate.step is None:
        left, right = kink_probe(positions)
    else:  # from the step the confirmation chose for each entry
        left, right = kink_probe(positions, estimate.step[positions])
    a = analytic[positions]
    allowance = verdict.allowance[positions]
    jump_before = np.abs(estimate.right[positions] - estimate.left[positions])
    kept = np.abs(right - left) >= config.KINK_JUMP_KEPT * jump_before
    confirmed = kept & _at_kink(a, left, right, allowance)
    kink = verdict.kink.copy()
    failed = verdict.failed.copy()
    kink[positions[~confirmed]] = False
    failed[positions[~confirmed]] = True
    return Judgement(verdict.abs_error, verdict.rel_error, verdict.allowance, verdict.ratio,
                     failed, kink, verdict.rtol, verdict.atol)


def _merge(base: Estimate, positions: np.ndarray, better: Estimate) -> Estimate:
    """``base`` with the entries at ``positions`` replaced by ``better``'s."""
    size = base.value.size

    def put(target: np.ndarray | None, source: np.ndarray | None) -> np.ndarray | None:
        if source is None:
            return target
        out = np.full(size, np.nan) if target is None else target.copy()
        out[positions] = source
        return out

    return Estimate(put(base.value, better.value), put(base.error_bar, better.error_bar),
                    put(base.left, better.left), put(base.right, better.right),
                    step=put(base.step, better.step))


def compare_param(name: str, shape: tuple[int, ...], dtype: np.dtype, entries: np.ndarray,
                  grad: np.ndarray, estimate: Estimate, *, rtol: float | None,
                  atol: float | None,
                  refine: Callable[[np.ndarray], Estimate] | None = None,
                  kink_probe: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]] | None = None,
                  confirm_unresolved: bool = False) -> ParamReport:
    """Judge one parameter and wrap the result in a :class:`ParamReport`.

    Parameters
    ----------
    name, shape, dtype
        The parameter's name, shape and (user) dtype.
    entries : ndarray of int64
        Flat indices of the checked entries.
    grad : ndarray
        The user's whole gradient array for this parameter.
    estimate : Estimate
        Numerical derivatives at ``entries``.
    rtol, atol : float or None
        User tolerances; ``None`` picks the defaults for ``grad``'s dtype.
    refine : callable, optional
        ``refine(positions)`` returns a better (Richardson) estimate of the
        entries ``entries[positions]``; failing entries are re-estimated with
        it (worst first, at most ``config.CONFIRM_LIMIT``) before the verdict.
    kink_probe : callable, optional
        ``kink_probe(positions)`` returns one-sided derivatives ``(left,
        right)`` at a much smaller step for those entries. Kink candidates
        are confirmed with it: a kink keeps its jump as the step shrinks, a
        smooth function with strong curvature does not (and then fails).
        Without it, candidates are accepted as kinks. When the estimate
        carries the step of each entry (``estimate.step``), the probe is
        called as ``kink_probe(positions, steps)`` and starts from them.
    confirm_unresolved : bool
        Also re-estimate with ``refine`` the entries whose error bar is wider
        than ``config.CONFIRM_WIDE_FACTOR`` times their tolerance (``refine``
        then chooses its steps per entry),
        and report the entries left with a bar more than
        ``config.UNRESOLVED_FACTOR`` times their tolerance as unresolved (the
        check is then inconclusive).
    """
    flat = grad.reshape(-1)
    full = entries.size == flat.size and entries.size > 0 and entries[0] == 0 and \
        entries[-1] == flat.size - 1  # select_entries gives sorted unique entries
    analytic = (flat if full else flat[entries]).astype(np.float64)
    rtol_p = rtol if rtol is not None else default_rtol(grad.dtype)
    atol_p = atol if atol is not None else default_atol(grad.dtype, analytic, estimate.value)
    verdict = judge(analytic, estimate, rtol=rtol_p, atol=atol_p)
    refined = 0
    suspects = verdict.failed | verdict.kink
    if confirm_unresolved:
        # a pass must not rest on a bar wider than the error it has to detect
        suspects = suspects | _unresolved(analytic, estimate, verdict,
                                          config.CONFIRM_WIDE_FACTOR)
    if refine is not None and suspects.any():
        # Kink candidates are re-estimated too: one rejected later by the kink
        # probe must not fail on a less accurate estimate than other failures.
        positions = np.flatnonzero(suspects)
        positions = positions[np.argsort(-verdict.ratio[positions], kind="stable")]
        positions = positions[:config.CONFIRM_LIMIT]
        estimate = _merge(estimate, positions, refine(positions))
        verdict = judge(analytic, estimate, rtol=rtol_p, atol=atol_p)
        refined = int(positions.size)
    if kink_probe is not None and verdict.kink.any():
        verdict = _confirm_kinks(analytic, estimate, verdict, kink_probe)
    unresolved = _unresolved(analytic, estimate, verdict, config.UNRESOLVED_FACTOR) \
        if confirm_unresolved else None
    size = int(np.prod(shape, dtype=np.int64))
    return ParamReport(
        name=name, shape=tuple(shape), dtype=str(np.dtype(dtype)), flat_indices=entries,
        analytic_flat=analytic, numeric_flat=estimate.value, error_bar_flat=estimate.error_bar,
        abs_error_flat=verdict.abs_error, rel_error_flat=verdict.rel_error,
        ratio_flat=verdict.ratio, failed_mask=verdict.failed, kink_mask=verdict.kink,
        rtol=rtol_p, atol=atol_p, full=entries.size == size, refined=refined,
        unresolved_mask=unresolved)


def _unresolved(analytic: np.ndarray, estimate: Estimate, verdict: Judgement,
                factor: float = 1.0) -> np.ndarray:
    """Passing smooth entries whose error bar exceeds ``factor`` times their
    tolerance: they pass only because the estimate could not see such an error."""
    allowed = factor * tolerance(analytic, estimate.value, verdict.rtol, verdict.atol)
    with np.errstate(invalid="ignore"):
        wide = ~(estimate.error_bar <= allowed)
    return wide & ~verdict.failed & ~verdict.kink & np.isfinite(analytic)
