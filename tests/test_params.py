"""How a function of the parameters is called: one binding rule for every engine.

Issue 14: ``def loss(W, b, X, y)`` with ``params={"W": W, "b": b}`` and
``args=(X, y)`` is what people write; it used to fail with "multiple values
for argument 'W'" (Python engine) or "missing argument 'X'" (Numba engine).
"""
from __future__ import annotations

import numba
import numpy as np
import pytest

import gradprobe as gp
from gradprobe.problem.params import bind_call

RNG = np.random.default_rng(14)
X = RNG.normal(size=(6, 3))
Y = RNG.normal(size=6)
W = RNG.normal(size=3)
B = np.array([0.25])


def loss(W, b, X, y):
    r = X @ W + b - y
    return 0.5 * float(r @ r)


def grads(W, b, X, y):
    r = X @ W + b - y
    return {"W": X.T @ r, "b": np.array([r.sum()])}


@numba.njit
def njit_loss(W, b, X, y):  # no @: this file does not depend on SciPy
    total = 0.0
    for i in range(X.shape[0]):
        r = b[0] - y[i]
        for j in range(X.shape[1]):
            r += X[i, j] * W[j]
        total += 0.5 * r * r
    return total


def exact():
    r = X @ W + B - Y
    return {"W": X.T @ r, "b": np.array([r.sum()])}


# -- the rule --------------------------------------------------------------------------
@pytest.mark.parametrize("f,kind,names,nargs,positional,keywords", [
    # dict keys by name, args in the remaining positional arguments, in order
    (lambda W, b, X, y: 0, "dict", ["W", "b"], 2,
     [("param", 0), ("param", 1), ("arg", 0), ("arg", 1)], []),
    (lambda W, b, X, y: 0, "dict", ["b", "W"], 2,
     [("param", 1), ("param", 0), ("arg", 0), ("arg", 1)], []),
    # f(*args, **params) where it binds: the same call as before
    (lambda X, y, W, b: 0, "dict", ["W", "b"], 2,
     [("arg", 0), ("arg", 1), ("param", 0), ("param", 1)], []),
    (lambda X, W, y: 0, "dict", ["W"], 2, [("arg", 0), ("param", 0), ("arg", 1)], []),
    # after an argument left to its default, by keyword
    (lambda W, X, scale=1.0, b=0.0: 0, "dict", ["W", "b"], 1,
     [("param", 0), ("arg", 0)], [("b", 1)]),
    # keyword-only arguments and **kwargs take keys by name
    (lambda X, *, W: 0, "dict", ["W"], 1, [("arg", 0)], [("W", 0)]),
    (lambda *args, **named: 0, "dict", ["W", "b"], 1, [("arg", 0)], [("W", 0), ("b", 1)]),
    # extra args to *args
    (lambda W, *rest: 0, "dict", ["W"], 2, [("param", 0), ("arg", 0), ("arg", 1)], []),
    # tuples and single arrays: f(*params, *args)
    (lambda W, b, X: 0, "sequence", ["W", "b"], 1, [("param", 0), ("param", 1), ("arg", 0)],
     []),
    (lambda w: 0, "single", ["w"], 0, [("param", 0)], []),
])
def test_binding_rule(f, kind, names, nargs, positional, keywords):
    binding = bind_call(f, kind, names, nargs)
    assert list(binding.positional) == positional
    assert list(binding.keywords) == keywords


def test_leading_values_come_first():
    binding = bind_call(lambda u, W, b, X: 0, "dict", ["b", "W"], 1, leading=1)
    assert list(binding.positional) == [("lead", 0), ("param", 1), ("param", 0), ("arg", 0)]


def test_builtin_without_signature_is_called_the_documented_way():
    class Opaque:
        __signature__ = None  # inspect.signature raises for it

        def __call__(self, *a, **k):
            return a, k

    binding = bind_call(Opaque(), "dict", ["W"], 1)
    assert binding.call(Opaque(), [1], ("x",)) == (("x",), {"W": 1})


# -- every engine ------------------------------------------------------------------------
@pytest.mark.parametrize("f,backend", [(loss, "python"), (njit_loss, "python"),
                                       (njit_loss, "numba"), (njit_loss, "auto")])
def test_dict_params_bind_by_name_on_every_engine(f, backend, unchanged):
    params = {"W": W, "b": B}
    with unchanged(params):
        report = gp.check(f, params, exact(), args=(X, Y), backend=backend)
        assert report.passed, str(report)
        assert report.backend == ("numba" if f is njit_loss and backend != "python"
                                  else "python")
        assert gp.check(f, params, grads, args=(X, Y), backend=backend).passed
        wrong = exact()
        wrong["W"][1] *= 1.01
        report = gp.check(f, params, wrong, args=(X, Y), backend=backend)
        assert report.params["W"].failed_indices == [(1,)] and report.params["b"].passed
        num = gp.numerical_gradient(f, {"b": B, "W": W}, args=(X, Y), backend=backend)
        np.testing.assert_allclose(num["W"], exact()["W"], rtol=1e-7)


def test_the_old_convention_still_works():
    def tail(X, y, W, b):
        return loss(W, b, X, y)

    def tail_grads(X, y, W, b):
        return grads(W, b, X, y)

    assert gp.check(tail, {"W": W, "b": B}, tail_grads, args=(X, Y)).passed


def test_check_vjp_binds_dict_inputs_by_name():
    def f(W, b, X):
        return np.tanh(X @ W + b)

    def vjp(u, W, b, X):
        d = u * (1 - np.tanh(X @ W + b) ** 2)
        return {"W": X.T @ d, "b": np.array([d.sum()])}

    assert gp.check_vjp(f, {"W": W, "b": B}, vjp, args=(X,)).passed


# -- no binding: say how f is called and how to write it --------------------------------
def test_a_key_that_is_no_argument_of_f_is_a_clear_error():
    with pytest.raises(TypeError, match=r"f loss\(W, b, X, y\) cannot be called with the "
                                        r"parameters \(W, c\).*it has no argument named "
                                        r"'c'.*Write it as def loss\(W, c, arg0, arg1\)"):
        gp.check(loss, {"W": W, "c": B}, {"W": W, "c": B}, args=(X, Y))


@pytest.mark.parametrize("backend", ["python", "numba"])
def test_missing_args_are_a_clear_error_on_every_engine(backend):
    with pytest.raises(TypeError, match=r"cannot be called with the parameters \(W, b\) and "
                                        r"1 value\(s\) in args \(missing a required "
                                        r"argument: 'y'\)"):
        gp.check(njit_loss, {"W": W, "b": B}, exact(), args=(X,), backend=backend)


@pytest.mark.parametrize("params", [{"W": W, "b": B}, (W, B)])
def test_grads_callable_with_the_wrong_arity_is_named(params):
    def wrong_arity(W, b):
        return exact()

    with pytest.raises(TypeError, match=r"grads wrong_arity\(W, b\) cannot be called with "
                                        r"the parameters \(W, b\) and 2 value\(s\) in args "
                                        r"\(too many positional arguments\).*Write it as "
                                        r"def wrong_arity\(W, b, arg0, arg1\)"):
        gp.check(loss, params, wrong_arity, args=(X, Y))


def test_an_exception_raised_inside_f_propagates_unchanged():
    def raising(W, b, X, y):
        raise TypeError("my own bug")

    with pytest.raises(TypeError, match="^my own bug$"):
        gp.check(raising, {"W": W, "b": B}, exact(), args=(X, Y))
