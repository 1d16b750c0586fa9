"""The directional mode: random directions through every entry, localization on
failure, then the per-entry verdict of the entries it names.

The directions and their allowances are :mod:`gradprobe.differences.directional`;
the group tests that name the wrong entries, :mod:`gradprobe.differences.localization`.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from .. import config
from ..differences.directional import DirectionalProbe
from ..differences.estimation import select_entries
from ..differences.localization import search
from ..differences.stencils import Stencil
from ..engines.base import Engine
from ..options import CheckOptions
from ..problem.point import Problem
from ..verdict.compare import gradient_scale
from ..verdict.entries import check_entries



def directional_check(problem: Problem, engine: Engine, stencil: Stencil,
                      grads: Sequence[np.ndarray], opts: CheckOptions, *, directions: int,
                      samples: int | None = None, budget_s: float | None = None,
                      ) -> tuple[dict, dict, list[str]]:
    """Directional checks, localization on failure, then the per-entry verdict.

    Parameters
    ----------
    problem, engine, stencil
        As for a full check.
    grads : list of ndarray
        The analytic gradient, one array per parameter.
    opts : CheckOptions
        The user's step and tolerances (the tolerances apply to the entries
        judged one by one), and the seed of the directions and of the sample.
    directions : int
        Random directions per detection round.
    samples : int, optional
        Also judge this many entries of every parameter one by one
        (``mode="auto"``).
    budget_s : float, optional
        ``mode="auto"``: a parameter with dense errors is checked entry by
        entry only when that fits in the budget; otherwise on a sample.

    Returns
    -------
    reports : dict of str to ParamReport
        One per parameter: the entries named by localization (and the
        sample), every entry for parameters with dense errors.
    summary : dict
        What :attr:`CheckReport.directional` holds.
    notes : list of str
        Remarks for the report.

    Examples
    --------
    >>> import numpy as np
    >>> from gradprobe.engines.python import PythonEngine
    >>> from gradprobe.options import CheckOptions
    >>> from gradprobe.problem.params import ParamSet
    >>> from gradprobe.problem.point import prepare
    >>> f = lambda w: float(np.sum(np.sin(w)))
    >>> w = np.linspace(-1.0, 1.0, 4096)
    >>> problem = prepare(f, ParamSet.from_user(w, f), (), upcast=True,
    ...                   complex_step=False, seed=0)
    >>> grad = np.cos(w); grad[1000] += 0.01
    >>> reports, summary, _ = directional_check(
    ...     problem, PythonEngine(), Stencil("central"), [grad], CheckOptions(),
    ...     directions=4)
    >>> reports["w"].failed_indices, summary["failed"]
    ([(1000,)], 4)
    """

    eps, seed = opts.eps, opts.seed
    setup = problem.evaluations
    probe = DirectionalProbe(problem, engine, grads, eps)
    found = search(probe, directions, seed)
    before_entries = problem.evaluations
    notes = list(found.notes)
    reports = {}
    per_entry = config.EVALS_PER_ENTRY[stencil.method]
    resolution: dict[str, dict[str, float]] = {}
    scale = gradient_scale(grads)
    for p, (name, array) in enumerate(zip(problem.names, problem.paramset.arrays)):
        sample = select_entries(array.size, samples, seed, p) if samples else \
            np.empty(0, dtype=np.int64)
        res = found.resolution[p] if found.resolution else None
        if p in found.dense:
            seconds = array.size * per_entry * problem.loss_seconds
            if budget_s is not None and seconds > budget_s:
                entries = sample if samples else \
                    select_entries(array.size, config.DEFAULT_SAMPLES, seed, p)
                notes.append(
                    f"errors in {name!r} are dense: checking its {array.size:,} entries one "
                    f"by one would take about {seconds:.3g} s > budget_s={budget_s:g}, so it "
                    f"was judged on a sample of {entries.size} entries; run mode='full' to "
                    "list every wrong entry")
            else:
                entries = np.arange(array.size, dtype=np.int64)
            res = None
        else:
            entries = np.union1d(found.candidates[p], sample).astype(np.int64)
        report = check_entries(problem, engine, stencil, p, entries, grads[p], opts,
                               gradient_scale=scale)
        report.resolution = res
        reports[name] = report
        if res is not None:
            resolution[name] = {"absolute": _json_number(res), "rms": probe.rms[p]}
    summary = {
        "strategy": "directional+sample" if samples else "directional",
        "directions": directions, "entries": probe.total, "step": probe.step,
        "failed": found.failed_directions,
        "worst_ratio": _json_number(max((t.ratio for t in found.detection), default=0.0)),
        "rounds": found.rounds,
        "group_tests": found.group_tests,
        "localized": {n: int(c.size) for n, c in zip(problem.names, found.candidates)
                      if c.size},
        "dense": [problem.names[p] for p in sorted(found.dense)],
        "evaluations": {"setup": setup, "directions": found.detection_evaluations,
                        "localization": found.localization_evaluations,
                        "entries": problem.evaluations - before_entries},
        "resolution": resolution,
    }
    return reports, summary, notes


def _json_number(value: float) -> float | str:
    """A float for JSON: inf and nan spelled as strings (as in the report's dict)."""
    value = float(value)
    return value if np.isfinite(value) else str(value)
