"""Exceptions raised by gradprobe."""
from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .report.reports import CheckReport


class GradientCheckError(AssertionError):
    """A gradient check failed; its ``report`` attribute holds the details.

    The message is the report's text, so test runners show the table of
    failures and the diagnosis rather than a matrix dump.

    Examples
    --------
    >>> import numpy as np, gradprobe as gp
    >>> try:
    ...     gp.assert_gradients(lambda w: np.sum(w ** 2), np.ones(3), np.ones(3))
    ... except gp.GradientCheckError as err:
    ...     print(err.report.passed)
    False
    """

    def __init__(self, report: "CheckReport"):
        super().__init__(str(report))
        self.report = report
