"""W3: full check of the W2 MLP loss written in C, on the C kernel.

The loss of ``test_w2_njit_mlp.py`` (64 -> 256 tanh -> 128 tanh -> 10,
squared error, batch 64, float64, P = 50,826) as a C function with
gradprobe's ABI ``double loss(const double *theta, size_t n, void *ctx)``,
same loops in the same order, compiled by cffi (API mode, ``-O2``).
Measured side by side in one run:

* ``t_loss``: one C evaluation (the kernel on one thread, 300 entries);
* the floor ``2 P t_loss / cores``;
* the Python engine calling the C pointer (a sample of entries, extrapolated);
* the C kernel (``backend="cffi"``) with ``workers=1`` and all cores;
* the Numba engine on the njit twin of W2 (all cores), for comparison.

Run alone with ``python -m pytest benchmarks/test_w3_c_loss.py --benchmark-only``.
"""
from __future__ import annotations

import importlib.util
import os
import time

import numpy as np
import pytest

import gradprobe as gp
from gradprobe.engines import cffi as c_engine

from test_w2_njit_mlp import MLP, mlp_loss

cffi = pytest.importorskip("cffi")

CORES = os.cpu_count() or 1
TITLE = "W3: C MLP loss, full check (P = 50,826, batch 64, float64, central)"
COLUMNS = ("engine", "time (s)", "x floor", "x Python engine", "evaluations")

CDEF = """
typedef struct { const double *X; const double *Y; size_t B, D, H1, H2, C; } mlp_data;
double mlp_loss(const double *theta, size_t n, void *ctx);
"""

C_SOURCE = r"""
#include <math.h>
#include <stddef.h>

typedef struct { const double *X; const double *Y; size_t B, D, H1, H2, C; } mlp_data;

/* theta = W1 (D x H1), b1, W2 (H1 x H2), b2, W3 (H2 x C), b3: the loops of W2's njit loss. */
double mlp_loss(const double *theta, size_t n, void *ctx)
{
    const mlp_data *d = (const mlp_data *)ctx;
    const size_t D = d->D, H1 = d->H1, H2 = d->H2, C = d->C, B = d->B;
    const double *W1 = theta, *b1 = W1 + D * H1, *W2 = b1 + H1, *b2 = W2 + H1 * H2;
    const double *W3 = b2 + H2, *b3 = W3 + H2 * C;
    double h1[H1], h2[H2], z[C];
    double total = 0.0;
    (void)n;
    for (size_t s = 0; s < B; ++s) {
        for (size_t j = 0; j < H1; ++j) h1[j] = b1[j];
        for (size_t i = 0; i < D; ++i) {
            double x = d->X[s * D + i];
            for (size_t j = 0; j < H1; ++j) h1[j] += x * W1[i * H1 + j];
        }
        for (size_t j = 0; j < H1; ++j) h1[j] = tanh(h1[j]);
        for (size_t j = 0; j < H2; ++j) h2[j] = b2[j];
        for (size_t i = 0; i < H1; ++i) {
            double x = h1[i];
            for (size_t j = 0; j < H2; ++j) h2[j] += x * W2[i * H2 + j];
        }
        for (size_t j = 0; j < H2; ++j) h2[j] = tanh(h2[j]);
        for (size_t j = 0; j < C; ++j) z[j] = b3[j];
        for (size_t i = 0; i < H2; ++i) {
            double x = h2[i];
            for (size_t j = 0; j < C; ++j) z[j] += x * W3[i * C + j];
        }
        for (size_t j = 0; j < C; ++j) {
            double e = z[j] - d->Y[s * C + j];
            total += 0.5 * e * e;
        }
    }
    return total / (double)B;
}
"""


class CMLP(MLP):
    """W2's problem plus the compiled C loss and its ctx."""

    def __init__(self, tmpdir):
        super().__init__()
        builder = cffi.FFI()
        builder.cdef(CDEF)
        builder.set_source("_gradprobe_w3_mlp", C_SOURCE,
                           extra_compile_args=["-O2", "-ffp-contract=off"])
        path = builder.compile(tmpdir=str(tmpdir))
        spec = importlib.util.spec_from_file_location("_gradprobe_w3_mlp", path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self.ffi, self.lib = module.ffi, module.lib
        X, Y = (np.ascontiguousarray(a) for a in self.args)
        self._keep = (X, Y, self.ffi.from_buffer("double[]", X),
                      self.ffi.from_buffer("double[]", Y))
        D, H1 = self.params[0].shape
        H2, C = self.params[4].shape
        self.ctx = self.ffi.new("mlp_data *", {
            "X": self._keep[2], "Y": self._keep[3], "B": X.shape[0], "D": D, "H1": H1,
            "H2": H2, "C": C})
        self.timings = {}

    def t_c_loss(self, n=300):
        """Seconds per C evaluation on one thread (the kernel, one point per entry)."""
        from gradprobe.params import ParamSet
        from gradprobe.problem import prepare

        f = c_engine.as_loss(self.lib.mlp_loss, (self.ctx,))
        problem = prepare(f, ParamSet.from_user(self.params, f), (self.ctx,), upcast=True,
                          complex_step=False, seed=0)
        engine = c_engine.CffiEngine(workers=1)
        entries = np.arange(n, dtype=np.int64)
        points = problem.working[0].reshape(-1)[entries][:, None] + 1e-6
        best = np.inf
        for _ in range(3):
            start = time.perf_counter()
            engine.evaluate(problem, 0, entries, points)
            best = min(best, (time.perf_counter() - start) / n)
        return best


@pytest.fixture(scope="module")
def cmlp(bench_table, tmp_path_factory):
    if not c_engine.kernel_available():
        pytest.skip(f"C kernel {c_engine.KERNEL_STATUS}")
    try:
        problem = CMLP(tmp_path_factory.mktemp("w3"))
    except Exception as exc:  # no compiler
        pytest.skip(f"cannot compile the C loss: {exc}")
    problem.t = problem.t_c_loss()
    bench_table(TITLE, COLUMNS)
    yield problem
    _summarise(problem, bench_table(TITLE))


def _summarise(problem, tab):
    t, P, times = problem.t, problem.size, problem.timings
    floor1, floor = 2 * P * t, 2 * P * t / CORES
    python = times.get("python")
    tab.add(f"floor 2*P*t_loss/cores (C t_loss = {t * 1e3:.3f} ms, {CORES} cores)", floor,
            1.0, python / floor if python else None, problem.evaluations)
    if python:
        tab.add(f"Python engine, same C function (extrapolated from {times['python_evals']} "
                "evaluations)", python, python / floor1, 1.0, problem.evaluations)
    for key, label, workers in (("c1", "C kernel, workers=1", 1),
                                (f"c{CORES}", f"C kernel, workers={CORES} (all cores)", CORES),
                                ("numba", f"Numba engine, njit twin (W2), workers={CORES}",
                                 CORES)):
        got = times.get(key)
        if got is None:
            continue
        own_floor = 2 * P * t / workers
        tab.add(label, got, got / own_floor, python / got if python else None,
                times[f"{key}_evals"])
    one, many = times.get("c1"), times.get(f"c{CORES}")
    if one and many:
        tab.note(f"C kernel speed-up from 1 to {CORES} threads: {one / many:.2f}x")
    if "agreement" in times:
        tab.note(times["agreement"])
    tab.note("'x floor' compares each engine with the floor of the C loss for its own thread "
             "count (the Numba row: its own loss is a different compilation of the same "
             "loops); times are one full check including noise probe, steps and verdicts")


def test_w3_python_engine_sample(run_once, cmlp):
    """The Python engine calling the C pointer, on a sample, extrapolated."""
    def run():
        return gp.check(cmlp.lib.mlp_loss, cmlp.params, cmlp.grads, args=(cmlp.ctx,),
                        mode="sample", samples=150, backend="python")
    report, elapsed = run_once(run)
    assert report.passed, str(report)
    cmlp.timings["python"] = elapsed / report.evaluations * cmlp.evaluations
    cmlp.timings["python_evals"] = report.evaluations


@pytest.mark.parametrize("workers", sorted({1, CORES}))
def test_w3_c_kernel_full(run_once, cmlp, workers):
    """The whole check on the C kernel."""
    def run():
        return gp.check(cmlp.lib.mlp_loss, cmlp.params, cmlp.grads, args=(cmlp.ctx,),
                        workers=workers)
    report, elapsed = run_once(run)
    assert report.passed and report.backend == "cffi", str(report)
    cmlp.timings[f"c{workers}"] = elapsed
    cmlp.timings[f"c{workers}_evals"] = report.evaluations
    cmlp.reports = getattr(cmlp, "reports", {})
    cmlp.reports["c"] = report


def test_w3_numba_engine_full(run_once, cmlp):
    """The njit twin of the same loss on the Numba engine (all cores), for comparison."""
    gp.check(mlp_loss, cmlp.params, cmlp.grads, args=cmlp.args, mode="sample", samples=2)

    def run():
        return gp.check(mlp_loss, cmlp.params, cmlp.grads, args=cmlp.args, workers=CORES)
    report, elapsed = run_once(run)
    assert report.passed and report.backend == "numba", str(report)
    cmlp.timings["numba"] = elapsed
    cmlp.timings["numba_evals"] = report.evaluations
    c_report = getattr(cmlp, "reports", {}).get("c")
    if c_report is not None:
        worst = 0.0
        # Same parameters in the same order; the names differ (W1... from the njit
        # signature, params[0]... for the C pointer).
        for pr, cr in zip(report.params.values(), c_report.params.values()):
            bars = np.maximum(np.asarray(pr.error_bar_flat), np.asarray(cr.error_bar_flat))
            diff = np.abs(np.asarray(pr.numeric_flat) - np.asarray(cr.numeric_flat))
            worst = max(worst, float(np.max(diff / bars)))
        cmlp.timings["agreement"] = (
            f"numerical gradients, C kernel vs Numba engine: largest difference "
            f"{worst:.3g} error bars (different compilations of tanh and the loops: "
            "equal within error bars, not bit for bit)")


def test_w3_scaling_interleaved(benchmark, cmlp, bench_table):
    """1 vs all threads of the C kernel on the same 200 entries, alternating, best of 5.

    A full check takes minutes, during which a shared machine's load can
    change; alternating short runs compares the thread counts under the
    same conditions.
    """
    from gradprobe.params import ParamSet
    from gradprobe.problem import prepare

    f = c_engine.as_loss(cmlp.lib.mlp_loss, (cmlp.ctx,))
    problem = prepare(f, ParamSet.from_user(cmlp.params, f), (cmlp.ctx,), upcast=True,
                      complex_step=False, seed=0)
    entries = np.arange(200, dtype=np.int64)
    points = problem.working[0].reshape(-1)[entries][:, None] + np.array([1e-6, -1e-6])
    engines = {w: c_engine.CffiEngine(workers=w) for w in sorted({1, CORES})}
    best: dict[int, float] = {}

    def one_round():
        for workers, engine in engines.items():
            start = time.perf_counter()
            engine.evaluate(problem, 0, entries, points)
            best[workers] = min(best.get(workers, np.inf),
                                (time.perf_counter() - start) / points.size)

    benchmark.pedantic(one_round, rounds=5, iterations=1, warmup_rounds=0)
    bench_table(TITLE, COLUMNS).note(
        f"interleaved slice ({points.size} evaluations, best of 5 rounds): ms per evaluation: "
        f"C kernel workers=1 {best[1] * 1e3:.3f}, workers={CORES} {best[CORES] * 1e3:.3f} "
        f"({best[1] / best[CORES]:.2f}x)")
