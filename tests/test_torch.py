"""PyTorch: tensors through every entry point, and gradprobe.torch's Function and
module checks (skipped when torch is not installed)."""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import gradprobe as gp  # noqa: E402
import gradprobe.torch as gt  # noqa: E402
from gradprobe.examples.torch_functions import (GELUFunction, LayerNormForgotten,  # noqa: E402
                                                LayerNormFunction, Linear, LinearFunction,
                                                with_planted_error)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: torch's intra-op threads only contend with the other tests."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def snapshot(*tensors):
    return [(t.detach().clone(), t.dtype, t.requires_grad, None if t.grad is None
             else t.grad.clone()) for t in tensors]


def assert_unchanged(tensors, saved):
    for t, (value, dtype, requires_grad, grad) in zip(tensors, saved):
        assert t.dtype == dtype and t.requires_grad == requires_grad
        assert torch.equal(t.detach(), value)   # bit for bit (no NaN in these)
        assert (t.grad is None) == (grad is None)
        if grad is not None:
            assert torch.equal(t.grad, grad)


def test_import_gradprobe_imports_neither_torch_nor_jax():
    code = ("import sys, gradprobe, gradprobe.checks.torch_checks, "
            "gradprobe.checks.jax_checks; "
            "assert 'torch' not in sys.modules and 'jax' not in sys.modules, "
            "[m for m in ('torch', 'jax') if m in sys.modules]")
    subprocess.run([sys.executable, "-c", code], check=True)


# -- tensors in gp.check and friends ----------------------------------------------

@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("shape", [(5,), (3, 4), (2, 3, 2)])
def test_check_takes_tensors_and_names_a_planted_error(dtype, shape):
    gen = torch.Generator().manual_seed(sum(shape))
    W = torch.randn(shape, generator=gen, dtype=dtype, requires_grad=True)
    saved = snapshot(W)

    def f(W):
        return torch.sum(torch.sin(W) * W)

    good = (torch.cos(W) * W + torch.sin(W)).detach()
    report = gp.check(f, W, good)
    assert report.passed, report
    assert isinstance(report.params["W"].analytic, np.ndarray)
    assert report.params["W"].dtype == np.dtype(str(dtype).replace("torch.", ""))
    if dtype == torch.float64:
        bad = good.clone()
        entry = tuple(s - 1 for s in shape)
        bad[entry] *= 1.01
        assert gp.check(f, W, bad).params["W"].failed_indices == [entry]
    assert_unchanged([W], saved)


def test_float32_is_evaluated_in_float64_on_the_same_device():
    seen = []

    def f(x, w):
        seen.append((x.dtype, w.dtype, x.device))
        return (x * w).sum()

    x = torch.linspace(-1, 1, 6)
    w = torch.ones(6)
    report = gp.check(f, (x, w), (w, x))
    assert report.passed and report.upcast
    assert seen[0] == (torch.float32, torch.float32, x.device)   # the base point
    assert (torch.float64, torch.float64, x.device) in seen
    assert gp.check(f, (x, w), (w, x), upcast=False).passed
    assert seen[-1][:2] == (torch.float32, torch.float32)


def test_dict_params_tensor_args_and_callable_grads():
    gen = torch.Generator().manual_seed(1)
    X = torch.randn(7, 3, generator=gen)            # float32 data in args
    y = torch.randn(7, generator=gen)
    params = {"w": torch.randn(3, generator=gen), "b": torch.tensor(0.5)}

    def loss(w, b, X, y):
        return 0.5 * ((X @ w + b - y) ** 2).mean()

    def grads(w, b, X, y):
        r = (X @ w + b - y) / len(y)
        return {"w": X.T @ r, "b": r.sum()}

    report = gp.check(loss, params, grads, args=(X, y))
    assert report.passed, report
    assert sorted(report.params) == ["b", "w"]
    assert report.params["b"].shape == ()
    num = gp.numerical_gradient(loss, params, args=(X, y))
    assert isinstance(num["w"], torch.Tensor) and num["w"].dtype == torch.float32
    exact = grads(**params, X=X, y=y)
    assert torch.allclose(num["w"], exact["w"], rtol=1e-5, atol=1e-7)


def test_assert_gradients_and_the_pytest_fixture_take_tensors(gradcheck):
    x = torch.linspace(0.1, 2.0, 9, dtype=torch.float64)
    gradcheck(lambda x: torch.log(x).sum(), x, 1 / x)
    with pytest.raises(gp.GradientCheckError):
        gp.assert_gradients(lambda x: torch.log(x).sum(), x, 1.02 / x)


def test_the_users_tensor_is_unchanged_when_f_raises():
    W = torch.randn(4, 4, requires_grad=True)
    W.grad = torch.ones(4, 4)
    saved = snapshot(W)
    calls = []

    def f(W):
        calls.append(1)
        if len(calls) > 5:
            raise RuntimeError("boom")
        return (W ** 2).sum()

    with pytest.raises(RuntimeError, match="boom"):
        gp.check(f, W, 2 * W.detach())
    assert_unchanged([W], saved)


def test_check_vjp_hands_tensors_to_f_and_vjp():
    x = torch.randn(5, 4, dtype=torch.float64)
    W = torch.randn(4, 3, dtype=torch.float64)
    kinds = set()

    def f(x, W):
        kinds.add(type(x))
        return torch.tanh(x @ W)

    def vjp(u, x, W):
        kinds.add(type(u))
        d = u * (1 - torch.tanh(x @ W) ** 2)
        return d @ W.T, x.T @ d

    assert gp.check_vjp(f, (x, W), vjp).passed
    assert kinds == {torch.Tensor}

    def wrong(u, x, W):
        dx, dW = vjp(u, x, W)
        dW = dW.clone()
        dW[2, 1] *= 1.01
        return dx, dW

    assert gp.check_vjp(f, (x, W), wrong).params["W"].failed_indices == [(2, 1)]


def test_bfloat16_is_refused_with_a_way_out():
    with pytest.raises(TypeError, match=r"bfloat16.*\.float\(\)"):
        gp.check(lambda w: w.sum(), torch.ones(3, dtype=torch.bfloat16), torch.ones(3))


# -- gradprobe.torch.check_function -------------------------------------------------

def _inputs(name, dtype, seed=0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(6, 20, generator=gen, dtype=dtype)
    if name == "linear":
        return LinearFunction, (x, torch.randn(12, 20, generator=gen, dtype=dtype) / 4,
                                torch.randn(12, generator=gen, dtype=dtype))
    if name == "gelu":
        return GELUFunction, (3 * x,)
    return LayerNormFunction, (x, torch.rand(20, generator=gen, dtype=dtype) + 0.5,
                               torch.randn(20, generator=gen, dtype=dtype))


@pytest.mark.parametrize("name", ["linear", "gelu", "layer_norm"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_correct_functions_pass_at_defaults(name, dtype):
    function, inputs = _inputs(name, dtype)
    for t in inputs:
        t.requires_grad_(True)
    saved = snapshot(*inputs)
    report = gt.check_function(function.apply, *inputs)
    assert report.passed, report
    names = {"linear": ["x", "weight", "bias"], "gelu": ["x"],
             "layer_norm": ["x", "weight", "bias"]}[name]
    assert list(report.params) == names      # forward's argument names, without ctx
    assert all(p.checked == p.analytic.size for p in report.params.values())
    assert_unchanged(inputs, saved)


@pytest.mark.parametrize("name", ["linear", "gelu", "layer_norm"])
def test_a_one_percent_error_in_one_entry_is_named(name):
    function, inputs = _inputs(name, torch.float64, seed=3)
    for which, t in enumerate(inputs):
        entry = tuple(s // 2 for s in t.shape)
        wrong = with_planted_error(function, which, entry)
        report = gt.check_function(wrong.apply, *inputs)
        names = list(report.params)
        assert not report.passed
        assert report.params[names[which]].failed_indices == [entry], report
        assert all(not p.failed_indices for n, p in report.params.items()
                   if n != names[which])


def test_a_forgotten_term_fails():
    _, (x, w, b) = _inputs("layer_norm", torch.float32)
    report = gt.check_function(LayerNormForgotten.apply, x, w, b)
    assert not report.passed
    assert report.params["x"].failed > x.numel() // 2
    assert report.params["weight"].passed and report.params["bias"].passed


def test_non_floating_inputs_are_held_and_several_outputs_checked_together():
    class Gather(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x, index, scale):
            ctx.save_for_backward(index)
            ctx.shape, ctx.scale = x.shape, scale
            return x[index] * scale, (x ** 2).sum()

        @staticmethod
        def backward(ctx, g, g_sum):
            index, = ctx.saved_tensors
            x, = ctx.saved_tensors[:0] or (None,)
            grad = torch.zeros(ctx.shape, dtype=g.dtype)
            grad.index_add_(0, index, g * ctx.scale)
            return grad, None, None

    x = torch.randn(5, dtype=torch.float64)
    index = torch.tensor([0, 2, 2, 4])
    report = gt.check_function(Gather.apply, x, index, 3.0)
    assert list(report.params) == ["x"]
    assert any("index, scale" in n for n in report.notes)
    # the backward ignores the second output's gradient 2x: every entry is wrong
    assert not report.passed and report.params["x"].failed == 5


def test_a_setup_context_function_is_named_by_forward():
    class Square(torch.autograd.Function):
        @staticmethod
        def forward(values):
            return values ** 2

        @staticmethod
        def setup_context(ctx, inputs, output):
            ctx.save_for_backward(inputs[0])

        @staticmethod
        def backward(ctx, g):
            v, = ctx.saved_tensors
            return 2 * v * g

    report = gt.check_function(Square.apply, torch.randn(4, dtype=torch.float64))
    assert report.passed and list(report.params) == ["values"]


def test_bad_input_names_the_function():
    with pytest.raises(ValueError, match="check_function.*no floating-point tensors"):
        gt.check_function(torch.neg, torch.arange(3))
    with pytest.raises(TypeError, match="check_function: fn must be callable"):
        gt.check_function(3, torch.ones(2))
    with pytest.raises(TypeError, match="check_module: module must be a torch.nn.Module"):
        gt.check_module(torch.sin, torch.ones(2))


# -- gradprobe.torch.check_module ---------------------------------------------------

def test_a_modules_planted_error_is_named_by_its_parameter_name():
    torch.manual_seed(0)
    model = torch.nn.Sequential(Linear(8, 6), torch.nn.Tanh(),
                                Linear(6, 4, with_planted_error(LinearFunction, 1, (3, 2))))
    x = torch.randn(5, 8)
    report = gt.check_module(model, x)
    assert not report.passed
    failing = {n: p.failed_indices for n, p in report.params.items() if p.failed}
    assert failing == {"2.weight": [(3, 2)]}, report
    assert sorted(report.params) == ["0.bias", "0.weight", "2.bias", "2.weight", "input"]


def test_module_state_is_left_as_it_was():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(6, 5), torch.nn.BatchNorm1d(5),
                                torch.nn.Dropout(0.3), torch.nn.Linear(5, 2))
    model.train()
    frozen = model[3].bias
    frozen.requires_grad_(False)
    x = torch.randn(7, 6)
    params = snapshot(*[p for p in model.parameters()])
    buffers = {n: b.clone() for n, b in model.named_buffers()}
    rng = torch.get_rng_state()
    report = gt.check_module(model, x)
    assert report.passed, report             # the same dropout mask for every evaluation
    assert "3.bias" not in report.params and any("3.bias" in n for n in report.notes)
    assert model.training and all(m.training for m in model.modules())
    assert_unchanged(list(model.parameters()), params)
    assert all(torch.equal(b, buffers[n]) for n, b in model.named_buffers())
    assert torch.equal(torch.get_rng_state(), rng)
    model.eval()
    assert gt.check_module(model, x).passed and not model.training


# -- structural checks (gradprobe.checks.structural through the adapter) -----------

def test_structural_findings_of_a_backward_that_writes_its_cotangent_and_adds_a_constant():
    class Leaky(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            ctx.save_for_backward(x)
            return x ** 2

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            g.mul_(2)                      # writes autograd's cotangent
            return g * x + 1e-3            # nonzero for a zero cotangent

    x = torch.randn(5, dtype=torch.float64)
    saved = snapshot(x)
    report = gt.check_function(Leaky.apply, x)
    kinds = {f.kind for f in report.findings}
    assert {"backward-mutates-cotangent", "zero-cotangent"} <= kinds
    assert report.status == "failed"
    assert_unchanged([x], saved)


def test_structural_findings_of_a_forward_that_writes_its_input():
    class Writes(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x):
            y = x ** 2
            x.add_(1e-9)
            ctx.save_for_backward(x)
            return y

        @staticmethod
        def backward(ctx, g):
            x, = ctx.saved_tensors
            return 2 * g * x

    x = torch.randn(5, dtype=torch.float64)
    saved = snapshot(x)
    report = gt.check_function(Writes.apply, x)
    assert "forward-mutates-input" in {f.kind for f in report.findings}
    assert report.status == "failed"            # although every entry agrees
    assert_unchanged([x], saved)


def test_a_correct_function_has_no_findings():
    function, inputs = _inputs("layer_norm", torch.float64)
    assert gt.check_function(function.apply, *inputs).findings == []


def test_a_bias_before_batch_norm_has_zero_gradient_and_passes_in_float32():
    """Its exact gradient is 0; autograd's float32 one is rounding on the scale of the
    other parameters' gradients, which the default atol absorbs."""
    torch.manual_seed(3)
    model = torch.nn.Sequential(torch.nn.Linear(12, 8), torch.nn.BatchNorm1d(8),
                                torch.nn.Tanh(), torch.nn.Linear(8, 3))
    report = gt.check_module(model, torch.randn(10, 12))
    assert report.passed, report
    assert np.max(np.abs(report.params["0.bias"].numeric)) < 1e-9


def test_check_jvp_hands_tangents_to_jvp_as_tensors():
    x = torch.randn(4, dtype=torch.float64)
    W = torch.randn(4, 3, dtype=torch.float64)
    seen = set()

    def jvp(t, x, W):
        tx, tW = t
        seen.update({type(tx), type(tW)})
        return tx @ W + x @ tW

    report = gp.check_jvp(lambda x, W: x @ W, (x, W), jvp)
    assert report.passed and seen == {torch.Tensor}
