"""The ECnoise-style estimator recovers known noise levels."""
from __future__ import annotations

import numpy as np
import pytest

from gradprobe.problem.noise import estimate_noise, noise_from_table


@pytest.mark.parametrize("sigma", [1e-14, 1e-10, 1e-6])
def test_recovers_gaussian_noise_within_a_factor_of_three(sigma):
    rng = np.random.default_rng(42)
    levels = []
    for _ in range(50):
        t = np.arange(-4, 5) * 1e-3
        values = 2.0 + np.sin(t) + sigma * rng.standard_normal(9)
        level, status = noise_from_table(values)
        assert status == 1
        levels.append(level)
    median = np.median(levels)
    assert sigma / 3 < median < 3 * sigma


def test_too_small_spacing_is_detected():
    values = np.full(9, 1.0)
    values[4] = 1.0 + 2.0 ** -52
    assert noise_from_table(values)[1] == 2


def test_too_large_spacing_is_detected():
    t = np.arange(-4, 5) * 0.5
    assert noise_from_table(np.exp(t))[1] == 3


def test_estimate_adapts_spacing_and_counts_evaluations():
    calls = []

    def along(t):
        calls.append(t)
        return float(np.float32(1.0 + 0.5 * t + t * t))  # float32 rounding noise

    est = estimate_noise(along, 1e-10, floor=0.0)
    assert est.measured
    assert est.evaluations == len(calls) > 9  # the first spacing was too small
    assert 1e-9 < est.level < 1e-6  # about a float32 ulp of 1


def test_falls_back_to_floor_for_a_constant():
    est = estimate_noise(lambda t: 3.0, 1e-4, floor=1e-15)
    assert not est.measured and est.level == 1e-15
