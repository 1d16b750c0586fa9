"""Parameter structures: one array, a tuple/list of arrays, or a dict of arrays.

:class:`ParamSet` validates what the user passed, names every parameter,
makes the private working copies that the engines perturb (the user's arrays
are never written), calls ``f`` with the right convention, and rebuilds
results in the user's structure.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .. import config
from .tensors import (as_host_array, calling, is_tensor, leading_kind,
                      tensor_kind, to_numpy, widen)

Structure = Any  # np.ndarray | Sequence[np.ndarray] | Mapping[str, np.ndarray]


def signature_of(f: Callable[..., Any]) -> inspect.Signature | None:
    """``f``'s signature (a Numba dispatcher's Python function's), or None if unknowable."""
    target = getattr(f, "py_func", f)  # numba dispatchers keep the Python function
    try:
        return inspect.signature(target)
    except (TypeError, ValueError):
        return None


def _positional_names(f: Callable[..., Any], count: int) -> list[str] | None:
    """Names of the first ``count`` positional parameters of ``f``, if knowable."""
    signature = signature_of(f)
    if signature is None:
        return None
    names = []
    for p in signature.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD):
            names.append(p.name)
        else:
            break
    return names[:count] if len(names) >= count else None


def _as_param_array(value: Any, name: str, noun: str = "parameter") -> np.ndarray:
    """Validate one parameter (or input: ``noun``) and return it as an ndarray (no copy
    if possible)."""
    if is_tensor(value):  # torch / JAX: a private NumPy copy (the tensor is never written)
        value = to_numpy(value, f"{noun} {name!r}")
    if isinstance(value, np.ndarray):
        array = value
    elif isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{noun} {name!r}: bool is not a differentiable parameter")
    elif isinstance(value, (int, float, np.number, list, tuple)):
        array = np.asarray(value)
        if array.dtype.kind in "iu":
            array = array.astype(np.float64)
    else:
        raise TypeError(
            f"{noun} {name!r} must be a NumPy array (or a torch tensor / JAX array), got "
            f"{type(value).__name__}")
    if array.dtype.kind == "c":
        raise TypeError(
            f"{noun} {name!r} has complex dtype {array.dtype}; gradprobe checks "
            "gradients of real losses with respect to real parameters")
    if array.dtype not in config.PARAM_DTYPES:
        allowed = ", ".join(str(d) for d in config.PARAM_DTYPES)
        raise TypeError(
            f"{noun} {name!r} has dtype {array.dtype}; expected a floating dtype "
            f"({allowed})")
    if array.size == 0:
        raise ValueError(f"{noun} {name!r} is empty (shape {array.shape})")
    if not np.all(np.isfinite(array)):
        bad = tuple(int(i) for i in np.argwhere(~np.isfinite(array))[0])
        raise ValueError(
            f"{noun} {name!r} contains a non-finite value ({array[bad]!r} at "
            f"index {bad}); gradients can only be checked at finite points")
    return array


#: A value ``f`` is called with: ``("lead", k)`` the k-th leading value (a
#: cotangent or tangent), ``("param", i)`` parameter i, ``("arg", j)`` ``args[j]``.
Slot = tuple[str, int]


@dataclass(frozen=True)
class CallBinding:
    """How a function of the parameters is called: positional slots, then keywords.

    Built by :func:`bind_call`, the one rule every engine and every callable
    (``f``, a ``grads`` callable, a vjp/jvp) is called by.

    Attributes
    ----------
    positional : tuple of Slot
        The positional arguments in call order.
    keywords : tuple of (str, int)
        ``(keyword, parameter index)`` for parameters passed by name.
    """

    positional: tuple[Slot, ...]
    keywords: tuple[tuple[str, int], ...] = ()

    def arguments(self, arrays: Sequence[Any], args: tuple,
                  leading: tuple = ()) -> tuple[list[Any], dict[str, Any]]:
        """The positional and keyword values of one call."""
        pick = {"lead": leading, "param": arrays, "arg": args}
        return ([pick[kind][i] for kind, i in self.positional],
                {name: arrays[i] for name, i in self.keywords})

    def call(self, f: Callable[..., Any], arrays: Sequence[Any], args: tuple,
             leading: tuple = ()) -> Any:
        """``f`` called on ``arrays`` (parameter order), ``args`` and ``leading``."""
        positional, keywords = self.arguments(arrays, args, leading)
        return f(*positional, **keywords)


def bind_call(f: Callable[..., Any], kind: str, names: Sequence[str], nargs: int, *,
              leading: int = 0, what: str = "f") -> CallBinding:
    """How to call ``f`` with parameters (structure ``kind``, ``names``), ``nargs``
    extra arguments and ``leading`` values first (a vjp's cotangent).

    The rule: a tuple/list or single parameter is passed positionally, then
    ``args`` (``f(*params, *args)``). Dict parameters bind by ``f``'s signature:
    each key to the argument of that name, and ``args`` fill ``f``'s remaining
    positional arguments in order (so ``def loss(W, b, X, y)`` takes
    ``{"W": W, "b": b}`` with ``args=(X, y)``, and ``def loss(X, y, W, b)``
    too: ``f(*args, **params)`` still works wherever it binds). Keys that are
    not arguments of ``f`` go to its ``**kwargs``; without a signature (some
    builtins), ``f(*args, **params)``.

    Raises
    ------
    TypeError
        When ``f``'s signature cannot take the call: the message says how
        ``f`` is called and how to write it.

    Examples
    --------
    >>> def loss(W, b, X, y): ...
    >>> bind_call(loss, "dict", ["W", "b"], 2).positional
    (('param', 0), ('param', 1), ('arg', 0), ('arg', 1))
    >>> bind_call(lambda X, W: 0, "dict", ["W"], 1).positional
    (('arg', 0), ('param', 0))
    """
    lead: list[Slot] = [("lead", k) for k in range(leading)]
    data: list[Slot] = [("arg", j) for j in range(nargs)]
    if kind != "dict":
        binding = CallBinding(tuple(lead + [("param", i) for i in range(len(names))] + data))
    else:
        binding = _bind_dict(f, list(names), nargs, leading, what)
    signature = signature_of(f)
    if signature is not None and kind == "dict":
        kinds = inspect.Parameter
        named = {p.name for p in signature.parameters.values()
                 if p.kind in (kinds.POSITIONAL_OR_KEYWORD, kinds.KEYWORD_ONLY)}
        unknown = [n for n in names if n not in named]
        if unknown and not any(p.kind == kinds.VAR_KEYWORD
                               for p in signature.parameters.values()):
            raise TypeError(_no_binding(f, signature, kind, names, nargs, leading, what,
                                        f"it has no argument named {unknown[0]!r}"))
    if signature is not None:
        positional = [object()] * len(binding.positional)
        try:
            signature.bind(*positional, **{n: None for n, _ in binding.keywords})
        except TypeError as exc:
            raise TypeError(_no_binding(f, signature, kind, names, nargs, leading, what,
                                        str(exc))) from None
    return binding


def _bind_dict(f: Callable[..., Any], names: list[str], nargs: int, leading: int,
               what: str) -> CallBinding:
    """Dict parameters by name, ``args`` in the remaining positional arguments."""
    signature = signature_of(f)
    lead: list[Slot] = [("lead", k) for k in range(leading)]
    if signature is None:
        return CallBinding(tuple(lead + [("arg", j) for j in range(nargs)]),
                           tuple((n, i) for i, n in enumerate(names)))
    where = {n: i for i, n in enumerate(names)}
    kinds = inspect.Parameter
    parameters = list(signature.parameters.values())
    positional = [p for p in parameters if p.kind in (kinds.POSITIONAL_ONLY,
                                                      kinds.POSITIONAL_OR_KEYWORD)]
    slots: list[Slot] = list(lead)
    keywords: list[tuple[str, int]] = []
    placed: set[str] = set()
    next_arg = 0
    by_keyword = False  # an argument left to its default: later ones go by name
    for p in positional[leading:]:
        if p.name in where:
            if by_keyword:
                keywords.append((p.name, where[p.name]))
            else:
                slots.append(("param", where[p.name]))
            placed.add(p.name)
        elif next_arg < nargs and not by_keyword:
            slots.append(("arg", next_arg))
            next_arg += 1
        else:  # left to its default, or missing (bind_call's check then says so)
            by_keyword = True
    if next_arg < nargs:  # more args than free positional arguments: to *args
        slots += [("arg", j) for j in range(next_arg, nargs)]
    keywords += [(n, where[n]) for n in names if n not in placed]
    return CallBinding(tuple(slots), tuple(keywords))


def _no_binding(f: Callable[..., Any], signature: inspect.Signature, kind: str,
                names: Sequence[str], nargs: int, leading: int, what: str,
                reason: str) -> str:
    """The message for a function whose signature cannot take gradprobe's call."""
    label = getattr(f, "__name__", type(f).__name__)
    shown_f = f"{what} {label}{signature}"
    if label == "<lambda>":
        label, shown_f = what, f"{what}, a lambda {signature},"
    lead = ["u"] if leading else []
    data = [f"arg{j}" for j in range(nargs)]
    shown = ", ".join(lead + list(names) + ["*args"] * bool(nargs))
    given = f"{nargs} value(s) in args" if nargs else "no args"
    if kind == "dict":
        rule = (f"the dict's keys ({', '.join(names)}) bind to the arguments of those names "
                f"and args fill its other positional arguments in order")
    else:
        rule = f"it is called as {what}({shown})"
    return (f"{shown_f} cannot be called with the parameters "
            f"({', '.join(names)}) and {given} ({reason}): {rule}. Write it as "
            f"def {label}({', '.join(lead + list(names) + data)})")


@dataclass(frozen=True)
class ParamSet:
    """The user's parameters, validated and named.

    Attributes
    ----------
    kind : {"single", "sequence", "dict"}
        How ``params`` was given, which fixes how ``f`` is called.
    names : list of str
        One name per parameter (dict keys, or ``f``'s argument names).
    arrays : list of ndarray
        The user's arrays, read but never written.
    sequence_type : type
        ``tuple`` or ``list`` for ``kind="sequence"``.
    noun : str
        What the arrays are called in messages: ``"parameter"`` (gradients of a
        loss) or ``"input"`` (the inputs of a vector or layer check).
    """

    kind: str
    names: list[str]
    arrays: list[np.ndarray]
    sequence_type: type = tuple
    noun: str = "parameter"
    #: One :class:`~gradprobe.problem.tensors.TensorKind` per array given as a
    #: torch tensor or JAX array (None for NumPy); empty when none was.
    kinds: tuple = ()
    #: id(f) -> (f, nargs, leading, what, CallBinding): each callable is bound once.
    _bindings: dict = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_user(cls, params: Structure, f: Callable[..., Any] | None, *,
                  noun: str = "parameter", arg: str = "params",
                  default_names: tuple[str, str] = ("params[{i}]", "x")) -> "ParamSet":
        """Validate ``params`` and name each array: dict keys, ``f``'s argument names,
        else ``default_names`` (for a sequence, with ``{i}``; for a single array).

        ``noun`` and ``arg`` name the arrays and the argument in messages
        (``"input"``, ``"inputs"`` for the vector checks).
        """
        if isinstance(params, Mapping):
            if not params:
                raise ValueError(f"{arg} is an empty dict: nothing to check")
            names = [str(k) for k in params.keys()]
            for key in params.keys():
                if not isinstance(key, str):
                    raise TypeError(f"{arg} dict keys must be str, got {key!r}")
            arrays = [_as_param_array(v, k, noun) for k, v in params.items()]
            return cls("dict", names, arrays, noun=noun, kinds=_kinds(params.values()))
        if isinstance(params, (tuple, list)):
            if not params:
                raise ValueError(f"{arg} is an empty sequence: nothing to check")
            names = (_positional_names(f, len(params)) if f is not None else None) or [
                default_names[0].format(i=i) for i in range(len(params))]
            arrays = [_as_param_array(v, n, noun) for v, n in zip(params, names)]
            return cls("sequence", names, arrays, type(params), noun=noun,
                       kinds=_kinds(params))
        names = (_positional_names(f, 1) if f is not None else None) or [default_names[1]]
        return cls("single", names, [_as_param_array(params, names[0], noun)], noun=noun,
                   kinds=_kinds([params]))

    # -- calling f --------------------------------------------------------
    def binding(self, f: Callable[..., Any], nargs: int, *, leading: int = 0,
                what: str = "f") -> CallBinding:
        """How ``f`` is called (:func:`bind_call`), computed once per callable."""
        found = self._bindings.get(id(f))
        if found is not None and found[0] is f and found[1:4] == (nargs, leading, what):
            return found[4]
        binding = bind_call(f, self.kind, self.names, nargs, leading=leading, what=what)
        self._bindings[id(f)] = (f, nargs, leading, what, binding)
        return binding

    def call(self, f: Callable[..., Any], arrays: Sequence[np.ndarray], args: tuple, *,
             leading: tuple = (), what: str = "f") -> Any:
        """Call ``f`` on ``arrays`` (same order as :attr:`names`) by :func:`bind_call`'s rule.

        Parameters given as tensors are handed to ``f`` as tensors again (made
        from ``arrays``, on their device, in ``arrays``' dtype), and so are
        NumPy ``leading`` values (cotangents, tangents: in the kind of the first
        tensor), inside :func:`~gradprobe.problem.tensors.calling`.
        """
        binding = self.binding(f, len(args), leading=len(leading), what=what)
        if not self.kinds:
            return binding.call(f, arrays, args, leading)
        lead = leading_kind(self.kinds)
        with calling(self.kinds):
            tensors = [a if k is None else k.to_tensor(a) for a, k in zip(arrays, self.kinds)]
            leading = tuple(lead.to_tensors(v) for v in leading)
            return binding.call(f, tensors, args, leading)

    def to_user(self, arrays: Sequence[np.ndarray]) -> list[Any]:
        """``arrays`` (NumPy, parameter order) as the user gave the parameters:
        tensors of the same library, device and dtype where they were tensors."""
        if not self.kinds:
            return list(arrays)
        with calling(self.kinds):
            return [a if k is None else k.to_tensor(np.array(a, copy=True))
                    for a, k in zip(arrays, self.kinds)]

    def rebuild(self, arrays: Sequence[np.ndarray]) -> Structure:
        """Arrange ``arrays`` in the structure the user gave ``params`` in."""
        if self.kind == "dict":
            return dict(zip(self.names, arrays))
        if self.kind == "sequence":
            return self.sequence_type(arrays)
        return arrays[0]

    # -- gradients ----------------------------------------------------------
    def match(self, grads: Structure, what: str = "grads", *,
              like: str = "params") -> list[np.ndarray]:
        """Validate that ``grads`` has the structure and shapes of the parameters
        (:func:`match_structure`); returns the gradient arrays in parameter order."""
        return match_structure(grads, self.kind, self.names, [a.shape for a in self.arrays],
                               what=what, noun=self.noun, like=like)


def _kinds(values: Any) -> tuple:
    """The tensor kinds of ``values`` (empty when none is a tensor)."""
    kinds = tuple(tensor_kind(v) for v in values)
    return kinds if any(k is not None for k in kinds) else ()


def match_structure(value: Any, kind: str, names: Sequence[str],
                    shapes: Sequence[tuple[int, ...]], *, what: str, noun: str = "parameter",
                    like: str = "params") -> list[np.ndarray]:
    """The arrays of ``value`` in the structure (``kind``, ``names``, ``shapes``), or a
    clear error: the one rule for gradients, vector products and cotangents.

    Parameters
    ----------
    value : object
        What the user (or their ``grads``/``vjp``/``jvp``) gave.
    kind : {"single", "sequence", "dict"}
        The structure it must have (that of the parameters or inputs).
    names, shapes : sequence
        One name and shape per array.
    what : str
        How to call ``value`` in messages (``"grads"``, ``"vjp(cotangents[0], ...)"``).
    noun : str
        What its arrays belong to (``"parameter"``, ``"input"``).
    like : str
        What the structure comes from (``"params"``, ``"the inputs"``).

    Raises
    ------
    TypeError
        A structure mismatch, ``None``, or a dtype that is not real floating.
    ValueError
        Missing or extra keys, a wrong count or a wrong shape.

    Examples
    --------
    >>> match_structure({"w": [1.0, 2.0]}, "dict", ["w"], [(2,)], what="grads")[0]
    array([1., 2.])
    >>> match_structure(np.ones((3, 2)), "single", ["W"], [(2, 3)], what="grads")
    Traceback (most recent call last):
    ...
    ValueError: grads for the parameter 'W' has shape (3, 2), expected (2, 3) (it looks transposed)
    """
    listed = ", ".join(names)
    value = as_host_array(value)  # torch / JAX results: NumPy views
    if kind == "dict":
        if not isinstance(value, Mapping):
            raise TypeError(f"{what} must be a dict with keys {list(names)} like {like}, "
                            f"got {type(value).__name__}")
        missing = [n for n in names if n not in value]
        extra = [k for k in value if k not in names]
        if missing or extra:
            raise ValueError(f"{what} keys do not match {like}: missing {missing}, "
                             f"unexpected {extra}")
        values = [value[n] for n in names]
    elif kind == "sequence":
        if not isinstance(value, (tuple, list)):
            raise TypeError(f"{what} must be a tuple/list of {len(names)} arrays like {like}, "
                            f"one per {noun} ({listed}), got {type(value).__name__}")
        if len(value) != len(names):
            count = (f"{like} has {len(names)}" if like.isidentifier()
                     else f"there are {len(names)} {noun}s")
            raise ValueError(f"{what} has {len(value)} entries but {count} ({listed})")
        values = list(value)
    else:
        if isinstance(value, Mapping) or (isinstance(value, (tuple, list)) and (
                not _is_flat_numbers(value) or any(isinstance(v, np.ndarray) for v in value))):
            raise TypeError(f"{what} must be one array (for the {noun} {names[0]!r}), got "
                            f"{type(value).__name__}")
        values = [value]
    out = []
    for name, shape, v in zip(names, shapes, values):
        shape = tuple(shape)
        if v is None:
            raise TypeError(f"{what} gave None for the {noun} {name!r}; expected an array "
                            f"of shape {shape}")
        try:
            array = np.asarray(v)
        except Exception as exc:  # ragged lists and the like
            raise TypeError(f"{what} for the {noun} {name!r} is not an array: {exc}") from exc
        if array.dtype.kind not in "fiu" or isinstance(v, (bool, np.bool_)):
            raise TypeError(f"{what} for the {noun} {name!r} has dtype {array.dtype}; "
                            "expected a real floating dtype")
        if array.shape != shape:
            hint = ""
            if array.ndim >= 2 and array.shape == shape[::-1]:
                hint = " (it looks transposed)"
            elif array.size == int(np.prod(shape, dtype=np.int64)):
                hint = f" (same size: reshape it to {shape}?)"
            raise ValueError(f"{what} for the {noun} {name!r} has shape {array.shape}, "
                             f"expected {shape}{hint}")
        out.append(array)
    return out


def _is_flat_numbers(value: Any) -> bool:
    """True for a (nested) list of numbers, which is a valid single array."""
    if isinstance(value, Mapping):
        return False
    try:
        return np.asarray(value).dtype.kind in "fiu"
    except (ValueError, TypeError):
        return False


def working_dtype(dtype: np.dtype, upcast: bool) -> np.dtype:
    """The dtype a parameter is evaluated in: float64 when upcasting a narrower one."""
    if upcast and dtype.itemsize < config.UPCAST_DTYPE.itemsize:
        return config.UPCAST_DTYPE
    return dtype


def upcast_args(args: tuple) -> tuple:
    """Widen narrow floating ndarrays and torch tensors among ``args`` to float64
    (values are exact; tensors stay on their device)."""
    out = []
    for a in args:
        if isinstance(a, np.ndarray) and a.dtype.kind == "f" and \
                a.dtype.itemsize < config.UPCAST_DTYPE.itemsize:
            out.append(a.astype(config.UPCAST_DTYPE))
        else:
            out.append(widen(a, config.UPCAST_DTYPE))  # a torch tensor: on its device
    return tuple(out)


def loss_value(value: Any, *, context: str, allow_complex: bool = False) -> float | complex:
    """Turn what ``f`` returned into a Python scalar, or raise a clear error.

    ``context`` says where ``f`` was evaluated (e.g. "at the unperturbed
    point" or "with W[2, 3] = 0.51") and is part of every message.
    """
    if isinstance(value, (bool, np.bool_)):
        raise TypeError(f"f returned a bool {context}; it must return a scalar loss")
    value = as_host_array(value)  # a torch / JAX scalar
    if isinstance(value, np.number):
        scalar = value.item()
    elif isinstance(value, (int, float, complex)):
        scalar = value
    else:
        try:
            array = np.asarray(value)
        except Exception as exc:
            raise TypeError(
                f"f returned {type(value).__name__} {context}; it must return a scalar loss"
            ) from exc
        if array.dtype.kind not in "fiuc":
            raise TypeError(
                f"f returned {type(value).__name__} of dtype {array.dtype} {context}; "
                "it must return a scalar loss")
        if array.size != 1:
            raise ValueError(
                f"f returned an array of shape {array.shape} {context}; it must return a "
                "scalar loss (sum or average the outputs into the loss you train on; to "
                "check a vector-valued function, take a random projection of it)")
        scalar = array.reshape(()).item()
    if isinstance(scalar, (complex, np.complexfloating)) and not allow_complex:
        if np.imag(scalar) != 0:
            raise TypeError(f"f returned a complex value {context}; the loss must be real")
        scalar = np.real(scalar)
    return scalar


def as_args(args: Any) -> tuple:
    """The extra positional arguments of ``f``: a tuple (a list is accepted).

    Examples
    --------
    >>> as_args([1, 2])
    (1, 2)
    """
    if isinstance(args, list):
        args = tuple(args)
    if not isinstance(args, tuple):
        raise TypeError(f"args must be a tuple of extra arguments for f, got "
                        f"{type(args).__name__} (write args=(value,) for one argument)")
    return args
