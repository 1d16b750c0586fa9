"""Validation of option values shared by every public checker.

Each function returns the normalised value or raises a ``TypeError`` /
``ValueError`` that names the option and says what was expected.
:class:`CheckOptions` is the one validated set of options that every public
check builds at its boundary (:meth:`CheckOptions.build`), and
:data:`NOT_APPLICABLE` says which options mean nothing for which check, and why.
"""
from __future__ import annotations

import numbers
from dataclasses import dataclass, fields
from typing import Any, Mapping

import numpy as np

from . import config


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


# -- one set of options for every entry point ---------------------------------------

#: The values of the options of :func:`gradprobe.check` that take names.
_VALUES = {"mode": config.MODES, "method": config.METHODS, "backend": config.BACKENDS}


_ARRAY_VALUED = "differences of array-valued functions"
_NO_AUTO = "it has no mode='auto'"
_SCALAR = "a scalar loss has one output, so its entries cannot be grouped by output"
#: compression= and sparsity= mean nothing for checks of a scalar loss.
_NO_GROUPS = {"compression": _SCALAR, "sparsity": _SCALAR}


def _array_valued(directions: str) -> dict[str, str]:
    return {
        "mode": "every output entry is compared along each of its directions; it has no "
                "sample, directional or auto mode",
        "samples": "every output entry is compared; it has no mode='sample'",
        "directions": directions,
        "workers": f"{_ARRAY_VALUED} run on the Python engine, in the calling thread",
        "progress": f"{_ARRAY_VALUED} take a few evaluations per direction and show no "
                    "progress bar",
        "budget_s": _NO_AUTO,
        "client": f"{_ARRAY_VALUED} run on the Python engine, not on a Dask cluster",
    }


#: For each public entry point, the options of :func:`gradprobe.check` that
#: mean nothing for it, and why (every other option is accepted).
NOT_APPLICABLE: dict[str, dict[str, str]] = {
    "check": dict(_NO_GROUPS),
    "assert_gradients": dict(_NO_GROUPS),
    "check_vjp": {},
    "check_layer": {},
    "gradprobe.torch.check_function": {},
    "gradprobe.torch.check_module": {},
    "gradprobe.jax.check_function": {},
    "GradientMonitor": dict(_NO_GROUPS),
    "gradcheck": dict(_NO_GROUPS),
    "numerical_gradient": {**_NO_GROUPS,
        "mode": "it estimates every entry: there is no verdict to sample for",
        "rtol": "it returns the numerical gradient and judges nothing",
        "atol": "it returns the numerical gradient and judges nothing",
        "samples": "it estimates every entry",
        "directions": "it estimates every entry, not directional derivatives",
        "budget_s": _NO_AUTO,
        "nondeterminism_tol": "it returns the numerical gradient and judges nothing",
    },
    "check_model": {
        **_NO_GROUPS,
        "directions": "the structured check has no mode='directional': its full check costs "
                      "a few milliseconds per million entries",
        "budget_s": "the structured check has no mode='auto': its full check is cheap",
        "client": "it runs on gradprobe.nn's own Numba or C kernels, not on a Dask cluster",
        "nondeterminism_tol": "gradprobe.nn models are deterministic by construction",
    },
    "check_jvp": {**_array_valued("its directions are the tangents: pass tangents=k for k "
                                  "random tangents"),
                  "compression": "it differentiates along each tangent: two evaluations "
                                 "per tangent give every output, there is nothing to group",
                  "sparsity": "it differentiates along each tangent and needs no pattern"},
    "check_jacobian": _array_valued("it perturbs every entry of x, one Jacobian column "
                                    "at a time"),
    "check_hvp": {**_array_valued("its directions are the vectors: pass vectors=k for k "
                                  "random vectors"),
                  "compression": "it differentiates along each vector: there is nothing to "
                                 "group",
                  "sparsity": "it differentiates along each vector and needs no pattern"},
}
#: ``numerical_gradient(model, X, T)`` and ``gradprobe.nn.numerical_gradient_model``
#: (whose ``backend`` is restricted by :data:`RESTRICTED`, which rules out ``client``).
NOT_APPLICABLE["numerical_gradient_model"] = NOT_APPLICABLE["numerical_gradient"]

_STRUCTURED = {
    "method": (config.MODEL_METHODS, "the structured check's kernels are real, so there is "
                                     "no complex step"),
    "mode": (config.MODEL_MODES, "the structured check has no directional or auto mode: "
                                 "its full check is cheap"),
    "backend": (config.MODEL_BACKENDS, "a gradprobe.nn model runs on its own kernels, "
                                       "Numba's or their C twin"),
}
_PYTHON_ENGINE = {"backend": (config.VECTOR_BACKENDS, "differences of array-valued "
                                                      "functions run on the Python engine")}
#: For each public entry point that accepts only some values of an option of
#: :func:`gradprobe.check`: the values it accepts, and why.
RESTRICTED: dict[str, dict[str, tuple[tuple, str]]] = {
    "check_model": _STRUCTURED,
    "numerical_gradient_model": _STRUCTURED,
    "check_jvp": _PYTHON_ENGINE,
    "check_jacobian": _PYTHON_ENGINE,
    "check_hvp": _PYTHON_ENGINE,
}


@dataclass(frozen=True)
class CheckOptions:
    """The validated options of one check, built once at the public boundary.

    Every public check builds one with :meth:`build` (which also rejects
    options that do not apply to it, naming it and saying why) and passes it
    inward. Values are normalised (``eps=1`` becomes ``1.0``); the rules
    between options (``samples`` only with ``mode='sample'`` or ``'auto'``,
    ...) hold for every instance.

    Examples
    --------
    >>> CheckOptions.build("check", {"mode": "sample", "samples": 4}).samples
    4
    >>> CheckOptions.build("check_jvp", {"budget_s": 1.0})
    Traceback (most recent call last):
    ...
    TypeError: check_jvp: budget_s= does not apply: it has no mode='auto'
    """

    mode: str = "full"
    method: str = "central"
    eps: float | None = None
    rtol: float | None = None
    atol: float | None = None
    samples: int | None = None
    directions: int | None = None
    seed: int = 0
    backend: str = "auto"
    workers: int | None = None
    progress: bool | None = None
    upcast: bool = True
    budget_s: float | None = None
    client: Any = None
    compression: Any = "auto"
    sparsity: Any = None
    nondeterminism_tol: float | None = None

    def __post_init__(self) -> None:
        def put(name: str, value: Any) -> None:
            object.__setattr__(self, name, value)

        choice("mode", self.mode, config.MODES)
        choice("method", self.method, config.METHODS)
        choice("backend", self.backend, config.BACKENDS)
        for name in ("eps", "budget_s"):
            put(name, positive_float(name, getattr(self, name)))
        for name in ("rtol", "atol", "nondeterminism_tol"):
            put(name, positive_float(name, getattr(self, name), allow_zero=True))
        for name in ("samples", "directions", "workers"):
            put(name, positive_int(name, getattr(self, name)))
        put("seed", seed_value(self.seed))
        if not isinstance(self.upcast, (bool, np.bool_)):
            raise TypeError(f"upcast must be True or False, got {self.upcast!r}")
        put("upcast", bool(self.upcast))
        if self.progress is not None and not isinstance(self.progress, (bool, np.bool_)):
            raise TypeError(f"progress must be True, False or None, got {self.progress!r}")
        if self.client is not None and self.backend != "dask":
            raise ValueError(f"client= is only used with backend='dask' "
                             f"(backend={self.backend!r}); pass backend='dask' to evaluate "
                             "the losses on that cluster")
        if self.directions is not None and self.mode not in ("directional", "auto"):
            raise ValueError(f"directions is only used with mode='directional' or "
                             f"mode='auto' (mode={self.mode!r})")
        if self.samples is not None and self.mode not in ("sample", "auto"):
            raise ValueError(f"samples={self.samples} is only used with mode='sample' or "
                             f"mode='auto' (mode={self.mode!r})")
        if self.compression is True:
            put("compression", "auto")
        if isinstance(self.compression, np.bool_):
            put("compression", bool(self.compression))
        if not any(self.compression is v or (isinstance(v, str) and self.compression == v)
                   for v in config.COMPRESSION_MODES):
            raise ValueError(f"compression={self.compression!r} is not valid; expected "
                             "'auto' (group entries whose outputs do not overlap, verified) "
                             "or False (entry by entry)")
        if self.sparsity is not None and self.compression is False:
            raise ValueError("sparsity= is only used with compression='auto' "
                             "(compression=False checks entry by entry); drop one of them")
        if self.sparsity is not None and not (
                isinstance(self.sparsity, (dict, tuple, list, np.ndarray))
                or hasattr(self.sparsity, "tocsc")):
            raise TypeError(f"sparsity must be an array or sparse matrix of shape (output "
                            f"size, input size), or a dict/tuple of them per input; got "
                            f"{type(self.sparsity).__name__}")
        if self.budget_s is not None and self.mode != "auto":
            raise ValueError(f"budget_s={self.budget_s:g} is only used with mode='auto' "
                             f"(mode={self.mode!r})")

    @classmethod
    def build(cls, caller: str, given: Mapping[str, Any],
              defaults: Mapping[str, Any] | None = None, *,
              rules: str | None = None) -> "CheckOptions":
        """The options ``given`` to the public function ``caller``, validated.

        Parameters
        ----------
        caller : str
            The public function the user called (a key of :data:`NOT_APPLICABLE`);
            every message names it.
        given : mapping
            The options the user passed (keywords of :func:`gradprobe.check`).
        defaults : mapping, optional
            ``caller``'s own defaults where they differ from ``check``'s.
        rules : str, optional
            The key of :data:`NOT_APPLICABLE` and :data:`RESTRICTED` whose
            rules apply (default: ``caller``), for a public function whose
            rules depend on what it was given (``numerical_gradient`` of a
            ``gradprobe.nn`` model).

        Raises
        ------
        TypeError
            An option ``check`` does not have, or one that does not apply to
            ``caller`` (with the reason); a value of the wrong type.
        ValueError
            A bad value, or options that contradict each other.
        """
        unknown = [name for name in given if name not in CHECK_DEFAULTS]
        if unknown:
            raise TypeError(
                f"{caller} got unexpected option(s) {', '.join(map(repr, unknown))}; the "
                f"options of gradprobe.check are {', '.join(CHECK_DEFAULTS)}")
        rules = caller if rules is None else rules
        reasons = NOT_APPLICABLE[rules]
        for name in given:
            if name in reasons:
                raise TypeError(f"{caller}: {name}= does not apply: {reasons[name]}")
        for name, (allowed, why) in RESTRICTED.get(rules, {}).items():
            value = given.get(name, (defaults or {}).get(name, CHECK_DEFAULTS[name]))
            if isinstance(value, str) and value in allowed:
                continue
            alternatives = ", ".join(map(repr, allowed[:-1])) + f" or {allowed[-1]!r}"
            if isinstance(value, str) and value in _VALUES[name]:
                raise ValueError(f"{caller}: {name}={value!r} is not available here: {why}; "
                                 f"use {name}={alternatives}")
            raise ValueError(f"{caller}: {name}={value!r} is not valid; expected one of "
                             f"{', '.join(allowed)}")
        values = {**(defaults or {}), **given}
        try:
            return cls(**values)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{caller}: {exc}") from None

    def given(self, *names: str) -> dict[str, Any]:
        """The options as keywords (those named, or all), e.g. to call a front end."""
        return {name: getattr(self, name) for name in (names or CHECK_DEFAULTS)}


#: Every option of :func:`gradprobe.check` with its default: the one list that
#: every public check takes its options from (the fields of :class:`CheckOptions`).
CHECK_DEFAULTS: dict[str, Any] = {field.name: field.default for field in fields(CheckOptions)}
