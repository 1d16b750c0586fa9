"""Tensors of array libraries (PyTorch, JAX) at gradprobe's boundary: one mechanism.

gradprobe computes on NumPy arrays: its private working copies, its
differences and its reports. A user's ``f`` may instead take and return
``torch.Tensor`` or ``jax.Array`` values. This module is the one place where
the two meet:

* :func:`tensor_kind` recognizes a tensor (without importing torch or JAX:
  only a library the user already imported can have made one) and records
  what :meth:`TensorKind.to_tensor` needs to make its twin from a NumPy
  array: the library, the device, the dtype;
* :func:`to_numpy` copies a tensor's values into a NumPy array (detached,
  on the host), so the user's tensor is never written;
* :func:`TensorKind.to_tensor` makes a tensor on the user's device from a
  working copy, in the working copy's dtype (float32 inputs evaluated in
  float64 become float64 tensors on the same device);
* :func:`calling` is the context ``f`` is called in: for JAX, 64-bit mode
  for the call only (``jax.enable_x64``), so the user's global
  ``jax_enable_x64`` setting is left as it was.

:class:`~gradprobe.problem.params.ParamSet` uses these when it validates the
user's parameters (tensors become NumPy copies), when it calls ``f`` (the
working copies become tensors again), and :func:`as_host_array` when
anything ``f`` or a ``grads``/``vjp`` callable returned is read, so every
entry point (scalar checks, vector checks, the torch and JAX adapters, the
pytest fixture) goes through the same conversion.
"""
from __future__ import annotations

import contextlib
import sys
from dataclasses import dataclass
from typing import Any, Iterator, Sequence

import numpy as np


def _torch() -> Any:
    """The torch module if the user imported it, else None (never imports it)."""
    return sys.modules.get("torch")


def _jax() -> Any:
    """The jax module if the user imported it, else None (never imports it)."""
    return sys.modules.get("jax")


def framework(value: Any) -> str | None:
    """``"torch"``, ``"jax"`` or None: the array library ``value`` is a tensor of.

    Examples
    --------
    >>> framework(np.ones(2)) is None
    True
    """
    if isinstance(value, np.ndarray):
        return None
    module = type(value).__module__
    if module.startswith("torch"):
        torch = _torch()
        if torch is not None and isinstance(value, torch.Tensor):
            return "torch"
    elif module.startswith(("jax", "jaxlib")):
        jax = _jax()
        if jax is not None and isinstance(value, jax.Array):
            return "jax"
    return None


def is_tensor(value: Any) -> bool:
    """True for a ``torch.Tensor`` or a ``jax.Array``.

    Examples
    --------
    >>> is_tensor([1.0]), is_tensor(np.zeros(1))
    (False, False)
    """
    return framework(value) is not None


@dataclass(frozen=True)
class TensorKind:
    """What a tensor was: enough to make its twin from a NumPy array.

    Attributes
    ----------
    framework : {"torch", "jax"}
    device : object
        The tensor's device (``torch.device``, or a JAX device).
    dtype : str
        Its dtype's name (``"float32"``), for messages.
    """

    framework: str
    device: Any
    dtype: str

    def to_tensor(self, array: Any) -> Any:
        """A tensor on :attr:`device` holding ``array`` (its dtype kept).

        ``array`` is a private working copy (or a value gradprobe made): a
        CPU torch tensor shares its memory, anything else is copied.
        Non-arrays are returned unchanged.
        """
        if not isinstance(array, np.ndarray):
            return array
        if self.framework == "torch":
            torch = _torch()
            if self.device.type == "cpu" and array.dtype.kind in "fc" and \
                    array.flags.writeable:
                return torch.from_numpy(array)
            return torch.as_tensor(np.ascontiguousarray(array), device=self.device)
        jax = _jax()
        return jax.device_put(array, self.device)


    def to_tensors(self, value: Any) -> Any:
        """:meth:`to_tensor` of an array, or of each array in a tuple, list or dict
        (a tangent in the structure of the inputs)."""
        if isinstance(value, (tuple, list)):
            return type(value)(self.to_tensors(v) for v in value)
        if isinstance(value, dict):
            return {k: self.to_tensors(v) for k, v in value.items()}
        return self.to_tensor(value)


def tensor_kind(value: Any) -> TensorKind | None:
    """The :class:`TensorKind` of a tensor, or None for anything else.

    Examples
    --------
    >>> tensor_kind(np.ones(3)) is None
    True
    """
    kind = framework(value)
    if kind == "torch":
        return TensorKind("torch", value.device, str(value.dtype).replace("torch.", ""))
    if kind == "jax":
        devices = getattr(value, "devices", None)
        device = next(iter(devices())) if callable(devices) else None
        return TensorKind("jax", device, str(value.dtype))
    return None


def to_numpy(value: Any, name: str = "value", *, copy: bool = True) -> Any:
    """A tensor's values as a NumPy array (a private copy unless ``copy=False``);
    anything else unchanged.

    A torch tensor is detached and moved to the host (its autograd graph and
    the tensor itself are left alone); ``bfloat16``, which NumPy has no dtype
    for, is a ``TypeError`` saying what to do.

    Examples
    --------
    >>> to_numpy([1.0, 2.0])
    [1.0, 2.0]
    """
    kind = framework(value)
    if kind == "torch":
        torch = _torch()
        if value.dtype == torch.bfloat16:
            raise TypeError(f"{name} is a bfloat16 tensor, which NumPy cannot hold; check "
                            f"it in float32 ({name}.float()): gradprobe evaluates float32 "
                            "in float64 anyway")
        tensor = value.detach()
        if tensor.layout != torch.strided:
            tensor = tensor.to_dense()
        tensor = tensor.resolve_conj().resolve_neg().cpu()
        array = tensor.numpy()
        return np.array(array, copy=True) if copy or tensor is value else array
    if kind == "jax":
        array = np.asarray(value)
        return np.array(array, copy=True) if copy else array
    return value


def as_host_array(value: Any) -> Any:
    """What a user's function returned, tensors turned into NumPy arrays (no copy
    where avoidable), tuples and lists and dicts of them too; anything else unchanged.

    The one conversion of results: losses, outputs, gradients, VJPs.

    Examples
    --------
    >>> as_host_array((1.0, np.ones(1)))
    (1.0, array([1.]))
    """
    if isinstance(value, (np.ndarray, float, int)):
        return value
    if framework(value) is not None:
        return to_numpy(value, copy=False)
    if isinstance(value, (tuple, list)) and any(framework(v) is not None for v in value):
        return type(value)(as_host_array(v) for v in value)
    if isinstance(value, dict) and any(framework(v) is not None for v in value.values()):
        return {k: as_host_array(v) for k, v in value.items()}
    return value


def widen(value: Any, wide: np.dtype) -> Any:
    """A floating tensor narrower than ``wide`` as a new tensor of dtype ``wide`` on
    its own device (the values are exact); anything else unchanged.

    JAX arrays are left alone: inside :func:`calling` JAX promotes them.
    """
    if framework(value) == "torch" and value.is_floating_point() and \
            value.element_size() < np.dtype(wide).itemsize:
        torch = _torch()
        return value.detach().to(getattr(torch, np.dtype(wide).name))
    return value


@contextlib.contextmanager
def calling(kinds: Sequence[TensorKind | None]) -> Iterator[None]:
    """The context a function of these tensors is called in.

    For JAX inputs: 64-bit mode for the duration of the call (so float64
    working copies stay float64), the user's global ``jax_enable_x64``
    restored afterwards. Nothing for torch.
    """
    if any(k is not None and k.framework == "jax" for k in kinds):
        jax = _jax()
        if bool(jax.config.jax_enable_x64):
            yield
            return
        with _x64(jax):
            yield
        return
    yield


def _x64(jax: Any) -> Any:
    """JAX's scoped 64-bit mode: ``jax.enable_x64(True)`` (JAX >= 0.7), else
    ``jax.experimental.enable_x64()``."""
    state = getattr(jax, "enable_x64", None)
    if state is not None and callable(state):
        return state(True)
    import jax.experimental as experimental

    scoped = getattr(experimental, "enable_x64", None)
    if scoped is None:  # pragma: no cover - a JAX without any scoped switch
        raise RuntimeError(
            "this JAX has no scoped 64-bit mode (jax.enable_x64): set "
            "jax.config.update('jax_enable_x64', True) before the check, or pass "
            "upcast=False to evaluate in float32")
    return scoped()


def leading_kind(kinds: Sequence[TensorKind | None]) -> TensorKind | None:
    """The kind values gradprobe makes (cotangents, tangents) are given to a
    function of tensors in: that of its first tensor input.

    Examples
    --------
    >>> leading_kind([None, None]) is None
    True
    """
    return next((k for k in kinds if k is not None), None)
