"""Numba kernels of the forward and backward passes.

Every kernel takes its output buffer (no allocation inside), is cached on
disk and never uses fast-math. Kernels compile lazily, on first use, for the
dtype they meet; callers always pass C-contiguous float32 or float64 arrays,
so each kernel compiles at most twice (and a float64-only program compiles
each once), and ``import gradprobe.nn`` compiles nothing. Matrix products are tiled loops whose innermost loop runs along a
contiguous row, so LLVM vectorises them without reassociating any sum.

Losses are accumulated in float64 whatever the dtype of the model.

Compile cost: a ``parallel=True`` kernel costs 1.5-5 s to compile (Numba's
parfor lowering), a serial one 0.2-0.5 s. Only ``matmul`` (``batch x n_in x
n_out`` work) and ``transpose`` (of weight matrices) are parallel; the
elementwise kernels over ``(batch, width)`` arrays, a small fraction of a
check's time, are serial (``dense_forward`` is serial around the parallel
``matmul``).
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from . import constants

_F = constants.NUMBA_FLAGS
_ROWS, _COLS = constants.MATMUL_ROWS, constants.MATMUL_COLS
_RELU, _TANH, _SIGMOID = constants.RELU, constants.TANH, constants.SIGMOID


@njit(parallel=True, **_F)
def matmul(A, B, C):
    """``C = A @ B`` (C is overwritten).

    Tiles of C run in parallel, each summing into its own accumulator (which
    cannot alias A or B, so the row loop vectorises). Every entry is summed
    in one fixed order: products in groups of four consecutive ``k`` (added
    pairwise), the groups in order of ``k``.
    """
    M, K = A.shape
    N = B.shape[1]
    row_tiles = (M + _ROWS - 1) // _ROWS
    col_tiles = (N + _COLS - 1) // _COLS
    for tile in prange(row_tiles * col_tiles):
        m0 = (tile // col_tiles) * _ROWS
        n0 = (tile % col_tiles) * _COLS
        rows = min(M, m0 + _ROWS) - m0
        cols = min(N, n0 + _COLS) - n0
        acc = np.zeros((_ROWS, _COLS), dtype=C.dtype)
        grouped = K - K % 4
        for k in range(0, grouped, 4):
            for mm in range(rows):
                a0 = A[m0 + mm, k]
                a1 = A[m0 + mm, k + 1]
                a2 = A[m0 + mm, k + 2]
                a3 = A[m0 + mm, k + 3]
                for nn in range(cols):
                    n = n0 + nn
                    acc[mm, nn] += ((a0 * B[k, n] + a1 * B[k + 1, n])
                                    + (a2 * B[k + 2, n] + a3 * B[k + 3, n]))
        for k in range(grouped, K):
            for mm in range(rows):
                a = A[m0 + mm, k]
                for nn in range(cols):
                    acc[mm, nn] += a * B[k, n0 + nn]
        for mm in range(rows):
            for nn in range(cols):
                C[m0 + mm, n0 + nn] = acc[mm, nn]


@njit(**_F)
def dense_forward(X, W, b, Z):
    """``Z = X @ W + b``."""
    matmul(X, W, Z)
    B, N = Z.shape
    for r in range(B):
        for n in range(N):
            Z[r, n] += b[n]


@njit(parallel=True, **_F)
def transpose(A, out):
    """``out = A.T`` (out has shape ``A.shape[::-1]``)."""
    M, N = A.shape
    for n in prange(N):
        for m in range(M):
            out[n, m] = A[m, n]


@njit(**_F)
def column_sums(A, out):
    """``out = A.sum(axis=0)`` accumulated row by row."""
    for n in range(A.shape[1]):
        out[n] = 0.0
    for m in range(A.shape[0]):
        for n in range(A.shape[1]):
            out[n] += A[m, n]


@njit(**_F)
def max_abs(values):
    """``max(|values|)`` (0 for an empty array) without a temporary array."""
    top = 0.0
    for v in values:
        a = abs(float(v))
        if a > top:
            top = a
    return top


@njit(**_F)
def activation_forward(code, Z, A):
    """``A = act(Z)`` for an activation code of :mod:`.constants`."""
    M, N = Z.shape
    for m in range(M):
        for n in range(N):
            z = Z[m, n]
            if code == _RELU:
                A[m, n] = z if z > 0.0 else 0.0
            elif code == _TANH:
                A[m, n] = math.tanh(z)
            elif code == _SIGMOID:
                if z >= 0.0:
                    A[m, n] = 1.0 / (1.0 + math.exp(-z))
                else:
                    e = math.exp(z)
                    A[m, n] = e / (1.0 + e)
            else:
                A[m, n] = z


@njit(**_F)
def activation_backward(code, Z, A, dA, dZ):
    """``dZ = dA * act'(Z)`` (ReLU'(0) = 0; tanh and sigmoid use their output A)."""
    M, N = Z.shape
    for m in range(M):
        for n in range(N):
            if code == _RELU:
                dZ[m, n] = dA[m, n] if Z[m, n] > 0.0 else 0.0
            elif code == _TANH:
                a = A[m, n]
                dZ[m, n] = dA[m, n] * (1.0 - a * a)
            elif code == _SIGMOID:
                a = A[m, n]
                dZ[m, n] = dA[m, n] * (a * (1.0 - a))
            else:
                dZ[m, n] = dA[m, n]


@njit(**_F)
def mse_loss(A, T, scale):
    """``scale / 2 * sum((A - T) ** 2)``, accumulated in float64."""
    total = 0.0
    for m in range(A.shape[0]):
        for n in range(A.shape[1]):
            # np.float64, not float(): Numba's float() keeps a float32 a float32
            r = np.float64(A[m, n]) - np.float64(T[m, n])
            total += r * r
    return 0.5 * scale * total


@njit(**_F)
def mse_backward(A, T, scale, dA):
    """``dA = scale * (A - T)``."""
    for m in range(A.shape[0]):
        for n in range(A.shape[1]):
            dA[m, n] = scale * (A[m, n] - T[m, n])


@njit(**_F)
def _row_lse(Z, m):
    """log-sum-exp of row ``m`` of ``Z`` in float64."""
    top = -math.inf
    for n in range(Z.shape[1]):
        top = max(top, float(Z[m, n]))
    total = 0.0
    for n in range(Z.shape[1]):
        total += math.exp(float(Z[m, n]) - top)
    return top + math.log(total)


@njit(**_F)
def softmax_ce_loss(Z, T, scale):
    """``scale * sum_rows(sum(T) * logsumexp(z) - T . z)`` (cross-entropy of softmax(Z))."""
    total = 0.0
    for m in range(Z.shape[0]):
        lse = _row_lse(Z, m)
        row = 0.0
        for n in range(Z.shape[1]):
            row += float(T[m, n]) * (lse - float(Z[m, n]))
        total += row
    return scale * total


@njit(**_F)
def softmax_ce_backward(Z, T, scale, dZ):
    """``dZ = scale * (sum(T_row) * softmax(Z) - T)``."""
    for m in range(Z.shape[0]):
        lse = _row_lse(Z, m)
        mass = 0.0
        for n in range(Z.shape[1]):
            mass += float(T[m, n])
        for n in range(Z.shape[1]):
            dZ[m, n] = scale * (mass * math.exp(float(Z[m, n]) - lse) - float(T[m, n]))
