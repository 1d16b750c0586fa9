"""What the array-valued checks share: options, inputs, random directions, runs, merging."""
from __future__ import annotations

import numbers
import time
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .. import config
from ..options import CheckOptions
from ..verdict.determinism import vector_determinism
from ..verdict.diagnosis import diagnose_all
from ..report.findings import Finding
from ..problem.params import ParamSet, as_args, match_structure
from ..report.reports import CheckReport, ParamReport
from ..differences.stencils import Estimate, step_size
from ..differences.vector import VectorFunction, line_estimate, one_sided_line, scaled
from ..verdict.compare import compare_param


# -- validation ---------------------------------------------------------------------


def _callable(name: str, value: Any) -> None:
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {type(value).__name__}")


def _vector_options(opts: CheckOptions, args: Any) -> tuple:
    """The options the difference-based checks use (validated by ``opts``), and ``args``."""
    return opts.eps, opts.rtol, opts.atol, opts.seed, opts.upcast, as_args(args)


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

    ``value`` is None (draw ``config.DEFAULT_VECTOR_DIRECTIONS``), a count, one direction in
    the structure ``(kind, names, shapes)``, or a list of them; for one array
    also an ndarray with one extra leading axis (a stack of directions).
    """
    if value is None or (isinstance(value, numbers.Integral) and not isinstance(value, bool)):
        count = config.DEFAULT_VECTOR_DIRECTIONS if value is None else int(value)
        if count < 1:
            raise ValueError(f"{arg}={value!r} is not valid; expected a positive count or "
                             "arrays")
        rng = np.random.default_rng([seed, config.SEED_TAG_VECTORS[arg]])
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
        ratio = np.full((k, u), -np.inf)
        failed = np.zeros((k, u), dtype=bool)
        kink = np.zeros((k, u), dtype=bool)
        positions = []
        for i, r in enumerate(reports):
            pos = np.searchsorted(entries, r.flat_indices)
            positions.append(pos)
            ratio[i, pos] = np.where(np.isnan(r.ratio_flat), np.inf, r.ratio_flat)
            failed[i, pos] = r.failed_mask
            kink[i, pos] = r.kink_mask
        primary = max(range(k), key=lambda i: (reports[i].failed,
                                               float(ratio[i].max(initial=-np.inf))))
        failed_any = failed.any(axis=0)
        choice = np.argmax(ratio, axis=0)
        worst_failing = np.argmax(np.where(failed, ratio, -np.inf), axis=0)
        choice = np.where(failed_any, worst_failing, choice)
        choice = np.where(failed[primary], primary, choice)
        cols = np.arange(u)
        # every entry's values from the run chosen for it, one run at a time: one
        # array per field, and errors recomputed at the chosen entries only
        values = {f: np.full(u, np.nan) for f in ("analytic_flat", "numeric_flat",
                                                   "error_bar_flat", "abs_error_flat",
                                                   "rel_error_flat", "ratio_flat")}
        for i, (r, pos) in enumerate(zip(reports, positions)):
            take = np.flatnonzero(choice[pos] == i)
            if take.size == 0:
                continue
            bar = np.broadcast_to(r.error_bar_flat, r.analytic_flat.shape)
            parts = (r.analytic_flat[take], r.numeric_flat[take], bar[take],
                     *r._metrics_at(take))
            for f, part in zip(values, parts):
                values[f][pos[take]] = part
        report = ParamReport(
            name=first.name, shape=first.shape, dtype=first.dtype, flat_indices=entries,
            **values,
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
            notes: Sequence[str], noise_ulps: float | None = None,
            findings: Sequence[Finding] = ()) -> CheckReport:
    """Diagnose the merged parameters (with the noise of ``f``, as the scalar check
    does) and wrap them in a CheckReport with the whole-function ``findings``."""
    diagnose_all(params, method=method, noise_ulps=noise_ulps)
    unique: list[str] = []
    for note in notes:
        if note not in unique:
            unique.append(note)
    report = CheckReport(params=params, method=method, mode=mode, backend=backend,
                         evaluations=int(evaluations), seconds=time.perf_counter() - start,
                         upcast=bool(upcast), noise=float(noise), loss=float(loss),
                         notes=unique)
    report.add_findings(findings)
    return report


def noise_ulps(vf: VectorFunction) -> float | None:
    """The largest measured noise of ``vf``'s outputs in units of rounding of the
    largest output (None when nothing was measured or the output is 0)."""
    scale = float(np.max(np.abs(vf.y0), initial=0.0))
    if vf.noise_measured == 0 or scale <= np.finfo(np.float64).tiny / vf.eps:
        return None
    return float(np.max(vf.noise)) / (vf.eps * scale)


def forward_findings(vf: VectorFunction, tolerance: float | None,
                     notes: list[str]) -> list[Finding]:
    """``vf``'s ``nondeterministic-forward`` finding (if any); a note goes to ``notes``."""
    finding, note = vector_determinism(vf, tolerance)
    if note is not None:
        notes.append(note)
    return [] if finding is None else [finding]


def _how_many(count: int, noun: str, given: bool, seed: int) -> str:
    source = "given" if given else f"random, seed {seed}"
    return f"{count} {noun}{'s' if count != 1 else ''} ({source})"


# -- VJP ------------------------------------------------------------------------------


def _noise_notes(vf: VectorFunction) -> list[str]:
    if vf.noise_measured == 0:
        return [f"noise of {vf.what}'s outputs could not be measured; error bars assume "
                f"{config.NOISE_FLOOR_ULPS:g} ulp of each output"]
    return []


def _line_runs(vf: VectorFunction, directions: Sequence[Sequence[np.ndarray]],
               analytic: Sequence[np.ndarray], opts: CheckOptions, *, name: str,
               dtype: np.dtype, label: str) -> list[dict[str, ParamReport]]:
    """Compare ``analytic[k]`` with the derivative of ``vf`` along ``directions[k]``.

    ``opts`` gives the method, the step and the tolerances.

    The line is parametrized so that ``s = 1`` moves no entry by more than
    ``max(1, |x|)``: ``x + s * d / tau`` with ``tau = max |d| / max(1, |x|)``;
    the derivative along ``d`` is ``tau`` times the derivative in ``s``.
    """
    method, eps = opts.method, opts.eps
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
                                         estimate, rtol=opts.rtol, atol=opts.atol,
                                         refine=refine,
                                         kink_probe=kink_probe)})
    return runs


def _subset(estimate: Estimate, positions: np.ndarray) -> Estimate:
    def take(a: np.ndarray | None) -> np.ndarray | None:
        return None if a is None else a[positions]

    return Estimate(estimate.value[positions], estimate.error_bar[positions],
                    take(estimate.left), take(estimate.right))


# -- Jacobian -------------------------------------------------------------------------
