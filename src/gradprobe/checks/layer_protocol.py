"""Where a third-party layer keeps its parameters and gradients.

Libraries with hand-written backward passes spell the same protocol many
ways: ``params``/``grads`` dicts, ``parameters``/``gradients``, ``weights``
with ``dW``-style attributes, methods returning dicts, nested dicts of
sub-modules, lists. :func:`find_containers` resolves where the parameters and
their gradients live on a layer that has run one forward and one backward
pass, as *paths* (attribute names, keys, indices, calls) that can be read and
written on any copy of the layer (:func:`get_path`, :func:`set_path`).

:class:`Snapshot` keeps a layer's state to put it back after an in-place check.

Entries are named by their keys, nested ones joined by dots
(``{"enc": {"W": ...}}`` gives ``enc.W``; lists give ``layers.0.W``).
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

#: Attribute names searched for the parameter container, in order.
PARAM_CONTAINERS = ("params", "parameters", "_params", "weights", "param")
#: Attribute names searched for the gradient container, in order.
GRAD_CONTAINERS = ("grads", "gradients", "_grads", "grad", "dparams", "param_grads",
                   "grad_params")
#: Names of a gradient attribute for a parameter attribute ``{}`` (``W`` -> ``dW``).
GRAD_ATTRIBUTE_PATTERNS = ("d{}", "d_{}", "grad_{}", "{}_grad", "grad{}", "{}grad", "g{}")

#: A step of a path: ("attr", name), ("key", key), ("index", i) or ("call", name).
Step = tuple[str, Any]
Path = tuple[Step, ...]


def get_path(obj: Any, path: Path) -> Any:
    """The value at ``path`` from ``obj``.

    Examples
    --------
    >>> class L: pass
    >>> layer = L(); layer.p = {"enc": [np.zeros(2)]}
    >>> get_path(layer, (("attr", "p"), ("key", "enc"), ("index", 0)))
    array([0., 0.])
    """
    for kind, key in path:
        if kind == "attr":
            obj = getattr(obj, key)
        elif kind == "call":
            obj = getattr(obj, key)() if isinstance(key, str) else key(obj)
        else:
            obj = obj[key]
    return obj


def set_path(obj: Any, path: Path, value: Any) -> bool:
    """Put ``value`` at ``path`` (False when the last container cannot be written)."""
    parent = get_path(obj, path[:-1])
    kind, key = path[-1]
    try:
        if kind == "attr":
            setattr(parent, key, value)
        elif kind in ("key", "index") and not isinstance(parent, tuple):
            parent[key] = value
        else:
            return False
    except (AttributeError, TypeError):
        return False
    return True


def describe_path(path: Path) -> str:
    """``layer.params['W']``, ``layer.weights()['enc'][0]`` for messages."""
    text = "layer"
    for kind, key in path:
        if kind == "attr":
            text += f".{key}"
        elif kind == "call":
            text = f"{text}.{key}()" if isinstance(key, str) else \
                f"{getattr(key, '__name__', 'params')}({text})"
        else:
            text += f"[{key!r}]"
    return text


def flatten(container: Any, path: Path, prefix: str = "") -> dict[str, tuple[Path, Any]]:
    """Leaves of a nested dict/list container: dotted name -> (path, value).

    Examples
    --------
    >>> tree = {"enc": {"W": np.ones(2)}, "b": np.zeros(1)}
    >>> list(flatten(tree, ()))
    ['enc.W', 'b']
    """
    out: dict[str, tuple[Path, Any]] = {}
    if isinstance(container, Mapping):
        items = [(str(k), ("key", k)) for k in container]
        values = list(container.values())
    elif isinstance(container, (list, tuple)):
        items = [(str(i), ("index", i)) for i in range(len(container))]
        values = list(container)
    else:
        return {prefix or "value": (path, container)}
    for (name, step), value in zip(items, values):
        full = f"{prefix}.{name}" if prefix else name
        if isinstance(value, Mapping) or (isinstance(value, (list, tuple)) and
                                          _holds_arrays(value)):
            out.update(flatten(value, path + (step,), full))
        else:
            out[full] = (path + (step,), value)
    return out


def _holds_arrays(value: Any) -> bool:
    """A container of arrays (a list of numbers is one value, not a container)."""
    if isinstance(value, (np.ndarray, Mapping)):
        return True
    return isinstance(value, (list, tuple)) and any(_holds_arrays(v) for v in value)


def _container_path(layer: Any, spec: Any, arg: str) -> Path | None:
    """The path of the container ``spec`` names (None: not there)."""
    if callable(spec) and not isinstance(spec, str):
        return (("call", spec),)
    if not isinstance(spec, str):
        raise TypeError(f"check_layer: {arg}= must be an attribute name, a list of attribute "
                        f"names, or a callable taking the layer; got {type(spec).__name__}")
    if not hasattr(layer, spec):
        return None
    value = getattr(layer, spec)
    if callable(value) and not isinstance(value, (np.ndarray, Mapping, list, tuple)):
        return (("call", spec),)
    return (("attr", spec),)


def _entries(layer: Any, path: Path) -> dict[str, tuple[Path, Any]]:
    value = get_path(layer, path)
    if isinstance(value, np.ndarray):
        kind, key = path[-1]
        return {str(key) if kind == "attr" else "value": (path, value)}
    if isinstance(value, (Mapping, list, tuple)):
        return flatten(value, path)
    return {}


class Containers:
    """Where one layer's trainable parameters and their gradients live.

    Attributes
    ----------
    params : dict of str to Path
        Trainable entries (those with a gradient), in order.
    grads : dict of str to Path
        The gradient of each, read after each backward pass.
    frozen : list of str
        Entries of the parameter container without a gradient (running
        statistics, counters): left alone.
    where : str
        How the containers were found, for the report's note.
    grads_where : str or None
        Where the gradients were found (``layer.grads``).
    """

    def __init__(self, params: dict[str, Path], grads: dict[str, Path], frozen: list[str],
                 where: str, grads_where: str | None = None):
        self.params, self.grads, self.frozen, self.where = params, grads, frozen, where
        self.grads_where = grads_where


def _attribute_style(layer: Any) -> tuple[dict[str, tuple[Path, Any]],
                                          dict[str, tuple[Path, Any]]]:
    """``W``/``dW``-style attributes: float arrays with a gradient attribute of their shape."""
    try:
        attributes = vars(layer)
    except TypeError:
        return {}, {}
    params, grads = {}, {}
    for name, value in attributes.items():
        if not (isinstance(value, np.ndarray) and value.dtype.kind == "f"):
            continue
        for pattern in GRAD_ATTRIBUTE_PATTERNS:
            g = attributes.get(pattern.format(name))
            if isinstance(g, np.ndarray) and g.shape == value.shape and g is not value:
                params[name] = ((("attr", name),), value)
                grads[name] = ((("attr", pattern.format(name)),), g)
                break
    return params, grads


def find_containers(layer: Any, params: Any, grads: Any) -> Containers:
    """Resolve the parameter and gradient containers of ``layer``.

    ``layer`` must have run one forward and one backward pass (lazily created
    weights and gradient buffers exist then). ``params`` and ``grads`` are the
    user's specs (None: search :data:`PARAM_CONTAINERS` and
    :data:`GRAD_CONTAINERS`, then ``W``/``dW``-style attributes); each is an
    attribute name (holding a dict, list or array, or a method returning
    one), a list of attribute names, or a callable taking the layer.
    """
    def resolve(spec: Any, names: Sequence[str], arg: str) -> tuple[dict, str | None]:
        if spec is None:
            for name in names:
                path = _container_path(layer, name, arg)
                if path is not None:
                    found = _entries(layer, path)
                    if found:
                        return found, describe_path(path)
            return {}, None
        if isinstance(spec, (list, tuple)):
            out = {}
            for name in spec:
                path = _container_path(layer, name, arg)
                if path is None:
                    raise ValueError(f"check_layer: {arg}= names {name!r}, but "
                                     f"{type(layer).__name__} has no attribute {name!r}")
                out.update(_entries(layer, path))
            return out, f"{arg}={list(spec)!r}"
        path = _container_path(layer, spec, arg)
        if path is None:
            raise ValueError(f"check_layer: {arg}={spec!r}, but {type(layer).__name__} has no "
                             f"attribute {spec!r} (after one forward and backward pass)")
        found = _entries(layer, path)
        if not found and get_path(layer, path) is not None:
            raise TypeError(f"check_layer: {describe_path(path)} must be a dict name -> "
                            f"array (or a list of arrays), got "
                            f"{type(get_path(layer, path)).__name__}")
        return found, describe_path(path)

    p_entries, p_where = resolve(params, PARAM_CONTAINERS, "params")
    g_entries, g_where = resolve(grads, GRAD_CONTAINERS, "grads")
    if isinstance(params, (list, tuple)) and isinstance(grads, (list, tuple)) and \
            len(params) == len(grads):  # params=("W", "b"), grads=("dW", "db")
        g_entries = {p: g_entries[g] for p, g in zip(params, grads) if g in g_entries}
    if not p_entries and params is None:
        p_entries, g_attr = _attribute_style(layer)
        if p_entries:
            p_where = "attributes " + ", ".join(p_entries)
            if not g_entries:
                g_entries, g_where = g_attr, "attributes " + ", ".join(
                    describe_path(path)[len("layer."):] for path, _ in g_attr.values())
    if p_entries and not g_entries and grads is None:  # W/dW next to a params container
        _, g_attr = _attribute_style(layer)
        g_entries = {n: v for n, v in g_attr.items() if n in p_entries}
    floats = [n for n, (_, v) in p_entries.items()
              if not (isinstance(v, np.ndarray) and v.dtype.kind != "f")]
    if floats and g_entries and not any(n in g_entries for n in floats):
        raise ValueError(f"check_layer: the entries of {p_where} ({', '.join(floats)}) match "
                         f"no entry of {g_where} ({', '.join(g_entries)}); name each gradient "
                         "like its parameter, or pass params= and grads=")
    trainable: dict[str, Path] = {}
    grad_paths: dict[str, Path] = {}
    frozen: list[str] = []
    for name, (path, value) in p_entries.items():
        if name in g_entries and g_entries[name][1] is not None:
            trainable[name] = path
            grad_paths[name] = g_entries[name][0]
        else:
            frozen.append(name)
    where = f"parameters from {p_where}" + (f", gradients from {g_where}" if trainable
                                             else "")
    return Containers(trainable, grad_paths, frozen, where, g_where)


def loose_arrays(layer: Any, known: Sequence[Any]) -> list[str]:
    """Float array attributes of ``layer`` that are not among ``known`` arrays (for the
    note on a layer whose parameters were not recognised)."""
    try:
        attributes = vars(layer)
    except TypeError:
        return []
    ids = {id(a) for a in known}
    return [n for n, v in attributes.items()
            if isinstance(v, np.ndarray) and v.dtype.kind == "f" and v.size > 0
            and id(v) not in ids and not n.startswith("_")]


def zero_gradients(layer: Any, grads: Mapping[str, Path]) -> None:
    """Zero the layer's gradient buffers before a backward pass (layers that
    accumulate with ``+=``); missing or read-only buffers are left alone."""
    for path in grads.values():
        try:
            value = get_path(layer, path)
        except (AttributeError, KeyError, IndexError, TypeError):
            continue
        if isinstance(value, np.ndarray) and value.flags.writeable:
            value.fill(0)


def array_at(layer: Any, path: Path, what: str) -> np.ndarray:
    """The array at ``path``, or a clear error naming it."""
    try:
        value = get_path(layer, path)
    except (AttributeError, KeyError, IndexError, TypeError):
        raise ValueError(f"{describe_path(path)} is missing {what}") from None
    return value


class Snapshot:
    """A layer's attributes, the dicts and lists in them and every array they hold
    (three levels deep), to put back after an in-place check."""

    def __init__(self, layer: Any):
        try:
            self.attrs: dict[str, Any] | None = dict(vars(layer))
        except TypeError:
            self.attrs = None
        self.arrays: list[tuple[np.ndarray, np.ndarray]] = []
        self.containers: list[tuple[Any, Any]] = []
        for value in (self.attrs or {}).values():
            self._walk(value, 0)

    def _walk(self, value: Any, depth: int) -> None:
        if isinstance(value, np.ndarray):
            self.arrays.append((value, value.copy()))
        elif depth < 3 and isinstance(value, dict):
            self.containers.append((value, dict(value)))
            for v in value.values():
                self._walk(v, depth + 1)
        elif depth < 3 and isinstance(value, list):
            self.containers.append((value, list(value)))
            for v in value:
                self._walk(v, depth + 1)

    def restore(self, layer: Any) -> None:
        if self.attrs is not None:
            for key in [k for k in vars(layer) if k not in self.attrs]:
                delattr(layer, key)
            for key, value in self.attrs.items():
                if getattr(layer, key, None) is not value:
                    setattr(layer, key, value)
        for container, saved in self.containers:
            if isinstance(container, dict):
                container.clear()
                container.update(saved)
            else:
                container[:] = saved
        for array, values in self.arrays:
            if array.flags.writeable:
                np.copyto(array, values)


__all__ = ["Containers", "GRAD_ATTRIBUTE_PATTERNS", "GRAD_CONTAINERS", "PARAM_CONTAINERS",
           "array_at", "describe_path", "find_containers", "flatten", "get_path",
           "loose_arrays", "set_path", "Snapshot", "zero_gradients"]

