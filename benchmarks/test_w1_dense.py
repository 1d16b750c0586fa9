"""W1: full check of one dense layer, structured vs the references (SPEC section 4).

Run with::

    python -m pytest benchmarks/test_w1_dense.py --benchmark-only

Every case times ``gradprobe.nn.check_model`` (all ``n*n + n`` entries of ``W``
and ``b``, float64, batch 64) with pytest-benchmark and, in the same run:

* the seed-style loop: copy ``W``, perturb one entry by +-h, recompute the
  cost with NumPy (a sample of entries, extrapolated to every entry);
* the generic Python engine, ``gp.check(..., backend="python", mode="sample")``
  on a NumPy closure (a sample, extrapolated);
* the arithmetic bound ``P * B * 6 / GEMM flop/s``, with the GEMM rate of a
  1024 x 1024 @ 1024 x 1024 NumPy matmul measured on this machine.

The same check on the C twin of the kernels (``backend="cffi"``, when the C
kernel is built) is timed in the same run, and its estimates are compared
with the Numba kernels' bit for bit.

Memory: every case also runs the check in a fresh subprocess, once to warm
up and once while a thread samples the resident set every millisecond, and
records the peak growth over the resident set before that check, in MB and
in multiples of the parameter bytes (``config.FULL_CHECK_PEAK_FACTOR`` is the
documented bound); ``spread`` is the slowest timed round over the fastest.

Warm-up: two checks, the first report still alive while the second runs, as
in a loop that keeps the last report. That reaches the process's steady
memory high-water mark before the timed rounds (which also keep the
previous report alive). Without it, the first timed round that holds two
reports touches memory the process never used before. On this VM that
first touch is slow: kernels writing fresh pages took 2-4x longer. The round
then looked 2x slower than the others, and the run's spread was about 2.
After 2 GB touched once, the spread was 1.2-1.3 (/tmp/spread5.py, 2026-12-02).
``GRADPROBE_BENCH_LARGE=1`` adds Dense(8192, 8192) (67M entries, 512 MB of
parameters): one check in a subprocess (no warm-up: its first round), its
time and peak memory.

A 3-layer MLP (256-128-64-10, ReLU, softmax cross-entropy) shows the case
where perturbing the first layer recomputes every later layer. The table is
printed at the end of the run.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import gradprobe as gp
from gradprobe import nn
from gradprobe.nn import c_kernels

BATCH = 64
SIZES = (256, 1024, 4096)
LOSSES = ("mse", "softmax_ce")
#: Entries timed for the seed-style loop (extrapolated to all entries).
SEED_LOOP_ENTRIES = {256: 2000, 1024: 2000, 4096: 100}
#: Entries per parameter sampled for the generic Python engine.
GENERIC_SAMPLES = {256: 200, 1024: 50, 4096: 5}
#: Timed rounds of the structured check.
ROUNDS = {256: 20, 1024: 10, 4096: 3}
#: Step of the reference loops (the seeds' style: one fixed epsilon).
SEED_EPS = 1e-5

TITLE = "W1 dense layer, full check (float64, batch 64; seconds, min of rounds)"
COLUMNS = ("case", "entries", "structured", "spread", "peak MB", "peak / params",
           "seed-style loop", "generic python", "bound", "vs seed loop", "vs generic",
           "/ bound", "structured C", "C / Numba")
#: Sizes of the opt-in large case (``GRADPROBE_BENCH_LARGE=1``).
LARGE_SIZES = (8192,)
_ROWS: list[dict] = []
_PUBLISHED: list[bool] = []


def _best(fn, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


@pytest.fixture(scope="module")
def gemm_flops() -> float:
    """Measured flop/s of a 1024^3 float64 NumPy matmul on this machine."""
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((1024, 1024)), rng.standard_normal((1024, 1024))
    a @ b
    return 2 * 1024 ** 3 / _best(lambda: a @ b)


@pytest.fixture(scope="module", autouse=True)
def w1_table(request):
    """Print the side-by-side table after the last case, unless the shared
    ``bench_table`` plumbing of ``benchmarks/conftest.py`` prints it."""
    yield
    if not _ROWS or any(_PUBLISHED):
        return
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    with capture.global_and_fixture_disabled():
        print("\n".join(format_table(_ROWS)), flush=True)


def _cells(r: dict) -> tuple[str, ...]:
    """One row of the table as text (ratios are reference time / structured time)."""
    generic = f"{r['generic']:.3g}" if r["generic"] else "-"
    vs_generic = f"{r['generic'] / r['structured']:,.0f}x" if r["generic"] else "-"
    seed = f"{r['seed']:.3g}" if r["seed"] else "-"
    vs_seed = f"{r['seed'] / r['structured']:,.0f}x" if r["seed"] else "-"
    bound = f"{r['bound']:.3g}" if r["bound"] else "-"
    over = f"{r['structured'] / r['bound']:.1f}" if r["bound"] else "-"
    c_time = f"{r['c'][0]:.3g}" if r.get("c") else "-"
    c_ratio = f"{r['c'][0] / r['c'][1]:.2f}" if r.get("c") else "-"
    spread = f"{r['spread']:.2f}" if r.get("spread") else "-"
    memory = r.get("memory")
    peak = f"{memory['growth'] / 2 ** 20:,.0f}" if memory else "-"
    ratio = f"{memory['growth'] / memory['param_bytes']:.2f}" if memory else "-"
    return (r["case"], f"{r['entries']:,}", f"{r['structured']:.3g}", spread, peak, ratio,
            seed, generic, bound, vs_seed, vs_generic, over, c_time, c_ratio)


#: Run in a fresh interpreter: one warm-up check of the same layer (kernels
#: compiled and loaded, the first touch of the process's memory), then a
#: second check while a thread samples the resident set every millisecond;
#: prints the peak growth over the resident set before the second check, and
#: its time, as JSON.
_MEMORY_SCRIPT = textwrap.dedent("""
    import gc, json, resource, sys, threading, time
    import numpy as np
    from gradprobe import nn
    sys.path.insert(0, sys.argv[3])
    from test_w1_dense import dense_problem

    def resident():
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()

    n, loss = int(sys.argv[1]), sys.argv[2]
    model, X, T = dense_problem(n, loss)
    grads = model.gradients(X, T)
    if sys.argv[4] == "1":
        nn.check_model(model, X, T, grads)
    gc.collect()
    before = peak = resident()
    done = threading.Event()

    def sample():
        global peak
        while not done.is_set():
            peak = max(peak, resident())
            time.sleep(0.001)

    sampler = threading.Thread(target=sample)
    sampler.start()
    start = time.perf_counter()
    report = nn.check_model(model, X, T, grads)
    seconds = time.perf_counter() - start
    done.set()
    sampler.join()
    peak = max(peak, resident())
    assert report.passed and report.params["0.W"].checked == n * n
    print(json.dumps({"growth": peak - before, "seconds": seconds,
                      "param_bytes": sum(p.nbytes for p in model.parameters().values())}))
""")


def peak_memory(n: int, loss: str, warm_up: bool = True) -> dict | None:
    """Peak resident-set growth of one full check of Dense(n, n), in a fresh process
    (``None`` where ``/proc`` is missing)."""
    if not os.path.exists("/proc/self/statm"):
        return None
    out = subprocess.run([sys.executable, "-c", _MEMORY_SCRIPT, str(n), loss,
                          os.path.dirname(os.path.abspath(__file__)), str(int(warm_up))],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def format_table(rows: list[dict]) -> list[str]:
    """The W1 table in Markdown."""
    lines = ["", TITLE, "| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    lines += ["| " + " | ".join(_cells(r)) + " |" for r in rows]
    return lines


def publish(request, row: dict) -> None:
    """Record a row (in the shared benchmark table when the conftest provides one)."""
    _ROWS.append(row)
    try:
        shared = request.getfixturevalue("bench_table")
    except pytest.FixtureLookupError:
        _PUBLISHED.append(False)
        return
    tab = shared(TITLE, COLUMNS)
    if not tab.notes:
        tab.note("spread = slowest / fastest timed round; peak = resident-set growth of one "
                 "check in a fresh process after a warm-up check (RSS sampled every ms), in MB "
                 "and in parameter bytes")
        tab.note("structured = gradprobe.nn.check_model, every entry of W and b; seed-style "
                 "loop and generic python (gp.check, backend='python') are timed on a sample "
                 "and extrapolated; bound = P * B * 6 / measured GEMM flop/s; structured C = "
                 "the same check on the C kernels (backend='cffi'), min of the same number of "
                 "rounds, each round also timing the Numba kernels for C / Numba; estimates "
                 "identical to the Numba kernels' bit for bit")
    tab.add(*_cells(row))
    _PUBLISHED.append(True)


# -- problems and references ----------------------------------------------------
def dense_problem(n: int, loss: str):
    rng = np.random.default_rng(n)
    loss_fn = nn.MSE() if loss == "mse" else nn.SoftmaxCrossEntropy()
    model = nn.Sequential([nn.Dense(n, n, seed=1)], loss=loss_fn)
    X = rng.standard_normal((BATCH, n))
    T = rng.standard_normal((BATCH, n)) if loss == "mse" else rng.integers(0, n, BATCH)
    return model, X, T


def numpy_cost(model: nn.Sequential, X: np.ndarray, T: np.ndarray):
    """The model's loss in NumPy, as the seeds write it: ``cost(params)``."""
    onehot = None
    if isinstance(model.loss_fn, nn.SoftmaxCrossEntropy):
        onehot = np.zeros((X.shape[0], model.n_out))
        onehot[np.arange(X.shape[0]), T] = 1.0

    def cost(**params):
        a = X
        for pos, layer in enumerate(model.layers):
            if isinstance(layer, nn.Dense):
                a = a @ params[f"{pos}.W"] + params[f"{pos}.b"]
            else:
                a = np.maximum(a, 0.0)
        if onehot is None:
            return 0.5 * np.sum((a - T) ** 2) / X.shape[0]
        top = a.max(axis=1, keepdims=True)
        lse = top[:, 0] + np.log(np.exp(a - top).sum(axis=1))
        return float(np.sum(lse - (onehot * a).sum(axis=1))) / X.shape[0]
    return cost


def seed_loop_seconds(model, X, T, entries: int) -> float:
    """Seconds per entry of the seed-style loop on the first Dense layer's W."""
    cost = numpy_cost(model, X, T)
    params = {k: v.copy() for k, v in model.parameters().items()}
    W = params["0.W"]
    rng = np.random.default_rng(0)
    picks = rng.choice(W.size, size=min(entries, W.size), replace=False)
    start = time.perf_counter()
    for flat in picks:
        i, j = divmod(int(flat), W.shape[1])
        plus = dict(params, **{"0.W": W.copy()})
        plus["0.W"][i, j] += SEED_EPS
        minus = dict(params, **{"0.W": W.copy()})
        minus["0.W"][i, j] -= SEED_EPS
        (cost(**plus) - cost(**minus)) / (2 * SEED_EPS)
    return (time.perf_counter() - start) / len(picks)


def c_seconds(model, X, T, grads, numba_report, rounds: int) -> tuple[float, float] | None:
    """Best times of the check on the C kernels and on the Numba kernels, rounds of the
    two interleaved (None when the C kernel is not built); asserts that the C
    estimates equal the Numba kernels' bit for bit."""
    if not c_kernels.available():
        return None
    report = nn.check_model(model, X, T, grads, backend="cffi")
    assert report.passed == numba_report.passed
    for name, param in numba_report.params.items():
        assert np.array_equal(report.params[name].numeric, param.numeric), name
    best = {"cffi": np.inf, "numba": np.inf}
    for _ in range(rounds):
        for backend in best:
            start = time.perf_counter()
            nn.check_model(model, X, T, grads, backend=backend)
            best[backend] = min(best[backend], time.perf_counter() - start)
    return best["cffi"], best["numba"]


def generic_seconds(model, X, T, grads, samples: int) -> float:
    """Seconds per checked entry of gp.check with the Python engine (sample mode)."""
    cost = numpy_cost(model, X, T)
    start = time.perf_counter()
    report = gp.check(cost, model.parameters(), grads, backend="python", mode="sample",
                      samples=samples)
    seconds = time.perf_counter() - start
    return seconds / sum(p.checked for p in report.params.values())


# -- the cases -----------------------------------------------------------------------
def _by_size(sizes):
    """``n`` values, each in the benchmark group of its layer size."""
    return [pytest.param(n, marks=pytest.mark.benchmark(group=f"W1 {n}x{n}"))
            for n in sizes]


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("n", _by_size(SIZES))
def test_w1_dense_full_check(benchmark, request, gemm_flops, n, loss):
    model, X, T = dense_problem(n, loss)
    grads = model.gradients(X, T)
    entries = n * n + n
    kept = nn.check_model(model, X, T, grads)  # warm-up: JIT cache, and the memory
    nn.check_model(model, X, T, grads)         # of two live reports (see above)
    del kept
    report = benchmark.pedantic(nn.check_model, args=(model, X, T, grads),
                                rounds=ROUNDS[n], iterations=1)
    assert report.passed and report.params["0.W"].checked == n * n
    structured = benchmark.stats.stats.min
    seed = seed_loop_seconds(model, X, T, SEED_LOOP_ENTRIES[n]) * entries
    generic = generic_seconds(model, X, T, grads, GENERIC_SAMPLES[n]) * entries
    bound = n * n * BATCH * 6 / gemm_flops
    row = {"case": f"{n}x{n} {loss}", "entries": entries, "structured": structured,
           "spread": benchmark.stats.stats.max / structured, "memory": peak_memory(n, loss),
           "seed": seed, "generic": generic, "bound": bound,
           "c": c_seconds(model, X, T, grads, report, ROUNDS[n])}
    benchmark.extra_info.update({k: v for k, v in row.items() if k != "case"})
    publish(request, row)


@pytest.mark.skipif(os.environ.get("GRADPROBE_BENCH_LARGE") != "1",
                    reason="opt-in: GRADPROBE_BENCH_LARGE=1 (needs ~2.5 GB of memory)")
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("n", _by_size(LARGE_SIZES))
def test_w1_dense_large(benchmark, request, gemm_flops, n, loss):
    """Dense(8192, 8192): one full check in a fresh process, its time and peak memory."""
    memory = benchmark.pedantic(peak_memory, args=(n, loss, False), rounds=1, iterations=1)
    row = {"case": f"{n}x{n} {loss}", "entries": n * n + n, "structured": memory["seconds"],
           "memory": memory, "seed": None, "generic": None,
           "bound": n * n * BATCH * 6 / gemm_flops, "c": None}
    benchmark.extra_info.update({k: v for k, v in row.items() if k != "case"})
    publish(request, row)


@pytest.mark.benchmark(group="W1 MLP")
def test_w1_mlp_first_layer(benchmark, request):
    """3-layer ReLU MLP: perturbing the first layer recomputes the layers after it."""
    rng = np.random.default_rng(3)
    model = nn.Sequential([nn.Dense(256, 128, seed=0), nn.ReLU(), nn.Dense(128, 64, seed=1),
                           nn.ReLU(), nn.Dense(64, 10, seed=2)],
                          loss=nn.SoftmaxCrossEntropy())
    X = rng.standard_normal((BATCH, 256))
    T = rng.integers(0, 10, BATCH)
    grads = model.gradients(X, T)
    entries = sum(p.size for p in model.parameters().values())
    nn.check_model(model, X, T, grads, mode="sample", samples=8)  # warm-up
    report = benchmark.pedantic(nn.check_model, args=(model, X, T, grads), rounds=2,
                                iterations=1)
    assert report.passed
    structured = benchmark.stats.stats.min
    seed = seed_loop_seconds(model, X, T, 2000) * entries
    generic = generic_seconds(model, X, T, grads, 100) * entries
    row = {"case": "MLP 256-128-64-10 relu softmax_ce", "entries": entries,
           "spread": benchmark.stats.stats.max / structured,
           "structured": structured, "seed": seed, "generic": generic, "bound": None,
           "c": c_seconds(model, X, T, grads, report, 2)}
    benchmark.extra_info.update({k: v for k, v in row.items() if k != "case"})
    publish(request, row)
