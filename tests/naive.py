"""Slow, obviously-correct references for the tests.

Nothing here is clever: a loop over entries with a copy of the parameters
(the seed problems' way), and losses whose exact gradients are written out
by hand.
"""
from __future__ import annotations

import numpy as np


def central_difference(f, params, h, args=()):
    """Seed-style loop: copy, perturb one entry by ±h, difference the losses."""
    out = []
    for p, array in enumerate(params):
        grad = np.zeros(array.shape, dtype=np.float64)
        for index in np.ndindex(array.shape):
            plus = [a.astype(np.float64).copy() for a in params]
            minus = [a.astype(np.float64).copy() for a in params]
            plus[p][index] += h
            minus[p][index] -= h
            grad[index] = (f(*plus, *args) - f(*minus, *args)) / (2 * h)
        out.append(grad)
    return out


# -- losses with exact gradients (f, grad) over one or several arrays -------------

def quartic(x):
    return np.sum(x ** 4 - 3.0 * x ** 2 + x)


def quartic_grad(x):
    return 4.0 * x ** 3 - 6.0 * x + 1.0


def sin_exp(x):
    return np.sum(np.sin(x) * np.exp(0.3 * x))


def sin_exp_grad(x):
    return np.cos(x) * np.exp(0.3 * x) + 0.3 * np.sin(x) * np.exp(0.3 * x)


def logsumexp(x):
    m = np.max(x)
    return m + np.log(np.sum(np.exp(x - m)))


def logsumexp_grad(x):
    e = np.exp(x - np.max(x))
    return e / e.sum()


def bilinear(A, b, c):
    """``b^T A c + sum(A^2) / 2``, three parameters of different ranks."""
    return b @ A @ c + 0.5 * np.sum(A * A)


def bilinear_grad(A, b, c):
    return np.outer(b, c) + A, A @ c, A.T @ b


def mlp_loss(W1, b1, W2, b2, X, T):
    """Two-layer tanh network, 1/2 mean squared error over the batch."""
    H = np.tanh(X @ W1 + b1)
    Y = H @ W2 + b2
    return 0.5 * np.sum((Y - T) ** 2) / X.shape[0]


def mlp_grad(W1, b1, W2, b2, X, T):
    H = np.tanh(X @ W1 + b1)
    dY = (H @ W2 + b2 - T) / X.shape[0]
    dH = (dY @ W2.T) * (1.0 - H * H)
    return X.T @ dH, dH.sum(axis=0), H.T @ dY, dY.sum(axis=0)


def mlp_point(dtype=np.float64, seed=0, batch=16, n_in=6, n_hidden=8, n_out=3):
    rng = np.random.default_rng(seed)
    params = (rng.normal(0, 0.5, (n_in, n_hidden)), rng.normal(0, 0.1, n_hidden),
              rng.normal(0, 0.5, (n_hidden, n_out)), rng.normal(0, 0.1, n_out))
    X = rng.normal(size=(batch, n_in))
    T = rng.normal(size=(batch, n_out))
    return tuple(p.astype(dtype) for p in params), X.astype(dtype), T.astype(dtype)


def relu_loss(x):
    """Piecewise linear: kinks wherever an entry is 0."""
    return float(np.sum(np.maximum(x, 0.0) * np.arange(1, x.size + 1).reshape(x.shape)))


def relu_grad(x, at_zero=0.0):
    g = np.where(x > 0, 1.0, 0.0)
    g = np.where(x == 0, at_zero, g)
    return g * np.arange(1, x.size + 1).reshape(x.shape)


# -- the verdict of one parameter, with every per-entry array (the reference of
#    gradprobe.verdict.compare.compare_param, which keeps only the masks) ----------------

def naive_compare(analytic, estimate, rtol, atol, refine=None, kink_probe=None,
                  confirm_limit=1024, kink_jump_kept=0.5):
    """Judge everything, re-judge everything after each step: returns
    ``(failed, kink, numeric, error_bar, abs_error, rel_error, ratio)``."""
    from gradprobe.differences.stencils import Estimate
    from gradprobe.verdict.compare import _at_kink, judge

    def merge(base, positions, better):
        def put(target, source):
            if source is None:
                return target
            out = np.full(base.value.size, np.nan) if target is None else target.copy()
            out[positions] = source
            return out
        return Estimate(put(base.value, better.value), put(base.error_bar, better.error_bar),
                        put(base.left, better.left), put(base.right, better.right))

    a = np.asarray(analytic, dtype=np.float64)
    verdict = judge(a, estimate, rtol=rtol, atol=atol)
    suspects = verdict.failed | verdict.kink
    if refine is not None and suspects.any():
        positions = np.flatnonzero(suspects)
        positions = positions[np.argsort(-verdict.ratio[positions], kind="stable")]
        positions = positions[:confirm_limit]
        estimate = merge(estimate, positions, refine(positions))
        verdict = judge(a, estimate, rtol=rtol, atol=atol)
    failed, kink = verdict.failed.copy(), verdict.kink.copy()
    if kink_probe is not None and kink.any():
        positions = np.flatnonzero(kink)
        left, right = kink_probe(positions)
        jump_before = np.abs(estimate.right[positions] - estimate.left[positions])
        kept = np.abs(right - left) >= kink_jump_kept * jump_before
        confirmed = kept & _at_kink(a[positions], left, right, verdict.allowance[positions])
        kink[positions[~confirmed]] = False
        failed[positions[~confirmed]] = True
    return (failed, kink, estimate.value, estimate.error_bar, verdict.abs_error,
            verdict.rel_error, verdict.ratio)
