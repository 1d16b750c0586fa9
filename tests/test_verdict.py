"""The verdict: allowances, the fused kernel against its NumPy reference, kinks."""
from __future__ import annotations

import numpy as np
import pytest

from gradprobe import config
from gradprobe.differences.stencils import Estimate
from gradprobe.report.metrics import _error_metrics
from gradprobe.verdict.compare import compare_param, judge
from gradprobe.report.metrics_kernel import error_metrics

EDGE = np.array([0.0, -0.0, 1.0, -1.0, 1e-300, 5e-324, 1e300, np.inf, -np.inf, np.nan, 2.5])


@pytest.mark.parametrize("rtol,atol", [(1e-5, 0.0), (0.0, 0.0), (1e-3, 1e-7), (0.0, 1.0)])
@pytest.mark.parametrize("size", [1, 7, 1000])
def test_kernel_matches_numpy_reference_bit_for_bit(rtol, atol, size):
    rng = np.random.default_rng(size)
    a = rng.normal(size=size) * 10.0 ** rng.integers(-8, 8, size)
    n = a * (1 + rng.normal(size=size) * 10.0 ** rng.integers(-12, -1, size))
    bar = np.abs(rng.normal(size=size)) * 10.0 ** rng.integers(-14, -2, size)
    if size >= len(EDGE):
        a[:len(EDGE)] = EDGE
        n[:len(EDGE)] = EDGE[::-1]
        bar[:3] = 0.0
    fast = error_metrics(a, n, bar, rtol, atol)
    slow = _error_metrics(a, n, bar, rtol, atol)
    for x, y in zip(fast, slow):
        np.testing.assert_array_equal(x, y)


def test_large_checks_use_the_kernel_with_identical_verdicts(monkeypatch):
    rng = np.random.default_rng(0)
    g = rng.normal(size=(300, 400))
    est = Estimate((g * (1 + 1e-12 * rng.normal(size=g.shape))).ravel(),
                   np.full(g.size, 1e-12))
    bad = g.copy()
    bad[17, 3] *= 1.01
    entries = np.arange(g.size, dtype=np.int64)
    big = compare_param("W", g.shape, np.float64, entries, bad, est, rtol=None, atol=None)
    monkeypatch.setattr(config, "VERDICT_KERNEL_MIN_ENTRIES", 10 ** 12)
    small = compare_param("W", g.shape, np.float64, entries, bad, est, rtol=None, atol=None)
    assert big.failed_indices == small.failed_indices == [(17, 3)]
    np.testing.assert_array_equal(big.ratio_flat, small.ratio_flat)


def test_an_entry_fails_only_outside_every_allowance():
    est = Estimate(np.array([1.0, 1.0, 1.0]), np.array([0.0, 0.05, 0.0]))
    a = np.array([1.02, 1.02, 1.02])
    assert judge(a, est, rtol=0.0, atol=0.0).failed.tolist() == [True, False, True]
    assert not judge(a, est, rtol=0.03, atol=0.0).failed.any()
    assert not judge(a, est, rtol=0.0, atol=0.03).failed.any()


def test_nonfinite_analytic_values_always_fail():
    est = Estimate(np.array([1.0, 2.0]), np.array([1e300, 1e300]))
    verdict = judge(np.array([np.nan, np.inf]), est, rtol=1.0, atol=1e300)
    assert verdict.failed.all() and np.all(verdict.ratio == np.inf)


def test_kink_needs_a_jump_that_brackets_the_analytic_value():
    value = np.array([0.5, 0.5, 0.5])
    est = Estimate(value, np.full(3, 1e-12), left=np.array([0.0, 0.0, 0.49999]),
                   right=np.array([1.0, 1.0, 0.50001]))
    verdict = judge(np.array([0.0, 2.0, 0.0]), est, rtol=1e-5, atol=0.0)
    assert verdict.kink.tolist() == [True, False, False]
    assert verdict.failed.tolist() == [False, True, True]


def test_a_gradient_zero_in_exact_arithmetic_passes_with_rounding_on_the_checks_scale():
    import gradprobe as gp

    rng = np.random.default_rng(5)
    W = rng.standard_normal((4, 3)).astype(np.float32)
    b = rng.standard_normal(3).astype(np.float32)

    def loss(W, b):            # b cancels: its exact gradient is 0
        return np.sum(np.sin(W)) + np.sum(b) - np.sum(b)

    eps32 = np.finfo(np.float32).eps
    rounding = (eps32 * np.array([1.0, -2.0, 1.0])).astype(np.float32)  # a few ulps of 1
    good = gp.check(loss, (W, b), (np.cos(W), rounding))
    assert good.passed, good
    wrong = np.cos(W).astype(np.float64)
    wrong[1, 2] *= 1.01
    bad = gp.check(loss, (W.astype(np.float64), b.astype(np.float64)), (wrong, np.zeros(3)))
    assert bad.params["W"].failed_indices == [(1, 2)]


@pytest.mark.parametrize("size", [2, 5000])  # NumPy reference and the fused kernel
def test_nonfinite_numeric_values_always_fail(size, monkeypatch):
    # inf - inf allowances gave ratio NaN, and NaN > 1 is False: a difference quotient that
    # overflowed (or a NaN estimate) passed and showed as "ok"
    monkeypatch.setattr(config, "VERDICT_KERNEL_MIN_ENTRIES", 1000)
    value = np.ones(size)
    value[:2] = [np.inf, np.nan]
    est = Estimate(value, np.full(size, 1e-12))
    verdict = judge(np.ones(size), est, rtol=1e-5, atol=0.0)
    assert verdict.failed[:2].all() and not verdict.failed[2:].any()
    assert np.all(verdict.ratio[:2] == np.inf)


@pytest.mark.parametrize("dtype,ratio", [(np.float64, 1e-3), (np.float64, 1e-6),
                                         (np.float32, 1e-2), (np.float32, 1e-4)])
def test_a_small_but_real_gradient_keeps_its_own_scale(dtype, ratio):
    # the check-wide atol floor is for gradients at the rounding level of the check's
    # scale only: a 1 % error in a parameter whose gradient is far smaller than another
    # parameter's (but far above rounding) is still caught, and named
    import gradprobe as gp

    rng = np.random.default_rng(3)
    W = rng.standard_normal((5, 4)).astype(dtype)
    t = rng.standard_normal(3).astype(dtype)

    def loss(W, t):
        return np.sum(np.sin(W)) + ratio * np.sum(np.cos(t))

    grads = (np.cos(W), (-ratio * np.sin(t)).astype(dtype))
    assert gp.check(loss, (W, t), grads).passed
    wrong = grads[1].copy()
    wrong[1] *= 1.01
    assert gp.check(loss, (W, t), (grads[0], wrong)).params["t"].failed_indices == [(1,)]
