"""The module check: a layer's hand-written backward pass against its forward pass.

PyBrain's ``gradientCheck()`` verified any module with a hand-written
``_backwardImplementation``. :func:`check_layer` does the same for any object
with

* ``forward(x) -> y``;
* ``backward(grad_out) -> grad_x`` (the gradient with respect to the input,
  for the ``x`` of the last ``forward``);
* optionally ``params``, a dict name -> array the layer computes with, and
  ``grads``, a dict name -> array that ``backward`` fills with the parameter
  gradients.

It is :func:`gradprobe.check_vjp` applied to ``(x, params) -> forward(x)``,
with the layer's backward as the VJP. Everything runs on private deep copies
of the layer, so the layer's own arrays (parameters, gradients, caches) are
never written. A layer that cannot be deep-copied is perturbed in place and
restored in ``finally`` (also on KeyboardInterrupt), bit for bit.
"""
from __future__ import annotations

import copy
import threading
from typing import Any, Mapping, MutableMapping

import numpy as np

from .. import config
from ..options import CheckOptions
from ..problem.params import _as_param_array
from ..report.reports import CheckReport
from .vector import vjp_check
from ..differences.vector import output_array

#: Name of the layer's input in reports (when no parameter already uses it).
INPUT_NAME = "input"


class _NoUpcast(Exception):
    """The layer cannot be evaluated in float64 (the reason is the message)."""


def _layer_params(layer: Any) -> dict[str, np.ndarray]:
    """The layer's parameters, validated (an absent ``params`` means none)."""
    params = getattr(layer, "params", None)
    if params is None:
        return {}
    if not isinstance(params, Mapping):
        raise TypeError(f"layer.params must be a dict name -> array, got "
                        f"{type(params).__name__}")
    out = {}
    for name, value in params.items():
        if not isinstance(name, str):
            raise TypeError(f"layer.params keys must be str, got {name!r}")
        if not isinstance(value, np.ndarray):
            raise TypeError(f"layer.params[{name!r}] must be a NumPy array (the check writes "
                            f"perturbed values into a private copy of it), got "
                            f"{type(value).__name__}")
        try:
            _as_param_array(value, name)
        except (TypeError, ValueError) as exc:
            raise type(exc)(str(exc).replace(f"parameter {name!r}",
                                             f"layer.params[{name!r}]", 1)) from None
        out[name] = value
    return out


def _param(layer: Any, name: str) -> np.ndarray:
    """The array the layer computes with for parameter ``name``."""
    params = getattr(layer, "params", None)
    if not isinstance(params, Mapping) or name not in params:
        raise ValueError(f"layer.params lost its entry {name!r} during the check")
    return params[name]


class LayerCopies:
    """Private copies of a layer, to evaluate it at perturbed inputs and parameters.

    Parameters
    ----------
    layer : object
        The user's layer (``forward``, ``backward``, ``params``, ``grads``).
    names : list of str
        Its parameter names.
    input_name : str
        The name of the input in the inputs dict of :func:`check_vjp`.

    Notes
    -----
    ``forward`` evaluates a deep copy (a second, float64 copy when the check
    upcasts narrow parameters); ``vjp`` runs forward and backward on a fresh
    deep copy per cotangent, with its ``grads`` zeroed first (so layers that
    accumulate with ``+=`` are checked correctly). When ``copy.deepcopy``
    fails, the user's layer itself is used and :meth:`restore` puts back its
    parameter and gradient arrays bit for bit.

    Examples
    --------
    >>> class Scale:
    ...     def __init__(self): self.params = {"a": np.array([2.0])}; self.grads = {}
    ...     def forward(self, x): self.x = x; return self.params["a"] * x
    ...     def backward(self, g):
    ...         self.grads["a"] = np.array([np.sum(g * self.x)]); return g * self.params["a"]
    >>> layer = Scale()
    >>> copies = LayerCopies(layer, ["a"], "input")
    >>> copies.forward(input=np.array([1.0, 3.0]), a=np.array([5.0]))
    array([ 5., 15.])
    >>> layer.params["a"], hasattr(layer, "x")
    (array([2.]), False)
    """

    def __init__(self, layer: Any, names: list[str], input_name: str):
        self.layer = layer
        self.names = list(names)
        self.input_name = input_name
        params = _layer_params(layer)
        self.native_dtypes = {n: params[n].dtype for n in self.names}
        self.notes: list[str] = []
        self.wide_error: str | None = None
        self._local = threading.local()  # one copy per thread (workers > 1)
        try:
            self._local.native = copy.deepcopy(layer)
            self.in_place = False
        except Exception as exc:  # locks, handles, ... : fall back to the layer itself
            self.in_place = True
            self._save()
            self.notes.append(f"the layer could not be deep-copied ({type(exc).__name__}: "
                              f"{exc}); its parameters were perturbed in place and restored")

    def __getstate__(self) -> dict[str, Any]:
        """Pickled without the per-thread copies (``backend="dask"`` sends it to workers)."""
        state = self.__dict__.copy()
        state["_local"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._local = threading.local()  # each thread deep-copies the layer on first use

    # -- in-place fallback ------------------------------------------------------------
    def _save(self) -> None:
        params = _layer_params(self.layer)
        self.saved_params = {n: (params[n], params[n].copy()) for n in self.names}
        grads = getattr(self.layer, "grads", None)
        self.saved_grads: dict[Any, tuple[Any, Any]] | None = None
        if isinstance(grads, MutableMapping):
            self.saved_grads = {k: (v, v.copy() if isinstance(v, np.ndarray) else v)
                                for k, v in grads.items()}
        self.grads_object = grads

    def restore(self) -> None:
        """Put back the user's parameter and gradient arrays (in-place mode only)."""
        if not self.in_place:
            return
        params = getattr(self.layer, "params", None)
        for name, (array, values) in self.saved_params.items():
            if isinstance(params, MutableMapping) and params.get(name) is not array:
                params[name] = array
            if array.flags.writeable:
                np.copyto(array, values)
        if hasattr(self.layer, "grads") and getattr(self.layer, "grads") is not \
                self.grads_object:
            try:
                self.layer.grads = self.grads_object
            except AttributeError:
                pass
        if self.saved_grads is not None and isinstance(self.grads_object, MutableMapping):
            for key in [k for k in self.grads_object if k not in self.saved_grads]:
                del self.grads_object[key]
            for key, (value, values) in self.saved_grads.items():
                self.grads_object[key] = value
                if isinstance(value, np.ndarray) and value.flags.writeable:
                    np.copyto(value, values)

    # -- evaluation -------------------------------------------------------------------
    def _install(self, layer: Any, arrays: Mapping[str, np.ndarray]) -> None:
        for name in self.names:
            target = _param(layer, name)
            if target.dtype != arrays[name].dtype:
                raise TypeError(f"layer.params[{name!r}] is {target.dtype}; cannot evaluate "
                                f"it at {arrays[name].dtype} values")
            np.copyto(target, arrays[name])

    def forward(self, **arrays: np.ndarray) -> np.ndarray:
        """``forward(input)`` of a private copy holding the given parameter values."""
        x = arrays[self.input_name]
        if any(arrays[n].dtype.kind == "c" for n in self.names):
            raise TypeError("the layer's parameter arrays are real, so they cannot hold a "
                            "complex step; use another method for layers with parameters")
        if all(arrays[n].dtype == self.native_dtypes[n] for n in self.names):
            layer = self._native()
        elif all(arrays[n].dtype == config.UPCAST_DTYPE for n in self.names):
            layer = self._wide_copy(x)
        else:
            raise TypeError("parameters of mixed dtypes: "
                            + ", ".join(f"{n} {arrays[n].dtype}" for n in self.names))
        self._install(layer, arrays)
        return output_array(layer.forward(x), what="layer.forward",
                            context="during the check", shape=None, allow_complex=True)

    def vjp(self, grad_out: np.ndarray, **arrays: np.ndarray) -> dict[str, np.ndarray]:
        """Input and parameter gradients from one backward pass on a fresh copy."""
        layer = self.layer if self.in_place else copy.deepcopy(self.layer)
        self._install(layer, arrays)
        grads = getattr(layer, "grads", None)
        if isinstance(grads, Mapping):
            for value in grads.values():
                if isinstance(value, np.ndarray) and value.flags.writeable:
                    value.fill(0)
        x = arrays[self.input_name]
        layer.forward(x)
        grad_x = layer.backward(grad_out)
        if grad_x is None:
            raise ValueError(f"layer.backward returned None; it must return the gradient "
                             f"with respect to the layer's input (shape {x.shape})")
        grad_x = np.array(grad_x, copy=True)  # the layer may reuse its buffer later
        if grad_x.shape != x.shape:
            raise ValueError(f"layer.backward returned an array of shape {grad_x.shape}, but "
                             f"the input has shape {x.shape}")
        out = {self.input_name: grad_x}
        if not self.names:
            return out
        grads = getattr(layer, "grads", None)
        if not isinstance(grads, Mapping):
            raise TypeError(f"layer.grads must be a dict name -> array after backward (the "
                            f"layer has parameters {', '.join(self.names)}), got "
                            f"{type(grads).__name__}")
        for name in self.names:
            if name not in grads or grads[name] is None:
                raise ValueError(f"layer.grads has no entry {name!r} after backward; "
                                 "expected one per entry of layer.params "
                                 f"({', '.join(self.names)})")
            value = np.array(grads[name], copy=True)
            shape = arrays[name].shape
            if value.shape != shape:
                hint = " (it looks transposed)" if value.ndim >= 2 and \
                    value.shape == shape[::-1] else ""
                raise ValueError(f"layer.grads[{name!r}] has shape {value.shape}, but "
                                 f"layer.params[{name!r}] has shape {shape}{hint}")
            out[name] = value
        return out

    def _native(self) -> Any:
        """The layer itself (in-place mode) or this thread's deep copy of it."""
        if self.in_place:
            return self.layer
        layer = getattr(self._local, "native", None)
        if layer is None:
            layer = self._local.native = copy.deepcopy(self.layer)
        return layer

    def _wide_copy(self, x: np.ndarray) -> Any:
        """This thread's deep copy of the layer computing with float64 parameters."""
        wide = getattr(self._local, "wide", None)
        if wide is not None:
            return wide
        if self.wide_error is None:
            try:
                self._local.wide = self._build_wide(x)
                return self._local.wide
            except _NoUpcast as exc:
                self.wide_error = str(exc)
                self.notes.append(f"float64 evaluation of the layer not possible: {exc}")
        raise TypeError(self.wide_error)

    def _build_wide(self, x: np.ndarray) -> Any:
        if self.in_place:
            raise _NoUpcast("the layer cannot be deep-copied")
        wide = copy.deepcopy(self.layer)
        olds = {n: _param(wide, n) for n in self.names}
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
        stored = attributes.get("params")
        if isinstance(stored, MutableMapping):
            for n in narrow:
                if stored.get(n) is olds[n]:
                    stored[n] = news[n]
        for n in narrow:
            if _param(wide, n) is not news[n]:
                raise _NoUpcast(f"could not replace parameter {n!r} by a float64 copy")
        for n in narrow:  # the copy's own narrow arrays: nothing may read them any more
            olds[n].fill(np.nan)
        y = np.asarray(wide.forward(x))
        if y.dtype.kind not in "fc" or not np.all(np.isfinite(y)):
            raise _NoUpcast("the layer still reads its narrow parameter arrays")
        return wide


def check_layer(layer: Any, x: Any, *, cotangents: Any = None, seed: int = 0,
                upcast: bool = True, **options: Any) -> CheckReport:
    """Check a layer's hand-written backward pass (PyBrain's ``gradientCheck()``).

    For several random cotangents ``u`` of the output's shape, the gradient
    of ``<u, layer.forward(x)>`` with respect to the input and to every array
    in ``layer.params`` is estimated entry by entry and compared with
    ``layer.backward(u)`` (input gradient) and ``layer.grads`` (parameter
    gradients). See :func:`gradprobe.check_vjp`.

    Parameters
    ----------
    layer : object
        Has ``forward(x) -> y`` and ``backward(grad_out) -> grad_x``, and, when
        it has parameters, ``params`` and ``grads`` dicts (name -> array) with
        the same keys: ``forward`` computes with the arrays in ``params``,
        ``backward`` stores the parameter gradients in ``grads`` (assigned or
        accumulated: the check zeroes them before each backward pass).
    x : ndarray
        The layer's input. Never modified.
    cotangents : ndarray, list of ndarray, or int, optional
        Upstream gradients to use (default: ``config.DEFAULT_VECTOR_DIRECTIONS``
        seeded random draws).
    seed : int
        Seed of the cotangents and the noise probe.
    upcast : bool
        Evaluate a float32 layer in float64 (on a float64 deep copy) when
        possible, so the check tests the backward formula, not float32
        rounding. Falls back to the layer's own dtype, with a note.
    **options
        Every option of :func:`gradprobe.check` (``method``, ``rtol``, ``atol``,
        ``mode``, ``samples``, ``eps``, ``budget_s``, ``progress``,
        ``workers``, ...), used for each cotangent's check.

    Returns
    -------
    CheckReport
        Parameters ``input`` (the input gradient) and one per entry of
        ``layer.params``.

    Raises
    ------
    TypeError, ValueError
        A layer without ``forward``/``backward``, non-array parameters, a
        backward that returns None or the wrong shape, ``grads`` with
        missing entries or wrong shapes.

    Examples
    --------
    >>> import numpy as np
    >>> from gradprobe.checks.layer import check_layer
    >>> class Dense:
    ...     def __init__(self, W, b):
    ...         self.params = {"W": W, "b": b}
    ...         self.grads = {"W": np.zeros_like(W), "b": np.zeros_like(b)}
    ...     def forward(self, x):
    ...         self.x = x
    ...         return x @ self.params["W"] + self.params["b"]
    ...     def backward(self, g):
    ...         self.grads["W"][...] = self.x.T @ g
    ...         self.grads["b"][...] = g.sum(axis=0)
    ...         return g @ self.params["W"].T
    >>> rng = np.random.default_rng(0)
    >>> layer = Dense(rng.normal(size=(3, 2)), np.zeros(2))
    >>> report = check_layer(layer, rng.normal(size=(4, 3)))
    >>> report.passed, list(report.params)
    (True, ['input', 'W', 'b'])
    """
    if "args" in options:
        raise TypeError("check_layer takes no args: the layer is called as forward(x)")
    missing = [m for m in ("forward", "backward") if not callable(getattr(layer, m, None))]
    if missing:
        raise TypeError(f"layer must have forward(x) and backward(grad_out) methods; "
                        f"{type(layer).__name__} has no {' or '.join(missing)}")
    params = _layer_params(layer)
    input_name = INPUT_NAME if INPUT_NAME not in params else f"layer {INPUT_NAME}"
    try:
        x_array = _as_param_array(np.asarray(x) if isinstance(x, (list, tuple)) else x,
                                  "x")
    except (TypeError, ValueError) as exc:
        raise type(exc)(str(exc).replace("parameter 'x'", "x (the layer's input)", 1)) \
            from None
    opts = CheckOptions.build("check_layer", {"seed": seed, "upcast": upcast, **options})
    copies = LayerCopies(layer, list(params), input_name)
    if copies.in_place and opts.workers not in (None, 1):
        raise ValueError(f"workers={opts.workers!r} is not possible for this layer: it "
                         "cannot be deep-copied, so it is checked in place; use workers=1")
    point = {input_name: x_array.copy(), **{n: a.copy() for n, a in params.items()}}
    try:
        report = vjp_check(copies.forward, point, copies.vjp, cotangents, (), opts,
                           caller="check_layer")
    finally:
        copies.restore()
    how = "on the layer itself (restored afterwards)" if copies.in_place else \
        "on private deep copies of the layer"
    report.notes.insert(0, f"layer checked through forward/backward {how}; parameter "
                           "gradients read from layer.grads after one backward pass with "
                           "zeroed grads")
    for note in copies.notes:
        if note not in report.notes:
            report.notes.append(note)
    return report
