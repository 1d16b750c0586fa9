"""Compressed Jacobians: groupings found from the function, verified, falling back per input."""
import numpy as np
import pytest

import gradprobe as gp
from gradprobe.differences.compression import (Columns, JacobianSink, detect_grouping,
                                               entry_steps, run_groups)
from gradprobe.differences.grouping import AxisGrouping, PatternGrouping, group_columns
from gradprobe.differences.vector import VectorFunction
from gradprobe.examples.blackbox_layers import (conv3x3, dense_tanh, elementwise, layer_norm,
                                                max_pool, planted, relu_dense, row_softmax,
                                                weakly_coupled)
from gradprobe.problem.params import ParamSet

SMALL = {
    "dense": lambda: dense_tanh(batch=6, n_in=10, n_out=8),
    "conv": lambda: conv3x3(batch=2, c_in=3, c_out=4, size=6),
    "elementwise": lambda: elementwise(shape=(6, 20)),
    "elementwise_3d": lambda: elementwise(shape=(3, 4, 5)),
    "softmax": lambda: row_softmax(shape=(5, 12)),
    "layernorm": lambda: layer_norm(shape=(4, 18)),
    "relu": lambda: relu_dense(batch=6, n_in=9, n_out=7),
}


def naive_jacobian(f, inputs, p, h=1e-6):
    """Central differences, one entry at a time (the obviously correct reference)."""
    x = inputs[p]
    y0 = f(*inputs)
    J = np.empty((y0.size, x.size))
    for j in range(x.size):
        cols = []
        for s in (h, -h):
            moved = [a.copy() for a in inputs]
            moved[p].reshape(-1)[j] += s
            cols.append(f(*moved).reshape(-1))
        J[:, j] = (cols[0] - cols[1]) / (2 * h)
    return J


def prepared(f, inputs):
    return VectorFunction.prepare(f, ParamSet.from_user(tuple(inputs), f), (), upcast=True,
                                  complex_step=False, seed=0)


def grouped_jacobian(f, inputs, p, method="central"):
    vf = prepared(f, inputs)
    rng = np.random.default_rng(1)
    grouping, why = detect_grouping(vf, p, method, None, rng)
    assert grouping is not None, why
    h0, scale = entry_steps(vf, p, method, None)
    sink = JacobianSink(vf, method, h0, scale)
    assert run_groups(Columns(vf, p, method, h0, scale), grouping, sink, rng) is None
    return grouping, sink


@pytest.mark.parametrize("case", sorted(SMALL))
def test_grouped_columns_match_a_naive_dense_jacobian(case):
    f, _, inputs = SMALL[case]()
    for p, x in enumerate(inputs):
        if x.size < gp.config.COMPRESSION_MIN_ENTRIES:
            continue
        grouping, sink = grouped_jacobian(f, inputs, p)
        assert grouping.groups < x.size
        J = naive_jacobian(f, inputs, p)
        assert np.allclose(sink.value, J, rtol=1e-6, atol=1e-8), (case, p)
        # the error bars cover the difference to the naive estimate where it is exact
        assert np.all(np.abs(sink.value - J) <= sink.bar + 1e-8)


@pytest.mark.parametrize("case, p, groups", [
    ("dense", 0, 10), ("dense", 1, 10), ("conv", 0, 27), ("conv", 1, 27),
    ("elementwise", 0, 1), ("elementwise_3d", 0, 1), ("softmax", 0, 12), ("layernorm", 0, 18),
])
def test_the_groups_follow_the_structure(case, p, groups):
    f, _, inputs = SMALL[case]()
    grouping, _ = grouped_jacobian(f, inputs, p)
    assert grouping.groups == groups


def test_every_group_has_disjoint_supports():
    f, _, inputs = SMALL["conv"]()
    grouping, _ = grouped_jacobian(f, inputs, 0)
    J = naive_jacobian(f, inputs, 0)
    support = np.abs(J) > 1e-12
    for g in range(grouping.groups):
        members = grouping.members(g)
        assert (support[:, members].sum(axis=1) <= 1).all()
        owners = grouping.owners(g)
        moved = support[:, members].any(axis=1)
        assert (owners[moved] >= 0).all()


def test_forward_and_richardson_groups_match_too():
    f, _, inputs = SMALL["dense"]()
    J = naive_jacobian(f, inputs, 1)
    for method in ("forward", "richardson"):
        _, sink = grouped_jacobian(f, inputs, 1, method)
        assert np.allclose(sink.value, J, rtol=1e-5, atol=1e-7)


def _same_verdicts(a, b):
    assert a.status == b.status
    for name in a.params:
        assert a.params[name].failed_indices == b.params[name].failed_indices, name
        assert a.params[name].kinks == b.params[name].kinks, name


LAYERS = {
    "dense": lambda: dense_tanh(batch=8, n_in=16, n_out=12),
    "conv": lambda: conv3x3(batch=2, c_in=3, c_out=4, size=6),
    "elementwise": lambda: elementwise(shape=(16, 40)),
    "softmax": lambda: row_softmax(shape=(8, 30)),
    "layernorm": lambda: layer_norm(shape=(8, 20)),
    "weak": weakly_coupled,
    "maxpool": max_pool,
    "relu": relu_dense,
}


@pytest.mark.parametrize("case", sorted(LAYERS))
def test_verdicts_are_those_of_the_entry_by_entry_check(case):
    f, vjp, inputs = LAYERS[case]()
    grouped = gp.check_vjp(f, inputs, vjp)
    single = gp.check_vjp(f, inputs, vjp, compression=False)
    assert grouped.passed
    _same_verdicts(grouped, single)
    for p in single.params.values():
        assert p.strategy == "entry by entry: compression=False"


@pytest.mark.parametrize("case", sorted(LAYERS))
def test_a_one_percent_error_in_one_entry_is_named_exactly(case):
    f, vjp, inputs = LAYERS[case]()
    grads = vjp(np.ones_like(f(*inputs)), *inputs)
    for which, g in enumerate(grads):
        index = np.unravel_index(int(np.argmax(np.abs(g))), g.shape)
        report = gp.check_vjp(f, inputs, planted(vjp, which, index))
        named = {n: p.failed_indices for n, p in report.params.items()}
        name = list(report.params)[which]
        assert named[name] == [tuple(int(i) for i in index)], (case, named)
        assert all(not v for n, v in named.items() if n != name)


def test_weakly_coupled_weights_fall_back_and_say_why():
    f, vjp, inputs = weakly_coupled()
    report = gp.check_vjp(f, inputs, vjp)
    assert report.params["W"].strategy == "entry by entry: outputs overlap"
    assert report.params["x"].strategy.startswith("compressed: 12 groups")
    assert "W: entry by entry: outputs overlap" in report.notes


def test_max_pool_falls_back_to_entry_by_entry():
    f, vjp, inputs = max_pool()
    report = gp.check_vjp(f, inputs, vjp)
    assert report.passed
    assert report.params["x"].strategy.startswith("entry by entry")


def test_a_wrong_grouping_is_rejected():
    f, _, inputs = SMALL["softmax"]()
    vf = prepared(f, inputs)
    # claims that x[i, j] moves y[i, j] only (elementwise): false for a softmax
    wrong = AxisGrouping(shape=(5, 12), out_shape=(5, 12), centre=(2, 6), moduli=(1, 1),
                         windows=[(2, 2), (6, 6)], shifts=[[1, 0], [0, 1]])
    h0, scale = entry_steps(vf, 0, "central", None)
    sink = JacobianSink(vf, "central", h0, scale)
    reason = run_groups(Columns(vf, 0, "central", h0, scale), wrong, sink,
                        np.random.default_rng(0))
    assert reason is not None and "disagrees" in reason


def test_a_wrong_sparsity_falls_back_with_the_same_verdict():
    f, vjp, (x,) = row_softmax(shape=(8, 30))
    report = gp.check_vjp(f, (x,), vjp, sparsity=np.eye(x.size, dtype=bool))
    assert report.passed
    assert report.params["x"].strategy.startswith("entry by entry: grouping rejected")
    bad = gp.check_vjp(f, (x,), planted(vjp, 0, (3, 4)), sparsity=np.eye(x.size, dtype=bool))
    assert bad.params["x"].failed_indices == [(3, 4)]


def test_a_given_sparsity_is_used_dense_or_scipy():
    f, vjp, (x,) = elementwise(shape=(10, 30))
    for pattern in (np.eye(x.size, dtype=bool), pytest.importorskip("scipy.sparse").eye(x.size)):
        report = gp.check_vjp(f, (x,), vjp, sparsity=pattern)
        assert report.passed
        assert report.params["x"].strategy == \
            "compressed: 1 group for 300 entries (from the given sparsity pattern, verified)"


def test_sparsity_for_several_inputs_by_name():
    f, vjp, inputs = dense_tanh(batch=4, n_in=6, n_out=5)
    x, W, b = inputs
    pattern_W = np.zeros((4 * 5, W.size), dtype=bool)
    for i in range(6):
        for j in range(5):
            pattern_W[j::5, i * 5 + j] = True   # W[i, j] moves y[:, j]
    report = gp.check_vjp(f, {"x": x, "W": W, "b": b}, lambda u, x, W, b: dict(
        zip("xWb", vjp(u, x, W, b))), sparsity={"W": pattern_W})
    assert report.passed
    assert report.params["W"].strategy.startswith("compressed: 6 groups")


def test_bad_compression_options_are_named():
    f, vjp, (x,) = elementwise(shape=(4, 5))
    with pytest.raises(ValueError, match=r"^check_vjp: compression='yes' is not valid"):
        gp.check_vjp(f, (x,), vjp, compression="yes")
    with pytest.raises(ValueError, match=r"^check_vjp: sparsity= is only used with "):
        gp.check_vjp(f, (x,), vjp, compression=False, sparsity=np.eye(20))
    with pytest.raises(ValueError, match=r"check_vjp: sparsity for 'x' has shape \(3, 3\)"):
        gp.check_vjp(f, (x,), vjp, sparsity=np.eye(3))
    with pytest.raises(TypeError, match=r"^check_vjp: sparsity must be an array"):
        gp.check_vjp(f, (x,), vjp, sparsity="diagonal")
    with pytest.raises(TypeError, match="compression"):
        gp.check(lambda w: float(np.sum(w ** 2)), x, 2 * x, compression=False)
    with pytest.raises(TypeError, match=r"^check_jvp: sparsity= does not apply"):
        gp.check_jvp(f, x, lambda t, x: t, sparsity=np.eye(20))


def test_compression_true_means_auto():
    f, vjp, (x,) = elementwise(shape=(4, 8))
    report = gp.check_vjp(f, (x,), vjp, compression=True)
    assert report.params["x"].strategy.startswith("compressed")


def test_evaluations_count_every_call_of_f():
    f, vjp, inputs = dense_tanh(batch=8, n_in=32, n_out=24)
    calls = [0]

    def counted(*a):
        calls[0] += 1
        return f(*a)

    report = gp.check_vjp(counted, inputs, vjp)
    assert report.evaluations == calls[0]
    calls[0] = 0
    bad = gp.check_vjp(counted, inputs, planted(vjp, 1, (2, 3)))
    assert bad.evaluations == calls[0]


def test_evaluations_are_about_two_per_group():
    f, vjp, (x,) = elementwise(shape=(64, 256))
    assert gp.check_vjp(f, (x,), vjp).evaluations <= 60
    f, vjp, inputs = dense_tanh(batch=16, n_in=64, n_out=64)
    groups = 64 + 64 + 1
    assert gp.check_vjp(f, inputs, vjp).evaluations <= 4 * groups + 400


def test_user_arrays_are_untouched_also_when_f_raises():
    f, vjp, inputs = conv3x3(batch=2, c_in=2, c_out=3, size=5)
    before = [a.copy() for a in inputs]
    gp.check_vjp(f, inputs, vjp)
    for a, b in zip(inputs, before):
        assert np.array_equal(a, b) and a.tobytes() == b.tobytes()
    calls = [0]

    def failing(*a):
        calls[0] += 1
        if calls[0] == 40:   # in the middle of the groups
            raise RuntimeError("boom")
        return f(*a)

    with pytest.raises(RuntimeError, match="boom"):
        gp.check_vjp(failing, inputs, vjp)
    for a, b in zip(inputs, before):
        assert a.tobytes() == b.tobytes()


def test_float32_layers_pass_compressed():
    f, vjp, inputs = dense_tanh(batch=8, n_in=16, n_out=12)
    inputs32 = tuple(a.astype(np.float32) for a in inputs)

    def vjp32(u, *xs):
        return tuple(g.astype(np.float32) for g in vjp(u.astype(np.float64),
                                                       *(a.astype(np.float64) for a in xs)))

    def f32(x, W, b):
        return f(x, W, b).astype(x.dtype)

    report = gp.check_vjp(f32, inputs32, vjp32)
    assert report.passed, str(report)
    assert report.params["W"].strategy.startswith("compressed")
    assert report.params["W"].dtype == "float32"


def test_check_layer_is_compressed_through_check_vjp():
    class Dense:
        def __init__(self, W, b):
            self.params = {"W": W, "b": b}
            self.grads = {"W": np.zeros_like(W), "b": np.zeros_like(b)}

        def forward(self, x):
            self.x = x
            return np.tanh(x @ self.params["W"] + self.params["b"])

        def backward(self, g):
            d = g * (1 - np.tanh(self.x @ self.params["W"] + self.params["b"]) ** 2)
            self.grads["W"][...] = self.x.T @ d
            self.grads["b"][...] = d.sum(axis=0)
            return d @ self.params["W"].T

    _, _, (x, W, b) = dense_tanh(batch=8, n_in=20, n_out=18)
    report = gp.check_layer(Dense(W, b), x)
    assert report.passed
    assert report.params["W"].strategy.startswith("compressed: 20 groups")
    assert report.to_dict()["params"]["W"]["strategy"] == report.params["W"].strategy
    off = gp.check_layer(Dense(W, b), x, compression=False)
    _same_verdicts(report, off)


def test_other_modes_run_entry_by_entry_and_say_so():
    f, vjp, (x,) = elementwise(shape=(8, 8))
    report = gp.check_vjp(f, (x,), vjp, mode="sample", samples=5)
    assert report.params["x"].strategy == "entry by entry: mode='sample' checks chosen entries"


def test_check_jacobian_groups_and_matches_the_column_path():
    f, vjp, (x,) = row_softmax(shape=(6, 10))
    y = f(x)
    J = np.stack([vjp(np.eye(y.size)[r].reshape(y.shape), x)[0].reshape(-1)
                  for r in range(y.size)]).reshape(y.shape + x.shape)
    grouped = gp.check_jacobian(f, x, J)
    columns = gp.check_jacobian(f, x, J, compression=False)
    assert grouped.passed and columns.passed
    assert grouped.params["jacobian"].strategy.startswith("compressed: 10 groups")
    assert grouped.evaluations < columns.evaluations
    assert np.allclose(grouped.params["jacobian"].numeric, columns.params["jacobian"].numeric,
                       rtol=1e-7, atol=1e-9)
    bad = J.copy()
    bad[2, 3, 2, 5] *= 1.01
    assert gp.check_jacobian(f, x, bad).params["jacobian"].failed_indices == [(2, 3, 2, 5)]


def test_group_columns_matches_a_naive_check():
    rng = np.random.default_rng(0)
    for _ in range(20):
        m, n = rng.integers(1, 30, size=2)
        pattern = rng.random((m, n)) < 0.2
        grouping = PatternGrouping.from_dense(pattern)
        for g in range(grouping.groups):
            members = grouping.members(g)
            assert (pattern[:, members].sum(axis=1) <= 1).all()
            owners = grouping.owners(g)
            for r in range(m):
                hit = members[pattern[r, members]]
                assert owners[r] == (hit[0] if hit.size else -1)
        assert grouping.groups <= max(1, pattern.sum(axis=1).max(initial=0)) + n
    assert group_columns(np.array([0, 1, 2]), np.array([0, 0]), 1).tolist() == [0, 1]


# -- outputs that cancel: the directional screen is settled entry by entry ----------
_C = np.sqrt(2 / np.pi)


def _gelu(x):
    """GELU, tanh form: ``1 + tanh(z)`` cancels for large negative x (a staircase)."""
    return 0.5 * x * (1 + np.tanh(_C * (x + 0.044715 * x ** 3)))


def _gelu_vjp(u, x):
    t = np.tanh(_C * (x + 0.044715 * x ** 3))
    dt = (1 - t ** 2) * _C * (1 + 3 * 0.044715 * x ** 2)
    return (u * (0.5 * (1 + t) + 0.5 * x * dt),)


def test_an_elementwise_gelu_with_cancelling_outputs_stays_compressed():
    """Entries near x = -4..-7 make outputs whose rounding the noise probe cannot
    see; the random direction then disagrees there, and each such output is
    settled by its owner evaluated alone (it was rejected before: 24,703
    evaluations instead of ~100). A 1 % error in one entry is still named."""
    cases = [(scale, seed) for scale in (2.0, 3.0, 4.0) for seed in range(3)]
    compressed, named = 0, 0
    for scale, seed in cases:
        x = scale * np.random.default_rng(seed).standard_normal((32, 128))
        report = gp.check_vjp(_gelu, (x,), _gelu_vjp)
        assert report.passed, report
        if report.params["x"].strategy.startswith("compressed"):
            compressed += 1
            assert report.evaluations < 600, report.evaluations
        bad = gp.check_vjp(_gelu, (x,), planted(_gelu_vjp, 0, (5, 9)))
        named += bad.params["x"].failed_indices == [(5, 9)]
    print(f"compressed {compressed}/{len(cases)}, 1 % error named exactly {named}/{len(cases)}")
    assert compressed == len(cases)
    assert named == len(cases)


def _hidden_coupling(n=400, hidden=337, weight=1e-3):
    """Elementwise tanh, except output 0 also moves with entry ``hidden``: the
    support probes miss it, so the guessed grouping (one group) is wrong at one
    output only."""
    def f(x):
        y = np.tanh(x)
        y[0] += weight * x[hidden]
        return y

    def vjp(u, x):
        g = u * (1 - np.tanh(x) ** 2)
        g[hidden] += weight * u[0]
        return (g,)

    def vjp_without_coupling(u, x):
        return (u * (1 - np.tanh(x) ** 2),)

    return f, vjp, vjp_without_coupling


def test_a_grouping_wrong_at_one_output_is_still_rejected():
    """The directional screen flags one output; its owner evaluated alone
    disagrees with the group, so the grouping falls back and the verdicts are
    those of the entry-by-entry check (a wrong guess accepted would fail the
    correct backward at the hidden entry and pass the one that forgets it)."""
    f, vjp, forgetful = _hidden_coupling()
    x = np.random.default_rng(3).standard_normal(400)
    good = gp.check_vjp(f, (x,), vjp)
    assert good.passed, good
    assert good.params["x"].strategy.startswith("entry by entry"), good.params["x"].strategy
    bad = gp.check_vjp(f, (x,), forgetful)
    assert not bad.passed
    assert bad.params["x"].failed_indices == [(337,)], bad.params["x"].failed_indices
