"""W7: black-box NumPy layers, full check_vjp from compressed Jacobians.

A user's layer is a NumPy forward and a hand-written backward; gradprobe sees
only functions. For each layer, measured side by side in one run:

* the full check of every input (default ``compression="auto"``), on the
  correct backward and with one entry of the largest input's gradient off by
  1 % (the row says whether exactly that entry was named);
* the entry-by-entry path (``compression=False``), extrapolated from a
  ``mode="sample"`` check of ``SAMPLES`` entries per input (it would take
  hours on the dense layer);
* the floor ``evaluations x t_forward``: the evaluations the compressed check
  spent times the median time of one forward call, measured in the same run
  (calls just before and just after the check, interleaved with it);
* the time the check spent inside ``f`` itself: what is left over is
  gradprobe's own work (this split does not depend on the machine's load,
  which on shared cores can change ``t_forward`` several-fold within a run);
* ``torch.autograd.gradcheck`` (slow mode) on the same layer written in torch,
  extrapolated from a sub-sample of its columns, when torch is installed
  (skipped cleanly otherwise).

Run: ``python -m pytest benchmarks/test_w7_layers.py --benchmark-only``.
"""
from __future__ import annotations

import os
import time

import numpy as np
import pytest

import gradprobe as gp
from gradprobe.examples.blackbox_layers import (conv3x3, dense_tanh, elementwise, planted,
                                                row_softmax)

TITLE = "W7: black-box NumPy layers, full check_vjp (3 cotangents, float64, central)"
COLUMNS = ("layer", "backward", "entries", "evaluations", "s", "verdict", "named",
           "floor evals x t_fwd s", "x floor", "in f s", "own work %",
           "entry by entry s (extrap.)", "x faster")
#: Entries per input of the sampled entry-by-entry check that is extrapolated.
SAMPLES = 40

CASES = {
    "dense 1024->1024 batch 64 tanh": lambda: dense_tanh(batch=64, n_in=1024, n_out=1024),
    "conv 3x3 16->32 16x16 batch 8": lambda: conv3x3(batch=8, c_in=16, c_out=32, size=16),
    "elementwise (64, 4096)": lambda: elementwise(shape=(64, 4096)),
    "row softmax (64, 512)": lambda: row_softmax(shape=(64, 512)),
}
if os.environ.get("GRADPROBE_W7_QUICK"):  # a smoke run of the plumbing
    CASES["dense 1024->1024 batch 64 tanh"] = lambda: dense_tanh(batch=64, n_in=128,
                                                                 n_out=128)

_REFERENCE: dict[str, tuple[float, float]] = {}


def _forward_times(f, inputs, repeats=7):
    f(*inputs)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        f(*inputs)
        times.append(time.perf_counter() - start)
    return times


def _timed(f, spent):
    """``f``, adding the seconds of every call to ``spent[0]``."""
    def timed(*args):
        start = time.perf_counter()
        try:
            return f(*args)
        finally:
            spent[0] += time.perf_counter() - start

    return timed


def _entry_by_entry(name, f, vjp, inputs):
    """Seconds of the entry-by-entry full check, extrapolated from a sample."""
    if name not in _REFERENCE:
        sizes = [a.size for a in inputs]
        start = time.perf_counter()
        gp.check_vjp(f, inputs, vjp, compression=False, mode="sample", samples=SAMPLES,
                     progress=False)
        seconds = time.perf_counter() - start
        sampled = sum(min(s, SAMPLES) for s in sizes)
        _REFERENCE[name] = (seconds * sum(sizes) / sampled, seconds)
    return _REFERENCE[name][0]


@pytest.mark.benchmark(group="W7 black-box layers")
@pytest.mark.parametrize("backward", ["correct", "one entry 1 % off"])
@pytest.mark.parametrize("name", list(CASES))
def test_w7_full_check(benchmark, bench_table, name, backward):
    f, vjp, inputs = CASES[name]()
    sizes = [a.size for a in inputs]
    which = int(np.argmax(sizes))
    index = None
    if backward != "correct":
        g = vjp(np.ones_like(f(*inputs)), *inputs)[which]
        index = tuple(int(i) for i in np.unravel_index(int(np.argmax(np.abs(g))), g.shape))
        vjp = planted(vjp, which, index)
    before = _forward_times(f, inputs)
    spent = [0.0]
    report = benchmark.pedantic(lambda: gp.check_vjp(_timed(f, spent), inputs, vjp,
                                                     progress=False),
                                rounds=1, iterations=1, warmup_rounds=0)
    seconds = benchmark.stats["median"]
    t_fwd = float(np.median(before + _forward_times(f, inputs)))
    floor = report.evaluations * t_fwd
    reference = _entry_by_entry(name, f, vjp, inputs)
    names = list(report.params)
    if index is None:
        named = "-"
        assert report.passed, str(report)
    else:
        failed = {n: p.failed_indices for n, p in report.params.items()}
        exact = failed[names[which]] == [index] and not any(
            v for n, v in failed.items() if n != names[which])
        named = f"{names[which]}{list(index)}" if exact else f"NO: {failed}"
        assert exact, str(report)
    table = bench_table(TITLE, COLUMNS)
    table.add(name, backward, f"{sum(sizes):,}", f"{report.evaluations:,}", seconds,
              report.status, named, floor, f"{seconds / floor:.2f}", spent[0],
              f"{100 * (seconds - spent[0]) / seconds:.0f}", reference,
              f"{reference / seconds:,.0f}")
    if backward == "correct":
        table.note(f"{name}: " + "; ".join(f"{n} {p.strategy}" for n, p in
                                          report.params.items()))
        table.note(f"{name}: t_forward {t_fwd * 1e3:.3g} ms; entry-by-entry sample of "
                   f"{SAMPLES} entries per input took {_REFERENCE[name][1]:.3g} s")


@pytest.mark.benchmark(group="W7 black-box layers")
@pytest.mark.parametrize("name", ["conv 3x3 16->32 16x16 batch 8", "row softmax (64, 512)"])
def test_w7_torch_gradcheck_slow_mode(benchmark, bench_table, name):
    torch = pytest.importorskip("torch", reason="torch not installed: column skipped")
    f, _, inputs = CASES[name]()
    tensors = tuple(torch.tensor(a, requires_grad=True) for a in inputs)
    if name.startswith("conv"):
        def layer(x, K, b):
            return torch.tanh(torch.nn.functional.conv2d(x, K, b, padding=1))
    else:
        def layer(x):
            return torch.softmax(x, dim=-1)
    # slow mode builds the whole Jacobian column by column: time a few columns
    sub = tuple(t.detach()[:1].clone().requires_grad_(True) if i == 0 else t
                for i, t in enumerate(tensors))
    ok = benchmark.pedantic(lambda: torch.autograd.gradcheck(layer, sub, fast_mode=False),
                            rounds=1, iterations=1)
    scale = sum(t.numel() for t in tensors) / sum(t.numel() for t in sub)
    bench_table(TITLE, COLUMNS).add(
        f"{name}: torch gradcheck (slow)", "correct", f"{sum(a.size for a in inputs):,}",
        "-", benchmark.stats["median"] * scale, "passed" if ok else "failed", "-", "-", "-",
        "-", "-", "-", "-")
    bench_table(TITLE, COLUMNS).note(
        "torch gradcheck rows are extrapolated from the first batch item's columns")
