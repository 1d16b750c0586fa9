"""A softmax layer with a hand-written backward pass, checked with ``check_layer``.

``s = softmax(z)`` along the last axis. Its Jacobian is
``diag(s) - s s^T``, so the backward pass is ``s * (g - sum(g * s))``.

The classic bug keeps only the diagonal of the Jacobian, as for an
elementwise sigmoid: ``s * (1 - s) * g``. ``check_layer`` catches it, and
``check_jacobian`` shows the missing off-diagonal terms directly.

Run with ``python -m gradprobe.examples.softmax_layer``.
"""
from __future__ import annotations

import numpy as np

import gradprobe as gp
from gradprobe.checks.layer import check_layer
from gradprobe.checks.vector import check_jacobian


def softmax(z: np.ndarray) -> np.ndarray:
    """Numerically stable softmax along the last axis.

    Examples
    --------
    >>> softmax(np.array([0.0, np.log(3.0)]))
    array([0.25, 0.75])
    """
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


class Softmax:
    """Softmax along the last axis; no parameters."""

    def __init__(self) -> None:
        self.s: np.ndarray | None = None

    def forward(self, z: np.ndarray) -> np.ndarray:
        self.s = softmax(z)
        return self.s

    def backward(self, g: np.ndarray) -> np.ndarray:
        s = self.s
        return s * (g - np.sum(g * s, axis=-1, keepdims=True))


class SoftmaxDiagonalOnly(Softmax):
    """The classic bug: only the diagonal ``s (1 - s)`` of the Jacobian."""

    def backward(self, g: np.ndarray) -> np.ndarray:
        s = self.s
        return s * (1.0 - s) * g


def logits(seed: int = 0, dtype: object = np.float64) -> np.ndarray:
    """A batch of 5 rows of 4 logits."""
    return np.random.default_rng(seed).normal(size=(5, 4)).astype(dtype)


def jacobian(z: np.ndarray) -> np.ndarray:
    """``d softmax(z) / d z`` for one vector ``z``: ``diag(s) - s s^T``."""
    s = softmax(z)
    return np.diag(s) - np.outer(s, s)


def check_correct(dtype: object = np.float64) -> gp.CheckReport:
    """The correct backward pass passes."""
    return check_layer(Softmax(), logits(dtype=dtype))


def check_diagonal_only(dtype: object = np.float64) -> gp.CheckReport:
    """The diagonal-only backward pass fails on the input gradient."""
    return check_layer(SoftmaxDiagonalOnly(), logits(dtype=dtype))


def check_jacobians() -> tuple[gp.CheckReport, gp.CheckReport]:
    """The full Jacobian of one row: correct, and diagonal only."""
    z = logits()[0]
    s = softmax(z)
    return (check_jacobian(softmax, z, jacobian(z)),
            check_jacobian(softmax, z, np.diag(s * (1.0 - s))))


def main() -> None:
    print("-- softmax layer, correct backward:")
    print(check_correct())
    print("\n-- softmax layer, backward with only the diagonal of the Jacobian:")
    print(check_diagonal_only())
    right, diagonal = check_jacobians()
    print("\n-- Jacobian of one row, correct:")
    print(right)
    print("\n-- Jacobian of one row, diagonal only:")
    print(diagonal)


if __name__ == "__main__":
    main()
