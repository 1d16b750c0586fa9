"""Layers of :class:`~gradprobe.nn.Sequential`: ``Dense`` and activations.

The classes hold parameters and say which kernel to run; the arithmetic is
in :mod:`gradprobe.nn.kernels`.
"""
from __future__ import annotations

import numpy as np

from . import constants

#: Parameter dtypes a layer may hold.
LAYER_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _dtype(dtype: object) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError as exc:
        raise TypeError(f"dtype must be float32 or float64, got {dtype!r}") from exc
    if dt not in LAYER_DTYPES:
        raise TypeError(f"dtype must be float32 or float64, got {dt}")
    return dt


def _size(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
        raise ValueError(f"{name}={value!r} is not valid; expected a positive integer")
    return int(value)


class Dense:
    """Affine layer ``Z = X @ W + b``.

    Parameters
    ----------
    n_in, n_out : int
        Input and output widths; ``W`` has shape ``(n_in, n_out)``, ``b`` has
        shape ``(n_out,)``.
    seed : int
        Seed of the initialisation: ``W`` uniform in ``+-sqrt(6 / (n_in + n_out))``
        (Glorot), ``b`` uniform in ``+-0.1``.
    dtype : {float32, float64}
        Dtype of the parameters and of the layer's computations.
    W, b : ndarray, optional
        Initial values instead of the random ones (copied, cast to ``dtype``).

    Attributes
    ----------
    W, b : ndarray
        The live parameters (C-contiguous); ``Sequential.parameters()``
        returns these very arrays.
    params, grads : dict
        The module protocol of :func:`gradprobe.check_layer`: ``params`` maps
        ``"W"``, ``"b"`` to the live arrays, and :meth:`backward` fills ``grads``.

    Examples
    --------
    >>> layer = Dense(3, 2, seed=1)
    >>> layer.W.shape, layer.b.shape, layer.W.dtype
    ((3, 2), (2,), dtype('float64'))
    >>> import numpy as np, gradprobe as gp
    >>> gp.check_layer(layer, np.ones((4, 3))).passed
    True
    """

    def __init__(self, n_in: int, n_out: int, *, seed: int = 0, dtype: object = np.float64,
                 W: np.ndarray | None = None, b: np.ndarray | None = None):
        self.n_in = _size("n_in", n_in)
        self.n_out = _size("n_out", n_out)
        self.dtype = _dtype(dtype)
        self.params: dict[str, np.ndarray] = {}
        self.grads: dict[str, np.ndarray] = {}
        self._input: np.ndarray | None = None
        rng = np.random.default_rng(seed)
        limit = np.sqrt(6.0 / (self.n_in + self.n_out))
        self.W = self._initial("W", W, (self.n_in, self.n_out),
                               lambda: rng.uniform(-limit, limit, (self.n_in, self.n_out)))
        self.b = self._initial("b", b, (self.n_out,),
                               lambda: rng.uniform(-0.1, 0.1, self.n_out))

    def _initial(self, name: str, value: np.ndarray | None, shape: tuple[int, ...],
                 draw) -> np.ndarray:
        if value is None:
            return np.ascontiguousarray(draw(), dtype=self.dtype)
        array = np.asarray(value)
        if array.dtype.kind not in "fiu":
            raise TypeError(f"Dense {name} must be a real array, got dtype {array.dtype}")
        array = np.array(array, dtype=self.dtype, order="C")
        if array.shape != shape:
            raise ValueError(f"Dense {name} has shape {array.shape}, expected {shape}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"Dense {name} contains non-finite values")
        return array

    @property
    def W(self) -> np.ndarray:
        return self.params["W"]

    @W.setter
    def W(self, value: np.ndarray) -> None:
        self.params["W"] = value

    @property
    def b(self) -> np.ndarray:
        return self.params["b"]

    @b.setter
    def b(self, value: np.ndarray) -> None:
        self.params["b"] = value

    # -- the module protocol (forward / backward), for check_layer ---------
    def forward(self, x: np.ndarray) -> np.ndarray:
        """``x @ W + b`` for a batch ``x`` of shape ``(batch, n_in)``; remembers ``x``."""
        self._input = np.asarray(x)
        return self._input @ self.W + self.b

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """Fill ``grads["W"]``, ``grads["b"]`` and return the input gradient."""
        if self._input is None:
            raise RuntimeError("Dense.backward called before forward")
        self.grads["W"] = self._input.T @ grad_out
        self.grads["b"] = grad_out.sum(axis=0)
        return grad_out @ self.W.T

    def __repr__(self) -> str:
        return f"Dense({self.n_in}, {self.n_out}, dtype={self.dtype})"


class Activation:
    """Elementwise activation; subclasses set :attr:`code` and :attr:`name`.

    Activations hold no parameters; in a :class:`~gradprobe.nn.Sequential` they
    take a position (so the next Dense layer's keys skip one number).

    Examples
    --------
    >>> ReLU().name, ReLU().smooth, Tanh().smooth
    ('relu', False, True)
    """

    code = constants.IDENTITY
    name = "identity"
    #: True when the activation is differentiable everywhere.
    smooth = True
    #: No parameters (the module protocol of :func:`gradprobe.check_layer`).
    params: dict[str, np.ndarray] = {}

    def __init__(self) -> None:
        self.grads: dict[str, np.ndarray] = {}
        self._input: np.ndarray | None = None

    def value(self, z: np.ndarray) -> np.ndarray:
        """The activation of ``z`` (NumPy; the models use the Numba kernels)."""
        return z

    def derivative(self, z: np.ndarray) -> np.ndarray:
        """Its derivative at ``z`` (0 at a ReLU's kink)."""
        return np.ones_like(z)

    def forward(self, x: np.ndarray) -> np.ndarray:
        """Apply the activation; remembers ``x`` for :meth:`backward`."""
        self._input = np.asarray(x)
        return self.value(self._input)

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """The input gradient ``grad_out * derivative(x)``."""
        if self._input is None:
            raise RuntimeError(f"{type(self).__name__}.backward called before forward")
        return grad_out * self.derivative(self._input)

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


class Identity(Activation):
    """``a = z`` (useful as a placeholder; costs nothing in the structured check).

    Examples
    --------
    >>> import numpy as np
    >>> from gradprobe.nn import Sequential, Dense
    >>> model = Sequential([Dense(2, 1, W=[[1.0], [2.0]], b=[0.0]), Identity()])
    >>> model.loss(np.array([[1.0, 1.0]]), np.array([[0.0]]))
    4.5
    """

    code = constants.IDENTITY
    name = "identity"


class ReLU(Activation):
    """``a = max(z, 0)``, with derivative 0 at ``z = 0`` (a kink).

    Examples
    --------
    >>> import numpy as np
    >>> from gradprobe.nn import Sequential, Dense
    >>> model = Sequential([Dense(1, 2, W=[[1.0, -1.0]], b=[0.0, 0.0]), ReLU()])
    >>> model.gradients(np.array([[2.0]]), np.array([[0.0, 0.0]]))["0.W"]
    array([[4., 0.]])
    """

    code = constants.RELU
    name = "relu"
    smooth = False

    def value(self, z: np.ndarray) -> np.ndarray:
        return np.maximum(z, 0)

    def derivative(self, z: np.ndarray) -> np.ndarray:
        return (z > 0).astype(np.result_type(z, np.float32))


class Tanh(Activation):
    """``a = tanh(z)``.

    Examples
    --------
    >>> import numpy as np
    >>> from gradprobe.nn import Sequential, Dense
    >>> model = Sequential([Dense(1, 1, W=[[0.0]], b=[0.0]), Tanh()])
    >>> model.gradients(np.array([[1.0]]), np.array([[1.0]]))["0.b"]
    array([-1.])
    """

    code = constants.TANH
    name = "tanh"

    def value(self, z: np.ndarray) -> np.ndarray:
        return np.tanh(z)

    def derivative(self, z: np.ndarray) -> np.ndarray:
        return 1 - np.tanh(z) ** 2


class Sigmoid(Activation):
    """``a = 1 / (1 + exp(-z))``.

    Examples
    --------
    >>> import numpy as np
    >>> from gradprobe.nn import Sequential, Dense
    >>> model = Sequential([Dense(1, 1, W=[[0.0]], b=[0.0]), Sigmoid()])
    >>> model.gradients(np.array([[1.0]]), np.array([[1.0]]))["0.b"]
    array([-0.125])
    """

    code = constants.SIGMOID
    name = "sigmoid"

    def value(self, z: np.ndarray) -> np.ndarray:
        return 1 / (1 + np.exp(-z))

    def derivative(self, z: np.ndarray) -> np.ndarray:
        s = 1 / (1 + np.exp(-z))
        return s * (1 - s)
