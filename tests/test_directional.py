"""mode="directional": random directions through every entry, and localization on failure."""
from __future__ import annotations

import json

import numpy as np
import pytest

import gradprobe as gp
from gradprobe.options import CheckOptions
from gradprobe.checks.directional import directional_check
from gradprobe.differences.directional import DirectionalProbe
from gradprobe.engines.python import displace
from gradprobe.engines.base import Engine
from gradprobe.engines.python import PythonEngine
from gradprobe.problem.params import ParamSet
from gradprobe.problem.point import prepare
from gradprobe.differences.stencils import Stencil
from naive import bilinear, bilinear_grad, mlp_grad, mlp_loss, mlp_point, quartic, quartic_grad


# -- a cheap vectorised loss: elementwise smooth terms plus a coupling term ------------------

def chain(x):
    """``sum(2 x + x^2 / 2 + x^3 / 6) + 1/2 sum x_i x_{i+1}``: cheap at a million entries
    (and complex-safe, for the complex step)."""
    return np.sum(x * (2.0 + x * (0.5 + x / 6.0))) + 0.5 * np.dot(x[:-1], x[1:])


def chain_grad(x):
    g = 2.0 + x + 0.5 * x * x
    g[1:] += 0.5 * x[:-1]
    g[:-1] += 0.5 * x[1:]
    return g


def _plant(g, count, rng):
    """Relative errors of 1 % to 10 %, random sign, at ``count`` random entries."""
    flat = g.reshape(-1)
    where = np.sort(rng.choice(flat.size, size=count, replace=False))
    flat[where] *= 1.0 + rng.choice([-1.0, 1.0], count) * rng.uniform(0.01, 0.1, count)
    return where


@pytest.mark.parametrize("size", [10, 1000, 100_000, 1_000_000])
@pytest.mark.parametrize("count", [1, 2, 5])
def test_localization_names_planted_errors_exactly(size, count, unchanged):
    rng = np.random.default_rng(size + count)
    x = rng.uniform(-1.0, 1.0, size)
    g = chain_grad(x)
    where = _plant(g, count, rng)
    with unchanged(x):
        report = gp.check(chain, x, g, mode="directional", seed=size % 7)
    p = report.params["x"]
    assert [i for (i,) in p.failed_indices] == list(where), str(report)
    assert report.directional["failed"] >= 1 and not report.directional["dense"]
    assert p.diagnosis.startswith("localized")
    # the analytic/numeric values at the named entries come from the per-entry stencil
    np.testing.assert_allclose(p.numeric[np.isin(p.flat_indices, where)],
                               chain_grad(x)[where], rtol=1e-6)
    # O(log P) per wrong entry, far from the 2 P of a full check
    assert report.evaluations < 60 + count * 6 * np.log2(size + 1) + 6 * count


def test_localization_across_parameters_gives_index_tuples():
    rng = np.random.default_rng(3)
    W, b = rng.normal(size=(300, 200)), rng.normal(size=200)

    def f(W, b):
        return float(np.sum(np.tanh(W + b) ** 2))

    def grad(W, b):
        t = np.tanh(W + b)
        dW = 2.0 * t * (1.0 - t * t)
        return dW, dW.sum(axis=0)

    dW, db = grad(W, b)
    dW[123, 45] += 0.05
    db[7] *= 1.03
    report = gp.check(f, {"W": W, "b": b}, {"W": dW, "b": db}, mode="directional")
    assert report.params["W"].failed_indices == [(123, 45)], str(report)
    assert report.params["b"].failed_indices == [(7,)]
    assert report.params["W"].shape == (300, 200) and report.params["W"].checked == 1
    assert report.directional["localized"] == {"W": 1, "b": 1}


def _correct_problem(seed, dtype):
    """A small smooth problem with its exact gradient (computed in ``dtype``)."""
    rng = np.random.default_rng(seed)
    kind = seed % 3
    if kind == 0:
        params, X, T = mlp_point(dtype, seed=seed, batch=8 + seed % 40, n_in=2 + seed % 7,
                                 n_hidden=3 + seed % 9)
        return mlp_loss, params, mlp_grad(*params, X, T), (X, T)
    if kind == 1:
        x = rng.uniform(-2.0, 2.0, 1 + seed % 200).astype(dtype)
        return quartic, x, quartic_grad(x), ()
    A = rng.normal(size=(2 + seed % 8, 1 + seed % 5)).astype(dtype)
    b = rng.normal(size=A.shape[0]).astype(dtype)
    c = rng.normal(size=A.shape[1]).astype(dtype)
    return bilinear, (A, b, c), bilinear_grad(A, b, c), ()


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_no_false_alarms_on_correct_gradients(dtype):
    """100 seeds (1,000 measured once: see the closing notes); float32 upcast by default."""
    worst = 0.0
    for seed in range(100):
        f, params, grads, args = _correct_problem(seed, dtype)
        report = gp.check(f, params, grads, args=args, mode="directional", seed=seed)
        assert report.passed and report.directional["failed"] == 0, (seed, str(report))
        assert report.evaluations <= 60
        worst = max(worst, report.directional["worst_ratio"])
    assert worst < 0.5  # margin: the largest residual is well inside its allowance


def test_no_false_alarms_without_upcast():
    for seed in range(30):
        f, params, grads, args = _correct_problem(seed, np.float32)
        report = gp.check(f, params, grads, args=args, mode="directional", seed=seed,
                          upcast=False)
        assert report.passed and report.directional["failed"] == 0, (seed, str(report))


def test_strong_coupling_shrinks_the_step_instead_of_raising_false_alarms():
    """Along a direction through every entry, derivatives of a coupled loss grow with each
    order (``exp(k sum x)``: the k-th derivative scales like ``(sum u)^k``). Detection
    measures the truncation; when it exceeds the rounding, the step shrinks."""
    n = 10_000
    x = np.random.default_rng(0).uniform(-0.01, 0.01, n)
    steps = {}
    for k in (0.05, 1.0):
        g = np.full(n, k * np.exp(k * np.sum(x)))
        for seed in range(10):
            report = gp.check(lambda x: np.exp(k * np.sum(x)), x, g, mode="directional",
                              seed=seed)
            assert report.passed and report.directional["failed"] == 0, str(report)
        steps[k] = report.directional["step"]
        g[1234] *= 1.01
        report = gp.check(lambda x: np.exp(k * np.sum(x)), x, g, mode="directional")
        assert report.params["x"].failed_indices == [(1234,)], str(report)
    assert steps[1.0] < steps[0.05]


def test_a_wide_mlp_has_no_false_alarm_and_sees_small_errors():
    """A 5,000-parameter network: a 1 % error in one weight is named."""
    params, X, T = mlp_point(seed=5, batch=64, n_in=40, n_hidden=100, n_out=10)
    grads = mlp_grad(*params, X, T)
    report = gp.check(mlp_loss, params, grads, args=(X, T), mode="directional")
    assert report.passed and report.directional["failed"] == 0, str(report)
    bad = [g.copy() for g in grads]
    bad[0][17, 3] *= 1.01
    report = gp.check(mlp_loss, params, tuple(bad), args=(X, T), mode="directional")
    assert report.params["W1"].failed_indices == [(17, 3)], str(report)
    assert abs(bad[0][17, 3] - grads[0][17, 3]) > report.resolution


def test_resolution_is_reported_and_honest():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, 20_000)
    report = gp.check(chain, x, chain_grad(x), mode="directional")
    res = report.resolution
    assert report.params["x"].resolution == res and 0 < res < 1e-3
    text = str(report)
    assert "resolution:" in text and "directional: 4 random directions" in text
    # an error of twice the resolution in any entry fails a direction and is localized
    # (the per-entry rules, rtol included, then decide whether the entry fails)
    for seed in range(5):
        g = chain_grad(x)
        j = int(np.random.default_rng(seed).integers(x.size))
        g[j] += 2.0 * res * np.sign(rng.normal())
        found = gp.check(chain, x, g, mode="directional")
        assert found.directional["failed"] >= 1
        assert found.directional["localized"] == {"x": 1}
        assert found.params["x"].indices == [(j,)]


def test_report_and_dict_of_a_directional_check():
    rng = np.random.default_rng(1)
    x = rng.uniform(-1.0, 1.0, 5000)
    g = chain_grad(x)
    g[4321] += 0.1
    report = gp.check(chain, x, g, mode="directional", directions=3)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["mode"] == "directional" and data["resolution"] == report.resolution
    assert data["directional"]["directions"] == 3
    assert data["params"]["x"]["failed_indices"] == [[4321]]
    assert data["params"]["x"]["resolution"] == report.params["x"].resolution
    text = str(report)
    assert "mode=directional" in text and "x[4321]" in text
    lines = text.splitlines()
    row = next(i for i, line in enumerate(lines) if line.startswith("x "))
    assert lines[row + 1].strip().startswith("diagnosis: localized: 1 entry of 5,000")


def test_evaluations_are_counted_exactly():
    calls = []

    def f(x):
        calls.append(1)
        return chain(x)

    rng = np.random.default_rng(2)
    x = rng.uniform(-1.0, 1.0, 3000)
    g = chain_grad(x)
    g[[10, 2000]] += 0.05
    report = gp.check(f, x, g, mode="directional")
    assert report.evaluations == len(calls)
    ev = report.directional["evaluations"]
    assert ev["setup"] + ev["directions"] + ev["localization"] + ev["entries"] == len(calls)
    assert ev["directions"] == 4 * 4 * report.directional["rounds"]


def test_same_seed_same_check_other_seed_other_directions():
    rng = np.random.default_rng(4)
    x = rng.uniform(-1.0, 1.0, 2000)
    g = chain_grad(x)
    g[77] += 0.01
    a = gp.check(chain, x, g, mode="directional", seed=5)
    b = gp.check(chain, x, g, mode="directional", seed=5)
    c = gp.check(chain, x, g, mode="directional", seed=6)
    assert a.evaluations == b.evaluations and a.resolution == b.resolution
    assert a.directional == b.directional
    assert a.resolution != c.resolution
    assert a.params["x"].failed_indices == c.params["x"].failed_indices == [(77,)]


def test_dense_errors_fall_back_to_checking_the_parameter_entry_by_entry():
    params, X, T = mlp_point(seed=2, n_in=8, n_hidden=12)
    grads = [g.copy() for g in mlp_grad(*params, X, T)]
    grads[2] = -grads[2]
    report = gp.check(mlp_loss, params, tuple(grads), args=(X, T), mode="directional")
    W2 = report.params["W2"]
    assert report.directional["dense"] == ["W2"]
    assert W2.full and W2.checked == W2.shape[0] * W2.shape[1]
    assert W2.diagnosis.startswith("sign-flipped")
    assert W2.resolution is None
    assert report.params["W1"].passed and report.params["W1"].checked == 0
    assert "dense errors in W2" in str(report)


@pytest.mark.parametrize("method", ["richardson", "complex", "forward"])
def test_other_methods(method):
    rng = np.random.default_rng(6)
    x = rng.uniform(-1.0, 1.0, 4000)
    g = chain_grad(x)
    assert gp.check(chain, x, g, mode="directional", method=method).passed
    g[1234] *= 1.02
    report = gp.check(chain, x, g, mode="directional", method=method)
    assert report.params["x"].failed_indices == [(1234,)], str(report)


def test_nonfinite_analytic_entry_is_named():
    rng = np.random.default_rng(7)
    x = rng.uniform(-1.0, 1.0, 1000)
    g = chain_grad(x)
    g[500] = np.nan
    report = gp.check(chain, x, g, mode="directional")
    assert report.params["x"].failed_indices == [(500,)]
    assert report.params["x"].diagnosis.startswith("nonfinite")


def test_kinks_found_by_a_direction_are_reported_as_kinks():
    x = np.linspace(-1.0, 1.0, 201)  # x[100] == 0: relu's kink

    def f(x):
        return float(np.sum(np.maximum(x, 0.0) * (1.0 + np.arange(x.size))))

    g = np.where(x > 0, 1.0 + np.arange(x.size), 0.0)
    report = gp.check(f, x, g, mode="directional")
    assert report.passed, str(report)
    assert report.params["x"].kinks == [(100,)]


def test_user_arrays_untouched_when_f_raises_mid_localization(unchanged):
    rng = np.random.default_rng(8)
    params = {"W": rng.normal(size=(40, 30)), "b": rng.normal(size=30)}
    calls = []

    class Boom(Exception):
        pass

    def f(W, b):
        calls.append(1)
        if len(calls) > 45:  # after set-up and detection, inside localization
            raise Boom
        return float(np.sum(np.sin(W + b)))

    grads = {"W": np.cos(params["W"] + params["b"]),
             "b": np.cos(params["W"] + params["b"]).sum(axis=0)}
    grads["W"][3, 4] += 1.0
    with unchanged(params), unchanged(grads):
        with pytest.raises(Boom):
            gp.check(f, params, grads, mode="directional")
    calls.clear()

    def interrupted(W, b):
        calls.append(1)
        if len(calls) == 30:
            raise KeyboardInterrupt
        return float(np.sum(np.sin(W + b)))

    with unchanged(params):
        with pytest.raises(KeyboardInterrupt):
            gp.check(interrupted, params, grads, mode="directional")


def test_read_only_and_float32_arrays(unchanged):
    x = np.linspace(-1.0, 1.0, 500).astype(np.float32)
    x.setflags(write=False)
    g = chain_grad(x.astype(np.float64)).astype(np.float32)
    with unchanged(x):
        assert gp.check(chain, x, g, mode="directional").passed
        g[250] *= 1.05
        assert gp.check(chain, x, g, mode="directional").params["x"].failed_indices == [(250,)]


def test_non_finite_loss_along_a_direction_is_a_clear_error(unchanged):
    x = np.array([1e-7, 1.0, 2.0])

    def f(x):
        with np.errstate(invalid="ignore"):
            return float(np.sum(np.sqrt(x)))

    with unchanged(x):
        with pytest.raises(ValueError, match="displaced along a random direction"):
            gp.check(f, x, 0.5 / np.sqrt(x), mode="directional", eps=1e-3)


def test_displace_is_the_contract_engines_share():
    w = np.array([[1.0, 2.0]], dtype=np.float32)
    moved = displace(w, np.array([0.5, -1.0]), 0.25)
    assert moved.dtype == np.float32 and moved.shape == (1, 2)
    np.testing.assert_array_equal(moved, [[1.125, 1.75]])
    assert displace(w, None, 0.25) is w


def test_engines_without_evaluate_directions_fall_back_to_the_python_loop():
    class EntryOnlyEngine(Engine):  # the contract's default evaluate_directions
        name = "entry-only"

        def __init__(self):
            self.inner = PythonEngine()

        def evaluate(self, problem, param, entries, points):
            return self.inner.evaluate(problem, param, entries, points)

    rng = np.random.default_rng(9)
    x = rng.uniform(-1.0, 1.0, 3000)
    g = chain_grad(x)
    g[2999] += 0.02
    paramset = ParamSet.from_user(x, chain)
    problem = prepare(chain, paramset, (), upcast=True, complex_step=False, seed=0)
    reports, summary, _ = directional_check(
        problem, EntryOnlyEngine(), Stencil("central"), [g], CheckOptions(), directions=4)
    assert reports["x"].failed_indices == [(2999,)]
    assert problem.evaluations == sum(summary["evaluations"].values())


def test_probe_compares_along_the_displacements_actually_evaluated():
    """float32 working copies round ``x + t u``; the analytic side uses the rounded points."""
    x = np.linspace(0.1, 3.0, 257).astype(np.float32)

    def f(x):
        return float(np.sum(np.asarray(x, np.float64) ** 3))

    paramset = ParamSet.from_user(x, f)
    problem = prepare(f, paramset, (), upcast=False, complex_step=False, seed=0)
    probe = DirectionalProbe(problem, PythonEngine(), [3.0 * x.astype(np.float64) ** 2])
    tests = probe.detect([probe.draw(0, 0, k) for k in range(8)])
    assert not any(t.failed for t in tests)
    assert max(t.ratio for t in tests) < 0.5
