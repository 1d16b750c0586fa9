"""Black-box estimates chunk by chunk: the same numbers as one call, bounded temporaries."""
from __future__ import annotations

import numpy as np
import pytest

import gradprobe as gp
from gradprobe import config

from naive import quartic, quartic_grad


@pytest.mark.parametrize("method", ["central", "forward", "richardson"])
def test_chunked_estimates_equal_one_call(method, monkeypatch):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 37))
    g = quartic_grad(x)
    g[3, 5] *= 1.01
    whole = gp.check(quartic, x, g, method=method, backend="python")
    monkeypatch.setattr(config, "ESTIMATE_CHUNK", 7)  # 159 chunks, the last one short
    chunked = gp.check(quartic, x, g, method=method, backend="python")
    a, b = whole.params["x"], chunked.params["x"]
    np.testing.assert_array_equal(a.numeric, b.numeric)
    np.testing.assert_array_equal(a.error_bar, b.error_bar)
    assert a.failed_indices == b.failed_indices == [(3, 5)]
    assert (a.max_abs_error, a.worst_index) == (b.max_abs_error, b.worst_index)


def test_a_nonfinite_loss_in_a_later_chunk_names_its_entry(monkeypatch):
    monkeypatch.setattr(config, "ESTIMATE_CHUNK", 4)
    x = np.ones(10)

    def f(x):
        return np.inf if x[9] != 1.0 else float(np.sum(x ** 2))

    with pytest.raises(ValueError, match=r"x\[9\]"):
        gp.check(f, x, 2 * x, backend="python")
