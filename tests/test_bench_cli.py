"""``python -m gradprobe bench`` and the ``gradprobe`` console script."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np

from gradprobe import bench, cli


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
