"""PyTorch front end: a custom ``autograd.Function`` or ``nn.Module``'s backward,
checked through the vector-check pipeline.

:func:`check_function` and :func:`check_module` build, from a function of
tensors, the ``f`` (forward, under ``torch.no_grad``) and ``vjp`` (autograd's
backward for a cotangent ``u``, i.e. the hand-written ``backward`` of a custom
Function) of :func:`gradprobe.checks.vjp.vjp_check`: the same compressed
Jacobians, verdict, localization and diagnosis as :func:`gradprobe.check_vjp`
on NumPy functions. The tensors are converted by
:mod:`gradprobe.problem.tensors` (private NumPy copies; tensors on the
user's device again when ``fn`` is called). torch is imported only when one
of these is called.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Iterator

from ..options import CheckOptions
from ..report.reports import CheckReport
from .autograd import Inputs, adapter_notes, argument_names, require, select_inputs
from .vjp import vjp_check

CHECK_FUNCTION = "gradprobe.torch.check_function"
CHECK_MODULE = "gradprobe.torch.check_module"


def _torch() -> Any:
    return require("torch", "gradprobe.torch", "PyTorch", "torch", "torch")


def function_names(fn: Callable[..., Any], count: int) -> list[str]:
    """Names of ``fn``'s inputs: for ``MyFunction.apply``, those of
    ``MyFunction.forward`` (without ``ctx``), else ``fn``'s own.

    Examples
    --------
    >>> function_names(lambda x, weight: None, 2)
    ['x', 'weight']
    """
    owner = getattr(fn, "__self__", None)
    torch = _torch()
    if isinstance(owner, type) and issubclass(owner, torch.autograd.Function):
        # old style: forward(ctx, *inputs); with setup_context: forward(*inputs)
        ctx_style = getattr(owner, "setup_context", None) is \
            getattr(torch.autograd.Function, "setup_context", None)
        return argument_names(owner.forward, count, skip=1 if ctx_style else 0)
    return argument_names(fn, count)


def flat_output(out: Any, caller: str) -> Any:
    """``fn``'s output as one tensor: itself, or its floating outputs flattened and
    concatenated when it returned several."""
    torch = _torch()
    if isinstance(out, torch.Tensor):
        return out
    if isinstance(out, (tuple, list)):
        floating = [o for o in out if isinstance(o, torch.Tensor) and o.is_floating_point()]
        if not floating:
            raise TypeError(f"{caller}: the function returned {type(out).__name__} with no "
                            "floating-point tensor; it must return tensors")
        if len(floating) == 1:
            return floating[0]
        return torch.cat([o.reshape(-1) for o in floating])
    raise TypeError(f"{caller}: the function returned {type(out).__name__}; it must return "
                    "a tensor or a tuple of tensors")


def _is_checked(value: Any) -> bool:
    torch = _torch()
    if isinstance(value, torch.Tensor) and value.is_complex():
        raise TypeError("complex tensors are not supported: gradprobe checks real "
                        "gradients; pass the real and imaginary parts as two tensors")
    return isinstance(value, torch.Tensor) and value.is_floating_point()


def autograd_check(call: Callable[[dict[str, Any]], Any], inputs: dict[str, Any],
                   cotangents: Any, opts: CheckOptions, caller: str,
                   notes: list[str]) -> CheckReport:
    """Check autograd's backward of ``call`` (a function of the named tensors)
    against numerical derivatives of its forward pass.

    ``inputs`` maps each checked name to its tensor (never written); ``call``
    gets a dict of fresh tensors of the same names.
    """
    torch = _torch()

    def forward(*_: Any, **arrays: Any) -> Any:
        with torch.no_grad():
            return flat_output(call(arrays), caller)

    def vjp(u: Any, *_: Any, **arrays: Any) -> dict[str, Any]:
        leaves = {n: t.detach().requires_grad_(True) for n, t in arrays.items()}
        with torch.enable_grad():
            out = flat_output(call(leaves), caller)
            if not out.requires_grad:   # no input reaches the output: zero gradients
                return {n: torch.zeros_like(t) for n, t in leaves.items()}
            grads = torch.autograd.grad(out, list(leaves.values()),
                                        grad_outputs=u.reshape(out.shape).to(out.dtype),
                                        allow_unused=True)
        return {n: (torch.zeros_like(t) if g is None else g)
                for (n, t), g in zip(leaves.items(), grads)}

    report = vjp_check(forward, inputs, vjp, cotangents, (), opts, caller=caller)
    report.notes = notes + [n for n in report.notes if n not in notes]
    return report


@contextlib.contextmanager
def _restored_random_state(devices: list[int], active: bool) -> Iterator[None]:
    """The user's RNG state (CPU and the CUDA ``devices``) restored after the check."""
    if not active:
        yield
        return
    torch = _torch()
    with torch.random.fork_rng(devices=devices):
        yield


def _reseed(seed: int, cuda: bool) -> None:
    """The same random numbers (dropout masks) for every evaluation. (Not
    ``torch.manual_seed``: it formats a stack trace for every lazy device.)"""
    torch = _torch()
    torch.default_generator.manual_seed(seed)
    if cuda:
        torch.cuda.manual_seed_all(seed)


def _promoted(values: dict[str, Any]) -> dict[str, Any]:
    """Floating tensors in the widest floating dtype among them (float32 inputs
    evaluated in float64 meet float32 ones held fixed; the values are exact)."""
    torch = _torch()
    floating = [t for t in values.values()
                if isinstance(t, torch.Tensor) and t.is_floating_point()]
    if not floating:
        return values
    wide = max((t.dtype for t in floating), key=lambda d: torch.finfo(d).bits)
    return {n: (t.to(wide) if isinstance(t, torch.Tensor) and t.is_floating_point()
                and t.dtype != wide else t) for n, t in values.items()}


def check_function(fn: Callable[..., Any], *inputs: Any, cotangents: Any = None,
                   seed: int = 0, upcast: bool = True, **options: Any) -> CheckReport:
    """Check the backward pass of a function of torch tensors (typically a custom
    ``torch.autograd.Function``'s ``apply``) against numerical derivatives.

    Every floating-point tensor among ``inputs`` is checked (whether or not it
    requires grad); other inputs (integer tensors, numbers, flags) are held
    fixed. For each cotangent ``u``, autograd's ``u^T J`` (the hand-written
    ``backward``) is compared entry by entry with numerical derivatives of
    ``fn``'s forward pass: the pipeline of :func:`gradprobe.check_vjp`, with
    its compressed Jacobians, float32 evaluated in float64 on the tensors'
    device, per-entry error bars, localization and diagnosis.

    Parameters
    ----------
    fn : callable
        ``fn(*inputs) -> tensor`` (or a tuple of tensors: their floating
        outputs are checked together, flattened).
    *inputs
        The point: tensors (never written) and any other arguments of ``fn``.
    cotangents : tensor, array, list of them, or int, optional
        As for :func:`gradprobe.check_vjp` (of ``fn``'s output shape).
    seed : int
        Seed of the cotangents, the noise probe and the grouping.
    upcast : bool
        Evaluate float16/float32 inputs in float64 (``fn`` must accept them).
    **options
        Every option of :func:`gradprobe.check_vjp` (``method``, ``eps``,
        ``rtol``, ``atol``, ``mode``, ``compression``, ``sparsity``, ...).

    Returns
    -------
    CheckReport
        One :class:`~gradprobe.report.reports.ParamReport` per checked input,
        named by ``fn``'s argument names (``MyFunction.forward``'s for
        ``MyFunction.apply``), holding NumPy arrays.

    Examples
    --------
    >>> import torch, gradprobe.torch
    >>> class Cube(torch.autograd.Function):
    ...     @staticmethod
    ...     def forward(ctx, x):
    ...         ctx.save_for_backward(x)
    ...         return x ** 3
    ...     @staticmethod
    ...     def backward(ctx, g):
    ...         x, = ctx.saved_tensors
    ...         return 3 * x ** 2 * g
    >>> x = torch.linspace(-1.0, 1.0, 5)
    >>> gradprobe.torch.check_function(Cube.apply, x).passed
    True
    """
    _torch()
    if not callable(fn):
        raise TypeError(f"{CHECK_FUNCTION}: fn must be callable, got {type(fn).__name__}")
    opts = CheckOptions.build(CHECK_FUNCTION, {"seed": seed, "upcast": upcast, **options})
    names = function_names(fn, len(inputs))
    selected = select_inputs(inputs, names, _is_checked, CHECK_FUNCTION, "tensors")
    owner = getattr(fn, "__self__", None)
    label = f"{owner.__name__}.{fn.__name__}" if isinstance(owner, type) else \
        getattr(fn, "__qualname__", type(fn).__name__)

    def call(values: dict[str, Any]) -> Any:
        return fn(*selected.full(_promoted(values)))

    tensors = {n: inputs[i] for n, i in zip(selected.checked_names, selected.checked)}
    notes = adapter_notes(f"autograd's backward of {label}", selected, "tensors")
    return autograd_check(call, tensors, cotangents, opts, CHECK_FUNCTION, notes)


def check_module(module: Any, *inputs: Any, cotangents: Any = None, seed: int = 0,
                 upcast: bool = True, **options: Any) -> CheckReport:
    """Check a ``torch.nn.Module``'s backward pass for its parameters and inputs.

    The parameters that require grad (by their ``named_parameters()`` names)
    and the floating-point tensors among ``inputs`` (by the names of
    ``module.forward``'s arguments) are checked, as in :func:`check_function`.
    The module is evaluated with ``torch.func.functional_call`` on
    private tensors: its parameters, their ``.grad``, its buffers (running
    statistics get fresh copies on every evaluation) and its train/eval
    state are left as they were. In train mode every evaluation draws the
    same random numbers (dropout masks), and the global RNG state is
    restored.

    Parameters
    ----------
    module : torch.nn.Module
    *inputs
        The arguments of ``module(*inputs)``.
    cotangents, seed, upcast, **options
        As for :func:`check_function`.

    Returns
    -------
    CheckReport

    Examples
    --------
    >>> import torch, gradprobe.torch
    >>> layer = torch.nn.Linear(4, 3)
    >>> report = gradprobe.torch.check_module(layer, torch.randn(2, 4))
    >>> report.passed, sorted(report.params)
    (True, ['bias', 'input', 'weight'])
    """
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise TypeError(f"{CHECK_MODULE}: module must be a torch.nn.Module, got "
                        f"{type(module).__name__}; for a function use "
                        "gradprobe.torch.check_function")
    opts = CheckOptions.build(CHECK_MODULE, {"seed": seed, "upcast": upcast, **options})
    params = {n: p for n, p in module.named_parameters() if p.requires_grad}
    buffers = dict(module.named_buffers())
    names = argument_names(module.forward, len(inputs))
    names = [n if n not in params else f"input:{n}" for n in names]
    floating = [i for i, v in enumerate(inputs) if _is_checked(v)]
    if not params and not floating:
        raise ValueError(f"{CHECK_MODULE}: {type(module).__name__} has no parameter that "
                         "requires grad and no floating-point tensor among the inputs: "
                         "nothing to check")
    selected = Inputs(tuple(inputs), names, floating)
    devices = sorted({t.device.index or 0 for t in list(params.values()) + list(inputs)
                      if isinstance(t, torch.Tensor) and t.device.type == "cuda"})
    training = bool(module.training)

    def call(values: dict[str, Any]) -> Any:
        # fresh copies of the buffers: running statistics stay the module's
        values = _promoted({**values, **{n: b.detach().clone() for n, b in buffers.items()}})
        state = {n: values[n] for n in (*params, *buffers)}
        if training:
            _reseed(seed, bool(devices))
        return torch.func.functional_call(module, state, tuple(selected.full(values)))

    tensors = {**params, **{names[i]: inputs[i] for i in floating}}
    notes = adapter_notes(f"autograd's backward of {type(module).__name__}"
                          f" ({'train' if training else 'eval'} mode)", selected, "tensors")
    frozen = [n for n, p in module.named_parameters() if not p.requires_grad]
    if frozen:
        notes.append(f"held fixed (requires_grad=False): {', '.join(frozen)}")
    with _restored_random_state(devices, training):
        return autograd_check(call, tensors, cotangents, opts, CHECK_MODULE, notes)
