"""A 2-D convolution with a hand-written VJP, checked with ``check_vjp``.

``y = conv2d(x, k)`` is a "valid" cross-correlation (what deep-learning
libraries call convolution): ``y[i, j] = sum_ab x[i + a, j + b] k[a, b]``.
Its VJP for an upstream gradient ``u`` is

* ``dk = correlate(x, u)`` (``dk[a, b] = sum_ij x[i + a, j + b] u[i, j]``);
* ``dx`` = the *full* correlation of ``u`` with the kernel **flipped** in
  both axes.

The classic bug forgets the flip. With a random kernel every entry of
``dx`` is wrong while ``dk`` passes; ``check_vjp`` says which.

Run with ``python -m gradprobe.examples.conv_vjp``.
"""
from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import gradprobe as gp
from gradprobe.checks.vector import check_jvp, check_vjp


def conv2d(x: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Valid 2-D cross-correlation of ``x`` (H, W) with ``k`` (kh, kw).

    Examples
    --------
    >>> conv2d(np.arange(9.0).reshape(3, 3), np.ones((2, 2)))
    array([[ 8., 12.],
           [20., 24.]])
    """
    return np.einsum("ijab,ab->ij", sliding_window_view(x, k.shape), k)


def _full_correlation(u: np.ndarray, k: np.ndarray) -> np.ndarray:
    kh, kw = k.shape
    padded = np.pad(u, ((kh - 1, kh - 1), (kw - 1, kw - 1)))
    return np.einsum("ijab,ab->ij", sliding_window_view(padded, k.shape), k)


def conv2d_vjp(u: np.ndarray, x: np.ndarray, k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Gradients of ``<u, conv2d(x, k)>`` with respect to ``x`` and ``k``."""
    dk = np.einsum("ijab,ij->ab", sliding_window_view(x, k.shape), u)
    dx = _full_correlation(u, k[::-1, ::-1])
    return dx, dk


def conv2d_vjp_unflipped(u: np.ndarray, x: np.ndarray,
                         k: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The classic bug: the input gradient uses the kernel without flipping it."""
    dk = np.einsum("ijab,ij->ab", sliding_window_view(x, k.shape), u)
    dx = _full_correlation(u, k)
    return dx, dk


def conv2d_jvp(t: tuple[np.ndarray, np.ndarray], x: np.ndarray,
               k: np.ndarray) -> np.ndarray:
    """Forward-mode derivative: conv2d is bilinear in ``(x, k)``."""
    tx, tk = t
    return conv2d(tx, k) + conv2d(x, tk)


def point(seed: int = 0, dtype: object = np.float64) -> tuple[np.ndarray, np.ndarray]:
    """A 6x7 image and a random (asymmetric) 3x3 kernel."""
    rng = np.random.default_rng(seed)
    return rng.normal(size=(6, 7)).astype(dtype), rng.normal(size=(3, 3)).astype(dtype)


def check_correct(dtype: object = np.float64) -> gp.CheckReport:
    """The correct VJP passes for both ``x`` and ``k``."""
    return check_vjp(conv2d, point(dtype=dtype), conv2d_vjp)


def check_unflipped(dtype: object = np.float64) -> gp.CheckReport:
    """The unflipped kernel: ``x`` fails, ``k`` passes."""
    return check_vjp(conv2d, point(dtype=dtype), conv2d_vjp_unflipped)


def check_forward_mode() -> gp.CheckReport:
    """The forward-mode derivative, checked with ``check_jvp``."""
    return check_jvp(conv2d, point(), conv2d_jvp)


def main() -> None:
    print("-- conv2d, correct VJP:")
    print(check_correct())
    print("\n-- conv2d, float32:")
    print(check_correct(np.float32))
    print("\n-- conv2d, VJP with the kernel not flipped:")
    print(check_unflipped())
    print("\n-- conv2d, JVP:")
    print(check_forward_mode())


if __name__ == "__main__":
    main()
