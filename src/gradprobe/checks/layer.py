"""The module check: a layer's hand-written backward pass against its forward pass.

PyBrain's ``gradientCheck()`` verified any module with a hand-written
``_backwardImplementation``. :func:`check_layer` does the same for any object
with

* ``forward(*inputs) -> output`` (one array or a tuple of arrays);
* ``backward(grad_out) -> grad_input`` (the gradients with respect to the
  inputs of the last ``forward``; with several outputs
  ``backward(*grad_outs)`` or ``backward(grad_outs)``);
* optionally parameters and their gradients, wherever the layer keeps them
  (:mod:`gradprobe.checks.layer_protocol`: ``params``/``grads``,
  ``parameters``/``gradients``, ``W``/``dW`` attributes, methods, nested
  dicts, or the user's ``params=``/``grads=``).

It is :func:`gradprobe.check_vjp` applied to ``(inputs, params) -> forward``,
with the layer's backward as the VJP. The layer is copied *after its first
forward pass* (weights created on first use exist then, and every copy shares
them) and every evaluation runs on private copies, so the layer's own arrays
(parameters, gradients, caches) are never written. A layer that cannot be
deep-copied is perturbed in place and restored in ``finally`` (also on
KeyboardInterrupt), bit for bit.
"""
from __future__ import annotations

import copy
import inspect
import threading
from typing import Any, Callable, Sequence

import numpy as np

from .. import config
from ..options import CheckOptions
from ..problem.params import _as_param_array
from ..report.reports import CheckReport
from ..verdict.determinism import reproducibility
from .layer_protocol import (Containers, Snapshot, array_at, describe_path, find_containers,
                             get_path, loose_arrays, set_path, zero_gradients)
from .vjp import vjp_check

#: Name of the layer's input in reports (when no parameter already uses it).
INPUT_NAME = "input"


class _NoUpcast(Exception):
    """The layer cannot be evaluated in float64 (the reason is the message)."""


def _input_names(count: int, taken: Sequence[str]) -> list[str]:
    base = INPUT_NAME if INPUT_NAME not in taken else f"layer {INPUT_NAME}"
    return [base] if count == 1 else [f"{base}[{i}]" for i in range(count)]


def _validated(value: Any, path: Any) -> np.ndarray:
    where = describe_path(path)
    if not isinstance(value, np.ndarray):
        raise TypeError(f"{where} must be a NumPy array (the check writes perturbed values "
                        f"into a private copy of it), got {type(value).__name__}")
    try:
        _as_param_array(value, "p")
    except (TypeError, ValueError) as exc:
        raise type(exc)(str(exc).replace("parameter 'p'", where, 1)) from None
    return value


class LayerCopies:
    """Private copies of a layer, to evaluate it at perturbed inputs and parameters.

    Parameters
    ----------
    layer : object or callable
        The user's layer, or a factory returning a new one (called for every copy).
    inputs : list of ndarray
        The layer's inputs (integer ones are held fixed, not differentiated).
    params, grads : optional
        Where the parameters and gradients live (see :func:`check_layer`).
    reset : callable, optional
        ``reset(layer)``, called on every copy before each forward pass.

    Notes
    -----
    A template is made first: a deep copy of the layer (or a factory's
    layer) that has run one forward pass. Every other copy is a deep copy of
    it. ``forward`` evaluates one copy per thread (a second, float64 copy when
    the check upcasts narrow parameters); ``vjp`` runs forward and backward on
    a fresh copy per cotangent, with its gradients zeroed first (so layers that
    accumulate with ``+=`` are checked correctly). Every copy's output at the
    unperturbed point is kept in :attr:`repeats`, to check that the layer is a
    function. When ``copy.deepcopy`` fails, the user's layer itself is used
    and :meth:`restore` puts back its parameter and gradient arrays bit for bit.

    Examples
    --------
    >>> class Scale:
    ...     def __init__(self): self.params = {"a": np.array([2.0])}; self.grads = {}
    ...     def forward(self, x): self.x = x; return self.params["a"] * x
    ...     def backward(self, g):
    ...         self.grads["a"] = np.array([np.sum(g * self.x)]); return g * self.params["a"]
    >>> layer = Scale()
    >>> copies = LayerCopies(layer, [np.array([1.0, 3.0])])
    >>> copies.forward(input=np.array([1.0, 3.0]), a=np.array([5.0]))
    array([ 5., 15.])
    >>> layer.params["a"], hasattr(layer, "x")
    (array([2.]), False)
    """

    def __init__(self, layer: Any, inputs: list[np.ndarray], *, params: Any = None,
                 grads: Any = None, reset: Callable[[Any], Any] | None = None, seed: int = 0):
        # a class is a factory too (its forward is not bound to a layer)
        self.factory = layer if isinstance(layer, type) or not hasattr(layer, "forward") \
            else None
        self.layer = layer
        self.inputs = inputs
        self.reset = reset
        self.notes: list[str] = []
        self.wide_error: str | None = None
        self.repeats: list[tuple[str, Any]] = []
        self._lock = threading.Lock()
        self._local = threading.local()  # one copy per thread (workers > 1)
        self.in_place = False
        try:
            template = self.factory() if self.factory is not None else copy.deepcopy(layer)
        except Exception as exc:  # locks, handles, ... : fall back to the layer itself
            if isinstance(layer, type) and isinstance(exc, TypeError):
                raise TypeError(f"check_layer: layer is the class {layer.__name__}, and "
                                f"{layer.__name__}() failed ({exc}); pass an instance "
                                f"({layer.__name__}(...)) or a factory that takes no "
                                "arguments") from exc
            if self.factory is not None:
                raise
            template = layer
            self.in_place = True
            self.notes.append(f"the layer could not be deep-copied ({type(exc).__name__}: "
                              f"{exc}); its parameters were perturbed in place and restored")
        _check_methods(template)
        self.template = template
        self.snapshot = Snapshot(template) if self.in_place else None
        try:
            if reset is not None:
                reset(template)
            first = _outputs(template.forward(*[a.copy() for a in inputs]))
            self.first = _copy_outputs(first)
            self.out_dtype = np.result_type(*(first if isinstance(first, tuple) else (first,)))
            probe = template if self.in_place else self._fresh()
            before = _grad_names(probe, params, grads)
            self._probe_backward(probe, seed)
            found = find_containers(probe, params, grads)
            lost = [n for n in before if n in found.frozen]
            if lost:
                raise ValueError(f"{found.grads_where} has no entry {lost[0]!r} after "
                                 f"backward, but had one before; backward must leave a "
                                 f"gradient for every trainable parameter "
                                 f"({', '.join(before)})")
        finally:
            self.restore()
        self.containers = found
        self.names = list(found.params)
        self.input_names = _input_names(len(inputs), self.names)
        self.diff = [n for n, a in zip(self.input_names, inputs) if a.dtype.kind == "f"]
        self.fixed = {n: a for n, a in zip(self.input_names, inputs) if a.dtype.kind != "f"}
        self.point = {n: _validated(get_path(template, p), p) for n, p in found.params.items()}
        self.native_dtypes = {n: a.dtype for n, a in self.point.items()}
        self._describe(found, template)

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the per-thread copies and the lock (``backend="dask"``
        sends it to workers)."""
        state = self.__dict__.copy()
        state["_local"] = state["_lock"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()  # each thread copies the layer on first use
        self._lock = threading.Lock()

    # -- set-up ---------------------------------------------------------------------
    def _fresh(self) -> Any:
        """A new private copy of the layer in the template's state."""
        if self.factory is not None:
            layer = self.factory()
            if self.reset is not None:
                self.reset(layer)
            layer.forward(*[a.copy() for a in self.inputs])  # creates lazy weights
            return layer
        return copy.deepcopy(self.template)

    def _probe_backward(self, layer: Any, seed: int) -> None:
        rng = np.random.default_rng([seed, config.SEED_TAG_LAYER_PROBE])
        y = layer.forward(*[a.copy() for a in self.inputs])
        ys = y if isinstance(y, (tuple, list)) else (y,)
        us = [rng.standard_normal(np.shape(v)) for v in ys]
        self._backward(layer, us if isinstance(y, (tuple, list)) else us[0])

    def _describe(self, found: Containers, template: Any) -> None:
        if self.names:
            self.notes.append(f"layer protocol: {found.where}")
        if found.frozen:
            self.notes.append(f"left alone (no gradient after backward, so not trainable: "
                              f"running statistics and other state): {', '.join(found.frozen)}")
        if not self.names:
            loose = loose_arrays(template, list(self.point.values()))
            if loose:
                self.notes.append(
                    f"the layer holds arrays ({', '.join(loose)}) but no recognized "
                    "parameter/gradient containers (params/grads, parameters/gradients, "
                    "W/dW attributes): only the input gradient was checked; pass "
                    "params= and grads= to check them")
        for name in self.fixed:
            self.notes.append(f"{name} ({self.fixed[name].dtype}) is not differentiated: "
                              "integer inputs are held fixed")

    # -- in-place fallback ------------------------------------------------------------
    def restore(self) -> None:
        """Put back the user's layer as it was (in-place mode only), bit for bit."""
        if self.snapshot is not None:
            self.snapshot.restore(self.template)

    # -- evaluation -------------------------------------------------------------------
    def _install(self, layer: Any, arrays: dict[str, np.ndarray]) -> None:
        for name, path in self.containers.params.items():
            target = array_at(layer, path, "during the check")
            if target.dtype != arrays[name].dtype:
                raise TypeError(f"{describe_path(path)} is {target.dtype}; cannot evaluate "
                                f"it at {arrays[name].dtype} values")
            np.copyto(target, arrays[name])

    def _call_inputs(self, arrays: dict[str, np.ndarray]) -> list[np.ndarray]:
        return [arrays[n] if n in arrays else self.fixed[n].copy() for n in self.input_names]

    def forward(self, **arrays: np.ndarray) -> Any:
        """``forward(*inputs)`` of a private copy holding the given parameter values."""
        if any(arrays[n].dtype.kind == "c" for n in self.names):
            raise TypeError("the layer's parameter arrays are real, so they cannot hold a "
                            "complex step; use another method for layers with parameters")
        if all(arrays[n].dtype == self.native_dtypes[n] for n in self.names):
            layer, first = self._native()
        elif all(arrays[n].dtype == config.UPCAST_DTYPE for n in self.names):
            layer, first = self._wide_copy(), False
        else:
            raise TypeError("parameters of mixed dtypes: "
                            + ", ".join(f"{n} {arrays[n].dtype}" for n in self.names))
        if self.reset is not None:
            self.reset(layer)
        self._install(layer, arrays)
        y = _outputs(layer.forward(*self._call_inputs(arrays)))
        if first:
            self._record("the copy for forward evaluations", y)
        return y

    def _record(self, label: str, y: Any) -> None:
        with self._lock:
            self.repeats.append((label, _copy_outputs(y)))

    def _backward(self, layer: Any, grad_out: Any) -> Any:
        if isinstance(grad_out, (tuple, list)):
            try:
                inspect.signature(layer.backward).bind(*grad_out)
                return layer.backward(*grad_out)
            except TypeError:
                return layer.backward(tuple(grad_out))
        return layer.backward(grad_out)

    def vjp(self, grad_out: Any, **arrays: np.ndarray) -> dict[str, np.ndarray]:
        """Input and parameter gradients from one backward pass on a fresh copy."""
        layer = self.template if self.in_place else self._fresh()
        if self.reset is not None:
            self.reset(layer)
        self._install(layer, arrays)
        zero_gradients(layer, self.containers.grads)
        y = _outputs(layer.forward(*self._call_inputs(arrays)))
        self._record(f"copy {len(self.repeats) + 2} of the layer (a backward pass)", y)
        raw = self._backward(layer, grad_out)
        out = self._input_grads(raw)
        for name, path in self.containers.grads.items():
            value = get_path_or_none(layer, path)
            if value is None:
                raise ValueError(f"{describe_path(path)} is missing after backward; expected "
                                 f"the gradient of {describe_path(self.containers.params[name])}")
            out[name] = np.array(value, copy=True)
            shape = arrays[name].shape
            if out[name].shape != shape:
                hint = " (it looks transposed)" if out[name].ndim >= 2 and \
                    out[name].shape == shape[::-1] else ""
                raise ValueError(f"{describe_path(path)} has shape {out[name].shape}, but "
                                 f"{describe_path(self.containers.params[name])} has shape "
                                 f"{shape}{hint}")
        return out

    def _input_grads(self, raw: Any) -> dict[str, np.ndarray]:
        """The input gradients ``backward`` returned, by input name (integer inputs
        dropped: their entries may be None)."""
        if not self.diff:
            return {}
        count = len(self.input_names)
        if count == 1:
            items = [raw[0] if isinstance(raw, (tuple, list)) and len(raw) == 1 else raw]
        elif isinstance(raw, (tuple, list)) and len(raw) == count:
            items = list(raw)
        elif isinstance(raw, (tuple, list)) and len(raw) == len(self.diff):
            items = [raw[self.diff.index(n)] if n in self.diff else None
                     for n in self.input_names]
        else:
            got = f"a {type(raw).__name__} of {len(raw)}" if isinstance(raw, (tuple, list)) \
                else type(raw).__name__
            raise ValueError(f"layer.backward returned {got}; with {count} inputs it must "
                             f"return a tuple of {count} input gradients (None for the "
                             "integer ones)")
        out = {}
        for name, x, g in zip(self.input_names, self.inputs, items):
            if name not in self.diff:
                continue
            if g is None:
                raise ValueError(f"layer.backward returned None"
                                 + (f" for {name}" if count > 1 else "")
                                 + "; it must return the gradient with respect to the "
                                 f"layer's input (shape {x.shape})")
            g = np.array(g, copy=True)  # the layer may reuse its buffer later
            if g.shape != x.shape:
                raise ValueError(f"layer.backward returned an array of shape {g.shape}"
                                 + (f" for {name}" if count > 1 else "")
                                 + f", but the input has shape {x.shape}")
            out[name] = g
        return out

    def _native(self) -> tuple[Any, bool]:
        """The layer itself (in-place mode) or this thread's copy; and whether this
        is its first evaluation."""
        if self.in_place:
            first = not getattr(self, "_used", False)
            self._used = True
            return self.template, first
        layer = getattr(self._local, "native", None)
        if layer is None:
            layer = self._local.native = self._fresh()
            return layer, True
        return layer, False

    def _wide_copy(self) -> Any:
        """This thread's copy of the layer computing with float64 parameters."""
        wide = getattr(self._local, "wide", None)
        if wide is not None:
            return wide
        if self.wide_error is None:
            try:
                self._local.wide = self._build_wide()
                return self._local.wide
            except _NoUpcast as exc:
                self.wide_error = str(exc)
                self.notes.append(f"float64 evaluation of the layer not possible: {exc}")
        raise TypeError(self.wide_error)

    def _build_wide(self) -> Any:
        if self.in_place:
            raise _NoUpcast("the layer cannot be deep-copied")
        wide = self._fresh()
        paths = self.containers.params
        olds = {n: get_path(wide, p) for n, p in paths.items()}
        narrow = [n for n in self.names if olds[n].dtype != config.UPCAST_DTYPE]
        news = {n: olds[n].astype(config.UPCAST_DTYPE) for n in narrow}
        try:
            attributes = vars(wide)
        except TypeError:
            raise _NoUpcast("the layer has no __dict__ to rebind its parameters in") from None
        for attr, value in list(attributes.items()):
            for n in narrow:
                if value is olds[n]:
                    setattr(wide, attr, news[n])
        for n in narrow:
            try:
                set_path(wide, paths[n], news[n])
            except Exception:
                pass
            if get_path_or_none(wide, paths[n]) is not news[n]:
                raise _NoUpcast(f"could not replace parameter {n!r} by a float64 copy")
        for n in narrow:  # the copy's own narrow arrays: nothing may read them any more
            olds[n].fill(np.nan)
        y = _outputs(wide.forward(*[a.copy() for a in self.inputs]))
        if any(np.asarray(v).dtype.kind not in "fc" or not np.all(np.isfinite(v))
               for v in (y if isinstance(y, tuple) else (y,))):
            raise _NoUpcast("the layer still reads its narrow parameter arrays")
        return wide


def _grad_names(layer: Any, params: Any, grads: Any) -> list[str]:
    """Parameters that have a gradient entry before any backward pass (so must have
    one after it)."""
    try:
        return list(find_containers(layer, params, grads).params)
    except (TypeError, ValueError, AttributeError, KeyError, IndexError):
        return []


def get_path_or_none(layer: Any, path: Any) -> Any:
    try:
        return get_path(layer, path)
    except (AttributeError, KeyError, IndexError, TypeError):
        return None


def _check_methods(layer: Any) -> None:
    missing = [m for m in ("forward", "backward") if not callable(getattr(layer, m, None))]
    if missing:
        raise TypeError(f"layer must have forward(x) and backward(grad_out) methods; "
                        f"{type(layer).__name__} has no {' or '.join(missing)}")


def _outputs(y: Any) -> Any:
    """One output array, or a tuple of them (never stacked into one array)."""
    if isinstance(y, (tuple, list)):
        return tuple(np.asarray(v) for v in y)
    return y


def _copy_outputs(y: Any) -> Any:
    if isinstance(y, tuple):
        return np.concatenate([np.asarray(v, dtype=np.float64).reshape(-1) for v in y])
    return np.array(y, dtype=np.float64, copy=True)


def check_layer(layer: Any, x: Any, *, params: Any = None, grads: Any = None,
                reset: Callable[[Any], Any] | None = None, cotangents: Any = None,
                seed: int = 0, upcast: bool = True, **options: Any) -> CheckReport:
    """Check a layer's hand-written backward pass, as the library wrote it (no adapter).

    For several random cotangents ``u`` of the output's shape, the gradient
    of ``<u, layer.forward(*x)>`` with respect to every floating input and to
    every parameter that has a gradient is estimated and compared with what
    ``layer.backward(u)`` returns (input gradients) and writes (parameter
    gradients). See :func:`gradprobe.check_vjp`; the structural checks of
    :func:`~gradprobe.checks.structural.structural_checks` run too, and a layer whose output
    changes between calls (dropout, weights redrawn) is ``"inconclusive"``.

    Parameters
    ----------
    layer : object or callable
        Has ``forward(*inputs) -> output`` and ``backward(grad_out) ->
        grad_input``. Or a factory ``layer()`` returning a new one, called
        for every copy the check makes (for layers that cannot be copied).
        The layer is copied after one forward pass, so weights it creates on
        first use exist and every copy has the same ones.
    x : ndarray or tuple of ndarray
        The input, or several (``forward(*x)``; ``backward`` then returns a
        tuple, with ``None`` allowed for integer inputs). Integer inputs (ids,
        labels) are held fixed, not differentiated. Never modified.
    params, grads : str, list of str, or callable, optional
        Where the parameters and their gradients live: an attribute name
        (a dict name -> array, nested dicts giving dotted names, a list, or a
        method returning one), a list of attribute names (``params=["W",
        "b"], grads=["dW", "db"]``), or a callable taking the layer. By
        default ``params``/``parameters``/``weights`` and
        ``grads``/``gradients`` are searched, then ``W``/``dW``-style
        attributes. Only entries with a gradient are checked; the others
        (running statistics) are left alone, with a note naming them.
    reset : callable, optional
        ``reset(layer)``, called on every copy before each forward pass (a
        layer that caches inputs or accumulates state between calls).
    cotangents : ndarray, list of ndarray, or int, optional
        Upstream gradients to use (default: ``config.DEFAULT_VECTOR_DIRECTIONS``
        seeded random draws); for a layer with several outputs, a tuple of
        arrays (or a list of them).
    seed : int
        Seed of the cotangents and the noise probe.
    upcast : bool
        Evaluate a float32 layer in float64 (on a float64 copy) when
        possible, so the check tests the backward formula, not float32
        rounding. Falls back to the layer's own dtype, with a note.
    **options
        Every option of :func:`gradprobe.check` (``method``, ``rtol``, ``atol``,
        ``mode``, ``samples``, ``eps``, ``budget_s``, ``progress``,
        ``workers``, ``compression``, ``nondeterminism_tol``, ...).

    Returns
    -------
    CheckReport
        Parameters ``input`` (or ``input[0]``, ... for several) and one per
        trainable parameter.

    Raises
    ------
    TypeError, ValueError
        A layer without ``forward``/``backward``, non-array parameters, a
        backward that returns None or the wrong shape, missing gradients or
        wrong shapes, containers that are not there.

    Examples
    --------
    >>> import numpy as np
    >>> from gradprobe.checks.layer import check_layer
    >>> class Dense:                       # a layer as libraries write it
    ...     def __init__(self, W, b):
    ...         self.W, self.b = W, b
    ...     def forward(self, x):
    ...         self.x = x
    ...         return x @ self.W + self.b
    ...     def backward(self, g):
    ...         self.dW, self.db = self.x.T @ g, g.sum(axis=0)
    ...         return g @ self.W.T
    >>> rng = np.random.default_rng(0)
    >>> layer = Dense(rng.normal(size=(3, 2)), np.zeros(2))
    >>> report = check_layer(layer, rng.normal(size=(4, 3)))
    >>> report.passed, list(report.params)
    (True, ['input', 'W', 'b'])
    """
    if "args" in options:
        raise TypeError("check_layer takes no args: the layer is called as forward(x)")
    if hasattr(layer, "forward") or not callable(layer):
        _check_methods(layer)
    if reset is not None and not callable(reset):
        raise TypeError(f"check_layer: reset= must be a callable reset(layer), got "
                        f"{type(reset).__name__}")
    inputs = _layer_inputs(x)
    opts = CheckOptions.build("check_layer", {"seed": seed, "upcast": upcast, **options})
    copies = LayerCopies(layer, inputs, params=params, grads=grads, reset=reset, seed=seed)
    if copies.in_place and opts.workers not in (None, 1):
        raise ValueError(f"workers={opts.workers!r} is not possible for this layer: it "
                         "cannot be deep-copied, so it is checked in place; use workers=1")
    point = {**{n: a.copy() for n, a in zip(copies.input_names, inputs) if n in copies.diff},
             **{n: a.copy() for n, a in copies.point.items()}}
    if not point:
        raise ValueError("check_layer: nothing to differentiate: every input is integer and "
                         "the layer has no parameters with gradients (pass params= and "
                         "grads= if it keeps them under other names)")
    try:
        report = vjp_check(copies.forward, point, copies.vjp, cotangents, (), opts,
                           caller="check_layer")
    finally:
        copies.restore()
    how = "on the layer itself (restored afterwards)" if copies.in_place else \
        "on private copies of the layer, made after its first forward pass"
    report.notes.insert(0, f"layer checked through forward/backward {how}; parameter "
                           "gradients read after one backward pass with zeroed gradients")
    for note in copies.notes:
        if note not in report.notes:
            report.notes.append(note)
    finding, note = reproducibility(copies.first, copies.repeats, eval_dtype=copies.out_dtype,
                                    tolerance=opts.nondeterminism_tol, what="layer.forward")
    if note is not None:
        report.notes.append(note)
    if finding is not None:  # the copies' own evidence names the layer: it goes first
        report.findings[:] = [f for f in report.findings if f.kind != finding.kind]
        for p in report.params.values():
            p.findings[:] = [f for f in p.findings if f.kind != finding.kind]
        report.add_findings([finding])
    return report


def _layer_inputs(x: Any) -> list[np.ndarray]:
    """The layer's inputs: one array or a tuple of them; integer ones allowed."""
    items = list(x) if isinstance(x, tuple) else [x]
    out = []
    for i, item in enumerate(items):
        label = "x (the layer's input)" if len(items) == 1 else f"x[{i}] (a layer input)"
        if isinstance(item, np.ndarray) and item.dtype.kind in "iub":
            out.append(item)  # ids, labels, masks: held fixed
            continue
        try:
            out.append(_as_param_array(item, "x"))
        except (TypeError, ValueError) as exc:
            raise type(exc)(str(exc).replace("parameter 'x'", label, 1)) from None
    return out
