"""The lean verdict of large checks against the naive one that keeps every array.

``compare_param`` keeps only the failed/kink masks and the summary numbers
(computed in the verdict's own pass); a report recomputes per-entry errors
on access. Everything a user can read must equal what the naive verdict
(``naive.naive_compare``: judge everything, re-judge everything after each
step, keep every array) gives, bit for bit, on both sides of the kernel
threshold and with chunks small enough that ties and NaNs cross chunk borders.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from gradprobe import config
from gradprobe.report.reports import CheckReport
from gradprobe.differences.stencils import Estimate
from gradprobe.report.metrics import entry_metrics
from gradprobe.verdict.compare import compare_param

from naive import naive_compare


def _problem(size: int, seed: int, sides: bool):
    """A gradient with wrong entries, NaNs, true and fake kinks, ties and exact zeros."""
    rng = np.random.default_rng(seed)
    exact = rng.normal(size=size) * 10.0 ** rng.integers(-3, 3, size)
    exact[rng.choice(size, size // 10, replace=False)] = 0.0  # ties of ratio 0
    numeric = exact * (1 + 1e-11 * rng.normal(size=size))
    bar = np.abs(exact) * 1e-9 + 1e-300
    analytic = exact.copy()
    picks = rng.choice(size, 60, replace=False)
    wrong, nan_a, nan_n, kinks = picks[:30], picks[30:33], picks[33:36], picks[36:]
    analytic[wrong] *= 1.01
    analytic[wrong[:3]] += 1.0  # wrong where the exact value is 0 too
    analytic[nan_a] = np.nan
    numeric[nan_n] = np.nan
    left = right = None
    if sides:
        left, right = numeric - 1e-13, numeric + 1e-13
        analytic[kinks] = numeric[kinks] + 0.5
        left[kinks], right[kinks] = numeric[kinks] - 2.0, numeric[kinks] + 2.0
    true_kinks = kinks[::2]

    def refine(positions):
        value = exact[positions] * (1 + 1e-14)
        return Estimate(value, np.abs(value) * 1e-12 + 1e-300,
                        None if left is None else value - 1e-13,
                        None if right is None else value + 1e-13)

    def refine_keeping_sides(positions):
        value = exact[positions] * (1 + 1e-14)
        return Estimate(value, np.abs(value) * 1e-12 + 1e-300)

    def kink_probe(positions):
        jump = np.where(np.isin(positions, true_kinks), 2.0, 1e-6)
        return numeric[positions] - jump, numeric[positions] + jump

    return analytic, Estimate(numeric, bar, left, right), refine, refine_keeping_sides, \
        kink_probe


def _same(report, naive, analytic):
    failed, kink, numeric, bar, abs_error, rel_error, ratio = naive
    np.testing.assert_array_equal(report.failed_mask, failed)
    np.testing.assert_array_equal(report.kink_mask, kink)
    np.testing.assert_array_equal(report.numeric_flat, numeric)
    np.testing.assert_array_equal(report.error_bar_flat, bar)
    np.testing.assert_array_equal(report.abs_error_flat, abs_error)
    np.testing.assert_array_equal(report.rel_error_flat, rel_error)
    np.testing.assert_array_equal(report.ratio_flat, ratio)
    smooth = ~kink
    np.testing.assert_array_equal(report.max_abs_error, abs_error[smooth].max(initial=0.0))
    np.testing.assert_array_equal(report.max_rel_error, rel_error[smooth].max(initial=0.0))
    masked = np.where(smooth, ratio, -1.0)
    worst = None if masked.max() < 0 else np.unravel_index(int(np.argmax(masked)),
                                                           report.shape)
    assert report.worst_index == (None if worst is None else tuple(int(i) for i in worst))
    assert report.failed_indices == [tuple(int(i) for i in np.unravel_index(k, report.shape))
                                     for k in np.flatnonzero(failed)]
    order = np.argsort(-np.where(np.isnan(ratio), np.inf, ratio), kind="stable")[:7]
    rows = report.worst_entries(7)
    assert [r["index"] for r in rows] == [list(np.unravel_index(k, report.shape))
                                          for k in order]
    for r, k in zip(rows, order):
        np.testing.assert_array_equal([r["abs_error"], r["rel_error"], r["ratio"]],
                                      [abs_error[k], rel_error[k], ratio[k]])


@pytest.mark.parametrize("size", [3000, 250_000])
@pytest.mark.parametrize("sides", [False, True])
@pytest.mark.parametrize("steps", ["none", "refine", "refine+probe", "keep-sides+probe"])
def test_lean_verdict_equals_the_naive_verdict(size, sides, steps, monkeypatch):
    monkeypatch.setattr(config, "VERDICT_CHUNK", 997)  # many chunks, borders everywhere
    analytic, est, refine, refine_keeping, probe = _problem(size, size + sides, sides)
    refine_fn = {"none": None, "refine": refine, "refine+probe": refine,
                 "keep-sides+probe": refine_keeping}[steps]
    probe_fn = probe if steps.endswith("probe") else None
    shape = (size // 100, 100)
    a0 = analytic.copy()
    naive = naive_compare(analytic, Estimate(est.value.copy(), est.error_bar.copy(), est.left,
                                             est.right), config.DEFAULT_RTOL[np.dtype("f8")],
                          1e-6, refine_fn, probe_fn, config.CONFIRM_LIMIT,
                          config.KINK_JUMP_KEPT)
    report = compare_param("W", shape, np.float64, None, analytic.reshape(shape), est,
                           rtol=None, atol=1e-6, refine=refine_fn, kink_probe=probe_fn)
    assert report.failed > 20
    assert bool(report.kinks) == (sides and steps in ("none", "keep-sides+probe"))
    _same(report, naive, analytic)
    np.testing.assert_array_equal(analytic, a0)
    # the same with an explicit index array
    explicit = compare_param("W", shape, np.float64, np.arange(size, dtype=np.int64),
                             analytic.reshape(shape), Estimate(naive[2].copy(),
                                                               naive[3].copy()),
                             rtol=None, atol=1e-6)
    assert explicit.full and explicit.checked == size


def test_summary_of_a_check_that_is_all_kinks_or_empty():
    a = np.array([1.0, 2.0])
    est = Estimate(np.array([0.0, 0.0]), np.array([1e-12, 1e-12]), np.array([-2.0, -2.0]),
                   np.array([3.0, 3.0]))
    r = compare_param("w", (2,), np.float64, None, a, est, rtol=1e-6, atol=0.0)
    assert r.kinks == [(0,), (1,)] and r.worst_index is None and r.max_abs_error == 0.0
    empty = compare_param("w", (0,), np.float64, np.zeros(0, dtype=np.int64), np.zeros(0),
                          Estimate(np.zeros(0), np.zeros(0)), rtol=None, atol=None)
    assert empty.checked == 0 and empty.worst_index is None and empty.worst_entries() == []


def test_lazily_recomputed_arrays_are_the_verdicts():
    rng = np.random.default_rng(1)
    n = rng.normal(size=300_000)
    bar = np.full(n.size, 1e-9)
    a = n * (1 + 1e-7 * rng.normal(size=n.size))
    r = compare_param("w", n.shape, np.float64, None, a, Estimate(n, bar), rtol=1e-5,
                      atol=0.0)
    assert r.__dict__["_ratio_flat"] is None and r.__dict__["_flat_indices"] is None
    err, rel, _, ratio = entry_metrics(a, n, bar, 1e-5, 0.0)
    np.testing.assert_array_equal(r.ratio_flat, ratio)
    np.testing.assert_array_equal(r.abs_error_flat, err)
    np.testing.assert_array_equal(r.flat_indices, np.arange(n.size))
    assert r.checked == n.size and r.full


def test_summary_of_a_large_report_stays_small():
    """Every entry of a 2000 x 2000 gradient wrong: to_dict lists config.REPORT_MAX_INDICES
    failed indices and counts the rest; str lists REPORT_WORST entries."""
    shape = (2000, 2000)
    rng = np.random.default_rng(2)
    n = rng.normal(size=shape[0] * shape[1])
    n = 1.0 + rng.random(shape[0] * shape[1])
    r = compare_param("W", shape, np.float64, None, (2 * n).reshape(shape),
                      Estimate(n, np.full(n.size, 1e-12)), rtol=None, atol=None)
    assert r.failed == n.size
    report = CheckReport(params={"W": r}, method="central", mode="full", backend="python",
                         evaluations=1, seconds=0.0, upcast=False, noise=0.0, loss=0.0)
    data = report.to_dict()
    p = data["params"]["W"]
    assert len(p["failed_indices"]) == config.REPORT_MAX_INDICES
    assert p["failed_indices"][:2] == [[0, 0], [0, 1]]
    assert p["failed_indices_omitted"] == n.size - config.REPORT_MAX_INDICES
    assert p["kinks"] == [] and p["kinks_omitted"] == 0
    assert len(json.dumps(data)) < 60 * config.REPORT_MAX_INDICES
    text = str(report)
    assert len(text.splitlines()) < 20 and len(text) < 4000


@pytest.mark.parametrize("seed", range(6))
def test_the_numpy_passes_chunk_by_chunk_give_the_whole_arrays_summary(seed, monkeypatch):
    """Before the fused kernel is compiled (a first run), large checks take the NumPy
    passes; they run config.VERDICT_CHUNK entries at a time and must give what the
    whole per-entry arrays give (NaN, ties, kinks included)."""
    from gradprobe import config
    from gradprobe.report import numpy_metrics as verdict

    rng = np.random.default_rng(seed)
    size = 101
    a = rng.normal(size=size)
    n = a * (1 + rng.choice([0.0, 1e-9, 1e-2], size=size))
    n[rng.integers(0, size, 3)] = a[rng.integers(0, size, 3)] + 5.0  # ties of large errors
    if seed % 2:
        a[rng.integers(0, size)] = np.nan
    bar = np.abs(rng.normal(size=size)) * 1e-8
    kink = rng.random(size) < 0.1
    whole = verdict._error_metrics(a, n, bar, 1e-5, 1e-9)
    expected = verdict._summary_of(whole[0], whole[1], whole[3], kink)
    expected_plain = verdict._summary_of(whole[0], whole[1], whole[3], np.zeros(size, bool))
    monkeypatch.setattr(config, "VERDICT_CHUNK", 7)
    failed, summary = verdict._passes(a, n, bar, 1e-5, 1e-9, None, want_failed=True)
    np.testing.assert_array_equal(failed, whole[3] > 1.0)
    np.testing.assert_equal(summary, expected_plain)
    np.testing.assert_equal(verdict._passes(a, n, bar, 1e-5, 1e-9, kink, want_failed=False)[1],
                            expected)
