"""Validation of what the user passes to a model: inputs, targets, gradients.

Every error is a ``TypeError`` (wrong kind or dtype) or ``ValueError`` (wrong
shape or value) whose message names the argument. Nothing here writes the
user's arrays; the ``prepare_*`` functions return new arrays.
"""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from . import constants
from ..problem.params import match_structure


def _as_real_array(value: Any, name: str) -> np.ndarray:
    if isinstance(value, np.ndarray):
        array = value
    elif isinstance(value, (list, tuple)):
        try:
            array = np.asarray(value)
        except ValueError as exc:
            raise TypeError(f"{name} is not a rectangular array: {exc}") from exc
    else:
        raise TypeError(f"{name} must be a NumPy array, got {type(value).__name__}")
    if array.dtype.kind == "b" or array.dtype.kind not in "fiu":
        raise TypeError(f"{name} has dtype {array.dtype}; expected a real (float or integer) "
                        "array")
    return array


def _finite(array: np.ndarray, name: str) -> None:
    if array.dtype.kind == "f" and not np.all(np.isfinite(array)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise ValueError(f"{name} contains a non-finite value ({array[bad]!r} at index {bad})")


def validate_inputs(X: Any, n_in: int) -> np.ndarray:
    """Check the inputs ``X``: a finite real array of shape ``(batch, n_in)``."""
    array = _as_real_array(X, "X")
    if array.ndim != 2:
        raise ValueError(f"X must be 2-d (batch, {n_in}), got shape {array.shape}")
    if array.shape[0] == 0:
        raise ValueError("X is empty: the batch needs at least one example")
    if array.shape[1] != n_in:
        raise ValueError(f"X has {array.shape[1]} columns but the first Dense layer takes "
                         f"n_in={n_in} (X has shape {array.shape})")
    _finite(array, "X")
    return array


def prepare_targets(T: Any, loss_code: int, batch: int, n_out: int,
                    dtype: np.dtype) -> np.ndarray:
    """A new dense target array of shape ``(batch, n_out)`` in ``dtype``.

    Mean squared error takes real targets of the output's shape (``(batch,)``
    when ``n_out == 1``); softmax cross-entropy takes integer labels of shape
    ``(batch,)`` (one-hot encoded here) or real rows of shape ``(batch, n_out)``.
    """
    array = _as_real_array(T, "T")
    if loss_code == constants.LOSS_SOFTMAX_CE and array.dtype.kind in "iu":
        if array.shape != (batch,):
            raise ValueError(f"T holds integer class labels, so it must have shape ({batch},) "
                             f"(one label per example of X), got {array.shape}")
        if array.size and (array.min() < 0 or array.max() >= n_out):
            raise ValueError(f"T holds class labels outside [0, {n_out}) "
                             f"(min {array.min()}, max {array.max()})")
        out = np.zeros((batch, n_out), dtype=dtype)
        out[np.arange(batch), array.astype(np.int64)] = 1.0
        return out
    if array.ndim == 1 and n_out == 1 and array.shape == (batch,):
        array = array.reshape(batch, 1)
    if array.shape != (batch, n_out):
        kind = "targets" if loss_code == constants.LOSS_MSE else "target probabilities"
        raise ValueError(f"T must hold {kind} of shape ({batch}, {n_out}) (batch of X, "
                         f"outputs of the last Dense layer), got {array.shape}")
    _finite(array, "T")
    return np.array(array, dtype=dtype, order="C")


def validate_grads(grads: Any, params: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Check that ``grads`` is a dict with the keys and shapes of ``params``
    (:func:`gradprobe.problem.params.match_structure`, the rule of every check)."""
    arrays = match_structure(grads, "dict", list(params), [p.shape for p in params.values()],
                             what="grads", like="model.parameters()")
    return dict(zip(params, arrays))


def validate_params(params: Mapping[str, np.ndarray], shapes: Mapping[str, tuple[int, ...]],
                    *, finite: bool) -> None:
    """Check every parameter's dtype and shape (and finiteness when ``finite``).

    The kernels index the arrays without bounds checks, so a layer whose
    ``W`` was replaced by an array of another shape must be caught here.
    """
    for name, shape in shapes.items():
        array = params[name]
        if not isinstance(array, np.ndarray) or array.dtype.kind != "f":
            raise TypeError(f"parameter {name!r} must be a floating NumPy array, got "
                            f"{getattr(array, 'dtype', type(array).__name__)}")
        if array.shape != shape:
            raise ValueError(f"parameter {name!r} has shape {array.shape}, but its layer "
                             f"needs {shape}")
        if finite and not np.all(np.isfinite(array)):
            bad = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
            raise ValueError(f"parameter {name!r} contains a non-finite value "
                             f"({array[bad]!r} at index {bad}); gradients can only be "
                             "checked at finite points")
