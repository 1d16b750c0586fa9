"""Checks for array-valued functions: VJP, JVP, Jacobian and Hessian-vector products.

Most hand-written backward passes are per layer: a function from arrays to an
array, and a backward that maps an upstream gradient to the inputs'
gradients. These checks take such functions directly, without a scalar loss
invented by the user:

* :func:`check_vjp` -- ``vjp(u, *inputs)`` is the gradient of the scalar
  ``<u, f(*inputs)>``; every random cotangent ``u`` becomes one full
  :func:`gradprobe.check` (per-entry localization, kinks, float32 upcast,
  error bars and diagnosis included), and the per-cotangent reports are
  merged into one.
* :func:`check_jvp` -- ``jvp(t, *inputs)`` against central differences of
  ``f`` along ``t``: two evaluations per tangent give every output entry,
  each with its own error bar (noise of that entry plus truncation).
* :func:`check_jacobian` -- a whole Jacobian, one perturbed pair of
  evaluations per input entry (one column per pair).
* :func:`check_hvp` -- Hessian-vector products of a scalar ``f``, against
  differences of ``grad`` along ``v`` when it is given, otherwise against the
  gradient of a second difference of ``f``.

All four return a :class:`~gradprobe.report.reports.CheckReport` built through
:func:`gradprobe.verdict.compare.compare_param` and
:func:`gradprobe.verdict.diagnosis.diagnose_all`, and never write the user's arrays.
When several directions are used, an entry fails when it fails along any of
them, and shows the values of the direction where it did worst.
"""
from __future__ import annotations

import numbers
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .. import config
from .scalar import check
from ..options import CheckOptions, choice, positive_float, seed_value
from ..verdict.diagnosis import diagnose_all
from ..problem.params import ParamSet, as_args, loss_value, match_structure
from ..problem.point import format_entry
from ..report.reports import CheckReport, ParamReport
from ..differences.stencils import Estimate, step_size
from ..differences.vector import (VectorFunction, line_estimate, one_sided_line, output_array,
                                 scaled)
from ..verdict.compare import compare_param
from .grouped import grouped_notes, jacobian_by_groups, vjp_by_groups, with_fixed

#: Random directions (cotangents, tangents, Hessian vectors) drawn when the
#: user gives none. One random direction finds any wrong linear map with
#: probability 1; a few guard against an unlucky, nearly orthogonal draw and
#: show whether a failure depends on the direction.
DEFAULT_DIRECTIONS = 3
#: Without ``grad``, :func:`check_hvp` differentiates the second difference
#: ``(f(x + k v) - f(x - k v)) / 2k``; ``k`` is ``eps ** HVP_INNER_STEP_POWER``
#: (relative to the entries' magnitudes), which balances its rounding error
#: (``eps / k``) against its truncation (``k**2``) for the outer difference.
HVP_INNER_STEP_POWER = 0.25
#: Seeds of the random directions (mixed with the user's ``seed``).
_SEED_TAGS = {"cotangents": 0x636F74, "tangents": 0x74616E, "vectors": 0x766563}
# -- validation ---------------------------------------------------------------------

def _callable(name: str, value: Any) -> None:
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}")


def _seed(seed: Any) -> int:
    seed_value(seed)
    return int(seed)


def _upcast(upcast: Any) -> bool:
    if not isinstance(upcast, (bool, np.bool_)):
        raise TypeError(f"upcast must be True or False, got {upcast!r}")
    return bool(upcast)


def _vector_options(method: Any, eps: Any, rtol: Any, atol: Any, seed: Any, upcast: Any,
                    backend: Any, args: Any) -> tuple:
    """Validate the options shared by the difference-based checks."""
    choice("method", method, config.METHODS)
    eps = positive_float("eps", eps)
    rtol = positive_float("rtol", rtol, allow_zero=True)
    atol = positive_float("atol", atol, allow_zero=True)
    if backend not in ("auto", "python"):
        if isinstance(backend, str) and backend in {*config.BACKENDS, "numba", "cffi", "dask"}:
            raise ValueError(f"backend={backend!r} is not available here: differences of "
                             "array-valued functions run on the Python engine; use "
                             "backend='auto' or 'python'")
        choice("backend", backend, ("auto", "python"))
    return eps, rtol, atol, _seed(seed), _upcast(upcast), as_args(args)


def _inputs(inputs: Any, f: Callable[..., Any], *, arg: str = "inputs") -> ParamSet:
    """Validate the inputs and name them (dict keys, f's argument names, input[i])."""
    return ParamSet.from_user(inputs, f, noun="input", arg=arg,
                              default_names=("input[{i}]", "input"))


def _single_input(x: Any, f: Callable[..., Any] | None, arg: str = "x") -> ParamSet:
    """One array (lists of numbers are accepted), named after f's first argument."""
    if isinstance(x, Mapping):
        raise TypeError(f"{arg} must be one array, got a dict; for functions of several "
                        "arrays use check_vjp or check_jvp")
    if isinstance(x, (tuple, list)):
        try:
            x = np.asarray(x)
        except Exception as exc:
            raise TypeError(f"{arg} must be one array: {exc}") from exc
        if x.dtype.kind in "iu":
            x = x.astype(np.float64)
    return ParamSet.from_user(x, f, noun="input", arg=arg, default_names=(arg, arg))


def _directions(value: Any, kind: str, names: Sequence[str],
                shapes: Sequence[tuple[int, ...]], dtypes: Sequence[np.dtype], *, arg: str,
                seed: int) -> list[list[np.ndarray]]:
    """The directions to check along: drawn (seeded) or the user's, validated.

    ``value`` is None (draw ``DEFAULT_DIRECTIONS``), a count, one direction in
    the structure ``(kind, names, shapes)``, or a list of them; for one array
    also an ndarray with one extra leading axis (a stack of directions).
    """
    if value is None or (isinstance(value, numbers.Integral) and not isinstance(value, bool)):
        count = DEFAULT_DIRECTIONS if value is None else int(value)
        if count < 1:
            raise ValueError(f"{arg}={value!r} is not valid; expected a positive count or "
                             "arrays")
        rng = np.random.default_rng([seed, _SEED_TAGS[arg]])
        return [[rng.standard_normal(shape).astype(dtype) for shape, dtype in
                 zip(shapes, dtypes)] for _ in range(count)]
    if kind == "single":
        shape = tuple(shapes[0])
        if isinstance(value, (float, np.floating)):   # one direction for a 0-d array
            value = np.asarray(value)
        if isinstance(value, np.ndarray):
            if value.shape == shape:
                items = [value]
            elif value.ndim == len(shape) + 1 and value.shape[1:] == shape:
                items = list(value)
            else:
                raise ValueError(f"{arg} has shape {value.shape}; expected {shape} (one "
                                 f"direction) or (k, {', '.join(map(str, shape))}) (k "
                                 "directions)".replace(", )", ")"))
        elif isinstance(value, (tuple, list)):
            items = list(value)
        else:
            raise TypeError(f"{arg} must be an array of shape {shape}, a list of them, or a "
                            f"count; got {type(value).__name__}")
    elif kind == "sequence":
        if isinstance(value, (tuple, list)) and value and all(
                isinstance(v, (tuple, list, Mapping)) for v in value):
            items = list(value)
        else:
            items = [value]
    else:
        items = [value] if isinstance(value, Mapping) else (
            list(value) if isinstance(value, (tuple, list)) else [value])
    if not items:
        raise ValueError(f"{arg} is empty: give at least one direction, or None")
    out = []
    for k, item in enumerate(items):
        label = f"{arg}[{k}]" if len(items) > 1 or kind != "single" else arg
        output = arg == "cotangents"
        arrays = match_structure(item, kind, names, shapes, what=label,
                                 noun="output" if output else "input",
                                 like="f's output" if output else "the inputs")
        arrays = [a.astype(np.float64) if a.dtype.kind in "iu" else a for a in arrays]
        for name, a in zip(names, arrays):
            if not np.all(np.isfinite(a)):
                raise ValueError(f"{label} holds a non-finite value for {name!r}")
        if all(not np.any(a) for a in arrays):
            raise ValueError(f"{label} is all zeros: it checks nothing")
        out.append(arrays)
    return out


def _call_with(fn: Callable[..., Any], leading: Any, paramset: ParamSet, args: tuple,
               what: str) -> Any:
    """``fn(leading, *inputs, *args)`` on copies of the inputs (dict inputs bind by
    name, :func:`gradprobe.problem.params.bind_call`)."""
    copies = [a.copy() for a in paramset.arrays]
    return paramset.call(fn, copies, args, leading=(leading,), what=what)


# -- merging per-direction reports --------------------------------------------------

def merge_runs(runs: Sequence[Mapping[str, ParamReport]]) -> dict[str, ParamReport]:
    """One report per parameter from the reports of several directions.

    An entry fails when it fails along any direction. Its values (analytic,
    numeric, error bar, errors) are those of the direction where it did
    worst; failing entries prefer the direction with the most failures, so
    a pattern across entries (a scale factor, a transpose) stays visible to
    the diagnosis. Entries checked by only some runs (sampling, directional
    localization) are merged over the union.

    Examples
    --------
    >>> import numpy as np
    >>> import gradprobe as gp
    >>> w = np.array([1.0, 2.0])
    >>> good = gp.check(lambda w: np.sum(w ** 2), w, 2 * w).params
    >>> bad = gp.check(lambda w: np.sum(w ** 2), w, np.array([2.0, 4.1])).params
    >>> merged = merge_runs([good, bad])
    >>> merged["w"].failed_indices, merged["w"].checked
    ([(1,)], 2)
    """
    if not runs:
        raise ValueError("no runs to merge")
    merged: dict[str, ParamReport] = {}
    for name in runs[0]:
        reports = [run[name] for run in runs]
        first = reports[0]
        entries = np.unique(np.concatenate([r.flat_indices for r in reports]))
        k, u = len(reports), entries.size
        present = np.zeros((k, u), dtype=bool)
        ratio = np.full((k, u), -np.inf)
        failed = np.zeros((k, u), dtype=bool)
        kink = np.zeros((k, u), dtype=bool)
        fields = ("analytic_flat", "numeric_flat", "error_bar_flat", "abs_error_flat",
                  "rel_error_flat", "ratio_flat")
        values = {f: np.full((k, u), np.nan) for f in fields}
        for i, r in enumerate(reports):
            pos = np.searchsorted(entries, r.flat_indices)
            present[i, pos] = True
            ratio[i, pos] = np.where(np.isnan(r.ratio_flat), np.inf, r.ratio_flat)
            failed[i, pos] = r.failed_mask
            kink[i, pos] = r.kink_mask
            for f in fields:
                values[f][i, pos] = getattr(r, f)
        primary = max(range(k), key=lambda i: (reports[i].failed,
                                               float(ratio[i].max(initial=-np.inf))))
        failed_any = failed.any(axis=0)
        choice = np.argmax(ratio, axis=0)
        worst_failing = np.argmax(np.where(failed, ratio, -np.inf), axis=0)
        choice = np.where(failed_any, worst_failing, choice)
        choice = np.where(failed[primary], primary, choice)
        cols = np.arange(u)
        report = ParamReport(
            name=first.name, shape=first.shape, dtype=first.dtype, flat_indices=entries,
            **{f: values[f][choice, cols] for f in fields},
            failed_mask=failed_any, kink_mask=kink[choice, cols] & ~failed_any,
            rtol=reports[primary].rtol, atol=reports[primary].atol,
            full=u == int(np.prod(first.shape, dtype=np.int64)),
            refined=sum(r.refined for r in reports))
        resolutions = [getattr(r, "resolution", None) for r in reports]
        if any(v is not None for v in resolutions):
            report.resolution = max(v for v in resolutions if v is not None)
        merged[name] = report
    return merged


def _finish(params: dict[str, ParamReport], *, method: str, mode: str, backend: str,
            evaluations: int, start: float, upcast: bool, noise: float, loss: float,
            notes: Sequence[str]) -> CheckReport:
    """Diagnose the merged parameters and wrap them in a CheckReport."""
    diagnose_all(params)
    unique: list[str] = []
    for note in notes:
        if note not in unique:
            unique.append(note)
    return CheckReport(params=params, method=method, mode=mode, backend=backend,
                       evaluations=int(evaluations), seconds=time.perf_counter() - start,
                       upcast=bool(upcast), noise=float(noise), loss=float(loss), notes=unique)


def _how_many(count: int, noun: str, given: bool, seed: int) -> str:
    source = "given" if given else f"random, seed {seed}"
    return f"{count} {noun}{'s' if count != 1 else ''} ({source})"


# -- VJP ------------------------------------------------------------------------------

def check_vjp(f: Callable[..., Any], inputs: Any, vjp: Callable[..., Any], *,
              cotangents: Any = None, args: tuple = (), seed: int = 0, upcast: bool = True,
              **options: Any) -> CheckReport:
    """Check a vector-Jacobian product (a backward pass) against numerical derivatives.

    For a cotangent ``u`` of ``f``'s output shape, ``vjp(u, *inputs)`` must be
    the gradient of the scalar ``L(inputs) = <u, f(*inputs)>``. Each
    cotangent runs one full :func:`gradprobe.check` of that ``L``; the
    per-cotangent reports are merged: an entry fails when it fails for any
    cotangent, and shows the values of the cotangent where it did worst.

    Parameters
    ----------
    f : callable
        ``f(*inputs, *args) -> array`` (``f(x, *args)`` for one array; dict
        inputs bind to ``f``'s arguments by name, ``args`` to the others).
    inputs : ndarray, tuple/list of ndarray, or dict of str to ndarray
        The point. Never modified.
    vjp : callable
        ``vjp(u, *inputs, *args)`` (dict inputs by name, as for ``f``)
        returns the gradients for every input, in the structure of ``inputs``.
    cotangents : ndarray, list of ndarray, or int, optional
        The cotangents ``u``: one array of ``f``'s output shape, a list of
        them (or an array with one more leading axis), or how many to draw.
        Default: ``DEFAULT_DIRECTIONS`` standard-normal draws (seeded), in
        ``f``'s output dtype.
    args : tuple
        Extra positional arguments of ``f`` and ``vjp`` (data, not checked).
    seed : int
        Seed of the cotangents, the noise probe and any sample.
    upcast : bool
        Evaluate float16/float32 inputs in float64 when ``f`` accepts it.
    **options
        Every option of :func:`gradprobe.check` (``mode``, ``method``, ``eps``,
        ``rtol``, ``atol``, ``samples``, ``directions``, ``budget_s``,
        ``backend``, ``workers``, ``progress``, ``client``), used for each
        cotangent's check.

    Returns
    -------
    CheckReport
        One :class:`~gradprobe.report.reports.ParamReport` per input, named by the
        dict keys, ``f``'s argument names, or ``input[i]``.

    Raises
    ------
    TypeError, ValueError
        Bad input, a cotangent of the wrong shape, or ``vjp`` returning the
        wrong structure or shapes (the message names the input). Exceptions
        raised by ``f`` or ``vjp`` propagate unchanged.

    Examples
    --------
    >>> import numpy as np
    >>> from gradprobe.checks.vector import check_vjp
    >>> x = np.array([[0.5, -1.0], [2.0, 0.1]]); W = np.array([[1.0, 2.0, 0.0], [0.5, -1.0, 1.0]])
    >>> f = lambda x, W: np.tanh(x @ W)
    >>> def vjp(u, x, W):
    ...     d = u * (1 - np.tanh(x @ W) ** 2)
    ...     return d @ W.T, x.T @ d
    >>> check_vjp(f, (x, W), vjp).passed
    True
    >>> def wrong(u, x, W):
    ...     dx, dW = vjp(u, x, W); dW[1, 2] *= 1.01
    ...     return dx, dW
    >>> check_vjp(f, (x, W), wrong).params["W"].failed_indices
    [(1, 2)]
    """
    opts = CheckOptions.build("check_vjp", {"seed": seed, "upcast": upcast, **options})
    return vjp_check(f, inputs, vjp, cotangents, args, opts)


def vjp_check(f: Callable[..., Any], inputs: Any, vjp: Callable[..., Any], cotangents: Any,
              args: Any, opts: CheckOptions, caller: str = "check_vjp") -> CheckReport:
    """:func:`check_vjp` on options validated by the public function called
    (:func:`check_vjp` or :func:`gradprobe.check_layer`)."""
    from .scalar import run_check

    start = time.perf_counter()
    _callable("f", f)
    _callable("vjp", vjp)
    args, seed = as_args(args), opts.seed
    paramset = _inputs(inputs, f)
    y = output_array(paramset.call(f, [a.copy() for a in paramset.arrays], args), what="f",
                     context="at the unperturbed point", shape=None)
    if not np.all(np.isfinite(y)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(y))[0])
        raise ValueError(f"f returned {y[bad].item()!r} in {format_entry('output', bad)} at the "
                         "unperturbed point; the output must be finite")
    out_dtype = y.dtype if y.dtype.kind == "f" else np.dtype(np.float64)
    us = _directions(cotangents, "single", ["output"], [y.shape], [out_dtype],
                     arg="cotangents", seed=seed)
    names = paramset.names
    grads = [paramset.match(_call_with(vjp, u.copy(), paramset, args, "vjp"),
                            what=f"vjp(cotangents[{k}], ...)", like="the inputs")
             for k, (u,) in enumerate(us)]
    grouped = vjp_by_groups(
        f, paramset, args, [u for (u,) in us], grads, opts,
        lambda k: _projection(f, paramset, us[k][0], y.shape, f"cotangents[{k}]"), caller)
    runs: list[CheckReport] = []
    rest = grouped.fallback
    if rest:  # entry by entry: one scalar check of <u, f> per cotangent
        fixed = {n: a for n, a in zip(names, paramset.arrays) if n not in rest}
        for k, (u,) in enumerate(us):
            loss = _projection(f, paramset, u, y.shape, f"cotangents[{k}]")
            if fixed:
                loss = with_fixed(loss, fixed)
            runs.append(run_check(loss, {n: a for n, a in zip(names, paramset.arrays)
                                         if n in rest},
                                  {n: g for n, g in zip(names, grads[k]) if n in rest},
                                  args, opts))
    params = merge_runs([{n: (runs[k].params[n] if n in rest else grouped.runs[k][n])
                          for n in names} for k in range(len(us))])
    for name, p in params.items():
        p.strategy = grouped.strategies[name]
    given = cotangents is not None and not isinstance(cotangents, numbers.Integral)
    notes = [f"vector-Jacobian products along {_how_many(len(us), 'cotangent', given, seed)}:"
             " each is the gradient of <u, f>; an entry fails if it fails for any cotangent "
             "and shows the values of the worst one"]
    notes += grouped_notes(grouped, names, params)
    notes += [n for r in runs for n in r.notes]
    first = runs[0] if runs else None
    report = _finish(params, method=opts.method if first is None else first.method,
                     mode=opts.mode if first is None else first.mode,
                     backend="python" if first is None else first.backend,
                     evaluations=1 + grouped.evaluations + sum(r.evaluations for r in runs),
                     start=start, upcast=any(r.upcast for r in runs) or grouped.upcast,
                     noise=max([r.noise for r in runs] + [grouped.noise]),
                     loss=float("nan"), notes=notes)
    # fields of directional/auto checks (present in newer CheckReports)
    strategies = {getattr(r, "strategy", None) for r in runs} - {None}
    if len(strategies) == 1:
        report.strategy = strategies.pop()
    resolutions = [getattr(r, "resolution", None) for r in runs]
    if any(v is not None for v in resolutions):
        report.resolution = max(v for v in resolutions if v is not None)
    return report


def _projection(f: Callable[..., Any], paramset: ParamSet, u: np.ndarray,
                out_shape: tuple[int, ...], label: str) -> Callable[..., Any]:
    """The scalar loss ``<u, f(inputs)>`` as a function of the named inputs."""
    names = list(paramset.names)
    shapes = [a.shape for a in paramset.arrays]
    u_flat = np.asarray(u, dtype=np.float64).reshape(-1)

    def loss(*args: Any, **arrays: np.ndarray) -> Any:
        # views in the user's shapes: the core hands 0-d parameters over as shape (1,)
        views = [arrays[n].reshape(shape) for n, shape in zip(names, shapes)]
        raw = paramset.call(f, views, args)
        y = output_array(raw, what="f", context=f"while checking along {label}",
                         shape=out_shape, allow_complex=True)
        flat = y.reshape(-1)
        if flat.dtype.kind == "c":
            return complex(np.dot(u_flat, flat.astype(np.complex128)))
        value = float(np.dot(u_flat, flat.astype(np.float64)))
        if flat.dtype.kind == "f" and flat.dtype.itemsize < 8:
            return flat.dtype.type(value)  # the projection is as precise as f's output
        return value

    return loss


# -- JVP ------------------------------------------------------------------------------

def check_jvp(f: Callable[..., Any], inputs: Any, jvp: Callable[..., Any], *,
              tangents: Any = None, args: tuple = (), method: str = "central",
              eps: float | None = None, rtol: float | None = None, atol: float | None = None,
              seed: int = 0, upcast: bool = True, backend: str = "auto",
              **options: Any) -> CheckReport:
    """Check a Jacobian-vector product (a forward-mode derivative) against differences of f.

    For each tangent ``t`` (one array per input), ``jvp(t, *inputs)`` is
    compared, output entry by output entry, with ``(f(x + h t) - f(x - h t)) / 2h``
    (``method="central"``): two evaluations of ``f`` per tangent. Every
    output entry gets its own error bar, from its measured rounding noise
    and the curvature seen by the difference; failing entries are confirmed
    with a Richardson difference, and kinks are reported apart.

    Parameters
    ----------
    f : callable
        ``f(*inputs, *args) -> array`` (see :func:`check_vjp` for structures).
    inputs : ndarray, tuple/list of ndarray, or dict of str to ndarray
        The point. Never modified.
    jvp : callable
        ``jvp(t, *inputs, *args)`` returns an array of ``f``'s output shape;
        ``t`` has the structure of ``inputs``.
    tangents : structure of inputs, list of them, or int, optional
        The tangents: one (the structure of ``inputs``), a list, or how many
        to draw. Default: ``DEFAULT_DIRECTIONS`` standard-normal draws (seeded).
    args : tuple
        Extra positional arguments of ``f`` and ``jvp``.
    method : {"central", "forward", "richardson", "complex"}
        Difference along each tangent (``"complex"``: ``Im f(x + iht) / h``,
        for an ``f`` that accepts complex input).
    eps : float, optional
        Step along the tangent (``x + eps * t``). By default chosen from the
        measured noise of ``f``'s outputs so that no entry moves by more than
        the scalar check's step for it.
    rtol, atol : float, optional
        Tolerances, as in :func:`gradprobe.check` (defaults by the dtype of
        the array ``jvp`` returns).
    seed : int
        Seed of the tangents and of the noise probe.
    upcast : bool
        Evaluate float16/float32 inputs in float64 when ``f`` accepts it.
    backend : {"auto", "python"}
        Differences of array-valued functions run on the Python engine.
    **options
        Other options of :func:`gradprobe.check` do not apply here (the
        error says why: ``workers``, ``progress``, ``mode``, ...).

    Returns
    -------
    CheckReport
        One parameter, ``output``, with ``f``'s output shape: an entry fails
        when it fails along any tangent.

    Examples
    --------
    >>> import numpy as np
    >>> from gradprobe.checks.vector import check_jvp
    >>> x = np.array([0.5, -1.0, 2.0])
    >>> f = lambda x: np.cumsum(x ** 2)
    >>> check_jvp(f, x, lambda t, x: np.cumsum(2 * x * t)).passed
    True
    >>> def wrong(t, x):
    ...     out = np.cumsum(2 * x * t); out[1] *= 1.01
    ...     return out
    >>> check_jvp(f, x, wrong).params["output"].failed_indices
    [(1,)]
    """
    start = time.perf_counter()
    CheckOptions.build("check_jvp", dict(method=method, eps=eps, rtol=rtol, atol=atol, seed=seed,
                       upcast=upcast, backend=backend, **options))
    _callable("f", f)
    _callable("jvp", jvp)
    eps, rtol, atol, seed, upcast, args = _vector_options(method, eps, rtol, atol, seed,
                                                          upcast, backend, args)
    paramset = _inputs(inputs, f)
    vf = VectorFunction.prepare(f, paramset, args, upcast=upcast,
                                complex_step=method == "complex", seed=seed)
    ts = _directions(tangents, paramset.kind, paramset.names,
                     [a.shape for a in paramset.arrays], [a.dtype for a in paramset.arrays],
                     arg="tangents", seed=seed)
    analytic = []
    for k, t in enumerate(ts):
        raw = _call_with(jvp, paramset.rebuild([a.copy() for a in t]), paramset, args,
                         "jvp")
        analytic.append(match_structure(raw, "single", ["output"], [vf.out_shape],
                                        what=f"jvp(tangents[{k}], ...)", noun="output",
                                        like="f's output")[0])
    runs = _line_runs(vf, ts, analytic, name="output", dtype=vf.out_dtype, method=method,
                      eps=eps, rtol=rtol, atol=atol, label="tangents")
    given = tangents is not None and not isinstance(tangents, numbers.Integral)
    notes = [f"Jacobian-vector products along {_how_many(len(ts), 'tangent', given, seed)}, "
             f"against {method} differences of f; an output entry fails if it fails along "
             "any tangent"] + _noise_notes(vf) + vf.notes
    return _finish(merge_runs(runs), method=method, mode="full", backend="python",
                   evaluations=vf.evaluations, start=start, upcast=vf.upcast,
                   noise=float(np.max(vf.noise)), loss=float("nan"), notes=notes)


def _noise_notes(vf: VectorFunction) -> list[str]:
    if vf.noise_measured == 0:
        return [f"noise of {vf.what}'s outputs could not be measured; error bars assume "
                f"{config.NOISE_FLOOR_ULPS:g} ulp of each output"]
    return []


def _line_runs(vf: VectorFunction, directions: Sequence[Sequence[np.ndarray]],
               analytic: Sequence[np.ndarray], *, name: str, dtype: np.dtype, method: str,
               eps: float | None, rtol: float | None, atol: float | None,
               label: str) -> list[dict[str, ParamReport]]:
    """Compare ``analytic[k]`` with the derivative of ``vf`` along ``directions[k]``.

    The line is parametrized so that ``s = 1`` moves no entry by more than
    ``max(1, |x|)``: ``x + s * d / tau`` with ``tau = max |d| / max(1, |x|)``;
    the derivative along ``d`` is ``tau`` times the derivative in ``s``.
    """
    base = [np.real(w).astype(np.float64) for w in vf.working]
    runs = []
    for k, direction in enumerate(directions):
        d64 = [np.asarray(d, dtype=np.float64) for d in direction]
        tau = max(float(np.max(np.abs(d) / np.maximum(1.0, np.abs(b)))) for d, b in
                  zip(d64, base))
        unit = [d / tau for d in d64]
        h = float(step_size(np.zeros(1), method, vf.noise_rel,
                            None if eps is None else eps * tau)[0])

        def evaluate(s: Any, unit: list = unit, k: int = k, tau: float = tau) -> np.ndarray:
            return vf.along(unit, s, context=f"at x + {s / tau:.3g} * {label}[{k}]")

        estimate = scaled(line_estimate(evaluate, 0.0, h, method, vf), tau)
        refine = kink_probe = None
        if method in ("central", "forward"):
            def refine(positions: np.ndarray, evaluate: Callable = evaluate, h: float = h,
                       tau: float = tau) -> Estimate:
                better = scaled(line_estimate(evaluate, 0.0, h, "richardson", vf), tau)
                return _subset(better, positions)
        if method != "complex":
            h_kink = float(step_size(np.zeros(1), "central", vf.noise_rel,
                                     None if eps is None else eps * tau)[0]) \
                / config.KINK_STEP_DIVISOR

            def kink_probe(positions: np.ndarray, evaluate: Callable = evaluate,
                           h_kink: float = h_kink, tau: float = tau):
                left, right = one_sided_line(evaluate, 0.0, h_kink, vf)
                return left[positions] * tau, right[positions] * tau
        runs.append({name: compare_param(name, vf.out_shape, dtype, None, analytic[k],
                                         estimate, rtol=rtol, atol=atol, refine=refine,
                                         kink_probe=kink_probe)})
    return runs


def _subset(estimate: Estimate, positions: np.ndarray) -> Estimate:
    def take(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a[positions]

    return Estimate(estimate.value[positions], estimate.error_bar[positions],
                    take(estimate.left), take(estimate.right))


# -- Jacobian -------------------------------------------------------------------------

def check_jacobian(f: Callable[..., Any], x: Any, jac: Any, *, args: tuple = (),
                   method: str = "central", eps: float | None = None,
                   rtol: float | None = None, atol: float | None = None, seed: int = 0,
                   upcast: bool = True, backend: str = "auto",
                   **options: Any) -> CheckReport:
    """Check a full Jacobian against differences of f, one column per input entry.

    Entry ``x[j]`` is perturbed by ``±h`` (the scalar check's step for it);
    the pair of outputs gives the whole column ``d f / d x[j]``, every output
    entry with its own error bar.

    Parameters
    ----------
    f : callable
        ``f(x, *args) -> array``.
    x : ndarray
        The point (one array of any shape). Never modified.
    jac : ndarray or callable
        The Jacobian, of shape ``f(x).shape + x.shape`` (``jac[i..., j...]`` is
        ``d f[i...] / d x[j...]``), or ``jac(x, *args)`` returning it.
    args, method, eps, rtol, atol, seed, upcast, backend, **options
        As in :func:`check_jvp` (``eps`` is the absolute step of every entry).

    Returns
    -------
    CheckReport
        One parameter, ``jacobian``, of shape ``f(x).shape + x.shape``. The
        diagnosis and a note spell failing entries as
        ``output[i...] / x[j...]``.

    Examples
    --------
    >>> import numpy as np
    >>> from gradprobe.checks.vector import check_jacobian
    >>> x = np.array([1.0, 2.0, 3.0])
    >>> A = np.array([[1.0, 2.0, 0.0], [0.0, 1.0, -1.0]])
    >>> f = lambda x: A @ np.sin(x)
    >>> J = A * np.cos(x)
    >>> check_jacobian(f, x, J).passed
    True
    >>> bad = J.copy(); bad[1, 2] *= 1.01
    >>> report = check_jacobian(f, x, bad)
    >>> report.params["jacobian"].failed_indices
    [(1, 2)]
    >>> report.params["jacobian"].diagnosis
    'localized: 1 entry of 6 wrong: output[1] / x[2]'
    """
    start = time.perf_counter()
    opts = CheckOptions.build("check_jacobian", dict(method=method, eps=eps, rtol=rtol,
                                                     atol=atol, seed=seed, upcast=upcast,
                                                     backend=backend, **options))
    _callable("f", f)
    eps, rtol, atol, seed, upcast, args = _vector_options(method, eps, rtol, atol, seed,
                                                          upcast, backend, args)
    paramset = _single_input(x, f)
    xname = paramset.names[0]
    x_shape = paramset.arrays[0].shape
    vf = VectorFunction.prepare(f, paramset, args, upcast=upcast,
                                complex_step=method == "complex", seed=seed)
    full_shape = vf.out_shape + x_shape
    if callable(jac) and not isinstance(jac, np.ndarray):
        jac = jac(paramset.arrays[0].copy(), *args)
        what = "jac(x)"
    else:
        what = "jac"
    jac_array = _jacobian_array(jac, vf.out_shape, x_shape, what)

    m, n = vf.size, paramset.arrays[0].size
    flat = vf.working[0].reshape(-1)

    def line(j: int) -> tuple[Callable[[Any], np.ndarray], Any, float]:
        index = np.unravel_index(j, x_shape) if x_shape else ()
        origin = flat[j].real if vf.complex_step else flat[j]
        h = float(step_size(np.array([float(origin)]), method, vf.noise_rel, eps)[0])

        def evaluate(p: Any) -> np.ndarray:
            return vf.with_entry(0, j, p, context=f"with {format_entry(xname, index)} = {p!r}")
        return evaluate, origin, h

    estimate, strategy = jacobian_by_groups(vf, opts, "check_jacobian")
    if estimate is None:  # one column per entry of x
        value = np.empty((m, n))
        bar = np.empty((m, n))
        left = np.empty((m, n)) if method in ("central", "richardson") else None
        right = np.empty((m, n)) if left is not None else None
        for j in range(n):
            evaluate, origin, h = line(j)
            est = line_estimate(evaluate, origin, h, method, vf)
            value[:, j], bar[:, j] = est.value, est.error_bar
            if left is not None:
                left[:, j], right[:, j] = est.left, est.right
        estimate = Estimate(value.reshape(-1), bar.reshape(-1),
                            None if left is None else left.reshape(-1),
                            None if right is None else right.reshape(-1))

    def by_column(positions: np.ndarray, compute: Callable[[int], tuple]) -> list[np.ndarray]:
        rows, cols = np.divmod(positions, n)  # every entry is checked: position = flat index
        results: list[np.ndarray] | None = None
        for c in np.unique(cols):
            parts = compute(int(c))
            if results is None:
                results = [np.full(positions.size, np.nan) for _ in parts]
            sel = cols == c
            for out, part in zip(results, parts):
                out[sel] = part[rows[sel]]
        return results or []

    refine = kink_probe = None
    if method in ("central", "forward"):
        def refine(positions: np.ndarray) -> Estimate:
            def compute(j: int) -> tuple:
                evaluate, origin, h = line(j)
                est = line_estimate(evaluate, origin, h, "richardson", vf)
                return est.value, est.error_bar, est.left, est.right
            return Estimate(*by_column(positions, compute))
    if method != "complex":
        def kink_probe(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            def compute(j: int) -> tuple:
                evaluate, origin, _ = line(j)
                h = float(step_size(np.array([float(origin)]), "central", vf.noise_rel,
                                    eps)[0]) / config.KINK_STEP_DIVISOR
                return one_sided_line(evaluate, origin, h, vf)
            left_, right_ = by_column(positions, compute)
            return left_, right_

    report = compare_param("jacobian", full_shape, vf.out_dtype, None, jac_array, estimate,
                           rtol=rtol, atol=atol, refine=refine, kink_probe=kink_probe)
    notes = [f"Jacobian of shape {vf.out_shape} + {x_shape}: jacobian[i..., j...] = "
             f"d output[i...] / d {xname}[j...], from {method} differences of f, "
             + (f"one column per entry of {xname}" if strategy.startswith("entry")
                else "columns read from groups of entries with disjoint outputs")] \
        + _noise_notes(vf) + vf.notes
    report.strategy = strategy
    notes.append(f"{xname}: {strategy}")
    params = {"jacobian": report}
    diagnose_all(params)
    split = len(vf.out_shape)
    if report.diagnosis and report.diagnosis.startswith("localized"):
        report.diagnosis = _localized_jacobian(report, split, xname)
    if not report.passed:
        pos = report._worst_position
        index = report.worst_index
        notes.insert(0, f"worst entry: {_pair(index, split, xname)}: analytic "
                        f"{report.analytic_flat[pos]:.6g}, numeric "
                        f"{report.numeric_flat[pos]:.6g} ± {report.error_bar_flat[pos]:.3g}")
    return CheckReport(params=params, method=method, mode="full", backend="python",
                       evaluations=vf.evaluations, seconds=time.perf_counter() - start,
                       upcast=vf.upcast, noise=float(np.max(vf.noise)), loss=float("nan"),
                       notes=notes)


def _jacobian_array(jac: Any, out_shape: tuple[int, ...], x_shape: tuple[int, ...],
                    what: str) -> np.ndarray:
    """The user's Jacobian, validated against ``out_shape + x_shape``."""
    if isinstance(jac, (bool, np.bool_)) or jac is None:
        raise TypeError(f"{what} must be an array of shape {out_shape + x_shape}, got "
                        f"{type(jac).__name__}")
    try:
        array = np.asarray(jac)
    except Exception as exc:
        raise TypeError(f"{what} is not an array: {exc}") from exc
    if array.dtype.kind not in "fiu":
        raise TypeError(f"{what} has dtype {array.dtype}; expected a real floating array")
    expected = out_shape + x_shape
    if array.shape != expected:
        hint = ""
        if array.shape == x_shape + out_shape and x_shape != out_shape:
            hint = (": it looks like d x / d output (input axes first); put f's output "
                    "axes first")
        elif array.size == int(np.prod(expected, dtype=np.int64)):
            hint = f": same size, reshape it to {expected}"
        raise ValueError(f"{what} has shape {array.shape}, but f's output shape "
                         f"{out_shape} + x's shape {x_shape} is {expected}{hint}")
    return array


def _pair(index: tuple[int, ...], split: int, xname: str) -> str:
    """``output[3, 2] / x[1, 4]`` for a Jacobian index."""
    return f"{format_entry('output', index[:split])} / {format_entry(xname, index[split:])}"


def _localized_jacobian(report: ParamReport, split: int, xname: str) -> str:
    """The 'localized' diagnosis in terms of output and input entries."""
    failed = report.failed_indices
    outs = {i[:split] for i in failed}
    ins = {i[split:] for i in failed}
    n_out = int(np.prod(report.shape[:split], dtype=np.int64))
    n_in = int(np.prod(report.shape[split:], dtype=np.int64))
    if len(failed) > 1 and len(outs) == 1 and report.full:
        (o,) = outs
        return (f"localized: {format_entry('output', o)}: {len(failed)} of its {n_in} "
                f"derivatives wrong (one row of the Jacobian)")
    if len(failed) > 1 and len(ins) == 1 and report.full:
        (i,) = ins
        return (f"localized: {format_entry(xname, i)}: {len(failed)} of {n_out} output "
                "derivatives wrong (one column of the Jacobian)")
    shown = ", ".join(_pair(i, split, xname) for i in failed[:5])
    more = f" and {len(failed) - 5} more" if len(failed) > 5 else ""
    noun = "entry" if len(failed) == 1 else "entries"
    return f"localized: {len(failed)} {noun} of {report.checked} wrong: {shown}{more}"


# -- Hessian-vector products ---------------------------------------------------------

def check_hvp(f: Callable[..., Any] | None, x: Any, hvp: Callable[..., Any], *,
              grad: Callable[..., Any] | None = None, vectors: Any = None, args: tuple = (),
              method: str = "central", eps: float | None = None, rtol: float | None = None,
              atol: float | None = None, seed: int = 0, upcast: bool = True,
              backend: str = "auto",
              **options: Any) -> CheckReport:
    """Check Hessian-vector products of a scalar function (Newton, trust-region, CG).

    With ``grad``, ``hvp(v, x)`` is compared with ``(grad(x + h v) - grad(x - h v)) / 2h``,
    entry by entry (the :func:`check_jvp` machinery applied to ``grad``).
    Without it, with the gradient of the second difference
    ``phi(x) = (f(x + k v) - f(x - k v)) / 2k`` (``k ~ eps**(1/4)``), checked
    by :func:`gradprobe.check`: four evaluations of ``f`` per entry.

    Parameters
    ----------
    f : callable or None
        The scalar function ``f(x, *args)``; may be None when ``grad`` is given.
    x : ndarray
        The point. Never modified.
    hvp : callable
        ``hvp(v, x, *args)`` returns ``H(x) @ v`` in ``x``'s shape.
    grad : callable, optional
        ``grad(x, *args)``, the gradient of ``f`` (check it first with
        :func:`gradprobe.check`: this check trusts it).
    vectors : ndarray, list of ndarray, or int, optional
        The vectors ``v``: one array of ``x``'s shape, several, or how many
        to draw. Default: ``DEFAULT_DIRECTIONS`` standard-normal draws (seeded).
    args, method, eps, rtol, atol, seed, upcast, backend, **options
        As in :func:`check_jvp`.

    Returns
    -------
    CheckReport
        One parameter, ``hvp``, of ``x``'s shape: an entry fails when it
        fails for any vector.

    Notes
    -----
    Without ``grad`` the numerical value differs from ``H v`` by a systematic
    ``O(k**2)`` term (fourth derivatives of ``f``; about ``1e-8`` relative in
    float64), which the error bar does not include: far below the default
    ``rtol`` for smooth functions of moderate curvature.

    Examples
    --------
    >>> import numpy as np
    >>> from gradprobe.checks.vector import check_hvp
    >>> A = np.array([[3.0, 1.0], [1.0, 2.0]]); x = np.array([0.5, -1.0])
    >>> f = lambda x: 0.5 * x @ A @ x + np.sum(x ** 4)
    >>> hvp = lambda v, x: A @ v + 12 * x ** 2 * v
    >>> check_hvp(f, x, hvp).passed
    True
    >>> check_hvp(f, x, hvp, grad=lambda x: A @ x + 4 * x ** 3).passed
    True
    >>> check_hvp(f, x, lambda v, x: A @ v + 4 * x ** 2 * v).passed   # 4 instead of 12
    False
    """
    start = time.perf_counter()
    CheckOptions.build("check_hvp", dict(method=method, eps=eps, rtol=rtol, atol=atol, seed=seed,
                       upcast=upcast, backend=backend, **options))
    if f is None and grad is None:
        raise TypeError("f must be callable (it may be None only when grad is given)")
    if f is not None:
        _callable("f", f)
    _callable("hvp", hvp)
    if grad is not None:
        _callable("grad", grad)
    eps, rtol, atol, seed, upcast, args = _vector_options(method, eps, rtol, atol, seed,
                                                          upcast, backend, args)
    paramset = _single_input(x, f if f is not None else grad)
    x0 = paramset.arrays[0]
    loss = float("nan")
    evaluations = 0
    if f is not None:
        loss = float(np.real(loss_value(f(x0.copy(), *args),
                                        context="at the unperturbed point")))
        evaluations += 1
        if not np.isfinite(loss):
            raise ValueError(f"f returned {loss!r} at the unperturbed point; it must be finite")
    vs = _directions(vectors, "single", ["x"], [x0.shape], [x0.dtype], arg="vectors", seed=seed)
    analytic = [match_structure(hvp(v.copy(), x0.copy(), *args), "single", ["hvp"],
                                [x0.shape], what=f"hvp(vectors[{k}], x)", noun="output",
                                like="x")[0]
                for k, (v,) in enumerate(vs)]
    given = vectors is not None and not isinstance(vectors, numbers.Integral)
    how = _how_many(len(vs), "vector", given, seed)
    if grad is not None:
        vf = VectorFunction.prepare(grad, paramset, args, upcast=upcast,
                                    complex_step=method == "complex", seed=seed, what="grad")
        if vf.out_shape != x0.shape:
            raise ValueError(f"grad returned an array of shape {vf.out_shape}, but x has "
                             f"shape {x0.shape}")
        runs = _line_runs(vf, vs, analytic, name="hvp", dtype=x0.dtype, method=method,
                          eps=eps, rtol=rtol, atol=atol, label="vectors")
        notes = [f"Hessian-vector products along {how}, against {method} differences of "
                 "grad; an entry fails if it fails for any vector"] + _noise_notes(vf) \
            + vf.notes
        return _finish(merge_runs(runs), method=method, mode="full", backend="python",
                       evaluations=evaluations + vf.evaluations, start=start,
                       upcast=vf.upcast, noise=float(np.max(vf.noise)), loss=loss,
                       notes=notes)
    reports = []
    for k, ((v,), a) in enumerate(zip(vs, analytic)):
        phi = _second_difference(f, x0, v, f"vectors[{k}]")
        reports.append(check(phi, {"hvp": x0}, {"hvp": a}, args=args, method=method,
                             eps=eps, rtol=rtol, atol=atol, seed=seed, upcast=upcast,
                             backend="python"))
    notes = [f"Hessian-vector products along {how}, against the gradient of the second "
             "difference (f(x + k v) - f(x - k v)) / 2k (no grad given); an entry fails if "
             "it fails for any vector"] + [n for r in reports for n in r.notes]
    return _finish(merge_runs([r.params for r in reports]), method=method, mode=reports[0].mode,
                   backend=reports[0].backend,
                   evaluations=evaluations + sum(r.evaluations for r in reports),
                   start=start, upcast=any(r.upcast for r in reports),
                   noise=max(r.noise for r in reports), loss=loss, notes=notes)


def _second_difference(f: Callable[..., Any], x0: np.ndarray, v: np.ndarray,
                       label: str) -> Callable[..., Any]:
    """``phi(x) = (f(x + k v) - f(x - k v)) / 2k``, whose gradient is ``H v + O(k**2)``."""
    v64 = np.asarray(v, dtype=np.float64)
    tau = float(np.max(np.abs(v64) / np.maximum(1.0, np.abs(x0.astype(np.float64)))))
    steps: dict[np.dtype, float] = {}

    def phi(*args: Any, hvp: np.ndarray) -> Any:
        hvp = hvp.reshape(x0.shape)  # the core hands 0-d parameters over as shape (1,)
        real = np.finfo(hvp.dtype).dtype
        if real not in steps:
            ideal = float(np.finfo(real).eps) ** HVP_INNER_STEP_POWER
            steps[real] = float(np.exp2(np.floor(np.log2(ideal)))) / tau
        k = steps[real]
        shift = (k * v64).astype(hvp.dtype)
        raw_plus = f(hvp + shift, *args)
        raw_minus = f(hvp - shift, *args)
        plus = loss_value(raw_plus, context=f"at x + {k:.3g} * {label}", allow_complex=True)
        minus = loss_value(raw_minus, context=f"at x - {k:.3g} * {label}", allow_complex=True)
        value = (plus - minus) / (2.0 * k)
        dtype = getattr(raw_plus, "dtype", None)
        if isinstance(value, float) and dtype is not None and dtype.kind == "f" \
                and dtype.itemsize < 8:
            return dtype.type(value)  # as precise as f's result
        return value

    return phi

