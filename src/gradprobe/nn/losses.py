"""Losses of :class:`~gradprobe.nn.Sequential`: ``MSE`` and ``SoftmaxCrossEntropy``.

Both average over the batch by default (``reduction="mean"``); ``"sum"``
adds the per-example losses instead (the convention of the linear-regression
seed, whose gradient is ``X.T @ (Y_hat - Y)``).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from . import constants
from .backends import default_kernels


def _kernels(kernels: Any) -> Any:
    """``kernels``, or the default set when None."""
    return default_kernels() if kernels is None else kernels


REDUCTIONS = ("mean", "sum")


class Loss:
    """Common part of the losses: the reduction and the batch scale.

    Examples
    --------
    >>> MSE().scale(8), MSE(reduction="sum").scale(8)
    (0.125, 1.0)
    """

    code = constants.LOSS_MSE
    name = "loss"

    def __init__(self, reduction: str = "mean"):
        if reduction not in REDUCTIONS:
            raise ValueError(f"reduction={reduction!r} is not valid; expected one of "
                             f"{', '.join(REDUCTIONS)}")
        self.reduction = reduction

    def scale(self, batch: int) -> float:
        """Factor applied to the sum over examples: ``1 / batch`` or 1."""
        return 1.0 / batch if self.reduction == "mean" else 1.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reduction={self.reduction!r})"


class MSE(Loss):
    """Squared error ``L = scale / 2 * sum over examples and outputs of (a - t) ** 2``.

    With ``reduction="mean"`` (default) ``scale = 1 / batch``: half the mean
    over the batch of each example's sum of squared errors, whose gradient
    with respect to the output is ``(A - T) / batch``. With one example and
    one output this is the seed's ``E = 1/2 (y - out) ** 2``.

    Targets ``T`` are real arrays of the output's shape ``(batch, n_out)``
    (``(batch,)`` is accepted when ``n_out == 1``).

    Examples
    --------
    >>> import numpy as np
    >>> MSE().value(np.array([[1.0, 2.0]]), np.array([[0.0, 0.0]]))
    2.5
    """

    code = constants.LOSS_MSE
    name = "mse"

    def value(self, A: np.ndarray, T: np.ndarray, kernels: Any = None) -> float:
        """The loss for outputs ``A`` and (prepared) targets ``T`` of the same dtype."""
        return float(_kernels(kernels).mse_loss(A, T, self.scale(A.shape[0])))

    def backward(self, A: np.ndarray, T: np.ndarray, kernels: Any = None) -> np.ndarray:
        """``dL/dA``."""
        out = np.empty_like(A)
        _kernels(kernels).mse_backward(A, T, self.scale(A.shape[0]), out)
        return out


class SoftmaxCrossEntropy(Loss):
    """Cross-entropy of ``softmax(Z)`` against targets, from the logits ``Z``.

    ``L = scale * sum over examples of (sum(t) * logsumexp(z) - t . z)``, which
    is ``-sum(t * log softmax(z))``; ``scale = 1 / batch`` for the default
    ``reduction="mean"``. Targets are integer class labels of shape
    ``(batch,)`` or real (probability) rows of shape ``(batch, n_classes)``.

    Examples
    --------
    >>> import numpy as np
    >>> round(SoftmaxCrossEntropy().value(np.zeros((1, 4)), np.eye(4)[:1]), 6)
    1.386294
    """

    code = constants.LOSS_SOFTMAX_CE
    name = "softmax_cross_entropy"

    def value(self, Z: np.ndarray, T: np.ndarray, kernels: Any = None) -> float:
        """The loss for logits ``Z`` and (prepared, dense) targets ``T``."""
        return float(_kernels(kernels).softmax_ce_loss(Z, T, self.scale(Z.shape[0])))

    def backward(self, Z: np.ndarray, T: np.ndarray, kernels: Any = None) -> np.ndarray:
        """``dL/dZ``."""
        out = np.empty_like(Z)
        _kernels(kernels).softmax_ce_backward(Z, T, self.scale(Z.shape[0]), out)
        return out
