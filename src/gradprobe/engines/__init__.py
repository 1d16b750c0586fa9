"""Engines: where perturbed losses are evaluated.

Every engine implements the same contract (:class:`~gradprobe.engines.base.Engine`):
given a parameter, the flat indices of some of its entries and, for every
entry, the values to write into it, return the loss at each of those points.
Difference formulas, step sizes and verdicts live elsewhere, so an engine is
only a loop, and a faster engine is tested against :mod:`.python`.
"""
from .base import Engine
from .select import select_engine

__all__ = ["Engine", "select_engine"]
