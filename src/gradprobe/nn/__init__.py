"""Dense networks with Numba kernels, and a structured full gradient check.

>>> import numpy as np
>>> from gradprobe.nn import Sequential, Dense, ReLU, MSE, check_model
>>> model = Sequential([Dense(4, 8, seed=0), ReLU(), Dense(8, 2, seed=1)], loss=MSE())
>>> rng = np.random.default_rng(0)
>>> X, T = rng.standard_normal((16, 4)), rng.standard_normal((16, 2))
>>> check_model(model, X, T).passed
True
"""
from .check import check_model, numerical_gradient_model
from .layers import Activation, Dense, Identity, ReLU, Sigmoid, Tanh
from .losses import MSE, Loss, SoftmaxCrossEntropy
from .sequential import Sequential

__all__ = [
    "MSE",
    "Activation",
    "Dense",
    "Identity",
    "Loss",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "SoftmaxCrossEntropy",
    "Tanh",
    "check_model",
    "numerical_gradient_model",
]
