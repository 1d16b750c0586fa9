"""A 2-2-1 feed-forward network with sigmoid units, trained on XOR.

For every weight matrix, every entry ``w[i, j]`` is perturbed by ``±eps``,
the cost is recomputed *with the targets*, and
``(cost_plus - cost_minus) / (2 eps)`` is compared with backprop's value
before the update step: PyBrain's ``gradientCheck()``, done by gradprobe.

The classic mistake shown here: the hidden layer's delta forgets the
derivative of its activation, ``sigmoid'(z) = s (1 - s)``.

Run with ``python -m gradprobe.examples.two_layer_net``.
"""
from __future__ import annotations

import numpy as np

import gradprobe as gp

X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
T = np.array([[0.0], [1.0], [1.0], [0.0]])


def sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def initial_params(seed: int = 1) -> dict[str, np.ndarray]:
    """Small random weights: W1 (2, 2), b1 (2,), W2 (2, 1), b2 (1,)."""
    rng = np.random.default_rng(seed)
    return {"W1": rng.normal(0, 1, (2, 2)), "b1": rng.normal(0, 0.1, 2),
            "W2": rng.normal(0, 1, (2, 1)), "b2": rng.normal(0, 0.1, 1)}


def cost(X: np.ndarray, T: np.ndarray, *, W1, b1, W2, b2) -> float:
    """Squared error ``1/2 sum (y - t)^2`` over the batch."""
    H = sigmoid(X @ W1 + b1)
    Y = sigmoid(H @ W2 + b2)
    return 0.5 * float(np.sum((Y - T) ** 2))


def backprop(X: np.ndarray, T: np.ndarray, *, W1, b1, W2, b2,
             forget_activation_derivative: bool = False) -> dict[str, np.ndarray]:
    """Hand-written gradient of :func:`cost` (optionally with the classic bug)."""
    H = sigmoid(X @ W1 + b1)
    Y = sigmoid(H @ W2 + b2)
    delta_out = (Y - T) * Y * (1 - Y)
    delta_hidden = delta_out @ W2.T
    if not forget_activation_derivative:
        delta_hidden = delta_hidden * H * (1 - H)
    return {"W1": X.T @ delta_hidden, "b1": delta_hidden.sum(axis=0),
            "W2": H.T @ delta_out, "b2": delta_out.sum(axis=0)}


def check_correct() -> gp.CheckReport:
    params = initial_params()
    return gp.check(cost, params, backprop(X, T, **params), args=(X, T))


def check_forgotten_derivative() -> gp.CheckReport:
    params = initial_params()
    grads = backprop(X, T, **params, forget_activation_derivative=True)
    return gp.check(cost, params, grads, args=(X, T))


def train(steps: int = 3, rate: float = 0.5) -> dict[str, np.ndarray]:
    """A few gradient-descent steps, checking the gradient before every update."""
    params = initial_params()
    for _ in range(steps):
        grads = backprop(X, T, **params)
        gp.assert_gradients(cost, params, grads, args=(X, T))
        params = {k: v - rate * grads[k] for k, v in params.items()}
    return params


def main() -> None:
    print("-- correct backprop:")
    print(check_correct())
    print("\n-- hidden delta without sigmoid'(z):")
    print(check_forgotten_derivative())
    params = train()
    print(f"\n3 checked training steps done; cost now {cost(X, T, **params):.4f}")


if __name__ == "__main__":
    main()
