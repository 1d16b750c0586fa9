"""``python -m gradprobe bench``: a quick W1/W2-style comparison, in seconds.

Two small versions of the benchmark workloads (the full ones live in
``benchmarks/`` and take minutes):

* **W1 dense layer**: a full structured check (:func:`gradprobe.check_model`)
  of ``Dense(n, n)`` with MSE, batch 64, against the seed-style loop (copy
  ``W``, set ``w[i, j] +- eps``, recompute the cost with NumPy) timed on a
  sample of entries and extrapolated to all of them;
* **W2 njit loss**: a full check of a small MLP loss written as a
  ``numba.njit`` function, on the Numba engine (the kernel's compile or cache
  load timed apart, on a first tiny check) and on the Python engine.
"""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

#: Batch of both workloads.
BATCH = 64
#: Entries of ``W`` timed with the seed-style loop (then extrapolated).
SEED_LOOP_ENTRIES = 500


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def seed_loop_seconds(W: np.ndarray, b: np.ndarray, X: np.ndarray, T: np.ndarray,
                      entries: int, eps: float = 1e-5) -> float:
    """Seconds per entry of the seed-style loop on ``Z = X W + b``, MSE.

    Examples
    --------
    >>> W, b, X, T = np.ones((8, 8)), np.zeros(8), np.ones((4, 8)), np.zeros((4, 8))
    >>> seed_loop_seconds(W, b, X, T, 5) > 0
    True
    """
    def cost(Wc: np.ndarray) -> float:
        return 0.5 * float(np.sum((X @ Wc + b - T) ** 2)) / len(X)

    flat_count = W.size
    picks = np.random.default_rng(0).choice(flat_count, size=min(entries, flat_count),
                                            replace=False)
    start = time.perf_counter()
    for flat in picks:
        i, j = divmod(int(flat), W.shape[1])
        Wp = W.copy()
        Wp[i, j] += eps
        plus = cost(Wp)
        Wp[i, j] -= 2 * eps
        minus = cost(Wp)
        _ = (plus - minus) / (2 * eps)
    return (time.perf_counter() - start) / len(picks)


def dense_rows(n: int = 512) -> list[tuple[str, ...]]:
    """W1-style rows: structured full check vs the extrapolated seed-style loop."""
    from .api import check_model
    from .nn import MSE, Dense, Sequential

    rng = np.random.default_rng(0)
    model = Sequential([Dense(n, n, seed=0)], loss=MSE())
    X, T = rng.standard_normal((BATCH, n)), rng.standard_normal((BATCH, n))
    check_model(Sequential([Dense(4, 4, seed=0)], loss=MSE()), X[:, :4], T[:, :4])  # warm-up
    seconds, report = _timed(lambda: check_model(model, X, T))
    params = model.parameters()
    W, b = params[next(k for k in params if params[k].ndim == 2)], \
        params[next(k for k in params if params[k].ndim == 1)]
    per_entry = seed_loop_seconds(W, b, X, T, SEED_LOOP_ENTRIES)
    entries = W.size + b.size
    loop = per_entry * entries
    return [
        (f"W1 Dense({n}, {n}), batch {BATCH}: structured full check",
         f"{entries:,}", f"{seconds:.3g}", "1", "passed" if report.passed else "FAILED"),
        (f"W1 seed-style loop (extrapolated from {SEED_LOOP_ENTRIES} entries)",
         f"{entries:,}", f"{loop:.3g}", f"{loop / seconds:,.0f}x slower", "-"),
    ]


_MLP_LOSS: Any = None


def _mlp_loss() -> Any:
    """The W2-style loss, compiled once per process (module-level, so the
    engine's kernel is shared with every other f of the same argument types)."""
    global _MLP_LOSS
    if _MLP_LOSS is None:
        import numba

        @numba.njit
        def mlp_loss(W1: np.ndarray, b1: np.ndarray, W2: np.ndarray, X: np.ndarray,
                     Y: np.ndarray) -> float:
            total = 0.0
            for n in range(X.shape[0]):
                out = 0.0
                for j in range(W1.shape[1]):
                    z = b1[j]
                    for i in range(W1.shape[0]):
                        z += X[n, i] * W1[i, j]
                    out += np.tanh(z) * W2[j]
                total += 0.5 * (out - Y[n]) ** 2
            return total / X.shape[0]

        _MLP_LOSS = mlp_loss
    return _MLP_LOSS


def njit_rows(hidden: int = 64, inputs: int = 32) -> list[tuple[str, ...]]:
    """W2-style rows: a small njit MLP loss on the Numba and Python engines."""
    import numba

    from .api import check

    mlp_loss = _mlp_loss()
    rng = np.random.default_rng(0)
    W1 = rng.standard_normal((inputs, hidden)) / inputs ** 0.5
    b1, W2 = np.zeros(hidden), rng.standard_normal(hidden) / hidden ** 0.5
    X, Y = rng.standard_normal((BATCH, inputs)), rng.standard_normal(BATCH)
    H = np.tanh(X @ W1 + b1)
    delta = (H @ W2 - Y) / BATCH
    dH = np.outer(delta, W2) * (1 - H ** 2)
    grads = (X.T @ dH, dH.sum(axis=0), H.T @ delta)
    params = (W1, b1, W2)
    entries = sum(p.size for p in params)
    tiny = tuple(np.ones(p.shape[:1] + (2,) * (p.ndim - 1)) if p.ndim > 1 else np.ones(2)
                 for p in params)
    tiny_grads = tuple(np.zeros_like(p) for p in tiny)
    first, _ = _timed(lambda: check(mlp_loss, tiny, tiny_grads,  # types as below
                                    args=(X[:, :tiny[0].shape[0]], Y), progress=False))
    threads = numba.get_num_threads()
    numba_s, r_numba = _timed(lambda: check(mlp_loss, params, grads, args=(X, Y),
                                            progress=False))
    python_s, r_python = _timed(lambda: check(mlp_loss, params, grads, args=(X, Y),
                                              backend="python", progress=False))
    same = all(r_numba.params[k].numeric_flat.tobytes() == r_python.params[k].numeric_flat
               .tobytes() for k in r_numba.params)
    return [
        ("W2 njit MLP loss: first check (f compile + kernel compile/cache load)",
         "-", f"{first:.3g}", "-", "-"),
        (f"W2 njit MLP loss: Numba engine, {threads} threads", f"{entries:,}",
         f"{numba_s:.3g}", "1", "passed" if r_numba.passed else "FAILED"),
        ("W2 njit MLP loss: Python engine", f"{entries:,}", f"{python_s:.3g}",
         f"{python_s / numba_s:.2f}x slower",
         "bit-identical" if same else "values DIFFER"),
    ]


def format_table(rows: list[tuple[str, ...]]) -> str:
    """A plain-text table with a header.

    Examples
    --------
    >>> print(format_table([("a", "1", "0.5", "1", "passed")]))
    case  entries  seconds  ratio  result
    a           1      0.5  1      passed
    """
    header = ("case", "entries", "seconds", "ratio", "result")
    table = [header] + [tuple(r) for r in rows]
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    right = {1, 2}
    lines = []
    for row in table:
        cells = [c.rjust(w) if i in right else c.ljust(w)
                 for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def run(size: int = 512, njit: bool = True) -> str:
    """Run both workloads and return the table (a few seconds).

    Examples
    --------
    >>> "structured" in run(size=32, njit=False)
    True
    """
    rows = dense_rows(size)
    if njit:
        rows += njit_rows()
    return format_table(rows)
