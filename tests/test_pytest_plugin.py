"""The pytest plugin: the gradcheck fixture, its command-line defaults, its failure message."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from gradprobe.integrations.pytest_plugin import GradCheck

pytest_plugins = ["pytester"]

TESTS = '''
import numpy as np

X = np.arange(12.0).reshape(4, 3) / 10
W = np.array([[0.3, -0.2], [0.1, 0.5], [-0.4, 0.2]])

def loss(W, X):
    return 0.5 * np.sum((X @ W) ** 2)

def backprop(W, X):
    return X.T @ (X @ W)

def test_right(gradcheck):
    report = gradcheck(loss, W, backprop, args=(X,))
    print("SETTINGS", report.mode, report.backend, gradcheck.defaults)

def test_wrong(gradcheck):
    gradcheck(loss, W, lambda W, X: 2 * backprop(W, X), args=(X,))
'''


def test_fixture_passes_and_fails_with_the_readable_report(pytester):
    pytester.makepyfile(test_grads=TESTS)
    result = pytester.runpytest_subprocess("-s")
    result.assert_outcomes(passed=1, failed=1)
    out = result.stdout.str()
    assert "SETTINGS full python {}" in out
    # the report's table and diagnosis, not a matrix dump
    assert "gradprobe check FAILED: 6 entries" in out
    assert "diagnosis: scaled" in out
    assert "worst entries:" in out
    assert "array(" not in out
    assert "api.py" not in out  # the traceback ends in the test, not inside gradprobe


def test_command_line_options_become_the_defaults(pytester):
    pytester.makepyfile(test_grads=TESTS)
    result = pytester.runpytest_subprocess(
        "-s", "-k", "right", "--gradprobe-mode=sample", "--gradprobe-backend=python",
        "--gradprobe-seed=5")
    result.assert_outcomes(passed=1)
    out = result.stdout.str()
    assert "SETTINGS sample python {'mode': 'sample', 'backend': 'python', 'seed': 5}" in out
    assert "gradprobe: mode='sample', backend='python', seed=5" in out  # report header


def test_options_in_the_test_win_over_the_command_line(pytester):
    pytester.makepyfile(test_grads='''
import numpy as np

def test_it(gradcheck):
    r = gradcheck(lambda w: np.sum(w ** 2), np.arange(100.0), 2 * np.arange(100.0),
                  mode="full")
    assert r.mode == "full" and r.params["w"].checked == 100
''')
    result = pytester.runpytest_subprocess("--gradprobe-mode=sample")
    result.assert_outcomes(passed=1)


def test_bad_option_values_are_refused(pytester):
    pytester.makepyfile(test_x="def test_x(): pass")
    result = pytester.runpytest_subprocess("--gradprobe-mode=everything")
    assert result.ret != 0
    assert "invalid choice" in result.stderr.str()
    result = pytester.runpytest_subprocess("--gradprobe-seed=-1")
    assert result.ret != 0


def test_project_defaults_through_the_options_fixture(pytester):
    pytester.makeconftest('''
import pytest

@pytest.fixture(scope="session")
def gradprobe_options():
    return {"mode": "sample", "samples": 3}
''')
    pytester.makepyfile(test_grads='''
import numpy as np

def test_it(gradcheck):
    r = gradcheck(lambda w: np.sum(w ** 2), np.arange(100.0), 2 * np.arange(100.0))
    assert r.params["w"].checked == 3
    # another mode in the test drops the session mode's own options
    r = gradcheck(lambda w: np.sum(w ** 2), np.arange(10.0), 2 * np.arange(10.0), mode="full")
    assert r.params["w"].checked == 10
''')
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)


def test_gradcheck_object_leaves_arrays_alone(unchanged):
    w = np.linspace(-1.0, 1.0, 7)
    g = np.cos(w)
    with unchanged((w, g)):
        report = GradCheck({"seed": 3})(lambda w: np.sum(np.sin(w)), w, g)
    assert report.passed
    bad = g.copy()
    bad[2] *= 1.01
    with pytest.raises(AssertionError) as info:
        GradCheck()(lambda w: np.sum(np.sin(w)), w, bad)
    assert str(info.value) == str(info.value.report)
    assert info.value.report.params["w"].failed_indices == [(2,)]


def test_plugin_imports_without_numba():
    code = ("import sys, gradprobe.integrations.pytest_plugin; "
            "print('numba' in sys.modules, 'matplotlib' in sys.modules, 'tqdm' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.split() == ["False", "False", "False"]
