"""gp.check / gp.numerical_gradient end to end on the Python engine."""
from __future__ import annotations

import json

import numpy as np
import pytest

import gradprobe as gp
from naive import (bilinear, bilinear_grad, central_difference, logsumexp, logsumexp_grad,
                   mlp_grad, mlp_loss, mlp_point, quartic, quartic_grad, relu_grad, relu_loss,
                   sin_exp, sin_exp_grad)

METHODS = ["central", "forward", "richardson", "complex"]
DTYPES = [np.float64, np.float32]


def _bilinear_point(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(3, 4)).astype(dtype), rng.normal(size=3).astype(dtype),
            rng.normal(size=4).astype(dtype))


# -- numerical_gradient ------------------------------------------------------------

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("f,grad", [(quartic, quartic_grad), (sin_exp, sin_exp_grad),
                                    (logsumexp, logsumexp_grad)])
def test_numerical_gradient_matches_exact(method, f, grad):
    x = np.linspace(-2.0, 1.5, 7)
    num = gp.numerical_gradient(f, x, method=method)
    assert num.shape == x.shape and num.dtype == x.dtype
    tol = 1e-5 if method == "forward" else 1e-8
    np.testing.assert_allclose(num, grad(x), rtol=tol, atol=tol)


def test_numerical_gradient_matches_seed_style_loop():
    params, X, T = mlp_point()
    ours = gp.numerical_gradient(mlp_loss, params, args=(X, T))
    reference = central_difference(mlp_loss, params, 1e-6, args=(X, T))
    assert isinstance(ours, tuple) and len(ours) == 4
    for a, b in zip(ours, reference):
        np.testing.assert_allclose(a, b, rtol=1e-7, atol=1e-10)


@pytest.mark.parametrize("structure", ["tuple", "list", "dict"])
def test_numerical_gradient_returns_the_structure_of_params(structure):
    A, b, c = _bilinear_point()
    exact = bilinear_grad(A, b, c)
    if structure == "dict":
        params = {"A": A, "b": b, "c": c}
        num = gp.numerical_gradient(lambda A, b, c: bilinear(A, b, c), params)
        assert isinstance(num, dict) and list(num) == ["A", "b", "c"]
        num = [num["A"], num["b"], num["c"]]
    else:
        params = (A, b, c) if structure == "tuple" else [A, b, c]
        num = gp.numerical_gradient(bilinear, params)
        assert type(num) is type(params)
    for n, e in zip(num, exact):
        np.testing.assert_allclose(n, e, rtol=1e-8, atol=1e-10)


def test_numerical_gradient_keeps_float32_dtype_but_upcasts_evaluation():
    x = np.linspace(-1, 1, 5).astype(np.float32)
    num = gp.numerical_gradient(quartic, x)
    assert num.dtype == np.float32
    exact = quartic_grad(x.astype(np.float64))
    # evaluated in float64: only the final rounding to float32 remains
    np.testing.assert_allclose(num, exact, rtol=2e-7, atol=1e-6)


def test_dict_params_are_called_by_keyword_with_args_positional():
    seen = {}

    def f(scale, *, w, b):
        seen["scale"] = scale
        return scale * float(np.sum(w ** 2) + b[0])

    num = gp.numerical_gradient(f, {"w": np.array([1.0, 2.0]), "b": np.array([0.5])}, args=(3.0,))
    assert seen["scale"] == 3.0
    np.testing.assert_allclose(num["w"], [6.0, 12.0], rtol=1e-9)
    np.testing.assert_allclose(num["b"], [3.0], rtol=1e-9)


# -- check: correct gradients pass ----------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("mode", ["full", "sample"])
def test_correct_mlp_gradient_passes(dtype, method, mode, unchanged):
    params, X, T = mlp_point(dtype)
    grads = mlp_grad(*params, X, T)
    with unchanged(params):
        report = gp.check(mlp_loss, params, grads, args=(X, T), method=method, mode=mode,
                          samples=5 if mode == "sample" else None)
    assert report.passed, str(report)
    assert list(report.params) == ["W1", "b1", "W2", "b2"]
    expected = [p.size for p in params] if mode == "full" else [min(5, p.size) for p in params]
    assert [r.checked for r in report.params.values()] == expected
    assert report.upcast == (dtype == np.float32)


@pytest.mark.parametrize("method", METHODS)
def test_correct_float32_gradient_passes_without_upcast(method):
    params, X, T = mlp_point(np.float32, seed=3)
    report = gp.check(mlp_loss, params, mlp_grad(*params, X, T), args=(X, T), method=method,
                      upcast=False)
    assert report.passed, str(report)
    assert not report.upcast


def test_grads_may_be_a_callable_with_fs_signature():
    params, X, T = mlp_point()
    report = gp.check(mlp_loss, params, mlp_grad, args=(X, T))
    assert report.passed
    np.testing.assert_array_equal(report.params["W1"].analytic, mlp_grad(*params, X, T)[0])


def test_single_array_params_take_the_name_of_fs_argument():
    x = np.linspace(0.1, 1, 4)
    report = gp.check(quartic, x, quartic_grad(x))
    assert list(report.params) == ["x"] and report.passed


def test_positional_names_fall_back_when_f_has_star_args():
    report = gp.check(lambda *p: float(np.sum(p[0] * p[1])), (np.ones(2), np.ones(2)),
                      (np.ones(2), np.ones(2)))
    assert list(report.params) == ["params[0]", "params[1]"]


# -- check: wrong gradients are flagged and named --------------------------------------

@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("seed", range(6))
def test_one_percent_error_in_one_float64_entry_is_named(method, seed):
    params, X, T = mlp_point(seed=seed)
    grads = [g.copy() for g in mlp_grad(*params, X, T)]
    rng = np.random.default_rng(100 + seed)
    p = seed % 4
    index = tuple(int(rng.integers(n)) for n in grads[p].shape)
    grads[p][index] *= 1.01
    report = gp.check(mlp_loss, params, tuple(grads), args=(X, T), method=method)
    name = list(report.params)[p]
    assert not report.passed
    assert report.failed == 1
    assert report.params[name].failed_indices == [index]
    assert report.params[name].worst_index == index
    assert report.params[name].diagnosis.startswith("localized")


@pytest.mark.parametrize("mode", ["full", "sample"])
def test_float32_errors_are_flagged(mode):
    params, X, T = mlp_point(np.float32, seed=5)
    grads = [g.copy() for g in mlp_grad(*params, X, T)]
    grads[0] *= 1.05
    report = gp.check(mlp_loss, params, tuple(grads), args=(X, T), mode=mode,
                      samples=6 if mode == "sample" else None)
    assert not report.params["W1"].passed and report.params["W2"].passed


def test_sample_mode_is_seeded_and_draws_from_every_parameter():
    params, X, T = mlp_point()
    grads = mlp_grad(*params, X, T)
    a = gp.check(mlp_loss, params, grads, args=(X, T), mode="sample", samples=3, seed=7)
    b = gp.check(mlp_loss, params, grads, args=(X, T), mode="sample", samples=3, seed=7)
    c = gp.check(mlp_loss, params, grads, args=(X, T), mode="sample", samples=3, seed=8)
    ia = {k: r.indices for k, r in a.params.items()}
    assert ia == {k: r.indices for k, r in b.params.items()}
    assert ia != {k: r.indices for k, r in c.params.items()}
    assert all(len(v) == 3 for v in ia.values())
    np.testing.assert_array_equal(a.params["W1"].numeric, b.params["W1"].numeric)
    # values are aligned with the indices
    W1 = a.params["W1"]
    for i, idx in enumerate(W1.indices):
        assert W1.analytic[i] == grads[0][idx]


def test_sample_mode_catches_a_wrong_small_parameter():
    """Sampling from *every* parameter: a wrong 3-entry bias cannot hide."""
    params, X, T = mlp_point()
    grads = list(mlp_grad(*params, X, T))
    grads[3] = -grads[3]
    report = gp.check(mlp_loss, params, tuple(grads), args=(X, T), mode="sample", samples=2)
    assert not report.params["b2"].passed
    assert report.params["W1"].passed


# -- kinks ------------------------------------------------------------------------------

@pytest.mark.parametrize("at_zero", [0.0, 1.0, 0.5])
@pytest.mark.parametrize("method", ["central", "forward", "richardson"])
def test_relu_at_zero_is_a_kink_not_a_failure(at_zero, method):
    x = np.array([-1.0, 0.0, 2.0, 0.0, 3.0])
    report = gp.check(relu_loss, x, relu_grad(x, at_zero), method=method)
    assert report.passed, str(report)
    r = report.params["x"]
    if at_zero == 0.5 or at_zero == 1.0 and method == "forward":
        # the estimate equals the analytic value (the central/Richardson value is
        # the mean of the one-sided derivatives; forward's is the right one, and a
        # failing forward entry is re-estimated with Richardson): nothing to report
        assert r.kinks == []
    else:
        assert r.kinks == [(1,), (3,)]


def test_value_outside_the_one_sided_derivatives_at_a_kink_fails():
    x = np.array([0.0, 1.0])
    grad = relu_grad(x)
    grad[0] = 2.0  # one-sided derivatives are 0 and 1
    report = gp.check(relu_loss, x, grad)
    assert report.params["x"].failed_indices == [(0,)]
    assert report.params["x"].kinks == []


@pytest.mark.parametrize("fn,grad_at_kink", [(lambda x: float(np.abs(x).sum()), 0.0),
                                             (lambda x: float(np.max(x)), None)])
def test_abs_and_max_kinks(fn, grad_at_kink):
    if grad_at_kink is not None:
        x = np.array([0.0, 2.0, -1.0])
        grad = np.sign(x)
    else:
        x = np.array([3.0, 3.0, 1.0])  # a tie: max is not differentiable in x[0], x[1]
        grad = np.array([1.0, 0.0, 0.0])
    report = gp.check(fn, x, grad)
    assert report.passed, str(report)
    assert report.params["x"].kinks == [(0,), (1,)] if grad_at_kink is None else [(0,)]


def test_strong_curvature_is_not_mistaken_for_a_kink():
    """One-sided derivatives of a curved f bracket a 1 %-wrong value; still a failure."""
    def f(w):
        return float(np.sum(1e4 * w ** 2))

    w = np.array([1e-6, 2e-6])  # gradient 2e4 * w is tiny, curvature 2e4 is large
    grad = 2e4 * w
    grad[1] *= 1.01
    report = gp.check(f, w, grad, method="richardson")
    assert report.params["w"].failed_indices == [(1,)]
    assert report.params["w"].kinks == []


def _relu_layer_problem(seed, scale_x, scale_w, positive_targets):
    """``0.5 * sum((relu(X @ W) - T) ** 2)`` with several exact zeros in every column
    of ``X @ W`` but the last (dyadic values, so the zeros stay exact at every power-of-two
    scale), and its exact one-sided derivatives from the piecewise structure."""
    rng = np.random.default_rng(seed)
    n, d, k = 12, 4, 3
    X = rng.integers(-3, 4, size=(n, d)).astype(float)
    W = rng.integers(-3, 4, size=(d, k)).astype(float)
    W[-1] = 1.0
    for c in range(k - 1):  # rows 4c .. 4c+2 of X @ W are 0 in column c: coupled kinks
        for r in range(4 * c, 4 * c + 3):
            X[r, -1] = -X[r, :-1] @ W[:-1, c]
    W[:, -1] = rng.normal(size=d)  # no zero in the last column: f is smooth in it
    X, W = X * scale_x, W * scale_w
    T = rng.normal(size=(n, k)) * scale_x * scale_w
    if positive_targets:  # then the one-sided derivatives bracket relu'(0) = 0's value
        T = np.abs(T)
    Z = X @ W
    assert np.sum(Z == 0) >= 3 * (k - 1)

    def loss(W):
        return 0.5 * np.sum((np.maximum(X @ W, 0.0) - T) ** 2)

    grad = X.T @ ((np.maximum(Z, 0.0) - T) * (Z > 0))  # relu'(0) = 0
    # Moving W[i, c] by t moves the zero z[r, c] to X[r, i] t: the row turns on to
    # the right where X[r, i] > 0 and to the left where X[r, i] < 0, adding the
    # slope -T[r, c] X[r, i] of 0.5 (z - T)^2 at z = 0.
    zero = Z == 0
    right = grad + np.einsum("ri,rc->ic", np.where(X > 0, X, 0.0), -T * zero)
    left = grad + np.einsum("ri,rc->ic", np.where(X < 0, X, 0.0), -T * zero)
    return loss, W, grad, left, right


@pytest.mark.parametrize("positive_targets", [True, False])
@pytest.mark.parametrize("method", ["central", "richardson", "forward"])
def test_coupled_relu_kinks_in_a_squared_error_are_kinks(method, positive_targets):
    """Issue 14: several kinks per entry and a piecewise quadratic f (the noise
    probe crosses kinks, so the noise of f cannot be measured). Every entry whose
    analytic value lies between its exact one-sided derivatives is a kink, the
    check passes when that holds for all of them, and a 1 % error planted at an
    entry where f is smooth still fails. With targets of either sign some analytic
    values lie outside their one-sided derivatives (kinks whose jumps add up on one
    side): those fail, as the kink rule says."""
    cases = held = noise_unmeasured = planted_caught = n_between = n_outside = 0
    for seed in range(6):
        for scale_x, scale_w in [(1.0, 1.0), (2.0 ** -6, 1.0), (1.0, 2.0 ** 5),
                                 (2.0 ** 4, 2.0 ** -2)]:
            loss, W, grad, left, right = _relu_layer_problem(seed, scale_x, scale_w,
                                                                positive_targets)
            low, high = np.minimum(left, right), np.maximum(left, right)
            jump = high - low
            at_kink = jump > 1e-6 * np.abs(grad).max()
            between = at_kink & (grad >= low) & (grad <= high)
            outside = at_kink & ~between
            n_between += int(between.sum())
            n_outside += int(outside.sum())
            report = gp.check(loss, W, grad, method=method)
            p = report.params["W"]
            cases += 1
            noise_unmeasured += any("noise of f could not be measured" in n
                                    for n in report.notes)
            kinks = {tuple(int(v) for v in i) for i in np.argwhere(between)}
            # forward's estimate is the right derivative: an analytic value equal
            # to it agrees, and is no kink to report
            ok = (set(p.kinks) <= kinks if method == "forward" else set(p.kinks) == kinks) \
                and set(p.failed_indices) == {tuple(int(v) for v in i)
                                              for i in np.argwhere(outside)} \
                and report.passed == (not outside.any())
            held += ok
            smooth = np.argwhere(~at_kink & (np.abs(grad) > 1e-3 * np.abs(grad).max()))
            target = tuple(int(v) for v in smooth[seed % len(smooth)])
            bad = grad.copy()
            bad[target] *= 1.01
            planted = gp.check(loss, W, bad, method=method).params["W"]
            planted_caught += target in planted.failed_indices and \
                set(planted.kinks) == set(p.kinks)
    print(f"coupled kinks ({method}): verdict as the exact one-sided derivatives say in "
          f"{held}/{cases}, planted error caught in {planted_caught}/{cases}, noise not "
          f"measured in {noise_unmeasured}/{cases}; {n_between} kinks, {n_outside} values "
          "outside their one-sided derivatives")
    assert n_between > 0 and (n_outside == 0 if positive_targets else n_outside > 0)
    assert held == cases and planted_caught == cases
    assert noise_unmeasured > 0  # the case the issue met


# -- upcasting -------------------------------------------------------------------------

def test_upcast_falls_back_when_f_insists_on_float32():
    def f(w):
        if w.dtype != np.float32:
            raise TypeError("float32 only")
        return np.sum(w.astype(np.float32) ** 2)

    w = np.linspace(-1, 1, 6).astype(np.float32)
    report = gp.check(f, w, 2 * w)
    assert report.passed and not report.upcast
    assert any("TypeError" in n for n in report.notes)


def test_upcast_note_when_f_returns_float32():
    w = np.linspace(-1, 1, 6).astype(np.float32)
    report = gp.check(lambda w: np.float32(np.sum(w ** 2)), w, 2 * w)
    assert report.passed
    assert any("returned float32" in n for n in report.notes)


def test_float_args_are_upcast_too():
    seen = []

    def f(w, X):
        seen.append(X.dtype)
        return float(np.sum((X @ w) ** 2))

    X = np.ones((3, 2), np.float32)
    gp.check(f, np.ones(2, np.float32), 2 * X.T @ X @ np.ones(2, np.float32), args=(X,))
    assert seen[0] == np.float32 and seen[-1] == np.float64


# -- reports ---------------------------------------------------------------------------

def test_report_text_is_compact_for_large_parameters():
    rng = np.random.default_rng(0)
    W = rng.normal(size=(40, 50))
    grad = 2 * W
    grad[3, 7] += 0.5
    report = gp.check(lambda W: float(np.sum(W ** 2)), W, grad)
    text = str(report)
    assert "FAILED" in text and "W[3, 7]" in text and "localized" in text
    assert len(text.splitlines()) < 15
    assert len(text) < 2500


def test_to_dict_is_json_serialisable_and_complete():
    params, X, T = mlp_point()
    grads = list(mlp_grad(*params, X, T))
    grads[1] = grads[1] * np.nan
    report = gp.check(mlp_loss, params, tuple(grads), args=(X, T))
    data = json.loads(json.dumps(report.to_dict(arrays=True)))
    assert data["passed"] is False
    assert data["params"]["b1"]["failed"] == params[1].size
    assert data["params"]["b1"]["diagnosis"].startswith("nonfinite")
    assert len(data["params"]["W1"]["numeric"]) == params[0].size
    assert data["params"]["W2"]["passed"] is True


def test_full_mode_values_have_the_parameter_shape():
    params, X, T = mlp_point()
    report = gp.check(mlp_loss, params, mlp_grad, args=(X, T))
    W1 = report.params["W1"]
    assert W1.analytic.shape == W1.numeric.shape == W1.error_bar.shape == params[0].shape
    assert W1.dtype == "float64" and W1.shape == params[0].shape
    assert np.all(W1.error_bar > 0)
    assert report.evaluations >= 2 * sum(p.size for p in params)


def test_assert_gradients_raises_with_the_report():
    x = np.array([1.0, 2.0])
    with pytest.raises(gp.GradientCheckError) as info:
        gp.assert_gradients(quartic, x, quartic_grad(x) + 1.0)
    assert isinstance(info.value, AssertionError)
    assert info.value.report.params["x"].failed == 2
    assert str(info.value) == str(info.value.report)
    assert gp.assert_gradients(quartic, x, quartic_grad(x)).passed


# -- options ---------------------------------------------------------------------------

def test_user_tolerances_are_used():
    x = np.array([1.0, 2.0])
    grad = quartic_grad(x) * 1.01
    assert not gp.check(quartic, x, grad).passed
    assert gp.check(quartic, x, grad, rtol=0.02).passed
    assert gp.check(quartic, x, grad, atol=1.0).passed
    report = gp.check(quartic, x, grad, rtol=0.02)
    assert report.params["x"].rtol == 0.02


def test_user_step_is_used():
    x = np.array([0.5])
    coarse = gp.numerical_gradient(quartic, x, eps=0.1, method="forward")
    fine = gp.numerical_gradient(quartic, x, eps=1e-7, method="forward")
    assert abs(coarse[0] - quartic_grad(x)[0]) > 100 * abs(fine[0] - quartic_grad(x)[0])


def test_python_engine_threads_give_identical_values():
    params, X, T = mlp_point()
    serial = gp.numerical_gradient(mlp_loss, params, args=(X, T))
    threaded = gp.numerical_gradient(mlp_loss, params, args=(X, T), workers=2)
    for a, b in zip(serial, threaded):
        np.testing.assert_array_equal(a, b)


def test_zero_dimensional_parameters_keep_their_shape():
    seen = []

    def f(x, w):
        seen.append(x.shape)
        return float(x ** 2) + float(np.sum(w))

    report = gp.check(f, (np.array(3.0), np.ones(2)), (np.array(6.0), np.ones(2)))
    assert report.passed and set(seen) == {()}
    assert report.params["x"].shape == () and report.params["x"].worst_index == ()


def test_curved_kink_candidate_is_refined_before_it_fails():
    """tanh saturation: one-sided derivatives straddle the value; it is no kink, and
    the accurate re-estimate agrees with the correct gradient."""
    x = np.array([3.5, -4.0, 0.2], dtype=np.float32)
    report = gp.check(lambda x: np.sum(np.tanh(x) * 7), x, (7 * (1 - np.tanh(x) ** 2)),
                      upcast=False)
    assert report.passed, str(report)


def test_loss_that_cancels_to_zero_keeps_small_steps_and_tight_bars():
    """sum(sin(w)) on a symmetric grid is about 0 at the point: the noise must be
    judged against the loss's slope, not against |f(x)|, or steps blow up."""
    w = np.linspace(-1, 1, 11)
    g = np.cos(w)
    report = gp.check(lambda w: np.sum(np.sin(w)), w, g)
    assert report.passed and abs(report.loss) < 1e-12
    assert np.max(report.params["w"].error_bar) < 1e-8
    g[3] *= 1.003
    assert gp.check(lambda w: np.sum(np.sin(w)), w, g).params["w"].failed_indices == [(3,)]


def _table_cell(report, name, column):
    lines = str(report).splitlines()
    header = lines[1]
    row = next(line for line in lines[2:] if line.split()[0] == name)
    start = header.index(column)
    # numeric columns are right-aligned under their header
    return row[start:start + len(column)].strip()


def test_max_rel_err_of_a_gradient_that_is_zero_on_both_sides_is_a_dash():
    """Issue 14: b's gradient is exactly 0 and its estimate rounding noise: the
    table showed "max rel err 1" for a correct gradient."""
    X = np.linspace(-1, 1, 6).reshape(3, 2)

    def f(W, b):  # b's terms cancel: df/db = 0, its estimate ~1e-12 of noise
        return np.sum(np.sin(X @ W)) + np.sum((b + 0.1) ** 2 - (b - 0.1) ** 2 - 0.4 * b)

    W, b = np.full((2, 2), 0.3), np.array([0.3, 1.7])
    gW = X.T @ np.cos(X @ W)
    report = gp.check(f, (W, b), (gW, np.zeros(2)))
    assert report.passed and report.params["b"].max_rel_error > 0.5  # the raw number
    assert _table_cell(report, "b", "max rel err") == "-"
    assert _table_cell(report, "W", "max rel err") not in ("-", "")
    g = np.array([1e-3, 0.0])  # a real error on a zero gradient still shows
    assert _table_cell(gp.check(f, (W, b), (gW, g)), "b", "max rel err") == "1"
