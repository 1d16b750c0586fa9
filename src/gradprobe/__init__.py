"""gradprobe: check hand-written gradients against numerical derivatives.

>>> import numpy as np, gradprobe as gp
>>> gp.check(lambda w: np.sum(w ** 2), np.array([1.0, 2.0]), np.array([2.0, 4.0])).passed
True
"""
from .checks.scalar import assert_gradients, check, check_model, numerical_gradient
from .errors import GradientCheckError
from .integrations.monitor import GradientMonitor, GradientWarning, MonitorRecord
from .integrations.info import __version__, info
from .checks.layer import check_layer
from .report.reports import CheckReport, ParamReport
from .checks.vector import check_hvp, check_jacobian, check_jvp, check_vjp


def __getattr__(name: str):
    """``gp.torch`` and ``gp.jax``: the adapters, imported (with their library) on first use."""
    if name in ("torch", "jax"):
        import importlib

        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "CheckReport",
    "GradientCheckError",
    "GradientMonitor",
    "GradientWarning",
    "MonitorRecord",
    "ParamReport",
    "__version__",
    "assert_gradients",
    "check",
    "check_hvp",
    "check_jacobian",
    "check_jvp",
    "check_layer",
    "check_model",
    "check_vjp",
    "info",
    "numerical_gradient",
]
