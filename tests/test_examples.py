"""The three seed problems, the demo and the info command."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import gradprobe as gp
from gradprobe.integrations import cli
from gradprobe.examples import linear_neuron, linear_regression, two_layer_net


def test_linear_neuron_numbers_from_the_text():
    w, b = linear_neuron.point()
    assert linear_neuron.output(w, b, linear_neuron.X) == pytest.approx(0.88)
    dw, db = linear_neuron.backprop(w, b, linear_neuron.X, linear_neuron.TARGET)
    np.testing.assert_allclose(dw, [0.7744, 0.0])
    np.testing.assert_allclose(db, [0.7744])


def test_linear_neuron_loss_check_passes_and_output_check_fails():
    assert linear_neuron.check_loss().passed
    wrong = linear_neuron.check_output_by_mistake()
    assert not wrong.passed
    # the numerical gradient of the output is the input: always 1 for w[0]
    assert wrong.params["w"].numeric[0] == pytest.approx(1.0, abs=1e-9)
    assert wrong.params["w"].failed_indices == [(0,)]
    assert wrong.params["b"].numeric[0] == pytest.approx(1.0, abs=1e-9)


def test_linear_neuron_gradient_depends_on_the_target():
    w, b = linear_neuron.point()
    other = gp.numerical_gradient(linear_neuron.loss, (w, b), args=(linear_neuron.X, 0.5))
    assert other[0][0] == pytest.approx(0.88 - 0.5, abs=1e-9)


def test_two_layer_net_catches_the_forgotten_activation_derivative():
    assert two_layer_net.check_correct().passed
    bad = two_layer_net.check_forgotten_derivative()
    assert not bad.params["W1"].passed and not bad.params["b1"].passed
    assert bad.params["W2"].passed and bad.params["b2"].passed


def test_two_layer_net_matches_per_entry_seed_loop():
    """Copy the weights, set w[i, j] +- eps, recompute the cost, for every i, j."""
    params = two_layer_net.initial_params()
    eps = 1e-6
    ours = gp.numerical_gradient(
        lambda X, T, **p: two_layer_net.cost(X, T, **p), params,
        args=(two_layer_net.X, two_layer_net.T))
    for name, array in params.items():
        for index in np.ndindex(array.shape):
            plus = {k: v.copy() for k, v in params.items()}
            minus = {k: v.copy() for k, v in params.items()}
            plus[name][index] += eps
            minus[name][index] -= eps
            seed = (two_layer_net.cost(two_layer_net.X, two_layer_net.T, **plus)
                    - two_layer_net.cost(two_layer_net.X, two_layer_net.T, **minus)) / (2 * eps)
            assert ours[name][index] == pytest.approx(seed, rel=1e-6, abs=1e-9)


def test_two_layer_net_checked_training_runs():
    params = two_layer_net.train(steps=3)
    assert set(params) == {"W1", "b1", "W2", "b2"}


def test_linear_regression_catches_the_missing_mean():
    assert linear_regression.check_correct().passed
    bad = linear_regression.check_missing_mean()
    assert bad.params["w"].failed == 6
    assert bad.params["w"].diagnosis.startswith("scaled")
    assert f"1/{linear_regression.M}" in bad.params["w"].diagnosis


def test_linear_regression_slopes_agree_with_analytic_gradient():
    X, y = linear_regression.data()
    w = linear_regression.after_one_step()
    num = gp.numerical_gradient(linear_regression.cost, w, args=(X, y), eps=1e-4)
    np.testing.assert_allclose(num, linear_regression.gradient(w, X, y), rtol=1e-8)


def test_demo_prints_all_three_reports(capsys):
    assert cli.main(["demo"]) == 0
    out = capsys.readouterr().out
    for name in ("linear_neuron", "two_layer_net", "linear_regression"):
        assert name in out
    assert out.count("PASSED") >= 3 and out.count("FAILED") >= 3
    assert "scaled" in out


def test_info_lists_engines(capsys):
    assert cli.main(["info", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["gradprobe"] == gp.__version__
    assert data["engines"]["python"] == "available"


def test_module_entry_point_runs():
    result = subprocess.run([sys.executable, "-m", "gradprobe", "info"],
                            capture_output=True, text=True, check=True)
    assert "engines:" in result.stdout


def test_demo_ends_with_a_summary_of_the_mistakes_caught(capsys):
    """Issue 14: the demo ended on FAILED tables, exit 0, no closing line."""
    assert cli.main(["demo"]) == 0
    lines = capsys.readouterr().out.rstrip().splitlines()
    assert lines[-1] == "demo: all 3 planted mistakes caught, all 3 correct gradients PASSED"
    summary = lines[lines.index("summary"):]
    assert sum("FAILED: mistake caught" in line for line in summary) == 3
    assert sum("passed, as a correct gradient should" in line for line in summary) == 3


def test_demo_exits_non_zero_when_a_mistake_is_not_caught(capsys, monkeypatch):
    from gradprobe import examples
    from gradprobe.examples import linear_regression

    # a "mistake" that is in fact the correct gradient: the check passes, so the
    # demo must say the mistake was not caught and exit non-zero
    monkeypatch.setattr(linear_regression, "check_missing_mean",
                        linear_regression.check_correct)
    assert cli.main(["demo"]) == 1
    out = capsys.readouterr().out
    assert "gradient without 1/m" in out and "passed: mistake NOT caught" in out
    assert out.rstrip().splitlines()[-1] == \
        "demo: 1 of 6 checks did not come out as intended"
    assert len(examples.DEMO_CASES) == 6
