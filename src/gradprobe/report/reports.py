"""Check reports: per-parameter results and a JSON dict (the table: :mod:`.table`)."""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .. import config
from .findings import Finding, findings_status


def _index(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(int(flat), shape)) if shape else ()


@dataclass
class ParamReport:
    """The result of checking one parameter.

    Attributes
    ----------
    name : str
        The parameter's name (dict key or ``f``'s argument name).
    shape : tuple of int
    dtype : str
        The parameter's dtype as given by the user.
    checked : int
        Number of entries compared.
    failed : int
        Number of failing entries (kinks excluded).
    max_abs_error, max_rel_error : float
        Largest ``|a - n|`` and ``|a - n| / max(|a|, |n|)`` over checked
        entries that are not kinks.
    worst_index : tuple of int or None
        The entry that is furthest outside (or least inside) its allowance.
    failed_indices : list of tuple of int
        Every failing entry.
    kinks : list of tuple of int
        Entries where ``f`` is not differentiable and the analytic value lies
        between the one-sided derivatives.
    analytic, numeric, error_bar : ndarray
        Values at the checked entries: whole arrays of ``shape`` in full mode,
        1-d arrays aligned with :attr:`indices` otherwise.
    abs_error_flat, rel_error_flat, ratio_flat : ndarray
        Per-entry ``|a - n|``, ``|a - n| / max(|a|, |n|)`` and error/allowance
        ratio. A report built by the verdict does not keep them (on a large
        layer they would be most of its memory): they are recomputed from
        the analytic and numerical values, the error bars and the tolerances
        on access, bit for bit what the verdict computed. The summary numbers
        above come from the verdict's own pass and cost nothing to read.
    diagnosis : str or None
        What kind of bug the failures look like (``None`` when passed).
    refined : int
        Failing entries that were re-estimated with a Richardson difference
        before the verdict.
    rtol, atol : float
        Tolerances used for this parameter.
    resolution : float or None
        For a parameter covered by directional checks (``mode="directional"``
        or ``"auto"``): the smallest error in any one entry that was sure to
        fail a direction, in gradient units. ``None`` when every entry was
        compared (or a sample, with no directions).
    strategy : str or None
        Array-valued checks: how this parameter was differentiated and why
        (``"compressed: 513 groups ..."``, ``"entry by entry: outputs overlap"``).
    findings : list of Finding
        Whole-function results concerning this parameter (structural checks,
        a nondeterministic forward pass); they decide :attr:`status` first.

    Examples
    --------
    >>> import numpy as np, gradprobe as gp
    >>> W = np.arange(6.0).reshape(2, 3)
    >>> grad = 2 * W; grad[1, 2] += 0.5
    >>> r = gp.check(lambda W: np.sum(W ** 2), W, grad).params["W"]
    >>> r.checked, r.failed, r.worst_index, r.failed_indices
    (6, 1, (1, 2), [(1, 2)])
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    flat_indices: np.ndarray | None  # None: every entry (full mode), see _lazy below
    analytic_flat: np.ndarray
    numeric_flat: np.ndarray
    error_bar_flat: np.ndarray
    abs_error_flat: np.ndarray | None
    rel_error_flat: np.ndarray | None
    ratio_flat: np.ndarray | None
    failed_mask: np.ndarray
    kink_mask: np.ndarray
    rtol: float
    atol: float
    full: bool
    refined: int = 0
    diagnosis: str | None = None
    resolution: float | None = None
    #: ``(max_abs_error, max_rel_error, worst position)`` from the verdict's
    #: pass, or None (then derived from the per-entry arrays).
    summary: tuple[float, float, int | None] | None = field(default=None, repr=False)
    #: Passing entries whose error bar stays wider than ``config.UNRESOLVED_FACTOR``
    #: times their tolerance (None: not judged), see :attr:`status`.
    unresolved_mask: np.ndarray | None = None
    strategy: str | None = None
    findings: list[Finding] = field(default_factory=list)

    # -- lazily recomputed per-entry arrays --------------------------------------
    def _recompute(self, key: str) -> np.ndarray:
        if key == "flat_indices":  # None means every entry, in order
            return np.arange(int(np.prod(self.shape, dtype=np.int64)), dtype=np.int64)
        from .metrics import entry_metrics

        metrics = entry_metrics(self.analytic_flat, self.numeric_flat, self.error_bar_flat,
                                self.rtol, self.atol)
        return metrics[{"abs_error_flat": 0, "rel_error_flat": 1, "ratio_flat": 3}[key]]

    def _at(self, mask: np.ndarray) -> np.ndarray:
        """Flat indices of the entries where ``mask`` is set."""
        stored = self.__dict__.get("_flat_indices")
        return np.flatnonzero(mask) if stored is None else stored[mask]

    def _flat_index(self, pos: int) -> int:
        stored = self.__dict__.get("_flat_indices")
        return int(pos) if stored is None else int(stored[pos])

    def _metrics_at(self, positions: np.ndarray) -> tuple[np.ndarray, ...]:
        """``(abs_error, rel_error, ratio)`` at ``positions`` only."""
        if self.__dict__.get("_ratio_flat") is not None:
            return (self.abs_error_flat[positions], self.rel_error_flat[positions],
                    self.ratio_flat[positions])
        from .metrics import entry_metrics

        bar = np.broadcast_to(self.error_bar_flat, self.analytic_flat.shape)
        err, rel, _, ratio = entry_metrics(self.analytic_flat[positions],
                                           self.numeric_flat[positions], bar[positions],
                                           self.rtol, self.atol)
        return err, rel, ratio

    def _top_ratio(self, count: int) -> np.ndarray:
        """Positions of the ``count`` largest ratios (NaN counts as inf; ties in
        order of position), as a stable ``argsort`` of all ratios would give."""
        return self._presented(count)[0]

    def _presented(self, count: int) -> tuple[np.ndarray, float | None]:
        """``(_top_ratio(count), largest shown relative error)`` from one pass over
        the entries (:func:`gradprobe.report.metrics.presentation`: no per-entry
        float arrays), kept for the next call with the same arrays, so that
        ``str(report)`` and ``to_dict()`` read them once."""
        count = max(int(count), config.REPORT_WORST)
        key = (count, self.rtol, self.atol) + tuple(id(getattr(self, k)) for k in (
            "analytic_flat", "numeric_flat", "error_bar_flat", "kink_mask"))
        cached = self.__dict__.get("_presented_cache")
        if cached is None or cached[0] != key:
            if self.__dict__.get("_ratio_flat") is not None:  # stored: read them
                ratio = self.ratio_flat
                top = np.argsort(-np.where(np.isnan(ratio), np.inf, ratio), kind="stable")
                cached = (key, (top[:count], _stored_rel_error(self)))
            else:
                from .metrics import presentation

                cached = (key, presentation(self.analytic_flat, self.numeric_flat,
                                            self.error_bar_flat, self.rtol, self.atol,
                                            self.kink_mask, count))
            self.__dict__["_presented_cache"] = cached
        order, shown = cached[1]
        return order[:max(int(count), 0)], shown

    # -- summary numbers -------------------------------------------------
    @property
    def passed(self) -> bool:
        """True when no entry failed and every entry was resolved to its tolerance."""
        return self.status == "passed"

    @property
    def status(self) -> str:
        """``"failed"`` when a finding failed (``findings``), ``"inconclusive"``
        when a finding is inconclusive (a forward pass that changes between calls:
        failing entries then prove nothing), otherwise ``"failed"`` when an entry
        failed, ``"inconclusive"`` when none failed but some entry's error bar
        stayed wider than its tolerance (:attr:`unresolved`), ``"passed"``."""
        decided = findings_status(self.findings)
        if decided is not None:
            return decided
        if self.failed:
            return "failed"
        unresolved = self.unresolved_mask is not None and bool(self.unresolved_mask.any())
        return "inconclusive" if unresolved else "passed"

    @property
    def unresolved(self) -> list[tuple[int, ...]]:
        """Entries that could not be resolved to the tolerance: no step gave an
        error bar below ``max(atol, rtol * |derivative|)`` (a noisy ``f``)."""
        if self.unresolved_mask is None:
            return []
        return [_index(i, self.shape) for i in self._at(self.unresolved_mask)]

    @property
    def checked(self) -> int:
        stored = self.__dict__.get("_flat_indices")
        return int(np.prod(self.shape, dtype=np.int64)) if stored is None else int(stored.size)

    @property
    def failed(self) -> int:
        return int(np.count_nonzero(self.failed_mask))

    @property
    def _smooth(self) -> np.ndarray:
        return ~self.kink_mask

    @property
    def max_abs_error(self) -> float:
        if self.summary is not None:
            return float(self.summary[0])
        return float(self.abs_error_flat[self._smooth].max(initial=0.0))

    @property
    def max_rel_error(self) -> float:
        if self.summary is not None:
            return float(self.summary[1])
        return float(self.rel_error_flat[self._smooth].max(initial=0.0))

    @property
    def _worst_position(self) -> int | None:
        if self.summary is not None:
            return self.summary[2]
        ratio = np.where(self._smooth, self.ratio_flat, -1.0)
        if ratio.size == 0 or ratio.max() < 0:
            return None
        return int(np.argmax(ratio))

    @property
    def worst_index(self) -> tuple[int, ...] | None:
        pos = self._worst_position
        return None if pos is None else _index(self._flat_index(pos), self.shape)

    @property
    def failed_indices(self) -> list[tuple[int, ...]]:
        return [_index(i, self.shape) for i in self._at(self.failed_mask)]

    @property
    def kinks(self) -> list[tuple[int, ...]]:
        return [_index(i, self.shape) for i in self._at(self.kink_mask)]

    @property
    def indices(self) -> list[tuple[int, ...]]:
        """The checked entries, in the order of the 1-d value arrays."""
        return [_index(i, self.shape) for i in self.flat_indices]

    def _values(self, flat: np.ndarray) -> np.ndarray:
        return flat.reshape(self.shape) if self.full else flat

    @property
    def analytic(self) -> np.ndarray:
        return self._values(self.analytic_flat)

    @property
    def numeric(self) -> np.ndarray:
        return self._values(self.numeric_flat)

    @property
    def error_bar(self) -> np.ndarray:
        return self._values(self.error_bar_flat)

    # -- presentation -----------------------------------------------------
    def worst_entries(self, count: int = config.REPORT_WORST) -> list[dict[str, Any]]:
        """The ``count`` entries with the largest error/allowance ratio."""
        order = self._top_ratio(count)[:max(int(count), 0)]
        abs_error, rel_error, ratio = self._metrics_at(order)
        bar = np.broadcast_to(self.error_bar_flat, self.analytic_flat.shape)
        rows = []
        for k, pos in enumerate(order):
            rows.append({
                "index": list(_index(self._flat_index(pos), self.shape)),
                "analytic": float(self.analytic_flat[pos]),
                "numeric": float(self.numeric_flat[pos]),
                "error_bar": float(bar[pos]),
                "abs_error": float(abs_error[k]),
                "rel_error": float(rel_error[k]),
                "ratio": float(ratio[k]),
                "status": "kink" if self.kink_mask[pos] else
                          ("FAIL" if self.failed_mask[pos] else "ok"),
            })
        return rows

    def to_dict(self, arrays: bool = False) -> dict[str, Any]:
        """JSON-serialisable summary (whole value arrays only with ``arrays=True``)."""
        out: dict[str, Any] = {
            "name": self.name, "shape": list(self.shape), "dtype": self.dtype,
            "passed": self.passed, "status": self.status,
            **_index_list("unresolved", self._at(self.unresolved_mask)
                          if self.unresolved_mask is not None else np.zeros(0, np.int64),
                          self.shape),
            "checked": self.checked, "failed": self.failed,
            "max_abs_error": _json_float(self.max_abs_error),
            "max_rel_error": _json_float(self.max_rel_error),
            "worst_index": None if self.worst_index is None else list(self.worst_index),
            **_index_list("failed_indices", self._at(self.failed_mask), self.shape),
            **_index_list("kinks", self._at(self.kink_mask), self.shape),
            "diagnosis": self.diagnosis, "refined": self.refined, "strategy": self.strategy,
            "findings": [f.kind for f in self.findings],
            "rtol": self.rtol, "atol": self.atol,
            "resolution": None if self.resolution is None else _json_float(self.resolution),
            "worst_entries": [{k: _json_float(v) if isinstance(v, float) else v
                               for k, v in row.items()} for row in self.worst_entries()],
        }
        if arrays:
            out["indices"] = [list(i) for i in self.indices]
            for key in ("analytic", "numeric", "error_bar"):
                out[key] = [_json_float(float(v)) for v in getattr(self, f"{key}_flat")]
        return out


def _index_list(key: str, flat: np.ndarray, shape: tuple[int, ...]) -> dict[str, Any]:
    """``{key: [...]}`` with at most ``config.REPORT_MAX_INDICES`` indices, and
    ``{key}_omitted``: how many more there are (a summary stays small however
    many entries fail)."""
    shown = flat[:config.REPORT_MAX_INDICES]
    return {key: [list(_index(i, shape)) for i in shown],
            f"{key}_omitted": int(flat.size - shown.size)}


# Per-entry arrays a report may leave out (None): recomputed on access.
def _lazy(key: str) -> property:
    slot = f"_{key}"

    def get(self: ParamReport) -> np.ndarray:
        stored = self.__dict__.get(slot)
        return self._recompute(key) if stored is None else stored

    def put(self: ParamReport, value: np.ndarray | None) -> None:
        self.__dict__[slot] = value

    return property(get, put, doc=f"``{key}`` (recomputed when not stored).")


for _key in ("flat_indices", "abs_error_flat", "rel_error_flat", "ratio_flat"):
    setattr(ParamReport, _key, _lazy(_key))


def _stored_rel_error(p: ParamReport) -> float | None:
    """The largest relative error the table shows, from a report's stored arrays
    (see :func:`gradprobe.report.numpy_metrics.presentation`)."""
    rel = p.rel_error_flat
    bar = np.broadcast_to(np.asarray(p.error_bar_flat, dtype=np.float64), rel.shape)
    scale = np.maximum(np.abs(p.analytic_flat), np.abs(p.numeric_flat))
    with np.errstate(invalid="ignore"):
        meaningful = p._smooth & ((scale > np.maximum(p.atol, np.nan_to_num(bar, nan=0.0)))
                                  | ~np.isfinite(rel))
    return float(rel[meaningful].max()) if meaningful.any() else None


def _json_float(value: float) -> float | str:
    """JSON has no inf/nan: spell them as strings."""
    return value if np.isfinite(value) else str(value)


@dataclass
class CheckReport:
    """The result of a gradient check.

    Attributes
    ----------
    passed : bool
        True when every parameter passed.
    params : dict of str to ParamReport
        One report per parameter, in the order of ``params``.
    method, mode, backend : str
        How the numerical gradient was computed.
    evaluations : int
        Loss evaluations spent (base point and noise probe included).
    seconds : float
        Wall time of the check.
    upcast : bool
        True when narrow parameters were evaluated in float64.
    noise : float
        Estimated noise of one evaluation of ``f``.
    loss : float
        ``f`` at the unperturbed point.
    notes : list of str
        Remarks on how the check ran (upcasting, noise measurement, ...).
    strategy : str or None
        What ``mode="auto"`` chose: ``"full"`` or ``"directional+sample"``.
    resolution : float or None
        Directional checks only: the smallest error in any one entry that was
        sure to fail a direction (the largest of the parameters'
        ``ParamReport.resolution``).
    directional : dict or None
        Directional checks only: directions drawn and failed, group tests and
        evaluations spent on detection, localization and entries, parameters
        found to have dense errors (checked entry by entry), and each
        parameter's resolution and RMS gradient entry.
    findings : list of Finding
        Whole-function results (``gradprobe.report.findings``): structural
        checks of a backward pass, a forward pass that is not deterministic.
        Added with :meth:`add_findings`.

    Examples
    --------
    >>> import numpy as np, gradprobe as gp
    >>> report = gp.check(lambda w: np.sum(w ** 2), np.array([1.0, 2.0]), np.array([2.0, 4.0]))
    >>> report.passed, report.params["w"].checked
    (True, 2)
    """

    params: dict[str, ParamReport]
    method: str
    mode: str
    backend: str
    evaluations: int
    seconds: float
    upcast: bool
    noise: float
    loss: float
    notes: list[str] = field(default_factory=list)
    strategy: str | None = None
    resolution: float | None = None
    directional: dict[str, Any] | None = None
    findings: list[Finding] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        """True only when :attr:`status` is ``"passed"``."""
        return self.status == "passed"

    @property
    def status(self) -> str:
        """``"passed"``, ``"failed"`` or ``"inconclusive"``.

        A failed finding makes it ``"failed"``; otherwise an inconclusive
        finding (the forward pass is not deterministic) makes it
        ``"inconclusive"`` whatever the entries say. Without findings it is
        ``"failed"`` when some entry failed and ``"inconclusive"`` when none
        failed but some entry could not be resolved to its tolerance (see
        :attr:`ParamReport.unresolved`).
        """
        decided = findings_status(self.findings)
        if decided is not None:
            return decided
        statuses = {p.status for p in self.params.values()}
        if "failed" in statuses:
            return "failed"
        return "inconclusive" if "inconclusive" in statuses else "passed"

    @property
    def failed(self) -> int:
        """Failing entries over all parameters."""
        return sum(p.failed for p in self.params.values())

    def __bool__(self) -> bool:
        return self.passed

    def add_findings(self, findings: Any) -> None:
        """Add whole-function findings, and to the parameters they name.

        A finding of the same kind about the same parameters as one already
        there is left out (a check that runs once per cotangent finds the
        same problem each time).

        A finding naming no parameter concerns the whole function: every
        parameter gets it.

        Examples
        --------
        >>> import numpy as np, gradprobe as gp
        >>> from gradprobe.report.findings import Finding
        >>> report = gp.check(lambda w: np.sum(w ** 2), np.ones(2), 2 * np.ones(2))
        >>> report.add_findings([Finding("zero-cotangent", "failed", "zero-cotangent: ...",
        ...                              ("w",))])
        >>> report.status, report.params["w"].passed
        ('failed', False)
        """
        for finding in findings:
            if not isinstance(finding, Finding):
                raise TypeError(f"findings must be Finding objects, got "
                                f"{type(finding).__name__}")
            if any(f.kind == finding.kind and f.names == finding.names
                   for f in self.findings):
                continue  # one finding of a kind per parameter set (the first seen)
            self.findings.append(finding)
            names = [n for n in finding.names if n in self.params] or \
                ([] if finding.names else list(self.params))
            for name in names:
                if finding not in self.params[name].findings:
                    self.params[name].findings.append(finding)

    def to_dict(self, arrays: bool = False) -> dict[str, Any]:
        """JSON-serialisable form (``json.dumps(report.to_dict())`` works).

        Parameters
        ----------
        arrays : bool
            Include the analytic/numeric/error-bar value of every checked
            entry (large for big parameters).
        """
        return {
            "passed": self.passed, "status": self.status, "method": self.method,
            "mode": self.mode,
            "backend": self.backend, "evaluations": self.evaluations,
            "seconds": self.seconds, "upcast": self.upcast,
            "noise": _json_float(self.noise), "loss": _json_float(self.loss),
            "notes": list(self.notes), "strategy": self.strategy,
            "resolution": None if self.resolution is None else _json_float(self.resolution),
            "directional": self.directional,
            "findings": [f.to_dict() for f in self.findings],
            "params": {k: p.to_dict(arrays) for k, p in self.params.items()},
        }

    def plot(self, path: str | os.PathLike | None = None) -> dict[str, Any]:
        """Relative-error heatmaps of every parameter of rank >= 2 (full mode).

        Needs matplotlib (optional: ``pip install gradprobe[plot]``). Failing
        entries are crossed, kinks circled, ``rtol`` marked on the colour bar.

        Parameters
        ----------
        path : str or path-like, optional
            A directory: write ``<parameter>.png`` files there.

        Returns
        -------
        dict
            Parameter name -> matplotlib ``Figure``, or -> the written path.

        Examples
        --------
        >>> import numpy as np, gradprobe as gp
        >>> W = np.ones((3, 4)); g = 2 * W; g[1] *= 1.1
        >>> figures = gp.check(lambda W: np.sum(W ** 2), W, g).plot()
        >>> list(figures)
        ['W']
        """
        from .plotting import plot_report

        return plot_report(self, path)

    def __str__(self) -> str:
        from .table import render

        return render(self)

    def __repr__(self) -> str:
        status = {"passed": "passed", "failed": f"FAILED ({self.failed} entries"
                  + "".join(f", {f.kind}" for f in self.findings) + ")",
                  "inconclusive": "inconclusive"}[self.status]
        return (f"<CheckReport {status}: {len(self.params)} parameters, method={self.method}, "
                f"mode={self.mode}, backend={self.backend}>")
