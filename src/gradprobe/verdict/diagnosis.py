"""What kind of bug a failing gradient looks like.

Each diagnosis starts with one stable keyword, then details:

``nonfinite``     the analytic gradient holds NaN or inf;
``zero``          the analytic gradient is zero where the numerical is not;
``sign-flipped``  analytic = -numeric;
``scaled``        analytic = c * numeric for one factor c (with a guess);
``transposed``    analytic = numeric.T;
``swapped``       analytic matches another parameter's numerical gradient;
``localized``     only some entries, rows or columns are wrong;
``noisy``         the numerical estimate is too uncertain to judge;
``nondeterministic`` a callable ``grads`` gave different values on two calls;
``mismatch``      none of the above.

A *passing* parameter gets a diagnosis only when the check could not have
seen small errors because ``f`` is noisy (``noisy``, with advice).
"""
from __future__ import annotations

from typing import Iterable, Mapping

import numpy as np

from .. import config
from ..report.reports import ParamReport


def _fit(a: np.ndarray, n: np.ndarray) -> float:
    """Relative residual of ``a`` against ``n`` (0 is a perfect match)."""
    denom = max(float(np.linalg.norm(n)), float(np.linalg.norm(a)), np.finfo(float).tiny)
    return float(np.linalg.norm(a - n)) / denom


def _scale_factor(a: np.ndarray, n: np.ndarray) -> tuple[float, float]:
    """Least-squares ``c`` in ``a = c * n`` and the relative residual of that fit."""
    nn = float(n @ n)
    if nn == 0.0:
        return float("nan"), float("inf")
    c = float(a @ n) / nn
    return c, _fit(a, c * n)


def _guess(c: float) -> str:
    """A plain-words guess for a scale factor."""
    for k, text in ((2.0, "a factor 2 too large (derivative of x**2 with the 1/2 of the "
                     "loss dropped?)"),
                    (0.5, "half the true value (a missing factor 2 from a square?)")):
        if abs(c - k) <= config.DIAGNOSIS_FIT * k:
            return text
    if c > 1:
        k = round(c)
        if k >= 3 and abs(c - k) <= config.DIAGNOSIS_FIT * k:
            return f"{k} times too large (missing 1/{k}: an average over a batch of {k}?)"
    elif c > 0:
        k = round(1 / c)
        if k >= 3 and abs(1 / c - k) <= config.DIAGNOSIS_FIT * k:
            return f"{k} times too small (divided by {k} once too often?)"
    return f"off by a factor {c:.4g}"


def _noisy_advice(method: str | None) -> str:
    """What to try when the estimates are swamped by the noise of ``f``."""
    if method == "complex":
        return ("the complex step has no cancellation but cannot average out random "
                "noise: make f deterministic (fix its random seed)")
    if method == "richardson":
        return "try a larger eps, or make f deterministic (fix its random seed)"
    return ("try method='richardson' (its measured truncation error allows larger "
            "steps) or a larger eps, or make f deterministic (fix its random seed)")


def _noisy_pass(report: ParamReport, method: str | None, noise_ulps: float) -> str | None:
    """``noisy`` for a passing parameter whose error bars hide errors of a useful size."""
    if noise_ulps < config.NOISY_MIN_ULPS or report.checked == 0:
        return None
    scale = np.maximum(np.abs(report.analytic_flat), np.abs(report.numeric_flat))
    usable = (scale > 0) & ~report.kink_mask & np.isfinite(report.error_bar_flat)
    if not usable.any():
        return None
    fraction = float(np.median(report.error_bar_flat[usable] / scale[usable]))
    if fraction <= config.NOISY_BAR_FRACTION:
        return None
    return (f"noisy: f's evaluations are noisy ({noise_ulps:.2g} x its rounding), so the "
            f"error bars are a median {100 * fraction:.2g} % of the derivatives and smaller "
            f"errors go unseen; {_noisy_advice(method)}")


def _localized(report: ParamReport) -> str:
    """Which entries, rows or columns hold the failures."""
    failed = report.failed_indices
    # A row or column needs every other entry judged: a full check, or
    # directional checks (which saw every entry at their resolution).
    covered = report.full or report.resolution is not None
    if len(report.shape) == 2 and covered and len(failed) > 1:
        rows = sorted({i for i, _ in failed})
        cols = sorted({j for _, j in failed})
        if len(rows) == 1:
            return f"localized: row {rows[0]} ({len(failed)} of {report.shape[1]} entries)"
        if len(cols) == 1:
            return f"localized: column {cols[0]} ({len(failed)} of {report.shape[0]} entries)"
    shown = ", ".join(str(i) for i in failed[:5])
    more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
    noun = "entry" if len(failed) == 1 else "entries"
    if report.resolution is not None and not report.full:
        size = int(np.prod(report.shape, dtype=np.int64))
        return (f"localized: {len(failed)} {noun} of {size:,} wrong: {shown}{more} (named "
                f"by directional checks; errors above {report.resolution:.3g} elsewhere "
                "would have been seen)")
    return f"localized: {len(failed)} {noun} of {report.checked} wrong: {shown}{more}"


def diagnose(report: ParamReport, others: Iterable[ParamReport] = (), *,
             method: str | None = None, noise_ulps: float | None = None,
             nondeterministic: tuple[float, tuple[int, ...]] | None = None) -> str | None:
    """Diagnose one failed parameter (``None`` when it passed, unless ``f`` is noisy).

    Parameters
    ----------
    report : ParamReport
        The parameter to diagnose.
    others : iterable of ParamReport
        The other parameters of the same check (to recognise swaps).
    method : str, optional
        The difference method (for the advice given with ``noisy``).
    noise_ulps : float, optional
        Measured noise of ``f`` in units of its rounding (``eps * |f|``);
        when given, a passing parameter whose error bars are a sizeable
        fraction of its derivatives is diagnosed ``noisy``.
    nondeterministic : (float, tuple), optional
        Largest difference between two calls of a callable ``grads`` for this
        parameter, and where; a failing parameter is then ``nondeterministic``.

    Examples
    --------
    >>> import numpy as np, gradprobe as gp
    >>> w = np.array([1.0, -2.0, 3.0])
    >>> r = gp.check(lambda w: np.sum(w ** 2), w, 4 * w)   # should be 2 * w
    >>> r.params["w"].diagnosis.split(":")[0]
    'scaled'
    """
    if not report.failed:  # passed, or inconclusive (nothing failed)
        return None if noise_ulps is None else _noisy_pass(report, method, noise_ulps)
    if nondeterministic is not None:
        difference, where = nondeterministic
        return (f"nondeterministic: grads returned different values on two calls "
                f"(largest difference {difference:.3g} at {where}); the check compared the "
                "first call's: remove the randomness from the backward pass (dropout "
                "masks, sampling, unseeded RNG, races) before trusting this verdict")
    a, n = report.analytic_flat, report.numeric_flat
    # Entries named by directional localization were chosen *because* they
    # fail: the fraction failing says nothing about the rest of the parameter.
    named = report.resolution is not None and not report.full
    if not np.all(np.isfinite(a)):
        bad = report.flat_indices[~np.isfinite(a)]
        first = tuple(int(i) for i in np.unravel_index(int(bad[0]), report.shape))
        return f"nonfinite: {bad.size} entries of the analytic gradient are NaN/inf, first at {first}"
    if named:
        return _localized(report)
    scale = float(np.max(np.abs(n), initial=0.0))
    if scale > 0 and np.all(np.abs(a) <= config.DIAGNOSIS_FIT * scale * 1e-3):
        return "zero: the analytic gradient is zero but the numerical one is not (never written?)"
    # Entries whose derivative is (numerically) zero have error bars larger
    # than their value without being noisy: only entries above atol count.
    magnitude = np.maximum(np.abs(n), np.abs(a))
    informative = magnitude > report.atol
    noisy = informative & (report.error_bar_flat > 0.5 * magnitude)
    noisy_f = noise_ulps is None or noise_ulps >= config.NOISY_MIN_ULPS
    if noisy_f and np.count_nonzero(noisy & report.failed_mask) == 0 and \
            np.count_nonzero(noisy) > 0.5 * np.count_nonzero(informative) and scale > 0:
        return ("noisy: the numerical estimates are too uncertain to judge; "
                + _noisy_advice(method))
    fail_fraction = report.failed / max(report.checked, 1)
    if a.size > 1 and fail_fraction > 0.5:
        if _fit(a, -n) <= config.DIAGNOSIS_FIT:
            return "sign-flipped: analytic = -numeric"
        c, residual = _scale_factor(a, n)
        if residual <= config.DIAGNOSIS_FIT and np.isfinite(c) and c > 0:
            return f"scaled: analytic = {c:.4g} x numeric: {_guess(c)}"
        if report.full and len(report.shape) == 2 and report.shape[0] == report.shape[1]:
            if _fit(a.reshape(report.shape).T.ravel(), n) <= config.DIAGNOSIS_FIT:
                return "transposed: analytic = numeric.T"
        for other in others:
            if other is report or other.shape != report.shape or not other.full \
                    or not report.full:
                continue
            if _fit(a, other.numeric_flat) <= config.DIAGNOSIS_FIT:
                return (f"swapped: the gradient given for {report.name!r} matches the "
                        f"numerical gradient of {other.name!r}")
        return (f"mismatch: {report.failed} of {report.checked} entries wrong with no "
                f"simple pattern (max rel err {report.max_rel_error:.3g})")
    return _localized(report)


def diagnose_all(reports: dict[str, ParamReport], *, method: str | None = None,
                 noise_ulps: float | None = None,
                 nondeterministic: Mapping[str, tuple] | None = None) -> None:
    """Set :attr:`ParamReport.diagnosis` on every report of one check.

    The keyword arguments are passed to :func:`diagnose` (``nondeterministic``
    keyed by parameter name).
    """
    nondeterministic = nondeterministic or {}
    for name, report in reports.items():
        report.diagnosis = diagnose(report, reports.values(), method=method,
                                    noise_ulps=noise_ulps,
                                    nondeterministic=nondeterministic.get(name))
