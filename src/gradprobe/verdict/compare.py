"""Error metrics, allowances, kinks: deciding which entries fail.

An entry fails only when the difference between the analytic and the
numerical derivative exceeds *every* allowance:

* ``atol`` (default: a small fraction of the parameter's largest gradient
  entry, which absorbs the rounding of near-zero entries; for a parameter
  whose gradient is zero in exact arithmetic, at the rounding level of the
  whole check's largest entry, that fraction of the check's largest);
* ``rtol * max(|analytic|, |numeric|)`` (default by the gradient's dtype);
* the numerical estimate's own error bar (rounding + truncation).

A failing entry whose analytic value lies between the one-sided derivatives,
which differ by a clear jump, is a *kink* (ReLU at 0, ``max``, ``abs``): ``f``
is not differentiable there, and the entry is reported apart, not failed.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from .. import config
from ..report.reports import ParamReport
from ..differences.stencils import Estimate
from ..report.metrics import entry_metrics, error_summary, first_pass


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
    """Absolute tolerance: a fraction of the parameter's largest gradient entry.

    NaN/inf analytic entries are ignored; a NaN numeric entry is ignored too
    (``max(largest analytic, nan)`` keeps the first).
    """
    return config.DEFAULT_ATOL_FRACTION[_precision(grad_dtype)] * \
        max(_max_abs(analytic, finite_only=True), _max_abs(numeric, finite_only=False))


def _default_atol(grad_dtype: np.dtype, analytic: np.ndarray, numeric: np.ndarray,
                  check_scale: float) -> float:
    """:func:`default_atol`, from the whole check's largest entry ``check_scale``
    when the parameter's own gradient is zero in exact arithmetic: below
    ``config.ZERO_GRADIENT_ULPS`` units of roundoff of ``check_scale``, as a
    bias before a batch norm, whose analytic values are then the rounding of
    terms on the check's scale (``tests/test_verdict.py`` shows both sides).

    Examples
    --------
    >>> g32 = np.dtype("float32")
    >>> _default_atol(g32, np.array([3e-8]), np.array([0.0]), 1.0)   # rounding of 1
    1e-05
    >>> _default_atol(g32, np.array([1e-3]), np.array([1e-3]), 1.0)  # small, but real
    1e-08
    """
    own = default_atol(grad_dtype, analytic, numeric)
    fraction = config.DEFAULT_ATOL_FRACTION[_precision(grad_dtype)]
    unit = float(np.finfo(_precision(grad_dtype)).eps)
    if own < fraction * config.ZERO_GRADIENT_ULPS * unit * check_scale:
        return max(own, fraction * check_scale)
    return own


def _max_abs(values: np.ndarray, *, finite_only: bool) -> float:
    """``max(|values|)`` (0 when empty) from the array's min and max: no temporary
    array unless ``finite_only`` and some entry is NaN or inf. Without
    ``finite_only`` a NaN gives NaN, as ``np.abs(values).max()`` does."""
    values = np.asarray(values)
    if values.size == 0:
        return 0.0
    high, low = float(values.max()), float(values.min())
    if finite_only and not (np.isfinite(high) and np.isfinite(low)):
        finite = np.abs(values[np.isfinite(values)])
        return float(finite.max(initial=0.0))
    return float(np.max([0.0, high, -low]))


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
    >>> from gradprobe.differences.stencils import Estimate
    >>> est = Estimate(np.array([1.0, 2.0]), np.array([1e-10, 1e-10]))
    >>> judge(np.array([1.0, 2.02]), est, rtol=1e-5, atol=0.0).failed
    array([False,  True])
    """
    a = np.asarray(analytic, dtype=np.float64)
    abs_error, rel_error, allowance, ratio = entry_metrics(
        a, estimate.value, estimate.error_bar, rtol, atol)
    failed = ratio > 1.0
    kink = np.zeros_like(failed)
    if estimate.left is not None and estimate.right is not None and failed.any():
        at = np.flatnonzero(failed)
        kink[at] = _at_kink(a[at], estimate.left[at], estimate.right[at], allowance[at])
        failed = failed & ~kink
    return Judgement(abs_error, rel_error, allowance, ratio, failed, kink, rtol, atol)


def _at_kink(a: np.ndarray, left: np.ndarray, right: np.ndarray,
             allowance: np.ndarray) -> np.ndarray:
    """Entries whose one-sided derivatives jump and bracket the analytic value."""
    low, high = np.minimum(left, right), np.maximum(left, right)
    with np.errstate(invalid="ignore"):  # a non-finite side is never a kink (masked below)
        jump = high - low
        significant = jump > np.maximum(
            2.0 * allowance, config.KINK_MIN_JUMP * np.maximum(np.abs(low), np.abs(high)))
        between = (a >= low - allowance) & (a <= high + allowance)
    return significant & between & np.isfinite(a) & np.isfinite(low) & np.isfinite(high)


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


def _wide(analytic: np.ndarray, value: np.ndarray, bar: np.ndarray, rtol: float,
          atol: float, factor: float, floor: np.ndarray | None = None) -> np.ndarray:
    """Entries whose error bar exceeds ``factor`` times their tolerance (or is NaN),
    the tolerance raised to ``floor`` per entry where given; computed
    ``config.VERDICT_CHUNK`` entries at a time."""
    out = np.empty(analytic.size, dtype=bool)
    for start in range(0, analytic.size, config.VERDICT_CHUNK):
        sl = slice(start, start + config.VERDICT_CHUNK)
        allowed = tolerance(analytic[sl], value[sl], rtol, atol)
        if floor is not None:
            allowed = np.maximum(allowed, np.nan_to_num(floor[sl], nan=0.0))
        allowed = factor * allowed
        with np.errstate(invalid="ignore"):
            out[sl] = ~(bar[sl] <= allowed) & np.isfinite(analytic[sl])
    return out


def gradient_scale(grads: "Iterable[np.ndarray]") -> float:
    """The largest finite gradient entry over every parameter of a check (0 if none).

    Examples
    --------
    >>> gradient_scale([np.zeros(3), np.array([0.5, -2.0, np.nan])])
    2.0
    """
    return max((_max_abs(g, finite_only=True) for g in grads), default=0.0)


def _sides_at(estimate: Estimate, positions: np.ndarray
              ) -> tuple[np.ndarray | None, np.ndarray | None]:
    """One-sided derivatives of ``estimate`` at ``positions`` (None where it has none)."""
    def at(side: np.ndarray | None) -> np.ndarray | None:
        if side is None:
            return None
        if not isinstance(side, np.ndarray):   # e.g. OwnedSides: read, not made dense
            return np.asarray(side[positions], dtype=np.float64)
        return np.asarray(side, dtype=np.float64)[positions]
    return at(estimate.left), at(estimate.right)


def _replace(target: np.ndarray | None, at: np.ndarray, source: np.ndarray | None,
             size: int) -> np.ndarray | None:
    """``target`` (NaN when None, as ``size`` entries) with ``target[at] = source``;
    ``target`` unchanged when ``source`` is None."""
    if source is None:
        return target
    out = np.full(size, np.nan) if target is None else target.copy()
    out[at] = source
    return out


def _writeable(values: np.ndarray) -> np.ndarray:
    """``values`` itself when it may be written, else a copy."""
    return values if values.flags.writeable else values.copy()


def compare_param(name: str, shape: tuple[int, ...], dtype: np.dtype, entries: np.ndarray,
                  grad: np.ndarray, estimate: Estimate, *, rtol: float | None,
                  atol: float | None,
                  refine: Callable[[np.ndarray], Estimate] | None = None,
                  kink_probe: Callable[..., tuple[np.ndarray, np.ndarray]] | None = None,
                  copy_grad: bool = True, confirm_unresolved: bool = False,
                  gradient_scale: float = 0.0, rounding_level: bool = False) -> ParamReport:
    """Judge one parameter and wrap the result in a :class:`ParamReport`.

    Parameters
    ----------
    name, shape, dtype
        The parameter's name, shape and (user) dtype.
    entries : ndarray of int64 or None
        Flat indices of the checked entries (sorted and unique); None means
        every entry (a full check, without an index array).
    grad : ndarray
        The user's whole gradient array for this parameter.
    estimate : Estimate
        Numerical derivatives at ``entries``. The report keeps its value and
        error-bar arrays (no copy when they are float64 and writeable), and
        refined entries are written into them.
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
    copy_grad : bool
        False when ``grad`` belongs to the check (e.g. computed by the model's
        own backward pass): a float64 ``grad`` is then kept by the report
        as it is instead of copied. The user's gradients are always copied.
    confirm_unresolved : bool
        Also re-estimate with ``refine`` the entries whose error bar is wider
        than ``config.CONFIRM_WIDE_FACTOR`` times their tolerance (``refine``
        then chooses its steps per entry), and report the entries left with a
        bar more than ``config.UNRESOLVED_FACTOR`` times their tolerance as
        unresolved (the check is then inconclusive).
    gradient_scale : float
        The largest gradient entry of the whole check (:func:`gradient_scale`).
        Whether an entry is resolved is judged against a tolerance of at least
        ``DEFAULT_ATOL_FRACTION`` times it: a parameter whose gradient is zero
        (one ``f`` does not use, or that cancels) has no scale of its own, and
        its estimates, at the rounding floor, are as resolved as they can be.
    rounding_level : bool
        The measured noise of ``f`` is at the rounding level of its evaluation
        dtype (not a noisy ``f``): an entry whose bar is then made of rounding
        (``estimate.error_bar - estimate.truncation``) is as resolved as any
        step allows, and is not reported unresolved for it. A noisy ``f`` (noise
        far above rounding) leaves such entries unresolved: the check could not
        have seen an error of that size.
    """
    flat = grad.reshape(-1)
    full = entries is None or (
        entries.size == flat.size and entries.size > 0 and entries[0] == 0
        and entries[-1] == flat.size - 1)  # select_entries gives sorted unique entries
    analytic = (flat if full else flat[entries]).astype(np.float64, copy=copy_grad or not full)
    value = np.asarray(estimate.value, dtype=np.float64)
    bar = np.asarray(estimate.error_bar, dtype=np.float64)
    if bar.shape != value.shape:
        bar = np.broadcast_to(bar, value.shape).copy()
    rtol_p = rtol if rtol is not None else default_rtol(grad.dtype)
    atol_p = atol if atol is not None else _default_atol(grad.dtype, analytic, value,
                                                         float(gradient_scale))
    # The verdict is entrywise: one pass gives the failing entries, and every
    # later step (kinks, refinement, kink probes) works on those entries only.
    failed, summary = first_pass(analytic, value, bar, rtol_p, atol_p)
    kink = np.zeros_like(failed)
    suspects = np.flatnonzero(failed)
    # the tolerance an entry must resolve is at least a fraction of the check's
    # largest gradient entry (a parameter whose gradient is 0 has no scale of its own)
    floor = max(atol_p, config.DEFAULT_ATOL_FRACTION[_precision(grad.dtype)] *
                float(gradient_scale))
    if confirm_unresolved:
        # a pass must not rest on a bar wider than the error it has to detect
        wide = _wide(analytic, value, bar, rtol_p, floor, config.CONFIRM_WIDE_FACTOR)
        suspects = np.flatnonzero(failed | wide)
    refined = 0
    truncation = None
    if suspects.size:
        left, right = _sides_at(estimate, suspects)
        steps = None if estimate.step is None else \
            np.asarray(estimate.step, dtype=np.float64)[suspects].copy()
        truncation = None if estimate.truncation is None else \
            np.asarray(estimate.truncation, dtype=np.float64)[suspects].copy()
        _, _, allowance, ratio = entry_metrics(analytic[suspects], value[suspects],
                                               bar[suspects], rtol_p, atol_p)
        if left is not None and right is not None:
            # only failing entries can be kinks (a wide passing one is merely unsure)
            kink[suspects] = failed[suspects] & _at_kink(analytic[suspects], left, right,
                                                         allowance)
            failed[suspects] &= ~kink[suspects]
        if refine is not None:
            # Kink candidates are re-estimated too: one rejected later by the kink
            # probe must not fail on a less accurate estimate than other failures.
            order = np.argsort(-ratio, kind="stable")[:config.CONFIRM_LIMIT]
            positions = suspects[order]
            better = refine(positions)
            value, bar = _writeable(value), _writeable(bar)
            value[positions] = better.value
            bar[positions] = better.error_bar
            left = _replace(left, order, better.left, suspects.size)
            right = _replace(right, order, better.right, suspects.size)
            steps = _replace(steps, order, better.step, suspects.size)
            if truncation is not None:  # NaN where the better estimate does not say
                truncation[order] = np.nan if better.truncation is None else better.truncation
            _, _, allow_r, ratio_r = entry_metrics(analytic[positions], value[positions],
                                                   bar[positions], rtol_p, atol_p)
            fail_r = ratio_r > 1.0
            kink_r = np.zeros_like(fail_r)
            if left is not None and right is not None and fail_r.any():
                kink_r = fail_r & _at_kink(analytic[positions], left[order], right[order],
                                           allow_r)
            failed[positions] = fail_r & ~kink_r
            kink[positions] = kink_r
            refined = int(positions.size)
        at_kink = kink[suspects]
        if kink_probe is not None and at_kink.any():
            # Keep only the kink candidates whose jump survives a smaller step.
            positions = suspects[at_kink]
            if steps is None:
                probe_left, probe_right = kink_probe(positions)
            else:  # from the step the confirmation chose for each entry
                probe_left, probe_right = kink_probe(positions, steps[at_kink])
            allowance = entry_metrics(analytic[positions], value[positions], bar[positions],
                                      rtol_p, atol_p)[2]
            jump_before = np.abs(right[at_kink] - left[at_kink])
            kept = np.abs(probe_right - probe_left) >= config.KINK_JUMP_KEPT * jump_before
            confirmed = kept & _at_kink(analytic[positions], probe_left, probe_right,
                                        allowance)
            kink[positions[~confirmed]] = False
            failed[positions[~confirmed]] = True
        # kinks and re-estimated entries change the summary of the first pass
        summary = error_summary(analytic, value, bar, rtol_p, atol_p, kink)
    unresolved = None
    if confirm_unresolved:
        rounding = None
        if rounding_level and estimate.truncation is not None:
            trunc = np.asarray(estimate.truncation, dtype=np.float64)
            if suspects.size and truncation is not None:
                trunc = trunc.copy()
                trunc[suspects] = truncation
            rounding = bar - trunc  # NaN (unknown) counts as no rounding floor
        unresolved = _wide(analytic, value, bar, rtol_p, floor, config.UNRESOLVED_FACTOR,
                           rounding) & ~failed & ~kink
    # abs/rel error and ratio per entry are not kept: the report recomputes them
    # from analytic, numeric and error bar when asked (see ParamReport).
    return ParamReport(
        name=name, shape=tuple(shape), dtype=str(np.dtype(dtype)),
        flat_indices=None if full else entries,
        analytic_flat=analytic, numeric_flat=value, error_bar_flat=bar,
        abs_error_flat=None, rel_error_flat=None, ratio_flat=None,
        failed_mask=failed, kink_mask=kink, rtol=rtol_p, atol=atol_p, full=full,
        refined=refined, summary=summary, unresolved_mask=unresolved)
