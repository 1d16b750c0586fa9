"""Public entry points: validate, dispatch to an engine, judge, wrap in a report."""
from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .. import config
from ..verdict.determinism import problem_determinism
from ..verdict.diagnosis import diagnose_all
from ..engines import select_engine
from ..engines.select import as_loss
from ..errors import GradientCheckError
from .directional import directional_check
from ..differences.estimation import estimate_entries, select_entries
from ..verdict.entries import check_entries
from ..options import CheckOptions
from ..problem.params import ParamSet, Structure, as_args
from ..problem.point import prepare
from ..report.reports import CheckReport
from ..differences.stencils import Stencil
from ..verdict.compare import gradient_scale


def _validate_call(f: Any, args: Any) -> tuple:
    """``f`` must be callable and ``args`` a tuple (a list is accepted)."""
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    return as_args(args)


def _is_model(f: Any) -> bool:
    """A :class:`gradprobe.nn.Sequential` (checked without importing the nn package)."""
    return type(f).__module__.startswith("gradprobe.nn") and type(f).__name__ == "Sequential"


def check_model(model: Any, X: np.ndarray, T: np.ndarray, grads: Any = None,
                **options: Any) -> CheckReport:
    """Check every entry of a :class:`gradprobe.nn.Sequential` model's gradient.

    The structured check of :func:`gradprobe.nn.check_model`: each perturbed
    loss is a difference from one cached forward pass, so a full check of a
    large dense layer costs a few milliseconds per million entries.

    Parameters
    ----------
    model : gradprobe.nn.Sequential
    X, T : ndarray
        Inputs and targets (integer labels or rows for softmax cross-entropy).
    grads : dict of str to ndarray, optional
        Your gradient, keyed like ``model.parameters()``; by default the
        model's own backward pass is checked.
    **options
        ``mode``, ``method``, ``eps``, ``rtol``, ``atol``, ``samples``,
        ``seed``, ``upcast``, ``workers`` as in :func:`check`; ``backend`` is
        ``"auto"``/``"numba"`` (the Numba kernels) or ``"cffi"`` (their C twin).

    Examples
    --------
    >>> import numpy as np, gradprobe as gp
    >>> from gradprobe.nn import Sequential, Dense, Tanh, MSE
    >>> model = Sequential([Dense(3, 4, seed=0), Tanh(), Dense(4, 2, seed=1)], loss=MSE())
    >>> X, T = np.ones((5, 3)), np.zeros((5, 2))
    >>> gp.check_model(model, X, T).passed
    True
    """
    from ..nn.check import check_model as structured_check

    return structured_check(model, X, T, grads, **options)


def numerical_gradient(f: Callable[..., Any], params: Structure, *data: Any,
                       args: tuple = (), method: str = "central", eps: float | None = None,
                       backend: str = "auto", workers: int | None = None,
                       upcast: bool = True, seed: int = 0, client: Any = None,
                       progress: bool | None = None, **options: Any) -> Structure:
    """Numerical gradient of the scalar loss ``f`` at ``params``.

    For a :class:`gradprobe.nn.Sequential` model call it as
    ``numerical_gradient(model, X, T, **options)``: the result is a dict keyed
    like ``model.parameters()``, computed by the structured evaluation.

    Parameters
    ----------
    f : callable
        Returns a scalar loss (a number, or an array of size 1). Called as
        ``f(params, *args)`` for one array, ``f(*params, *args)`` for a
        tuple/list; dict parameters bind by ``f``'s signature: each key to the
        argument of that name, ``args`` to the remaining positional arguments
        in order (``def loss(W, b, X, y)`` with ``{"W": W, "b": b}`` and
        ``args=(X, y)``; ``f(*args, **params)`` still works), on every engine.
        Or a C loss ``double loss(const double *theta, size_t n, void *ctx)``
        given as a cffi function pointer or a ``numba.cfunc`` compiled with
        ``"float64(CPointer(float64), uintp, voidptr)"``: ``theta`` is the float64
        concatenation of the parameters in order, and ``args`` is ``()`` or
        ``(ctx,)`` with ``ctx`` a cffi pointer (see README, "Checking a C
        function").
    params : ndarray, tuple/list of ndarray, or dict of str to ndarray
        The point. Never modified: every perturbation happens on private copies.
    args : tuple
        Extra positional arguments for ``f`` (data, targets).
    method : {"central", "forward", "richardson", "complex"}
        Difference formula: 2, 1, 4 or 1 evaluations per entry. ``"complex"``
        (complex step) has no cancellation but needs an ``f`` that accepts
        complex input.
    eps : float, optional
        Absolute step. By default chosen per entry from the measured noise of
        ``f`` and the entry's magnitude (central: ``cbrt(eps_mach) * max(1, |x|)``).
    backend : {"auto", "python", "numba", "cffi", "dask"}
        Engine that evaluates the perturbed losses. ``"auto"`` picks
        ``"numba"`` when ``f`` is a ``numba.njit`` function (every entry is
        then evaluated in one parallel compiled kernel, with the same values
        as ``"python"`` bit for bit), ``"cffi"`` for a C function (pointer or cfunc)
        (the perturbation loop runs in C threads; ``"python"`` when the C
        kernel is not built), otherwise ``"python"``. ``"numba"`` or
        ``"cffi"`` with any other ``f`` is a ``TypeError``. ``"dask"``
        spreads the entries over a ``dask.distributed`` cluster (``client``,
        or a ``LocalCluster`` started for the call and closed afterwards;
        same values as ``"python"``, bit for bit; README, "Running a check on
        a Dask cluster").
    workers : int, optional
        Threads. Python engine: a thread pool (useful when ``f`` spends its
        time in NumPy calls that release the GIL; ``f`` must then be
        thread-safe). Numba engine: Numba's thread count for the call
        (default: the current ``numba.get_num_threads()``), restored
        afterwards; Numba cannot exceed ``NUMBA_NUM_THREADS`` set at its
        start-up, so a larger value is clamped, with a note in the report.
        Dask engine without ``client``: worker processes of the
        ``LocalCluster`` (default: one per core).
    upcast : bool
        Evaluate float16/float32 parameters (and float arrays in ``args``) in
        float64 when ``f`` accepts it.
    seed : int
        Seed of the noise probe's random direction.
    client : distributed.Client, optional
        ``backend="dask"`` only: the cluster to run on (left open). ``f``,
        ``args`` and the parameters are pickled and sent once to every worker.
    progress : bool, optional
        Show a progress bar, as in :func:`check`.
    **options
        Any other option of :func:`check` is an error saying why it does not
        apply (``rtol``: nothing is judged; ``mode``: every entry is estimated).

    Returns
    -------
    Same structure as ``params``: arrays of the parameters' shapes and dtypes
    (a parameter given as a torch tensor or JAX array gets one of the same
    library, dtype and device).

    Examples
    --------
    >>> import numpy as np, gradprobe as gp
    >>> g = gp.numerical_gradient(lambda w: np.sum(np.sin(w)), np.array([0.0, 1.0]))
    >>> np.allclose(g, np.cos([0.0, 1.0]))
    True
    """
    given = {"method": method, "eps": eps, "backend": backend, "workers": workers,
             "upcast": upcast, "seed": seed, "client": client, "progress": progress, **options}
    if _is_model(f):
        if len(data) != 1:
            raise TypeError("numerical_gradient(model, X, T): pass the inputs X and the "
                            f"targets T ({len(data) + 1} data arguments given)")
        if client is not None:
            raise ValueError("client= is for backend='dask'; a gradprobe.nn model runs on "
                             "its own kernels (backend='auto', 'numba' or 'cffi')")
        from ..nn.check import model_gradient

        return model_gradient(f, params, data[0], CheckOptions.build(
            "numerical_gradient", given, rules="numerical_gradient_model"))
    if data:
        raise TypeError("numerical_gradient takes extra positional arguments only for a "
                        "gradprobe.nn model; pass them to f as args=(...) instead")
    opts = CheckOptions.build("numerical_gradient", given)
    f = as_loss(f, args)  # a C function pointer becomes a Python callable
    args = _validate_call(f, args)
    paramset = ParamSet.from_user(params, f)
    engine = select_engine(opts.backend, f, opts.workers, opts.client)
    problem = prepare(f, paramset, args, upcast=opts.upcast,
                      complex_step=opts.method == "complex", seed=opts.seed)
    stencil = Stencil(opts.method)
    bar = None
    if opts.progress is not False:
        engine, bar = _with_progress(engine, problem, stencil, opts.progress, "full",
                                     sum(int(a.size) for a in paramset.arrays))
    out = []
    try:
        for p, array in enumerate(paramset.arrays):
            entries = np.arange(array.size, dtype=np.int64)
            est = estimate_entries(problem, engine, stencil, p, entries, opts.eps)
            out.append(est.value.reshape(array.shape).astype(array.dtype))
    finally:
        try:
            engine.close()  # the Dask engine's cluster and scattered data
        finally:
            if bar is not None:
                bar.close()
    return paramset.rebuild(paramset.to_user(out))


def check(f: Callable[..., Any], params: Structure, grads: Structure | Callable[..., Any], *,
          args: tuple = (), mode: str = "full", method: str = "central",
          eps: float | None = None, rtol: float | None = None, atol: float | None = None,
          samples: int | None = None, directions: int | None = None, seed: int = 0,
          backend: str = "auto", workers: int | None = None, progress: bool | None = None,
          upcast: bool = True, budget_s: float | None = None,
          client: Any = None, nondeterminism_tol: float | None = None) -> CheckReport:
    """Compare the gradient ``grads`` of ``f`` with numerical derivatives.

    Parameters
    ----------
    f : callable
        Returns a scalar loss; see :func:`numerical_gradient` for how it is called.
    params : ndarray, tuple/list of ndarray, or dict of str to ndarray
        The point. Never modified.
    grads : same structure as ``params``, or callable
        The analytic gradient, or a function with ``f``'s signature returning it.
    args : tuple
        Extra positional arguments for ``f`` (and ``grads`` when callable).
    mode : {"full", "sample", "directional", "auto"}
        ``"full"`` checks every entry; ``"sample"`` checks ``samples`` entries
        drawn (seeded) from *every* parameter. ``"directional"`` displaces
        every entry at once along ``directions`` random directions and
        compares the derivative of ``f`` along each (2 evaluations with the
        central method) with ``grads . u``; when one fails, the wrong entries
        are named by bisecting it (about ``3 log2(P)`` evaluations per wrong
        entry), and parameters with too many wrong entries are checked entry
        by entry. ``report.resolution`` says how small an error in one entry
        the directions could see. ``"auto"``: ``"full"`` when its estimated
        time (entries x evaluations per entry x the measured time of one
        loss) fits in ``budget_s``, otherwise ``"directional"`` plus
        ``samples`` entries of every parameter.
    method : {"central", "forward", "richardson", "complex"}
        Difference formula (see :func:`numerical_gradient`).
    eps : float, optional
        Absolute step; automatic by default.
    rtol, atol : float, optional
        Tolerances. An entry fails only when its error exceeds ``atol``,
        ``rtol * max(|analytic|, |numeric|)`` *and* the estimate's error bar.
        Defaults: ``rtol`` 1e-5 for float64 gradients, 1e-3 for float32;
        ``atol`` 1e-8 (float64) or 1e-5 (float32) times the parameter's largest
        gradient entry.
    samples : int, optional
        Entries per parameter in ``mode="sample"`` (default 32).
    directions : int, optional
        Random directions for ``mode="directional"`` / ``"auto"`` (default 4).
    seed : int
        Seed for the sample draw, the random directions and the noise probe:
        the same seed gives the same check.
    backend : {"auto", "python", "numba", "cffi", "dask"}
        Engine that evaluates the perturbed losses (see
        :func:`numerical_gradient`); ``"auto"`` runs a ``numba.njit`` ``f``
        on the Numba engine and a C function (pointer or cfunc) on the C kernel.
        ``"dask"`` runs them on a ``dask.distributed`` cluster.
    workers : int, optional
        Threads for the engine (Numba: clamped to ``NUMBA_NUM_THREADS``
        with a note; Dask without ``client``: worker processes; see
        :func:`numerical_gradient`).
    progress : bool, optional
        Show a progress bar (entries/s, time left; needs the optional
        ``tqdm``). Default: on when the per-entry part of the check is
        predicted to take more than 2 s (entries x evaluations per entry x
        the measured time of one loss). The losses are the same with or
        without it.
    upcast : bool
        Evaluate float16/float32 parameters in float64 when ``f`` accepts it,
        so the check tests the gradient's formula rather than float32 rounding.
    budget_s : float, optional
        ``mode="auto"`` only: time budget in seconds (default 2) within which
        a full check is run.
    client : distributed.Client, optional
        ``backend="dask"`` only: the cluster to run on (see
        :func:`numerical_gradient`); by default a ``LocalCluster`` is started
        for the check and closed when it ends. The progress bar moves as the
        cluster's tasks complete.
    nondeterminism_tol : float, optional
        ``f`` must be a function: the loss at the unperturbed point is
        evaluated again (the noise probe's centre points) and must come out
        the same, bit for bit or within its measured noise; otherwise the
        report is ``"inconclusive"`` (finding ``nondeterministic-forward``:
        fix the seed, use evaluation mode). This allows a difference of that
        size relative to ``|f|`` (default ``config.NONDETERMINISM_TOL``).

    Returns
    -------
    CheckReport
        ``report.passed``, per-parameter details in ``report.params``, and a
        readable table from ``str(report)``; ``report.status`` is
        ``"passed"``, ``"failed"`` or ``"inconclusive"``.

    Raises
    ------
    TypeError, ValueError
        Bad input: structure, shape or dtype mismatch, non-scalar or
        non-finite loss, NaN in a parameter, bad options. Exceptions raised by
        ``f`` itself propagate unchanged.

    Examples
    --------
    >>> import numpy as np, gradprobe as gp
    >>> W = np.array([[1.0, 2.0], [3.0, 4.0]])
    >>> report = gp.check(lambda W: np.sum(W ** 3), W, 3 * W ** 2)
    >>> report.passed
    True
    >>> bad = 3 * W ** 2; bad[1, 0] *= 1.01
    >>> gp.check(lambda W: np.sum(W ** 3), W, bad).params["W"].failed_indices
    [(1, 0)]

    A large parameter, checked along 4 random directions, and the wrong
    entry named by bisection:

    >>> w = np.linspace(-1.0, 1.0, 100_000)
    >>> g = np.cos(w); g[31_337] *= 1.01
    >>> r = gp.check(lambda w: np.sum(np.sin(w)), w, g, mode="directional")
    >>> r.params["w"].failed_indices, r.evaluations < 200
    ([(31337,)], True)
    """
    opts = CheckOptions.build("check", {
        "mode": mode, "method": method, "eps": eps, "rtol": rtol, "atol": atol,
        "samples": samples, "directions": directions, "seed": seed, "backend": backend,
        "workers": workers, "progress": progress, "upcast": upcast, "budget_s": budget_s,
        "client": client, "nondeterminism_tol": nondeterminism_tol})
    return run_check(f, params, grads, args, opts)


def run_check(f: Callable[..., Any], params: Structure, grads: Structure | Callable[..., Any],
              args: tuple, opts: CheckOptions) -> CheckReport:
    """The check itself, on options validated at the public boundary.

    :func:`check`, :func:`assert_gradients`, :func:`gradprobe.check_vjp`,
    :func:`gradprobe.check_layer`, the monitor and the pytest fixture build
    their :class:`~gradprobe.options.CheckOptions` (each naming itself in its
    errors) and call this.
    """
    start = time.perf_counter()
    f = as_loss(f, args)  # a C function pointer becomes a Python callable
    args = _validate_call(f, args)
    mode, method = opts.mode, opts.method
    samples, directions = opts.samples, opts.directions
    if mode in ("sample", "auto") and samples is None:
        samples = config.DEFAULT_SAMPLES
    if mode in ("directional", "auto") and directions is None:
        directions = config.DEFAULT_DIRECTIONS
    budget = config.DEFAULT_BUDGET_S if opts.budget_s is None else opts.budget_s

    paramset = ParamSet.from_user(params, f)
    grad_arrays, nondeterministic = _analytic_gradient(paramset, grads, args)
    engine = select_engine(opts.backend, f, opts.workers, opts.client)
    problem = prepare(f, paramset, args, upcast=opts.upcast,
                      complex_step=method == "complex", seed=opts.seed)
    stencil = Stencil(method)
    notes: list[str] = []  # after the problem's own (engines may add to those)
    name = mode
    if mode == "auto":
        name, note = _auto_strategy(problem, stencil, budget, directions, samples)
        notes += [note] if note else []
    run = _Run(problem, engine, stencil, grad_arrays, opts, samples, directions, budget)
    chosen = STRATEGIES[name]
    bar = None
    if opts.progress is not False:
        engine, bar = _with_progress(engine, problem, stencil, opts.progress, mode,
                                     chosen.progress_entries(run))
        run = dataclasses.replace(run, engine=engine)
    try:
        reports, summary, extra = chosen.check(run)
        notes += extra
    finally:
        try:
            engine.close()  # the Dask engine's cluster and scattered data
        finally:
            if bar is not None:
                bar.close()
    strategy = name if mode == "auto" else None  # what auto chose, in the report
    eps_eval = float(np.finfo(problem.eval_dtype).eps)
    noise_ulps = problem.noise.level / (eps_eval * abs(problem.f0)) \
        if abs(problem.f0) > np.finfo(np.float64).tiny / eps_eval else None
    diagnose_all(reports, method=method, noise_ulps=noise_ulps,
                 nondeterministic=nondeterministic)
    for name, (difference, index) in nondeterministic.items():
        if reports[name].passed:
            notes.append(f"grads returned different values for {name!r} on two calls "
                         f"(largest difference {difference:.3g} at {index}), within the "
                         "tolerances; the check used the first call's")
    finding, note = problem_determinism(problem, opts.nondeterminism_tol)
    if note is not None:
        notes.append(note)
    resolutions = [p.resolution for p in reports.values() if p.resolution is not None]
    report = CheckReport(params=reports, method=method, mode=mode, backend=engine.name,
                         evaluations=problem.evaluations, seconds=time.perf_counter() - start,
                         upcast=problem.upcast, noise=problem.noise.level, loss=problem.f0,
                         notes=list(problem.notes) + notes, strategy=strategy,
                         resolution=max(resolutions) if resolutions else None,
                         directional=summary)
    if finding is not None:
        report.add_findings([finding])
    return report


def _with_progress(engine: Any, problem: Any, stencil: Stencil, progress: bool | None,
                   mode: str, entries: int | None) -> tuple[Any, Any]:
    """The engine wrapped to move a progress bar, and the bar; or ``(engine, None)``.

    The bar counts the ``entries`` estimated one by one (None: only those a
    directional check localizes, unknown in advance).
    """
    from ..report.progress import ProgressEngine, make_bar, predicted_seconds, wants_progress

    seconds = predicted_seconds(entries or 0, stencil.evaluations_per_entry,
                                problem.loss_seconds)
    if not wants_progress(progress, seconds):
        return engine, None
    bar = make_bar(entries, f"gradprobe {mode}")
    if bar is None:
        return engine, None
    return ProgressEngine(engine, bar), bar


# -- the modes: a table of strategies -------------------------------------------------

@dataclass(frozen=True)
class _Run:
    """What every strategy works on: the prepared problem and the validated options."""

    problem: Any
    engine: Any
    stencil: Stencil
    grads: list[np.ndarray]
    opts: CheckOptions
    samples: int | None
    directions: int | None
    budget_s: float


@dataclass(frozen=True)
class Strategy:
    """How a mode checks: ``check(run) -> (reports, directional summary, notes)``, and
    how many entries it estimates one by one (for the progress bar; None: unknown)."""

    check: Callable[[_Run], tuple[dict, Any, list[str]]]
    progress_entries: Callable[[_Run], int | None]


def _by_entry(run: _Run) -> tuple[dict, Any, list[str]]:
    """Every entry of every parameter, or (``mode="sample"``) a seeded sample of each."""
    reports = {}
    scale = gradient_scale(run.grads)
    paramset, opts = run.problem.paramset, run.opts
    for p, (name, array) in enumerate(zip(paramset.names, paramset.arrays)):
        # every entry (entries=None: no index array) unless mode="sample"
        entries = select_entries(array.size, run.samples, opts.seed, p) \
            if opts.mode == "sample" else None
        reports[name] = check_entries(run.problem, run.engine, run.stencil, p, entries,
                                      run.grads[p], opts, gradient_scale=scale)
    return reports, None, []


def _directional(sampled: bool) -> Callable[[_Run], tuple[dict, Any, list[str]]]:
    """Random directions with localization; with ``sampled`` (auto's fallback) plus a
    sample of every parameter, and dense errors checked entry by entry within the budget."""
    def check(run: _Run) -> tuple[dict, Any, list[str]]:
        return directional_check(run.problem, run.engine, run.stencil, run.grads, run.opts,
                                 directions=run.directions,
                                 samples=run.samples if sampled else None,
                                 budget_s=run.budget_s if sampled else None)
    return check


def _sizes(run: _Run) -> list[int]:
    return [int(a.size) for a in run.problem.paramset.arrays]


#: Each mode (``"auto"`` chooses ``"full"`` or ``"directional+sample"``) and how it checks.
STRATEGIES: dict[str, Strategy] = {
    "full": Strategy(_by_entry, lambda run: sum(_sizes(run))),
    "sample": Strategy(_by_entry, lambda run: sum(min(run.samples, n) for n in _sizes(run))),
    "directional": Strategy(_directional(sampled=False), lambda run: None),
    "directional+sample": Strategy(_directional(sampled=True),
                                   lambda run: sum(min(run.samples, n) for n in _sizes(run))),
}


def _auto_strategy(problem: Any, stencil: Stencil, budget: float, directions: int,
                   samples: int) -> tuple[str, str | None]:
    """``mode="auto"``: "full" when its predicted time fits ``budget``, else
    "directional+sample" (with a note saying why)."""
    total = sum(int(a.size) for a in problem.paramset.arrays)
    full_seconds = total * stencil.evaluations_per_entry * problem.loss_seconds
    if full_seconds <= budget:
        return "full", None
    return "directional+sample", (
        f"auto: a full check ({total:,} entries x {stencil.evaluations_per_entry} "
        f"evaluations x {problem.loss_seconds:.3g} s) would take about "
        f"{full_seconds:.3g} s > budget_s={budget:g}: {directions} random "
        f"directions and {samples} entries of every parameter instead")


def _analytic_gradient(paramset: ParamSet, grads: Structure | Callable[..., Any],
                       args: tuple) -> tuple[list[np.ndarray], dict[str, tuple]]:
    """The analytic gradient as arrays, and where a callable ``grads`` is nondeterministic.

    A callable is called twice (on fresh copies of the parameters); any
    parameter whose two results differ bit for bit is returned with the
    largest difference and where it is. The first call's result is checked.
    """
    if not callable(grads) or isinstance(grads, np.ndarray):
        return paramset.match(grads), {}
    first = paramset.match(paramset.call(grads, [a.copy() for a in paramset.arrays], args,
                                         what="grads"))
    first = [np.array(g, copy=True) for g in first]  # grads may reuse its output buffers
    second = paramset.match(paramset.call(grads, [a.copy() for a in paramset.arrays], args,
                                          what="grads"))
    differing: dict[str, tuple] = {}
    for name, a, b in zip(paramset.names, first, second):
        b = np.asarray(b)
        if a.dtype == b.dtype and np.ascontiguousarray(a).tobytes() == \
                np.ascontiguousarray(b).tobytes():
            continue
        with np.errstate(invalid="ignore", over="ignore"):
            diff = np.abs(a.astype(np.float64) - b.astype(np.float64))
        diff = np.where(np.isnan(diff), np.inf, diff)
        flat = int(np.argmax(diff)) if diff.size else 0
        index = tuple(int(i) for i in np.unravel_index(flat, a.shape)) if a.shape else ()
        differing[name] = (float(diff.reshape(-1)[flat]) if diff.size else 0.0, index)
    return first, differing


def assert_gradients(f: Callable[..., Any], params: Structure,
                     grads: Structure | Callable[..., Any], **options: Any) -> CheckReport:
    """Like :func:`check`, but raise :class:`GradientCheckError` unless it passes.

    A failed check raises, and so does an inconclusive one (``f`` changes
    between calls, or an entry cannot be resolved to the tolerance): the
    message is the report, which says why and how to fix it. Returns the
    report when the check passes, so it can be logged. Takes the
    same keyword options as :func:`check` (``mode``, ``directions``,
    ``budget_s``, ``seed``, ...).

    Examples
    --------
    >>> import numpy as np, gradprobe as gp
    >>> x = np.linspace(-1.0, 1.0, 5)
    >>> gp.assert_gradients(lambda x: np.sum(np.exp(x)), x, np.exp(x)).passed
    True
    """
    args = options.pop("args", ())
    report = run_check(f, params, grads, args, CheckOptions.build("assert_gradients", options))
    if not report.passed:  # failed, or inconclusive: neither is a pass
        raise GradientCheckError(report)
    return report
