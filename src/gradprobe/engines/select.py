"""Which engine runs a check: ``backend`` and the kind of ``f``."""
from __future__ import annotations

from .base import Engine


def select_engine(backend: str, f: object, workers: int | None, client: object = None) -> Engine:
    """The engine for ``backend`` (``"auto"`` picks the fastest that applies).

    ``client`` (a ``distributed.Client``) is for ``backend="dask"`` only. An
    engine with a ``close()`` method holds resources (a cluster, scattered
    data): call :func:`release` when the check is over.
    """
    from .python import PythonEngine

    if backend == "dask":
        if _is_c_loss(f):
            raise TypeError(
                "backend='dask' cannot send a C function (cffi pointer or numba.cfunc) to "
                "worker processes: its address is only valid in the process that made it; use "
                "backend='cffi' (all cores of this machine) or a Python / numba.njit loss")
        from .dask import DaskEngine

        return DaskEngine(client=client, workers=workers)
    if client is not None:
        raise ValueError(f"client= is only used with backend='dask' (backend={backend!r}); "
                         "pass backend='dask' to evaluate the losses on that cluster")
    if backend == "cffi" or (backend == "auto" and _is_c_loss(f)):
        from .cffi import CffiEngine, CFunctionLoss, LOSS_ABI, kernel_available

        if not isinstance(f, CFunctionLoss):
            raise TypeError(
                f"backend='cffi' needs a C loss ({LOSS_ABI}) given as a cffi function "
                f"pointer, got {type(f).__name__}; use backend='python' for a Python f")
        if backend == "auto" and not kernel_available():
            return PythonEngine(workers=workers)  # C kernel not built or turned off
        return CffiEngine(workers=workers)
    if backend == "numba" or (backend == "auto" and _is_numba_function(f)):
        from .numba import NumbaEngine, is_numba_function

        if _is_c_loss(f):
            raise TypeError("backend='numba' runs numba.njit functions; a C loss (cffi "
                            "pointer or numba.cfunc) runs on backend='cffi' (or 'auto')")
        if not is_numba_function(f):
            raise TypeError(
                f"backend='numba' needs a numba.njit function, got {type(f).__name__}; "
                "decorate f with @numba.njit, or use backend='python'")
        return NumbaEngine(workers=workers)
    if backend in ("auto", "python"):
        return PythonEngine(workers=workers)
    raise ValueError(f"backend {backend!r} is not available")


def release(engine: object) -> None:
    """Call ``engine.close()`` if it has one (the Dask engine: cluster, scattered data).

    Examples
    --------
    >>> from gradprobe.engines.python import PythonEngine
    >>> release(PythonEngine())  # nothing to release
    """
    close = getattr(engine, "close", None)
    if close is not None:
        close()


def as_loss(f: object, args: object) -> object:
    """``f``, or a C function (cffi pointer, ``numba.cfunc``) wrapped for Python to call.

    A C loss (``double loss(const double *theta, size_t n, void *ctx)``) is
    wrapped in :class:`gradprobe.engines.cffi.CFunctionLoss` and ``args``
    validated for it; anything else is returned unchanged (cffi is imported
    only when ``f`` is a cffi object or a ``numba.cfunc``).

    Examples
    --------
    >>> as_loss(len, ()) is len
    True
    """
    if type(f).__module__ not in ("_cffi_backend", "numba.core.ccallback") and \
            type(getattr(f, "__self__", None)).__module__ != "_cffi_backend" and \
            not _is_c_loss(f):
        return f
    from .cffi import as_loss as wrap

    return wrap(f, args)


def _is_c_loss(f: object) -> bool:
    """A :class:`~gradprobe.engines.cffi.CFunctionLoss` (checked without importing cffi)."""
    return type(f).__name__ == "CFunctionLoss" and \
        type(f).__module__ == "gradprobe.engines.cffi"


def _is_numba_function(f: object) -> bool:
    """A CPU ``numba.njit`` dispatcher? (Imports the Numba engine only if it may be.)"""
    if not hasattr(f, "py_func") or "numba" not in type(f).__module__:
        return False
    from .numba import is_numba_function

    return is_numba_function(f)
