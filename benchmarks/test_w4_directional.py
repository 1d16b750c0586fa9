"""W4: a 1M-parameter gradient with one wrong entry: detect it, then name it.

The loss is cheap and vectorised (NumPy): elementwise smooth terms plus a
coupling term between neighbours,
``f(x) = sum(2 x + x^2/2 + x^3/6) + 1/2 sum x_i x_{i+1}``, with
``P = 1,000,000`` float64 entries and exactly one gradient entry off by 1 %.
Measured side by side in one run:

* ``mode="directional"`` (4 directions): evaluations and wall time until the
  first round of directions has failed (*detect*), and until the entry is
  named by bisection, judged entry-wise and confirmed by a passing round
  (*name*);
* ``mode="auto"`` (default budget 2 s): the same, plus 32 sampled entries;
* a full check (``mode="full"``): 2 P evaluations, extrapolated from the
  time per entry of two sample checks (200 and 1,000 entries), since it
  would take hours;
* ``torch.autograd.gradcheck(fast_mode=True)`` on the same loss as a custom
  autograd Function with the same wrong backward, when torch is installed
  (skipped cleanly otherwise).

Run: ``python -m pytest benchmarks/test_w4_directional.py --benchmark-only``.
"""
from __future__ import annotations

import time

import numpy as np
import pytest

import gradprobe as gp

P = 1_000_000
TITLE = "W4: directional check, P = 1,000,000, one entry wrong by 1 % (float64, central)"
COLUMNS = ("check", "detect: evals", "detect: s", "name: evals", "name: s", "named",
           "resolution", "x faster than full")


def loss(x):
    return np.sum(x * (2.0 + x * (0.5 + x / 6.0))) + 0.5 * np.dot(x[:-1], x[1:])


def gradient(x):
    g = 2.0 + x + 0.5 * x * x
    g[1:] += 0.5 * x[:-1]
    g[:-1] += 0.5 * x[1:]
    return g


def _point(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, P)
    g = gradient(x)
    wrong = int(rng.integers(P))
    g[wrong] *= 1.01
    return x, g, wrong


class Timed:
    """``f`` that records when each evaluation ended (to time the detection phase)."""

    def __init__(self, f):
        self.f, self.stamps, self.start = f, [], 0.0

    def reset(self):
        self.stamps.clear()
        self.start = time.perf_counter()

    def __call__(self, x):
        value = self.f(x)
        self.stamps.append(time.perf_counter() - self.start)
        return value


@pytest.fixture(scope="module")
def full_reference():
    """Seconds a full check would take: time per entry from two samples, times P."""
    x, g, _ = _point()
    loss(x)

    def sample(n):
        start = time.perf_counter()
        r = gp.check(loss, x, g, mode="sample", samples=n, seed=1)
        return time.perf_counter() - start, r.evaluations

    t_small, e_small = sample(200)
    t_large, e_large = sample(1000)
    per_entry = (t_large - t_small) / 800
    per_eval = (t_large - t_small) / (e_large - e_small)
    return per_entry * P, per_entry, per_eval


def _row(bench_table, label, timed, report, wrong, seconds, full_seconds):
    d = report.directional
    ev = d["evaluations"]
    first_round = ev["setup"] + ev["directions"] // d["rounds"]
    named = report.params["x"].failed_indices == [(wrong,)]
    bench_table(TITLE, COLUMNS).add(
        label, first_round, timed.stamps[first_round - 1], report.evaluations, seconds,
        "yes" if named else f"NO {report.params['x'].failed_indices}",
        f"{report.resolution:.2g}", f"{full_seconds / seconds:,.0f}")
    return named


@pytest.mark.benchmark(group="W4 directional 1M parameters")
@pytest.mark.parametrize("mode", ["directional", "auto"])
def test_w4_directional(benchmark, bench_table, full_reference, mode):
    x, g, wrong = _point()
    timed = Timed(loss)
    loss(x)  # warm-up

    def run():
        timed.reset()
        return gp.check(timed, x, g, mode=mode)

    report = benchmark.pedantic(run, rounds=3, iterations=1, warmup_rounds=0)
    assert report.params["x"].failed_indices == [(wrong,)], str(report)
    assert report.evaluations <= 200 or mode == "auto"
    assert _row(bench_table, f'mode="{mode}"', timed, report, wrong, benchmark.stats["median"],
                full_reference[0])
    if mode == "directional":
        table = bench_table(TITLE, COLUMNS)
        table.note("report: " + str(report).splitlines()[0].split("  (")[1].rstrip(")"))
        table.note("detect = set-up (base point, noise probe) + the first round of 4 "
                   "directions (4 evaluations each); name = everything, including "
                   "bisection, the entry-wise verdict and a confirming round")
        try:
            import torch  # noqa: F401
        except ImportError:
            table.note("torch not installed: the torch gradcheck row is skipped")


@pytest.mark.benchmark(group="W4 directional 1M parameters")
def test_w4_full_check_extrapolated(benchmark, bench_table, full_reference):
    """What ``mode="full"`` would cost (a 1,000-entry sample is the benchmarked part)."""
    x, g, _ = _point()
    benchmark.pedantic(lambda: gp.check(loss, x, g, mode="sample", samples=1000, seed=1),
                       rounds=1, iterations=1)
    full_seconds, per_entry, per_eval = full_reference
    bench_table(TITLE, COLUMNS).add(
        'mode="full" (extrapolated)', "-", "-", 2 * P + 19, full_seconds, "(would)", "-", 1)
    bench_table(TITLE, COLUMNS).note(
        f"full check extrapolated from samples of 200 and 1,000 entries: "
        f"{per_entry * 1e3:.3g} ms per entry ({per_eval * 1e3:.3g} ms per evaluation) x {P:,}")


@pytest.mark.benchmark(group="W4 directional 1M parameters")
def test_w4_torch_gradcheck_fast_mode(benchmark, bench_table, full_reference):
    torch = pytest.importorskip("torch", reason="torch not installed: column skipped")
    x, g, wrong = _point()

    class Loss(torch.autograd.Function):
        @staticmethod
        def forward(ctx, t):
            ctx.save_for_backward(t)
            return torch.as_tensor(loss(t.detach().numpy()), dtype=t.dtype)

        @staticmethod
        def backward(ctx, out):
            (t,) = ctx.saved_tensors
            return out * torch.as_tensor(g, dtype=t.dtype)  # the same wrong entry

    t = torch.tensor(x, dtype=torch.float64, requires_grad=True)

    def run():
        try:
            return torch.autograd.gradcheck(Loss.apply, (t,), fast_mode=True,
                                            raise_exception=False)
        except Exception:  # pragma: no cover - version differences
            return None

    ok = benchmark.pedantic(run, rounds=1, iterations=1)
    bench_table(TITLE, COLUMNS).add(
        "torch gradcheck(fast_mode=True)", "-", "-", "-", benchmark.stats["median"],
        "detected" if ok is False else "missed (passed)" if ok else "error", "-",
        f"{full_reference[0] / benchmark.stats['median']:,.0f}")
