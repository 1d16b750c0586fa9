"""A training loop watched by :class:`gradprobe.GradientMonitor`.

A 32-64-1 tanh network is trained by plain minibatch gradient descent with a
hand-written NumPy backward pass. The backward pass has a planted bug that only
starts at step ``BUG_STEP`` (300): from then on the hidden bias gradient is
scaled by 2, the kind of bug that hides behind a code path taken late in
training (a schedule, a warm-up, a cache). The monitor checks every 100 steps
with ``mode="auto"`` and a 0.05 s budget: the network has 2,177 parameters, too
many for a full check in that budget, so each check is 4 random directions
plus a sample of every parameter (a few hundred evaluations, a few
milliseconds). Checks at steps 0, 100 and 200 pass; the check at step 300
fails and names ``b1``.

Run with ``python -m gradprobe.examples.monitor_training``.
"""
from __future__ import annotations

import warnings
from typing import Any

import numpy as np

import gradprobe as gp

#: Step from which the backward pass is wrong.
BUG_STEP = 300
#: Sizes of the network and the minibatches.
INPUTS, HIDDEN, BATCH = 32, 64, 64


def init(seed: int = 0) -> dict[str, np.ndarray]:
    """Parameters of the 32-64-1 network."""
    rng = np.random.default_rng(seed)
    return {"W1": rng.normal(scale=INPUTS ** -0.5, size=(INPUTS, HIDDEN)),
            "b1": np.zeros(HIDDEN),
            "W2": rng.normal(scale=HIDDEN ** -0.5, size=(HIDDEN, 1)),
            "b2": np.zeros(1)}


def loss(X: np.ndarray, T: np.ndarray, W1: np.ndarray, b1: np.ndarray, W2: np.ndarray,
         b2: np.ndarray) -> float:
    """Mean squared error ``1/(2B) sum (tanh(X W1 + b1) W2 + b2 - T)^2``."""
    out = np.tanh(X @ W1 + b1) @ W2 + b2
    return 0.5 * float(np.sum((out - T) ** 2)) / len(X)


def backward(params: dict[str, np.ndarray], X: np.ndarray, T: np.ndarray,
             step: int = 0, bug_from: int | None = BUG_STEP) -> dict[str, np.ndarray]:
    """Hand-written backprop; wrong (``b1`` gradient x 2) from step ``bug_from`` on."""
    H = np.tanh(X @ params["W1"] + params["b1"])
    delta = (H @ params["W2"] + params["b2"] - T) / len(X)
    dH = (delta @ params["W2"].T) * (1.0 - H ** 2)
    grads = {"W1": X.T @ dH, "b1": dH.sum(axis=0),
             "W2": H.T @ delta, "b2": delta.sum(axis=0)}
    if bug_from is not None and step >= bug_from:
        grads["b1"] = 2.0 * grads["b1"]  # the planted bug
    return grads


def batches(seed: int = 1) -> Any:
    """An endless stream of minibatches of a smooth regression target."""
    rng = np.random.default_rng(seed)
    direction = rng.normal(size=(INPUTS, 1)) / INPUTS ** 0.5
    while True:
        X = rng.normal(size=(BATCH, INPUTS))
        yield X, np.sin(X @ direction)


def train(steps: int = 500, *, every: int = 100, bug_from: int | None = BUG_STEP,
          lr: float = 0.1, on_fail: Any = "warn", seed: int = 0,
          **monitor_options: Any) -> tuple[gp.GradientMonitor, list[float]]:
    """Train for ``steps`` steps under a monitor; return it and the losses.

    Examples
    --------
    >>> monitor, losses = train(steps=201, bug_from=None)
    >>> [(r.step, r.passed) for r in monitor.history]
    [(0, True), (100, True), (200, True)]
    >>> losses[-1] < losses[0]
    True
    """
    params = init(seed)
    monitor = gp.GradientMonitor(loss, every=every, on_fail=on_fail, **monitor_options)
    losses = []
    stream = batches(seed + 1)
    for step in range(steps):
        X, T = next(stream)
        grads = backward(params, X, T, step, bug_from)
        monitor.step(params, grads, X, T)
        losses.append(loss(X, T, **params))
        params = {k: v - lr * grads[k] for k, v in params.items()}
    return monitor, losses


def wrong_column_report(column: int = 5, seed: int = 0) -> gp.CheckReport:
    """A full check of the network where one hidden unit's ``W1`` column is 10 % off.

    The picture example of ``python -m gradprobe demo --plot DIR``: the
    heatmap of ``W1`` shows one failing column.

    Examples
    --------
    >>> r = wrong_column_report()
    >>> r.params["W1"].failed == INPUTS, r.params["W2"].passed
    (True, True)
    """
    params = init(seed)
    X, T = next(batches(seed + 1))
    grads = backward(params, X, T, bug_from=None)
    grads["W1"][:, column] *= 1.1
    return gp.check(loss, params, grads, args=(X, T))


def main() -> None:
    """Train 500 steps with the bug from step 300; print what the monitor saw."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", gp.GradientWarning)
        monitor, losses = train(500)
    print(f"trained 500 steps (loss {losses[0]:.4f} -> {losses[-1]:.4f}); the backward pass "
          f"is wrong from step {BUG_STEP}")
    print(f"{'step':>5}  {'passed':6}  {'strategy':18}  {'evals':>5}  {'ms':>6}  "
          "largest relative error")
    for r in monitor.history:
        worst = max(r.max_rel_error, key=lambda k: r.max_rel_error[k])
        print(f"{r.step:>5}  {str(r.passed):6}  {r.strategy:18}  {r.evaluations:>5}  "
              f"{1e3 * r.seconds:>6.1f}  {r.max_rel_error[worst]:.3g} ({worst})")
    first = monitor.first_failure
    print(f"\n{len(caught)} GradientWarning(s); first failing check: step "
          f"{first.step if first else None}")
    if caught:
        print(str(caught[0].message))


if __name__ == "__main__":  # pragma: no cover
    main()
