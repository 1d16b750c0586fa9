"""The pytest plugin's entry point (``pytest11``); it lives in :mod:`gradprobe.integrations.pytest_plugin`.

pytest reads hooks and fixtures from the module its entry point names, so
they are re-exported here by name.
"""
from .integrations.pytest_plugin import (GradCheck, gradcheck, gradprobe_options,
                                         pytest_addoption, pytest_report_header)

__all__ = ["GradCheck", "gradcheck", "gradprobe_options", "pytest_addoption",
           "pytest_report_header"]
