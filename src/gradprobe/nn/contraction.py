"""The blocked contraction ``out = L.T @ R`` behind the structured fast paths.

When the perturbed layer feeds the loss directly, the loss difference of
entry ``(i, j)`` is a sum over examples and series terms of products
``L[r, i] * R[r, j]`` (see :mod:`gradprobe.nn.heads`). This kernel computes
all of them at once: tiles of ``CONTRACT_ROWS x CONTRACT_COLS`` entries run in
parallel under ``prange``, each with its own accumulator; the innermost loop
runs along a contiguous row of ``R``, so it vectorises without reassociating
any sum (every entry is still summed in order of ``r``).
"""
from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import constants

_ROWS, _COLS = constants.CONTRACT_ROWS, constants.CONTRACT_COLS


@njit(parallel=True, **constants.NUMBA_FLAGS)
def contract(L, R, out):
    """``out[i, j] = sum_r L[r, i] * R[r, j]`` in a fixed order (see the module).

    Parameters
    ----------
    L : (terms, n_i) float64
    R : (terms, n_j) float64
    out : (n_i, n_j) float64
        Overwritten.
    """
    terms, n_i = L.shape
    n_j = R.shape[1]
    row_tiles = (n_i + _ROWS - 1) // _ROWS
    col_tiles = (n_j + _COLS - 1) // _COLS
    for tile in prange(row_tiles * col_tiles):
        i0 = (tile // col_tiles) * _ROWS
        j0 = (tile % col_tiles) * _COLS
        rows = min(n_i, i0 + _ROWS) - i0
        cols = min(n_j, j0 + _COLS) - j0
        acc = np.zeros((_ROWS, _COLS))
        grouped = terms - terms % 4
        for r in range(0, grouped, 4):
            for ii in range(rows):
                l0 = L[r, i0 + ii]
                l1 = L[r + 1, i0 + ii]
                l2 = L[r + 2, i0 + ii]
                l3 = L[r + 3, i0 + ii]
                for jj in range(cols):
                    j = j0 + jj
                    acc[ii, jj] += ((l0 * R[r, j] + l1 * R[r + 1, j])
                                    + (l2 * R[r + 2, j] + l3 * R[r + 3, j]))
        for r in range(grouped, terms):
            for ii in range(rows):
                left = L[r, i0 + ii]
                for jj in range(cols):
                    acc[ii, jj] += left * R[r, j0 + jj]
        for ii in range(rows):
            for jj in range(cols):
                out[i0 + ii, j0 + jj] = acc[ii, jj]
