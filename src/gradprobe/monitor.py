"""Kept for imports of ``gradprobe.monitor``: the monitor lives in :mod:`gradprobe.integrations.monitor`."""
from .integrations.monitor import GradientMonitor, GradientWarning, MonitorRecord

__all__ = ["GradientMonitor", "GradientWarning", "MonitorRecord"]
