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

import numpy as np

from . import config
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
    n = estimate.value
    with np.errstate(invalid="ignore", over="ignore"):
        abs_error = np.abs(a - n)
        scale = np.maximum(np.abs(a), np.abs(n))
        rel_error = np.where(scale > 0, abs_error / np.where(scale > 0, scale, 1.0), 0.0)
        allowance = np.maximum(np.maximum(atol, rtol * scale), estimate.error_bar)
        ratio = np.where(allowance > 0, abs_error / np.where(allowance > 0, allowance, 1.0),
                         np.where(abs_error > 0, np.inf, 0.0))
    finite = np.isfinite(a)
    ratio = np.where(finite, ratio, np.inf)
    abs_error = np.where(finite, abs_error, np.inf)
    rel_error = np.where(finite, rel_error, np.inf)
    failed = ratio > 1.0
    kink = np.zeros_like(failed)
    if estimate.left is not None and estimate.right is not None:
        kink = failed & _at_kink(a, estimate.left, estimate.right, allowance)
        failed = failed & ~kink
    return Judgement(abs_error, rel_error, allowance, ratio, failed, kink, rtol, atol)


def _at_kink(a: np.ndarray, left: np.ndarray, right: np.ndarray,
             allowance: np.ndarray) -> np.ndarray:
    """Entries whose one-sided derivatives jump and bracket the analytic value."""
    low, high = np.minimum(left, right), np.maximum(left, right)
    jump = high - low
    significant = jump > np.maximum(2.0 * allowance,
                                    config.KINK_MIN_JUMP * np.maximum(np.abs(low), np.abs(high)))
    between = (a >= low - allowance) & (a <= high + allowance)
    return significant & between & np.isfinite(a)
