"""Linear regression with five features and a bias carried by ``x0 = 1``.

The cost is the mean squared error ``CF = 1/(2m) sum (Xw - y)^2`` over ``m``
samples, so ``dCF/dw = X^T (Xw - y) / m``. One gradient-descent step is taken
from an initial point, then every weight ``w0..w5`` is perturbed by
``e = 1e-4`` (as in the original text) and the slopes compared.

The classic mistake shown here: ``X^T (Xw - y)`` without the ``1/m`` of the
averaged cost; gradprobe diagnoses the factor.

Run with ``python -m gradprobe.examples.linear_regression``.
"""
from __future__ import annotations

import numpy as np

import gradprobe as gp

M = 50


def data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``X`` with a leading column of ones (x0) and five features; noisy targets."""
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(M, 5))
    X = np.hstack([np.ones((M, 1)), features])
    true_w = np.array([0.5, 1.0, -2.0, 0.3, 0.0, 1.5])
    y = X @ true_w + 0.1 * rng.normal(size=M)
    return X, y


def cost(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> float:
    r = X @ w - y
    return float(r @ r) / (2 * len(y))


def gradient(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    return X.T @ (X @ w - y) / len(y)


def gradient_without_mean(w: np.ndarray, X: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The bug: forgets the ``1/m`` of the averaged cost."""
    return X.T @ (X @ w - y)


def after_one_step(rate: float = 0.1) -> np.ndarray:
    """Weights after one gradient-descent step from zero."""
    X, y = data()
    w = np.zeros(6)
    return w - rate * gradient(w, X, y)


def check_correct() -> gp.CheckReport:
    X, y = data()
    return gp.check(cost, after_one_step(), gradient, args=(X, y), eps=1e-4)


def check_missing_mean() -> gp.CheckReport:
    X, y = data()
    return gp.check(cost, after_one_step(), gradient_without_mean, args=(X, y), eps=1e-4)


def main() -> None:
    print("-- correct gradient, e = 1e-4:")
    print(check_correct())
    print("\n-- gradient without 1/m:")
    print(check_missing_mean())


if __name__ == "__main__":
    main()
