"""Numba kernels of the fast paths of :mod:`.heads`: the value and error bar of
every entry of ``[W; b]`` from the contraction's result (one pass, in parallel).
"""
from __future__ import annotations

from numba import njit, prange

from . import constants

_F = constants.NUMBA_FLAGS
_CENTRAL = constants.METHOD_CODES["central"]
_FORWARD = constants.METHOD_CODES["forward"]


@njit(parallel=True, **_F)
def finish_mse(S, Q, xn, rn, rhon, steps, h0, use_steps, method, scale, eps, sum_factor,
               safety, floor_ulps, value, bar):
    """Value and error bar of every entry of the MSE fast path."""
    n_i, n_j = S.shape
    for i in prange(n_i):
        for j in range(n_j):
            h = steps[i, j] if use_steps else h0
            s = S[i, j]
            # rounding of c * h * S_ij per unit step: (2 + sqrt(B)) ||x_i|| ||r_j|| + base point
            unit_noise = scale * eps * xn[i] * (sum_factor * rn[j] + rhon[j])
            if method == _CENTRAL:
                even = 0.5 * scale * h * h * Q[i]
                dl = scale * h * abs(s) + even
                rounding = safety * max(h * unit_noise + eps * even, floor_ulps * eps * dl)
                value[i, j] = scale * s
                bar[i, j] = rounding / h
            elif method == _FORWARD:
                even = 0.5 * scale * h * h * Q[i]
                dl = abs(scale * h * s + even)
                rounding = safety * max(h * unit_noise + eps * even, floor_ulps * eps * dl)
                value[i, j] = scale * (s + 0.5 * h * Q[i])
                bar[i, j] = 2.0 * rounding / h + 0.5 * scale * h * Q[i]
            else:
                even = 2.0 * scale * h * h * Q[i]
                dl = 2.0 * scale * h * abs(s) + even
                rounding = safety * max(2.0 * h * unit_noise + eps * even,
                                        floor_ulps * eps * dl)
                value[i, j] = scale * s
                bar[i, j] = 1.5 * rounding / h


@njit(parallel=True, **_F)
def finish_softmax(V, ln, rn, dn, rhon, trunc, tail, h0, scale, eps, method, sum_factor,
                   safety, floor_ulps, value, bar):
    """Value and error bar of every entry of the softmax cross-entropy fast path."""
    n_i, n_j = V.shape
    groups = ln.shape[0]
    span = 2.0 * h0 if method == _CENTRAL else h0
    factor = 1.0 if method == _CENTRAL else 2.0
    for i in prange(n_i):
        for j in range(n_j):
            F = scale * V[i, j]
            products = 0.0
            for g in range(groups):
                products += ln[g, i] * rn[g, j]
            noise = scale * eps * (sum_factor * products + dn[i] * rhon[j])
            rounding = safety * max(noise, floor_ulps * eps * abs(F))
            value[i, j] = F / span
            bar[i, j] = factor * rounding / span + trunc[i] + tail[i] / span
