"""check_vjp / check_jvp / check_jacobian / check_hvp on the Python engine."""
from __future__ import annotations

import json

import numpy as np
import pytest

import gradprobe as gp
from gradprobe.problem.noise import noise_from_table
from gradprobe.checks.vector import (check_hvp, check_jacobian, check_jvp, check_vjp,
                                     merge_runs)
from gradprobe.problem.noise import noise_by_output
from naive_vector import (CASES, directional_central, exact_jacobian, hvp_exact, hvp_f,
                          hvp_grad, jacobian_central)

DTYPES = [np.float64, np.float32]


def _wrong_entry(array, factor=1.01):
    """The index of the largest entry, and a copy with that entry scaled."""
    index = np.unravel_index(int(np.argmax(np.abs(array))), array.shape)
    out = np.array(array, copy=True)
    out[index] *= factor
    return tuple(int(i) for i in index), out


# -- VJP ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_correct_vjp_passes(case, dtype, unchanged):
    inputs, f, vjp, _ = CASES[case](dtype)
    with unchanged(list(inputs)):
        report = check_vjp(f, inputs if len(inputs) > 1 else inputs[0],
                           vjp if len(inputs) > 1 else (lambda u, x: vjp(u, x)[0]))
    assert report.passed, str(report)
    for p, a in zip(report.params.values(), inputs):
        assert p.checked == a.size and p.dtype == str(np.dtype(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_single_wrong_vjp_entry_is_named(case, dtype):
    inputs, f, vjp, _ = CASES[case](dtype)
    target = len(inputs) - 1        # the last input (W for the matrix case)
    probe = vjp(np.ones(np.shape(f(*inputs)), dtype), *inputs)[target]
    index, _ = _wrong_entry(probe)

    def wrong(u, *xs):
        grads = [np.array(g, copy=True) for g in vjp(u, *xs)]
        grads[target][index] *= 1.01
        return tuple(grads)

    report = check_vjp(f, inputs, wrong)
    names = list(report.params)
    assert report.params[names[target]].failed_indices == [index], str(report)
    assert report.failed == 1
    assert report.params[names[target]].diagnosis.startswith("localized")


def test_vjp_names_come_from_the_signature_or_input_i():
    inputs, f, vjp, _ = CASES["matrix"]()
    assert list(check_vjp(f, inputs, vjp).params) == ["x", "W"]
    assert list(check_vjp(lambda *xs: f(*xs), inputs, vjp).params) == ["input[0]", "input[1]"]
    x = np.linspace(-1, 1, 5)
    assert list(check_vjp(lambda *a: np.tanh(*a), x,
                          lambda u, x: u / np.cosh(x) ** 2).params) == ["input"]
    named = check_vjp(lambda a, b: a @ b, {"b": inputs[1], "a": inputs[0]},
                      lambda u, a, b: {"a": u @ b.T, "b": a.T @ u})
    assert list(named.params) == ["b", "a"] and named.passed


def test_vjp_with_given_cotangents_and_args():
    x = np.array([0.3, -0.7, 1.1])
    scale = np.array([1.0, 2.0, 3.0])
    f = lambda x, s: s * np.sin(x)              # noqa: E731
    vjp = lambda u, x, s: u * s * np.cos(x)     # noqa: E731
    one = check_vjp(f, x, vjp, args=(scale,), cotangents=np.ones(3))
    stack = check_vjp(f, x, vjp, args=(scale,), cotangents=np.eye(3))
    listed = check_vjp(f, x, vjp, args=(scale,), cotangents=[np.ones(3), np.arange(3.0)])
    assert one.passed and stack.passed and listed.passed
    assert "1 cotangent (given)" in one.notes[0] and "3 cotangents (given)" in stack.notes[0]
    assert "5 cotangents (random" in check_vjp(f, x, vjp, args=(scale,), cotangents=5).notes[0]


def test_vjp_entry_failing_for_one_cotangent_only_fails():
    x = np.array([0.5, 1.5])

    def vjp(u, x):                          # wrong only when u[1] is large
        g = u * np.cos(x)
        return g + (0.1 if abs(u[1]) > 1.5 else 0.0)

    report = check_vjp(np.sin, x, vjp, cotangents=[np.array([1.0, 1.0]), np.array([1.0, 2.0])])
    assert report.params["x"].failed_indices == [(0,), (1,)]


def test_vjp_float32_is_upcast_and_also_works_natively():
    inputs, f, vjp, _ = CASES["matrix"](np.float32)
    assert check_vjp(f, inputs, vjp).upcast
    native = check_vjp(f, inputs, vjp, upcast=False)
    assert native.passed and not native.upcast


def test_vjp_passes_options_to_check():
    inputs, f, vjp, _ = CASES["matrix"]()
    sampled = check_vjp(f, inputs, vjp, mode="sample", samples=4)
    assert sampled.passed and all(p.checked == 4 for p in sampled.params.values())
    assert check_vjp(f, inputs, vjp, method="richardson").method == "richardson"
    assert check_vjp(f, inputs, vjp, method="complex").passed


def test_vjp_report_is_json_serialisable():
    inputs, f, vjp, _ = CASES["reduction"]()
    data = json.loads(json.dumps(check_vjp(f, inputs[0], lambda u, x: vjp(u, x)[0]).to_dict()))
    assert data["passed"] and data["loss"] == "nan"


# -- JVP ------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_correct_jvp_passes(case, dtype, unchanged):
    inputs, f, _, jvp = CASES[case](dtype)
    single = len(inputs) == 1
    with unchanged(list(inputs)):
        report = check_jvp(f, inputs[0] if single else inputs, jvp)
    assert report.passed, str(report)
    out = report.params["output"]
    assert out.shape == np.shape(f(*inputs)) and out.checked == np.size(f(*inputs))


@pytest.mark.parametrize("case", sorted(CASES))
def test_correct_float32_jvp_passes_without_upcast(case):
    inputs, f, _, jvp = CASES[case](np.float32)
    report = check_jvp(f, inputs[0] if len(inputs) == 1 else inputs, jvp, upcast=False)
    assert report.passed and not report.upcast, str(report)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", sorted(CASES))
def test_single_wrong_jvp_entry_is_named(case, dtype):
    inputs, f, _, jvp = CASES[case](dtype)
    index, _ = _wrong_entry(np.asarray(f(*inputs)))

    def wrong(t, *xs):
        out = np.array(jvp(t, *xs), copy=True)
        out[index] *= 1.01
        return out

    report = check_jvp(f, inputs[0] if len(inputs) == 1 else inputs, wrong)
    assert report.params["output"].failed_indices == [index], str(report)


@pytest.mark.parametrize("method", ["central", "forward", "richardson", "complex"])
def test_jvp_numeric_matches_naive_directional_difference(method):
    inputs, f, _, jvp = CASES["matrix"]()
    tangent = tuple(np.random.default_rng(5).normal(size=a.shape) for a in inputs)
    report = check_jvp(f, inputs, jvp, tangents=tangent, method=method)
    assert report.passed and report.method == method
    tol = 1e-5 if method == "forward" else 1e-8
    np.testing.assert_allclose(report.params["output"].numeric,
                               directional_central(f, inputs, tangent), rtol=tol, atol=tol)


def test_jvp_tangent_structures():
    inputs, f, _, jvp = CASES["matrix"]()
    t = tuple(np.ones(a.shape) for a in inputs)
    assert check_jvp(f, inputs, jvp, tangents=t).passed
    assert check_jvp(f, inputs, jvp, tangents=[t, t]).passed
    assert check_jvp(f, list(inputs), lambda t, x, W: jvp(tuple(t), x, W), tangents=2).passed
    d = {"x": inputs[0], "W": inputs[1]}
    assert check_jvp(lambda x, W: f(x, W), d, lambda t, x, W: jvp((t["x"], t["W"]), x, W),
                     tangents=[{"x": t[0], "W": t[1]}]).passed


def test_jvp_kink_is_reported_apart():
    x = np.array([0.0, 1.0, -2.0])
    report = check_jvp(lambda x: np.maximum(x, 0.0), x, lambda t, x: (x > 0) * t,
                       tangents=np.ones(3))
    out = report.params["output"]
    assert report.passed and out.kinks == [(0,)]


# -- Jacobian ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", ["elementwise", "reduction"])
def test_correct_jacobian_passes(case, dtype, unchanged):
    (x,), f, _, jvp = CASES[case](dtype)
    jac = exact_jacobian(jvp, x).astype(dtype)
    with unchanged(x):
        report = check_jacobian(f, x, jac)
        assert check_jacobian(f, x, lambda x: exact_jacobian(jvp, x)).passed
    assert report.passed, str(report)
    assert report.params["jacobian"].shape == np.shape(f(x)) + x.shape


@pytest.mark.parametrize("dtype", DTYPES)
def test_single_wrong_jacobian_entry_is_named_with_output_and_input(dtype):
    W = np.random.default_rng(3).normal(size=(4, 3, 2, 2))
    x = np.random.default_rng(4).normal(size=(2, 2)).astype(dtype)
    f = lambda x: np.einsum("ijkl,kl->ij", W.astype(x.dtype), np.tanh(x))  # noqa: E731
    jac = (W * (1 - np.tanh(x.astype(np.float64)) ** 2)).astype(dtype)
    wrong = jac.copy()
    wrong[3, 2, 1, 0] *= 1.01
    report = check_jacobian(f, x, wrong)
    p = report.params["jacobian"]
    assert p.failed_indices == [(3, 2, 1, 0)], str(report)
    assert p.diagnosis == "localized: 1 entry of 48 wrong: output[3, 2] / x[1, 0]"
    assert "output[3, 2] / x[1, 0]" in str(report)


def test_jacobian_numeric_matches_naive_loop():
    (x,), f, _, jvp = CASES["reduction"]()
    report = check_jacobian(f, x, exact_jacobian(jvp, x))
    np.testing.assert_allclose(report.params["jacobian"].numeric, jacobian_central(f, x),
                               rtol=1e-6, atol=1e-9)


def test_transposed_jacobian_is_diagnosed():
    A = np.random.default_rng(0).normal(size=(4, 4))
    x = np.linspace(-1.0, 1.0, 4)
    f = lambda x: A @ np.sin(x)  # noqa: E731
    report = check_jacobian(f, x, (A * np.cos(x)).T)
    assert report.params["jacobian"].diagnosis.startswith("transposed")


def test_wrong_jacobian_row_is_localized():
    (x,), f, _, jvp = CASES["reduction"]()
    jac = exact_jacobian(jvp, x)
    jac[2] *= 1.1
    diagnosis = check_jacobian(f, x, jac).params["jacobian"].diagnosis
    assert diagnosis.startswith("localized: output[2]: 5 of its 20 derivatives wrong")


# -- HVP --------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_grad", [True, False])
def test_correct_hvp_passes(dtype, with_grad, unchanged):
    x = np.array([0.5, -1.0, 0.25, 2.0], dtype=dtype)
    with unchanged(x):
        report = check_hvp(hvp_f, x, hvp_exact, grad=hvp_grad if with_grad else None)
    assert report.passed, str(report)
    assert report.params["hvp"].shape == x.shape
    assert report.loss == pytest.approx(float(hvp_f(x.astype(np.float64))), rel=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("with_grad", [True, False])
def test_single_wrong_hvp_entry_is_named(dtype, with_grad):
    x = np.array([0.5, -1.0, 0.25, 2.0], dtype=dtype)

    def wrong(v, x):
        out = hvp_exact(v, x)
        out[3] *= 1.01
        return out

    report = check_hvp(hvp_f, x, wrong, grad=hvp_grad if with_grad else None)
    assert report.params["hvp"].failed_indices == [(3,)], str(report)


def test_hvp_float32_grad_without_upcast_passes():
    x = np.array([0.5, -1.0, 0.25, 2.0], dtype=np.float32)
    assert check_hvp(hvp_f, x, hvp_exact, grad=hvp_grad, upcast=False).passed


def test_hvp_with_grad_only_and_given_vectors():
    x = np.array([0.5, -1.0, 0.25, 2.0])
    report = check_hvp(None, x, hvp_exact, grad=hvp_grad, vectors=np.eye(4))
    assert report.passed and np.isnan(report.loss)
    assert "4 vectors (given)" in report.notes[0]


def test_zero_dimensional_inputs_keep_their_shape():
    """f sees 0-d arrays as 0-d (float(x) works) in every check."""
    x = np.array(0.7)

    def f(x):
        assert x.shape == ()
        return np.array([np.sin(float(x)), float(x) ** 2])

    def scalar(x):
        assert x.shape == ()
        return float(x) ** 3

    assert check_jacobian(f, x, np.array([np.cos(0.7), 1.4])).passed
    assert check_jvp(f, x, lambda t, x: np.array([np.cos(0.7), 1.4]) * t).passed
    assert check_vjp(f, x, lambda u, x: u @ np.array([np.cos(0.7), 1.4])).passed
    assert check_hvp(scalar, x, lambda v, x: 6 * x * v).passed
    assert check_hvp(scalar, x, lambda v, x: 6 * x * v, grad=lambda x: 3 * x ** 2).passed


# -- bad input ---------------------------------------------------------------------------

def test_vjp_returning_wrong_shapes_is_a_clear_error(unchanged):
    inputs, f, vjp, _ = CASES["matrix"]()
    with unchanged(list(inputs)):
        with pytest.raises(ValueError, match=r"vjp\(cotangents\[0\], \.\.\.\) for the input "
                                             r"'W' has shape \(5, 3\), expected \(3, 5\) "
                                             r"\(it looks transposed\)"):
            check_vjp(f, inputs, lambda u, x, W: (u @ W.T, (x.T @ u).T))
        with pytest.raises(ValueError, match=r"has 1 entries but there are 2 inputs \(x, W\)"):
            check_vjp(f, inputs, lambda u, x, W: (u @ W.T,))
        with pytest.raises(TypeError, match=r"must be a tuple/list of 2 arrays"):
            check_vjp(f, inputs, lambda u, x, W: u @ W.T)
        with pytest.raises(TypeError, match=r"gave None for the input 'W'"):
            check_vjp(f, inputs, lambda u, x, W: (u @ W.T, None))
    x = np.ones(3)
    with pytest.raises(TypeError, match=r"must be one array \(for the input 'x'\), got tuple"):
        check_vjp(lambda x: np.sin(x), x, lambda u, x: (u, u))


def test_jvp_jac_hvp_returning_wrong_shapes_are_clear_errors():
    inputs, f, _, jvp = CASES["matrix"]()
    with pytest.raises(ValueError, match=r"jvp\(tangents\[0\], \.\.\.\) for the output "
                                         r"'output' has shape \(5, 4\), expected \(4, 5\)"):
        check_jvp(f, inputs, lambda t, x, W: jvp(t, x, W).T)
    x = np.ones(3)
    with pytest.raises(ValueError, match=r"jac has shape \(3, 2\), but f's output shape "
                                         r"\(2,\) \+ x's shape \(3,\) is \(2, 3\): it looks "
                                         r"like d x / d output"):
        check_jacobian(lambda x: x[:2] * 2, x, np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"same size, reshape it to \(2, 3\)"):
        check_jacobian(lambda x: x[:2] * 2, x, np.zeros(6))
    with pytest.raises(ValueError, match=r"hvp\(vectors\[0\], x\) for the output 'hvp' has "
                                         r"shape \(2,\), expected \(3,\)"):
        check_hvp(lambda x: np.sum(x ** 2), x, lambda v, x: 2 * v[:2])
    with pytest.raises(ValueError, match=r"grad returned an array of shape \(2,\), but x has "
                                         r"shape \(3,\)"):
        check_hvp(lambda x: np.sum(x ** 2), x, lambda v, x: 2 * v, grad=lambda x: x[:2])


def test_bad_directions_are_clear_errors():
    inputs, f, vjp, jvp = CASES["matrix"]()
    with pytest.raises(ValueError, match=r"cotangents has shape \(4, 4\); expected \(4, 5\)"):
        check_vjp(f, inputs, vjp, cotangents=np.ones((4, 4)))
    with pytest.raises(ValueError, match=r"cotangents\[1\] for the output 'output' has shape"):
        check_vjp(f, inputs, vjp, cotangents=[np.ones((4, 5)), np.ones(3)])
    with pytest.raises(ValueError, match=r"all zeros"):
        check_vjp(f, inputs, vjp, cotangents=np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"non-finite"):
        check_vjp(f, inputs, vjp, cotangents=np.full((4, 5), np.nan))
    with pytest.raises(ValueError, match=r"cotangents=0 is not valid"):
        check_vjp(f, inputs, vjp, cotangents=0)
    with pytest.raises(ValueError, match=r"tangents\[0\] for the input 'W' has shape"):
        check_jvp(f, inputs, jvp, tangents=(np.ones((4, 3)), np.ones((5, 3))))
    with pytest.raises(TypeError, match=r"tangents\[0\] must be a tuple/list of 2 arrays"):
        check_jvp(f, inputs, jvp, tangents=np.ones((4, 3)))


def test_bad_functions_and_options_are_clear_errors(unchanged):
    x = np.array([1.0, 2.0])
    calls = []

    def shape_changes(x):
        calls.append(1)
        return np.ones(2 if len(calls) < 3 else 3) * x.sum()

    with unchanged(x):
        with pytest.raises(ValueError, match=r"f returned an array of shape \(3,\).*expected "
                                             r"shape \(2,\)"):
            check_jvp(shape_changes, x, lambda t, x: np.full(2, t.sum()))
        with pytest.raises(ValueError, match=r"f returned nan in output\[1\] at the "
                                             r"unperturbed point"):
            check_jvp(lambda x: np.array([1.0, np.nan]), x, lambda t, x: t)
        with pytest.raises(ValueError, match=r"f returned nan in output\[0\] at the "
                                             r"unperturbed point"):
            check_vjp(lambda x: np.array([np.nan]), x, lambda u, x: x)
        with pytest.raises(TypeError, match=r"f returned .*dtype <U"):
            check_jacobian(lambda x: np.array(["a", "b"]), x, np.zeros((2, 2)))
        with pytest.raises(ValueError, match=r"f returned nan in output\[0\] at x \+ -0.5 "
                                             r"\* tangents\[0\]"), np.errstate(invalid="ignore"):
            check_jvp(lambda x: np.log(x[:1] - 0.75), x, lambda t, x: t[:1] / (x[:1] - 0.75),
                      tangents=np.array([1.0, 0.0]), eps=0.5)
        with pytest.raises(ValueError, match=r"method='bogus' is not valid"):
            check_jvp(np.sin, x, lambda t, x: t, method="bogus")
        with pytest.raises(ValueError, match=r"backend='numba' is not available here"):
            check_jacobian(np.sin, x, np.eye(2), backend="numba")
        with pytest.raises(TypeError, match=r"check_vjp got unexpected option\(s\) 'tangents'"):
            check_vjp(np.sin, x, lambda u, x: u, tangents=3)
        with pytest.raises(ValueError, match=r"seed=-1 is not valid"):
            check_hvp(np.sum, x, lambda v, x: 0 * v, seed=-1)
        with pytest.raises(TypeError, match=r"vjp must be callable"):
            check_vjp(np.sin, x, np.ones(2))
        with pytest.raises(TypeError, match=r"input 'x' has dtype <U1; expected a floating dtype"):
            check_jvp(np.sin, np.array(["a"]), lambda t, x: t)
        with pytest.raises(ValueError, match=r"input 'x' contains a non-finite value"):
            check_jacobian(lambda x: x, np.array([1.0, np.nan]), np.eye(2))
        with pytest.raises(TypeError, match=r"x must be one array, got a dict"):
            check_jacobian(np.sin, {"x": x}, np.eye(2))
        with pytest.raises(TypeError, match=r"method='complex' needs a f written for complex"):
            check_jvp(lambda x: np.abs(x).astype(np.float64), x, lambda t, x: t,
                      method="complex")


class Boom(Exception):
    pass


@pytest.mark.parametrize("raise_at", [1, 5, 20])
@pytest.mark.parametrize("which", ["vjp", "jvp", "jacobian", "hvp"])
def test_exceptions_from_f_propagate_and_inputs_are_untouched(which, raise_at, unchanged):
    inputs, f, vjp, jvp = CASES["elementwise"](np.float32)
    (x,) = inputs
    x.flags.writeable = False                # read-only inputs are accepted
    calls = []

    def g(x):
        calls.append(1)
        if len(calls) == raise_at:
            raise Boom("from f")
        return f(x)

    with unchanged(x):
        with pytest.raises(Boom):
            if which == "vjp":
                check_vjp(g, x, lambda u, x: vjp(u, x)[0])
            elif which == "jvp":
                check_jvp(g, x, jvp)
            elif which == "jacobian":
                check_jacobian(g, x, exact_jacobian(jvp, x))
            else:
                check_hvp(lambda x: np.sum(g(x)), x, lambda v, x: v, grad=g)


def test_keyboard_interrupt_leaves_inputs_untouched(unchanged):
    inputs, f, vjp, jvp = CASES["matrix"]()
    calls = []

    def g(x, W):
        calls.append(1)
        if len(calls) == 40:
            raise KeyboardInterrupt
        return f(x, W)

    with unchanged(list(inputs)):
        with pytest.raises(KeyboardInterrupt):
            check_vjp(g, inputs, vjp)
        calls.clear()
        with pytest.raises(KeyboardInterrupt):
            check_jvp(g, inputs, jvp, tangents=20)


# -- building blocks -------------------------------------------------------------------

def test_noise_by_output_matches_noise_from_table_column_by_column():
    rng = np.random.default_rng(0)
    t = np.linspace(-4, 4, 9)[:, None]
    columns = [
        1 + 1e-3 * t + 1e-6 * t ** 2 + 1e-9 * rng.standard_normal((9, 1)),   # noisy
        np.ones((9, 1)),                                                   # constant
        np.exp(0.5 * t),                                                   # smooth
        np.abs(t) * 1e-3,                                                  # kink
        np.float32(1.0) + np.float32(1e-6) * rng.standard_normal((9, 1)).astype(np.float32),
        rng.standard_normal((9, 1)),                                       # pure noise
    ]
    table = np.hstack(columns)
    level, status = noise_by_output(table)
    for k in range(table.shape[1]):
        ref_level, ref_status = noise_from_table(table[:, k])
        assert status[k] == ref_status and level[k] == pytest.approx(ref_level, rel=1e-12)
    bad = table.copy()
    bad[3, 0] = np.nan
    assert noise_by_output(bad)[1][0] == 0


def test_merge_runs_takes_the_worst_run_per_entry():
    w = np.array([1.0, 2.0, 3.0])
    good = gp.check(lambda w: np.sum(w ** 2), w, 2 * w).params
    bad = gp.check(lambda w: np.sum(w ** 2), w, np.array([2.0, 4.0, 6.6])).params
    merged = merge_runs([good, bad])["w"]
    assert merged.failed_indices == [(2,)] and merged.analytic[2] == pytest.approx(6.6)
    assert merged.full and merged.checked == 3
    with pytest.raises(ValueError):
        merge_runs([])
