"""Public entry points: validate, dispatch to an engine, judge, wrap in a report."""
from __future__ import annotations

import numbers
import time
from typing import Any, Callable

import numpy as np

from . import config
from .diagnosis import diagnose_all
from .engines import select_engine
from .errors import GradientCheckError
from .estimation import estimate_entries, one_sided, select_entries
from .params import ParamSet, Structure
from .problem import prepare
from .report import CheckReport, ParamReport
from .stencils import Stencil
from .verdict import compare_param


def _choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name}={value!r} is not valid; expected one of {', '.join(allowed)}")
    return value


def _positive_float(name: str, value: Any, *, allow_zero: bool = False) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number or None, got {type(value).__name__}")
    v = float(value)
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}={value!r} is not valid; expected a finite number {bound}")
    return v


def _positive_int(name: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}={value!r} is not valid; expected a positive integer")
    return int(value)


def _validate_common(f: Any, args: Any, method: str, eps: Any, backend: str,
                     workers: Any, seed: Any, upcast: Any) -> tuple:
    if not callable(f):
        raise TypeError(f"f must be callable, got {type(f).__name__}")
    if isinstance(args, list):
        args = tuple(args)
    if not isinstance(args, tuple):
        raise TypeError(f"args must be a tuple of extra arguments for f, got "
                        f"{type(args).__name__} (write args=(value,) for one argument)")
    _choice("method", method, config.METHODS)
    _choice("backend", backend, config.BACKENDS)
    eps = _positive_float("eps", eps)
    workers = _positive_int("workers", workers)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed={seed!r} is not valid; expected a non-negative integer")
    if not isinstance(upcast, (bool, np.bool_)):
        raise TypeError(f"upcast must be True or False, got {upcast!r}")
    return args, eps, workers


def numerical_gradient(f: Callable[..., Any], params: Structure, *, args: tuple = (),
                       method: str = "central", eps: float | None = None,
                       backend: str = "auto", workers: int | None = None,
                       upcast: bool = True, seed: int = 0) -> Structure:
    """Numerical gradient of the scalar loss ``f`` at ``params``.

    Parameters
    ----------
    f : callable
        Returns a scalar loss. Called as ``f(params, *args)`` for one array,
        ``f(*params, *args)`` for a tuple/list, ``f(*args, **params)`` for a dict.
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
    backend : {"auto", "python"}
        Engine that evaluates the perturbed losses.
    workers : int, optional
        Threads for the Python engine (useful when ``f`` spends its time in
        NumPy calls that release the GIL; ``f`` must then be thread-safe).
    upcast : bool
        Evaluate float16/float32 parameters (and float arrays in ``args``) in
        float64 when ``f`` accepts it.
    seed : int
        Seed of the noise probe's random direction.

    Returns
    -------
    Same structure as ``params``: arrays of the parameters' shapes and dtypes.

    Examples
    --------
    >>> import numpy as np, gradprobe as gp
    >>> g = gp.numerical_gradient(lambda w: np.sum(np.sin(w)), np.array([0.0, 1.0]))
    >>> np.allclose(g, np.cos([0.0, 1.0]))
    True
    """
    args, eps, workers = _validate_common(f, args, method, eps, backend, workers, seed, upcast)
    paramset = ParamSet.from_user(params, f)
    engine = select_engine(backend, f, workers)
    problem = prepare(f, paramset, args, upcast=bool(upcast),
                      complex_step=method == "complex", seed=int(seed))
    stencil = Stencil(method)
    out = []
    for p, array in enumerate(paramset.arrays):
        entries = np.arange(array.size, dtype=np.int64)
        est = estimate_entries(problem, engine, stencil, p, entries, eps)
        out.append(est.value.reshape(array.shape).astype(array.dtype))
    return paramset.rebuild(out)


def check(f: Callable[..., Any], params: Structure, grads: Structure | Callable[..., Any], *,
          args: tuple = (), mode: str = "full", method: str = "central",
          eps: float | None = None, rtol: float | None = None, atol: float | None = None,
          samples: int | None = None, directions: int | None = None, seed: int = 0,
          backend: str = "auto", workers: int | None = None, progress: bool | None = None,
          upcast: bool = True) -> CheckReport:
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
    mode : {"full", "sample"}
        ``"full"`` checks every entry; ``"sample"`` checks ``samples`` entries
        drawn (seeded) from *every* parameter.
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
        Reserved for ``mode="directional"`` (not available yet); must be None.
    seed : int
        Seed for the sample draw and the noise probe.
    backend : {"auto", "python"}
        Engine that evaluates the perturbed losses.
    workers : int, optional
        Threads for the engine.
    progress : bool, optional
        Accepted for forward compatibility; no progress bar is drawn yet.
    upcast : bool
        Evaluate float16/float32 parameters in float64 when ``f`` accepts it,
        so the check tests the gradient's formula rather than float32 rounding.

    Returns
    -------
    CheckReport
        ``report.passed``, per-parameter details in ``report.params``, and a
        readable table from ``str(report)``.

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
    """
    start = time.perf_counter()
    args, eps, workers = _validate_common(f, args, method, eps, backend, workers, seed, upcast)
    _choice("mode", mode, config.MODES)
    rtol = _positive_float("rtol", rtol, allow_zero=True)
    atol = _positive_float("atol", atol, allow_zero=True)
    samples = _positive_int("samples", samples)
    if directions is not None:
        raise ValueError("directions is only used by mode='directional', which is not "
                         "available yet; leave it None")
    if samples is not None and mode != "sample":
        raise ValueError(f"samples={samples} is only used with mode='sample' (mode={mode!r})")
    if progress is not None and not isinstance(progress, (bool, np.bool_)):
        raise TypeError(f"progress must be True, False or None, got {progress!r}")
    if mode == "sample" and samples is None:
        samples = config.DEFAULT_SAMPLES

    paramset = ParamSet.from_user(params, f)
    if callable(grads) and not isinstance(grads, np.ndarray):
        copies = [a.copy() for a in paramset.arrays]
        grads = paramset.call(grads, copies, args)
    grad_arrays = paramset.match(grads)
    engine = select_engine(backend, f, workers)
    problem = prepare(f, paramset, args, upcast=bool(upcast),
                      complex_step=method == "complex", seed=int(seed))
    stencil = Stencil(method)
    reports: dict[str, ParamReport] = {}
    for p, (name, array) in enumerate(zip(paramset.names, paramset.arrays)):
        entries = select_entries(array.size, samples if mode == "sample" else None,
                                 int(seed), p)
        est = estimate_entries(problem, engine, stencil, p, entries, eps)
        refine = None
        if method in ("central", "forward"):
            def refine(positions: np.ndarray, p: int = p, entries: np.ndarray = entries):
                return estimate_entries(problem, engine, Stencil("richardson"), p,
                                        entries[positions], eps)
        kink_probe = None
        if method != "complex":
            def kink_probe(positions: np.ndarray, p: int = p, entries: np.ndarray = entries):
                return one_sided(problem, engine, p, entries[positions], eps)
        reports[name] = compare_param(name, array.shape, array.dtype, entries, grad_arrays[p],
                                      est, rtol=rtol, atol=atol, refine=refine,
                                      kink_probe=kink_probe)
    diagnose_all(reports)
    return CheckReport(params=reports, method=method, mode=mode, backend=engine.name,
                       evaluations=problem.evaluations, seconds=time.perf_counter() - start,
                       upcast=problem.upcast, noise=problem.noise.level, loss=problem.f0,
                       notes=list(problem.notes))


def assert_gradients(f: Callable[..., Any], params: Structure,
                     grads: Structure | Callable[..., Any], **options: Any) -> CheckReport:
    """Like :func:`check`, but raise :class:`GradientCheckError` when it fails.

    Returns the report when the check passes, so it can be logged.

    Examples
    --------
    >>> import numpy as np, gradprobe as gp
    >>> x = np.linspace(-1.0, 1.0, 5)
    >>> gp.assert_gradients(lambda x: np.sum(np.exp(x)), x, np.exp(x)).passed
    True
    """
    report = check(f, params, grads, **options)
    if not report.passed:
        raise GradientCheckError(report)
    return report
