"""Structural checks of a backward pass: bugs that need no finite differences.

The cheap tests the best checkers run before any difference (torch's
``gradcheck`` internals, MyGrad's backprop tests), written over plain NumPy
callables so that every front end (:func:`gradprobe.check_vjp`,
:func:`gradprobe.check_layer`, the PyTorch and JAX adapters) calls the same
code through a thin adapter.

The interface
-------------
``forward(*inputs)``
    Returns one array, or a tuple of arrays (several outputs).
``vjp(cotangent, *inputs)``
    ``cotangent`` has the structure of ``forward``'s output (one array, or a
    tuple of arrays); returns the gradient with respect to every input: one
    array for a single input, otherwise a tuple/list with one entry per
    input (``None`` allowed for inputs that are not differentiated, such as
    integer ids).

:func:`structural_checks` calls both on private copies of the inputs and
cotangent (the caller's arrays are never passed in, so never written) and
returns a :class:`StructuralResult` whose ``findings`` are
:class:`~gradprobe.report.findings.Finding` objects with status
``"failed"``, one per problem:

``forward-mutates-input``       ``forward`` wrote into an input;
``backward-mutates-cotangent``  ``vjp`` wrote into its cotangent;
``backward-mutates-input``      ``vjp`` wrote into an input;
``gradient-structure``          ``vjp`` returned the wrong number of gradients;
``gradient-shape``              a gradient's shape is not exactly its input's
                                (no broadcasting: ``(1, n)`` for ``(n,)`` fails);
``gradient-dtype``              a gradient is not floating (or not an array);
``zero-cotangent``              a zero cotangent gave a nonzero (or NaN) gradient
                                (stale accumulated gradients, a constant added);
``nondeterministic-backward``   two calls with the same cotangent disagree by
                                more than ``nondeterminism_tol`` (while ``forward``
                                reproduces its output: a forward that does not is
                                the determinism rule's inconclusive finding).

The checks raise nothing for these problems (exceptions raised by ``forward``
or ``vjp`` themselves propagate unchanged); they report them.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from .. import config
from ..report.findings import Finding

#: Every structural check, in the order they run.
STRUCTURAL_CHECKS = ("forward-mutates-input", "backward-mutates-cotangent",
                     "backward-mutates-input", "gradient-structure", "gradient-shape",
                     "gradient-dtype", "zero-cotangent", "nondeterministic-backward")


@dataclass
class StructuralResult:
    """What :func:`~gradprobe.checks.structural.structural_checks` found.

    Attributes
    ----------
    findings : list of Finding
        One per problem (empty: every check passed).
    checks : tuple of str
        The checks that ran.
    output : ndarray or tuple of ndarray
        ``forward``'s output at the inputs (the first call).
    grads : list of ndarray or None
        The first ``vjp`` result, one entry per input (None where the input is
        not differentiated or the result was unusable).
    forward_calls, vjp_calls : int
        Calls made.
    """

    findings: list[Finding] = field(default_factory=list)
    checks: tuple[str, ...] = ()
    output: Any = None
    grads: list[np.ndarray | None] = field(default_factory=list)
    forward_calls: int = 0
    vjp_calls: int = 0

    @property
    def passed(self) -> bool:
        """True when no check found a problem."""
        return not self.findings


def _changed(before: np.ndarray, after: Any) -> tuple[int, ...] | None:
    """First index where ``after`` differs from ``before`` bit for bit (None: same)."""
    after = np.asarray(after)
    if after.shape != before.shape or after.dtype != before.dtype:
        return ()
    if np.ascontiguousarray(before).tobytes() == np.ascontiguousarray(after).tobytes():
        return None
    same = (before == after) | (np.isnan(before) & np.isnan(after)) \
        if before.dtype.kind in "fc" else before == after
    flat = int(np.flatnonzero(~np.asarray(same).reshape(-1))[0]) if not np.all(same) else 0
    return tuple(int(i) for i in np.unravel_index(flat, before.shape)) if before.shape else ()


def _where(name: str, index: tuple[int, ...]) -> str:
    return f"{name}[{', '.join(map(str, index))}]" if index else name


def _copy(value: Any) -> Any:
    if isinstance(value, tuple):
        return tuple(np.array(v, copy=True) for v in value)
    return np.array(value, copy=True)


def _flat(value: Any) -> list[np.ndarray]:
    return list(value) if isinstance(value, tuple) else [value]


def _cotangent_labels(cotangent: Any) -> list[str]:
    if isinstance(cotangent, tuple):
        return [f"cotangent[{k}]" for k in range(len(cotangent))]
    return ["cotangent"]


def _default_cotangent(output: Any, seed: int) -> Any:
    rng = np.random.default_rng([seed, config.SEED_TAG_STRUCTURAL])

    def draw(y: Any) -> np.ndarray:
        y = np.asarray(y)
        dtype = y.dtype if y.dtype.kind in "fc" else np.dtype(np.float64)
        return rng.standard_normal(y.shape).astype(dtype)

    return tuple(draw(y) for y in output) if isinstance(output, tuple) else draw(output)


def _as_grads(raw: Any, count: int) -> list[Any] | None:
    """One entry per input, or None (wrong structure)."""
    if count == 1:
        if isinstance(raw, (tuple, list)) and len(raw) == 1 and (
                raw[0] is None or isinstance(raw[0], np.ndarray)):
            return [raw[0]]
        return [raw]
    if isinstance(raw, (tuple, list)) and len(raw) == count:
        return list(raw)
    return None


def _largest(values: np.ndarray) -> tuple[float, tuple[int, ...]]:
    """Largest ``|value|`` (NaN counts as inf) and where."""
    mag = np.abs(values.astype(np.complex128 if values.dtype.kind == "c" else np.float64))
    mag = np.where(np.isnan(mag), np.inf, mag)
    flat = int(np.argmax(mag.reshape(-1)))
    index = tuple(int(i) for i in np.unravel_index(flat, values.shape)) if values.shape else ()
    return float(mag.reshape(-1)[flat]), index


def structural_checks(forward: Callable[..., Any], vjp: Callable[..., Any],
                      inputs: Sequence[np.ndarray], cotangent: Any = None, *,
                      names: Sequence[str] | None = None,
                      differentiable: Sequence[bool] | None = None,
                      nondeterminism_tol: float = 0.0, seed: int = 0,
                      checks: Sequence[str] | None = None) -> StructuralResult:
    """Run the structural checks of a forward/backward pair (no finite differences).

    Parameters
    ----------
    forward : callable
        ``forward(*inputs)`` -> array or tuple of arrays.
    vjp : callable
        ``vjp(cotangent, *inputs)`` -> the gradients (see the module docstring).
        It is called three times (cotangent, zero cotangent, cotangent again),
        each time on fresh copies, so a layer adapter should run its forward
        and backward on a fresh state inside each call.
    inputs : sequence of ndarray
        The point. Never passed in or written: every call gets copies.
    cotangent : ndarray or tuple of ndarray, optional
        In the structure of ``forward``'s output; by default a seeded
        standard-normal draw in the output's dtype.
    names : sequence of str, optional
        Input names for the messages (default ``input[i]``).
    differentiable : sequence of bool, optional
        Which inputs have gradients to check (default: the floating and
        complex ones; integer inputs such as ids are not differentiated).
    nondeterminism_tol : float
        Allowed difference between two backward calls, relative to the
        largest entry of the gradient (0: bit for bit).
    seed : int
        Seed of the default cotangent.
    checks : sequence of str, optional
        A subset of ``STRUCTURAL_CHECKS`` to run (default all).

    Returns
    -------
    StructuralResult

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([1.0, -2.0, 3.0])
    >>> good = structural_checks(np.tanh, lambda u, x: u * (1 - np.tanh(x) ** 2), [x])
    >>> good.passed
    True
    >>> def leaky(u, x):               # scales its cotangent in place
    ...     u *= 1 - np.tanh(x) ** 2
    ...     return u + 1e-3            # and adds a constant
    >>> [f.kind for f in structural_checks(np.tanh, leaky, [x]).findings]
    ['backward-mutates-cotangent', 'zero-cotangent']
    """
    inputs = [np.asarray(a) for a in inputs]
    count = len(inputs)
    names = [f"input[{i}]" for i in range(count)] if names is None else list(names)
    if len(names) != count:
        raise ValueError(f"structural_checks: {len(names)} names for {count} inputs")
    if differentiable is None:
        differentiable = [a.dtype.kind in "fc" for a in inputs]
    differentiable = [bool(d) for d in differentiable]
    tol = float(nondeterminism_tol)
    if not np.isfinite(tol) or tol < 0:
        raise ValueError(f"nondeterminism_tol must be a finite number >= 0, got "
                         f"{nondeterminism_tol!r}")
    wanted = tuple(STRUCTURAL_CHECKS if checks is None else checks)
    unknown = [c for c in wanted if c not in STRUCTURAL_CHECKS]
    if unknown:
        raise ValueError(f"unknown structural checks {unknown}; choose from "
                         f"{', '.join(STRUCTURAL_CHECKS)}")
    result = StructuralResult(checks=wanted)
    found = result.findings

    # forward: does it write into its inputs?
    work = [a.copy() for a in inputs]
    output = forward(*work)
    result.forward_calls += 1
    output = tuple(np.asarray(y) for y in output) if isinstance(output, (tuple, list)) \
        else np.asarray(output)
    result.output = output
    if "forward-mutates-input" in wanted:
        for name, before, after in zip(names, inputs, work):
            where = _changed(before, after)
            if where is not None:
                found.append(Finding(
                    "forward-mutates-input", "failed",
                    f"forward-mutates-input: the forward pass wrote into its input {name} "
                    f"(first change at {_where(name, where)}); compute on a copy "
                    "(x = x.copy(), or out-of-place operations) so callers' arrays stay "
                    "intact", (name,)))
    if cotangent is None:
        cotangent = _default_cotangent(output, seed)
    cotangent = tuple(np.asarray(c) for c in cotangent) if isinstance(cotangent, list) \
        else cotangent
    labels = _cotangent_labels(cotangent)

    def call(u: Any) -> tuple[list[Any] | None, list[np.ndarray], Any, Any]:
        args = [a.copy() for a in inputs]
        u_work = _copy(u)
        raw = vjp(u_work, *args)
        result.vjp_calls += 1
        return _as_grads(raw, count), args, u_work, raw

    grads, args, u_work, raw = call(cotangent)
    if "backward-mutates-cotangent" in wanted:
        for label, before, after in zip(labels, _flat(_copy(cotangent)), _flat(u_work)):
            where = _changed(before, after)
            if where is not None:
                found.append(Finding(
                    "backward-mutates-cotangent", "failed",
                    f"backward-mutates-cotangent: the backward pass wrote into its "
                    f"{label} (first change at {_where(label, where)}); an upstream "
                    "gradient may be shared with other branches of the graph: compute "
                    "the result out of place (g = g * mask, not g *= mask)"))
    if "backward-mutates-input" in wanted:
        for name, before, after in zip(names, inputs, args):
            where = _changed(before, after)
            if where is not None:
                found.append(Finding(
                    "backward-mutates-input", "failed",
                    f"backward-mutates-input: the backward pass wrote into the input "
                    f"{name} (first change at {_where(name, where)}); compute on a copy",
                    (name,)))
    if grads is None:
        if "gradient-structure" in wanted:
            found.append(Finding(
                "gradient-structure", "failed",
                f"gradient-structure: the backward pass returned {_shape_of(raw)}; it must "
                f"return one gradient per input ({count}: {', '.join(names)}), as a "
                "tuple/list in the inputs' order",
                tuple(names)))
        result.grads = [None] * count
        return result
    usable: list[np.ndarray | None] = []
    for name, x, g, diff in zip(names, inputs, grads, differentiable):
        if not diff or g is None:
            if diff and g is None and "gradient-structure" in wanted:
                found.append(Finding(
                    "gradient-structure", "failed",
                    f"gradient-structure: the backward pass returned None for {name}, "
                    f"which is differentiable ({x.dtype}); return its gradient", (name,)))
            usable.append(None)
            continue
        g_array = np.asarray(g)
        ok = True
        if "gradient-shape" in wanted and g_array.shape != x.shape:
            hint = " (it looks transposed)" if g_array.ndim >= 2 and \
                g_array.shape == x.shape[::-1] else (
                " (broadcastable, but a gradient must have exactly its input's shape: "
                "sum over the broadcast axes)"
                if _broadcastable(g_array.shape, x.shape) else "")
            found.append(Finding(
                "gradient-shape", "failed",
                f"gradient-shape: the gradient of {name} has shape {g_array.shape}, but "
                f"{name} has shape {x.shape}{hint}", (name,)))
            ok = False
        if "gradient-dtype" in wanted:
            if not isinstance(g, (np.ndarray, np.generic, float, complex)):
                found.append(Finding(
                    "gradient-dtype", "failed",
                    f"gradient-dtype: the gradient of {name} is a {type(g).__name__}, not "
                    "an array; return a NumPy array", (name,)))
                ok = False
            elif g_array.dtype.kind not in "fc" or (g_array.dtype.kind == "c" and
                                                    x.dtype.kind != "c"):
                found.append(Finding(
                    "gradient-dtype", "failed",
                    f"gradient-dtype: the gradient of {name} has dtype {g_array.dtype}; "
                    f"it must be floating (like {name}'s {x.dtype}): an integer gradient "
                    "has been truncated", (name,)))
                ok = False
        usable.append(np.array(g_array, copy=True) if ok else None)
    result.grads = usable

    if "zero-cotangent" in wanted:
        zero = tuple(np.zeros_like(c) for c in cotangent) if isinstance(cotangent, tuple) \
            else np.zeros_like(cotangent)
        zgrads = call(zero)[0]
        if zgrads is not None:
            for name, g, first in zip(names, zgrads, usable):
                if first is None or g is None:
                    continue
                g = np.asarray(g)
                if g.shape != first.shape or not np.any(g != 0):
                    continue
                value, index = _largest(g)
                found.append(Finding(
                    "zero-cotangent", "failed",
                    f"zero-cotangent: a zero cotangent gave a nonzero gradient for {name} "
                    f"(|{_where(name, index)}| = {value:.3g}); a backward pass is linear in "
                    "its cotangent: look for gradients accumulated from an earlier call "
                    "and never reset, or a term added that does not multiply the "
                    "cotangent", (name,)))
    if "nondeterministic-backward" in wanted:
        again = call(cotangent)[0]
        disagreements = [] if again is None else _disagreements(again, usable, names, tol)
        if disagreements and not _reproduces(forward, inputs, output, result):
            # the forward pass itself gives another output (a dropout that redraws its
            # mask, where vjp runs forward again): the backward may be right; that is the
            # determinism rule's finding (nondeterministic-forward, inconclusive)
            disagreements = []
        for name, value, index, scale in disagreements:
            found.append(Finding(
                "nondeterministic-backward", "failed",
                f"nondeterministic-backward: two backward calls with the same cotangent "
                f"and inputs gave different gradients for {name} (largest difference "
                f"{value:.3g} at {_where(name, index)}, "
                f"{value / scale if scale else float('inf'):.3g} of its largest entry"
                f"{'' if tol == 0 else f', above nondeterminism_tol={tol:g}'}); "
                "remove the randomness from the backward pass (a mask redrawn instead "
                "of reused from the forward pass, unseeded sampling, races), or allow "
                "it with nondeterminism_tol", (name,)))
    return result


def _disagreements(again: Sequence[Any], first: Sequence[Any], names: Sequence[str],
                   tol: float) -> list[tuple[str, float, tuple[int, ...], float]]:
    """``(name, largest difference, where, largest entry)`` of every gradient of
    ``again`` that differs from ``first`` by more than ``tol`` times its largest
    entry (gradients missing or of another shape are other checks' findings)."""
    out = []
    for name, g, f in zip(names, again, first):
        if f is None or g is None or np.shape(g) != f.shape:
            continue
        difference = _difference(f, np.asarray(g))
        scale = _largest(f)[0] if f.size else 0.0
        if difference is not None and difference[0] > tol * scale:
            out.append((name, difference[0], difference[1], scale))
    return out


def _reproduces(forward: Callable[..., Any], inputs: Sequence[np.ndarray], output: Any,
                result: StructuralResult) -> bool:
    """A second forward call on copies of ``inputs`` gives ``output`` bit for bit."""
    again = forward(*[a.copy() for a in inputs])
    result.forward_calls += 1
    if isinstance(output, tuple):
        again = tuple(again) if isinstance(again, (tuple, list)) else (again,)
        return len(again) == len(output) and all(
            np.shape(y) == x.shape and _difference(x, np.asarray(y)) is None
            for x, y in zip(output, again))
    again = np.asarray(again)
    return again.shape == output.shape and _difference(output, again) is None


def _shape_of(raw: Any) -> str:
    """``a tuple of 3``, ``an ndarray of shape (2, 3)``, ``None``, ... for messages."""
    if isinstance(raw, (tuple, list)):
        return f"a {type(raw).__name__} of {len(raw)}"
    if isinstance(raw, np.ndarray):
        return f"one array of shape {raw.shape}"
    return "None" if raw is None else f"a {type(raw).__name__}"


def _broadcastable(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    try:
        np.broadcast_shapes(shape, target)
    except ValueError:
        return False
    return True


def _difference(a: np.ndarray, b: np.ndarray) -> tuple[float, tuple[int, ...]] | None:
    """Largest ``|a - b|`` and where (None: equal bit for bit; NaN vs a number is inf)."""
    if _changed(a, b.astype(a.dtype, copy=False)) is None:
        return None
    with np.errstate(invalid="ignore", over="ignore"):
        diff = np.abs(a.astype(np.complex128 if a.dtype.kind == "c" else np.float64)
                      - b.astype(np.complex128 if b.dtype.kind == "c" else np.float64))
    both_nan = np.isnan(a) & np.isnan(b)
    diff = np.where(both_nan, 0.0, np.where(np.isnan(diff), np.inf, diff))
    flat = int(np.argmax(diff.reshape(-1)))
    index = tuple(int(i) for i in np.unravel_index(flat, a.shape)) if a.shape else ()
    return float(diff.reshape(-1)[flat]), index
