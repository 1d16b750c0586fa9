"""Entry-by-entry structured evaluation: the general path.

The tables of the layers after a perturbed Dense layer (:func:`flatten_stages`),
and :func:`loss_differences`, which hands them to the kernel
(:func:`gradprobe.nn.entry_kernel.entry_differences`, which describes the
increments it carries and the rounding bound of every evaluation).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import constants
from .layers import Dense
from .plan import Plan, activation_derivative

_ACT_ULPS = constants.ACTIVATION_ROUNDING_ULPS


@dataclass
class Stages:
    """The layers after a perturbed Dense, flattened for :func:`.entry_kernel.entry_differences`."""

    kinds: np.ndarray
    codes: np.ndarray
    widths_in: np.ndarray
    widths_out: np.ndarray
    offs: np.ndarray
    w_offs: np.ndarray
    base_in: np.ndarray
    base_out: np.ndarray
    deriv: np.ndarray
    weights: np.ndarray
    sens: np.ndarray
    max_width: int


def flatten_stages(plan: Plan, pos: int) -> Stages:
    """Tables of the layers after position ``pos`` (rounding scales included)."""
    model = plan.model
    kinds, codes, w_in, w_out, offs, w_offs = [], [], [], [], [], []
    base_in, base_out, deriv, weights, sens = [], [], [], [], []
    table_size = 0
    weight_size = 0
    max_width = model.layers[pos].n_out
    for k in range(pos + 1, len(model.layers)):
        layer = model.layers[k]
        z = plan.value64(k)
        width = z.shape[1]
        offs.append(table_size)
        if isinstance(layer, Dense):
            kinds.append(constants.STAGE_DENSE)
            codes.append(0)
            w_in.append(layer.n_in)
            w_out.append(layer.n_out)
            w_offs.append(weight_size)
            W = plan.param64(f"{k}.W")
            weights.append(W.ravel())
            weight_size += W.size
            zeros = np.zeros(z.size)
            base_in.append(zeros)
            base_out.append(zeros)
            deriv.append(zeros)
            sens.append(((1.0 + np.sqrt(layer.n_in)) * plan.sensitivity(k)).ravel())
            max_width = max(max_width, layer.n_out)
        else:
            a = plan.value64(k + 1)
            kinds.append(constants.STAGE_ACTIVATION)
            codes.append(layer.code)
            w_in.append(width)
            w_out.append(width)
            w_offs.append(0)
            base_in.append(z.ravel())
            base_out.append(a.ravel())
            deriv.append(activation_derivative(layer.code, z, a).ravel())
            sens.append((_ACT_ULPS * plan.sensitivity(k + 1)).ravel())
        table_size += z.size

    def cat(parts: list[np.ndarray]) -> np.ndarray:
        return np.ascontiguousarray(np.concatenate(parts)) if parts else np.zeros(1)

    def ints(values: list[int]) -> np.ndarray:
        return np.asarray(values, dtype=np.int64)

    return Stages(ints(kinds), ints(codes), ints(w_in), ints(w_out), ints(offs), ints(w_offs),
                  cat(base_in), cat(base_out), cat(deriv), cat(weights), cat(sens), max_width)


def loss_differences(plan: Plan, pos: int, rows: np.ndarray, cols: np.ndarray,
                     steps: np.ndarray, offsets: np.ndarray
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Loss differences and their absolute rounding bounds, shape ``(k, len(offsets))``,
    and for every entry whether an evaluation moved a ReLU input across 0 (bool, ``(k,)``).

    ``rows[e] == n_in`` selects the bias entry ``b[cols[e]]``.
    """
    st = flatten_stages(plan, pos)
    lt = plan.loss
    xin = plan.value64(pos)
    k = rows.size
    dl = np.empty((k, offsets.size))
    noise = np.empty((k, offsets.size))
    crossed = np.zeros(k, dtype=np.uint8)
    if k:
        plan.kernels.entry_differences(xin, np.ascontiguousarray(rows, dtype=np.int64),
                          np.ascontiguousarray(cols, dtype=np.int64),
                          np.ascontiguousarray(steps, dtype=np.float64),
                          np.ascontiguousarray(offsets, dtype=np.float64),
                          st.kinds, st.codes, st.widths_in, st.widths_out, st.offs, st.w_offs,
                          st.base_in, st.base_out, st.deriv, st.weights, st.sens,
                          lt.code, lt.scale, lt.resid, lt.prob, lt.mass, lt.targets, lt.rho,
                          st.max_width, dl, noise, crossed)
    return dl, noise * plan.eps, crossed.astype(bool)
