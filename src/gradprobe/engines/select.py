"""Which engine runs a check: the registry of engines, and ``backend`` + the kind of ``f``.

Every engine is a subclass of :class:`~gradprobe.engines.base.Engine` listed in
:data:`ENGINES`. ``backend="auto"`` asks them in that order whether they
:meth:`~gradprobe.engines.base.Engine.claims` ``f`` (the Python engine, last,
takes anything); ``backend=<name>`` picks the engine of that name, which
first :meth:`~gradprobe.engines.base.Engine.accept`\\ s ``f`` or says why not.
Nothing here knows what any engine is: adding one is a module and a line in
:data:`ENGINES` (and an entry in ``tests/test_engine_contract.py``'s fixture).
"""
from __future__ import annotations

from .base import Engine
from .cffi import CffiEngine, as_loss
from .dask import DaskEngine
from .numba import NumbaEngine
from .python import PythonEngine

__all__ = ["ENGINES", "as_loss", "engine_class", "local_engine", "select_engine"]

#: Every engine, in the order ``backend="auto"`` asks them (the Python engine takes any f).
ENGINES: tuple[type[Engine], ...] = (
    CffiEngine,
    NumbaEngine,
    DaskEngine,
    PythonEngine,
)


def engine_class(backend: str, f: object) -> type[Engine]:
    """The engine class ``backend`` names for ``f`` (``"auto"``: the first that claims it).

    Raises
    ------
    TypeError
        The named engine cannot run ``f`` (the message says what can).
    ValueError
        No engine of that name.

    Examples
    --------
    >>> engine_class("auto", len).name
    'python'
    """
    if backend == "auto":
        return next(cls for cls in ENGINES if not cls.distributed and cls.claims(f))
    for cls in ENGINES:
        if cls.name == backend:
            cls.accept(f)
            return cls
    raise ValueError(f"backend {backend!r} is not available")


def local_engine(f: object) -> type[Engine]:
    """The engine that runs ``f`` in one process (a Dask worker's): ``"auto"``'s choice.

    Examples
    --------
    >>> local_engine(len).name
    'python'
    """
    return engine_class("auto", f)


def select_engine(backend: str, f: object, workers: int | None, client: object = None) -> Engine:
    """The engine for one check of ``f`` on ``backend`` (``"auto"`` picks the fastest).

    ``client`` (a ``distributed.Client``) is for a distributed engine
    (``backend="dask"``) only. Call the engine's ``close()`` when the check is
    over (or use it as a context manager): the Dask engine holds a cluster
    and scattered data.

    Examples
    --------
    >>> with select_engine("auto", len, None) as engine:
    ...     engine.name
    'python'
    """
    if client is not None and not any(cls.distributed and cls.name == backend
                                      for cls in ENGINES):
        raise ValueError(f"client= is only used with backend='dask' (backend={backend!r}); "
                         "pass backend='dask' to evaluate the losses on that cluster")
    cls = engine_class(backend, f)
    return cls.create(f, workers, client=client, local=local_engine)
