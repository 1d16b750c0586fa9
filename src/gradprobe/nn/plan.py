"""The base point of a structured check: one forward pass and the tables
that every perturbed evaluation reuses.

Perturbing ``W[i, j]`` (or ``b[j]``) of a Dense layer moves column ``j`` of
its output by ``d = s * h * x[:, i]`` (``s * h`` for the bias). Everything
the structured kernels need to turn such a move into a loss *difference* is
computed here once: the inputs of every layer, the derivative tables of the
activations, the loss's residuals or softmax probabilities, and rounding
scales for the error bars (see :mod:`gradprobe.nn.downstream`).

All tables are float64 (the base forward pass itself runs in the evaluation
dtype), C-contiguous, and private: nothing here aliases the user's arrays.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from . import constants
from .layers import Dense
from .sequential import Sequential, Trace


@dataclass
class LossTables:
    """Loss-side tables at the base point, shape ``(batch, n_out)`` unless noted.

    Attributes
    ----------
    code : int
        Loss code (:mod:`.constants`).
    scale : float
        Batch scale of the loss (``1 / batch`` or 1).
    value : float
        The loss at the base point.
    targets : ndarray
        Dense targets.
    resid : ndarray
        MSE: ``a - t``. Softmax cross-entropy: ``mass * p - t`` (the row's
        derivative with respect to the logits, unscaled).
    prob : ndarray
        Softmax probabilities (cross-entropy; zeros for MSE).
    mass : ndarray, shape (batch,)
        Row sums of the targets (cross-entropy; ones for MSE).
    rho : ndarray
        Rounding scale of the base point: MSE, absolute scale of the error of
        ``a - t``; cross-entropy, relative scale of the error of ``p``. Both
        in units of the evaluation epsilon.
    sensitivity : ndarray
        Bound on ``|dL/da|`` used to propagate rounding of increments.
    """

    code: int
    scale: float
    value: float
    targets: np.ndarray
    resid: np.ndarray
    prob: np.ndarray
    mass: np.ndarray
    rho: np.ndarray
    sensitivity: np.ndarray


@dataclass
class Plan:
    """Base point of a structured check.

    Attributes
    ----------
    model : Sequential
    kernels : kernel set
        The Numba kernels or their C twin (:mod:`.backends`); every later
        evaluation of the check uses the same set.
    trace : Trace
        Forward pass in the evaluation dtype (``trace.values[k]`` is the input
        of layer ``k``).
    eval_dtype : numpy.dtype
        Precision of the base forward pass.
    eps : float
        Machine epsilon of ``eval_dtype`` (the unit of every rounding bound).
    loss : LossTables
    """

    model: Sequential
    kernels: Any
    trace: Trace
    eval_dtype: np.dtype
    eps: float
    loss: LossTables
    _values64: dict[int, np.ndarray] = field(default_factory=dict)
    _sens: dict[int, np.ndarray] = field(default_factory=dict)

    def value64(self, k: int) -> np.ndarray:
        """``trace.values[k]`` as a C-contiguous float64 array (cached)."""
        if k not in self._values64:
            self._values64[k] = np.ascontiguousarray(self.trace.values[k], dtype=np.float64)
        return self._values64[k]

    def param64(self, key: str) -> np.ndarray:
        """A parameter of the trace as float64 (a private copy or the private trace array)."""
        return np.ascontiguousarray(self.trace.params[key], dtype=np.float64)

    def is_last_dense(self, pos: int) -> bool:
        """True when only activations follow the Dense layer at ``pos``."""
        return pos == self.model.dense_positions[-1]

    def head_is_identity(self, pos: int) -> bool:
        """True when nothing but Identity layers sits between ``pos`` and the loss."""
        return self.is_last_dense(pos) and all(
            getattr(layer, "code", None) == constants.IDENTITY
            for layer in self.model.layers[pos + 1:])

    def sensitivity(self, k: int) -> np.ndarray:
        """Bound on ``|dL/d values[k]|`` by propagating absolute values backwards."""
        last = len(self.model.layers)
        if k == last:
            return self.loss.sensitivity
        if k not in self._sens:
            upper = self.sensitivity(k + 1)
            layer = self.model.layers[k]
            if isinstance(layer, Dense):
                W = np.abs(self.param64(f"{k}.W"))
                self._sens[k] = np.ascontiguousarray(upper @ W.T)
            else:
                self._sens[k] = upper * np.abs(activation_derivative(
                    layer.code, self.value64(k), self.value64(k + 1)))
        return self._sens[k]


def activation_derivative(code: int, z: np.ndarray, a: np.ndarray) -> np.ndarray:
    """``act'(z)`` computed without cancellation (ReLU'(0) = 0)."""
    if code == constants.RELU:
        return (z > 0).astype(np.float64)
    if code == constants.TANH:
        e = np.exp(-2.0 * np.abs(z))
        return 4.0 * e / (1.0 + e) ** 2
    if code == constants.SIGMOID:
        e = np.exp(-np.abs(z))
        return e / (1.0 + e) ** 2
    return np.ones_like(z)


def _base_error_scale(plan_values: list[np.ndarray], model: Sequential,
                      params: dict[str, np.ndarray]) -> np.ndarray:
    """Scale (in ulps) of the rounding of the last Dense output.

    ``(1 + sqrt(n_in)) * (||x_b|| * ||W[:, j]|| + |b_j|)`` bounds the rounding
    of the dot products ``x_b . W[:, j] + b_j`` (Cauchy-Schwarz on the sum of
    absolute products); the activations after it have ``|act'| <= 1``.
    """
    q = model.dense_positions[-1]
    x = np.asarray(plan_values[q], dtype=np.float64)
    W = np.asarray(params[f"{q}.W"], dtype=np.float64)
    b = np.asarray(params[f"{q}.b"], dtype=np.float64)
    xn = np.sqrt(np.einsum("ij,ij->i", x, x))
    wn = np.sqrt(np.einsum("ij,ij->j", W, W))
    return (1.0 + np.sqrt(W.shape[0])) * (xn[:, None] * wn[None, :] + np.abs(b)[None, :])


def make_plan(model: Sequential, X: Any, T: Any, params: dict[str, np.ndarray],
              eval_dtype: np.dtype, kernels: Any) -> Plan:
    """Run the base forward pass in ``eval_dtype`` with ``kernels`` and build the
    loss tables.

    ``params`` are private copies in ``eval_dtype`` (the check never passes
    the user's arrays to anything that writes).
    """
    trace = model.trace(X, T, params=params, dtype=eval_dtype, kernels=kernels)
    value = float(model.loss_fn.value(trace.values[-1], trace.targets, kernels))
    if not np.isfinite(value):
        raise ValueError(f"the model's loss is {value!r} at the given parameters, X and T; "
                         "the loss must be finite to be differentiated")
    a = np.ascontiguousarray(trace.values[-1], dtype=np.float64)
    t = np.ascontiguousarray(trace.targets, dtype=np.float64)
    zeta = _base_error_scale(trace.values, model, trace.params)
    scale = trace.scale
    batch = a.shape[0]
    if model.loss_fn.code == constants.LOSS_MSE:
        resid = a - t
        prob = np.zeros_like(a)
        mass = np.ones(batch)
        rho = np.abs(a) + np.abs(t) + zeta + constants.BASE_POINT_ULPS * np.abs(resid)
        sens = scale * np.abs(resid)
    else:
        top = a.max(axis=1, keepdims=True)
        lse = top + np.log(np.exp(a - top).sum(axis=1, keepdims=True))
        prob = np.exp(a - lse)
        mass = t.sum(axis=1)
        resid = mass[:, None] * prob - t
        rho = (constants.BASE_POINT_ULPS + np.abs(a) + np.abs(lse) + zeta
               + zeta.max(axis=1, keepdims=True))
        sens = scale * (np.abs(mass)[:, None] * prob + np.abs(t))
    tables = LossTables(model.loss_fn.code, scale, value, t, np.ascontiguousarray(resid),
                        np.ascontiguousarray(prob), np.ascontiguousarray(mass),
                        np.ascontiguousarray(rho), np.ascontiguousarray(sens))
    eps = float(np.finfo(eval_dtype).eps)
    return Plan(model, kernels, trace, np.dtype(eval_dtype), eps, tables)
