"""benchmarks/report_table.py: pytest-benchmark JSON -> markdown."""
from __future__ import annotations

import doctest
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "report_table.py"


def load():
    spec = importlib.util.spec_from_file_location("report_table", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def bench(name, group, median, fullname=None):
    return {"name": name, "fullname": fullname or f"benchmarks/x.py::{name}", "group": group,
            "stats": {"min": median * 0.9, "median": median, "mean": median * 1.01,
                      "stddev": median / 50, "rounds": 7}}


def test_docstring_examples():
    assert doctest.testmod(load()).failed == 0


def test_groups_and_comparison(tmp_path):
    new = {"benchmarks": [bench("test_a[256]", "W1", 0.02), bench("test_b", "W4", 1.5),
                          bench("test_c", "W1", 3.0)]}
    old = {"benchmarks": [bench("test_a[256]", "W1", 0.04), bench("test_b", "W4", 1.0)]}
    (tmp_path / "new.json").write_text(json.dumps(new))
    (tmp_path / "old.json").write_text(json.dumps(old))
    out = subprocess.run([sys.executable, str(SCRIPT), str(tmp_path / "new.json"), "--compare",
                          str(tmp_path / "old.json")], capture_output=True, text=True,
                         check=True).stdout
    lines = out.splitlines()
    assert lines[0] == "### W1" and "### W4" in lines
    w1_rows = [line for line in lines if line.startswith("| test_")][:2]
    assert w1_rows[0] == "| test_a[256] | 0.018 | 0.02 | 0.0202 | 0.0004 | 7 | 0.50x |"
    assert w1_rows[1].endswith("| 7 | - |")  # no baseline for test_c
    assert any(line.startswith("| test_b | 1.35 | 1.5 | ") and line.endswith("| 7 | 1.50x |")
               for line in lines)
    assert lines.index("### W4") > lines.index(w1_rows[1])  # grouped, in first-seen order


def test_a_saved_run_keeps_its_tables_machine_load_and_command(tmp_path):
    """A --benchmark-json run of a workload holds what the docs' benchmark page renders."""
    (tmp_path / "conftest.py").write_text(
        (SCRIPT.parent / "conftest.py").read_text())
    (tmp_path / "test_tiny.py").write_text(
        "def test_tiny(benchmark, bench_table):\n"
        "    benchmark(sum, [1, 2, 3])\n"
        "    t = bench_table('W0 tiny', ('case', 'ratio'))\n"
        "    t.add('sum of three', 2.5)\n"
        "    t.note('measured in the same run')\n")
    out = tmp_path / "run.json"
    subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                    "-p", "no:gradprobe", "--benchmark-only", f"--benchmark-json={out}",
                    str(tmp_path / "test_tiny.py")], cwd=tmp_path, check=True,
                   capture_output=True, text=True)
    saved = json.loads(out.read_text())["gradprobe"]
    assert saved["tables"] == [{"title": "W0 tiny", "columns": ["case", "ratio"],
                                "rows": [["sum of three", "2.5"]],
                                "notes": ["measured in the same run"]}]
    assert "--benchmark-json" in saved["command"] and saved["command"].startswith("python -m pytest")
    assert len(saved["load_average_start"]) == 3 and len(saved["load_average_end"]) == 3
    assert "cores" in saved["machine"]
    page = "\n".join(load().results_markdown(json.loads(out.read_text()), "run.json"))
    assert "#### W0 tiny" in page and "| sum of three | 2.5 |" in page
    assert "* command: `python -m pytest" in page
