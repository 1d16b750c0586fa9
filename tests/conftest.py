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


@pytest.fixture(autouse=True)
def _numba_engine_compiles_its_kernel(monkeypatch):
    """The suite tests the Numba engine's kernel, so it is compiled whatever the check's size.

    By default a kernel missing from Numba's cache is compiled only when a check's
    evaluations are predicted to pay for it (``config.NUMBA_COMPILE_PAYOFF_SECONDS``;
    small checks on a cold cache go through ``f``'s dispatcher): without this,
    which path a small test takes would depend on the state of the cache.
    ``tests/test_compilation.py`` tests that default in fresh processes.
    """
    from gradprobe import config

    monkeypatch.setattr(config, "NUMBA_COMPILE_PAYOFF_SECONDS", 0.0)
