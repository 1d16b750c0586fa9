"""The engine contract, checked on every engine (``gradprobe.engines.base.Engine``).

One suite, parametrized over :data:`ENGINE_CASES`, one entry per engine of
:data:`gradprobe.engines.select.ENGINES` (a test fails if an engine has no
entry). Every engine must:

* return the Python engine's losses bit for bit (``evaluate`` and
  ``evaluate_directions``, real and complex steps where the engine takes them);
* count every evaluation in ``problem.evaluations`` (and call ``f`` that often);
* leave the working copies and the user's arrays as they were, bit for bit,
  when ``f`` raises and on Ctrl-C.

Ctrl-C is a real SIGINT: the loss itself raises it (C ``raise``, callable from
``numba.njit`` code and from a C loss) at exactly one point, so it arrives
wherever that point is evaluated (a pool thread, a Numba or C thread, a Dask
worker thread) and Python sees it as it would see the user's Ctrl-C.

The losses of the Python, Numba and Dask engines are one ``numba.njit``
function (the Python engine calls it through its dispatcher); the C engine
runs the same arithmetic written in C (compiled here; skipped without a
compiler or without the C kernel), compared with the Python engine calling
that same C function.
"""
from __future__ import annotations

import ctypes
import dataclasses
import logging
import signal
import subprocess
from typing import Any, Callable

import numba
import numpy as np
import pytest

import gradprobe as gp
from gradprobe import config
from gradprobe.engines import base, ckernel, select
from gradprobe.engines.base import Engine
from gradprobe.engines.python import PythonEngine
from gradprobe.problem.params import ParamSet
from gradprobe.problem.point import prepare

from c_harness import CC, HAVE_CC
from conftest import assert_unchanged, snapshot

# -- the losses ---------------------------------------------------------------------------
_libc = ctypes.CDLL(None)
c_raise = _libc["raise"]
c_raise.argtypes = [ctypes.c_int]
c_raise.restype = ctypes.c_int
SIGINT = int(signal.SIGINT)

#: ctl (the last argument): [calls, flat index into (W, v), value that raises SIGINT there,
#: value that raises ValueError there, value that makes a layer's output NaN there]
CALLS, INDEX, SIGINT_AT, RAISE_AT, NAN_AT = range(5)


@numba.njit
def njit_loss(W, v, ctl):
    """sum_i (i + 1) sin(theta_i) theta_i + theta_0 theta_{n-1}, theta = (W, v); complex-safe."""
    ctl[CALLS] += 1.0  # counted exactly on one thread
    i = int(ctl[INDEX])
    watched = W.ravel()[i] if i < W.size else v[i - W.size]
    if watched == ctl[SIGINT_AT]:
        c_raise(SIGINT)
    if watched == ctl[RAISE_AT]:
        raise ValueError("njit_loss: the watched entry took the raising value")
    s = W.ravel()[0] * v[v.size - 1]
    k = 1.0
    for x in W.ravel():
        s += k * np.sin(x) * x
        k += 1.0
    for x in v:
        s += k * np.sin(x) * x
        k += 1.0
    return s


@numba.njit
def njit_layer(W, v, ctl):
    """An array-valued function of (W, v) (a "layer"); complex-safe; watched like njit_loss."""
    i = int(ctl[INDEX])
    watched = W.ravel()[i] if i < W.size else v[i - W.size]
    if watched == ctl[SIGINT_AT]:
        c_raise(SIGINT)
    if watched == ctl[RAISE_AT]:
        raise ValueError("njit_layer: the watched entry took the raising value")
    out = np.empty((W.shape[0], v.size), dtype=W.dtype)
    for r in range(W.shape[0]):
        for c in range(v.size):
            out[r, c] = np.sin(W[r, c % W.shape[1]]) * v[c] + W[r, 0] * v[0]
    if watched == ctl[NAN_AT]:
        out[1, 2] = np.nan
    return out


C_LOSS = r"""
#include <math.h>
#include <signal.h>
#include <stddef.h>

typedef struct { long calls; long index; double sigint_at; } ctl_t;

/* The arithmetic of njit_loss, in the same order. */
double c_loss(const double *theta, size_t n, void *ctx)
{
    ctl_t *ctl = (ctl_t *)ctx;
    double s = theta[0] * theta[n - 1], k = 1.0;
    __atomic_fetch_add(&ctl->calls, 1, __ATOMIC_RELAXED);
    if (theta[ctl->index] == ctl->sigint_at)
        raise(SIGINT);
    for (size_t i = 0; i < n; ++i, k += 1.0)
        s += k * sin(theta[i]) * theta[i];
    return s;
}
"""
C_DEF = """
typedef struct { long calls; long index; double sigint_at; } ctl_t;
double c_loss(const double *theta, size_t n, void *ctx);
"""


def point(dtype=np.float64):
    rng = np.random.default_rng(3)
    return [rng.uniform(-1.0, 1.0, (3, 4)).astype(dtype), rng.uniform(-1.0, 1.0, 5).astype(dtype)]


def gradient(params):
    theta = np.concatenate([p.ravel().astype(np.float64) for p in params])
    k = np.arange(1, theta.size + 1)
    g = k * (np.sin(theta) + theta * np.cos(theta))
    g[0] += theta[-1]
    g[-1] += theta[0]
    return [g[:12].reshape(3, 4), g[12:]]


# -- one entry per engine -------------------------------------------------------------------
@dataclasses.dataclass
class Case:
    """How the suite runs one engine."""

    name: str
    make: Callable[[int], Engine]        # workers -> engine
    loss: Callable[[], tuple[Any, Any]]  # -> (f, control): a fresh loss and its ctl
    complex_step: bool = True            # the engine takes the complex step
    raises: bool = True                  # f can raise an exception (a C loss cannot)
    options: dict = dataclasses.field(default_factory=dict)  # for gp.check

    def problem(self, complex_step: bool = False, dtype=np.float64):
        f, ctl = self.loss()
        params = point(dtype)
        problem = prepare(f, ParamSet.from_user(params, f), (ctl,), upcast=True,
                          complex_step=complex_step, seed=0)
        return problem, ctl, params

    def set(self, ctl, field: str, value: float) -> None:
        if isinstance(ctl, np.ndarray):
            ctl[{"calls": CALLS, "index": INDEX, "sigint_at": SIGINT_AT,
                 "raise_at": RAISE_AT}[field]] = value
        else:
            setattr(ctl, field, type(getattr(ctl, field))(value))

    def calls(self, ctl) -> int:
        return int(ctl[CALLS]) if isinstance(ctl, np.ndarray) else int(ctl.calls)


def njit_control():
    return njit_loss, np.array([0.0, 0.0, np.inf, np.inf, np.inf])


def python_case(request):
    return Case("python", lambda workers: PythonEngine(workers=workers), njit_control,
                options={"backend": "python"})


def numba_case(request):
    from gradprobe.engines.numba import NumbaEngine

    return Case("numba", lambda workers: NumbaEngine(workers=workers), njit_control,
                options={"backend": "numba"})


def cffi_case(request):
    if not ckernel.available():
        pytest.skip(f"C kernel {ckernel.status()}")
    from gradprobe.engines.cffi import CffiEngine, as_loss

    ffi, lib = request.getfixturevalue("c_library")

    def loss():
        ctl = ffi.new("ctl_t *", {"calls": 0, "index": 0, "sigint_at": float("inf")})
        return as_loss(lib.c_loss, (ctl,)), ctl

    return Case("cffi", lambda workers: CffiEngine(workers=workers), loss,
                complex_step=False, raises=False, options={"backend": "cffi"})


def dask_case(request):
    pytest.importorskip("distributed")
    from gradprobe.engines.dask import DaskEngine
    from gradprobe.engines.numba import NumbaEngine

    client = request.getfixturevalue("dask_client")
    return Case("dask", lambda workers: DaskEngine(client=client, local=NumbaEngine),
                njit_control, options={"backend": "dask", "client": client})


#: One entry per engine: adding an engine adds its entry here.
ENGINE_CASES = {"python": python_case, "numba": numba_case, "cffi": cffi_case,
                "dask": dask_case}


@pytest.fixture(scope="module")
def c_library(tmp_path_factory):
    """(ffi, lib) of C_LOSS, compiled and dlopen-ed."""
    cffi = pytest.importorskip("cffi")
    if not HAVE_CC:
        pytest.skip(f"no C compiler ({CC})")
    folder = tmp_path_factory.mktemp("contract")
    (folder / "loss.c").write_text(C_LOSS)
    done = subprocess.run([CC, "-O2", "-shared", "-fPIC", str(folder / "loss.c"), "-o",
                           str(folder / "libloss.so"), "-lm"], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot compile a shared library: {done.stderr.strip()}")
    ffi = cffi.FFI()
    ffi.cdef(C_DEF)
    return ffi, ffi.dlopen(str(folder / "libloss.so"))


@pytest.fixture(scope="module")
def dask_client():
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
                                  dashboard_address="127.0.0.1:0",
                                  silence_logs=logging.ERROR) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture(params=list(ENGINE_CASES))
def case(request):
    return ENGINE_CASES[request.param](request)


@pytest.fixture
def engine(case):
    with case.make(2) as made:
        yield made


def random_points(problem, param, rng, k, m):
    flat = problem.working[param].reshape(-1)
    entries = rng.integers(0, flat.size, size=k).astype(np.int64)  # repeats too
    points = (flat[entries][:, None] + rng.uniform(-1e-3, 1e-3, (k, m))).astype(flat.dtype)
    return entries, points


# -- the registry and the base class -----------------------------------------------------
def test_every_registered_engine_has_a_case_and_a_backend_name():
    assert {cls.name for cls in select.ENGINES} == set(ENGINE_CASES)
    assert set(config.BACKENDS) == {"auto"} | set(ENGINE_CASES)  # what backend= accepts
    assert select.ENGINES[-1] is PythonEngine  # auto's catch-all comes last
    assert [cls.name for cls in select.ENGINES] == list(config.ENGINES)  # auto's order


def test_a_registry_name_without_its_engine_is_a_clear_error():
    with pytest.raises(ImportError, match="config.ENGINES names 'base', but "
                                          "gradprobe.engines.base defines 0 Engine"):
        select._load("base")


def test_only_engines_that_run_groups_get_compressed_layer_checks():
    assert {cls.name for cls in select.ENGINES if not cls.runs_groups} == {"cffi"}
    from gradprobe.checks.grouped import why_not_grouped
    from gradprobe.options import CheckOptions

    assert why_not_grouped(CheckOptions(backend="cffi")) == \
        "backend='cffi' evaluates the entries"
    assert why_not_grouped(CheckOptions(backend="numba")) is None


def test_the_base_class_names_what_an_engine_must_provide():
    with pytest.raises(TypeError, match="abstract"):
        Engine()  # evaluate is abstract
    with pytest.raises(TypeError, match="must set the class attribute name"):
        type("Nameless", (Engine,), {"evaluate": lambda self, *a: None})


# -- bit for bit the Python engine's losses ----------------------------------------------
@pytest.mark.parametrize("complex_step", [False, True])
def test_losses_are_the_python_engines_bit_for_bit(case, engine, complex_step):
    if complex_step and not case.complex_step:
        pytest.skip(f"{case.name} does not take the complex step")
    problem, ctl, params = case.problem(complex_step=complex_step)
    before, user = snapshot(problem.working), snapshot(params)
    rng = np.random.default_rng(5)
    for param in range(2):
        for m in (1, 2, 4):
            entries, points = random_points(problem, param, rng, 9, m)
            want = PythonEngine().evaluate(problem, param, entries, points)
            got = engine.evaluate(problem, param, entries, points)
            assert got.dtype == want.dtype and got.shape == (9, m)
            assert got.tobytes() == want.tobytes(), (param, m)
    empty = engine.evaluate(problem, 0, np.zeros(0, np.int64), np.zeros((0, 2)))
    assert empty.shape == (0, 2)
    assert_unchanged(problem.working, before)
    assert_unchanged(params, user)


def test_float32_working_copies_give_the_python_engines_losses(case, engine):
    problem, ctl, params = case.problem(dtype=np.float32)  # upcast: float64 working copies
    entries, points = random_points(problem, 1, np.random.default_rng(6), 5, 2)
    want = PythonEngine().evaluate(problem, 1, entries, points)
    assert engine.evaluate(problem, 1, entries, points).tobytes() == want.tobytes()


@pytest.mark.parametrize("complex_step", [False, True])
def test_directions_are_the_reference_loops_bit_for_bit(case, engine, complex_step):
    if complex_step and not case.complex_step:
        pytest.skip(f"{case.name} does not take the complex step")
    problem, ctl, params = case.problem(complex_step=complex_step)
    before = snapshot(problem.working)
    rng = np.random.default_rng(7)
    directions = [[rng.standard_normal(12), None], [None, rng.standard_normal(5)],
                  [rng.standard_normal(12), rng.standard_normal(5)]]
    steps = np.array([1e-3, -1e-3, 2e-3]) * (1j if complex_step else 1)
    want = base.evaluate_directions(problem, directions, steps)
    spent = problem.evaluations
    got = engine.evaluate_directions(problem, directions, steps)
    assert got.dtype == want.dtype and got.tobytes() == want.tobytes()
    assert problem.evaluations - spent == 9
    assert_unchanged(problem.working, before)


def test_a_check_gives_the_python_engines_report(case):
    params = dict(zip("Wv", point()))
    grads = dict(zip("Wv", gradient(list(params.values()))))
    grads["W"][1, 2] *= 1.01  # one wrong entry, named on every engine
    reports = {}
    for name, options in (("python", {"backend": "python"}), (case.name, case.options)):
        f, ctl = case.loss()
        reports[name] = gp.check(f, params, grads, args=(ctl,), workers=None, **options)
    got, want = reports[case.name], reports["python"]
    assert got.backend == case.name and got.passed is want.passed is False
    assert got.evaluations == want.evaluations
    for name, p in want.params.items():
        q = got.params[name]
        assert q.numeric_flat.tobytes() == p.numeric_flat.tobytes(), name
        assert q.error_bar_flat.tobytes() == p.error_bar_flat.tobytes(), name
        assert q.failed_indices == p.failed_indices
    assert got.params["W"].failed_indices == [(1, 2)]


# -- evaluations counted ------------------------------------------------------------------
def test_every_evaluation_is_counted(case):
    problem, ctl, params = case.problem()
    rng = np.random.default_rng(8)
    with case.make(1) as engine:
        for param, m in ((0, 2), (1, 4), (0, 1)):
            entries, points = random_points(problem, param, rng, 7, m)
            spent = problem.evaluations
            case.set(ctl, "calls", 0)
            engine.evaluate(problem, param, entries, points)
            assert problem.evaluations - spent == 7 * m
            if case.name != "dask":  # the workers call copies of ctl
                assert case.calls(ctl) == 7 * m


# -- the arrays are left as they were ---------------------------------------------------------
@pytest.mark.parametrize("workers", [1, 2])
def test_f_raising_leaves_the_working_copies_and_the_users_arrays_unchanged(case, workers):
    if not case.raises:
        pytest.skip(f"a {case.name} loss cannot raise")
    problem, ctl, params = case.problem()
    before, user = snapshot(problem.working), snapshot(params)
    entries = np.arange(12, dtype=np.int64)
    points = problem.working[0].reshape(-1)[:, None] + np.array([1e-3, -1e-3])
    case.set(ctl, "index", 7)
    case.set(ctl, "raise_at", points[7, 1])
    with case.make(workers) as engine, \
            pytest.raises(ValueError, match="the watched entry took the raising value"):
        engine.evaluate(problem, 0, entries, points)
    assert_unchanged(problem.working, before)
    assert_unchanged(params, user)


@pytest.mark.parametrize("workers", [1, 2])
def test_ctrl_c_leaves_the_working_copies_and_the_users_arrays_unchanged(case, workers,
                                                                         monkeypatch):
    problem, ctl, params = case.problem()
    before, user = snapshot(problem.working), snapshot(params)
    # a slow loss: compiled engines return to Python every few entries
    monkeypatch.setattr(config, "ENGINE_CALL_SECONDS", 0.5)
    monkeypatch.setattr(problem, "loss_seconds", 0.05)
    entries = np.arange(5, dtype=np.int64)
    param = 1
    points = problem.working[param].reshape(-1)[:, None] + np.array([1e-3, -1e-3])
    case.set(ctl, "index", 12 + 2)  # v[2], in the concatenation (W, v)
    case.set(ctl, "sigint_at", points[2, 0])  # exactly one point raises SIGINT
    engine = case.make(workers)
    try:
        with pytest.raises(KeyboardInterrupt):
            engine.evaluate(problem, param, entries, points)
            for _ in range(100):  # a signal raised on another thread arrives here at the latest
                engine.evaluate(problem, param, entries[:0], points[:0])
        assert_unchanged(problem.working, before)
        assert_unchanged(params, user)
        # and the engine still works (a Dask worker's copy of ctl still watches points[2, 0])
        points = points + 1e-4
        assert engine.evaluate(problem, param, entries, points).tobytes() == \
            PythonEngine().evaluate(problem, param, entries, points).tobytes()
    finally:
        engine.close()


# -- array-valued functions at perturbation groups (compressed Jacobians) ----------------
@pytest.fixture
def layer_engine(case, monkeypatch):
    """The engine, with the Numba engine's kernel for array-valued functions compiled at once."""
    monkeypatch.setattr(config, "NUMBA_OUTPUTS_PAYOFF_SECONDS", 0.0)
    with case.make(2) as made:
        yield made


def prepared_layer(complex_step=False):
    from gradprobe.differences.vector import VectorFunction

    params, ctl = point(), np.array([0.0, 0.0, np.inf, np.inf, np.inf])
    vf = VectorFunction.prepare(njit_layer, ParamSet.from_user(params, njit_layer), (ctl,),
                                upcast=True, complex_step=complex_step, seed=0)
    return vf, ctl, params


def groups(vf, param, rng, count, scale=1e-3):
    """Random groups of entries of one input and their displaced values (two points each)."""
    flat = vf.working[param].reshape(-1)
    members, values = [], []
    for _ in range(count):
        chosen = np.sort(rng.choice(flat.size, size=rng.integers(1, flat.size + 1),
                                    replace=False)).astype(np.int64)
        for s in (scale, -scale):
            members.append(chosen)
            values.append((flat[chosen] + s * rng.uniform(0.5, 1.5, chosen.size))
                          .astype(flat.dtype))
    return members, values, [f"at point {i}" for i in range(len(members))]


@pytest.mark.parametrize("complex_step", [False, True])
def test_outputs_at_groups_are_the_reference_loops_bit_for_bit(case, layer_engine,
                                                               complex_step):
    vf, ctl, params = prepared_layer(complex_step)
    before, user = snapshot(vf.working), snapshot(params)
    rng = np.random.default_rng(9)
    for param in range(2):
        members, values, contexts = groups(vf, param, rng, 5)
        if complex_step:
            values = [v + 1e-3j for v in values]
        want = base.evaluate_outputs(vf, param, members, values, contexts)
        spent = vf.evaluations
        got = layer_engine.evaluate_outputs(vf, param, members, values, contexts)
        assert got.dtype == want.dtype and got.shape == (10, vf.size)
        assert got.tobytes() == want.tobytes(), param
        assert vf.evaluations - spent == 10
    if case.name == "numba":  # the njit layer ran in the engine's kernel, not in the loop
        from gradprobe.engines import numba_outputs

        assert layer_engine._outputs_plan(vf) is not None
        assert any(len(k.overloads) for k in numba_outputs._KERNELS.values())
    assert_unchanged(vf.working, before)
    assert_unchanged(params, user)


@pytest.mark.parametrize("what, match", [("raise_at", "the watched entry took the raising"),
                                         ("nan_at", "returned nan in output")])
def test_a_failing_point_of_a_group_is_named_as_the_reference_loop_names_it(
        case, layer_engine, what, match):
    vf, ctl, params = prepared_layer()
    before, user = snapshot(vf.working), snapshot(params)
    members, values, contexts = groups(vf, 0, np.random.default_rng(10), 4)
    point_index = 5
    watched = int(members[point_index][0])
    ctl[INDEX] = watched
    ctl[{"raise_at": RAISE_AT, "nan_at": NAN_AT}[what]] = values[point_index][0]
    for i, m in enumerate(members):  # no other point gives the watched entry that value
        if i != point_index and watched in m:
            values[i][np.searchsorted(m, watched)] += 1e-4
    messages = []
    for engine in (PythonEngine(), layer_engine):
        with pytest.raises(ValueError, match=match) as info:
            engine.evaluate_outputs(vf, 0, members, values, contexts)
        messages.append(str(info.value))
        assert_unchanged(vf.working, before)
    assert messages[1] == messages[0]
    if what == "nan_at":
        assert "at point 5" in messages[0]
    assert_unchanged(params, user)


def test_ctrl_c_at_a_group_leaves_the_working_copies_unchanged(case, layer_engine):
    vf, ctl, params = prepared_layer()
    before, user = snapshot(vf.working), snapshot(params)
    members, values, contexts = groups(vf, 1, np.random.default_rng(11), 3)
    watched = int(members[2][0])
    ctl[INDEX] = 12 + watched
    ctl[SIGINT_AT] = values[2][0]
    for i, m in enumerate(members):
        if i != 2 and watched in m:
            values[i][np.searchsorted(m, watched)] += 1e-4
    with pytest.raises(KeyboardInterrupt):
        layer_engine.evaluate_outputs(vf, 1, members, values, contexts)
        for _ in range(100):  # a signal raised on another thread arrives here at the latest
            layer_engine.evaluate_outputs(vf, 1, members[:0], values[:0], contexts[:0])
    assert_unchanged(vf.working, before)
    assert_unchanged(params, user)


@numba.njit
def dense_tanh(X, W, b):
    return np.tanh(X @ W + b)


def dense_tanh_vjp(u, X, W, b):
    d = u * (1 - np.tanh(X @ W + b) ** 2)
    return d @ W.T, X.T @ d, d.sum(0)


def test_a_compressed_layer_check_gives_the_python_engines_report(case):
    """check_vjp's groups run on the engine (backend="auto": the Numba engine for an
    njit layer); the verdicts and every number are the Python engine's."""
    if case.name == "cffi":
        pytest.skip("a C loss is scalar: layers do not run on the C engine")
    options = {"backend": "auto"} if case.name == "numba" else case.options
    rng = np.random.default_rng(12)
    inputs = (rng.standard_normal((8, 12)), rng.standard_normal((12, 10)),
              rng.standard_normal(10))

    def planted(u, X, W, b):
        dX, dW, db = dense_tanh_vjp(u, X, W, b)
        dW[3, 4] *= 1.01
        return dX, dW, db

    want = gp.check_vjp(dense_tanh, inputs, planted, backend="python")
    got = gp.check_vjp(dense_tanh, inputs, planted, **options)
    assert got.passed is want.passed is False and got.evaluations == want.evaluations
    assert got.params["W"].strategy.startswith("compressed")
    for name, p in want.params.items():
        q = got.params[name]
        assert q.strategy == p.strategy
        assert q.numeric_flat.tobytes() == p.numeric_flat.tobytes(), name
        assert q.error_bar_flat.tobytes() == p.error_bar_flat.tobytes(), name
        assert q.failed_indices == p.failed_indices
    assert got.params["W"].failed_indices == [(3, 4)]
    if case.name == "dask":
        assert any("backend='dask'" in note for note in got.notes)


def test_the_progress_bar_wrapper_hands_every_engine_method_to_the_engine():
    """A method added to the contract must be passed on by the wrapper, not defaulted."""
    import inspect

    from gradprobe.report.progress import ProgressEngine

    methods = {name for name, value in vars(Engine).items()
               if inspect.isfunction(value) and not name.startswith("_")}
    assert methods <= set(vars(ProgressEngine)), methods - set(vars(ProgressEngine))
    calls = []

    class Recording(PythonEngine):
        def __getattribute__(self, name):
            if name in methods:
                calls.append(name)
            return super().__getattribute__(name)

    class Bar:
        total, n = None, 0

        def update(self, k):
            self.n += k

    wrapped = ProgressEngine(Recording(), Bar())
    vf, ctl, params = prepared_layer()
    problem, _, _ = python_case(None).problem()
    wrapped.evaluate(problem, 0, np.array([1]), np.array([[0.5]]))
    wrapped.evaluate_directions(problem, [[None, None]], np.array([1.0]))
    wrapped.evaluate_outputs(vf, 0, [np.array([0])], [np.array([0.5])], ["here"])
    wrapped.progress_chunk(10)
    wrapped.close()
    assert methods <= set(calls), methods - set(calls)


def test_threads_of_the_python_engine_stop_once_another_thread_raises():
    """When f raises in one thread, the others stop at their next entry.

    Without the stop signal the pool's shutdown waits for every other chunk to
    run to its end: f keeps being called for a check that has already failed
    (and a second Ctrl-C during that wait would leave those threads running).
    """
    import threading
    import time as _time

    calls = {"after": 0}
    per_thread: dict[str, int] = {}
    failed = threading.Event()
    n = 400

    def loss(w):
        name = threading.current_thread().name
        per_thread[name] = per_thread.get(name, 0) + 1
        if failed.is_set():
            calls["after"] += 1
        elif w[150] != 0.5 and per_thread[name] > 100:  # entry 150, in the first chunk
            failed.set()
            raise RuntimeError("boom")
        _time.sleep(1e-4)
        return float(np.sum(w * w))

    w = np.full(n, 0.5)
    with pytest.raises(RuntimeError, match="boom"):
        gp.check(loss, w, 2 * w, backend="python", workers=2, progress=False)
    print(f"calls of f after the failure: {calls['after']} (about 100 without the stop)")
    assert calls["after"] <= 4, calls
    assert np.array_equal(w, np.full(n, 0.5))
