"""The constants of :mod:`gradprobe.nn`, re-exported from :mod:`gradprobe.config`.

They are defined (and documented) in the ``gradprobe.nn`` section of
:mod:`gradprobe.config`, the one home of every constant; the kernels read
them from here as ``constants.NAME``.
"""
from __future__ import annotations

from ..config import (  # noqa: F401
    NUMBA_FLAGS, IDENTITY, RELU, TANH, SIGMOID, LOSS_MSE, LOSS_SOFTMAX_CE, METHOD_CODES,
    STAGE_ACTIVATION, STAGE_DENSE, MATMUL_ROWS, MATMUL_COLS, CONTRACT_ROWS, CONTRACT_COLS,
    ENTRY_CHUNK, SERIES_MAX_TERMS, SERIES_MAX_ARGUMENT, SERIES_TOLERANCE,
    LSE_SECOND_DERIVATIVE_BOUND, LSE_THIRD_DERIVATIVE_BOUND, KINK_STEP_RETRIES,
    ACTIVATION_ROUNDING_ULPS, BASE_POINT_ULPS,
)
