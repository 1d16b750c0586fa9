"""Kept for imports of ``gradprobe.api``: the scalar checks live in :mod:`gradprobe.checks.scalar`."""
from .checks.scalar import assert_gradients, check, check_model, numerical_gradient, run_check

__all__ = ["assert_gradients", "check", "check_model", "numerical_gradient", "run_check"]
