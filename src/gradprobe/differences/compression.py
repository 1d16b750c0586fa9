"""Compressed Jacobians: perturb entries with disjoint output supports together.

A backward pass maps a cotangent ``u`` to ``u^T J``. Estimating ``J`` one
input entry at a time costs two evaluations per entry (central differences).
But entries whose outputs do not overlap can be perturbed *together* and
still be read apart (Curtis, Powell and Reid, 1974; the column grouping of
SciPy's ``approx_derivative(sparsity=...)``): ``W[i, j]`` of a dense layer
moves output column ``j`` only, so the whole row ``W[i, :]`` is one pair of
evaluations, and a dense layer's ``W`` costs ``n_in`` pairs, not
``n_in * n_out``.

This module

* finds a grouping from the function itself (:func:`detect_grouping`): the
  outputs a few probed entries move (one evaluation each), and how those
  supports shift along each axis of the input (:class:`AxisGrouping`: an
  output window per output axis, shifted linearly by at most one input axis);
  or builds one from a pattern the user gives (:class:`PatternGrouping`,
  greedy column grouping of a SciPy-style ``(out.size, in.size)`` pattern);
* evaluates every group along one line and hands each group's outputs to a
  *sink* (:func:`run_groups`), which accumulates what its check needs (the
  products ``u^T J`` for every cotangent at once, or Jacobian columns): the
  compressed columns are never stored as a dense ``out.size x in.size`` array;
* verifies the grouping before it is trusted: outputs no entry of a group
  owns must not move, a few random entries evaluated alone must agree with
  their compressed columns within the error bars, and a random directional
  derivative with the compressed Jacobian. A grouping that fails is
  rejected and the caller falls back to entry by entry for that parameter.

Per-entry matters (Richardson confirmation, kinks, unresolved entries,
diagnosis) stay per entry: :mod:`gradprobe.checks.grouped` sends the entries
the compressed screening flags to the scalar core, which judges them exactly
as a full check would.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .. import config
from ..engines.base import Engine
from ..engines.python import PythonEngine
from ..problem.point import format_entry
from .stencils import Estimate, step_size
from .grouping import AxisGrouping, Grouping
from .vector import VectorFunction, line_estimate, line_points


# -- finding a grouping --------------------------------------------------------------

def entry_steps(vf: VectorFunction, param: int, method: str,
                eps: float | None) -> tuple[float, np.ndarray]:
    """The line step ``h0`` and each entry's scale ``d`` (its step is ``h0 * d``).

    ``d`` is about ``max(1, |x|)``, so a step along the group's line moves
    every entry by the step the scalar check would take for it.
    """
    x = np.real(vf.working[param]).reshape(-1).astype(np.float64)
    h = step_size(x, method, vf.noise_rel, eps)
    h0 = float(step_size(np.zeros(1), method, vf.noise_rel, eps)[0])
    return h0, h / h0


def _support(vf: VectorFunction, param: int, flat_index: int, step: float,
             name: str, shape: tuple[int, ...]) -> np.ndarray:
    """Output entries that move when one entry is moved by ``step`` (one evaluation)."""
    flat = vf.working[param].reshape(-1)
    index = np.unravel_index(flat_index, shape) if shape else ()
    value = flat[flat_index] + step
    y = np.real(vf.with_entry(param, flat_index, value,
                              f"while probing which outputs {format_entry(name, index)} moves"))
    moved = np.abs(y - vf.y0) > config.SUPPORT_NOISE_FACTOR * vf.noise
    return moved.reshape(vf.out_shape)


def _windows(mask: np.ndarray) -> list[tuple[int, int]] | None:
    """The bounding window of ``mask`` along every axis (None: nothing moved)."""
    if not mask.any():
        return None
    out = []
    for q in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != q)
        hit = np.flatnonzero(mask.any(axis=other) if other else mask)
        out.append((int(hit[0]), int(hit[-1])))
    return out


def detect_grouping(vf: VectorFunction, param: int, method: str, eps: float | None,
                    rng: np.random.Generator) -> tuple[AxisGrouping | None, str]:
    """Find an :class:`AxisGrouping` for one input from a few support probes.

    Probes (one evaluation each): the centre entry, its neighbours and the
    two ends along every axis, and ``config.SUPPORT_RANDOM_PROBES`` random
    entries. Every probed support must lie in the modelled box; output axes
    where it does not (or whose windows do not shift consistently) are
    taken whole, which is always safe. Returns ``(None, reason)`` when no
    grouping would save evaluations.
    """
    shape = tuple(vf.working[param].shape)
    name = vf.paramset.names[param]
    size = int(np.prod(shape, dtype=np.int64))
    out = vf.out_shape
    if not out:
        return None, "f has one output: every entry moves it"
    if not shape:
        return None, "a single entry"
    h0, d = entry_steps(vf, param, "central" if method == "complex" else method, eps)
    steps = h0 * d
    probes: dict[tuple[int, ...], list[tuple[int, int]] | None] = {}

    def probe(index: tuple[int, ...]) -> list[tuple[int, int]] | None:
        if index not in probes:
            j = int(np.ravel_multi_index(index, shape))
            probes[index] = _windows(_support(vf, param, j, float(steps[j]), name, shape))
        return probes[index]

    centre = tuple(a // 2 for a in shape)
    randoms = [tuple(int(v) for v in np.unravel_index(j, shape)) for j in
               rng.choice(size, size=min(size, config.SUPPORT_RANDOM_PROBES), replace=False)]
    if probe(centre) is None:
        centre = next((r for r in randoms if probe(r) is not None), None)
        if centre is None:
            return None, "no output moved for the probed entries"
    base = probes[centre]
    shifts = [[0] * len(out) for _ in shape]
    whole = [False] * len(out)
    for k, a in enumerate(shape):
        for t in (1, -1, -centre[k], a - 1 - centre[k]):
            index = list(centre)
            index[k] += t
            if 0 <= index[k] < a and t != 0:
                probe(tuple(index))
        for q in range(len(out)):
            seen = set()
            for t in (1, -1):
                index = list(centre)
                index[k] += t
                w = probes.get(tuple(index)) if 0 <= index[k] < a else None
                if w is None:
                    continue
                lo, hi = w[q][0] - base[q][0], w[q][1] - base[q][1]
                seen.add(t * lo if lo == hi else None)
            if None in seen or len(seen) > 1:
                whole[q] = True
            elif seen:
                shifts[k][q] = seen.pop()
    for r in randoms:
        probe(r)
    for q in range(len(out)):   # each output axis shifted by one input axis at most
        if sum(1 for k in range(len(shape)) if shifts[k][q]) > 1:
            whole[q] = True
    for index, w in probes.items():   # every probed support inside its modelled box
        if w is None:
            continue
        for q in range(len(out)):
            if whole[q]:
                continue
            offset = sum(shifts[k][q] * (index[k] - centre[k]) for k in range(len(shape)))
            lo = max(0, base[q][0] + offset)
            hi = min(out[q] - 1, base[q][1] + offset)
            if w[q][0] < lo or w[q][1] > hi:
                whole[q] = True
    windows = [None if whole[q] or (base[q] == (0, out[q] - 1) and
                                   not any(shifts[k][q] for k in range(len(shape))))
               else base[q] for q in range(len(out))]
    for k in range(len(shape)):
        for q in range(len(out)):
            if windows[q] is None:
                shifts[k][q] = 0
    moduli = []
    for k, a in enumerate(shape):
        driven = [q for q in range(len(out)) if windows[q] is not None and shifts[k][q]]
        if not driven:
            moduli.append(a)
            continue
        m = min(-(-(windows[q][1] - windows[q][0] + 1) // abs(shifts[k][q])) for q in driven)
        moduli.append(int(min(a, max(1, m))))
    groups = int(np.prod(moduli, dtype=np.int64))
    if groups >= size:
        return None, "outputs overlap"
    grouping = AxisGrouping(shape, tuple(out), tuple(centre), tuple(moduli), windows, shifts,
                            how=f"found from {len(probes)} probes")
    return grouping, ""


# -- evaluating the groups -----------------------------------------------------------

@dataclass
class Columns:
    """Lines through one input of a prepared function: groups, single entries, directions."""

    vf: VectorFunction
    param: int
    method: str
    h0: float
    scale: np.ndarray      # entry j moves by s * scale[j] along the line
    engine: Engine | None = None  # evaluates the points; None: the reference loop

    def line(self, members: np.ndarray, weights: np.ndarray | None = None,
             what: str = "a group", method: str | None = None) -> Estimate:
        """Derivative of every output along ``x[members] += s * scale * weights``."""
        vf, p = self.vf, self.param
        move = self.scale[members] if weights is None else self.scale[members] * weights
        name = vf.paramset.names[p]
        method = method or self.method
        dtype = vf.working[p].dtype
        original = vf.working[p].reshape(-1)[members]
        points = line_points(0.0, self.h0, method)
        # every point of the line in one call of the engine (which restores the working copy)
        outputs = iter((self.engine or _REFERENCE).evaluate_outputs(
            vf, p, [members] * len(points),
            [(original + s * move).astype(dtype, copy=False) for s in points],
            [f"with {what} of {name} moved by {s!r} steps" for s in points]))
        return line_estimate(lambda s: next(outputs), 0.0, self.h0, method, vf)


#: The engine of lines when none is given (its evaluate_outputs is the reference loop).
_REFERENCE = PythonEngine()


def _outside(value: np.ndarray, expected: np.ndarray, bar: np.ndarray) -> np.ndarray:
    """Where ``value`` and ``expected`` differ by more than the verification allows."""
    slack = 8.0 * np.finfo(np.float64).eps * np.maximum(np.abs(value), np.abs(expected))
    return np.abs(value - expected) > config.VERIFY_BAR_FACTOR * bar + slack + \
        np.finfo(np.float64).tiny


Sink = Callable[[np.ndarray, np.ndarray, np.ndarray, Estimate], None]


def run_groups(columns: Columns, grouping: Grouping, sink: Sink,
               rng: np.random.Generator) -> str | None:
    """Evaluate every group, hand its outputs to ``sink``, and verify the grouping.

    ``sink(members, owners, valid, estimate)`` receives each group's flat
    members, the owner of every output (``-1``: none), ``owners >= 0`` and the
    derivative of every output along the group's line (divide by
    ``columns.scale[owner]`` for the Jacobian entry).

    Returns
    -------
    str or None
        None when the grouping was verified; otherwise why it was rejected
        (what the sink accumulated must then be discarded).
    """
    vf = columns.vf
    name = vf.paramset.names[columns.param]
    shape = vf.working[columns.param].shape
    size = int(np.prod(shape, dtype=np.int64))
    chosen = rng.choice(size, size=min(size, config.VERIFY_ENTRIES), replace=False)
    xi = rng.standard_normal(size)
    xi /= np.max(np.abs(xi))
    along = np.zeros(vf.size)
    along_bar = np.zeros(vf.size)
    captured: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
    fused = vf.size >= config.LINE_KERNEL_MIN_OUTPUTS
    if fused:
        from .line_kernel import accumulate_direction
    first = []   # the groups of the verification entries go first: a bad guess fails early
    for j in chosen:
        g = grouping.group_of(int(j))
        if g not in first:
            first.append(g)
    order = first + [g for g in range(grouping.groups) if g not in first]
    for count, g in enumerate(order):
        members = grouping.members(g)
        owners = grouping.owners(g)
        valid = owners >= 0
        est = columns.line(members)
        if fused:   # the same sums and test in one pass
            r = accumulate_direction(owners, np.ascontiguousarray(est.value),
                                     np.ascontiguousarray(est.error_bar), xi, along,
                                     along_bar)
        else:
            stray = _outside(est.value[~valid], 0.0 * est.value[~valid],
                             est.error_bar[~valid])
            r = int(np.flatnonzero(~valid)[np.flatnonzero(stray)[0]]) if stray.any() else -1
            if r < 0:
                o = owners[valid]
                along[valid] += est.value[valid] * xi[o]
                along_bar[valid] += est.error_bar[valid] * np.abs(xi[o])
        if r >= 0:
            index = np.unravel_index(r, vf.out_shape)
            return (f"{format_entry('output', index)} moved in a group that was not "
                    "expected to move it")
        sink(members, owners, valid, est)
        for j in chosen:
            if int(j) in captured or not np.any(members == j):
                continue
            mine = owners == j
            captured[int(j)] = (mine, est.value / columns.scale[j], est.error_bar /
                                columns.scale[j])
        if count == len(first) - 1:
            reason = _verify_entries(columns, chosen, captured, name, shape)
            if reason:
                return reason
    # Every entry moves at once along the direction, so f varies along it on a
    # shorter length than along one entry: the central model of its truncation
    # would be too optimistic. Richardson's bar is measured (|d1 - d2|).
    method = "complex" if columns.method == "complex" else "richardson"
    est = columns.line(np.arange(size), xi, what="a random direction", method=method)
    disagree = np.flatnonzero(_outside(est.value, along, est.error_bar + along_bar))
    if disagree.size:
        return _confirm_outputs(columns, grouping, disagree, name, shape)
    return None


def _confirm_outputs(columns: Columns, grouping: Grouping, outputs: np.ndarray, name: str,
                     shape: tuple[int, ...]) -> str | None:
    """Settle a directional disagreement at some outputs entry by entry.

    The random direction moves every entry at once, so its derivative is a
    screen: a wrong grouping shows there, but so can rounding that its error
    bar underrates (an output that cancels, such as ``1 + tanh(z)`` at large
    negative ``z``, is a staircase whose treads the noise probe's short moves
    do not reach). What decides is whether the grouping mixed anything into
    those outputs: each of their owners is evaluated alone and must agree with
    its group's column at every output (the test of :func:`_verify_entries`),
    group after group, stopping at the first that does not. When the outputs
    have more owners than ``config.VERIFY_CONFIRM_ENTRIES`` or
    ``config.VERIFY_CONFIRM_SHARE`` of the entries, the grouping is rejected.
    """
    reason = "a random directional derivative disagrees with the grouped columns"
    size = int(np.prod(shape, dtype=np.int64))
    limit = max(config.VERIFY_CONFIRM_ENTRIES, int(config.VERIFY_CONFIRM_SHARE * size))
    by_group: dict[int, np.ndarray] = {}
    count = 0
    for g in range(grouping.groups):
        owners = grouping.owners(g)[outputs]
        mine = np.unique(owners[owners >= 0])
        if mine.size:
            by_group[g] = mine
            count += mine.size
            if count > limit:
                return reason
    for g, entries in by_group.items():
        est = columns.line(grouping.members(g), what="a group, again")
        owners = grouping.owners(g)
        captured = {int(j): (owners == j, est.value / columns.scale[j],
                             est.error_bar / columns.scale[j]) for j in entries}
        found = _verify_entries(columns, entries, captured, name, shape)
        if found:
            return f"{reason}, and {found}"
    return None


def _verify_entries(columns: Columns, chosen: np.ndarray,
                    captured: dict[int, tuple[np.ndarray, np.ndarray, np.ndarray]],
                    name: str, shape: tuple[int, ...]) -> str | None:
    """Single-entry columns against the grouped ones (two evaluations each)."""
    for j in chosen:
        mine, value, bar = captured[int(j)]
        est = columns.line(np.array([int(j)]), what="one entry")
        single_value = est.value / columns.scale[j]
        single_bar = est.error_bar / columns.scale[j]
        expected = np.where(mine, value, 0.0)
        if _outside(single_value, expected, single_bar + np.where(mine, bar, 0.0)).any():
            index = np.unravel_index(int(j), shape)
            return f"{format_entry(name, index)} evaluated alone disagrees with its group"
    return None


class VjpSink:
    """Accumulates ``u_k^T J`` and its error bar for every cotangent at once.

    Examples
    --------
    >>> sink = VjpSink(np.array([[1.0, 2.0]]), np.ones(2))
    >>> est = Estimate(np.array([3.0, 4.0]), np.array([0.1, 0.1]))
    >>> sink(np.array([0, 1]), np.array([0, 1]), np.array([True, True]), est)
    >>> sink.value.tolist(), sink.bar.tolist()
    ([[3.0, 8.0]], [[0.1, 0.2]])
    """

    def __init__(self, cotangents: np.ndarray, scale: np.ndarray):
        self.us = np.ascontiguousarray(cotangents, dtype=np.float64)
        self.scale = scale
        k, n = self.us.shape[0], scale.size
        self.value = np.zeros((k, n))
        self.bar = np.zeros((k, n))
        self._position = np.zeros(n, dtype=np.int64)   # flat entry -> place in its group
        self._us_t = np.ascontiguousarray(self.us.T)     # output-major, for the kernel

    def __call__(self, members: np.ndarray, owners: np.ndarray, valid: np.ndarray,
                 est: Estimate) -> None:
        self._position[members] = np.arange(members.size)
        inverse = 1.0 / self.scale[members]
        if owners.size >= config.LINE_KERNEL_MIN_OUTPUTS:   # one pass, the same sums
            from .line_kernel import accumulate_vjp

            accumulate_vjp(np.ascontiguousarray(owners, dtype=np.int64), self._position,
                           self._us_t, np.ascontiguousarray(est.value, dtype=np.float64),
                           np.ascontiguousarray(est.error_bar, dtype=np.float64),
                           np.ascontiguousarray(members, dtype=np.int64), inverse,
                           self.value, self.bar)
            return
        if valid.all():   # every output owned (dense layers): no subsets to copy
            local, value, bar, us = self._position[owners], est.value, est.error_bar, self.us
        else:
            local = self._position[owners[valid]]
            value, bar, us = est.value[valid], est.error_bar[valid], self.us[:, valid]
        for k, uk in enumerate(us):
            self.value[k, members] += np.bincount(local, uk * value,
                                                  minlength=members.size) * inverse
            self.bar[k, members] += np.bincount(local, np.abs(uk) * bar,
                                                minlength=members.size) * inverse


def describe(groups: int, size: int, how: str) -> str:
    """The strategy line of a compressed parameter.

    Examples
    --------
    >>> describe(513, 262144, "found from 9 probes")
    'compressed: 513 groups for 262,144 entries (found from 9 probes, verified)'
    """
    noun = "group" if groups == 1 else "groups"
    return f"compressed: {groups:,} {noun} for {size:,} entries ({how}, verified)"


#: Rounding part of the error bar, in units of ``rounding / h`` (:meth:`Stencil.estimate`).
_ROUNDING_PER_STEP = {"central": 1.0, "forward": 2.0, "richardson": 1.5, "complex": 0.0}


class OwnedSides:
    """One-sided derivatives of compressed columns, stored where an output is owned.

    A grouped Jacobian entry ``(r, j)`` has one-sided derivatives only where
    member ``j`` owns output ``r``; everywhere else they are 0 (as the value).
    Only those entries are kept (as many as the compressed columns have), not a
    dense ``out.size x in.size`` array; ``sides[positions]`` reads flat
    positions (row-major), as an array would.

    Examples
    --------
    >>> sides = OwnedSides(np.array([4, 0]), np.array([2.0, 1.0]), size=6)
    >>> sides[np.array([0, 1, 4])].tolist()
    [1.0, 0.0, 2.0]
    """

    def __init__(self, positions: np.ndarray, values: np.ndarray, size: int):
        order = np.argsort(positions, kind="stable")
        self.positions = np.asarray(positions, dtype=np.int64)[order]
        self.values = np.asarray(values, dtype=np.float64)[order]
        self.size = int(size)

    def __getitem__(self, positions: Any) -> np.ndarray:
        flat = np.arange(self.size)[positions] if isinstance(positions, slice) else \
            np.asarray(positions)
        if flat.dtype == bool:
            flat = np.flatnonzero(flat)
        flat = flat.astype(np.int64, copy=False)
        at = np.minimum(np.searchsorted(self.positions, flat), max(self.positions.size - 1, 0))
        hit = (self.positions[at] == flat) if self.positions.size else np.zeros(flat.shape, bool)
        return np.where(hit, self.values[at] if self.values.size else 0.0, 0.0)

    def __len__(self) -> int:
        return self.size

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        dense = np.zeros(self.size, dtype=np.float64 if dtype is None else dtype)
        dense[self.positions] = self.values
        return dense


class JacobianSink:
    """Writes grouped columns into dense ``(out.size, in.size)`` value and bar arrays
    (check_jacobian's report holds them); the one-sided derivatives, nonzero only
    where a member owns an output, are kept as :class:`OwnedSides`.

    An output a member does not own gets the value 0 and the rounding part of
    the error bar a single-entry column would have there.
    """

    def __init__(self, vf: VectorFunction, method: str, h0: float, scale: np.ndarray):
        m, n = vf.size, scale.size
        self.scale = scale
        self.value = np.zeros((m, n))
        self.bar = np.zeros((m, n))
        self.sided = method in ("central", "richardson")
        self._owned: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
        floor = config.NOISE_FLOOR_ULPS * vf.eps * np.abs(vf.y0)
        self.rounding = _ROUNDING_PER_STEP[method] * config.NOISE_SAFETY * \
            np.maximum(vf.noise, floor) / h0

    def __call__(self, members: np.ndarray, owners: np.ndarray, valid: np.ndarray,
                 est: Estimate) -> None:
        inverse = 1.0 / self.scale[members]
        step = max(1, config.VERDICT_CHUNK // max(1, self.bar.shape[0]))
        for start in range(0, members.size, step):   # no (out.size, members) temporary
            part = slice(start, start + step)
            self.bar[:, members[part]] = self.rounding[:, None] * inverse[None, part]
        rows = np.flatnonzero(valid)
        cols = owners[valid]
        self.value[rows, cols] = est.value[valid] / self.scale[cols]
        self.bar[rows, cols] = est.error_bar[valid] / self.scale[cols]
        if self.sided:
            self._owned.append((rows * self.scale.size + cols, est.left[valid] / self.scale[cols],
                                est.right[valid] / self.scale[cols]))

    def sides(self) -> tuple[OwnedSides | None, OwnedSides | None]:
        """The left and right one-sided derivatives of every entry (None: the
        method has none)."""
        if not self.sided:
            return None, None
        size = self.value.size
        parts = self._owned or [(np.zeros(0, np.int64), np.zeros(0), np.zeros(0))]
        positions = np.concatenate([p for p, _, _ in parts])
        return (OwnedSides(positions, np.concatenate([a for _, a, _ in parts]), size),
                OwnedSides(positions, np.concatenate([b for _, _, b in parts]), size))
