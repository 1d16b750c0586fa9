"""The seed problems written with :mod:`gradprobe.nn`, checked with ``check_model``.

Run ``python -m gradprobe.examples.nn_models`` to print the three reports.

* :func:`linear_neuron`: two inputs, one output, no activation, weights
  ``[0.34, 0.56]``, bias ``0.54``, input ``[1, 0]`` and target ``0.1056``, loss
  ``E = 1/2 (y - out)^2``. The numerical gradient is of the *loss* (it depends
  on the target): ``dw = [0.7744, 0]``, ``db = 0.7744``.
* :func:`two_two_one`: a 2-2-1 sigmoid network on XOR, every weight checked
  before the update step.
* :func:`linear_regression`: five features and a bias ``w0`` (the constant
  feature ``x0 = 1`` is the Dense bias), cost ``CF = 1/2 sum (Y_hat - Y)^2``
  (``reduction="sum"``) whose gradient is ``X.T @ (Y_hat - Y)``; one
  gradient-descent step from an initial point, then every parameter is
  perturbed by ``e = 1e-4``.

Examples
--------
>>> from gradprobe.examples import nn_models
>>> model, X, T = nn_models.linear_neuron()
>>> g = model.gradients(X, T)
>>> [round(float(v), 4) for v in g["0.W"].ravel()], round(float(g["0.b"][0]), 4)
([0.7744, 0.0], 0.7744)
>>> all(nn_models.check(problem).passed for problem in nn_models.PROBLEMS)
True
"""
from __future__ import annotations

import numpy as np

from gradprobe.nn import MSE, Dense, Sequential, Sigmoid, check_model
from gradprobe.report.reports import CheckReport


def linear_neuron() -> tuple[Sequential, np.ndarray, np.ndarray]:
    """The linear neuron of the first seed: model, input ``[1, 0]``, target ``0.1056``."""
    model = Sequential([Dense(2, 1, W=[[0.34], [0.56]], b=[0.54])], loss=MSE())
    return model, np.array([[1.0, 0.0]]), np.array([[0.1056]])


def two_two_one(seed: int = 0) -> tuple[Sequential, np.ndarray, np.ndarray]:
    """A 2-2-1 network with sigmoid units on the four XOR examples."""
    model = Sequential([Dense(2, 2, seed=seed), Sigmoid(), Dense(2, 1, seed=seed + 1), Sigmoid()],
                       loss=MSE())
    X = np.array([[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]])
    T = np.array([[0.0], [1.0], [1.0], [0.0]])
    return model, X, T


def linear_regression(seed: int = 0, samples: int = 20,
                      learning_rate: float = 0.01) -> tuple[Sequential, np.ndarray, np.ndarray]:
    """Linear regression on five features after one gradient-descent step.

    The data follow ``y = 1.5 + x . [2, -1, 0.5, 3, -2]`` plus noise; the
    model starts from zero weights and takes one step of
    ``W -= learning_rate * X.T @ (Y_hat - Y)`` (and likewise ``w0``).
    """
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((samples, 5))
    true_w = np.array([2.0, -1.0, 0.5, 3.0, -2.0])
    Y = (1.5 + X @ true_w + 0.1 * rng.standard_normal(samples)).reshape(-1, 1)
    model = Sequential([Dense(5, 1, W=np.zeros((5, 1)), b=np.zeros(1))],
                       loss=MSE(reduction="sum"))
    grads = model.gradients(X, Y)
    layer = model.layers[0]
    layer.W -= learning_rate * grads["0.W"]
    layer.b -= learning_rate * grads["0.b"]
    return model, X, Y


#: The three seed problems, as factories.
PROBLEMS = (linear_neuron, two_two_one, linear_regression)


def check(problem, **options) -> CheckReport:
    """Build a seed problem and check its model's gradients.

    The linear-regression seed perturbs every parameter by ``e = 1e-4``
    unless ``eps`` is given.
    """
    model, X, T = problem()
    if problem is linear_regression:
        options.setdefault("eps", 1e-4)
    return check_model(model, X, T, **options)


def main() -> None:
    """Print the report of every seed problem."""
    for problem in PROBLEMS:
        print(f"== {problem.__name__}")
        print(check(problem))
        print()


if __name__ == "__main__":
    main()
