"""A batch-normalisation layer with a hand-written backward pass, checked with ``check_layer``.

``y = gamma * (x - mean) / sqrt(var + eps) + beta``, statistics over the
batch (axis 0). The input gradient must carry the dependence of the mean
and of the variance on every input of the batch::

    dx = gamma / sqrt(var + eps) / N * (N dy - sum(dy) - xhat * sum(dy * xhat))

The classic bug treats the batch statistics as constants and back-propagates
only ``dy * gamma / sqrt(var + eps)``: the parameter gradients are still
right (so a loss-level check that looks only at ``gamma`` and ``beta`` would
pass), but every entry of the input gradient is wrong. ``check_layer``
checks the input gradient too, and names it.

Run with ``python -m gradprobe.examples.batchnorm_layer``.
"""
from __future__ import annotations

import numpy as np

import gradprobe as gp
from gradprobe.checks.layer import check_layer

#: Batch of 8 examples with 4 features, scaled and shifted so that the
#: normalisation has something to do.
BATCH, FEATURES = 8, 4


class BatchNorm:
    """Batch normalisation over axis 0 with learnable ``gamma`` and ``beta``.

    Examples
    --------
    >>> layer = BatchNorm(3)
    >>> y = layer.forward(np.arange(12.0).reshape(4, 3))
    >>> np.allclose(((y - layer.params["beta"]) / layer.params["gamma"]).mean(axis=0), 0.0)
    True
    """

    def __init__(self, features: int, *, eps: float = 1e-5, seed: int = 0,
                 dtype: object = np.float64):
        rng = np.random.default_rng(seed)
        self.eps = eps
        self.params = {"gamma": rng.uniform(0.5, 1.5, features).astype(dtype),
                       "beta": rng.uniform(-0.5, 0.5, features).astype(dtype)}
        self.grads = {k: np.zeros_like(v) for k, v in self.params.items()}
        self.cache: tuple[np.ndarray, np.ndarray] | None = None

    def forward(self, x: np.ndarray) -> np.ndarray:
        mean = x.mean(axis=0)
        inv_std = 1.0 / np.sqrt(x.var(axis=0) + self.eps)
        xhat = (x - mean) * inv_std
        self.cache = (xhat, inv_std)
        return self.params["gamma"] * xhat + self.params["beta"]

    def backward(self, dy: np.ndarray) -> np.ndarray:
        xhat, inv_std = self.cache
        n = dy.shape[0]
        self.grads["gamma"][...] = np.sum(dy * xhat, axis=0)
        self.grads["beta"][...] = np.sum(dy, axis=0)
        dxhat = dy * self.params["gamma"]
        return inv_std / n * (n * dxhat - dxhat.sum(axis=0)
                              - xhat * np.sum(dxhat * xhat, axis=0))


class BatchNormConstantStatistics(BatchNorm):
    """The classic bug: mean and variance treated as constants in backward."""

    def backward(self, dy: np.ndarray) -> np.ndarray:
        xhat, inv_std = self.cache
        self.grads["gamma"][...] = np.sum(dy * xhat, axis=0)
        self.grads["beta"][...] = np.sum(dy, axis=0)
        return dy * self.params["gamma"] * inv_std


def data(seed: int = 1, dtype: object = np.float64) -> np.ndarray:
    """A batch whose features have different means and scales."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(BATCH, FEATURES)) * np.array([1.0, 3.0, 0.5, 2.0]) \
        + np.array([0.0, 5.0, -2.0, 1.0])
    return x.astype(dtype)


def check_correct(dtype: object = np.float64) -> gp.CheckReport:
    """The correct backward pass: every gradient passes."""
    return check_layer(BatchNorm(FEATURES, dtype=dtype), data(dtype=dtype))


def check_constant_statistics(dtype: object = np.float64) -> gp.CheckReport:
    """The bug: the input gradient fails, gamma and beta pass."""
    return check_layer(BatchNormConstantStatistics(FEATURES, dtype=dtype), data(dtype=dtype))


def main() -> None:
    print("-- batch norm, correct backward:")
    print(check_correct())
    print("\n-- batch norm, float32 layer:")
    print(check_correct(np.float32))
    print("\n-- batch norm, backward that ignores the dependence of mean and variance on x:")
    print(check_constant_statistics())


if __name__ == "__main__":
    main()
