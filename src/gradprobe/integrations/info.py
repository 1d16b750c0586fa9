"""Version and the engines available in this installation."""
from __future__ import annotations

import platform
from importlib import metadata
from typing import Any

try:
    __version__ = metadata.version("gradprobe")
except metadata.PackageNotFoundError:  # running from a source tree
    __version__ = "0+unknown"


def info() -> dict[str, Any]:
    """Version, platform and the state of every engine.

    Returns
    -------
    dict
        ``{"gradprobe": version, "python": ..., "numpy": ..., "engines":
        {name: "available" | "unavailable: reason"}}``; ``"cffi"`` is the
        optional C kernel (see ``GRADPROBE_C_KERNEL`` in
        ``gradprobe.engines.ckernel``); ``"dask"`` needs the extra
        ``gradprobe[dask]``.

    Raises
    ------
    ImportError
        With ``GRADPROBE_C_KERNEL=require`` when the C kernel is missing.

    Examples
    --------
    >>> import gradprobe as gp
    >>> gp.info()["engines"]["python"]
    'available'
    """
    import numpy

    engines: dict[str, str] = {"python": "available"}
    try:
        import numba
        engines["numba"] = (f"available (numba {numba.__version__}, "
                            f"{numba.config.NUMBA_NUM_THREADS} threads)")
    except ImportError as exc:  # pragma: no cover - numba is a dependency
        engines["numba"] = f"unavailable: {exc}"
    # GRADPROBE_C_KERNEL=require: a missing kernel raises ImportError here.
    from ..engines import ckernel
    engines["cffi"] = ckernel.status()
    from ..engines.dask import status as dask_status  # without importing dask
    engines["dask"] = dask_status()
    return {
        "gradprobe": __version__,
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "engines": engines,
    }


def format_info(data: dict[str, Any]) -> str:
    """The text printed by ``python -m gradprobe info``."""
    lines = [f"gradprobe {data['gradprobe']} (Python {data['python']}, NumPy {data['numpy']})",
             "engines:"]
    lines += [f"  {name:8s} {state}" for name, state in data["engines"].items()]
    return "\n".join(lines)
