"""What a check found: the reports, their table and dict, plots, progress bars.

``gradprobe.report.CheckReport`` and ``gradprobe.report.ParamReport`` are the
public paths of the report classes.
"""
from .reports import CheckReport, ParamReport

__all__ = ["CheckReport", "ParamReport"]
