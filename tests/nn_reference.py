"""Plain NumPy references for gradprobe.nn: layers, losses, backprop, loss closures.

Nothing here is fast or clever; every function is the textbook formula, so
the Numba kernels and the structured check can be tested against it.
"""
from __future__ import annotations

import numpy as np

from gradprobe import nn


def activation(name: str, z: np.ndarray) -> np.ndarray:
    if name == "relu":
        return np.maximum(z, 0)
    if name == "tanh":
        return np.tanh(z)
    if name == "sigmoid":
        return 1.0 / (1.0 + np.exp(-z))
    return z


def activation_grad(name: str, z: np.ndarray) -> np.ndarray:
    if name == "relu":
        return (z > 0).astype(z.dtype)
    if name == "tanh":
        return 1.0 - np.tanh(z) ** 2
    if name == "sigmoid":
        s = 1.0 / (1.0 + np.exp(-z))
        return s * (1.0 - s)
    return np.ones_like(z)


def one_hot(T: np.ndarray, classes: int) -> np.ndarray:
    T = np.asarray(T)
    if T.dtype.kind in "iu":
        return np.eye(classes)[T]
    return T.astype(np.float64)


def loss_value(loss: nn.Loss, a: np.ndarray, T: np.ndarray) -> float:
    c = 1.0 / a.shape[0] if loss.reduction == "mean" else 1.0
    if isinstance(loss, nn.MSE):
        return 0.5 * c * float(np.sum((a - T.reshape(a.shape)) ** 2))
    t = one_hot(T, a.shape[1])
    top = a.max(axis=1, keepdims=True)
    lse = top[:, 0] + np.log(np.exp(a - top).sum(axis=1))
    return c * float(np.sum(t.sum(axis=1) * lse - (t * a).sum(axis=1)))


def loss_grad(loss: nn.Loss, a: np.ndarray, T: np.ndarray) -> np.ndarray:
    c = 1.0 / a.shape[0] if loss.reduction == "mean" else 1.0
    if isinstance(loss, nn.MSE):
        return c * (a - T.reshape(a.shape))
    t = one_hot(T, a.shape[1])
    e = np.exp(a - a.max(axis=1, keepdims=True))
    p = e / e.sum(axis=1, keepdims=True)
    return c * (t.sum(axis=1, keepdims=True) * p - t)


def forward(model: nn.Sequential, X: np.ndarray, params: dict) -> list[np.ndarray]:
    """Every layer's input and the final output, in float64."""
    values = [np.asarray(X, dtype=np.float64)]
    for pos, layer in enumerate(model.layers):
        a = values[-1]
        if isinstance(layer, nn.Dense):
            values.append(a @ params[f"{pos}.W"] + params[f"{pos}.b"])
        else:
            values.append(activation(layer.name, a))
    return values


def model_loss(model: nn.Sequential, X: np.ndarray, T: np.ndarray):
    """``f(**params)``: the model's loss written in NumPy, for gp.check."""
    def f(**params):
        params = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
        return loss_value(model.loss_fn, forward(model, X, params)[-1], np.asarray(T))
    return f


def model_gradients(model: nn.Sequential, X: np.ndarray, T: np.ndarray) -> dict:
    """Textbook backpropagation in float64."""
    params = {k: np.asarray(v, dtype=np.float64) for k, v in model.parameters().items()}
    values = forward(model, X, params)
    grad = loss_grad(model.loss_fn, values[-1], np.asarray(T))
    out = {}
    for pos in range(len(model.layers) - 1, -1, -1):
        layer = model.layers[pos]
        if isinstance(layer, nn.Dense):
            out[f"{pos}.W"] = values[pos].T @ grad
            out[f"{pos}.b"] = grad.sum(axis=0)
            grad = grad @ params[f"{pos}.W"].T
        else:
            grad = grad * activation_grad(layer.name, values[pos])
    return {k: out[k] for k in params}


def seed_loop_gradient(model: nn.Sequential, X: np.ndarray, T: np.ndarray, h: float) -> dict:
    """The seeds' loop: copy the weights, perturb one entry by +-h, difference the losses."""
    f = model_loss(model, X, T)
    params = {k: np.asarray(v, dtype=np.float64) for k, v in model.parameters().items()}
    out = {}
    for name, array in params.items():
        grad = np.zeros(array.shape)
        for index in np.ndindex(array.shape):
            plus = {k: v.copy() for k, v in params.items()}
            minus = {k: v.copy() for k, v in params.items()}
            plus[name][index] += h
            minus[name][index] -= h
            grad[index] = (f(**plus) - f(**minus)) / (2 * h)
        out[name] = grad
    return out
