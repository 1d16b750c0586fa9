"""check_layer on third-party layers as libraries write them, with no adapter.

Each class below is a small layer library in one convention (parameter and
gradient containers under other names, attributes, methods, nested modules,
lists, running statistics, lazy weights, several inputs/outputs, integer ids).
Correct layers pass; planted bugs are named; the user's layer is untouched.
"""
from __future__ import annotations

import copy

import numpy as np
import pytest

import gradprobe as gp

RNG = np.random.default_rng(0)
X = RNG.normal(size=(5, 4))


def _dense_grads(x, g, W):
    return x.T @ g, g.sum(axis=0), g @ W.T


# -- conventions ------------------------------------------------------------------------

class ParametersGradients:
    """``parameters``/``gradients`` dicts."""

    def __init__(self, n_in=4, n_out=3, seed=0):
        rng = np.random.default_rng(seed)
        self.parameters = {"weight": rng.normal(size=(n_in, n_out)),
                           "bias": rng.normal(size=n_out)}
        self.gradients = {k: np.zeros_like(v) for k, v in self.parameters.items()}

    def forward(self, x):
        self.x = x
        return np.tanh(x @ self.parameters["weight"] + self.parameters["bias"])

    def backward(self, g):
        y = np.tanh(self.x @ self.parameters["weight"] + self.parameters["bias"])
        d = g * (1 - y ** 2)
        dW, db, dx = _dense_grads(self.x, d, self.parameters["weight"])
        self.gradients["weight"][...] = dW
        self.gradients["bias"][...] = db
        return dx


class Attributes:
    """``W``/``b`` attributes and ``dW``/``db`` written by backward (no containers)."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.W, self.b = rng.normal(size=(4, 3)), rng.normal(size=3)

    def forward(self, x):
        self.x = x
        return x @ self.W + self.b

    def backward(self, g):
        self.dW, self.db, dx = _dense_grads(self.x, g, self.W)
        return dx


class Methods:
    """``params()`` and ``grads()`` methods returning dicts."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self._p = {"W": rng.normal(size=(4, 3))}
        self._g = {"W": np.zeros((4, 3))}

    def params(self):
        return self._p

    def grads(self):
        return self._g

    def forward(self, x):
        self.x = x
        return np.sin(x @ self._p["W"])

    def backward(self, g):
        d = g * np.cos(self.x @ self._p["W"])
        self._g["W"] = self.x.T @ d     # rebinds the entry: read after backward
        return d @ self._p["W"].T


class Nested:
    """A two-layer module: nested dicts of parameters, gradients alike."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.params = {"fc1": {"W": rng.normal(size=(4, 6)), "b": np.zeros(6)},
                       "fc2": {"W": rng.normal(size=(6, 2)), "b": rng.normal(size=2)}}
        self.grads = {k: {n: np.zeros_like(a) for n, a in v.items()}
                      for k, v in self.params.items()}

    def forward(self, x):
        p = self.params
        self.x, self.h = x, np.tanh(x @ p["fc1"]["W"] + p["fc1"]["b"])
        return self.h @ p["fc2"]["W"] + p["fc2"]["b"]

    def backward(self, g):
        p, G = self.params, self.grads
        G["fc2"]["W"][...], G["fc2"]["b"][...], dh = _dense_grads(self.h, g, p["fc2"]["W"])
        d = dh * (1 - self.h ** 2)
        G["fc1"]["W"][...], G["fc1"]["b"][...], dx = _dense_grads(self.x, d, p["fc1"]["W"])
        return dx


class Lists:
    """``params``/``grads`` lists, accumulated with +=."""

    def __init__(self, seed=0):
        rng = np.random.default_rng(seed)
        self.params = [rng.normal(size=(4, 3)), rng.normal(size=3)]
        self.grads = [np.zeros((4, 3)), np.zeros(3)]

    def forward(self, x):
        self.x = x
        return x @ self.params[0] + self.params[1]

    def backward(self, g):
        dW, db, dx = _dense_grads(self.x, g, self.params[0])
        self.grads[0] += dW
        self.grads[1] += db
        return dx


class OtherNames:
    """Containers under names no search knows: ``theta``/``dtheta``."""

    def __init__(self, seed=0):
        self.theta = {"w": np.random.default_rng(seed).normal(size=4)}
        self.dtheta = {"w": np.zeros(4)}

    def forward(self, x):
        self.x = x
        return x * self.theta["w"]

    def backward(self, g):
        self.dtheta["w"][...] = (g * self.x).sum(axis=0)
        return g * self.theta["w"]


class BatchNorm:
    """Running statistics next to the trainable entries (float32 state)."""

    def __init__(self, n=4, dtype=np.float64):
        self.params = {"gamma": np.linspace(0.5, 1.5, n).astype(dtype),
                       "beta": np.linspace(-0.2, 0.3, n).astype(dtype),
                       "running_mean": np.zeros(n, np.float32),
                       "running_var": np.ones(n, np.float32)}
        self.grads = {"gamma": np.zeros(n, dtype), "beta": np.zeros(n, dtype)}

    def forward(self, x):
        p = self.params
        mu, var = x.mean(0), x.var(0)
        p["running_mean"] *= 0.9
        p["running_mean"] += 0.1 * mu.astype(np.float32)
        self.xhat, self.inv = (x - mu) / np.sqrt(var + 1e-5), 1 / np.sqrt(var + 1e-5)
        return p["gamma"] * self.xhat + p["beta"]

    def backward(self, g):
        n = g.shape[0]
        self.grads["gamma"][...] = (g * self.xhat).sum(0)
        self.grads["beta"][...] = g.sum(0)
        dxhat = g * self.params["gamma"]
        return self.inv / n * (n * dxhat - dxhat.sum(0) - self.xhat * (dxhat * self.xhat).sum(0))


class Lazy:
    """Draws its weights on first use, from an unseeded generator."""

    def __init__(self, n_out=3):
        self.n_out, self.params, self.grads = n_out, {}, {}

    def forward(self, x):
        if "W" not in self.params:
            self.params["W"] = np.random.default_rng().normal(size=(x.shape[1], self.n_out))
            self.grads["W"] = np.zeros_like(self.params["W"])
        self.x = x
        return np.tanh(x @ self.params["W"])

    def backward(self, g):
        d = g * (1 - np.tanh(self.x @ self.params["W"]) ** 2)
        self.grads["W"][...] = self.x.T @ d
        return d @ self.params["W"].T


CONVENTIONS = {
    "parameters/gradients": (ParametersGradients, {}, ["input", "weight", "bias"]),
    "W/dW attributes": (Attributes, {}, ["input", "W", "b"]),
    "methods": (Methods, {}, ["input", "W"]),
    "nested dicts": (Nested, {}, ["input", "fc1.W", "fc1.b", "fc2.W", "fc2.b"]),
    "lists": (Lists, {}, ["input", "0", "1"]),
    "names given": (OtherNames, {"params": "theta", "grads": "dtheta"}, ["input", "w"]),
    "callables given": (OtherNames, {"params": lambda l: l.theta, "grads": lambda l: l.dtheta},
                        ["input", "w"]),
    "attribute lists given": (Attributes, {"params": ["W", "b"], "grads": ["dW", "db"]},
                              ["input", "W", "b"]),
    "lazy weights": (Lazy, {}, ["input", "W"]),
}


def _state(layer):
    return copy.deepcopy(vars(layer))


def _same_state(layer, before):
    after = vars(layer)
    assert set(after) == set(before)

    def same(a, b):
        if isinstance(a, np.ndarray):
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes()
        elif isinstance(a, dict):
            assert list(a) == list(b)
            for k in a:
                same(a[k], b[k])
        elif isinstance(a, list):
            assert len(a) == len(b)
            for u, v in zip(a, b):
                same(u, v)

    for k in before:
        same(after[k], before[k])


@pytest.mark.parametrize("convention", list(CONVENTIONS))
def test_each_convention_is_checked_with_no_adapter(convention, unchanged):
    cls, kwargs, names = CONVENTIONS[convention]
    layer = cls()
    before = _state(layer)
    x = X.copy()
    with unchanged(x):
        report = gp.check_layer(layer, x, **kwargs)
    assert report.passed, str(report)
    assert list(report.params) == names
    assert report.params["input"].checked == X.size
    _same_state(layer, before)       # forward and backward ran on copies only


@pytest.mark.parametrize("convention", ["parameters/gradients", "W/dW attributes", "nested dicts",
                                        "lists", "methods"])
def test_a_wrong_entry_is_named_in_every_convention(convention):
    cls, kwargs, names = CONVENTIONS[convention]
    target = names[1]

    class Wrong(cls):
        def backward(self, g):
            dx = super().backward(g)
            report_target = {"parameters/gradients": lambda: self.gradients["weight"],
                             "W/dW attributes": lambda: self.dW,
                             "nested dicts": lambda: self.grads["fc1"]["W"],
                             "lists": lambda: self.grads[0],
                             "methods": lambda: self._g["W"]}[convention]()
            report_target[1, 2] *= 1.01
            return dx

    report = gp.check_layer(Wrong(), X, **kwargs)
    assert report.status == "failed"
    assert report.params[target].failed_indices == [(1, 2)], str(report)
    assert all(report.params[n].passed for n in names if n != target)


def test_running_statistics_are_left_alone_with_a_note():
    for dtype in (np.float64, np.float32):
        layer = BatchNorm(dtype=dtype)
        before = _state(layer)
        report = gp.check_layer(layer, X.astype(dtype))
        assert report.passed, str(report)
        assert list(report.params) == ["input", "gamma", "beta"]
        note = [n for n in report.notes if n.startswith("left alone")]
        assert note and "running_mean" in note[0] and "running_var" in note[0]
        assert report.upcast == (dtype == np.float32)   # float32 state does not block it
        _same_state(layer, before)


def test_lazy_weights_are_shared_by_every_copy():
    layer = Lazy()
    report = gp.check_layer(layer, X)
    assert report.passed and report.findings == []
    assert layer.params == {}        # created on a private copy only


def test_arrays_without_a_container_get_a_note():
    class Hidden:
        def __init__(self):
            self.kernel = np.random.default_rng(0).normal(size=(4, 3))

        def forward(self, x):
            self.x = x
            return x @ self.kernel

        def backward(self, g):
            self.kernel_update = self.x.T @ g       # a name nothing recognises
            return g @ self.kernel.T

    report = gp.check_layer(Hidden(), X)
    assert report.passed and list(report.params) == ["input"]
    assert any("holds arrays (kernel" in n and "pass params= and grads=" in n
               for n in report.notes)
    report = gp.check_layer(Hidden(), X, params=["kernel"], grads=["kernel_update"])
    assert list(report.params) == ["input", "kernel"] and report.passed


def test_container_errors_are_clear():
    with pytest.raises(ValueError, match=r"params='weights'.*has no attribute 'weights'"):
        gp.check_layer(OtherNames(), X, params="weights", grads="dtheta")
    with pytest.raises(ValueError, match=r"params= names 'V'"):
        gp.check_layer(Attributes(), X, params=["V"], grads=["dW"])
    with pytest.raises(TypeError, match=r"params= must be an attribute name"):
        gp.check_layer(Attributes(), X, params=3)
    with pytest.raises(TypeError, match=r"reset= must be a callable"):
        gp.check_layer(Attributes(), X, reset="zero")


# -- several inputs and outputs, integer ids ------------------------------------------

class Embedding:
    """Integer ids in, rows out; backward returns None (ids are not differentiated)."""

    def __init__(self, repeated_ids_bug=False):
        self.params = {"E": np.random.default_rng(0).normal(size=(6, 3))}
        self.grads = {"E": np.zeros((6, 3))}
        self.bug = repeated_ids_bug

    def forward(self, ids):
        self.ids = ids
        return self.params["E"][ids]

    def backward(self, g):
        self.grads["E"][...] = 0
        if self.bug:
            self.grads["E"][self.ids] += g      # buffered: a repeated id counts once
        else:
            np.add.at(self.grads["E"], self.ids, g)
        return None


def test_integer_inputs_are_not_differentiated():
    ids = np.array([[0, 2, 2], [5, 1, 2]])
    report = gp.check_layer(Embedding(), ids)
    assert report.passed and list(report.params) == ["E"]
    assert any("input (int64) is not differentiated" in n for n in report.notes)
    bad = gp.check_layer(Embedding(repeated_ids_bug=True), ids)
    assert bad.status == "failed" and sorted(bad.params["E"].failed_indices) == \
        [(2, 0), (2, 1), (2, 2)]


class Gated:
    """forward(x, mask_ids, h): several inputs, one of them integer; backward
    returns one entry per input (None for the integer one)."""

    def __init__(self):
        self.W = np.random.default_rng(1).normal(size=(4, 4))

    def forward(self, x, keep, h):
        self.x, self.keep, self.h = x, keep, h
        return (x @ self.W) * keep[:, None] + np.sin(h)

    def backward(self, g):
        self.dW = self.x.T @ (g * self.keep[:, None])
        return (g * self.keep[:, None]) @ self.W.T, None, g * np.cos(self.h)


def test_several_inputs_with_an_integer_one():
    keep = np.array([1, 0, 1, 1, 0])
    h = RNG.normal(size=(5, 4))
    report = gp.check_layer(Gated(), (X, keep, h))
    assert report.passed, str(report)
    assert list(report.params) == ["input[0]", "input[2]", "W"]

    class WrongSecond(Gated):
        def backward(self, g):
            dx, _, dh = super().backward(g)
            return dx, None, -dh

    bad = gp.check_layer(WrongSecond(), (X, keep, h))
    assert bad.params["input[2]"].diagnosis.startswith("sign-flipped")
    assert bad.params["input[0]"].passed


class TwoOutputs:
    """An LSTM-like cell: forward returns (h, c) of the same shape; backward(dh, dc)."""

    def __init__(self, star_args=True):
        self.params = {"U": np.random.default_rng(2).normal(size=(4, 4))}
        self.grads = {"U": np.zeros((4, 4))}
        self.star = star_args

    def forward(self, x):
        self.x = x
        z = x @ self.params["U"]
        return np.tanh(z), z ** 2

    def _backward(self, dh, dc):
        z = self.x @ self.params["U"]
        dz = dh * (1 - np.tanh(z) ** 2) + dc * 2 * z
        self.grads["U"][...] = self.x.T @ dz
        return dz @ self.params["U"].T


class StarBackward(TwoOutputs):
    def backward(self, dh, dc):
        return self._backward(dh, dc)


class TupleBackward(TwoOutputs):
    def backward(self, grads):
        return self._backward(*grads)


@pytest.mark.parametrize("cls", [StarBackward, TupleBackward])
def test_several_outputs_are_kept_apart(cls):
    report = gp.check_layer(cls(), X)
    assert report.passed, str(report)

    class DropsSecond(cls):
        def _backward(self, dh, dc):
            return super()._backward(dh, np.zeros_like(dc))   # forgets the c output

    assert gp.check_layer(DropsSecond(), X).status == "failed"
    u = (RNG.normal(size=(5, 4)), RNG.normal(size=(5, 4)))
    assert gp.check_layer(cls(), X, cotangents=u).passed
    assert gp.check_layer(cls(), X, cotangents=[u, u]).passed


def test_check_vjp_with_several_outputs_never_stacks_them():
    f = lambda x: (np.sin(x), x[:2] ** 2)               # different shapes
    vjp = lambda u, x: u[0] * np.cos(x) + np.concatenate([2 * x[:2] * u[1], np.zeros(1)])
    x = np.array([0.3, -1.2, 2.0])
    assert gp.check_vjp(f, x, vjp).passed
    same = lambda x: (np.sin(x), np.cos(x))             # one shape: still two outputs
    assert gp.check_vjp(same, x, lambda u, x: u[0] * np.cos(x) - u[1] * np.sin(x)).passed
    with pytest.raises(TypeError, match=r"cotangents must be a tuple of 2 arrays"):
        gp.check_vjp(same, x, lambda u, x: u[0], cotangents=np.ones(3))
    with pytest.raises(TypeError, match=r"f returned a tuple of 2 arrays .*never stacks"):
        gp.check_jvp(same, x, lambda t, x: t)
    with pytest.raises(TypeError, match=r"f returned a tuple of 2 arrays .*never stacks"):
        gp.check_jacobian(same, x, np.zeros((2, 3, 3)))


# -- reset hook and factories -----------------------------------------------------------

class Accumulating:
    """Cannot be deep-copied; sums its input gradient into a private buffer."""

    def __init__(self):
        self.w = np.linspace(0.5, 1.5, 4)
        self.acc = np.zeros((5, 4))

    def __deepcopy__(self, memo):
        raise TypeError("holds a handle")

    def forward(self, x):
        self.x = x
        return x * self.w

    def backward(self, g):
        self.acc += g * self.w
        return self.acc


def test_reset_hook_runs_on_every_copy():
    layer = Accumulating()
    stale = gp.check_layer(layer, X)
    assert stale.status == "failed"
    assert "zero-cotangent" in [f.kind for f in stale.findings]
    report = gp.check_layer(layer, X, reset=lambda l: l.acc.fill(0))
    assert report.passed, str(report)
    assert not np.any(layer.acc) and not hasattr(layer, "x")      # restored


def test_a_layer_factory_is_called_for_every_copy():
    made = []

    def factory():
        made.append(Accumulating())
        return made[-1]

    report = gp.check_layer(factory, X)
    assert report.passed, str(report)
    assert len(made) > 3                  # a fresh layer per backward pass


# -- elementwise layers cost O(n) ------------------------------------------------------

def test_elementwise_layer_is_differentiated_by_groups():
    class Softplus:
        def forward(self, x):
            self.x = x
            return np.logaddexp(0, x)

        def backward(self, g):
            return g / (1 + np.exp(-self.x))

    x = RNG.normal(size=(20, 30))
    report = gp.check_layer(Softplus(), x)
    assert report.passed
    assert report.params["input"].strategy.startswith("compressed")
    assert report.evaluations < x.size      # entry by entry: 2 per entry per cotangent


def test_elementwise_jacobian_costs_order_n():
    x = RNG.normal(size=300)
    report = gp.check_jacobian(np.tanh, x, np.diag(1 - np.tanh(x) ** 2))
    assert report.passed and report.params["jacobian"].strategy.startswith("compressed")
    assert report.evaluations < x.size      # column by column: 2 per entry


def test_a_layer_survives_pickling_for_other_processes():
    import pickle

    from gradprobe.checks.layer import LayerCopies

    copies = pickle.loads(pickle.dumps(LayerCopies(Nested(), [X])))
    y = copies.forward(input=X, **copies.point)
    np.testing.assert_array_equal(y, Nested().forward(X))


def test_a_layer_class_is_a_factory_and_one_needing_arguments_is_a_clear_error():
    class Scale:
        def __init__(self, k=2.0):
            self.k = k

        def forward(self, x):
            return self.k * x

        def backward(self, g):
            return self.k * g

    class Needs:
        def __init__(self, n):
            self.n = n

        def forward(self, x):
            return x

        def backward(self, g):
            return g

    x = np.random.default_rng(0).standard_normal((3, 4))
    assert gp.check_layer(Scale, x).passed
    with pytest.raises(TypeError, match=r"check_layer: layer is the class Needs.*Needs\(\.\.\.\)"):
        gp.check_layer(Needs, x)
