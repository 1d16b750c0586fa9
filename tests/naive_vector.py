"""Slow, obviously-correct references for the vector-valued checks.

Nothing clever: loops over entries with copies of the inputs, and
array-valued functions whose derivatives are written out by hand.
"""
from __future__ import annotations

import numpy as np


def jacobian_central(f, x, h=1e-6, args=()):
    """d f / d x by perturbing one entry at a time: shape f(x).shape + x.shape."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(f(x.copy(), *args), dtype=np.float64)
    jac = np.zeros(y.shape + x.shape)
    for index in np.ndindex(x.shape):
        plus, minus = x.copy(), x.copy()
        plus[index] += h
        minus[index] -= h
        column = (np.asarray(f(plus, *args), dtype=np.float64)
                  - np.asarray(f(minus, *args), dtype=np.float64)) / (2 * h)
        jac[(Ellipsis,) + index] = column
    return jac


def directional_central(f, inputs, tangent, h=1e-6):
    """(f(x + h t) - f(x - h t)) / 2h for a tuple of inputs and a tuple of tangents."""
    plus = [np.asarray(a, dtype=np.float64) + h * np.asarray(t, dtype=np.float64)
            for a, t in zip(inputs, tangent)]
    minus = [np.asarray(a, dtype=np.float64) - h * np.asarray(t, dtype=np.float64)
             for a, t in zip(inputs, tangent)]
    return (np.asarray(f(*plus), dtype=np.float64)
            - np.asarray(f(*minus), dtype=np.float64)) / (2 * h)


# -- array-valued functions with exact derivatives ----------------------------------
# Each case: inputs (tuple), f(*inputs), vjp(u, *inputs) -> tuple, jvp(t, *inputs).

def _softmax(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def elementwise_case(dtype=np.float64, seed=0):
    """x * tanh(x), shape (3, 4)."""
    x = np.random.default_rng(seed).normal(size=(3, 4)).astype(dtype)

    def f(x):
        return x * np.tanh(x)

    def d(x):
        t = np.tanh(x)
        return t + x * (1 - t * t)

    return (x,), f, (lambda u, x: (u * d(x),)), (lambda t, x: t * d(x))


def matrix_case(dtype=np.float64, seed=0):
    """x @ W: two inputs."""
    rng = np.random.default_rng(seed)
    x, W = rng.normal(size=(4, 3)).astype(dtype), rng.normal(size=(3, 5)).astype(dtype)

    def f(x, W):
        return x @ W

    return ((x, W), f, (lambda u, x, W: (u @ W.T, x.T @ u)),
            (lambda t, x, W: t[0] @ W + x @ t[1]))


def reduction_case(dtype=np.float64, seed=0):
    """Row-wise logsumexp and column norms of one matrix: (4, 5) -> (4,) and (5,)."""
    x = np.random.default_rng(seed).normal(size=(4, 5)).astype(dtype) + 0.5

    def f(x):
        m = x.max(axis=1, keepdims=True)
        lse = (m + np.log(np.sum(np.exp(x - m), axis=1, keepdims=True)))[:, 0]
        return np.concatenate([lse, np.sqrt(np.sum(x * x, axis=0))])

    def vjp(u, x):
        norms = np.sqrt(np.sum(x * x, axis=0))
        return (_softmax(x) * u[:4, None] + x / norms * u[None, 4:],)

    def jvp(t, x):
        norms = np.sqrt(np.sum(x * x, axis=0))
        return np.concatenate([np.sum(_softmax(x) * t, axis=1),
                               np.sum(x * t, axis=0) / norms])

    return (x,), f, vjp, jvp


CASES = {"elementwise": elementwise_case, "matrix": matrix_case, "reduction": reduction_case}


def exact_jacobian(jvp, x):
    """The Jacobian of a one-input function from its exact JVP along unit vectors."""
    columns = []
    for j in range(x.size):
        e = np.zeros(x.size)
        e[j] = 1.0
        columns.append(np.asarray(jvp(e.reshape(x.shape).astype(x.dtype), x),
                                  dtype=np.float64))
    jac = np.stack(columns, axis=-1)
    return jac.reshape(columns[0].shape + x.shape)


# -- a scalar function with exact gradient and Hessian-vector product --------------

HVP_A = np.array([[3.0, 1.0, 0.0, 0.5], [1.0, 2.0, -1.0, 0.0],
                  [0.0, -1.0, 4.0, 1.0], [0.5, 0.0, 1.0, 1.5]])


def hvp_f(x):
    return 0.25 * np.sum(x ** 4) + 0.5 * x @ HVP_A.astype(x.dtype) @ x + np.sum(np.sin(x))


def hvp_grad(x):
    return x ** 3 + HVP_A.astype(x.dtype) @ x + np.cos(x)


def hvp_exact(v, x):
    return 3 * x ** 2 * v + HVP_A.astype(x.dtype) @ v - np.sin(x) * v
