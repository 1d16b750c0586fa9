"""W5: start-up costs, each measured in a fresh Python process.

* ``import gradprobe`` (and whether it imports Numba: it should not);
* the first ``gp.check`` of a small ``numba.njit`` loss in a new process,
  which pays for compiling ``f`` and the Numba engine's kernel, with an
  empty Numba cache ("cold") and with the cache a previous process left
  ("warm"), for an ``f`` declared with and without ``cache=True``;
* the first check of a plain NumPy loss on the Python engine, for reference.

``NUMBA_CACHE_DIR`` points every process at a private cache directory, so
"cold" really is cold and the user's own cache is left alone.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import textwrap
import time

import pytest

TITLE = "W5: start-up in a fresh process (seconds)"
COLUMNS = ("what", "cache", "import gradprobe", "import numba", "first check",
           "second check", "process total")

SCRIPT = textwrap.dedent('''
    import json, sys, time
    start = time.perf_counter()
    import gradprobe as gp
    t_import = time.perf_counter() - start
    numba_on_import = "numba" in sys.modules
    import numpy as np
    mode = sys.argv[1]
    t_numba = 0.0
    if mode != "numpy":
        start = time.perf_counter()
        import numba
        t_numba = time.perf_counter() - start

        @numba.njit(cache=(mode == "njit_cached"))
        def loss(W, b, X, y):
            total = 0.0
            for n in range(X.shape[0]):
                z = b[0]
                for i in range(W.shape[0]):
                    z += X[n, i] * W[i]
                d = z - y[n]
                total += 0.5 * d * d
            return total / X.shape[0]
    else:
        def loss(W, b, X, y):
            d = X @ W + b[0] - y
            return 0.5 * float(d @ d) / X.shape[0]

    rng = np.random.default_rng(0)
    W, b = rng.standard_normal(20), rng.standard_normal(1)
    X, y = rng.standard_normal((32, 20)), rng.standard_normal(32)
    r = (X @ W + b[0] - y) / 32
    grads = (X.T @ r, np.array([r.sum()]))
    start = time.perf_counter()
    first = gp.check(loss, (W, b), grads, args=(X, y))
    t_first = time.perf_counter() - start
    start = time.perf_counter()
    gp.check(loss, (W, b), grads, args=(X, y))
    t_second = time.perf_counter() - start
    assert first.passed, str(first)
    print(json.dumps({"import": t_import, "numba_on_import": numba_on_import,
                      "numba": t_numba, "first": t_first, "second": t_second,
                      "backend": first.backend}))
''')


@pytest.fixture(scope="module")
def script(tmp_path_factory):
    folder = tmp_path_factory.mktemp("w5")
    path = folder / "first_check.py"
    path.write_text(SCRIPT)
    return path


def _run(script, mode, cache_dir):
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    done = subprocess.run([sys.executable, str(script), mode], env=env, capture_output=True,
                          text=True, check=True, timeout=600)
    return json.loads(done.stdout.strip().splitlines()[-1])


def _row(bench_table, what, cache, result, total):
    tab = bench_table(TITLE, COLUMNS)
    tab.add(what, cache, result["import"], result["numba"] or "-", result["first"],
            result["second"], total)


def test_w5_import_time(benchmark, bench_table, script, tmp_path):
    """``import gradprobe`` alone (median of 5 processes)."""
    code = ("import sys, time; s = time.perf_counter(); import gradprobe; "
            "print(time.perf_counter() - s, 'numba' in sys.modules)")
    times, loads_numba = [], False

    def once():
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                             check=True).stdout.split()
        times.append(float(out[0]))
        return out[1] == "True"

    loads_numba = benchmark.pedantic(once, rounds=5, iterations=1, warmup_rounds=1)
    tab = bench_table(TITLE, COLUMNS)
    tab.add("import gradprobe (median of 5)", "-", statistics.median(times[-5:]), "-", "-",
            "-", "-")
    tab.note(f"import gradprobe imports numba: {'yes' if loads_numba else 'no'} (the "
             "Numba engine is imported when f is a numba dispatcher)")
    assert not loads_numba


@pytest.mark.parametrize("mode", ["njit", "njit_cached"])
def test_w5_first_check_cold_then_warm(benchmark, bench_table, script, tmp_path, mode):
    """First check in a new process: empty Numba cache, then the cache it left."""
    cache_dir = tmp_path / "numba_cache"
    results = {}

    def cold():
        start = time.perf_counter()
        results["cold"] = _run(script, mode, cache_dir)
        results["cold_total"] = time.perf_counter() - start

    benchmark.pedantic(cold, rounds=1, iterations=1, warmup_rounds=0)
    start = time.perf_counter()
    results["warm"] = _run(script, mode, cache_dir)
    warm_total = time.perf_counter() - start
    label = f"njit f ({'cache=True' if mode == 'njit_cached' else 'no cache'}), Numba engine"
    _row(bench_table, label, "cold", results["cold"], results["cold_total"])
    _row(bench_table, label, "warm", results["warm"], warm_total)
    assert results["cold"]["backend"] == results["warm"]["backend"] == "numba"


def test_w5_first_check_numpy_python_engine(benchmark, bench_table, script, tmp_path):
    """Reference: a NumPy loss on the Python engine (nothing to compile)."""
    results = {}

    def run():
        start = time.perf_counter()
        results["r"] = _run(script, "numpy", tmp_path / "unused_cache")
        results["total"] = time.perf_counter() - start

    benchmark.pedantic(run, rounds=1, iterations=1, warmup_rounds=0)
    _row(bench_table, "NumPy f, Python engine", "-", results["r"], results["total"])
    assert results["r"]["backend"] == "python"
