"""gradprobe: check hand-written gradients against numerical derivatives.

>>> import numpy as np, gradprobe as gp
>>> gp.check(lambda w: np.sum(w ** 2), np.array([1.0, 2.0]), np.array([2.0, 4.0])).passed
True
"""
from .api import assert_gradients, check, numerical_gradient
from .errors import GradientCheckError
from .info import __version__, info
from .report import CheckReport, ParamReport

__all__ = [
    "CheckReport",
    "GradientCheckError",
    "ParamReport",
    "__version__",
    "assert_gradients",
    "check",
    "info",
    "numerical_gradient",
]
