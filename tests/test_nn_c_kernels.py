"""The C twin of gradprobe.nn's kernels against the Numba kernels, and its guards.

The two implementations sum in the same order without fused multiply-add, so
every kernel must give the same bits as its Numba twin (both call the
platform's libm for tanh/exp/expm1/log1p); the structured check on either
gives identical estimates and verdicts. Every argument is validated in
Python before a pointer reaches C.
"""
from __future__ import annotations

import numpy as np
import pytest

import gradprobe as gp
from gradprobe import nn
from gradprobe.engines import ckernel
from gradprobe.nn import c_kernels, constants, kernels
from gradprobe.nn.backends import NUMBA, kernel_set
from gradprobe.nn.check import _plan
from gradprobe.nn.contraction import contract
from gradprobe.nn.downstream import flatten_stages, loss_differences

import nn_reference as ref
from c_harness import needs_cc, run_sanitized

pytestmark = pytest.mark.skipif(not c_kernels.available(),
                                reason="the gradprobe C kernel is not built")

DTYPES = [np.float32, np.float64]
#: (M, K, N): single entries, K not a multiple of 4, N across column tiles (128),
#: M across row tiles (16).
SHAPES = [(1, 1, 1), (1, 5, 3), (3, 1, 4), (17, 7, 129), (33, 258, 130), (2, 40, 600)]
ACTIVATIONS = [nn.Identity, nn.ReLU, nn.Tanh, nn.Sigmoid]


@pytest.fixture(scope="module", params=[1, 2, 3], ids=lambda t: f"threads{t}")
def ck(request):
    return c_kernels.CKernels(threads=request.param)


def assert_same(actual, expected):
    """Bit for bit (NaN == NaN)."""
    assert actual.dtype == expected.dtype and actual.shape == expected.shape
    assert np.array_equal(actual.view(np.uint8), expected.view(np.uint8)), \
        np.max(np.abs(actual.astype(float) - expected.astype(float)))


def test_codes_agree_with_the_python_constants():
    from gradprobe import _ckernel

    lib = _ckernel.lib
    assert (lib.GP_NN_IDENTITY, lib.GP_NN_RELU, lib.GP_NN_TANH, lib.GP_NN_SIGMOID) == \
        (constants.IDENTITY, constants.RELU, constants.TANH, constants.SIGMOID)
    assert (lib.GP_NN_LOSS_MSE, lib.GP_NN_LOSS_SOFTMAX_CE) == \
        (constants.LOSS_MSE, constants.LOSS_SOFTMAX_CE)
    assert (lib.GP_NN_STAGE_ACTIVATION, lib.GP_NN_STAGE_DENSE) == \
        (constants.STAGE_ACTIVATION, constants.STAGE_DENSE)
    assert (lib.GP_NN_METHOD_CENTRAL, lib.GP_NN_METHOD_FORWARD) == \
        (constants.METHOD_CODES["central"], constants.METHOD_CODES["forward"])


# -- dense forward/backward kernels -------------------------------------------
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_matmul_and_dense_forward_match_numba(ck, dtype, m, k, n):
    rng = np.random.default_rng(m * 1000 + k + n)
    A = rng.standard_normal((m, k)).astype(dtype)
    B = rng.standard_normal((k, n)).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    ours, theirs = np.full((m, n), np.nan, dtype), np.empty((m, n), dtype)
    ck.matmul(A, B, ours)
    kernels.matmul(A, B, theirs)
    assert_same(ours, theirs)
    np.testing.assert_allclose(ours, A.astype(float) @ B.astype(float),
                               rtol=1e-4 if dtype == np.float32 else 1e-12, atol=1e-4)
    ck.dense_forward(A, B, b, ours)
    kernels.dense_forward(A, B, b, theirs)
    assert_same(ours, theirs)


@pytest.mark.parametrize("dtype", DTYPES)
def test_transpose_and_column_sums_match_numba(ck, dtype):
    A = np.random.default_rng(1).standard_normal((37, 300)).astype(dtype)
    out = np.empty((300, 37), dtype)
    ck.transpose(A, out)
    assert np.array_equal(out, A.T)
    ours, theirs = np.empty(300, dtype), np.empty(300, dtype)
    ck.column_sums(A, ours)
    kernels.column_sums(A, theirs)
    assert_same(ours, theirs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layer", ACTIVATIONS)
@pytest.mark.parametrize("rows", [6, 3000])  # 3000 x 7 > GP_NN_PARALLEL_MIN: threaded
def test_activations_match_numba(ck, dtype, layer, rows):
    rng = np.random.default_rng(2)
    Z = (rng.standard_normal((rows, 7)) * 3).astype(dtype)
    Z[0] = [0.0, -0.0, 40.0, -40.0, 1e-30, 700.0, -700.0] if dtype == np.float64 else \
        [0.0, -0.0, 40.0, -40.0, 1e-30, 80.0, -80.0]
    ours, theirs = np.empty_like(Z), np.empty_like(Z)
    with np.errstate(over="ignore"):
        ck.activation_forward(layer.code, Z, ours)
        kernels.activation_forward(layer.code, Z, theirs)
        assert_same(ours, theirs)
        np.testing.assert_allclose(ours, ref.activation(layer.__name__.lower(), Z),
                                   rtol=1e-6, atol=1e-7)
    dA = rng.standard_normal(Z.shape).astype(dtype)
    dz_ours, dz_theirs = np.empty_like(Z), np.empty_like(Z)
    ck.activation_backward(layer.code, Z, ours, dA, dz_ours)
    kernels.activation_backward(layer.code, Z, ours, dA, dz_theirs)
    assert_same(dz_ours, dz_theirs)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (64, 1000)])
def test_losses_match_numba(ck, dtype, shape):
    rng = np.random.default_rng(3)
    A = (rng.standard_normal(shape) * 4).astype(dtype)
    T = rng.standard_normal(shape).astype(dtype)
    P = np.abs(T)
    for scale in (1.0, 1.0 / shape[0]):
        assert ck.mse_loss(A, T, scale) == kernels.mse_loss(A, T, scale)
        assert ck.softmax_ce_loss(A, P, scale) == kernels.softmax_ce_loss(A, P, scale)
        for c_fn, numba_fn, target in ((ck.mse_backward, kernels.mse_backward, T),
                                       (ck.softmax_ce_backward, kernels.softmax_ce_backward,
                                        P)):
            ours, theirs = np.empty_like(A), np.empty_like(A)
            c_fn(A, target, scale, ours)
            numba_fn(A, target, scale, theirs)
            assert_same(ours, theirs)
    mse = 0.5 * np.sum((A.astype(float) - T.astype(float)) ** 2)
    assert ck.mse_loss(A, T, 1.0) == pytest.approx(mse, rel=1e-13)


# -- structured kernels -------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 1, 1), (5, 9, 3), (67, 20, 300), (130, 17, 513)])
def test_contraction_matches_numba(ck, shape):
    terms, n_i, n_j = shape
    rng = np.random.default_rng(terms)
    L, R = rng.standard_normal((terms, n_i)), rng.standard_normal((terms, n_j))
    ours, theirs = np.empty((n_i, n_j)), np.empty((n_i, n_j))
    ck.contract(L, R, ours)
    contract(L, R, theirs)
    assert_same(ours, theirs)
    np.testing.assert_allclose(ours, L.T @ R, rtol=1e-12, atol=1e-12 * terms)



@pytest.mark.parametrize("method", list(constants.METHOD_CODES))
@pytest.mark.parametrize("use_steps", [False, True])
@pytest.mark.parametrize("n_i,n_j", [(1, 1), (7, 5), (300, 257)])  # 300 x 257: threaded
def test_finish_mse_matches_numba(ck, method, use_steps, n_i, n_j):
    from gradprobe.nn.head_kernels import finish_mse

    rng = np.random.default_rng(n_i + n_j)
    S = rng.standard_normal((n_i, n_j)) * 10.0 ** rng.uniform(-8, 3, (n_i, n_j))
    Q, xn = np.abs(rng.standard_normal(n_i)) + 0.1, np.abs(rng.standard_normal(n_i))
    rn, rhon = np.abs(rng.standard_normal(n_j)), np.abs(rng.standard_normal(n_j)) * 50
    steps = 10.0 ** rng.uniform(-9, -3, (n_i, n_j)) if use_steps else np.zeros((1, 1))
    scalars = (3e-6, int(use_steps), constants.METHOD_CODES[method], 1.0 / 64, 2.0 ** -52,
               10.0, 8.0, 2.0)
    outputs = []
    for fn in (ck.finish_mse, finish_mse):
        value, bar = S.copy(), np.empty((n_i, n_j))  # value overwrites S, as mse_head does
        fn(value, Q, xn, rn, rhon, steps, *scalars, value, bar)
        outputs.append((value, bar))
    assert_same(outputs[0][0], outputs[1][0])
    assert_same(outputs[0][1], outputs[1][1])
    # naive check of one formula: the value of a central or Richardson estimate is scale * S
    if method != "forward":
        np.testing.assert_array_equal(outputs[0][0], S / 64)
    assert np.all(outputs[0][1] > 0)


@pytest.mark.parametrize("method", ["central", "forward"])
@pytest.mark.parametrize("n_i,n_j,groups", [(1, 1, 1), (9, 4, 3), (270, 260, 2)])
def test_finish_softmax_matches_numba(ck, method, n_i, n_j, groups):
    from gradprobe.nn.head_kernels import finish_softmax

    rng = np.random.default_rng(n_i * groups)
    V = rng.standard_normal((n_i, n_j)) * 1e-5
    ln, rn = np.abs(rng.standard_normal((groups, n_i))), np.abs(rng.standard_normal((groups, n_j)))
    dn, trunc, tail = (np.abs(rng.standard_normal(n_i)) * s for s in (1.0, 1e-12, 1e-20))
    rhon = np.abs(rng.standard_normal(n_j))
    scalars = (2e-6, 1.0 / 32, 2.0 ** -52, constants.METHOD_CODES[method], 7.7, 8.0, 2.0)
    outputs = []
    for fn in (ck.finish_softmax, finish_softmax):
        value, bar = V.copy(), np.empty((n_i, n_j))
        fn(value, ln, rn, dn, rhon, trunc, tail, *scalars, value, bar)
        outputs.append((value, bar))
    assert_same(outputs[0][0], outputs[1][0])
    assert_same(outputs[0][1], outputs[1][1])
    span = 2 * 2e-6 if method == "central" else 2e-6
    np.testing.assert_allclose(outputs[0][0], V / 32 / span, rtol=1e-15)


@pytest.mark.parametrize("dtype", DTYPES)
def test_max_abs_matches_numba(dtype):
    ck = c_kernels.CKernels(threads=1)
    rng = np.random.default_rng(5)
    for values in (np.zeros(0), rng.standard_normal(1001) * 3, np.array([np.nan, -2.0, 1.0]),
                   np.array([-np.inf, 1.0]), np.array([-0.0])):
        values = values.astype(dtype)
        assert ck.max_abs(values) == kernels.max_abs(values)
        finite = values[np.isfinite(values) | np.isinf(values)]
        assert ck.max_abs(values) == (float(np.max(np.abs(finite))) if finite.size else 0.0)


def test_finishing_passes_reject_overlapping_outputs(ck):
    S, v = np.ones((3, 4)), np.ones(3)
    args = (S, v, v, np.ones(4), np.ones(4), np.zeros((1, 1)), 1e-6, 0, 0, 1.0, 1e-16,
            3.0, 8.0, 2.0)
    with pytest.raises(ValueError, match="bar shares memory with value"):
        ck.finish_mse(*args, S, S)
    buffer = np.ones(12)
    with pytest.raises(ValueError, match="value shares memory with Q"):
        ck.finish_mse(S, buffer[:3], *args[2:], buffer.reshape(3, 4), np.empty((3, 4)))
    with pytest.raises(ValueError, match="method must be one of"):
        ck.finish_mse(*args[:8], 7, *args[9:], S, np.empty((3, 4)))
    with pytest.raises(ValueError, match="steps has shape"):
        ck.finish_mse(*args[:7], 1, *args[8:], S, np.empty((3, 4)))


def test_auto_runs_the_c_kernels_when_built(monkeypatch):
    """The default kernels compile nothing on a first run: the C twin when it is built."""
    from gradprobe.nn.backends import default_kernels

    model = deep_model(nn.Tanh, nn.SoftmaxCrossEntropy)
    X, T = data(model)
    assert default_kernels().name == "cffi"
    assert gp.check_model(model, X, T).backend == "nn-structured-cffi"
    assert_same(model.gradients(X, T)["0.W"], model.gradients(X, T, kernel_set("cffi"))["0.W"])
    monkeypatch.setattr(ckernel, "_loaded", (None, "unavailable: no compiler"))  # as without one
    assert default_kernels() is NUMBA
    assert gp.check_model(model, X, T).backend == "nn-structured"

def deep_model(act, loss, seed=0):
    layers = [nn.Dense(6, 9, seed=seed), act(), nn.Dense(9, 8, seed=seed + 1), act(),
              nn.Dense(8, 4, seed=seed + 2)]
    if loss is nn.MSE:
        layers.append(act())
    return nn.Sequential(layers, loss=loss())


def data(model, batch=7, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, model.n_in))
    T = rng.integers(0, model.n_out, batch) if isinstance(model.loss_fn,
                                                          nn.SoftmaxCrossEntropy) \
        else rng.standard_normal((batch, model.n_out))
    return X, T


@pytest.mark.parametrize("loss", [nn.MSE, nn.SoftmaxCrossEntropy])
@pytest.mark.parametrize("act", ACTIVATIONS)
def test_entry_differences_match_numba(ck, act, loss):
    model = deep_model(act, loss)
    X, T = data(model)
    numba_plan, c_plan = _plan(model, X, T, True), _plan(model, X, T, True, ck)
    assert numba_plan.loss.value == c_plan.loss.value
    crossings = 0
    for pos in model.dense_positions:
        layer = model.layers[pos]
        rows, cols = np.divmod(np.arange((layer.n_in + 1) * layer.n_out), layer.n_out)
        steps = np.geomspace(1e-6, 1.0, rows.size)  # small and kink-crossing steps
        offsets = np.array([1.0, -1.0, 2.0, -2.0])
        ours = loss_differences(c_plan, pos, rows, cols, steps, offsets)
        theirs = loss_differences(numba_plan, pos, rows, cols, steps, offsets)
        for a, b in zip(ours, theirs):
            assert_same(a, b)
        crossings += int(ours[2].sum())
    assert (crossings > 0) == (act is nn.ReLU)  # the large steps crossed kinks


@pytest.mark.parametrize("dtype,upcast", [(np.float64, True), (np.float32, True),
                                          (np.float32, False)])
@pytest.mark.parametrize("loss", [nn.MSE, nn.SoftmaxCrossEntropy])
def test_check_model_on_c_matches_numba(dtype, upcast, loss):
    model = nn.Sequential([nn.Dense(10, 12, seed=4, dtype=dtype), nn.Tanh(),
                           nn.Dense(12, 5, seed=5, dtype=dtype)], loss=loss())
    X, T = data(model, batch=16, seed=4)
    assert_same(model.gradients(X, T, kernel_set("cffi"))["0.W"],
                model.gradients(X, T, NUMBA)["0.W"])
    for method in ("central", "forward", "richardson"):
        ours = gp.check_model(model, X, T, method=method, upcast=upcast, backend="cffi")
        theirs = gp.check_model(model, X, T, method=method, upcast=upcast, backend="numba")
        assert ours.backend == "nn-structured-cffi" and theirs.backend == "nn-structured"
        assert ours.passed and theirs.passed, str(ours)
        assert ours.loss == theirs.loss
        for name in theirs.params:
            assert_same(ours.params[name].numeric, theirs.params[name].numeric)
            assert_same(ours.params[name].error_bar, theirs.params[name].error_bar)
        g = gp.numerical_gradient(model, X, T, method=method, upcast=upcast, backend="cffi")
        for name, value in gp.numerical_gradient(model, X, T, method=method, upcast=upcast,
                                                 backend="numba").items():
            assert_same(g[name], value)


def test_planted_errors_are_named_on_both_kernels():
    model = nn.Sequential([nn.Dense(16, 32, seed=0), nn.ReLU(), nn.Dense(32, 10, seed=1)],
                          loss=nn.SoftmaxCrossEntropy())
    X, labels = data(model, batch=32, seed=9)
    grads = model.gradients(X, labels)
    grads["0.W"][3, 7] *= 1.02
    grads["2.b"][4] += 1e-3
    for backend in ("numba", "cffi"):
        report = gp.check_model(model, X, labels, grads, backend=backend, workers=2)
        assert not report.passed
        assert report.params["0.W"].failed_indices == [(3, 7)], backend
        assert report.params["2.b"].failed_indices == [(4,)], backend
        sampled = gp.check_model(model, X, labels, grads, backend=backend, mode="sample",
                                 samples=64, seed=3)
        assert sampled.params["2.b"].failed_indices == [(4,)]


def test_the_model_is_untouched_and_errors_are_clean():
    model = deep_model(nn.Tanh, nn.MSE)
    X, T = data(model)
    before = {k: v.copy() for k, v in model.parameters().items()}
    X0, T0 = X.copy(), T.copy()
    gp.check_model(model, X, T, backend="cffi")
    with pytest.raises(ValueError, match="finite"):
        gp.check_model(model, X * np.inf, T, backend="cffi")
    for key, value in model.parameters().items():
        assert_same(value, before[key])
    assert_same(X, X0)
    assert_same(T, T0)


def test_backend_choice_is_validated(monkeypatch):
    model = deep_model(nn.ReLU, nn.MSE)
    X, T = data(model)
    with pytest.raises(ValueError, match="backend"):
        gp.check_model(model, X, T, backend="python")
    with pytest.raises(ValueError, match="backend"):
        gp.numerical_gradient(model, X, T, backend="gpu")
    monkeypatch.setattr(ckernel, "_loaded", (None, "unavailable: disabled for this test"))
    with pytest.raises(ValueError, match="backend 'cffi' is not available: disabled for"):
        gp.check_model(model, X, T, backend="cffi")
    assert gp.check_model(model, X, T).passed  # Numba needs no C kernel


# -- validation: nothing malformed reaches C ------------------------------------
def test_dense_kernels_reject_bad_arrays(ck):
    A, B, C = np.ones((3, 4)), np.ones((4, 5)), np.empty((3, 5))
    with pytest.raises(ValueError, match="C has shape"):
        ck.matmul(A, B, np.empty((5, 3)))
    with pytest.raises(ValueError, match="B has shape"):
        ck.matmul(A, np.ones((3, 5)), C)
    with pytest.raises(TypeError, match="B must be float64, got float32"):
        ck.matmul(A, B.astype(np.float32), C)
    with pytest.raises(TypeError, match="A must be float32 or float64, got int64"):
        ck.matmul(A.astype(np.int64), B, C)
    with pytest.raises(ValueError, match="C-contiguous"):
        ck.matmul(np.ones((4, 3)).T, B, C)
    readonly = np.empty((3, 5))
    readonly.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        ck.matmul(A, B, readonly)
    with pytest.raises(TypeError, match="NumPy array"):
        ck.matmul([[1.0]], B, C)
    with pytest.raises(ValueError, match="b has shape"):
        ck.dense_forward(A, B, np.ones(4), C)
    with pytest.raises(ValueError, match="code must be one of"):
        ck.activation_forward(7, A, np.empty_like(A))
    with pytest.raises(ValueError, match="dA has shape"):
        ck.activation_backward(1, A, A, np.ones((3, 3)), np.empty_like(A))
    with pytest.raises(ValueError, match="T has shape"):
        ck.mse_loss(A, np.ones((4, 3)), 1.0)
    with pytest.raises(ValueError, match="same number of rows"):
        ck.contract(np.ones((3, 2)), np.ones((4, 2)), np.empty((2, 2)))


def stage_args(ck):
    """Valid arguments of entry_differences for a 2-layer model, as a dict."""
    model = deep_model(nn.ReLU, nn.MSE)
    X, T = data(model)
    plan = _plan(model, X, T, True, ck)
    st, lt = flatten_stages(plan, 0), plan.loss
    k, m = 3, 2
    return dict(xin=plan.value64(0), rows=np.array([0, 6, 2]), cols=np.array([0, 1, 8]),
                steps=np.full(k, 1e-3), offsets=np.array([1.0, -1.0]), kinds=st.kinds,
                codes=st.codes, widths_in=st.widths_in, widths_out=st.widths_out,
                offs=st.offs, w_offs=st.w_offs, base_in=st.base_in, base_out=st.base_out,
                deriv=st.deriv, weights=st.weights, sens=st.sens, loss_code=lt.code,
                scale=lt.scale, resid=lt.resid, prob=lt.prob, mass=lt.mass,
                targets=lt.targets, rho=lt.rho, max_width=st.max_width,
                dl=np.empty((k, m)), noise=np.empty((k, m)), crossed=np.zeros(k, np.uint8))


@pytest.mark.parametrize("change,error,match", [
    ({"rows": np.array([0, 7, 2])}, IndexError, "rows must be in"),
    ({"cols": np.array([0, 9, 1])}, IndexError, "cols in"),
    ({"cols": np.array([0, 1])}, ValueError, "cols has shape"),
    ({"rows": np.array([0.0, 1.0, 2.0])}, TypeError, "rows must be"),
    ({"offs": "shift"}, ValueError, "beyond the tables"),
    ({"w_offs": "shift"}, ValueError, "beyond the"),
    ({"widths_out": "widen"}, ValueError, "do not chain"),
    ({"weights": np.ones(3)}, ValueError, "beyond the 3 weights"),
    ({"max_width": 2}, ValueError, "max_width"),
    ({"max_width": 2 ** 61}, ValueError, "max_width=.* must be the widest layer's width"),
    ({"max_width": "grow"}, ValueError, "max_width=.* must be the widest layer's width"),
    ({"dl": "view of noise"}, ValueError, "dl shares memory with noise"),
    ({"noise": "view of resid"}, ValueError, "noise shares memory with resid"),
    ({"resid": np.ones((7, 3))}, ValueError, "prob has shape|width"),
    ({"mass": np.ones(2)}, ValueError, "mass has shape"),
    ({"dl": np.empty((3, 3))}, ValueError, "dl has shape"),
    ({"crossed": np.zeros(3, np.int64)}, TypeError, "crossed must be"),
    ({"loss_code": 5}, ValueError, "loss_code"),
    ({"offsets": np.zeros(0)}, ValueError, "offsets is empty"),
])
def test_entry_kernel_rejects_inconsistent_tables(ck, change, error, match):
    args = stage_args(ck)
    ck.entry_differences(**args)  # the valid arguments run
    for key, value in change.items():
        if isinstance(value, str) and value == "shift":
            value = args[key] + 10 ** 6
        elif isinstance(value, str) and value == "widen":
            value = args[key].copy()
            value[0] += 1
        elif isinstance(value, str) and value == "grow":
            value = args[key] + 1
        elif isinstance(value, str) and value.startswith("view of "):
            value = args[value.removeprefix("view of ")]
            if value.shape != args[key].shape:  # the same memory, shaped as the output
                value = value.reshape(-1)[:args[key].size].reshape(args[key].shape)
        args[key] = value
    with pytest.raises(error, match=match):
        ck.entry_differences(**args)


def test_kernel_set_threads_are_validated():
    with pytest.raises(ValueError, match="threads"):
        c_kernels.CKernels(threads=0)
    # "auto" is the C twin when it is built (issue 20: a first check compiles nothing)
    assert kernel_set("auto").name == "cffi" and kernel_set("numba") is NUMBA
    assert kernel_set("cffi", 3).threads == 3 and kernel_set("auto", 3).threads == 3


def test_more_threads_than_the_kernel_runs_are_clamped(ck):
    many = c_kernels.CKernels(threads=2 ** 31)  # past a C int: clamped, not an OverflowError
    assert many.threads == ck._lib.gp_max_threads()
    A, B = np.arange(12.0).reshape(3, 4), np.ones((4, 2))
    C = np.empty((3, 2))
    many.matmul(A, B, C)
    np.testing.assert_array_equal(C, A @ B)


def test_unaligned_and_overlapping_arrays_are_rejected(ck):
    raw = np.zeros(3 * 4 * 8 + 1, np.uint8)
    unaligned = raw[1:].view(np.float64).reshape(3, 4)  # C-contiguous, writable, unaligned
    assert unaligned.flags.c_contiguous and not unaligned.flags.aligned
    B, C = np.ones((4, 5)), np.empty((3, 5))
    with pytest.raises(ValueError, match="A must be aligned to its dtype"):
        ck.matmul(unaligned, B, C)
    with pytest.raises(TypeError, match="rows must be an aligned"):
        ck.entry_differences(**{**stage_args(ck), "rows": raw[1:25].view(np.int64)})
    square = np.ones((4, 4))
    with pytest.raises(ValueError, match="C shares memory with A"):
        ck.matmul(square, np.eye(4), square)
    with pytest.raises(ValueError, match="out shares memory with A"):
        ck.transpose(square, square)
    with pytest.raises(ValueError, match="Z shares memory with X"):
        ck.dense_forward(square, np.eye(4), np.zeros(4), square)
    with pytest.raises(ValueError, match="out shares memory with R"):
        L, R = np.ones((3, 2)), np.ones((3, 2))
        ck.contract(L, R, R[:2])
    np.testing.assert_array_equal(square, np.ones((4, 4)))  # nothing was written


@needs_cc
def test_c_harness_under_sanitizers(tmp_path):
    """tests/c/test_nn.c: every C kernel against naive loops, under ASan + UBSan."""
    out = run_sanitized(tmp_path, "test_nn", ["gp_nn.c", "gp_parallel.c"])
    assert "gp_nn kernel" in out
