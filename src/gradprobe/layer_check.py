"""Kept for imports of ``gradprobe.layer_check``: the check lives in :mod:`gradprobe.checks.layer`."""
from .checks.layer import check_layer

__all__ = ["check_layer"]
