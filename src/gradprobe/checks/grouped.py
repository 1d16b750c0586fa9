"""Vector-Jacobian products checked from one compressed Jacobian.

:func:`gradprobe.check_vjp` (and :func:`gradprobe.check_layer` through it)
used to run one full scalar check of ``<u, f>`` per cotangent ``u``: two
evaluations per entry per cotangent. :func:`vjp_by_groups` instead estimates
the Jacobian of every input once, by groups of entries with disjoint output
supports (:mod:`gradprobe.differences.compression`), and reads ``u^T J`` for every
cotangent from the same evaluations. It is a *screening*: the entries it
cannot settle (failing, kink candidates, wide error bars) are checked again
one by one by the scalar core (:func:`gradprobe.verdict.entries.check_entries` on
the loss ``<u, f>``), so Richardson confirmation, kinks, unresolved entries
and the diagnosis are exactly those of an entry-by-entry check.

An input falls back to entry by entry (the caller runs today's path for it)
when it is too small to group, no grouping saves evaluations, or the
grouping fails its verification; :attr:`GroupedRuns.strategies` says which
and why.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np

from .. import config
from ..differences.compression import (Columns, JacobianSink, VjpSink, describe,
                                       detect_grouping, entry_steps, run_groups)
from ..differences.grouping import PatternGrouping, pattern_grouping, split_sparsity
from ..differences.stencils import Estimate, Stencil
from ..differences.vector import VectorFunction
from ..engines.select import engine_named, select_engine
from ..options import CheckOptions
from ..problem.params import ParamSet
from ..problem.point import prepare
from ..report.metrics import error_summary
from ..report.reports import ParamReport
from ..report.findings import Finding
from ..verdict.compare import compare_param, gradient_scale
from ..verdict.determinism import vector_determinism
from ..verdict.entries import check_entries


@dataclass
class GroupedRuns:
    """What :func:`vjp_by_groups` found.

    Attributes
    ----------
    runs : list of dict
        Per cotangent, the reports of the inputs checked from groups.
    strategies : dict
        Input name -> how it was (or must be) checked, and why.
    fallback : list of str
        Inputs the caller must check entry by entry.
    evaluations : int
        Evaluations of ``f`` spent here.
    notes : list of str
    upcast : bool
        Narrow inputs were evaluated in float64.
    noise : float
        The largest noise of one output entry (0.0 when nothing was grouped).
    findings : list of Finding
        ``nondeterministic-forward`` when ``f`` changed between calls at the point.
    """

    runs: list[dict[str, ParamReport]]
    strategies: dict[str, str]
    fallback: list[str]
    evaluations: int = 0
    notes: list[str] = field(default_factory=list)
    upcast: bool = False
    noise: float = 0.0
    findings: list[Finding] = field(default_factory=list)


def why_not_grouped(opts: CheckOptions) -> str | None:
    """Why options rule out grouping (None: they do not).

    Examples
    --------
    >>> why_not_grouped(CheckOptions(mode="sample", samples=3))
    "mode='sample' checks chosen entries"
    """
    if opts.compression is False:
        return "compression=False"
    if opts.mode != "full":
        return f"mode={opts.mode!r} checks chosen entries" if opts.mode == "sample" else \
            f"mode={opts.mode!r}"
    if opts.backend != "auto" and not engine_named(opts.backend).runs_groups:
        return f"backend={opts.backend!r} evaluates the entries"
    return None


def group_engine(f: Callable[..., Any], opts: CheckOptions) -> Any:
    """The engine that evaluates the groups of ``f``: ``backend="auto"`` picks the
    Numba engine for a ``numba.njit`` ``f``, ``"dask"`` spreads them over a cluster.
    Close it when done."""
    return select_engine(opts.backend, f, opts.workers, opts.client)


def vjp_by_groups(f: Callable[..., Any], paramset: ParamSet, args: tuple,
                  cotangents: Sequence[np.ndarray], grads: Sequence[Sequence[np.ndarray]],
                  opts: CheckOptions, loss_for: Callable[[int], Callable[..., Any]],
                  caller: str) -> GroupedRuns:
    """Check every input that groups well from one compressed Jacobian.

    Parameters
    ----------
    f : callable
        The array-valued function.
    paramset : ParamSet
        Its inputs (never written).
    args : tuple
        Extra arguments of ``f``.
    cotangents : sequence of ndarray
        The cotangents, in ``f``'s output shape.
    grads : sequence of sequence of ndarray
        ``grads[k][p]``: the analytic VJP of cotangent ``k`` for input ``p``.
    opts : CheckOptions
    loss_for : callable
        ``loss_for(k)`` returns the scalar loss ``<u_k, f>`` over the named
        inputs (``loss(*args, **arrays)``), for the per-entry confirmation.
    caller : str
        The public function called (for messages).
    """
    names = list(paramset.names)
    reason = why_not_grouped(opts)
    if reason is not None:
        return GroupedRuns([{} for _ in cotangents], {n: f"entry by entry: {reason}"
                                                      for n in names}, names)
    patterns = split_sparsity(opts.sparsity, names, paramset.kind, caller)
    sizes = [int(a.size) for a in paramset.arrays]
    if all(p is None and s < config.COMPRESSION_MIN_ENTRIES for p, s in zip(patterns, sizes)):
        return GroupedRuns([{} for _ in cotangents], {
            n: f"entry by entry: {s} entries, too few to group" for n, s in zip(names, sizes)},
            names)
    method, eps = opts.method, opts.eps
    vf = VectorFunction.prepare(f, paramset, args, upcast=opts.upcast,
                                complex_step=method == "complex", seed=opts.seed)
    rng = np.random.default_rng([opts.seed, config.SEED_TAG_GROUPS])
    us = np.stack([np.asarray(u, dtype=np.float64).reshape(-1) for u in cotangents])
    strategies: dict[str, str] = {}
    fallback: list[str] = []
    runs: list[dict[str, ParamReport]] = [{} for _ in cotangents]
    sinks: dict[int, tuple[VjpSink, str]] = {}
    engine = group_engine(f, opts)
    try:
        _run_inputs(vf, engine, names, sizes, patterns, opts, us, rng, caller, strategies,
                    fallback, sinks)
    finally:
        engine.close()
    evaluations = vf.evaluations
    notes = list(vf.notes) if sinks else []
    finding, note = vector_determinism(vf, opts.nondeterminism_tol)
    notes += [] if note is None else [note]
    if sinks:
        evaluations += _judge(sinks, paramset, args, cotangents, grads, opts, loss_for, runs)
    return GroupedRuns(runs, strategies, fallback, evaluations, notes,
                       upcast=vf.upcast and bool(sinks),
                       noise=float(np.max(vf.noise)) if sinks else 0.0,
                       findings=[] if finding is None else [finding])


def _run_inputs(vf: VectorFunction, engine: Any, names: list[str], sizes: list[int],
                patterns: list, opts: CheckOptions, us: np.ndarray, rng: np.random.Generator,
                caller: str, strategies: dict[str, str], fallback: list[str],
                sinks: dict[int, tuple[VjpSink, str]]) -> None:
    """Group every input that groups well (the loop of :func:`vjp_by_groups`)."""
    method, eps, paramset = opts.method, opts.eps, vf.paramset
    for p, (name, size, pattern) in enumerate(zip(names, sizes, patterns)):
        if pattern is None and size < config.COMPRESSION_MIN_ENTRIES:
            strategies[name] = f"entry by entry: {size} entries, too few to group"
            fallback.append(name)
            continue
        if pattern is not None:
            grouping: Any = pattern_grouping(pattern, vf.size, paramset.arrays[p].shape, name,
                                             caller)
            why = "the given sparsity has overlapping outputs" \
                if grouping.groups >= size else ""
        else:
            grouping, why = detect_grouping(vf, p, method, eps, rng)
        if grouping is None or why:
            strategies[name] = f"entry by entry: {why}"
            fallback.append(name)
            continue
        h0, scale = entry_steps(vf, p, method, eps)
        sink = VjpSink(us, scale)
        rejected = run_groups(Columns(vf, p, method, h0, scale, engine), grouping, sink, rng)
        if rejected:
            strategies[name] = f"entry by entry: grouping rejected ({rejected})"
            fallback.append(name)
            continue
        strategies[name] = describe(grouping.groups, size, grouping.how)
        sinks[p] = (sink, name)


def _judge(sinks: dict[int, tuple[VjpSink, str]], paramset: ParamSet, args: tuple,
           cotangents: Sequence[np.ndarray], grads: Sequence[Sequence[np.ndarray]],
           opts: CheckOptions, loss_for: Callable[[int], Callable[..., Any]],
           runs: list[dict[str, ParamReport]]) -> int:
    """Screen every grouped input per cotangent; confirm the suspects entry by entry.

    Returns the evaluations spent on the confirmation.
    """
    evaluations = 0
    confirm = opts.eps is None and opts.method == "central"
    for k in range(len(cotangents)):
        scale = gradient_scale(grads[k])
        problem = engine = None
        for p, (sink, name) in sinks.items():
            array = paramset.arrays[p]
            grad = np.asarray(grads[k][p])
            report = compare_param(name, array.shape, array.dtype, None, grad,
                                   Estimate(sink.value[k], sink.bar[k]), rtol=opts.rtol,
                                   atol=opts.atol, confirm_unresolved=confirm,
                                   gradient_scale=scale)
            flagged = suspects(report)
            if flagged.size:
                if problem is None:
                    loss = loss_for(k)
                    loss_set = ParamSet.from_user(dict(zip(paramset.names, paramset.arrays)),
                                                  loss)
                    problem = prepare(loss, loss_set, args, upcast=opts.upcast,
                                      complex_step=opts.method == "complex", seed=opts.seed)
                    engine = select_engine("python", loss, None)
                per_entry = check_entries(problem, engine, Stencil(opts.method), p, flagged,
                                          grad, replace(opts, rtol=report.rtol,
                                                        atol=report.atol),
                                          gradient_scale=scale)
                report = splice(report, flagged, per_entry)
            runs[k][name] = report
        if problem is not None:
            evaluations += problem.evaluations
    return evaluations


def suspects(report: ParamReport) -> np.ndarray:
    """Entries (flat, sorted) a compressed screening could not settle: failing,
    kink candidates or unresolved; the worst ``config.CONFIRM_LIMIT`` of them.

    Examples
    --------
    >>> import numpy as np
    >>> from gradprobe.verdict.compare import compare_param
    >>> r = compare_param("w", (3,), np.float64, None, np.array([1.0, 2.0, 3.5]),
    ...                   Estimate(np.array([1.0, 2.0, 3.0]), np.zeros(3)), rtol=None,
    ...                   atol=None)
    >>> suspects(r).tolist()
    [2]
    """
    mask = report.failed_mask | report.kink_mask
    if report.unresolved_mask is not None:
        mask = mask | report.unresolved_mask
    flagged = np.flatnonzero(mask)
    if flagged.size > config.CONFIRM_LIMIT:
        ratio = report._metrics_at(flagged)[2]
        flagged = flagged[np.argsort(-ratio, kind="stable")[:config.CONFIRM_LIMIT]]
    return np.sort(flagged).astype(np.int64)


def splice(report: ParamReport, entries: np.ndarray, per_entry: ParamReport) -> ParamReport:
    """``report`` (every entry) with ``entries`` replaced by their per-entry check."""
    value = np.array(report.numeric_flat, dtype=np.float64)
    bar = np.array(np.broadcast_to(report.error_bar_flat, value.shape), dtype=np.float64)
    failed = report.failed_mask.copy()
    kink = report.kink_mask.copy()
    unresolved = None if report.unresolved_mask is None else report.unresolved_mask.copy()
    value[entries] = per_entry.numeric_flat
    bar[entries] = per_entry.error_bar_flat
    failed[entries] = per_entry.failed_mask
    kink[entries] = per_entry.kink_mask
    if unresolved is not None:
        unresolved[entries] = False if per_entry.unresolved_mask is None \
            else per_entry.unresolved_mask
    analytic = report.analytic_flat
    summary = error_summary(analytic, value, bar, report.rtol, report.atol, kink)
    return ParamReport(
        name=report.name, shape=report.shape, dtype=report.dtype, flat_indices=None,
        analytic_flat=analytic, numeric_flat=value, error_bar_flat=bar,
        abs_error_flat=None, rel_error_flat=None, ratio_flat=None, failed_mask=failed,
        kink_mask=kink, rtol=report.rtol, atol=report.atol, full=True,
        refined=per_entry.refined, summary=summary, unresolved_mask=unresolved)


def with_fixed(loss: Callable[..., Any], fixed: dict[str, np.ndarray]) -> Callable[..., Any]:
    """``loss(*args, **arrays)`` as a function of the other inputs, ``fixed`` held
    at their values (fresh copies on every call)."""
    def partial(*args: Any, **arrays: np.ndarray) -> Any:
        return loss(*args, **arrays, **{n: a.copy() for n, a in fixed.items()})

    return partial


def grouped_notes(grouped: GroupedRuns, names: Sequence[str],
                  params: dict[str, ParamReport]) -> list[str]:
    """The report's notes on how each input was differentiated."""
    notes = []
    if len(grouped.fallback) < len(names):
        notes.append("numerical derivatives by groups of entries with disjoint output "
                     "supports: one compressed Jacobian serves every cotangent, and the "
                     "entries it flags are confirmed one by one")
    notes += [f"{name}: {params[name].strategy}" for name in names]
    return notes + grouped.notes


__all__ = ["grouped_notes", "jacobian_by_groups", "with_fixed", "GroupedRuns", "PatternGrouping", "splice", "suspects", "vjp_by_groups",
           "why_not_grouped"]


def jacobian_by_groups(vf: VectorFunction, opts: CheckOptions,
                       caller: str) -> tuple[Estimate | None, str]:
    """The whole Jacobian of a one-input ``vf`` from groups, or ``(None, strategy)``.

    Returns the estimate of every entry (flat, output axes first) and the
    strategy line; ``None`` when the caller must go column by column.
    """
    size = int(vf.working[0].size)
    name = vf.paramset.names[0]
    reason = why_not_grouped(opts)
    if reason is not None:
        return None, f"entry by entry: {reason}"
    pattern = split_sparsity(opts.sparsity, [name], "single", caller)[0]
    if pattern is None and size < config.COMPRESSION_MIN_ENTRIES:
        return None, f"entry by entry: {size} entries, too few to group"
    rng = np.random.default_rng([opts.seed, config.SEED_TAG_GROUPS])
    if pattern is not None:
        grouping: Any = pattern_grouping(pattern, vf.size, vf.working[0].shape, name, caller)
        why = "the given sparsity has overlapping outputs" if grouping.groups >= size else ""
    else:
        grouping, why = detect_grouping(vf, 0, opts.method, opts.eps, rng)
    if grouping is None or why:
        return None, f"entry by entry: {why}"
    h0, scale = entry_steps(vf, 0, opts.method, opts.eps)
    sink = JacobianSink(vf, opts.method, h0, scale)
    with group_engine(vf.f, opts) as engine:
        rejected = run_groups(Columns(vf, 0, opts.method, h0, scale, engine), grouping, sink,
                              rng)
    if rejected:
        return None, f"entry by entry: grouping rejected ({rejected})"
    left, right = sink.sides()
    estimate = Estimate(sink.value.reshape(-1), sink.bar.reshape(-1), left, right)  # type: ignore[arg-type]
    return estimate, describe(grouping.groups, size, grouping.how)
