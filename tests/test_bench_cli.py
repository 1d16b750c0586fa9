"""``python -m gradprobe bench`` and the ``gradprobe`` console script."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from gradprobe.integrations import bench

from gradprobe.integrations import cli


def test_bench_small_prints_the_table(capsys):
    assert cli.main(["bench", "--size", "48"]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0].split() == ["case", "entries", "seconds", "ratio", "result"]
    assert "Dense(48, 48)" in out and "2,352" in out  # 48*48 + 48 entries
    assert "seed-style loop" in out
    assert "Numba engine" in out and "bit-identical" in out
    assert "FAILED" not in out and "DIFFER" not in out


def test_seed_loop_is_a_finite_difference_loop():
    W, b = np.ones((6, 5)), np.zeros(5)
    X, T = np.ones((3, 6)), np.zeros((3, 5))
    assert 0 < bench.seed_loop_seconds(W, b, X, T, 1000) < 1  # capped at W.size entries


def test_console_script_exists_and_runs():
    script = shutil.which("gradprobe", path=os.path.dirname(sys.executable))
    assert script is not None
    out = subprocess.run([script, "info"], capture_output=True, text=True, check=True).stdout
    assert "gradprobe" in out
    out = subprocess.run([script, "--help"], capture_output=True, text=True, check=True).stdout
    assert "bench" in out and "demo" in out


@pytest.mark.parametrize("seconds,reference,words", [
    (2.1, 1.0, "2.1x slower"), (1.0, 2.1, "2.1x faster"),
    (1.3, 1.0, "1.3x slower"), (1.0, 1.3, "1.3x faster"),
    (0.85, 1.0, "1.2x faster"),   # the engine that printed "0.85x slower"
    (665.3, 0.01, "66,530x slower"), (0.01, 665.3, "66,530x faster"),
    (1.0, 1.0, "same speed"),
])
def test_ratios_are_worded_the_right_way_round(seconds, reference, words):
    assert bench.relative_speed(seconds, reference) == words


def test_rounds_alternate_the_cases():
    calls = []
    seconds, results = bench.interleaved(
        [("a", lambda: calls.append("a") or 1), ("b", lambda: calls.append("b") or 2),
         ("c", lambda: calls.append("c") or 3)], rounds=4)
    assert calls == list("abc" "cba" "abc" "cba")
    assert {k: len(v) for k, v in seconds.items()} == {"a": 4, "b": 4, "c": 4}
    assert results == {"a": 1, "b": 2, "c": 3}
    assert bench.summary([0.3, 0.1, 0.2, 0.4]) == "0.1 (median 0.25)"


def test_bench_says_when_it_compiles_before_it_does(capsys, monkeypatch):
    events = []
    real = bench._timed

    def timed(fn):
        events.append("timed")
        return real(fn)

    monkeypatch.setattr(bench, "_timed", timed)
    bench.run(size=16, njit=True, say=lambda line: events.append(line), rounds=1)
    compiling = [i for i, e in enumerate(events) if e.startswith("compiling")]
    # gradprobe.nn compiles only on the Numba kernels; the C kernels were compiled at install
    from gradprobe.nn.backends import default_kernels
    assert len(compiling) == (2 if default_kernels().name == "numba" else 1)
    assert any(e.startswith("gradprobe.nn runs on the C kernels") for e in events) == \
        (default_kernels().name != "numba")
    assert all(events[i + 1] == "timed" for i in compiling)  # announced, then compiled
    assert cli.main(["bench", "--size", "16", "--rounds", "1"]) == 0
    captured = capsys.readouterr()
    assert "compiling" in captured.err and "compiling" not in captured.out
