"""Compiling gradprobe's Numba kernels: a notice on a first run, a cache probe, warm-up.

Numba compiles a kernel on its first call and keeps it in its disk cache
(``cache=True``: ``__pycache__`` next to the module, or ``NUMBA_CACHE_DIR``);
later processes load it in milliseconds. A cold compile of a parallel kernel
takes 1.5-5 s, and nothing on screen says why a first run is slow, so:

* :func:`install_notice` registers a listener on Numba's ``"numba:compile"``
  event, which Numba broadcasts only when it really compiles (after a cache
  miss). The first time one of gradprobe's cached kernels that takes more
  than about a second to compile (the parallel ones, and the Numba engine's
  kernel) starts compiling, :data:`NOTICE` is written once to stderr, the
  stream of progress bars. A warm cache prints nothing.
* :func:`load_cached` loads a kernel from the disk cache *without* compiling
  it, so a caller can choose to skip a compile that would cost more than the
  work it speeds up (the Numba engine does, for small checks).
* :func:`warmup` compiles and caches every kernel ahead of time
  (``python -m gradprobe warmup``: a CI step, a Docker build).
"""
from __future__ import annotations

import sys
import threading
import time
from typing import Any, Callable, TextIO

#: Written once per process to stderr when a slow kernel compiles.
NOTICE = ("gradprobe: compiling Numba kernels, first run only (they are cached on disk; "
          "'python -m gradprobe warmup' compiles them ahead of time)")

#: Modules whose kernels take more than about a second to compile even when
#: serial (the Numba engine's kernel: a per-layout loop that calls ``f``).
_SLOW_MODULES = ("gradprobe.engines.numba_kernel",)

_lock = threading.Lock()
_state = {"installed": False, "announced": False}
#: Dispatchers being probed by :func:`load_cached`: compiling one is aborted.
_probing: set[int] = set()


class _NotCached(Exception):
    """Raised inside Numba's compile event to stop a probe from compiling."""


def _cached(dispatcher: Any) -> bool:
    """True when ``dispatcher`` writes to Numba's disk cache (``cache=True``)."""
    cache = getattr(dispatcher, "_cache", None)
    return cache is not None and type(cache).__name__ != "NullCache"


def is_slow_kernel(dispatcher: Any) -> bool:
    """True for a cached gradprobe kernel that takes more than about a second to compile.

    Examples
    --------
    >>> from gradprobe.nn import kernels
    >>> is_slow_kernel(kernels.matmul), is_slow_kernel(kernels.column_sums)
    (True, False)
    """
    module = getattr(getattr(dispatcher, "py_func", None), "__module__", "") or ""
    if not module.startswith("gradprobe."):
        return False
    slow = bool(getattr(dispatcher, "targetoptions", {}).get("parallel")) or \
        module in _SLOW_MODULES
    return slow and _cached(dispatcher)


def announce(stream: TextIO | None = None) -> bool:
    """Write :data:`NOTICE` to ``stream`` (stderr) unless it was written already.

    Returns True when it wrote it.
    """
    with _lock:
        if _state["announced"]:
            return False
        _state["announced"] = True
    stream = sys.stderr if stream is None else stream
    try:
        stream.write(NOTICE + "\n")
        stream.flush()
    except (OSError, ValueError):  # pragma: no cover - a closed stream
        pass
    return True


def install_notice() -> None:
    """Register the compile listener (once per process; imports Numba)."""
    with _lock:
        if _state["installed"]:
            return
        _state["installed"] = True
    from numba.core import event

    class _CompileListener(event.Listener):
        def on_start(self, evt: Any) -> None:
            dispatcher = (evt.data or {}).get("dispatcher")
            if id(dispatcher) in _probing:
                raise _NotCached()
            if is_slow_kernel(dispatcher):
                announce()

        def on_end(self, evt: Any) -> None:
            pass

    event.register("numba:compile", _CompileListener())


def load_cached(dispatcher: Any, signature: Any) -> bool:
    """Load ``signature`` of ``dispatcher`` from memory or Numba's disk cache, never compiling.

    Returns True when the compiled version is now available, False when it
    would have to be compiled (it is not in the cache, or the dispatcher
    does not cache).

    Examples
    --------
    >>> import numba
    >>> @numba.njit
    ... def double(x):
    ...     return 2 * x
    >>> load_cached(double, (numba.float64,))
    False
    >>> double(1.0), load_cached(double, (numba.float64,))
    (2.0, True)
    """
    install_notice()
    key = id(dispatcher)
    with _lock:
        _probing.add(key)
    try:
        dispatcher.compile(signature)
    except _NotCached:
        return False
    finally:
        with _lock:
            _probing.discard(key)
    return True


def _nn_kernels(dtype: Any) -> list[tuple[str, Callable[[], Any]]]:
    """Calls that compile every kernel of :mod:`gradprobe.nn` for ``dtype``."""
    import numpy as np

    from .nn import contraction, entry_kernel, head_kernels, kernels

    A, B, C = (np.ones((2, 3), dtype), np.ones((3, 2), dtype), np.empty((2, 2), dtype))
    Z, out = np.ones((2, 2), dtype), np.empty((2, 2), dtype)
    v = np.ones(2, dtype)
    calls: list[tuple[str, Callable[[], Any]]] = [
        ("matmul", lambda: kernels.matmul(A, B, C)),
        ("dense_forward", lambda: kernels.dense_forward(A, B, v, C)),
        ("transpose", lambda: kernels.transpose(A, np.empty((3, 2), dtype))),
        ("column_sums", lambda: kernels.column_sums(Z, np.empty(2, dtype))),
        ("max_abs", lambda: kernels.max_abs(v)),
        ("activation_forward", lambda: kernels.activation_forward(1, Z, out)),
        ("activation_backward", lambda: kernels.activation_backward(1, Z, Z, Z, out)),
        ("mse_loss", lambda: kernels.mse_loss(Z, Z, 1.0)),
        ("mse_backward", lambda: kernels.mse_backward(Z, Z, 1.0, out)),
        ("softmax_ce_loss", lambda: kernels.softmax_ce_loss(Z, Z, 1.0)),
        ("softmax_ce_backward", lambda: kernels.softmax_ce_backward(Z, Z, 1.0, out)),
    ]
    if dtype != np.float64:
        return calls
    f8 = np.ones((2, 2))
    i8 = np.zeros(1, dtype=np.int64)
    calls += [
        ("contract", lambda: contraction.contract(f8, f8, np.empty((2, 2)))),
        ("finish_mse", lambda: head_kernels.finish_mse(
            f8, v, v, v, v, f8, 1e-6, 0, 0, 1.0, 1e-16, 3.0, 8.0, 2.0, f8.copy(), f8.copy())),
        ("finish_softmax", lambda: head_kernels.finish_softmax(
            f8, f8, f8, v, v, v, v, 1e-6, 1.0, 1e-16, 0, 3.0, 8.0, 2.0, f8.copy(), f8.copy())),
        ("entry_differences", lambda: entry_kernel.entry_differences(
            f8, i8, i8, np.ones(1), np.array([1.0, -1.0]), np.zeros(0, np.int64),
            np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.int64),
            np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(1), np.zeros(1),
            np.zeros(1), np.zeros(1), np.zeros(1), 0, 1.0, f8, f8, v, f8, f8, 2,
            np.empty((1, 2)), np.empty((1, 2)), np.zeros(1, np.uint8))),
    ]
    return calls


def _engine_kernels() -> list[tuple[str, Callable[[], Any]]]:
    """Checks that compile the Numba engine's kernel for the commonest argument types."""
    import numba
    import numpy as np

    from .engines.numba import compile_kernel

    @numba.njit(cache=False)
    def vector_loss(w):  # pragma: no cover - compiled
        return 0.5 * np.sum(w * w)

    @numba.njit(cache=False)
    def matrix_loss(W):  # pragma: no cover - compiled
        return 0.5 * np.sum(W * W)

    return [("engine: f(float64 vector)", lambda: compile_kernel(vector_loss, np.ones(3))),
            ("engine: f(float64 matrix)", lambda: compile_kernel(matrix_loss, np.ones((2, 2))))]


def _verdict_kernel() -> list[tuple[str, Callable[[], Any]]]:
    def load() -> None:
        from .verdict import kernel  # noqa: F401 - compiled (or loaded) at import

    return [("verdict metrics", load)]


def warmup(stream: TextIO | None = None) -> dict[str, float]:
    """Compile (or load from Numba's cache) every gradprobe kernel; return seconds per kernel.

    The Numba kernels of :mod:`gradprobe.nn` in float64 and float32, the
    verdict kernel, and the Numba engine's kernel for a loss of one float64
    vector and of one float64 matrix (the engine's kernel depends on the
    types of ``f``'s arguments; other layouts compile on their first large
    check). Each line is written to ``stream`` as it finishes.

    Examples
    --------
    >>> times = warmup(stream=None)  # doctest: +SKIP
    >>> sorted(times)[:2]  # doctest: +SKIP
    ['activation_backward float32', 'activation_backward float64']
    """
    import numpy as np

    install_notice()
    with _lock:
        _state["announced"] = True  # warm-up says what it compiles itself
    calls = [(f"{name} {np.dtype(dt).name}", fn) for dt in (np.float64, np.float32)
             for name, fn in _nn_kernels(np.dtype(dt))]
    calls += _verdict_kernel() + _engine_kernels()
    times: dict[str, float] = {}
    for name, fn in calls:
        start = time.perf_counter()
        fn()
        times[name] = time.perf_counter() - start
        if stream is not None:
            stream.write(f"{name:<36s} {times[name]:7.2f} s\n")
            stream.flush()
    return times
