"""Each diagnosis keyword comes from a planted bug of that kind, never from a pass."""
from __future__ import annotations

import numpy as np
import pytest

import gradprobe as gp
from naive import mlp_grad, mlp_loss, mlp_point


def _check(mutate):
    params, X, T = mlp_point(seed=11, n_in=5, n_hidden=5)
    grads = [g.copy() for g in mlp_grad(*params, X, T)]
    mutate(grads)
    return gp.check(mlp_loss, params, tuple(grads), args=(X, T))


def _keyword(report, name):
    d = report.params[name].diagnosis
    return None if d is None else d.split(":")[0]


def test_correct_gradients_have_no_diagnosis():
    report = _check(lambda g: None)
    assert report.passed
    assert all(p.diagnosis is None for p in report.params.values())


@pytest.mark.parametrize("mutate,name,keyword,detail", [
    (lambda g: g.__setitem__(0, -g[0]), "W1", "sign-flipped", "-numeric"),
    (lambda g: g.__setitem__(0, g[0] * 16), "W1", "scaled", "missing 1/16"),
    (lambda g: g.__setitem__(2, g[2] * 2), "W2", "scaled", "factor 2"),
    (lambda g: g.__setitem__(0, g[0] * 0.37), "W1", "scaled", "0.37"),
    (lambda g: g.__setitem__(0, g[0].T.copy()), "W1", "transposed", "numeric.T"),
    (lambda g: g.__setitem__(0, np.zeros_like(g[0])), "W1", "zero", "never written"),
    (lambda g: g[1].__setitem__(2, np.nan), "b1", "nonfinite", "first at (2,)"),
    (lambda g: g[0].__setitem__((1, 2), g[0][1, 2] + 1.0), "W1", "localized", "(1, 2)"),
    (lambda g: g[0].__setitem__((3, slice(None)), g[0][3] + 1.0), "W1", "localized", "row 3"),
    (lambda g: g[0].__setitem__((slice(None), 4), g[0][:, 4] * 3 + 1), "W1", "localized",
     "column 4"),
])
def test_planted_bug_gets_its_keyword(mutate, name, keyword, detail):
    report = _check(mutate)
    assert _keyword(report, name) == keyword, str(report)
    assert detail in report.params[name].diagnosis
    assert name in str(report) and keyword in str(report)
    others = [p for n, p in report.params.items() if n != name]
    assert all(p.diagnosis is None for p in others)


def test_swapped_gradients_name_the_other_parameter():
    def f(a, b):
        return np.sum(np.sin(a) * 2.0 + np.cos(b) * 3.0)

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 3)), rng.normal(size=(3, 3))
    report = gp.check(f, (a, b), (-3.0 * np.sin(b), 2.0 * np.cos(a)))
    assert report.params["a"].diagnosis.startswith("swapped")
    assert "'b'" in report.params["a"].diagnosis


# -- nondeterministic, noisy, mismatch; diagnoses under their row; directional mode -------

def _mlp_callable_grads(noise):
    """A grads callable; ``noise`` > 0 plants a dropout-like randomness in the backward pass."""
    rng = np.random.default_rng()

    def grads(W1, b1, W2, b2, X, T):
        g = list(mlp_grad(W1, b1, W2, b2, X, T))
        if noise:
            g[0] = g[0] * (1.0 + noise * rng.standard_normal(g[0].shape))
        return tuple(g)

    return grads


def test_nondeterministic_grads_callable_is_diagnosed():
    params, X, T = mlp_point(seed=11, n_in=5, n_hidden=5)
    report = gp.check(mlp_loss, params, _mlp_callable_grads(0.05), args=(X, T))
    assert _keyword(report, "W1") == "nondeterministic", str(report)
    assert "two calls" in report.params["W1"].diagnosis
    assert all(p.diagnosis is None for n, p in report.params.items() if n != "W1")


def test_deterministic_grads_callable_gets_no_diagnosis_and_no_note():
    params, X, T = mlp_point(seed=11, n_in=5, n_hidden=5)
    report = gp.check(mlp_loss, params, _mlp_callable_grads(0.0), args=(X, T))
    assert report.passed and all(p.diagnosis is None for p in report.params.values())
    assert not any("two calls" in note for note in report.notes)


def test_tiny_nondeterminism_within_tolerance_is_a_note_not_a_failure():
    params, X, T = mlp_point(seed=11, n_in=5, n_hidden=5)
    report = gp.check(mlp_loss, params, _mlp_callable_grads(1e-13), args=(X, T))
    assert report.passed and all(p.diagnosis is None for p in report.params.values())
    assert any("different values for 'W1' on two calls" in note for note in report.notes)


def test_grads_callable_reusing_its_output_buffer_is_not_nondeterministic():
    params, X, T = mlp_point(seed=11, n_in=5, n_hidden=5)
    buffers = [np.zeros_like(p) for p in params]

    def grads(*a):
        for buf, g in zip(buffers, mlp_grad(*a)):
            buf[...] = g
        return tuple(buffers)

    report = gp.check(mlp_loss, params, grads, args=(X, T))
    assert report.passed and all(p.diagnosis is None for p in report.params.values())


@pytest.mark.parametrize("method,advice", [("central", "method='richardson'"),
                                           ("richardson", "larger eps")])
def test_noisy_loss_is_diagnosed_with_advice(method, advice):
    params, X, T = mlp_point(seed=11, n_in=5, n_hidden=5)
    rng = np.random.default_rng(0)

    def noisy(W1, b1, W2, b2, X, T):  # 1e-6 relative random noise (unseeded sampling)
        return mlp_loss(W1, b1, W2, b2, X, T) * (1.0 + 1e-6 * rng.standard_normal())

    report = gp.check(noisy, params, mlp_grad(*params, X, T), args=(X, T), method=method)
    assert _keyword(report, "W1") == "noisy", str(report)
    assert advice in report.params["W1"].diagnosis
    clean = gp.check(mlp_loss, params, mlp_grad(*params, X, T), args=(X, T), method=method)
    assert all(p.diagnosis is None for p in clean.params.values())


def test_mismatch_for_a_gradient_with_no_pattern():
    rng = np.random.default_rng(5)
    report = _check(lambda g: g.__setitem__(0, rng.normal(size=g[0].shape)))
    assert _keyword(report, "W1") == "mismatch", str(report)


def test_sparse_gradient_with_one_wrong_entry_is_localized_not_noisy():
    x = np.linspace(-1.0, 1.0, 20)
    g = np.zeros(20)
    g[:3] = np.cos(x[:3])
    g[1] *= 1.01
    report = gp.check(lambda x: np.sum(np.sin(x[:3])), x, g)
    assert report.params["x"].diagnosis.startswith("localized: 1 entry of 20"), str(report)


def test_diagnosis_is_printed_under_its_parameter_row():
    report = _check(lambda g: g.__setitem__(2, g[2] * 2))
    lines = str(report).splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("W2 "))
    assert lines[row + 1].strip().startswith("diagnosis: scaled")
    assert lines[row + 2].startswith("b2 ")


@pytest.mark.parametrize("mutate,name,keyword", [
    (lambda g: g[0].__setitem__((1, 2), g[0][1, 2] + 1.0), "W1", "localized"),
    (lambda g: g[0].__setitem__((3, slice(None)), g[0][3] + 1.0), "W1", "localized"),
    (lambda g: g[1].__setitem__(2, np.nan), "b1", "nonfinite"),
    (lambda g: g.__setitem__(0, -g[0]), "W1", "sign-flipped"),
    (lambda g: g.__setitem__(0, g[0] * 16), "W1", "scaled"),
    (lambda g: g.__setitem__(0, g[0].T.copy()), "W1", "transposed"),
    (lambda g: g.__setitem__(0, np.zeros_like(g[0])), "W1", "zero"),
])
@pytest.mark.parametrize("mode", ["directional", "auto"])
def test_keywords_in_directional_and_auto_modes(mutate, name, keyword, mode):
    params, X, T = mlp_point(seed=11, n_in=5, n_hidden=5)
    grads = [g.copy() for g in mlp_grad(*params, X, T)]
    options = {"budget_s": 1e-9} if mode == "auto" else {}
    clean = gp.check(mlp_loss, params, tuple(grads), args=(X, T), mode=mode, **options)
    assert clean.passed and all(p.diagnosis is None for p in clean.params.values())
    mutate(grads)
    report = gp.check(mlp_loss, params, tuple(grads), args=(X, T), mode=mode, **options)
    assert _keyword(report, name) == keyword, str(report)
    assert all(p.diagnosis is None for n, p in report.params.items() if n != name)
