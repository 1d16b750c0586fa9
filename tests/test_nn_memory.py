"""Memory of a full structured check: a small multiple of the parameter bytes.

tracemalloc sees every NumPy allocation (the kernels' per-chunk scratch is
small and not traced); the bound is ``config.FULL_CHECK_PEAK_FACTOR``.
"""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

from gradprobe import config
from gradprobe import nn


def _problem(n: int, loss: str):
    rng = np.random.default_rng(n)
    model = nn.Sequential([nn.Dense(n, n, seed=1)],
                          loss=nn.MSE() if loss == "mse" else nn.SoftmaxCrossEntropy())
    X = rng.standard_normal((16, n))
    T = rng.standard_normal((16, n)) if loss == "mse" else rng.integers(0, n, 16)
    return model, X, T


@pytest.mark.parametrize("given", [True, False])
@pytest.mark.parametrize("loss", ["mse", "softmax_ce"])
def test_full_check_peak_memory_is_bounded(loss, given):
    n = 512  # 262,656 entries: above config.VERDICT_KERNEL_MIN_ENTRIES
    model, X, T = _problem(n, loss)
    grads = model.gradients(X, T) if given else None
    nn.check_model(model, X, T, grads)  # compile and warm up outside the measurement
    param_bytes = sum(p.nbytes for p in model.parameters().values())
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        report = nn.check_model(model, X, T, grads)
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert report.passed and report.params["0.W"].checked == n * n
    print(f"{loss} grads given={given}: peak {peak / param_bytes:.2f} x parameter bytes")
    assert peak <= config.FULL_CHECK_PEAK_FACTOR * param_bytes


def test_a_planted_error_is_still_named_with_its_values():
    model, X, T = _problem(512, "softmax_ce")
    grads = model.gradients(X, T)
    exact = grads["0.W"][7, 300]
    grads["0.W"][7, 300] *= 1.01
    report = nn.check_model(model, X, T, grads)
    p = report.params["0.W"]
    assert p.failed_indices == [(7, 300)] and p.worst_index == (7, 300)
    np.testing.assert_allclose(p.numeric[7, 300], exact, rtol=1e-7)
    assert p.analytic[7, 300] == grads["0.W"][7, 300]
    assert p.max_rel_error == pytest.approx(0.01 / 1.01, rel=1e-6)
    assert "0.W[7, 300]" in str(report)
