"""Custom ``torch.autograd.Function``s with hand-written backward passes (needs torch).

The three layers of benchmark W8, the how-to page and the tests: a linear
layer, a GELU (tanh form) and a layer norm, each with its own ``backward``;
a layer norm whose backward forgot a term; and :func:`with_planted_error`,
which makes a copy of a Function whose gradient is wrong in one entry.

>>> import torch, gradprobe.torch
>>> x = torch.randn(4, 6, dtype=torch.float64)
>>> w, b = torch.ones(6, dtype=torch.float64), torch.zeros(6, dtype=torch.float64)
>>> gradprobe.torch.check_function(LayerNormForgotten.apply, x, w, b).passed
False
"""
from __future__ import annotations

import math
from typing import Any

import torch

#: Variance epsilon of the layer norm.
LAYER_NORM_EPS = 1e-5


class LinearFunction(torch.autograd.Function):
    """``y = x @ weight.T + bias`` with its backward written out."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return x @ weight.T + bias

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
        x, weight = ctx.saved_tensors
        return grad @ weight, grad.T @ x, grad.sum(0)


class GELUFunction(torch.autograd.Function):
    """GELU, tanh form: ``0.5 x (1 + tanh(c (x + 0.044715 x^3)))``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x)
        c = math.sqrt(2.0 / math.pi)
        return 0.5 * x * (1.0 + torch.tanh(c * (x + 0.044715 * x ** 3)))

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        x, = ctx.saved_tensors
        c = math.sqrt(2.0 / math.pi)
        t = torch.tanh(c * (x + 0.044715 * x ** 3))
        dt = (1.0 - t ** 2) * c * (1.0 + 3 * 0.044715 * x ** 2)
        return grad * (0.5 * (1.0 + t) + 0.5 * x * dt)


class LayerNormFunction(torch.autograd.Function):
    """Layer norm over the last axis, ``(x - mean) / sqrt(var + eps) * weight + bias``."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, weight: torch.Tensor,
                bias: torch.Tensor) -> torch.Tensor:
        mean = x.mean(-1, keepdim=True)
        var = ((x - mean) ** 2).mean(-1, keepdim=True)
        rstd = 1.0 / torch.sqrt(var + LAYER_NORM_EPS)
        xhat = (x - mean) * rstd
        ctx.save_for_backward(xhat, rstd, weight)
        return xhat * weight + bias

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
        xhat, rstd, weight = ctx.saved_tensors
        dxhat = grad * weight
        dx = rstd * (dxhat - dxhat.mean(-1, keepdim=True)
                     - xhat * (dxhat * xhat).mean(-1, keepdim=True))
        lead = tuple(range(grad.dim() - 1))
        return dx, (grad * xhat).sum(lead), grad.sum(lead)


class LayerNormForgotten(LayerNormFunction):
    """A layer norm whose backward forgot the ``xhat * mean(dxhat * xhat)`` term."""

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, ...]:
        xhat, rstd, weight = ctx.saved_tensors
        dxhat = grad * weight
        dx = rstd * (dxhat - dxhat.mean(-1, keepdim=True))
        lead = tuple(range(grad.dim() - 1))
        return dx, (grad * xhat).sum(lead), grad.sum(lead)


def with_planted_error(function: type, which: int, index: tuple[int, ...],
                       factor: float = 1.01) -> type:
    """A copy of ``function`` whose gradient for input ``which`` is wrong by
    ``factor`` in one entry, ``index``.

    Examples
    --------
    >>> Wrong = with_planted_error(LinearFunction, 1, (2, 3))
    >>> Wrong.__name__
    'LinearFunctionWithError'
    """
    class Planted(function):  # type: ignore[misc, valid-type]
        @staticmethod
        def backward(ctx: Any, *grads: torch.Tensor) -> Any:
            out = function.backward(ctx, *grads)
            out = list(out) if isinstance(out, tuple) else [out]
            wrong = out[which].clone()
            wrong[index] = wrong[index] * factor
            out[which] = wrong
            return tuple(out) if len(out) > 1 else out[0]

    Planted.__name__ = Planted.__qualname__ = f"{function.__name__}WithError"
    return Planted


class Linear(torch.nn.Module):
    """A module computing with :class:`LinearFunction` (or any Function like it)."""

    def __init__(self, n_in: int, n_out: int, function: type = LinearFunction):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(n_out, n_in) / math.sqrt(n_in))
        self.bias = torch.nn.Parameter(torch.zeros(n_out))
        self.function = function

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function.apply(x, self.weight, self.bias)
