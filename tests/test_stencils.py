"""Difference formulas against exact derivatives, and the step rule."""
from __future__ import annotations

import numpy as np
import pytest

from gradprobe import config
from gradprobe.differences.stencils import Stencil, step_size

# one-variable functions with their exact derivatives
FUNCTIONS = {
    "sin": (np.sin, np.cos),
    "exp": (np.exp, np.exp),
    "cubic": (lambda x: x ** 3 - 2 * x, lambda x: 3 * x ** 2 - 2),
    "rational": (lambda x: 1.0 / (1.0 + x ** 2), lambda x: -2 * x / (1.0 + x ** 2) ** 2),
    "log1p_sq": (lambda x: np.log1p(x ** 2), lambda x: 2 * x / (1 + x ** 2)),
}
POINTS = np.array([-3.0, -1.0, -0.25, 0.0, 0.3, 1.0, 2.5, 40.0])


def _estimate(method, g, x, dtype):
    st = Stencil(method)
    x = x.astype(dtype)
    eps = float(np.finfo(dtype).eps)
    f0 = float(g(x.astype(np.float64)[0])) if x.size == 1 else None
    h = step_size(x.astype(np.float64), method, eps)
    pts = st.points(x, h)
    if method == "complex":
        losses = g(pts.astype(np.complex128))
    else:
        # evaluate in the working dtype, like a float32 loss would
        losses = g(pts).astype(dtype).astype(np.float64)
    out = []
    for i in range(x.size):
        f0 = float(np.asarray(g(x[i:i + 1]), dtype=dtype)[0])
        noise = eps * max(abs(f0), 1e-300)
        out.append(st.estimate(losses[i:i + 1], x[i:i + 1], pts[i:i + 1], f0, noise, eps))
    return np.array([e.value[0] for e in out]), np.array([e.error_bar[0] for e in out])


@pytest.mark.parametrize("method", ["central", "forward", "richardson", "complex"])
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_estimates_are_within_their_error_bars_float64(method, name):
    g, dg = FUNCTIONS[name]
    x = POINTS if name != "exp" else POINTS[POINTS < 10]
    value, bar = _estimate(method, g, x, np.float64)
    exact = dg(x)
    if method == "forward":
        # forward differences carry no curvature information: their bar is a
        # scale-model guess, so only the method's known accuracy is asserted
        bar = np.maximum(bar, 1e-6 * np.maximum(1.0, np.abs(exact)))
    assert np.all(np.abs(value - exact) <= bar + 1e-300), (value - exact, bar)
    # and the bars are tight enough to be useful: far below a 1 % error
    assert np.all(bar <= 1e-3 * np.maximum(np.abs(exact), 1e-2) + 1e-9)


@pytest.mark.parametrize("method", ["central", "forward", "richardson"])
@pytest.mark.parametrize("name", sorted(FUNCTIONS))
def test_estimates_are_within_their_error_bars_float32(method, name):
    g, dg = FUNCTIONS[name]
    x = np.array([-1.0, -0.25, 0.3, 1.0, 2.5])
    value, bar = _estimate(method, g, x, np.float32)
    exact = dg(x.astype(np.float32).astype(np.float64))
    if method == "forward":
        bar = np.maximum(bar, 1e-3 * np.maximum(1.0, np.abs(exact)))
    assert np.all(np.abs(value - exact) <= bar), (value - exact, bar)


def test_accuracy_ranking_on_exp():
    """Richardson beats central beats forward; complex step is exact to rounding."""
    x = np.array([0.7])
    errors = {}
    for method in ("forward", "central", "richardson", "complex"):
        value, _ = _estimate(method, np.exp, x, np.float64)
        errors[method] = abs(value[0] - np.exp(0.7))
    assert errors["complex"] < 1e-15
    assert errors["richardson"] < errors["central"] < errors["forward"]
    assert errors["forward"] < 1e-6


def test_central_step_is_cbrt_eps_rounded_to_power_of_two():
    x = np.array([0.0, 0.5, 1.0, -8.0, 1e6])
    h = step_size(x, "central", 2.0 ** -52)
    ideal = (2.0 ** -52) ** (1 / 3) * np.maximum(1.0, np.abs(x))
    assert np.all(np.log2(h) == np.round(np.log2(h)))  # powers of two
    assert np.all((h <= ideal) & (h > ideal / 2))


@pytest.mark.parametrize("method,order", [("forward", 1), ("central", 2), ("richardson", 4)])
def test_step_follows_noise(method, order):
    h_quiet = step_size(np.array([1.0]), method, 1e-16)[0]
    h_noisy = step_size(np.array([1.0]), method, 1e-10)[0]
    # six orders of magnitude more noise -> 10**(6 / (order + 1)) larger step (within 2x)
    ratio = h_noisy / h_quiet
    expected = 10 ** (6 / (order + 1))
    assert expected / 2 <= ratio <= expected * 2


def test_user_step_is_used_as_given():
    assert np.all(step_size(np.array([0.0, 100.0]), "central", 1e-16, eps=1e-4) == 1e-4)


def test_points_are_exact_offsets_in_working_dtype():
    st = Stencil("richardson")
    x = np.array([1.5, -3.25], dtype=np.float32)
    h = step_size(x.astype(np.float64), "richardson", float(np.finfo(np.float32).eps))
    pts = st.points(x, h)
    assert pts.dtype == np.float32 and pts.shape == (2, 4)
    deltas = pts.astype(np.float64) - x.astype(np.float64)[:, None]
    assert np.array_equal(deltas, np.outer(h, [1, -1, 2, -2]))


def test_complex_points_keep_real_part():
    st = Stencil("complex")
    x = np.array([0.25, 2.0])
    pts = st.points(x, step_size(x, "complex", 1e-16))
    assert pts.dtype == np.complex128
    assert np.array_equal(pts.real[:, 0], x)
    assert np.allclose(pts.imag[:, 0], config.COMPLEX_STEP * np.maximum(1, np.abs(x)), rtol=1e-15)


def test_central_reports_one_sided_derivatives_at_a_kink():
    st = Stencil("central")
    x = np.array([0.0])
    h = np.array([2.0 ** -18])
    pts = st.points(x, h)
    est = st.estimate(np.abs(pts), x, pts, 0.0, 0.0, 2.0 ** -52)
    assert est.left[0] == -1.0 and est.right[0] == 1.0 and est.value[0] == 0.0


def test_unknown_method_is_rejected():
    with pytest.raises(ValueError, match="unknown method"):
        Stencil("backward")
