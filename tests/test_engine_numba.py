"""The Numba engine against the Python engine (the reference), bit for bit.

Every loss here is a module-level ``numba.njit`` function, so each compiles
once per argument types for the whole file; the engine's kernel is shared by
every ``f`` with the same signature and cached on disk between runs.
"""
from __future__ import annotations

import numba
import numpy as np
import pytest

import gradprobe as gp
from gradprobe import config
from gradprobe.engines import numba_kernel, select_engine
from gradprobe.engines.numba import NumbaEngine
from gradprobe.engines.python import PythonEngine
from gradprobe.problem.params import ParamSet
from gradprobe.problem.point import prepare

from conftest import assert_unchanged, snapshot


# -- losses ---------------------------------------------------------------------
@numba.njit
def four_ranks(T, W, v, c, X):
    """A smooth loss of a 3-d, 2-d, 1-d and 0-d parameter; complex-safe."""
    total = T[0, 0, 0] * 0.0
    shift = np.sum(c)  # c is 0-d
    for n in range(X.shape[0]):
        for i in range(T.shape[0]):
            for j in range(T.shape[1]):
                a = shift
                for k in range(T.shape[2]):
                    a = a + T[i, j, k] * X[n, k]
                h = np.tanh(a)
                for k in range(W.shape[1]):
                    total = total + h * W[j, k] * v[k]
    return total * total / X.shape[0] + np.sum(v * v * v)


@numba.njit
def by_name(X, W, b):
    """Called with dict params {"b", "W"} and args (X,): f(X, W=..., b=...)."""
    total = 0.0
    for n in range(X.shape[0]):
        for j in range(W.shape[1]):
            z = b[j]
            for i in range(W.shape[0]):
                z += X[n, i] * W[i, j]
            total += np.log(1.0 + np.exp(z))
    return total


@numba.njit
def quartic(x):
    return np.sum(x * x * x * x) + x[0] * x[-1]


@numba.njit
def scaled(x, scale=3.0):
    """Its omitted default makes the kernel type ``f`` itself (uncached path)."""
    return scale * np.sum(x * x)


@numba.njit
def with_gap(X, W, scale=1.0, b=0.0):
    return scale * np.sum(W * W) + np.sum(b) * X[0]


@numba.njit
def nested_tuple(x, cfg):
    (a, b), c = cfg
    return a * np.sum(x * x) + b * np.sum(x) + c


@numba.njit
def log_loss(x):
    return np.sum(np.log(x))


@numba.njit
def raises_above(x, limit):
    if x[0] > limit[0]:
        raise ValueError("raises_above: x[0] is above the limit")
    return np.sum(x * x)


@numba.njit
def length_one_array(x):
    return np.sum(x * x) * np.ones(1)


@numba.njit
def real_only(x):
    return max(x[0], 0.0) + np.sum(x * x)


@numba.njit
def adds_its_argument(x, s):
    return np.sum(x) + s


@numba.njit
def records_threads(x, seen):
    """Same signature as raises_above, so the two share one compiled kernel."""
    seen[0] = numba.get_num_threads()
    return np.sum(x * x)


@numba.njit(parallel=True)
def parallel_quartic(x):
    total = 0.0
    for i in numba.prange(x.size):
        total += x[i] ** 4
    return total


@numba.njit
def complex_typed(x):
    return np.sum(x * x) + 0j


def python_quartic(x):
    return float(np.sum(x ** 4) + x[0] * x[-1])


# -- data -------------------------------------------------------------------------
def four_params(dtype=np.float64):
    rng = np.random.default_rng(7)
    return (rng.uniform(-1, 1, (2, 3, 2)).astype(dtype),
            rng.uniform(-1, 1, (3, 2)).astype(dtype),
            rng.uniform(0.5, 1.5, 2).astype(dtype),
            np.array(0.25, dtype=dtype))


LIMIT = np.array([0.505])
X4 = np.random.default_rng(8).uniform(-1, 1, (4, 2))


def reference_grads(f, params, args, wrong=None):
    """Richardson gradient from the Python engine, with one entry 1 % off."""
    grads = gp.numerical_gradient(f, params, args=args, method="richardson",
                                  backend="python")
    grads = [np.array(g, dtype=np.float64) for g in
             (grads.values() if isinstance(grads, dict) else grads)]
    if wrong is not None:
        param, index = wrong
        grads[param][index] *= 1.01
    if isinstance(params, dict):
        return dict(zip(params, grads))
    return type(params)(grads)


def assert_same_reports(numba_report, python_report):
    """Numerical values bit-identical; verdicts and failed entries equal."""
    assert numba_report.backend == "numba" and python_report.backend == "python"
    assert numba_report.passed == python_report.passed
    assert list(numba_report.params) == list(python_report.params)
    for name, a in numba_report.params.items():
        b = python_report.params[name]
        assert a.numeric.dtype == b.numeric.dtype
        assert a.numeric.tobytes() == b.numeric.tobytes(), name
        assert a.error_bar_flat.tobytes() == b.error_bar_flat.tobytes(), name
        assert a.failed_indices == b.failed_indices
        assert a.kinks == b.kinks
        assert (a.checked, a.failed, a.worst_index) == (b.checked, b.failed, b.worst_index)
    assert numba_report.evaluations == python_report.evaluations


def both_engines(f, params, grads, **options):
    numba_report = gp.check(f, params, grads, backend="numba", **options)
    python_report = gp.check(f, params, grads, backend="python", **options)
    assert_same_reports(numba_report, python_report)
    return numba_report


def prepared(f, params, args=(), **options):
    paramset = ParamSet.from_user(params, f)
    options = {"upcast": True, "complex_step": False, "seed": 0} | options
    return prepare(f, paramset, args, **options)


# -- choosing the engine ---------------------------------------------------------------
def test_auto_picks_numba_for_njit_and_python_otherwise():
    x = np.linspace(0.1, 1.0, 5)
    grad = 4 * x ** 3 + np.eye(5)[0] * x[-1] + np.eye(5)[-1] * x[0]
    assert gp.check(quartic, x, grad).backend == "numba"
    assert gp.check(python_quartic, x, grad).backend == "python"
    assert gp.check(quartic, x, grad, backend="python").backend == "python"
    assert isinstance(select_engine("auto", quartic, None), NumbaEngine)
    assert isinstance(select_engine("auto", python_quartic, None), PythonEngine)


def test_plain_python_f_with_backend_numba_is_a_type_error():
    x = np.linspace(0.1, 1.0, 5)
    with pytest.raises(TypeError, match="backend='numba' needs a numba.njit function"):
        gp.check(python_quartic, x, 4 * x ** 3, backend="numba")
    with pytest.raises(TypeError, match="numba.njit"):
        gp.numerical_gradient(lambda x: float(np.sum(x)), x, backend="numba")


# -- parity with the Python engine ---------------------------------------------------------
@pytest.mark.parametrize("method", ["central", "forward", "richardson", "complex"])
@pytest.mark.parametrize("mode", ["full", "sample"])
def test_four_ranks_float64_matches_python_engine(method, mode):
    params = four_params()
    grads = reference_grads(four_ranks, params, (X4,), wrong=(1, (1, 0)))
    samples = 3 if mode == "sample" else None
    report = both_engines(four_ranks, params, grads, args=(X4,), method=method, mode=mode,
                          samples=samples)
    if mode == "full":  # the 1 % error is found (sample mode may not draw it)
        assert report.params["W"].failed_indices == [(1, 0)]
        assert report.params["T"].passed and report.params["c"].passed


@pytest.mark.parametrize("upcast", [True, False])
@pytest.mark.parametrize("method", ["central", "complex"])
def test_float32_matches_python_engine(upcast, method):
    params = four_params(np.float32)
    grads = reference_grads(four_ranks, params, (X4,))
    report = both_engines(four_ranks, params, grads, args=(X4,), method=method, upcast=upcast)
    assert report.upcast == upcast
    assert report.passed


def test_list_params_and_fewer_parameters_match(unchanged):
    x = np.linspace(-1.0, 1.0, 7)
    with unchanged([x]):
        both_engines(quartic, [x], [4 * x ** 3], method="richardson")
        both_engines(quartic, x, 4 * x ** 3, mode="sample", samples=4)


def test_dict_params_are_mapped_to_positions_by_name(unchanged):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((5, 3))
    params = {"b": rng.standard_normal(2), "W": rng.standard_normal((3, 2))}  # not f's order
    grads = reference_grads(by_name, params, (X,), wrong=(0, 1))
    with unchanged(params):
        report = both_engines(by_name, params, grads, args=(X,))
    assert report.params["b"].failed_indices == [(1,)]
    assert report.params["W"].passed


def test_dict_key_after_a_default_gap_is_a_clear_error():
    X, W = np.ones(2), np.ones((2, 2))
    params = {"W": W, "b": np.array([0.5])}
    gp.check(with_gap, params, {"W": 2 * W, "b": np.array([1.0])}, args=(X,),
             backend="python")  # fine when called by keyword
    with pytest.raises(TypeError, match="'b'.*positional parameter of f"):
        gp.check(with_gap, params, {"W": 2 * W, "b": np.array([1.0])}, args=(X,),
                 backend="numba")


def test_omitted_default_argument_matches_python_engine():
    x = np.linspace(-1.0, 2.0, 9)
    both_engines(scaled, x, 6 * x)


def test_arguments_numba_cannot_pass_to_threads_run_on_one_thread():
    x = np.linspace(-1.0, 2.0, 6)
    cfg = ((1.5, 2.0), 3.0)
    report = both_engines(nested_tuple, x, 3 * x + 2.0, args=(cfg,))
    assert any("one thread" in note for note in report.notes)


def test_f_with_its_own_parallel_regions_keeps_its_threads():
    x = np.linspace(-1.0, 1.0, 64)
    report = both_engines(parallel_quartic, x, 4 * x ** 3)
    assert any("f runs Numba parallel regions itself" in note for note in report.notes)


def test_complex_typed_real_loss_matches_python_engine():
    x = np.linspace(-1.0, 1.0, 5)
    both_engines(complex_typed, x, 2 * x)


# -- the engine contract, directly ------------------------------------------------------------
def _random_points(problem, param, rng, k, m):
    flat = problem.working[param].reshape(-1)
    entries = np.sort(rng.choice(flat.size, size=min(k, flat.size), replace=False))
    noise = rng.uniform(-1e-3, 1e-3, (entries.size, m))
    points = (flat[entries][:, None] + noise).astype(flat.dtype)
    return entries.astype(np.int64), points


@pytest.mark.parametrize("complex_step", [False, True])
def test_evaluate_is_bit_identical_and_thread_count_independent(complex_step):
    problem = prepared(four_ranks, four_params(), (X4,), complex_step=complex_step)
    before = snapshot(problem.working)
    rng = np.random.default_rng(11)
    for param in range(4):
        for m in (1, 2, 4):
            entries, points = _random_points(problem, param, rng, 9, m)
            expected = PythonEngine().evaluate(problem, param, entries, points)
            one = NumbaEngine(workers=1).evaluate(problem, param, entries, points)
            two = NumbaEngine(workers=2).evaluate(problem, param, entries, points)
            assert one.dtype == expected.dtype == (np.complex128 if complex_step else np.float64)
            assert one.tobytes() == expected.tobytes()
            assert two.tobytes() == expected.tobytes()
    assert_unchanged(problem.working, before)


def test_true_0d_working_arrays_are_passed_as_0d():
    params = four_params()
    problem = prepared(four_ranks, params, (X4,))
    problem.working[3] = problem.working[3].reshape(())  # a 0-d parameter, as the user gave it
    four_ranks(*problem.working, X4)
    entries, points = np.array([0], dtype=np.int64), np.array([[0.5, 0.25, -1.0]])
    expected = PythonEngine().evaluate(problem, 3, entries, points)
    got = NumbaEngine(workers=2).evaluate(problem, 3, entries, points)
    assert got.tobytes() == expected.tobytes()
    assert problem.working[3].shape == () and problem.working[3] == params[3]


def test_empty_selection_returns_empty_losses():
    problem = prepared(quartic, np.linspace(0.0, 1.0, 4))
    out = NumbaEngine().evaluate(problem, 0, np.zeros(0, np.int64), np.zeros((0, 2)))
    assert out.shape == (0, 2) and out.dtype == np.float64


def test_new_shapes_do_not_recompile():
    x = np.linspace(0.5, 1.0, 3)
    gp.check(quartic, x, 4 * x ** 3 + np.array([x[-1], 0, x[0]]))
    kernels = {key: len(k.signatures) for key, k in numba_kernel._KERNELS.items()}
    loss_signatures = len(quartic.signatures)
    for n in (5, 17, 40):
        y = np.linspace(0.5, 1.0, n)
        grad = 4 * y ** 3
        grad[0] += y[-1]
        grad[-1] += y[0]
        assert gp.check(quartic, y, grad).passed
        assert gp.check(quartic, y.reshape(-1), grad).passed
    assert {key: len(k.signatures) for key, k in numba_kernel._KERNELS.items()} == kernels
    assert len(quartic.signatures) == loss_signatures


# -- threads --------------------------------------------------------------------------
def test_workers_sets_the_thread_count_and_restores_it():
    x = np.linspace(0.1, 1.0, 20)
    seen = np.zeros(1)
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        for workers in (1, 2):
            gp.check(records_threads, x, 2 * x, args=(seen,), workers=workers)
            assert seen[0] == min(workers, numba.config.NUMBA_NUM_THREADS)
            assert numba.get_num_threads() == 1
        gp.check(records_threads, x, 2 * x, args=(seen,))  # None: the current count
        assert seen[0] == 1
    finally:
        numba.set_num_threads(previous)


def test_workers_restored_when_f_raises():
    x = np.array([0.5, 0.2, 0.1])
    previous = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        with pytest.raises(ValueError, match="raises_above: x\\[0\\] is above the limit"):
            gp.check(raises_above, x, 2 * x, args=(LIMIT,), eps=0.01, workers=2)
        assert numba.get_num_threads() == 1
    finally:
        numba.set_num_threads(previous)


def test_too_many_workers_are_clamped_with_a_note():
    x = np.linspace(0.5, 1.0, 4)
    grad = 4 * x ** 3
    grad[0] += x[-1]
    grad[-1] += x[0]
    workers = numba.config.NUMBA_NUM_THREADS + 3
    report = gp.check(quartic, x, grad, workers=workers)
    assert report.passed
    assert any(f"workers={workers} clamped" in note and "NUMBA_NUM_THREADS" in note
               for note in report.notes)


# -- errors ------------------------------------------------------------------------------
def test_exception_raised_by_f_in_the_kernel_propagates_unchanged(unchanged):
    x = np.array([0.5, 0.2, 0.1])
    with unchanged(x):
        with pytest.raises(ValueError, match="raises_above: x\\[0\\] is above the limit"):
            gp.check(raises_above, x, 2 * x, args=(LIMIT,), eps=0.01, backend="numba")


def _counted_launches(engine, problem, stop=None):
    """Count the engine's kernel launches (rows of each); KeyboardInterrupt after ``stop``."""
    plan = engine._plan_for(problem)
    kernel, rows = plan.kernel, []

    def launch(f, slot, entries, *rest):
        rows.append(entries.size)
        kernel(f, slot, entries, *rest)
        if stop is not None and len(rows) == stop:
            raise KeyboardInterrupt  # as if Ctrl-C arrived during this launch

    plan.kernel = launch
    return rows


def test_launches_are_sized_by_the_loss_time_and_stay_bit_identical(monkeypatch):
    x = np.linspace(0.1, 0.4, 23)
    problem = prepared(raises_above, x, (np.array([10.0]),))
    entries = np.arange(x.size, dtype=np.int64)
    points = x[:, None] + np.array([1e-3, -1e-3])
    expected = PythonEngine().evaluate(problem, 0, entries, points)
    engine = NumbaEngine(workers=2)
    rows = _counted_launches(engine, problem)
    # 0.5 s x 2 threads / (2 points x 0.1 s): 5 entries a launch
    monkeypatch.setattr(config, "ENGINE_CALL_SECONDS", 0.5)
    monkeypatch.setattr(problem, "loss_seconds", 0.1)
    got = engine.evaluate(problem, 0, entries, points)
    assert rows == [5, 5, 5, 5, 3]
    assert got.tobytes() == expected.tobytes()


def test_f_raising_in_a_later_launch_is_reraised_at_its_entry(monkeypatch):
    x = np.linspace(0.1, 0.4, 12)
    problem = prepared(raises_above, x, (LIMIT,))
    entries = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 0, 10, 11], dtype=np.int64)
    points = x[entries][:, None] + np.array([1e-3, -1e-3])
    points[9, 1] = 0.6  # row 9 (third launch) moves x[0] above the limit
    engine = NumbaEngine(workers=2)
    rows = _counted_launches(engine, problem)
    monkeypatch.setattr(config, "ENGINE_CALL_SECONDS", 0.5)
    monkeypatch.setattr(problem, "loss_seconds", 0.125)  # 4 entries a launch
    with pytest.raises(ValueError, match="raises_above: x\\[0\\] is above the limit"):
        engine.evaluate(problem, 0, entries, points)
    assert rows == [4, 4, 4]


def test_ctrl_c_between_launches_leaves_the_working_copies_unchanged(monkeypatch):
    x = np.linspace(0.1, 0.4, 12)
    problem = prepared(raises_above, x, (np.array([10.0]),))
    before = snapshot(problem.working)
    engine = NumbaEngine(workers=2)
    rows = _counted_launches(engine, problem, stop=2)
    monkeypatch.setattr(config, "ENGINE_CALL_SECONDS", 0.5)
    monkeypatch.setattr(problem, "loss_seconds", 0.125)
    with pytest.raises(KeyboardInterrupt):
        engine.evaluate(problem, 0, np.arange(12, dtype=np.int64),
                        x[:, None] + np.array([1e-3, -1e-3]))
    assert rows == [4, 4]
    assert_unchanged(problem.working, before)


def test_non_finite_loss_names_the_parameter_and_entry(unchanged):
    x = np.array([1.0, 0.005, 2.0])
    with unchanged(x):
        with pytest.raises(ValueError, match=r"f returned nan with x\[1\] = "):
            gp.check(log_loss, x, 1 / x, eps=0.01, backend="numba")


@numba.njit
def size_one_2d(x):
    out = np.zeros((1, 1))
    out[0, 0] = np.sum(x * x)
    return out


@numba.njit
def several_entries(x):
    return x * x


@numba.njit
def least_squares_matmul(W, X, y):
    r = X @ W - y
    return 0.5 * np.dot(r, r)


def test_njit_loss_with_matmul_and_dot_runs_from_the_readme_install():
    """Issue 14: the first njit loss most people write uses ``@``; Numba's linear
    algebra needs SciPy, which the install now brings (pyproject dependencies)."""
    rng = np.random.default_rng(4)
    X, y, W = rng.normal(size=(8, 3)), rng.normal(size=8), rng.normal(size=3)
    grad = X.T @ (X @ W - y)
    report = gp.check(least_squares_matmul, W, grad, args=(X, y))
    assert report.backend == "numba" and report.passed, str(report)
    grad[0] *= 1.01
    report = gp.check(least_squares_matmul, W, grad, args=(X, y))
    assert report.params["W"].failed_indices == [(0,)]


@pytest.mark.parametrize("f", [length_one_array, size_one_2d])
def test_size_one_array_loss_is_a_scalar_loss_on_both_engines(f, unchanged):
    """Issue 14: one rule (params.loss_value) on every engine: a size-1 array is
    the loss, as NumPy users expect; the Numba engine used to refuse it."""
    x = np.linspace(0.1, 1.0, 4)
    wrong = 2 * x
    wrong[2] *= 1.01
    with unchanged(x):
        assert both_engines(f, x, 2 * x).passed
        assert both_engines(f, x, wrong).params["x"].failed_indices == [(2,)]


@pytest.mark.parametrize("backend", ["numba", "python"])
def test_array_of_several_entries_is_rejected_naming_its_shape(backend):
    x = np.linspace(0.1, 1.0, 4)
    with pytest.raises(ValueError, match=r"f returned an array of shape \(4,\) at the "
                                         "unperturbed point.*scalar loss"):
        gp.check(several_entries, x, 2 * x, backend=backend)


def test_f_that_cannot_take_complex_input_is_a_type_error_naming_the_parameter(unchanged):
    x = np.linspace(0.1, 1.0, 4)
    with unchanged(x):
        with pytest.raises(TypeError, match="complex 'x'"):
            gp.check(real_only, x, 2 * x + np.eye(4)[0], method="complex", backend="numba")


def test_f_that_cannot_compile_for_real_arguments_is_a_type_error_naming_the_parameter():
    with pytest.raises(TypeError, match=r"does not compile for the parameters \(x: float64"):
        gp.check(adds_its_argument, np.ones(3), np.ones(3), args=("text",), backend="numba")


def test_float16_parameters_run_upcast_on_the_numba_engine():
    x = np.linspace(-1, 1, 4).astype(np.float16)
    x = x + np.float16(2)
    report = gp.check(log_loss, x, 1 / x.astype(np.float64), backend="numba")
    assert report.passed and report.upcast
    assert any("NotImplementedError" in n for n in report.notes)


def test_info_reports_the_numba_engine():
    state = gp.info()["engines"]["numba"]
    assert state.startswith("available")
    assert numba.__version__ in state
    assert f"{numba.config.NUMBA_NUM_THREADS} threads" in state
