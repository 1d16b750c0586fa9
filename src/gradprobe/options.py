"""Validation of option values shared by every public checker.

Each function returns the normalised value or raises a ``TypeError`` /
``ValueError`` that names the option and says what was expected.
"""
from __future__ import annotations

import numbers
from typing import Any

import numpy as np


def choice(name: str, value: Any, allowed: tuple[str, ...]) -> str:
    """``value`` if it is one of ``allowed``.

    Examples
    --------
    >>> choice("method", "central", ("central", "forward"))
    'central'
    """
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name}={value!r} is not valid; expected one of {', '.join(allowed)}")
    return value


def positive_float(name: str, value: Any, *, allow_zero: bool = False) -> float | None:
    """A finite float > 0 (>= 0 with ``allow_zero``), or None.

    Examples
    --------
    >>> positive_float("rtol", 0, allow_zero=True)
    0.0
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number or None, got {type(value).__name__}")
    v = float(value)
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name}={value!r} is not valid; expected a finite number {bound}")
    return v


def positive_int(name: str, value: Any) -> int | None:
    """An integer >= 1, or None.

    Examples
    --------
    >>> positive_int("samples", 3)
    3
    """
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValueError(f"{name}={value!r} is not valid; expected a positive integer")
    return int(value)


def seed_value(value: Any) -> int:
    """A non-negative integer seed.

    Examples
    --------
    >>> seed_value(7)
    7
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
        raise ValueError(f"seed={value!r} is not valid; expected a non-negative integer")
    return int(value)
