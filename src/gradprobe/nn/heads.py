"""Fast paths for the last Dense layer when it feeds the loss directly.

With no activation between the layer and the loss, perturbing ``W[i, j]``
by ``s h`` moves logit/output ``j`` of example ``r`` by ``d = s h x[r, i]``, and
the loss difference is a sum over examples of an exact per-row expression:

* **MSE** ``(c/2) sum_r ((a + d - t)^2 - (a - t)^2) = c (s h S_ij + s^2 h^2 Q_i / 2)``
  with ``S = X.T @ (A - T)`` and ``Q_i = sum_r x[r, i]^2``: the central
  difference is exact (the loss is quadratic in ``W``), and any step works.
* **Softmax cross-entropy**
  ``c sum_r (m_r g(d) - t[r, j] d)`` with ``g(d) = log1p(p[r, j] expm1(d))``,
  the exact change of the row's log-sum-exp. ``g`` is expanded in its Taylor
  series ``sum_k P_k(p) d^k / k!`` (``P_k`` the derivative polynomials of the
  logistic function; radius of convergence >= pi), kept until the next term
  is below ``eps / 32`` of the first (two terms for the central difference at
  the automatic step); a rigorous bound on the rest is added to the error
  bar. Every term is a product of a table over ``(r, i)`` and one over
  ``(r, j)``, so all entries come from one blocked contraction
  (:func:`.contraction.contract`). This needs one step ``h`` for all entries;
  entries whose automatic step differs (``|w| > 1``) are evaluated entry by
  entry instead.

Error bars follow :class:`gradprobe.differences.stencils.Stencil`'s formulas, with the
rounding of the computed difference in place of the noise of ``f``:
``(2 + sqrt(terms)) * sum |products|`` (bounded by Cauchy-Schwarz over the
examples, so it is a rank-1 table) plus the rounding of the cached base point,
and with exact or bounded truncation instead of its estimate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .. import config
from . import constants
from .plan import Plan


def augmented_input(plan: Plan, pos: int) -> np.ndarray:
    """The layer's input with a column of ones appended (row ``n_in`` is the bias)."""
    x = plan.value64(pos)
    out = np.empty((x.shape[0], x.shape[1] + 1))
    out[:, :-1] = x
    out[:, -1] = 1.0
    return out


@dataclass
class HeadResult:
    """Estimates of all entries of ``[W; b]``, shape ``(n_in + 1, n_out)``.

    ``redo`` lists flat indices into that stacked array whose step differs
    from the common one; their values are placeholders to be replaced.
    """

    value: np.ndarray
    error_bar: np.ndarray
    redo: np.ndarray


def mse_head(plan: Plan, pos: int, method: str, steps: np.ndarray | None,
             h0: float) -> HeadResult:
    """All entries of ``[W; b]`` of the last layer under MSE, any method.

    ``steps`` is the per-entry step array of shape ``(n_in + 1, n_out)``, or
    None when every entry uses ``h0``.
    """
    xa = augmented_input(plan, pos)
    resid = plan.loss.resid
    n_i, n_j = xa.shape[1], resid.shape[1]
    S = np.empty((n_i, n_j))
    plan.kernels.contract(xa, resid, S)
    Q = np.einsum("ri,ri->i", xa, xa)
    xn = np.sqrt(Q)
    rn = np.sqrt(np.einsum("rj,rj->j", resid, resid))
    rhon = np.sqrt(np.einsum("rj,rj->j", plan.loss.rho, plan.loss.rho))
    value = S  # overwritten in place: S[i, j] is read before value[i, j] is written
    bar = np.empty((n_i, n_j))
    use = steps is not None
    steps_arr = np.ascontiguousarray(steps, dtype=np.float64) if use else np.zeros((1, 1))
    plan.kernels.finish_mse(S, Q, xn, rn, rhon, steps_arr, float(h0), int(use),
                            constants.METHOD_CODES[method], plan.loss.scale, plan.eps,
                            2.0 + math.sqrt(xa.shape[0]), config.NOISE_SAFETY,
                            config.NOISE_FLOOR_ULPS, value, bar)
    return HeadResult(value, bar, np.zeros(0, dtype=np.int64))


def logistic_derivative_polynomials(count: int) -> list[np.polynomial.Polynomial]:
    """``P_1 .. P_count`` with ``g^(m)(0) = P_m(p)`` for ``g(d) = log1p(p expm1(d))``.

    ``g'(d) = q(d)``, the softmax probability after the move, and
    ``q' = q (1 - q)``, so ``P_1(q) = q`` and ``P_(m+1) = P_m' * q (1 - q)``.

    Examples
    --------
    >>> [P.coef.tolist() for P in logistic_derivative_polynomials(3)]
    [[0.0, 1.0], [0.0, 1.0, -1.0], [0.0, 1.0, -3.0, 2.0]]
    """
    q = np.polynomial.Polynomial([0.0, 1.0])
    step = q * (1 - q)
    out = [q]
    while len(out) < count:
        out.append(out[-1].deriv() * step)
    return out


def softmax_tables(plan: Plan, pos: int, method: str, h0: float):
    """Tables of the softmax cross-entropy fast path, or None when it does not apply.

    Per example and entry, the loss difference is ``m (g(d) - g(-d)) - 2 t d``
    (central) or ``m g(d) - t d`` (forward) with ``d = h x[r, i]``; ``g`` is
    expanded in its Taylor series ``sum_k P_k(p) d^k / k!`` (radius of
    convergence >= pi), kept while the terms matter at ``SERIES_TOLERANCE * eps``
    of the first-order term. The first-order term is ``d (m p - t)``; the
    rest is bounded rigorously with ``|P_k(q)| <= sum |coefficients|`` on [0, 1].
    """
    if method not in ("central", "forward"):
        return None
    lt = plan.loss
    x = augmented_input(plan, pos)
    d = h0 * x
    dmax = float(np.abs(d).max(initial=0.0))
    if dmax > constants.SERIES_MAX_ARGUMENT:
        return None
    central = method == "central"
    orders = range(3, constants.SERIES_MAX_TERMS + 3, 2) if central else \
        range(2, constants.SERIES_MAX_TERMS + 3)
    polys = logistic_derivative_polynomials(constants.SERIES_MAX_TERMS + 3)
    bound = [float(np.sum(np.abs(P.coef))) for P in polys]  # |P_k| on [0, 1]
    factor = 2.0 if central else 1.0  # g(d) - g(-d) doubles the odd terms
    limit = constants.SERIES_TOLERANCE * plan.eps
    kept = []
    remainder_order = None
    for k in orders:
        if bound[k - 1] * dmax ** (k - 1) / math.factorial(k) <= limit:
            remainder_order = k
            break
        kept.append(k)
    if remainder_order is None:
        return None
    mass = lt.mass[:, None]
    abs_mass = np.abs(mass)
    lefts = [factor * d] + [factor * d ** k / math.factorial(k) for k in kept]
    rights = [lt.resid] + [mass * polys[k - 1](lt.prob) for k in kept]
    L = np.ascontiguousarray(np.concatenate(lefts, axis=0))
    R = np.ascontiguousarray(np.concatenate(rights, axis=0))
    ln = np.stack([np.sqrt(np.einsum("ri,ri->i", a, a)) for a in lefts])
    rn = np.stack([np.sqrt(np.einsum("rj,rj->j", a, a)) for a in rights])
    dn = ln[0]
    base = abs_mass * lt.prob * lt.rho
    rhon = np.sqrt(np.einsum("rj,rj->j", base, base))
    # Taylor remainder of the kept series: the first omitted term (with the
    # bound on |P_k|) times 2 covers the geometric rest since |d| <= 1/2.
    k = remainder_order
    tail = lt.scale * 2.0 * factor * bound[k - 1] / math.factorial(k) * \
        np.sum(abs_mass * np.abs(d) ** k, axis=0)
    if central:
        trunc = lt.scale * h0 ** 2 * np.sum(abs_mass * np.abs(x) ** 3, axis=0) * \
            constants.LSE_THIRD_DERIVATIVE_BOUND / 6.0
    else:
        trunc = lt.scale * h0 * np.sum(abs_mass * x ** 2, axis=0) * \
            constants.LSE_SECOND_DERIVATIVE_BOUND / 2.0
    return L, R, ln, rn, dn, rhon, trunc, tail, len(lefts)


def softmax_head(plan: Plan, pos: int, method: str, steps: np.ndarray | None,
                 h0: float) -> HeadResult | None:
    """All entries of ``[W; b]`` of the last layer under softmax cross-entropy.

    Returns None when the series does not apply (Richardson, or steps so
    large that ``|d| > SERIES_MAX_ARGUMENT``).
    """
    tables = softmax_tables(plan, pos, method, h0)
    if tables is None:
        return None
    L, R, ln, rn, dn, rhon, trunc, tail, groups = tables
    n_i, n_j = L.shape[1], R.shape[1]
    V = np.empty((n_i, n_j))
    plan.kernels.contract(L, R, V)
    bar = np.empty((n_i, n_j))
    plan.kernels.finish_softmax(V, np.ascontiguousarray(ln), np.ascontiguousarray(rn), dn,
                                rhon, np.ascontiguousarray(trunc),
                                np.ascontiguousarray(tail), float(h0), plan.loss.scale,
                                plan.eps, constants.METHOD_CODES[method],
                                2.0 + math.sqrt(L.shape[0]), config.NOISE_SAFETY,
                                config.NOISE_FLOOR_ULPS, V, bar)
    redo = np.zeros(0, dtype=np.int64) if steps is None else \
        np.flatnonzero(steps.reshape(-1) != h0).astype(np.int64)
    return HeadResult(V, bar, redo)
