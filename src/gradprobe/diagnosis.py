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
``mismatch``      none of the above.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from . import config
from .report import ParamReport


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


def _localized(report: ParamReport) -> str:
    """Which entries, rows or columns hold the failures."""
    failed = report.failed_indices
    if len(report.shape) == 2 and report.full and len(failed) > 1:
        rows = sorted({i for i, _ in failed})
        cols = sorted({j for _, j in failed})
        if len(rows) == 1:
            return f"localized: row {rows[0]} ({len(failed)} of {report.shape[1]} entries)"
        if len(cols) == 1:
            return f"localized: column {cols[0]} ({len(failed)} of {report.shape[0]} entries)"
    shown = ", ".join(str(i) for i in failed[:5])
    more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
    noun = "entry" if len(failed) == 1 else "entries"
    return f"localized: {len(failed)} {noun} of {report.checked} wrong: {shown}{more}"


def diagnose(report: ParamReport, others: Iterable[ParamReport] = ()) -> str | None:
    """Diagnose one failed parameter (``None`` when it passed).

    Parameters
    ----------
    report : ParamReport
        The parameter to diagnose.
    others : iterable of ParamReport
        The other parameters of the same check (to recognise swaps).

    Examples
    --------
    >>> import numpy as np, gradprobe as gp
    >>> w = np.array([1.0, -2.0, 3.0])
    >>> r = gp.check(lambda w: np.sum(w ** 2), w, 4 * w)   # should be 2 * w
    >>> r.params["w"].diagnosis.split(":")[0]
    'scaled'
    """
    if report.passed:
        return None
    a, n = report.analytic_flat, report.numeric_flat
    if not np.all(np.isfinite(a)):
        bad = report.flat_indices[~np.isfinite(a)]
        first = tuple(int(i) for i in np.unravel_index(int(bad[0]), report.shape))
        return f"nonfinite: {bad.size} entries of the analytic gradient are NaN/inf, first at {first}"
    scale = float(np.max(np.abs(n), initial=0.0))
    if scale > 0 and np.all(np.abs(a) <= config.DIAGNOSIS_FIT * scale * 1e-3):
        return "zero: the analytic gradient is zero but the numerical one is not (never written?)"
    noisy = report.error_bar_flat > 0.5 * np.maximum(np.abs(n), np.abs(a))
    if np.count_nonzero(noisy & report.failed_mask) == 0 and \
            np.count_nonzero(noisy) > 0.5 * noisy.size and scale > 0:
        return ("noisy: the numerical estimates are too uncertain to judge; try "
                "method='richardson' or a larger eps")
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


def diagnose_all(reports: dict[str, ParamReport]) -> None:
    """Set :attr:`ParamReport.diagnosis` on every report of one check."""
    for report in reports.values():
        report.diagnosis = diagnose(report, reports.values())
