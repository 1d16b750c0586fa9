"""The complex step's error bar against exact derivatives, over many scales.

Its bar is the noise of ``f`` relative to the size of ``f``'s terms. That size
is not ``|f(x)|`` when the terms cancel at the point (a loss minus its value
there, a residual that vanishes): a bar relative to ``|f(x)| ~ 0`` was
infinite and let every error pass.
"""
from __future__ import annotations

import numpy as np
import pytest

import gradprobe as gp

SCALES = [1e-6, 1e-3, 1e-1, 1.0, 10.0, 1e3, 1e6]


def _cases(kind: str, rng: np.random.Generator):
    for scale in SCALES:
        for _ in range(4):
            w0 = rng.standard_normal(12) * scale
            c = rng.standard_normal(12)
            if kind == "cancelling":  # f(w0) == 0 up to rounding
                const = complex(np.sum(c * w0 ** 3)).real
                yield scale, w0, (lambda w, c=c, k=const: np.sum(c * w ** 3) - k), 3 * c * w0 ** 2
            elif kind == "plain":
                yield scale, w0, (lambda w, c=c: np.sum(c * w ** 3)), 3 * c * w0 ** 2
            else:  # computed through complex64: float32 noise in both parts
                yield scale, w0, (lambda w, c=c: np.sum((c * w ** 3).astype(np.complex64))
                                  .astype(np.complex128)), 3 * c * w0 ** 2


@pytest.mark.parametrize("kind", ["cancelling", "plain", "complex64 inside"])
def test_correct_gradients_pass_and_one_percent_errors_are_named(kind):
    rng = np.random.default_rng(["cancelling", "plain", "complex64 inside"].index(kind))
    total = passed = named = 0
    for scale, w0, f, g in _cases(kind, rng):
        total += 1
        passed += gp.check(f, w0, g, method="complex").passed
        if kind == "complex64 inside":
            continue  # float32 arithmetic: a 1 % error is not the claim here
        bad = g.copy()
        j = int(np.argmax(np.abs(g)))
        bad[j] *= 1.01
        r = gp.check(f, w0, bad, method="complex")
        named += (not r.passed) and r.params["w"].failed_indices == [(j,)]
    print(f"{kind}: {passed}/{total} correct gradients passed, "
          f"{named}/{total} planted 1 % errors named")
    assert passed == total
    if kind != "complex64 inside":
        assert named == total


def test_the_bar_of_a_cancelling_loss_is_finite_and_small():
    w0 = np.array([0.5, -2.0, 3.0])
    const = float(np.sum(w0 ** 3))
    r = gp.check(lambda w: np.sum(w ** 3) - const, w0, 3 * w0 ** 2, method="complex")
    bar = r.params["w"].error_bar_flat
    assert np.all(np.isfinite(bar))
    assert np.all(bar <= 1e-10 * np.abs(3 * w0 ** 2))
