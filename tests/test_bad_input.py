"""Bad input: clear TypeError/ValueError naming the parameter, arrays untouched."""
from __future__ import annotations

import signal
import threading

import numpy as np
import pytest

import gradprobe as gp
from naive import mlp_grad, mlp_loss, mlp_point


def _point():
    params, X, T = mlp_point()
    return {"W1": params[0], "b1": params[1], "W2": params[2], "b2": params[3]}, X, T


def _loss(X, T, *, W1, b1, W2, b2):
    return mlp_loss(W1, b1, W2, b2, X, T)


def _grads(params, X, T):
    g = mlp_grad(params["W1"], params["b1"], params["W2"], params["b2"], X, T)
    return dict(zip(params, g))


def _raises(unchanged, params, exc, match, fn, *args, **kwargs):
    with unchanged(params):
        with pytest.raises(exc, match=match):
            fn(*args, **kwargs)


# -- structure and shape mismatches -------------------------------------------------

def test_grad_shape_mismatch_names_the_parameter(unchanged):
    params, X, T = _point()
    grads = _grads(params, X, T)
    grads["W2"] = grads["W2"].T
    _raises(unchanged, params, ValueError, r"'W2'.*shape \(3, 8\).*\(8, 3\).*transposed",
            gp.check, _loss, params, grads, args=(X, T))


def test_grad_missing_key(unchanged):
    params, X, T = _point()
    grads = _grads(params, X, T)
    del grads["b1"]
    _raises(unchanged, params, ValueError, r"missing \['b1'\]",
            gp.check, _loss, params, grads, args=(X, T))


def test_grad_structure_mismatch(unchanged):
    params, X, T = _point()
    grads = list(_grads(params, X, T).values())
    _raises(unchanged, params, TypeError, "must be a dict",
            gp.check, _loss, params, grads, args=(X, T))


def test_grad_sequence_length_mismatch(unchanged):
    params, X, T = mlp_point()
    grads = mlp_grad(*params, X, T)[:3]
    _raises(unchanged, params, ValueError, "has 3 entries but params has 4",
            gp.check, mlp_loss, params, grads, args=(X, T))


def test_grad_object_dtype(unchanged):
    x = np.ones(3)
    _raises(unchanged, x, TypeError, "'x' has dtype object",
            gp.check, lambda x: np.sum(x), x, np.array([None, 1, 2], dtype=object))


# -- parameters -----------------------------------------------------------------------

@pytest.mark.parametrize("bad,exc,match", [
    (np.array([1, 2, 3]), TypeError, "'w' has dtype int64"),
    (np.array([True, False]), TypeError, "'w' has dtype bool"),
    (np.array(["a"]), TypeError, "'w' has dtype <U1"),
    (np.array([1 + 1j]), TypeError, "'w' has complex dtype"),
    (np.zeros((0, 3)), ValueError, r"'w' is empty \(shape \(0, 3\)\)"),
    (np.array([1.0, np.nan]), ValueError, r"'w' contains a non-finite value.*index \(1,\)"),
    (np.array([np.inf]), ValueError, "'w' contains a non-finite value"),
    ("abc", TypeError, "'w' must be a NumPy array"),
])
def test_bad_parameter_arrays(bad, exc, match, unchanged):
    params = {"w": bad, "ok": np.ones(2)}
    with unchanged(params):
        with pytest.raises(exc, match=match):
            gp.check(lambda *, w, ok: np.sum(ok), params, {"w": np.zeros(1), "ok": np.ones(2)})


def test_empty_structures():
    with pytest.raises(ValueError, match="empty dict"):
        gp.check(lambda: 0.0, {}, {})
    with pytest.raises(ValueError, match="empty sequence"):
        gp.numerical_gradient(lambda: 0.0, ())


def test_read_only_arrays_are_accepted():
    w = np.linspace(0, 1, 4)
    w.setflags(write=False)
    report = gp.check(lambda w: np.sum(w ** 2), w, 2 * w)
    assert report.passed


# -- the loss -------------------------------------------------------------------------

def test_non_scalar_loss(unchanged):
    w = np.ones(3)
    _raises(unchanged, w, ValueError, r"array of shape \(3,\) at the unperturbed point",
            gp.check, lambda w: w * 2, w, 2 * np.ones(3))


def test_size_one_array_loss_is_accepted():
    w = np.array([1.0, 2.0])
    assert gp.check(lambda w: np.array([[np.sum(w ** 2)]]), w, 2 * w).passed


def test_non_numeric_loss(unchanged):
    w = np.ones(2)
    _raises(unchanged, w, TypeError, "f returned str", gp.check, lambda w: "loss", w, w)
    _raises(unchanged, w, TypeError, "f returned a bool", gp.check, lambda w: True, w, w)


def test_non_finite_loss_at_the_point(unchanged):
    w = np.array([1.0, 0.0])
    _raises(unchanged, w, ValueError, "f returned nan at the unperturbed point",
            gp.check, lambda w: np.sum(w) * np.nan, w, w)


def test_non_finite_loss_at_a_perturbed_point_names_the_entry(unchanged):
    w = np.array([1.0, 0.0, 2.0])

    def f(w):
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.sum(np.sqrt(w))  # nan left of w[1] = 0

    _raises(unchanged, w, ValueError, r"f returned nan with w\[1\] = .*-",
            gp.check, f, w, np.array([0.5, 1.0, 0.35]))


def test_complex_loss_for_a_real_method():
    w = np.ones(2)
    with pytest.raises(TypeError, match="complex value"):
        gp.check(lambda w: np.sum(w) + 1j, w, w)


# -- exceptions raised by f -------------------------------------------------------------

class Boom(Exception):
    pass


def test_exception_from_f_propagates_unchanged(unchanged):
    w = np.ones(3)
    err = Boom("from the user's loss")
    calls = []

    def f(w):
        calls.append(1)
        if len(calls) > 12:  # after the base point and the noise probe
            raise err
        return np.sum(w ** 2)

    with unchanged(w):
        with pytest.raises(Boom) as info:
            gp.check(f, w, 2 * w)
    assert info.value is err


def test_exception_in_a_worker_thread_propagates(unchanged):
    params, X, T = mlp_point()
    calls = []

    def f(*a):
        calls.append(1)
        if len(calls) > 40:
            raise Boom("late")
        return mlp_loss(*a)

    with unchanged(params):
        with pytest.raises(Boom):
            gp.numerical_gradient(f, params, args=(X, T), workers=2)


def test_keyboard_interrupt_leaves_arrays_untouched(unchanged):
    params, X, T = mlp_point()
    calls = []

    def f(*a):
        calls.append(1)
        if len(calls) == 50:
            raise KeyboardInterrupt
        return mlp_loss(*a)

    with unchanged(params):
        with pytest.raises(KeyboardInterrupt):
            gp.check(f, params, mlp_grad(*params, X, T), args=(X, T))


@pytest.mark.skipif(not hasattr(signal, "SIGALRM"), reason="needs SIGALRM")
def test_real_sigint_during_a_check_leaves_arrays_untouched(unchanged):
    """A real Ctrl-C (SIGINT delivered to the process) in the middle of a check."""
    params, X, T = mlp_point(batch=256, n_in=20, n_hidden=40)
    calls = []

    def f(*a):
        calls.append(1)
        if len(calls) == 200:
            signal.raise_signal(signal.SIGINT)
        return mlp_loss(*a)

    assert threading.current_thread() is threading.main_thread()
    with unchanged(params):
        with pytest.raises(KeyboardInterrupt):
            gp.check(f, params, mlp_grad(*params, X, T), args=(X, T))


def test_f_mutating_its_input_cannot_reach_the_users_array():
    w = np.ones(3)
    before = w.copy()

    def f(w):
        value = np.sum(w ** 2)
        w += 1.0  # a buggy loss that writes to its argument
        return value

    gp.numerical_gradient(f, w)
    np.testing.assert_array_equal(w, before)


# -- complex step -----------------------------------------------------------------------

def test_complex_step_with_a_real_only_f(unchanged):
    w = np.ones(2)
    _raises(unchanged, w, TypeError, "method='complex' needs an f written for complex input",
            gp.check, lambda w: float(np.sum(w ** 2)), w, 2 * w, method="complex")


def test_complex_step_with_abs(unchanged):
    w = np.ones(2)
    _raises(unchanged, w, TypeError, "returned a real float64",
            gp.check, lambda w: np.sum(np.abs(w)), w, np.ones(2), method="complex")


# -- options -------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,exc,match", [
    ({"method": "backward"}, ValueError, "method='backward' is not valid"),
    ({"mode": "everything"}, ValueError, "mode='everything' is not valid"),
    ({"backend": "gpu"}, ValueError, "backend='gpu' is not valid"),
    ({"eps": -1e-3}, ValueError, "eps=-0.001 is not valid"),
    ({"eps": 0.0}, ValueError, "eps=0.0 is not valid"),
    ({"eps": "small"}, TypeError, "eps must be a number"),
    ({"rtol": float("nan")}, ValueError, "rtol=nan is not valid"),
    ({"atol": -1.0}, ValueError, "atol=-1.0 is not valid"),
    ({"mode": "sample", "samples": 0}, ValueError, "samples=0 is not valid"),
    ({"samples": 5}, ValueError, "only used with mode='sample'"),
    ({"directions": 4}, ValueError, "directions is only used"),
    ({"workers": 0}, ValueError, "workers=0 is not valid"),
    ({"seed": -1}, ValueError, "seed=-1 is not valid"),
    ({"args": 3.0}, TypeError, "args must be a tuple"),
    ({"progress": "yes"}, TypeError, "progress must be"),
    ({"upcast": "no"}, TypeError, "upcast must be True or False"),
])
def test_bad_options(kwargs, exc, match, unchanged):
    w = np.ones(2)
    _raises(unchanged, w, exc, match, gp.check, lambda w: np.sum(w ** 2), w, 2 * w, **kwargs)


def test_f_must_be_callable():
    with pytest.raises(TypeError, match="f must be callable"):
        gp.check("loss", np.ones(2), np.ones(2))
