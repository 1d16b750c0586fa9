"""The entry-by-entry structured evaluation kernel (the general path).

For every entry of a Dense layer and every stencil offset ``s``, the kernel
moves column ``j`` of the layer's output by ``d = s * h * x[:, i]`` and
carries that *increment* through the layers after it (activations with the
exact increments of :mod:`.increments`, Dense layers as a rank-1 update and
then as increment products), ending with the loss difference. Nothing is
subtracted from a full loss, so the rounding of a difference is relative to
the difference itself.

Rounding bound of one evaluation (in units of the evaluation epsilon):

* loss stage: ``(2 + sqrt(terms) + BASE_POINT_ULPS) * sum |term magnitudes|``
  (summation of ``terms`` per-row differences, plus the rounding of the
  cached base point they reuse, through ``rho``);
* every activation: ``ACTIVATION_ROUNDING_ULPS * sum |increment| * |dL/da|``;
* every downstream Dense: ``(1 + sqrt(n_in)) * sum |increment| * (|dL/dz| @ |W|.T)``.

The kernel also reports which entries moved a ReLU input across zero: those
evaluations straddle a kink, and the caller retries them with smaller steps
(the differences stay accurate at any step, since their rounding is relative
to the difference itself).

Entries are processed in chunks under ``prange``; each chunk allocates its
own scratch buffers.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit, prange

from . import constants
from .increments import activation_increment, logsumexp_increment, squared_error_increment

_F = constants.NUMBA_FLAGS
_CHUNK = constants.ENTRY_CHUNK
_ACT = constants.STAGE_ACTIVATION
_MSE = constants.LOSS_MSE
_RELU = constants.RELU
_BASE_ULPS = constants.BASE_POINT_ULPS


@njit(parallel=True, **_F)
def entry_differences(xin, rows, cols, steps, offsets,
                      kinds, codes, widths_in, widths_out, offs, w_offs,
                      base_in, base_out, deriv, weights, sens,
                      loss_code, scale, resid, prob, mass, targets, rho,
                      max_width, dl, noise, crossed):
    """Loss differences ``L(theta + s h e) - L(theta)`` for every entry and offset.

    Parameters
    ----------
    xin : (batch, n_in) float64
        Input of the perturbed Dense layer; row ``i == n_in`` means the bias.
    rows, cols : (k,) int64
        ``i`` and ``j`` of every entry.
    steps : (k,) float64
        Step ``h`` of every entry.
    offsets : (m,) float64
        Stencil offsets in units of ``h``.
    kinds, codes, widths_in, widths_out, offs, w_offs : (stages,) int64
        The layers after the perturbed one: stage kind, activation code,
        widths, offset of its tables in ``base_in``/``base_out``/``deriv``/``sens``
        (activations: ``batch x width``; Dense: ``sens`` is ``batch x n_in``)
        and offset of its weights in ``weights``.
    loss_code, scale, resid, prob, mass, targets, rho
        Loss tables (see :class:`gradprobe.nn.plan.LossTables`).
    max_width : int
        Widest layer after the perturbed one (scratch size).
    dl, noise : (k, m) float64
        Output: the differences, and their rounding bound in units of eps.
    crossed : (k,) uint8
        Output: 1 when some evaluation of the entry moved a ReLU input across 0.
    """
    batch, n_in = xin.shape
    width_final = resid.shape[1]
    n = rows.size
    m_count = offsets.size
    stages = kinds.size
    chunks = (n + _CHUNK - 1) // _CHUNK
    for chunk in prange(chunks):
        cur = np.empty(batch * max_width)
        nxt = np.empty(batch * max_width)
        col = np.empty(batch)
        active = np.empty(batch, dtype=np.bool_)
        for e in range(chunk * _CHUNK, min(n, (chunk + 1) * _CHUNK)):
            i = rows[e]
            j = cols[e]
            crossing = False
            for m in range(m_count):
                step = offsets[m] * steps[e]
                for r in range(batch):
                    col[r] = step * xin[r, i] if i < n_in else step
                stage_noise = 0.0
                column = True
                for s in range(stages):
                    w_in = widths_in[s]
                    w_out = widths_out[s]
                    off = offs[s]
                    if kinds[s] == _ACT:
                        code = codes[s]
                        if column:
                            for r in range(batch):
                                q = off + r * w_in + j
                                z = base_in[q]
                                if code == _RELU and (z > 0.0) != (z + col[r] > 0.0):
                                    crossing = True
                                col[r] = activation_increment(code, z, base_out[q],
                                                              deriv[q], col[r])
                                stage_noise += abs(col[r]) * sens[q]
                        else:
                            for r in range(batch):
                                if not active[r]:
                                    continue
                                for q in range(r * w_in, (r + 1) * w_in):
                                    z = base_in[off + q]
                                    if code == _RELU and (z > 0.0) != (z + cur[q] > 0.0):
                                        crossing = True
                                    cur[q] = activation_increment(code, z, base_out[off + q],
                                                                  deriv[off + q], cur[q])
                                    stage_noise += abs(cur[q]) * sens[off + q]
                    else:
                        wo = w_offs[s]
                        if column:
                            # rows whose increment is zero stay zero in every later layer
                            for r in range(batch):
                                dv = col[r]
                                active[r] = dv != 0.0
                                stage_noise += abs(dv) * sens[off + r * w_in + j]
                                for k in range(w_out):
                                    cur[r * w_out + k] = dv * weights[wo + j * w_out + k]
                            column = False
                        else:
                            for q in range(batch * w_out):
                                nxt[q] = 0.0
                            for r in range(batch):
                                if not active[r]:
                                    continue
                                for p in range(w_in):
                                    dv = cur[r * w_in + p]
                                    if dv == 0.0:
                                        continue
                                    stage_noise += abs(dv) * sens[off + r * w_in + p]
                                    base = wo + p * w_out
                                    for k in range(w_out):
                                        nxt[r * w_out + k] += dv * weights[base + k]
                            cur, nxt = nxt, cur
                total = 0.0
                magnitude = 0.0
                terms = batch
                if column:
                    for r in range(batch):
                        dv = col[r]
                        if loss_code == _MSE:
                            rr = resid[r, j]
                            total += squared_error_increment(rr, dv)
                            magnitude += abs(dv) * (abs(rr) + 0.5 * abs(dv) + rho[r, j])
                        else:
                            p = prob[r, j]
                            g = logsumexp_increment(p, dv)
                            total += mass[r] * g - targets[r, j] * dv
                            magnitude += (abs(mass[r]) * (abs(g) + p * abs(math.expm1(dv))
                                                          * (1.0 + rho[r, j]))
                                          + abs(targets[r, j] * dv))
                else:
                    terms = batch * width_final
                    for r in range(batch):
                        if not active[r]:
                            continue  # an all-zero increment changes nothing
                        if loss_code == _MSE:
                            for k in range(width_final):
                                dv = cur[r * width_final + k]
                                rr = resid[r, k]
                                total += squared_error_increment(rr, dv)
                                magnitude += abs(dv) * (abs(rr) + 0.5 * abs(dv) + rho[r, k])
                        else:
                            inner = 0.0
                            inner_mag = 0.0
                            linear = 0.0
                            linear_mag = 0.0
                            for k in range(width_final):
                                dv = cur[r * width_final + k]
                                em = math.expm1(dv)
                                inner += prob[r, k] * em
                                inner_mag += prob[r, k] * abs(em) * (1.0 + rho[r, k])
                                linear += targets[r, k] * dv
                                linear_mag += abs(targets[r, k] * dv)
                            g = math.log1p(inner)
                            total += mass[r] * g - linear
                            magnitude += abs(mass[r]) * (abs(g) + inner_mag) + linear_mag
                dl[e, m] = scale * total
                noise[e, m] = (scale * magnitude * (2.0 + math.sqrt(terms) + _BASE_ULPS)
                               + stage_noise)
            crossed[e] = 1 if crossing else 0
