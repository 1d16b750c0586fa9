"""Fused Numba kernels for the per-group work of compressed Jacobians.

A compressed check of a large layer evaluates ``f`` twice per group; between
the two evaluations of the next group, NumPy would make some forty passes over
the outputs (the central difference and its error bar, the cotangent
products, the verification direction), more time than the forward of a
dense layer itself. These kernels make each of those jobs one pass:

* :func:`central_line`: the central difference of every output along one line
  through the origin, with the error bar of
  :meth:`gradprobe.differences.stencils.Stencil.estimate` (the same operations
  in the same order: the same bits, ``tests/test_line_kernel.py`` compares);
* :func:`accumulate_vjp`: the products ``u_k^T J`` of one group for every
  cotangent (what :class:`gradprobe.differences.compression.VjpSink` adds with
  ``np.bincount``, in the same order);
* :func:`accumulate_direction`: the verification direction's sum and the check
  that no output the group does not own moved.

They are serial (the forward between two groups is the parallel part) and
compile in well under a second (explicit signatures, ``config.NUMBA_FLAGS``); this
module is imported only for functions with at least
``config.LINE_KERNEL_MIN_OUTPUTS`` outputs, so ``import gradprobe`` does not
import Numba.
"""
from __future__ import annotations

import numba
import numpy as np

from .. import config
from ..compilation import install_notice

install_notice()

_TINY = float(np.finfo(np.float64).tiny)
_EPS64 = float(np.finfo(np.float64).eps)
_F1 = numba.float64[::1]
_F2 = numba.float64[:, ::1]
_I1 = numba.int64[::1]
#: owners may be a read-only view (a grouping's broadcast owners)
_OWNERS = (_I1, numba.types.Array(numba.int64, 1, "C", readonly=True))


@numba.njit("void(f8[::1], f8[::1], f8[::1], f8[::1], f8, f8, f8, f8[::1], f8[::1], f8[::1],"
            " f8[::1], f8[::1])", **config.NUMBA_FLAGS)
def _central_line(yp, ym, y0, noise, h, floor_factor, safety, value, bar, left,
                  right, truncation):  # pragma: no cover - compiled
    span = h - (-h)
    half = 0.5 * abs(span)
    for r in range(y0.size):   # the outputs are finite (VectorFunction.output checks)
        largest = max(abs(yp[r]), abs(ym[r]))
        floor = floor_factor * max(abs(y0[r]), largest)
        rounding = safety * max(noise[r], floor)
        ri = (yp[r] - y0[r]) / (h - 0.0)
        le = (y0[r] - ym[r]) / (0.0 - (-h))
        d1 = (yp[r] - ym[r]) / span
        curvature = abs(ri - le) / half
        # central_truncation with the line's scale max(1, |0|) = 1 as the length
        out = half * half * (curvature / 1.0 + abs(d1) / (1.0 * 1.0))
        if not np.isfinite(out):
            out = np.inf
        value[r] = d1
        bar[r] = 2.0 * rounding / abs(span) + out
        left[r] = le
        right[r] = ri
        truncation[r] = out


def central_line(yp: np.ndarray, ym: np.ndarray, y0: np.ndarray, noise: np.ndarray, h: float,
                 eps: float) -> tuple[np.ndarray, ...]:
    """Central differences of every output along a line ``s -> f(x + s d)`` at ``s = 0``.

    Parameters
    ----------
    yp, ym : ndarray
        The flat outputs at ``s = h`` and ``s = -h`` (float64).
    y0, noise : ndarray
        The unperturbed outputs and the noise of each.
    h : float
        The step along the line.
    eps : float
        Machine epsilon of the evaluation dtype.

    Returns
    -------
    value, bar, left, right, truncation : ndarray
        What :meth:`~gradprobe.differences.stencils.Stencil.estimate` returns
        for the central method at the origin ``0`` of the line (scale 1).

    Examples
    --------
    >>> y0 = np.sin(np.zeros(3)); h = 2.0 ** -17
    >>> value = central_line(np.sin(np.full(3, h)), np.sin(np.full(3, -h)), y0,
    ...                      np.full(3, 1e-17), h, 2.0 ** -52)[0]
    >>> np.allclose(value, 1.0)
    True
    """
    m = y0.size
    out = tuple(np.empty(m) for _ in range(5))
    _central_line(yp, ym, y0, noise, float(h), float(config.NOISE_FLOOR_ULPS * eps),
                  float(config.NOISE_SAFETY), *out)
    return out


@numba.njit([numba.void(owners, _I1, _F2, _F1, _F1, _I1, _F1, _F2, _F2, _F2, _F2)
             for owners in _OWNERS], **config.NUMBA_FLAGS)
def _accumulate_vjp(owners, position, us_t, value, bar, members, inverse, scratch_v,
                    scratch_b, out_v, out_b):  # pragma: no cover - compiled
    k_count = us_t.shape[1]
    scratch_v[:, :] = 0.0
    scratch_b[:, :] = 0.0
    for r in range(owners.size):
        o = owners[r]
        if o < 0:
            continue
        local = position[o]
        for k in range(k_count):
            u = us_t[r, k]
            scratch_v[local, k] += u * value[r]
            scratch_b[local, k] += abs(u) * bar[r]
    for local in range(members.size):
        j = members[local]
        for k in range(k_count):
            out_v[k, j] += scratch_v[local, k] * inverse[local]
            out_b[k, j] += scratch_b[local, k] * inverse[local]


def accumulate_vjp(owners: np.ndarray, position: np.ndarray, us_t: np.ndarray,
                   value: np.ndarray, bar: np.ndarray, members: np.ndarray,
                   inverse: np.ndarray, out_value: np.ndarray, out_bar: np.ndarray) -> None:
    """Add one group's ``u_k^T J`` and its error bar for every cotangent ``k``.

    ``us_t[r, k]`` is cotangent ``k`` at output ``r``; ``position[owners[r]]``
    is the place of output ``r``'s owner among ``members``; ``inverse`` is
    ``1 / scale[members]``. Sums in output order, as ``np.bincount`` does
    (the same bits as the NumPy sink).
    """
    scratch = np.empty((2, members.size, us_t.shape[1]))
    _accumulate_vjp(owners, position, us_t, value, bar, members, inverse, scratch[0],
                    scratch[1], out_value, out_bar)


@numba.njit([numba.int64(owners, _F1, _F1, _F1, _F1, _F1, numba.float64)
             for owners in _OWNERS], **config.NUMBA_FLAGS)
def _accumulate_direction(owners, value, bar, xi, along, along_bar,
                          factor):  # pragma: no cover - compiled
    stray = -1
    for r in range(owners.size):
        o = owners[r]
        if o < 0:
            v = abs(value[r])
            if stray < 0 and v > factor * bar[r] + 8.0 * _EPS64 * v + _TINY:
                stray = r
            continue
        along[r] += value[r] * xi[o]
        along_bar[r] += bar[r] * abs(xi[o])
    return stray


def accumulate_direction(owners: np.ndarray, value: np.ndarray, bar: np.ndarray,
                         xi: np.ndarray, along: np.ndarray, along_bar: np.ndarray) -> int:
    """Add one group to the verification direction; the first output it moved
    without owning it (``-1``: none), as ``compression._outside`` judges."""
    return int(_accumulate_direction(owners, value, bar, xi, along, along_bar,
                                     float(config.VERIFY_BAR_FACTOR)))
