"""A linear neuron: two inputs, one output, no activation, squared loss.

Weights ``[0.34, 0.56]``, bias ``0.54``, input ``[1, 0]``: ``out = 0.88``.
With target ``y = 0.1056`` the loss is ``E = 1/2 (y - out)^2`` and backprop
gives ``dE/dw = (out - y) * x = [0.7744, 0]`` and ``dE/db = 0.7744``.

The original author perturbed the network *output* instead of the loss and
always got ``1``, whatever ``eps``: the numerical gradient must be of the
loss, which depends on the target. Both checks are shown.

Run with ``python -m gradprobe.examples.linear_neuron``.
"""
from __future__ import annotations

import numpy as np

import gradprobe as gp

X = np.array([1.0, 0.0])
TARGET = 0.1056


def output(w: np.ndarray, b: np.ndarray, x: np.ndarray) -> float:
    """The neuron's output ``w . x + b``."""
    return float(w @ x + b[0])


def loss(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: float) -> float:
    """Squared loss ``1/2 (y - out)^2``: what the gradient is a gradient *of*."""
    return 0.5 * (y - output(w, b, x)) ** 2


def backprop(w: np.ndarray, b: np.ndarray, x: np.ndarray, y: float):
    """Hand-written gradient of :func:`loss`."""
    delta = output(w, b, x) - y
    return delta * x, np.array([delta])


def point() -> tuple[np.ndarray, np.ndarray]:
    """The weights and bias of the text."""
    return np.array([0.34, 0.56]), np.array([0.54])


def check_loss() -> gp.CheckReport:
    """The right check: numerical gradient of the loss, targets included."""
    w, b = point()
    return gp.check(loss, (w, b), backprop, args=(X, TARGET))


def check_output_by_mistake() -> gp.CheckReport:
    """The mistake: the numerical gradient of the *output* (always ``x``, i.e. 1)."""
    w, b = point()
    return gp.check(output, (w, b), backprop(w, b, X, TARGET), args=(X,))


def main() -> None:
    w, b = point()
    print(f"out = {output(w, b, X):.4g}, backprop dw = {backprop(w, b, X, TARGET)[0]}, "
          f"db = {backprop(w, b, X, TARGET)[1]}")
    print("\n-- checking the loss E (correct):")
    print(check_loss())
    print("\n-- checking the output J instead of the loss (the original mistake):")
    print(check_output_by_mistake())


if __name__ == "__main__":
    main()
