"""Kept for imports of ``gradprobe.vector_checks``: the checks live in :mod:`gradprobe.checks.vector`."""
from .checks.vector import check_hvp, check_jacobian, check_jvp, check_vjp

__all__ = ["check_hvp", "check_jacobian", "check_jvp", "check_vjp"]
