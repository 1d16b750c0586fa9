"""Structural checks (no finite differences): each one fails on a planted bug and
passes on correct forward/backward pairs; the caller's arrays are never written."""
from __future__ import annotations

import numpy as np
import pytest

from gradprobe.checks.structural import STRUCTURAL_CHECKS, structural_checks
from gradprobe.report.findings import Finding, findings_status

rng = np.random.default_rng(0)
X = rng.normal(size=(4, 3))
W = rng.normal(size=(3, 2))
B = rng.normal(size=2)


def dense(x, W, b):
    return x @ W + b


def dense_vjp(u, x, W, b):
    return u @ W.T, x.T @ u, u.sum(axis=0)


def kinds(result):
    return [f.kind for f in result.findings]


CORRECT = [
    ("tanh", np.tanh, lambda u, x: u * (1 - np.tanh(x) ** 2), [X]),
    ("dense", dense, dense_vjp, [X, W, B]),
    ("float32 dense", dense, dense_vjp,
     [X.astype(np.float32), W.astype(np.float32), B.astype(np.float32)]),
    ("two outputs", lambda x: (np.sin(x), x ** 2),
     lambda u, x: u[0] * np.cos(x) + 2 * x * u[1], [X]),
    ("embedding (integer ids)", lambda ids, E: E[ids],
     lambda u, ids, E: (None, _scatter(u, ids, E.shape)),
     [np.array([0, 2, 2, 1]), rng.normal(size=(3, 5))]),
    ("0-d input", lambda a: a ** 3, lambda u, a: 3 * a ** 2 * u, [np.array(1.5)]),
]


def _scatter(u, ids, shape):
    g = np.zeros(shape)
    np.add.at(g, ids, u)
    return g


@pytest.mark.parametrize("name, forward, vjp, inputs", CORRECT, ids=[c[0] for c in CORRECT])
def test_correct_pairs_pass_every_check(name, forward, vjp, inputs):
    saved = [a.copy() for a in inputs]
    result = structural_checks(forward, vjp, inputs)
    assert result.passed, [f.message for f in result.findings]
    assert result.checks == STRUCTURAL_CHECKS
    assert result.forward_calls == 1 and result.vjp_calls == 3
    for a, s in zip(inputs, saved):
        assert a.dtype == s.dtype and a.tobytes() == s.tobytes()


def test_integer_inputs_are_not_differentiated_and_none_is_fine():
    ids, E = np.array([0, 2, 2, 1]), rng.normal(size=(3, 5))
    u = rng.normal(size=(4, 5))
    result = structural_checks(lambda ids, E: E[ids],
                               lambda u, ids, E: (None, _scatter(u, ids, E.shape)), [ids, E], u)
    assert result.passed and result.grads[0] is None
    expected = np.zeros((3, 5))
    for row, i in enumerate(ids):  # repeated ids add up
        expected[i] += u[row]
    np.testing.assert_allclose(result.grads[1], expected, rtol=0, atol=1e-15)


# -- each check fails on a planted example ------------------------------------------

def test_forward_that_writes_into_its_input():
    def forward(x):
        x *= 2.0
        return x

    x = X.copy()
    result = structural_checks(forward, lambda u, x: 2 * u, [x], names=["x"])
    assert kinds(result) == ["forward-mutates-input"]
    assert result.findings[0].names == ("x",) and "x[0, 0]" in result.findings[0].message
    np.testing.assert_array_equal(x, X)   # the caller's array is untouched


def test_backward_that_writes_into_its_cotangent():
    def vjp(u, x):
        u *= 1 - np.tanh(x) ** 2
        return u

    result = structural_checks(np.tanh, vjp, [X])
    assert kinds(result) == ["backward-mutates-cotangent"]
    assert "g = g * mask" in result.findings[0].message


def test_backward_that_writes_into_a_cotangent_of_several_outputs():
    def vjp(u, x):
        u[1][0, 0] = 0.0
        return u[0] * np.cos(x) + 2 * x * u[1]

    result = structural_checks(lambda x: (np.sin(x), x ** 2), vjp, [X])
    assert kinds(result) == ["backward-mutates-cotangent"]
    assert "cotangent[1][0, 0]" in result.findings[0].message


def test_backward_that_writes_into_an_input():
    def vjp(u, x, W, b):
        W -= 0.1 * (x.T @ u)   # an "update step" inside backward
        return u @ W.T, x.T @ u, u.sum(axis=0)

    result = structural_checks(dense, vjp, [X, W, B], names=["x", "W", "b"])
    assert kinds(result) == ["backward-mutates-input"]
    assert result.findings[0].names == ("W",)


def test_gradient_with_a_broadcast_shape():
    def vjp(u, x, W, b):
        return u @ W.T, x.T @ u, u.sum(axis=0, keepdims=True)   # (1, 2) for b's (2,)

    result = structural_checks(dense, vjp, [X, W, B], names=["x", "W", "b"])
    assert kinds(result) == ["gradient-shape"]
    assert "(1, 2)" in result.findings[0].message and "broadcast" in result.findings[0].message


def test_gradient_transposed_shape():
    result = structural_checks(dense, lambda u, x, W, b: (u @ W.T, (x.T @ u).T, u.sum(0)),
                               [X, W, B], names=["x", "W", "b"])
    assert kinds(result) == ["gradient-shape"]
    assert "transposed" in result.findings[0].message


@pytest.mark.parametrize("bad", [lambda g: g.astype(np.int64), lambda g: g.tolist(),
                                 lambda g: g.astype(np.complex128)])
def test_gradient_that_is_not_a_floating_array(bad):
    result = structural_checks(np.sin, lambda u, x: bad(u * np.cos(x)), [X])
    assert kinds(result) == ["gradient-dtype"]


def test_wrong_number_of_gradients_and_none_for_a_float_input():
    result = structural_checks(dense, lambda u, x, W, b: (u @ W.T, x.T @ u), [X, W, B])
    assert kinds(result) == ["gradient-structure"] and "a tuple of 2" in \
        result.findings[0].message
    result = structural_checks(dense, lambda u, x, W, b: (u @ W.T, None, u.sum(0)),
                               [X, W, B], names=["x", "W", "b"])
    assert kinds(result) == ["gradient-structure"] and result.findings[0].names == ("W",)


def test_gradient_accumulated_across_calls_fails_the_zero_cotangent():
    class Layer:  # accumulates its weight gradient and never resets it
        dW = np.zeros_like(W)

    def vjp(u, x, W, b):
        Layer.dW += x.T @ u
        return u @ W.T, Layer.dW.copy(), u.sum(axis=0)

    result = structural_checks(dense, vjp, [X, W, B], names=["x", "W", "b"])
    assert "zero-cotangent" in kinds(result)
    assert [f.names for f in result.findings if f.kind == "zero-cotangent"] == [("W",)]


def test_constant_added_to_the_gradient_fails_the_zero_cotangent():
    result = structural_checks(np.sin, lambda u, x: u * np.cos(x) + 1e-12, [X])
    assert kinds(result) == ["zero-cotangent"]


def test_nan_for_a_zero_cotangent_is_not_zero():
    with np.errstate(invalid="ignore"):
        result = structural_checks(np.sin, lambda u, x: u * np.cos(x) / (u != 0), [X])
    assert "zero-cotangent" in kinds(result)


def test_backward_that_redraws_its_mask_is_nondeterministic():
    state = np.random.default_rng(1)

    def vjp(u, x):
        return u * (state.random(x.shape) > 0.5) * 2.0

    result = structural_checks(lambda x: x, vjp, [X])
    assert kinds(result) == ["nondeterministic-backward"]
    assert "nondeterminism_tol" in result.findings[0].message


def test_nondeterminism_tolerance_is_relative_to_the_largest_entry():
    calls = [0]

    def vjp(u, x):   # the third call (the repeat) rounds differently
        calls[0] += 1
        g = u * np.cos(x)
        return g * (1 + 1e-12) if calls[0] == 3 else g

    assert kinds(structural_checks(np.sin, vjp, [X])) == ["nondeterministic-backward"]
    calls[0] = 0
    assert structural_checks(np.sin, vjp, [X], nondeterminism_tol=1e-10).passed
    calls[0] = 0
    assert not structural_checks(np.sin, vjp, [X], nondeterminism_tol=1e-14).passed


def test_checks_can_be_selected():
    result = structural_checks(np.sin, lambda u, x: u * np.cos(x) + 1e-12, [X],
                               checks=["gradient-shape"])
    assert result.passed and result.checks == ("gradient-shape",) and result.vjp_calls == 1


def test_given_cotangent_is_used_and_not_written():
    u = rng.normal(size=X.shape)
    saved = u.copy()
    result = structural_checks(np.sin, lambda u, x: u * np.cos(x), [X], u)
    np.testing.assert_array_equal(result.grads[0], saved * np.cos(X))
    assert u.tobytes() == saved.tobytes()


@pytest.mark.parametrize("kwargs, match", [
    ({"nondeterminism_tol": -1.0}, "nondeterminism_tol"),
    ({"nondeterminism_tol": float("nan")}, "nondeterminism_tol"),
    ({"checks": ["zero-grad"]}, "unknown structural checks"),
    ({"names": ["a", "b"]}, "names"),
])
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        structural_checks(np.sin, lambda u, x: u * np.cos(x), [X], **kwargs)


def test_findings_status_order():
    failed = Finding("zero-cotangent", "failed", "zero-cotangent: x")
    unsure = Finding("nondeterministic-forward", "inconclusive", "nondeterministic-forward: x")
    assert findings_status([unsure]) == "inconclusive"
    assert findings_status([unsure, failed]) == "failed"
    assert findings_status([]) is None
    with pytest.raises(ValueError, match="status"):
        Finding("x", "passed", "x")


def test_a_forward_that_redraws_its_mask_is_not_blamed_on_the_backward():
    # vjp runs the forward again (as check_layer does on each copy): its backward reuses the
    # forward's mask correctly, so the disagreement is the forward's, which the determinism
    # rule reports as inconclusive; the structural checks do not call it a backward bug
    state = np.random.default_rng(2)
    mask = {}

    def forward(x):
        mask["m"] = (state.random(x.shape) > 0.5) * 2.0
        return x * mask["m"]

    def vjp(u, x):
        forward(x)
        return u * mask["m"]

    assert structural_checks(forward, vjp, [X]).passed


def test_check_layer_of_a_dropout_that_redraws_its_mask_is_inconclusive():
    import gradprobe as gp

    class Dropout:
        def __init__(self):
            self.rng = np.random.default_rng(0)

        def forward(self, x):
            self.mask = (self.rng.random(x.shape) > 0.5) * 2.0
            return x * self.mask

        def backward(self, g):
            return g * self.mask

    report = gp.check_layer(Dropout(), np.random.default_rng(1).standard_normal((4, 5)))
    assert report.status == "inconclusive" and not report.passed
    assert [f.kind for f in report.findings] == ["nondeterministic-forward"]
