"""Structured estimates of a Dense layer's entries: which path, which steps.

For every Dense layer the estimates come from one of two paths:

* the layer feeding the loss directly (only Identity after it), in full mode:
  all entries of ``[W; b]`` at once from one contraction (:mod:`.heads`);
* otherwise entry by entry (:mod:`.downstream`), with the automatic step
  shrunk for entries whose evaluation crossed a ReLU kink.

It also builds the ``refine`` and ``kink_probe`` callables that
:func:`gradprobe.verdict.compare.compare_param` uses to re-examine failing entries.
"""
from __future__ import annotations

import numpy as np

from .. import config
from ..differences.stencils import OFFSETS, Estimate, Stencil, step_size
from . import constants
from .downstream import loss_differences
from .heads import HeadResult, mse_head, softmax_head
from .plan import Plan
from .sequential import Sequential


def private_params(model: Sequential, dtype: np.dtype) -> dict[str, np.ndarray]:
    """The model's parameters in ``dtype``, C-contiguous.

    A parameter already in ``dtype`` is used as it is, not copied: the
    structured check only reads parameters (every perturbation is a
    difference computed from the cached forward pass, nothing is written
    into ``W`` or ``b``), exactly as ``model.gradients`` reads them, and a copy
    of a large layer would be a whole parameter's worth of memory. Others
    are converted copies.
    """
    return {k: np.ascontiguousarray(v, dtype=dtype) for k, v in model.parameters().items()}


def stacked_params(plan: Plan, pos: int) -> np.ndarray:
    """``[W; b]`` of layer ``pos`` as one ``(n_in + 1, n_out)`` float64 array."""
    W = plan.trace.params[f"{pos}.W"]
    b = plan.trace.params[f"{pos}.b"]
    return np.concatenate([W, b[None, :]], axis=0).astype(np.float64)


def entry_estimate(plan: Plan, pos: int, stacked_flat: np.ndarray, values: np.ndarray,
                    method: str, eps: float | None) -> Estimate:
    """Estimates at flat indices of ``[W; b]`` by the entry-by-entry kernel.

    Entries whose evaluations moved a ReLU input across zero are evaluated
    again with the step divided by ``config.KINK_STEP_DIVISOR``, up to
    ``constants.KINK_STEP_RETRIES`` times: a kink near (not at) the point
    stops being crossed, and the estimate is then that of a smooth function.
    A kink at the point keeps being crossed; its one-sided derivatives then
    show the jump and the verdict reports it in ``kinks``.
    """
    n_out = plan.model.layers[pos].n_out
    rows, cols = np.divmod(stacked_flat.astype(np.int64), n_out)
    h = step_size(values, method, plan.eps, eps)
    offsets = np.asarray(OFFSETS[method], dtype=np.float64)
    dl, noise, crossed = loss_differences(plan, pos, rows, cols, h, offsets)
    for _ in range(constants.KINK_STEP_RETRIES):
        retry = np.flatnonzero(crossed)
        if retry.size == 0:
            break
        smaller = h[retry] / config.KINK_STEP_DIVISOR
        dl_r, noise_r, crossed_r = loss_differences(plan, pos, rows[retry], cols[retry],
                                                    smaller, offsets)
        h[retry], dl[retry], noise[retry] = smaller, dl_r, noise_r
        crossed[retry] = crossed_r
    finite = np.isfinite(dl)
    if not finite.all():
        e, m = (int(v) for v in np.argwhere(~finite)[0])
        n_in = plan.model.layers[pos].n_in
        name = f"{pos}.b[{cols[e]}]" if rows[e] == n_in else f"{pos}.W[{rows[e]}, {cols[e]}]"
        raise ValueError(
            f"the loss difference is {dl[e, m]!r} with {name} = {values[e]!r} "
            f"{'+' if offsets[m] > 0 else '-'} {abs(offsets[m]) * h[e]:.3g}; the loss must be "
            "finite near the checked point: pass a smaller eps")
    points = values[:, None] + offsets[None, :] * h[:, None]
    return Stencil(method).estimate(dl, values, points, 0.0, noise.max(axis=1), plan.eps)


def head_estimate(plan: Plan, pos: int, method: str, eps: float | None) -> HeadResult | None:
    """The fast path for the layer feeding the loss, or None when it does not apply."""
    if not plan.head_is_identity(pos):
        return None
    W = plan.trace.params[f"{pos}.W"]
    b = plan.trace.params[f"{pos}.b"]
    h0 = float(step_size(np.zeros(1), method, plan.eps, eps)[0])
    steps = stacked = None
    largest = plan.kernels.max_abs
    if eps is None and max(largest(W.reshape(-1)), largest(b)) > 1.0:
        # entries with |w| > 1 get larger steps (step_size scales with max(1, |w|))
        stacked = stacked_params(plan, pos)
        large = np.abs(stacked) > 1.0
        steps = np.full(stacked.shape, h0)
        steps[large] = step_size(stacked[large], method, plan.eps, eps)
    if plan.loss.code == constants.LOSS_MSE:
        return mse_head(plan, pos, method, steps, h0)
    result = softmax_head(plan, pos, method, steps, h0)
    if result is not None and result.redo.size:
        est = entry_estimate(plan, pos, result.redo, stacked.reshape(-1)[result.redo],
                              method, eps)
        result.value.reshape(-1)[result.redo] = est.value
        result.error_bar.reshape(-1)[result.redo] = est.error_bar
    return result


def layer_estimates(plan: Plan, pos: int, entries_W: np.ndarray, entries_b: np.ndarray,
                    method: str, eps: float | None, full: bool) -> tuple[Estimate, Estimate]:
    """Numerical derivatives at the given flat entries of ``W`` and ``b`` of layer ``pos``
    (None: every entry)."""
    layer = plan.model.layers[pos]
    n_w = layer.n_in * layer.n_out
    if full:
        head = head_estimate(plan, pos, method, eps)
        if head is not None:
            value = head.value.reshape(-1)
            bar = head.error_bar.reshape(-1)
            return (Estimate(value[:n_w], bar[:n_w]), Estimate(value[n_w:], bar[n_w:]))
    n_b = layer.n_out
    count_W = n_w if entries_W is None else entries_W.size
    count_b = n_b if entries_b is None else entries_b.size
    W = plan.trace.params[f"{pos}.W"].reshape(-1)
    b = plan.trace.params[f"{pos}.b"]

    def chosen(entries: np.ndarray | None, lo: int, hi: int) -> np.ndarray:
        return np.arange(lo, hi, dtype=np.int64) if entries is None else entries[lo:hi]

    # Entries of [W; b] go to the kernel config.ESTIMATE_CHUNK at a time (every
    # entry's estimate is its own), into arrays allocated once: the kernel's
    # differences, bounds and steps never exist for more than one chunk.
    total = count_W + count_b
    out: dict[str, np.ndarray | None] = {}
    for lo in range(0, total, config.ESTIMATE_CHUNK):
        hi = min(total, lo + config.ESTIMATE_CHUNK)
        w_part = chosen(entries_W, min(lo, count_W), min(hi, count_W))
        b_part = chosen(entries_b, max(lo - count_W, 0), max(hi - count_W, 0))
        flat = np.concatenate([w_part, n_w + b_part]).astype(np.int64)
        values = np.concatenate([W[w_part], b[b_part]]).astype(np.float64)
        est = entry_estimate(plan, pos, flat, values, method, eps)
        for key in ("value", "error_bar", "left", "right"):
            part = getattr(est, key)
            if lo == 0:
                out[key] = None if part is None else np.empty(total)
            if part is not None:
                out[key][lo:hi] = part

    def part(a: np.ndarray | None, sl: slice) -> np.ndarray | None:
        return None if a is None else a[sl]

    first, second = slice(0, count_W), slice(count_W, None)
    return tuple(Estimate(out["value"][sl], out["error_bar"][sl], part(out["left"], sl),
                          part(out["right"], sl)) for sl in (first, second))


def _checked(entries: np.ndarray | None, positions: np.ndarray) -> np.ndarray:
    """Flat indices of the checked entries at ``positions`` (entries None: every entry)."""
    return np.asarray(positions, dtype=np.int64) if entries is None else entries[positions]


def _entry_points(plan: Plan, pos: int, name: str,
                  entries: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Flat indices into ``[W; b]`` and values of entries of parameter ``name``."""
    layer = plan.model.layers[pos]
    offset = layer.n_in * layer.n_out if name.endswith(".b") else 0
    chosen = entries.astype(np.int64)
    values = plan.trace.params[name].reshape(-1)[chosen].astype(np.float64)
    return chosen + offset, values


def refiner(plan: Plan, pos: int, name: str, entries: np.ndarray | None,
            eps: float | None):
    """``refine(positions)`` for compare_param: Richardson estimates entry by entry."""
    def refine(positions: np.ndarray) -> Estimate:
        flat, values = _entry_points(plan, pos, name, _checked(entries, positions))
        return entry_estimate(plan, pos, flat, values, "richardson", eps)
    return refine


def kink_prober(plan: Plan, pos: int, name: str, entries: np.ndarray | None,
                eps: float | None):
    """``kink_probe(positions)`` for compare_param: one-sided derivatives at a smaller step."""
    def kink_probe(positions: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        flat, values = _entry_points(plan, pos, name, _checked(entries, positions))
        n_out = plan.model.layers[pos].n_out
        rows, cols = np.divmod(flat, n_out)
        h = step_size(values, "central", plan.eps, eps) / config.KINK_STEP_DIVISOR
        dl, _, _ = loss_differences(plan, pos, rows, cols, h, np.array([1.0, -1.0]))
        return -dl[:, 1] / h, dl[:, 0] / h
    return kink_probe
