"""Turn a pytest-benchmark JSON file into a markdown table (optionally vs a baseline).

Usage::

    python -m pytest benchmarks/ --benchmark-only --benchmark-json=bench.json
    python benchmarks/report_table.py bench.json
    python benchmarks/report_table.py bench.json --compare .benchmarks/<machine>/0001_base.json

One table per benchmark group (or one table when no groups are set), one row
per benchmark: min, median, mean and standard deviation of the timed rounds,
and the number of rounds. With ``--compare``, a column gives the ratio of
this run's median to the baseline's (``> 1`` means slower now) for the
benchmarks present in both files.

>>> data = {"benchmarks": [{"name": "test_a", "group": None,
...          "stats": {"min": 0.5, "median": 0.6, "mean": 0.61, "stddev": 0.01, "rounds": 5}}]}
>>> print("\\n".join(markdown_tables(data)))
| benchmark | min (s) | median (s) | mean (s) | stddev (s) | rounds |
|---|---|---|---|---|---|
| test_a | 0.5 | 0.6 | 0.61 | 0.01 | 5 |
"""
from __future__ import annotations

import argparse
import json
import sys
from typing import Any, Sequence


def _seconds(value: float) -> str:
    return f"{value:.3g}"


def markdown_tables(data: dict[str, Any], baseline: dict[str, Any] | None = None) -> list[str]:
    """Markdown lines: one table per group of ``data["benchmarks"]``.

    >>> new = {"benchmarks": [{"name": "t", "group": "W1", "stats": {"min": 2.0,
    ...        "median": 2.0, "mean": 2.0, "stddev": 0.0, "rounds": 1}}]}
    >>> old = {"benchmarks": [{"name": "t", "group": "W1", "stats": {"min": 1.0,
    ...        "median": 1.0, "mean": 1.0, "stddev": 0.0, "rounds": 1}}]}
    >>> print("\\n".join(markdown_tables(new, old)))
    ### W1
    <BLANKLINE>
    | benchmark | min (s) | median (s) | mean (s) | stddev (s) | rounds | vs baseline (median) |
    |---|---|---|---|---|---|---|
    | t | 2 | 2 | 2 | 0 | 1 | 2.00x |
    """
    before = {}
    if baseline is not None:
        before = {b.get("fullname", b["name"]): b["stats"]["median"]
                  for b in baseline.get("benchmarks", [])}
    groups: dict[str | None, list[dict[str, Any]]] = {}
    for bench in data.get("benchmarks", []):
        groups.setdefault(bench.get("group"), []).append(bench)
    columns = ["benchmark", "min (s)", "median (s)", "mean (s)", "stddev (s)", "rounds"]
    if baseline is not None:
        columns.append("vs baseline (median)")
    lines: list[str] = []
    for group, benches in groups.items():
        if group is not None or len(groups) > 1:
            lines += [f"### {group or 'ungrouped'}", ""]
        lines.append("| " + " | ".join(columns) + " |")
        lines.append("|" + "---|" * len(columns))
        for bench in benches:
            s = bench["stats"]
            cells = [bench["name"], _seconds(s["min"]), _seconds(s["median"]),
                     _seconds(s["mean"]), _seconds(s["stddev"]), str(s["rounds"])]
            if baseline is not None:
                old = before.get(bench.get("fullname", bench["name"]))
                cells.append(f"{s['median'] / old:.2f}x" if old else "-")
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return lines[:-1] if lines else ["(no benchmarks in the file)"]


def _table_lines(table: dict[str, Any]) -> list[str]:
    """Markdown of one results table saved by ``benchmarks/conftest.py``."""
    lines = [f"#### {table['title']}", "", "| " + " | ".join(table["columns"]) + " |",
             "|" + "---|" * len(table["columns"])]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in table["rows"]]
    if table["notes"]:
        lines += [""] + [f"* {note}" for note in table["notes"]]
    return lines + [""]


def results_markdown(data: dict[str, Any], source: str = "") -> list[str]:
    """Markdown of a whole saved run: where and how it ran, its tables, its timings.

    >>> run = {"datetime": "2026-12-02T06:00:00", "commit_info": {"id": "abc1234def", "dirty": False},
    ...        "machine_info": {"cpu": {"brand_raw": "CPU"}}, "benchmarks": [],
    ...        "gradprobe": {"machine": "2 cores (CPU), Python 3.11.7", "command": "python -m pytest benchmarks/",
    ...                      "load_average_start": [0.1, 0.2, 0.3], "load_average_end": [1.0, 0.5, 0.4],
    ...                      "tables": [{"title": "W9", "columns": ["a"], "rows": [["1"]], "notes": []}]}}
    >>> print("\\n".join(results_markdown(run, "run.json")))
    ### run.json
    <BLANKLINE>
    * measured 2026-12-02T06:00:00 at commit abc1234 on 2 cores (CPU), Python 3.11.7
    * command: `python -m pytest benchmarks/`
    * load average (1, 5, 15 min): 0.1 0.2 0.3 at the start, 1 0.5 0.4 at the end
    <BLANKLINE>
    #### W9
    <BLANKLINE>
    | a |
    |---|
    | 1 |
    <BLANKLINE>
    """
    extra = data.get("gradprobe", {})
    commit = data.get("commit_info", {})
    where = extra.get("machine") or data.get("machine_info", {}).get("cpu", {}).get("brand_raw", "?")
    at = f" at commit {commit['id'][:7]}{' (uncommitted changes)' if commit.get('dirty') else ''}" \
        if commit.get("id") else ""
    lines = [f"### {source}" if source else "### benchmark run", "",
             f"* measured {data.get('datetime', '?')}{at} on {where}"]
    if extra.get("command"):
        lines.append(f"* command: `{extra['command']}`")
    if extra.get("load_average_start"):
        start = " ".join(f"{x:.3g}" for x in extra["load_average_start"])
        end = " ".join(f"{x:.3g}" for x in extra.get("load_average_end", []))
        lines.append(f"* load average (1, 5, 15 min): {start} at the start, {end} at the end")
    lines.append("")
    for table in extra.get("tables", []):
        lines += _table_lines(table)
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    """Print the markdown table(s) of a ``--benchmark-json`` file."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("json", help="file written by pytest --benchmark-json=FILE")
    parser.add_argument("--compare", metavar="BASELINE",
                        help="an earlier JSON (--benchmark-json or --benchmark-save) to compare with")
    parser.add_argument("--results", action="store_true",
                        help="also print the run's gradprobe results tables (as the docs show them)")
    args = parser.parse_args(argv)
    with open(args.json, encoding="utf-8") as fh:
        data = json.load(fh)
    if args.results:
        print("\n".join(results_markdown(data, args.json)))
    baseline = None
    if args.compare:
        with open(args.compare, encoding="utf-8") as fh:
            baseline = json.load(fh)
    print("\n".join(markdown_tables(data, baseline)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
