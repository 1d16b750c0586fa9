"""The fused kernels of compressed Jacobians against the NumPy passes they replace.

``gradprobe.differences.line_kernel`` must give the same bits as
:meth:`Stencil.estimate` along a line, as the NumPy ``VjpSink`` and as the
verification direction of ``run_groups``; and a whole check must not change
with ``config.LINE_KERNEL_MIN_OUTPUTS``.
"""
from __future__ import annotations

import numpy as np
import pytest

import gradprobe as gp
from gradprobe import config
from gradprobe.differences import compression, line_kernel
from gradprobe.differences.stencils import Stencil
from gradprobe.examples import blackbox_layers as bl


@pytest.mark.parametrize("seed", range(6))
def test_central_line_matches_the_stencil(seed):
    rng = np.random.default_rng(seed)
    m = int(rng.integers(1, 3000))
    scale = 10.0 ** rng.uniform(-8, 8)
    y0 = scale * rng.standard_normal(m)
    h = float(2.0 ** rng.integers(-30, -2))
    slope = rng.standard_normal(m) * 10.0 ** rng.uniform(-3, 3)
    curve = rng.standard_normal(m) * 10.0 ** rng.uniform(-3, 3)
    yp = y0 + slope * h + curve * h * h
    ym = y0 - slope * h + curve * h * h
    yp[: m // 7] = y0[: m // 7]          # outputs that do not move
    noise = np.abs(y0) * 10.0 ** rng.uniform(-17, -10, m)
    eps = float(np.finfo(np.float64).eps)
    got = line_kernel.central_line(yp, ym, y0, noise, h, eps)
    points = Stencil("central").points(np.zeros(1), np.array([h]))
    ref = Stencil("central").estimate(np.stack([yp, ym], axis=1), np.zeros(m),
                                      np.broadcast_to(points, (m, 2)), f0=y0, noise=noise,
                                      eps=eps)
    for a, b in zip(got, (ref.value, ref.error_bar, ref.left, ref.right, ref.truncation)):
        np.testing.assert_array_equal(a, b)


def _numpy_sink(us, scale, groups):
    sink = compression.VjpSink(us, scale)
    for members, owners, valid, est in groups:
        position = np.zeros(scale.size, dtype=np.int64)
        position[members] = np.arange(members.size)
        local = position[owners[valid]]
        inverse = 1.0 / scale[members]
        for k, uk in enumerate(sink.us):
            sink.value[k, members] += np.bincount(local, uk[valid] * est.value[valid],
                                                  minlength=members.size) * inverse
            sink.bar[k, members] += np.bincount(local, np.abs(uk[valid]) * est.error_bar[valid],
                                                minlength=members.size) * inverse
    return sink


@pytest.mark.parametrize("seed", range(5))
def test_vjp_and_direction_kernels_match_numpy(seed):
    rng = np.random.default_rng(seed)
    n, m, k = int(rng.integers(2, 200)), int(rng.integers(1, 2000)), int(rng.integers(1, 5))
    us = rng.standard_normal((k, m))
    scale = np.maximum(1.0, np.abs(rng.standard_normal(n) * 10))
    xi = rng.standard_normal(n)
    colors = rng.integers(0, 4, n)
    groups = []
    for g in range(4):
        members = np.flatnonzero(colors == g).astype(np.int64)
        owners = np.full(m, -1, dtype=np.int64)
        if members.size:
            take = rng.random(m) < 0.8
            owners[take] = rng.choice(members, size=int(take.sum()))
        est = compression.Estimate(rng.standard_normal(m), np.abs(rng.standard_normal(m)))
        groups.append((members, owners, owners >= 0, est))
    ref = _numpy_sink(us, scale, groups)
    sink = compression.VjpSink(us, scale)
    along, along_bar = np.zeros(m), np.zeros(m)
    along_ref, bar_ref = np.zeros(m), np.zeros(m)
    for members, owners, valid, est in groups:
        position = np.zeros(n, dtype=np.int64)
        position[members] = np.arange(members.size)
        line_kernel.accumulate_vjp(owners, position, sink._us_t, est.value, est.error_bar,
                                   members, 1.0 / scale[members], sink.value, sink.bar)
        stray = line_kernel.accumulate_direction(owners, est.value, est.error_bar, xi, along,
                                                 along_bar)
        moved = compression._outside(est.value[~valid], 0.0, est.error_bar[~valid])
        expected = int(np.flatnonzero(~valid)[np.flatnonzero(moved)[0]]) if moved.any() else -1
        assert stray == expected
        along_ref[valid] += est.value[valid] * xi[owners[valid]]
        bar_ref[valid] += est.error_bar[valid] * np.abs(xi[owners[valid]])
    np.testing.assert_array_equal(sink.value, ref.value)
    np.testing.assert_array_equal(sink.bar, ref.bar)
    np.testing.assert_array_equal(along, along_ref)
    np.testing.assert_array_equal(along_bar, bar_ref)


CASES = {
    "dense": lambda: bl.dense_tanh(batch=16, n_in=24, n_out=20),
    "conv": lambda: bl.conv3x3(batch=2, c_in=3, c_out=4, size=6),
    "elementwise": lambda: bl.elementwise(shape=(8, 40)),
    "softmax": lambda: bl.row_softmax(shape=(6, 30)),
}


def _same(a, b):
    assert a.evaluations == b.evaluations and a.status == b.status
    for name, p in a.params.items():
        q = b.params[name]
        assert p.strategy == q.strategy
        np.testing.assert_array_equal(p.numeric_flat, q.numeric_flat)
        np.testing.assert_array_equal(p.error_bar_flat, q.error_bar_flat)
        assert p.failed_indices == q.failed_indices


@pytest.mark.parametrize("case", list(CASES))
def test_a_check_is_the_same_with_and_without_the_kernels(case, monkeypatch):
    f, vjp, inputs = CASES[case]()
    wrong = bl.planted(vjp, 0, (1,) * inputs[0].ndim)
    monkeypatch.setattr(config, "LINE_KERNEL_MIN_OUTPUTS", 10 ** 12)
    numpy_runs = [gp.check_vjp(f, inputs, g) for g in (vjp, wrong)]
    monkeypatch.setattr(config, "LINE_KERNEL_MIN_OUTPUTS", 1)
    kernel_runs = [gp.check_vjp(f, inputs, g) for g in (vjp, wrong)]
    for a, b in zip(numpy_runs, kernel_runs):
        _same(a, b)
    assert numpy_runs[0].passed and not numpy_runs[1].passed


def test_check_jacobian_is_the_same_with_and_without_the_kernels(monkeypatch):
    x = np.random.default_rng(3).standard_normal((6, 7))
    jac = np.einsum("ik,jl->ijkl", np.eye(6), np.eye(7)) * (1 - np.tanh(x) ** 2)[..., None, None]
    monkeypatch.setattr(config, "LINE_KERNEL_MIN_OUTPUTS", 10 ** 12)
    a = gp.check_jacobian(np.tanh, x, jac)
    monkeypatch.setattr(config, "LINE_KERNEL_MIN_OUTPUTS", 1)
    b = gp.check_jacobian(np.tanh, x, jac)
    _same(a, b)
    assert a.passed and a.params["jacobian"].strategy.startswith("compressed")


@pytest.mark.parametrize("seed", range(4))
def test_owned_sides_read_like_the_dense_array(seed):
    rng = np.random.default_rng(seed)
    size = int(rng.integers(1, 500))
    positions = rng.choice(size, size=int(rng.integers(0, size + 1)), replace=False)
    values = rng.standard_normal(positions.size)
    sides = compression.OwnedSides(positions, values, size)
    dense = np.zeros(size)
    dense[positions] = values
    np.testing.assert_array_equal(np.asarray(sides), dense)
    at = rng.integers(0, size, 50)
    np.testing.assert_array_equal(sides[at], dense[at])
    mask = rng.random(size) < 0.3
    np.testing.assert_array_equal(sides[mask], dense[mask])


def test_compressed_check_jacobian_reports_the_same_kinks_as_entry_by_entry():
    x = np.array([[0.0, 1.0, -2.0, 0.0], [3.0, 0.0, -0.5, 2.0]] * 3)
    jac = np.zeros(x.shape + x.shape)
    i, j = np.indices(x.shape).reshape(2, -1)
    jac[i, j, i, j] = np.where(x >= 0, 1.0, -1.0).reshape(-1)   # at 0: the right slope
    grouped = gp.check_jacobian(np.abs, x, jac)
    plain = gp.check_jacobian(np.abs, x, jac, compression=False)
    assert grouped.params["jacobian"].strategy.startswith("compressed")
    assert grouped.params["jacobian"].kinks == plain.params["jacobian"].kinks
    assert len(plain.params["jacobian"].kinks) == int(np.sum(x == 0))
    assert grouped.passed and plain.passed
