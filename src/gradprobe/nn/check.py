"""``check_model`` and ``numerical_gradient_model``: structured gradient checks.

A black-box checker evaluates the whole model once per perturbed entry. Here
the model's structure is known: perturbing ``W[i, j]`` of a Dense layer only
moves column ``j`` of its output, so each perturbed loss is evaluated as a
*difference* from one cached forward pass (:mod:`.plan`), recomputing only
that column and the layers after it (:mod:`.downstream`), or, for the layer
that feeds the loss, all entries at once by one blocked contraction
(:mod:`.heads`); :mod:`.estimates` picks the path. The estimates and their error bars go through the same
verdict, diagnosis and report as :func:`gradprobe.check`.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Any, Iterator

import numba
import numpy as np

from .. import config
from ..verdict.diagnosis import diagnose_all
from ..differences.estimation import select_entries
from ..options import CheckOptions
from ..report.reports import CheckReport, ParamReport
from ..differences.stencils import Stencil
from ..verdict.compare import compare_param
from .estimates import kink_prober, layer_estimates, private_params, refiner
from .inputs import validate_grads, validate_params
from .backends import NUMBA, kernel_set
from .plan import Plan, make_plan
from .sequential import Sequential, backward


# -- options ---------------------------------------------------------------
def _kernels(model: Any, opts: CheckOptions) -> tuple[int | None, Any]:
    """The kernel set of ``opts.backend``, and the Numba threads to run with."""
    if not isinstance(model, Sequential):
        raise TypeError(f"model must be a gradprobe.nn.Sequential, got {type(model).__name__}")
    kernels = kernel_set(opts.backend, opts.workers)
    if not kernels.numba_threads:
        return None, kernels
    workers = opts.workers
    if workers is not None and workers > numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"workers={workers} is more than the {numba.config.NUMBA_NUM_THREADS} "
                         "threads Numba was started with (NUMBA_NUM_THREADS)")
    return workers, kernels


@contextmanager
def _threads(workers: int | None) -> Iterator[None]:
    """Run with ``workers`` Numba threads, restoring the previous count afterwards."""
    if workers is None:
        yield
        return
    previous = numba.get_num_threads()
    numba.set_num_threads(workers)
    try:
        yield
    finally:
        numba.set_num_threads(previous)


def _plan(model: Sequential, X: Any, T: Any, upcast: bool, kernels: Any = NUMBA) -> Plan:
    eval_dtype = config.UPCAST_DTYPE if upcast else model.dtype
    return make_plan(model, X, T, private_params(model, eval_dtype), eval_dtype, kernels)


# -- public API ----------------------------------------------------------------
def numerical_gradient_model(model: Sequential, X: Any, T: Any, *, method: str = "central",
                             eps: float | None = None, upcast: bool = True,
                             workers: int | None = None,
                             backend: str = "auto") -> dict[str, np.ndarray]:
    """Numerical gradient of a model's loss, by structured finite differences.

    Parameters
    ----------
    model : Sequential
    X : ndarray, shape (batch, n_in)
        Inputs.
    T : ndarray
        Targets (see the model's loss).
    method : {"central", "forward", "richardson"}
        Difference formula.
    eps : float, optional
        Absolute step; by default ``gradprobe.differences.stencils.step_size`` with the
        evaluation dtype's machine epsilon as the relative noise.
    upcast : bool
        Evaluate a float32 model in float64 (default), so the result reflects
        the formula rather than float32 rounding.
    workers : int, optional
        Threads (default: all cores): Numba's, or the C kernels' pthreads.
    backend : {"auto", "numba", "cffi"}
        The kernels: Numba's, or their C twin (needs the optional C kernel;
        ``gradprobe.info()`` says whether it is built). "auto" is the C twin
        when built (it compiles nothing on a first run), else Numba's.

    Returns
    -------
    dict of str to ndarray
        Keys and shapes of ``model.parameters()``, in the parameters' dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from gradprobe.nn import Sequential, Dense, MSE, numerical_gradient_model
    >>> model = Sequential([Dense(2, 1, W=[[0.34], [0.56]], b=[0.54])], loss=MSE())
    >>> g = numerical_gradient_model(model, np.array([[1.0, 0.0]]), np.array([[0.1056]]))
    >>> np.round(g["0.W"].ravel(), 6), np.round(g["0.b"], 6)
    (array([0.7744, 0.    ]), array([0.7744]))
    """
    opts = CheckOptions.build("numerical_gradient_model", dict(
        method=method, eps=eps, upcast=upcast, workers=workers, backend=backend))
    return model_gradient(model, X, T, opts)


def model_gradient(model: Sequential, X: Any, T: Any,
                   opts: CheckOptions) -> dict[str, np.ndarray]:
    """:func:`numerical_gradient_model` on options validated at the public boundary."""
    workers, kernels = _kernels(model, opts)
    method, eps = opts.method, opts.eps
    validate_params(model.parameters(), model.parameter_shapes(), finite=True)
    with _threads(workers):
        plan = _plan(model, X, T, opts.upcast, kernels)
        out = {}
        for pos in model.dense_positions:
            layer = model.layers[pos]
            est_W, est_b = layer_estimates(plan, pos, None, None, method, eps, full=True)
            out[f"{pos}.W"] = est_W.value.reshape(layer.W.shape).astype(model.dtype)
            out[f"{pos}.b"] = est_b.value.reshape(layer.b.shape).astype(model.dtype)
    return out


def check_model(model: Sequential, X: Any, T: Any, grads: Any = None, *, mode: str = "full",
                method: str = "central", eps: float | None = None, rtol: float | None = None,
                atol: float | None = None, samples: int | None = None, seed: int = 0,
                upcast: bool = True, workers: int | None = None,
                backend: str = "auto", progress: bool | None = None,
                **options: Any) -> CheckReport:
    """Check a model's gradients entry by entry against structured finite differences.

    Parameters
    ----------
    model : Sequential
    X : ndarray, shape (batch, n_in)
        Inputs.
    T : ndarray
        Targets: ``(batch, n_out)`` reals for MSE; integer labels ``(batch,)``
        or probability rows for softmax cross-entropy.
    grads : dict of str to ndarray, optional
        The gradients to check, keyed like ``model.parameters()``. By default
        the model's own backward pass (``model.gradients(X, T)``) is checked.
    mode : {"full", "sample"}
        Every entry of every parameter, or ``samples`` entries (seeded) of each.
    method : {"central", "forward", "richardson"}
        Difference formula.
    eps : float, optional
        Absolute step (automatic by default).
    rtol, atol : float, optional
        Tolerances, as in :func:`gradprobe.check`.
    samples : int, optional
        Entries per parameter in ``mode="sample"`` (default 32).
    seed : int
        Seed of the sample draw.
    upcast : bool
        Evaluate a float32 model in float64 (default).
    workers : int, optional
        Threads (default: all cores): Numba's, or the C kernels' pthreads.
    backend : {"auto", "numba", "cffi"}
        The kernels of every forward, backward and structured evaluation:
        Numba's, or their C twin (needs the optional C kernel). "auto" is the
        C twin when built (compiled at install, so a first check compiles
        nothing), else Numba's. The two sum in the same order, so they agree
        to the last bit or within the error bars; checking with both lets each
        implementation check the other.
    progress : bool, optional
        Show a progress bar over the parameters' entries (default: off; the
        structured check takes milliseconds per million entries).
    **options
        Other options of :func:`gradprobe.check` (``directions``,
        ``budget_s``, ``client``) do not apply here: the error says why.

    Returns
    -------
    gradprobe.CheckReport
        Same report as :func:`gradprobe.check` (``backend="nn-structured"``,
        or ``"nn-structured-cffi"`` on the C kernels).
        ``evaluations`` counts loss-difference evaluations (entries times the
        method's points) plus the base forward pass.

    Raises
    ------
    TypeError, ValueError
        Bad model, ``X``, ``T``, ``grads`` or options; the message names the
        argument.

    Examples
    --------
    >>> import numpy as np
    >>> from gradprobe.nn import Sequential, Dense, SoftmaxCrossEntropy, check_model
    >>> model = Sequential([Dense(16, 4, seed=0)], loss=SoftmaxCrossEntropy())
    >>> rng = np.random.default_rng(0)
    >>> X, labels = rng.standard_normal((8, 16)), rng.integers(0, 4, 8)
    >>> grads = model.gradients(X, labels)
    >>> grads["0.W"][3, 1] *= 1.01
    >>> check_model(model, X, labels, grads).params["0.W"].failed_indices
    [(3, 1)]
    """
    opts = CheckOptions.build("check_model", dict(
        mode=mode, method=method, eps=eps, rtol=rtol, atol=atol, samples=samples, seed=seed,
        upcast=upcast, workers=workers, backend=backend, progress=progress, **options))
    return run_model_check(model, X, T, grads, opts)


def run_model_check(model: Sequential, X: Any, T: Any, grads: Any,
                    opts: CheckOptions) -> CheckReport:
    """:func:`check_model` on options validated at the public boundary."""
    start = time.perf_counter()
    workers, kernels = _kernels(model, opts)
    mode, method, eps, rtol, atol = opts.mode, opts.method, opts.eps, opts.rtol, opts.atol
    seed, progress = opts.seed, opts.progress
    samples = opts.samples
    if mode == "sample" and samples is None:
        samples = config.DEFAULT_SAMPLES
    params = model.parameters()
    validate_params(params, model.parameter_shapes(), finite=True)
    with _threads(workers):
        if grads is not None:
            grad_arrays = validate_grads(grads, params)
        plan = _plan(model, X, T, opts.upcast, kernels)
        if grads is None:
            # the model's own backward pass, from the base forward pass when it ran in
            # the model's dtype (its parameters are bit-for-bit copies of the model's)
            grad_arrays = backward(model, plan.trace, kernels) \
                if plan.eval_dtype == model.dtype else model.gradients(X, T, kernels)
        stencil = Stencil(method)
        reports: dict[str, ParamReport] = {}
        evaluations = 1
        names = list(params)
        bar = None
        if progress:
            from ..report.progress import make_bar

            total = sum(min(samples, params[n].size) if mode == "sample" else params[n].size
                        for n in names)
            bar = make_bar(total, "gradprobe check_model")
        for pos in model.dense_positions:
            # full mode: no index arrays (None means every entry, in order)
            chosen: dict[str, np.ndarray | None] = {}
            for name in (f"{pos}.W", f"{pos}.b"):
                chosen[name] = None if mode == "full" else select_entries(
                    params[name].size, samples, int(seed), names.index(name))
            full = all(chosen[n] is None or chosen[n].size == params[n].size for n in chosen)
            estimates = layer_estimates(plan, pos, chosen[f"{pos}.W"], chosen[f"{pos}.b"],
                                        method, eps, full)
            for name, est in zip(chosen, estimates):
                entries = chosen[name]
                count = params[name].size if entries is None else entries.size
                evaluations += count * stencil.evaluations_per_entry
                refine = refiner(plan, pos, name, entries, eps) \
                    if method in ("central", "forward") else None
                reports[name] = compare_param(
                    name, params[name].shape, params[name].dtype, entries, grad_arrays[name],
                    est, rtol=rtol, atol=atol, refine=refine,
                    kink_probe=kink_prober(plan, pos, name, entries, eps),
                    copy_grad=grads is not None)
                if bar is not None:
                    bar.update(int(count))
        if bar is not None:
            bar.close()
    reports = {name: reports[name] for name in names}
    diagnose_all(reports)
    notes = ["structured evaluation: every perturbed loss is a difference from one cached "
             "forward pass; error bars bound the rounding of each computed difference"
             + kernels.note]
    upcasted = plan.eval_dtype != model.dtype
    if upcasted:
        notes.append(f"{model.dtype} parameters evaluated in float64 (upcast); pass "
                     "upcast=False to evaluate in the model's dtype")
    return CheckReport(params=reports, method=method, mode=mode,
                       backend=kernels.report_backend,
                       evaluations=int(evaluations), seconds=time.perf_counter() - start,
                       upcast=bool(upcasted), noise=plan.eps * abs(plan.loss.value),
                       loss=plan.loss.value, notes=notes)
