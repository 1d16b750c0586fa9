"""The structured model check: agreement with the generic engine, verdicts, safety."""
from __future__ import annotations

import json

import numpy as np
import pytest

import gradprobe as gp
from gradprobe import nn
from gradprobe.examples import nn_models

import nn_reference as ref

ACTIVATIONS = [nn.Identity, nn.ReLU, nn.Tanh, nn.Sigmoid]
LOSSES = [nn.MSE, nn.SoftmaxCrossEntropy]


def make_model(depth, act, loss, dtype=np.float64, widths=(5, 7, 6), n_out=4, seed=0):
    sizes = list(widths[:depth]) + [n_out]
    layers = []
    for k in range(depth):
        layers.append(nn.Dense(sizes[k], sizes[k + 1], seed=seed + k, dtype=dtype))
        if k < depth - 1:
            layers.append(act())
    if loss is nn.MSE and act is not nn.Identity:
        layers.append(act())  # an activation between the last layer and the loss
    return nn.Sequential(layers, loss=loss())


def make_data(model, batch, seed=0, scale=1.0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, model.n_in)) * scale
    if isinstance(model.loss_fn, nn.SoftmaxCrossEntropy):
        T = rng.integers(0, model.n_out, batch)
    else:
        T = rng.standard_normal((batch, model.n_out))
    return X, T


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("depth", [1, 2, 3])
def test_structured_estimates_agree_with_the_generic_engine(depth, act, loss):
    model = make_model(depth, act, loss, seed=depth)
    X, T = make_data(model, batch=9, seed=depth)
    grads = model.gradients(X, T)
    methods = ["central", "forward", "richardson"] if depth == 2 else ["central"]
    for method in methods:
        ours = nn.check_model(model, X, T, method=method)
        theirs = gp.check(ref.model_loss(model, X, T), model.parameters(), grads,
                          method=method, backend="python")
        assert ours.passed and theirs.passed, (str(ours), str(theirs))
        assert list(ours.params) == list(model.parameters())
        for name, mine in ours.params.items():
            other = theirs.params[name]
            gap = np.abs(mine.numeric - other.numeric)
            assert np.all(gap <= mine.error_bar + other.error_bar), (name, method)
            # the structured differences are far more accurate than black-box ones
            assert np.median(mine.error_bar) <= np.median(other.error_bar)


def test_numerical_gradient_matches_the_seed_loop_and_backprop():
    model = make_model(3, nn.Tanh, nn.SoftmaxCrossEntropy, seed=3)
    X, T = make_data(model, batch=4, seed=1)
    num = nn.numerical_gradient_model(model, X, T)
    loop = ref.seed_loop_gradient(model, X, T, h=1e-5)
    exact = ref.model_gradients(model, X, T)
    assert list(num) == list(model.parameters())
    for key in exact:
        assert num[key].shape == exact[key].shape and num[key].dtype == np.float64
        np.testing.assert_allclose(num[key], exact[key], rtol=1e-8, atol=1e-11)
        np.testing.assert_allclose(loop[key], exact[key], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("method", ["central", "forward"])
@pytest.mark.parametrize("loss", LOSSES)
def test_fast_path_matches_entry_by_entry_evaluation(loss, method):
    """The last layer's contraction fast path against the exact per-entry kernel."""
    from gradprobe.nn import check as structured, estimates

    model = nn.Sequential([nn.Dense(6, 5, seed=1), nn.Tanh(), nn.Dense(5, 7, seed=2)],
                          loss=loss())
    for scale in (0.01, 1.0, 300.0):
        X, T = make_data(model, batch=11, seed=2, scale=scale)
        plan = structured._plan(model, X, T, True)
        head = estimates.head_estimate(plan, 2, method, None)
        assert head is not None
        flat = np.arange(6 * 7)
        values = estimates.stacked_params(plan, 2).reshape(-1)
        exact = estimates.entry_estimate(plan, 2, flat, values, method, None)
        gap = np.abs(head.value.reshape(-1) - exact.value)
        assert np.all(gap <= head.error_bar.reshape(-1) + exact.error_bar)


def test_large_inputs_use_more_series_terms_or_fall_back():
    from gradprobe.nn import check as structured
    from gradprobe.nn.heads import softmax_tables

    model = nn.Sequential([nn.Dense(4, 3, seed=1)], loss=nn.SoftmaxCrossEntropy())
    for scale, groups in [(1.0, {2}), (100.0, {3, 4, 5}), (1e6, {None})]:
        X, T = make_data(model, batch=5, seed=3, scale=scale)
        plan = structured._plan(model, X, T, True)
        tables = softmax_tables(plan, 0, "central", 2.0 ** -18)
        assert (None if tables is None else tables[-1]) in groups
        report = nn.check_model(model, X, T)
        assert report.passed, str(report)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("upcast", [True, False])
def test_correct_gradients_pass_in_both_dtypes(dtype, upcast):
    for act in ACTIVATIONS:
        for loss in LOSSES:
            model = make_model(3, act, loss, dtype=dtype, seed=5)
            X, T = make_data(model, batch=16, seed=4)
            report = nn.check_model(model, X, T, upcast=upcast)
            assert report.passed, str(report)
            assert report.upcast == (upcast and dtype == np.float32)
            assert all(p.dtype == str(np.dtype(dtype)) for p in report.params.values())


@pytest.mark.parametrize("loss", LOSSES)
def test_planted_error_in_a_large_layer_is_named_exactly(loss):
    model = nn.Sequential([nn.Dense(512, 512, seed=0)], loss=loss())
    X, T = make_data(model, batch=32, seed=5)
    grads = model.gradients(X, T)
    grads["0.W"][123, 456] *= 1.01
    grads["0.b"][7] *= 0.99
    report = nn.check_model(model, X, T, grads)
    assert not report.passed
    assert report.params["0.W"].checked == 512 * 512
    assert report.params["0.W"].failed_indices == [(123, 456)]
    assert report.params["0.b"].failed_indices == [(7,)]
    assert report.params["0.W"].worst_index == (123, 456)
    assert report.params["0.W"].diagnosis.startswith("localized")
    assert "0.W[123, 456]" in str(report)


def test_planted_error_in_a_hidden_layer_is_named_exactly():
    model = make_model(3, nn.ReLU, nn.SoftmaxCrossEntropy, widths=(20, 16, 12), seed=2)
    X, T = make_data(model, batch=24, seed=6)
    grads = model.gradients(X, T)
    index = tuple(int(i) for i in np.unravel_index(np.argmax(np.abs(grads["0.W"])), (20, 16)))
    grads["0.W"][index] *= 1.01
    report = nn.check_model(model, X, T, grads)
    assert report.params["0.W"].failed_indices == [index]
    assert all(report.params[k].passed for k in report.params if k != "0.W")


def test_float32_planted_error_is_found_and_correct_float32_passes():
    model = make_model(2, nn.Tanh, nn.MSE, dtype=np.float32, widths=(30, 20), seed=1)
    X, T = make_data(model, batch=8, seed=7)
    grads = model.gradients(X, T)
    assert nn.check_model(model, X, T, grads).passed
    j = int(np.argmax(np.abs(grads["2.W"][3])))
    grads["2.W"][3, j] *= 1.01
    assert nn.check_model(model, X, T, grads).params["2.W"].failed_indices == [(3, j)]


def test_relu_kink_at_exactly_zero_is_a_kink_not_a_failure():
    first = nn.Dense(2, 3, W=[[0.5, 0.2, -0.3], [0.25, 0.1, 0.4]], b=[-0.5, 0.1, 0.2])
    model = nn.Sequential([first, nn.ReLU(), nn.Dense(3, 1, seed=1)], loss=nn.MSE())
    X = np.array([[1.0, 0.0], [0.5, 2.0]])  # example 0: z[0, 0] = 0.5 - 0.5 = 0 exactly
    T = np.array([[1.0], [-1.0]])
    report = nn.check_model(model, X, T)
    assert report.passed, str(report)
    assert (0, 0) in report.params["0.W"].kinks
    assert (0,) in report.params["0.b"].kinks
    assert report.params["0.W"].failed == 0


def test_model_and_data_are_unchanged_even_on_errors(unchanged):
    model = make_model(3, nn.Sigmoid, nn.SoftmaxCrossEntropy, seed=4)
    X, T = make_data(model, batch=6, seed=8)
    params = model.parameters()
    grads = model.gradients(X, T)
    with unchanged(params), unchanged({"X": X, "T": T}), unchanged(grads):
        for method in ("central", "forward", "richardson"):
            nn.check_model(model, X, T, grads, method=method)
        nn.check_model(model, X, T, mode="sample", samples=3)
        nn.numerical_gradient_model(model, X, T)
        bad = dict(grads)
        bad["0.W"] = grads["0.W"].T
        with pytest.raises(ValueError, match="transposed"):
            nn.check_model(model, X, T, bad)
        with pytest.raises(ValueError, match="finite"):
            nn.check_model(model, X * 1e300, T)
    for array in list(params.values()) + [X, T]:
        array.flags.writeable = False
    try:
        assert nn.check_model(model, X, T).passed  # read-only arrays are simply accepted
    finally:
        for array in params.values():
            array.flags.writeable = True


def test_sample_mode_checks_the_requested_entries():
    model = make_model(2, nn.Tanh, nn.MSE, widths=(10, 8), seed=1)
    X, T = make_data(model, batch=5)
    report = nn.check_model(model, X, T, mode="sample", samples=6, seed=3)
    assert report.passed and report.mode == "sample"
    assert report.params["0.W"].checked == 6 and report.params["0.b"].checked == 6
    assert report.params["2.b"].checked == 4  # smaller than samples: all entries
    again = nn.check_model(model, X, T, mode="sample", samples=6, seed=3)
    assert report.params["0.W"].indices == again.params["0.W"].indices


def test_scaled_gradient_is_diagnosed():
    model = nn.Sequential([nn.Dense(6, 3, seed=0)], loss=nn.MSE())
    X, T = make_data(model, batch=8, seed=2)
    grads = {k: v * 8 for k, v in model.gradients(X, T).items()}  # forgot the 1/batch
    report = nn.check_model(model, X, T, grads)
    assert report.params["0.W"].diagnosis.startswith("scaled")
    json.dumps(report.to_dict())
    with pytest.raises(gp.GradientCheckError):
        if not report.passed:
            raise gp.GradientCheckError(report)


def test_one_thread_gives_the_same_numbers():
    model = make_model(3, nn.ReLU, nn.MSE, widths=(12, 9, 7), seed=8)
    X, T = make_data(model, batch=10, seed=9)
    a = nn.check_model(model, X, T, workers=1)
    b = nn.check_model(model, X, T)
    for name in a.params:
        assert np.array_equal(a.params[name].numeric, b.params[name].numeric)


def test_seed_examples():
    model, X, T = nn_models.linear_neuron()
    num = nn.numerical_gradient_model(model, X, T)
    np.testing.assert_allclose(num["0.W"].ravel(), [0.7744, 0.0], atol=1e-12)
    np.testing.assert_allclose(num["0.b"], [0.7744], atol=1e-12)
    for problem in nn_models.PROBLEMS:
        report = nn_models.check(problem)
        assert report.passed, str(report)
    model, X, Y = nn_models.linear_regression()
    g = model.gradients(X, Y)
    residual = X @ model.layers[0].W + model.layers[0].b - Y
    np.testing.assert_allclose(g["0.W"], X.T @ residual, rtol=1e-12)


@pytest.mark.parametrize("kwargs,error,match", [
    ({"X": np.zeros((3, 4))}, ValueError, "X has 4 columns"),
    ({"X": np.zeros(5)}, ValueError, "X must be 2-d"),
    ({"X": np.zeros((0, 5))}, ValueError, "X is empty"),
    ({"X": np.zeros((3, 5), dtype=complex)}, TypeError, "X has dtype"),
    ({"X": "data"}, TypeError, "X must be a NumPy array"),
    ({"T": np.zeros((3, 5))}, ValueError, "T must hold"),
    ({"T": np.array([0, 1, 9])}, ValueError, "labels outside"),
    ({"T": np.array([True, False, True])}, TypeError, "T has dtype"),
    ({"T": np.array([0.0, np.nan, 1.0])[:, None] * np.ones(4)}, ValueError, "T contains"),
    ({"grads": [1, 2]}, TypeError, "grads must be a dict"),
    ({"grads": {"0.W": np.zeros((5, 4))}}, ValueError, "missing"),
    ({"method": "complex"}, ValueError, "complex"),
    ({"method": "backward"}, ValueError, "method="),
    ({"mode": "directional"}, ValueError, "mode="),
    ({"samples": 3}, ValueError, "samples=3 is only used"),
    ({"eps": -1.0}, ValueError, "eps="),
    ({"workers": 0}, ValueError, "workers="),
    ({"upcast": "yes"}, TypeError, "upcast"),
    ({"model": object()}, TypeError, "model must be"),
])
def test_bad_input_names_the_argument(kwargs, error, match):
    model = nn.Sequential([nn.Dense(5, 4, seed=0)], loss=nn.SoftmaxCrossEntropy())
    call = {"model": model, "X": np.ones((3, 5)), "T": np.array([0, 1, 2])}
    call.update(kwargs)
    with pytest.raises(error, match=match):
        nn.check_model(call.pop("model"), call.pop("X"), call.pop("T"), **call)


def test_bad_parameters_are_named():
    model = nn.Sequential([nn.Dense(3, 2, seed=0)], loss=nn.MSE())
    X, T = np.ones((2, 3)), np.zeros((2, 2))
    model.layers[0].b = np.zeros(5)
    with pytest.raises(ValueError, match="'0.b' has shape"):
        nn.check_model(model, X, T)
    with pytest.raises(ValueError, match="'0.b' has shape"):
        model.loss(X, T)
    model.layers[0].b = np.zeros(2)
    model.layers[0].W[1, 1] = np.nan
    with pytest.raises(ValueError, match="'0.W' contains a non-finite value"):
        nn.check_model(model, X, T)
    model.layers[0].W = np.zeros((3, 2), dtype=np.int64)
    with pytest.raises(TypeError, match="'0.W' must be a floating"):
        nn.numerical_gradient_model(model, X, T)


def test_bad_models_are_rejected():
    with pytest.raises(ValueError, match="n_out=4 but layers\\[2\\] has n_in=5"):
        nn.Sequential([nn.Dense(3, 4), nn.ReLU(), nn.Dense(5, 2)])
    with pytest.raises(TypeError, match="instance"):
        nn.Sequential([nn.Dense(3, 4), nn.ReLU])
    with pytest.raises(ValueError, match="no Dense"):
        nn.Sequential([nn.ReLU()])
    with pytest.raises(TypeError, match="share a dtype"):
        nn.Sequential([nn.Dense(3, 4), nn.Dense(4, 2, dtype=np.float32)])
    with pytest.raises(TypeError, match="loss must be"):
        nn.Sequential([nn.Dense(3, 4)], loss="mse")


def test_public_api_dispatches_models():
    """gp.check_model and gp.numerical_gradient(model, X, T) use the structured check."""
    import gradprobe as gp
    from gradprobe.nn import MSE, Dense, Sequential, Tanh
    from gradprobe.nn import numerical_gradient_model

    model = Sequential([Dense(3, 4, seed=0), Tanh(), Dense(4, 2, seed=1)], loss=MSE())
    rng = np.random.default_rng(3)
    X, T = rng.standard_normal((6, 3)), rng.standard_normal((6, 2))
    report = gp.check_model(model, X, T)
    # "auto" runs the C twin of the kernels when it is built (issue 20)
    from gradprobe.nn import c_kernels
    assert report.passed and report.backend == \
        ("nn-structured-cffi" if c_kernels.available() else "nn-structured")
    ours = gp.numerical_gradient(model, X, T)
    direct = numerical_gradient_model(model, X, T)
    assert set(ours) == set(model.parameters())
    for key in ours:
        np.testing.assert_array_equal(ours[key], direct[key])
    with pytest.raises(TypeError, match="inputs X and the targets T"):
        gp.numerical_gradient(model, X)
    with pytest.raises(TypeError, match="only for a gradprobe.nn model"):
        gp.numerical_gradient(lambda w: np.sum(w), np.ones(2), X)


@pytest.mark.parametrize("layer_factory", [
    lambda dt: nn.Dense(4, 3, seed=2, dtype=dt), lambda dt: nn.Tanh(), lambda dt: nn.Sigmoid(),
    lambda dt: nn.Identity(), lambda dt: nn.ReLU()])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_nn_layers_satisfy_check_layer(layer_factory, dtype):
    """gradprobe.nn layers follow the forward/backward/params/grads module protocol."""
    layer = layer_factory(dtype)
    x = np.random.default_rng(1).standard_normal((5, 4)).astype(dtype)
    before = {k: v.copy() for k, v in layer.params.items()}
    report = gp.check_layer(layer, x)
    assert report.passed, str(report)
    assert set(report.params) == {"input", *layer.params}
    for k, v in layer.params.items():
        np.testing.assert_array_equal(v, before[k])


def test_check_layer_catches_a_wrong_dense_backward():
    class Buggy(nn.Dense):
        def backward(self, grad_out):
            dx = super().backward(grad_out)
            self.grads["b"] = self.grads["b"] * 2
            return dx

    report = gp.check_layer(Buggy(3, 2, seed=0), np.ones((4, 3)))
    assert not report.params["b"].passed and report.params["W"].passed
    assert report.params["b"].diagnosis.startswith("scaled")
