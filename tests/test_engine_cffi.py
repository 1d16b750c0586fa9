"""The C engine (``backend="cffi"``) against the Python and Numba engines.

The losses are C functions compiled here with the system compiler (the
tests skip cleanly without one). The same C function is reached three
ways: from the C kernel's threads, from Python through the cffi pointer
(the Python engine), and from a ``numba.njit`` loss through ctypes (the
Numba engine). Each call computes the same C arithmetic on the same
``theta``, so the losses, and hence the numerical gradients, are
*bit-identical* on every engine and thread count: no tolerance is used.
"""
from __future__ import annotations

import ctypes
import gc
import math
import os
import re
import subprocess
import sys
import textwrap
import weakref

import numba
import numpy as np
import pytest

import gradprobe as gp
from gradprobe.engines import cffi as c_engine
from gradprobe.engines import ckernel
from gradprobe.engines.python import PythonEngine
from gradprobe.problem.params import ParamSet
from gradprobe.problem.point import prepare

from c_harness import CC, HAVE_CC, ROOT, SANITIZE_THREADS, needs_cc, run_sanitized
from conftest import assert_unchanged, snapshot

cffi = pytest.importorskip("cffi")

needs_kernel = pytest.mark.skipif(not c_engine.kernel_available(),
                                  reason=f"C kernel {c_engine.KERNEL_STATUS}")

LOSSES_C = r"""
#include <math.h>
#include <stddef.h>

typedef struct { const double *x; const double *y; size_t batch, nin, nout; } data_t;

/* theta = W (nin x nout), b (nout): mean of 1/2 (tanh(x W + b) - y)^2. */
double dense_tanh(const double *theta, size_t n, void *ctx)
{
    const data_t *d = (const data_t *)ctx;
    const double *W = theta, *b = theta + d->nin * d->nout;
    double s = 0.0;
    (void)n;
    for (size_t r = 0; r < d->batch; ++r)
        for (size_t j = 0; j < d->nout; ++j) {
            double z = b[j];
            for (size_t i = 0; i < d->nin; ++i)
                z += d->x[r * d->nin + i] * W[i * d->nout + j];
            double e = tanh(z) - d->y[r * d->nout + j];
            s += 0.5 * e * e;
        }
    return s / (double)d->batch;
}

/* No ctx: sum_i (i + 1) sin(theta_i) + theta_0 theta_{n-1}. */
double weighted_sin(const double *theta, size_t n, void *ctx)
{
    double s = theta[0] * theta[n - 1];
    (void)ctx;
    for (size_t i = 0; i < n; ++i)
        s += (double)(i + 1) * sin(theta[i]);
    return s;
}

double wrong_type(const double *theta, int n) { return theta[0] + n; }
"""

CDEF = """
typedef struct { const double *x; const double *y; size_t batch, nin, nout; } data_t;
double dense_tanh(const double *theta, size_t n, void *ctx);
double weighted_sin(const double *theta, size_t n, void *ctx);
double wrong_type(const double *theta, int n);
"""


@pytest.fixture(scope="module")
def shared_library(tmp_path_factory):
    """The losses above as a shared library (path)."""
    if not HAVE_CC:
        pytest.skip(f"no C compiler ({CC})")
    folder = tmp_path_factory.mktemp("c_losses")
    source = folder / "losses.c"
    source.write_text(LOSSES_C)
    library = folder / "liblosses.so"
    done = subprocess.run([CC, "-O2", "-shared", "-fPIC", str(source), "-o", str(library),
                           "-lm"], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot compile a shared library: {done.stderr.strip()}")
    return str(library)


@pytest.fixture(scope="module")
def c(shared_library):
    """(ffi, lib) of the losses, dlopen-ed in ABI mode."""
    ffi = cffi.FFI()
    ffi.cdef(CDEF)
    return ffi, ffi.dlopen(shared_library)


def dense_problem(ffi, seed=0, batch=8, nin=5, nout=3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, nin))
    Y = rng.standard_normal((batch, nout))
    W = rng.standard_normal((nin, nout)) * 0.5
    b = rng.standard_normal(nout) * 0.1
    keep = (ffi.from_buffer("double[]", X), ffi.from_buffer("double[]", Y))
    ctx = ffi.new("data_t *", {"x": keep[0], "y": keep[1], "batch": batch, "nin": nin,
                               "nout": nout})
    Z = np.tanh(X @ W + b)
    E = (Z - Y) * (1 - Z ** 2) / batch
    return {"W": W, "b": b}, {"W": X.T @ E, "b": E.sum(axis=0)}, ctx, (X, Y, keep)


def sin_point(seed=0):
    rng = np.random.default_rng(seed)
    A, v = rng.standard_normal((3, 4)), rng.standard_normal(5)
    theta = np.concatenate([A.ravel(), v])
    g = np.arange(1, theta.size + 1) * np.cos(theta)
    g[0] += theta[-1]
    g[-1] += theta[0]
    return (A, v), (g[:12].reshape(3, 4), g[12:])


# -- availability ------------------------------------------------------------------
def test_info_reports_the_c_kernel():
    state = gp.info()["engines"]["cffi"]
    assert state.startswith("available") or state.startswith("unavailable: ")
    assert state.startswith("available") == c_engine.kernel_available()


def test_the_development_install_built_the_kernel():
    if os.environ.get(c_engine.config.C_KERNEL_ENV, "auto") == "off":
        pytest.skip("GRADPROBE_C_KERNEL=off")
    if not c_engine.kernel_available():
        pytest.skip(f"C kernel {c_engine.KERNEL_STATUS} (CI: GRADPROBE_C_KERNEL=require "
                    "python -m gradprobe info fails in that case)")
    import gradprobe._ckernel as kernel

    assert kernel.lib.gp_max_threads() >= 1


@pytest.mark.parametrize("mode, expect", [("off", "disabled by GRADPROBE_C_KERNEL=off"),
                                          ("bogus", "is not one of auto, require, off")])
def test_environment_variable_turns_the_kernel_off(mode, expect, shared_library):
    script = textwrap.dedent(f"""
        import cffi, numpy as np, gradprobe as gp
        ffi = cffi.FFI(); ffi.cdef({CDEF!r})
        lib = ffi.dlopen({shared_library!r})
        state = gp.info()["engines"]["cffi"]
        assert {expect!r} in state, state
        x = np.array([0.5, -1.0, 2.0])
        g = np.arange(1, 4) * np.cos(x); g[0] += x[-1]; g[-1] += x[0]
        report = gp.check(lib.weighted_sin, x, g)
        assert report.passed and report.backend == "python", report
        try:
            gp.check(lib.weighted_sin, x, g, backend="cffi")
        except ValueError as exc:
            assert "not available" in str(exc), exc
        else:
            raise AssertionError("backend='cffi' ran without the kernel")
        print("fallback ok")
    """)
    env = dict(os.environ, GRADPROBE_C_KERNEL=mode)
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "fallback ok" in done.stdout


def test_require_raises_when_the_kernel_is_missing():
    script = ("import sys; sys.modules['gradprobe._ckernel'] = None\n"
              "import gradprobe as gp\n"
              "try:\n    gp.info()\nexcept ImportError as exc:\n    print('ImportError:', exc)\n")
    env = dict(os.environ, GRADPROBE_C_KERNEL="require")
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "ImportError: GRADPROBE_C_KERNEL=require" in done.stdout
    assert "not built" in done.stdout


# -- the same losses on every engine -------------------------------------------------
def numba_twin(shared_library):
    """A numba.njit loss calling the same C function through ctypes (ctx NULL)."""
    fn = ctypes.CDLL(shared_library).weighted_sin
    fn.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    fn.restype = ctypes.c_double

    @numba.njit
    def weighted_sin(A, v):
        theta = np.concatenate((A.ravel(), v.ravel()))
        return fn(theta.ctypes, theta.size, 0)

    return weighted_sin


@needs_kernel
@pytest.mark.parametrize("method", ["central", "forward", "richardson"])
def test_numerical_gradient_bit_identical_on_every_engine(c, shared_library, method):
    ffi, lib = c
    params, _ = sin_point()
    before = snapshot(params)
    results = {backend: gp.numerical_gradient(lib.weighted_sin, params, method=method,
                                              backend=backend, workers=workers)
               for backend, workers in [("python", 1), ("cffi", 1), ("cffi", 2)]}
    results["numba"] = gp.numerical_gradient(numba_twin(shared_library), params,
                                             method=method, backend="numba")
    reference = results["python"]
    for backend, value in results.items():
        for got, want in zip(value, reference):
            assert got.tobytes() == want.tobytes(), backend
    assert_unchanged(params, before)


@needs_kernel
@pytest.mark.parametrize("m", [1, 2, 4])
@pytest.mark.parametrize("workers", [1, 2, 3, 7])
def test_engine_losses_equal_the_python_engine(c, m, workers):
    ffi, lib = c
    params, _, ctx, keep = dense_problem(ffi, seed=m + workers)
    f = c_engine.as_loss(lib.dense_tanh, (ctx,))
    paramset = ParamSet.from_user(params, f)
    problem = prepare(f, paramset, (ctx,), upcast=True, complex_step=False, seed=0)
    rng = np.random.default_rng(workers)
    before = [w.copy() for w in problem.working]
    for param, array in enumerate(paramset.arrays):
        entries = rng.integers(0, array.size, size=23).astype(np.int64)  # repeats too
        points = problem.working[param].reshape(-1)[entries][:, None] + \
            rng.standard_normal((23, m))
        want = PythonEngine().evaluate(problem, param, entries, points)
        got = c_engine.CffiEngine(workers=workers).evaluate(problem, param, entries, points)
        assert got.tobytes() == want.tobytes()
    # the engines perturb private copies: the working copies are as they were
    assert all(a.tobytes() == b.tobytes() for a, b in zip(problem.working, before))


class _CountingKernel:
    """The C kernel module with ``gp_evaluate`` counted, raising KeyboardInterrupt after call ``stop``."""

    def __init__(self, kernel, stop=None):
        self.ffi, self._lib, self.stop, self.calls = kernel.ffi, kernel.lib, stop, []
        self.lib = self

    def __getattr__(self, name):
        return getattr(self._lib, name)

    def gp_evaluate(self, *arguments):
        self.calls.append(int(arguments[7]))  # k: the entries of this call
        status = self._lib.gp_evaluate(*arguments)
        if self.stop is not None and len(self.calls) == self.stop:
            raise KeyboardInterrupt  # as if Ctrl-C arrived during this call
        return status


@needs_kernel
def test_calls_of_the_kernel_are_sized_by_the_losss_time(c, monkeypatch):
    """A slow loss is handed to C in short calls (Ctrl-C is seen between them); the
    losses are the same as in one call."""
    ffi, lib = c
    params, _, ctx, keep = dense_problem(ffi)
    f = c_engine.as_loss(lib.dense_tanh, (ctx,))
    problem = prepare(f, ParamSet.from_user(params, f), (ctx,), upcast=True,
                      complex_step=False, seed=0)
    entries = np.arange(problem.working[0].size, dtype=np.int64)
    points = problem.working[0].reshape(-1)[entries][:, None] + np.array([1e-3, -1e-3])
    whole = c_engine.CffiEngine(workers=2).evaluate(problem, 0, entries, points)
    counting = _CountingKernel(ckernel.kernel())
    monkeypatch.setattr(ckernel, "_loaded", (counting, ckernel.status()))
    # pretend each loss takes 50 ms: 0.5 s x 2 threads / (2 points x 50 ms) = 10 entries
    monkeypatch.setattr(c_engine.config, "ENGINE_CALL_SECONDS", 0.5)
    monkeypatch.setattr(problem, "loss_seconds", 0.05)
    got = c_engine.CffiEngine(workers=2).evaluate(problem, 0, entries, points)
    assert counting.calls == [10] * (entries.size // 10) + [entries.size % 10]
    assert got.tobytes() == whole.tobytes()


@needs_kernel
def test_ctrl_c_between_calls_of_the_kernel_leaves_the_arrays_as_they_were(c, monkeypatch):
    ffi, lib = c
    params, grads, ctx, keep = dense_problem(ffi)
    before = snapshot(params)
    counting = _CountingKernel(ckernel.kernel(), stop=2)
    monkeypatch.setattr(ckernel, "_loaded", (counting, ckernel.status()))
    monkeypatch.setattr(c_engine.config, "C_KERNEL_BATCH_ROWS", 4)
    with pytest.raises(KeyboardInterrupt):
        gp.check(lib.dense_tanh, params, grads, args=(ctx,), backend="cffi", workers=2)
    assert counting.calls == [4, 4]  # stopped after the second call
    assert_unchanged(params, before)


@needs_kernel
def test_verdicts_agree_and_name_the_wrong_entry(c):
    ffi, lib = c
    params, grads, ctx, keep = dense_problem(ffi, batch=16, nin=6, nout=4)
    before = snapshot(params)
    grads_before = snapshot(grads)
    for backend in ("python", "cffi"):
        good = gp.check(lib.dense_tanh, params, grads, args=(ctx,), backend=backend)
        assert good.passed and good.backend == backend
        wrong = {"W": grads["W"].copy(), "b": grads["b"]}
        wrong["W"][2, 1] *= 1.01
        bad = gp.check(lib.dense_tanh, params, wrong, args=(ctx,), backend=backend)
        assert not bad.passed
        assert bad.params["W"].failed_indices == [(2, 1)] and bad.params["b"].passed
    assert_unchanged(params, before)
    assert_unchanged(grads, grads_before)


@needs_kernel
def test_auto_picks_the_c_kernel_for_a_function_pointer(c):
    ffi, lib = c
    params, grads = sin_point(1)
    report = gp.check(lib.weighted_sin, params, grads)
    assert report.passed and report.backend == "cffi"
    pointer = ffi.cast("double(*)(const double *, size_t, void *)", lib.weighted_sin)
    assert gp.check(pointer, params, grads).backend == "cffi"
    wrapped = c_engine.CFunctionLoss(lib.weighted_sin)
    assert gp.check(wrapped, params, grads, args=(None,)).backend == "cffi"


@needs_kernel
@pytest.mark.parametrize("mode", ["sample", "directional", "auto"])
def test_other_modes_and_methods(c, mode):
    ffi, lib = c
    params, grads = sin_point(2)
    for method in ("central", "forward", "richardson"):
        report = gp.check(lib.weighted_sin, params, grads, mode=mode, method=method)
        assert report.passed, report


@needs_kernel
def test_read_only_and_float32_parameters(c):
    ffi, lib = c
    (A, v), (gA, gv) = sin_point(3)
    A.setflags(write=False)
    assert gp.check(lib.weighted_sin, (A, v), (gA, gv)).passed
    A32, v32 = A.astype(np.float32), v.astype(np.float32)
    (_, _), (gA32, gv32) = sin_point(3)
    report = gp.check(lib.weighted_sin, (A32, v32), (gA32, gv32))  # upcast: float64 theta
    assert report.upcast


@needs_kernel
def test_a_python_callback_runs_from_c_threads():
    ffi = cffi.FFI()

    @ffi.callback("double(const double *, size_t, void *)")
    def cubes(theta, n, ctx):
        return sum(theta[i] ** 3 for i in range(n))

    w = np.linspace(-1.0, 1.0, 40)
    report = gp.check(cubes, w, 3 * w ** 2, backend="cffi", workers=2)
    assert report.passed and report.backend == "cffi"


@needs_cc
def test_api_mode_module_function(tmp_path):
    ffi = cffi.FFI()
    ffi.cdef("double square_sum(const double *theta, size_t n, void *ctx);")
    ffi.set_source("_gp_test_api_loss", """
        #include <stddef.h>
        double square_sum(const double *theta, size_t n, void *ctx) {
            double s = 0.0; (void)ctx;
            for (size_t i = 0; i < n; ++i) s += theta[i] * theta[i];
            return s;
        }""")
    try:
        ffi.compile(tmpdir=str(tmp_path))
    except Exception as exc:  # pragma: no cover - no Python headers etc.
        pytest.skip(f"cannot compile a cffi module: {exc}")
    sys.path.insert(0, str(tmp_path))
    try:
        import _gp_test_api_loss as module
    finally:
        sys.path.remove(str(tmp_path))
    x = np.array([1.0, -2.0, 3.0])
    report = gp.check(module.lib.square_sum, x, 2 * x)  # a built-in lib function
    assert report.passed
    g = gp.numerical_gradient(module.ffi.addressof(module.lib, "square_sum"), x)
    np.testing.assert_allclose(g, 2 * x, rtol=1e-8)


# -- numba.cfunc losses ----------------------------------------------------------------
def _weighted_sin(theta, n):
    """``weighted_sin`` of ``LOSSES_C``, same operations in the same order."""
    s = theta[0] * theta[n - 1]
    for i in range(n):
        s += (i + 1) * math.sin(theta[i])
    return s


_weighted_sin_compiled = numba.njit(_weighted_sin)


@numba.cfunc(c_engine.NUMBA_CFUNC_SIGNATURE)
def weighted_sin_cfunc(theta, n, ctx):
    return _weighted_sin_compiled(theta, n)


@numba.njit
def weighted_sin_njit(A, v):
    theta = np.concatenate((A.ravel(), v.ravel()))
    return _weighted_sin_compiled(theta, theta.size)


def weighted_sin_python(A, v):
    theta = np.concatenate((A.ravel(), v.ravel())).tolist()
    return _weighted_sin(theta, len(theta))


ROWS = 16  # rows of the data behind ctx (a cfunc freezes globals when it is compiled)


@numba.cfunc("float64(CPointer(float64), uintp, voidptr)")
def dense_tanh_cfunc(theta, n, ctx):
    """``dense_tanh`` with nout = 1: theta = (w, b); ctx -> ROWS rows (x, y) of n doubles."""
    data = numba.carray(ctx, (ROWS, n), np.float64)
    s = 0.0
    for r in range(ROWS):
        z = theta[n - 1]
        for i in range(n - 1):
            z += data[r, i] * theta[i]
        e = math.tanh(z) - data[r, n - 1]
        s += 0.5 * e * e
    return s / ROWS


def dense_tanh_python(data, w, b):
    z = data[:, :-1] @ w + b[0]
    return float(np.sum(0.5 * (np.tanh(z) - data[:, -1]) ** 2) / ROWS)


def cfunc_dense_problem(nin=6, seed=4):
    rng = np.random.default_rng(seed)
    X, y = rng.standard_normal((ROWS, nin)), rng.standard_normal(ROWS)
    data = np.column_stack([X, y])
    w, b = rng.standard_normal(nin) * 0.5, np.array([0.1])
    z = np.tanh(X @ w + b[0])
    e = (z - y) * (1 - z ** 2) / ROWS
    return {"w": w, "b": b}, {"w": X.T @ e, "b": np.array([e.sum()])}, data


@pytest.mark.parametrize("method", ["central", "forward", "richardson"])
def test_cfunc_numerical_gradient_bit_identical_to_python_njit_and_c(c, method):
    ffi, lib = c
    params, _ = sin_point(5)
    before = snapshot(params)
    backends = [("python", 1)] + ([("cffi", 1), ("cffi", 2)] if c_engine.kernel_available()
                                  else [])
    results = {f"cfunc {b} {w}": gp.numerical_gradient(weighted_sin_cfunc, params,
                                                       method=method, backend=b, workers=w)
               for b, w in backends}
    results["python"] = gp.numerical_gradient(weighted_sin_python, params, method=method)
    results["njit"] = gp.numerical_gradient(weighted_sin_njit, params, method=method)
    results["C library"] = gp.numerical_gradient(lib.weighted_sin, params, method=method)
    reference = results["python"]
    for name, value in results.items():
        for got, want in zip(value, reference):
            assert got.tobytes() == want.tobytes(), name
    assert_unchanged(params, before)


def test_cfunc_verdicts_agree_with_python_and_name_the_wrong_entry():
    params, grads, data = cfunc_dense_problem()
    before, grads_before, data_before = snapshot(params), snapshot(grads), data.copy()
    ctx = cffi.FFI().from_buffer("double[]", data)
    wrong = {"w": grads["w"].copy(), "b": grads["b"]}
    wrong["w"][3] *= 1.01
    runs = {"python f": (dense_tanh_python, (data,), "python")}
    for backend in ["auto", "python"]:
        runs[f"cfunc {backend}"] = (dense_tanh_cfunc, (ctx,), backend)
    for name, (f, args, backend) in runs.items():
        good = gp.check(f, params, grads, args=args, backend=backend)
        assert good.passed, (name, good)
        if name == "cfunc auto":
            assert good.backend == ("cffi" if c_engine.kernel_available() else "python")
        bad = gp.check(f, params, wrong, args=args, backend=backend)
        assert not bad.passed, name
        assert bad.params["w"].failed_indices == [(3,)] and bad.params["b"].passed, name
    np.testing.assert_allclose(
        gp.numerical_gradient(dense_tanh_cfunc, params, args=(ctx,))["w"],
        gp.numerical_gradient(dense_tanh_python, params, args=(data,))["w"], rtol=1e-7)
    assert_unchanged(params, before)
    assert_unchanged(grads, grads_before)
    assert data.tobytes() == data_before.tobytes()


def test_cfunc_is_wrapped_as_a_c_loss_and_kept_alive():
    @numba.cfunc(c_engine.NUMBA_CFUNC_SIGNATURE)
    def squares(theta, n, ctx):
        s = 0.0
        for i in range(n):
            s += theta[i] * theta[i]
        return s

    assert c_engine.is_numba_cfunc(squares) and c_engine.is_c_function(squares)
    assert not c_engine.is_numba_cfunc(weighted_sin_njit)
    loss = c_engine.as_loss(squares, ())
    assert isinstance(loss, c_engine.CFunctionLoss) and loss.function is squares
    assert c_engine._FFI.cast("uintptr_t", loss.pointer) == squares.address
    alive = weakref.ref(squares)
    del squares
    gc.collect()
    assert alive() is loss.function  # the machine code lives as long as the loss
    assert loss(np.array([1.0, 2.0]), np.array([3.0])) == 14.0


@pytest.mark.parametrize("signature, got", [
    ("float64(CPointer(float64), intp, voidptr)", "float64(float64*, int64, void*)"),
    ("float32(CPointer(float64), uintp, voidptr)", "float32(float64*, uint64, void*)"),
    ("float64(CPointer(float32), uintp, voidptr)", "float64(float32*, uint64, void*)"),
    ("float64(CPointer(float64), uintp)", "float64(float64*, uint64)"),
    ("float64(CPointer(float64), uintp, CPointer(float64))",
     "float64(float64*, uint64, float64*)"),
])
def test_cfunc_with_another_signature_is_rejected(signature, got):
    def first(theta, n, ctx):
        return theta[0]

    def first_no_ctx(theta, n):
        return theta[0]

    wrong = numba.cfunc(signature)(first if signature.count(",") == 2 else first_no_ctx)
    x = np.ones(3)
    expected = ("must be compiled with the signature 'float64(CPointer(float64), uintp, "
                "voidptr)', the ABI double loss(const double *theta, size_t n, void *ctx)")
    for call in (lambda: gp.check(wrong, x, x), lambda: gp.numerical_gradient(wrong, x),
                 lambda: gp.check(wrong, x, x, backend="cffi")):
        with pytest.raises(TypeError, match=re.escape(expected)) as info:
            call()
        assert got in str(info.value)


def test_cfunc_args_are_validated_like_a_c_loss():
    params, grads, data = cfunc_dense_problem()
    with pytest.raises(TypeError, match="must be \\(ctx,\\) with ctx a cffi pointer"):
        gp.check(dense_tanh_cfunc, params, grads, args=(data,))
    with pytest.raises(TypeError, match="method='complex' cannot be used with a C loss"):
        gp.check(weighted_sin_cfunc, *sin_point(), method="complex")
    with pytest.raises(TypeError, match="a C loss .* runs on backend='cffi'"):
        gp.check(weighted_sin_cfunc, *sin_point(), backend="numba")


def test_checking_a_python_or_cffi_loss_does_not_import_numba():
    script = textwrap.dedent("""
        import sys, cffi, numpy as np, gradprobe as gp
        ffi = cffi.FFI()

        @ffi.callback("double(const double *, size_t, void *)")
        def cubes(theta, n, ctx):
            return sum(theta[i] ** 3 for i in range(n))

        w = np.array([0.5, -1.0])
        assert gp.check(lambda w: float(np.sum(w ** 3)), w, 3 * w ** 2).passed
        assert gp.check(cubes, w, 3 * w ** 2).passed
        print("numba imported:", "numba" in sys.modules)
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "numba imported: False" in done.stdout


# -- bad input never reaches C --------------------------------------------------------
def test_bad_functions_are_rejected(c):
    ffi, lib = c
    x = np.ones(3)
    with pytest.raises(TypeError, match="must have the type double loss"):
        gp.check(lib.wrong_type, x, x)
    with pytest.raises(ValueError, match="NULL function pointer"):
        gp.check(ffi.cast("double(*)(const double *, size_t, void *)", 0), x, x)
    with pytest.raises(TypeError, match="must have the type"):
        gp.check(ffi.new("double[3]"), x, x)
    with pytest.raises(TypeError, match="backend='cffi' needs a C loss"):
        gp.check(lambda x: float(np.sum(x)), x, x, backend="cffi")
    with pytest.raises(TypeError, match="cffi function pointer"):
        c_engine.CFunctionLoss(lambda x: 0.0)


def test_bad_args_are_rejected(c):
    ffi, lib = c
    params, grads, ctx, keep = dense_problem(ffi)
    with pytest.raises(TypeError, match="one extra argument, the ctx pointer"):
        gp.check(lib.dense_tanh, params, grads, args=(ctx, ctx))
    with pytest.raises(TypeError, match="must be \\(ctx,\\) with ctx a cffi pointer"):
        gp.check(lib.dense_tanh, params, grads, args=(keep[0],))
    with pytest.raises(TypeError, match="must be \\(ctx,\\) with ctx a cffi pointer"):
        gp.check(lib.dense_tanh, params, grads, args=(12345,))


def test_complex_and_narrow_evaluation_are_rejected(c):
    ffi, lib = c
    params, grads = sin_point()
    with pytest.raises(TypeError, match="method='complex' cannot be used with a C loss"):
        gp.check(lib.weighted_sin, params, grads, method="complex")
    narrow = tuple(p.astype(np.float32) for p in params)
    with pytest.raises(TypeError, match="takes float64 parameters, got float32"):
        gp.check(lib.weighted_sin, narrow, grads, upcast=False)


@needs_kernel
def test_engine_validates_entries_and_points(c):
    ffi, lib = c
    params, _ = sin_point()
    f = c_engine.as_loss(lib.weighted_sin, ())
    paramset = ParamSet.from_user(params, f)
    problem = prepare(f, paramset, (), upcast=True, complex_step=False, seed=0)
    engine = c_engine.CffiEngine(workers=2)
    ok = np.zeros((2, 2))
    with pytest.raises(IndexError, match="entry 12 out of range for parameter 'params\\[0\\]'"):
        engine.evaluate(problem, 0, np.array([0, 12]), ok)
    with pytest.raises(IndexError, match="entry -1 out of range"):
        engine.evaluate(problem, 1, np.array([-1, 0]), ok)
    with pytest.raises(IndexError, match="parameter index 2"):
        engine.evaluate(problem, 2, np.array([0, 1]), ok)
    with pytest.raises(ValueError, match="points must have shape"):
        engine.evaluate(problem, 0, np.array([0, 1]), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="points must have shape"):
        engine.evaluate(problem, 0, np.array([0, 1]), np.zeros(4))
    with pytest.raises(TypeError, match="points must be float64"):
        engine.evaluate(problem, 0, np.array([0, 1]), ok.astype(np.float32))
    with pytest.raises(TypeError, match="integer array"):
        engine.evaluate(problem, 0, np.array([0.0, 1.0]), ok)
    assert engine.evaluate(problem, 0, np.array([], dtype=np.int64),
                           np.zeros((0, 2))).shape == (0, 2)
    python_problem = prepare(np.sum, ParamSet.from_user(np.ones(2), np.sum), (),
                             upcast=True, complex_step=False, seed=0)
    with pytest.raises(TypeError, match="backend='cffi' needs a C loss"):
        engine.evaluate(python_problem, 0, np.array([0]), np.zeros((1, 2)))
    # Non-contiguous points are copied, not read with the wrong strides.
    wide = np.zeros((2, 4))
    wide[:, ::2] = [[0.5, -0.5], [0.25, -0.25]]
    strided = engine.evaluate(problem, 1, np.array([0, 4]), wide[:, ::2])
    dense = engine.evaluate(problem, 1, np.array([0, 4]), np.ascontiguousarray(wide[:, ::2]))
    assert strided.tobytes() == dense.tobytes()


# -- the C harness under sanitizers ---------------------------------------------------
@needs_cc
def test_c_kernel_harness_under_sanitizers(tmp_path):
    """tests/c/test_kernel.c: the perturbation loop without Python, under ASan + UBSan."""
    out = run_sanitized(tmp_path, "test_kernel", ["gp_kernel.c", "gp_parallel.c"])
    assert "gp_kernel" in out


@needs_cc
def test_c_kernel_harness_under_thread_sanitizer(tmp_path):
    """The same harness under ThreadSanitizer: the threads claim chunks of rows from a
    shared counter and write disjoint rows of out, with no data race."""
    out = run_sanitized(tmp_path, "test_kernel", ["gp_kernel.c", "gp_parallel.c"],
                        SANITIZE_THREADS)
    assert "gp_kernel" in out


# -- the example and the README ---------------------------------------------------------
@needs_cc
def test_example_c_loss():
    from gradprobe.examples import c_loss

    try:
        ffi, lib = c_loss.build()
    except Exception as exc:  # pragma: no cover - compiler present but unusable
        pytest.skip(f"cannot compile the example: {exc}")
    good = c_loss.check_correct(ffi, lib)
    assert good.passed
    assert good.backend == ("cffi" if c_engine.kernel_available() else "python")
    bad = c_loss.check_buggy(ffi, lib)
    assert not bad.passed and "scaled" in bad.params["w"].diagnosis


@needs_cc
def test_docs_c_example_runs(capsys):
    """The cffi example of docs/howto/c-loss.md (the docs build runs it too; here it
    runs in the test suite, where a C compiler is known to be present)."""
    import pathlib
    import re

    text = (pathlib.Path(ROOT) / "docs" / "howto" / "c-loss.md").read_text()
    blocks = [b for b in re.findall(r"```\{code-cell\} python\n(.*?)```", text, re.S)
              if "builder.compile" in b]
    assert len(blocks) == 1
    exec(compile(blocks[0], "docs/howto/c-loss.md C example", "exec"), {})
    out = capsys.readouterr().out
    assert out.split() == ["cffi", "True"]


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
@pytest.mark.parametrize("backend", ["python", "cffi"])
def test_a_raising_callback_with_error_nan_is_reported_not_checked(backend):
    """cffi turns an exception in an ffi.callback into its `error` value; with NaN the
    check stops at the entry instead of checking a made-up loss."""
    if backend == "cffi" and not c_engine.kernel_available():
        pytest.skip(f"C kernel {c_engine.KERNEL_STATUS}")
    ffi = cffi.FFI()

    @ffi.callback("double(const double *, size_t, void *)", error=float("nan"))
    def squares_until_moved(theta, n, ctx):
        if theta[1] > -1.0:
            raise RuntimeError("moved")
        return sum(theta[i] ** 2 for i in range(n))

    w = np.array([0.5, -1.0, 2.0])
    before = snapshot(w)
    with pytest.raises(ValueError, match=r"returned nan with x\[1\]"):
        gp.check(squares_until_moved, w, 2 * w, backend=backend)
    assert_unchanged(w, before)
