"""Accuracy of each difference method against exact derivatives.

Prints, for a few functions and both dtypes, the largest relative error of
``gp.numerical_gradient`` against the exact gradient, and whether the
reported error bars contained the true error. Run with::

    python benchmarks/accuracy_table.py
"""
from __future__ import annotations

import numpy as np

import gradprobe as gp

rng = np.random.default_rng(0)
X = rng.normal(size=(64, 10))
T = rng.normal(size=(64, 3))


def tanh_mlp(W1, W2):
    return 0.5 * np.sum((np.tanh(X @ W1) @ W2 - T) ** 2) / X.shape[0]


def tanh_mlp_grad(W1, W2):
    H = np.tanh(X @ W1)
    dY = (H @ W2 - T) / X.shape[0]
    return X.T @ ((dY @ W2.T) * (1 - H * H)), H.T @ dY


FUNCTIONS = {
    "sum sin(x) exp(x/3)": (lambda x: np.sum(np.sin(x) * np.exp(x / 3)),
                            lambda x: np.exp(x / 3) * (np.cos(x) + np.sin(x) / 3),
                            lambda: (rng.uniform(-3, 3, 50),)),
    "log-sum-exp": (lambda x: np.log(np.sum(np.exp(x))),
                    lambda x: np.exp(x) / np.sum(np.exp(x)),
                    lambda: (rng.normal(size=50),)),
    "rosenbrock": (lambda x: np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2),
                   lambda x: np.concatenate([
                       -400 * x[:-1] * (x[1:] - x[:-1] ** 2) - 2 * (1 - x[:-1]), [0.0]])
                   + np.concatenate([[0.0], 200 * (x[1:] - x[:-1] ** 2)]),
                   lambda: (rng.uniform(-1.5, 1.5, 20),)),
    "tanh MLP, batch 64": (tanh_mlp, tanh_mlp_grad,
                           lambda: (rng.normal(0, 0.5, (10, 16)), rng.normal(0, 0.5, (16, 3)))),
}


def main() -> None:
    print(f"{'function':22s} {'dtype':8s} {'upcast':6s} " + " ".join(
        f"{m:>18s}" for m in ("forward", "central", "richardson", "complex")))
    for name, (f, grad, point) in FUNCTIONS.items():
        params64 = point()
        exact = grad(*params64)
        exact = exact if isinstance(exact, tuple) else (exact,)
        for dtype, upcast in ((np.float64, True), (np.float32, True), (np.float32, False)):
            params = tuple(p.astype(dtype) for p in params64)
            exact_here = grad(*(p.astype(np.float64) for p in params))
            exact_here = exact_here if isinstance(exact_here, tuple) else (exact_here,)
            cells = []
            for method in ("forward", "central", "richardson", "complex"):
                grads = tuple(g.astype(dtype) for g in exact_here)
                report = gp.check(f, params, grads, method=method, upcast=upcast)
                scale = max(np.max(np.abs(g)) for g in exact_here)
                err = max(np.max(np.abs(p.numeric - g))
                          for p, g in zip(report.params.values(), exact_here)) / scale
                inside = all(np.all(np.abs(p.numeric - g) <= p.error_bar + 1e-12 * scale)
                             for p, g in zip(report.params.values(), exact_here))
                flag = "" if inside else "*"
                cells.append(f"{err:9.1e}{flag:1s} {'pass' if report.passed else 'FAIL':>6s}")
            print(f"{name:22s} {np.dtype(dtype).name:8s} {str(upcast):6s} " + " ".join(
                f"{c:>18s}" for c in cells))
    print("\nmax |numeric - exact| / max |exact| per method; 'pass' = gp.check verdict "
          "with the exact gradient (in the parameters' dtype);\n'*' = some entry's "
          "true error exceeded its reported error bar.")


if __name__ == "__main__":
    main()
