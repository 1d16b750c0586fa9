"""Progress bars: shown when asked or when long, chunked evaluation with identical results."""
from __future__ import annotations

import sys
import warnings

import numba
import numpy as np
import pytest

import gradprobe as gp
from gradprobe import config
from gradprobe.report import progress
from gradprobe.engines.numba import NumbaEngine
from gradprobe.engines.python import PythonEngine

pytest.importorskip("tqdm")


def smooth(w):
    return np.sum(np.sin(w) * w) + w[0] * w[-1]


def smooth_grad(w):
    g = np.sin(w) + w * np.cos(w)
    g[0] += w[-1]
    g[-1] += w[0]
    return g


@numba.njit
def njit_quartic(x):
    return np.sum(x * x * x * x) + x[0] * x[-1]


def same_values(a, b):
    for name in a.params:
        pa, pb = a.params[name], b.params[name]
        assert pa.numeric_flat.tobytes() == pb.numeric_flat.tobytes()
        assert pa.error_bar_flat.tobytes() == pb.error_bar_flat.tobytes()
        assert pa.failed_indices == pb.failed_indices
    assert a.evaluations == b.evaluations


class CountingEngine(PythonEngine):
    def __init__(self):
        super().__init__()
        self.calls = []

    def evaluate(self, problem, param, entries, points):
        self.calls.append(len(entries))
        return super().evaluate(problem, param, entries, points)


def test_python_engine_bar_and_identical_results(capsys, monkeypatch, unchanged):
    monkeypatch.setattr(config, "PROGRESS_CHUNK_ENTRIES", 1000)
    w = np.linspace(-2.0, 2.0, 4500)
    g = smooth_grad(w)
    g[4321] *= 1.01
    with unchanged((w, g)):
        off = gp.check(smooth, w, g, progress=False)
        capsys.readouterr()
        on = gp.check(smooth, w, g, progress=True)
    err = capsys.readouterr().err
    assert "entry/s" in err and "gradprobe full" in err and "/4500" in err
    same_values(on, off)
    assert on.params["w"].failed_indices == [(4321,)]
    assert on.backend == "python"


def test_entries_are_handed_over_in_chunks(monkeypatch):
    engine = CountingEngine()
    bar = progress.make_bar(None, "test")
    wrapped = progress.ProgressEngine(engine, bar, chunk=300)
    from gradprobe.problem.params import ParamSet
    from gradprobe.problem.point import prepare
    w = np.linspace(-1.0, 1.0, 1000)
    problem = prepare(smooth, ParamSet.from_user(w, smooth), (), upcast=True,
                      complex_step=False, seed=0)
    points = np.stack([w + 1e-3, w - 1e-3], axis=1)
    entries = np.arange(1000, dtype=np.int64)
    before = problem.evaluations
    chunked = wrapped.evaluate(problem, 0, entries, points)
    bar.close()
    assert engine.calls == [300, 300, 300, 100]
    assert problem.evaluations - before == 2000
    whole = PythonEngine().evaluate(problem, 0, entries, points)
    assert chunked.tobytes() == whole.tobytes()


def test_numba_engine_batches_are_bit_identical(capsys, monkeypatch):
    calls = []
    original = NumbaEngine.evaluate

    def spy(self, problem, param, entries, points):
        calls.append(len(entries))
        return original(self, problem, param, entries, points)

    x = np.linspace(-1.0, 1.0, 4000)
    g = 4 * x ** 3
    g[0] += x[-1]
    g[-1] += x[0]
    g[1234] *= 1.01
    off = gp.check(njit_quartic, x, g, progress=False, workers=2)
    monkeypatch.setattr(NumbaEngine, "evaluate", spy)
    on = gp.check(njit_quartic, x, g, progress=True, workers=2)
    assert on.backend == "numba"
    assert calls[0] == 4000 // config.PROGRESS_NUMBA_BATCHES
    assert sum(calls[:config.PROGRESS_NUMBA_BATCHES]) == 4000
    same_values(on, off)
    assert on.params["x"].failed_indices == [(1234,)]
    py = gp.check(njit_quartic, x, g, progress=True, backend="python")
    same_values(on, py)


def test_default_follows_the_predicted_time(capsys, monkeypatch):
    w = np.linspace(-1.0, 1.0, 50)
    gp.check(smooth, w, smooth_grad(w))  # predicted well under 2 s: no bar
    assert capsys.readouterr().err == ""
    monkeypatch.setattr(config, "PROGRESS_MIN_SECONDS", 0.0)
    gp.check(smooth, w, smooth_grad(w))
    assert "entry/s" in capsys.readouterr().err


def test_off_means_no_wrapping(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("engine wrapped")

    monkeypatch.setattr(progress.ProgressEngine, "__init__", refuse)
    monkeypatch.setattr(config, "PROGRESS_MIN_SECONDS", 0.0)
    w = np.linspace(-1.0, 1.0, 50)
    assert gp.check(smooth, w, smooth_grad(w), progress=False).passed
    with pytest.raises(AssertionError, match="engine wrapped"):
        gp.check(smooth, w, smooth_grad(w))


def test_sample_and_directional_modes(capsys):
    w = np.linspace(-1.0, 1.0, 20_000)
    r = gp.check(smooth, w, smooth_grad(w), mode="sample", samples=50, progress=True)
    assert r.params["w"].checked == 50
    err = capsys.readouterr().err
    assert "/50" in err
    g = smooth_grad(w)
    g[777] *= 1.01
    r = gp.check(smooth, w, g, mode="directional", progress=True)
    assert r.params["w"].failed_indices == [(777,)]


def test_missing_tqdm_warns_once(monkeypatch):
    monkeypatch.setitem(sys.modules, "tqdm", None)
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)
    monkeypatch.setattr(progress, "_warned_missing", False)
    w = np.linspace(-1.0, 1.0, 30)
    with pytest.warns(RuntimeWarning, match="tqdm"):
        assert gp.check(smooth, w, smooth_grad(w), progress=True).passed
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert gp.check(smooth, w, smooth_grad(w), progress=True).passed


def test_bad_progress_value():
    with pytest.raises(TypeError, match="progress"):
        gp.check(smooth, np.ones(3), smooth_grad(np.ones(3)), progress="yes")
