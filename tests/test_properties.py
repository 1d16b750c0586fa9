"""Property-based tests: random polynomials and compositions, random shapes and dtypes.

For every random problem the numerical gradient agrees with the exact
derivative within the error bar it reports, and the check passes.
"""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import gradprobe as gp

SETTINGS = settings(max_examples=60, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])

shapes = hnp.array_shapes(min_dims=0, max_dims=3, min_side=1, max_side=4)
dtypes = st.sampled_from([np.float32, np.float64])


@st.composite
def problems(draw):
    """A random smooth loss over 1-3 arrays with its exact gradient."""
    count = draw(st.integers(1, 3))
    dtype = draw(dtypes)
    params = []
    for _ in range(count):
        shape = draw(shapes)
        values = draw(hnp.arrays(np.float64, shape,
                                 elements=st.floats(-2, 2, allow_subnormal=False)))
        params.append(values.astype(dtype))
    coeffs = draw(st.lists(st.floats(-2, 2, allow_subnormal=False), min_size=4, max_size=4))
    freq = draw(st.floats(0.1, 2.0))
    couple = draw(st.floats(-1, 1, allow_subnormal=False))
    c1, c2, c3, c4 = coeffs

    def f(*ps):
        total = 0.0
        for p in ps:
            total = total + np.sum(c1 * p + c2 * p ** 2 + c3 * p ** 3 + c4 * p ** 4)
            total = total + np.sum(np.sin(freq * p) * np.exp(0.2 * p))
            total = total + couple * np.sum(p) ** 2
        return total + 0.5 * np.sum(np.tanh(ps[0])) * np.sum(ps[-1])

    def exact(*ps):
        ps = [p.astype(np.float64) for p in ps]
        grads = []
        for p in ps:
            g = c1 + 2 * c2 * p + 3 * c3 * p ** 2 + 4 * c4 * p ** 3
            g = g + freq * np.cos(freq * p) * np.exp(0.2 * p) + 0.2 * np.sin(freq * p) * np.exp(0.2 * p)
            g = g + 2 * couple * np.sum(p) * np.ones_like(p)
            grads.append(g)
        grads[0] = grads[0] + 0.5 * (1 - np.tanh(ps[0]) ** 2) * np.sum(ps[-1])
        grads[-1] = grads[-1] + 0.5 * np.sum(np.tanh(ps[0])) * np.ones_like(ps[-1])
        return [np.asarray(g) for g in grads]

    return f, tuple(params), exact(*params)


@SETTINGS
@given(problems(), st.sampled_from(["central", "richardson", "complex"]))
def test_numerical_estimates_lie_within_their_error_bars(problem, method):
    f, params, exact = problem
    grads = tuple(g.astype(p.dtype) for g, p in zip(exact, params))
    report = gp.check(f, params, grads, method=method)
    # Richardson's truncation bar is measured (two step sizes) and the complex
    # step has next to none; the central bar models the third derivative from
    # the observed curvature, which a point with small first and second but
    # large third derivative fools (x**3 at 0 looks exactly linear to three
    # points): the unseen truncation there is about 1e-10, far below rtol.
    factor = 4.0 if method == "central" else 1.0
    rel = 1e-9 if method == "central" else 1e-12
    for p, g in zip(report.params.values(), exact):
        err = np.abs(p.numeric - g)
        slack = rel * np.maximum(1.0, np.abs(g))  # rounding of the reference (+ unseen)
        assert np.all(err <= factor * p.error_bar + slack), (method, err.max(),
                                                             p.error_bar.max())


@SETTINGS
@given(problems(), st.sampled_from(["central", "forward", "richardson", "complex"]))
def test_exact_gradients_pass_in_both_dtypes(problem, method):
    f, params, exact = problem
    grads = tuple(g.astype(p.dtype) for g, p in zip(exact, params))
    report = gp.check(f, params, grads, method=method)
    assert report.passed, str(report)


@SETTINGS
@given(problems(), st.integers(0, 10_000))
def test_a_ten_percent_error_in_one_entry_is_found(problem, where):
    f, params, exact = problem
    grads = [np.array(g, dtype=np.float64) for g in exact]  # float64 gradients
    p = where % len(grads)
    flat = grads[p].reshape(-1)
    k = where % flat.size
    if abs(flat[k]) < 1e-2 * max(1.0, np.max(np.abs(flat))):
        return  # a near-zero entry: a relative error there is below any absolute floor
    flat[k] *= 1.1
    report = gp.check(f, tuple(a.astype(np.float64) for a in params), tuple(grads))
    name = list(report.params)[p]
    index = tuple(int(i) for i in np.unravel_index(k, grads[p].shape))
    assert report.params[name].failed_indices == [index], str(report)
    assert report.failed == 1


@SETTINGS
@given(problems())
def test_user_arrays_are_never_changed(problem):
    f, params, exact = problem
    before = [p.copy() for p in params]
    gp.check(f, params, tuple(exact), mode="sample", samples=3)
    for a, b in zip(params, before):
        assert a.tobytes() == b.tobytes()
