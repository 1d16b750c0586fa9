"""W5: start-up costs, each measured in a fresh Python process.

* ``import gradprobe`` (and whether it imports Numba: it should not);
* ``check_model`` on ``Dense(256, 256)`` (MSE, batch 64): on the default
  kernels (the C twin when built: compiled at install) and on the Numba
  kernels (``backend="numba"``, the path without a compiler);
* the first ``gp.check`` of a small ``numba.njit`` loss, timed *after* ``f``'s
  own compile (its first call, shown apart), for an ``f`` declared with and
  without ``cache=True``; and the same check forced to compile the Numba
  engine's kernel (``config.NUMBA_COMPILE_PAYOFF_SECONDS = 0``), which is what
  a large first check pays once per layout of argument types;
* the first check of a plain NumPy loss on the Python engine, for reference.

Every case runs "cold" (an empty ``NUMBA_CACHE_DIR``, new for each process)
and "warm" (the cache a previous process left), three processes each; the
table gives the median and the minimum. ``NUMBA_CACHE_DIR`` points every
process at a private directory, so the user's own cache is left alone.
"""
from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap

import pytest

TITLE = "W5: start-up in a fresh process (seconds, median (min) of 3 processes)"
COLUMNS = ("what", "cache", "import gradprobe", "f compile", "first check",
           "second check", "process total", "backend")
ROUNDS = 3

SCRIPT = textwrap.dedent('''
    import json, sys, time
    begin = time.perf_counter()
    import gradprobe as gp
    t_import = time.perf_counter() - begin
    numba_on_import = "numba" in sys.modules
    import numpy as np
    mode = sys.argv[1]
    rng = np.random.default_rng(0)
    t_f = 0.0
    if mode.startswith("model"):
        from gradprobe.nn import Sequential, Dense, MSE
        model = Sequential([Dense(256, 256, seed=0)], loss=MSE())
        X, T = rng.standard_normal((64, 256)), rng.standard_normal((64, 256))
        backend = "numba" if mode == "model_numba" else "auto"

        def first():
            return gp.check_model(model, X, T, backend=backend)
    else:
        W, b = rng.standard_normal(20), rng.standard_normal(1)
        X, y = rng.standard_normal((32, 20)), rng.standard_normal(32)
        if mode == "numpy":
            def loss(W, b, X, y):
                d = X @ W + b[0] - y
                return 0.5 * float(d @ d) / X.shape[0]
        else:
            import numba

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

            start = time.perf_counter()
            loss(W, b, X, y)  # f's own compile (or cache load), apart from the check
            t_f = time.perf_counter() - start
            if mode == "njit_compile":
                gp.config.NUMBA_COMPILE_PAYOFF_SECONDS = 0.0
        r = (X @ W + b[0] - y) / 32
        grads = (X.T @ r, np.array([r.sum()]))

        def first():
            return gp.check(loss, (W, b), grads, args=(X, y))
    start = time.perf_counter()
    report = first()
    t_first = time.perf_counter() - start
    start = time.perf_counter()
    first()
    t_second = time.perf_counter() - start
    assert report.passed, str(report)
    print(json.dumps({"import": t_import, "numba_on_import": numba_on_import, "f": t_f,
                      "first": t_first, "second": t_second,
                      "total": time.perf_counter() - begin, "backend": report.backend}))
''')

#: (label, script mode)
CASES = [
    ("check_model Dense(256, 256), default kernels", "model"),
    ("check_model Dense(256, 256), backend='numba'", "model_numba"),
    ("njit f (no cache), first check", "njit"),
    ("njit f (cache=True), first check", "njit_cached"),
    ("njit f, the engine's kernel compiled", "njit_compile"),
    ("NumPy f, Python engine", "numpy"),
]


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
                          text=True, check=True, timeout=900)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["stderr"] = done.stderr
    return result


def _summary(results, key):
    values = [r[key] for r in results]
    return f"{statistics.median(values):.3g} ({min(values):.3g})"


def _rows(bench_table, label, cache, results):
    tab = bench_table(TITLE, COLUMNS)
    njit = results[0]["f"] > 0
    tab.add(label, cache, _summary(results, "import"), _summary(results, "f") if njit else "-",
            _summary(results, "first"), _summary(results, "second"),
            _summary(results, "total"), results[0]["backend"])


@pytest.mark.benchmark(group="W5 import time")
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
    tab.add("import gradprobe (median of 5)", "-", f"{statistics.median(times[-5:]):.3g}",
            "-", "-", "-", "-", "-")
    tab.note(f"import gradprobe imports numba: {'yes' if loads_numba else 'no'} (the "
             "Numba engine is imported when f is a numba dispatcher)")
    assert not loads_numba


@pytest.mark.benchmark(group="W5 first check")
@pytest.mark.parametrize("label,mode", CASES, ids=[mode for _, mode in CASES])
def test_w5_first_check_cold_then_warm(benchmark, bench_table, script, tmp_path, label, mode):
    """Three fresh processes on empty caches, then three on the cache they leave."""
    cold, warm = [], []
    warm_dir = tmp_path / "warm_cache"

    def run_cold():
        for _ in range(ROUNDS):
            with tempfile.TemporaryDirectory() as empty:
                cold.append(_run(script, mode, empty))

    benchmark.pedantic(run_cold, rounds=1, iterations=1, warmup_rounds=0)
    _run(script, mode, warm_dir)  # fills the cache
    for _ in range(ROUNDS):
        warm.append(_run(script, mode, warm_dir))
    _rows(bench_table, label, "cold", cold)
    _rows(bench_table, label, "warm", warm)
    tab = bench_table(TITLE, COLUMNS)
    if mode == "model":
        tab.note("'f compile' is f's first call, made before the check; 'first check' "
                 "is timed after it. A small njit check on a cold cache runs f through "
                 "its dispatcher instead of compiling the engine's kernel (the row "
                 "'the engine's kernel compiled' shows what a large first check pays once)")
        tab.note(f"load while measuring: {os.getloadavg()[0]:.1f} (1-minute average, "
                 f"{os.cpu_count()} cores)")
    notice = "compiling Numba kernels, first run only"
    assert all(notice not in r["stderr"] for r in warm)
    if mode in ("njit_compile", "model_numba"):
        assert all(r["stderr"].count(notice) == 1 for r in cold)
