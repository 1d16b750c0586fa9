"""Groupings of input entries whose output supports are disjoint.

A :class:`Grouping` splits the entries of one input into groups that can be
perturbed together and read apart (:mod:`gradprobe.differences.compression`
finds, evaluates and verifies them): :class:`AxisGrouping` from supports
that shift along the input's axes, :class:`PatternGrouping` from a known
sparsity pattern (the user's ``sparsity=``, SciPy-style).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np


# -- groupings -----------------------------------------------------------------------

class Grouping:
    """Groups of entries of one input whose output supports are disjoint.

    Attributes
    ----------
    groups : int
        Number of groups (two evaluations each with central differences).
    how : str
        How the grouping was found (for the report).
    """

    groups: int = 0
    how: str = ""

    def members(self, g: int) -> np.ndarray:
        """Sorted flat indices of the entries of group ``g``."""
        raise NotImplementedError

    def owners(self, g: int) -> np.ndarray:
        """For every flat output entry, the member of group ``g`` that moves it (-1: none)."""
        raise NotImplementedError

    def group_of(self, j: int) -> int:
        """The group of flat entry ``j``."""
        raise NotImplementedError


@dataclass
class AxisGrouping(Grouping):
    """A grouping from supports that shift along the input's axes.

    The support of entry ``i`` is modelled as a box: along output axis ``q``
    the window ``[lo_q + sum_k s_kq (i_k - c_k), hi_q + ...]`` (clipped to the
    axis), or the whole axis (``window[q] is None``). Each output axis is
    shifted by at most one input axis. Entries whose indices agree modulo
    ``moduli`` along every axis then have disjoint boxes: the groups are the
    residues (``prod(moduli)`` of them).

    Examples
    --------
    >>> g = AxisGrouping(shape=(3, 4), out_shape=(5, 4), centre=(1, 2), moduli=(3, 1),
    ...                  windows=[None, (2, 2)], shifts=[[0, 0], [0, 1]])
    >>> g.groups, g.members(1).tolist()         # a dense layer's W: one group per row
    (3, [4, 5, 6, 7])
    >>> g.owners(1).reshape(5, 4)[0].tolist()   # output column j belongs to W[1, j]
    [4, 5, 6, 7]
    """

    shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    centre: tuple[int, ...]
    moduli: tuple[int, ...]
    windows: list[tuple[int, int] | None]
    shifts: list[list[int]]            # shifts[k][q]
    how: str = "found from the function"

    def __post_init__(self) -> None:
        self.groups = int(np.prod(self.moduli, dtype=np.int64))
        # the output axis that determines each input axis' index (None: none)
        self.primary: list[int | None] = []
        for k, a in enumerate(self.shape):
            driven = self.driven(k)
            if not driven:
                self.primary.append(None)
                continue
            widths = [(self.windows[q][1] - self.windows[q][0] + 1) / abs(self.shifts[k][q])
                      for q in driven]
            self.primary.append(driven[int(np.argmin(widths))])
        # what owners() needs for every group: computed once
        out = self.out_shape
        self._grids = [g.astype(np.int64) for g in np.ogrid[tuple(slice(0, n) for n in out)]] \
            if len(out) > 1 else [np.arange(out[0], dtype=np.int64)]
        self._strides = np.cumprod((self.shape[1:] + (1,))[::-1])[::-1]
        self._driven = [self.driven(k) for k in range(len(self.shape))]

    def driven(self, k: int) -> list[int]:
        """Output axes whose window input axis ``k`` shifts."""
        return [q for q, w in enumerate(self.windows) if w is not None and self.shifts[k][q]]

    def group_of(self, j: int) -> int:
        index = np.unravel_index(j, self.shape)
        return int(np.ravel_multi_index([i % m for i, m in zip(index, self.moduli)],
                                        self.moduli))

    def members(self, g: int) -> np.ndarray:
        residues = np.unravel_index(int(g), self.moduli)
        axes = [np.arange(r, a, m) for r, a, m in zip(residues, self.shape, self.moduli)]
        grid = np.ix_(*axes)
        return np.ravel_multi_index(grid, self.shape).reshape(-1).astype(np.int64)

    def owners(self, g: int) -> np.ndarray:
        residues = np.unravel_index(int(g), self.moduli)
        out = self.out_shape
        grids, strides = self._grids, self._strides
        ones = (1,) * len(out)
        valid: np.ndarray = np.ones(ones, dtype=bool)
        flat: np.ndarray = np.zeros(ones, dtype=np.int64)
        for k, (a, m, c, r) in enumerate(zip(self.shape, self.moduli, self.centre, residues)):
            q = self.primary[k]
            if q is None:
                index: Any = np.full(ones, int(r), dtype=np.int64)
            else:
                s = self.shifts[k][q]
                lo_w, hi_w = self.windows[q]
                o = grids[q]
                # o in [lo_w + s t, hi_w + s t] with t = i_k - c
                if s > 0:
                    t_lo, t_hi = -((hi_w - o) // s), (o - lo_w) // s
                else:
                    t_lo, t_hi = -((lo_w - o) // s), (o - hi_w) // s
                start = c + t_lo
                index = start + (int(r) - start) % m
                valid = valid & (index <= c + t_hi) & (index >= 0) & (index < a)
                for q2 in self._driven[k]:
                    if q2 != q:
                        lo2, hi2 = self.windows[q2]
                        shift = self.shifts[k][q2] * (index - c)
                        valid = valid & (grids[q2] >= lo2 + shift) & (grids[q2] <= hi2 + shift)
            flat = flat + np.clip(index, 0, a - 1) * int(strides[k])
        for q, w in enumerate(self.windows):
            if w is not None and not any(self.shifts[k][q] for k in range(len(self.shape))):
                valid = valid & (grids[q] >= w[0]) & (grids[q] <= w[1])
        owners = np.where(valid, flat, -1)
        return np.broadcast_to(owners, out).reshape(-1)


@dataclass
class PatternGrouping(Grouping):
    """Greedy column grouping of a known sparsity pattern (SciPy-style).

    Parameters
    ----------
    indptr, indices : ndarray
        The pattern in compressed sparse column form: the rows (flat output
        entries) of column ``j`` are ``indices[indptr[j]:indptr[j + 1]]``.
    out_size : int

    Examples
    --------
    >>> pattern = np.eye(4, dtype=bool)                 # elementwise
    >>> g = PatternGrouping.from_dense(pattern)
    >>> g.groups, g.members(0).tolist(), g.owners(0).tolist()
    (1, [0, 1, 2, 3], [0, 1, 2, 3])
    """

    indptr: np.ndarray
    indices: np.ndarray
    out_size: int
    how: str = "from the given sparsity pattern"

    def __post_init__(self) -> None:
        self.colors = group_columns(self.indptr, self.indices, self.out_size)
        self.groups = int(self.colors.max()) + 1 if self.colors.size else 0

    @classmethod
    def from_dense(cls, pattern: np.ndarray) -> "PatternGrouping":
        """From a dense boolean ``(out.size, in.size)`` array."""
        rows, cols = np.nonzero(np.asarray(pattern).T)     # column-major order
        counts = np.bincount(rows, minlength=pattern.shape[1])
        indptr = np.concatenate([[0], np.cumsum(counts)]).astype(np.int64)
        return cls(indptr, cols.astype(np.int64), int(pattern.shape[0]))

    def group_of(self, j: int) -> int:
        return int(self.colors[j])

    def members(self, g: int) -> np.ndarray:
        return np.flatnonzero(self.colors == g).astype(np.int64)

    def owners(self, g: int) -> np.ndarray:
        owners = np.full(self.out_size, -1, dtype=np.int64)
        for j in self.members(g):
            owners[self.indices[self.indptr[j]:self.indptr[j + 1]]] = j
        return owners


def group_columns(indptr: np.ndarray, indices: np.ndarray, out_size: int) -> np.ndarray:
    """Greedy grouping of columns so that no two columns of a group share a row.

    Each column, in order, takes the lowest group none of its rows has yet
    (the Curtis-Powell-Reid grouping that SciPy's ``group_columns`` also uses).

    Examples
    --------
    >>> # columns 0 and 1 share row 0; column 2 shares nothing
    >>> group_columns(np.array([0, 1, 3, 4]), np.array([0, 0, 1, 2]), 3).tolist()
    [0, 1, 0]
    """
    n = int(indptr.size - 1)
    colors = np.zeros(n, dtype=np.int64)
    used = np.zeros((out_size, 8), dtype=bool)
    for j in range(n):
        rows = indices[indptr[j]:indptr[j + 1]]
        taken = used[rows].any(axis=0) if rows.size else np.zeros(used.shape[1], dtype=bool)
        free = np.flatnonzero(~taken)
        if free.size == 0:
            used = np.concatenate([used, np.zeros_like(used)], axis=1)
            color = taken.size
        else:
            color = int(free[0])
        colors[j] = color
        used[rows, color] = True
    return colors


def pattern_grouping(pattern: Any, out_size: int, in_shape: tuple[int, ...], name: str,
                     caller: str) -> PatternGrouping:
    """A :class:`PatternGrouping` from the user's pattern, validated.

    ``pattern`` is a dense array or a SciPy sparse matrix of shape
    ``(out.size, in.size)``: entry ``(r, j)`` nonzero when output ``r`` may
    depend on input entry ``j`` (flat, C order), as in SciPy's
    ``approx_derivative(sparsity=...)``.
    """
    n = int(np.prod(in_shape, dtype=np.int64))
    expected = (out_size, n)
    if hasattr(pattern, "tocsc") and hasattr(pattern, "shape"):
        if tuple(pattern.shape) != expected:
            raise ValueError(f"{caller}: sparsity for {name!r} has shape {tuple(pattern.shape)};"
                             f" expected (output size, {name} size) = {expected}")
        csc = pattern.tocsc()
        csc.sum_duplicates()
        csc.eliminate_zeros()
        return PatternGrouping(np.asarray(csc.indptr, dtype=np.int64),
                               np.asarray(csc.indices, dtype=np.int64), out_size)
    try:
        array = np.asarray(pattern)
    except Exception as exc:
        raise TypeError(f"{caller}: sparsity for {name!r} is not an array: {exc}") from None
    if array.dtype.kind not in "biuf":
        raise TypeError(f"{caller}: sparsity for {name!r} has dtype {array.dtype}; expected "
                        "a boolean or numeric array (nonzero: output depends on entry)")
    if array.shape != expected:
        raise ValueError(f"{caller}: sparsity for {name!r} has shape {array.shape}; expected "
                         f"(output size, {name} size) = {expected}")
    return PatternGrouping.from_dense(array != 0)


def split_sparsity(sparsity: Any, names: Sequence[str], kind: str, caller: str) -> list[Any]:
    """The user's ``sparsity=`` as one pattern (or None) per input.

    One pattern for a single input; a dict by input name, or a tuple/list in
    the order of the inputs (None: find it from the function).
    """
    if sparsity is None:
        return [None] * len(names)
    if isinstance(sparsity, dict):
        unknown = [k for k in sparsity if k not in names]
        if unknown:
            raise ValueError(f"{caller}: sparsity names {unknown}, which are not inputs; the "
                             f"inputs are {list(names)}")
        return [sparsity.get(n) for n in names]
    if isinstance(sparsity, (tuple, list)) and len(names) > 1:
        if len(sparsity) != len(names):
            raise ValueError(f"{caller}: sparsity has {len(sparsity)} patterns but there "
                             f"are {len(names)} inputs ({', '.join(names)})")
        return list(sparsity)
    if len(names) > 1:
        raise TypeError(f"{caller}: with several inputs, sparsity must be a dict by input "
                        f"name or a tuple with one pattern (or None) per input "
                        f"({', '.join(names)})")
    return [sparsity]
