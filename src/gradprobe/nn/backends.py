"""Which kernels run a model: the Numba kernels or their C twin.

A *kernel set* carries every kernel a forward pass, a backward pass and the
structured check call (``matmul``, ``dense_forward``, ``transpose``,
``column_sums``, ``activation_forward``, ``activation_backward``, the loss
kernels, ``contract`` and ``entry_differences``), with the signatures of
:mod:`.kernels`. :data:`NUMBA` is the default everywhere;
:class:`gradprobe.nn.c_kernels.CKernels` is the C twin
(``backend="cffi"``).
"""
from __future__ import annotations

from typing import Any

from . import kernels
from .contraction import contract
from .entry_kernel import entry_differences

#: Backends of the structured check: "auto" is the Numba kernels.
BACKENDS = ("auto", "numba", "cffi")


class NumbaKernels:
    """The Numba kernels (threads: Numba's thread count)."""

    name = "numba"
    matmul = staticmethod(kernels.matmul)
    dense_forward = staticmethod(kernels.dense_forward)
    transpose = staticmethod(kernels.transpose)
    column_sums = staticmethod(kernels.column_sums)
    activation_forward = staticmethod(kernels.activation_forward)
    activation_backward = staticmethod(kernels.activation_backward)
    mse_loss = staticmethod(kernels.mse_loss)
    mse_backward = staticmethod(kernels.mse_backward)
    softmax_ce_loss = staticmethod(kernels.softmax_ce_loss)
    softmax_ce_backward = staticmethod(kernels.softmax_ce_backward)
    contract = staticmethod(contract)
    entry_differences = staticmethod(entry_differences)


#: The default kernel set.
NUMBA = NumbaKernels()


def kernel_set(backend: str, workers: int | None = None) -> Any:
    """The kernels of ``backend`` ("auto", "numba" or "cffi").

    ``workers`` is the C kernels' thread count (the Numba kernels follow
    Numba's thread count, which the caller sets).

    Raises
    ------
    ValueError
        Unknown backend, or "cffi" when the C kernel is not available
        (the message says why).

    Examples
    --------
    >>> kernel_set("numba").name
    'numba'
    >>> kernel_set("python")
    Traceback (most recent call last):
    ...
    ValueError: backend must be one of 'auto', 'numba', 'cffi' for a gradprobe.nn model (its kernels are Numba or C), got 'python'
    """
    if backend in ("auto", "numba"):
        return NUMBA
    if backend == "cffi":
        from .c_kernels import CKernels

        return CKernels(workers)
    raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))} for a "
                     f"gradprobe.nn model (its kernels are Numba or C), got {backend!r}")
