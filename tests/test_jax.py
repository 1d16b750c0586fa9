"""JAX: arrays through gp.check, and gradprobe.jax.check_function through jax.vjp
(skipped when JAX is not installed)."""
from __future__ import annotations

import numpy as np
import pytest

jax = pytest.importorskip("jax")
jnp = pytest.importorskip("jax.numpy")

import gradprobe as gp  # noqa: E402
import gradprobe.jax as gj  # noqa: E402


def _x64() -> bool:
    return bool(jax.config.jax_enable_x64)


def make_dense(planted=None):
    """A dense tanh layer with a custom_vjp rule; ``planted`` = (input, index) is
    made 1 % wrong."""
    @jax.custom_vjp
    def dense(x, W, b):
        return jnp.tanh(x @ W + b)

    def fwd(x, W, b):
        y = jnp.tanh(x @ W + b)
        return y, (x, W, y)

    def bwd(res, g):
        x, W, y = res
        d = g * (1 - y ** 2)
        grads = [d @ W.T, x.T @ d, d.sum(0)]
        if planted is not None:
            which, index = planted
            grads[which] = grads[which].at[index].multiply(1.01)
        return tuple(grads)

    dense.defvjp(fwd, bwd)
    return dense


def _point(dtype):
    rng = np.random.default_rng(0)
    return (jnp.asarray(rng.standard_normal((6, 10)), dtype),
            jnp.asarray(rng.standard_normal((10, 7)) * 0.3, dtype),
            jnp.asarray(rng.standard_normal(7) * 0.1, dtype))


def test_check_takes_jax_arrays_without_touching_the_x64_setting():
    before = _x64()
    x = jnp.linspace(-1.0, 1.0, 7)
    f = jax.jit(lambda x: jnp.sum(jnp.sin(x) * x))
    report = gp.check(f, x, jnp.cos(x) * x + jnp.sin(x))
    assert report.passed and report.upcast, report
    assert _x64() == before
    num = gp.numerical_gradient(f, x)
    assert isinstance(num, jax.Array) and num.dtype == x.dtype
    np.testing.assert_allclose(np.asarray(num), np.cos(np.asarray(x, np.float64))
                               * np.asarray(x, np.float64) + np.sin(np.asarray(x, np.float64)),
                               rtol=1e-5, atol=1e-6)
    bad = (jnp.cos(x) * x + jnp.sin(x)).at[2].multiply(1.05)
    assert gp.check(f, x, bad).params["x"].failed_indices == [(2,)]


def test_float32_is_evaluated_in_float64_inside_a_scoped_x64():
    seen = []

    def f(x):
        seen.append(x.dtype)
        return jnp.sum(x ** 3)

    x = jnp.linspace(0.5, 1.5, 4)
    assert gp.check(f, x, 3 * x ** 2).passed
    assert seen[0] == jnp.float32 and np.dtype("float64") in [np.dtype(d) for d in seen]
    assert not _x64()


def test_a_correct_custom_vjp_passes_in_float32():
    x, W, b = _point(jnp.float32)
    report = gj.check_function(make_dense(), x, W, b)
    assert report.passed, report
    assert list(report.params) == ["x", "W", "b"]
    assert isinstance(report.params["W"].numeric, np.ndarray)
    assert not _x64()


@pytest.mark.parametrize("which,index", [(0, (2, 3)), (1, (4, 5)), (2, (6,))])
def test_a_one_percent_error_in_a_float64_custom_vjp_is_named(which, index):
    with jax.enable_x64(True):
        x, W, b = _point(jnp.float64)
        report = gj.check_function(make_dense((which, index)), x, W, b)
    assert not report.passed
    name = ["x", "W", "b"][which]
    assert report.params[name].failed_indices == [index], report
    assert all(p.passed for n, p in report.params.items() if n != name)


def test_integer_inputs_are_held_fixed():
    def pick(x, index):
        return x[index] ** 2

    x = jnp.linspace(-1.0, 1.0, 5)
    report = gj.check_function(pick, x, jnp.array([0, 3, 3]))
    assert report.passed and list(report.params) == ["x"]
    assert any("index" in n for n in report.notes)


def test_the_x64_setting_is_restored_when_fn_raises():
    calls = []

    def f(x):
        calls.append(1)
        if len(calls) > 3:
            raise RuntimeError("boom")
        return x * 2

    with pytest.raises(RuntimeError, match="boom"):
        gj.check_function(f, jnp.ones(4))
    assert not _x64()


def test_a_correct_custom_vjp_has_no_structural_findings_and_a_constant_one_has():
    x, W, b = _point(jnp.float32)
    assert gj.check_function(make_dense(), x, W, b).findings == []

    @jax.custom_vjp
    def square(x):
        return x ** 2

    square.defvjp(lambda x: (x ** 2, x), lambda x, g: (2 * x * g + 1e-3,))
    report = gj.check_function(square, jnp.linspace(0.5, 1.0, 4))
    assert "zero-cotangent" in {f.kind for f in report.findings}
