"""W8: custom torch.autograd.Functions, gradprobe against torch.autograd.gradcheck.

The Functions of :mod:`gradprobe.examples.torch_functions` (a linear layer, a
GELU and a layer norm, each with a hand-written backward), in float64 and
float32, checked in one run by

* ``gradprobe.torch.check_function`` at its defaults (every entry of every
  input: compressed Jacobians, ``config.DEFAULT_VECTOR_DIRECTIONS`` random cotangents);
* ``torch.autograd.gradcheck`` at its defaults, slow mode (the whole
  Jacobian, column by column and row by row) and ``fast_mode=True`` (one
  random direction pair);

each on the correct backward and on a backward whose gradient for the
largest input is 1 % off in one entry. The rows give the time, the forward
and backward calls each tool made (counted inside the Function), the verdict,
and for the planted error whether it was caught and whether the wrong entry
was named (gradcheck's message prints Jacobians, not an entry). The ratio
column is gradcheck slow mode's time over gradprobe's, measured in the same
run, back to back.

Run: ``python -m pytest benchmarks/test_w8_torch.py --benchmark-only``
(skipped when torch is not installed).
"""
from __future__ import annotations

import functools
import time
import warnings

import pytest

torch = pytest.importorskip("torch", reason="torch not installed: W8 skipped")

import gradprobe.torch as gt  # noqa: E402
from gradprobe import config  # noqa: E402
from gradprobe.examples.torch_functions import (GELUFunction, LayerNormFunction,  # noqa: E402
                                                LinearFunction, with_planted_error)

TITLE = "W8: custom autograd Functions, gradprobe vs torch.autograd.gradcheck (defaults)"
COLUMNS = ("function", "dtype", "entries", "backward", "checker", "s", "forwards",
           "backwards", "verdict", "error caught", "entry named", "slow s / gradprobe s")


def _inputs(name, dtype):
    gen = torch.Generator().manual_seed(0)
    if name == "linear (16x128 -> 64)":
        return LinearFunction, 1, (torch.randn(16, 128, generator=gen, dtype=dtype),
                                   torch.randn(64, 128, generator=gen, dtype=dtype) / 11,
                                   torch.randn(64, generator=gen, dtype=dtype))
    if name == "GELU (32, 128)":
        return GELUFunction, 0, (2 * torch.randn(32, 128, generator=gen, dtype=dtype),)
    return LayerNormFunction, 0, (torch.randn(16, 128, generator=gen, dtype=dtype),
                                  torch.rand(128, generator=gen, dtype=dtype) + 0.5,
                                  torch.randn(128, generator=gen, dtype=dtype))


def counted(function):
    """``function`` with its forward and backward calls counted (forward keeps its
    signature, so the report names the inputs as the original does)."""
    class Counted(function):
        forwards = 0
        backwards = 0

        @staticmethod
        @functools.wraps(function.forward)
        def forward(ctx, *args):
            Counted.forwards += 1
            return function.forward(ctx, *args)

        @staticmethod
        def backward(ctx, *grads):
            Counted.backwards += 1
            return function.backward(ctx, *grads)

    return Counted


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Both checkers on one intra-op thread: these tensors are small, and on a
    shared 2-core machine a second torch thread mostly waits for a busy core."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    x = torch.randn(4, 8, dtype=torch.float64, requires_grad=True)   # warm-up: first
    gt.check_function(LinearFunction.apply, x, torch.ones(3, 8, dtype=torch.float64),
                      torch.zeros(3, dtype=torch.float64), progress=False)  # imports
    yield
    torch.set_num_threads(before)


NAMES = ["linear (16x128 -> 64)", "GELU (32, 128)", "layer norm (16, 128)"]
_GRADPROBE_SECONDS: dict[tuple, float] = {}


@pytest.mark.benchmark(group="W8 torch Functions")
@pytest.mark.parametrize("backward", ["correct", "one entry 1 % off"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", NAMES)
def test_w8(benchmark, bench_table, name, dtype, backward):
    function, which, inputs = _inputs(name, getattr(torch, dtype))
    inputs = tuple(t.requires_grad_(True) for t in inputs)
    entry = None
    if backward != "correct":
        entry = tuple(s // 3 for s in inputs[which].shape)
        function = with_planted_error(function, which, entry)
    entries = sum(t.numel() for t in inputs)
    table = bench_table(TITLE, COLUMNS)
    rows = []
    for checker in ("gradprobe", "gradcheck slow", "gradcheck fast"):
        fn = counted(function)
        start = time.perf_counter()
        if checker == "gradprobe":
            report = benchmark.pedantic(
                lambda: gt.check_function(fn.apply, *inputs, progress=False),
                rounds=1, iterations=1, warmup_rounds=0)
            seconds = time.perf_counter() - start
            _GRADPROBE_SECONDS[(name, dtype, backward)] = seconds
            passed = report.passed
            names = list(report.params)
            failed = {n: p.failed_indices for n, p in report.params.items() if p.failed}
            named = "-" if entry is None else (
                f"yes: {names[which]}{list(entry)}"
                if failed == {names[which]: [entry]} else f"no: {failed}")
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")   # "not double precision" for float32
                passed = torch.autograd.gradcheck(fn.apply, inputs,
                                                  fast_mode=checker.endswith("fast"),
                                                  raise_exception=False)
            seconds = time.perf_counter() - start
            named = "-" if entry is None else "no: prints the Jacobians"
        caught = "-" if entry is None else ("yes" if not passed else "MISSED")
        rows.append((checker, seconds, fn.forwards, fn.backwards,
                     "passed" if passed else "failed", caught, named))
        if checker == "gradprobe":
            if entry is None:
                assert passed, str(report)
            else:
                assert named.startswith("yes"), str(report)
    ratio = rows[1][1] / rows[0][1]   # slow mode over gradprobe, same inputs, back to back
    for checker, seconds, forwards, backwards, verdict, caught, named in rows:
        table.add(name, dtype, f"{entries:,}", backward, checker, seconds, f"{forwards:,}",
                  f"{backwards:,}", verdict, caught, named,
                  f"{ratio:.1f}" if checker == "gradprobe" else "-")
    if name == NAMES[0] and dtype == "float64" and backward == "correct":
        table.note("gradprobe: full check of every input entry (compressed Jacobians, "
                   f"{config.DEFAULT_VECTOR_DIRECTIONS} "
                   "cotangents; float32 evaluated in float64); gradcheck: its defaults "
                   "(eps 1e-6, atol 1e-5, rtol 1e-3), slow mode = whole Jacobian")
        table.note(f"torch {torch.__version__}, {torch.get_num_threads()} intra-op threads")
