"""W2: full check of a 3-layer MLP loss written as a plain ``numba.njit`` function.

64 inputs -> 256 tanh -> 128 tanh -> 10 linear, squared error, batch 64,
float64: P = 50,826 parameters, so a central-difference full check is
2 P = 101,652 loss evaluations. Measured side by side in one run:

* ``t_loss``: one compiled evaluation, timed inside a compiled loop that
  perturbs an entry each time (so nothing can be hoisted);
* the floor ``2 P t_loss / cores``, and what the machine really delivers on
  all cores: the same compiled loop in ``prange`` with private copies
  ("ideal"), since a shared or throttled VM may not give 2 full cores;
* the Python engine calling the same njit function (a sample of entries,
  extrapolated to the full check);
* the Numba engine with ``workers=1`` and with all cores;
* ``torch.autograd.gradcheck`` of the same network, when torch is installed.

A second workload, a cheap loss with 100,000 entries (an embedding lookup:
each evaluation reads 32 rows, about 0.2 us), shows the per-call overhead the compiled
kernel removes.
"""
from __future__ import annotations

import time

import numba
import numpy as np
import pytest
from numba import njit, prange

import gradprobe as gp

CORES = numba.config.NUMBA_NUM_THREADS
TITLE = "W2: njit MLP loss, full check (P = 50,826, batch 64, float64, central)"
COLUMNS = ("engine", "time (s)", "x floor", "x Python engine", "evaluations")
CHEAP = "W2b: cheap njit loss, 100,000 entries (embedding lookup, batch 32), full check"


@njit
def mlp_loss(W1, b1, W2, b2, W3, b3, X, Y):
    """Mean squared error of a tanh MLP, one sample at a time (no BLAS in njit)."""
    B = X.shape[0]
    H1, H2, C = W1.shape[1], W2.shape[1], W3.shape[1]
    h1, h2, z = np.empty(H1), np.empty(H2), np.empty(C)
    total = 0.0
    for n in range(B):
        for j in range(H1):
            h1[j] = b1[j]
        for i in range(X.shape[1]):
            x = X[n, i]
            for j in range(H1):
                h1[j] += x * W1[i, j]
        for j in range(H1):
            h1[j] = np.tanh(h1[j])
        for j in range(H2):
            h2[j] = b2[j]
        for i in range(H1):
            x = h1[i]
            for j in range(H2):
                h2[j] += x * W2[i, j]
        for j in range(H2):
            h2[j] = np.tanh(h2[j])
        for j in range(C):
            z[j] = b3[j]
        for i in range(H2):
            x = h2[i]
            for j in range(C):
                z[j] += x * W3[i, j]
        for j in range(C):
            d = z[j] - Y[n, j]
            total += 0.5 * d * d
    return total / B


def mlp_grads(W1, b1, W2, b2, W3, b3, X, Y):
    """Hand-written backpropagation (NumPy): the gradient being checked."""
    B = X.shape[0]
    h1 = np.tanh(X @ W1 + b1)
    h2 = np.tanh(h1 @ W2 + b2)
    dz3 = (h2 @ W3 + b3 - Y) / B
    dz2 = (dz3 @ W3.T) * (1 - h2 ** 2)
    dz1 = (dz2 @ W2.T) * (1 - h1 ** 2)
    return (X.T @ dz1, dz1.sum(0), h1.T @ dz2, dz2.sum(0), h2.T @ dz3, dz3.sum(0))


@njit
def _repeat(W1, b1, W2, b2, W3, b3, X, Y, n):
    """``n`` evaluations, each with a different entry of W1 perturbed."""
    flat = W1.reshape(W1.size)
    total = 0.0
    for k in range(n):
        original = flat[k]
        flat[k] = original + 1e-6
        total += mlp_loss(W1, b1, W2, b2, W3, b3, X, Y)
        flat[k] = original
    return total


@njit(parallel=True)
def _repeat_parallel(W1, b1, W2, b2, W3, b3, X, Y, n, out):
    """``_repeat`` on every thread, each on private copies: the machine's real throughput."""
    for t in prange(out.size):
        out[t] = _repeat(W1.copy(), b1.copy(), W2.copy(), b2.copy(), W3.copy(), b3.copy(),
                         X, Y, n)


class MLP:
    """The W2 problem: parameters, data, analytic gradient, and compiled timings."""

    def __init__(self):
        rng = np.random.default_rng(2024)
        D, H1, H2, C, B = 64, 256, 128, 10, 64
        self.params = (rng.standard_normal((D, H1)) / 8, rng.standard_normal(H1) * 0.1,
                       rng.standard_normal((H1, H2)) / 16, rng.standard_normal(H2) * 0.1,
                       rng.standard_normal((H2, C)) / 11, rng.standard_normal(C) * 0.1)
        self.args = (rng.standard_normal((B, D)), rng.standard_normal((B, C)))
        self.grads = mlp_grads(*self.params, *self.args)
        self.size = sum(p.size for p in self.params)
        self.evaluations = 2 * self.size

    def t_loss(self, n=300):
        """Seconds per compiled evaluation on one thread."""
        work = [p.copy() for p in self.params]
        _repeat(*work, *self.args, 2)
        best = np.inf
        for _ in range(3):
            start = time.perf_counter()
            _repeat(*work, *self.args, n)
            best = min(best, (time.perf_counter() - start) / n)
        return best

    def ideal_parallel(self, t_loss, n=300):
        """Seconds per evaluation with every core busy on private copies."""
        out = np.zeros(CORES)
        _repeat_parallel(*self.params, *self.args, 2, out)
        best = np.inf
        for _ in range(3):
            start = time.perf_counter()
            _repeat_parallel(*self.params, *self.args, n, out)
            best = min(best, (time.perf_counter() - start) / (n * CORES))
        return best


@pytest.fixture(scope="module")
def mlp(bench_table):
    problem = MLP()
    problem.timings = {}
    mlp_loss(*problem.params, *problem.args)
    # compile the engine's kernel for these types (cached on disk afterwards)
    gp.check(mlp_loss, problem.params, problem.grads, args=problem.args, mode="sample",
             samples=2)
    problem.t = problem.t_loss()
    problem.t_ideal = problem.ideal_parallel(problem.t)
    bench_table(TITLE, COLUMNS)
    yield problem
    _summarise(problem, bench_table(TITLE))


def _summarise(problem, tab):
    t, P, times = problem.t, problem.size, problem.timings
    floor1, floor = 2 * P * t, 2 * P * t / CORES
    python = times.get("python")
    ideal = 2 * P * problem.t_ideal
    tab.add(f"floor 2*P*t_loss/cores (t_loss = {t * 1e3:.3f} ms, {CORES} cores)", floor,
            1.0, python / floor if python else None, problem.evaluations)
    tab.add(f"machine ideal (measured at set-up): compiled prange loop, private copies, "
            f"{CORES} threads", ideal,
            ideal / floor, python / ideal if python else None, problem.evaluations)
    if python:
        tab.add(f"Python engine, same njit f (extrapolated from {times['python_evals']} "
                "evaluations)", python, python / floor1, 1.0, problem.evaluations)
    for workers, label in ((1, "Numba engine, workers=1"), (CORES, f"Numba engine, "
                                                            f"workers={CORES} (all cores)")):
        got = times.get(f"numba{workers}")
        if got is None:
            continue
        own_floor = 2 * P * t / workers
        tab.add(label, got, got / own_floor, python / got if python else None,
                times[f"numba{workers}_evals"])
    if "torch" in times:
        tab.add("torch.autograd.gradcheck (same network)", times["torch"],
                times["torch"] / floor, python / times["torch"] if python else None,
                problem.evaluations)
    else:
        tab.add("torch.autograd.gradcheck", times.get("torch_skip", "skipped"), None, None, None)
    one, many = times.get("numba1"), times.get(f"numba{CORES}")
    if one and many:
        tab.note(f"speed-up from 1 to {CORES} cores: {one / many:.2f}x (Numba engine); the "
                 f"machine's own ideal speed-up in this run: {problem.t / problem.t_ideal:.2f}x")
        tab.note(f"Numba engine on {CORES} cores: {many / floor:.2f}x the floor, "
                 f"{many / ideal:.2f}x the machine's ideal")
    tab.note("'x floor' compares each engine with the floor for its own thread count; "
             "times are one full check including noise probe, steps and verdicts")


@pytest.mark.benchmark(group="W2 njit MLP loss")
def test_w2_python_engine_sample(run_once, mlp):
    """The Python engine on a seeded sample of entries, extrapolated to all of them."""
    def run():
        return gp.check(mlp_loss, mlp.params, mlp.grads, args=mlp.args, mode="sample",
                        samples=150, backend="python")
    report, elapsed = run_once(run)
    assert report.passed, str(report)
    mlp.timings["python"] = elapsed / report.evaluations * mlp.evaluations
    mlp.timings["python_evals"] = report.evaluations


@pytest.mark.benchmark(group="W2 njit MLP loss")
@pytest.mark.parametrize("workers", sorted({1, CORES}))
def test_w2_numba_engine_full(run_once, mlp, workers):
    """The whole check on the Numba engine."""
    def run():
        return gp.check(mlp_loss, mlp.params, mlp.grads, args=mlp.args, workers=workers)
    report, elapsed = run_once(run)
    assert report.passed and report.backend == "numba", str(report)
    mlp.timings[f"numba{workers}"] = elapsed
    mlp.timings[f"numba{workers}_evals"] = report.evaluations


@pytest.mark.benchmark(group="W2 njit MLP loss")
def test_w2_scaling_interleaved(benchmark, mlp, bench_table):
    """1 vs all cores on the same slice of entries, alternating with the ideal loop.

    A shared VM's parallel capacity drifts during a long run; alternating
    short runs of the engine and of the ideal compiled loop, and keeping
    each one's best of five, compares them under the same conditions.
    """
    from gradprobe.engines.numba import NumbaEngine
    from gradprobe.problem.params import ParamSet
    from gradprobe.problem.point import prepare

    problem = prepare(mlp_loss, ParamSet.from_user(mlp.params, mlp_loss), mlp.args,
                      upcast=True, complex_step=False, seed=0)
    n = 600
    entries = np.arange(n, dtype=np.int64)
    points = problem.working[0].reshape(-1)[entries][:, None] + np.array([2.0 ** -20, -2.0 ** -20])
    engines = {w: NumbaEngine(workers=w) for w in sorted({1, CORES})}
    best: dict[str, float] = {}

    def keep(name, seconds_per_eval):
        best[name] = min(best.get(name, np.inf), seconds_per_eval)

    def one_round():
        work = [p.copy() for p in mlp.params]
        out = np.zeros(CORES)
        start = time.perf_counter()
        _repeat(*work, *mlp.args, 2 * n)
        keep("ideal 1", (time.perf_counter() - start) / (2 * n))
        start = time.perf_counter()
        _repeat_parallel(*mlp.params, *mlp.args, 2 * n, out)
        keep(f"ideal {CORES}", (time.perf_counter() - start) / (2 * n * CORES))
        for workers, engine in engines.items():
            start = time.perf_counter()
            engine.evaluate(problem, 0, entries, points)
            keep(f"engine {workers}", (time.perf_counter() - start) / points.size)

    one_round()  # warm-up: compile and start the thread pool
    best.clear()
    benchmark.pedantic(one_round, rounds=5, iterations=1, warmup_rounds=0)
    tab = bench_table(TITLE, COLUMNS)
    ideal, engine = best["ideal 1"] / best[f"ideal {CORES}"], \
        best["engine 1"] / best[f"engine {CORES}"]
    tab.note(f"interleaved slice ({points.size} evaluations, best of 5 rounds): ms per "
             f"evaluation: ideal loop 1 thread {best['ideal 1'] * 1e3:.3f}, {CORES} threads "
             f"{best[f'ideal {CORES}'] * 1e3:.3f} ({ideal:.2f}x); Numba engine workers=1 "
             f"{best['engine 1'] * 1e3:.3f}, workers={CORES} "
             f"{best[f'engine {CORES}'] * 1e3:.3f} ({engine:.2f}x); engine on {CORES} "
             f"threads = {best[f'engine {CORES}'] / best[f'ideal {CORES}']:.2f}x the ideal")


@pytest.mark.benchmark(group="W2 njit MLP loss")
def test_w2_torch_gradcheck(benchmark, mlp):
    """torch.autograd.gradcheck of the same network, if torch is installed."""
    try:
        import torch
    except ImportError:
        mlp.timings["torch_skip"] = "skipped: torch not installed"
        pytest.skip("torch is not installed")
    tensors = [torch.tensor(p, requires_grad=True) for p in mlp.params]
    X, Y = (torch.tensor(a) for a in mlp.args)

    def loss(W1, b1, W2, b2, W3, b3):
        h1 = torch.tanh(X @ W1 + b1)
        h2 = torch.tanh(h1 @ W2 + b2)
        return 0.5 * ((h2 @ W3 + b3 - Y) ** 2).sum() / X.shape[0]

    torch.set_num_threads(CORES)
    start = time.perf_counter()
    ok = benchmark.pedantic(torch.autograd.gradcheck, args=(loss, tuple(tensors)),
                            rounds=1, iterations=1, warmup_rounds=0)
    mlp.timings["torch"] = time.perf_counter() - start
    assert ok


# -- W2b: a cheap loss with many entries ----------------------------------------------
@njit
def embedding_loss(E, ids, u, y):
    """Squared error of 32 looked-up rows: about 0.2 microseconds per evaluation."""
    total = 0.0
    for b in range(ids.size):
        score = 0.0
        for k in range(E.shape[1]):
            score += E[ids[b], k] * u[k]
        d = score - y[b]
        total += d * d
    return 0.5 * total / ids.size


def embedding_problem():
    rng = np.random.default_rng(5)
    E = rng.standard_normal((10_000, 10)) * 0.1
    ids = rng.choice(10_000, size=32, replace=False).astype(np.int64)
    u = rng.standard_normal(10)
    y = rng.standard_normal(32)
    residual = (E[ids] @ u - y) / ids.size
    grad = np.zeros_like(E)
    np.add.at(grad, ids, residual[:, None] * u[None, :])
    return E, (ids, u, y), grad


@pytest.mark.benchmark(group="W2b cheap njit loss")
@pytest.mark.parametrize("backend", ["python", "numba"])
def test_w2b_cheap_loss_full(run_once, bench_table, backend):
    E, args, grad = embedding_problem()
    gp.check(embedding_loss, E, grad, args=args, mode="sample", samples=2, backend=backend)

    def run():
        return gp.check(embedding_loss, E, grad, args=args, backend=backend)
    report, elapsed = run_once(run)
    assert report.passed, str(report)
    tab = bench_table(CHEAP, ("engine", "time (s)", "us / evaluation", "gain",
                              "evaluations"))
    tab.rows.append((backend, f"{elapsed:.3g}", f"{elapsed / report.evaluations * 1e6:.3g}",
                     "", str(report.evaluations)))
    _CHEAP[backend] = elapsed
    if len(_CHEAP) == 2:
        gain = _CHEAP["python"] / _CHEAP["numba"]
        tab.rows[-1] = tab.rows[-1][:3] + (f"{gain:.1f}x",) + tab.rows[-1][4:]
        tab.note(f"Numba engine on {CORES} cores vs Python engine: {gain:.1f}x for the "
                 "whole check (noise probe, steps and verdicts included)")



_CHEAP: dict[str, float] = {}
