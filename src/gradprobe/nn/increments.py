"""Exact increments: how much an activation's output or a loss row changes.

Each function returns ``f(x + d) - f(x)`` computed from cached base values
without forming ``f(x + d)`` and ``f(x)`` separately, so the result carries a
rounding error relative to the increment itself rather than to ``f``. These
identities are what make the structured check both fast and accurate:

* ``tanh(z + d) - tanh(z) = sech^2(z) tanh(d) / (1 + tanh(z) tanh(d))``
* ``s(z + d) - s(z) = s'(z) expm1(d) / (1 + s(z) expm1(d))`` for the sigmoid ``s``
* ``lse(z + d e_j) - lse(z) = log1p(p_j expm1(d))`` for the log-sum-exp
* ``((a + D - t)^2 - (a - t)^2) / 2 = D (a - t + D / 2)`` for the squared error.
"""
from __future__ import annotations

import math

from numba import njit

from . import constants

_F = constants.NUMBA_FLAGS
_RELU, _TANH, _SIGMOID = constants.RELU, constants.TANH, constants.SIGMOID


@njit(**_F)
def activation_increment(code, z, a, deriv, d):
    """``act(z + d) - act(z)``.

    Parameters
    ----------
    code : int
        Activation code.
    z, a : float
        Base input and output (``a = act(z)``).
    deriv : float
        ``act'(z)``, computed without cancellation (``sech^2 z``, ``s(z) s(-z)``).
    d : float
        Increment of the input.
    """
    if code == _RELU:
        zn = z + d
        if z > 0.0:
            return d if zn > 0.0 else -z
        return zn if zn > 0.0 else 0.0
    if code == _TANH:
        td = math.tanh(d)
        return deriv * td / (1.0 + a * td)
    if code == _SIGMOID:
        em = math.expm1(d)
        return deriv * em / (1.0 + a * em)
    return d


@njit(**_F)
def squared_error_increment(resid, d):
    """``((r + d)^2 - r^2) / 2`` for the residual ``r = a - t``."""
    return d * (resid + 0.5 * d)


@njit(**_F)
def logsumexp_increment(prob, d):
    """``lse(z + d e_j) - lse(z)`` for ``prob = softmax(z)_j``."""
    return math.log1p(prob * math.expm1(d))
