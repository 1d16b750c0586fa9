"""check_layer: the module check, its protocol errors, and the layer examples."""
from __future__ import annotations

import copy

import numpy as np
import pytest

from gradprobe.examples import batchnorm_layer, conv_vjp, softmax_layer
from gradprobe.checks.layer import check_layer

DTYPES = [np.float64, np.float32]


class Dense:
    """tanh(x @ W + b); W and b live in ``params`` and as attributes."""

    def __init__(self, n_in=3, n_out=2, dtype=np.float64, seed=0):
        rng = np.random.default_rng(seed)
        self.W = rng.normal(size=(n_in, n_out)).astype(dtype)
        self.b = rng.normal(0, 0.1, n_out).astype(dtype)
        self.params = {"W": self.W, "b": self.b}
        self.grads = {"W": np.zeros_like(self.W), "b": np.zeros_like(self.b)}
        self.cache = None

    def forward(self, x):
        self.cache = (x, np.tanh(x @ self.W + self.b))
        return self.cache[1]

    def backward(self, g):
        x, y = self.cache
        d = g * (1 - y * y)
        self.grads["W"][...] = x.T @ d
        self.grads["b"][...] = d.sum(axis=0)
        return d @ self.W.T


class DictOnlyDense(Dense):
    """Reads its parameters from the dict only; accumulates gradients with +=."""

    def forward(self, x):
        self.cache = (x, np.tanh(x @ self.params["W"] + self.params["b"]))
        return self.cache[1]

    def backward(self, g):
        x, y = self.cache
        d = g * (1 - y * y)
        self.grads["W"] += x.T @ d
        self.grads["b"] += d.sum(axis=0)
        return d @ self.params["W"].T


class ListDense(Dense):
    """Computes with a private list of its arrays: cannot be upcast by rebinding."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self._weights = [self.W, self.b]

    def forward(self, x):
        W, b = self._weights
        self.cache = (x, np.tanh(x @ W + b))
        return self.cache[1]


class NoCopyDense(Dense):
    """Refuses deep copies: the check must perturb it in place and restore it."""

    def __init__(self, interrupt_at=None, **kw):
        super().__init__(**kw)
        self.calls = 0
        self.interrupt_at = interrupt_at

    def __deepcopy__(self, memo):
        raise TypeError("this layer holds a lock")

    def forward(self, x):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        return super().forward(x)


def _x(dtype=np.float64, seed=1):
    return np.random.default_rng(seed).normal(size=(4, 3)).astype(dtype)


def _state(layer):
    return {k: np.array(v, copy=True) for k, v in layer.params.items()}, \
        {k: np.array(v, copy=True) for k, v in layer.grads.items()}


def _same(layer, state):
    params, grads = state
    for k, v in params.items():
        assert layer.params[k].tobytes() == v.tobytes() and layer.params[k].dtype == v.dtype
    for k, v in grads.items():
        assert layer.grads[k].tobytes() == v.tobytes()


# -- correct layers pass, the layer is untouched ----------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls", [Dense, DictOnlyDense])
def test_correct_layer_passes_and_is_untouched(cls, dtype, unchanged):
    layer = cls(dtype=dtype)
    layer.grads["W"][...] = 7.0          # stale gradients must not matter
    state = _state(layer)
    x = _x(dtype)
    with unchanged(x):
        report = check_layer(layer, x)
    assert report.passed, str(report)
    assert list(report.params) == ["input", "W", "b"]
    assert report.upcast == (dtype == np.float32)
    _same(layer, state)
    assert layer.cache is None           # forward ran on copies only
    assert layer.params["W"] is layer.W  # the same array objects


def test_float32_layer_without_upcast_passes():
    report = check_layer(Dense(dtype=np.float32), _x(np.float32), upcast=False)
    assert report.passed and not report.upcast


def test_layer_that_cannot_be_rebound_is_evaluated_in_its_own_dtype():
    layer = ListDense(dtype=np.float32)
    report = check_layer(layer, _x(np.float32))
    assert report.passed and not report.upcast
    assert any("float64 evaluation of the layer not possible" in n for n in report.notes)


def test_layer_without_parameters():
    report = softmax_layer.check_correct()
    assert report.passed and list(report.params) == ["input"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_threads_get_their_own_copies(dtype):
    # big enough that two threads sharing one copy of the layer would fail it
    x = np.random.default_rng(0).normal(size=(32, 20)).astype(dtype)
    report = check_layer(DictOnlyDense(n_in=20, n_out=16, dtype=dtype), x, workers=2,
                         cotangents=1)
    assert report.passed, str(report)
    with pytest.raises(ValueError, match=r"workers=2 is not possible for this layer"):
        check_layer(NoCopyDense(), _x(), workers=2)


def test_layer_options_reach_check():
    report = check_layer(Dense(), _x(), method="richardson", cotangents=1, seed=3)
    assert report.passed and report.method == "richardson"
    assert "1 cotangent (random, seed 3)" in " ".join(report.notes)


# -- bugs are named ------------------------------------------------------------------------

class WrongEntry(Dense):
    def backward(self, g):
        out = super().backward(g)
        self.grads["W"][2, 1] *= 1.01
        return out


class MeanBias(Dense):
    def backward(self, g):
        out = super().backward(g)
        self.grads["b"][...] /= g.shape[0]     # divides by the batch once too often
        return out


class TransposedInput(Dense):
    def backward(self, g):
        x, y = self.cache
        super().backward(g)
        d = g * (1 - y * y)
        return (self.W @ d.T).T[:, ::-1]        # wrong input gradient


@pytest.mark.parametrize("dtype", DTYPES)
def test_single_wrong_parameter_entry_is_named(dtype):
    report = check_layer(WrongEntry(dtype=dtype), _x(dtype))
    assert report.params["W"].failed_indices == [(2, 1)], str(report)
    assert report.params["input"].passed and report.params["b"].passed


def test_scaled_bias_gradient_is_diagnosed():
    report = check_layer(MeanBias(), _x())
    assert report.params["b"].diagnosis.startswith("scaled")
    assert "4" in report.params["b"].diagnosis
    assert report.params["W"].passed


def test_wrong_input_gradient_fails_only_the_input():
    report = check_layer(TransposedInput(n_in=2, n_out=2), _x()[:, :2])
    assert not report.params["input"].passed
    assert report.params["W"].passed and report.params["b"].passed


# -- in-place fallback: restored bit for bit ----------------------------------------------

def test_layer_that_cannot_be_copied_is_restored():
    layer = NoCopyDense()
    state = _state(layer)
    report = check_layer(layer, _x())
    assert report.passed
    assert any("could not be deep-copied" in n for n in report.notes)
    _same(layer, state)


@pytest.mark.parametrize("at", [1, 2, 17, 60])
def test_keyboard_interrupt_restores_the_layer(at):
    layer = NoCopyDense(interrupt_at=at)
    layer.grads["b"][...] = 3.0
    state = _state(layer)
    W, grads_b = layer.params["W"], layer.grads["b"]
    with pytest.raises(KeyboardInterrupt):
        check_layer(layer, _x())
    _same(layer, state)
    assert layer.params["W"] is W and layer.grads["b"] is grads_b


def test_keyboard_interrupt_on_a_copied_layer_leaves_it_untouched():
    class Interrupting(Dense):
        calls = [0]

        def forward(self, x):
            self.calls[0] += 1
            if self.calls[0] == 30:
                raise KeyboardInterrupt
            return super().forward(x)

    layer = Interrupting()
    state = _state(layer)
    with pytest.raises(KeyboardInterrupt):
        check_layer(layer, _x())
    _same(layer, state)
    assert layer.cache is None


# -- protocol errors ---------------------------------------------------------------------

def test_protocol_errors_are_clear():
    class NoBackward:
        def forward(self, x):
            return x

    with pytest.raises(TypeError, match=r"must have forward\(x\) and backward\(grad_out\).*"
                                        r"NoBackward has no backward"):
        check_layer(NoBackward(), _x())

    layer = Dense()
    layer.params = [layer.W]  # a list is a container too, but its names match no gradient
    with pytest.raises(ValueError, match=r"the entries of layer.params \(0\) match no entry "
                                         r"of layer.grads \(W, b\)"):
        check_layer(layer, _x())

    layer = Dense()
    layer.params["W"] = layer.W.tolist()
    with pytest.raises(TypeError, match=r"layer.params\['W'\] must be a NumPy array"):
        check_layer(layer, _x())

    layer = Dense()
    layer.params["W"] = layer.W.astype(np.int64)
    with pytest.raises(TypeError, match=r"layer.params\['W'\] has dtype int64"):
        check_layer(layer, _x())

    class NoneBackward(Dense):
        def backward(self, g):
            super().backward(g)

    with pytest.raises(ValueError, match=r"layer.backward returned None"):
        check_layer(NoneBackward(), _x())

    class WrongShape(Dense):
        def backward(self, g):
            return super().backward(g)[:, :2]

    with pytest.raises(ValueError, match=r"layer.backward returned an array of shape \(4, 2\), "
                                         r"but the input has shape \(4, 3\)"):
        check_layer(WrongShape(), _x())

    class MissingGrad(Dense):
        def backward(self, g):
            out = super().backward(g)
            del self.grads["b"]
            return out

    with pytest.raises(ValueError, match=r"layer.grads has no entry 'b'"):
        check_layer(MissingGrad(), _x())

    class TransposedGrad(Dense):
        def __init__(self):
            super().__init__(n_in=3, n_out=2)

        def backward(self, g):
            out = super().backward(g)
            self.grads["W"] = self.grads["W"].T
            return out

    with pytest.raises(ValueError, match=r"layer.grads\['W'\] has shape \(2, 3\), but "
                                         r"layer.params\['W'\] has shape \(3, 2\) "
                                         r"\(it looks transposed\)"):
        check_layer(TransposedGrad(), _x())

    with pytest.raises(TypeError, match=r"check_layer takes no args"):
        check_layer(Dense(), _x(), args=(1,))
    with pytest.raises(ValueError, match=r"x \(the layer's input\) contains a non-finite"):
        check_layer(Dense(), np.full((2, 3), np.nan))


# -- the examples ------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
def test_batchnorm_example(dtype):
    assert batchnorm_layer.check_correct(dtype).passed
    bad = batchnorm_layer.check_constant_statistics(dtype)
    assert bad.params["input"].failed == bad.params["input"].checked
    assert bad.params["gamma"].passed and bad.params["beta"].passed


@pytest.mark.parametrize("dtype", DTYPES)
def test_softmax_example(dtype):
    assert softmax_layer.check_correct(dtype).passed
    bad = softmax_layer.check_diagonal_only(dtype)
    assert not bad.params["input"].passed
    right, diagonal = softmax_layer.check_jacobians()
    assert right.passed
    off_diagonal = [(i, j) for i in range(4) for j in range(4) if i != j]
    assert diagonal.params["jacobian"].failed_indices == off_diagonal


@pytest.mark.parametrize("dtype", DTYPES)
def test_conv_example(dtype):
    assert conv_vjp.check_correct(dtype).passed
    bad = conv_vjp.check_unflipped(dtype)
    assert not bad.params["x"].passed and bad.params["k"].passed
    assert conv_vjp.check_forward_mode().passed


def test_conv_vjp_matches_the_adjoint_identity():
    """<u, conv(x, k)> = <dx, x> for the linear map x -> conv(x, k) (and likewise for k)."""
    x, k = conv_vjp.point()
    u = np.random.default_rng(2).normal(size=conv_vjp.conv2d(x, k).shape)
    dx, dk = conv_vjp.conv2d_vjp(u, x, k)
    lhs = np.sum(u * conv_vjp.conv2d(x, k))
    assert np.sum(dx * x) == pytest.approx(lhs) and np.sum(dk * k) == pytest.approx(lhs)


@pytest.mark.parametrize("module", [batchnorm_layer, softmax_layer, conv_vjp])
def test_example_main_prints_passing_and_failing_reports(module, capsys):
    module.main()
    out = capsys.readouterr().out
    assert "PASSED" in out and "FAILED" in out


def test_layers_survive_deepcopy_semantics():
    """Sanity: the copies the check makes share aliasing like the original."""
    layer = Dense()
    twin = copy.deepcopy(layer)
    assert twin.params["W"] is twin.W and twin.W is not layer.W
