"""Shared fixtures: copies of the user's arrays to prove they are untouched."""
from __future__ import annotations

import numpy as np
import pytest


def snapshot(structure):
    """Bit-exact copies of every array in a params structure."""
    if isinstance(structure, dict):
        return {k: np.array(v, copy=True) for k, v in structure.items()}
    if isinstance(structure, (tuple, list)):
        return [np.array(v, copy=True) for v in structure]
    return np.array(structure, copy=True)


def assert_unchanged(structure, before):
    """Every array equals its snapshot bit for bit (NaN payloads included)."""
    if isinstance(structure, dict):
        pairs = [(structure[k], before[k]) for k in before]
    elif isinstance(structure, (tuple, list)):
        pairs = list(zip(structure, before))
    else:
        pairs = [(structure, before)]
    for now, then in pairs:
        now = np.asarray(now)
        assert now.dtype == then.dtype and now.shape == then.shape
        assert now.tobytes() == then.tobytes()


@pytest.fixture
def unchanged():
    """``with unchanged(params): ...`` asserts the arrays are bit-identical afterwards."""
    import contextlib

    @contextlib.contextmanager
    def guard(structure):
        before = snapshot(structure)
        try:
            yield
        finally:
            assert_unchanged(structure, before)

    return guard
