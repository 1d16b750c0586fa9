"""What str(report) and to_dict() show of a large parameter, from one lean pass.

The worst entries and the table's "max rel err" come from one pass over the
entries (:func:`gradprobe.report.metrics.presentation`: a fused kernel for
large checks, NumPy chunk by chunk otherwise), not from per-entry arrays.
Both must equal what the whole per-entry arrays give (the naive reference
below), with NaN, inf, ties and kinks crossing chunk borders; and a lean
report must print exactly what a report holding every array prints.
"""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest

from gradprobe import config
from gradprobe.differences.stencils import Estimate, Stencil, estimate_rows
from gradprobe.report import metrics, metrics_kernel, numpy_metrics
from gradprobe.report.reports import CheckReport
from gradprobe.verdict.compare import compare_param


def _naive(a, n, bar, rtol, atol, kink, count):
    """Top ratios by a stable argsort of all of them; the shown relative error
    from the whole arrays."""
    _, rel, _, ratio = numpy_metrics._error_metrics(a, n, np.broadcast_to(bar, a.shape),
                                                    rtol, atol)
    order = np.argsort(-np.where(np.isnan(ratio), np.inf, ratio), kind="stable")[:count]
    scale = np.maximum(np.abs(a), np.abs(n))
    with np.errstate(invalid="ignore"):
        meaningful = ~kink & ((scale > np.maximum(atol, np.nan_to_num(
            np.broadcast_to(bar, a.shape), nan=0.0))) | ~np.isfinite(rel))
    shown = float(rel[meaningful].max()) if meaningful.any() else None
    return order, shown


def _arrays(size, seed):
    """Errors over many scales, exact zeros, ties, NaN and inf on every side."""
    rng = np.random.default_rng(seed)
    a = rng.normal(size=size) * 10.0 ** rng.integers(-8, 4, size)
    n = a * (1 + rng.choice([0.0, 1e-12, 1e-6, 1e-2], size=size))
    bar = np.abs(a) * 10.0 ** rng.integers(-14, -4, size)
    if size:
        k = max(1, size // 20)
        a[rng.choice(size, k)] = 0.0
        n[rng.choice(size, k)] = 0.0
        ties = rng.choice(size, k)
        a[ties], n[ties], bar[ties] = 1.0, 2.0, 1e-9
        for target, value in ((a, np.nan), (n, np.nan), (n, np.inf), (a, -np.inf),
                              (bar, np.nan), (bar, np.inf)):
            if seed % 3:  # some cases without any non-finite value
                target[rng.integers(0, size)] = value
    kink = rng.random(size) < 0.05
    return a, n, bar, kink


@pytest.mark.parametrize("size", [0, 1, 6, 97, 2000])
@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("count", [0, 1, 5, 33])
def test_kernel_and_numpy_presentation_equal_the_whole_arrays(size, seed, count):
    a, n, bar, kink = _arrays(size, seed)
    expected = _naive(a, n, bar, 1e-5, 1e-10, kink, count)
    for chunk in (7, 64, 1 << 16):
        for fn in (metrics_kernel.presentation, numpy_metrics.presentation):
            order, shown = fn(a, n, bar, 1e-5, 1e-10, kink, count, chunk)
            np.testing.assert_array_equal(order, expected[0])
            np.testing.assert_equal(shown, expected[1])


def test_a_scalar_error_bar_and_all_kinks():
    a, n = np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.1, 3.3])
    for fn in (metrics_kernel.presentation, numpy_metrics.presentation):
        order, shown = fn(a, n, 1e-9, 1e-5, 0.0, np.zeros(3, bool), 3, 2)
        assert order.tolist() == [2, 1, 0] and shown == pytest.approx(0.3 / 3.3)
        order, shown = fn(a, n, 1e-9, 1e-5, 0.0, np.ones(3, bool), 2, 2)
        assert order.tolist() == [2, 1] and shown is None


@pytest.mark.parametrize("kernel", [False, True])
@pytest.mark.parametrize("seed", range(3))
def test_a_lean_report_prints_what_a_report_with_every_array_prints(kernel, seed,
                                                                    monkeypatch):
    monkeypatch.setattr(config, "VERDICT_CHUNK", 61)
    monkeypatch.setattr(config, "VERDICT_KERNEL_MIN_ENTRIES", 100 if kernel else 10 ** 9)
    if kernel:
        monkeypatch.setattr(metrics_kernel, "ready", lambda: True)
    a, n, bar, _ = _arrays(3000, seed)
    a = np.where(np.isfinite(a), a, 1.0)
    left, right = n - 1e-3, n + 1e-3
    left[::97], right[::97] = n[::97] - 5.0, n[::97] + 5.0  # kinks where a is in between
    a[::97] = n[::97] + 1.0
    lean = compare_param("W", (30, 100), np.float64, None, a.reshape(30, 100),
                         Estimate(n, bar, left, right), rtol=None, atol=None)
    assert lean.kinks and lean.failed and lean.__dict__["_ratio_flat"] is None
    err, rel, _, ratio = numpy_metrics._error_metrics(lean.analytic_flat, lean.numeric_flat,
                                                      lean.error_bar_flat, lean.rtol,
                                                      lean.atol)
    stored = dataclasses.replace(lean, abs_error_flat=err, rel_error_flat=rel,
                                 ratio_flat=ratio, flat_indices=None)
    reports = [CheckReport(params={"W": p}, method="central", mode="full", backend="python",
                           evaluations=1, seconds=0.0, upcast=False, noise=0.0, loss=0.0)
               for p in (lean, stored)]
    assert str(reports[0]) == str(reports[1])
    assert json.dumps(reports[0].to_dict()) == json.dumps(reports[1].to_dict())
    for count in (0, 3, 40):
        np.testing.assert_equal(lean.worst_entries(count), stored.worst_entries(count))


def test_str_and_to_dict_share_one_pass(monkeypatch):
    calls = []
    real = metrics.presentation

    def counted(*args):
        calls.append(args[-1])
        return real(*args)

    monkeypatch.setattr(metrics, "presentation", counted)
    a = np.linspace(1.0, 2.0, 500)
    p = compare_param("w", a.shape, np.float64, None, a, Estimate(a * (1 + 1e-3),
                                                                  np.full(a.size, 1e-12)),
                      rtol=None, atol=None)
    report = CheckReport(params={"w": p}, method="central", mode="full", backend="python",
                         evaluations=1, seconds=0.0, upcast=False, noise=0.0, loss=0.0)
    text, data = str(report), report.to_dict()
    assert len(calls) == 1 and "FAILED" in text and len(data["params"]["w"]["worst_entries"]) \
        == config.REPORT_WORST


@pytest.mark.parametrize("method", ["central", "forward", "richardson"])
@pytest.mark.parametrize("per_row", [False, True])
def test_estimate_rows_in_chunks_equals_one_call(method, per_row):
    rng = np.random.default_rng(5)
    size = 203
    x = rng.normal(size=size) * 10.0 ** rng.integers(-3, 3, size)
    st = Stencil(method)
    points = st.points(x, np.full(size, 1e-4) * np.maximum(1.0, np.abs(x)))
    losses = np.sin(points) + x[:, None] ** 2
    f0 = np.sin(x) + x ** 2 if per_row else 0.7
    noise = np.abs(rng.normal(size=size)) * 1e-15 if per_row else 1e-15
    whole = st.estimate(losses, x, points, f0, noise, 2.0 ** -52, local=True)
    for chunk in (1, 10, 202, 203):
        rows = estimate_rows(st, losses, x, points, f0, noise, 2.0 ** -52, local=True,
                             chunk=chunk)
        for key in ("value", "error_bar", "left", "right", "step", "truncation"):
            np.testing.assert_array_equal(getattr(rows, key), getattr(whole, key))


@pytest.mark.parametrize("check", ["jacobian", "vjp"])
def test_array_valued_checks_in_row_chunks_equal_one_call(check, monkeypatch):
    """Line estimates of every output entry run config.ESTIMATE_CHUNK rows at a time:
    the same estimates, bars and verdicts as in one call."""
    import gradprobe as gp

    x = np.linspace(-2.0, 2.0, 60)

    def f(x):
        return np.tanh(x) * np.cumsum(x) / 10.0

    def run():
        if check == "jacobian":
            jac = np.diag(1 - np.tanh(x) ** 2) * np.cumsum(x)[:, None] / 10.0 + \
                np.tanh(x)[:, None] * np.tril(np.ones((60, 60))) / 10.0
            jac[3, 3] *= 1.01
            return gp.check_jacobian(f, x, jac)
        return gp.check_vjp(f, x, lambda u, x: (1 - np.tanh(x) ** 2) * np.cumsum(x) * u / 10
                            + np.cumsum((np.tanh(x) * u)[::-1])[::-1] / 10.0)

    whole = run()
    monkeypatch.setattr(config, "ESTIMATE_CHUNK", 7)
    chunked = run()
    assert whole.status == chunked.status
    for name, p in whole.params.items():
        q = chunked.params[name]
        np.testing.assert_array_equal(p.numeric, q.numeric)
        np.testing.assert_array_equal(p.error_bar, q.error_bar)
        assert (p.failed_indices, p.kinks) == (q.failed_indices, q.kinks)
    if check == "jacobian":
        assert whole.params[next(iter(whole.params))].failed_indices == [(3, 3)]
    else:
        assert whole.passed


def _naive_merge(reports):
    """The merge of per-cotangent runs with every field held as a (runs, entries) array."""
    entries = np.unique(np.concatenate([r.flat_indices for r in reports]))
    k, u = len(reports), entries.size
    ratio = np.full((k, u), -np.inf)
    failed = np.zeros((k, u), dtype=bool)
    fields = ("analytic_flat", "numeric_flat", "error_bar_flat", "abs_error_flat",
              "rel_error_flat", "ratio_flat")
    values = {f: np.full((k, u), np.nan) for f in fields}
    for i, r in enumerate(reports):
        pos = np.searchsorted(entries, r.flat_indices)
        ratio[i, pos] = np.where(np.isnan(r.ratio_flat), np.inf, r.ratio_flat)
        failed[i, pos] = r.failed_mask
        for f in fields:
            values[f][i, pos] = getattr(r, f)
    primary = max(range(k), key=lambda i: (reports[i].failed,
                                           float(ratio[i].max(initial=-np.inf))))
    choice = np.argmax(ratio, axis=0)
    choice = np.where(failed.any(axis=0), np.argmax(np.where(failed, ratio, -np.inf), axis=0),
                      choice)
    choice = np.where(failed[primary], primary, choice)
    return {f: values[f][choice, np.arange(u)] for f in fields}


@pytest.mark.parametrize("seed", range(4))
def test_merged_runs_keep_the_values_of_the_run_chosen_for_each_entry(seed):
    from gradprobe.checks.vector_setup import merge_runs

    rng = np.random.default_rng(seed)
    size = 400
    runs = []
    for k in range(3):
        exact = rng.normal(size=size)
        a = exact * (1 + rng.choice([0.0, 1e-9, 1e-2], size=size, p=[0.6, 0.35, 0.05]))
        a[rng.integers(0, size)] = np.nan if seed % 2 else a[0]
        entries = None if k != 1 or seed < 2 else np.sort(rng.choice(size, 150, replace=False))
        est = Estimate(exact if entries is None else exact[entries],
                       np.full(size if entries is None else 150, 1e-10))
        runs.append({"x": compare_param("x", (size,), np.float64, entries, a, est,
                                        rtol=None, atol=None)})
    merged = merge_runs(runs)["x"]
    expected = _naive_merge([run["x"] for run in runs])
    assert merged.failed > 0
    for f, want in expected.items():
        np.testing.assert_array_equal(getattr(merged, f), want, err_msg=f)
