"""Shared benchmark plumbing: a results table printed at the end of the run.

Every workload adds rows with :func:`table` (``table("W2 ...").add(...)``);
``pytest_terminal_summary`` prints each table after pytest-benchmark's own
statistics, so the numbers the README quotes come from one run, side by
side with their references.

Run with ``python -m pytest benchmarks/ --benchmark-only`` (the default
``testpaths`` leave this folder out of the test suite).
"""
from __future__ import annotations

import os
import time
import platform
from dataclasses import dataclass, field

import pytest


@dataclass
class Table:
    """Rows of one workload: a header and formatted cells."""

    title: str
    columns: tuple[str, ...]
    rows: list[tuple[str, ...]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: object) -> None:
        self.rows.append(tuple(_cell(c) for c in cells))

    def note(self, text: str) -> None:
        self.notes.append(text)

    def as_dict(self) -> dict[str, object]:
        """The table as plain data, for the saved JSON of a run."""
        return {"title": self.title, "columns": list(self.columns),
                "rows": [list(r) for r in self.rows], "notes": list(self.notes)}

    def render(self) -> list[str]:
        widths = [max(len(str(x)) for x in col) for col in zip(self.columns, *self.rows)]
        line = "| " + " | ".join(f"{{:{w}s}}" for w in widths) + " |"
        out = [f"### {self.title}", "", line.format(*self.columns),
               "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [line.format(*row) for row in self.rows]
        out += [""] + [f"* {n}" for n in self.notes]
        return out


_TABLES: dict[str, Table] = {}


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1000 else f"{value:.0f}"
    return str(value)


def table(title: str, columns: tuple[str, ...] = ()) -> Table:
    """The table for ``title`` (created on first use with ``columns``)."""
    if title not in _TABLES:
        _TABLES[title] = Table(title, columns)
    return _TABLES[title]


def machine() -> str:
    """One line describing where the numbers were measured."""
    cpu = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as fh:
            names = [ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    return f"{os.cpu_count()} cores ({cpu}), Python {platform.python_version()}"


@pytest.fixture(scope="session")
def bench_table():
    """The :func:`table` factory, as a fixture."""
    return table


_LOAD_AT_START: list[float] = []


def pytest_sessionstart(session):
    _LOAD_AT_START[:] = list(os.getloadavg())


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """Keep the results tables, the machine, its load and the command in the saved JSON.

    ``--benchmark-json=FILE`` (or ``--benchmark-save``) then holds everything the docs'
    benchmark page shows (``benchmarks/report_table.py`` renders it).
    """
    output_json["gradprobe"] = {
        "machine": machine(),
        "command": " ".join(["python -m pytest", *config.invocation_params.args]),
        "load_average_start": _LOAD_AT_START,
        "load_average_end": list(os.getloadavg()),
        "tables": [t.as_dict() for t in _TABLES.values()],
    }


def pytest_terminal_summary(terminalreporter):
    if not _TABLES:
        return
    terminalreporter.section("gradprobe benchmark tables")
    terminalreporter.write_line(f"machine: {machine()}")
    for t in _TABLES.values():
        terminalreporter.write_line("")
        for line in t.render():
            terminalreporter.write_line(line)


@pytest.fixture
def run_once(benchmark):
    """Time ``run()`` once through pytest-benchmark: ``(result, wall seconds)``.

    For the long full checks of W2/W3, where one round is the measurement.
    """
    def once(run):
        start = time.perf_counter()
        result = benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
        return result, time.perf_counter() - start

    return once
