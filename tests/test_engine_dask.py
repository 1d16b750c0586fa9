"""The Dask engine against the Python engine (the reference), bit for bit.

Two module-scoped clusters serve every test: two single-threaded worker
processes (what ``backend="dask"`` starts by itself) and one in-process
worker with two threads (tasks then share one copy of the scattered problem).
``config.DASK_MIN_TASK_SECONDS`` is set to 0 so that even these cheap losses
are split into several tasks per call, and results are merged from many.
"""
from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
import threading
import time

import numba
import numpy as np
import pytest

distributed = pytest.importorskip("distributed")

import gradprobe as gp  # noqa: E402
from gradprobe import config  # noqa: E402
from gradprobe.engines import select_engine  # noqa: E402
from gradprobe.engines.dask import DaskEngine, task_bounds  # noqa: E402
from gradprobe.problem.params import ParamSet  # noqa: E402
from gradprobe.problem.point import prepare  # noqa: E402
from gradprobe.report.progress import ProgressEngine  # noqa: E402

from conftest import assert_unchanged, snapshot  # noqa: E402


# -- clusters -------------------------------------------------------------------------
def _cluster(**options):
    return distributed.LocalCluster(dashboard_address="127.0.0.1:0",
                                    silence_logs=logging.ERROR, **options)


@pytest.fixture(scope="module")
def process_client():
    with _cluster(n_workers=2, threads_per_worker=1, processes=True) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture(scope="module")
def thread_client():
    with _cluster(n_workers=1, threads_per_worker=2, processes=False) as cluster, \
            distributed.Client(cluster, set_as_default=False) as client:
        yield client


@pytest.fixture(params=["processes", "threads"])
def client(request):
    return request.getfixturevalue("process_client" if request.param == "processes"
                                   else "thread_client")


@pytest.fixture(autouse=True)
def many_tasks(monkeypatch):
    """Split every call into several tasks, however cheap the loss."""
    monkeypatch.setattr(config, "DASK_MIN_TASK_SECONDS", 0.0)


# -- losses -----------------------------------------------------------------------------
def mlp_loss(W, b, X, y):
    """Two parameters and two args; ``abs`` puts a kink at the zero entry of b."""
    return float(np.sum((np.tanh(X @ W + b) - y) ** 2) + np.sum(np.abs(b)))


def mlp_grads(W, b, X, y):
    t = np.tanh(X @ W + b)
    dz = 2 * (t - y) * (1 - t ** 2)
    return X.T @ dz, dz.sum(0) + np.where(b >= 0, 1.0, -1.0)  # right derivative at 0


def dict_loss(X, *, scale, shift):
    return float(np.sum(np.sin(X * scale + shift)))


def dict_grads(X, *, scale, shift):
    c = np.cos(X * scale + shift)
    return {"scale": np.sum(c * X, axis=0), "shift": np.sum(c, axis=0)}


def cube(w):
    return np.sum(w ** 3)


def slow_cube(w):
    """``cube`` taking 5 ms, so that a progress bar redraws while a check runs."""
    time.sleep(5e-3)
    return np.sum(w ** 3)


@numba.njit
def njit_quartic(x, c):
    return np.sum(x * x * x * x) + c * x[0] * x[-1]


def mlp_case():
    rng = np.random.default_rng(1)
    W, b = rng.standard_normal((4, 3)), rng.standard_normal(3)
    b[1] = 0.0  # the kink of |b| at the point
    X, y = rng.standard_normal((6, 4)), rng.standard_normal((6, 3))
    gW, gb = mlp_grads(W, b, X, y)
    gW[2, 1] *= 1.01  # one wrong entry: confirmed by Richardson on the workers
    return mlp_loss, (W, b), (gW, gb), (X, y), {}


def dict_case():
    rng = np.random.default_rng(2)
    params = {"scale": rng.standard_normal(5), "shift": rng.standard_normal(5)}
    X = rng.standard_normal((7, 5))
    return dict_loss, params, dict_grads(X, **params), (X,), {}


def float32_case():
    w = np.linspace(-1.0, 1.0, 40, dtype=np.float32)
    return cube, w, 3 * w ** 2, (), {}


def complex_case():
    w = np.linspace(-1.0, 1.0, 30)
    return cube, w, 3 * w ** 2, (), {"method": "complex"}


def directional_case():
    w = np.linspace(-1.0, 1.0, 3000)
    g = 3 * w ** 2
    g[1234] += 0.05
    return cube, w, g, (), {"mode": "directional"}


CASES = {"mlp": mlp_case, "dict": dict_case, "float32": float32_case,
         "complex": complex_case, "directional": directional_case}


def assert_same_report(got, ref):
    assert got.backend == "dask" and got.passed == ref.passed
    assert got.evaluations == ref.evaluations
    assert list(got.params) == list(ref.params)
    for name, p in ref.params.items():
        q = got.params[name]
        assert q.checked == p.checked
        assert q.numeric_flat.tobytes() == p.numeric_flat.tobytes(), name
        assert q.error_bar_flat.tobytes() == p.error_bar_flat.tobytes(), name
        assert q.failed_indices == p.failed_indices and q.kinks == p.kinks


# -- values -----------------------------------------------------------------------------
@pytest.mark.parametrize("case", CASES)
def test_report_identical_to_the_python_engine(client, case, unchanged):
    f, params, grads, args, options = CASES[case]()
    with unchanged(params), unchanged(grads):
        ref = gp.check(f, params, grads, args=args, backend="python", **options)
        got = gp.check(f, params, grads, args=args, backend="dask", client=client,
                       **options)
    assert_same_report(got, ref)
    assert any("backend='dask'" in note and "python engine" in note for note in got.notes)
    if case == "mlp":
        assert got.params["W"].failed_indices == [(2, 1)] and got.params["b"].kinks == [(1,)]
    if case == "directional":
        assert got.params["w"].failed_indices == [(1234,)]
    assert client.status == "running"  # a given client is left open


def test_numerical_gradient_identical(client, unchanged):
    f, params, _, args, _ = dict_case()
    with unchanged(params):
        ref = gp.numerical_gradient(f, params, args=args, method="richardson",
                                    backend="python")
        got = gp.numerical_gradient(f, params, args=args, method="richardson",
                                    backend="dask", client=client)
    for name in ref:
        assert got[name].tobytes() == ref[name].tobytes()


def test_dict_params_bind_by_the_losss_signature_on_the_workers(process_client):
    """Issue 14: ``mlp_loss(W, b, X, y)`` with ``{"W": W, "b": b}`` and ``args=(X, y)``
    binds by name on the workers, as on the Python engine (one rule, params.bind_call)."""
    _, (W, b), (gW, gb), args, _ = mlp_case()

    def grads(W, b, X, y):
        gW, gb = mlp_grads(W, b, X, y)
        return {"W": gW, "b": gb}

    got = gp.check(mlp_loss, {"W": W, "b": b}, {"W": gW, "b": gb}, args=args,
                   backend="dask", client=process_client)
    assert got.params["W"].failed_indices == [(2, 1)] and got.params["b"].kinks == [(1,)]
    assert gp.check(mlp_loss, {"b": b, "W": W}, grads, args=args, backend="dask",
                    client=process_client).passed


def test_check_vjp_passes_the_client_through(process_client):
    x = np.array([[0.5, -1.0], [2.0, 0.1]])
    W = np.array([[1.0, 2.0, 0.0], [0.5, -1.0, 1.0]])

    def vjp(u, x, W):
        d = u * (1 - np.tanh(x @ W) ** 2)
        dW = x.T @ d
        dW[1, 2] *= 1.01
        return d @ W.T, dW

    def f(x, W):
        return np.tanh(x @ W)

    ref = gp.check_vjp(f, (x, W), vjp, backend="python")
    got = gp.check_vjp(f, (x, W), vjp, backend="dask", client=process_client)
    assert_same_report(got, ref)
    assert got.params["W"].failed_indices == [(1, 2)]


class Scale:
    """A layer for check_layer (deep-copied by the check, pickled to the workers)."""

    def __init__(self):
        self.params, self.grads = {"a": np.array([1.5, -0.5])}, {"a": np.zeros(2)}

    def forward(self, x):
        self.x = x
        return x * self.params["a"]

    def backward(self, g):
        self.grads["a"] += g * self.x * (1.0 + 1e-2 * (self.x > 0.5))  # wrong for a[1]
        return g * self.params["a"]


def test_check_layer_and_the_monitor_pass_the_client_through(process_client):
    x = np.array([0.3, 0.7])
    ref = gp.check_layer(Scale(), x, backend="python")
    got = gp.check_layer(Scale(), x, backend="dask", client=process_client)
    assert_same_report(got, ref)
    assert got.params["a"].failed_indices == [(1,)]
    monitor = gp.GradientMonitor(cube, every=1, backend="dask", client=process_client)
    assert monitor.step(x, 3 * x ** 2).backend == "dask"


def test_njit_loss_runs_on_the_numba_engine_on_the_workers(process_client):
    x = np.linspace(-1.0, 1.0, 64)
    grad = 4 * x ** 3
    grad[0] += 0.5 * x[-1]
    grad[-1] += 0.5 * x[0]
    ref = gp.check(njit_quartic, x, grad, args=(0.5,), backend="python")
    got = gp.check(njit_quartic, x, grad, args=(0.5,), backend="dask", client=process_client)
    assert_same_report(got, ref)
    assert any("by the numba engine on each worker" in note for note in got.notes)


def test_each_call_is_split_into_tasks_that_move_the_progress_bar(process_client):
    w = np.linspace(-1.0, 1.0, 101)
    problem = prepare(cube, ParamSet.from_user(w, cube), (), upcast=True,
                      complex_step=False, seed=0)
    points = np.stack([w + 1e-3, w - 1e-3], axis=1)

    class Bar:
        total, n, updates = 101, 0, []

        def update(self, k):
            self.n += k
            self.updates.append(k)

    engine = DaskEngine(client=process_client)
    spent = problem.evaluations
    try:
        bar = Bar()
        losses = ProgressEngine(engine, bar).evaluate(problem, 0, np.arange(101), points)
    finally:
        engine.close()
    ref = np.array([[cube(np.where(np.arange(101) == i, p, w)) for p in row]
                    for i, row in enumerate(points)])
    assert losses.tobytes() == ref.tobytes()
    tasks = len(task_bounds(101, 2, problem.loss_seconds, 2)) - 1
    assert tasks > 1 and bar.n == 101 and len(bar.updates) == tasks
    assert problem.evaluations == spent + points.size


def test_progress_bar_on_a_check(process_client, capsys):
    pytest.importorskip("tqdm")
    w = np.linspace(-1.0, 1.0, 50)
    ref = gp.check(slow_cube, w, 3 * w ** 2, backend="python")
    capsys.readouterr()
    got = gp.check(slow_cube, w, 3 * w ** 2, backend="dask", client=process_client,
                   progress=True)  # about 0.25 s of losses per worker, in several tasks
    err = capsys.readouterr().err
    # the bar moved: a frame past its first, which says 0/50 (tqdm redraws at most
    # every 0.1 s and the bar is cleared at the end, so the last count may not show)
    assert re.search(r"\b[1-9][0-9]*/50\b", err), err
    assert_same_report(got, ref)


def one_entry_at_a_time(w, base):
    """Fails if it ever sees two entries perturbed at once (arrays shared between threads)."""
    moved = np.count_nonzero(w != base)
    if 1 < moved < w.size:  # (the noise probe moves every entry)
        raise AssertionError(f"{moved} entries perturbed at once")
    time.sleep(1e-4)  # let the other thread run while this point is perturbed
    return float(np.sum(w ** 2))


def test_threads_of_one_worker_perturb_private_copies(thread_client):
    w = np.linspace(0.5, 1.5, 40)
    ref = gp.check(one_entry_at_a_time, w, 2 * w, args=(w.copy(),), backend="python")
    got = gp.check(one_entry_at_a_time, w, 2 * w, args=(w.copy(),), backend="dask",
                   client=thread_client)
    assert_same_report(got, ref)


# -- faults -----------------------------------------------------------------------------
def dies_once(w, marker, parent):
    """Kills its worker process the first time it runs in one (never in the test process)."""
    if os.getpid() != parent:
        try:
            fd = os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pass
        else:
            os.close(fd)
            os._exit(1)
    return float(np.sum(np.sin(w) * w))


def test_a_worker_killed_mid_check_loses_and_duplicates_nothing(process_client, tmp_path,
                                                                unchanged):
    w = np.linspace(-2.0, 2.0, 200)
    grad = np.sin(w) + w * np.cos(w)
    args = (str(tmp_path / "killed"), os.getpid())
    with unchanged(w):
        ref = gp.check(dies_once, w, grad, args=args, backend="python")
        got = gp.check(dies_once, w, grad, args=args, backend="dask", client=process_client)
    assert (tmp_path / "killed").exists()  # a worker did die
    assert_same_report(got, ref)  # every entry's value, each counted once
    assert got.params["w"].checked == w.size and got.passed


def test_the_only_worker_dying_loses_the_scattered_problem_which_is_sent_again(tmp_path):
    """One worker: its death takes the only copy of the problem; Dask cancels the tasks
    that needed it, and the engine scatters it again to the restarted worker."""
    w = np.linspace(-2.0, 2.0, 60)
    grad = np.sin(w) + w * np.cos(w)
    args = (str(tmp_path / "killed"), os.getpid())
    ref = gp.check(dies_once, w, grad, args=args, backend="python")
    got = gp.check(dies_once, w, grad, args=args, backend="dask", workers=1)
    assert (tmp_path / "killed").exists()
    assert_same_report(got, ref)


def test_a_scatter_failing_while_the_cluster_restarts_is_tried_again(tmp_path, monkeypatch):
    """After the only worker died, the first new scatter fails as it does while a
    cluster restarts (its connection closes); the engine waits and scatters again."""
    w = np.linspace(-2.0, 2.0, 40)
    grad = np.sin(w) + w * np.cos(w)
    args = (str(tmp_path / "killed"), os.getpid())
    ref = gp.check(dies_once, w, grad, args=args, backend="python")
    share, scatters = DaskEngine._share, []

    def flaky_share(self, problem, client):
        if self._shared is None:  # a scatter, not the copy already on the workers
            scatters.append(problem)
            if len(scatters) == 2:  # the first scatter after the worker died
                raise OSError("Stream is closed")
        return share(self, problem, client)

    monkeypatch.setattr(DaskEngine, "_share", flaky_share)
    got = gp.check(dies_once, w, grad, args=args, backend="dask", workers=1)
    assert (tmp_path / "killed").exists() and len(scatters) == 3
    assert_same_report(got, ref)


def explodes(w, base, log):
    """Raises when entry 3 alone is perturbed (never at the base point or in the noise probe)."""
    others = np.delete(w, 3) == np.delete(base, 3)
    if w[3] != base[3] and others.all():
        with open(log, "a") as fh:
            fh.write("raised\n")
        raise ValueError(f"boom: the simulator diverged at w[3] = {w[3]!r}")
    return float(np.sum(w ** 2))


def test_an_exception_in_the_loss_surfaces_with_the_workers_traceback(client, tmp_path):
    w = np.linspace(0.5, 1.5, 12)
    before = snapshot(w)
    log = tmp_path / "calls.log"
    with pytest.raises(ValueError, match="boom: the simulator diverged") as info:
        gp.check(explodes, w, 2 * w, args=(w.copy(), str(log)), backend="dask", client=client)
    assert_unchanged(w, before)
    assert "explodes" in [entry.name for entry in info.traceback]  # the worker's frame
    assert log.read_text().count("raised") == 1  # not retried
    assert client.status == "running"


def array_along_direction_three(w, base):
    """A scalar loss, except where w[0] moved by 3 (direction 3 of the test, alone)."""
    if 2.5 < abs(w[0] - base[0]) < 3.5:
        return np.array([1.0, 2.0])
    return np.sum(w ** 2)


def test_a_bad_loss_along_a_direction_is_named_by_its_index_in_the_call(thread_client):
    """Tasks get slices of the directions; messages count from the call's first."""
    w = np.zeros(3)
    problem = prepare(array_along_direction_three, ParamSet.from_user(w, array_along_direction_three),
                      (w.copy(),), upcast=True, complex_step=False, seed=0)
    directions = [[np.array([float(i), 0.0, 0.0])] for i in range(6)]
    steps = np.array([1.0])
    messages = []
    for engine in (select_engine("python", array_along_direction_three, 1),
                   DaskEngine(client=thread_client)):
        with pytest.raises(ValueError) as info:
            engine.evaluate_directions(problem, directions, steps)
        messages.append(str(info.value))
        getattr(engine, "close", lambda: None)()
    assert "random direction 3 " in messages[0]
    assert messages[1] == messages[0]


def test_unpicklable_loss_is_a_clear_error(process_client):
    lock = threading.Lock()

    def locked(w):
        with lock:
            return float(np.sum(w ** 2))

    w = np.ones(4)
    with pytest.raises(TypeError, match=r"could not be pickled \(TypeError: cannot pickle "
                                        r"'_thread.lock' object\)"):
        gp.check(locked, w, 2 * w, backend="dask", client=process_client)


# -- the auto-started cluster -------------------------------------------------------------
def _resources():
    import psutil

    children = {p.pid for p in psutil.Process().children(recursive=True) if p.is_running()}
    clusters = {id(c) for c in distributed.deploy.spec.SpecCluster._instances
                if c.status.name != "closed"}
    return children, {t.ident for t in threading.enumerate()}, clusters


def test_no_cluster_process_or_thread_left_behind(monkeypatch, unchanged):
    w = np.linspace(-1.0, 1.0, 20)
    ref = gp.check(cube, w, 3 * w ** 2, backend="python")
    got = gp.check(cube, w, 3 * w ** 2, backend="dask", workers=2)  # also warms up
    assert_same_report(got, ref)
    assert any("LocalCluster of 2 worker processes" in note for note in got.notes)
    before = _resources()
    gp.check(cube, w, 3 * w ** 2, backend="dask", workers=2)
    assert _resources() == before
    with unchanged(w), pytest.raises(ValueError, match="boom"):
        gp.check(explodes, w, 2 * w, args=(w.copy(), os.devnull), backend="dask",
                 workers=1)
    assert _resources() == before

    def interrupt(*_):  # Ctrl-C while the caller waits for the workers
        raise KeyboardInterrupt

    monkeypatch.setattr(DaskEngine, "_record", interrupt)
    with unchanged(w), pytest.raises(KeyboardInterrupt):
        gp.numerical_gradient(cube, w, backend="dask", workers=1)
    assert _resources() == before
    assert distributed.client._get_global_client() is None


def test_ctrl_c_while_the_cluster_starts_leaves_nothing_behind(monkeypatch, unchanged):
    w = np.linspace(-1.0, 1.0, 8)
    gp.check(cube, w, 3 * w ** 2, backend="dask", workers=1)  # warm-up: imports, spawner
    before = _resources()

    class InterruptedCluster(distributed.LocalCluster):
        """Started, then Ctrl-C before LocalCluster returns it to gradprobe."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            raise KeyboardInterrupt

    monkeypatch.setattr(distributed, "LocalCluster", InterruptedCluster)
    with unchanged(w), pytest.raises(KeyboardInterrupt):
        gp.check(cube, w, 3 * w ** 2, backend="dask", workers=1)
    assert _resources() == before


def _our_keys(dask_scheduler):
    return [str(k) for k in dask_scheduler.tasks if "gradprobe" in str(k) or
            "SharedProblem" in str(k)]


def test_a_given_cluster_keeps_no_task_or_data_of_the_check(process_client):
    w = np.linspace(0.5, 1.5, 12)
    gp.check(cube, w, 3 * w ** 2, backend="dask", client=process_client)
    with pytest.raises(ValueError, match="boom"):
        gp.check(explodes, w, 2 * w, args=(w.copy(), os.devnull), backend="dask",
                 client=process_client)
    deadline = time.monotonic() + 10
    while process_client.run_on_scheduler(_our_keys) and time.monotonic() < deadline:
        time.sleep(0.05)  # releases reach the scheduler asynchronously
    assert process_client.run_on_scheduler(_our_keys) == []


# -- bad input ---------------------------------------------------------------------------
def test_bad_client_arguments(process_client):
    w = np.ones(3)
    with pytest.raises(TypeError, match="client must be a distributed.Client"):
        gp.check(cube, w, 3 * w, backend="dask", client="tcp://127.0.0.1:8786")
    with pytest.raises(ValueError, match="client= is only used with backend='dask'"):
        gp.check(cube, w, 3 * w, backend="python", client=process_client)
    with pytest.raises(ValueError, match="client= is only used with backend='dask'"):
        gp.numerical_gradient(cube, w, client=process_client)
    with pytest.raises(ValueError, match="workers=2 cannot be used with client="):
        gp.check(cube, w, 3 * w, backend="dask", client=process_client, workers=2)
    with _cluster(n_workers=1, processes=False) as cluster:
        closed = distributed.Client(cluster, set_as_default=False)
        closed.close()
        with pytest.raises(ValueError, match="client is closed"):
            gp.check(cube, w, 3 * w, backend="dask", client=closed)
    from gradprobe import nn

    model = nn.Sequential([nn.Dense(2, 1, seed=0)], loss=nn.MSE())
    with pytest.raises(ValueError, match="a gradprobe.nn model runs on its own kernels"):
        gp.numerical_gradient(model, np.ones((3, 2)), np.ones((3, 1)), client=process_client)


def test_a_c_loss_cannot_be_sent_to_workers(process_client):
    cffi = pytest.importorskip("cffi")
    ffi = cffi.FFI()

    @ffi.callback("double(const double *, size_t, void *)")
    def squares(theta, n, ctx):
        return sum(theta[i] ** 2 for i in range(n))

    w = np.ones(3)
    with pytest.raises(TypeError, match="cannot send a C function"):
        gp.check(squares, w, 2 * w, backend="dask", client=process_client)


def test_missing_dask_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "distributed", None)  # import fails
    with pytest.raises(ImportError, match=r"pip install 'gradprobe\[dask\]'"):
        select_engine("dask", cube, None)


def test_importing_gradprobe_does_not_import_dask():
    code = ("import sys, gradprobe; gradprobe.info(); "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('dask', 'distributed')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"
    assert gp.info()["engines"]["dask"].startswith("available (dask ")


@pytest.mark.parametrize("entries", [1, 7, 100, 100_000])
@pytest.mark.parametrize("threads", [1, 3, 64])
@pytest.mark.parametrize("loss_seconds", [float("nan"), 0.0, 1e-6, 1e-2])
def test_task_bounds(entries, threads, loss_seconds, monkeypatch):
    monkeypatch.setattr(config, "DASK_MIN_TASK_SECONDS", 0.1)
    bounds = task_bounds(entries, 2, loss_seconds, threads)
    sizes = np.diff(bounds)
    assert bounds[0] == 0 and bounds[-1] == entries and (sizes > 0).all()
    assert sizes.max() - sizes.min() <= 1  # balanced
    assert sizes.max() <= config.DASK_MAX_TASK_ENTRIES
    seconds = entries * 2 * loss_seconds if np.isfinite(loss_seconds) else 0.0
    assert len(sizes) <= max(threads * config.DASK_TASKS_PER_THREAD,
                             -(-entries // config.DASK_MAX_TASK_ENTRIES),
                             int(np.ceil(seconds / config.DASK_MAX_TASK_SECONDS)))
    # no task predicted longer than DASK_MAX_TASK_SECONDS (one entry is the least a task has)
    assert sizes.max() * 2 * (loss_seconds if np.isfinite(loss_seconds) else 0.0) <= \
        max(config.DASK_MAX_TASK_SECONDS, 2 * loss_seconds if np.isfinite(loss_seconds) else 0)
    if loss_seconds == 1e-6 and entries <= 100:  # cheap: one task, overhead would dominate
        assert len(sizes) == 1
    if loss_seconds == 1e-2 and entries >= 100 * threads:  # long: every thread busy
        assert len(sizes) >= threads
