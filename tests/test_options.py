"""One set of options everywhere (issue 14).

Every public check accepts every option of ``gp.check`` that means something
for it; an option that does not apply is a TypeError that names the function
the user called and says why. ``check_model(..., progress=False)`` and
``check_layer(..., budget_s=0.5)`` used to be TypeErrors (the latter naming
check_vjp).
"""
from __future__ import annotations

import numpy as np
import pytest

import gradprobe as gp
from gradprobe import nn
from gradprobe.options import CheckOptions
from gradprobe.integrations.pytest_plugin import GradCheck

W = np.linspace(-1.0, 1.0, 6).reshape(2, 3)
G = 3 * W ** 2


def cube(W):
    return np.sum(W ** 3)


class Dense:
    """A black-box layer for check_layer."""

    def __init__(self):
        self.params = {"A": np.linspace(0.5, 1.5, 6).reshape(3, 2)}
        self.grads = {"A": np.zeros((3, 2))}

    def forward(self, x):
        self.x = x
        return np.tanh(x @ self.params["A"])

    def backward(self, g):
        d = g * (1 - np.tanh(self.x @ self.params["A"]) ** 2)
        self.grads["A"][...] = self.x.T @ d
        return d @ self.params["A"].T


X_IN = np.linspace(-1.0, 1.0, 12).reshape(4, 3)
MODEL = nn.Sequential([nn.Dense(3, 2, seed=0)], loss=nn.MSE())
X_NN, T_NN = np.ones((4, 3)), np.zeros((4, 2))


def vjp(u, W):
    return 3 * W ** 2 * u


CALLERS = {
    "check": lambda **o: gp.check(cube, W, G, **o),
    "assert_gradients": lambda **o: gp.assert_gradients(cube, W, G, **o),
    "numerical_gradient": lambda **o: gp.numerical_gradient(cube, W, **o),
    "check_model": lambda **o: gp.check_model(MODEL, X_NN, T_NN, **o),
    "check_vjp": lambda **o: gp.check_vjp(lambda W: W ** 3, W, vjp, **o),
    "check_jvp": lambda **o: gp.check_jvp(lambda W: W ** 3, W, lambda t, W: 3 * W ** 2 * t,
                                          **o),
    "check_jacobian": lambda **o: gp.check_jacobian(lambda w: w ** 3, W[0],
                                                    np.diag(3 * W[0] ** 2), **o),
    "check_hvp": lambda **o: gp.check_hvp(lambda w: np.sum(w ** 3), W[0],
                                          lambda v, w: 6 * w * v, **o),
    "check_layer": lambda **o: gp.check_layer(Dense(), X_IN, **o),
    "GradientMonitor": lambda **o: gp.GradientMonitor(cube, on_fail="raise", **o).step(W, G),
    "gradcheck": lambda **o: GradCheck()(cube, W, G, **o),
}

#: A valid use of each option of gp.check (with what it needs to mean something).
USES = {
    "mode": {"mode": "sample"},
    "method": {"method": "richardson"},
    "eps": {"eps": 1e-4},
    "rtol": {"rtol": 1e-4},
    "atol": {"atol": 1e-9},
    "samples": {"mode": "sample", "samples": 3},
    "directions": {"mode": "directional", "directions": 2},
    "seed": {"seed": 3},
    "backend": {"backend": "auto"},
    "workers": {"workers": 1},
    "progress": {"progress": False},
    "upcast": {"upcast": False},
    "budget_s": {"mode": "auto", "budget_s": 0.5},
    "client": {"backend": "dask", "client": object()},
}

ARRAY_VALUED = {"mode", "samples", "directions", "workers", "progress", "budget_s", "client"}
#: What does not apply where (written here by hand, not read from the code).
NOT_APPLICABLE = {
    "check": set(), "assert_gradients": set(), "check_vjp": set(), "check_layer": set(),
    "GradientMonitor": set(), "gradcheck": set(),
    "numerical_gradient": {"mode", "rtol", "atol", "samples", "directions", "budget_s"},
    "check_model": {"directions", "budget_s", "client"},
    "check_jvp": ARRAY_VALUED, "check_jacobian": ARRAY_VALUED, "check_hvp": ARRAY_VALUED,
}


@pytest.mark.parametrize("caller", sorted(CALLERS))
@pytest.mark.parametrize("option", sorted(USES))
def test_every_check_takes_every_option_that_applies(caller, option):
    use = USES[option]
    if option in NOT_APPLICABLE[caller]:
        with pytest.raises(TypeError, match=rf"^{caller}: {option}= does not apply: \w"):
            CALLERS[caller](**{option: use[option]})
        return
    if option == "client":  # needs a cluster (test_engine_dask); the option is accepted
        with pytest.raises(TypeError, match="client must be a distributed.Client"):
            CALLERS[caller](**use)
        return
    result = CALLERS[caller](**use)
    if caller != "numerical_gradient":
        assert result.passed, str(result)


def test_the_two_cases_of_the_issue():
    assert gp.check_model(MODEL, X_NN, T_NN, progress=False).passed
    report = gp.check_layer(Dense(), X_IN, mode="auto", budget_s=0.5)
    assert report.passed and report.strategy == "full"
    with pytest.raises(ValueError, match=r"^check_layer: budget_s=0.5 is only used with "
                                         r"mode='auto' \(mode='full'\)"):
        gp.check_layer(Dense(), X_IN, budget_s=0.5)


@pytest.mark.parametrize("caller", sorted(set(CALLERS) - {"numerical_gradient"}))
def test_a_bad_value_names_the_function_called(caller):
    with pytest.raises(ValueError, match=rf"^{caller}: seed=-1 is not valid"):
        CALLERS[caller](seed=-1)


@pytest.mark.parametrize("caller", sorted(CALLERS))
def test_an_unknown_option_names_the_function_called(caller):
    with pytest.raises(TypeError, match=rf"{caller}.*unexpected.*'colour'"):
        CALLERS[caller](colour="red")


def test_options_are_one_frozen_validated_value():
    opts = CheckOptions.build("check", {"eps": 1, "samples": 4, "mode": "auto"})
    assert opts.eps == 1.0 and isinstance(opts.eps, float) and opts.samples == 4
    with pytest.raises(AttributeError):
        opts.eps = 2.0  # frozen
    with pytest.raises(ValueError, match="samples=4 is only used with mode='sample'"):
        CheckOptions(samples=4)


def test_progress_bar_of_check_model_and_numerical_gradient(capsys):
    pytest.importorskip("tqdm")
    gp.check_model(MODEL, X_NN, T_NN, progress=True)
    assert "gradprobe check_model" in capsys.readouterr().err
    gp.numerical_gradient(cube, W, progress=True)
    assert "gradprobe" in capsys.readouterr().err


def test_every_mode_is_one_entry_of_the_strategy_table():
    """mode -> strategy in one table; "auto" picks one of its entries (issue 15)."""
    from gradprobe import config
    from gradprobe.checks.scalar import STRATEGIES

    assert set(config.MODES) - {"auto"} <= set(STRATEGIES)
    assert {"full", "directional+sample"} <= set(STRATEGIES)
    w = np.linspace(-1.0, 1.0, 50)
    for budget, chosen in ((10.0, "full"), (1e-9, "directional+sample")):
        report = gp.check(lambda w: np.sum(np.sin(w)), w, np.cos(w), mode="auto",
                          budget_s=budget)
        assert report.passed and report.strategy == chosen
    sampled = gp.check(lambda w: np.sum(np.sin(w)), w, np.cos(w), mode="sample", samples=7)
    assert sampled.params["w"].checked == 7 and sampled.strategy is None


@pytest.mark.parametrize("call, match", [
    (lambda: gp.check_model(MODEL, X_NN, T_NN, method="complex"),
     r"^check_model: method='complex' is not available here: .*real.*; use "
     r"method='central', 'forward' or 'richardson'$"),
    (lambda: gp.check_model(MODEL, X_NN, T_NN, mode="directional"),
     r"^check_model: mode='directional' is not available here"),
    (lambda: gp.check_model(MODEL, X_NN, T_NN, backend="python"),
     r"^check_model: backend='python' is not available here: .*own kernels"),
    (lambda: gp.check_model(MODEL, X_NN, T_NN, backend="gpu"),
     r"^check_model: backend='gpu' is not valid; expected one of auto, numba, cffi$"),
    (lambda: gp.numerical_gradient(MODEL, X_NN, T_NN, backend="python"),
     r"^numerical_gradient: backend='python' is not available here"),
    (lambda: nn.numerical_gradient_model(MODEL, X_NN, T_NN, eps=-1.0),
     r"^numerical_gradient_model: eps=-1.0 is not valid"),
    (lambda: gp.check_jacobian(np.sin, W[0], np.eye(3), backend="numba"),
     r"^check_jacobian: backend='numba' is not available here: .*Python engine; use "
     r"backend='auto' or 'python'$"),
    (lambda: gp.check_hvp(np.sum, W[0], lambda v, w: 0 * v, backend="dask"),
     r"^check_hvp: backend='dask' is not available here"),
    (lambda: gp.GradientMonitor(cube, mode="bogus"), r"^GradientMonitor: mode='bogus' is not "
                                                      r"valid"),
    (lambda: gp.GradientMonitor(cube, mode="full", budget_s=1.0),
     r"^GradientMonitor: budget_s=1 is only used with mode='auto'"),
])
def test_restricted_values_are_refused_by_the_options_naming_the_function(call, match):
    """One validation, one wording: the function called, the value, why, what to use."""
    with pytest.raises(ValueError, match=match):
        call()


def test_the_monitor_defaults_its_budget_through_the_options():
    from gradprobe import config

    monitor = gp.GradientMonitor(cube)
    assert monitor.options.mode == "auto" and monitor.budget_s == config.MONITOR_BUDGET_S
    assert monitor.options.budget_s == config.MONITOR_BUDGET_S
    assert gp.GradientMonitor(cube, mode="full").options.budget_s is None
