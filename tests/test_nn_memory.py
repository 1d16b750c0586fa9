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


@pytest.mark.parametrize("mode", ["full", "sample"])
def test_entry_by_entry_layers_chunked_equal_one_call(mode, monkeypatch):
    """The entry-by-entry path (a layer with layers after it) in chunks of 13 entries,
    the W/b border inside a chunk: the same estimates, verdicts and kinks."""
    rng = np.random.default_rng(4)
    model = nn.Sequential([nn.Dense(9, 7, seed=0), nn.ReLU(), nn.Dense(7, 5, seed=1)],
                          loss=nn.SoftmaxCrossEntropy())
    X, T = rng.standard_normal((6, 9)), rng.integers(0, 5, 6)
    grads = model.gradients(X, T)
    grads["0.W"][2, 3] *= 1.01
    options = {"mode": mode, "samples": 40} if mode == "sample" else {}
    whole = nn.check_model(model, X, T, grads, **options)
    monkeypatch.setattr(config, "ESTIMATE_CHUNK", 13)
    chunked = nn.check_model(model, X, T, grads, **options)
    for name, p in whole.params.items():
        q = chunked.params[name]
        np.testing.assert_array_equal(p.numeric, q.numeric)
        np.testing.assert_array_equal(p.error_bar, q.error_bar)
        assert (p.failed_indices, p.kinks) == (q.failed_indices, q.kinks)
    if mode == "full":
        assert whole.params["0.W"].failed_indices == [(2, 3)]
