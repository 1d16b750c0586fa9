"""Every tunable number of :mod:`gradprobe.nn`, in one place.

Numba flags, block sizes of the kernels, and the factors that turn rounding
analyses into error bars. The shared verdict settings (tolerances, noise
safety factor, kink threshold) stay in :mod:`gradprobe.config` and are used
from there.
"""
from __future__ import annotations

#: Flags of every Numba kernel in :mod:`gradprobe.nn`: cached on disk, no
#: fast-math anywhere (the kernels take differences; reassociation would
#: change the rounding that the error bars describe), and NumPy's error
#: model (a division by zero gives inf/nan, which the callers report with
#: the entry that produced it, instead of an exception inside a thread).
NUMBA_FLAGS = {"cache": True, "fastmath": False, "nogil": True, "error_model": "numpy"}

#: Activation codes shared by the Python classes and the kernels.
IDENTITY, RELU, TANH, SIGMOID = 0, 1, 2, 3
#: Loss codes shared by the Python classes and the kernels.
LOSS_MSE, LOSS_SOFTMAX_CE = 0, 1
#: Method codes of the fast-path kernels.
METHOD_CODES = {"central": 0, "forward": 1, "richardson": 2}
#: Stage kinds of the downstream network in the structured kernels.
STAGE_ACTIVATION, STAGE_DENSE = 0, 1

#: Tile of the dense matrix product kernel: rows of the output per tile
#: (the tile's accumulator, rows x columns x 8 bytes, stays in L1 cache).
MATMUL_ROWS = 16
#: Tile of the dense matrix product kernel: columns of the output per tile.
MATMUL_COLS = 128

#: Tile of the contraction kernel ``out = L.T @ R`` used by the structured
#: check: entries ``i`` per tile (its accumulator, rows x columns x 8 bytes,
#: stays in L1 cache).
CONTRACT_ROWS = 8
#: Entries ``j`` per tile of the contraction kernel.
CONTRACT_COLS = 256

#: Entries handled by one chunk of the per-entry (downstream) kernel; every
#: chunk owns its scratch buffers.
ENTRY_CHUNK = 64

#: Highest order of the Taylor series of a row's log-sum-exp change used by
#: the softmax cross-entropy fast path; a layer whose steps need more is
#: evaluated entry by entry instead.
SERIES_MAX_TERMS = 15
#: The series is used only while every move ``|d| = h |x|`` stays below this
#: (its radius of convergence is at least pi).
SERIES_MAX_ARGUMENT = 0.5
#: Terms are added until the next one is below this fraction of machine
#: epsilon relative to the first-order term.
SERIES_TOLERANCE = 1.0 / 32.0

#: Bounds on derivatives of ``g(d) = log(1 + p * expm1(d))`` (the change of a
#: row's log-sum-exp when one logit moves by ``d``), valid for every p in
#: [0, 1]: ``|g''| <= 1/4``, ``|g'''| <= 1 / (6 sqrt 3)``. They bound the
#: truncation error of the softmax cross-entropy fast path.
LSE_SECOND_DERIVATIVE_BOUND = 0.25
LSE_THIRD_DERIVATIVE_BOUND = 0.0962250448649376

#: Times an entry whose evaluation moved a ReLU input across zero is
#: evaluated again with its step divided by ``config.KINK_STEP_DIVISOR``.
KINK_STEP_RETRIES = 4

#: Rounding of one elementwise activation increment, in ulps of its result.
ACTIVATION_ROUNDING_ULPS = 4.0
#: Extra ulps of a loss difference allowed for rounding of the base point
#: (the cached pre-activations that every perturbed evaluation reuses).
BASE_POINT_ULPS = 4.0
