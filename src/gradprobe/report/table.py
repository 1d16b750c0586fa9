"""The text form of a report: a header, a table of parameters, the worst entries.

``str(report)`` never prints a whole matrix: one row per parameter, then the
few worst entries with their analytic and numerical values, error bars and
any diagnosis.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from .. import config

if TYPE_CHECKING:
    from .reports import CheckReport, ParamReport


def _fmt(value: float) -> str:
    if value is None:
        return "-"
    if not np.isfinite(value):
        return str(value)
    return f"{value:.{config.REPORT_DIGITS}g}"


def _entry(name: str, index: tuple[int, ...]) -> str:
    return f"{name}[{', '.join(map(str, index))}]" if index else name


def _directional_lines(summary: dict[str, Any]) -> list[str]:
    """What the directional checks did and how small an error they could see."""
    ev = summary["evaluations"]
    failed = summary["failed"]
    named = sum(summary["localized"].values())
    lines = [
        f"directional: {summary['directions']} random directions through "
        f"{summary['entries']:,} entries, {failed} failed"
        + (f"; localization: {summary['group_tests']:,} group tests, named "
           f"{named:,} {'entry' if named == 1 else 'entries'}" if failed else "")
        + f" (evaluations: {ev['setup']:,} set-up, {ev['directions']:,} directions, "
          f"{ev['localization']:,} localization, {ev['entries']:,} entries)"]
    if summary["dense"]:
        lines.append(f"dense errors in {', '.join(summary['dense'])}: checked entry by entry")
    parts = []
    for name, res in summary["resolution"].items():
        absolute = float(res["absolute"])  # "inf" is spelled as a string for JSON
        rel = absolute / res["rms"] if res["rms"] > 0 else float("inf")
        parts.append(f"{name} {_fmt(absolute)}"
                     + (f" ({_fmt(100 * rel)} % of its RMS gradient entry)"
                        if np.isfinite(rel) else ""))
    if parts:
        lines.append("resolution: an error in one entry larger than this fails a direction: "
                     + "; ".join(parts))
    return lines


def _shown_rel_error(p: ParamReport) -> str:
    """The table's "max rel err": over entries where the analytic or the numeric
    value is larger than ``atol`` and the error bar. An entry that is zero on
    both sides up to those (a gradient that is exactly 0, its estimate rounding
    noise) has no meaningful relative error; when every entry is like that, "-".
    From the report's one presentation pass (no full-size temporaries), which
    the worst entries below share."""
    best = p._presented(config.REPORT_WORST)[1]
    return "-" if best is None else _fmt(best)


def render(report: CheckReport) -> str:
    """The text form of a report: a header, a table, the worst entries."""
    unresolved = sum(int(p.unresolved_mask.sum()) for p in report.params.values()
                     if p.unresolved_mask is not None)
    status = {"passed": "PASSED", "failed": f"FAILED: {report.failed} entries",
              "inconclusive": f"INCONCLUSIVE: {unresolved} entries could not "
              "be resolved to the tolerance"}[report.status]
    deciding = [f.kind for f in report.findings if f.status == report.status]
    if deciding:  # whole-function findings decide the verdict: name them first
        kinds = ", ".join(dict.fromkeys(deciding))
        status = f"{report.status.upper()}: {kinds}" + (
            f"; {report.failed} entries failed" if report.failed else "")
    mode = report.mode if report.strategy is None else f"{report.mode}: {report.strategy}"
    header = (f"gradprobe check {status}  (method={report.method}, mode={mode}, "
              f"backend={report.backend}, {report.evaluations:,} evaluations, "
              f"{report.seconds:.3g} s)")
    columns = ["parameter", "shape", "dtype", "checked", "failed", "kinks",
               "max abs err", "max rel err", "worst index", "analytic", "numeric"]
    rows = []
    for p in report.params.values():
        pos = p._worst_position
        rows.append([
            p.name, str(p.shape), p.dtype, f"{p.checked:,}", f"{p.failed:,}", str(len(p.kinks)),
            _fmt(p.max_abs_error), _shown_rel_error(p),
            "-" if p.worst_index is None else str(p.worst_index),
            "-" if pos is None else _fmt(float(p.analytic_flat[pos])),
            "-" if pos is None else _fmt(float(p.numeric_flat[pos])),
        ])
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    numeric_cols = {3, 4, 5, 6, 7}

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in numeric_cols else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    lines = [header, line(columns)]
    for p, r in zip(report.params.values(), rows):
        lines.append(line(r))
        if p.diagnosis:  # right under the parameter's row
            lines.append(f"  diagnosis: {p.diagnosis}")
    for finding in report.findings:
        lines.append(f"{finding.status}: {finding.message}")
    if report.directional:
        lines += _directional_lines(report.directional)
    worst = []
    for p in report.params.values():
        for row in p.worst_entries(config.REPORT_WORST):
            if row["status"] != "ok":
                worst.append((row["ratio"], p.name, row))
    if worst:
        worst.sort(key=lambda t: -t[0])
        lines.append("worst entries:")
        for _, name, row in worst[:config.REPORT_WORST]:
            lines.append(
                f"  {row['status']:4s} {_entry(name, tuple(row['index']))}: analytic "
                f"{_fmt(row['analytic'])}, numeric {_fmt(row['numeric'])} "
                f"± {_fmt(row['error_bar'])} (abs err {_fmt(row['abs_error'])}, "
                f"rel err {_fmt(row['rel_error'])})")
    for note in report.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)
