"""check_vjp and check_jvp: products of the Jacobian with random cotangents and tangents."""
from __future__ import annotations

import functools
import numbers
import time
from typing import Any, Callable, Mapping

import numpy as np

from .. import config
from ..options import CheckOptions
from .structural import structural_checks
from ..problem.tensors import as_host_array
from ..problem.params import ParamSet, as_args, match_structure
from ..problem.point import format_entry
from ..report.reports import CheckReport
from ..differences.vector import VectorFunction, output_array
from .grouped import grouped_notes, vjp_by_groups, with_fixed
from .vector_setup import (_callable, _vector_options, _inputs, _directions, _call_with, merge_runs,
                           _finish, _how_many, _noise_notes, _line_runs, forward_findings,
                           noise_ulps)


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
        Default: ``config.DEFAULT_VECTOR_DIRECTIONS`` standard-normal draws (seeded), in
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
    raw = paramset.call(f, [a.copy() for a in paramset.arrays], args)
    if isinstance(raw, (tuple, list)) and raw and all(
            isinstance(v, np.ndarray) for v in raw):  # several outputs: never stacked
        f, vjp, cotangents = several_outputs(f, vjp, [np.asarray(v) for v in raw], cotangents)
        raw = np.concatenate([np.asarray(v).reshape(-1) for v in raw])
    y = output_array(raw, what="f", context="at the unperturbed point", shape=None)
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
    structural = _structural(f, vjp, paramset, args, us[0][0], opts)
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
    notes.append(f"structural checks (no finite differences): {', '.join(structural.checks)}"
                 + ("" if structural.passed else
                    f"; {len(structural.findings)} failed"))
    first = runs[0] if runs else None
    report = _finish(params, method=opts.method if first is None else first.method,
                     mode=opts.mode if first is None else first.mode,
                     backend="python" if first is None else first.backend,
                     evaluations=1 + structural.forward_calls + grouped.evaluations
                     + sum(r.evaluations for r in runs),
                     start=start, upcast=any(r.upcast for r in runs) or grouped.upcast,
                     noise=max([r.noise for r in runs] + [grouped.noise]),
                     loss=float("nan"), notes=notes, noise_ulps=_noise_ulps(runs),
                     findings=[*structural.findings, *grouped.findings,
                               *(f for r in runs for f in r.findings)])
    # fields of directional/auto checks (present in newer CheckReports)
    strategies = {getattr(r, "strategy", None) for r in runs} - {None}
    if len(strategies) == 1:
        report.strategy = strategies.pop()
    resolutions = [getattr(r, "resolution", None) for r in runs]
    if any(v is not None for v in resolutions):
        report.resolution = max(v for v in resolutions if v is not None)
    return report


def several_outputs(f: Callable[..., Any], vjp: Callable[..., Any], outputs: list[np.ndarray],
                    cotangents: Any) -> tuple[Callable[..., Any], Callable[..., Any], Any]:
    """``f`` returning a tuple of arrays as one function of the concatenated, flattened
    outputs; ``vjp`` taking the matching tuple of cotangents; the user's cotangents
    (a tuple of arrays, or a list of such tuples) flattened alike. The outputs are
    kept apart (each its own shape), never stacked into one array."""
    shapes = [v.shape for v in outputs]
    sizes = [int(np.prod(s, dtype=np.int64)) for s in shapes]
    bounds = np.cumsum([0] + sizes)

    def flat(raw: Any, what: str) -> np.ndarray:
        if not isinstance(raw, (tuple, list)) or len(raw) != len(shapes):
            raise ValueError(f"{what} returned {type(raw).__name__}; expected a tuple of "
                             f"{len(shapes)} outputs of shapes {shapes}")
        parts = []
        for k, (v, shape) in enumerate(zip(raw, shapes)):
            v = np.asarray(v)
            if v.shape != shape:
                raise ValueError(f"{what} output {k} has shape {v.shape}, expected {shape}")
            parts.append(v.reshape(-1))
        return np.concatenate(parts)

    @functools.wraps(f)
    def joined(*args: Any, **kwargs: Any) -> np.ndarray:
        return flat(f(*args, **kwargs), "f")

    @functools.wraps(vjp)
    def split_vjp(u: np.ndarray, *args: Any, **kwargs: Any) -> Any:
        us = tuple(u[bounds[k]:bounds[k + 1]].reshape(shape) for k, shape in enumerate(shapes))
        return vjp(us, *args, **kwargs)

    def one(c: Any, label: str) -> np.ndarray:
        return flat(c, label)

    if cotangents is None or isinstance(cotangents, numbers.Integral):
        given = cotangents
    elif isinstance(cotangents, tuple):
        given = one(cotangents, "cotangents")
    elif isinstance(cotangents, list) and all(isinstance(c, (tuple, list)) for c in cotangents):
        given = [one(c, f"cotangents[{k}]") for k, c in enumerate(cotangents)]
    else:
        raise TypeError(f"f has {len(shapes)} outputs, so cotangents must be a tuple of "
                        f"{len(shapes)} arrays (one cotangent), a list of such tuples, or a "
                        "count")
    return joined, split_vjp, given


#: The structural checks a VJP check runs: a wrong structure or shape of the
#: gradients is already a clear error before any check runs.
VJP_STRUCTURAL_CHECKS = ("forward-mutates-input", "backward-mutates-cotangent",
                         "backward-mutates-input", "gradient-dtype", "zero-cotangent",
                         "nondeterministic-backward")


def _structural(f: Callable[..., Any], vjp: Callable[..., Any], paramset: ParamSet,
                args: tuple, cotangent: np.ndarray, opts: CheckOptions) -> Any:
    """:func:`~gradprobe.checks.structural.structural_checks` of ``(f, vjp)``, called as
    the user wrote them (dict inputs by name, ``args`` appended)."""
    names = list(paramset.names)

    def forward(*arrays: np.ndarray) -> Any:
        return as_host_array(paramset.call(f, list(arrays), args))

    def backward(u: np.ndarray, *arrays: np.ndarray) -> Any:
        raw = as_host_array(paramset.call(vjp, list(arrays), args, leading=(u,), what="vjp"))
        if paramset.kind == "dict" and isinstance(raw, Mapping):
            return tuple(raw.get(n) for n in names)
        return raw

    tol = config.NONDETERMINISM_TOL if opts.nondeterminism_tol is None \
        else opts.nondeterminism_tol
    return structural_checks(forward, backward, paramset.arrays, cotangent, names=names,
                             nondeterminism_tol=tol, seed=opts.seed,
                             checks=VJP_STRUCTURAL_CHECKS)


def _noise_ulps(runs: list[CheckReport]) -> float | None:
    """The noise of ``f`` in rounding units for the diagnosis: the largest over the
    per-cotangent runs (each measured the noise of its ``<u, f>``)."""
    values = [r.noise / (np.finfo(np.float64).eps * abs(r.loss)) for r in runs
              if np.isfinite(r.loss) and abs(r.loss) > 0]
    return max(values) if values else None


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
        to draw. Default: ``config.DEFAULT_VECTOR_DIRECTIONS`` standard-normal draws (seeded).
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
    opts = CheckOptions.build("check_jvp", dict(method=method, eps=eps, rtol=rtol, atol=atol,
                              seed=seed, upcast=upcast, backend=backend, **options))
    _callable("f", f)
    _callable("jvp", jvp)
    eps, rtol, atol, seed, upcast, args = _vector_options(opts, args)
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
    runs = _line_runs(vf, ts, analytic, opts, name="output", dtype=vf.out_dtype,
                      label="tangents")
    given = tangents is not None and not isinstance(tangents, numbers.Integral)
    notes = [f"Jacobian-vector products along {_how_many(len(ts), 'tangent', given, seed)}, "
             f"against {method} differences of f; an output entry fails if it fails along "
             "any tangent"] + _noise_notes(vf) + vf.notes
    findings = forward_findings(vf, opts.nondeterminism_tol, notes)
    return _finish(merge_runs(runs), method=method, mode="full", backend="python",
                   evaluations=vf.evaluations, start=start, upcast=vf.upcast,
                   noise=float(np.max(vf.noise)), loss=float("nan"), notes=notes,
                   noise_ulps=noise_ulps(vf), findings=findings)
