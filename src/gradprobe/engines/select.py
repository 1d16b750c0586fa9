"""Which engine runs a check: the registry of engines, and ``backend`` + the kind of ``f``.

Every engine is a subclass of :class:`~gradprobe.engines.base.Engine` listed in
:data:`ENGINES`. ``backend="auto"`` asks them in that order whether they
:meth:`~gradprobe.engines.base.Engine.claims` ``f`` (the Python engine, last,
takes anything); ``backend=<name>`` picks the engine of that name, which
first :meth:`~gradprobe.engines.base.Engine.accept`\\ s ``f`` or says why not.
Nothing here knows what any engine is: adding one is a module and its name in
``config.ENGINES`` (which ``backend=`` is validated against), and an entry in
``tests/test_engine_contract.py``'s fixture.
"""
from __future__ import annotations

import importlib

from .. import config
from .base import Engine
from .cffi import as_loss

__all__ = ["ENGINES", "as_loss", "engine_class", "engine_named", "local_engine",
           "select_engine"]


def _load(name: str) -> type[Engine]:
    """The engine class named ``name``, from the module ``gradprobe.engines.<name>``."""
    module = importlib.import_module(f"{__package__}.{name}")
    found = [value for value in vars(module).values()
             if isinstance(value, type) and issubclass(value, Engine)
             and value.__module__ == module.__name__
             and getattr(value, "name", None) == name]
    if len(found) != 1:
        raise ImportError(f"config.ENGINES names {name!r}, but gradprobe.engines.{name} "
                          f"defines {len(found)} Engine subclasses named {name!r} (it must "
                          "define exactly one)")
    return found[0]


#: Every engine, in the order ``backend="auto"`` asks them (the Python engine takes any f).
ENGINES: tuple[type[Engine], ...] = tuple(_load(name) for name in config.ENGINES)


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


def engine_named(backend: str) -> type[Engine]:
    """The registered engine class called ``backend``.

    Examples
    --------
    >>> engine_named("python").runs_groups, engine_named("cffi").runs_groups
    (True, False)
    """
    for cls in ENGINES:
        if cls.name == backend:
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
