"""A forward pass that changes between calls is never a pass, on any entry point;
structural problems are named findings in the report of check_vjp and check_layer."""
from __future__ import annotations

import json

import numpy as np
import pytest

import gradprobe as gp
from gradprobe.report.findings import Finding
from gradprobe.verdict.determinism import reproducibility

X = np.random.default_rng(0).normal(size=(4, 5))


def dropout(seed):
    """x * mask / keep with a mask redrawn on every call (correct gradient: mask / keep)."""
    state = np.random.default_rng(seed)

    def f(x):
        return x * (state.random(x.shape) > 0.5) * 2.0

    return f


def jitter(seed, size):
    """A deterministic function plus random noise of ``size`` relative to its value."""
    state = np.random.default_rng(seed)
    return lambda x: np.sin(x) * (1 + size * state.standard_normal(x.shape))


def _inconclusive(report):
    assert report.status == "inconclusive" and not report.passed and not report
    kinds = [f.kind for f in report.findings]
    assert kinds == ["nondeterministic-forward"], kinds
    text = str(report)
    assert text.startswith("gradprobe check INCONCLUSIVE: nondeterministic-forward")
    assert "fix the random seed" in text and "evaluation mode" in text
    d = report.to_dict()
    json.dumps(d)
    assert d["status"] == "inconclusive" and d["findings"][0]["kind"] == \
        "nondeterministic-forward"
    assert all(p.status == "inconclusive" for p in report.params.values())


@pytest.mark.parametrize("seed", range(3))
def test_every_entry_point_is_inconclusive_for_a_redrawn_dropout(seed, unchanged):
    f = dropout(seed)
    loss = lambda x: float(np.sum(f(x) ** 2))
    x = X.copy()
    with unchanged(x):
        _inconclusive(gp.check(loss, x, 2 * x))
        _inconclusive(gp.check(loss, x, 2 * x, mode="sample", samples=5))
        _inconclusive(gp.check(loss, x, 2 * x, method="richardson"))
        _inconclusive(gp.check_vjp(f, x, lambda u, x: 2 * u))
        _inconclusive(gp.check_vjp(f, x, lambda u, x: 2 * u, compression=False))
        _inconclusive(gp.check_jvp(f, x, lambda t, x: 2 * t))
        _inconclusive(gp.check_jacobian(f, x[0], 2 * np.eye(5)))
        _inconclusive(gp.check_hvp(loss, x[0], lambda v, x: 8 * v))
        _inconclusive(gp.check_hvp(None, x[0], lambda v, x: 2 * v, grad=f))
        with pytest.raises(gp.GradientCheckError, match="INCONCLUSIVE: nondeterministic-forward"):
            gp.assert_gradients(loss, x, 2 * x)


@pytest.mark.parametrize("size", [1e-3, 1e-6, 1e-9])
def test_noise_thousands_of_times_the_rounding_is_never_a_pass(size):
    # a correct gradient of a function that changes between calls by `size`
    f = jitter(1, size)
    loss = lambda x: float(np.sum(f(x)))
    for report in (gp.check(loss, X, np.cos(X)),
                   gp.check_vjp(f, X, lambda u, x: u * np.cos(x)),
                   gp.check_jvp(f, X, lambda t, x: t * np.cos(x))):
        assert not report.passed and report.status == "inconclusive", str(report)


def test_deterministic_functions_have_no_finding():
    for report in (gp.check(lambda x: float(np.sum(np.sin(x))), X, np.cos(X)),
                   gp.check_vjp(np.sin, X, lambda u, x: u * np.cos(x)),
                   gp.check_jvp(np.sin, X, lambda t, x: t * np.cos(x)),
                   gp.check(lambda x: np.sum(np.sin(x)), X, np.cos(X), method="complex")):
        assert report.passed and report.findings == []


def test_rounding_level_differences_are_within_the_noise():
    # a reduction that rounds differently on every call (threads): a few ulps
    state = np.random.default_rng(3)

    def f(x):
        order = state.permutation(x.size)
        return float(np.sum(np.sin(x).reshape(-1)[order]))

    x = np.random.default_rng(4).normal(size=200)
    report = gp.check(f, x, np.cos(x))
    assert report.passed, str(report)


def test_nondeterminism_tol_allows_a_known_difference():
    f = jitter(2, 1e-9)
    loss = lambda x: float(np.sum(f(x)))
    assert gp.check(loss, X, np.cos(X)).status == "inconclusive"
    report = gp.check(loss, X, np.cos(X), nondeterminism_tol=1e-6, rtol=1e-3)
    assert "nondeterministic-forward" not in [f.kind for f in report.findings]
    assert any("within nondeterminism_tol" in n for n in report.notes)
    with pytest.raises(ValueError, match="nondeterminism_tol"):
        gp.check(loss, X, np.cos(X), nondeterminism_tol=-1.0)


def test_the_rule_itself():
    y = np.array([1.0, -2.0, 3.0])
    assert reproducibility(y, [("a second call", y.copy())], eval_dtype=np.float64) == \
        (None, None)
    tiny = y * (1 + 4e-16)
    finding, note = reproducibility(y, [("call 2", tiny)], eval_dtype=np.float64,
                                    noise=1e-15)
    assert finding is None and "not bit-reproducible" in note
    finding, _ = reproducibility(y, [("call 2", y + 1e-6)], eval_dtype=np.float64, noise=1e-15)
    assert finding.status == "inconclusive" and "call 2" in finding.message
    # within the measured noise, but a noise thousands of times the rounding level
    finding, _ = reproducibility(y, [("call 2", y + 1e-6)], eval_dtype=np.float64, noise=1e-6)
    assert finding is not None
    finding, _ = reproducibility(y, [("call 2", y[:2])], eval_dtype=np.float64)
    assert "shape" in finding.message


def test_a_failed_finding_beats_an_inconclusive_one_and_both_beat_the_entries():
    report = gp.check(lambda w: float(np.sum(w ** 2)), np.ones(3), 2 * np.ones(3))
    assert report.status == "passed"
    report.add_findings([Finding("nondeterministic-forward", "inconclusive", "n: x")])
    assert report.status == "inconclusive" and report.params["w"].status == "inconclusive"
    report.add_findings([Finding("zero-cotangent", "failed", "zero-cotangent: x", ("w",))])
    assert report.status == "failed" and "FAILED (0 entries, " in repr(report)
    bad = gp.check(lambda w: float(np.sum(w ** 2)), np.ones(3), np.ones(3))
    bad.add_findings([Finding("nondeterministic-forward", "inconclusive", "n: x")])
    assert bad.status == "inconclusive"
    with pytest.raises(TypeError, match="Finding"):
        bad.add_findings(["not a finding"])


# -- layers -------------------------------------------------------------------------------

class Dropout:
    def __init__(self, seed=0, training=True):
        self.rng, self.training = np.random.default_rng(seed), training

    def forward(self, x):
        self.mask = (self.rng.random(x.shape) > 0.5) * 2.0 if self.training else 1.0
        return x * self.mask

    def backward(self, g):
        return g * self.mask


def test_a_dropout_layer_in_training_mode_is_inconclusive_and_in_eval_mode_passes():
    report = gp.check_layer(Dropout(), X)
    _inconclusive(report)
    assert "layer.forward is not a function" in str(report)
    assert gp.check_layer(Dropout(training=False), X).passed


def test_a_fixed_mask_dropout_whose_backward_ignores_it_fails():
    class FixedMask(Dropout):   # the mask is drawn once: a function; backward forgets it
        def forward(self, x):
            if not hasattr(self, "fixed"):
                self.fixed = (self.rng.random(x.shape) > 0.5) * 2.0
            return x * self.fixed

        def backward(self, g):
            return g * 2.0

    report = gp.check_layer(FixedMask(), X)
    assert report.status == "failed" and report.findings == []


# -- structural checks through the front ends -----------------------------------------------

class Tanh:
    def forward(self, x):
        self.y = np.tanh(x)
        return self.y

    def backward(self, g):
        return g * (1 - self.y ** 2)


PLANTED = {
    "backward-mutates-cotangent": lambda: type("InPlace", (Tanh,), {
        "backward": lambda self, g: np.multiply(g, 1 - self.y ** 2, out=g)}),
    "forward-mutates-input": lambda: type("Clobber", (Tanh,), {"forward": _clobber}),
    "nondeterministic-backward": lambda: type("Noisy", (Tanh,), {
        "backward": lambda self, g: Tanh.backward(self, g)
        * (1 + 1e-3 * np.random.default_rng().standard_normal(g.shape))}),
    "zero-cotangent": lambda: type("Offset", (Tanh,), {
        "backward": lambda self, g: Tanh.backward(self, g) + 1e-3}),
    "gradient-dtype": lambda: type("Rounded", (Tanh,), {
        "backward": lambda self, g: np.round(100 * Tanh.backward(self, g)).astype(np.int64)}),
}


def _clobber(layer, x):
    y = np.tanh(x)
    x[...] = 0.0          # overwrites the caller's array
    layer.y = y
    return y


@pytest.mark.parametrize("kind", list(PLANTED))
def test_every_structural_check_fails_a_planted_layer(kind, unchanged):
    x = X.copy()
    with unchanged(x):
        report = gp.check_layer(PLANTED[kind]()(), x)
    assert report.status == "failed"
    assert kind in [f.kind for f in report.findings], str(report)
    assert f"failed: {kind}:" in str(report)
    assert kind in report.to_dict()["params"]["input"]["findings"]
    assert gp.check_layer(Tanh(), X).findings == []


def test_structural_findings_in_check_vjp():
    def vjp(u, x):
        u *= 1 - np.tanh(x) ** 2
        return u

    report = gp.check_vjp(np.tanh, X, vjp)
    assert [f.kind for f in report.findings] == ["backward-mutates-cotangent"]
    assert report.status == "failed" and not report.passed
