"""Black-box NumPy layers with hand-written backward passes (for check_vjp).

Each layer is a pair ``f(*inputs)`` / ``vjp(u, *inputs)`` that gradprobe sees
only as functions: the compressed Jacobians of :func:`gradprobe.check_vjp`
must find their structure by themselves. They serve the tests of the
grouping, the W7 benchmark and the docs page on compressed layer checks.

Examples
--------
>>> import gradprobe as gp
>>> f, vjp, inputs = dense_tanh(batch=4, n_in=8, n_out=6)
>>> gp.check_vjp(f, inputs, vjp).passed
True
"""
from __future__ import annotations

from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

Layer = tuple[Callable[..., np.ndarray], Callable[..., tuple], tuple[np.ndarray, ...]]


def dense_tanh(batch: int = 64, n_in: int = 128, n_out: int = 128, seed: int = 0) -> Layer:
    """``tanh(x @ W + b)`` and its backward pass, with a random point."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n_in))
    W = rng.standard_normal((n_in, n_out)) / np.sqrt(n_in)
    b = 0.1 * rng.standard_normal(n_out)

    def f(x: np.ndarray, W: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.tanh(x @ W + b)

    def vjp(u: np.ndarray, x: np.ndarray, W: np.ndarray, b: np.ndarray) -> tuple:
        d = u * (1.0 - np.tanh(x @ W + b) ** 2)
        return d @ W.T, x.T @ d, d.sum(axis=0)

    return f, vjp, (x, W, b)


def conv3x3(batch: int = 8, c_in: int = 16, c_out: int = 32, size: int = 16,
            seed: int = 0) -> Layer:
    """A 3x3 convolution (NCHW, zero padding 1, stride 1) with a bias, then tanh."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, c_in, size, size))
    K = rng.standard_normal((c_out, c_in, 3, 3)) / np.sqrt(9 * c_in)
    b = 0.1 * rng.standard_normal(c_out)

    def pre(x: np.ndarray, K: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        padded = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)))
        windows = sliding_window_view(padded, (3, 3), axis=(2, 3))  # b c h w i j
        z = np.tensordot(windows, K, axes=([1, 4, 5], [1, 2, 3]))   # b h w o
        return z.transpose(0, 3, 1, 2) + b[None, :, None, None], windows

    def f(x: np.ndarray, K: np.ndarray, b: np.ndarray) -> np.ndarray:
        return np.tanh(pre(x, K, b)[0])

    def vjp(u: np.ndarray, x: np.ndarray, K: np.ndarray, b: np.ndarray) -> tuple:
        z, windows = pre(x, K, b)
        d = u * (1.0 - np.tanh(z) ** 2)                              # b o h w
        dK = np.tensordot(d, windows, axes=([0, 2, 3], [0, 2, 3]))   # o c i j
        h, w = x.shape[2:]
        dx = np.zeros((x.shape[0], x.shape[1], h + 2, w + 2))
        for i in range(3):
            for j in range(3):
                dx[:, :, i:i + h, j:j + w] += np.einsum("bohw,oc->bchw", d, K[:, :, i, j])
        return dx[:, :, 1:-1, 1:-1], dK, d.sum(axis=(0, 2, 3))

    return f, vjp, (x, K, b)


def elementwise(shape: tuple[int, ...] = (64, 1024), seed: int = 0) -> Layer:
    """``x * tanh(x)``, entry by entry."""
    x = np.random.default_rng(seed).standard_normal(shape)

    def f(x: np.ndarray) -> np.ndarray:
        return x * np.tanh(x)

    def vjp(u: np.ndarray, x: np.ndarray) -> tuple:
        t = np.tanh(x)
        return (u * (t + x * (1.0 - t * t)),)

    return f, vjp, (x,)


def row_softmax(shape: tuple[int, int] = (32, 200), seed: int = 0) -> Layer:
    """Softmax over the last axis: every output of a row depends on the whole row."""
    x = np.random.default_rng(seed).standard_normal(shape)

    def f(x: np.ndarray) -> np.ndarray:
        e = np.exp(x - x.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    def vjp(u: np.ndarray, x: np.ndarray) -> tuple:
        s = f(x)
        return (s * (u - np.sum(u * s, axis=-1, keepdims=True)),)

    return f, vjp, (x,)


def layer_norm(shape: tuple[int, int] = (16, 48), seed: int = 0) -> Layer:
    """Layer normalisation over the last axis with a gain and a bias."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(shape)
    g = 1.0 + 0.1 * rng.standard_normal(shape[-1])
    beta = 0.1 * rng.standard_normal(shape[-1])
    eps = 1e-5

    def norm(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mu = x.mean(axis=-1, keepdims=True)
        inv = 1.0 / np.sqrt(x.var(axis=-1, keepdims=True) + eps)
        return (x - mu) * inv, inv

    def f(x: np.ndarray, g: np.ndarray, beta: np.ndarray) -> np.ndarray:
        return norm(x)[0] * g + beta

    def vjp(u: np.ndarray, x: np.ndarray, g: np.ndarray, beta: np.ndarray) -> tuple:
        xhat, inv = norm(x)
        dxhat = u * g
        n = x.shape[-1]
        dx = inv / n * (n * dxhat - dxhat.sum(-1, keepdims=True)
                        - xhat * np.sum(dxhat * xhat, -1, keepdims=True))
        return dx, np.sum(u * xhat, axis=0), u.sum(axis=0)

    return f, vjp, (x, g, beta)


def weakly_coupled(batch: int = 8, n_in: int = 12, n_out: int = 10, seed: int = 0) -> Layer:
    """``x @ W + 1e-3 * sum(W**2)``: every output depends (weakly) on every weight."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n_in))
    W = rng.standard_normal((n_in, n_out))

    def f(x: np.ndarray, W: np.ndarray) -> np.ndarray:
        return x @ W + 1e-3 * np.sum(W ** 2)

    def vjp(u: np.ndarray, x: np.ndarray, W: np.ndarray) -> tuple:
        return u @ W.T, x.T @ u + 2e-3 * W * u.sum()

    return f, vjp, (x, W)


def max_pool(shape: tuple[int, ...] = (2, 3, 8, 8), seed: int = 0) -> Layer:
    """2x2 max pooling (stride 2): which input moves an output depends on the data."""
    x = np.random.default_rng(seed).standard_normal(shape)

    def windows(x: np.ndarray) -> np.ndarray:
        n, c, h, w = x.shape
        return x.reshape(n, c, h // 2, 2, w // 2, 2)

    def f(x: np.ndarray) -> np.ndarray:
        return windows(x).max(axis=(3, 5))

    def vjp(u: np.ndarray, x: np.ndarray) -> tuple:
        win = windows(x)
        hit = win == win.max(axis=(3, 5), keepdims=True)
        return ((hit * u[:, :, :, None, :, None]).reshape(x.shape),)

    return f, vjp, (x,)


def relu_dense(batch: int = 16, n_in: int = 24, n_out: int = 20, seed: int = 0) -> Layer:
    """``relu(x @ W)``: supports with data-dependent holes."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, n_in))
    W = rng.standard_normal((n_in, n_out))

    def f(x: np.ndarray, W: np.ndarray) -> np.ndarray:
        return np.maximum(x @ W, 0.0)

    def vjp(u: np.ndarray, x: np.ndarray, W: np.ndarray) -> tuple:
        d = u * (x @ W > 0)
        return d @ W.T, x.T @ d

    return f, vjp, (x, W)


LAYERS = {"dense_tanh": dense_tanh, "conv3x3": conv3x3, "elementwise": elementwise,
          "row_softmax": row_softmax, "layer_norm": layer_norm,
          "weakly_coupled": weakly_coupled, "max_pool": max_pool, "relu_dense": relu_dense}


def planted(vjp: Callable[..., tuple], which: int, index: tuple[int, ...],
            factor: float = 1.01) -> Callable[..., tuple]:
    """``vjp`` with one entry of its ``which``-th gradient multiplied by ``factor``."""
    def wrong(u: np.ndarray, *inputs: np.ndarray) -> tuple:
        grads = [np.array(g, dtype=np.float64) for g in vjp(u, *inputs)]
        grads[which][index] *= factor
        return tuple(grads)

    return wrong
