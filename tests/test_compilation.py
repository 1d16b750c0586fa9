"""First runs: what compiles, the notice that says so, the cache probe and warm-up.

The cold/warm cases run in fresh processes with a private ``NUMBA_CACHE_DIR``
(empty at first), so "cold" really is cold and the suite's own cache is left
alone.
"""
from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import textwrap

import numba
import numpy as np
import pytest

from gradprobe import compilation
from gradprobe.integrations.cli import main
from gradprobe.engines.numba import LOOP_NOTE
from gradprobe.nn import c_kernels, kernels

MARK = "--- mark ---"

#: One process: a structured check on the default kernels, a small njit check
#: (default settings), then checks that must compile the engine's kernel.
SCRIPT = textwrap.dedent(f'''
    import json, sys
    import numba, numpy as np
    import gradprobe as gp
    from gradprobe import config
    from gradprobe.nn import Sequential, Dense, Tanh, MSE, kernels

    def mark():
        print({MARK!r}, file=sys.stderr, flush=True)

    out = {{}}
    model = Sequential([Dense(6, 5, seed=0), Tanh(), Dense(5, 3, seed=1)], loss=MSE())
    rng = np.random.default_rng(0)
    X, T = rng.standard_normal((8, 6)), rng.standard_normal((8, 3))
    out["model"] = gp.check_model(model, X, T).backend
    out["numba_nn_compiled"] = any(k.signatures for k in (kernels.matmul, kernels.transpose))
    from gradprobe.report.metrics_kernel import _metrics, error_metrics
    a = np.linspace(1.0, 2.0, 300_000)
    out["verdict_failed"] = int((error_metrics(a, a * (1 + 1e-3), 1e-12, 1e-5, 0.0)[3] > 1).sum())
    out["verdict_compiled"] = bool(_metrics.signatures)
    mark()

    @numba.njit
    def loss(w, x):
        return 0.5 * np.sum((w * x) ** 2)

    @numba.njit
    def matrix_loss(W):
        return np.sum(W ** 4)

    w, x = np.linspace(-1.0, 1.0, 7), np.linspace(0.5, 2.0, 7)
    small = gp.check(loss, w, w * x ** 2, args=(x,))
    python = gp.check(loss, w, w * x ** 2, args=(x,), backend="python")
    out["small_backend"], out["small_notes"] = small.backend, small.notes
    out["same_as_python"] = small.params["w"].numeric.tobytes() == \\
        python.params["w"].numeric.tobytes()
    mark()
    config.NUMBA_COMPILE_PAYOFF_SECONDS = 0.0  # as for a large check: compile
    big = gp.check(loss, w, w * x ** 2, args=(x,))
    W = np.linspace(-1.0, 1.0, 6).reshape(2, 3)
    other = gp.check(matrix_loss, W, 4 * W ** 3)  # another layout: compiles again
    out["big_notes"], out["passed"] = big.notes, big.passed and other.passed and small.passed
    out["same_as_kernel"] = big.params["w"].numeric.tobytes() == \\
        python.params["w"].numeric.tobytes()
    print(json.dumps(out))
''')


def _run(tmp_path, cache_dir):
    script = tmp_path / "first_run.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache_dir))
    done = subprocess.run([sys.executable, str(script)], env=env, capture_output=True,
                          text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1]), done.stderr.split(MARK)


def test_first_run_compiles_only_what_pays_and_says_so_once(tmp_path):
    cache = tmp_path / "numba_cache"
    cold, stderr = _run(tmp_path, cache)
    assert cold["passed"]
    # the structured check on the default kernels compiled nothing
    if c_kernels.available():
        assert cold["model"] == "nn-structured-cffi" and not cold["numba_nn_compiled"]
    assert compilation.NOTICE not in stderr[0]
    # nor did the verdict of 300,000 entries (NumPy until the kernel would pay)
    assert cold["verdict_failed"] == 300_000 and not cold["verdict_compiled"]
    # a small check on a cold cache skips the kernel's compile: the same losses
    assert cold["small_backend"] == "numba" and LOOP_NOTE in cold["small_notes"]
    assert cold["same_as_python"] and compilation.NOTICE not in stderr[1]
    # compiling: the notice, once for two kernels
    assert stderr[2].count(compilation.NOTICE) == 1
    assert LOOP_NOTE not in cold["big_notes"] and cold["same_as_kernel"]

    warm, stderr = _run(tmp_path, cache)  # the cache the first process left
    assert warm["passed"]
    assert LOOP_NOTE not in warm["small_notes"]  # the kernel loads from the cache
    assert warm["same_as_python"] and warm["same_as_kernel"]
    assert all(compilation.NOTICE not in part for part in stderr)


def test_load_cached_never_compiles():
    @numba.njit(cache=False)
    def cube(x):
        return x * x * x

    assert not compilation.load_cached(cube, (numba.float64,))
    assert cube.signatures == []
    assert cube(2.0) == 8.0
    assert compilation.load_cached(cube, (numba.float64,))


def test_only_slow_cached_gradprobe_kernels_are_announced():
    from gradprobe.nn import contraction

    assert compilation.is_slow_kernel(kernels.matmul)
    assert compilation.is_slow_kernel(contraction.contract)
    assert not compilation.is_slow_kernel(kernels.mse_loss)  # serial: well under a second

    @numba.njit(parallel=True, cache=False)
    def users_own(x):
        return x

    assert not compilation.is_slow_kernel(users_own)


def test_announce_writes_once(monkeypatch):
    monkeypatch.setitem(compilation._state, "announced", False)
    stream = io.StringIO()
    assert compilation.announce(stream) and not compilation.announce(stream)
    assert stream.getvalue() == compilation.NOTICE + "\n"


def test_warmup_compiles_every_kernel_and_prints_its_time(capsys):
    assert main(["warmup"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    names = [line.rsplit(None, 2)[0] for line in lines[:-1]]
    for kernel in ("matmul float64", "matmul float32", "contract float64",
                   "entry_differences float64", "finish_mse float64", "verdict metrics",
                   "engine: f(float64 vector)"):
        assert kernel in names
    assert all(line.endswith(" s") for line in lines[:-1])
    assert lines[-1].startswith("total") and f"({len(names)} kernels" in lines[-1]
    f64, f32 = np.dtype(np.float64), np.dtype(np.float32)
    compiled = {sig[0].dtype for sig in kernels.matmul.signatures}
    assert compiled >= {numba.from_dtype(f64), numba.from_dtype(f32)}


def test_repeated_small_checks_compile_once_they_have_paid(monkeypatch):
    """The loop time is counted per layout across checks (a monitor's repeated checks)."""
    from types import SimpleNamespace

    from gradprobe import config
    from gradprobe.engines import numba as engine

    monkeypatch.setattr(config, "NUMBA_COMPILE_PAYOFF_SECONDS", 1.0)
    monkeypatch.setattr(engine, "_LOOP_SECONDS", {})
    problem = SimpleNamespace(loss_seconds=0.1)
    first, second = (SimpleNamespace(attempts=[(True, True, ("layout",))]) for _ in range(2))
    other = SimpleNamespace(attempts=[(True, True, ("another layout",))])
    assert not engine._worth_compiling(problem, first, 4)   # 0.4 s in the loop
    assert not engine._worth_compiling(problem, second, 4)  # 0.8 s: a second check
    assert not engine._worth_compiling(problem, other, 4)   # counted apart
    assert engine._worth_compiling(problem, second, 4)      # 1.2 s > 1 s: compile
    assert engine._worth_compiling(SimpleNamespace(loss_seconds=float("nan")), other, 1)


def test_the_verdict_kernel_runs_when_compiling_pays():
    """With the payoff at 0 (the suite's setting) the kernel itself computes the metrics,
    so tests/test_verdict.py compares the kernel, not NumPy, with the NumPy reference."""
    from gradprobe.report import metrics_kernel as verdict_kernel

    a = np.linspace(-1.0, 1.0, 11)
    verdict_kernel.error_metrics(a, a, np.zeros(11), 1e-5, 0.0)
    assert verdict_kernel._metrics.signatures
