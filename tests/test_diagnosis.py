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
