"""The optional compiled C kernel ``gradprobe._ckernel``, loaded per ``GRADPROBE_C_KERNEL``.

Two callers share it: the C engine (:mod:`.cffi`: the perturbation loop of
C losses, ``csrc/gp_kernel.c``) and the C twin of :mod:`gradprobe.nn`'s
kernels (:mod:`gradprobe.nn.c_kernels`, ``csrc/gp_nn.c``).

The kernel is built at install time when a C compiler is present. The
environment variable ``GRADPROBE_C_KERNEL`` controls it: ``auto`` (default:
use it when built), ``require`` (a missing kernel is an ImportError with the
reason, from :func:`kernel`, hence from :func:`gradprobe.info` and
``backend="cffi"``) or ``off`` (never load it; C losses then run on the
Python engine and :mod:`gradprobe.nn` on its Numba kernels).

It is loaded on first use, not at import: ``import gradprobe`` loads no C.
"""
from __future__ import annotations

import os
from typing import Any

from .. import config

try:
    import cffi as _cffi  # noqa: F401  (the kernel is a cffi extension)
except ImportError as _exc:  # pragma: no cover - cffi is a dependency
    _CFFI_ERROR: str | None = f"cffi is not installed ({_exc})"
else:
    _CFFI_ERROR = None

#: ``(module or None, status)`` once loaded (see :func:`load`).
_loaded: tuple[Any, str] | None = None


def load() -> tuple[Any, str]:
    """The compiled kernel module (or None) and its status, loaded once.

    The status is ``"available (...)"`` or ``"unavailable: reason"``.

    Raises
    ------
    ImportError
        ``GRADPROBE_C_KERNEL=require`` and the kernel is missing (raised
        again on every call).

    Examples
    --------
    >>> module, state = load()
    >>> (module is not None) == state.startswith("available")
    True
    """
    global _loaded
    if _loaded is None:
        _loaded = _load()
    return _loaded


def kernel() -> Any:
    """The loaded kernel module (``.ffi``, ``.lib``), or None when unavailable.

    Examples
    --------
    >>> module = kernel()
    >>> module is None or module.lib.gp_max_threads() >= 1
    True
    """
    return load()[0]


def status() -> str:
    """``"available (C kernel, up to N threads)"`` or ``"unavailable: reason"``.

    Examples
    --------
    >>> status().split()[0] in ("available", "unavailable:")
    True
    """
    return load()[1]


def available() -> bool:
    """True when the compiled C kernel is loaded.

    Examples
    --------
    >>> available() == status().startswith("available")
    True
    """
    return kernel() is not None


def require(backend: str) -> Any:
    """The kernel module, or a ValueError saying why ``backend`` cannot run.

    Examples
    --------
    >>> not available() or require("cffi") is kernel()
    True
    """
    module, state = load()
    if module is None:
        raise ValueError(f"backend {backend!r} is not available: "
                         + state.removeprefix("unavailable: "))
    return module


def threads(requested: int | None) -> int:
    """Threads for a C kernel call: ``requested`` (default every core this process
    may run on), at most ``gp_max_threads()`` so that the C ``int`` cannot overflow.

    Raises
    ------
    ValueError
        The kernel is not available.

    Examples
    --------
    >>> not available() or threads(1) == 1
    True
    """
    lib = require("cffi").lib
    return min(int(requested) if requested else default_threads(), int(lib.gp_max_threads()))


def default_threads() -> int:
    """Cores this process may run on.

    Examples
    --------
    >>> default_threads() >= 1
    True
    """
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def _load() -> tuple[Any, str]:
    """Import the kernel per ``GRADPROBE_C_KERNEL``."""
    mode = os.environ.get(config.C_KERNEL_ENV, "auto").strip().lower() or "auto"
    if mode not in config.C_KERNEL_MODES:
        return None, (f"unavailable: {config.C_KERNEL_ENV}={mode!r} is not one of "
                      f"{', '.join(config.C_KERNEL_MODES)}")
    if mode == "off":
        return None, f"unavailable: disabled by {config.C_KERNEL_ENV}=off"
    reason = _CFFI_ERROR
    module = None
    if reason is None:
        try:
            from .. import _ckernel as module  # type: ignore[attr-defined, no-redef]
        except ImportError as exc:
            reason = (f"the extension gradprobe._ckernel was not built ({exc}); reinstall "
                      "gradprobe with a C compiler present")
    if module is None:
        if mode == "require":
            raise ImportError(f"{config.C_KERNEL_ENV}=require, but the gradprobe C kernel "
                              f"is unavailable: {reason}")
        return None, f"unavailable: {reason}"
    return module, f"available (C kernel, up to {default_threads()} threads)"

