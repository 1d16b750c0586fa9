"""Which kernels run a model: the Numba kernels or their C twin.

A *kernel set* carries every kernel a forward pass, a backward pass and the
structured check call (``matmul``, ``dense_forward``, ``transpose``,
``column_sums``, ``max_abs``, ``activation_forward``, ``activation_backward``,
the loss kernels, ``contract``, ``finish_mse``, ``finish_softmax`` and
``entry_differences``), with the signatures of :mod:`.kernels`.
:data:`NUMBA` is the Numba set; :class:`gradprobe.nn.c_kernels.CKernels` is
its C twin (``backend="cffi"``).

The default (``backend="auto"``, and models' ``trace`` / ``gradients``
without ``kernels``) is the C twin when the C kernel was built: it was
compiled at install, so a first check in a fresh environment compiles
nothing, and it gives the same bits as the Numba kernels (the tests compare
them). Without it (no compiler at install, ``GRADPROBE_C_KERNEL=off``) the
default is the Numba kernels, which compile on first use and are cached on
disk (``python -m gradprobe warmup`` compiles them ahead of time).
"""
from __future__ import annotations

from typing import Any

from .. import config
from ..compilation import install_notice
from . import kernels
from .contraction import contract
from .entry_kernel import entry_differences
from .head_kernels import finish_mse, finish_softmax

install_notice()  # says so once when a slow kernel compiles on a first run

#: Backends of the structured check (defined in :mod:`gradprobe.config`).
BACKENDS = config.MODEL_BACKENDS


class NumbaKernels:
    """The Numba kernels (threads: Numba's thread count)."""

    name = "numba"
    #: The ``backend`` a report of a check on these kernels names.
    report_backend = "nn-structured"
    #: What the report's first note adds about the kernels ("" for none).
    note = ""
    #: Compiled on first use (then loaded from Numba's disk cache).
    compiles_on_first_use = True
    #: Threads follow Numba's thread count (the caller sets it from ``workers``).
    numba_threads = True
    matmul = staticmethod(kernels.matmul)
    dense_forward = staticmethod(kernels.dense_forward)
    transpose = staticmethod(kernels.transpose)
    column_sums = staticmethod(kernels.column_sums)
    max_abs = staticmethod(kernels.max_abs)
    activation_forward = staticmethod(kernels.activation_forward)
    activation_backward = staticmethod(kernels.activation_backward)
    mse_loss = staticmethod(kernels.mse_loss)
    mse_backward = staticmethod(kernels.mse_backward)
    softmax_ce_loss = staticmethod(kernels.softmax_ce_loss)
    softmax_ce_backward = staticmethod(kernels.softmax_ce_backward)
    contract = staticmethod(contract)
    finish_mse = staticmethod(finish_mse)
    finish_softmax = staticmethod(finish_softmax)
    entry_differences = staticmethod(entry_differences)


#: The Numba kernel set.
NUMBA = NumbaKernels()


def default_kernels() -> Any:
    """The kernels used when none are named: the C twin when built, else :data:`NUMBA`.

    Examples
    --------
    >>> from gradprobe.nn import c_kernels
    >>> default_kernels().name == ("cffi" if c_kernels.available() else "numba")
    True
    """
    from . import c_kernels

    return c_kernels.CKernels() if c_kernels.available() else NUMBA


def kernel_set(backend: str, workers: int | None = None) -> Any:
    """The kernels of ``backend`` ("auto", "numba" or "cffi").

    "auto" is the C twin when the C kernel was built, else the Numba kernels
    (:func:`default_kernels`). ``workers`` is the C kernels' thread count
    (the Numba kernels follow Numba's thread count, which the caller sets).

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
    if backend == "auto":
        backend = default_kernels().name
    if backend == "numba":
        return NUMBA
    if backend == "cffi":
        from .c_kernels import CKernels

        return CKernels(workers)
    raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))} for a "
                     f"gradprobe.nn model (its kernels are Numba or C), got {backend!r}")
