"""mode="auto": a full check when it fits the time budget, directions + a sample otherwise."""
from __future__ import annotations

import time

import numpy as np
import pytest

import gradprobe as gp
from naive import mlp_grad, mlp_loss, mlp_point


def _mlp():
    params, X, T = mlp_point(seed=4, n_in=6, n_hidden=9)
    return params, mlp_grad(*params, X, T), (X, T)


def test_cheap_problems_get_a_full_check(unchanged):
    params, grads, args = _mlp()
    with unchanged(params):
        report = gp.check(mlp_loss, params, grads, args=args, mode="auto")
    assert report.passed and report.mode == "auto" and report.strategy == "full"
    assert report.directional is None and report.resolution is None
    assert all(p.full and p.checked == p.analytic.size for p in report.params.values())
    assert "mode=auto: full" in str(report)
    full = gp.check(mlp_loss, params, grads, args=args)
    for name, p in report.params.items():
        np.testing.assert_array_equal(p.numeric, full.params[name].numeric)


def test_expensive_problems_get_directions_and_a_sample(unchanged):
    params, grads, args = _mlp()
    with unchanged(params):
        report = gp.check(mlp_loss, params, grads, args=args, mode="auto", budget_s=1e-6)
    assert report.passed and report.strategy == "directional+sample"
    assert report.directional["strategy"] == "directional+sample"
    assert report.resolution is not None and report.resolution > 0
    for p in report.params.values():  # a sample from *every* parameter
        assert p.checked == min(32, p.analytic.size if p.full else 32)
    assert any("budget_s=1e-06" in note for note in report.notes)
    assert "mode=auto: directional+sample" in str(report)


def test_a_slow_loss_is_detected_from_the_measured_time_of_one_evaluation():
    rng = np.random.default_rng(0)
    w = rng.normal(size=4000)

    def slow(w):
        time.sleep(0.002)  # a 4,000-entry full check would take ~16 s
        return float(np.sum(np.sin(w)))

    g = np.cos(w)
    g[2345] *= 1.01
    start = time.perf_counter()
    report = gp.check(slow, w, g, mode="auto")
    assert time.perf_counter() - start < 4.0
    assert report.strategy == "directional+sample"
    assert report.params["w"].failed_indices == [(2345,)], str(report)
    assert report.evaluations < 300


def test_auto_names_a_planted_error_with_the_sample_alongside():
    params, grads, args = _mlp()
    bad = [g.copy() for g in grads]
    bad[0][2, 5] += 0.01
    report = gp.check(mlp_loss, params, tuple(bad), args=args, mode="auto", budget_s=1e-6,
                      samples=4)
    W1 = report.params["W1"]
    assert W1.failed_indices == [(2, 5)], str(report)
    assert W1.checked == 5 and W1.diagnosis.startswith("localized")
    assert all(p.passed for n, p in report.params.items() if n != "W1")


def test_dense_errors_beyond_the_budget_are_judged_on_the_sample():
    rng = np.random.default_rng(1)
    W = rng.normal(size=(60, 50))

    def f(W):
        return float(np.sum(np.sin(W)))

    report = gp.check(f, W, -np.cos(W), mode="auto", budget_s=1e-6)
    p = report.params["W"]
    assert not report.passed and report.directional["dense"] == ["W"]
    assert p.checked == 32 and p.failed == 32 and not p.full
    assert p.diagnosis.startswith("sign-flipped")
    assert any("dense" in note and "mode='full'" in note for note in report.notes)
    # mode="directional" has no budget: the dense parameter is checked entry by entry
    report = gp.check(f, W, -np.cos(W), mode="directional")
    assert report.params["W"].full and report.params["W"].failed == W.size


def test_assert_gradients_takes_the_same_options():
    params, grads, args = _mlp()
    report = gp.assert_gradients(mlp_loss, params, grads, args=args, mode="auto",
                                 budget_s=1e-6, directions=2, seed=3)
    assert report.directional["directions"] == 2
    bad = [g.copy() for g in grads]
    bad[3][1] *= 1.01
    with pytest.raises(gp.GradientCheckError) as info:
        gp.assert_gradients(mlp_loss, params, tuple(bad), args=args, mode="auto",
                            budget_s=1e-6)
    assert info.value.report.params["b2"].failed_indices == [(1,)]
    assert "b2[1]" in str(info.value)


def test_user_arrays_untouched_when_f_raises_in_auto_mode(unchanged):
    params, grads, args = _mlp()
    calls = []

    def f(*a):
        calls.append(1)
        if len(calls) > 30:
            raise RuntimeError("late")
        return mlp_loss(*a)

    with unchanged(params), unchanged(list(grads)):
        with pytest.raises(RuntimeError, match="late"):
            gp.check(f, params, grads, args=args, mode="auto", budget_s=1e-6)


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"mode": "directional", "directions": 0}, ValueError, "directions=0 is not valid"),
    ({"mode": "auto", "directions": -2}, ValueError, "directions=-2 is not valid"),
    ({"mode": "directional", "directions": 2.5}, ValueError, "directions=2.5 is not valid"),
    ({"mode": "full", "directions": 4}, ValueError,
     "directions is only used with mode='directional' or mode='auto'"),
    ({"mode": "sample", "directions": 4}, ValueError, "directions is only used"),
    ({"mode": "auto", "budget_s": 0}, ValueError, "budget_s=0 is not valid"),
    ({"mode": "auto", "budget_s": -1.0}, ValueError, "budget_s=-1.0 is not valid"),
    ({"mode": "auto", "budget_s": float("inf")}, ValueError, "budget_s=inf is not valid"),
    ({"mode": "auto", "budget_s": "2s"}, TypeError, "budget_s must be a number"),
    ({"budget_s": 2.0}, ValueError, "budget_s=2 is only used with mode='auto'"),
    ({"mode": "directional", "budget_s": 2.0}, ValueError, "only used with mode='auto'"),
    ({"mode": "directional", "samples": 5}, ValueError, "samples=5 is only used"),
])
def test_bad_options(kwargs, exc, match, unchanged):
    w = np.ones(3)
    with unchanged(w):
        with pytest.raises(exc, match=match):
            gp.check(lambda w: np.sum(w ** 2), w, 2 * w, **kwargs)
