"""The optional compiled C kernel ``gradprobe._ckernel``: loaded per ``GRADPROBE_C_KERNEL``.

The C engine (:mod:`.cffi`) and the C twin of :mod:`gradprobe.nn`'s kernels
(:mod:`gradprobe.nn.c_kernels`) both call it.
"""
from __future__ import annotations

import os
from typing import Any

from .. import config

try:
    import cffi as _cffi  # noqa: F401  (the kernel is a cffi module)
except ImportError as _exc:  # pragma: no cover - cffi is a dependency
    _CFFI_ERROR: str | None = f"cffi is not installed ({_exc})"
else:
    _CFFI_ERROR = None


def _load_kernel() -> tuple[Any, str]:
    """The compiled kernel module (or None) and its state, per ``GRADPROBE_C_KERNEL``."""
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
    return module, f"available (C kernel, up to {_default_threads()} threads)"


def _default_threads() -> int:
    """Cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


_KERNEL, KERNEL_STATUS = _load_kernel()


def kernel_threads(requested: int | None) -> int:
    """Threads for a C kernel call: ``requested`` (default every core), at most
    ``gp_max_threads()`` so that the C ``int`` cannot overflow (the kernel is loaded)."""
    return min(int(requested) if requested else _default_threads(),
               int(_KERNEL.lib.gp_max_threads()))


def kernel_available() -> bool:
    """True when the compiled C kernel is loaded.

    Examples
    --------
    >>> from gradprobe.engines import cffi as c_engine
    >>> c_engine.kernel_available() == c_engine.KERNEL_STATUS.startswith("available")
    True
    """
    return _KERNEL is not None
