"""Numba kernels of gradprobe.nn against plain NumPy references."""
from __future__ import annotations

import decimal
import math

import numpy as np
import pytest

from gradprobe import nn
from gradprobe.nn import constants, kernels
from gradprobe.nn.contraction import contract
from gradprobe.nn.heads import logistic_derivative_polynomials
from gradprobe.nn.increments import (activation_increment, logsumexp_increment,
                                     squared_error_increment)
from gradprobe.nn.plan import activation_derivative

import nn_reference as ref

DTYPES = [np.float32, np.float64]
SHAPES = [(1, 1, 1), (1, 5, 3), (3, 1, 4), (7, 300, 2), (64, 257, 129), (2, 40, 600)]
TOL = {np.float32: 2e-5, np.float64: 1e-13}
ACTIVATIONS = [(nn.Identity, "identity"), (nn.ReLU, "relu"), (nn.Tanh, "tanh"),
               (nn.Sigmoid, "sigmoid")]


def close(actual, expected, dtype, scale=1.0):
    tol = TOL[dtype] * max(1.0, scale)
    np.testing.assert_allclose(actual, expected, rtol=tol, atol=tol)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("m,k,n", SHAPES)
def test_matmul_and_dense_forward(dtype, m, k, n):
    rng = np.random.default_rng(m * 1000 + k + n)
    A = rng.standard_normal((m, k)).astype(dtype)
    B = rng.standard_normal((k, n)).astype(dtype)
    b = rng.standard_normal(n).astype(dtype)
    C = np.full((m, n), np.nan, dtype=dtype)
    kernels.matmul(A, B, C)
    expected = A.astype(np.float64) @ B.astype(np.float64)
    close(C, expected, dtype, scale=math.sqrt(k))
    kernels.dense_forward(A, B, b, C)
    close(C, expected + b, dtype, scale=math.sqrt(k))


@pytest.mark.parametrize("dtype", DTYPES)
def test_transpose_column_sums_max_abs(dtype):
    rng = np.random.default_rng(1)
    A = rng.standard_normal((37, 300)).astype(dtype)
    out = np.empty((300, 37), dtype=dtype)
    kernels.transpose(A, out)
    assert np.array_equal(out, A.T)
    sums = np.empty(300, dtype=dtype)
    kernels.column_sums(A, sums)
    close(sums, A.astype(np.float64).sum(axis=0), dtype, scale=6.0)
    assert kernels.max_abs(A.reshape(-1)) == np.abs(A).max()
    assert kernels.max_abs(np.zeros(0, dtype=dtype)) == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls,name", ACTIVATIONS)
def test_activations(dtype, cls, name):
    rng = np.random.default_rng(2)
    Z = np.concatenate([rng.standard_normal((5, 7)) * 3,
                        np.array([[0.0, -0.0, 40.0, -40.0, 1e-30, 700.0, -700.0]])]).astype(dtype)
    A = np.empty_like(Z)
    kernels.activation_forward(cls.code, Z, A)
    with np.errstate(over="ignore"):
        expected = ref.activation(name, Z.astype(np.float64))
    close(A, expected, dtype)
    dA = rng.standard_normal(Z.shape).astype(dtype)
    dZ = np.empty_like(Z)
    kernels.activation_backward(cls.code, Z, A, dA, dZ)
    with np.errstate(over="ignore"):
        close(dZ, dA * ref.activation_grad(name, Z.astype(np.float64)), dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_losses(dtype, reduction):
    rng = np.random.default_rng(3)
    for batch, width in [(1, 1), (1, 4), (9, 3), (64, 50)]:
        A = (rng.standard_normal((batch, width)) * 4).astype(dtype)
        T = rng.standard_normal((batch, width)).astype(dtype)
        mse = nn.MSE(reduction)
        # losses are computed in float64 from the (exactly converted) float32 values
        assert mse.value(A, T) == pytest.approx(ref.loss_value(mse, A.astype(float), T),
                                                rel=1e-12)
        close(mse.backward(A, T), ref.loss_grad(mse, A.astype(float), T.astype(float)), dtype)
        sce = nn.SoftmaxCrossEntropy(reduction)
        P = rng.random((batch, width)).astype(dtype)
        assert sce.value(A, P) == pytest.approx(ref.loss_value(sce, A.astype(float), P),
                                                rel=1e-12)
        close(sce.backward(A, P), ref.loss_grad(sce, A.astype(float), P.astype(float)), dtype)


def test_softmax_cross_entropy_is_stable_for_huge_logits():
    Z = np.array([[1000.0, 0.0, -1000.0]])
    T = np.array([[0.0, 1.0, 0.0]])
    assert nn.SoftmaxCrossEntropy().value(Z, T) == pytest.approx(1000.0)
    assert np.all(np.isfinite(nn.SoftmaxCrossEntropy().backward(Z, T)))


@pytest.mark.parametrize("shape", [(1, 1), (5, 3), (64, 300), (300, 600)])
def test_contraction(shape):
    rng = np.random.default_rng(4)
    terms, n_i = shape
    L = rng.standard_normal((terms, n_i))
    R = rng.standard_normal((terms, 257))
    out = np.full((n_i, 257), np.nan)
    contract(L, R, out)
    np.testing.assert_allclose(out, L.T @ R, rtol=1e-12, atol=1e-12 * math.sqrt(terms))


def _exact_increment(name, z, d):
    """f(z + d) - f(z) with 60 significant digits (decimal arithmetic)."""
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        zd, dd = decimal.Decimal(float(z)), decimal.Decimal(float(d))

        def f(v):
            if name == "relu":
                return max(v, decimal.Decimal(0))
            if name == "tanh":
                e = (2 * v).exp()
                return (e - 1) / (e + 1)
            if name == "sigmoid":
                return 1 / (1 + (-v).exp())
            return v
        return float(f(zd + dd) - f(zd))


@pytest.mark.parametrize("cls,name", ACTIVATIONS)
def test_activation_increments_are_accurate_for_tiny_moves(cls, name):
    """f(z + d) - f(z) to a few ulps of the increment itself (a plain difference loses
    about log10(|f| / |increment|) digits)."""
    rng = np.random.default_rng(5)
    for z in np.concatenate([rng.standard_normal(20) * 4, [0.3, -2.0, 15.0, -15.0]]):
        for d in (1e-3, -1e-5, 3e-9, -2e-12):
            a = float(ref.activation(name, np.array(z)))
            deriv = float(activation_derivative(cls.code, np.array(z), np.array(a)))
            got = activation_increment(cls.code, float(z), a, deriv, d)
            want = _exact_increment(name, z, d)
            assert abs(got - want) <= 16 * np.finfo(float).eps * abs(want) + 1e-300, (z, d)
            naive = float(ref.activation(name, np.array(z + d))) - a
            if name != "relu" and abs(d) < 1e-8:
                # the plain difference is far worse: this is why increments are used
                assert abs(naive - want) > 100 * abs(got - want)


def test_relu_increment_at_and_across_the_kink():
    code = constants.RELU
    assert activation_increment(code, 0.0, 0.0, 0.0, 1e-6) == 1e-6
    assert activation_increment(code, 0.0, 0.0, 0.0, -1e-6) == 0.0
    assert activation_increment(code, 1e-7, 1e-7, 1.0, -1e-6) == -1e-7
    assert activation_increment(code, -1e-7, 0.0, 0.0, 1e-6) == pytest.approx(9e-7)


def test_loss_increments():
    assert squared_error_increment(0.5, 1e-3) == pytest.approx(((0.501) ** 2 - 0.25) / 2)
    with decimal.localcontext() as ctx:
        ctx.prec = 60
        for p, d in [(0.3, 1e-9), (0.999, -1e-5), (1e-4, 0.2)]:
            P, D = decimal.Decimal(p), decimal.Decimal(d)
            want = float((1 + P * (D.exp() - 1)).ln())
            assert logsumexp_increment(p, d) == pytest.approx(want, rel=1e-14)


def test_logistic_derivative_polynomials_match_differences():
    """P_k(p) is the k-th derivative at 0 of g(d) = log1p(p expm1(d))."""
    polys = logistic_derivative_polynomials(5)
    p, h = 0.27, 1e-2

    def g(d):
        return math.log1p(p * math.expm1(d))

    # derivatives of q(d) = g'(d) = p e^d / (1 + p (e^d - 1)) by central differences
    q = [p * math.exp(k * h) / (1 + p * math.expm1(k * h)) for k in (-2, -1, 0, 1, 2)]
    assert polys[0](p) == pytest.approx(q[2])
    assert polys[1](p) == pytest.approx((q[3] - q[1]) / (2 * h), rel=1e-4)
    assert polys[2](p) == pytest.approx((q[3] - 2 * q[2] + q[1]) / h ** 2, rel=1e-3)
    assert g(0.0) == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("loss", [nn.MSE(), nn.SoftmaxCrossEntropy(), nn.MSE("sum")])
@pytest.mark.parametrize("cls,name", ACTIVATIONS)
def test_sequential_matches_numpy_backprop(dtype, loss, cls, name):
    rng = np.random.default_rng(6)
    for batch in (1, 7):
        model = nn.Sequential([nn.Dense(5, 6, seed=1, dtype=dtype), cls(),
                               nn.Dense(6, 4, seed=2, dtype=dtype), cls(),
                               nn.Dense(4, 3, seed=3, dtype=dtype)], loss=loss)
        X = rng.standard_normal((batch, 5)).astype(dtype)
        T = rng.integers(0, 3, batch) if isinstance(loss, nn.SoftmaxCrossEntropy) else \
            rng.standard_normal((batch, 3)).astype(dtype)
        params = {k: v.astype(np.float64) for k, v in model.parameters().items()}
        want_loss = ref.loss_value(loss, ref.forward(model, X, params)[-1], T)
        assert model.loss(X, T) == pytest.approx(want_loss, rel=TOL[dtype] * 10)
        got = model.gradients(X, T)
        want = ref.model_gradients(model, X, T)
        assert list(got) == list(want) == list(model.parameters())
        for key in want:
            assert got[key].dtype == dtype and got[key].shape == want[key].shape
            scale = float(np.abs(want[key]).max(initial=0.0))
            close(got[key], want[key], dtype, scale=scale)


def test_dense_init_is_seeded_and_typed():
    a, b = nn.Dense(4, 3, seed=7), nn.Dense(4, 3, seed=7)
    assert np.array_equal(a.W, b.W) and np.array_equal(a.b, b.b)
    assert not np.array_equal(a.W, nn.Dense(4, 3, seed=8).W)
    c = nn.Dense(4, 3, seed=7, dtype=np.float32)
    assert c.W.dtype == np.float32 and c.W.flags.c_contiguous
    with pytest.raises(TypeError, match="dtype"):
        nn.Dense(2, 2, dtype=np.int32)
    with pytest.raises(ValueError, match="n_out"):
        nn.Dense(2, 0)
    with pytest.raises(ValueError, match="shape"):
        nn.Dense(2, 2, W=np.zeros((3, 2)))
