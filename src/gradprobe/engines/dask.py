"""The Dask engine: the entries of one check spread over a ``dask.distributed`` cluster.

Each ``evaluate`` call is split into tasks of consecutive entries
(:func:`task_bounds`); every task runs the best *local* engine on its worker
(the Numba engine for a ``numba.njit`` loss, the Python engine otherwise, on
one thread: worker processes are the parallelism) and returns its losses,
which are written back in order. The losses are therefore those of the local
engines, bit for bit, whichever worker computed them.

Data: the problem (``f``, ``args`` and the working copies of the parameters)
is scattered once per check to every worker (``client.scatter(...,
broadcast=True)``) and reused by every call of that check (the per-entry
estimates, the Richardson confirmations, the kink probes); each worker thread
makes its own copy of the parameters once, to perturb. Tasks carry only their
entries and points.

Faults are Dask's business: tasks of a worker that dies are rescheduled by
the scheduler on the others (up to ``distributed.scheduler.allowed-failures``
times; then :class:`distributed.KilledWorker`), and no ``retries`` are
requested, so an exception raised by ``f`` is not re-run but re-raised at
the caller, with the worker's traceback. Only when the workers holding the
scattered problem are all lost (a one-worker cluster, ``client.restart()``)
does Dask cancel the tasks; they are then submitted again with the problem
scattered anew (``config.DASK_RESUBMISSIONS``).

Without ``client=`` a ``LocalCluster`` sized to the machine (one
single-threaded worker process per core) is started on the first evaluation
and closed by :meth:`DaskEngine.close`, which the public checkers call in
``finally``. dask is imported only when this engine is created.
"""
from __future__ import annotations

import dataclasses
import math
import threading
import uuid
from importlib import metadata, util
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .. import config
from .base import Engine, evaluate_directions
from .cffi import CFunctionLoss
from .python import PythonEngine

if TYPE_CHECKING:
    from ..problem.point import Problem

#: How to install what this engine needs.
INSTALL_HINT = "pip install 'gradprobe[dask]'"


def import_distributed() -> Any:
    """``dask.distributed``, or an ImportError that says how to install it."""
    try:
        import distributed
    except ImportError as exc:
        raise ImportError(
            f"backend='dask' needs dask.distributed, which is not installed: {INSTALL_HINT}"
        ) from exc
    return distributed


def status() -> str:
    """``"available (...)"`` or ``"unavailable: ..."`` for ``gradprobe.info()`` (no import).

    Examples
    --------
    >>> status().split()[0] in ("available", "unavailable:")
    True
    """
    if util.find_spec("distributed") is None or util.find_spec("dask") is None:
        return f"unavailable: dask.distributed is not installed ({INSTALL_HINT})"
    return (f"available (dask {metadata.version('dask')}, "
            f"distributed {metadata.version('distributed')})")


def task_bounds(entries: int, evaluations_per_entry: int, loss_seconds: float,
                threads: int) -> np.ndarray:
    """Boundaries of the tasks that ``entries`` entries are split into.

    ``config.DASK_TASKS_PER_THREAD`` tasks per worker thread (load balance),
    but no task predicted shorter than ``config.DASK_MIN_TASK_SECONDS``
    (each task costs a few milliseconds of scheduling and transfer), none
    predicted longer than ``config.DASK_MAX_TASK_SECONDS`` (a running task
    cannot be stopped) and none larger than ``config.DASK_MAX_TASK_ENTRIES``
    entries.

    Parameters
    ----------
    entries : int
        Entries (rows of points) to evaluate.
    evaluations_per_entry : int
        Points per entry.
    loss_seconds : float
        Measured time of one loss (NaN when unknown: the load-balance count).
    threads : int
        Worker threads of the cluster.

    Returns
    -------
    ndarray of int64
        ``tasks + 1`` increasing offsets from 0 to ``entries``.

    Examples
    --------
    20 s of work (2,000 entries x 2 losses x 5 ms) on 2 threads: 8 tasks.

    >>> task_bounds(2000, 2, 5e-3, 2)
    array([   0,  250,  500,  750, 1000, 1250, 1500, 1750, 2000])

    4 ms of work: one task.

    >>> task_bounds(2000, 2, 1e-6, 2)
    array([   0, 2000])

    200 s of work (a 50 ms loss) on 2 threads: 40 tasks of 5 s, not 8 of 25 s.

    >>> len(task_bounds(2000, 2, 0.05, 2)) - 1
    40
    """
    tasks = max(1, threads) * config.DASK_TASKS_PER_THREAD
    if math.isfinite(loss_seconds) and loss_seconds >= 0:
        seconds = entries * evaluations_per_entry * loss_seconds
        if config.DASK_MIN_TASK_SECONDS > 0:
            tasks = min(tasks, int(seconds / config.DASK_MIN_TASK_SECONDS))
        if config.DASK_MAX_TASK_SECONDS > 0:
            tasks = max(tasks, math.ceil(seconds / config.DASK_MAX_TASK_SECONDS))
    tasks = max(tasks, -(-entries // config.DASK_MAX_TASK_ENTRIES), 1)
    tasks = min(tasks, max(entries, 1))
    return (np.arange(tasks + 1, dtype=np.int64) * entries) // tasks


def start_local_cluster(workers: int | None) -> tuple[Any, Any]:
    """A ``LocalCluster`` of single-threaded worker processes and a client of it.

    ``workers`` processes (default: one per core). The client is not made the
    default client, the dashboard listens on a free loopback port, and the
    cluster's logging is quietened (restored when it closes).
    """
    distributed = import_distributed()
    from dask.system import CPU_COUNT

    count = workers or CPU_COUNT
    before = set(map(id, _open_clusters(distributed)))
    try:
        cluster = distributed.LocalCluster(
            n_workers=count, threads_per_worker=1, processes=True,
            dashboard_address=config.DASK_DASHBOARD_ADDRESS,
            silence_logs=config.DASK_LOG_LEVEL)
    except BaseException as exc:
        # LocalCluster cleans up after an Exception only: close what a Ctrl-C (or
        # anything else) left half-started, then say what happened
        for started in _open_clusters(distributed):
            if id(started) not in before:
                try:
                    started.close()
                except Exception:  # half-started: close what can be closed
                    pass
        if not isinstance(exc, Exception):
            raise
        raise RuntimeError(
            f"backend='dask' could not start a LocalCluster of {count} worker process(es) "
            f"({type(exc).__name__}: {exc}). Worker processes are spawned and import the "
            "main module: in a script, call gradprobe under `if __name__ == '__main__':`; "
            "or pass client= for a cluster you started") from exc
    try:
        client = distributed.Client(cluster, set_as_default=False)
    except BaseException:
        cluster.close()
        raise
    return cluster, client


def _open_clusters(distributed: Any) -> list:
    """The clusters of this process that are not closed (Dask keeps a weak set)."""
    instances = getattr(distributed.deploy.spec.SpecCluster, "_instances", ())
    return [c for c in list(instances)
            if getattr(getattr(c, "status", None), "name", "") != "closed"]


# -- the worker side ------------------------------------------------------------------
class SharedProblem:
    """A check's problem as every worker holds it (scattered once per check).

    Each worker thread takes a private copy of the working arrays and its own
    local engine (an instance of ``local``, one thread) on first use
    (:meth:`local`), so tasks on one worker never share the arrays they perturb.

    Examples
    --------
    >>> import numpy as np, pickle
    >>> from gradprobe.problem.params import ParamSet
    >>> from gradprobe.problem.point import prepare
    >>> f = np.linalg.norm
    >>> shared = SharedProblem(prepare(f, ParamSet.from_user(np.ones(3), f), (),
    ...                                upcast=True, complex_step=False, seed=0))
    >>> problem, engine = shared.local()
    >>> engine.name, problem.working[0] is shared.problem.working[0]
    ('python', False)
    >>> type(pickle.loads(pickle.dumps(shared))).__name__  # what a process worker gets
    'SharedProblem'
    """

    def __init__(self, problem: "Problem", local: type[Engine] = PythonEngine):
        self.problem = problem
        self.engine = local
        self._local = threading.local()

    def __reduce__(self) -> tuple:
        return (SharedProblem, (self.problem, self.engine))

    def local(self) -> tuple["Problem", Any]:
        """This thread's copy of the problem and its local engine."""
        state = getattr(self._local, "state", None)
        if state is None:
            problem = dataclasses.replace(
                self.problem, working=[a.copy() for a in self.problem.working], notes=[],
                evaluations=0)
            state = self._local.state = (problem, self.engine(workers=1))
        return state


def evaluate_task(shared: SharedProblem, param: int, entries: np.ndarray,
                  points: np.ndarray) -> tuple[np.ndarray, str, list[str]]:
    """One task: the local engine's losses, its name and any notes it added."""
    problem, engine = shared.local()
    seen = len(problem.notes)
    out = engine.evaluate(problem, param, entries, points)
    return out, engine.name, problem.notes[seen:]


def directions_task(shared: SharedProblem, directions: list, steps: np.ndarray,
                    first: int = 0) -> tuple[np.ndarray, str, list[str]]:
    """One task of ``evaluate_directions``: losses along some of the directions.

    The local engines (Python, Numba) evaluate directions in the reference loop
    (the contract's default), which is called here with ``first``, the call's index
    of ``directions[0]``, for messages.
    """
    problem, engine = shared.local()
    seen = len(problem.notes)
    out = evaluate_directions(problem, directions, steps, first)
    return out, engine.name, problem.notes[seen:]


def outputs_task(shared: SharedProblem, param: int, members: list, values: list,
                 contexts: list) -> tuple[np.ndarray, str, list[str]]:
    """One task of ``evaluate_outputs``: an array-valued function at some of the points."""
    vf, engine = shared.local()
    seen = len(vf.notes)
    out = engine.evaluate_outputs(vf, param, members, values, contexts)
    return out, engine.name, vf.notes[seen:]


def portable(problem: "Problem") -> "Problem":
    """The problem (or a ``VectorFunction``) without the user's arrays (workers need
    only the working copies)."""
    from ..problem.params import ParamSet

    paramset = problem.paramset
    stub = ParamSet(paramset.kind, list(paramset.names), list(problem.working),
                    paramset.sequence_type)
    return dataclasses.replace(problem, paramset=stub, notes=[], evaluations=0)


# -- the client side ------------------------------------------------------------------
class DaskEngine(Engine):
    """Evaluate perturbed losses in tasks on a ``dask.distributed`` cluster.

    Parameters
    ----------
    client : distributed.Client, optional
        A (synchronous) client of an existing cluster; it is left open. By
        default a ``LocalCluster`` is started on the first evaluation and
        closed by :meth:`close`.
    workers : int, optional
        Worker processes of the ``LocalCluster`` started without ``client``
        (default: one per core). Not allowed with ``client`` (the cluster has
        its own size).
    local : Engine subclass, optional
        The engine each worker runs (on one thread: worker processes are the
        parallelism); :func:`gradprobe.engines.select.select_engine` passes the
        best local engine for ``f``. Default: the Python engine.

    Attributes
    ----------
    report_progress : callable or None
        Called with the number of entries of every task that completes (the
        progress bar sets it).

    Examples
    --------
    >>> import numpy as np, gradprobe as gp
    >>> from distributed import Client, LocalCluster
    >>> cluster = LocalCluster(n_workers=1, threads_per_worker=2, processes=False,
    ...                        dashboard_address="127.0.0.1:0")
    >>> client = Client(cluster, set_as_default=False)
    >>> w = np.array([1.0, 2.0, 3.0])
    >>> report = gp.check(lambda w: np.sum(w ** 3), w, 3 * w ** 2, backend="dask",
    ...                   client=client)
    >>> report.backend, report.passed
    ('dask', True)
    >>> client.close(); cluster.close()
    """

    name = "dask"
    distributed = True
    reports_progress = True

    @classmethod
    def accept(cls, f: object) -> None:
        if isinstance(f, CFunctionLoss):
            raise TypeError(
                "backend='dask' cannot send a C function (cffi pointer or numba.cfunc) to "
                "worker processes: its address is only valid in the process that made it; use "
                "backend='cffi' (all cores of this machine) or a Python / numba.njit loss")

    @classmethod
    def create(cls, f: object, workers: int | None, client: object = None,
               local: Callable[[object], type[Engine]] | None = None) -> "DaskEngine":
        return cls(client=client, workers=workers,
                   local=local(f) if local is not None else PythonEngine)

    def __init__(self, client: Any = None, workers: int | None = None,
                 local: type[Engine] = PythonEngine):
        distributed = import_distributed()
        if client is not None:
            if not isinstance(client, distributed.Client):
                raise TypeError(f"client must be a distributed.Client, got "
                                f"{type(client).__name__}")
            if client.asynchronous:
                raise TypeError("client must be a synchronous distributed.Client "
                                "(created with asynchronous=False)")
            if client.status in ("closing", "closed"):
                raise ValueError(f"client is {client.status}; pass an open "
                                 "distributed.Client")
            if workers is not None:
                raise ValueError(
                    f"workers={workers} cannot be used with client=: the cluster has its "
                    "own size (workers sets the size of the LocalCluster gradprobe starts "
                    "when no client is given)")
        if not (isinstance(local, type) and issubclass(local, Engine)) or local.distributed:
            raise TypeError(f"local must be a local Engine subclass, got {local!r}")
        self.client = client
        self.workers = workers
        self.local = local
        self.report_progress: Callable[[int], Any] | None = None
        self.local_engines: set[str] = set()
        self._cluster: Any = None
        self._own_client: Any = None
        self._shared: tuple[Any, Any] | None = None  # (problem, scattered future)

    # -- the contract ---------------------------------------------------
    def evaluate(self, problem: "Problem", param: int, entries: np.ndarray,
                 points: np.ndarray) -> np.ndarray:
        out = np.empty(points.shape, dtype=_result_dtype(problem))
        k, m = points.shape
        if k and m:
            client = self._connect()
            bounds = task_bounds(k, m, problem.loss_seconds, _threads(client))
            tasks = [(evaluate_task, (param, entries[lo:hi], points[lo:hi]), lo, hi)
                     for lo, hi in zip(bounds[:-1], bounds[1:])]
            self._run(client, problem, tasks, out, self.report_progress,
                      f"gradprobe-evaluate-{_safe(problem.names[param])}")
        problem.evaluations += points.size
        return out

    def evaluate_directions(self, problem: "Problem", directions: list,
                            steps: np.ndarray) -> np.ndarray:
        """Losses with every parameter displaced at once, directions split over tasks."""
        out = np.empty((len(directions), len(steps)), dtype=_result_dtype(problem))
        if out.size:
            client = self._connect()
            bounds = task_bounds(len(directions), len(steps), problem.loss_seconds,
                                 _threads(client))
            tasks = [(directions_task, (list(directions[lo:hi]), steps, int(lo)), lo, hi)
                     for lo, hi in zip(bounds[:-1], bounds[1:])]
            self._run(client, problem, tasks, out, None, "gradprobe-directions")
        problem.evaluations += out.size
        return out

    def evaluate_outputs(self, vf: Any, param: int, members: Any, values: Any,
                         contexts: Any) -> np.ndarray:
        """Outputs of an array-valued function at displaced points, points split over tasks.

        The function (a ``VectorFunction`` without the user's arrays) is
        scattered once per check, like a problem.
        """
        k = len(members)
        out = np.empty((k, vf.size), dtype=np.complex128 if vf.complex_step else np.float64)
        if k:
            client = self._connect()
            bounds = task_bounds(k, 1, float("nan"), _threads(client))
            tasks = [(outputs_task, (param, list(members[lo:hi]), list(values[lo:hi]),
                                     list(contexts[lo:hi])), lo, hi)
                     for lo, hi in zip(bounds[:-1], bounds[1:])]
            self._run(client, vf, tasks, out, None, "gradprobe-outputs")
        vf.evaluations += k
        return out

    def close(self) -> None:
        """Release the scattered problem; close the cluster this engine started.

        Safe to call more than once; the public checkers call it in ``finally``.
        """
        shared, self._shared = self._shared, None
        client, cluster = self._own_client, self._cluster
        self._own_client = self._cluster = None
        try:
            if shared is not None and shared[1].client.status == "running":
                shared[1].release()
        finally:
            try:
                if client is not None:
                    client.close()
            finally:
                if cluster is not None:
                    cluster.close()

    # -- the cluster ----------------------------------------------------------
    def _connect(self) -> Any:
        if self.client is not None:
            return self.client
        if self._own_client is None:
            self._cluster, self._own_client = start_local_cluster(self.workers)
        return self._own_client

    def _share(self, problem: "Problem", client: Any) -> Any:
        """The problem scattered to every worker, once per problem."""
        if self._shared is not None and self._shared[0] is problem:
            return self._shared[1]
        self._forget()
        try:
            future = client.scatter(SharedProblem(portable(problem), self.local),
                                    broadcast=True, hash=False)
        except Exception as exc:
            if not _is_serialization_error(exc):
                raise
            root: BaseException = exc  # cloudpickle's own words, under Dask's wrapping
            while root.__cause__ is not None and root.__cause__ is not root:
                root = root.__cause__
            raise TypeError(
                "backend='dask' sends f, args and the parameters to the workers, but they "
                f"could not be pickled ({type(root).__name__}: {root}); lambdas and closures "
                "work (cloudpickle), objects holding locks, open files or C pointers do not"
            ) from exc
        self._shared = (problem, future)
        return future

    def _run(self, client: Any, problem: "Problem", tasks: list, out: np.ndarray,
             on_done: Callable[[int], Any] | None, name: str) -> None:
        """Submit ``tasks``, write each result into ``out[lo:hi]`` as it completes.

        ``tasks`` are ``(function, arguments, lo, hi)``; each function gets the
        scattered problem first. A task of a worker that dies is rescheduled
        by Dask itself. Tasks cancelled by the cluster (the scattered problem
        was lost with every worker holding it, or ``client.restart()``) are
        submitted again with the problem scattered anew, up to
        ``config.DASK_RESUBMISSIONS`` times.
        """
        distributed = import_distributed()
        remaining = dict(enumerate(tasks))
        key = f"{name}-{uuid.uuid4().hex}"
        submissions, setback = 0, None
        while remaining and submissions <= config.DASK_RESUBMISSIONS:
            if submissions:  # scatter again: the copies on the workers are gone
                self._forget()
                _wait_for_a_worker(client)
            if client.status != "running":
                break
            try:
                shared = self._share(problem, client)
            except TypeError:  # f or args cannot be pickled: said by _share
                raise
            except Exception as exc:
                if not submissions:
                    raise
                # workers still restarting (client.restart()): the scatter itself can
                # fail ("Stream is closed", a replicate to workers that left); try again
                submissions, setback = submissions + 1, exc
                continue
            submissions += 1
            futures = {}
            try:
                for i, (function, arguments, _, _) in remaining.items():
                    future = client.submit(function, shared, *arguments, pure=False,
                                           key=f"{key}-{i}-{submissions}")
                    futures[future] = i
                for future in distributed.as_completed(list(futures), loop=client.loop):
                    if future.cancelled():
                        continue  # submitted again below
                    losses, local, notes = future.result()  # re-raises f's exception
                    _, _, lo, hi = remaining.pop(futures[future])
                    out[lo:hi] = losses
                    self._record(problem, client, local, notes)
                    if on_done is not None:
                        on_done(hi - lo)
            finally:  # nothing of this call stays on the cluster, even if the
                # exception (and its traceback, holding these futures) is kept
                pending = [f for f in futures if not f.done()]
                if client.status == "running":
                    if pending:
                        client.cancel(pending)
                    for submitted in futures:
                        submitted.release()
        if remaining:
            last = f"; the last scatter failed: {type(setback).__name__}: {setback}" \
                if setback is not None else ""
            raise RuntimeError(
                f"backend='dask': {len(remaining)} task(s) were cancelled by the cluster, "
                f"{submissions} time(s) (workers lost with the scattered problem, or the "
                f"client restarted or closed: its status is {client.status!r}){last}; the "
                "check could not finish")

    def _forget(self) -> None:
        """Drop the scattered copy of ``problem`` (the next call scatters it again)."""
        if self._shared is not None:
            shared, self._shared = self._shared[1], None
            shared.release()

    def _record(self, problem: "Problem", client: Any, local: str, notes: list[str]) -> None:
        """Say once per check where the losses came from; keep the workers' notes."""
        if local not in self.local_engines:
            self.local_engines.add(local)
            where = (f"a LocalCluster of {len(client.nthreads())} worker processes "
                     "started for this check" if self._cluster is not None
                     else f"the cluster at {client.scheduler.address}")
            problem.notes.append(f"backend='dask': losses evaluated on {where}, by the "
                                 f"{local} engine on each worker")
        for note in notes:
            if note not in problem.notes:
                problem.notes.append(note)


def _wait_for_a_worker(client: Any) -> None:
    """Wait (``config.DASK_WORKER_WAIT_SECONDS`` at most) until a worker is back."""
    try:
        client.wait_for_workers(1, timeout=config.DASK_WORKER_WAIT_SECONDS)
    except Exception:  # timed out, or the client closed: the caller sees its status
        pass


def _result_dtype(problem: "Problem") -> np.dtype:
    return np.dtype(np.complex128 if problem.complex_step else np.float64)


def _threads(client: Any) -> int:
    """Worker threads of the cluster right now (at least 1)."""
    return max(1, sum(client.nthreads().values()))


def _safe(name: str) -> str:
    """A parameter name usable inside a Dask key."""
    return "".join(c if c.isalnum() or c in "_." else "_" for c in name)[:40]


def _is_serialization_error(exc: BaseException) -> bool:
    import pickle

    text = f"{type(exc).__name__}: {exc}".lower()
    return isinstance(exc, (pickle.PicklingError, TypeError, AttributeError)) or \
        "pickle" in text or "serializ" in text
