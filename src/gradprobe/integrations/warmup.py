"""``python -m gradprobe warmup``: compile and cache every Numba kernel ahead of time
(a CI step, a Docker build), so that no first check pays for a compile.
"""
from __future__ import annotations

import time
from typing import Any, Callable, TextIO

from .. import config
from ..compilation import quiet_notice



def _nn_kernels(dtype: Any) -> list[tuple[str, Callable[[], Any]]]:
    """Calls that compile every kernel of :mod:`gradprobe.nn` for ``dtype``."""
    import numpy as np

    from ..nn import contraction, entry_kernel, head_kernels, kernels

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

    from ..engines.numba import compile_kernel

    @numba.njit(**config.NUMBA_UNCACHED_FLAGS)
    def vector_loss(w):  # pragma: no cover - compiled
        return 0.5 * np.sum(w * w)

    @numba.njit(**config.NUMBA_UNCACHED_FLAGS)
    def matrix_loss(W):  # pragma: no cover - compiled
        return 0.5 * np.sum(W * W)

    return [("engine: f(float64 vector)", lambda: compile_kernel(vector_loss, np.ones(3))),
            ("engine: f(float64 matrix)", lambda: compile_kernel(matrix_loss, np.ones((2, 2))))]


def _verdict_kernel() -> list[tuple[str, Callable[[], Any]]]:
    def load() -> None:
        from ..report import metrics_kernel  # noqa: F401 - compiled (or loaded) at import

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

    quiet_notice()  # warm-up says what it compiles itself
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
