"""What the torch and JAX front ends share: which inputs are checked, their names,
one flat output, and the report's wording.

:mod:`gradprobe.checks.torch_checks` and :mod:`gradprobe.checks.jax_checks`
turn a function of tensors and its framework's backward (autograd, ``jax.vjp``)
into the ``f`` and ``vjp`` of :func:`gradprobe.checks.vjp.vjp_check`, so a
custom ``autograd.Function`` or ``custom_vjp`` rule gets the verdict,
compression, localization and diagnosis of :func:`gradprobe.check_vjp`. The
tensors themselves are handled by the one conversion of
:mod:`gradprobe.problem.tensors`.
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from ..problem.params import signature_of


@dataclass(frozen=True)
class Inputs:
    """The inputs of a function of tensors: the checked ones by name, the others held.

    Attributes
    ----------
    values : tuple
        Every input, in call order (the user's objects, never written).
    names : list of str
        One name per input (the function's argument names, else ``input[i]``).
    checked : list of int
        Positions of the inputs whose gradients are checked.
    """

    values: tuple
    names: list[str]
    checked: list[int]

    @property
    def checked_names(self) -> list[str]:
        """Names of the checked inputs, in call order."""
        return [self.names[i] for i in self.checked]

    def held(self) -> list[str]:
        """Names of the inputs held fixed."""
        return [n for i, n in enumerate(self.names) if i not in self.checked]

    def full(self, values: dict[str, Any]) -> list[Any]:
        """Every input in call order, the checked ones taken from ``values`` (by name)."""
        out = list(self.values)
        for i in self.checked:
            out[i] = values[self.names[i]]
        return out



def require(module: str, front_end: str, library: str, extra: str, pip: str) -> Any:
    """Import the optional array library ``module`` of ``front_end``, or an
    ImportError that says how to install it.

    Examples
    --------
    >>> require("numpy", "gradprobe.torch", "NumPy", "test", "numpy").__name__
    'numpy'
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - exercised without the library
        raise ImportError(f"{front_end} needs {library}: pip install 'gradprobe[{extra}]' "
                          f"(or pip install {pip})") from exc

def argument_names(fn: Callable[..., Any], count: int, *, skip: int = 0,
                   default: str = "input[{i}]") -> list[str]:
    """Names for the first ``count`` positional arguments of ``fn`` (after ``skip``):
    its own names, ``args[j]`` for a ``*args``, else ``default``; made unique.

    Examples
    --------
    >>> argument_names(lambda x, W, *rest: None, 4)
    ['x', 'W', 'rest[0]', 'rest[1]']
    >>> argument_names(max, 2)   # a builtin without a signature
    ['input[0]', 'input[1]']
    """
    names: list[str] = []
    signature = signature_of(fn)
    if signature is not None:
        kinds = inspect.Parameter
        params = [p for p in signature.parameters.values()
                  if p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD,
                                kinds.VAR_POSITIONAL)][skip:]
        for p in params:
            if len(names) >= count:
                break
            if p.kind == kinds.VAR_POSITIONAL:
                names += [f"{p.name}[{j}]" for j in range(count - len(names))]
            else:
                names.append(p.name)
    names += [default.format(i=i) for i in range(len(names), count)]
    seen: set[str] = set()
    unique = []
    for i, name in enumerate(names[:count]):
        if name in seen:
            name = default.format(i=i)
        seen.add(name)
        unique.append(name)
    return unique


def select_inputs(values: Sequence[Any], names: list[str],
                  checked: Callable[[Any], bool], caller: str, what: str) -> Inputs:
    """The :class:`Inputs` of a call, or a clear error when nothing can be checked."""
    positions = [i for i, v in enumerate(values) if checked(v)]
    if not positions:
        given = ", ".join(f"{n}: {type(v).__name__}" for n, v in zip(names, values)) or "none"
        raise ValueError(f"{caller}: no floating-point {what} among the inputs ({given}); "
                         f"pass the {what} whose gradients should be checked")
    return Inputs(tuple(values), names, positions)


def adapter_notes(backward: str, inputs: Inputs, what: str) -> list[str]:
    """The report's notes on what was checked and what was held fixed (``what``:
    ``"tensors"``, ``"arrays"``)."""
    notes = [f"{backward} checked against numerical derivatives of the forward pass"]
    held = inputs.held()
    if held:
        notes.append(f"held fixed (not floating-point {what}): {', '.join(held)}")
    return notes

