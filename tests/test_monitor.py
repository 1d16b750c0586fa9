"""GradientMonitor: when it checks, how it reports, and the training example."""
from __future__ import annotations

import logging
import warnings

import numpy as np
import pytest

import gradprobe as gp
from gradprobe.examples import monitor_training

X = np.linspace(0.5, 1.5, 6)


def loss(w, x):
    return 0.5 * np.sum((w * x - 1.0) ** 2)


def grad(w, x):
    return (w * x - 1.0) * x


def test_checks_on_steps_0_every_2every_and_returns_reports():
    monitor = gp.GradientMonitor(loss, every=4)
    w = np.zeros(6)
    returned = [monitor.step(w, grad(w, X), X) for _ in range(10)]
    assert [i for i, r in enumerate(returned) if r is not None] == [0, 4, 8]
    assert all(r.passed for r in returned if r is not None)
    assert [r.step for r in monitor.history] == [0, 4, 8]
    assert monitor.steps == 10 and monitor.last_report is returned[8]
    rec = monitor.history[0]
    assert rec.passed and set(rec.max_rel_error) == {"w"} and rec.failed == {"w": 0}
    assert rec.evaluations == returned[0].evaluations and rec.seconds > 0
    assert rec.strategy == "full"  # 6 entries fit any budget


def test_warn_by_default_with_the_report_and_logs(caplog):
    monitor = gp.GradientMonitor(loss, every=1)
    w = np.zeros(6)
    bad = grad(w, X)
    bad[3] *= 1.5
    with caplog.at_level(logging.INFO, logger="gradprobe"):
        monitor.step(w, grad(w, X), X)
        with pytest.warns(gp.GradientWarning) as caught:
            report = monitor.step(w, bad, X)
    assert not report.passed and report.params["w"].failed_indices == [(3,)]
    message = str(caught[0].message)
    assert "failed at step 1" in message and "w[3]" in message
    assert [r.levelname for r in caplog.records] == ["INFO", "WARNING"]
    assert "step 0: gradient check passed" in caplog.records[0].getMessage()
    assert "step 1: gradient check FAILED" in caplog.records[1].getMessage()
    assert [r.passed for r in monitor.history] == [True, False]
    assert monitor.first_failure.step == 1


def test_raise_and_callable():
    w = np.zeros(6)
    bad = -grad(w, X)
    with pytest.raises(gp.GradientCheckError) as info:
        gp.GradientMonitor(loss, on_fail="raise").step(w, bad, X)
    assert "sign-flipped" in str(info.value)
    seen = []
    monitor = gp.GradientMonitor(loss, on_fail=seen.append)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        report = monitor.step(w, bad, X)
    assert seen == [report] and not report.passed


def test_cheap_by_default_on_a_large_parameter():
    w = np.linspace(-1.0, 1.0, 200_000)
    f = lambda w: np.sum(np.sin(w))  # noqa: E731
    g = np.cos(w)
    g[12_345] *= 1.01
    monitor = gp.GradientMonitor(f, on_fail=lambda r: None)
    report = monitor.step(w, g)
    assert report.strategy == "directional+sample"
    assert report.params["w"].failed_indices == [(12_345,)]
    assert report.evaluations < 400


def test_options_pass_through_and_seed_changes_per_check(unchanged):
    w = np.linspace(-1.0, 1.0, 1000)
    g = np.cos(w)
    monitor = gp.GradientMonitor(lambda w: np.sum(np.sin(w)), every=1, mode="sample",
                                 samples=5, seed=10, method="forward")
    with unchanged((w, g)):
        first = monitor.step(w, g)
        second = monitor.step(w, g)
    assert first.method == "forward" and first.params["w"].checked == 5
    assert first.params["w"].indices != second.params["w"].indices
    again = gp.check(lambda w: np.sum(np.sin(w)), w, g, mode="sample", samples=5, seed=10,
                     method="forward")
    assert again.params["w"].indices == first.params["w"].indices


def test_default_args_and_bad_options():
    monitor = gp.GradientMonitor(loss, args=(X,))
    assert monitor.step(np.zeros(6), grad(np.zeros(6), X)).passed
    with pytest.raises(ValueError, match="every"):
        gp.GradientMonitor(loss, every=0)
    with pytest.raises(ValueError, match="on_fail"):
        gp.GradientMonitor(loss, on_fail="ignore")
    with pytest.raises(ValueError, match="mode"):
        gp.GradientMonitor(loss, mode="fast")
    with pytest.raises(ValueError, match="budget_s"):
        gp.GradientMonitor(loss, mode="full", budget_s=1.0)
    with pytest.raises(TypeError):
        gp.GradientMonitor("loss")


def test_example_catches_the_planted_bug_at_the_right_check():
    seen = []
    monitor, losses = monitor_training.train(500, on_fail=seen.append)
    assert [(r.step, r.passed) for r in monitor.history] == [
        (0, True), (100, True), (200, True), (300, False), (400, False)]
    assert monitor.first_failure.step == monitor_training.BUG_STEP
    first = seen[0]
    assert first.strategy == "directional+sample"  # cheap: 2,177 parameters, 0.05 s budget
    assert [name for name, p in first.params.items() if not p.passed] == ["b1"]
    assert first.params["b1"].diagnosis.startswith("scaled")
    assert losses[-1] < losses[0]


def test_example_without_the_bug_passes_every_check():
    monitor, _ = monitor_training.train(301, bug_from=None, on_fail="raise")
    assert all(r.passed for r in monitor.history) and len(monitor.history) == 4


def test_example_bug_starting_between_checks_is_caught_at_the_next_one():
    monitor, _ = monitor_training.train(400, bug_from=250, on_fail=lambda r: None)
    assert monitor.first_failure.step == 300


def test_example_main_prints(capsys):
    monitor_training.main()
    out = capsys.readouterr().out
    assert "first failing check: step 300" in out
