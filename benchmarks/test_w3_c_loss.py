"""W3: full check of the W2 MLP loss written in C, on the C kernel.

The loss of ``test_w2_njit_mlp.py`` (64 -> 256 tanh -> 128 tanh -> 10,
squared error, batch 64, float64, P = 50,826) as a C function with
gradprobe's ABI ``double loss(const double *theta, size_t n, void *ctx)``,
same loops in the same order, compiled by cffi (API mode) with
:data:`C_FLAGS`. Measured side by side in one run:

* ``t_loss`` of the C loss and of the njit loss: one evaluation on one
  thread, at the same 300 points, each timed inside a compiled loop (the C
  kernel with ``workers=1``; an njit loop), alternating, best of 5 rounds;
  the two losses are also compared there (bit for bit, in ulps);
* the floors ``2 P t_loss / cores`` of both;
* the Python engine calling the C pointer (a sample of entries, extrapolated);
* the C kernel (``backend="cffi"``) with ``workers=1`` and all cores;
* the Numba engine on the njit twin of W2 (all cores): the column
  "x Numba engine" is each row's time over this one (target for the C
  kernel on all cores: at most 1.10).

Run alone with ``python -m pytest benchmarks/test_w3_c_loss.py --benchmark-only``.
"""
from __future__ import annotations

import importlib.util
import os
import time

import numpy as np
import pytest

from numba import njit

import gradprobe as gp
from gradprobe.engines import cffi as c_engine

from test_w2_njit_mlp import MLP, mlp_loss

cffi = pytest.importorskip("cffi")

CORES = os.cpu_count() or 1
TITLE = "W3: C MLP loss, full check (P = 50,826, batch 64, float64, central)"
COLUMNS = ("engine", "time (s)", "x floor", "x Python engine", "x Numba engine",
           "evaluations")
#: How the C loss is compiled (gcc/clang). gcc 12's ``-O2`` vectorises only under the
#: "very-cheap" cost model, which refuses any loop needing a scalar epilogue: the row
#: loops here run to H1, H2, C read from ``ctx`` at run time, so at ``-O2`` nothing is
#: vectorised (``-fopt-info-vec-missed``: "some scalar iterations would need to be
#: peeled"). ``-O3`` vectorises them with SSE2; ``-march=native`` uses the host's AVX2,
#: as Numba's LLVM does (it compiles for the host CPU). ``-ffp-contract=off`` keeps
#: ``h += x * w`` as a multiply and an add, each rounded, as Numba does without
#: ``fastmath``: with it the C loss is bit-identical to the njit loss; without it (gcc's
#: default in GNU C) ``-march=native`` contracts them into FMAs and the losses differ
#: by a few ulps.
C_FLAGS = ("-O3", "-march=native", "-ffp-contract=off")
#: Used when the compiler rejects ``-march=native``.
C_FLAGS_PORTABLE = ("-O3", "-ffp-contract=off")

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
        path = None
        for flags in (C_FLAGS, C_FLAGS_PORTABLE):
            builder = cffi.FFI()
            builder.cdef(CDEF)
            builder.set_source("_gradprobe_w3_mlp", C_SOURCE, extra_compile_args=list(flags))
            try:
                path = builder.compile(tmpdir=str(tmpdir))
            except Exception:
                if flags is C_FLAGS_PORTABLE:
                    raise
                continue
            self.flags = " ".join(flags)
            break
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

    def t_losses(self, n=300, rounds=5):
        """Seconds per evaluation of the C and the njit loss, and how far apart they are.

        Both run on one thread in a compiled loop over the same ``n`` points
        (entry ``k`` of W1 set to ``W1[k] + 1e-6``): the C kernel with
        ``workers=1``, and :func:`_njit_losses`. The two alternate, ``rounds``
        times, and each keeps its best, so a change of load hits both.
        """
        from gradprobe.problem.params import ParamSet
        from gradprobe.problem.point import prepare

        f = c_engine.as_loss(self.lib.mlp_loss, (self.ctx,))
        problem = prepare(f, ParamSet.from_user(self.params, f), (self.ctx,), upcast=True,
                          complex_step=False, seed=0)
        engine = c_engine.CffiEngine(workers=1)
        entries = np.arange(n, dtype=np.int64)
        points = problem.working[0].reshape(-1)[entries][:, None] + 1e-6
        work = [p.copy() for p in self.params]
        njit_out = np.empty(n)
        _njit_losses(*work, *self.args, 2, njit_out)  # compile
        best = {"c": np.inf, "numba": np.inf}
        for _ in range(rounds):
            start = time.perf_counter()
            c_out = engine.evaluate(problem, 0, entries, points)[:, 0]
            best["c"] = min(best["c"], (time.perf_counter() - start) / n)
            start = time.perf_counter()
            _njit_losses(*work, *self.args, n, njit_out)
            best["numba"] = min(best["numba"], (time.perf_counter() - start) / n)
        ulps = np.abs(c_out - njit_out) / np.spacing(np.abs(njit_out))
        agreement = (f"losses, C vs njit at those {n} points: {int(np.sum(c_out == njit_out))}"
                     f"/{n} bit-identical, largest difference {float(ulps.max()):.3g} ulp")
        return best["c"], best["numba"], agreement


@njit
def _njit_losses(W1, b1, W2, b2, W3, b3, X, Y, n, out):
    """The njit loss at ``W1[k] + 1e-6`` for ``k < n`` (the points the C kernel is timed on)."""
    flat = W1.reshape(W1.size)
    for k in range(n):
        original = flat[k]
        flat[k] = original + 1e-6
        out[k] = mlp_loss(W1, b1, W2, b2, W3, b3, X, Y)
        flat[k] = original


@pytest.fixture(scope="module")
def cmlp(bench_table, tmp_path_factory):
    if not c_engine.kernel_available():
        pytest.skip(f"C kernel {c_engine.KERNEL_STATUS}")
    try:
        problem = CMLP(tmp_path_factory.mktemp("w3"))
    except Exception as exc:  # no compiler
        pytest.skip(f"cannot compile the C loss: {exc}")
    problem.t, problem.t_numba, problem.loss_agreement = problem.t_losses()
    bench_table(TITLE, COLUMNS)
    yield problem
    tab = bench_table(TITLE)
    _summarise(problem, tab)
    # The floors come from t_loss timed before the full checks; a shared host can change
    # speed during the minutes they take, so t_loss is timed again after them.
    t_after, tn_after, _ = problem.t_losses()
    tab.note(f"t_loss again after the full checks: C {t_after * 1e3:.3f} ms "
             f"({t_after / problem.t:.2f}x before), njit {tn_after * 1e3:.3f} ms "
             f"({tn_after / problem.t_numba:.2f}x before)")


def _summarise(problem, tab):
    t, tn, P, times = problem.t, problem.t_numba, problem.size, problem.timings
    floor1, floor = 2 * P * t, 2 * P * t / CORES
    python, numba_full = times.get("python"), times.get("numba")

    def ratio(x, y):
        return x / y if x and y else None

    tab.add(f"floor 2*P*t_loss/cores, C loss (t_loss = {t * 1e3:.3f} ms, {CORES} cores)", floor,
            1.0, ratio(python, floor), ratio(floor, numba_full), problem.evaluations)
    tab.add(f"floor 2*P*t_loss/cores, njit loss (t_loss = {tn * 1e3:.3f} ms, {CORES} cores)",
            2 * P * tn / CORES, 1.0, ratio(python, 2 * P * tn / CORES),
            ratio(2 * P * tn / CORES, numba_full), problem.evaluations)
    if python:
        tab.add(f"Python engine, same C function (extrapolated from {times['python_evals']} "
                "evaluations)", python, python / floor1, 1.0, ratio(python, numba_full),
                problem.evaluations)
    for key, label, workers, t_own in (
            ("c1", "C kernel, workers=1", 1, t),
            (f"c{CORES}", f"C kernel, workers={CORES} (all cores)", CORES, t),
            ("numba", f"Numba engine, njit twin (W2), workers={CORES}", CORES, tn)):
        got = times.get(key)
        if got is None:
            continue
        tab.add(label, got, got / (2 * P * t_own / workers), ratio(python, got),
                ratio(got, numba_full), times[f"{key}_evals"])
    tab.note(f"t_loss (one evaluation, one thread, the same 300 points, compiled loops, "
             f"alternating, best of 5): C {t * 1e3:.3f} ms, njit {tn * 1e3:.3f} ms: "
             f"C / njit = {t / tn:.2f}")
    tab.note(problem.loss_agreement)
    c_full = times.get(f"c{CORES}")
    if c_full and numba_full:
        tab.note(f"C full check / Numba full check, both on {CORES} cores: "
                 f"{c_full / numba_full:.2f} (target: at most 1.10)")
    one, many = times.get("c1"), times.get(f"c{CORES}")
    if one and many:
        tab.note(f"C kernel speed-up from 1 to {CORES} threads: {one / many:.2f}x")
    if "agreement" in times:
        tab.note(times["agreement"])
    tab.note(f"C loss compiled with {problem.flags}; 'x floor' compares each engine with the "
             "floor of its own loss for its own thread count (C rows: the C loss; the Numba "
             "row: the njit loss); times are one full check including noise probe, steps "
             "and verdicts")


@pytest.mark.benchmark(group="W3 C loss")
def test_w3_python_engine_sample(run_once, cmlp):
    """The Python engine calling the C pointer, on a sample, extrapolated."""
    def run():
        return gp.check(cmlp.lib.mlp_loss, cmlp.params, cmlp.grads, args=(cmlp.ctx,),
                        mode="sample", samples=150, backend="python")
    report, elapsed = run_once(run)
    assert report.passed, str(report)
    cmlp.timings["python"] = elapsed / report.evaluations * cmlp.evaluations
    cmlp.timings["python_evals"] = report.evaluations


@pytest.mark.benchmark(group="W3 C loss")
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


@pytest.mark.benchmark(group="W3 C loss")
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
        worst, identical = 0.0, True
        # Same parameters in the same order; the names differ (W1... from the njit
        # signature, params[0]... for the C pointer).
        for pr, cr in zip(report.params.values(), c_report.params.values()):
            numba_numeric = np.asarray(pr.numeric_flat)
            c_numeric = np.asarray(cr.numeric_flat)
            bars = np.maximum(np.asarray(pr.error_bar_flat), np.asarray(cr.error_bar_flat))
            worst = max(worst, float(np.max(np.abs(numba_numeric - c_numeric) / bars)))
            identical = identical and numba_numeric.tobytes() == c_numeric.tobytes()
        cmlp.timings["agreement"] = (
            "numerical gradients, C kernel vs Numba engine: "
            + ("bit-identical" if identical else
               f"largest difference {worst:.3g} error bars (not bit for bit)"))


@pytest.mark.benchmark(group="W3 C loss")
def test_w3_scaling_interleaved(benchmark, cmlp, bench_table):
    """The C kernel on 1 and all threads and the Numba engine on all, same 200 entries.

    A full check takes minutes, during which a shared machine's load can
    change; alternating short runs (best of 5) compares the thread counts,
    and the C kernel with the Numba engine, under the same conditions.
    """
    from gradprobe.engines.numba import NumbaEngine
    from gradprobe.problem.params import ParamSet
    from gradprobe.problem.point import prepare

    f = c_engine.as_loss(cmlp.lib.mlp_loss, (cmlp.ctx,))
    problems = {
        "c": prepare(f, ParamSet.from_user(cmlp.params, f), (cmlp.ctx,), upcast=True,
                     complex_step=False, seed=0),
        "numba": prepare(mlp_loss, ParamSet.from_user(cmlp.params, mlp_loss), cmlp.args,
                         upcast=True, complex_step=False, seed=0)}
    entries = np.arange(200, dtype=np.int64)
    points = problems["c"].working[0].reshape(-1)[entries][:, None] + np.array([1e-6, -1e-6])
    engines = {f"c{w}": ("c", c_engine.CffiEngine(workers=w)) for w in sorted({1, CORES})}
    engines["numba"] = ("numba", NumbaEngine(workers=CORES))
    best: dict[str, float] = {}

    def one_round():
        for key, (kind, engine) in engines.items():
            start = time.perf_counter()
            engine.evaluate(problems[kind], 0, entries, points)
            best[key] = min(best.get(key, np.inf), (time.perf_counter() - start) / points.size)

    one_round()  # warm-up: the Numba kernel for these types, thread pools
    best.clear()
    benchmark.pedantic(one_round, rounds=5, iterations=1, warmup_rounds=0)
    c1, cn, nb = best["c1"], best[f"c{CORES}"], best["numba"]
    bench_table(TITLE, COLUMNS).note(
        f"interleaved slice ({points.size} evaluations, best of 5 rounds): ms per evaluation: "
        f"C kernel workers=1 {c1 * 1e3:.3f}, workers={CORES} {cn * 1e3:.3f} "
        f"({c1 / cn:.2f}x); Numba engine workers={CORES} {nb * 1e3:.3f}: "
        f"C / Numba on {CORES} threads = {cn / nb:.2f}")
