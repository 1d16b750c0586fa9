"""``Sequential``: a stack of layers and a loss, with Numba forward/backward."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

from .backends import default_kernels
from .inputs import prepare_targets, validate_inputs, validate_params
from .layers import Activation, Dense
from .losses import MSE, Loss


@dataclass
class Trace:
    """Values of one forward pass.

    Attributes
    ----------
    values : list of ndarray
        ``values[0]`` is the input, ``values[k + 1]`` the output of layer ``k``;
        ``values[-1]`` goes into the loss.
    targets : ndarray
        Dense targets, shape ``values[-1].shape``.
    params : dict of str to ndarray
        The parameters the pass used.
    scale : float
        The loss's batch scale (``1 / batch`` or 1).
    """

    values: list[np.ndarray]
    targets: np.ndarray
    params: dict[str, np.ndarray]
    scale: float


class Sequential:
    """Layers applied in order, then a loss.

    Parameters
    ----------
    layers : sequence of Dense and activation layers
        E.g. ``[Dense(2, 2), Sigmoid(), Dense(2, 1), Sigmoid()]``. Consecutive
        Dense layers must have matching widths; all Dense layers share a dtype.
    loss : MSE or SoftmaxCrossEntropy
        Applied to the output of the last layer (logits for the cross-entropy).

    Parameters are named by the position of their layer: ``"0.W"``, ``"0.b"``,
    ``"2.W"``, ...

    Examples
    --------
    >>> import numpy as np
    >>> from gradprobe.nn import Sequential, Dense, Tanh, MSE
    >>> model = Sequential([Dense(3, 4, seed=0), Tanh(), Dense(4, 2, seed=1)], loss=MSE())
    >>> X, T = np.ones((5, 3)), np.zeros((5, 2))
    >>> sorted(model.gradients(X, T)) == sorted(model.parameters())
    True
    >>> list(model.parameters())
    ['0.W', '0.b', '2.W', '2.b']
    """

    def __init__(self, layers: Sequence[Any], loss: Loss | None = None):
        layers = list(layers)
        if not layers:
            raise ValueError("layers is empty: a Sequential model needs at least one Dense layer")
        for pos, layer in enumerate(layers):
            if isinstance(layer, type) and issubclass(layer, Activation):
                raise TypeError(f"layers[{pos}] is the class {layer.__name__}; pass an "
                                f"instance: {layer.__name__}()")
            if not isinstance(layer, (Dense, Activation)):
                raise TypeError(f"layers[{pos}] must be a Dense or activation layer, got "
                                f"{type(layer).__name__}")
        dense = [(pos, layer) for pos, layer in enumerate(layers) if isinstance(layer, Dense)]
        if not dense:
            raise ValueError("layers has no Dense layer: nothing to train or check")
        for (p0, a), (p1, b) in zip(dense, dense[1:]):
            if a.n_out != b.n_in:
                raise ValueError(f"layers[{p0}] has n_out={a.n_out} but layers[{p1}] has "
                                 f"n_in={b.n_in}")
        dtypes = {layer.dtype for _, layer in dense}
        if len(dtypes) > 1:
            raise TypeError(f"all Dense layers must share a dtype, got {sorted(map(str, dtypes))}")
        if loss is None:
            loss = MSE()
        if not isinstance(loss, Loss):
            raise TypeError(f"loss must be MSE() or SoftmaxCrossEntropy(), got {loss!r}")
        self.layers = layers
        self.loss_fn = loss
        self.dtype = dense[0][1].dtype
        self.dense_positions = [pos for pos, _ in dense]
        self.n_in = dense[0][1].n_in
        self.n_out = dense[-1][1].n_out

    def __repr__(self) -> str:
        inner = ", ".join(map(repr, self.layers))
        return f"Sequential([{inner}], loss={self.loss_fn!r})"

    # -- parameters ---------------------------------------------------------
    def parameters(self) -> dict[str, np.ndarray]:
        """The live parameter arrays, keyed ``"<position>.W"`` and ``"<position>.b"``."""
        out = {}
        for pos in self.dense_positions:
            out[f"{pos}.W"] = self.layers[pos].W
            out[f"{pos}.b"] = self.layers[pos].b
        return out

    def parameter_shapes(self) -> dict[str, tuple[int, ...]]:
        """The shape every parameter must have, keyed like :meth:`parameters`."""
        out: dict[str, tuple[int, ...]] = {}
        for pos in self.dense_positions:
            layer = self.layers[pos]
            out[f"{pos}.W"] = (layer.n_in, layer.n_out)
            out[f"{pos}.b"] = (layer.n_out,)
        return out

    # -- passes -------------------------------------------------------------
    def trace(self, X: Any, T: Any, params: Mapping[str, np.ndarray] | None = None,
              dtype: Any = None, kernels: Any = None) -> Trace:
        """Run the forward pass and keep every layer's output.

        Parameters
        ----------
        X, T : array_like
            Inputs ``(batch, n_in)`` and targets (see the loss).
        params : dict, optional
            Parameters to use instead of the layers' own (same keys).
        dtype : dtype, optional
            Precision of the pass (default: the model's). Inputs and targets
            are cast to it (copies; the user's arrays are never written).
        kernels : kernel set, optional
            The Numba kernels or their C twin
            (``gradprobe.nn.backends.kernel_set``); by default the C twin
            when it was built, else the Numba kernels
            (``gradprobe.nn.backends.default_kernels``).
        """
        kernels = default_kernels() if kernels is None else kernels
        dtype = np.dtype(dtype) if dtype is not None else self.dtype
        X = validate_inputs(X, self.n_in)
        targets = prepare_targets(T, self.loss_fn.code, X.shape[0], self.n_out, dtype)
        params = dict(self.parameters()) if params is None else dict(params)
        validate_params(params, self.parameter_shapes(), finite=False)
        for key, value in params.items():
            if value.dtype != dtype or not value.flags.c_contiguous:
                params[key] = np.ascontiguousarray(value, dtype=dtype)
        values = [np.array(X, dtype=dtype, order="C")]
        for pos, layer in enumerate(self.layers):
            current = values[-1]
            if isinstance(layer, Dense):
                out = np.empty((current.shape[0], layer.n_out), dtype=dtype)
                kernels.dense_forward(current, params[f"{pos}.W"], params[f"{pos}.b"], out)
            else:
                out = np.empty_like(current)
                kernels.activation_forward(layer.code, current, out)
            values.append(out)
        return Trace(values, targets, params, self.loss_fn.scale(X.shape[0]))

    def loss(self, X: Any, T: Any, kernels: Any = None) -> float:
        """The loss at the model's parameters (``kernels`` as in :meth:`trace`).

        Examples
        --------
        >>> import numpy as np
        >>> from gradprobe.nn import Sequential, Dense, MSE
        >>> model = Sequential([Dense(1, 1, W=[[2.0]], b=[0.0])], loss=MSE())
        >>> model.loss(np.array([[1.0]]), np.array([[0.0]]))
        2.0
        """
        kernels = default_kernels() if kernels is None else kernels
        trace = self.trace(X, T, kernels=kernels)
        return float(self.loss_fn.value(trace.values[-1], trace.targets, kernels))

    def gradients(self, X: Any, T: Any, kernels: Any = None) -> dict[str, np.ndarray]:
        """Gradients of the loss by backpropagation, keyed like :meth:`parameters`.

        ``kernels`` as in :meth:`trace`.
        """
        kernels = default_kernels() if kernels is None else kernels
        return backward(self, self.trace(X, T, kernels=kernels), kernels)


def backward(model: Sequential, trace: Trace, kernels: Any = None) -> dict[str, np.ndarray]:
    """Backpropagate through a recorded forward pass (with ``kernels``, as in
    :meth:`Sequential.trace`)."""
    kernels = default_kernels() if kernels is None else kernels
    values = trace.values
    dtype = values[0].dtype
    grad = model.loss_fn.backward(values[-1], trace.targets, kernels)
    first = model.dense_positions[0]
    out: dict[str, np.ndarray] = {}
    for pos in range(len(model.layers) - 1, first - 1, -1):
        layer = model.layers[pos]
        x = values[pos]
        if isinstance(layer, Dense):
            xt = np.empty((x.shape[1], x.shape[0]), dtype=dtype)
            kernels.transpose(x, xt)
            dW = np.empty((layer.n_in, layer.n_out), dtype=dtype)
            kernels.matmul(xt, grad, dW)
            db = np.empty(layer.n_out, dtype=dtype)
            kernels.column_sums(grad, db)
            out[f"{pos}.W"], out[f"{pos}.b"] = dW, db
            if pos > first:
                W = trace.params[f"{pos}.W"]
                wt = np.empty((layer.n_out, layer.n_in), dtype=dtype)
                kernels.transpose(W, wt)
                dx = np.empty((x.shape[0], layer.n_in), dtype=dtype)
                kernels.matmul(grad, wt, dx)
                grad = dx
        else:
            dz = np.empty_like(grad)
            kernels.activation_backward(layer.code, x, values[pos + 1], grad, dz)
            grad = dz
    return {key: out[key] for key in model.parameters()}
