"""JAX front end: a function's ``jax.vjp`` (its ``custom_vjp`` rules) checked through
the vector-check pipeline.

:func:`check_function` builds the ``f`` (the function itself) and ``vjp``
(``jax.vjp``'s pullback of a cotangent) of :func:`gradprobe.checks.vjp.vjp_check`.
JAX arrays are immutable: the working copies are NumPy arrays, and every
evaluation gets fresh JAX arrays made from them (:mod:`gradprobe.problem.tensors`),
in 64-bit mode for the call only, so the user's global ``jax_enable_x64``
setting is left as it was. JAX is imported only when this is called.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from ..options import CheckOptions
from ..problem.tensors import framework
from ..report.reports import CheckReport
from .autograd import adapter_notes, argument_names, require, select_inputs
from .vjp import vjp_check

CHECK_FUNCTION = "gradprobe.jax.check_function"


def _jax() -> Any:
    return require("jax", "gradprobe.jax", "JAX", "jax", "jax jaxlib")


def _is_checked(value: Any) -> bool:
    """A floating JAX (or NumPy) array: its gradient is checked."""
    if framework(value) == "jax" or isinstance(value, np.ndarray):
        kind = np.dtype(value.dtype).kind
        if kind == "c":
            raise TypeError("complex arrays are not supported: gradprobe checks real "
                            "gradients; pass the real and imaginary parts as two arrays")
        return kind == "f"
    return False


def flat_output(out: Any, caller: str) -> Any:
    """The function's output as one array: itself, or its floating outputs
    flattened and concatenated when it returned a tuple or list."""
    jnp = _jax().numpy
    if isinstance(out, (tuple, list)):
        floating = [o for o in out if hasattr(o, "dtype") and np.dtype(o.dtype).kind == "f"]
        if not floating:
            raise TypeError(f"{caller}: the function returned {type(out).__name__} with no "
                            "floating-point array; it must return arrays")
        if len(floating) == 1:
            return floating[0]
        return jnp.concatenate([jnp.ravel(o) for o in floating])
    if not hasattr(out, "dtype"):
        raise TypeError(f"{caller}: the function returned {type(out).__name__}; it must "
                        "return an array or a tuple of arrays")
    return out


def check_function(fn: Callable[..., Any], *inputs: Any, cotangents: Any = None,
                   seed: int = 0, upcast: bool = True, **options: Any) -> CheckReport:
    """Check a JAX function's reverse-mode derivative (``jax.vjp``: its
    ``custom_vjp`` rules) against numerical derivatives of the function.

    Every floating-point array among ``inputs`` (JAX or NumPy) is checked;
    other inputs (integers, flags) are held fixed. For each cotangent ``u``,
    ``jax.vjp(fn, *inputs)[1](u)`` is compared entry by entry with numerical
    derivatives of ``fn``: the pipeline of :func:`gradprobe.check_vjp` with
    its compressed Jacobians, localization and diagnosis.

    float32 inputs are evaluated in float64 (``upcast=True``) inside JAX's
    scoped 64-bit mode: the global ``jax_enable_x64`` setting is not changed.
    The backward pass runs in the inputs' own dtype.

    Parameters
    ----------
    fn : callable
        ``fn(*inputs) -> array`` (or a tuple of arrays: their floating outputs
        are checked together, flattened); ``jax.jit``-compiled or not.
    *inputs
        The point: JAX arrays (never changed: they are immutable, every
        perturbed point is a new array) and any other arguments of ``fn``.
    cotangents, seed, upcast, **options
        As for :func:`gradprobe.torch.check_function`.

    Returns
    -------
    CheckReport
        One :class:`~gradprobe.report.reports.ParamReport` per checked input,
        named by ``fn``'s argument names.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, gradprobe.jax
    >>> @jax.custom_vjp
    ... def cube(x):
    ...     return x ** 3
    >>> cube.defvjp(lambda x: (x ** 3, x), lambda x, g: (3 * x ** 2 * g,))
    >>> gradprobe.jax.check_function(cube, jnp.linspace(-1.0, 1.0, 5)).passed
    True
    """
    jax = _jax()
    if not callable(fn):
        raise TypeError(f"{CHECK_FUNCTION}: fn must be callable, got {type(fn).__name__}")
    opts = CheckOptions.build(CHECK_FUNCTION, {"seed": seed, "upcast": upcast, **options})
    names = argument_names(fn, len(inputs))
    selected = select_inputs(inputs, names, _is_checked, CHECK_FUNCTION, "arrays")

    def call(values: dict[str, Any]) -> Any:
        return flat_output(fn(*selected.full(values)), CHECK_FUNCTION)

    def forward(*_: Any, **arrays: Any) -> Any:
        return call(arrays)

    def vjp(u: Any, *_: Any, **arrays: Any) -> dict[str, Any]:
        order = list(arrays)

        def of_checked(*values: Any) -> Any:
            return call(dict(zip(order, values)))

        out, pullback = jax.vjp(of_checked, *(arrays[n] for n in order))
        grads = pullback(jax.numpy.asarray(u, dtype=out.dtype).reshape(out.shape))
        return dict(zip(order, grads))

    arrays = {n: inputs[i] for n, i in zip(selected.checked_names, selected.checked)}
    label = getattr(fn, "__qualname__", None) or getattr(fn, "__name__", type(fn).__name__)
    notes = adapter_notes(f"jax.vjp of {label}", selected, "arrays")
    report = vjp_check(forward, arrays, vjp, cotangents, (), opts, caller=CHECK_FUNCTION)
    report.notes = notes + [n for n in report.notes if n not in notes]
    return report
