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

Timings on a busy machine vary from run to run: the cases of a workload
run alternately, ``ROUNDS`` times (:func:`interleaved`), and the table shows
the fastest round with the median beside it; ratios come from the fastest
rounds, worded both ways (:func:`relative_speed`). Compilation on first use
is announced before it starts (through ``say``), so a cold run's wait is
explained.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import numpy as np

from ..config import BENCH_BATCH as BATCH, BENCH_ROUNDS as ROUNDS, BENCH_SIZE
from ..config import BENCH_SEED_LOOP_ENTRIES as SEED_LOOP_ENTRIES

Say = Callable[[str], None]


def _quiet(_: str) -> None:
    return None


def _timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    value = fn()
    return time.perf_counter() - start, value


def interleaved(cases: Sequence[tuple[str, Callable[[], Any]]],
                rounds: int = ROUNDS) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Time every case once per round, alternating the cases within each round.

    A load that comes and goes then slows every case alike instead of the one
    that happened to run during it. The order is reversed every other round
    (A B, B A, A B, ...), so neither case always runs first.

    Returns
    -------
    seconds : dict
        Case name -> the time of each round, in order.
    results : dict
        Case name -> what its last round returned.

    Examples
    --------
    >>> calls = []
    >>> seconds, _ = interleaved([("a", lambda: calls.append("a")),
    ...                           ("b", lambda: calls.append("b"))], rounds=3)
    >>> calls, [len(v) for v in seconds.values()]
    (['a', 'b', 'b', 'a', 'a', 'b'], [3, 3])
    """
    seconds: dict[str, list[float]] = {name: [] for name, _ in cases}
    results: dict[str, Any] = {}
    for r in range(rounds):
        for name, fn in (cases if r % 2 == 0 else list(cases)[::-1]):
            spent, results[name] = _timed(fn)
            seconds[name].append(spent)
    return seconds, results


def summary(seconds: Sequence[float]) -> str:
    """``"min (median m)"`` of a case's round times, for the table.

    Examples
    --------
    >>> summary([0.30, 0.10, 0.20])
    '0.1 (median 0.2)'
    """
    return f"{min(seconds):.3g} (median {float(np.median(seconds)):.3g})"


def _factor(ratio: float) -> str:
    return f"{ratio:.2g}" if ratio < 10 else f"{ratio:,.0f}"


def relative_speed(seconds: float, reference: float) -> str:
    """How ``seconds`` compares with ``reference``: ``"2.1x slower"`` or ``"1.3x faster"``.

    Examples
    --------
    >>> relative_speed(2.1, 1.0), relative_speed(1.0, 1.3), relative_speed(1.02, 1.0)
    ('2.1x slower', '1.3x faster', 'same speed')
    >>> relative_speed(665.0, 0.01)
    '66,500x slower'
    """
    if seconds <= 0 or reference <= 0:
        return "-"
    ratio = seconds / reference
    if abs(ratio - 1.0) < 0.05:
        return "same speed"
    return f"{_factor(ratio)}x slower" if ratio >= 1 else f"{_factor(1 / ratio)}x faster"


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


def dense_rows(n: int = BENCH_SIZE, say: Say = _quiet,
               rounds: int = ROUNDS) -> list[tuple[str, ...]]:
    """W1-style rows: structured full check vs the extrapolated seed-style loop."""
    from ..checks.scalar import check_model
    from ..nn import MSE, Dense, Sequential

    rng = np.random.default_rng(0)
    model = Sequential([Dense(n, n, seed=0)], loss=MSE())
    X, T = rng.standard_normal((BATCH, n)), rng.standard_normal((BATCH, n))
    from ..nn.backends import default_kernels

    if default_kernels().compiles_on_first_use:
        say("compiling gradprobe.nn's Numba kernels on their first call (loaded from Numba's "
            "disk cache on later runs) ...")
    else:
        say("gradprobe.nn runs on the C kernels (compiled at install): nothing to compile ...")
    compile_s, _ = _timed(lambda: check_model(Sequential([Dense(4, 4, seed=0)], loss=MSE()),
                                              X[:, :4], T[:, :4]))
    say(f"... ready in {compile_s:.3g} s")
    params = model.parameters()
    W, b = params[next(k for k in params if params[k].ndim == 2)], \
        params[next(k for k in params if params[k].ndim == 1)]
    entries = W.size + b.size
    seconds, results = interleaved([
        ("structured", lambda: check_model(model, X, T)),
        ("loop", lambda: seed_loop_seconds(W, b, X, T, SEED_LOOP_ENTRIES))], rounds)
    report = results["structured"]
    # each round timed the loop on its sample of entries: extrapolate to all of them
    loop = [s * entries / min(SEED_LOOP_ENTRIES, W.size) for s in seconds["loop"]]
    best = min(seconds["structured"])
    return [
        (f"W1 Dense({n}, {n}), batch {BATCH}: structured full check",
         f"{entries:,}", summary(seconds["structured"]), "1",
         "passed" if report.passed else "FAILED"),
        (f"W1 seed-style loop (extrapolated from {SEED_LOOP_ENTRIES} entries a round)",
         f"{entries:,}", summary(loop), relative_speed(min(loop), best), "-"),
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


def njit_rows(hidden: int = 64, inputs: int = 32, say: Say = _quiet,
              rounds: int = ROUNDS) -> list[tuple[str, ...]]:
    """W2-style rows: a small njit MLP loss on the Numba and Python engines."""
    import numba

    from ..checks.scalar import check

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
    say("compiling the njit loss and the Numba engine's kernel on their first call "
        "(the kernel is loaded from Numba's disk cache on later runs) ...")
    from ..engines.numba import compile_kernel

    tiny_X = np.ascontiguousarray(X[:, :tiny[0].shape[0]])  # C order, as X: the same types

    def first_check() -> None:
        check(mlp_loss, tiny, tiny_grads, args=(tiny_X, Y), progress=False)
        # a tiny check runs f from Python rather than compile the kernel (it would not
        # pay); the timed rows below must not pay for that compile: do it here
        compile_kernel(mlp_loss, tiny, args=(tiny_X, Y))

    first, _ = _timed(first_check)  # the same argument types as the timed rows
    say(f"... ready in {first:.3g} s")
    threads = numba.get_num_threads()
    seconds, results = interleaved([
        ("numba", lambda: check(mlp_loss, params, grads, args=(X, Y), progress=False)),
        ("python", lambda: check(mlp_loss, params, grads, args=(X, Y), backend="python",
                                 progress=False))], rounds)
    r_numba, r_python = results["numba"], results["python"]
    same = all(r_numba.params[k].numeric_flat.tobytes() == r_python.params[k].numeric_flat
               .tobytes() for k in r_numba.params)
    return [
        ("W2 njit MLP loss: first check (f compile + kernel compile/cache load)",
         "-", f"{first:.3g}", "-", "-"),
        (f"W2 njit MLP loss: Numba engine, {threads} threads", f"{entries:,}",
         summary(seconds["numba"]), "1", "passed" if r_numba.passed else "FAILED"),
        ("W2 njit MLP loss: Python engine", f"{entries:,}", summary(seconds["python"]),
         relative_speed(min(seconds["python"]), min(seconds["numba"])),
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


def run(size: int = BENCH_SIZE, njit: bool = True, say: Say = _quiet,
        rounds: int = ROUNDS) -> str:
    """Run both workloads and return the table (a few seconds once compiled).

    ``say`` gets a line before anything compiles on its first call (the CLI
    prints it on stderr).

    Examples
    --------
    >>> "structured" in run(size=32, njit=False)
    True
    """
    rows = dense_rows(size, say, rounds)
    if njit:
        rows += njit_rows(say=say, rounds=rounds)
    return format_table(rows)
