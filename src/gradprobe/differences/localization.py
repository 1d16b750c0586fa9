"""Localization: naming the wrong entries behind a failing directional check.

Group testing by bisection. A failing direction ``u`` is restricted to the
first half of the entries (all parameters laid end to end, split at a
parameter boundary when a group spans several) and tested again; the second
half is tested too unless the first half already accounts for the whole
residual of its parent (``|r_parent - r_half| <= allowance_parent +
allowance_half``). Halves that fail are split in turn, down to single
entries: ``k`` wrong entries among ``P`` cost about ``3 k log2(P)``
evaluations with the central method. The resolution does not degrade with
depth: the error bar is set by the noise of ``f`` over the step, not by the
group's size.

Dense errors (more than ``LOCALIZATION_MAX_GROUPS`` failing groups at one
level) stop the recursion: the parameters holding most of those groups are
handed back to be checked entry by entry. After a round, fresh directions
that leave out the entries already named are tested; a passing round
confirms that nothing else above the resolution is wrong, a failing one
starts another localization (at most ``LOCALIZATION_ROUNDS`` rounds).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .. import config
from .directional import Direction, DirectionalProbe, GroupTest


@dataclass
class Localization:
    """What the detection rounds and localization found.

    Attributes
    ----------
    candidates : list of ndarray
        Per parameter, the flat indices of entries named by localization.
    dense : set of int
        Parameters whose errors were too many to localize.
    detection : list of GroupTest
        The first round's directions (the directional verdict itself).
    resolution : list of float or None
        Per parameter, from the first round (see
        :meth:`~gradprobe.differences.directional.DirectionalProbe.resolution`).
    rounds : int
        Rounds of detection run.
    group_tests : int
        Restricted directions tested during localization.
    detection_evaluations, localization_evaluations : int
        Loss evaluations spent on each.
    notes : list of str
        Failures that could not be narrowed down, and the like.
    """

    candidates: list[np.ndarray]
    dense: set[int] = field(default_factory=set)
    detection: list[GroupTest] = field(default_factory=list)
    resolution: list[float | None] = field(default_factory=list)
    rounds: int = 0
    group_tests: int = 0
    detection_evaluations: int = 0
    localization_evaluations: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def failed_directions(self) -> int:
        """Directions of the first round that failed."""
        return sum(t.failed for t in self.detection)


def _split(probe: DirectionalProbe, lo: int, hi: int) -> int:
    """Where to split ``[lo, hi)``: a parameter boundary nearest the middle, else the middle."""
    mid = (lo + hi) // 2
    inner = probe.offsets[(probe.offsets > lo) & (probe.offsets < hi)]
    if inner.size:
        return int(inner[np.argmin(np.abs(inner - mid))])
    return mid


def _params_of(probe: DirectionalProbe, lo: int, hi: int) -> list[int]:
    """Parameters with entries in ``[lo, hi)``."""
    return [p for p in range(len(probe.sizes))
            if probe.offsets[p] < hi and probe.offsets[p + 1] > lo]


def localize(probe: DirectionalProbe, pattern: Direction, root: GroupTest
             ) -> tuple[list[int], set[int], int, int]:
    """Bisect the failing direction ``pattern`` down to single wrong entries.

    Returns
    -------
    found : list of int
        Global flat indices (parameters end to end) of failing single entries.
    dense : set of int
        Parameters given up on because too many groups failed at one level.
    tests : int
        Restricted directions tested.
    lost : int
        Failing groups neither of whose halves failed (a marginal failure).
    """
    frontier: list[tuple[int, int, GroupTest]] = [(0, probe.total, root)]
    found: list[int] = []
    dense: set[int] = set()
    tests = lost = 0

    def test(lo: int, hi: int) -> GroupTest | None:
        nonlocal tests
        restricted = probe.restrict(pattern, lo, hi)
        if restricted is None:
            return None
        tests += 1
        return probe.test(*restricted)

    while frontier:
        if len(frontier) > config.LOCALIZATION_MAX_GROUPS:
            counts: dict[int, int] = {}
            for lo, hi, _ in frontier:
                for p in _params_of(probe, lo, hi):
                    counts[p] = counts.get(p, 0) + 1
            heavy = {p for p, c in counts.items() if c > config.LOCALIZATION_MAX_GROUPS // 4}
            heavy = heavy or set(counts)
            dense |= heavy
            frontier = [g for g in frontier if not set(_params_of(probe, g[0], g[1])) & heavy]
            continue
        next_level: list[tuple[int, int, GroupTest]] = []
        for lo, hi, parent in frontier:
            if hi - lo == 1:
                found.append(lo)
                continue
            mid = _split(probe, lo, hi)
            left = test(lo, mid)
            children = []
            if left is not None and left.failed:
                children.append((lo, mid, left))
            explained = left is not None and left.failed and \
                abs(parent.residual - left.residual) <= parent.allowance + left.allowance
            if not explained:
                right = test(mid, hi)
                if right is not None and right.failed:
                    children.append((mid, hi, right))
            if not children:
                lost += 1
            next_level += children
        frontier = next_level
    return found, dense, tests, lost


def search(probe: DirectionalProbe, directions: int, seed: int) -> Localization:
    """Detection rounds, each followed by localization when a direction fails.

    Parameters
    ----------
    probe : DirectionalProbe
    directions : int
        Directions per round.
    seed : int
        Seed of the directions (round ``r``, direction ``k`` is reproducible).

    Examples
    --------
    >>> import numpy as np
    >>> from gradprobe.engines.python import PythonEngine
    >>> from gradprobe.problem.params import ParamSet
    >>> from gradprobe.problem.point import prepare
    >>> f = lambda w: float(np.sum(np.sin(w)))
    >>> w = np.linspace(-1.0, 1.0, 4096)
    >>> problem = prepare(f, ParamSet.from_user(w, f), (), upcast=True,
    ...                   complex_step=False, seed=0)
    >>> grad = np.cos(w); grad[1000] += 0.01
    >>> found = search(DirectionalProbe(problem, PythonEngine(), [grad]), directions=4,
    ...                 seed=0)
    >>> found.candidates[0], found.failed_directions
    (array([1000]), 4)
    """
    problem = probe.problem
    found: list[set[int]] = [set() for _ in probe.sizes]
    result = Localization(candidates=[])
    for round_ in range(config.LOCALIZATION_ROUNDS):
        exclude = [None] * len(probe.sizes)
        for p, entries in enumerate(found):
            if entries:
                mask = np.zeros(probe.sizes[p], dtype=bool)
                mask[np.fromiter(entries, dtype=np.int64)] = True
                exclude[p] = mask
        before = problem.evaluations
        drawn = [probe.draw(seed, round_, k, exclude, result.dense)
                 for k in range(directions)]
        drawn = [d for d in drawn if any(u is not None and np.any(u) for u in d)]
        if not drawn:
            break
        tests = probe.detect(drawn)
        result.detection_evaluations += problem.evaluations - before
        result.rounds = round_ + 1
        if round_ == 0:
            result.detection = tests
            result.resolution = probe.resolution(drawn, tests)
        failing = [k for k, t in enumerate(tests) if t.failed]
        if not failing:
            break
        worst = max(failing, key=lambda k: tests[k].ratio)
        before = problem.evaluations
        named, dense, count, lost = localize(probe, drawn[worst], tests[worst])
        result.localization_evaluations += problem.evaluations - before
        result.group_tests += count
        new = 0
        for g in named:
            p = int(np.searchsorted(probe.offsets, g, side="right") - 1)
            if p not in dense and p not in result.dense:
                new += int(g - probe.offsets[p] not in found[p])
                found[p].add(int(g - probe.offsets[p]))
        new_dense = dense - result.dense
        result.dense |= dense
        if lost:
            result.notes.append(
                f"{lost} failing group(s) of a directional check had no failing half: "
                "a marginal failure (an error near the resolution, or an error bar too "
                "small), not narrowed down further")
        if new == 0 and not new_dense:
            if not lost:
                result.notes.append("a directional check failed but localization named "
                                    "no new entry")
            break
    else:
        result.notes.append(
            f"directional checks still failed after {config.LOCALIZATION_ROUNDS} rounds "
            "of localization; more wrong entries may remain: run mode='full'")
    result.candidates = [np.array(sorted(s), dtype=np.int64) for s in found]
    return result
