"""Engines: where perturbed losses are evaluated.

Every engine implements the same contract (:class:`~gradprobe.engines.base.Engine`):
given a parameter, the flat indices of some of its entries and, for every
entry, the values to write into it, return the loss at each of those points.
Difference formulas, step sizes and verdicts live elsewhere, so an engine is
only a loop, and a faster engine is tested against :mod:`.python`
(``tests/test_engine_contract.py`` runs one suite on every engine).

``base.py`` is the contract (a base class with defaults), ``select.py`` the
registry and the choice of an engine, ``ckernel.py`` the loader of the
optional C kernel; ``python.py``, ``numba.py`` (+ ``numba_kernel.py``),
``cffi.py`` and ``dask.py`` are the engines, one module each.
"""
from .base import Engine
from .select import select_engine

__all__ = ["Engine", "select_engine"]
