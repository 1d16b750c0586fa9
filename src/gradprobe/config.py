"""Every tunable number of gradprobe, in one place.

Steps, tolerances, noise-estimation settings, report sizes, seed tags, Numba
flags and the kernels' tiles live here, in sections, so that the modules that
use them stay free of magic literals. Values are documented where they are
defined (the docs' configuration page is generated from these comments); the
README's "verdict rules" section explains how they combine.
tests/test_config.py fails on a number, Numba flag or seed tag written
elsewhere, on a tile or code of the C kernel (csrc/gp_nn.h) that differs from
its value here, and on a docstring showing a default other than this one.
"""
from __future__ import annotations

import numpy as np

#: Methods accepted by ``check`` / ``numerical_gradient``.
METHODS = ("central", "forward", "richardson", "complex")
#: Modes accepted by ``check``.
MODES = ("full", "sample", "directional", "auto")
#: The engines, in the order ``backend="auto"`` asks them (the Python engine,
#: which takes any f, last). This is their registry: each name is a module of
#: ``gradprobe.engines`` that defines the ``Engine`` subclass of that name
#: (``gradprobe.engines.select`` loads them). Adding an engine is its module,
#: its name here and its case in tests/test_engine_contract.py.
ENGINES = ("cffi", "numba", "dask", "python")
#: Backends accepted by ``check`` (``auto`` picks the fastest available).
BACKENDS = ("auto", *ENGINES)
#: Methods of the structured model check (``check_model``; its kernels are
#: real, so there is no complex step).
MODEL_METHODS = ("central", "forward", "richardson")
#: Modes of the structured model check (its full check is cheap: no sampling
#: of directions, no time budget).
MODEL_MODES = ("full", "sample")
#: Backends of the structured model check: its own kernels, Numba's or their
#: C twin; ``"auto"`` is the C twin when it was built, else Numba's.
MODEL_BACKENDS = ("auto", "numba", "cffi")
#: Backends of ``check_jvp``, ``check_jacobian`` and ``check_hvp``: differences
#: of array-valued functions run on the Python engine.
VECTOR_BACKENDS = ("auto", "python")

#: Floating dtypes a parameter may have (others are rejected with TypeError).
PARAM_DTYPES = (np.dtype(np.float16), np.dtype(np.float32), np.dtype(np.float64))
#: Dtype used for evaluation when ``upcast=True`` and a parameter is narrower.
UPCAST_DTYPE = np.dtype(np.float64)

#: Order of accuracy of each method's truncation error; the automatic step is
#: ``noise_rel ** (1 / (order + 1)) * max(1, |x|)`` (the step that balances
#: rounding against truncation when derivatives vary on the scale of ``x``).
METHOD_ORDER = {"forward": 1, "central": 2, "richardson": 4}
#: Loss evaluations per entry of each method.
EVALS_PER_ENTRY = {"forward": 1, "central": 2, "richardson": 4, "complex": 1}
#: Complex-step size relative to ``max(1, |x|)``: no cancellation, so tiny.
COMPLEX_STEP = 1e-20

#: Safety factor applied to the estimated noise of ``f`` in error bars:
#: rounding errors are bounded, not Gaussian, and one noise estimate serves
#: every entry, so the bar is a generous multiple of it.
NOISE_SAFETY = 8.0
#: Floor on the noise of one evaluation, in units of ``eps * |f|``.
NOISE_FLOOR_ULPS = 2.0
#: Points (``2 * NOISE_HALF_POINTS + 1``) along a random direction used to
#: estimate the noise of ``f`` (Moré & Wild's ECnoise difference table).
NOISE_HALF_POINTS = 4
#: Highest difference order examined by the noise estimator.
NOISE_MAX_ORDER = 6
#: Seed tag of the random direction the noise of ``f`` is measured along
#: (``np.random.default_rng([seed, tag])``), shared by the scalar and vector checks.
#: Every random draw of a check mixes the user's ``seed`` with a tag of its own
#: (the ``SEED_TAG_*`` constants, all different: tests/test_config.py), so two
#: draws of one check are independent and each is reproduced by the same seed.
SEED_TAG_NOISE = 0x6E6F6973
#: Seed tag of the entries drawn by ``mode="sample"``
#: (``default_rng([seed, parameter position, tag])``).
SEED_TAG_SAMPLE = 0x73616D70
#: Seed tag of the random directions of ``mode="directional"``
#: (``default_rng([seed, round, direction, tag])``).
SEED_TAG_DIRECTIONS = 0x64697265
#: Seed tag of the random draws of a compressed (grouped) Jacobian check:
#: the probed entries and the verified ones.
SEED_TAG_GROUPS = 0x67726F75
#: Seed tags of the random cotangents, tangents and Hessian vectors drawn by
#: the array-valued checks when the user gives none, keyed by the argument.
SEED_TAG_VECTORS = {"cotangents": 0x636F74, "tangents": 0x74616E, "vectors": 0x766563}
#: Seed tag of the cotangent the structural checks (gradprobe.checks.structural)
#: draw when none is given.
SEED_TAG_STRUCTURAL = 0x737472
#: Seed tag of the cotangent :func:`gradprobe.check_layer` draws for its first,
#: probing backward pass (which finds where the layer keeps its gradients).
SEED_TAG_LAYER_PROBE = 0x6C6179

#: First spacing of the noise probe, as a power of the evaluation epsilon.
NOISE_SPACING_POWER = 0.25
#: Factor by which the probe spacing changes when a try is inconclusive.
NOISE_SPACING_FACTOR = 100.0
#: Tries of the noise probe before falling back to the floor.
NOISE_TRIES = 3
#: Cap on the relative noise used to choose steps: a noisier loss cannot be
#: differentiated reliably and gets flagged through its error bars instead.
MAX_NOISE_REL = 1e-4

#: Default relative tolerance, keyed by the lower of the gradient's and the
#: parameter's precision (float64 flags a 1 % error with 1000x margin).
DEFAULT_RTOL = {np.dtype(np.float64): 1e-5, np.dtype(np.float32): 1e-3,
                np.dtype(np.float16): 3e-2}
#: Default absolute tolerance as a fraction of the largest gradient entry of
#: the same parameter: it absorbs the rounding of near-zero entries, whose
#: error follows the size of the terms that cancelled, not their own size.
DEFAULT_ATOL_FRACTION = {np.dtype(np.float64): 1e-8, np.dtype(np.float32): 1e-5,
                         np.dtype(np.float16): 1e-2}
#: A parameter whose largest gradient entry (analytic and numeric) is below
#: this many units of roundoff of its dtype times the whole check's largest
#: entry is zero in exact arithmetic (a bias before a batch norm): its values
#: are rounding on the check's scale, so its default ``atol`` is taken from
#: the check's largest entry instead of its own. A parameter above it keeps
#: its own scale, so a 1 % error in a small but real gradient is still seen.
ZERO_GRADIENT_ULPS = 100.0

#: A failing entry is a kink when its one-sided derivatives bracket the
#: analytic value and differ by more than this fraction of their size (a
#: smooth function's one-sided derivatives differ only by about h * f'').
KINK_MIN_JUMP = 1e-3
#: Kink candidates are probed again with one-sided differences at the step
#: divided by this: a kink's jump stays, a smooth function's shrinks with h.
KINK_STEP_DIVISOR = 16.0
#: A candidate is a kink when the jump at the smaller step keeps at least
#: this fraction of the jump at the larger one (smooth: 1 / KINK_STEP_DIVISOR).
KINK_JUMP_KEPT = 0.5

#: When an entry fails with a central or forward difference, it is
#: re-estimated with a Richardson difference before being reported; at most
#: this many entries per parameter are re-estimated (the worst first).
CONFIRM_LIMIT = 1024

#: A check is ``"inconclusive"`` when, after confirmation, some entry that did
#: not fail has an error bar more than this many times its tolerance
#: ``max(atol, rtol * |derivative|)``: with float64's default rtol that is a bar
#: wider than the 1 % error every check must flag (SPEC section 3). Entries
#: whose bar is wider than CONFIRM_WIDE_FACTOR x their tolerance are confirmed first.
UNRESOLVED_FACTOR = 1000.0
#: Passing entries are confirmed at steps of their own (below) when their error
#: bar exceeds this many times their tolerance: a bar up to 10x the tolerance
#: still sees a 1 % error in float64 with 100x margin, and the rounding bar of
#: entries whose derivative is ~0 (dead ReLUs) often sits just above atol.
CONFIRM_WIDE_FACTOR = 10.0
#: Confirmation of suspect entries (failing, kink candidates, or whose error bar
#: is wider than the tolerance) by successive steps: central differences at
#: ``h0, h0 / r, h0 / r**2, ...`` (``r = SHRINK_RATIO``), each combined with the
#: previous one by Richardson's rule, the error of each level measured by the
#: change from the previous one (as ``scipy.differentiate`` and Ridders do).
#: At most this many smaller steps (2 evaluations each per entry still active).
SHRINK_LEVELS = 6
#: Ratio between successive steps of the confirmation.
SHRINK_RATIO = 4.0
#: An entry stops shrinking when its error bar is below this fraction of its
#: tolerance ``max(rtol * |value|, atol)``, or when the rounding at the next
#: step alone exceeds its best bar (rounding has taken over).
SHRINK_TARGET = 0.25
#: Safety factor on the measured change between levels used as error bar.
SHRINK_SAFETY = 2.0
#: The truncation bar of a central difference is calibrated on up to this many
#: entries of each parameter (2 more evaluations each, at twice the step): the
#: largest ratio of measured to modelled truncation scales every entry's bar.
CALIBRATION_ENTRIES = 4
#: Safety factor on that measured truncation.
CALIBRATION_SAFETY = 4.0
#: A perturbed point where ``f`` is not finite (outside its domain) is tried
#: again with the step divided by SHRINK_RATIO, at most this many times.
DOMAIN_SHRINKS = 8

#: Default number of entries drawn from every parameter in ``mode="sample"``.
DEFAULT_SAMPLES = 32

#: Number of worst entries listed under the table in ``str(report)``.
REPORT_WORST = 5
#: ``report.to_dict()`` lists at most this many failed indices (and kinks)
#: per parameter, with ``failed_indices_omitted`` / ``kinks_omitted`` counting
#: the rest: a summary of a 16.8M-entry layer with every entry wrong stays small.
REPORT_MAX_INDICES = 1000
#: Significant digits of numbers in ``str(report)``.
REPORT_DIGITS = 4

#: Relative agreement needed to call a failure "scaled", "transposed" etc.
DIAGNOSIS_FIT = 1e-2

#: Numba engine: chunks of entries per thread in one kernel launch. Each
#: chunk copies the parameters once; several chunks per thread let a thread
#: that finishes early take more work (dynamic scheduling, chunk size 1).
NUMBA_CHUNKS_PER_THREAD = 4
#: The compiled engines (Numba, C) hand their kernel no more entries per call
#: than its threads are predicted to finish in this many seconds (from the
#: loss's measured time): Ctrl-C is seen between calls, so a check stops within
#: about this long (or one entry's evaluations, for a loss slower than that).
ENGINE_CALL_SECONDS = 0.5
#: Compiler flags of every Numba kernel gradprobe compiles (the engine's
#: perturbation loop, ``gradprobe.nn``'s kernels, the verdict's metrics
#: kernel); no other module writes a Numba flag (tests/test_config.py checks).
#: No fast-math anywhere: the kernels take differences or move values that
#: reach the losses, and reassociation would change the rounding that the
#: error bars describe. ``cache`` stores compiled kernels on disk (the
#: engine's kernel receives ``f`` as a function pointer, so it is cacheable).
#: NumPy's error model: a division by zero gives inf/nan, which the callers
#: report with the entry that produced it, instead of an exception inside a
#: thread. ``nogil``: the kernels hold no Python objects.
NUMBA_FLAGS = {"cache": True, "fastmath": False, "nogil": True, "error_model": "numpy"}
#: :data:`NUMBA_FLAGS` for functions compiled per call around a user's
#: function or a closure, which Numba cannot cache on disk.
NUMBA_UNCACHED_FLAGS = {**NUMBA_FLAGS, "cache": False}
#: :data:`NUMBA_FLAGS` that an ``@overload`` takes (``jit_options``: it is
#: compiled into the kernel that calls it, and cached with it).
NUMBA_OVERLOAD_FLAGS = {k: NUMBA_FLAGS[k] for k in ("fastmath", "error_model")}
#: Numba engine: compiling its kernel for a new layout of argument types costs
#: 1.5-5 s on a 2-core machine (W5; loading it from Numba's disk cache takes
#: milliseconds). When it is not in the cache, the kernel is compiled only once
#: the check's evaluations are predicted (from the measured time of one loss)
#: to take longer than this in a Python loop; until then they go through
#: ``f``'s dispatcher from Python (the same compiled ``f``, the same losses).
#: 0 compiles at once.
NUMBA_COMPILE_PAYOFF_SECONDS = 1.5
#: Seconds the reference loop spends evaluating one ``numba.njit`` array-valued
#: function at perturbation groups (compressed Jacobians of layer checks) in this
#: process before the Numba engine compiles its kernel for it: that kernel is
#: compiled for each function and not cached (about 10 s on a 2-core machine).
#: 0 compiles at once.
NUMBA_OUTPUTS_PAYOFF_SECONDS = 20.0

#: Random directions drawn by ``mode="directional"`` (and ``"auto"`` when it
#: does not check every entry). Each costs one difference of ``f`` along the
#: direction (2 evaluations with the central method) through every entry.
DEFAULT_DIRECTIONS = 4
#: Random directions (cotangents, tangents, Hessian vectors) drawn by
#: ``check_vjp``, ``check_jvp``, ``check_hvp`` and ``check_layer`` when the
#: user gives none. One random direction finds any wrong linear map with
#: probability 1; a few guard against an unlucky, nearly orthogonal draw and
#: show whether a failure depends on the direction.
DEFAULT_VECTOR_DIRECTIONS = 3
#: Without ``grad``, :func:`gradprobe.check_hvp` differentiates the second difference
#: ``(f(x + k v) - f(x - k v)) / 2k``; ``k`` is ``eps ** HVP_INNER_STEP_POWER``
#: (relative to the entries' magnitudes), which balances its rounding error
#: (``eps / k``) against its truncation (``k**2``) for the outer difference.
HVP_INNER_STEP_POWER = 0.25
#: Entries of a direction are ``sign * weight * max(1, |x|)`` with the weight
#: uniform in ``[DIRECTION_MIN_WEIGHT, 1]``: no tiny components (so every
#: entry is seen with at least half the sensitivity), and no exact
#: cancellation between two equally wrong entries (as ``±1`` signs allow).
DIRECTION_MIN_WEIGHT = 0.5
#: Rounding assumed in each entry of the analytic gradient by a directional
#: check, in units of its dtype's epsilon times ``|g_j| + rms(g)`` (the RMS
#: term covers entries that are sums of cancelling terms). Measured: float32
#: MLP gradients computed in float32 err by at most 13 such units.
DIRECTIONAL_GRAD_ULPS = 16.0
#: Those per-entry roundings add up in ``g . u`` like a random walk (the signs
#: of ``u`` are random); the allowance is this many standard deviations of it
#: (Hoeffding: a false alarm probability below ``2 exp(-SIGMAS**2 / 2)``
#: even if every entry erred by the full assumed amount).
DIRECTIONAL_SIGMAS = 4.0
#: Localization splits a failing direction into halves and recurses into the
#: halves that fail. When more than this many groups fail at one level the
#: errors are dense: the parameters holding them are checked entry by entry.
LOCALIZATION_MAX_GROUPS = 16
#: Detection + localization rounds; each round draws fresh directions that
#: leave out the entries already named, so the last passing round confirms
#: that nothing else (above the resolution) is wrong.
LOCALIZATION_ROUNDS = 4

#: ``mode="auto"`` checks every entry when the estimated time of a full check
#: (entries x evaluations per entry x measured time of one loss) fits in this
#: many seconds, and falls back to directional checks plus a sample otherwise.
DEFAULT_BUDGET_S = 2.0

#: A passing parameter is diagnosed ``noisy`` when the median error bar of its
#: estimates exceeds this fraction of the derivative *and* the measured noise
#: of ``f`` exceeds NOISY_MIN_ULPS units of rounding: the check could not have
#: seen an error of that relative size.
NOISY_BAR_FRACTION = 2e-3
#: See NOISY_BAR_FRACTION: relative noise of ``f`` in units of the evaluation
#: epsilon above which ``f`` counts as noisy rather than merely rounded.
NOISY_MIN_ULPS = 1e3

#: The function must be a function: at the unperturbed point, a second call
#: (and every private copy a check evaluates) must reproduce the first
#: output bit for bit, or within ``NOISE_SAFETY`` x its measured noise. And an
#: output that changes between calls with a noise above this many units of
#: rounding (``eps * |output|``) is never judged: the check is
#: ``"inconclusive"`` (finding ``nondeterministic-forward``). Threaded
#: reductions that round differently stay far below it; a redrawn dropout
#: mask or an unseeded sampler is far above.
NONDETERMINISM_ULPS = 1e3
#: Default ``nondeterminism_tol``: allowed difference between two calls at the
#: same point, relative to the largest entry of the result (0: bit for bit
#: beyond the measured noise; the backward pass's repeat is compared with it
#: alone).
NONDETERMINISM_TOL = 0.0
#: Localization tests restricted directions with a central difference (two
#: evaluations); its truncation bar is this many times the largest truncation
#: measured along the full directions at detection (a restricted direction
#: moves fewer entries, so its third derivative is usually smaller).
LOCALIZATION_TRUNCATION_SAFETY = 2.0
#: Directional detection: while the truncation measured along the directions
#: exceeds their rounding, the step is reduced to balance them and the
#: directions tested again, at most this many times (once was enough for a
#: loss that changes on the scale of its parameters; a shorter length needs more).
DIRECTIONAL_STEP_REDUCTIONS = 3
#: Directional differences move every entry at once, so their rounding is
#: that of every term of the loss; the noise probe (one direction, one
#: spacing) can underestimate it. Measured over 1,000 random problems, the
#: largest residual of a correct gradient reached 0.47 of the allowance
#: without this factor; the error bars of directional tests use this many
#: times the measured noise.
DIRECTIONAL_NOISE_SAFETY = 2.0

#: From this many checked entries of one parameter on, the per-entry error
#: metrics run in one fused parallel Numba kernel (gradprobe.report.metrics_kernel)
#: instead of separate NumPy passes; below it Numba is not even imported.
VERDICT_KERNEL_MIN_ENTRIES = 200_000
#: Peak memory of a full structured check (``gradprobe.nn.check_model``) of
#: a float64 layer, in parameter bytes: the report keeps the numerical
#: estimates (1x), their error bars (1x) and a float64 copy of the analytic
#: gradient (1x), plus one byte per entry for each of the failed and kink
#: masks (0.25x); nothing else per entry outlives a kernel call. The
#: parameters themselves are read in place, not copied. Measured with
#: tracemalloc in tests/test_nn_memory.py (NumPy allocations) and as
#: resident-set growth in benchmarks/test_w1_dense.py.
FULL_CHECK_PEAK_FACTOR = 4.0
#: Entries handed to a black-box engine per call when a parameter's entries
#: are estimated (gradprobe.differences.estimation.estimate_entries): the perturbed
#: points, their losses and the stencil's temporaries exist for one chunk at
#: a time; the estimates go into arrays allocated once.
ESTIMATE_CHUNK = 1 << 16
#: Entries per chunk when per-entry error metrics are recomputed or reduced
#: (the verdict's summary pass, a large report's worst entries): the
#: temporaries of one chunk stay this small however large the parameter.
VERDICT_CHUNK = 1 << 16

#: :class:`gradprobe.GradientMonitor`: check every this many steps by default.
MONITOR_EVERY = 100
#: :class:`gradprobe.GradientMonitor`: time budget of ``mode="auto"`` per
#: check (seconds). Small, so that a monitored training loop stays fast: a
#: layer whose full check would take longer gets random directions + a sample.
MONITOR_BUDGET_S = 0.05
#: Progress bars: ``progress=None`` shows one when the check is predicted to
#: take longer than this many seconds (entries x evaluations per entry x the
#: measured time of one loss).
PROGRESS_MIN_SECONDS = 2.0
#: Progress bars: the Python engine is called on chunks of at most this many
#: entries, and the bar moves between chunks (results are unchanged: every
#: entry is evaluated on its own).
PROGRESS_CHUNK_ENTRIES = 2048
#: Progress bars: the Numba engine's entries are split into this many
#: batches (one kernel launch each); its losses stay bit-identical.
PROGRESS_NUMBA_BATCHES = 8
#: ``CheckReport.plot``: relative errors below this are drawn at this value
#: on the logarithmic colour scale (exact agreement would be -inf).
PLOT_MIN_REL_ERROR = 1e-16
#: Rows or columns listed by name in a heatmap's title before "...".
PLOT_TITLE_INDICES = 8

#: Dask engine: tasks per worker thread that one evaluation is split into, so
#: that a thread finishing early takes more work and a lost worker costs little.
DASK_TASKS_PER_THREAD = 4
#: Dask engine: no task is made shorter than this (seconds, predicted from the
#: measured time of one loss). A task costs about 2-5 ms of scheduling and
#: transfer on a LocalCluster (W6), so cheap checks run as a few long tasks.
DASK_MIN_TASK_SECONDS = 0.1
#: Dask engine: ... and none predicted longer than this. A task cannot be
#: stopped once it runs (after an error or Ctrl-C it finishes on its worker),
#: a lost worker loses its running task, and the progress bar moves per task.
DASK_MAX_TASK_SECONDS = 5.0
#: Dask engine: at most this many entries per task (bounds the size of one
#: task's points and of the losses it sends back).
DASK_MAX_TASK_ENTRIES = 65_536
#: Dask engine: a task of a worker that dies is rescheduled by Dask's scheduler
#: (``distributed.scheduler.allowed-failures``); tasks the cluster *cancels*
#: (every worker holding the scattered problem lost, ``client.restart()``) are
#: submitted again, with the problem scattered anew, at most this many times.
DASK_RESUBMISSIONS = 3
#: Dask engine: before such a resubmission, wait at most this long for a
#: worker to be back (a restarting cluster has none for a moment).
DASK_WORKER_WAIT_SECONDS = 30.0
#: Dask engine: the dashboard of a LocalCluster started by gradprobe listens on
#: a free port of the loopback interface (two checks never clash on 8787).
DASK_DASHBOARD_ADDRESS = "127.0.0.1:0"
#: Dask engine: log level of the ``distributed`` loggers while a LocalCluster
#: started by gradprobe runs (restored when it closes).
DASK_LOG_LEVEL = "ERROR"

#: Environment variable that controls the optional C kernel (``gradprobe._ckernel``):
#: ``auto`` uses it when it was built, ``require`` makes its absence an
#: ImportError (on the first use of the C engine or ``gradprobe.info()``),
#: ``off`` never loads it (C losses then run on the Python engine).
C_KERNEL_ENV = "GRADPROBE_C_KERNEL"
#: Values accepted by ``GRADPROBE_C_KERNEL``.
C_KERNEL_MODES = ("auto", "require", "off")
#: Points per entry the C kernel accepts (forward, central/one-sided, Richardson).
C_KERNEL_POINTS_PER_ENTRY = (1, 2, 4)
#: The C engine hands the kernel at most this many entries per call, so a
#: long check sees Ctrl-C between calls (a launch costs a few microseconds).
C_KERNEL_BATCH_ROWS = 8192

# -- gradprobe bench (python -m gradprobe bench) -----------------------------------

#: ``gradprobe bench``: n of the ``Dense(n, n)`` layer of its W1 case (``--size``).
BENCH_SIZE = 512
#: ``gradprobe bench``: batch of both workloads.
BENCH_BATCH = 64
#: ``gradprobe bench``: entries of ``W`` timed with the seed-style loop in each
#: round (then extrapolated): each costs two full forward passes.
BENCH_SEED_LOOP_ENTRIES = 150
#: ``gradprobe bench``: rounds of every workload; its cases alternate within
#: each round.
BENCH_ROUNDS = 3

# -- compressed Jacobians (check_vjp, check_layer, check_jacobian) -------------------

#: Values of the ``compression`` option: ``"auto"`` groups entries whose
#: outputs do not overlap (found from the function, verified, falling back
#: per parameter); ``False`` perturbs one entry at a time.
COMPRESSION_MODES = ("auto", False)
#: Parameters with fewer entries than this are checked entry by entry: finding
#: and verifying a grouping costs more evaluations than it could save.
COMPRESSION_MIN_ENTRIES = 16
#: An output entry is in the support of an input entry when perturbing that
#: entry by its difference step moves it by more than this many times its
#: measured noise.
SUPPORT_NOISE_FACTOR = 8.0
#: Random entries of each parameter whose supports are probed (one evaluation
#: each) on top of the centre and its neighbours along every axis.
SUPPORT_RANDOM_PROBES = 4
#: Random entries of each compressed parameter evaluated alone (one column of
#: the Jacobian each) to verify the grouping before it is trusted.
VERIFY_ENTRIES = 3
#: A grouping is rejected when a verification differs from the compressed
#: columns by more than this many times the two error bars together.
VERIFY_BAR_FACTOR = 2.0
#: Entries evaluated alone, at most, to settle the outputs where the random
#: direction disagrees with the grouped columns (two evaluations each, plus two
#: per group they belong to): the larger of this many and this share of the
#: parameter's entries (entry by entry costs about six per entry); beyond it the
#: grouping is rejected (``differences/compression.py``).
VERIFY_CONFIRM_ENTRIES = 32
VERIFY_CONFIRM_SHARE = 1 / 16
#: From this many outputs on, the central difference along a line through an
#: array-valued function and a compressed group's bookkeeping run in fused Numba
#: kernels (gradprobe.differences.line_kernel: the same bits as NumPy's passes);
#: below it Numba is not imported for them.
LINE_KERNEL_MIN_OUTPUTS = 16_384

# -- gradprobe.nn: kernels of the structured check (codes and tiles shared with csrc/gp_nn.h) --

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
#: Entries handed to one call of the C twin of the entry kernel
#: (gradprobe.nn.c_kernels): Ctrl-C is seen between calls.
NN_C_ENTRY_BATCH = 4096

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
