"""W6: an expensive black-box loss on a Dask cluster.

The loss is a small recurrent simulator written in NumPy (``steps`` updates
``s <- tanh(a s + w)`` of a 2,000-entry state, then ``|s|^2``), its number
of steps calibrated at set-up so that one evaluation burns about 5 ms of CPU
in the calling thread (NumPy element-wise calls on a 2,000-vector: no BLAS
threads, so two evaluations at once need two processes). Full central check
of all 2,000 entries: 4,000 evaluations + the noise probe. Measured side by
side in one run:

* the local Python engine (``backend="python"``);
* the Dask engine on a ``LocalCluster`` of 2 single-threaded worker processes
  (``client=``; the cluster's start-up, and a first tiny check that imports
  gradprobe on the workers, are timed apart);
* the cost of one task: ``evaluate`` calls on a loss of ~1 us split into
  many tasks, so that what is measured is scheduling, transfer and the
  worker-side call, not the loss;
* the two engines alternately on a sample of 400 entries, 3 rounds (the
  speed-up under the same conditions, on a host whose speed drifts).
"""
from __future__ import annotations

import logging
import os
import time

import numpy as np
import pytest

import gradprobe as gp
from gradprobe import config

distributed = pytest.importorskip("distributed")

from gradprobe.engines import dask as dask_engine  # noqa: E402

TITLE = "W6: 5 ms black-box loss, 2,000 entries, full check (central): Python engine vs Dask"
COLUMNS = ("run", "time (s)", "speed-up vs Python engine", "evaluations", "tasks")
ENTRIES = 2000
TARGET_SECONDS = 5e-3
WORKERS = 2
#: Entries and rounds of the interleaved comparison.
INTERLEAVED_SAMPLES = 400
INTERLEAVED_ROUNDS = 3


def simulator_loss(w, x0, decay, steps):
    """``|s_T|^2`` after ``steps`` updates ``s <- tanh(decay * s + w)`` from ``x0``."""
    s = x0
    for _ in range(steps):
        s = np.tanh(decay * s + w)
    return float(np.dot(s, s))


def simulator_grad(w, x0, decay, steps):
    """Backpropagation through the ``steps`` updates (the gradient being checked)."""
    states = [x0]
    for _ in range(steps):
        states.append(np.tanh(decay * states[-1] + w))
    g, dw = 2.0 * states[-1], np.zeros_like(w)
    for t in range(steps, 0, -1):
        u = g * (1.0 - states[t] ** 2)
        dw += u
        g = decay * u
    return dw


class Simulator:
    """The W6 problem, with the number of steps calibrated to ~5 ms per loss."""

    def __init__(self):
        rng = np.random.default_rng(6)
        self.w = rng.standard_normal(ENTRIES) * 0.5
        self.x0 = rng.standard_normal(ENTRIES)
        self.decay = 0.9
        per_step = self._seconds(100) / 100
        self.steps = max(1, round(TARGET_SECONDS / per_step))
        self.args = (self.x0, self.decay, self.steps)
        self.t_loss = self._seconds(self.steps)
        self.grad = simulator_grad(self.w, *self.args)

    def _seconds(self, steps, repeats=20):
        best = np.inf
        for _ in range(3):
            start = time.perf_counter()
            for _ in range(repeats):
                simulator_loss(self.w, self.x0, self.decay, steps)
            best = min(best, (time.perf_counter() - start) / repeats)
        return best


@pytest.fixture(scope="module")
def simulator(bench_table):
    problem = Simulator()
    problem.timings = {"load_before": os.getloadavg()}
    bench_table(TITLE, COLUMNS)
    yield problem
    _summarise(problem, bench_table(TITLE))


@pytest.fixture(scope="module")
def client(simulator):
    start = time.perf_counter()
    cluster = distributed.LocalCluster(n_workers=WORKERS, threads_per_worker=1,
                                       processes=True, dashboard_address="127.0.0.1:0",
                                       silence_logs=logging.ERROR)
    client = distributed.Client(cluster, set_as_default=False)
    simulator.timings["start-up"] = time.perf_counter() - start
    start = time.perf_counter()
    w = np.linspace(-1.0, 1.0, 8)  # imports gradprobe on every worker
    gp.check(lambda w: float(np.sum(w ** 3)), w, 3 * w ** 2, backend="dask", client=client)
    simulator.timings["warm-up"] = time.perf_counter() - start
    yield client
    client.close()
    cluster.close()


@pytest.fixture
def task_counter(monkeypatch):
    """Counts the tasks the Dask engine submits."""
    counts = {"tasks": 0}
    run = dask_engine.DaskEngine._run

    def counting(self, client, problem, tasks, *rest):
        counts["tasks"] += len(tasks)
        return run(self, client, problem, tasks, *rest)

    monkeypatch.setattr(dask_engine.DaskEngine, "_run", counting)
    return counts


@pytest.mark.benchmark(group="W6 Dask 5 ms loss")
def test_w6_python_engine_full(run_once, simulator):
    def run():
        return gp.check(simulator_loss, simulator.w, simulator.grad, args=simulator.args,
                        backend="python", progress=False)
    report, elapsed = run_once(run)
    assert report.passed, str(report)
    simulator.timings["python"] = (elapsed, report.evaluations)


@pytest.mark.benchmark(group="W6 Dask 5 ms loss")
def test_w6_dask_two_worker_processes_full(run_once, simulator, client, task_counter):
    def run():
        return gp.check(simulator_loss, simulator.w, simulator.grad, args=simulator.args,
                        backend="dask", client=client, progress=False)
    report, elapsed = run_once(run)
    assert report.passed and report.backend == "dask", str(report)
    simulator.timings["dask"] = (elapsed, report.evaluations, task_counter["tasks"])


@pytest.mark.benchmark(group="W6 Dask 5 ms loss")
def test_w6_interleaved(benchmark, simulator, client):
    """The Python engine and the Dask engine alternately on the same sample of entries.

    The two full checks above run a minute apart, and a shared host's speed can
    change in between; alternating shorter checks compares the engines under the
    same conditions (the median of the rounds' speed-ups).
    """
    ratios = []

    def check(**options):
        start = time.perf_counter()
        report = gp.check(simulator_loss, simulator.w, simulator.grad, args=simulator.args,
                          mode="sample", samples=INTERLEAVED_SAMPLES, progress=False,
                          **options)
        assert report.passed, str(report)
        return time.perf_counter() - start

    def one_round():
        python = check(backend="python")
        ratios.append(python / check(backend="dask", client=client))

    benchmark.pedantic(one_round, rounds=INTERLEAVED_ROUNDS, iterations=1, warmup_rounds=0)
    simulator.timings["interleaved"] = ratios


def _repeat_loss(args):
    """``n`` evaluations of the loss in a plain process: seconds per evaluation."""
    n, w, x0, decay, steps = args
    start = time.perf_counter()
    for _ in range(n):
        simulator_loss(w, x0, decay, steps)
    return (time.perf_counter() - start) / n


@pytest.mark.benchmark(group="W6 Dask 5 ms loss")
def test_w6_machine_ideal(benchmark, simulator):
    """The loss in 2 plain processes at once (no gradprobe, no Dask): what 2 cores give."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    n = 100
    job = (n, simulator.w, *simulator.args)
    best = np.inf
    with ProcessPoolExecutor(WORKERS, mp_context=multiprocessing.get_context("spawn")) as pool:
        list(pool.map(_repeat_loss, [(2,) + job[1:]] * WORKERS))  # start-up

        def one_round():
            nonlocal best
            start = time.perf_counter()
            list(pool.map(_repeat_loss, [job] * WORKERS))
            best = min(best, (time.perf_counter() - start) / (n * WORKERS))

        benchmark.pedantic(one_round, rounds=3, iterations=1, warmup_rounds=0)
    simulator.timings["ideal_per_eval"] = best
    simulator.timings["single_per_eval"] = _repeat_loss(job)


@pytest.mark.benchmark(group="W6 Dask 5 ms loss")
def test_w6_overhead_per_task(benchmark, simulator, client, monkeypatch):
    """Many tasks of a ~1 us loss: the time is the tasks' own cost."""
    from gradprobe.problem.params import ParamSet
    from gradprobe.problem.point import prepare

    tasks_per_call = 64
    monkeypatch.setattr(config, "DASK_MIN_TASK_SECONDS", 0.0)
    monkeypatch.setattr(config, "DASK_TASKS_PER_THREAD", tasks_per_call // WORKERS)
    w = np.linspace(-1.0, 1.0, 4 * tasks_per_call)

    def cheap(w):
        return float(w[0] * w[-1])

    problem = prepare(cheap, ParamSet.from_user(w, cheap), (), upcast=True,
                      complex_step=False, seed=0)
    entries = np.arange(w.size, dtype=np.int64)
    points = np.stack([w + 1e-3, w - 1e-3], axis=1)
    engine = dask_engine.DaskEngine(client=client)
    try:
        engine.evaluate(problem, 0, entries, points)  # scatter + warm-up
        best = np.inf

        def one_call():
            nonlocal best
            start = time.perf_counter()
            engine.evaluate(problem, 0, entries, points)
            best = min(best, time.perf_counter() - start)

        benchmark.pedantic(one_call, rounds=5, iterations=1, warmup_rounds=0)
    finally:
        engine.close()
    simulator.timings["per_task"] = best / tasks_per_call
    simulator.timings["tasks_per_call"] = tasks_per_call


def _summarise(problem, tab):
    times = problem.timings
    python = times.get("python")
    dask = times.get("dask")
    if python:
        tab.add(f"Python engine, local (t_loss = {problem.t_loss * 1e3:.2f} ms, "
                f"{problem.steps} steps)", python[0], 1.0, python[1], None)
    if dask:
        tab.add(f"Dask engine, LocalCluster of {WORKERS} worker processes",
                dask[0], python[0] / dask[0] if python else None, dask[1], dask[2])
    if "ideal_per_eval" in times and python:
        ideal = times["ideal_per_eval"] * python[1]
        tab.add(f"machine ideal: the loss in {WORKERS} plain processes at once, no "
                f"gradprobe ({times['ideal_per_eval'] * 1e3:.2f} ms per evaluation vs "
                f"{times['single_per_eval'] * 1e3:.2f} ms alone), x evaluations",
                ideal, python[0] / ideal, python[1], None)
        if dask:
            own = times["single_per_eval"] / times["ideal_per_eval"]
            tab.note(f"Dask engine at {ideal / dask[0]:.0%} of the machine's ideal; the "
                     f"machine itself gives {own:.2f}x with {WORKERS} processes")
    if "start-up" in times:
        tab.add("  cluster start-up (LocalCluster + Client), not included above",
                times["start-up"], None, None, None)
        tab.add("  first tiny check on the new cluster (workers import gradprobe)",
                times["warm-up"], None, None, None)
    if "per_task" in times:
        tab.note(f"overhead per task: {times['per_task'] * 1e3:.2f} ms (best of 5 calls of "
                 f"{times['tasks_per_call']} tasks of a ~1 us loss: scheduling, transfer of "
                 "points and losses, the worker-side call)")
    if "interleaved" in times:
        ratios = times["interleaved"]
        tab.note(f"interleaved: {INTERLEAVED_SAMPLES} sampled entries, the Python engine then "
                 f"the Dask engine, {len(ratios)} rounds: speed-ups "
                 + ", ".join(f"{r:.2f}x" for r in ratios)
                 + f" (median {float(np.median(ratios)):.2f}x; the noise probe, about 0.1 s, "
                 "runs on the caller in both)")
    if python and dask:
        floor = python[0] / WORKERS
        tab.note(f"speed-up {python[0] / dask[0]:.2f}x with {WORKERS} worker processes "
                 f"({python[0] / dask[0] / WORKERS:.0%} parallel efficiency); the ideal "
                 f"{floor:.3g} s is the Python engine's time / {WORKERS} (its noise probe "
                 "runs locally in both)")
    after = os.getloadavg()
    before = times["load_before"]
    tab.note(f"load average (1, 5, 15 min) before: {before[0]:.2f} {before[1]:.2f} "
             f"{before[2]:.2f}, after: {after[0]:.2f} {after[1]:.2f} {after[2]:.2f} "
             f"({os.cpu_count()} cores, shared)")
